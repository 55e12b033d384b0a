#!/bin/sh
# SPDX-License-Identifier: MIT
#
# A ring attached to a paused disk: its requests wait (none fails), the
# image is qemu-img's meanwhile (a snapshot is taken), detach-ring is
# refused with EBUSY while requests wait in the paused disk (detaching
# would wait for a resume that the control thread could then never run),
# and after resume the load finishes and verifies; qemu-img check is clean
# and the snapshot is there.  Then SIGTERM while requests wait in a paused
# disk: tapdisk fails them (the frontend sees errors), shuts down cleanly
# and the image checks clean.  The pause comes first, so that the requests
# surely meet it however slow the machine is.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ring-functions.sh"
requires qemu-img python3 jq

img=$(mktmp vm.qcow2)
qemu-img create -q -f qcow2 "$img" 64M
start_tapdisk td "qcow2:$img"

$CTL "$td_sock" pause >/dev/null || die "pause failed"
front --rw randrw --qd 8 --runtime 1 --verify --fill 0 --seed 5 >"$TEST_DIR/run.out" 2>&1 &
fpid=$!
on_exit "kill -9 $fpid 2>/dev/null"

wait_info '.result.frontends[0].queues[0].inflight == 8'
qemu-img snapshot -c paused "$img" || die "no snapshot while paused"

ring=$($CTL "$td_sock" info | jq .result.frontends[0].ring)
out=$($CTL "$td_sock" detach-ring "{\"ring\": $ring}") && die "detach-ring while paused succeeded"
echo "$out" | jq -e '.error == "EBUSY" and (.message | contains("resume"))' >/dev/null ||
	die "detach-ring while paused: $out"

$CTL "$td_sock" resume >/dev/null || die "resume failed"
wait "$fpid" || die "the load failed across the pause: $(cat "$TEST_DIR/run.out")"
grep -q 'verify (seed 5): [0-9]* blocks read back, 0 wrong' "$TEST_DIR/run.out" ||
	die "$(cat "$TEST_DIR/run.out")"
stop_tapdisk
qemu-img check -q "$img" || die "qemu-img check failed"
qemu-img snapshot -l "$img" | grep -q paused || die "the snapshot is gone"

# SIGTERM with requests waiting in the paused disk.
start_tapdisk td2 "qcow2:$img"
$CTL "$td_sock" pause >/dev/null || die "pause failed"
front --rw randread --qd 8 --runtime 1 >"$TEST_DIR/run2.out" 2>&1 &
fpid=$!
on_exit "kill -9 $fpid 2>/dev/null"
wait_info '.result.frontends[0].queues[0].inflight == 8'
stop_tapdisk
wait "$fpid" && die "the requests failed by the shutdown were answered as good"
grep -q 'failed (status -1)' "$TEST_DIR/run2.out" || die "$(cat "$TEST_DIR/run2.out")"
qemu-img check -q "$img" || die "qemu-img check failed after the shutdown"
echo PASS
