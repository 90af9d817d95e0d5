// SPDX-License-Identifier: GPL-2.0
/*
 * Strict JSON reader with positions (see jsonpos.h).
 *
 * Recursive descent over the whole buffer in one pass. Each value is parsed
 * into a node on the caller's stack and then appended to its parent's kids
 * array, so on any error the partial tree is still well formed and one
 * release frees it. Newlines are only legal in whitespace (a raw newline in
 * a string is an error), so skip_ws() is the only place that counts lines.
 * Nesting is bounded by JSONPOS_MAX_DEPTH, so the recursion is too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonpos.h"
#include "utf8.h"

struct parser {
	const unsigned char *p;
	const unsigned char *end;
	const unsigned char *line_start;
	int line;
	size_t n_nodes;
	struct jsonpos_error *err;
};

static int parse_value(struct parser *ps, struct jsonpos_node *node, int depth);

static int col_at(const struct parser *ps, const unsigned char *at)
{
	return (int)(at - ps->line_start) + 1;
}

/* Every error is reported at a byte on the current line. */
__attribute__((format(printf, 3, 4)))
static int fail(struct parser *ps, const unsigned char *at, const char *fmt, ...)
{
	va_list ap;

	ps->err->line = ps->line;
	ps->err->col = col_at(ps, at);
	va_start(ap, fmt);
	vsnprintf(ps->err->msg, sizeof(ps->err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int fail_nomem(struct parser *ps)
{
	fail(ps, ps->p, "out of memory");
	return -ENOMEM;
}

/* How a byte is named in a message: 'x', or its value when not printable. */
static const char *byte_name(char *buf, size_t size, const struct parser *ps,
			     const unsigned char *at)
{
	if (at >= ps->end)
		return "the end of the file";
	if (*at > 0x20 && *at < 0x7f)
		snprintf(buf, size, "'%c'", *at);
	else
		snprintf(buf, size, "byte 0x%02x", *at);
	return buf;
}

/*
 * "expected X, found Y", except where Y is a comment or a single-quoted
 * string, which are common enough mistakes to name.
 */
static int fail_expected(struct parser *ps, const char *expected)
{
	const unsigned char *s = ps->p;
	char name[16];

	if (s < ps->end && *s == '/' && s + 1 < ps->end && (s[1] == '/' || s[1] == '*'))
		return fail(ps, s, "comments are not allowed in JSON");
	if (s < ps->end && *s == '\'')
		return fail(ps, s, "strings must be in double quotes, not single quotes");
	return fail(ps, s, "expected %s, found %s", expected, byte_name(name, sizeof(name), ps, s));
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end) {
		unsigned char c = *ps->p;

		if (c == '\n') {
			ps->p++;
			ps->line++;
			ps->line_start = ps->p;
		} else if (c == ' ' || c == '\t' || c == '\r') {
			ps->p++;
		} else {
			break;
		}
	}
}

static void node_release(struct jsonpos_node *n)
{
	size_t i;

	for (i = 0; i < n->n_kids; i++)
		node_release(&n->kids[i]);
	free(n->kids);
	free(n->key);
	free(n->str);
	memset(n, 0, sizeof(*n));
}

/* Capacity doubles at each power of two from 4, so it needs no field. */
static int append_kid(struct jsonpos_node *parent, struct jsonpos_node *kid)
{
	size_t n = parent->n_kids;

	if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
		size_t cap = n == 0 ? 4 : n * 2;
		struct jsonpos_node *k = realloc(parent->kids, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		parent->kids = k;
	}
	parent->kids[n] = *kid;
	parent->n_kids = n + 1;
	memset(kid, 0, sizeof(*kid));
	return 0;
}



/* One escape at s ('\\'), before q. Writes into *d; advances *s. */
static int decode_escape(struct parser *ps, const unsigned char **sp,
			 const unsigned char *q, char **dp)
{
	const unsigned char *s = *sp;
	char name[16];
	long cp, lo;

	switch (s[1]) {
	case '"': case '\\': case '/':
		*(*dp)++ = (char)s[1];
		break;
	case 'b': *(*dp)++ = '\b'; break;
	case 'f': *(*dp)++ = '\f'; break;
	case 'n': *(*dp)++ = '\n'; break;
	case 'r': *(*dp)++ = '\r'; break;
	case 't': *(*dp)++ = '\t'; break;
	case 'u':
		if (q - s < 6 || (cp = utf8__hex4(s + 2)) < 0)
			return fail(ps, s, "\\u must be followed by four hex digits");
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return fail(ps, s, "\\u%04lX is half of a UTF-16 surrogate pair, alone", cp);
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (q - s < 12 || s[6] != '\\' || s[7] != 'u' ||
			    (lo = utf8__hex4(s + 8)) < 0xdc00 || lo > 0xdfff)
				return fail(ps, s, "\\u%04lX is half of a UTF-16 surrogate pair, alone", cp);
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			s += 6;
		}
		*dp += utf8__put(*dp, (uint32_t)cp);
		*sp = s + 6;
		return 0;
	default:
		return fail(ps, s, "invalid escape \\ followed by %s in string",
			    byte_name(name, sizeof(name), ps, s + 1));
	}
	*sp = s + 2;
	return 0;
}

/*
 * A string at ps->p ('"'). The first scan finds where it ends (closing
 * quote, control byte or end of input) to size the buffer: decoding never
 * grows text. The second decodes and validates.
 */
static int parse_string(struct parser *ps, char **out, size_t *out_len)
{
	const unsigned char *open = ps->p, *q = open + 1, *s;
	char *buf, *d, name[16];
	int err;

	while (q < ps->end && *q != '"' && *q >= 0x20) {
		if (*q == '\\' && q + 1 < ps->end && q[1] >= 0x20)
			q += 2;
		else
			q++;
	}
	buf = malloc((size_t)(q - open));
	if (!buf)
		return fail_nomem(ps);
	d = buf;
	for (s = open + 1; s < q;) {
		if (*s == '\\') {
			if (s + 1 >= q)
				break;	/* q is a control byte or the end: below */
			err = decode_escape(ps, &s, q, &d);
			if (err)
				goto err_free;
		} else if (*s < 0x80) {
			*d++ = (char)*s++;
		} else {
			size_t n = utf8__seq_len(s, q);

			if (!n) {
				err = fail(ps, s, "invalid UTF-8 (byte 0x%02x) in string", *s);
				goto err_free;
			}
			memcpy(d, s, n);
			d += n;
			s += n;
		}
	}
	if (q >= ps->end) {
		err = fail(ps, open, "string is not closed (no '\"' before the end of the file)");
		goto err_free;
	}
	if (*q != '"') {
		err = fail(ps, q, "%s in string: control characters must be escaped (is a closing '\"' missing?)",
			   byte_name(name, sizeof(name), ps, q));
		goto err_free;
	}
	*d = '\0';
	*out = buf;
	*out_len = (size_t)(d - buf);
	ps->p = q + 1;
	return 0;

err_free:
	free(buf);
	return err;
}

static bool is_digit(const struct parser *ps, const unsigned char *at)
{
	return at < ps->end && *at >= '0' && *at <= '9';
}

static bool is_word(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

static int parse_number(struct parser *ps, struct jsonpos_node *node)
{
	const unsigned char *start = ps->p, *s = ps->p;

	if (*s == '-')
		s++;
	if (!is_digit(ps, s))
		return fail(ps, s, "expected a digit after '-'");
	if (*s == '0') {
		s++;
		if (is_digit(ps, s))
			return fail(ps, start, "numbers cannot have leading zeros");
	} else {
		while (is_digit(ps, s))
			s++;
	}
	if (s < ps->end && *s == '.') {
		s++;
		if (!is_digit(ps, s))
			return fail(ps, s, "expected a digit after '.'");
		while (is_digit(ps, s))
			s++;
	}
	if (s < ps->end && (*s == 'e' || *s == 'E')) {
		s++;
		if (s < ps->end && (*s == '+' || *s == '-'))
			s++;
		if (!is_digit(ps, s))
			return fail(ps, s, "expected a digit in the exponent");
		while (is_digit(ps, s))
			s++;
	}
	node->type = JSONPOS_NUMBER;
	node->len = (size_t)(s - start);
	node->str = strndup((const char *)start, node->len);
	if (!node->str)
		return fail_nomem(ps);
	ps->p = s;
	return 0;
}

/* A bare word: true, false, null, or a mistake worth naming. */
static int parse_word(struct parser *ps, struct jsonpos_node *node)
{
	const unsigned char *s = ps->p;
	size_t n;

	while (s < ps->end && is_word(*s))
		s++;
	n = (size_t)(s - ps->p);
	if (n == 4 && memcmp(ps->p, "null", 4) == 0) {
		node->type = JSONPOS_NULL;
	} else if (n == 4 && memcmp(ps->p, "true", 4) == 0) {
		node->type = JSONPOS_BOOL;
		node->boolean = true;
	} else if (n == 5 && memcmp(ps->p, "false", 5) == 0) {
		node->type = JSONPOS_BOOL;
	} else {
		return fail(ps, ps->p, "unquoted text \"%.*s%s\": strings must be in double quotes",
			    (int)(n > 32 ? 32 : n), (const char *)ps->p, n > 32 ? "..." : "");
	}
	ps->p = s;
	return 0;
}


static int parse_object(struct parser *ps, struct jsonpos_node *node, int depth)
{
	int open_line = ps->line, open_col = col_at(ps, ps->p);
	bool after_comma = false;
	int err;

	node->type = JSONPOS_OBJECT;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return 0;
	}
	for (;;) {
		struct jsonpos_node kid = {0};

		if (ps->p >= ps->end)
			return fail(ps, ps->p, "the file ends inside the object opened at %d:%d",
				    open_line, open_col);
		if (*ps->p != '"') {
			if (after_comma && *ps->p == '}')
				return fail(ps, ps->p, "trailing comma before '}': remove the comma");
			return fail_expected(ps, "a key in double quotes");
		}
		kid.key_line = ps->line;
		kid.key_col = col_at(ps, ps->p);
		err = parse_string(ps, &kid.key, &kid.key_len);
		if (err)
			return err;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':') {
			err = fail_expected(ps, "':' after the key");
			goto err_kid;
		}
		ps->p++;
		skip_ws(ps);
		err = parse_value(ps, &kid, depth + 1);
		if (err)
			goto err_kid;
		if (append_kid(node, &kid)) {
			err = fail_nomem(ps);
			goto err_kid;
		}
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			skip_ws(ps);
			after_comma = true;
			continue;
		}
		if (ps->p < ps->end && *ps->p == '}') {
			ps->p++;
			return 0;
		}
		if (ps->p >= ps->end)
			return fail(ps, ps->p, "the file ends inside the object opened at %d:%d",
				    open_line, open_col);
		return fail_expected(ps, "',' or '}' after a member");
err_kid:
		node_release(&kid);
		return err;
	}
}

static int parse_array(struct parser *ps, struct jsonpos_node *node, int depth)
{
	int open_line = ps->line, open_col = col_at(ps, ps->p);
	int err;

	node->type = JSONPOS_ARRAY;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return 0;
	}
	for (;;) {
		struct jsonpos_node kid = {0};

		if (ps->p >= ps->end)
			return fail(ps, ps->p, "the file ends inside the array opened at %d:%d",
				    open_line, open_col);
		if (node->n_kids && *ps->p == ']')
			return fail(ps, ps->p, "trailing comma before ']': remove the comma");
		err = parse_value(ps, &kid, depth + 1);
		if (!err && append_kid(node, &kid))
			err = fail_nomem(ps);
		if (err) {
			node_release(&kid);
			return err;
		}
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			skip_ws(ps);
			continue;
		}
		if (ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			return 0;
		}
		if (ps->p >= ps->end)
			return fail(ps, ps->p, "the file ends inside the array opened at %d:%d",
				    open_line, open_col);
		return fail_expected(ps, "',' or ']' after an element");
	}
}

static int parse_value(struct parser *ps, struct jsonpos_node *node, int depth)
{
	if (ps->p >= ps->end)
		return fail(ps, ps->p, "the file ends where a value was expected");
	node->line = ps->line;
	node->col = col_at(ps, ps->p);
	if (++ps->n_nodes > JSONPOS_MAX_NODES)
		return fail(ps, ps->p, "more than %u values", JSONPOS_MAX_NODES);

	switch (*ps->p) {
	case '{':
	case '[':
		if (depth >= JSONPOS_MAX_DEPTH)
			return fail(ps, ps->p, "nested deeper than %d levels", JSONPOS_MAX_DEPTH);
		return *ps->p == '{' ? parse_object(ps, node, depth) :
				       parse_array(ps, node, depth);
	case '"':
		node->type = JSONPOS_STRING;
		return parse_string(ps, &node->str, &node->len);
	case '-':
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return parse_number(ps, node);
	default:
		if (is_word(*ps->p) && *ps->p != '.')
			return parse_word(ps, node);
		return fail_expected(ps, "a value");
	}
}

int jsonpos__parse(const char *buf, size_t len, struct jsonpos_node **root,
		   struct jsonpos_error *err)
{
	static const char none[1];
	struct parser ps;
	struct jsonpos_node *node;
	char name[16];
	int ret;

	if (!buf) {
		buf = none;
		len = 0;
	}
	ps = (struct parser){
		.p = (const unsigned char *)buf,
		.end = (const unsigned char *)buf + len,
		.line_start = (const unsigned char *)buf,
		.line = 1,
		.err = err,
	};
	memset(err, 0, sizeof(*err));
	*root = NULL;
	if (len > JSONPOS_MAX_BYTES)
		return fail(&ps, ps.p, "larger than %u bytes", JSONPOS_MAX_BYTES);
	if (len == 0)
		return fail(&ps, ps.p, "the file is empty");
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		return fail(&ps, ps.p, "the file starts with a UTF-8 byte order mark; save it without one");

	node = calloc(1, sizeof(*node));
	if (!node)
		return fail_nomem(&ps);
	skip_ws(&ps);
	ret = parse_value(&ps, node, 0);
	if (!ret) {
		skip_ws(&ps);
		if (ps.p < ps.end)
			ret = fail(&ps, ps.p, "%s after the end of the top-level value",
				   byte_name(name, sizeof(name), &ps, ps.p));
	}
	if (ret) {
		jsonpos__free(node);
		return ret;
	}
	*root = node;
	return 0;
}

void jsonpos__free(struct jsonpos_node *root)
{
	if (!root)
		return;
	node_release(root);
	free(root);
}

const struct jsonpos_node *jsonpos__member(const struct jsonpos_node *obj,
					   const char *key)
{
	size_t i, n = strlen(key);

	if (!obj || obj->type != JSONPOS_OBJECT)
		return NULL;
	for (i = 0; i < obj->n_kids; i++)
		if (obj->kids[i].key_len == n && memcmp(obj->kids[i].key, key, n) == 0)
			return &obj->kids[i];
	return NULL;
}

const char *jsonpos__describe(const struct jsonpos_node *n)
{
	switch (n->type) {
	case JSONPOS_NULL:
		return "null";
	case JSONPOS_BOOL:
		return n->boolean ? "true" : "false";
	case JSONPOS_NUMBER:
		return "a number";
	case JSONPOS_STRING:
		return "a string";
	case JSONPOS_ARRAY:
		return "an array";
	case JSONPOS_OBJECT:
		return "an object";
	}
	return "a value";
}
