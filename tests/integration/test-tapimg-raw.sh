#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img create, io and bench on a raw image, checked against qemu-io: the
# same commands run through qemu-io on a reference file must leave it byte
# for byte identical, and each tool must read what the other wrote.
. "$(dirname "$0")/functions.sh"
requires qemu-io qemu-img cmp

img=$(mktmp disk.raw)
ref=$(mktmp ref.raw)

# create: size, rounding and the errors users see.
$TAPIMG create -q -f raw "$img" 4M
qemu-img create -q -f raw "$ref" 4M
[ "$(stat -c %s "$img")" -eq 4194304 ] || die "create: $img is not 4 MiB"
err=$($TAPIMG create -f raw "$(mktmp bad.raw)" abc 2>&1) && die "create accepted size 'abc'"
echo "$err" | grep -q 'tap-img: create: Invalid image size specified' || die "create: bad message: $err"
err=$($TAPIMG create -f vhdx "$(mktmp bad.vhdx)" 1M 2>&1) && die "create accepted -f vhdx"
echo "$err" | grep -q "unknown format 'vhdx'" || die "create: bad message: $err"
err=$($TAPIMG create -o foo=bar "$(mktmp bad2.raw)" 1M 2>&1) && die "create accepted -o foo=bar"
echo "$err" | grep -q "'foo'" || die "create: message does not name the option: $err"

# The same writes through both tools leave identical files.
set -- -c 'write -P 0xab 0 64k' -c 'write -P 0xcd 1M 128k' -c 'write -z 64k 64k' \
	-c 'write -P 0x11 2M 64k' -c 'discard 2M 32k' -c 'write -P 0x22 4032k 64k' -c flush
$TAPIMG io -f raw "$@" "$img" >/dev/null || die "tap-img io write failed"
qemu-io -f raw "$@" "$ref" >/dev/null || die "qemu-io write failed"
cmp "$img" "$ref" || die "tap-img io and qemu-io wrote different bytes"

# Each reads what the other wrote, with pattern checks.
set -- -c 'read -P 0xab 0 64k' -c 'read -P 0 64k 64k' -c 'read -P 0xcd 1M 128k' \
	-c 'read -P 0 2M 32k' -c 'read -P 0x11 2080k 32k' -c 'read -P 0x22 4032k 64k'
$TAPIMG io -r "$@" "$ref" >/dev/null || die "tap-img io cannot read qemu-io's data"
qemu-io -f raw -r "$@" "$img" >/dev/null || die "qemu-io cannot read tap-img's data"

# The hex dumps agree line for line (timing lines differ and are dropped).
dump() { grep -E '^[0-9a-f]{8}:' || true; }
a=$($TAPIMG io -r -c 'read -v 1020k 8k' "$img" | dump)
b=$(qemu-io -f raw -r -c 'read -v 1020k 8k' "$img" | dump)
[ -n "$a" ] && [ "$a" = "$b" ] || die "read -v dumps differ from qemu-io's"

# A wrong pattern fails with qemu-io's message and exit code.
out=$($TAPIMG io -r -c 'read -P 0xee 0 64k' "$img") && die "wrong pattern was accepted"
echo "$out" | grep -q 'Pattern verification failed at offset 0, 65536 bytes' ||
	die "no pattern failure message: $out"
out=$($TAPIMG io -r -c 'write -P 0xab 0 4k' "$img") && die "read-only image accepted a write"
echo "$out" | grep -q 'write failed: Read-only file system' || die "bad read-only error: $out"

# bench --verify: seeded random read/write, every block written read back.
$TAPIMG bench -q --rw randrw --verify --seed 7 --time 1 -d 16 -s 4k "$img" ||
	die "bench --verify failed"
out=$($TAPIMG bench --rw randwrite --verify --seed 9 -c 2000 -d 8 -s 8k -i sync \
	--output=json "$img") || die "bench --verify (json) failed"
if command -v jq >/dev/null 2>&1; then
	[ "$(echo "$out" | jq '.ops')" -eq 2000 ] || die "bench: ops is not 2000: $out"
	[ "$(echo "$out" | jq '.verify.errors')" -eq 0 ] || die "bench: verify errors: $out"
	[ "$(echo "$out" | jq '.verify.blocks')" -gt 0 ] || die "bench: nothing verified: $out"
fi

# What bench wrote is still a well-formed raw image to qemu-img.
qemu-img info -f raw "$img" | grep -q 'virtual size: 4 MiB' || die "qemu-img info disagrees"
exit 0
