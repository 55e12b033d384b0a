#!/bin/sh
# SPDX-License-Identifier: MIT
#
# A frontend that dies with requests in flight: tap-front attaches with
# detach_on_close, is killed with SIGKILL in the middle of a write load,
# and tapdisk detaches its rings by itself once their requests are
# answered (info lists no frontend, the log says why); it keeps serving (a
# new tap-front verifies), shuts down cleanly, and qemu-img check is clean.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ring-functions.sh"
requires qemu-img python3 jq

img=$(mktmp vm.qcow2)
qemu-img create -q -f qcow2 "$img" 64M
start_tapdisk td "qcow2:$img" -q 2


# not through front(): $! must be tap-front itself, not a subshell
$TAPFRONT --ctl "$td_sock" --rw randwrite --qd 16 --queues 2 --runtime 60 \
	>"$TEST_DIR/run.out" 2>&1 &
fpid=$!
on_exit "kill -9 $fpid 2>/dev/null"
wait_info '.result.frontends[0].queues[1].requests > 50'
kill -9 "$fpid"
wait "$fpid" 2>/dev/null || true
wait_info '.result.frontends | length == 0'
grep -q 'the control connection that attached it closed; detaching' "$td_log" ||
	die "no word of the detach in the log: $(tail -5 "$td_log")"

front --rw randrw --qd 8 --queues 2 --ops "$(scaled 2000)" --verify --seed 3 \
	>"$TEST_DIR/run2.out" 2>&1 || die "serving after the death failed: $(cat "$TEST_DIR/run2.out")"
grep -q ' 0 wrong' "$TEST_DIR/run2.out" || die "$(cat "$TEST_DIR/run2.out")"
$CTL "$td_sock" info | jq -e '.result.frontends | length == 0' >/dev/null ||
	die "the ring of a frontend that detached is still listed"
stop_tapdisk
qemu-img check -q "$img" || die "qemu-img check failed"
echo "ok"
