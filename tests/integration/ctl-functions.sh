# SPDX-License-Identifier: MIT
#
# Sourced by the control-plane tests, after functions.sh:
#
#   requires_tapdisk        skip unless build/bin/tapdisk exists
#   tapdisk_has CMD         does this tapdisk know control command CMD?
#   start_tapctld [ARGS]    tapctld -f on $TAPCTLD_SOCKET with state in
#                           $CTL_STATE (under valgrind with QTAP_VALGRIND=1),
#                           waits until it answers; $TAPCTLD_PID
#   stop_tapctld            SIGTERM, and fail if it did not exit 0
#   $TAPCTL                 tap-ctl (under valgrind with QTAP_VALGRIND=1)
#   $TAPCTL_Q               tap-ctl never under valgrind: for the many queries
#                           a test parses (valgrind's start-up is slow)
#   expect_fail CODE WORDS CMD...   CMD must exit CODE, saying WORDS on stderr
#
# Every tapdisk a test started is killed at exit (they run in sessions of
# their own, so that they outlive tapctld).

TAPCTLD_SOCKET=$TEST_DIR/tapctld.sock
export TAPCTLD_SOCKET
CTL_STATE=$TEST_DIR/state
TAPCTL="$VG $BIN/tap-ctl"
TAPCTL_Q=$BIN/tap-ctl
TAPCTLD_PID=""
# Seconds to wait for things; valgrind is slow.
CTL_WAIT=20
[ "${QTAP_VALGRIND:-0}" = 1 ] && CTL_WAIT=120

requires_tapdisk() {
	[ -x "$BIN/tapdisk" ] || skip "tapdisk is not built here (it comes with branch tapdisk)"
	requires jq
}

# Control command names are string literals in the tapdisk program.
tapdisk_has() {
	grep -qaF "$1" "$BIN/tapdisk"
}

start_tapctld() {
	$VG "$BIN/tapctld" -f -S "$TAPCTLD_SOCKET" --state-dir "$CTL_STATE" \
		--tapdisk "$BIN/tapdisk" "$@" 2>>"$TEST_DIR/tapctld.log" &
	TAPCTLD_PID=$!
	_deadline=$(($(date +%s) + CTL_WAIT))
	until "$BIN/tap-ctl" list >/dev/null 2>&1; do
		kill -0 "$TAPCTLD_PID" 2>/dev/null || {
			cat "$TEST_DIR/tapctld.log" >&2
			die "tapctld exited at start"
		}
		[ "$(date +%s)" -lt "$_deadline" ] || die "tapctld did not answer within ${CTL_WAIT}s"
		sleep 0.05
	done
}

stop_tapctld() {
	[ -n "$TAPCTLD_PID" ] || return 0
	kill -TERM "$TAPCTLD_PID"
	_rc=0
	wait "$TAPCTLD_PID" || _rc=$?
	TAPCTLD_PID=""
	[ "$_rc" -eq 0 ] || {
		tail -n 40 "$TEST_DIR/tapctld.log" >&2
		die "tapctld exited with status $_rc"
	}
}

_ctl_cleanup() {
	# Loads (tap-front) a failed test left in the background.
	for _job in $(jobs -p); do
		kill "$_job" 2>/dev/null
	done
	[ -n "$TAPCTLD_PID" ] && kill -KILL "$TAPCTLD_PID" 2>/dev/null
	for _rec in "$CTL_STATE"/tapdisk-*.json; do
		[ -f "$_rec" ] || continue
		_pid=$(jq -r .pid "$_rec" 2>/dev/null) || continue
		[ -n "$_pid" ] && kill -KILL "$_pid" 2>/dev/null
	done
	[ -f "$TEST_DIR/tapctld.log" ] && { echo "--- tapctld log"; tail -n 60 "$TEST_DIR/tapctld.log"; }
}
on_exit _ctl_cleanup

expect_fail() { # code words cmd...
	_code=$1 _words=$2
	shift 2
	_rc=0
	"$@" >"$TEST_DIR/out" 2>"$TEST_DIR/err" || _rc=$?
	[ "$_rc" -eq "$_code" ] || die "'$*' exited $_rc, not $_code: $(cat "$TEST_DIR/err")"
	grep -qiF -- "$_words" "$TEST_DIR/err" ||
		die "'$*' did not say '$_words': $(cat "$TEST_DIR/err")"
}
