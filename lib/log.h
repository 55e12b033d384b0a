/* SPDX-License-Identifier: MIT */
/*
 * Logging for every qtap program.
 *
 * Each line carries the program name, the pid and, once set, the disk it
 * serves ("tapdisk[1234] qcow2:/img/vm.qcow2: ..."), because a dom0 runs many
 * tapdisk processes and a line without its disk is useless.  Errors and
 * warnings always print; debug lines print only for the subsystems enabled
 * with -D (log_set_debug_flags) or the QTAP_DEBUG environment variable, and
 * the flag is tested before anything is formatted so disabled debug output
 * costs one branch on the I/O path.
 *
 * Every function here preserves errno, so `%m` works in the message and the
 * caller may still read errno afterwards.  All functions are thread-safe.
 */
#ifndef QTAP_LOG_H
#define QTAP_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_ERR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* Debug subsystems; names for -D are listed in log.c. */
enum log_flag {
	LOG_F_AIO = 1u << 0,
	LOG_F_LOOP = 1u << 1,
	LOG_F_RAW = 1u << 2,
	LOG_F_QCOW2 = 1u << 3,
	LOG_F_VBD = 1u << 4,
	LOG_F_RING = 1u << 5,
	LOG_F_NBD = 1u << 6,
	LOG_F_FUSE = 1u << 7,
	LOG_F_CTL = 1u << 8,
	LOG_F_XEN = 1u << 9,
	LOG_F_TOOL = 1u << 10,
	LOG_F_ALL = (1u << 11) - 1,
};

/* Where lines go: stderr (default) or syslog (daemons). */
enum log_dest {
	LOG_DEST_STDERR = 0,
	LOG_DEST_SYSLOG,
};

/*
 * log_init - name the program; also reads QTAP_DEBUG (same syntax as -D).
 * Call once from main() before any other thread starts.  @prog is copied.
 */
void log_init(const char *prog);

/* log_set_disk - set (or clear with NULL) the disk identity in the prefix. */
void log_set_disk(const char *disk);

/* log_set_dest - send lines to stderr or syslog. */
void log_set_dest(enum log_dest dest);

/* log_set_level - lines above @level are dropped (default LOG_LEVEL_INFO). */
void log_set_level(enum log_level level);

/*
 * log_set_debug_flags - enable debug subsystems from a comma-separated list
 * such as "aio,qcow2" or "all".  Returns 0, or -EINVAL for an unknown name
 * (logged with the name and the list of valid names); nothing changes then.
 */
int log_set_debug_flags(const char *spec);

/* log_debug_names - the valid -D names, comma-separated, for --help. */
const char *log_debug_names(void);

/* The current debug mask; read by log_dbg() before formatting anything. */
extern uint32_t log_debug_mask;

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * log_msg_ratelimited - like log_msg, but at most a burst of lines per
 * interval from one call site; suppressed lines are counted and the count is
 * reported with the next line that passes.  @state is the call site's.
 */
struct log_ratelimit {
	uint64_t window_start_ns;
	unsigned printed;
	unsigned suppressed;
};
void log_msg_ratelimited(struct log_ratelimit *state, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)

#define log_dbg(flag, ...)                                                                         \
	do {                                                                                       \
		if (__builtin_expect((log_debug_mask & (flag)) != 0, 0))                           \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                     \
	} while (0)

/* Per-request errors: one static limiter per call site. */
#define log_err_ratelimited(...)                                                                   \
	do {                                                                                       \
		static struct log_ratelimit log_rl_state_;                                         \
		log_msg_ratelimited(&log_rl_state_, LOG_LEVEL_ERR, __VA_ARGS__);                   \
	} while (0)

#endif
