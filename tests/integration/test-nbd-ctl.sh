#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Exports added and removed through the control socket, and TCP: nbd-add
# on a unix socket and on 127.0.0.1 (a named export: the name and the
# default export both reach it, another name does not), info lists both
# frontends, fuse-add shows the same bytes as the NBD export, nbd-remove
# and fuse-remove take them away again while the image stays open; a
# second nbd-add with other settings is refused; a read sent while the
# image is paused is served after resume, and after a resize while paused
# new connections and the FUSE file have the new size; SIGTERM while paused
# with a read waiting fails the read and exits.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/nbd-lib.sh"
requires qemu-img qemu-io nbdinfo python3 jq

CTL="$PYTHON $TOP/tests/integration/ctl-client.py"
img=$(mktmp vm.qcow2)
ctl=$(mktmp ctl.sock)
sock=$(mktmp nbd.sock)
file=$(mktmp export.img)

qemu-img create -q -f qcow2 "$img" 32M
qemu-io -f qcow2 -c 'write -P 0x3c 0 1M' "$img" >/dev/null
td_start "$ctl" -a "qcow2:$img" --ctl "$ctl"

$CTL "$ctl" nbd-add "{\"addr\": \"unix:$sock\", \"name\": \"vm\"}" >/dev/null ||
	die "nbd-add on a unix socket failed"
# a free TCP port: try a few from a range of our own
port=$((20000 + $$ % 20000))
tries=0
until $CTL "$ctl" nbd-add "{\"addr\": \"tcp:127.0.0.1:$port\", \"name\": \"vm\"}" >/dev/null; do
	tries=$((tries + 1))
	[ "$tries" -lt 10 ] || die "nbd-add on TCP failed on 10 ports"
	port=$((port + 1))
done
out=$($CTL "$ctl" nbd-add "{\"addr\": \"unix:$sock.2\", \"name\": \"other\"}") &&
	die "a second export with another name was accepted"
echo "$out" | jq -e '.error == "EEXIST"' >/dev/null || die "other name: $out"

for uri in "nbd+unix:///vm?socket=$sock" "nbd+unix:///?socket=$sock" "nbd://127.0.0.1:$port/vm"; do
	qemu-io -f raw -r -c 'read -P 0x3c 0 1M' "$uri" | grep -q 'read 1048576' ||
		die "$uri does not read the image"
done
nbdinfo "nbd+unix:///nosuch?socket=$sock" >/dev/null 2>&1 && die "an unknown export name was served"
nbdinfo --list "nbd://127.0.0.1:$port" | grep -q 'export="vm"' || die "NBD_OPT_LIST does not show vm"

if [ -c /dev/fuse ] && $CTL "$ctl" fuse-add "{\"path\": \"$file\"}" >/dev/null; then
	on_exit "umount -l '$file' 2>/dev/null"
	qemu-io -f raw -c 'write -P 0x4d 4096 8192' "nbd+unix:///?socket=$sock" >/dev/null
	dd if="$file" bs=4096 skip=1 count=2 status=none | od -An -tx1 | sort -u |
		grep -qx ' 4d 4d 4d 4d 4d 4d 4d 4d 4d 4d 4d 4d 4d 4d 4d 4d' ||
		die "the FUSE file does not show what was written over NBD"
	$CTL "$ctl" info | jq -e '[.result.frontends[].kind] | sort == ["fuse", "nbd"]' \
		>/dev/null || die "info does not list both frontends"
	fuse=1
else
	echo "SKIP: FUSE part (no /dev/fuse or mounting not permitted)"
	fuse=0
fi

# Paused: a read waits, qemu-img may resize; resumed: the read is served,
# new NBD connections and the FUSE file see the new size.
$CTL "$ctl" pause >/dev/null || die "pause failed"
qemu-io -f raw -r -c 'read -P 0x3c 512k 64k' "nbd+unix:///?socket=$sock" >"$TEST_DIR/paused.out" 2>&1 &
qio=$!
qemu-img resize -q "$img" 48M || die "qemu-img resize while paused failed"
$CTL "$ctl" resume >/dev/null || die "resume failed"
wait "$qio" || die "the read sent while paused failed: $(cat "$TEST_DIR/paused.out")"
grep -q 'read 65536/65536' "$TEST_DIR/paused.out" || die "paused read: $(cat "$TEST_DIR/paused.out")"
[ "$(nbdinfo --size "nbd+unix:///?socket=$sock")" = 50331648 ] || die "NBD does not show the new size"

if [ "$fuse" = 1 ]; then
	[ "$(stat -c %s "$file")" = 50331648 ] || die "the FUSE file does not show the new size"
	$CTL "$ctl" fuse-remove "{\"path\": \"$file\"}" >/dev/null || die "fuse-remove failed"
	grep -q " $file fuse" /proc/self/mounts && die "fuse-remove left the mount"
fi

$CTL "$ctl" info | jq -e ".result.frontends[0].kind == \"nbd\" and
	(.result.frontends[0].addresses | length) == 2" >/dev/null || die "info: no nbd frontend"
$CTL "$ctl" nbd-remove >/dev/null || die "nbd-remove failed"
[ -e "$sock" ] && die "nbd-remove left the socket"
nbdinfo "nbd://127.0.0.1:$port/vm" >/dev/null 2>&1 && die "the TCP listener survived nbd-remove"
out=$($CTL "$ctl" nbd-remove) && die "a second nbd-remove succeeded"
echo "$out" | jq -e '.error == "ENOENT"' >/dev/null || die "nbd-remove: $out"
$CTL "$ctl" info | jq -e '.result.state == "open"' >/dev/null || die "the image closed"

# SIGTERM while paused, a read waiting: the read fails with ESHUTDOWN and
# tapdisk exits cleanly instead of waiting for it forever.
$CTL "$ctl" nbd-add "{\"addr\": \"unix:$sock\"}" >/dev/null || die "nbd-add again failed"
$CTL "$ctl" pause >/dev/null || die "pause failed"
qemu-io -f raw -r -c 'read 0 64k' "nbd+unix:///?socket=$sock" >"$TEST_DIR/stuck.out" 2>&1 &
qio=$!
deadline=$(($(date +%s) + 30))
until $CTL "$ctl" info | jq -e '.result.frontends[0].connections == 1' >/dev/null; do
	[ "$(date +%s)" -lt "$deadline" ] || die "qemu-io did not connect"
	sleep 0.1
done
td_stop "$TD_PID"
wait "$qio" && die "the read waiting in a paused image succeeded after shutdown"
qemu-img check -q "$img" || die "qemu-img check failed"
echo PASS
