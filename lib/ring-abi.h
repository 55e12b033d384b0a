/* SPDX-License-Identifier: MIT */
/*
 * The Xen blkif wire format (xen/io/blkif.h and xen/io/ring.h), as our own
 * declarations: the shared ring page and the request and response layouts
 * of the three ABIs a frontend may speak.
 *
 *   native  the layout of this build's C compiler: x86_64 on every 64-bit
 *           target (arm's "arm-abi" is the same layout), x86_32 on i386.
 *   x86_64  "x86_64-abi": u64 fields 8-byte aligned; 112-byte request,
 *           16-byte response.
 *   x86_32  "x86_32-abi": u64 fields 4-byte aligned (the i386 psABI);
 *           108-byte request, 12-byte response.  What a frontend that writes
 *           no "protocol" key speaks.
 *
 * Every size and offset is pinned by _Static_assert below, and
 * tests/unit/test-ring-abi.c compares them with Xen's own headers.  Sector
 * fields are 512-byte units whatever the disk's sector-size (blkif.h as
 * reconciled in 2024).  Both ends of a ring are untrusted by the other:
 * nothing here may be read twice from shared memory (see ring-idx.h).
 */
#ifndef QTAP_RING_ABI_H
#define QTAP_RING_ABI_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define RING_PAGE_BYTES 4096u
#define RING_SECTOR_BYTES 512u
#define RING_SECTORS_PER_PAGE (RING_PAGE_BYTES / RING_SECTOR_BYTES)
#define RING_ORDER_MAX 4 /* Linux blkback's XENBUS_MAX_RING_GRANT_ORDER */
#define RING_PAGES_MAX (1u << RING_ORDER_MAX)
#define RING_SEGS_DIRECT 11		/* BLKIF_MAX_SEGMENTS_PER_REQUEST */
#define RING_INDIRECT_PAGES_MAX 8	/* BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST */
#define RING_SEGS_PER_INDIRECT_PAGE 512 /* RING_PAGE_BYTES / sizeof(ring_seg) */
#define RING_SRING_HDR_BYTES 64
#define RING_ENTRY64_BYTES 112u /* a slot: the larger of request and response */
#define RING_ENTRY32_BYTES 108u

/* Operations (BLKIF_OP_*). */
#define RING_OP_READ 0
#define RING_OP_WRITE 1
#define RING_OP_WRITE_BARRIER 2
#define RING_OP_FLUSH_DISKCACHE 3
#define RING_OP_RESERVED_1 4
#define RING_OP_DISCARD 5
#define RING_OP_INDIRECT 6

#define RING_DISCARD_SECURE (1u << 0)

/* Response status (BLKIF_RSP_*). */
#define RING_RSP_OKAY 0
#define RING_RSP_ERROR (-1)
#define RING_RSP_EOPNOTSUPP (-2)

/* The xenstore "info" bits (VDISK_*). */
#define RING_INFO_CDROM 0x1u
#define RING_INFO_REMOVABLE 0x2u
#define RING_INFO_READONLY 0x4u

enum ring_abi {
	RING_ABI_NATIVE = 0,
	RING_ABI_X86_32,
	RING_ABI_X86_64,
};

/* One 4 KiB frame of data: sectors first_sect..last_sect (inclusive). */
struct ring_seg {
	uint32_t gref;
	uint8_t first_sect;
	uint8_t last_sect;
	uint16_t pad;
};

/* ---- x86_64 (and native on 64-bit) --------------------------------------- */

struct ring_req64 {
	uint8_t operation;
	uint8_t nr_segments;
	uint16_t handle;
	uint32_t pad;
	uint64_t id;
	uint64_t sector_number;
	struct ring_seg seg[RING_SEGS_DIRECT];
};

struct ring_discard64 {
	uint8_t operation;
	uint8_t flag; /* RING_DISCARD_SECURE */
	uint16_t handle;
	uint32_t pad;
	uint64_t id;
	uint64_t sector_number;
	uint64_t nr_sectors;
};

struct ring_indirect64 {
	uint8_t operation;
	uint8_t indirect_op;
	uint16_t nr_segments;
	uint32_t pad1;
	uint64_t id;
	uint64_t sector_number;
	uint16_t handle;
	uint16_t pad2;
	uint32_t indirect_grefs[RING_INDIRECT_PAGES_MAX];
	uint32_t pad3;
};

struct ring_rsp64 {
	uint64_t id;
	uint8_t operation;
	uint8_t pad1;
	int16_t status;
	uint32_t pad2;
};

/* ---- x86_32: u64 at 4-byte alignment -------------------------------------- */

struct __attribute__((packed, aligned(4))) ring_req32 {
	uint8_t operation;
	uint8_t nr_segments;
	uint16_t handle;
	uint64_t id;
	uint64_t sector_number;
	struct ring_seg seg[RING_SEGS_DIRECT];
};

struct __attribute__((packed, aligned(4))) ring_discard32 {
	uint8_t operation;
	uint8_t flag;
	uint16_t handle;
	uint64_t id;
	uint64_t sector_number;
	uint64_t nr_sectors;
};

struct __attribute__((packed, aligned(4))) ring_indirect32 {
	uint8_t operation;
	uint8_t indirect_op;
	uint16_t nr_segments;
	uint64_t id;
	uint64_t sector_number;
	uint16_t handle;
	uint16_t pad1;
	uint32_t indirect_grefs[RING_INDIRECT_PAGES_MAX];
	uint64_t pad2;
};

struct __attribute__((packed, aligned(4))) ring_rsp32 {
	uint64_t id;
	uint8_t operation;
	uint8_t pad1;
	int16_t status;
};

/* Any request of any kind and layout: a private copy of one slot. */
union ring_req_any {
	struct ring_req64 r64;
	struct ring_discard64 d64;
	struct ring_indirect64 i64;
	struct ring_req32 r32;
	struct ring_discard32 d32;
	struct ring_indirect32 i32;
	uint8_t bytes[RING_ENTRY64_BYTES];
};

/* ---- the shared ring ------------------------------------------------------ */

/*
 * The first 64 bytes of ring page 0; the slots follow.  Indices are
 * free-running; a slot holds a request until it is consumed and then the
 * response to some request.  Slots are ring_entry_bytes() wide.
 */
struct ring_sring {
	uint32_t req_prod;  /* frontend */
	uint32_t req_event; /* backend: notify me when req_prod passes this */
	uint32_t rsp_prod;  /* backend */
	uint32_t rsp_event; /* frontend */
	uint8_t pad[RING_SRING_HDR_BYTES - 16];
	uint8_t slots[];
};

/* The wire layout an ABI uses: true for the 4-byte-aligned x86_32 one. */
static inline int ring_abi_is_32(enum ring_abi abi)
{
#if defined(__i386__)
	return abi != RING_ABI_X86_64;
#else
	return abi == RING_ABI_X86_32;
#endif
}

static inline size_t ring_entry_bytes(enum ring_abi abi)
{
	return ring_abi_is_32(abi) ? RING_ENTRY32_BYTES : RING_ENTRY64_BYTES;
}

/* ---- pinned: blkif-notes §1.6 ------------------------------------------- */

static_assert(sizeof(struct ring_seg) == 8, "segment");
static_assert(sizeof(struct ring_req64) == 112, "x86_64 request");
static_assert(offsetof(struct ring_req64, id) == 8, "x86_64 id");
static_assert(offsetof(struct ring_req64, sector_number) == 16, "x86_64 sector");
static_assert(offsetof(struct ring_req64, seg) == 24, "x86_64 seg");
static_assert(sizeof(struct ring_discard64) == 32, "x86_64 discard");
static_assert(offsetof(struct ring_discard64, nr_sectors) == 24, "x86_64 nr_sectors");
static_assert(sizeof(struct ring_indirect64) == 64, "x86_64 indirect");
static_assert(offsetof(struct ring_indirect64, nr_segments) == 2, "x86_64 ind nr");
static_assert(offsetof(struct ring_indirect64, id) == 8, "x86_64 ind id");
static_assert(offsetof(struct ring_indirect64, sector_number) == 16, "x86_64 ind sector");
static_assert(offsetof(struct ring_indirect64, handle) == 24, "x86_64 ind handle");
static_assert(offsetof(struct ring_indirect64, indirect_grefs) == 28, "x86_64 ind grefs");
static_assert(sizeof(struct ring_rsp64) == 16, "x86_64 response");
static_assert(offsetof(struct ring_rsp64, operation) == 8, "x86_64 rsp op");
static_assert(offsetof(struct ring_rsp64, status) == 10, "x86_64 rsp status");

static_assert(sizeof(struct ring_req32) == 108, "x86_32 request");
static_assert(offsetof(struct ring_req32, id) == 4, "x86_32 id");
static_assert(offsetof(struct ring_req32, sector_number) == 12, "x86_32 sector");
static_assert(offsetof(struct ring_req32, seg) == 20, "x86_32 seg");
static_assert(sizeof(struct ring_discard32) == 28, "x86_32 discard");
static_assert(offsetof(struct ring_discard32, nr_sectors) == 20, "x86_32 nr_sectors");
static_assert(sizeof(struct ring_indirect32) == 64, "x86_32 indirect");
static_assert(offsetof(struct ring_indirect32, id) == 4, "x86_32 ind id");
static_assert(offsetof(struct ring_indirect32, sector_number) == 12, "x86_32 ind sector");
static_assert(offsetof(struct ring_indirect32, handle) == 20, "x86_32 ind handle");
static_assert(offsetof(struct ring_indirect32, indirect_grefs) == 24, "x86_32 ind grefs");
static_assert(sizeof(struct ring_rsp32) == 12, "x86_32 response");
static_assert(offsetof(struct ring_rsp32, operation) == 8, "x86_32 rsp op");
static_assert(offsetof(struct ring_rsp32, status) == 10, "x86_32 rsp status");

static_assert(sizeof(struct ring_sring) == RING_SRING_HDR_BYTES, "sring header");
static_assert(offsetof(struct ring_sring, req_event) == 4, "req_event");
static_assert(offsetof(struct ring_sring, rsp_prod) == 8, "rsp_prod");
static_assert(offsetof(struct ring_sring, rsp_event) == 12, "rsp_event");
static_assert(RING_ENTRY64_BYTES >= sizeof(struct ring_req64) &&
		      RING_ENTRY64_BYTES >= sizeof(struct ring_rsp64),
	      "x86_64 slot");
static_assert(RING_ENTRY32_BYTES >= sizeof(struct ring_req32) &&
		      RING_ENTRY32_BYTES >= sizeof(struct ring_rsp32),
	      "x86_32 slot");
static_assert(sizeof(union ring_req_any) == RING_ENTRY64_BYTES, "slot copy");
static_assert(RING_SEGS_PER_INDIRECT_PAGE * sizeof(struct ring_seg) == RING_PAGE_BYTES,
	      "indirect page");

#endif
