#!/bin/sh
# SPDX-License-Identifier: MIT
#
# QEMU's qcow2 cache options at open, through every way in: tap-img io and
# convert --image-opts, tapdisk -o, the control protocol's open and
# tap-ctl create -o.  With
# the smallest L2 and refcount caches (512-byte clusters: slices are
# evicted all the time) data written reads back, through qemu-io too, and
# qemu-img check finds the image clean; a resume keeps the options; an
# option the driver does not take is refused naming it.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires qemu-img qemu-io python3 jq

cd "$TEST_DIR"
TD_LOG=$TEST_DIR/tapdisk.log
CTL="python3 $TOP/tests/integration/ctl-client.py"
qio() { qemu-io "$@" >/dev/null || die "qemu-io $* failed"; }
tiny=l2-cache-size=1,refcount-cache-size=1

n=12
[ -n "$VG" ] && n=4
qemu-img create -q -f qcow2 -o cluster_size=512 a.qcow2 16M
set --
i=0
while [ $i -lt $n ]; do
	set -- "$@" -c "write -P $((i + 1)) $((i * 1300))k 3k"
	i=$((i + 1))
done
$TAPIMG io --image-opts "$@" "driver=qcow2,file.filename=a.qcow2,$tiny" >/dev/null ||
	die "tap-img io --image-opts with tiny caches failed"
qemu-img check -q a.qcow2 || die "check after writes through tiny caches failed"
i=0
while [ $i -lt $n ]; do
	r="read -P $((i + 1)) $((i * 1300))k 3k"
	$TAPIMG io --image-opts -c "$r" "driver=qcow2,file.filename=a.qcow2,l2-cache-size=1" \
		>/dev/null || die "tap-img io $r"
	qio -f qcow2 -c "$r" a.qcow2
	i=$((i + 1))
done

# refused, naming the key
set +e
$TAPIMG io --image-opts -c 'read 0 1' driver=qcow2,file.filename=a.qcow2,l2-cache-sise=1 \
	>out 2>err
rc=$?
set -e
[ $rc -eq 1 ] || die "a misspelt option was accepted (exit $rc)"
grep -q "l2-cache-sise" err || die "the refusal does not name the key: $(cat err)"
$TAPIMG io --image-opts -c 'read 0 1' driver=raw,file.filename=a.qcow2,l2-cache-size=1 \
	>out 2>err && die "raw accepted a qcow2 option"
grep -q "l2-cache-size" err || die "raw's refusal does not name the key: $(cat err)"

$TAPIMG convert --image-opts -O raw "driver=qcow2,file.filename=a.qcow2,$tiny" a.raw ||
	die "convert --image-opts failed"
qemu-img compare -q -f raw -F qcow2 a.raw a.qcow2 || die "convert --image-opts: contents differ"

# tapdisk -o: served over NBD with tiny caches, paused and resumed
sock=$TEST_DIR/nbd.sock
ctl=$TEST_DIR/ctl.sock
out=$($BIN/tapdisk -a qcow2:a.qcow2 -o l2-cache-sise=1 --nbd "unix:$sock" 2>&1) &&
	die "tapdisk accepted a misspelt option"
echo "$out" | grep -q "l2-cache-sise" || die "tapdisk's refusal does not name the key: $out"
td_start "$ctl" -a qcow2:a.qcow2 -o "$tiny" --nbd "unix:$sock" --ctl "$ctl"
qio -f raw -c 'write -P 0x61 9M 300k' -c 'read -P 1 0 3k' "$(nbd_uri "$sock")"
$CTL "$ctl" pause >/dev/null || die "pause failed"
$CTL "$ctl" resume >/dev/null || die "resume with the options failed"
qio -f raw -c 'write -P 0x62 15M 64k' -c 'read -P 0x61 9M 300k' "$(nbd_uri "$sock")"
$CTL "$ctl" close >/dev/null || die "close failed"
# the control protocol's open: options refused naming the key, then accepted
out=$($CTL "$ctl" open "{\"spec\":\"qcow2:$TEST_DIR/a.qcow2\",\"options\":\"cache-sizes=1\"}") &&
	die "open accepted a misspelt option"
echo "$out" | jq -e '.message | contains("cache-sizes")' >/dev/null ||
	die "open's refusal does not name the key: $out"
$CTL "$ctl" open "{\"spec\":\"qcow2:$TEST_DIR/a.qcow2\",\"options\":\"cache-size=64k\"}" \
	>/dev/null || die "open with cache-size failed"
$CTL "$ctl" close >/dev/null || die "close failed"
td_stop "$TD_PID"
qemu-img check -q a.qcow2 || die "check after tapdisk failed"
qio -f qcow2 -c 'read -P 0x62 15M 64k' -c 'read -P 0x61 9M 300k' -c 'read -P 2 1300k 3k' a.qcow2

# tap-ctl create -o: through tapctld to the tapdisk it spawns
start_tapctld --no-xen
out=$($TAPCTL create -a qcow2:a.qcow2 -o l2-cache-sise=1 2>&1) &&
	die "tap-ctl create accepted a misspelt option"
echo "$out" | grep -q "l2-cache-sise" || die "tap-ctl's refusal does not name the key: $out"
m=$($TAPCTL create -a qcow2:a.qcow2 -o "$tiny" --nbd "unix:$TEST_DIR/ctl-nbd.sock") ||
	die "tap-ctl create -o $tiny failed"
qio -f raw -c 'write -P 0x63 5M 200k' -c 'read -P 0x62 15M 64k' \
	"$(nbd_uri "$TEST_DIR/ctl-nbd.sock")"
$TAPCTL destroy -m "$m" || die "tap-ctl destroy failed"
stop_tapctld
qemu-img check -q a.qcow2 || die "check after tap-ctl failed"
qio -f qcow2 -c 'read -P 0x63 5M 200k' a.qcow2
echo PASS
