/* SPDX-License-Identifier: MIT */
/*
 * Signals for the daemons' event loops: block the signals a daemon handles
 * (so that every thread started afterwards blocks them too) and receive
 * them through a signalfd watched by the loop.  SIGPIPE is ignored: a peer
 * that goes away shows as EPIPE on the write instead.
 */
#ifndef QTAP_SIGFD_H
#define QTAP_SIGFD_H

/*
 * sigfd_open - block the @n signals @sigs, ignore SIGPIPE, and return a
 * non-blocking, close-on-exec signalfd for them, or -errno (logged).
 * Call before starting threads.
 */
int sigfd_open(const int *sigs, unsigned n);

#endif
