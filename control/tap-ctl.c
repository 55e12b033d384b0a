/* SPDX-License-Identifier: MIT */
/*
 * tap-ctl: the administrator's command line to tapctld (docs/tap-ctl.8.pod).
 * Each verb checks its arguments, sends one request and prints the reply.
 * Exit status: 0 done, 1 tapctld or the tapdisk refused (the message says
 * why), 2 wrong arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checked.h"
#include "ctlclient.h"
#include "errors.h"
#include "json.h"
#include "log.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define LONG_TIMEOUT_S 600 /* create, pause: a tapdisk may flush or repair a while */

static const char *sock_opt;

/* What a verb's options gathered. */
struct args {
	int minor;
	long pid;
	char *spec;
	bool readonly;
	bool json;
	char *fuse;
	json_t *nbd;
	json_t *opts;
};

static int usage_err(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_err(const char *verb, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "tap-ctl %s: ", verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(tap-ctl %s --help shows its options)\n", verb);
	return EXIT_USAGE;
}

/* A path made absolute against our cwd (tapctld runs in /). */
static char *absolute(const char *p)
{
	char cwd[PATH_MAX], *out;

	if (p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(p);
	if (asprintf(&out, "%s/%s", cwd, p) < 0)
		return NULL;
	return out;
}

/* TYPE:PATH with PATH made absolute (nbd: takes a URI, left alone). */
static char *absolute_spec(const char *spec)
{
	const char *colon = strchr(spec, ':');
	char *path, *out;

	if (!colon || colon == spec || !colon[1])
		return NULL;
	if (strncmp(spec, "nbd:", 4) == 0 || colon[1] == '/')
		return strdup(spec);
	path = absolute(colon + 1);
	if (!path || asprintf(&out, "%.*s:%s", (int)(colon - spec), spec, path) < 0)
		out = NULL;
	free(path);
	return out;
}

static int parse_minor(const char *verb, const char *s, int *out)
{
	uint64_t v;

	if (parse_u64(s, false, &v) < 0 || v > INT_MAX)
		return usage_err(verb, "-m '%s': a minor is a number such as 0", s);
	*out = (int)v;
	return 0;
}

/* -o k=v[,k=v...] into args->opts. */
static int parse_kv(const char *verb, const char *s, struct args *a)
{
	char *copy = strdup(s), *item, *save = NULL, *eq;
	int rc = 0;

	if (!copy)
		return EXIT_REFUSED;
	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		eq = strchr(item, '=');
		if (!eq || eq == item) {
			rc = usage_err(verb, "-o '%s': options are KEY=VALUE", item);
			break;
		}
		*eq = '\0';
		json_object_set_new(a->opts, item, json_string(eq + 1));
	}
	free(copy);
	return rc;
}

static int parse_nbd(const char *verb, const char *s, struct args *a)
{
	char *abs = NULL, *v;

	if (strncmp(s, "unix:", 5) == 0 && s[5]) {
		abs = absolute(s + 5);
		if (!abs || asprintf(&v, "unix:%s", abs) < 0) {
			free(abs);
			return EXIT_REFUSED;
		}
		free(abs);
		json_array_append_new(a->nbd, json_string(v));
		free(v);
		return 0;
	}
	if (strncmp(s, "tcp:", 4) == 0 && strchr(s + 4, ':')) {
		json_array_append_new(a->nbd, json_string(s));
		return 0;
	}
	return usage_err(verb, "--nbd '%s': use unix:PATH or tcp:HOST:PORT", s);
}

enum { OPT_NBD = 256, OPT_FUSE, OPT_JSON, OPT_HELP };

/* "-m" or "--nbd" for an option getopt_long returned. */
static const char *opt_name(int c, const struct option *lopts)
{
	static char buf[32];

	for (; lopts->name; lopts++)
		if (lopts->val == c)
			snprintf(buf, sizeof(buf), "--%s", lopts->name);
	if (c < 256)
		snprintf(buf, sizeof(buf), "-%c", c);
	return buf;
}

/*
 * Parse a verb's options.  @allowed lists the letters of the options it
 * takes ("aRo"); --nbd and --fuse come with 'R', --json with 'j'.
 */
static int parse_args(const char *verb, const char *allowed, int argc, char **argv, struct args *a,
		      void (*help)(void))
{
	static const struct option lopts[] = {
		{ "nbd", required_argument, NULL, OPT_NBD },
		{ "fuse", required_argument, NULL, OPT_FUSE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ 0 },
	};
	uint64_t v;
	char *spec;
	int c, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:a:Rm:o:p:S:h", lopts, NULL)) != -1) {
		if (c == OPT_HELP || c == 'h') {
			help();
			exit(0);
		}
		if (c == 'S') {
			sock_opt = optarg;
			continue;
		}
		if (c == ':')
			return usage_err(verb, "option %s needs a value", argv[optind - 1]);
		if (c == '?' && optopt)
			return usage_err(verb, "option '-%c' is not one of this command's", optopt);
		if (c == '?')
			return usage_err(verb, "option '%s' is not one of this command's",
					 argv[optind - 1]);
		if ((c < 256 && !strchr(allowed, c)) ||
		    ((c == OPT_NBD || c == OPT_FUSE) && !strchr(allowed, 'R')) ||
		    (c == OPT_JSON && !strchr(allowed, 'j')))
			return usage_err(verb, "option '%s' is not one of this command's",
					 opt_name(c, lopts));
		switch (c) {
		case 'a':
			spec = absolute_spec(optarg);
			if (!spec)
				return usage_err(verb,
						 "-a '%s': an image is TYPE:PATH, such as "
						 "qcow2:/images/vm.qcow2 or aio:/dev/vg/disk",
						 optarg);
			free(a->spec);
			a->spec = spec;
			break;
		case 'R':
			a->readonly = true;
			break;
		case 'm':
			rc = parse_minor(verb, optarg, &a->minor);
			if (rc)
				return rc;
			break;
		case 'p':
			if (parse_u64(optarg, false, &v) < 0 || v == 0 || v > INT_MAX)
				return usage_err(verb, "-p '%s': a process id is a number", optarg);
			a->pid = (long)v;
			break;
		case 'o':
			rc = parse_kv(verb, optarg, a);
			if (rc)
				return rc;
			break;
		case OPT_NBD:
			rc = parse_nbd(verb, optarg, a);
			if (rc)
				return rc;
			break;
		case OPT_FUSE:
			free(a->fuse);
			a->fuse = absolute(optarg);
			break;
		case OPT_JSON:
			a->json = true;
			break;
		}
	}
	if (optind < argc)
		return usage_err(verb, "unexpected argument '%s'", argv[optind]);
	return 0;
}

/* Send command @verb with @args (stolen), print the error if any.  The exit status. */
static int call(const char *verb, json_t *args, unsigned timeout_s, json_t **reply)
{
	char err[1024];
	int rc;

	rc = ctlc_call(ctlc_socket(sock_opt), verb, args, timeout_s, reply, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "tap-ctl %s: %s\n", verb, err);
		return EXIT_REFUSED;
	}
	return 0;
}

/* The open arguments of create and open. */
static void put_open_args(json_t *req, const struct args *a)
{
	json_object_set_new(req, "spec", json_string(a->spec));
	if (a->readonly)
		json_object_set_new(req, "readonly", json_true());
	if (json_array_size(a->nbd))
		json_object_set(req, "nbd", a->nbd);
	if (a->fuse)
		json_object_set_new(req, "fuse", json_string(a->fuse));
	if (json_object_size(a->opts))
		json_object_set(req, "opts", a->opts);
}

/* ---- the verbs ---------------------------------------------------------- */

static int need_minor(const char *verb, const struct args *a)
{
	return a->minor < 0 ? usage_err(verb, "which disk? -m MINOR is required") : 0;
}

static int need_spec(const char *verb, const struct args *a)
{
	return a->spec ? 0 : usage_err(verb, "which image? -a TYPE:PATH is required");
}

static int v_create(struct args *a)
{
	json_t *req, *rep = NULL;
	int rc = need_spec("create", a);

	if (rc)
		return rc;
	req = json_object();
	if (req)
		put_open_args(req, a);
	rc = call("create", req, LONG_TIMEOUT_S, &rep);
	if (rc == 0)
		printf("%lld\n", (long long)json_integer_value(json_object_get(rep, "minor")));
	json_decref(rep);
	return rc;
}

static int v_open(struct args *a)
{
	json_t *req;
	int rc = need_minor("open", a);

	if (rc || (rc = need_spec("open", a)))
		return rc;
	req = json_pack("{s:i}", "minor", a->minor);
	if (req)
		put_open_args(req, a);
	return call("open", req, LONG_TIMEOUT_S, NULL);
}

/* destroy, pause, close, detach: just the minor. */
static int v_minor_only(const char *verb, struct args *a)
{
	int rc = need_minor(verb, a);

	if (rc)
		return rc;
	return call(verb, json_pack("{s:i}", "minor", a->minor), LONG_TIMEOUT_S, NULL);
}

static int v_unpause(struct args *a)
{
	json_t *req;
	int rc = need_minor("unpause", a);

	if (rc)
		return rc;
	req = json_pack("{s:i}", "minor", a->minor);
	if (req && a->spec)
		json_object_set_new(req, "spec", json_string(a->spec));
	return call("unpause", req, LONG_TIMEOUT_S, NULL);
}

static int v_stats(struct args *a)
{
	json_t *rep = NULL;
	int rc = need_minor("stats", a);

	if (rc)
		return rc;
	rc = call("stats", json_pack("{s:i}", "minor", a->minor), 60, &rep);
	if (rc == 0)
		json_print(stdout, json_object_get(rep, "stats"));
	json_decref(rep);
	return rc;
}

static int v_spawn(struct args *a)
{
	json_t *rep = NULL;
	int rc = call("spawn", NULL, 60, &rep);

	if (rc == 0)
		printf("%lld\n", (long long)json_integer_value(json_object_get(rep, "pid")));
	json_decref(rep);
	return rc;
}

static int v_attach(struct args *a)
{
	json_t *req, *rep = NULL;
	int rc;

	if (a->pid <= 0)
		return usage_err("attach", "which tapdisk? -p PID is required (tap-ctl spawn "
					   "prints it)");
	req = json_pack("{s:i}", "pid", (int)a->pid);
	if (req && a->minor >= 0)
		json_object_set_new(req, "minor", json_integer(a->minor));
	rc = call("attach", req, 60, &rep);
	if (rc == 0)
		printf("%lld\n", (long long)json_integer_value(json_object_get(rep, "minor")));
	json_decref(rep);
	return rc;
}

/* "nbd=unix:/x fuse=/y" from a disk's open arguments. */
static void exports_text(const json_t *args, char *buf, size_t size)
{
	json_t *v;
	size_t i, n = 0;

	buf[0] = '\0';
	json_array_foreach(json_object_get(args, "nbd"), i, v) if (n < size) n +=
		(size_t)snprintf(buf + n, size - n, "%snbd=%s", n ? " " : "", json_string_value(v));
	v = json_object_get(args, "fuse");
	if (json_is_string(v) && n < size)
		snprintf(buf + n, size - n, "%sfuse=%s", n ? " " : "", json_string_value(v));
}

static void print_disk(const json_t *d)
{
	long long minor = json_integer_value(json_object_get(d, "minor"));
	const char *spec = json_string_value(json_object_get(d, "spec"));
	const char *xen = json_string_value(json_object_get(d, "xen"));
	char m[24], exports[1024];

	if (minor < 0)
		snprintf(m, sizeof(m), "-");
	else
		snprintf(m, sizeof(m), "%lld", minor);
	exports_text(json_object_get(d, "args"), exports, sizeof(exports));
	printf("%-6s %-8lld %-9s %-40s %s%s%s\n", m,
	       (long long)json_integer_value(json_object_get(d, "pid")),
	       json_string_value(json_object_get(d, "state")), spec && *spec ? spec : "-", exports,
	       xen ? " xen=" : "", xen ? xen : "");
}

static void print_table(const json_t *rep)
{
	json_t *d;
	size_t i;

	printf("%-6s %-8s %-9s %-40s %s\n", "MINOR", "PID", "STATE", "IMAGE", "EXPORTS");
	json_array_foreach(json_object_get(rep, "disks"), i, d) print_disk(d);
	json_array_foreach(json_object_get(rep, "deaths"), i, d)
	{
		time_t t = (time_t)json_integer_value(json_object_get(d, "time"));
		char when[32];
		struct tm tm;

		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
		printf("died: minor %lld, tapdisk %lld (%s) %s at %s\n",
		       (long long)json_integer_value(json_object_get(d, "minor")),
		       (long long)json_integer_value(json_object_get(d, "pid")),
		       json_string_value(json_object_get(d, "spec")),
		       json_string_value(json_object_get(d, "how")), when);
	}
}

static int v_list(struct args *a)
{
	json_t *rep = NULL;
	int rc = call("list", NULL, 60, &rep);

	if (rc)
		return rc;
	if (a->json) {
		json_object_del(rep, "ok");
		json_print(stdout, rep);
	} else {
		print_table(rep);
	}
	json_decref(rep);
	return 0;
}

/* ---- the verb table and main ----------------------------------------------- */

static const struct verb {
	const char *name;
	const char *opts; /* the short options it takes; 'j' stands for --json */
	const char *synopsis;
	const char *summary;
} verbs[] = {
	{ "create", "aRo",
	  "-a TYPE:PATH [-R] [--nbd unix:PATH|tcp:HOST:PORT]... "
	  "[--fuse FILE] [-o KEY=VALUE,...]",
	  "start a tapdisk serving an image; prints its minor" },
	{ "destroy", "m", "-m MINOR", "close a disk's image and stop its tapdisk" },
	{ "list", "j", "[--json]", "list the disks, and the tapdisks that died" },
	{ "pause", "m", "-m MINOR", "drain, flush and close the image, releasing its locks" },
	{ "unpause", "ma", "-m MINOR [-a TYPE:PATH]", "reopen the image (or a new one) and go on" },
	{ "stats", "m", "-m MINOR", "print a disk's statistics as JSON" },
	{ "spawn", "", "", "start an empty tapdisk; prints its pid" },
	{ "attach", "pm", "-p PID [-m MINOR]", "give a spawned tapdisk a minor; prints it" },
	{ "detach", "m", "-m MINOR", "stop a tapdisk that has no image open" },
	{ "open", "maRo", "-m MINOR -a TYPE:PATH [-R] [--nbd ...] [--fuse FILE] [-o ...]",
	  "open an image in an attached tapdisk" },
	{ "close", "m", "-m MINOR", "close a disk's image; the tapdisk stays" },
};

static const struct verb *current;

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "Usage: tap-ctl [-S SOCKET] COMMAND [OPTIONS]\n\nCommands:\n");
	for (i = 0; i < ARRAY_SIZE(verbs); i++)
		fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
	fprintf(f,
		"\nThe daemon's socket is -S SOCKET, else $TAPCTLD_SOCKET, else %s.\n"
		"'tap-ctl COMMAND --help' shows a command's options.\n",
		CTLC_DEFAULT_SOCKET);
}

static void verb_help(void)
{
	printf("Usage: tap-ctl %s %s\n%s\n", current->name, current->synopsis, current->summary);
	if (strchr(current->opts, 'R'))
		printf("\n  -a TYPE:PATH  the image: qcow2:PATH, aio:PATH (raw file or device), "
		       "nbd:URI\n  -R            read-only\n  --nbd         export over NBD: "
		       "unix:PATH or tcp:HOST:PORT (repeatable)\n  --fuse FILE   export as a "
		       "file through FUSE\n  -o KEY=VALUE  driver options for the top image\n");
}

static int run(const struct verb *v, struct args *a)
{
	if (strcmp(v->name, "create") == 0)
		return v_create(a);
	if (strcmp(v->name, "open") == 0)
		return v_open(a);
	if (strcmp(v->name, "unpause") == 0)
		return v_unpause(a);
	if (strcmp(v->name, "stats") == 0)
		return v_stats(a);
	if (strcmp(v->name, "list") == 0)
		return v_list(a);
	if (strcmp(v->name, "spawn") == 0)
		return v_spawn(a);
	if (strcmp(v->name, "attach") == 0)
		return v_attach(a);
	return v_minor_only(v->name, a);
}

int main(int argc, char **argv)
{
	struct args a = { .minor = -1, .nbd = json_array(), .opts = json_object() };
	int argi = 1, rc;
	size_t i;

	log_init("tap-ctl");
	while (argi + 1 < argc && strcmp(argv[argi], "-S") == 0) {
		sock_opt = argv[argi + 1];
		argi += 2;
	}
	if (argi >= argc || strcmp(argv[argi], "-h") == 0 || strcmp(argv[argi], "--help") == 0) {
		usage(argi >= argc ? stderr : stdout);
		rc = argi >= argc ? EXIT_USAGE : 0;
		goto out;
	}
	for (i = 0; i < ARRAY_SIZE(verbs) && strcmp(verbs[i].name, argv[argi]) != 0; i++)
		;
	if (i == ARRAY_SIZE(verbs)) {
		fprintf(stderr, "tap-ctl: unknown command '%s'\n\n", argv[argi]);
		usage(stderr);
		rc = EXIT_USAGE;
		goto out;
	}
	current = &verbs[i];
	rc = parse_args(current->name, current->opts, argc - argi, argv + argi, &a, verb_help);
	if (rc == 0)
		rc = run(current, &a);
out:
	free(a.spec);
	free(a.fuse);
	json_decref(a.nbd);
	json_decref(a.opts);
	return rc;
}
