/* SPDX-License-Identifier: MIT */
/*
 * qemu-img's -r RATE_LIMIT (convert, commit): bytes per second, with
 * QEMU's size suffixes.  A token bucket between requests, as QEMU's
 * ratelimit: the first request goes at once, each next one waits until
 * the bytes before it have had their time at the rate.  Shared by the
 * threads of one copy.
 */
#ifndef QTAP_TAP_IMG_RATELIMIT_H
#define QTAP_TAP_IMG_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

struct img_ratelimit {
	uint64_t bytes_per_sec; /* 0: no limit */
	uint64_t next_ns;	/* CLOCK_MONOTONIC: when the next request may start */
	pthread_mutex_t lock;
};

/*
 * img_parse_rate - @s as qemu-img's cvtnum("rate limit"): 0 .. INT64_MAX
 * bytes per second.  0, or -EINVAL / -ERANGE with qemu-img's message for @verb.
 */
int img_parse_rate(const char *verb, const char *s, uint64_t *out);

/* img_ratelimit_init - @bytes_per_sec, 0 for none; fini with img_ratelimit_fini(). */
void img_ratelimit_init(struct img_ratelimit *rl, uint64_t bytes_per_sec);
void img_ratelimit_fini(struct img_ratelimit *rl);

/*
 * img_ratelimit_wait - before a request of @bytes: sleep until the bucket
 * allows it, then count it.  No-op without a limit.
 */
void img_ratelimit_wait(struct img_ratelimit *rl, uint64_t bytes);

#endif
