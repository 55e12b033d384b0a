#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert to raw, against qemu-img convert: the same source (a
# qcow2 chain over a raw base, and a sparse raw file) converted by both
# tools gives the same bytes; holes stay holes; -S 0 allocates everything;
# -n overwrites an existing target completely; several requests are in
# flight; the errors users see name what is wrong.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io cmp

d=$(mktmp chain)
mkdir -p "$d"
cd "$d"

# base.raw <- mid.qcow2 <- top.qcow2, relative backing names, the base
# shorter than the overlays.
qemu-img create -q -f raw base.raw 6M
qemu-io -f raw -c 'write -P 0x5a 0 6M' base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 12M
qemu-io -f qcow2 -c 'write -P 0x66 1M 1M' -c 'write -z 3M 64k' -c 'write -P 0x67 7M 4k' \
	mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 16M
qemu-io -f qcow2 -c 'write -P 0x77 5M 100k' -c 'write -P 0 9M 1M' -c 'write -z 0 64k' \
	-c 'write -P 0x78 15M 512' top.qcow2 >/dev/null
qemu-img convert -f qcow2 -O raw top.qcow2 ref.raw

# The chain flattened, as qemu-img flattens it.
out=$($TAPIMG -D tool convert -f qcow2 top.qcow2 out.raw 2>&1) || die "convert failed: $out"
cmp ref.raw out.raw || die "convert of the chain differs from qemu-img convert"
[ "$(stat -c %s out.raw)" -eq 16777216 ] || die "target is not 16 MiB"

# Several requests were in flight at once (8 by default), not one at a time.
n=$(echo "$out" | sed -n 's/.*at most \([0-9]*\) requests were in flight.*/\1/p')
[ -n "$n" ] && [ "$n" -gt 1 ] || die "convert kept at most '${n}' request in flight: $out"

# Holes stay holes: the 1 MiB of zeros written as data at 9M and the ranges
# nothing holds are not allocated in the target.  Data: 6M of base, 100k,
# 4k and 512 bytes; allow for file system block rounding.
alloc=$(($(stat -c %b out.raw) * 512))
[ "$alloc" -le $((7 * 1024 * 1024)) ] || die "target has $alloc bytes allocated; holes lost"

# -S 0: nothing skipped, the target fully allocated, the same bytes.
$TAPIMG convert -f qcow2 -S 0 top.qcow2 full.raw || die "convert -S 0 failed"
cmp ref.raw full.raw || die "convert -S 0 differs"
alloc=$(($(stat -c %b full.raw) * 512))
[ "$alloc" -ge 16777216 ] || die "convert -S 0 left holes ($alloc bytes allocated)"

# One request at a time, and 16 with out-of-order writes, give the same bytes.
$TAPIMG convert -f qcow2 -m 1 top.qcow2 m1.raw || die "convert -m 1 failed"
cmp ref.raw m1.raw || die "convert -m 1 differs"
$TAPIMG convert -f qcow2 -m 16 -W -S 64k top.qcow2 m16.raw || die "convert -m 16 -W failed"
cmp ref.raw m16.raw || die "convert -m 16 -W differs"

# O_DIRECT on both sides (lib/aio falls back where the file system refuses it).
$TAPIMG convert -f qcow2 -T none -t none top.qcow2 direct.raw || die "convert -t none failed"
cmp ref.raw direct.raw || die "convert -T none -t none differs"

# qcow2: prefix instead of -f.
$TAPIMG convert "qcow2:$d/top.qcow2" prefix.raw || die "convert qcow2:PATH failed"
cmp ref.raw prefix.raw || die "convert qcow2:PATH differs"

# -p: qemu-img's progress lines on stdout, ending at 100 %.
p=$($TAPIMG convert -p -f qcow2 top.qcow2 prog.raw) || die "convert -p failed"
echo "$p" | tr '\r' '\n' | grep -qx '    (0.00/100%)' || die "-p: no 0 % line: $p"
echo "$p" | tr '\r' '\n' | grep -qx '    (100.00/100%)' || die "-p: no 100 % line: $p"
[ -z "$($TAPIMG convert -p -q -f qcow2 top.qcow2 prog.raw)" ] || die "-q did not silence -p"

# -n: an existing target full of garbage ends up with exactly the source's
# bytes, zero ranges included; what lies past the source's size is kept.
head -c 20M /dev/urandom >garbage.raw
tail -c 4M garbage.raw >tail.expected
$TAPIMG convert -n -f qcow2 top.qcow2 garbage.raw || die "convert -n failed"
cmp -n 16777216 ref.raw garbage.raw || die "convert -n left stale bytes"
tail -c 4M garbage.raw | cmp - tail.expected || die "convert -n wrote past the source's size"
# --target-is-zero: the user vouches that it reads as zeros, so zeros are skipped.
qemu-img create -q -f raw zero.raw 16M
$TAPIMG convert -n --target-is-zero -f qcow2 top.qcow2 zero.raw || die "--target-is-zero failed"
cmp ref.raw zero.raw || die "convert -n --target-is-zero differs"

# A sparse raw source: a hole, zeros written as data, data.
qemu-img create -q -f raw sparse.raw 8M
qemu-io -f raw -c 'write -P 0x31 0 64k' -c 'write -P 0 1M 2M' -c 'write -P 0x32 7M 1M' \
	sparse.raw >/dev/null
$TAPIMG convert sparse.raw sparse-out.raw || die "raw -> raw failed"
cmp sparse.raw sparse-out.raw || die "raw -> raw differs"
alloc=$(($(stat -c %b sparse-out.raw) * 512))
[ "$alloc" -le $((2 * 1024 * 1024)) ] || die "raw -> raw kept the zeros ($alloc bytes)"

# A raw file that ends inside a sector: its bytes, then zeros to 1024, as qemu-img.
head -c 1000 /dev/urandom >odd.raw
qemu-img convert -f raw -O raw odd.raw odd-ref.raw
$TAPIMG convert odd.raw odd-out.raw || die "convert of a 1000-byte file failed"
cmp odd-ref.raw odd-out.raw || die "convert of a 1000-byte file differs from qemu-img's"

# A fragmented image (seeded random writes, zero writes and discards of
# 512 B .. 192 KiB over a backing file, small clusters) through every
# parallelism and sparse size: always qemu-img's bytes.
qemu-img create -q -f qcow2 -o cluster_size=4k frag-base.qcow2 8M
qemu-io -f qcow2 -c 'write -P 0x41 0 8M' frag-base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=16k -b frag-base.qcow2 -F qcow2 frag.qcow2 10M
awk 'BEGIN {
	srand(20240611)
	for (i = 0; i < 300; i++) {
		off = int(rand() * 20480) * 512; len = (int(rand() * 384) + 1) * 512
		if (off + len > 10485760) len = 10485760 - off
		r = rand()
		if (r < 0.5) printf "-c\nwrite -P %d %d %d\n", i % 250 + 1, off, len
		else if (r < 0.7) printf "-c\nwrite -P 0 %d %d\n", off, len
		else if (r < 0.85) printf "-c\nwrite -z %d %d\n", off, len
		else printf "-c\ndiscard %d %d\n", off, len
	}
}' >frag.cmds
(IFS='
'
# shellcheck disable=SC2046
qemu-io -f qcow2 $(cat frag.cmds) frag.qcow2 >/dev/null) || die "qemu-io on frag.qcow2 failed"
qemu-img convert -f qcow2 -O raw frag.qcow2 frag-ref.raw
for args in "-m 1" "-m 2" "-m 8 -S 512" "-m 16 -W" "-m 3 -S 64k" "-m 5 -W -S 1536" "-S 0 -m 4"; do
	# shellcheck disable=SC2086
	$TAPIMG convert $args -f qcow2 frag.qcow2 frag.raw || die "convert $args failed"
	cmp frag-ref.raw frag.raw || die "convert $args of the fragmented image differs"
done

# Errors.
expect_err() { # message-pattern, convert arguments...
	pat=$1
	shift
	rc=0
	msg=$($TAPIMG convert "$@" 2>&1) || rc=$?
	[ "$rc" -eq 1 ] || die "convert $*: exit status $rc, not 1: $msg"
	echo "$msg" | grep -q -- "$pat" || die "convert $*: expected '$pat', got: $msg"
}
expect_err 'compression is not supported by this format' -c -f qcow2 top.qcow2 c.raw
[ ! -e c.raw ] || die "convert -c created the target before refusing"
expect_err "unknown format 'vhdx'" -O vhdx -f qcow2 top.qcow2 v.img
expect_err "invalid sparse size '1000'" -S 1000 -f qcow2 top.qcow2 s.raw
expect_err "invalid number of parallel requests '0'" -m 0 -f qcow2 top.qcow2 s.raw
expect_err "invalid number of parallel requests '17'" -m 17 -f qcow2 top.qcow2 s.raw
expect_err '--target-is-zero requires -n' --target-is-zero -f qcow2 top.qcow2 s.raw
expect_err '-o has no effect' -n -o preallocation=off -f qcow2 top.qcow2 garbage.raw
expect_err '-B needs -F' -B base.raw -f qcow2 top.qcow2 s.raw
expect_err "invalid parameter 'foo'" -o foo=bar -f qcow2 top.qcow2 s.raw
expect_err 'raw images cannot have a backing file' -B base.raw -F raw -f qcow2 top.qcow2 s.raw
qemu-img create -q -f raw small.raw 1M
expect_err 'is smaller than the source' -n -f qcow2 top.qcow2 small.raw
expect_err 'part of the source' -f qcow2 top.qcow2 mid.qcow2
expect_err 'part of the source' -n -f qcow2 top.qcow2 top.qcow2
expect_err 'expected SRC and DST' top.qcow2
expect_err "could not open 'missing.qcow2'" -f qcow2 missing.qcow2 s.raw
qemu-img check -q mid.qcow2 || die "a refused convert damaged the source's backing"
qemu-img check -q top.qcow2 || die "convert damaged its source"
exit 0
