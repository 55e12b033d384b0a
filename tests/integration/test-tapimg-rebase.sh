#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img rebase against qemu-img rebase.  A chain base <- mid <- top and a
# raw image "other" (smaller than top, partly like base) are copied into
# two directories; qemu-img rebase runs in one, tap-img rebase with the
# same options in the other.  top must then pass qemu-img check, read the
# same as qemu-img's (qemu-img compare) and, in safe mode, as before the
# rebase; hold the same clusters itself (qemu-img map, depth 0); and name
# the same backing file and format.  Run with standard and extended L2
# entries in top.  Errors exit 1 with qemu-img's messages.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io jq

cd "$TEST_DIR"

# make_chain DIR TOP_OPTIONS
make_chain() {
	mkdir -p "$1"
	(
		cd "$1"
		qemu-img create -q -f qcow2 base 8M
		qemu-io -f qcow2 -c 'write -P 0x11 0 4M' -c 'write -P 0x12 7M 1M' base >/dev/null
		qemu-img create -q -f qcow2 -b base -F qcow2 mid
		qemu-io -f qcow2 -c 'write -P 0x21 1M 1M' -c 'write -z 3M 64k' \
			-c 'write -P 0x22 2047k 3k' mid >/dev/null
		qemu-img create -q -f qcow2 -o "$2" -b mid -F qcow2 top
		qemu-io -f qcow2 -c 'write -P 0x31 1536k 8k' -c 'write -z 0 4k' \
			-c 'write -P 0x32 6M 100k' top >/dev/null
		qemu-img create -q -f raw other 6M
		qemu-io -f raw -c 'write -P 0x11 0 2M' -c 'write -P 0x41 5M 1M' other >/dev/null
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

backing() {
	qemu-img info --output=json "$1" | jq -c '[.["backing-filename"], .["backing-filename-format"]]'
}

# case_ TOP_OPTIONS ARGS...: the same rebase in q/ by qemu-img and in t/ by tap-img
case_() {
	opts=$1
	shift
	rm -rf q t orig
	make_chain orig "$opts"
	cp -r orig q
	cp -r orig t
	(cd q && qemu-img rebase "$@" top) || die "qemu-img rebase $* failed"
	(cd t && $TAPIMG rebase "$@" top) || die "tap-img rebase $* failed"
	qemu-img check -q t/top || die "rebase $*: check failed"
	qemu-img compare -q q/top t/top || die "rebase $* ($opts): top differs from qemu-img's"
	case " $* " in
	*" -u "*) ;;
	*) qemu-img compare -q orig/top t/top || die "rebase $* ($opts): contents changed" ;;
	esac
	[ "$(cd q && own_map top)" = "$(cd t && own_map top)" ] ||
		die "rebase $*: top holds $(cd t && own_map top), qemu-img's $(cd q && own_map top)"
	[ "$(backing q/top)" = "$(backing t/top)" ] ||
		die "rebase $*: backing $(backing t/top), qemu-img's $(backing q/top)"
}

for opts in cluster_size=64k extended_l2=on,cluster_size=128k; do
	case_ $opts -b base -F qcow2
	case_ $opts -b other -F raw
	case_ $opts -b ""
	case_ $opts -u -b base -F qcow2
	case_ $opts -u -b ""
done
case_ cluster_size=4k -p -b base -F qcow2

# errors, as qemu-img's
if $TAPIMG rebase t/top 2>err; then die "rebase without -b succeeded"; fi
grep -q "Must specify backing file (-b) or use unsafe mode (-u)" err || die "no -b: $(cat err)"
if $TAPIMG rebase -b base t/top 2>err; then die "rebase without -F succeeded"; fi
grep -q "backing format must be specified" err || die "no -F: $(cat err)"
if $TAPIMG rebase -b nowhere -F qcow2 t/top 2>err; then die "rebase onto nothing succeeded"; fi
qemu-img compare -q orig/top t/top || die "a failed rebase changed top"
$TAPIMG rebase --help | grep -q "Usage: tap-img rebase" || die "no --help"
echo "rebase: the same results as qemu-img rebase"
