/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small strict JSON reader (RFC 8259) that remembers where every value and
 * object key starts, so configuration errors can name LINE:COL of the
 * offending token (jansson only reports positions of syntax errors).
 *
 * The result is a read-only tree of nodes. Strings are validated as UTF-8,
 * escapes are decoded (surrogate pairs joined, lone surrogates refused) and
 * kept with their length, since "\u0000" may put a NUL inside one. Numbers
 * are kept as their source text; the caller decides what range it accepts.
 * Duplicate keys are kept: the caller reports them, at the second one.
 *
 * Lines and columns are 1-based; a column counts bytes, and only '\n' ends a
 * line.
 */
#ifndef MCPW_JSONPOS_H
#define MCPW_JSONPOS_H

#include <stdbool.h>
#include <stddef.h>

/* Limits a document cannot push past: input bytes, nesting, values. */
#define JSONPOS_MAX_BYTES	(16u << 20)
#define JSONPOS_MAX_DEPTH	64
#define JSONPOS_MAX_NODES	(1u << 18)

enum jsonpos_type {
	JSONPOS_NULL = 0,
	JSONPOS_BOOL,
	JSONPOS_NUMBER,
	JSONPOS_STRING,
	JSONPOS_ARRAY,
	JSONPOS_OBJECT,
};

struct jsonpos_node {
	enum jsonpos_type type;
	int line, col;			/* first byte of the value */
	/* Set on members of an object: the key and where it starts. */
	char *key;
	size_t key_len;
	int key_line, key_col;
	/* String: decoded bytes, NUL-terminated. Number: source text. */
	char *str;
	size_t len;
	bool boolean;
	/* Array elements or object members, in document order. */
	struct jsonpos_node *kids;
	size_t n_kids;
};

struct jsonpos_error {
	int line, col;
	char msg[160];
};

/*
 * Parses one JSON text. Returns 0 and a tree to release with
 * jsonpos__free(), -EINVAL with *err filled when the text is not JSON or
 * passes a limit, or -ENOMEM.
 */
int jsonpos__parse(const char *buf, size_t len, struct jsonpos_node **root,
		   struct jsonpos_error *err);
void jsonpos__free(struct jsonpos_node *root);

/* First member of an object named key, or NULL. */
const struct jsonpos_node *jsonpos__member(const struct jsonpos_node *obj,
					   const char *key);

/* "a string", "an object", "true", "null"...: the type as found. */
const char *jsonpos__describe(const struct jsonpos_node *n);

#endif
