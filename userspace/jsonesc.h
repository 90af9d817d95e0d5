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

static inline void json_escape_string(const char *s, json_put_fn put, void *ctx)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s), *run;
	char esc[8];

	put(ctx, "\"", 1);
	while (p < end) {
		size_t n;

		for (run = p; p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\'; p++)
			;
		if (p > run)
			put(ctx, (const char *)run, (size_t)(p - run));
		if (p == end)
			break;
		if (*p >= 0x80) {
			n = utf8__seq_len(p, end);
			if (n) {
				put(ctx, (const char *)p, n);
				p += n;
			} else {
				put(ctx, "\\ufffd", 6);
				p++;
			}
			continue;
		}
		esc[0] = '\\';
		switch (*p) {
		case '"': esc[1] = '"'; n = 2; break;
		case '\\': esc[1] = '\\'; n = 2; break;
		case '\b': esc[1] = 'b'; n = 2; break;
		case '\f': esc[1] = 'f'; n = 2; break;
		case '\n': esc[1] = 'n'; n = 2; break;
		case '\r': esc[1] = 'r'; n = 2; break;
		case '\t': esc[1] = 't'; n = 2; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			n = 6;
		}
		put(ctx, esc, n);
		p++;
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
