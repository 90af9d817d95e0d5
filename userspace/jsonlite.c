// SPDX-License-Identifier: GPL-2.0
/*
 * Strict, allocation-light JSON reader (jsonlite.h).
 *
 * Recursive descent. Values of an open array or object wait on one
 * growable stack; when the container closes they are copied, contiguous,
 * into the document's arena, so the tree costs one allocation per arena
 * block, not one per value. Strings are decoded into the arena too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonlite.h"
#include "utf8.h"

struct block {
	struct block *next;
	size_t used, cap;
	_Alignas(16) char data[];
};

struct jl_doc {
	struct block *blocks;
	struct jl root;
	bool big_integers;	/* an integer past 64 bits was kept as a real */
};

#define STACK_INLINE 64

struct parser {
	const unsigned char *p, *start, *end;
	struct jl_doc *doc;
	struct jl *stack;
	size_t n, cap;
	struct jl inline_stack[STACK_INLINE];
	struct jl_error *err;
};

static bool fail(struct parser *ps, enum jl_error_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(struct parser *ps, enum jl_error_code code, const char *fmt, ...)
{
	va_list ap;

	if (ps->err->code != JL_OK)
		return false;	/* the first error is the one reported */
	ps->err->code = code;
	ps->err->position = (size_t)(ps->p - ps->start);
	va_start(ap, fmt);
	vsnprintf(ps->err->text, sizeof(ps->err->text), fmt, ap);
	va_end(ap);
	return false;
}

#define BLOCK_BYTES 16384

/*
 * Freed standard blocks kept per thread, for the next documents: the
 * daemon parses a body per request, and a 16 KiB block returned to
 * malloc's top made every free consolidate the heap (malloc_consolidate
 * and _int_free were ~7% of the daemon's samples on P1). Several, as a
 * first request holds several documents at once (the token's header and
 * claims, the body): a block malloc had to find cost ~13 µs at a first
 * sight here (P2's client, p50: it sorts every chunk freed since into
 * its bins, all of them cold).
 */
#define SPARE_BLOCKS 4

static __thread struct block *spare[SPARE_BLOCKS];
static __thread unsigned int n_spare;
static __thread bool spare_owned;	/* freed when the thread exits */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_release(void *unused)
{
	(void)unused;
	while (n_spare)
		free(spare[--n_spare]);
}

static void spare_key_make(void)
{
	if (pthread_key_create(&spare_key, spare_release))
		spare_key = (pthread_key_t)-1;
}

/* Keeps b for the thread's next document, if there is room. */
static bool spare_keep(struct block *b)
{
	if (n_spare == SPARE_BLOCKS)
		return false;
	if (!spare_owned) {
		/* A thread that ends (a waker) frees its blocks. */
		pthread_once(&spare_once, spare_key_make);
		if (spare_key == (pthread_key_t)-1 || pthread_setspecific(spare_key, spare))
			return false;
		spare_owned = true;
	}
	spare[n_spare++] = b;
	return true;
}

static void *arena(struct parser *ps, size_t size)
{
	struct block *b = ps->doc->blocks;
	size_t need = (size + 15) & ~(size_t)15, cap;

	if (need < size)
		return NULL;
	if (!b || b->cap - b->used < need) {
		cap = need > BLOCK_BYTES ? need : BLOCK_BYTES;
		if (cap == BLOCK_BYTES && n_spare) {
			b = spare[--n_spare];
		} else {
			b = malloc(sizeof(*b) + cap);
		}
		if (!b)
			return NULL;
		b->cap = cap;
		b->used = 0;
		b->next = ps->doc->blocks;
		ps->doc->blocks = b;
	}
	b->used += need;
	return b->data + b->used - need;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end &&
	       (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static bool push(struct parser *ps, const struct jl *v)
{
	if (ps->n == ps->cap) {
		size_t cap = ps->cap * 2;
		struct jl *n;

		if (ps->stack == ps->inline_stack) {
			n = malloc(cap * sizeof(*n));
			if (n)
				memcpy(n, ps->stack, ps->n * sizeof(*n));
		} else {
			n = realloc(ps->stack, cap * sizeof(*n));
		}
		if (!n)
			return fail(ps, JL_NOMEM, "out of memory");
		ps->stack = n;
		ps->cap = cap;
	}
	ps->stack[ps->n++] = *v;
	return true;
}


/* A string at ps->p (its opening quote): decoded into the arena. */
static bool parse_string(struct parser *ps, const char **out, uint32_t *out_len)
{
	const unsigned char *q = ps->p + 1, *close;
	char *dst;
	size_t n = 0;

	/* Where it ends, to size the copy (decoding never grows it). */
	for (close = q; close < ps->end && *close != '"'; close++)
		if (*close == '\\')
			close++;
	if (close >= ps->end) {
		ps->p = ps->end;
		return fail(ps, JL_BAD, "premature end of input in a string");
	}
	if ((size_t)(close - q) >= UINT32_MAX)
		return fail(ps, JL_BAD, "string too long");
	dst = arena(ps, (size_t)(close - q) + 1);
	if (!dst)
		return fail(ps, JL_NOMEM, "out of memory");
	while (q < close) {
		const unsigned char *run = q;
		size_t len;
		int cp, lo;

		while (q < close && *q >= 0x20 && *q < 0x80 && *q != '\\')
			q++;
		memcpy(dst + n, run, (size_t)(q - run));
		n += (size_t)(q - run);
		if (q == close)
			break;
		ps->p = q;
		if (*q < 0x20)
			return fail(ps, JL_BAD, "control character 0x%x in a string", *q);
		if (*q >= 0x80) {
			len = utf8__seq_len(q, close);
			if (!len)
				return fail(ps, JL_BAD, "invalid UTF-8 in a string");
			memcpy(dst + n, q, len);
			n += len;
			q += len;
			continue;
		}
		/* An escape (the scan above saw its next byte before close). */
		switch (q[1]) {
		case '"': dst[n++] = '"'; q += 2; continue;
		case '\\': dst[n++] = '\\'; q += 2; continue;
		case '/': dst[n++] = '/'; q += 2; continue;
		case 'b': dst[n++] = '\b'; q += 2; continue;
		case 'f': dst[n++] = '\f'; q += 2; continue;
		case 'n': dst[n++] = '\n'; q += 2; continue;
		case 'r': dst[n++] = '\r'; q += 2; continue;
		case 't': dst[n++] = '\t'; q += 2; continue;
		case 'u': break;
		default:
			return fail(ps, JL_BAD, "invalid escape in a string");
		}
		if (close - q < 6 || (cp = (int)utf8__hex4(q + 2)) < 0)
			return fail(ps, JL_BAD, "invalid \\u escape in a string");
		q += 6;
		if (cp == 0)
			return fail(ps, JL_BAD, "\\u0000 is not allowed in a string");
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return fail(ps, JL_BAD, "invalid Unicode '\\u%04X' (a lone low surrogate)", cp);
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (close - q < 6 || q[0] != '\\' || q[1] != 'u' ||
			    (lo = (int)utf8__hex4(q + 2)) < 0xdc00 || lo > 0xdfff)
				return fail(ps, JL_BAD, "invalid Unicode '\\u%04X' (no low surrogate)",
					    cp);
			q += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		n += utf8__put(dst + n, (uint32_t)cp);
	}
	dst[n] = '\0';
	*out = dst;
	*out_len = (uint32_t)n;
	ps->p = close + 1;
	return true;
}

static bool parse_number(struct parser *ps, struct jl *v)
{
	const unsigned char *s = ps->p, *p = ps->p;
	char small[64], *text = small, *end;
	bool integer = true;
	size_t len;

	if (p < ps->end && *p == '-')
		p++;
	if (p < ps->end && *p == '0') {
		p++;
	} else if (p < ps->end && *p >= '1' && *p <= '9') {
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	} else {
		return fail(ps, JL_BAD, "invalid token");
	}
	if (p < ps->end && *p == '.') {
		integer = false;
		if (++p >= ps->end || *p < '0' || *p > '9')
			return fail(ps, JL_BAD, "invalid token");
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E')) {
		integer = false;
		if (++p < ps->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= ps->end || *p < '0' || *p > '9')
			return fail(ps, JL_BAD, "invalid token");
		while (p < ps->end && *p >= '0' && *p <= '9')
			p++;
	}
	len = (size_t)(p - s);
	if (len >= sizeof(small) && !(text = arena(ps, len + 1)))
		return fail(ps, JL_NOMEM, "out of memory");
	memcpy(text, s, len);
	text[len] = '\0';
	ps->p = p;
	if (integer) {
		errno = 0;
		v->v.i = strtoll(text, &end, 10);
		if (errno != ERANGE) {
			v->type = JL_INTEGER;
			return true;
		}
		/* Past 64 bits: a real, as every JavaScript server reads it. */
		ps->doc->big_integers = true;
	}
	errno = 0;
	v->v.r = strtod(text, &end);
	if (errno == ERANGE && (v->v.r > 1 || v->v.r < -1)) {
		ps->p = s;
		return fail(ps, JL_BAD, "real number overflow");
	}
	v->type = JL_REAL;
	return true;
}

static bool parse_value(struct parser *ps, struct jl *v, int depth);

static bool close_container(struct parser *ps, struct jl *v, size_t base)
{
	size_t n = ps->n - base;
	struct jl *kids;

	if (n > UINT32_MAX)
		return fail(ps, JL_BAD, "too many values");
	v->n = (uint32_t)n;
	v->v.kids = NULL;
	if (n) {
		kids = arena(ps, n * sizeof(*kids));
		if (!kids)
			return fail(ps, JL_NOMEM, "out of memory");
		memcpy(kids, ps->stack + base, n * sizeof(*kids));
		v->v.kids = kids;
	}
	ps->n = base;
	return true;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct jl *const *)a)->key, (*(const struct jl *const *)b)->key);
}

/* A key repeated among the members stack[base..] of a large object, or
 * NULL (also when out of memory: then the error is set). */
static const char *repeated_key(struct parser *ps, size_t base)
{
	size_t n = ps->n - base, i;
	const struct jl **sorted;
	const char *dup = NULL;

	sorted = malloc(n * sizeof(*sorted));
	if (!sorted) {
		fail(ps, JL_NOMEM, "out of memory");
		return NULL;
	}
	for (i = 0; i < n; i++)
		sorted[i] = &ps->stack[base + i];
	qsort(sorted, n, sizeof(*sorted), key_cmp);
	for (i = 1; i < n && !dup; i++)
		if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0)
			dup = sorted[i]->key;
	free(sorted);
	return dup;
}

#define KEY_SCAN_MAX 64

static bool key_seen(const struct parser *ps, size_t base, const char *key)
{
	size_t i;

	for (i = base; i < ps->n; i++)
		if (strcmp(ps->stack[i].key, key) == 0)
			return true;
	return false;
}

static bool parse_array(struct parser *ps, struct jl *v, int depth)
{
	size_t base = ps->n;
	struct jl kid;

	v->type = JL_ARRAY;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return close_container(ps, v, base);
	}
	for (;;) {
		memset(&kid, 0, sizeof(kid));
		if (!parse_value(ps, &kid, depth) || !push(ps, &kid))
			return false;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, JL_BAD, "premature end of input in an array");
		if (*ps->p == ']') {
			ps->p++;
			return close_container(ps, v, base);
		}
		if (*ps->p != ',')
			return fail(ps, JL_BAD, "',' or ']' expected");
		ps->p++;
	}
}

static bool parse_object(struct parser *ps, struct jl *v, int depth)
{
	size_t base = ps->n;
	const char *key, *dup;
	uint32_t key_len;
	struct jl kid;

	v->type = JL_OBJECT;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return close_container(ps, v, base);
	}
	for (;;) {
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != '"')
			return fail(ps, JL_BAD, "string or '}' expected");
		if (!parse_string(ps, &key, &key_len))
			return false;
		/* A repeated key is reported as soon as it is read, as jansson
		 * does (before what follows it); past KEY_SCAN_MAX members the
		 * rest are checked all at once when the object closes. */
		if (ps->n - base <= KEY_SCAN_MAX && key_seen(ps, base, key))
			return fail(ps, JL_DUPLICATE_KEY, "duplicate object key '%.40s'", key);
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			return fail(ps, JL_BAD, "':' expected");
		ps->p++;
		memset(&kid, 0, sizeof(kid));
		if (!parse_value(ps, &kid, depth))
			return false;
		kid.key = key;
		if (!push(ps, &kid))
			return false;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, JL_BAD, "premature end of input in an object");
		if (*ps->p == '}')
			break;
		if (*ps->p != ',')
			return fail(ps, JL_BAD, "',' or '}' expected");
		ps->p++;
	}
	if (ps->n - base > KEY_SCAN_MAX) {
		dup = repeated_key(ps, base);
		if (dup)
			return fail(ps, JL_DUPLICATE_KEY, "duplicate object key '%.40s'", dup);
		if (ps->err->code != JL_OK)
			return false;
	}
	ps->p++;
	return close_container(ps, v, base);
}

static bool literal(struct parser *ps, struct jl *v, const char *word, enum jl_type t)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n))
		return fail(ps, JL_BAD, "invalid token");
	ps->p += n;
	v->type = t;
	return true;
}

static bool parse_value(struct parser *ps, struct jl *v, int depth)
{
	if (++depth > JSONLITE_MAX_DEPTH)
		return fail(ps, JL_BAD, "maximum parsing depth reached");
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, JL_BAD, "premature end of input");
	switch (*ps->p) {
	case '{':
		return parse_object(ps, v, depth);
	case '[':
		return parse_array(ps, v, depth);
	case '"':
		v->type = JL_STRING;
		return parse_string(ps, &v->v.s, &v->n);
	case 't':
		return literal(ps, v, "true", JL_TRUE);
	case 'f':
		return literal(ps, v, "false", JL_FALSE);
	case 'n':
		return literal(ps, v, "null", JL_NULL);
	default:
		return parse_number(ps, v);
	}
}

struct jl_doc *jl__parse(const char *buf, size_t len, struct jl_error *err)
{
	struct parser ps = {
		.p = (const unsigned char *)buf, .start = (const unsigned char *)buf,
		.end = (const unsigned char *)buf + len, .err = err, .cap = STACK_INLINE,
	};
	bool ok;

	memset(err, 0, sizeof(*err));
	ps.stack = ps.inline_stack;
	ps.doc = calloc(1, sizeof(*ps.doc));
	if (!ps.doc) {
		err->code = JL_NOMEM;
		snprintf(err->text, sizeof(err->text), "out of memory");
		return NULL;
	}
	ok = parse_value(&ps, &ps.doc->root, 0);
	if (ok) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			ok = fail(&ps, JL_BAD, "end of input expected");
	}
	if (ps.stack != ps.inline_stack)
		free(ps.stack);
	if (!ok) {
		jl__free(ps.doc);
		return NULL;
	}
	return ps.doc;
}

const struct jl *jl__root(const struct jl_doc *d)
{
	return &d->root;
}

bool jl__big_integers(const struct jl_doc *d)
{
	return d->big_integers;
}

void jl__free(struct jl_doc *d)
{
	struct block *b, *next;

	if (!d)
		return;
	for (b = d->blocks; b; b = next) {
		next = b->next;
		if (b->cap != BLOCK_BYTES || !spare_keep(b))
			free(b);
	}
	free(d);
}

const struct jl *jl__get(const struct jl *obj, const char *key)
{
	uint32_t i;

	if (!obj || obj->type != JL_OBJECT)
		return NULL;
	for (i = 0; i < obj->n; i++)
		if (strcmp(obj->v.kids[i].key, key) == 0)
			return &obj->v.kids[i];
	return NULL;
}

const struct jl *jl__at(const struct jl *arr, size_t i)
{
	return arr && arr->type == JL_ARRAY && i < arr->n ? &arr->v.kids[i] : NULL;
}
