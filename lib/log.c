// SPDX-License-Identifier: MIT
/*
 * Log lines for every qtap program: "prog[pid] disk: level: message".
 *
 * A line is formatted into one buffer and written with one write() so that
 * lines from several threads and processes sharing stderr never interleave.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "log.h"

#define LOG_LINE_MAX 2048
#define RATELIMIT_WINDOW_NS (5ull * 1000000000ull)
#define RATELIMIT_BURST 10

uint32_t log_debug_mask;

static char log_prog[64] = "qtap";
static char log_disk[256];
static enum log_dest log_dest_cur = LOG_DEST_STDERR;
static enum log_level log_level_max = LOG_LEVEL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct {
	const char *name;
	uint32_t flag;
} debug_names[] = {
	{ "aio", LOG_F_AIO },	  { "loop", LOG_F_LOOP }, { "raw", LOG_F_RAW },
	{ "qcow2", LOG_F_QCOW2 }, { "vbd", LOG_F_VBD },	  { "ring", LOG_F_RING },
	{ "nbd", LOG_F_NBD },	  { "fuse", LOG_F_FUSE }, { "ctl", LOG_F_CTL },
	{ "xen", LOG_F_XEN },	  { "tool", LOG_F_TOOL }, { "all", LOG_F_ALL },
};

void log_init(const char *prog)
{
	const char *env = getenv("QTAP_DEBUG");
	const char *base = strrchr(prog, '/');

	snprintf(log_prog, sizeof(log_prog), "%s", base ? base + 1 : prog);
	if (env && *env)
		log_set_debug_flags(env);
}

void log_set_disk(const char *disk)
{
	pthread_mutex_lock(&log_lock);
	snprintf(log_disk, sizeof(log_disk), "%s", disk ? disk : "");
	pthread_mutex_unlock(&log_lock);
}

void log_set_dest(enum log_dest dest)
{
	log_dest_cur = dest;
	if (dest == LOG_DEST_SYSLOG)
		openlog(log_prog, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_set_level(enum log_level level)
{
	log_level_max = level;
}

const char *log_debug_names(void)
{
	return "aio,loop,raw,qcow2,vbd,ring,nbd,fuse,ctl,xen,tool,all";
}

static int debug_flag_of(const char *name, size_t len, uint32_t *flag)
{
	for (size_t i = 0; i < ARRAY_SIZE(debug_names); i++) {
		if (strlen(debug_names[i].name) == len &&
		    strncmp(debug_names[i].name, name, len) == 0) {
			*flag = debug_names[i].flag;
			return 0;
		}
	}
	return -EINVAL;
}

int log_set_debug_flags(const char *spec)
{
	uint32_t mask = 0, flag;
	const char *p = spec;

	while (*p) {
		size_t len = strcspn(p, ",");

		if (len > 0 && debug_flag_of(p, len, &flag) < 0) {
			log_err("unknown debug flag '%.*s' (valid: %s)", (int)len, p,
				log_debug_names());
			return -EINVAL;
		}
		if (len > 0)
			mask |= flag;
		p += len + (p[len] == ',');
	}
	log_debug_mask |= mask;
	return 0;
}

static const char *level_name(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_ERR:
		return "error: ";
	case LOG_LEVEL_WARN:
		return "warning: ";
	case LOG_LEVEL_DEBUG:
		return "debug: ";
	default:
		return "";
	}
}

__attribute__((format(printf, 2, 0))) static void log_emit(enum log_level level, const char *fmt,
							   va_list ap)
{
	static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[LOG_LINE_MAX];
	size_t n;
	int r;

	pthread_mutex_lock(&log_lock);
	r = snprintf(line, sizeof(line), "%s[%d]%s%s: %s", log_prog, (int)getpid(),
		     log_disk[0] ? " " : "", log_disk, level_name(level));
	pthread_mutex_unlock(&log_lock);
	n = r < 0 ? 0 : MIN((size_t)r, sizeof(line) - 1);
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n = r < 0 ? n : MIN(n + (size_t)r, sizeof(line) - 2);
	if (log_dest_cur == LOG_DEST_SYSLOG) {
		line[n] = '\0';
		syslog(syslog_prio[level], "%s", line);
		return;
	}
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nowhere left to report a failing stderr. */
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (level > log_level_max && !(level == LOG_LEVEL_DEBUG && log_debug_mask))
		return;
	va_start(ap, fmt);
	errno = saved; /* for %m */
	log_emit(level, fmt, ap);
	va_end(ap);
	errno = saved;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Returns the count of lines suppressed before this one, or -1 to drop it. */
static long ratelimit_admit(struct log_ratelimit *rl)
{
	uint64_t now = mono_ns();
	long dropped = -1;

	pthread_mutex_lock(&log_lock);
	if (now - rl->window_start_ns > RATELIMIT_WINDOW_NS) {
		rl->window_start_ns = now;
		rl->printed = 0;
	}
	if (rl->printed < RATELIMIT_BURST) {
		rl->printed++;
		dropped = rl->suppressed;
		rl->suppressed = 0;
	} else {
		rl->suppressed++;
	}
	pthread_mutex_unlock(&log_lock);
	return dropped;
}

void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
{
	int saved = errno;
	long dropped = ratelimit_admit(rl);
	va_list ap;

	if (dropped < 0) {
		errno = saved;
		return;
	}
	if (dropped > 0)
		log_msg(level, "(%ld similar messages suppressed)", dropped);
	va_start(ap, fmt);
	errno = saved;
	log_emit(level, fmt, ap);
	va_end(ap);
	errno = saved;
}
