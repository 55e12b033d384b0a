// SPDX-License-Identifier: MIT
/*
 * The local ring transport's shared memory: see ringshm.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checked.h"
#include "errors.h"
#include "ringshm.h"

#define REQUIRED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

static int write_header(int fd, const struct ringshm_layout *l)
{
	struct ringshm_hdr h = {
		.magic = RINGSHM_MAGIC,
		.version = RINGSHM_VERSION,
		.hdr_bytes = sizeof(h),
		.page_bytes = RINGSHM_PAGE_BYTES,
		.total_pages = l->total_pages,
		.gnt_first = l->gnt_first,
		.gnt_pages = l->nr_grefs / RINGSHM_GNT_PER_PAGE,
		.frame_first = l->frame_first,
	};
	ssize_t n = pwrite(fd, &h, sizeof(h), 0);

	if (n < 0)
		return neg_errno();
	return n == (ssize_t)sizeof(h) ? 0 : -EIO;
}

int ringshm_create(uint32_t nr_grefs, uint32_t nr_frames, int *fd_out, struct ringshm_layout *out)
{
	uint32_t gnt_pages =
		(uint32_t)div_round_up_u64((uint64_t)nr_grefs + 1, RINGSHM_GNT_PER_PAGE);
	uint64_t total = 1 + (uint64_t)gnt_pages + nr_frames;
	int fd, err;

	if (nr_frames == 0 || total > RINGSHM_MAX_PAGES)
		return -EINVAL;
	*out = (struct ringshm_layout){
		.total_pages = (uint32_t)total,
		.gnt_first = 1,
		.nr_grefs = gnt_pages * RINGSHM_GNT_PER_PAGE,
		.frame_first = 1 + gnt_pages,
	};
	fd = memfd_create("qtap-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return neg_errno();
	if (ftruncate(fd, (off_t)(total * RINGSHM_PAGE_BYTES)) < 0)
		goto fail_errno;
	err = write_header(fd, out);
	if (err) {
		close(fd);
		return err;
	}
	if (fcntl(fd, F_ADD_SEALS, REQUIRED_SEALS | F_SEAL_SEAL) < 0)
		goto fail_errno;
	*fd_out = fd;
	return 0;

fail_errno:
	err = neg_errno();
	close(fd);
	return err;
}

static int check_header(const struct ringshm_hdr *h, uint64_t file_bytes, struct ringshm_layout *l,
			char *why, size_t len)
{
	uint64_t gnt_end = (uint64_t)h->gnt_first + h->gnt_pages;

	if (h->magic != RINGSHM_MAGIC || h->version != RINGSHM_VERSION ||
	    h->hdr_bytes != sizeof(*h)) {
		snprintf(why, len,
			 "ring memfd: magic 0x%016llx, version %u, %u-byte header; this tapdisk "
			 "speaks version %u with a %zu-byte header",
			 (unsigned long long)h->magic, h->version, h->hdr_bytes, RINGSHM_VERSION,
			 sizeof(*h));
		return -EINVAL;
	}
	if (h->page_bytes != RINGSHM_PAGE_BYTES || h->total_pages > RINGSHM_MAX_PAGES ||
	    h->gnt_first == 0 || h->gnt_pages == 0 || gnt_end > h->frame_first ||
	    h->frame_first >= h->total_pages ||
	    (uint64_t)h->total_pages * RINGSHM_PAGE_BYTES > file_bytes) {
		snprintf(why, len,
			 "ring memfd: bad layout (%u-byte pages; grant table at page %u, %u pages; "
			 "frames from page %u of %u; file of %llu bytes)",
			 h->page_bytes, h->gnt_first, h->gnt_pages, h->frame_first, h->total_pages,
			 (unsigned long long)file_bytes);
		return -EINVAL;
	}
	*l = (struct ringshm_layout){
		.total_pages = h->total_pages,
		.gnt_first = h->gnt_first,
		.nr_grefs = h->gnt_pages * (uint32_t)RINGSHM_GNT_PER_PAGE,
		.frame_first = h->frame_first,
	};
	return 0;
}

int ringshm_open(int fd, struct ringshm_layout *out, char *why, size_t len)
{
	struct ringshm_hdr h;
	struct stat st;
	ssize_t n;
	int seals;

	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0) {
		snprintf(why, len, "ring memfd: not a memfd (F_GET_SEALS: %s)",
			 err_str(neg_errno()));
		return -EINVAL;
	}
	if ((seals & REQUIRED_SEALS) != REQUIRED_SEALS) {
		snprintf(why, len,
			 "ring memfd: not sealed against shrinking and growing (seals 0x%x)",
			 seals);
		return -EPERM;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(why, len, "ring memfd: fstat: %s", err_str(neg_errno()));
		return -EINVAL;
	}
	n = pread(fd, &h, sizeof(h), 0); /* the one read of the header */
	if (n != (ssize_t)sizeof(h)) {
		snprintf(why, len, "ring memfd: cannot read its header");
		return -EINVAL;
	}
	return check_header(&h, (uint64_t)st.st_size, out, why, len);
}

int ringshm_lookup(const struct ringshm_gnt *table, const struct ringshm_layout *l, uint32_t ref,
		   bool write, uint32_t *frame)
{
	struct ringshm_gnt e;
	uint64_t raw;

	if (ref == 0 || ref >= l->nr_grefs)
		return -EINVAL;
	/* One 8-byte load: the frontend cannot tear the entry between checks. */
	raw = __atomic_load_n((const uint64_t *)(const void *)&table[ref], __ATOMIC_ACQUIRE);
	memcpy(&e, &raw, sizeof(e));
	if (!(e.flags & RINGSHM_GTF_PERMIT_ACCESS) || e.domid != RINGSHM_BACKEND_DOMID ||
	    (write && (e.flags & RINGSHM_GTF_READONLY)))
		return -EPERM;
	if (e.frame < l->frame_first || e.frame >= l->total_pages)
		return -EINVAL;
	*frame = e.frame;
	return 0;
}

int ringshm_map_frames(int fd, const uint32_t *frames, unsigned n, void **out)
{
	size_t bytes = (size_t)n * RINGSHM_PAGE_BYTES;
	uint8_t *va =
		mmap(NULL, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (va == MAP_FAILED)
		return neg_errno();
	for (unsigned i = 0; i < n; i++) {
		if (mmap(va + (size_t)i * RINGSHM_PAGE_BYTES, RINGSHM_PAGE_BYTES,
			 PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
			 (off_t)frames[i] * RINGSHM_PAGE_BYTES) == MAP_FAILED) {
			int err = neg_errno();

			munmap(va, bytes);
			return err;
		}
	}
	*out = va;
	return 0;
}

void ringshm_grant(struct ringshm_gnt *table, uint32_t ref, uint32_t frame, bool readonly)
{
	struct ringshm_gnt e = {
		.flags = RINGSHM_GTF_PERMIT_ACCESS | (readonly ? RINGSHM_GTF_READONLY : 0),
		.domid = RINGSHM_BACKEND_DOMID,
		.frame = frame,
	};
	uint64_t raw;

	memcpy(&raw, &e, sizeof(raw));
	__atomic_store_n((uint64_t *)(void *)&table[ref], raw, __ATOMIC_RELEASE);
}

void ringshm_revoke(struct ringshm_gnt *table, uint32_t ref)
{
	__atomic_store_n((uint64_t *)(void *)&table[ref], 0, __ATOMIC_RELEASE);
}
