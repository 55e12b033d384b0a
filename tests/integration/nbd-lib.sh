# SPDX-License-Identifier: MIT
#
# Sourced after functions.sh by the NBD and FUSE tests:
#
#   td_start WAITPATH ARGS...  tapdisk -f ARGS in the background (under $VG),
#                              back once WAITPATH exists; its pid in $TD_PID
#   td_stop PID                SIGTERM; fails unless it exits 0 (valgrind's
#                              errors and leaks included)
#   qnbd_start SOCKET ARGS...  qemu-nbd -t -k SOCKET ARGS; pid in $QNBD_PID
#   nbd_uri SOCKET [NAME]      the nbd+unix:// URI of an export
#   $PYTHON                    the system's python3 (a version manager's
#                              shim in PATH can take seconds to start)
TD_LOG=$TEST_DIR/tapdisk.log
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=python3

td_start() {
	_td_wait=$1
	shift
	# shellcheck disable=SC2086
	$VG "$BIN/tapdisk" -f "$@" >>"$TD_LOG" 2>&1 &
	TD_PID=$!
	on_exit "kill -9 $TD_PID 2>/dev/null"
	if ! wait_for_path "$_td_wait" 120; then
		cat "$TD_LOG" >&2
		die "tapdisk $* did not create $_td_wait"
	fi
}

td_stop() {
	kill -TERM "$1"
	_td_rc=0
	wait "$1" || _td_rc=$?
	if [ "$_td_rc" -ne 0 ]; then
		tail -n 40 "$TD_LOG" >&2
		die "tapdisk (pid $1) exited with status $_td_rc"
	fi
}

qnbd_start() {
	_q_sock=$1
	shift
	qemu-nbd -t -k "$_q_sock" "$@" >>"$TEST_DIR/qemu-nbd.log" 2>&1 &
	QNBD_PID=$!
	on_exit "kill $QNBD_PID 2>/dev/null"
	wait_for_path "$_q_sock" 30 || die "qemu-nbd $* did not start"
}

qnbd_stop() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

nbd_uri() {
	echo "nbd+unix:///${2:-}?socket=$1"
}
