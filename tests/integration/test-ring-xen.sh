#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The Xen ring transport on a host without Xen: attach-ring with transport
# "xen" (what tapctld sends after the xenstore handshake) is refused with a
# reply saying why (no /dev/xen/gntdev: not a Xen host, or the module is
# not loaded, or not root), the client exits non-zero, and tapdisk is left
# as it was: still serving, no frontend attached, no descriptor more than
# before and nothing of /dev/xen mapped.
. "$(dirname "$0")/functions.sh"
. "$(dirname "$0")/ring-functions.sh"
requires python3 jq
[ -e /dev/xen/gntdev ] && skip "this is a Xen host: the test is about hosts without Xen"

img=$(mktmp disk.raw)
truncate -s 16M "$img"
start_tapdisk td "raw:$img"

fds_before=$(ls /proc/"$td_pid"/fd | wc -l)
args='{"transport": "xen", "protocol": "x86_64-abi", "domid": 3, "order": 1,
       "refs": [[8, 9]], "ports": [17]}'
if $CTL "$td_sock" attach-ring "$args" >"$TEST_DIR/reply.json"; then
	die "attach-ring over Xen succeeded on a host without Xen"
fi
jq -e '.ok == false and .error == "ENOENT"' "$TEST_DIR/reply.json" >/dev/null ||
	die "unexpected reply: $(cat "$TEST_DIR/reply.json")"
msg=$(jq -r .message "$TEST_DIR/reply.json")
case $msg in
*"/dev/xen/gntdev"*"not a Xen host"* | *"/dev/xen/gntdev"*"modprobe xen-gntdev"*) ;;
*) die "the refusal does not say why: $msg" ;;
esac

# Nothing left behind, and the disk still served.
[ "$(ls /proc/"$td_pid"/fd | wc -l)" = "$fds_before" ] || die "tapdisk has more descriptors"
! grep -q /dev/xen /proc/"$td_pid"/maps || die "tapdisk still maps something of /dev/xen"
$CTL "$td_sock" info | jq -e '.result.frontends | length == 0' >/dev/null ||
	die "a frontend was left attached"
front --rw randrw --qd 4 --ops 500 --verify --fill 0 >/dev/null || die "tapdisk stopped serving"

# A malformed Xen attach is refused as such.
out=$($CTL "$td_sock" attach-ring '{"transport": "xen", "refs": [[8]], "ports": [17]}') &&
	die "attach-ring without a domain succeeded"
echo "$out" | jq -e '.error == "EINVAL" and (.message | contains("domid"))' >/dev/null ||
	die "missing domid: $out"
stop_tapdisk
echo PASS
