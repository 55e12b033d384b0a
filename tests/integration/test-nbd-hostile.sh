#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Hostile and broken NBD clients (nbd-hostile.py, written from the protocol
# document): unknown client flags, bad magics, unknown and oversized
# options, unknown exports, out-of-range, oversized and unknown requests,
# bad flags, hang-ups in the middle of a message, many idle connections,
# and a client that sends reads and never reads the replies.  Each gets
# the protocol's error or a closed connection; meanwhile a well-behaved
# client (qemu-io) keeps reading and writing correctly, the server exits
# cleanly (the slow reader still connected), the image passes qemu-img
# check and holds exactly what the well-behaved writes put there.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io python3

HOSTILE="$PYTHON $TOP/tests/integration/nbd-hostile.py"
img=$(mktmp vm.qcow2)
sock=$(mktmp nbd.sock)
slow_out=$(mktmp slow.out)

qemu-img create -q -f qcow2 "$img" 64M
qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' "$img" >/dev/null
td_start "$sock" -a "qcow2:$img" -q 2 --nbd "unix:$sock"
uri=$(nbd_uri "$sock")

# The slow reader first: it stays connected, its replies unread, throughout.
$HOSTILE "$sock" --slow-reader >"$slow_out" 2>&1 &
slow=$!
on_exit "kill $slow 2>/dev/null"
deadline=$(($(date +%s) + 30))
until grep -q 'reads sent' "$slow_out"; do
	[ "$(date +%s)" -lt "$deadline" ] || die "the slow reader did not start: $(cat "$slow_out")"
	sleep 0.1
done
cat "$slow_out"

$HOSTILE "$sock" 67108864 0x5a || die "the server mishandled a hostile client"

out=$(timeout 60 qemu-io -f raw -c 'write -P 0x77 8M 2M' -c 'read -P 0x77 8M 2M' \
	-c 'write -P 0x78 16777000 1000' -c 'read -P 0x78 16777000 1000' \
	-c 'read -P 0x5a 0 1M' -c 'flush' "$uri" 2>&1) || die "qemu-io failed: $out"
if echo "$out" | grep -E -i 'fail|error'; then
	die "the well-behaved client got wrong data next to the hostile ones"
fi
# shutdown with the slow reader still connected: its unread replies hold
# the server up for a few seconds at most
start=$(date +%s)
td_stop "$TD_PID"
[ $(($(date +%s) - start)) -lt 60 ] || die "the slow reader held up the shutdown"
kill "$slow"
wait "$slow" 2>/dev/null || true

qemu-img check -q "$img" || die "qemu-img check failed"
out=$(qemu-io -f qcow2 -r -c 'read -P 0x5a 0 1M' -c 'read -P 0 1M 7M' -c 'read -P 0x77 8M 2M' \
	-c 'read -P 0x78 16777000 1000' -c 'read -P 0 16778000 47M' "$img" 2>&1)
if echo "$out" | grep -E -i 'fail|error'; then
	die "the image does not hold what the well-behaved client wrote, and only that"
fi
echo PASS
