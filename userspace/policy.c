// SPDX-License-Identifier: GPL-2.0
/*
 * The policy file (policy.h, docs/policy.md).
 *
 * Loading is three steps: the bytes become a jsonpos tree (strict JSON with
 * a LINE:COL on every key and value), keyword tables turn the tree into
 * struct policy, and the checks that need the whole file run last (duplicate
 * names and ports, client "servers" entries that name no server). The first
 * problem found stops the load; it is reported at the key or value that is
 * wrong, or at the '{' of an object that lacks a required key.
 *
 * A keyword row names a key, the JSON type it takes, and a fill function
 * that validates the value and stores it at an offset in the struct being
 * filled (OpenSSH servconf.c style); most keys share a fill function.
 *
 * The matchers at the end are what the decision code calls per request;
 * they only read the policy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jsonpos.h"
#include "jwt.h"
#include "policy.h"

const char policy_default_json[] =
	"{\n"
	"  \"mode\": \"monitor\",\n"
	"  \"servers\": [\n"
	"    {\"name\": \"mcp\", \"port\": 8080}\n"
	"  ],\n"
	"  \"unknown_client\": \"alert\",\n"
	"  \"unattributed\": \"alert\",\n"
	"  \"fail\": \"closed\",\n"
	"  \"clients\": []\n"
	"}\n";

/* Enums are stored through an unsigned int in the keyword tables. */
_Static_assert(sizeof(enum policy_mode) == sizeof(unsigned int), "enum size");
_Static_assert(sizeof(enum policy_action) == sizeof(unsigned int), "enum size");
_Static_assert(sizeof(enum policy_fail) == sizeof(unsigned int), "enum size");

/* Quoted strings in messages are cut to this many bytes. */
#define QUOTE_MAX	40
#define QUOTE_BUF	(QUOTE_MAX + 16)
/* Most keys in one object's table (the seen[] array below). */
#define KEYWORDS_MAX	16
/* uid_t/gid_t -1 means "no user"; it cannot be a selector. */
#define ID_MAX		4294967294u

struct loader {
	struct policy *pol;
	struct policy_error *err;
	/* Kept for the checks after the walk, which report at entries. */
	const struct jsonpos_node *clients;
};

struct keyword;
typedef int (*fill_fn)(struct loader *ld, const struct keyword *kw,
		       const struct jsonpos_node *v, void *dst);

struct enum_name {
	const char *name;
	unsigned int value;
};

struct keyword {
	const char *name;
	enum jsonpos_type type;
	bool required;
	fill_fn fill;
	size_t off;			/* where fill stores, in dst */
	size_t has_off;			/* bool set when given; 0: none */
	unsigned int min, max;		/* integers */
	const struct enum_name *names;	/* enums, NULL-terminated */
};

/* ---- messages ---------------------------------------------------------- */

__attribute__((format(printf, 4, 5)))
static int fail_at(struct loader *ld, int line, int col, const char *fmt, ...)
{
	va_list ap;

	ld->err->line = line;
	ld->err->col = col;
	va_start(ap, fmt);
	vsnprintf(ld->err->msg, sizeof(ld->err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

#define fail_value(ld, v, ...) fail_at(ld, (v)->line, (v)->col, __VA_ARGS__)
#define fail_key(ld, v, ...) fail_at(ld, (v)->key_line, (v)->key_col, __VA_ARGS__)

static int fail_nomem(struct loader *ld)
{
	fail_at(ld, 0, 0, "out of memory");
	return -ENOMEM;
}

/*
 * s as a double-quoted string fit for a one-line message: quotes,
 * backslashes and control bytes escaped, cut at a character boundary once
 * QUOTE_MAX bytes are written. A character writes at most 4 bytes, so the
 * output fits QUOTE_BUF.
 */
static const char *quote(char *buf, const char *s, size_t len)
{
	char *d = buf;
	size_t i;

	*d++ = '"';
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((size_t)(d - buf) > QUOTE_MAX && (c & 0xc0) != 0x80) {
			memcpy(d, "...", 3);
			d += 3;
			break;
		}
		if (c == '"' || c == '\\') {
			*d++ = '\\';
			*d++ = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			d += snprintf(d, 5, "\\x%02x", c);
		} else {
			*d++ = (char)c;
		}
	}
	*d++ = '"';
	*d = '\0';
	return buf;
}

static const char *expected_type(enum jsonpos_type t)
{
	switch (t) {
	case JSONPOS_STRING:
		return "a string";
	case JSONPOS_NUMBER:
		return "an integer";
	case JSONPOS_BOOL:
		return "true or false";
	case JSONPOS_ARRAY:
		return "an array";
	case JSONPOS_OBJECT:
		return "an object";
	default:
		return "null";
	}
}

/* Edit distance, to suggest the key an unknown one was probably meant as. */
static size_t edit_distance(const char *a, size_t la, const char *b)
{
	size_t lb = strlen(b), row[32], i, j;

	if (la >= sizeof(row) / sizeof(row[0]) || lb >= sizeof(row) / sizeof(row[0]))
		return (size_t)-1;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static int fail_unknown_key(struct loader *ld, const struct jsonpos_node *m,
			    const struct keyword *table, size_t n, const char *what)
{
	char q[QUOTE_BUF], known[160];
	size_t i, best = 3, off = 0;
	const char *guess = NULL;

	for (i = 0; i < n; i++) {
		size_t d = edit_distance(m->key, m->key_len, table[i].name);

		/* "client" for "client_id": a cut-short key is a near miss too. */
		if (m->key_len >= 3 && strncmp(table[i].name, m->key, m->key_len) == 0)
			d = 1;

		if (d < best) {
			best = d;
			guess = table[i].name;
		}
	}
	quote(q, m->key, m->key_len);
	if (guess)
		return fail_key(ld, m, "unknown key %s in %s; did you mean \"%s\"?",
				q, what, guess);
	known[0] = '\0';
	for (i = 0; i < n && off < sizeof(known); i++)
		off += (size_t)snprintf(known + off, sizeof(known) - off, "%s%s",
					i ? ", " : "", table[i].name);
	return fail_key(ld, m, "unknown key %s in %s (known keys: %s)", q, what, known);
}

/* ---- scalar fill functions --------------------------------------------- */

static char **str_slot(const struct keyword *kw, void *dst)
{
	return (char **)((char *)dst + kw->off);
}

/* Names and globs alike: non-empty, and no NUL (C strings from here on). */
static int check_text(struct loader *ld, const char *key, const struct jsonpos_node *v)
{
	if (v->len == 0)
		return fail_value(ld, v, "\"%s\" must not be empty", key);
	if (strlen(v->str) != v->len)
		return fail_value(ld, v, "\"%s\" must not contain a NUL character (\\u0000)", key);
	return 0;
}

static int dup_text(struct loader *ld, const char *key, const struct jsonpos_node *v,
		    char **out)
{
	int err = check_text(ld, key, v);

	if (err)
		return err;
	*out = strdup(v->str);
	return *out ? 0 : fail_nomem(ld);
}

static int fill_string(struct loader *ld, const struct keyword *kw,
		       const struct jsonpos_node *v, void *dst)
{
	return dup_text(ld, kw->name, v, str_slot(kw, dst));
}

/*
 * fnmatch(3) quietly treats a '[' without its ']' as a literal, so a typo
 * would make a selector that never matches. Refuse it, and a trailing
 * lone backslash, which escapes nothing.
 */
static int check_glob(struct loader *ld, const char *key, const struct jsonpos_node *v)
{
	const char *p = v->str;
	size_t i, j;

	for (i = 0; p[i]; i++) {
		if (p[i] == '\\') {
			if (!p[i + 1])
				return fail_value(ld, v, "\"%s\" ends in a lone '\\' (write \\\\ for a backslash)", key);
			i++;
			continue;
		}
		if (p[i] != '[')
			continue;
		j = i + 1;
		if (p[j] == '!' || p[j] == '^')
			j++;
		if (p[j] == ']')
			j++;
		while (p[j] && p[j] != ']') {
			if (p[j] == '[' && (p[j + 1] == ':' || p[j + 1] == '=' || p[j + 1] == '.')) {
				const char *close = strstr(p + j + 2, (char[]){ p[j + 1], ']', 0 });

				if (!close)
					break;
				j = (size_t)(close - p) + 2;
				continue;
			}
			j++;
		}
		if (!p[j])
			return fail_value(ld, v, "\"%s\" has a '[' with no closing ']' (at byte %zu of the pattern; write [[] for a literal '[')",
					  key, i + 1);
		i = j;
	}
	return 0;
}

static int fill_glob(struct loader *ld, const struct keyword *kw,
		     const struct jsonpos_node *v, void *dst)
{
	int err = check_text(ld, kw->name, v);

	if (!err)
		err = check_glob(ld, kw->name, v);
	if (err)
		return err;
	*str_slot(kw, dst) = strdup(v->str);
	return *str_slot(kw, dst) ? 0 : fail_nomem(ld);
}

/* Hex digests are compared as lower-case text: store them that way. */
static int fill_sha256(struct loader *ld, const struct keyword *kw,
		       const struct jsonpos_node *v, void *dst)
{
	char q[QUOTE_BUF], *s;
	size_t i;

	for (i = 0; i < v->len; i++)
		if (!strchr("0123456789abcdefABCDEF", v->str[i]) || !v->str[i])
			break;
	if (v->len != 64 || i != 64)
		return fail_value(ld, v, "\"%s\" must be 64 hex digits (a SHA-256), not %s",
				  kw->name, quote(q, v->str, v->len));
	s = strdup(v->str);
	if (!s)
		return fail_nomem(ld);
	for (i = 0; i < 64; i++)
		if (s[i] >= 'A' && s[i] <= 'F')
			s[i] = (char)(s[i] - 'A' + 'a');
	*str_slot(kw, dst) = s;
	return 0;
}

static int fill_addr(struct loader *ld, const struct keyword *kw,
		     const struct jsonpos_node *v, void *dst)
{
	unsigned char bin[sizeof(struct in6_addr)];
	char q[QUOTE_BUF];
	int err = check_text(ld, kw->name, v);

	if (err)
		return err;
	if (inet_pton(AF_INET, v->str, bin) != 1 && inet_pton(AF_INET6, v->str, bin) != 1)
		return fail_value(ld, v, "\"%s\" must be an IPv4 or IPv6 address, not %s",
				  kw->name, quote(q, v->str, v->len));
	return fill_string(ld, kw, v, dst);
}

/* The daemon's working directory is not the policy's: require absolute. */
static int fill_path(struct loader *ld, const struct keyword *kw,
		     const struct jsonpos_node *v, void *dst)
{
	char q[QUOTE_BUF];
	int err = check_text(ld, kw->name, v);

	if (err)
		return err;
	if (v->str[0] != '/')
		return fail_value(ld, v, "\"%s\" must be an absolute path, not %s",
				  kw->name, quote(q, v->str, v->len));
	return fill_string(ld, kw, v, dst);
}

static int fill_bool(struct loader *ld, const struct keyword *kw,
		     const struct jsonpos_node *v, void *dst)
{
	*(bool *)((char *)dst + kw->off) = v->boolean;
	return 0;
}

/* A JSON number that must be a whole number in [min, max]. */
static int parse_uint(struct loader *ld, const struct keyword *kw,
		      const struct jsonpos_node *v, unsigned int *out)
{
	unsigned long long n = 0;
	bool big = false;
	size_t i;

	if (strpbrk(v->str, ".eE"))
		return fail_value(ld, v, "\"%s\" must be a whole number, not %.24s%s",
				  kw->name, v->str, v->len > 24 ? "..." : "");
	for (i = v->str[0] == '-'; i < v->len; i++) {
		n = n * 10 + (unsigned long long)(v->str[i] - '0');
		if (n > kw->max) {
			big = true;
			break;
		}
	}
	if (big || n < kw->min || (v->str[0] == '-' && n))
		return fail_value(ld, v, "\"%s\" must be between %u and %u, not %.24s%s",
				  kw->name, kw->min, kw->max, v->str, v->len > 24 ? "..." : "");
	*out = (unsigned int)n;
	return 0;
}

static int fill_uint(struct loader *ld, const struct keyword *kw,
		     const struct jsonpos_node *v, void *dst)
{
	return parse_uint(ld, kw, v, (unsigned int *)((char *)dst + kw->off));
}

static int fill_u32(struct loader *ld, const struct keyword *kw,
		    const struct jsonpos_node *v, void *dst)
{
	unsigned int n = 0;
	int err = parse_uint(ld, kw, v, &n);

	if (!err)
		*(uint32_t *)((char *)dst + kw->off) = n;
	return err;
}

static int fill_u16(struct loader *ld, const struct keyword *kw,
		    const struct jsonpos_node *v, void *dst)
{
	unsigned int n = 0;
	int err = parse_uint(ld, kw, v, &n);

	if (!err)
		*(uint16_t *)((char *)dst + kw->off) = (uint16_t)n;
	return err;
}

static int fill_enum(struct loader *ld, const struct keyword *kw,
		     const struct jsonpos_node *v, void *dst)
{
	const struct enum_name *e;
	char q[QUOTE_BUF], list[96];
	size_t off = 0, n;

	for (e = kw->names; e->name; e++) {
		if (strlen(e->name) == v->len && memcmp(e->name, v->str, v->len) == 0) {
			*(unsigned int *)((char *)dst + kw->off) = e->value;
			return 0;
		}
	}
	for (n = 0; kw->names[n].name; n++)
		;
	for (e = kw->names; e->name && off < sizeof(list); e++) {
		const char *sep = e == kw->names ? "" : e - kw->names == (long)n - 1 ? " or " : ", ";

		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s\"%s\"", sep, e->name);
	}
	return fail_value(ld, v, "\"%s\" must be %s, not %s", kw->name, list,
			  quote(q, v->str, v->len));
}

/* ---- objects and arrays ------------------------------------------------ */

static const struct keyword *keyword_find(const struct keyword *table, size_t n,
					  const struct jsonpos_node *m)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(table[i].name) == m->key_len &&
		    memcmp(table[i].name, m->key, m->key_len) == 0)
			return &table[i];
	return NULL;
}

/*
 * Fills dst from obj's members, in document order, through table. what
 * names the object in messages ("server"); its "name", when it has one,
 * is added there.
 */
static int fill_object(struct loader *ld, const struct jsonpos_node *obj,
		       const struct keyword *table, size_t n, const char *what,
		       void *dst)
{
	const struct jsonpos_node *seen[KEYWORDS_MAX] = { NULL };
	const struct jsonpos_node *name;
	char q[QUOTE_BUF];
	size_t i;
	int err;

	for (i = 0; i < obj->n_kids; i++) {
		const struct jsonpos_node *m = &obj->kids[i];
		const struct keyword *kw = keyword_find(table, n, m);
		size_t k;

		if (!kw)
			return fail_unknown_key(ld, m, table, n, what);
		k = (size_t)(kw - table);
		if (seen[k])
			return fail_key(ld, m, "duplicate key \"%s\" (first at %d:%d)",
					kw->name, seen[k]->key_line, seen[k]->key_col);
		seen[k] = m;
		if (m->type != kw->type)
			return fail_value(ld, m, "\"%s\" must be %s, not %s", kw->name,
					  expected_type(kw->type), jsonpos__describe(m));
		if (kw->has_off)
			*(bool *)((char *)dst + kw->has_off) = true;
		err = kw->fill(ld, kw, m, dst);
		if (err)
			return err;
	}
	for (i = 0; i < n; i++) {
		if (!table[i].required || seen[i])
			continue;
		name = jsonpos__member(obj, "name");
		if (name && name->type == JSONPOS_STRING)
			return fail_value(ld, obj, "%s %s is missing \"%s\"", what,
					  quote(q, name->str, name->len), table[i].name);
		return fail_value(ld, obj, "%s is missing \"%s\"", what, table[i].name);
	}
	return 0;
}

/*
 * Allocates one item per element of an array of objects and fills each
 * with fill_item. The count is set first so a partial array frees cleanly.
 */
static int fill_object_array(struct loader *ld, const struct keyword *kw,
			     const struct jsonpos_node *arr, void **items, size_t *n,
			     size_t item_size,
			     int (*fill_item)(struct loader *, const struct jsonpos_node *, void *))
{
	size_t i;
	int err;

	if (!arr->n_kids)
		return 0;
	*items = calloc(arr->n_kids, item_size);
	if (!*items)
		return fail_nomem(ld);
	*n = arr->n_kids;
	for (i = 0; i < arr->n_kids; i++) {
		const struct jsonpos_node *el = &arr->kids[i];

		if (el->type != JSONPOS_OBJECT)
			return fail_value(ld, el, "each entry of \"%s\" must be an object, not %s",
					  kw->name, jsonpos__describe(el));
		err = fill_item(ld, el, (char *)*items + i * item_size);
		if (err)
			return err;
	}
	return 0;
}

static int fill_string_array(struct loader *ld, const struct keyword *kw,
			     const struct jsonpos_node *arr, char ***items, size_t *n,
			     bool glob)
{
	size_t i;
	int err;

	if (!arr->n_kids)
		return 0;
	*items = calloc(arr->n_kids, sizeof(char *));
	if (!*items)
		return fail_nomem(ld);
	*n = arr->n_kids;
	for (i = 0; i < arr->n_kids; i++) {
		const struct jsonpos_node *el = &arr->kids[i];

		if (el->type != JSONPOS_STRING)
			return fail_value(ld, el, "each entry of \"%s\" must be a string, not %s",
					  kw->name, jsonpos__describe(el));
		err = check_text(ld, kw->name, el);
		if (!err && glob)
			err = check_glob(ld, kw->name, el);
		if (err)
			return err;
		(*items)[i] = strdup(el->str);
		if (!(*items)[i])
			return fail_nomem(ld);
	}
	return 0;
}

struct name_ref {
	const char *name;
	size_t idx;
};

static int name_ref__cmp(const void *a, const void *b)
{
	const struct name_ref *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * Sorts refs and finds the earliest second use of a name, in document
 * order: true with *dup and *first set to the two indexes.
 */
static bool find_duplicate(struct name_ref *refs, size_t n, size_t *dup, size_t *first)
{
	bool found = false;
	size_t i;

	qsort(refs, n, sizeof(*refs), name_ref__cmp);
	for (i = 1; i < n; i++) {
		if (strcmp(refs[i].name, refs[i - 1].name))
			continue;
		if (i >= 2 && strcmp(refs[i].name, refs[i - 2].name) == 0)
			continue;	/* a third use: the second comes first */
		if (!found || refs[i].idx < *dup) {
			*dup = refs[i].idx;
			*first = refs[i - 1].idx;
			found = true;
		}
	}
	return found;
}

/* ---- workload selectors ------------------------------------------------ */

/* Label keys are printed in messages and events: keep them to what
 * Kubernetes allows ([prefix/]name), so they need no escaping. */
static bool label_name_ok(const char *k, size_t len)
{
	size_t i, slashes = 0;

	if (len == 0 || len > 316)
		return false;
	for (i = 0; i < len; i++) {
		char c = k[i];

		if (c == '/')
			slashes++;
		else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return false;
	}
	return slashes <= 1 && k[0] != '/' && k[len - 1] != '/';
}

static int fill_labels(struct loader *ld, const struct keyword *kw,
		       const struct jsonpos_node *v, void *dst)
{
	struct policy_pod *pod = dst;
	struct name_ref *refs;
	size_t i, dup, first;
	char q[QUOTE_BUF];
	int err;

	if (!v->n_kids)
		return 0;
	pod->labels = calloc(v->n_kids, sizeof(*pod->labels));
	if (!pod->labels)
		return fail_nomem(ld);
	pod->n_labels = v->n_kids;
	for (i = 0; i < v->n_kids; i++) {
		const struct jsonpos_node *m = &v->kids[i];

		if (!label_name_ok(m->key, m->key_len))
			return fail_key(ld, m, "%s is not a Kubernetes label name (letters, digits, '-', '_', '.', and one '/' after a prefix)",
					quote(q, m->key, m->key_len));
		if (m->type != JSONPOS_STRING)
			return fail_value(ld, m, "label %s must be a string, not %s",
					  quote(q, m->key, m->key_len), jsonpos__describe(m));
		err = check_text(ld, m->key, m);
		if (!err)
			err = check_glob(ld, m->key, m);
		if (err)
			return err;
		pod->labels[i].key = strdup(m->key);
		pod->labels[i].value = strdup(m->str);
		if (!pod->labels[i].key || !pod->labels[i].value)
			return fail_nomem(ld);
	}
	refs = calloc(v->n_kids, sizeof(*refs));
	if (!refs)
		return fail_nomem(ld);
	for (i = 0; i < v->n_kids; i++)
		refs[i] = (struct name_ref){ pod->labels[i].key, i };
	if (find_duplicate(refs, v->n_kids, &dup, &first)) {
		free(refs);
		return fail_key(ld, &v->kids[dup], "duplicate label %s (first at %d:%d)",
				quote(q, v->kids[dup].key, v->kids[dup].key_len),
				v->kids[first].key_line, v->kids[first].key_col);
	}
	free(refs);
	return 0;
}

static const struct keyword pod_keywords[] = {
	{ "namespace", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_pod, namespace_) },
	{ "name", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_pod, name) },
	{ "uid", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_pod, uid) },
	{ "service_account", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_pod, service_account) },
	{ "labels", JSONPOS_OBJECT, .fill = fill_labels },
};

static int fill_pod(struct loader *ld, const struct keyword *kw,
		    const struct jsonpos_node *v, void *dst)
{
	struct policy_workload *w = dst;

	return fill_object(ld, v, pod_keywords, sizeof(pod_keywords) / sizeof(pod_keywords[0]),
			   "pod", &w->pod);
}

static const struct keyword workload_keywords[] = {
	{ "cgroup", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_workload, cgroup) },
	{ "exe", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_workload, exe) },
	{ "exe_sha256", JSONPOS_STRING, .fill = fill_sha256,
	  .off = offsetof(struct policy_workload, exe_sha256) },
	{ "uid", JSONPOS_NUMBER, .fill = fill_u32, .max = ID_MAX,
	  .off = offsetof(struct policy_workload, uid),
	  .has_off = offsetof(struct policy_workload, has_uid) },
	{ "gid", JSONPOS_NUMBER, .fill = fill_u32, .max = ID_MAX,
	  .off = offsetof(struct policy_workload, gid),
	  .has_off = offsetof(struct policy_workload, has_gid) },
	{ "container_id", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_workload, container_id) },
	{ "pod", JSONPOS_OBJECT, .fill = fill_pod,
	  .has_off = offsetof(struct policy_workload, has_pod) },
	{ "parent_exe", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_workload, parent_exe) },
	{ "node", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_workload, node) },
};

/* An empty selector would match every workload: never what was meant. */
static int fill_selector(struct loader *ld, const struct jsonpos_node *v, void *item)
{
	if (!v->n_kids)
		return fail_value(ld, v, "an empty workload selector {} would match every workload; give at least one key");
	return fill_object(ld, v, workload_keywords,
			   sizeof(workload_keywords) / sizeof(workload_keywords[0]),
			   "workload selector", item);
}

/* ---- servers ----------------------------------------------------------- */

static int fill_stdio(struct loader *ld, const struct keyword *kw,
		      const struct jsonpos_node *v, void *dst);
static int fill_launchers(struct loader *ld, const struct keyword *kw,
			  const struct jsonpos_node *v, void *dst);

static const struct keyword server_keywords[] = {
	{ "name", JSONPOS_STRING, .required = true, .fill = fill_string,
	  .off = offsetof(struct policy_server, name) },
	{ "port", JSONPOS_NUMBER, .fill = fill_u16, .min = 1, .max = 65535,
	  .off = offsetof(struct policy_server, port) },
	{ "addr", JSONPOS_STRING, .fill = fill_addr,
	  .off = offsetof(struct policy_server, addr) },
	{ "stdio", JSONPOS_OBJECT, .fill = fill_stdio,
	  .has_off = offsetof(struct policy_server, is_stdio) },
	{ "launchers", JSONPOS_ARRAY, .fill = fill_launchers },
};

static const struct keyword stdio_keywords[] = {
	{ "exe", JSONPOS_STRING, .required = true, .fill = fill_glob,
	  .off = offsetof(struct policy_server, stdio_exe) },
	{ "args", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_server, stdio_args) },
};

static int fill_stdio(struct loader *ld, const struct keyword *kw,
		      const struct jsonpos_node *v, void *dst)
{
	return fill_object(ld, v, stdio_keywords, sizeof(stdio_keywords) / sizeof(stdio_keywords[0]),
			   "\"stdio\"", dst);
}

/* Absent means any workload may start the server; [] would be ambiguous. */
static int fill_launchers(struct loader *ld, const struct keyword *kw,
			  const struct jsonpos_node *v, void *dst)
{
	struct policy_server *s = dst;

	if (!v->n_kids)
		return fail_value(ld, v, "\"launchers\" is empty; leave it out to let any workload start this server");
	return fill_object_array(ld, kw, v, (void **)&s->launchers, &s->n_launchers,
				 sizeof(*s->launchers), fill_selector);
}

/* A server is either network (port) or stdio; the keys say which. */
static int check_server_kind(struct loader *ld, const struct jsonpos_node *obj,
			     const struct policy_server *s)
{
	const struct jsonpos_node *port = jsonpos__member(obj, "port");
	const struct jsonpos_node *stdio = jsonpos__member(obj, "stdio");
	const struct jsonpos_node *addr = jsonpos__member(obj, "addr");
	const struct jsonpos_node *launchers = jsonpos__member(obj, "launchers");
	char q[QUOTE_BUF];

	if (port && stdio)
		return fail_key(ld, port > stdio ? port : stdio,
				"server %s has both \"port\" and \"stdio\"; a server is either network or stdio",
				quote(q, s->name, strlen(s->name)));
	if (!port && !stdio)
		return fail_value(ld, obj, "server %s needs \"port\" (a network server) or \"stdio\" (a stdio server)",
				  quote(q, s->name, strlen(s->name)));
	if (launchers && !stdio)
		return fail_key(ld, launchers, "\"launchers\" only applies to stdio servers");
	if (addr && !port)
		return fail_key(ld, addr, "\"addr\" only applies to network servers (with \"port\")");
	return 0;
}

static int fill_server(struct loader *ld, const struct jsonpos_node *v, void *item)
{
	int err = fill_object(ld, v, server_keywords,
			      sizeof(server_keywords) / sizeof(server_keywords[0]),
			      "server", item);

	return err ? err : check_server_kind(ld, v, item);
}

static int check_servers_unique(struct loader *ld, const struct jsonpos_node *arr)
{
	struct policy *p = ld->pol;
	const struct jsonpos_node *a, *b;
	size_t *port_first, i, dup, first;
	struct name_ref *refs;
	char q[QUOTE_BUF];
	bool found;

	refs = calloc(p->n_servers, sizeof(*refs));
	if (!refs)
		return fail_nomem(ld);
	for (i = 0; i < p->n_servers; i++)
		refs[i] = (struct name_ref){ p->servers[i].name, i };
	found = find_duplicate(refs, p->n_servers, &dup, &first);
	free(refs);
	if (found) {
		a = jsonpos__member(&arr->kids[dup], "name");
		b = jsonpos__member(&arr->kids[first], "name");
		return fail_value(ld, a, "duplicate server name %s (first at %d:%d)",
				  quote(q, a->str, a->len), b->line, b->col);
	}

	/* policy__server_by_port() must find one server per port. */
	port_first = calloc(65536, sizeof(*port_first));
	if (!port_first)
		return fail_nomem(ld);
	for (i = 0; i < p->n_servers; i++) {
		uint16_t port = p->servers[i].port;

		if (p->servers[i].is_stdio)
			continue;
		if (port_first[port]) {
			first = port_first[port] - 1;
			free(port_first);
			a = jsonpos__member(&arr->kids[i], "port");
			return fail_value(ld, a, "port %u is already protected by server %s",
					  port, quote(q, p->servers[first].name,
						      strlen(p->servers[first].name)));
		}
		port_first[port] = i + 1;
	}
	free(port_first);
	return 0;
}

static int fill_servers(struct loader *ld, const struct keyword *kw,
			const struct jsonpos_node *v, void *dst)
{
	struct policy *p = dst;
	int err;

	if (!v->n_kids)
		return fail_value(ld, v, "\"servers\" is empty; list at least one server to protect");
	err = fill_object_array(ld, kw, v, (void **)&p->servers, &p->n_servers,
				sizeof(*p->servers), fill_server);
	return err ? err : check_servers_unique(ld, v);
}

/* ---- clients ----------------------------------------------------------- */

static const struct keyword claims_keywords[] = {
	{ "client_id", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_claims, client_id) },
	{ "sub", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_claims, sub) },
	{ "iss", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_claims, iss) },
	{ "azp", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_claims, azp) },
	{ "client_info_name", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_claims, client_info_name) },
	{ "user_agent", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_claims, user_agent) },
	{ "token_sha256", JSONPOS_STRING, .fill = fill_sha256,
	  .off = offsetof(struct policy_claims, token_sha256) },
};

static int fill_claims(struct loader *ld, const struct keyword *kw,
		       const struct jsonpos_node *v, void *dst)
{
	struct policy_client *c = dst;

	if (!v->n_kids)
		return fail_value(ld, v, "\"claims\" is empty, so no request would ever match this client; give at least one claim");
	return fill_object(ld, v, claims_keywords,
			   sizeof(claims_keywords) / sizeof(claims_keywords[0]),
			   "\"claims\"", &c->claims);
}

static int fill_workloads(struct loader *ld, const struct keyword *kw,
			  const struct jsonpos_node *v, void *dst)
{
	struct policy_client *c = dst;

	if (!v->n_kids)
		return fail_value(ld, v, "\"workloads\" is empty; list the workloads that may use this client's identity");
	return fill_object_array(ld, kw, v, (void **)&c->workloads, &c->n_workloads,
				 sizeof(*c->workloads), fill_selector);
}

static int fill_tools(struct loader *ld, const struct keyword *kw,
		      const struct jsonpos_node *v, void *dst)
{
	struct policy_client *c = dst;

	return fill_string_array(ld, kw, v, &c->tools, &c->n_tools, true);
}

/* Whether the names exist is checked once every server is known. */
static int fill_client_servers(struct loader *ld, const struct keyword *kw,
			       const struct jsonpos_node *v, void *dst)
{
	struct policy_client *c = dst;

	return fill_string_array(ld, kw, v, &c->servers, &c->n_servers, false);
}

static const struct keyword client_keywords[] = {
	{ "name", JSONPOS_STRING, .required = true, .fill = fill_string,
	  .off = offsetof(struct policy_client, name) },
	{ "claims", JSONPOS_OBJECT, .required = true, .fill = fill_claims },
	{ "workloads", JSONPOS_ARRAY, .required = true, .fill = fill_workloads },
	{ "max_instances", JSONPOS_NUMBER, .fill = fill_uint, .max = 4294967295u,
	  .off = offsetof(struct policy_client, max_instances) },
	{ "tools", JSONPOS_ARRAY, .fill = fill_tools,
	  .has_off = offsetof(struct policy_client, has_tools) },
	{ "servers", JSONPOS_ARRAY, .fill = fill_client_servers,
	  .has_off = offsetof(struct policy_client, has_servers) },
};

static int fill_client(struct loader *ld, const struct jsonpos_node *v, void *item)
{
	return fill_object(ld, v, client_keywords,
			   sizeof(client_keywords) / sizeof(client_keywords[0]),
			   "client", item);
}

static int fill_clients(struct loader *ld, const struct keyword *kw,
			const struct jsonpos_node *v, void *dst)
{
	struct policy *p = dst;
	const struct jsonpos_node *a, *b;
	struct name_ref *refs;
	size_t i, dup, first;
	char q[QUOTE_BUF];
	bool found;
	int err;

	ld->clients = v;
	err = fill_object_array(ld, kw, v, (void **)&p->clients, &p->n_clients,
				sizeof(*p->clients), fill_client);
	if (err || !p->n_clients)
		return err;
	refs = calloc(p->n_clients, sizeof(*refs));
	if (!refs)
		return fail_nomem(ld);
	for (i = 0; i < p->n_clients; i++)
		refs[i] = (struct name_ref){ p->clients[i].name, i };
	found = find_duplicate(refs, p->n_clients, &dup, &first);
	free(refs);
	if (!found)
		return 0;
	a = jsonpos__member(&v->kids[dup], "name");
	b = jsonpos__member(&v->kids[first], "name");
	return fail_value(ld, a, "duplicate client name %s (first at %d:%d)",
			  quote(q, a->str, a->len), b->line, b->col);
}

/* ---- tokens ------------------------------------------------------------ */

static const struct keyword token_key_keywords[] = {
	{ "file", JSONPOS_STRING, .required = true, .fill = fill_path,
	  .off = offsetof(struct policy_token_key, file) },
	{ "iss", JSONPOS_STRING, .fill = fill_glob,
	  .off = offsetof(struct policy_token_key, iss) },
	{ "hmac", JSONPOS_BOOL, .fill = fill_bool,
	  .off = offsetof(struct policy_token_key, hmac) },
};

static int fill_token_key(struct loader *ld, const struct jsonpos_node *v, void *item)
{
	return fill_object(ld, v, token_key_keywords,
			   sizeof(token_key_keywords) / sizeof(token_key_keywords[0]),
			   "token key", item);
}

static int fill_token_keys(struct loader *ld, const struct keyword *kw,
			   const struct jsonpos_node *v, void *dst)
{
	struct policy *p = dst;

	return fill_object_array(ld, kw, v, (void **)&p->token_keys, &p->n_token_keys,
				 sizeof(*p->token_keys), fill_token_key);
}

static const struct keyword tokens_keywords[] = {
	{ "keys", JSONPOS_ARRAY, .fill = fill_token_keys },
	{ "require_signature", JSONPOS_BOOL, .fill = fill_bool,
	  .off = offsetof(struct policy, require_signature) },
};

static int fill_tokens(struct loader *ld, const struct keyword *kw,
		       const struct jsonpos_node *v, void *dst)
{
	struct policy *p = dst;
	int err = fill_object(ld, v, tokens_keywords,
			      sizeof(tokens_keywords) / sizeof(tokens_keywords[0]),
			      "\"tokens\"", p);

	if (err)
		return err;
	/* Every token would fail with no key to check it against. */
	if (p->require_signature && !p->n_token_keys)
		return fail_value(ld, jsonpos__member(v, "require_signature"),
				  "\"require_signature\" needs at least one entry in \"keys\"");
	return 0;
}

/* ---- top level --------------------------------------------------------- */

static const struct enum_name mode_names[] = {
	{ "monitor", POLICY_MODE_MONITOR },
	{ "enforce", POLICY_MODE_ENFORCE },
	{ NULL, 0 },
};

static const struct enum_name action_names[] = {
	{ "deny", POLICY_DENY },
	{ "alert", POLICY_ALERT },
	{ "allow", POLICY_ALLOW },
	{ NULL, 0 },
};

static const struct enum_name fail_names[] = {
	{ "closed", POLICY_FAIL_CLOSED },
	{ "open", POLICY_FAIL_OPEN },
	{ NULL, 0 },
};

static const struct keyword policy_keywords[] = {
	{ "mode", JSONPOS_STRING, .fill = fill_enum, .names = mode_names,
	  .off = offsetof(struct policy, mode) },
	{ "servers", JSONPOS_ARRAY, .required = true, .fill = fill_servers },
	{ "unknown_client", JSONPOS_STRING, .fill = fill_enum, .names = action_names,
	  .off = offsetof(struct policy, unknown_client) },
	{ "unattributed", JSONPOS_STRING, .fill = fill_enum, .names = action_names,
	  .off = offsetof(struct policy, unattributed) },
	{ "fail", JSONPOS_STRING, .fill = fill_enum, .names = fail_names,
	  .off = offsetof(struct policy, fail) },
	{ "clients", JSONPOS_ARRAY, .fill = fill_clients },
	{ "tokens", JSONPOS_OBJECT, .fill = fill_tokens },
	{ "instance_window_seconds", JSONPOS_NUMBER, .fill = fill_uint,
	  .min = 1, .max = 86400, .off = offsetof(struct policy, instance_window_sec) },
};

_Static_assert(sizeof(policy_keywords) / sizeof(policy_keywords[0]) <= KEYWORDS_MAX,
	       "seen[] in fill_object() is too small");

static int server_ref__cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct name_ref *)elem)->name);
}

/* Every name in a client's "servers" must be a server of this file. */
static int check_client_servers(struct loader *ld)
{
	struct policy *p = ld->pol;
	struct name_ref *refs;
	char qc[QUOTE_BUF], qs[QUOTE_BUF];
	size_t i, j;
	int err = 0;

	if (!p->n_clients)
		return 0;
	refs = calloc(p->n_servers, sizeof(*refs));
	if (!refs)
		return fail_nomem(ld);
	for (i = 0; i < p->n_servers; i++)
		refs[i] = (struct name_ref){ p->servers[i].name, i };
	qsort(refs, p->n_servers, sizeof(*refs), name_ref__cmp);
	for (i = 0; i < p->n_clients && !err; i++) {
		const struct policy_client *c = &p->clients[i];
		const struct jsonpos_node *names;

		if (!c->has_servers)
			continue;
		names = jsonpos__member(&ld->clients->kids[i], "servers");
		for (j = 0; j < c->n_servers; j++) {
			if (bsearch(c->servers[j], refs, p->n_servers, sizeof(*refs),
				    server_ref__cmp))
				continue;
			err = fail_value(ld, &names->kids[j],
					 "client %s lists server %s, but no server has that name",
					 quote(qc, c->name, strlen(c->name)),
					 quote(qs, c->servers[j], strlen(c->servers[j])));
			break;
		}
	}
	free(refs);
	return err;
}

static int policy_from_tree(struct loader *ld, const struct jsonpos_node *root)
{
	struct policy *p = ld->pol;
	int err;

	if (root->type != JSONPOS_OBJECT)
		return fail_value(ld, root, "the policy must be a JSON object, not %s",
				  jsonpos__describe(root));
	p->mode = POLICY_MODE_MONITOR;
	p->unknown_client = POLICY_DENY;
	p->unattributed = POLICY_DENY;
	p->fail = POLICY_FAIL_CLOSED;
	p->instance_window_sec = 60;
	err = fill_object(ld, root, policy_keywords,
			  sizeof(policy_keywords) / sizeof(policy_keywords[0]),
			  "the policy", p);
	if (err)
		return err;
	return check_client_servers(ld);
}

int policy__load_buffer(const char *name, const char *buf, size_t len,
			struct policy **out, struct policy_error *err)
{
	struct jsonpos_node *root = NULL;
	struct jsonpos_error jerr;
	struct loader ld = { .err = err };
	struct policy *p;
	int ret;

	memset(err, 0, sizeof(*err));
	*out = NULL;
	if (!name)
		name = "policy";
	snprintf(err->file, sizeof(err->file), "%s", name);
	if (len > POLICY_MAX_BYTES)
		return fail_at(&ld, 0, 0, "the file is larger than %u MiB", POLICY_MAX_BYTES >> 20);

	ret = jsonpos__parse(buf, len, &root, &jerr);
	if (ret) {
		err->line = jerr.line;
		err->col = jerr.col;
		snprintf(err->msg, sizeof(err->msg), "%s", jerr.msg);
		return ret;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		ret = fail_nomem(&ld);
		goto out_tree;
	}
	ld.pol = p;
	ret = policy_from_tree(&ld, root);
	if (ret)
		goto out_policy;
	p->source = strdup(name);
	if (!p->source) {
		ret = fail_nomem(&ld);
		goto out_policy;
	}
	ret = jwt__sha256_hex(buf, len, p->digest);
	if (ret) {
		fail_at(&ld, 0, 0, "cannot compute the SHA-256 of the file");
		goto out_policy;
	}
	*out = p;
	p = NULL;
out_policy:
	policy__free(p);
out_tree:
	jsonpos__free(root);
	return ret;
}

static const char not_regular[] = "not a regular file";

/*
 * Reads a policy file into *buf (malloc'd, one byte past POLICY_MAX_BYTES
 * to notice a file too large, or grown since fstat). Opened without
 * blocking: a FIFO put at the path must not stop the event loop that
 * watches it. 0, or -errno with *what saying which step failed.
 */
static int read_policy_file(const char *path, char **buf, size_t *len, const char **what)
{
	struct stat st;
	ssize_t n;
	int fd, ret = 0;

	*buf = NULL;
	*len = 0;
	*what = "cannot open";
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	*what = "cannot read";
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		*what = not_regular;
		ret = -EINVAL;
		goto out;
	}
	*buf = malloc(POLICY_MAX_BYTES + 1);
	if (!*buf) {
		ret = -ENOMEM;
		goto out;
	}
	while (*len <= POLICY_MAX_BYTES) {
		n = read(fd, *buf + *len, POLICY_MAX_BYTES + 1 - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			free(*buf);
			*buf = NULL;
			break;
		}
		if (n == 0)
			break;
		*len += (size_t)n;
	}
out:
	close(fd);
	return ret;
}

int policy__file_digest(const char *path, char out[65])
{
	const char *what;
	size_t len;
	char *buf;
	int err;

	out[0] = '\0';
	err = read_policy_file(path, &buf, &len, &what);
	if (!err)
		err = jwt__sha256_hex(buf, len, out);
	free(buf);
	return err;
}

int policy__load_file(const char *path, struct policy **out, struct policy_error *err)
{
	struct loader ld = { .err = err };
	const char *what;
	char *buf;
	size_t len;
	int ret;

	memset(err, 0, sizeof(*err));
	*out = NULL;
	snprintf(err->file, sizeof(err->file), "%s", path);
	ret = read_policy_file(path, &buf, &len, &what);
	if (ret == -ENOMEM)
		return fail_nomem(&ld);
	if (what == not_regular)
		return fail_at(&ld, 0, 0, "%s", what);
	if (ret) {
		fail_at(&ld, 0, 0, "%s: %s", what, strerror(-ret));
		return ret;
	}
	ret = policy__load_buffer(path, buf, len, out, err);
	free(buf);
	return ret;
}

static void workload_free(struct policy_workload *w)
{
	size_t i;

	free(w->cgroup);
	free(w->exe);
	free(w->exe_sha256);
	free(w->container_id);
	free(w->parent_exe);
	free(w->node);
	free(w->pod.namespace_);
	free(w->pod.name);
	free(w->pod.uid);
	free(w->pod.service_account);
	for (i = 0; i < w->pod.n_labels; i++) {
		free(w->pod.labels[i].key);
		free(w->pod.labels[i].value);
	}
	free(w->pod.labels);
}

static void workloads_free(struct policy_workload *w, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		workload_free(&w[i]);
	free(w);
}

static void strings_free(char **s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(s[i]);
	free(s);
}

void policy__free(struct policy *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->n_servers; i++) {
		struct policy_server *s = &p->servers[i];

		free(s->name);
		free(s->addr);
		free(s->stdio_exe);
		free(s->stdio_args);
		workloads_free(s->launchers, s->n_launchers);
	}
	free(p->servers);
	for (i = 0; i < p->n_clients; i++) {
		struct policy_client *c = &p->clients[i];

		free(c->name);
		free(c->claims.client_id);
		free(c->claims.sub);
		free(c->claims.iss);
		free(c->claims.azp);
		free(c->claims.client_info_name);
		free(c->claims.user_agent);
		free(c->claims.token_sha256);
		workloads_free(c->workloads, c->n_workloads);
		strings_free(c->tools, c->n_tools);
		strings_free(c->servers, c->n_servers);
	}
	free(p->clients);
	for (i = 0; i < p->n_token_keys; i++) {
		free(p->token_keys[i].file);
		free(p->token_keys[i].iss);
	}
	free(p->token_keys);
	free(p->source);
	free(p);
}

void policy_error__format(const struct policy_error *e, char *buf, size_t len)
{
	if (!len)
		return;
	if (e->line > 0)
		snprintf(buf, len, "%s:%d:%d: %s", e->file, e->line, e->col, e->msg);
	else if (e->file[0])
		snprintf(buf, len, "%s: %s", e->file, e->msg);
	else
		snprintf(buf, len, "%s", e->msg);
}

/* ---- matchers ---------------------------------------------------------- */

/* A pattern given in the policy against a fact: an unknown fact fails. */
static bool glob_match(const char *pattern, const char *value)
{
	return value && fnmatch(pattern, value, 0) == 0;
}

bool policy_claims__match(const struct policy_claims *c, const struct claim_view *v)
{
	const struct {
		const char *pattern, *value;
	} pairs[] = {
		{ c->client_id, v->client_id },
		{ c->sub, v->sub },
		{ c->iss, v->iss },
		{ c->azp, v->azp },
		{ c->client_info_name, v->client_info_name },
		{ c->user_agent, v->user_agent },
		{ c->token_sha256, v->token_sha256 },
	};
	size_t i, given = 0;

	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		if (!pairs[i].pattern)
			continue;
		given++;
		if (!glob_match(pairs[i].pattern, pairs[i].value))
			return false;
	}
	return given > 0;
}

static bool pod_match(const struct policy_pod *p, const struct pod_view *v)
{
	size_t i, j;

	if (!v)
		return false;
	if ((p->namespace_ && !glob_match(p->namespace_, v->namespace_)) ||
	    (p->name && !glob_match(p->name, v->name)) ||
	    (p->uid && !glob_match(p->uid, v->uid)) ||
	    (p->service_account && !glob_match(p->service_account, v->service_account)))
		return false;
	for (i = 0; i < p->n_labels; i++) {
		for (j = 0; j < v->n_labels; j++)
			if (v->labels[j].key && strcmp(v->labels[j].key, p->labels[i].key) == 0)
				break;
		if (j == v->n_labels || !glob_match(p->labels[i].value, v->labels[j].value))
			return false;
	}
	return true;
}

static bool ancestor_match(const char *pattern, const struct workload_view *v)
{
	size_t i;

	for (i = 0; i < v->n_ancestors; i++)
		if (glob_match(pattern, v->ancestor_exes[i]))
			return true;
	return false;
}

bool policy_workload__match(const struct policy_workload *w, const struct workload_view *v)
{
	/* The parser refuses {}; a hand-built empty selector matches nothing too. */
	if (!w->cgroup && !w->exe && !w->exe_sha256 && !w->container_id &&
	    !w->parent_exe && !w->node && !w->has_uid && !w->has_gid && !w->has_pod)
		return false;
	if (w->cgroup && !glob_match(w->cgroup, v->cgroup))
		return false;
	if (w->exe && !glob_match(w->exe, v->exe))
		return false;
	if (w->exe_sha256 && (!v->exe_sha256 || strcasecmp(w->exe_sha256, v->exe_sha256)))
		return false;
	if (w->has_uid && w->uid != v->uid)
		return false;
	if (w->has_gid && w->gid != v->gid)
		return false;
	if (w->container_id && !glob_match(w->container_id, v->container_id))
		return false;
	if (w->node && !glob_match(w->node, v->node))
		return false;
	if (w->parent_exe && !ancestor_match(w->parent_exe, v))
		return false;
	if (w->has_pod && !pod_match(&w->pod, v->pod))
		return false;
	return true;
}

bool policy_workloads__match(const struct policy_workload *w, size_t n,
			     const struct workload_view *v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (policy_workload__match(&w[i], v))
			return true;
	return false;
}

bool policy_client__tool_allowed(const struct policy_client *c, const char *tool)
{
	size_t i;

	if (!c->has_tools)
		return true;
	for (i = 0; i < c->n_tools; i++)
		if (glob_match(c->tools[i], tool))
			return true;
	return false;
}

bool policy_client__server_allowed(const struct policy_client *c, const char *server)
{
	size_t i;

	if (!c->has_servers)
		return true;
	for (i = 0; i < c->n_servers; i++)
		if (server && strcmp(c->servers[i], server) == 0)
			return true;
	return false;
}

static bool selectors_need_sha(const struct policy_workload *w, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (w[i].exe_sha256)
			return true;
	return false;
}

bool policy__needs_exe_sha256(const struct policy *p)
{
	size_t i;

	for (i = 0; i < p->n_clients; i++)
		if (selectors_need_sha(p->clients[i].workloads, p->clients[i].n_workloads))
			return true;
	for (i = 0; i < p->n_servers; i++)
		if (selectors_need_sha(p->servers[i].launchers, p->servers[i].n_launchers))
			return true;
	return false;
}

const struct policy_server *policy__server_by_port(const struct policy *p, uint16_t port)
{
	size_t i;

	for (i = 0; i < p->n_servers; i++)
		if (!p->servers[i].is_stdio && p->servers[i].port == port)
			return &p->servers[i];
	return NULL;
}

const char *policy_mode__name(enum policy_mode m)
{
	return m == POLICY_MODE_ENFORCE ? "enforce" : "monitor";
}

const char *policy_action__name(enum policy_action a)
{
	switch (a) {
	case POLICY_ALERT:
		return "alert";
	case POLICY_ALLOW:
		return "allow";
	default:
		return "deny";
	}
}
