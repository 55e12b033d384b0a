// SPDX-License-Identifier: MIT
/*
 * tap-front's side of tapdisk's ring commands (attach.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "attach.h"
#include "ctlmsg.h"
#include "errors.h"

#define CALL_TIMEOUT_MS 30000

int tf_ctl_connect(const char *path, struct tf_attach *a)
{
	int err = ctlmsg_connect(path, &a->sock);

	a->attached = false;
	if (err)
		fprintf(stderr, "tap-front: cannot connect to tapdisk's control socket %s: %s\n",
			path, err_str(err));
	return err;
}

/* Send @cmd and return its result (borrowed from *@reply) or the error. */
static int call(struct tf_attach *a, const char *cmd, json_t *args, const int *fds, unsigned nr_fds,
		json_t **reply, json_t **result)
{
	json_t *req = ctlmsg_request(cmd, args);
	const char *msg = NULL;
	int err;

	if (!req)
		return -ENOMEM;
	err = ctlmsg_call(a->sock, req, fds, nr_fds, reply, CALL_TIMEOUT_MS);
	json_decref(req);
	if (err) {
		fprintf(stderr, "tap-front: %s: the control exchange failed: %s\n", cmd,
			err_str(err));
		return err;
	}
	err = ctlmsg_reply_status(*reply, result, &msg);
	if (err) {
		fprintf(stderr, "tap-front: tapdisk refused %s: %s\n", cmd,
			msg ? msg : err_str(err));
		json_decref(*reply);
		*reply = NULL;
	}
	return err;
}

static uint64_t get_u64(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v)
								: 0;
}

int tf_ctl_ring_info(struct tf_attach *a, struct tf_disk *disk)
{
	json_t *reply = NULL, *res = NULL;
	int err = call(a, "ring-info", NULL, NULL, 0, &reply, &res);

	if (err)
		return err;
	*disk = (struct tf_disk){
		.sectors = get_u64(res, "sectors"),
		.sector_size = (uint32_t)get_u64(res, "sector_size"),
		.info = (uint32_t)get_u64(res, "info"),
		.discard = json_is_true(json_object_get(res, "discard")),
		.max_order = (unsigned)get_u64(res, "max_ring_page_order"),
		.max_queues = (unsigned)get_u64(res, "max_queues"),
		.max_indirect_segs = (unsigned)get_u64(res, "max_indirect_segments"),
	};
	json_decref(reply);
	if (disk->sectors == 0 || disk->sector_size < RING_SECTOR_BYTES || disk->max_queues == 0) {
		fprintf(stderr, "tap-front: ring-info: tapdisk's answer lacks the disk's size, "
				"sector size or queue count\n");
		return -EPROTO;
	}
	return 0;
}

static json_t *refs_json(struct tf_dev *dev, unsigned order)
{
	json_t *all = json_array();

	for (unsigned q = 0; all && q < tf_dev_nr_queues(dev); q++) {
		const uint32_t *refs = tf_queue_ring_refs(tf_dev_queue(dev, q));
		json_t *one = json_array();

		for (unsigned i = 0; one && i < (1u << order); i++)
			if (json_array_append_new(one, json_integer(refs[i])))
				break;
		if (!one || json_array_size(one) != (1u << order) ||
		    json_array_append_new(all, one)) {
			json_decref(all);
			return NULL;
		}
	}
	return all;
}

int tf_ctl_attach(struct tf_attach *a, struct tf_dev *dev, enum ring_abi abi, unsigned order)
{
	int fds[CTLMSG_MAX_FDS];
	unsigned nr = 0;
	json_t *reply = NULL, *res = NULL;
	/* detach_on_close: should tap-front die, tapdisk lets go of its rings */
	json_t *args = json_pack("{s:s, s:s, s:i, s:i, s:o, s:b}", "transport", "local", "protocol",
				 tf_abi_protocol(abi), "order", (int)order, "queues",
				 (int)tf_dev_nr_queues(dev), "refs", refs_json(dev, order),
				 "detach_on_close", 1);
	int err;

	if (!args || 1 + 2 * tf_dev_nr_queues(dev) > CTLMSG_MAX_FDS) {
		json_decref(args);
		return -ENOMEM;
	}
	fds[nr++] = tf_dev_memfd(dev);
	for (unsigned q = 0; q < tf_dev_nr_queues(dev); q++) {
		fds[nr++] = tf_queue_kick_fd(tf_dev_queue(dev, q));
		fds[nr++] = tf_queue_irq_fd(tf_dev_queue(dev, q));
	}
	err = call(a, "attach-ring", args, fds, nr, &reply, &res);
	if (err)
		return err;
	a->ring_id = get_u64(res, "ring");
	a->attached = true;
	json_decref(reply);
	return 0;
}

int tf_ctl_detach(struct tf_attach *a)
{
	json_t *reply = NULL, *res = NULL;
	int err = 0;

	if (a->attached) {
		err = call(a, "detach-ring", json_pack("{s:I}", "ring", (json_int_t)a->ring_id),
			   NULL, 0, &reply, &res);
		json_decref(reply);
		a->attached = false;
	}
	if (a->sock >= 0)
		close(a->sock);
	a->sock = -1;
	return err;
}

static const char *const abi_names[] = {
	[RING_ABI_NATIVE] = "native",
	[RING_ABI_X86_32] = "x86_32",
	[RING_ABI_X86_64] = "x86_64",
};

const char *tf_abi_protocol(enum ring_abi abi)
{
	switch (abi) {
	case RING_ABI_X86_32:
		return "x86_32-abi";
	case RING_ABI_X86_64:
		return "x86_64-abi";
	case RING_ABI_NATIVE:
		break;
	}
	return "native";
}

int tf_abi_parse(const char *s, enum ring_abi *out)
{
	for (unsigned i = 0; i < sizeof(abi_names) / sizeof(abi_names[0]); i++) {
		if (strcmp(s, abi_names[i]) == 0) {
			*out = (enum ring_abi)i;
			return 0;
		}
	}
	return -EINVAL;
}
