/* SPDX-License-Identifier: GPL-2.0 */
/*
 * JSON text written through a callback. A C string becomes a JSON string
 * escaped as jansson escapes (no \/, UTF-8 kept), each byte that starts no
 * valid UTF-8 sequence written as U+FFFD: the result always parses. put
 * receives the pieces in order; with put a static function the compiler
 * inlines the whole.
 */
#ifndef MCPW_JSONESC_H
#define MCPW_JSONESC_H

#include <string.h>

#include "utf8.h"

typedef void (*json_put_fn)(void *ctx, const char *p, size_t n);

/* The most bytes json_escape_buf() writes for n bytes of input. */
#define JSON_ESCAPED_MAX(n) ((n) * 6 + 2)

/* s[0, n) escaped, without quotes, into dst: the bytes written (at most 6n). */
static inline size_t json_escape_body(char *dst, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *end = p + n, *run;
	char *o = dst;

	while (p < end) {
		size_t k;

		for (run = p; p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\'; p++)
			;
		if (p > run) {
			memcpy(o, run, (size_t)(p - run));
			o += p - run;
		}
		if (p == end)
			break;
		if (*p >= 0x80) {
			k = utf8__seq_len(p, end);
			if (k) {
				memcpy(o, p, k);
				o += k;
				p += k;
			} else {
				memcpy(o, "\\ufffd", 6);
				o += 6;
				p++;
			}
			continue;
		}
		*o++ = '\\';
		switch (*p) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		default:
			memcpy(o, "u00", 3);
			o[3] = hex[*p >> 4];
			o[4] = hex[*p & 15];
			o += 5;
		}
		p++;
	}
	return (size_t)(o - dst);
}

/* s[0, n) as a JSON string into dst, which has room for
 * JSON_ESCAPED_MAX(n) bytes: the bytes written. */
static inline size_t json_escape_buf(char *dst, const char *s, size_t n)
{
	size_t k;

	dst[0] = '"';
	k = json_escape_body(dst + 1, s, n);
	dst[k + 1] = '"';
	return k + 2;
}

/* The C string s as a JSON string, through put. In slices: a slice that
 * would end on a UTF-8 continuation byte ends instead at the last byte
 * before it that is none, when one is within three (the most a sequence
 * has), since a pass over the whole visits every such byte: each slice is
 * escaped as in one pass. */
static inline void json_escape_string(const char *s, json_put_fn put, void *ctx)
{
	enum { SLICE = 256 };
	char buf[SLICE * 6];
	size_t n = strlen(s), at = 0, e, q;

	put(ctx, "\"", 1);
	while (at < n) {
		e = n - at > SLICE ? at + SLICE : n;
		if (e < n && ((unsigned char)s[e] & 0xc0) == 0x80) {
			for (q = e - 1; q + 3 >= e && q > at; q--) {
				if (((unsigned char)s[q] & 0xc0) != 0x80) {
					e = q;
					break;
				}
			}
		}
		put(ctx, buf, json_escape_body(buf, s + at, e - at));
		at = e;
	}
	put(ctx, "\"", 1);
}

/* v in decimal, as a JSON number. */
static inline void json_put_int(long long v, json_put_fn put, void *ctx)
{
	unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
	char num[24], *p = num + sizeof(num);

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	put(ctx, p, (size_t)(num + sizeof(num) - p));
}

#endif
