// SPDX-License-Identifier: GPL-2.0
/*
 * The body reader (jsonlite.h) held to jansson, which it replaced in
 * mcp.c: on crafted edge cases and on random, mutated JSON, it accepts
 * exactly what jansson accepts with JSON_REJECT_DUPLICATES |
 * JSON_DECODE_ANY (then JSON_DECODE_INT_AS_REAL after an integer
 * overflow, as mcp.c did), and reads the same values.
 */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "harness.h"
#include "jsonlite.h"

/* What mcp.c did with jansson. */
static json_t *jansson_read(const char *buf, size_t len, bool *dup)
{
	json_error_t e;
	json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);

	if (!v && json_error_code(&e) == json_error_numeric_overflow)
		v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY |
			       JSON_DECODE_INT_AS_REAL, &e);
	*dup = !v && json_error_code(&e) == json_error_duplicate_key;
	return v;
}

static double num(const json_t *j)
{
	return json_is_integer(j) ? (double)json_integer_value(j) : json_real_value(j);
}

/* The same value; integers may have become reals (after an overflow). */
static bool same(const struct jl *a, const json_t *j)
{
	size_t i;

	switch (a->type) {
	case JL_NULL: return json_is_null(j);
	case JL_TRUE: return json_is_true(j);
	case JL_FALSE: return json_is_false(j);
	case JL_INTEGER:
		if (json_is_integer(j))
			return json_integer_value(j) == a->v.i;
		return json_is_real(j) && json_real_value(j) == (double)a->v.i;
	case JL_REAL:
		return json_is_number(j) && (num(j) == a->v.r || (isnan(num(j)) && isnan(a->v.r)));
	case JL_STRING:
		return json_is_string(j) && json_string_length(j) == a->n &&
		       memcmp(json_string_value(j), a->v.s, a->n) == 0;
	case JL_ARRAY:
		if (!json_is_array(j) || json_array_size(j) != a->n)
			return false;
		for (i = 0; i < a->n; i++)
			if (!same(&a->v.kids[i], json_array_get(j, i)))
				return false;
		return true;
	case JL_OBJECT:
		if (!json_is_object(j) || json_object_size(j) != a->n)
			return false;
		for (i = 0; i < a->n; i++) {
			json_t *m = json_object_get(j, a->v.kids[i].key);

			if (!m || !same(&a->v.kids[i], m))
				return false;
		}
		return true;
	}
	return false;
}

/* 0 when both agree; else a number saying how they differ. */
static int compare(const char *buf, size_t len)
{
	struct jl_error err;
	struct jl_doc *d = jl__parse(buf, len, &err);
	bool dup;
	json_t *j = jansson_read(buf, len, &dup);
	int diff = 0;

	/* jansson's one quirk not kept: it skips a raw NUL byte after a
	 * number or a literal ("[0\0]", "null\0"), which JSON.parse and
	 * this reader refuse (and it may then find another error first).
	 * Never the other way round. */
	if (!d && memchr(buf, 0, len))
		diff = 0;
	else if (!!d != !!j)
		diff = d ? 1 : 2;	/* 1: we accept what jansson refused */
	else if (d && !same(jl__root(d), j))
		diff = 3;
	else if (!d && dup != (err.code == JL_DUPLICATE_KEY))
		diff = 4;
	jl__free(d);
	json_decref(j);
	return diff;
}

void test_jsonlite_edge_cases(void)
{
	static const char *const cases[] = {
		"{}", "[]", "0", "-0", "1.5", "-1.5e10", "1E+2", "1e-400", "1e400", "-1e400",
		"01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "Infinity",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"-9223372036854775809", "[1, 99999999999999999999999]", "123456789012345678901234567890",
		"true", "false", "null", "tru", "truex", "nul", "[true,false,null]",
		"\"\"", "\"a\\\"b\"", "\"\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\\u20ac\"",
		"\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83d\\u0041\"", "\"\\u0000\"",
		"\"\\u00\"", "\"\\x41\"", "\"\\\"", "\"abc", "\"caf\xc3\xa9\"", "\"\xc3\"", "\"\xff\"",
		"\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xc0\x80\"", "\"\xe0\x80\x80\"",
		"\"tab\there\"", "\"nl\nhere\"", "\"\x7f\"",
		"{\"a\":1,\"a\":2}", "{\"a\":1,\"b\":{\"a\":2}}", "{\"a\":1,\"A\":2}",
		"{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,"
		"\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,\"k15\":15,\"k16\":16,"
		"\"k17\":17,\"k1\":18}",
		"{\"\\u0061\":1,\"a\":2}", "{\"a\":1,}", "[1,]", "[,1]", "{,}", "{\"a\"}", "{\"a\":}",
		"{1:2}", "[1 2]", "{\"a\":1 \"b\":2}", " \t\r\n[ 1 , 2 ] \n", "[1]x", "[1] [2]", "",
		" ", "\xef\xbb\xbf{}", "{\"a\":[{\"b\":[{}]}]}", "[\"\\u00e9\"]", "\"\\u00E9\"",
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}",
	};
	char deep[5000];
	size_t i;
	int d;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		d = compare(cases[i], strlen(cases[i]));
		if (d)
			test__log("differs (%d) on: %s", d, cases[i]);
		ASSERT_EQ(d, 0, "the same verdict and value as jansson");
	}
	/* A NUL byte outside a string, and inside one. */
	ASSERT_EQ(compare("[1]\0", 4), 0, "trailing NUL");
	ASSERT_EQ(compare("\"a\0b\"", 5), 0, "raw NUL in a string");
	/* Objects past the members checked as they are read: duplicates
	 * found when the object closes, wherever they are. */
	for (d = 0; d < 3; d++) {
		char big[4096];
		size_t n = 0;
		int k;

		n += (size_t)snprintf(big + n, sizeof(big) - n, "{");
		for (k = 0; k < 100; k++)
			n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"k%d\":%d", k ? "," : "",
					      d == 1 && k == 99 ? 3 : d == 2 && k == 70 ? 99 : k, k);
		n += (size_t)snprintf(big + n, sizeof(big) - n, "}");
		ASSERT_EQ(compare(big, n), 0, "a large object (distinct keys, or one repeated)");
	}
	/* Nesting at and past the limit. */
	for (d = 2046; d <= 2050; d++) {
		memset(deep, '[', (size_t)d);
		memset(deep + d, ']', (size_t)d);
		ASSERT_EQ(compare(deep, 2 * (size_t)d), 0, "deep nesting");
		deep[d] = '1';
		memset(deep + d + 1, ']', (size_t)d);
		ASSERT_EQ(compare(deep, 2 * (size_t)d + 1), 0, "deep nesting with a value");
	}
}

/* Random JSON, then a few random edits. */
static void gen(char *buf, size_t *n, size_t cap, int depth)
{
	static const char *const atoms[] = {
		"0", "-1", "12", "3.25", "-0.5e3", "1e308", "99999999999999999999", "true", "false",
		"null", "\"\"", "\"x\"", "\"\\u00e9\"", "\"\\ud83d\\ude00\"", "\"a\\nb\"", "\"\xc3\xa9\"",
	};
	static const char *const keys[] = { "\"a\"", "\"b\"", "\"id\"", "\"\\u0061\"", "\"\"" };
	int k = rand() % (depth > 4 ? 1 : 3), i, m;

#define PUT(s) do { const char *s_ = (s); size_t l_ = strlen(s_);			\
		     if (*n + l_ < cap) { memcpy(buf + *n, s_, l_); *n += l_; } } while (0)
	if (k == 0) {
		PUT(atoms[rand() % (int)(sizeof(atoms) / sizeof(atoms[0]))]);
	} else if (k == 1) {
		PUT("[");
		m = rand() % 4;
		for (i = 0; i < m; i++) {
			if (i)
				PUT(",");
			gen(buf, n, cap, depth + 1);
		}
		PUT("]");
	} else {
		PUT("{");
		m = rand() % 4;
		for (i = 0; i < m; i++) {
			if (i)
				PUT(",");
			PUT(keys[rand() % (int)(sizeof(keys) / sizeof(keys[0]))]);
			PUT(":");
			gen(buf, n, cap, depth + 1);
		}
		PUT("}");
	}
#undef PUT
}

void test_jsonlite_random_like_jansson(void)
{
	static const char edits[] = "{}[],:\"\\ 0-1.eE+tfnu\x80\xc3\xff\x01\0";
	char buf[2048];
	int i, e, bad = 0, accepted = 0;

	srand(2026);
	for (i = 0; i < 20000 && bad < 5; i++) {
		size_t n = 0, at;
		int d;

		gen(buf, &n, sizeof(buf) - 8, 0);
		for (e = rand() % 3; e > 0 && n; e--) {
			at = (size_t)rand() % n;
			switch (rand() % 3) {
			case 0: buf[at] = edits[rand() % (int)(sizeof(edits) - 1)]; break;
			case 1: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
			default:
				memmove(buf + at + 1, buf + at, n - at);
				buf[at] = edits[rand() % (int)(sizeof(edits) - 1)];
				n++;
			}
		}
		d = compare(buf, n);
		if (d) {
			char hex[3 * 64 + 1] = "";
			size_t h;

			for (h = 0; h < n && h < 64; h++)
				snprintf(hex + 3 * h, 4, "%02x ", (unsigned char)buf[h]);
			bad++;
			test__log("differs (%d) on: %.*s [%s]", d, (int)n, buf, hex);
		} else {
			struct jl_error err;
			struct jl_doc *doc = jl__parse(buf, n, &err);

			accepted += !!doc;
			jl__free(doc);
		}
	}
	ASSERT_EQ(bad, 0, "random documents read as jansson reads them");
	test__log("%d documents, %d accepted", i, accepted);
	ASSERT_GE(accepted, 2000, "enough of them valid");
	ASSERT_GE(i - accepted, 2000, "enough of them not");
}

/* A thread that parsed several documents at once keeps their blocks for
 * its next ones, and gives them back when it ends (a waker that stops):
 * the heap in use after it ends is what it was before. */
static void *parse_three(void *unused)
{
	static const char doc[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
	struct jl_doc *d[3];
	struct jl_error err;
	int i;

	(void)unused;
	for (i = 0; i < 3; i++)
		d[i] = jl__parse(doc, sizeof(doc) - 1, &err);
	for (i = 0; i < 3; i++)
		jl__free(d[i]);
	return NULL;
}

void test_jsonlite_thread_blocks(void)
{
	struct mallinfo2 before, after;
	pthread_t t;

	/* One heap: a thread's blocks would otherwise come from an arena of
	 * its own, which mallinfo2() does not count. */
	mallopt(M_ARENA_MAX, 1);
	parse_three(NULL);	/* this thread's own spares, kept */
	before = mallinfo2();
	if (!ASSERT_OK(pthread_create(&t, NULL, parse_three, NULL), "thread"))
		return;
	pthread_join(t, NULL);
	after = mallinfo2();
	ASSERT_TRUE(after.uordblks < before.uordblks + 16384,
		    "the ended thread's blocks are freed");
	test__log("in use before %zu, after %zu", before.uordblks, after.uordblks);
}
