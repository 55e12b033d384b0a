/* SPDX-License-Identifier: MIT */
/*
 * crash-replay's log and oracle: reading the log crash-run recorded
 * (lib/aio-rec.h), pairing each request with its completion and finding
 * when each write became durable, and the per-sector rule that says which
 * values a guest sector may read as at a crash point (the top of
 * crash-replay.c has the crash model).
 *
 * Included by crash-replay.c only: the log's rules apart from building
 * and checking the states.
 */
#ifndef QTAP_CRASH_REPLAY_LOG_H
#define QTAP_CRASH_REPLAY_LOG_H

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio-rec.h"
#include "buf.h"
#include "../unit/test-rand.h"

#define SECTOR 512u
#define NEVER UINT64_MAX

struct ev {
	const struct aio_rec_hdr *h; /* &hdr, once the log is read */
	struct aio_rec_hdr hdr;	     /* a copy: records in the log are not aligned */
	const uint8_t *data;
	uint64_t done;	  /* issue events: index of the DONE event; NEVER */
	uint64_t durable; /* issue events: index of the event that made it durable */
	int err;
};

struct sect {
	uint64_t sector;
	uint64_t ev; /* the guest request's issue event */
};

struct replay {
	const char *log, *name;
	uint64_t nr_states, seed, rng, qemu_every;
	bool lazy, verbose;
	const char *every_in; /* -P: every event of this program's records is a crash point */
	uint8_t *map;
	size_t map_bytes;
	struct ev *ev;
	uint64_t nr_ev;
	unsigned nr_files;
	char work[AIO_REC_MAX_FILES][PATH_MAX];
	int fd[AIO_REC_MAX_FILES];
	uint64_t size, cluster;
	uint64_t sizes[8]; /* every guest size the log names: a state may have any */
	unsigned nr_sizes;

	/* the oracle: touched guest sectors, clusters and starting values */
	struct sect *sects;
	uint64_t nr_sects;
	uint64_t *clusters; /* guest cluster numbers touched, sorted */
	uint64_t nr_clusters;
	uint64_t *init; /* per touched cluster, per sector: hash at the start */
	uint64_t *seen; /* the same: what the driver read in the state last judged */
	uint64_t zero_hash;
	uint8_t *buf;

	/* undo of the volatile part */
	uint8_t *undo;
	uint64_t undo_cap, undo_used;

	uint64_t states, corrupt, lost, stale, qemu_checked, failed_states;
};

static uint64_t rnd(struct replay *r)
{
	return test_rand(&r->rng);
}

static uint64_t hash_sector(const uint8_t *p)
{
	uint64_t h = 0xcbf29ce484222325ull, v;

	for (unsigned i = 0; i < SECTOR; i += 8) {
		memcpy(&v, p + i, 8);
		h = (h ^ v) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	return h;
}

static void die(const char *what)
{
	fprintf(stderr, "crash-replay: %s\n", what);
	exit(2);
}

/* ---- the log ---- */

static bool is_file_issue(int t)
{
	return t == AIO_REC_WRITE || t == AIO_REC_ZERO || t == AIO_REC_FSYNC || t == AIO_REC_TRUNC;
}

static bool is_guest_issue(int t)
{
	return t == AIO_REC_G_WRITE || t == AIO_REC_G_ZERO || t == AIO_REC_G_DISCARD ||
	       t == AIO_REC_G_FLUSH;
}

static void load_log(struct replay *r)
{
	int fd = open(r->log, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint64_t off = 0, cap = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		die("cannot open the log");
	r->map_bytes = (size_t)st.st_size;
	r->map = mmap(NULL, r->map_bytes ?: 1, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (r->map == MAP_FAILED)
		die("cannot map the log");
	while (off + sizeof(struct aio_rec_hdr) <= r->map_bytes) {
		struct aio_rec_hdr hdr, *h = &hdr;

		memcpy(&hdr, r->map + off, sizeof(hdr));
		if (h->magic != AIO_REC_MAGIC || h->data_len > r->map_bytes - off - sizeof(*h))
			die("bad record in the log");
		if (r->nr_ev == cap) {
			cap = cap ? cap * 2 : 4096;
			r->ev = realloc(r->ev, cap * sizeof(*r->ev));
			if (!r->ev)
				die("out of memory");
		}
		r->ev[r->nr_ev++] = (struct ev){ .hdr = hdr,
						 .data = r->map + off + sizeof(hdr),
						 .done = NEVER,
						 .durable = NEVER };
		off += sizeof(*h) + h->data_len;
		if (h->type == AIO_REC_FILE && h->file + 1u > r->nr_files)
			r->nr_files = h->file + 1u;
		/* the first size is the one the oracle reads in; a later
		 * process (after a resize) may name another */
		if (h->type == AIO_REC_G_SIZE && !r->size) {
			r->size = h->len;
			r->cluster = h->offset;
		}
		if (h->type == AIO_REC_G_SIZE && r->nr_sizes < 8)
			r->sizes[r->nr_sizes++] = h->len;
	}
	for (uint64_t i = 0; i < r->nr_ev; i++)
		r->ev[i].h = &r->ev[i].hdr;
	if (!r->size || !r->cluster || r->cluster % SECTOR)
		die("the log has no guest size");
}

/* Request ids are unique and increasing: find an issue event by id. */
static uint64_t find_id(const struct replay *r, uint64_t *by_id, uint64_t nr_ids, uint64_t id)
{
	return id < nr_ids ? by_id[id] : NEVER;
}

/*
 * Pair issues with completions, then work out when each write became
 * durable: the writes of a file completed before an fdatasync of it was
 * issued are durable once that fdatasync completes.  The guest's side is
 * the same with guest flushes, plus FUA writes durable when acknowledged.
 */
static void link_events(struct replay *r)
{
	uint64_t nr_ids = 1, *by_id, *ord[AIO_REC_MAX_FILES + 1],
		 nr_ord[AIO_REC_MAX_FILES + 1] = { 0 };
	uint64_t upto[AIO_REC_MAX_FILES + 1] = { 0 };

	for (uint64_t i = 0; i < r->nr_ev; i++)
		if (r->ev[i].h->id >= nr_ids)
			nr_ids = r->ev[i].h->id + 1;
	by_id = malloc(nr_ids * sizeof(*by_id));
	for (unsigned f = 0; f <= AIO_REC_MAX_FILES; f++)
		ord[f] = malloc(r->nr_ev * sizeof(uint64_t) + 8);
	if (!by_id || !ord[AIO_REC_MAX_FILES])
		die("out of memory");
	memset(by_id, 0xff, nr_ids * sizeof(*by_id));
	for (uint64_t i = 0; i < r->nr_ev; i++) {
		const struct aio_rec_hdr *h = r->ev[i].h;
		/* guests are "file" AIO_REC_MAX_FILES */
		bool guest = is_guest_issue(h->type);
		unsigned f = guest ? AIO_REC_MAX_FILES : h->file;
		uint64_t j;

		if (is_file_issue(h->type) || guest) {
			by_id[h->id] = i;
			/* a flush covers what completed before it was issued */
			if (h->type == AIO_REC_FSYNC || h->type == AIO_REC_G_FLUSH)
				r->ev[i].durable = nr_ord[f]; /* reused: the count it covers */
			continue;
		}
		if (h->type != AIO_REC_DONE && h->type != AIO_REC_G_DONE)
			continue;
		j = find_id(r, by_id, nr_ids, h->id);
		if (j == NEVER)
			die("a completion without its request");
		r->ev[j].done = i;
		r->ev[j].err = h->err;
		f = r->ev[j].h->type >= AIO_REC_G_WRITE ? AIO_REC_MAX_FILES : r->ev[j].h->file;
		if (r->ev[j].h->type == AIO_REC_FSYNC || r->ev[j].h->type == AIO_REC_G_FLUSH) {
			uint64_t covers = r->ev[j].durable;

			r->ev[j].durable = NEVER;
			if (h->err)
				continue;
			for (; upto[f] < covers; upto[f]++)
				if (r->ev[ord[f][upto[f]]].durable == NEVER)
					r->ev[ord[f][upto[f]]].durable = i;
			continue;
		}
		if (h->err)
			continue; /* a failed write may or may not have landed */
		ord[f][nr_ord[f]++] = j;
		if (r->ev[j].h->type != AIO_REC_G_DISCARD && (r->ev[j].h->flags & AIO_REC_F_FUA))
			r->ev[j].durable = i;
	}
	free(by_id);
	for (unsigned f = 0; f <= AIO_REC_MAX_FILES; f++)
		free(ord[f]);
}

/* ---- the guest oracle ---- */

static int cmp_sect(const void *a, const void *b)
{
	const struct sect *x = a, *y = b;

	if (x->sector != y->sector)
		return x->sector < y->sector ? -1 : 1;
	return x->ev < y->ev ? -1 : x->ev > y->ev;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void build_oracle(struct replay *r)
{
	uint64_t cap = 0, n = 0;

	for (uint64_t i = 0; i < r->nr_ev; i++) {
		const struct aio_rec_hdr *h = r->ev[i].h;

		if (!is_guest_issue(h->type) || h->type == AIO_REC_G_FLUSH)
			continue;
		if (h->offset % SECTOR || h->len % SECTOR)
			die("a guest request not in whole sectors");
		for (uint64_t s = h->offset / SECTOR; s < (h->offset + h->len) / SECTOR; s++) {
			if (r->nr_sects == cap) {
				cap = cap ? cap * 2 : 65536;
				r->sects = realloc(r->sects, cap * sizeof(*r->sects));
				if (!r->sects)
					die("out of memory");
			}
			r->sects[r->nr_sects++] = (struct sect){ s, i };
		}
	}
	qsort(r->sects, r->nr_sects, sizeof(*r->sects), cmp_sect);
	r->clusters = malloc((r->nr_sects + 1) * sizeof(uint64_t));
	if (!r->clusters)
		die("out of memory");
	for (uint64_t i = 0; i < r->nr_sects; i++) {
		uint64_t c = r->sects[i].sector * SECTOR / r->cluster;

		if (!n || r->clusters[n - 1] != c)
			r->clusters[n++] = c;
	}
	qsort(r->clusters, n, sizeof(uint64_t), cmp_u64);
	r->nr_clusters = 0;
	for (uint64_t i = 0; i < n; i++)
		if (!r->nr_clusters || r->clusters[r->nr_clusters - 1] != r->clusters[i])
			r->clusters[r->nr_clusters++] = r->clusters[i];
	r->buf = buf_alloc(r->cluster, 4096);
	r->init = malloc((r->nr_clusters + 1) * (r->cluster / SECTOR) * sizeof(uint64_t));
	r->seen = malloc((r->nr_clusters + 1) * (r->cluster / SECTOR) * sizeof(uint64_t));
	if (!r->buf || !r->init || !r->seen)
		die("out of memory");
	memset(r->buf, 0, r->cluster);
	r->zero_hash = hash_sector(r->buf);
}

/* The value guest request @e gave sector @s: a hash, or 0 for "zero or start". */
static uint64_t op_value(const struct replay *r, uint64_t e, uint64_t s)
{
	const struct aio_rec_hdr *h = r->ev[e].h;

	if (h->type == AIO_REC_G_WRITE)
		return hash_sector(r->ev[e].data + (s * SECTOR - h->offset));
	return r->zero_hash;
}

enum verdict { V_OK, V_LOST, V_STALE };

/* May sector @s (entries [@lo, @hi) of r->sects) read @got at crash point @p? */
static enum verdict judge(const struct replay *r, uint64_t lo, uint64_t hi, uint64_t p,
			  uint64_t got, uint64_t init)
{
	uint64_t d = NEVER, i;
	bool older = false;

	for (i = lo; i < hi && r->sects[i].ev < p; i++)
		if (r->ev[r->sects[i].ev].durable < p)
			d = i;
	if (d == NEVER && got == init)
		return V_OK;
	for (i = d == NEVER ? lo : d; i < hi && r->sects[i].ev < p; i++) {
		const struct aio_rec_hdr *h = r->ev[r->sects[i].ev].h;

		if (got == op_value(r, r->sects[i].ev, r->sects[i].sector))
			return V_OK;
		/* a discard may also leave what the backing file holds */
		if (h->type == AIO_REC_G_DISCARD && got == init)
			return V_OK;
	}
	if (got == init)
		older = true;
	for (i = lo; i < hi && i < d; i++)
		if (got == op_value(r, r->sects[i].ev, r->sects[i].sector))
			older = true;
	return older ? V_LOST : V_STALE;
}

#endif
