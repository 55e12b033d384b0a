/* SPDX-License-Identifier: MIT */
/*
 * The local ring transport's shared memory: one sealed memfd that stands
 * in for a guest's memory and its grant table, so that a frontend process
 * (tap-front, tests) and a tapdisk run the real blkif protocol with no
 * hypervisor.  This header is the cross-process format; both ends use it.
 *
 *   page 0                       struct ringshm_hdr (version, length, layout)
 *   pages gnt_first..+gnt_pages  the grant table: 512 entries per page
 *   pages frame_first..total-1   frames: ring pages, data pages, indirect
 *                                pages, whatever the frontend grants
 *
 * A grant reference indexes the table; an entry has Xen's v1 grant_entry
 * layout {flags, domid, frame}.  It grants access when flags has
 * RINGSHM_GTF_PERMIT_ACCESS and domid is the backend's (0); with
 * RINGSHM_GTF_READONLY the backend may only read the frame.  Reference 0
 * is never valid (blkfront's GRANT_INVALID_REF).  The frontend may rewrite
 * an entry at any time: the backend reads each entry once per use.
 *
 * The memfd is sealed against shrinking and growing before it is passed,
 * so the backend's mappings can never fault (SIGBUS) however the frontend
 * behaves; the backend refuses an unsealed one.
 */
#ifndef QTAP_RINGSHM_H
#define QTAP_RINGSHM_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RINGSHM_MAGIC 0x314d485350415451ull /* "QTAPSHM1" little-endian */
#define RINGSHM_VERSION 1u
#define RINGSHM_PAGE_BYTES 4096u
#define RINGSHM_GNT_PER_PAGE (RINGSHM_PAGE_BYTES / sizeof(struct ringshm_gnt))
#define RINGSHM_MAX_PAGES (1u << 22) /* 16 GiB: far beyond any ring's needs */

#define RINGSHM_GTF_PERMIT_ACCESS 0x1u /* Xen's GTF_permit_access */
#define RINGSHM_GTF_READONLY 0x4u      /* Xen's GTF_readonly */
#define RINGSHM_BACKEND_DOMID 0

struct ringshm_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_bytes; /* sizeof(struct ringshm_hdr) of the writer */
	uint32_t page_bytes;
	uint32_t total_pages;
	uint32_t gnt_first;
	uint32_t gnt_pages;
	uint32_t frame_first;
	uint32_t reserved[7]; /* zero */
};

struct ringshm_gnt {
	uint16_t flags;
	uint16_t domid;
	uint32_t frame; /* page index in the memfd */
};

static_assert(sizeof(struct ringshm_hdr) == 64, "ringshm header");
static_assert(offsetof(struct ringshm_hdr, version) == 8, "ringshm version");
static_assert(offsetof(struct ringshm_hdr, hdr_bytes) == 12, "ringshm length");
static_assert(offsetof(struct ringshm_hdr, total_pages) == 20, "ringshm total");
static_assert(offsetof(struct ringshm_hdr, frame_first) == 32, "ringshm frames");
static_assert(sizeof(struct ringshm_gnt) == 8, "ringshm grant entry");
static_assert(offsetof(struct ringshm_gnt, frame) == 4, "ringshm grant frame");

/* The layout of a memfd, checked: what both ends work from. */
struct ringshm_layout {
	uint32_t total_pages;
	uint32_t gnt_first;
	uint32_t nr_grefs; /* entries in the table */
	uint32_t frame_first;
};

/*
 * ringshm_create - frontend side: a sealed memfd of @nr_frames frames and a
 * grant table of at least @nr_grefs entries, header written, everything
 * else zero.  Returns 0 with the fd in *@fd and the layout, or -errno.
 */
int ringshm_create(uint32_t nr_grefs, uint32_t nr_frames, int *fd, struct ringshm_layout *out);

/*
 * ringshm_open - backend side: check that @fd is a sealed memfd whose
 * header (read once) describes a layout that fits its size.  0 and
 * @out, or -EINVAL/-EPERM (unsealed) with the reason in @why (@len bytes)
 * for the caller to report.
 */
int ringshm_open(int fd, struct ringshm_layout *out, char *why, size_t len);

/*
 * ringshm_lookup - resolve grant @ref of the table at @table for an access
 * that writes the frame when @write: reads the entry once and checks it.
 * Returns 0 and the frame index, -EINVAL for a reference outside the table
 * or a frame outside the frames region (Xen's GNTST_bad_gntref), -EPERM
 * for an entry that does not grant this access (GNTST_permission_denied).
 */
int ringshm_lookup(const struct ringshm_gnt *table, const struct ringshm_layout *l, uint32_t ref,
		   bool write, uint32_t *frame);

/*
 * ringshm_map_frames - map frames @frames[0..@n) of the memfd @fd into one
 * contiguous read-write stretch of address space, in that order (how both
 * ends see a ring whose pages are scattered).  0 and *@out (unmap @n
 * pages with munmap), or -errno.
 */
int ringshm_map_frames(int fd, const uint32_t *frames, unsigned n, void **out);

/*
 * ringshm_grant - frontend side: grant @frame to the backend under @ref
 * (read-only when @readonly), or revoke @ref with ringshm_revoke().
 */
void ringshm_grant(struct ringshm_gnt *table, uint32_t ref, uint32_t frame, bool readonly);
void ringshm_revoke(struct ringshm_gnt *table, uint32_t ref);

#endif
