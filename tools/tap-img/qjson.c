/* SPDX-License-Identifier: MIT */
/*
 * qemu-img's JSON and human layouts (qjson.h).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qjson.h"

#define QDICT_BUCKETS 512u

/*
 * The bucket QEMU's QDict puts @key in.  Its hash is the one gdbm and tdb
 * use: a seed from the length, each byte added shifted by a rotating
 * amount, then a linear congruential step.
 */
static unsigned qdict_bucket(const char *key)
{
	uint32_t v = 0x238f13afu * (uint32_t)strlen(key);
	unsigned i;

	for (i = 0; key[i]; i++)
		v += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
	return (1103515243u * v + 12345u) % QDICT_BUCKETS;
}

struct qkey {
	const char *key;
	unsigned bucket;
	size_t seq; /* insertion order */
};

static int qkey_cmp(const void *a, const void *b)
{
	const struct qkey *x = a, *y = b;

	if (x->bucket != y->bucket)
		return x->bucket < y->bucket ? -1 : 1;
	/* within a bucket the newest entry comes first */
	return x->seq < y->seq ? 1 : -1;
}

/* @obj's keys in QEMU's order; NULL (printed as empty) when out of memory. */
static struct qkey *qdict_keys(const json_t *obj, size_t *n)
{
	struct qkey *keys = calloc(json_object_size(obj) + 1, sizeof(*keys));
	const char *key;
	json_t *val;
	size_t i = 0;

	*n = 0;
	if (!keys)
		return NULL;
	/* jansson iterates in insertion order */
	json_object_foreach((json_t *)obj, key, val)
	{
		keys[i].key = key;
		keys[i].bucket = qdict_bucket(key);
		keys[i].seq = i;
		i++;
	}
	qsort(keys, i, sizeof(*keys), qkey_cmp);
	*n = i;
	return keys;
}

/* One code point of UTF-8 at *@p, advancing it; U+FFFD for a bad sequence. */
static uint32_t utf8_next(const unsigned char **p)
{
	const unsigned char *s = *p;
	unsigned len = s[0] < 0x80 ? 1 : s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
	uint32_t cp = len == 1 ? s[0] : s[0] & (0x7fu >> len);
	unsigned i;

	if (len == 0) {
		*p = s + 1;
		return 0xfffd;
	}
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*p = s + i;
			return 0xfffd;
		}
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	*p = s + len;
	return cp > 0x10ffff ? 0xfffd : cp;
}

static void print_string(FILE *f, const char *str)
{
	const unsigned char *p = (const unsigned char *)str;

	fputc('"', f);
	while (*p) {
		uint32_t cp = utf8_next(&p);
		const char *esc = cp == '"'    ? "\\\""
				  : cp == '\\' ? "\\\\"
				  : cp == '\b' ? "\\b"
				  : cp == '\f' ? "\\f"
				  : cp == '\n' ? "\\n"
				  : cp == '\r' ? "\\r"
				  : cp == '\t' ? "\\t"
					       : NULL;

		if (esc)
			fputs(esc, f);
		else if (cp > 0xffff)
			fprintf(f, "\\u%04X\\u%04X", 0xd800 + ((cp - 0x10000) >> 10),
				0xdc00 + ((cp - 0x10000) & 0x3ff));
		else if (cp < 0x20 || cp >= 0x7f)
			fprintf(f, "\\u%04X", cp);
		else
			fputc((int)cp, f);
	}
	fputc('"', f);
}

static void newline(FILE *f, int level)
{
	fputc('\n', f);
	for (int i = 0; i < level; i++)
		fputs("    ", f);
}

static void print_value(FILE *f, const json_t *v, int level);

static void print_object(FILE *f, const json_t *obj, int level)
{
	size_t n, i;
	struct qkey *keys = qdict_keys(obj, &n);

	fputc('{', f);
	for (i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		newline(f, level + 1);
		print_string(f, keys[i].key);
		fputs(": ", f);
		print_value(f, json_object_get(obj, keys[i].key), level + 1);
	}
	newline(f, level);
	fputc('}', f);
	free(keys);
}

static void print_array(FILE *f, const json_t *arr, int level)
{
	size_t i;

	fputc('[', f);
	for (i = 0; i < json_array_size(arr); i++) {
		if (i)
			fputc(',', f);
		newline(f, level + 1);
		print_value(f, json_array_get(arr, i), level + 1);
	}
	newline(f, level);
	fputc(']', f);
}

static void print_value(FILE *f, const json_t *v, int level)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		print_object(f, v, level);
		break;
	case JSON_ARRAY:
		print_array(f, v, level);
		break;
	case JSON_STRING:
		print_string(f, json_string_value(v));
		break;
	case JSON_INTEGER:
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		fprintf(f, "%.17g", json_real_value(v));
		break;
	case JSON_TRUE:
		fputs("true", f);
		break;
	case JSON_FALSE:
		fputs("false", f);
		break;
	default:
		fputs("null", f);
		break;
	}
}

void qjson_print(FILE *f, const json_t *v)
{
	print_value(f, v, 0);
	fputc('\n', f);
}

static bool is_composite(const json_t *v)
{
	return json_is_object(v) || json_is_array(v);
}

/* A scalar as qemu-img's human output shows it (strings unquoted). */
static void dump_scalar(FILE *f, const json_t *v)
{
	if (json_is_string(v))
		fputs(json_string_value(v), f);
	else if (json_is_integer(v))
		fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		fprintf(f, "%f", json_real_value(v));
	else
		fputs(json_is_true(v) ? "true" : "false", f);
}

static void dump_entry(FILE *f, const json_t *v, int level)
{
	if (is_composite(v)) {
		fputc('\n', f);
		qjson_dump_human(f, v, level + 1);
	} else {
		fputc(' ', f);
		dump_scalar(f, v);
		fputc('\n', f);
	}
}

void qjson_dump_human(FILE *f, const json_t *v, int level)
{
	size_t n, i;
	struct qkey *keys;

	if (json_is_array(v)) {
		for (i = 0; i < json_array_size(v); i++) {
			fprintf(f, "%*s[%zu]:", level * 4, "", i);
			dump_entry(f, json_array_get(v, i), level);
		}
		return;
	}
	if (!json_is_object(v)) {
		dump_scalar(f, v);
		return;
	}
	keys = qdict_keys(v, &n);
	for (i = 0; i < n; i++) {
		char *name = strdup(keys[i].key);

		for (char *c = name; c && *c; c++)
			*c = *c == '-' ? ' ' : *c;
		fprintf(f, "%*s%s:", level * 4, "", name ? name : keys[i].key);
		free(name);
		dump_entry(f, json_object_get(v, keys[i].key), level);
	}
	free(keys);
}
