/* SPDX-License-Identifier: MIT */
/*
 * tapctld: the qtap control daemon (docs/tapctld.8.pod).
 *
 *   tapctld [-f] [-S SOCKET] [--state-dir DIR] [--tapdisk PATH] [--timeout S]
 *           [--xen | --no-xen] [--xen-kind KIND] [--pid-file FILE] [-D FLAGS]
 *
 * Without -f it daemonises, and the command returns once the control
 * socket accepts (or fails with the reason), so scripts need not poll.
 * SIGTERM or SIGINT stop it gracefully: the socket closes, the tapdisks
 * keep serving, and the next tapctld re-adopts them from the state
 * directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "log.h"
#include "sigfd.h"
#include "tapctld.h"

#define DEFAULT_SOCK "/run/qtap/tapctld.sock"
#define DEFAULT_STATE "/run/qtap"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: tapctld [-f] [-S SOCKET] [--state-dir DIR] [--tapdisk PATH] [--timeout S]\n"
		"               [--xen | --no-xen] [--xen-kind KIND] [--pid-file FILE] [-D FLAGS]\n"
		"\n"
		"The qtap control daemon: spawns and supervises one tapdisk per disk, and\n"
		"serves Xen tap disks when xenstore is there.\n"
		"\n"
		"  -f               stay in the foreground, log to stderr\n"
		"  -S SOCKET        control socket (default %s)\n"
		"  --state-dir DIR  where tapdisk records and sockets live (default %s)\n"
		"  --tapdisk PATH   the tapdisk program (default: next to tapctld, then PATH)\n"
		"  --timeout S      seconds to wait for a tapdisk command (default 60)\n"
		"  --xen            the Xen backend is required (fail without xenstore)\n"
		"  --no-xen         no Xen backend even if xenstore is there\n"
		"  --xen-kind KIND  backend directory to watch (default vbd3)\n"
		"  --pid-file FILE  write the daemon's process id to FILE once it is ready\n"
		"  -D FLAGS         debug output for: %s\n",
		DEFAULT_SOCK, DEFAULT_STATE, log_debug_names());
}

/* The tapdisk next to our own binary, else the first on PATH. */
static int find_tapdisk(char *buf, size_t size)
{
	char self[PATH_MAX], *slash, *path, *dir, *save = NULL;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash && (size_t)(slash - self) + sizeof("/tapdisk") <= size) {
			memcpy(buf, self, (size_t)(slash - self));
			memcpy(buf + (slash - self), "/tapdisk", sizeof("/tapdisk"));
			if (access(buf, X_OK) == 0)
				return 0;
		}
	}
	path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/local/bin:/usr/bin");
	for (dir = path ? strtok_r(path, ":", &save) : NULL; dir;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(buf, size, "%s/tapdisk", dir);
		if (access(buf, X_OK) == 0) {
			free(path);
			return 0;
		}
	}
	free(path);
	return -ENOENT;
}

static int parse_opts(int argc, char **argv, struct tcd_opts *o, bool *foreground)
{
	static const struct option lopts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "tapdisk", required_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "xen", no_argument, NULL, 'x' },
		{ "no-xen", no_argument, NULL, 'X' },
		{ "xen-kind", required_argument, NULL, 'k' },
		{ "pid-file", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "fS:D:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			*foreground = true;
			break;
		case 'S':
			o->sock_path = optarg;
			break;
		case 's':
			o->state_dir = optarg;
			break;
		case 't':
			o->tapdisk_bin = optarg;
			break;
		case 'T':
			if (parse_u64(optarg, false, &v) < 0 || v == 0 || v > 3600) {
				fprintf(stderr, "tapctld: --timeout '%s': seconds from 1 to 3600\n",
					optarg);
				return -1;
			}
			o->tapdisk_timeout_s = (unsigned)v;
			break;
		case 'x':
			o->xen = o->xen_required = true;
			break;
		case 'X':
			o->xen = o->xen_required = false;
			break;
		case 'k':
			o->xen_kind = optarg;
			break;
		case 'P':
			o->pid_file = optarg;
			break;
		case 'D':
			if (log_set_debug_flags(optarg) < 0)
				return -1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "tapctld: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (o->state_dir[0] != '/' || o->sock_path[0] != '/') {
		fprintf(stderr, "tapctld: the socket and the state directory must be absolute "
				"paths\n");
		return -1;
	}
	return 0;
}

/*
 * Daemonise: the parent waits on a pipe until the child says it is ready
 * (one byte 0) or failed (the pipe closes), and exits accordingly.
 */
static int daemonise(int *ready_fd)
{
	int p[2];
	char b;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return neg_errno();
	pid = fork();
	if (pid < 0)
		return neg_errno();
	if (pid > 0) {
		close(p[1]);
		_exit(read(p[0], &b, 1) == 1 && b == 0 ? 0 : 1);
	}
	close(p[0]);
	setsid();
	if (chdir("/") < 0)
		return neg_errno();
	*ready_fd = p[1];
	return 0;
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

static void on_signal(struct evloop_watch *w, uint32_t events)
{
	struct tcd *t = w->opaque;
	struct signalfd_siginfo si;

	if (read(w->fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info("signal %u: shutting down; the tapdisks keep running and the next tapctld "
		 "re-adopts them",
		 si.ssi_signo);
	t->stopping = true;
	evloop_stop(t->loop);
}

static int signals(struct tcd *t, struct evloop_watch *w)
{
	static const int sigs[] = { SIGTERM, SIGINT };
	int fd = sigfd_open(sigs, 2);

	if (fd < 0)
		return fd;
	*w = (struct evloop_watch){ .fd = fd, .events = EPOLLIN, .fn = on_signal, .opaque = t };
	return evloop_watch_add(t->loop, w);
}

static int write_pid_file(const char *path)
{
	FILE *f = fopen(path, "w");
	int rc = 0;

	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0)
		rc = neg_errno();
	if (f && fclose(f) != 0 && rc == 0)
		rc = neg_errno();
	if (rc < 0)
		log_err("pid file %s: %s", path, err_str(rc));
	return rc;
}

/* Lock the state, adopt what runs, open the socket, start the Xen backend. */
static int start(struct tcd *t)
{
	int rc = tcd_state_lock(t);

	if (rc < 0)
		return rc;
	tcd_state_adopt(t);
	rc = tcd_listen(t);
	if (rc < 0)
		return rc;
	rc = tcd_xen_start(t);
	if (rc < 0)
		return rc;
	if (t->opts.pid_file && (rc = write_pid_file(t->opts.pid_file)) < 0)
		return rc;
	log_info("listening on %s (state in %s, tapdisk %s)", t->opts.sock_path, t->opts.state_dir,
		 t->opts.tapdisk_bin);
	return 0;
}

static void stop(struct tcd *t)
{
	struct tcd_disk *d;

	tcd_xen_stop(t);
	tcd_xen_local_free(t);
	tcd_unlisten(t);
	while ((d = t->disks)) {
		t->disks = d->next;
		tcd_disk_free(d); /* the tapdisk runs on; its record stays */
	}
	if (t->lock_fd >= 0)
		close(t->lock_fd);
	if (t->opts.pid_file && t->stopping)
		unlink(t->opts.pid_file);
}

int main(int argc, char **argv)
{
	static char tapdisk[PATH_MAX];
	struct tcd t = { .listen_fd = -1, .lock_fd = -1 };
	struct evloop_watch sigw = { .fd = -1 };
	bool foreground = false;
	int ready_fd = -1, rc;

	log_init("tapctld");
	t.opts = (struct tcd_opts){ .sock_path = DEFAULT_SOCK,
				    .state_dir = DEFAULT_STATE,
				    .tapdisk_timeout_s = 60,
				    .xen = true,
				    .xen_kind = "vbd3" };
	if (parse_opts(argc, argv, &t.opts, &foreground) < 0)
		return 2;
	if (!t.opts.tapdisk_bin) {
		if (find_tapdisk(tapdisk, sizeof(tapdisk)) < 0) {
			fprintf(stderr, "tapctld: no tapdisk program next to tapctld or on PATH "
					"(use --tapdisk PATH)\n");
			return 1;
		}
		t.opts.tapdisk_bin = tapdisk;
	}
	umask(0077);
	if (!foreground && daemonise(&ready_fd) < 0)
		return 1;
	rc = evloop_new(&t.loop);
	if (rc == 0)
		rc = signals(&t, &sigw);
	if (rc == 0)
		rc = start(&t);
	if (rc == 0 && ready_fd >= 0) {
		/* Until ready, errors go to the terminal that started us. */
		log_set_dest(LOG_DEST_SYSLOG);
		detach_stdio();
		rc = write(ready_fd, "", 1) == 1 ? 0 : -EIO;
		close(ready_fd);
	}
	if (rc == 0)
		rc = evloop_run(t.loop);
	stop(&t);
	evloop_watch_del(&sigw);
	if (sigw.fd >= 0)
		close(sigw.fd);
	evloop_free(t.loop);
	return rc < 0 ? 1 : 0;
}
