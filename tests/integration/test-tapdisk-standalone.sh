#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The tapdisk program as an administrator starts it: wrong command lines
# are refused with a message naming what was wrong; started without -f it
# returns once the image and the control socket are ready, with its pid in
# the pid file; the control socket answers (ctl-client.py, written from
# docs/control-protocol.md); pause frees the image for qemu-img snapshot
# and resize, resume sees the new size; SIGTERM shuts it down cleanly,
# removing the socket and the pid file, and qemu-img check finds the image
# clean with the snapshot in it.
. "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io python3 jq

CTL="python3 $TOP/tests/integration/ctl-client.py"
TAPDISK="$VG $BIN/tapdisk"
base=$(mktmp base.raw)
img=$(mktmp vm.qcow2)
sock=$(mktmp td.sock)
pidf=$(mktmp td.pid)

qemu-img create -q -f raw "$base" 64M
qemu-io -f raw -c 'write -P 0x5a 0 1M' "$base" >/dev/null
qemu-img create -q -f qcow2 -b "$base" -F raw "$img"

# Wrong command lines: exit 1 and a message naming the fault.
refused() { # expected-message, args...
	want=$1
	shift
	out=$($BIN/tapdisk "$@" 2>&1) && die "tapdisk $* was accepted"
	echo "$out" | grep -qF -- "$want" || die "tapdisk $*: message was: $out"
}
refused "nothing to do" -f
refused "alone serves nothing" -a "qcow2:$img"
refused "-q '0'" -a "qcow2:$img" -q 0 --ctl "$sock"
refused "expected TYPE:PATH" -a "$img" --ctl "$sock"
refused "unknown option '--bogus'" --bogus
refused "-i 'posix'" --ctl "$sock" -i posix
refused "cannot serve qcow2:$TEST_DIR/none.qcow2" -a "qcow2:$TEST_DIR/none.qcow2" --ctl "$sock"
[ ! -e "$sock" ] || die "a failed start left $sock behind"
$BIN/tapdisk --help | grep -q -- "--ctl SOCKET" || die "--help does not describe --ctl"

# A daemon: back when ready.
$TAPDISK -a "qcow2:$img" -q 2 --ctl "$sock" --pid-file "$pidf" || die "tapdisk did not start"
[ -S "$sock" ] || die "no control socket at $sock"
pid=$(cat "$pidf")
on_exit "kill -9 $pid 2>/dev/null"
kill -0 "$pid" || die "the pid file names $pid, which is not running"
[ "$(stat -c %a "$sock")" = 600 ] || die "control socket mode is $(stat -c %a "$sock")"

$CTL "$sock" info >"$TEST_DIR/info.json" || die "info failed"
jq -e ".result.pid == $pid and .result.image.queues == 2 and .result.image.size == 67108864 \
	and .result.image.chain_depth == 2" "$TEST_DIR/info.json" >/dev/null ||
	die "info: $(cat "$TEST_DIR/info.json")"
$CTL "$sock" stats | jq -e '.result.ops.read.count == 0' >/dev/null || die "stats failed"
out=$($CTL "$sock" frobnicate) && die "an unknown command succeeded"
echo "$out" | jq -e '.error == "EOPNOTSUPP"' >/dev/null || die "unknown command: $out"

# Paused, the image is qemu-img's to change.
$CTL "$sock" pause >/dev/null || die "pause failed"
qemu-img check -q "$img" || die "qemu-img check failed on the paused image"
qemu-img snapshot -c snap1 "$img" || die "snapshot while paused failed"
qemu-img resize -q "$img" 128M || die "resize while paused failed"
$CTL "$sock" resume | jq -e '.result.image.size == 134217728' >/dev/null ||
	die "resume does not show the new size"

# SIGTERM: a clean exit.
kill -TERM "$pid"
deadline=$(($(date +%s) + 60))
while kill -0 "$pid" 2>/dev/null; do
	[ "$(date +%s)" -lt "$deadline" ] || die "tapdisk still running a minute after SIGTERM"
	sleep 0.05
done
[ ! -e "$sock" ] || die "the control socket was left behind"
[ ! -e "$pidf" ] || die "the pid file was left behind"
qemu-img check -q "$img" || die "qemu-img check failed after shutdown"
qemu-img snapshot -l "$img" | grep -q snap1 || die "the snapshot is gone"
qemu-io -f qcow2 -r -c 'read -P 0x5a 0 1M' "$img" | grep -q 'read 1048576' ||
	die "the backing file's data does not read through"
echo PASS
