/* SPDX-License-Identifier: MIT */
/*
 * Scope-bound cleanup, in the manner of the kernel's cleanup.h.
 *
 * Rules: declare and initialise a cleanup variable in one statement; never
 * mix cleanup variables and goto-unwind in one function; hand ownership out
 * with steal_ptr()/steal_fd(), which leave NULL/-1 behind.
 */
#ifndef QTAP_CLEANUP_H
#define QTAP_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_free_(void *p)
{
	free(*(void **)p);
}

static inline void cleanup_close_(const int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static inline void cleanup_fclose_(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define CLEANUP_FREE __attribute__((cleanup(cleanup_free_)))
#define CLEANUP_CLOSE __attribute__((cleanup(cleanup_close_)))
#define CLEANUP_FCLOSE __attribute__((cleanup(cleanup_fclose_)))

#define steal_ptr(p)                                                                               \
	({                                                                                         \
		typeof(p) steal_tmp_ = (p);                                                        \
		(p) = NULL;                                                                        \
		steal_tmp_;                                                                        \
	})

#define steal_fd(fd)                                                                               \
	({                                                                                         \
		int steal_tmp_ = (fd);                                                             \
		(fd) = -1;                                                                         \
		steal_tmp_;                                                                        \
	})

#endif
