/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A strict, allocation-light JSON reader for request bodies.
 *
 * Every request body is read once per request; jansson spent about 2 us on
 * a 100-byte tools/call (a malloc per value, a hash table per object) for
 * a tree that lives a few microseconds. This reader builds the tree in one
 * arena (a few blocks at most) and is read-only afterwards.
 *
 * It accepts exactly what mcp.c accepted through jansson with
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY: RFC 8259 text, any value at
 * the top, strings valid UTF-8 without NUL (no "\u0000", no lone
 * surrogates), no repeated key in an object, nesting at most
 * JSONLITE_MAX_DEPTH. Integers outside 64 bits are kept as reals (as the
 * second, JSON_DECODE_INT_AS_REAL, jansson pass did); a real that
 * overflows a double is an error. One jansson quirk is not kept: it skips
 * a raw NUL byte after a number or literal ("[0\0]"), which JSON.parse
 * refuses, and so does this reader. tests/test_jsonlite.c holds it to
 * jansson on crafted and random input.
 */
#ifndef MCPW_JSONLITE_H
#define MCPW_JSONLITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSONLITE_MAX_DEPTH 2048

enum jl_type {
	JL_NULL,
	JL_TRUE,
	JL_FALSE,
	JL_INTEGER,
	JL_REAL,
	JL_STRING,
	JL_ARRAY,
	JL_OBJECT,
};

struct jl {
	enum jl_type type;
	uint32_t n;		/* string bytes, or elements / members */
	const char *key;	/* object member: its key (NUL-terminated) */
	union {
		long long i;
		double r;
		const char *s;	/* NUL-terminated */
		const struct jl *kids;
	} v;
};

struct jl_doc;

enum jl_error_code {
	JL_OK,
	JL_BAD,			/* not JSON (or not what is accepted) */
	JL_DUPLICATE_KEY,
	JL_NOMEM,
};

struct jl_error {
	enum jl_error_code code;
	size_t position;	/* bytes read before the error */
	char text[96];
};

/* Parses buf; NULL with err filled when it is not accepted. */
struct jl_doc *jl__parse(const char *buf, size_t len, struct jl_error *err);
const struct jl *jl__root(const struct jl_doc *d);
/* Whether an integer past 64 bits was kept as a real: what jansson
 * without JSON_DECODE_INT_AS_REAL refuses, for callers that must accept
 * exactly what it did. */
bool jl__big_integers(const struct jl_doc *d);
void jl__free(struct jl_doc *d);

/* First member named key of an object (NULL: absent, or not an object). */
const struct jl *jl__get(const struct jl *obj, const char *key);
/* Element i of an array, or NULL. */
const struct jl *jl__at(const struct jl *arr, size_t i);

static inline bool jl__is(const struct jl *v, enum jl_type t)
{
	return v && v->type == t;
}

#endif
