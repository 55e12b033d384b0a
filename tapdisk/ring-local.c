// SPDX-License-Identifier: MIT
/*
 * The local ring transport (ring-transport.h, lib/ringshm.h): the memfd is
 * mapped once, whole, for data copies; each ring's pages are mapped again
 * into one reserved stretch of address space, page by page with
 * MAP_FIXED, so that the ring is contiguous even when the frontend granted
 * scattered frames in any order, exactly what gntdev gives on Xen.
 * Grants are looked up at each use, so a revoked or read-only grant fails
 * the copy or map that needs it, as on Xen.
 *
 * Since every frame is in that one mapping already, ->map hands the ring
 * engine pointers into it and the I/O runs on the frontend's frames, with
 * no copy (tapdisk --ring-copy turns this off).  A frame revoked or
 * rewritten during the I/O stays mapped (the memfd cannot shrink): the
 * frontend can only spoil its own data, as a guest can under DMA.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "ring-abi.h"
#include "ringshm.h"
#include "tapdisk/ring-transport.h"

struct td_local_mem {
	int fd;
	uint8_t *base;
	size_t bytes;
	struct ringshm_layout layout;
	const struct ringshm_gnt *table;
};

struct local_transport {
	struct td_transport t;
	struct td_local_mem *mem;
	int irq_fd;
};

int td_local_mem_open(int memfd, struct td_local_mem **out, char *why, size_t why_len)
{
	struct td_local_mem *mem;
	struct ringshm_layout l;
	void *p;
	int err = ringshm_open(memfd, &l, why, why_len);

	if (err) {
		log_err("%s", why);
		goto fail;
	}
	mem = calloc(1, sizeof(*mem));
	if (!mem) {
		err = -ENOMEM;
		goto fail;
	}
	mem->bytes = (size_t)l.total_pages * RINGSHM_PAGE_BYTES;
	p = mmap(NULL, mem->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (p == MAP_FAILED) {
		err = td_ring_why(why, why_len, neg_errno(), "ring memfd: cannot map %zu bytes: %s",
				  mem->bytes, err_str(neg_errno()));
		free(mem);
		goto fail;
	}
	mem->fd = memfd;
	mem->base = p;
	mem->layout = l;
	mem->table =
		(const struct ringshm_gnt *)(mem->base + (size_t)l.gnt_first * RINGSHM_PAGE_BYTES);
	*out = mem;
	return 0;

fail:
	close(memfd);
	return err;
}

void td_local_mem_free(struct td_local_mem *mem)
{
	if (!mem)
		return;
	munmap(mem->base, mem->bytes);
	close(mem->fd);
	free(mem);
}

/* ---- copies and events --------------------------------------------------- */

/* The guest's bytes that @s names, checked as Xen checks a grant copy segment. */
static int resolve(struct td_local_mem *mem, const struct td_copy_seg *s, bool to_guest,
		   uint8_t **guest)
{
	uint32_t frame;
	int err;

	if ((unsigned)s->offset + s->len > RINGSHM_PAGE_BYTES)
		return -EINVAL; /* Xen: GNTST_bad_copy_arg */
	err = ringshm_lookup(mem->table, &mem->layout, s->gref, to_guest, &frame);
	if (err)
		return err;
	*guest = mem->base + (size_t)frame * RINGSHM_PAGE_BYTES + s->offset;
	return 0;
}

static int copy_one(struct td_local_mem *mem, struct td_copy_seg *s, bool to_guest)
{
	uint8_t *guest;
	int err = resolve(mem, s, to_guest, &guest);

	if (err)
		return err;
	if (to_guest)
		memcpy(guest, s->local, s->len);
	else
		memcpy(s->local, guest, s->len);
	return 0;
}

static int map_one(struct td_local_mem *mem, struct td_copy_seg *s, bool to_guest)
{
	uint8_t *guest;
	int err = resolve(mem, s, to_guest, &guest);

	if (!err)
		s->local = guest;
	return err;
}

/* Apply @one to each segment, judging each on its own (XSA-361). */
static int each_seg(struct td_transport *t, struct td_copy_seg *segs, unsigned n, bool to_guest,
		    int (*one)(struct td_local_mem *, struct td_copy_seg *, bool))
{
	struct local_transport *lt = (struct local_transport *)t;
	int first_err = 0;

	for (unsigned i = 0; i < n; i++) {
		segs[i].status = one(lt->mem, &segs[i], to_guest);
		if (segs[i].status && !first_err)
			first_err = segs[i].status;
	}
	return first_err;
}

static int local_copy(struct td_transport *t, struct td_copy_seg *segs, unsigned n, bool to_guest)
{
	return each_seg(t, segs, n, to_guest, copy_one);
}

/* The memfd is mapped whole and sealed against shrinking: a frame never faults. */
static int local_map(struct td_transport *t, struct td_copy_seg *segs, unsigned n, bool to_guest)
{
	return each_seg(t, segs, n, to_guest, map_one);
}

/*
 * The kick eventfd is watched edge-triggered (event_epoll): each write by
 * the frontend is one wake-up, so there is nothing to read, which saves a
 * system call per kick.  Its counter only grows; 2^64 - 2 kicks would fill it.
 */
static int local_event_ack(struct td_transport *t)
{
	return 0;
}

static void local_event_unmask(struct td_transport *t)
{
}

static int local_notify(struct td_transport *t)
{
	struct local_transport *lt = (struct local_transport *)t;
	uint64_t one = 1;

	/* EAGAIN: the counter is at its maximum, the frontend is notified anyway. */
	if (write(lt->irq_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return neg_errno();
	return 0;
}

static void local_free(struct td_transport *t)
{
	struct local_transport *lt = (struct local_transport *)t;

	if (t->sring)
		munmap(t->sring, (size_t)t->nr_pages * RINGSHM_PAGE_BYTES);
	if (t->event_fd >= 0)
		close(t->event_fd);
	if (lt->irq_fd >= 0)
		close(lt->irq_fd);
	free(lt);
}

static const struct td_transport_ops local_ops = {
	.copy = local_copy,
	.map = local_map,
	.event_ack = local_event_ack,
	.event_unmask = local_event_unmask,
	.notify = local_notify,
	.free = local_free,
};

/* ---- set-up --------------------------------------------------------------- */

/* Is @fd an eventfd?  A pipe or a file would not count notifications. */
static bool is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

static int map_ring(struct td_local_mem *mem, const uint32_t *refs, unsigned nr_pages, void **out,
		    char *why, size_t why_len)
{
	uint32_t frames[RING_PAGES_MAX];
	int err;

	if (nr_pages == 0 || nr_pages > RING_PAGES_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < nr_pages; i++) {
		err = ringshm_lookup(mem->table, &mem->layout, refs[i], true, &frames[i]);
		if (err)
			return td_ring_why(why, why_len, err,
					   "ring: ring-ref%u %u does not grant a writable frame", i,
					   refs[i]);
	}
	err = ringshm_map_frames(mem->fd, frames, nr_pages, out);
	if (err)
		td_ring_why(why, why_len, err, "ring: cannot map the %u ring pages: %s", nr_pages,
			    err_str(err));
	return err;
}

int td_transport_local_new(struct td_local_mem *mem, const uint32_t *refs, unsigned nr_pages,
			   int kick_fd, int irq_fd, unsigned max_segs, struct td_transport **out,
			   char *why, size_t why_len)
{
	struct local_transport *lt = calloc(1, sizeof(*lt));
	int err;

	if (!lt) {
		close(kick_fd);
		close(irq_fd);
		return -ENOMEM;
	}
	lt->t = (struct td_transport){
		.ops = &local_ops,
		.name = "local",
		.event_fd = kick_fd,
		.event_epoll = EPOLLIN | EPOLLET,
		.max_segs = max_segs,
	};
	lt->mem = mem;
	lt->irq_fd = irq_fd;
	if (!is_eventfd(kick_fd) || !is_eventfd(irq_fd)) {
		local_free(&lt->t);
		return td_ring_why(why, why_len, -EINVAL,
				   "ring: the notification fds passed are not eventfds");
	}
	/* The kick is read only when epoll says so, but never block a queue thread. */
	if (fcntl(kick_fd, F_SETFL, O_NONBLOCK) < 0 || fcntl(irq_fd, F_SETFL, O_NONBLOCK) < 0) {
		err = neg_errno();
		local_free(&lt->t);
		return td_ring_why(why, why_len, err, "ring: eventfd: %s", err_str(err));
	}
	err = map_ring(mem, refs, nr_pages, &lt->t.sring, why, why_len);
	if (err) {
		local_free(&lt->t);
		return err;
	}
	lt->t.nr_pages = nr_pages;
	*out = &lt->t;
	return 0;
}
