/* SPDX-License-Identifier: MIT */
/*
 * tap-front's two engines (load.h's struct tf_engine): a blkif ring of a
 * tapdisk (front.h), and a raw file or block device driven by libaio with
 * O_DIRECT, the physical limit the ring's figures are compared with.
 */
#ifndef QTAP_TAP_FRONT_ENGINE_H
#define QTAP_TAP_FRONT_ENGINE_H

#include "aio.h"
#include "load.h"

extern const struct tf_engine tf_ring_engine; /* ctx: a struct tf_queue */
extern const struct tf_engine tf_raw_engine;  /* ctx: a struct tf_raw */

struct tf_raw;

/*
 * tf_raw_new - @depth slots of @bs bytes on @file (shared by every queue),
 * with its own event loop and libaio context.  Call from the thread that
 * will use it.  0 or -errno (reported).
 */
int tf_raw_new(struct aio_file *file, unsigned depth, uint64_t bs, struct tf_raw **out);
void tf_raw_free(struct tf_raw *raw);

#endif
