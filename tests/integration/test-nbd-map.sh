#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Block status through NBD, with qemu-nbd as the oracle:
#  - nbdinfo --map (base:allocation) and --map=qemu:allocation-depth on a
#    qcow2 over a shorter qcow2 over a sparse raw file (data, zero clusters,
#    a compressed cluster, unallocated ranges at every depth, past the
#    backing file's end), and on a sparse raw file, equal qemu-nbd -A's;
#  - qemu:dirty-bitmap:NAME: a bitmap added with qemu-img bitmap --add, then
#    written through qtap, shows exactly the written ranges dirty, live
#    while serving and as qemu-nbd -B reads it after tapdisk closed the
#    image; a disabled bitmap shows what it had, unchanged.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io qemu-nbd nbdinfo

base=$(mktmp base.raw)
mid=$(mktmp mid.qcow2)
top=$(mktmp top.qcow2)
sparse=$(mktmp sparse.raw)
bm=$(mktmp bitmaps.qcow2)
tsock=$(mktmp qtap.sock)
qsock=$(mktmp qemu.sock)
tm=$(mktmp qtap.map)
qm=$(mktmp qemu.map)

qemu-img create -q -f raw "$base" 32M
qemu-io -f raw -c 'write -P 0x5a 0 4M' -c 'write -P 0x5b 20M 1M' "$base" >/dev/null
qemu-img create -q -f qcow2 -b "$base" -F raw "$mid" 48M
qemu-io -f qcow2 -c 'write -P 1 2M 1M' -c 'write -z 3M 512k' -c 'write -P 2 10M 64k' \
	"$mid" >/dev/null
qemu-img create -q -f qcow2 -b "$mid" -F qcow2 "$top" 64M
qemu-io -f qcow2 -c 'write -P 3 0 512k' -c 'write -z 1M 128k' -c 'write -P 4 2M 64k' \
	-c 'write -z 21M 64k' -c 'write -P 5 60M 64k' -c 'write -c -P 6 40M 64k' "$top" >/dev/null
qemu-img create -q -f raw "$sparse" 16M
qemu-io -f raw -c 'write -P 1 1M 1M' -c 'write -P 2 8M 64k' "$sparse" >/dev/null

same_maps() { # what, context ("" for base:allocation)
	nbdinfo --map$2 "$(nbd_uri "$tsock")" >"$tm" || die "$1: nbdinfo on qtap failed"
	nbdinfo --map$2 "$(nbd_uri "$qsock")" >"$qm" || die "$1: nbdinfo on qemu-nbd failed"
	diff -u "$qm" "$tm" >&2 || die "$1: the maps differ (qemu-nbd's, then qtap's)"
}

for spec in "qcow2:$top" "raw:$sparse"; do
	td_start "$tsock" -a "$spec" -R --nbd "unix:$tsock"
	qnbd_start "$qsock" -r -A -f "${spec%%:*}" "${spec#*:}"
	same_maps "$spec base:allocation" ""
	same_maps "$spec qemu:allocation-depth" "=qemu:allocation-depth"
	td_stop "$TD_PID"
	qnbd_stop "$QNBD_PID"
done

# Dirty bitmaps: b1 recorded two writes and was disabled; b0 is new.
qemu-img create -q -f qcow2 "$bm" 64M
qemu-img bitmap --add "$bm" b1
qemu-io -f qcow2 -c 'write -P 1 0 128k' -c 'write -P 2 40M 64k' "$bm" >/dev/null
qemu-img bitmap --disable "$bm" b1
qemu-img bitmap --add "$bm" b0

cat >"$TEST_DIR/b0.want" <<'MAP'
         0     4194304    0  clean
   4194304     1048576    1  dirty
   5242880     5242880    0  clean
  10485760       65536    1  dirty
  10551296    10420224    0  clean
  20971520      131072    1  dirty
  21102592    10354688    0  clean
  31457280       65536    1  dirty
  31522816    35586048    0  clean
MAP
cat >"$TEST_DIR/b1.want" <<'MAP'
         0      131072    1  dirty
    131072    41811968    0  clean
  41943040       65536    1  dirty
  42008576    25100288    0  clean
MAP

td_start "$tsock" -a "qcow2:$bm" --nbd "unix:$tsock"
uri=$(nbd_uri "$tsock")
nbdinfo --map=qemu:dirty-bitmap:b0 "$uri" | grep -qx '  *0  *67108864  *0  clean' ||
	die "b0 is not all clean before the writes"
# unaligned and partial granules mark whole granules, as QEMU marks them
qemu-io -f raw -c 'write -P 3 4M 1M' -c 'write -P 4 10489856 4096' -c 'write -z 20M 128k' \
	-c 'discard 30M 64k' "$uri" >/dev/null
nbdinfo --map=qemu:dirty-bitmap:b0 "$uri" | grep -c dirty | grep -qx 4 ||
	die "b0 does not show four dirty ranges after the writes"
nbdinfo --map=qemu:dirty-bitmap:b0 "$uri" >"$tm"
diff -u "$TEST_DIR/b0.want" "$tm" >&2 || die "b0 while serving differs from the writes"
nbdinfo --map=qemu:dirty-bitmap:b1 "$uri" >"$tm"
diff -u "$TEST_DIR/b1.want" "$tm" >&2 || die "the disabled bitmap b1 changed"
td_stop "$TD_PID"

qemu-img check -q "$bm" || die "qemu-img check failed on the bitmap image"
qnbd_start "$qsock" -r -B b0 -B b1 -f qcow2 "$bm"
nbdinfo --map=qemu:dirty-bitmap:b0 "$(nbd_uri "$qsock")" >"$qm"
diff -u "$TEST_DIR/b0.want" "$qm" >&2 || die "qemu-nbd reads b0 differently after tapdisk closed"
nbdinfo --map=qemu:dirty-bitmap:b1 "$(nbd_uri "$qsock")" >"$qm"
diff -u "$TEST_DIR/b1.want" "$qm" >&2 || die "qemu-nbd reads b1 differently after tapdisk closed"
qnbd_stop "$QNBD_PID"
echo PASS
