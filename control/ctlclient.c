/* SPDX-License-Identifier: MIT */
/*
 * tapctld's protocol, client side (see ctlclient.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "ctlclient.h"
#include "ctlmsg.h"
#include "errors.h"

const char *ctlc_socket(const char *explicit_path)
{
	const char *env = getenv("TAPCTLD_SOCKET");

	if (explicit_path)
		return explicit_path;
	return env && *env ? env : CTLC_DEFAULT_SOCKET;
}

int ctlc_exchange(const char *sock, const char *peer, const char *cmd, json_t *args, const int *fds,
		  unsigned nr_fds, unsigned timeout_s, json_t **result, char *err, size_t size)
{
	CLEANUP_CLOSE int fd = -1;
	json_t *req = ctlmsg_request(cmd, args), *rep = NULL, *res;
	const char *msg;
	int rc;

	if (!req)
		return -ENOMEM;
	rc = ctlmsg_connect(sock, &fd);
	if (rc < 0) {
		json_decref(req);
		snprintf(err, size, "cannot reach %s at %s: %s", peer, sock, err_str(rc));
		return rc;
	}
	rc = ctlmsg_call(fd, req, fds, nr_fds, &rep, (int)timeout_s * 1000);
	json_decref(req);
	if (rc < 0) {
		snprintf(err, size, "%s at %s: %s: %s", peer, sock, cmd,
			 rc == -ETIMEDOUT    ? "no reply in time"
			 : rc == -ECONNRESET ? "closed the connection without a reply"
					     : err_str(rc));
		return rc;
	}
	rc = ctlmsg_reply_status(rep, &res, &msg);
	if (rc < 0)
		snprintf(err, size, "%s", msg);
	else if (result)
		*result = json_incref(res);
	json_decref(rep);
	return rc;
}

int ctlc_call(const char *sock, const char *cmd, json_t *args, unsigned timeout_s, json_t **result,
	      char *err, size_t size)
{
	return ctlc_call_fds(sock, cmd, args, NULL, 0, timeout_s, result, err, size);
}

int ctlc_call_fds(const char *sock, const char *cmd, json_t *args, const int *fds, unsigned nr_fds,
		  unsigned timeout_s, json_t **result, char *err, size_t size)
{
	int rc = ctlc_exchange(sock, "tapctld", cmd, args, fds, nr_fds, timeout_s, result, err,
			       size);
	size_t n = strlen(err);

	if ((rc == -ENOENT || rc == -ECONNREFUSED) && strncmp(err, "cannot reach", 12) == 0)
		snprintf(err + n, size - n,
			 " (is tapctld running? -S SOCKET or TAPCTLD_SOCKET "
			 "names another socket)");
	return rc;
}

int ctlc_minor_ctl(const char *sock, int minor, char *path, size_t path_size, char *err,
		   size_t size)
{
	json_t *rep = NULL, *d;
	const char *ctl = NULL;
	size_t i;
	int rc = ctlc_call(sock, "list", NULL, 30, &rep, err, size);

	if (rc < 0)
		return rc;
	json_array_foreach(json_object_get(rep, "disks"), i,
			   d) if (json_integer_value(json_object_get(d, "minor")) == minor) ctl =
		json_string_value(json_object_get(d, "ctl"));
	if (!ctl || strlen(ctl) >= path_size) {
		snprintf(err, size, "tapctld at %s has no disk with minor %d", sock, minor);
		rc = -ENOENT;
	} else {
		memcpy(path, ctl, strlen(ctl) + 1);
	}
	json_decref(rep);
	return rc;
}
