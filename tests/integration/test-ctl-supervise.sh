#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Supervision: 32 tapdisks under one tapctld (8 under valgrind), each under
# a verified tap-front load where tap-front is here; one tapdisk is killed
# with SIGKILL.  Its death is logged and listed with the signal, its minor
# is released, and every other disk finishes its load with no error and
# stays running.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ctl-functions.sh"
requires_tapdisk
requires qemu-img

n=32
[ "${QTAP_VALGRIND:-0}" = 1 ] && n=8
victim=$((n / 2))
cd "$TEST_DIR"
start_tapctld --no-xen
for i in $(seq 0 $((n - 1))); do
	$TAPIMG create -f qcow2 "d$i.qcow2" 16M >/dev/null
	[ "$($TAPCTL create -a "qcow2:d$i.qcow2")" = "$i" ] || die "create d$i"
done
$TAPCTL_Q list --json >list.json
[ "$(jq '.disks | length' list.json)" = "$n" ] || die "not $n disks"

loads=()
if [ -x "$BIN/tap-front" ] && tapdisk_has attach-ring; then
	jq -r '.disks[] | "\(.minor) \(.ctl)"' list.json >ctls.txt
	while read -r i ctl; do
		"$BIN/tap-front" --ctl "$ctl" --rw randrw --bs 4k --qd 4 --ops 400 --span 2M --verify \
			--seed "$i" >"load$i.txt" 2>&1 &
		loads[i]=$!
	done <ctls.txt
else
	echo "note: no tap-front with ring attach here; supervision tested without I/O"
fi

vpid=$(jq -r ".disks[] | select(.minor == $victim) | .pid" list.json)
kill -KILL "$vpid"
deadline=$(($(date +%s) + CTL_WAIT))
until $TAPCTL_Q list | grep -q "^died: minor $victim, tapdisk $vpid .* killed by signal 9"; do
	[ "$(date +%s)" -lt "$deadline" ] || die "the death of minor $victim was not reported"
	sleep 0.1
done
grep -q "tapdisk $vpid serving minor $victim .* killed by signal 9; minor $victim released" \
	"$TEST_DIR/tapctld.log" || die "the death is not in the log"

for i in "${!loads[@]}"; do
	[ "$i" = "$victim" ] && continue
	wait "${loads[$i]}" || die "the load on minor $i failed: $(cat "load$i.txt")"
done
# The victim's frontend has lost its backend, as a guest would: stop it.
if [ -n "${loads[$victim]:-}" ]; then
	kill "${loads[$victim]}" 2>/dev/null || true
	wait "${loads[$victim]}" || true
fi

$TAPCTL_Q list --json >after.json
[ "$(jq '[.disks[] | select(.state == "running")] | length' after.json)" = $((n - 1)) ] ||
	die "the other disks are not all running"
[ "$($TAPCTL create -a "qcow2:d$victim.qcow2")" = "$victim" ] || die "minor $victim not released"
for i in $(seq 0 $((n - 1))); do
	$TAPCTL destroy -m "$i"
done
stop_tapctld
# A few of the survivors' images (checking all 31 costs more than it shows).
for i in 0 1 $((n - 1)); do
	qemu-img check -q "d$i.qcow2" || die "d$i.qcow2 does not check clean"
done
echo "supervision of $n tapdisks: ok"
