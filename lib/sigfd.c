// SPDX-License-Identifier: MIT
/*
 * Signals through a signalfd (see sigfd.h).
 */
#include <signal.h>
#include <sys/signalfd.h>

#include "errors.h"
#include "log.h"
#include "sigfd.h"

int sigfd_open(const int *sigs, unsigned n)
{
	sigset_t set;
	unsigned i;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	for (i = 0; i < n; i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0) {
		int err = neg_errno();

		log_err("signalfd: %s", err_str(err));
		return err;
	}
	return fd;
}
