// SPDX-License-Identifier: MIT
/*
 * The sync engine: each operation runs with plain system calls when the
 * loop's prepare hook hands it over, and its completion is delivered by the
 * same hook afterwards, never inside aio_submit().  It needs nothing from
 * the kernel beyond preadv/pwritev, so it is the fallback of last resort and
 * the reference the other engines are tested against.
 */
#include "aio-internal.h"

static int sync_init(struct aio_ctx *ctx)
{
	ctx->engine = NULL;
	ctx->engine_fd = -1;
	return 0;
}

static void sync_fini(struct aio_ctx *ctx)
{
}

static void sync_queue(struct aio_ctx *ctx, struct aio_slot *slot)
{
	aio_slot_complete(ctx, slot, aio_slot_exec_sync(ctx, slot));
}

const struct aio_engine_ops aio_sync_ops = {
	.name = "sync",
	.id = AIO_ENGINE_SYNC,
	.init = sync_init,
	.fini = sync_fini,
	.queue = sync_queue,
};
