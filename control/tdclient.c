/* SPDX-License-Identifier: MIT */
/*
 * The tapdisk control socket, client side (see tdclient.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "ctlproto.h"
#include "errors.h"
#include "tdclient.h"

void tdc_argv(const char *bin, const char *ctl_path, char **argv)
{
	unsigned i = 0;

	argv[i++] = (char *)bin;
	argv[i++] = (char *)"--ctl";
	argv[i++] = (char *)ctl_path;
	argv[i++] = (char *)"-f";
	argv[i] = NULL;
}

static int connect_to(const char *path, int *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	CLEANUP_CLOSE int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return neg_errno();
	*out = steal_fd(fd);
	return 0;
}

int tdc_call(const char *ctl_path, const char *cmd, const json_t *args, unsigned timeout_s,
	     json_t **reply, char *err, size_t size)
{
	CLEANUP_CLOSE int fd = -1;
	json_t *req, *rep = NULL;
	int rc;

	req = args ? json_deep_copy(args) : json_object();
	if (!req || json_object_set_new(req, "cmd", json_string(cmd)) < 0) {
		json_decref(req);
		return -ENOMEM;
	}
	rc = connect_to(ctl_path, &fd);
	if (rc < 0) {
		snprintf(err, size, "cannot reach the tapdisk at %s: %s", ctl_path, err_str(rc));
		json_decref(req);
		return rc;
	}
	rc = ctlp_send(fd, CTLP_KIND_REQUEST, req);
	json_decref(req);
	if (rc == 0)
		rc = ctlp_recv(fd, CTLP_KIND_REPLY, (int)timeout_s * 1000, &rep);
	if (rc < 0) {
		snprintf(err, size, "tapdisk at %s: %s: %s", ctl_path, cmd,
			 rc == -ETIMEDOUT ? "no answer in time" : err_str(rc));
		return rc;
	}
	rc = ctlp_reply_status(rep, err, size);
	if (rc == -EPROTO)
		snprintf(err, size, "tapdisk at %s: %s: malformed reply", ctl_path, cmd);
	if (rc == 0 && reply)
		*reply = json_incref(rep);
	json_decref(rep);
	return rc;
}

static unsigned get_uint(const json_t *o, const char *key, unsigned dflt)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
		return dflt;
	return (unsigned)json_integer_value(v);
}

int tdc_info(const char *ctl_path, unsigned timeout_s, struct tdc_info *out, char *err, size_t size)
{
	json_t *rep = NULL, *v;
	int rc = tdc_call(ctl_path, "info", NULL, timeout_s, &rep, err, size);

	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	v = json_object_get(rep, "size_bytes");
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		snprintf(err, size, "tapdisk at %s: info: no size_bytes in the reply", ctl_path);
		json_decref(rep);
		return -EPROTO;
	}
	out->size_bytes = (uint64_t)json_integer_value(v);
	out->block_bytes = get_uint(rep, "block_bytes", 512);
	out->phys_block_bytes = get_uint(rep, "phys_block_bytes", out->block_bytes);
	out->discard_bytes = get_uint(rep, "discard_bytes", out->phys_block_bytes);
	out->readonly = json_is_true(json_object_get(rep, "readonly"));
	out->can_discard = json_is_true(json_object_get(rep, "can_discard"));
	out->max_ring_page_order = get_uint(rep, "max_ring_page_order", 0);
	out->max_queues = get_uint(rep, "max_queues", 1);
	out->max_indirect_segments = get_uint(rep, "max_indirect_segments", 0);
	json_decref(rep);
	return 0;
}

int tdc_ping(const char *ctl_path)
{
	int fd, rc = connect_to(ctl_path, &fd);

	if (rc == 0)
		close(fd);
	return rc;
}
