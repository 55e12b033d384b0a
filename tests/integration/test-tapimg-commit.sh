#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img commit against qemu-img commit.  A chain base <- mid <- top (base
# raw or qcow2; top with data, zero clusters hiding the backing data, and
# an internal snapshot) is copied into two directories; qemu-img commit
# runs in one, tap-img commit with the same options in the other.  Every
# image of the chain must then pass qemu-img check, read the same as
# qemu-img's (qemu-img compare, each with its own chain) and have the same
# clusters in top itself (qemu-img map, depth 0): emptied by default, kept
# with -d and -b.  A smaller raw or qcow2 base grows to top's size.  Errors (no backing file, a -b not in the chain) exit 1
# as qemu-img's do.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io jq

cd "$TEST_DIR"

# make_chain DIR BASEFMT
make_chain() {
	mkdir -p "$1"
	(
		cd "$1"
		qemu-img create -q -f "$2" base 8M
		qemu-io -f "$2" -c 'write -P 0x11 0 4M' -c 'write -P 0x12 7M 1M' base >/dev/null
		qemu-img create -q -f qcow2 -b base -F "$2" mid
		qemu-io -f qcow2 -c 'write -P 0x21 1M 1M' -c 'write -z 3M 64k' mid >/dev/null
		qemu-img create -q -f qcow2 -o cluster_size=4k -b mid -F qcow2 top
		qemu-io -f qcow2 -c 'write -P 0x31 1536k 8k' -c 'write -z 0 4k' \
			-c 'write -P 0x32 6M 100k' top >/dev/null
		qemu-img snapshot -c s top
		qemu-io -f qcow2 -c 'write -P 0x33 6M 4k' -c 'write -c -P 0x34 5M 4k' top \
			>/dev/null
	)
}

# the ranges top holds itself, adjacent ones merged (host placement aside)
own_map() {
	qemu-img map --output=json "$1" |
		jq -c '[.[] | select(.depth == 0) | {start, length, zero, data}] |
			reduce .[] as $e ([]; if length > 0 and .[-1].start + .[-1].length == $e.start
				and .[-1].zero == $e.zero and .[-1].data == $e.data
				then .[-1].length += $e.length else . + [$e] end)'
}

# case BASEFMT ARGS...: the same commit in q/ by qemu-img and in t/ by tap-img
case_() {
	fmt=$1
	shift
	rm -rf q t
	make_chain q "$fmt"
	cp -r q t
	(cd q && qemu-img commit -q "$@" top) || die "qemu-img commit $* failed"
	(cd t && $TAPIMG commit "$@" top >../t.out) || die "tap-img commit $* failed"
	grep -q "Image committed." t.out || die "commit $*: no 'Image committed.'"
	for img in base mid top; do
		f=qcow2
		[ $img = base ] && f=$fmt
		[ $f = raw ] || qemu-img check -q t/$img || die "commit $*: check failed on $img"
		qemu-img compare -q -f $f -F $f q/$img t/$img ||
			die "commit $* ($fmt base): $img differs from qemu-img's"
	done
	[ "$(cd q && own_map top)" = "$(cd t && own_map top)" ] ||
		die "commit $*: top holds $(cd t && own_map top), qemu-img's $(cd q && own_map top)"
	qemu-img convert -l snapshot.name=s -O raw q/top q.snap
	qemu-img convert -l snapshot.name=s -O raw t/top t.snap
	cmp -s q.snap t.snap || die "commit $*: top's snapshot changed"
}

case_ qcow2
case_ qcow2 -d
case_ qcow2 -b base
case_ qcow2 -b mid
case_ raw
case_ raw -b base -p

# a base smaller than top grows to top's size (qcow2: a larger L1 table)
for fmt in raw qcow2; do
	rm -rf q t
	mkdir q
	(
		cd q
		qemu-img create -q -f $fmt -o cluster_size=4k base 1M 2>/dev/null ||
			qemu-img create -q -f $fmt base 1M
		qemu-io -f $fmt -c 'write -P 0x51 0 1M' base >/dev/null
		qemu-img create -q -f qcow2 -b base -F $fmt top 6M
		qemu-io -f qcow2 -c 'write -P 0x52 512k 3M' -c 'write -P 0x53 5M 4k' top >/dev/null
	)
	cp -r q t
	(cd q && qemu-img commit -q top)
	(cd t && $TAPIMG commit -q top) || die "commit into a smaller $fmt base failed"
	[ $fmt = raw ] || qemu-img check -q t/base || die "the grown $fmt base does not check"
	qemu-img compare -q -f $fmt -F $fmt q/base t/base || die "the grown $fmt base differs"
	[ "$(qemu-img info --output=json t/base | jq '.["virtual-size"]')" = 6291456 ] ||
		die "the $fmt base did not grow"
done

# errors, as qemu-img's
qemu-img create -q -f qcow2 lone 1M
if $TAPIMG commit -f qcow2 lone 2>err; then die "commit without a backing file succeeded"; fi
grep -q "Image does not have a backing file" err || die "no backing: $(cat err)"
if (cd t && $TAPIMG commit -b nowhere top 2>../err); then die "commit -b nowhere succeeded"; fi
grep -q "Did not find 'nowhere' in the backing chain of 'top'" err || die "-b: $(cat err)"
$TAPIMG commit --help | grep -q "Usage: tap-img commit" || die "no --help"
echo "commit: the same results as qemu-img commit"
