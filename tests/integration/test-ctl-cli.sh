#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tap-ctl <-> tapctld round trip: create on raw and qcow2 (with NBD and
# FUSE exports when the tapdisk has them), list as text and JSON, stats,
# pause, unpause, destroy; the low-level spawn/attach/open/close/detach;
# tapctld as a daemon; and every wrong argument giving a clear error and a
# non-zero exit.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires_tapdisk

cd "$TEST_DIR"
$TAPIMG create -f raw disk.raw 16M >/dev/null
$TAPIMG create -f qcow2 disk.qcow2 32M >/dev/null
start_tapctld --no-xen

# create (relative paths become absolute: tapctld runs in /)
exports=()
tapdisk_has nbd-add && exports+=(--nbd "unix:$TEST_DIR/nbd.sock")
if tapdisk_has fuse-add; then
	exports+=(--fuse "$TEST_DIR/fuse.img")
	: >"$TEST_DIR/fuse.img"
fi
m_raw=$($TAPCTL create -a aio:disk.raw)
m_q=$($TAPCTL create -a qcow2:disk.qcow2 "${exports[@]}")
[ "$m_raw" = 0 ] && [ "$m_q" = 1 ] || die "minors $m_raw, $m_q: expected 0 and 1"

# list, text and JSON
$TAPCTL list >list.txt
grep -q "^0 .*running .*aio:$TEST_DIR/disk.raw" list.txt || die "list: $(cat list.txt)"
grep -q "^1 .*running .*qcow2:$TEST_DIR/disk.qcow2" list.txt || die "list: $(cat list.txt)"
$TAPCTL_Q list --json >list.json
[ "$(jq '.disks | length' list.json)" = 2 ] || die "list --json: $(cat list.json)"
[ "$(jq -r '.disks[] | select(.minor == 1) | .state' list.json)" = running ] ||
	die "list --json: minor 1 not running"

if tapdisk_has nbd-add; then
	requires nbdinfo
	nbdinfo --size "nbd+unix:///?socket=$TEST_DIR/nbd.sock" | grep -qx 33554432 ||
		die "the NBD export does not show the disk's size"
	grep -q "nbd=unix:$TEST_DIR/nbd.sock" list.txt || die "list does not show the NBD export"
else
	echo "note: this tapdisk has no nbd-add command yet; the NBD export is not tested"
fi
if tapdisk_has fuse-add; then
	[ "$(stat -c %s "$TEST_DIR/fuse.img")" = 33554432 ] || die "the FUSE file has the wrong size"
	grep -q "fuse=$TEST_DIR/fuse.img" list.txt || die "list does not show the FUSE export"
else
	echo "note: this tapdisk has no fuse-add command yet; the FUSE export is not tested"
fi

# stats: tapctld's view plus the tapdisk's counters
$TAPCTL stats -m "$m_q" >stats.json
[ "$(jq -r .state stats.json)" = running ] || die "stats: $(cat stats.json)"
jq -e '.tapdisk | type == "object"' stats.json >/dev/null || die "stats has no tapdisk counters"

# pause and unpause, and their wrong states
$TAPCTL pause -m "$m_q"
[ "$($TAPCTL_Q list --json | jq -r '.disks[] | select(.minor == 1) | .state')" = paused ] ||
	die "pause did not show in list"
expect_fail 1 "only a running disk" $TAPCTL pause -m "$m_q"
$TAPCTL unpause -m "$m_q"
expect_fail 1 "only a paused disk" $TAPCTL unpause -m "$m_q"
[ "$($TAPCTL stats -m "$m_q" | jq -r .state)" = running ] || die "unpause did not take"

# wrong arguments: usage errors exit 2, refusals 1, each saying why (not
# under valgrind: the paths are short, and valgrind's start-up is not)
TAPCTL_PLAIN=$BIN/tap-ctl
expect_fail 2 "which disk" $TAPCTL pause
expect_fail 2 "Usage" $TAPCTL_PLAIN
expect_fail 2 "unknown command 'frobnicate'" $TAPCTL_PLAIN frobnicate
expect_fail 2 "-a TYPE:PATH is required" $TAPCTL_PLAIN create
expect_fail 2 "an image is TYPE:PATH" $TAPCTL_PLAIN create -a disk.raw
expect_fail 2 "-m MINOR is required" $TAPCTL_PLAIN pause
expect_fail 2 "-m 'abc'" $TAPCTL_PLAIN pause -m abc
expect_fail 2 "needs a value" $TAPCTL_PLAIN destroy -m
expect_fail 2 "not one of this command's" $TAPCTL_PLAIN pause -m 0 --nbd unix:/x
expect_fail 2 "not one of this command's" $TAPCTL_PLAIN list -Z
expect_fail 2 "unix:PATH or tcp:HOST:PORT" $TAPCTL_PLAIN create -a aio:disk.raw --nbd /x
expect_fail 2 "KEY=VALUE" $TAPCTL_PLAIN create -a aio:disk.raw -o novalue
expect_fail 2 "unexpected argument" $TAPCTL_PLAIN list extra
expect_fail 1 "no disk has minor 99" $TAPCTL_PLAIN pause -m 99
expect_fail 1 "no disk has minor 99" $TAPCTL_PLAIN destroy -m 99
expect_fail 1 "no disk has minor 99" $TAPCTL_PLAIN stats -m 99
expect_fail 1 "$TEST_DIR/missing.qcow2" $TAPCTL_PLAIN create -a qcow2:missing.qcow2
expect_fail 1 "no tapdisk of this tapctld has pid 1" $TAPCTL_PLAIN attach -p 1
expect_fail 1 "cannot reach tapctld at $TEST_DIR/nowhere.sock" $TAPCTL_PLAIN -S "$TEST_DIR/nowhere.sock" list
TAPCTLD_SOCKET=$TEST_DIR/nowhere.sock expect_fail 1 "is tapctld running" $TAPCTL_PLAIN list
[ "$($TAPCTL_PLAIN list --json | jq '.disks | length')" = 2 ] ||
	die "a failed create left a tapdisk behind: $($TAPCTL_PLAIN list)"

# destroy
$TAPCTL destroy -m "$m_raw"
$TAPCTL destroy -m "$m_q"
[ "$($TAPCTL_Q list --json | jq '.disks | length')" = 0 ] || die "destroy left disks"
ls "$CTL_STATE"/tapdisk-* 2>/dev/null && die "destroy left state records or sockets"

# the low-level verbs: spawn, attach, open, close, detach
pid=$($TAPCTL spawn)
[ "$($TAPCTL_Q list --json | jq -r ".disks[] | select(.pid == $pid) | .state")" = spawned ] ||
	die "spawn: not listed"
m=$($TAPCTL attach -p "$pid" -m 5)
[ "$m" = 5 ] || die "attach -m 5 gave minor $m"
expect_fail 1 "already has minor 5" $TAPCTL attach -p "$pid"
expect_fail 1 "no image open" $TAPCTL close -m 5
$TAPCTL open -m 5 -a qcow2:disk.qcow2 -R
[ "$($TAPCTL_Q list --json | jq -r '.disks[0].state')" = running ] || die "open: not running"
expect_fail 1 "close it first" $TAPCTL detach -m 5
$TAPCTL close -m 5
[ "$($TAPCTL_Q list --json | jq -r '.disks[0].state')" = attached ] || die "close: not attached"
$TAPCTL detach -m 5
kill -0 "$pid" 2>/dev/null && die "detach left tapdisk $pid running"

# A second tapctld on the same state directory is refused.
rc=0
"$BIN/tapctld" -f -S "$TEST_DIR/other.sock" --state-dir "$CTL_STATE" --no-xen 2>err.txt || rc=$?
[ "$rc" = 1 ] && grep -q "another tapctld" err.txt || die "second tapctld: rc $rc, $(cat err.txt)"
stop_tapctld

# As a daemon: returns once the socket answers, writes its pid, and stops on SIGTERM.
"$BIN/tapctld" -S "$TEST_DIR/d.sock" --state-dir "$TEST_DIR/dstate" --no-xen \
	--pid-file "$TEST_DIR/d.pid"
dpid=$(cat "$TEST_DIR/d.pid")
on_exit "kill $dpid 2>/dev/null"
[ "$(stat -c %a "$TEST_DIR/d.sock")" = 600 ] || die "the socket is not mode 0600"
$TAPCTL -S "$TEST_DIR/d.sock" list >/dev/null || die "the daemon does not answer"
kill "$dpid"
for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$dpid" 2>/dev/null && die "the daemon ignored SIGTERM"
[ -e "$TEST_DIR/d.sock" ] && die "the daemon left its socket"
echo "tap-ctl round trip: ok"
