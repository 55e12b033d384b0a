#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tap-img convert --salvage against qemu-img's, on an NBD source (nbdkit
# eval) whose sectors 128..130 fail to read: both tools re-read the failed
# chunk sector by sector, warn for the same three offsets in the same
# words, and write the same copy (zeros where the source failed); the
# copies pass qemu-img check.  -q drops the warnings; without --salvage
# both fail.  A qcow2 source whose L1 entry is corrupt (block status and
# reads fail) is salvaged as qemu-img salvages it: the same zeros, and the
# warnings of qemu-img's copy pass (qemu-img warns about block status once
# more in its first, counting pass; tap-img has no such pass).
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io nbdkit python3

cd "$TEST_DIR"
qemu-img create -q -f raw src.raw 256k
qemu-io -f raw -c 'write -P 7 0 256k' src.raw >/dev/null
sock=$TEST_DIR/nk.sock
# shellcheck disable=SC2016 # the pread script is nbdkit's to expand
nbdkit -f -U "$sock" eval get_size='echo 262144' \
	pread='if [ $4 -lt 67072 ] && [ $(($4 + $3)) -gt 65536 ]; then
		echo "EIO bad sector" >&2; exit 1; fi
		dd if='"$TEST_DIR"'/src.raw iflag=skip_bytes,count_bytes skip=$4 count=$3 status=none' \
	2>nbdkit.log &
on_exit "kill $! 2>/dev/null"
wait_for_path "$sock" 30 || die "nbdkit did not start"
uri="nbd+unix:///?socket=$sock"

for fmt in raw qcow2; do
	rm -f "q.$fmt" "t.$fmt"
	qemu-img convert --salvage -f raw -O $fmt "$uri" "q.$fmt" 2>q.err || die "qemu-img failed"
	$TAPIMG convert --salvage -O $fmt "$uri" "t.$fmt" 2>t.err || die "--salvage -O $fmt failed: $(cat t.err)"
	sed -n 's/^qemu-img: warning: //p' q.err >q.msg
	sed -n 's/^tap-img: convert: warning: //p' t.err >t.msg
	[ "$(wc -l <q.msg)" -eq 3 ] || die "qemu-img warned $(cat q.msg): the test is stale"
	cmp -s q.msg t.msg || die "--salvage -O $fmt warned '$(cat t.msg)', qemu-img '$(cat q.msg)'"
	qemu-img compare -q -f $fmt -F $fmt "q.$fmt" "t.$fmt" || die "--salvage -O $fmt: copies differ"
	[ $fmt = raw ] || qemu-img check -q "t.$fmt" || die "--salvage: qemu-img check failed"
done
cmp q.raw t.raw || die "--salvage: raw copies differ"
qemu-io -f raw -c 'read -P 0 65536 1536' -c 'read -P 7 0 65536' -c 'read -P 7 67072 195584' t.raw |
	grep -c '^read' | grep -qx 3 || die "--salvage: the copy is not zeros exactly where reads failed"

rm -f t.raw
$TAPIMG convert -q --salvage -O raw "$uri" t.raw 2>t.err || die "-q --salvage failed"
grep -q warning t.err && die "-q --salvage still warns: $(cat t.err)"
cmp q.raw t.raw || die "-q --salvage: differs"
rm -f t.raw
$TAPIMG convert -O raw "$uri" t.raw 2>t.err && die "without --salvage the read error was ignored"
grep -q "error while reading" t.err || die "without --salvage: $(cat t.err)"

qemu-img create -q -f qcow2 cor.qcow2 64k
qemu-io -f qcow2 -c 'write -P 5 0 64k' cor.qcow2 >/dev/null
python3 - <<'PY' || die "could not corrupt the L1 entry"
import struct
with open("cor.qcow2", "r+b") as f:
    l1 = struct.unpack(">Q", f.read(48)[40:48])[0]
    f.seek(l1)
    e = struct.unpack(">Q", f.read(8))[0]
    f.seek(l1)
    f.write(struct.pack(">Q", e + 512))  # the L2 table offset is no longer aligned
PY
for fmt in raw qcow2; do
	rm -f "q.$fmt" "t.$fmt"
	qemu-img convert --salvage -f qcow2 -O $fmt cor.qcow2 "q.$fmt" 2>q.err || die "qemu-img failed"
	$TAPIMG convert --salvage -f qcow2 -O $fmt cor.qcow2 "t.$fmt" 2>t.err ||
		die "--salvage of a corrupt qcow2 -O $fmt failed: $(tail -3 t.err)"
	sed -n 's/^tap-img: convert: warning: //p' t.err >t.msg
	n=$(wc -l <t.msg)
	[ "$n" -eq 256 ] || die "--salvage of a corrupt qcow2: $n warnings, want 128 + 128"
	sed -n 's/^qemu-img: warning: //p' q.err | tail -n "$n" >q.msg
	cmp -s q.msg t.msg || die "--salvage of a corrupt qcow2: warnings differ from qemu-img's copy pass"
	qemu-img compare -q -f $fmt -F $fmt "q.$fmt" "t.$fmt" || die "--salvage of a corrupt qcow2: differs"
	[ $fmt = raw ] || qemu-img check -q "t.$fmt" || die "--salvage: qemu-img check failed"
done
echo "convert --salvage: as qemu-img"
