#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tapctld restart: kill the daemon (SIGKILL) while its tapdisks serve I/O,
# start it again: it re-adopts the tapdisks that kept running (same minors
# and pids, list and stats work, the loads finish verified), reports the
# one that died while it was down and releases that minor; a graceful stop
# and start re-adopts too.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires_tapdisk

cd "$TEST_DIR"
for i in 0 1 2; do
	$TAPIMG create -f qcow2 "d$i.qcow2" 64M >/dev/null
done
start_tapctld --no-xen
for i in 0 1 2; do
	[ "$($TAPCTL create -a "qcow2:d$i.qcow2")" = "$i" ] || die "create d$i"
done
$TAPCTL list --json | jq -c '[.disks[] | {minor, pid}] | sort_by(.minor)' >before.json

# Loads over the ring while the daemon goes away (when tap-front is here).
loads=()
if [ -x "$BIN/tap-front" ] && tapdisk_has attach-ring; then
	secs=2
	[ "${QTAP_VALGRIND:-0}" = 1 ] && secs=4
	for i in 0 1; do
		# --ctl, not -m: tapctld is about to go away
		ctl=$($TAPCTL_Q list --json | jq -r ".disks[] | select(.minor == $i) | .ctl")
		"$BIN/tap-front" --ctl "$ctl" --rw randrw --bs 4k --qd 8 --runtime "$secs" --span 4M \
			--verify --seed "$i" >"load$i.txt" 2>&1 &
		loads+=($!)
	done
else
	echo "note: no tap-front with ring attach here; restart tested without I/O"
fi

kill -KILL "$TAPCTLD_PID"
wait "$TAPCTLD_PID" 2>/dev/null || true
TAPCTLD_PID=""
# While tapctld is down, the tapdisk of minor 2 dies.
pid2=$(jq -r '.[] | select(.minor == 2) | .pid' before.json)
kill -KILL "$pid2"
# (gone for good, not only signalled: else the new daemon may re-adopt it)
for _ in $(seq 200); do
	kill -0 "$pid2" 2>/dev/null || break
	sleep 0.05
done
kill -0 "$pid2" 2>/dev/null && die "tapdisk $pid2 outlives SIGKILL for 10 s"
start_tapctld --no-xen

$TAPCTL_Q list --json >after.json
jq -c '[.disks[] | {minor, pid}] | sort_by(.minor)' after.json >after-ids.json
jq -c '[.[] | select(.minor != 2)]' before.json | cmp -s - after-ids.json ||
	die "re-adoption: before $(cat before.json), after $(cat after-ids.json)"
[ "$(jq -r '.deaths[0].minor' after.json)" = 2 ] || die "the death of minor 2 is not listed"
grep -q "died while tapctld was not running" "$TEST_DIR/tapctld.log" ||
	die "the death of minor 2 is not logged"
$TAPCTL_Q list | grep -q "^died: minor 2" || die "list does not report the death"
[ "$($TAPCTL stats -m 1 | jq -r .state)" = running ] || die "stats on a re-adopted disk"

for i in "${!loads[@]}"; do
	wait "${loads[$i]}" || die "the load on minor $i failed across the restart: $(cat "load$i.txt")"
done

# Minor 2 is free again; a graceful stop and start re-adopts everything.
[ "$($TAPCTL create -a qcow2:d2.qcow2)" = 2 ] || die "minor 2 was not released"
stop_tapctld
start_tapctld --no-xen
[ "$($TAPCTL_Q list --json | jq '.disks | length')" = 3 ] || die "graceful restart lost disks"
$TAPCTL pause -m 0
$TAPCTL unpause -m 0
for i in 0 1 2; do
	$TAPCTL destroy -m "$i"
done
stop_tapctld
for i in 0 1 2; do
	qemu-img check -q "d$i.qcow2" || die "d$i.qcow2 does not check clean"
done
echo "tapctld restart: ok"
