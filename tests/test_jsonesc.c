// SPDX-License-Identifier: GPL-2.0
/*
 * JSON strings written by hand (jsonesc.h): in one pass into a buffer as
 * jansson writes them, and through a callback in slices exactly as in one
 * pass, wherever a slice boundary falls in a UTF-8 sequence, valid or not.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"
#include "jsonesc.h"

struct sink {
	char buf[8192];
	size_t len;
};

static void put(void *ctx, const char *p, size_t n)
{
	struct sink *s = ctx;

	if (s->len + n <= sizeof(s->buf)) {
		memcpy(s->buf + s->len, p, n);
		s->len += n;
	}
}

/* s in one pass into a buffer: NUL-terminated, malloc'd. */
static char *one_pass(const char *s)
{
	size_t n = strlen(s);
	char *out = malloc(JSON_ESCAPED_MAX(n) + 1);

	if (out)
		out[json_escape_buf(out, s, n)] = '\0';
	return out;
}

void test_jsonesc_as_jansson(void)
{
	static const char *const valid[] = {
		"", "plain", "quote \" and backslash \\ and slash /", "\b\f\n\r\t\x01\x1f\x7f",
		"caf\xc3\xa9", "\xe2\x82\xac euro", "\xf0\x9f\x98\x80 face",
		"\xed\x9f\xbf last before surrogates",
	};
	size_t i;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		json_t *js = json_string(valid[i]);
		char *want = json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT);
		char *got = one_pass(valid[i]);

		if (ASSERT_OK_PTR(want, "jansson") && ASSERT_OK_PTR(got, "escaped"))
			ASSERT_STREQ(got, want, valid[i]);
		free(want);
		free(got);
		json_decref(js);
	}
}

void test_jsonesc_invalid_utf8(void)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "a\xff" "b", "\"a\\ufffdb\"" },
		{ "\xc3", "\"\\ufffd\"" },				/* truncated */
		{ "\xc0\xaf", "\"\\ufffd\\ufffd\"" },			/* overlong */
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },	/* surrogate */
		{ "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" },	/* above U+10FFFF */
		{ "\x80\xc3\xa9", "\"\\ufffd\xc3\xa9\"" },		/* stray, then valid */
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = one_pass(cases[i].in);

		if (ASSERT_OK_PTR(got, "escaped"))
			ASSERT_STREQ(got, cases[i].want, cases[i].want);
		free(got);
	}
}

/* Long strings of mixed pieces, shifted by every offset so that each piece
 * straddles a slice boundary somewhere: the callback's slices write what
 * one pass writes. */
void test_jsonesc_slices_as_one_pass(void)
{
	static const char *const pieces[] = {
		"\xf0\x9f\x98\x80", "\xe2\x82\xac", "\xc3\xa9", "\x80\x80\x80\x80\x80",
		"\xf0\x9f\x98",
		"\"", "\n", "x", "\xf0\x9f\x98\x80\x80\x80", "\xff",
	};
	char s[1400];
	size_t shift, at, k;
	int bad = 0;

	for (shift = 0; shift < 16; shift++) {
		struct sink sk = { .len = 0 };
		char *want;

		memset(s, 'a', shift);
		at = shift;
		for (k = 0; at < 1200; k++) {
			size_t n_pieces = sizeof(pieces) / sizeof(pieces[0]);
			const char *p = pieces[(k * 7 + shift) % n_pieces];

			memcpy(s + at, p, strlen(p));
			at += strlen(p);
		}
		s[at] = '\0';
		want = one_pass(s);
		json_escape_string(s, put, &sk);
		if (!want || sk.len != strlen(want) || memcmp(sk.buf, want, sk.len) != 0)
			bad++;
		free(want);
	}
	ASSERT_EQ(bad, 0, "every shift escaped in slices as in one pass");
}
