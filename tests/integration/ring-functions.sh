# SPDX-License-Identifier: MIT
#
# Sourced by the ring tests after functions.sh:
#
#   start_tapdisk NAME SPEC [ARGS...]  tapdisk serving SPEC in the foreground
#                                      (a child, so its exit status counts;
#                                      its log in $TEST_DIR/NAME.log) with its
#                                      control socket at $TEST_DIR/NAME.sock;
#                                      sets $td_pid and $td_sock, and kills it
#                                      at exit
#   stop_tapdisk                       SIGTERM; it must exit 0 (under ASan or
#                                      valgrind: no error at exit either)
#   front ARGS...                      tap-front against $td_sock (under $VG)
#   scaled N                           N, or N/8 under valgrind
#   wait_info JQ_TEST                  tapdisk's `info` on $td_sock until
#                                      JQ_TEST holds on it (at most 20 s)
#   $CTL                               the control client (ctl-client.py)
TAPFRONT="$VG $BIN/tap-front"

start_tapdisk() {
	_name=$1
	_spec=$2
	shift 2
	td_sock=$TEST_DIR/$_name.sock
	td_log=$TEST_DIR/$_name.log
	$VG "$BIN/tapdisk" -a "$_spec" --ctl "$td_sock" -f "$@" 2>"$td_log" &
	td_pid=$!
	on_exit "kill -9 $td_pid 2>/dev/null"
	wait_for_path "$td_sock" 60 || die "tapdisk did not start on $_spec: $(cat "$td_log")"
}

stop_tapdisk() {
	kill -TERM "$td_pid"
	wait "$td_pid" || die "tapdisk exited with status $? after SIGTERM: $(tail -20 "$td_log")"
}

front() {
	$TAPFRONT --ctl "$td_sock" "$@"
}

scaled() {
	if [ "${QTAP_VALGRIND:-0}" = 1 ]; then echo $(($1 / 8)); else echo "$1"; fi
}

CTL="python3 $TOP/tests/integration/ctl-client.py"

wait_info() {
	_deadline=$(($(date +%s) + 20))
	until $CTL "$td_sock" info | jq -e "$1" >/dev/null; do
		[ "$(date +%s)" -lt "$_deadline" ] ||
			die "info never showed $1: $($CTL "$td_sock" info)"
		sleep 0.05
	done
}
