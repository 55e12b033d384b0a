// SPDX-License-Identifier: MIT
/*
 * qemu-img's -r (ratelimit.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <time.h>

#include "optval.h"
#include "ratelimit.h"
#include "tap-img.h"

#define NS_PER_SEC 1000000000ull

int img_parse_rate(const char *verb, const char *s, uint64_t *out)
{
	int err = optval_size(s, out);

	if (err == -EINVAL) {
		img_err(verb, "Invalid rate limit specified. You may use k, M, G, T, P or E "
			      "suffixes for");
		img_err(verb, "kilobytes, megabytes, gigabytes, terabytes, petabytes and "
			      "exabytes.");
		return err;
	}
	if (err || *out > INT64_MAX) {
		img_err(verb, "Invalid rate limit specified. Must be between 0 and %" PRId64 ".",
			INT64_MAX);
		return -ERANGE;
	}
	return 0;
}

void img_ratelimit_init(struct img_ratelimit *rl, uint64_t bytes_per_sec)
{
	*rl = (struct img_ratelimit){ .bytes_per_sec = bytes_per_sec };
	pthread_mutex_init(&rl->lock, NULL);
}

void img_ratelimit_fini(struct img_ratelimit *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

void img_ratelimit_wait(struct img_ratelimit *rl, uint64_t bytes)
{
	uint64_t now, start, wait_ns;
	unsigned __int128 cost;
	struct timespec ts;

	if (!rl->bytes_per_sec)
		return;
	cost = (unsigned __int128)bytes * NS_PER_SEC / rl->bytes_per_sec;
	pthread_mutex_lock(&rl->lock);
	now = now_ns();
	start = rl->next_ns > now ? rl->next_ns : now;
	rl->next_ns = cost > UINT64_MAX - start ? UINT64_MAX : start + (uint64_t)cost;
	pthread_mutex_unlock(&rl->lock);
	wait_ns = start - now;
	if (!wait_ns)
		return;
	ts = (struct timespec){ .tv_sec = (time_t)(wait_ns / NS_PER_SEC),
				.tv_nsec = (long)(wait_ns % NS_PER_SEC) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
