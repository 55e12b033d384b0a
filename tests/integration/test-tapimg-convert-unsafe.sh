#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert's target cache modes, as qemu-img's: the default
# (-t unsafe) ignores flushes, so the copy makes no fdatasync/fsync at all,
# neither the final flush nor the qcow2 driver's metadata ordering syncs;
# -t writeback flushes.  Counted with strace on an existing target (-n: the
# creation syncs, as qemu-img's does).  The flush of a raw target is an aio
# FSYNC, a system call only with the sync engine (-i sync).  Each result
# must still equal the source. And -t none / -T none open O_DIRECT, as the
# default does a source that is cold in the page cache.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io strace
# LeakSanitizer cannot run under ptrace: every convert here runs under strace.
ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
export ASAN_OPTIONS

d=$(mktmp unsafe)
mkdir -p "$d"
cd "$d"

qemu-img create -q -f raw src.raw 8M
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 3M 2M' -c 'write -z 6M 1M' \
	src.raw >/dev/null

# syncs FMT ARGS...: run convert -n into a fresh t.FMT under strace, print its syncs
syncs() {
	fmt=$1
	shift
	rm -f "t.$fmt"
	qemu-img create -q -f "$fmt" "t.$fmt" 8M
	strace -f -qq -o trace -e trace=fsync,fdatasync,sync_file_range,syncfs \
		$TAPIMG convert -n -q -f raw -O "$fmt" "$@" src.raw "t.$fmt" >out 2>err ||
		die "convert $* to $fmt failed: $(cat err)"
	qemu-img compare -q -f raw -F "$fmt" src.raw "t.$fmt" || die "$fmt $*: differs from the source"
	[ "$fmt" = raw ] || qemu-img check -q "t.$fmt" || die "$fmt $*: qemu-img check fails"
	grep -c -E '(fsync|fdatasync|sync_file_range|syncfs)\(' trace || true
}

n=$(syncs qcow2)
[ "$n" -eq 0 ] || die "qcow2, default cache: $n syncs, expected none"
n=$(syncs qcow2 -t unsafe)
[ "$n" -eq 0 ] || die "qcow2, -t unsafe: $n syncs, expected none"
n=$(syncs qcow2 -t writeback)
[ "$n" -ge 1 ] || die "qcow2, -t writeback: no sync"

n=$(syncs raw -i sync)
[ "$n" -eq 0 ] || die "raw, default cache: $n syncs, expected none"
n=$(syncs raw -i sync -t writeback)
[ "$n" -ge 1 ] || die "raw, -t writeback: no sync"

# -c: the compressed write path allocates metadata too
n=$(syncs qcow2 -c)
[ "$n" -eq 0 ] || die "qcow2 -c, default cache: $n syncs, expected none"

# -t none / -T none: O_DIRECT, where the default is buffered; the default
# and writeback are not. (directopen ARGS...: the files opened O_DIRECT)
directopen() {
	rm -f t.raw
	qemu-img create -q -f raw t.raw 8M
	strace -f -qq -o trace -e trace=openat \
		$TAPIMG convert -n -q -f raw -O raw "$@" src.raw t.raw >out 2>err ||
		die "convert $* failed: $(cat err)"
	qemu-img compare -q -f raw -F raw src.raw t.raw || die "$*: differs from the source"
	grep 'O_DIRECT' trace | grep -o -E '"[^"]*"' | tr -d '"' | xargs -r -n1 basename | sort -u |
		tr '\n' ' '
}
[ "$(directopen)" = "" ] || die "convert's defaults open O_DIRECT: $(directopen)"
[ "$(directopen -t none)" = "t.raw " ] || die "-t none: O_DIRECT on: $(directopen -t none)"
[ "$(directopen -T none)" = "src.raw " ] || die "-T none: O_DIRECT on: $(directopen -T none)"
[ "$(directopen -t none -T none -t writeback)" = "src.raw " ] ||
	die "-t none then -t writeback: O_DIRECT on: $(directopen -t none -T none -t writeback)"

# A source the page cache does not hold is read O_DIRECT by default (where
# the file system takes O_DIRECT and the kernel has cachestat, 6.5, and not
# under valgrind, which does not know cachestat), and still equals its
# copy; -T writeback keeps it buffered.
cold() {
	sync src.raw
	dd if=src.raw iflag=nocache count=0 status=none
}
kernel=$(uname -r | awk -F. '{ print $1 * 1000 + $2 }')
if [ -n "$VG" ]; then
	echo "skip the cold source case: valgrind does not know cachestat"
elif [ "$kernel" -ge 6005 ] && [ "$(directopen -T none)" = "src.raw " ]; then
	cold
	got=$(directopen)
	[ "$got" = "src.raw " ] || die "a cold source is not read O_DIRECT (O_DIRECT on: $got)"
	cold
	got=$(directopen -T writeback)
	[ "$got" = "" ] || die "-T writeback: O_DIRECT on a cold source: $got"
else
	echo "skip the cold source case: kernel $(uname -r) before 6.5, or no O_DIRECT here"
fi
exit 0
