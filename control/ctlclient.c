/* SPDX-License-Identifier: MIT */
/*
 * tapctld's protocol, client side (see ctlclient.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "ctlclient.h"
#include "ctlproto.h"
#include "errors.h"

const char *ctlc_socket(const char *explicit_path)
{
	const char *env = getenv("TAPCTLD_SOCKET");

	if (explicit_path)
		return explicit_path;
	return env && *env ? env : CTLC_DEFAULT_SOCKET;
}

static int connect_daemon(const char *sock, int *out, char *err, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	CLEANUP_CLOSE int fd = -1;
	int rc;

	if (strlen(sock) >= sizeof(sa.sun_path)) {
		snprintf(err, size, "control socket path is too long: %s", sock);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return neg_errno();
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = neg_errno();
		if (rc == -ENOENT || rc == -ECONNREFUSED)
			snprintf(err, size,
				 "cannot reach tapctld at %s: %s (is tapctld running? -S SOCKET "
				 "or TAPCTLD_SOCKET names another socket)",
				 sock, err_str(rc));
		else
			snprintf(err, size, "cannot reach tapctld at %s: %s", sock, err_str(rc));
		return rc;
	}
	*out = steal_fd(fd);
	return 0;
}

int ctlc_call(const char *sock, const json_t *req, unsigned timeout_s, json_t **reply, char *err,
	      size_t size)
{
	CLEANUP_CLOSE int fd = -1;
	json_t *rep = NULL;
	int rc = connect_daemon(sock, &fd, err, size);

	if (rc < 0)
		return rc;
	rc = ctlp_send(fd, CTLP_KIND_REQUEST, req);
	if (rc == 0)
		rc = ctlp_recv(fd, CTLP_KIND_REPLY, (int)timeout_s * 1000, &rep);
	if (rc < 0) {
		snprintf(err, size, "tapctld at %s: %s", sock,
			 rc == -ETIMEDOUT    ? "no reply in time"
			 : rc == -ECONNRESET ? "closed the connection without a reply"
					     : err_str(rc));
		return rc;
	}
	rc = ctlp_reply_status(rep, err, size);
	if (rc == -EPROTO)
		snprintf(err, size, "tapctld at %s sent a malformed reply", sock);
	if (rc == 0 && reply)
		*reply = json_incref(rep);
	json_decref(rep);
	return rc;
}

int ctlc_minor_ctl(const char *sock, int minor, char *path, size_t path_size, char *err,
		   size_t size)
{
	json_t *req = json_pack("{s:s}", "cmd", "list");
	json_t *rep = NULL, *d;
	const char *ctl = NULL;
	size_t i;
	int rc;

	if (!req)
		return -ENOMEM;
	rc = ctlc_call(sock, req, 30, &rep, err, size);
	json_decref(req);
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
