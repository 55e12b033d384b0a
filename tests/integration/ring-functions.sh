# SPDX-License-Identifier: MIT
#
# Sourced by the ring tests after functions.sh:
#
#   start_tapdisk NAME SPEC [ARGS...]  a tapdisk daemon serving SPEC with its
#                                      control socket at $TEST_DIR/NAME.sock;
#                                      sets $td_pid and $td_sock, and kills it
#                                      at exit
#   stop_tapdisk                       SIGTERM, and wait for a clean exit
#   front ARGS...                      tap-front against $td_sock (under $VG)
#   scaled N                           N, or N/8 under valgrind
TAPFRONT="$VG $BIN/tap-front"

start_tapdisk() {
	_name=$1
	_spec=$2
	shift 2
	td_sock=$TEST_DIR/$_name.sock
	_pidf=$TEST_DIR/$_name.pid
	$VG "$BIN/tapdisk" -a "$_spec" --ctl "$td_sock" --pid-file "$_pidf" "$@" ||
		die "tapdisk did not start on $_spec"
	td_pid=$(cat "$_pidf")
	on_exit "kill -9 $td_pid 2>/dev/null"
}

stop_tapdisk() {
	kill -TERM "$td_pid"
	_deadline=$(($(date +%s) + 60))
	while kill -0 "$td_pid" 2>/dev/null; do
		[ "$(date +%s)" -lt "$_deadline" ] || die "tapdisk still running a minute after SIGTERM"
		sleep 0.05
	done
}

front() {
	$TAPFRONT --ctl "$td_sock" "$@"
}

scaled() {
	if [ "${QTAP_VALGRIND:-0}" = 1 ]; then echo $(($1 / 8)); else echo "$1"; fi
}
