/* SPDX-License-Identifier: GPL-2.0 */
/* UTF-8 as RFC 3629 has it: no overlong forms, no surrogates, <= U+10FFFF. */
#ifndef MCPW_UTF8_H
#define MCPW_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at p (a non-ASCII lead byte) before
 * end, or 0 when it is not one. */
static inline size_t utf8__seq_len(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	if (c == 0xe0)
		lo = 0xa0;	/* overlong */
	else if (c == 0xed)
		hi = 0x9f;	/* surrogates */
	else if (c == 0xf0)
		lo = 0x90;	/* overlong */
	else if (c == 0xf4)
		hi = 0x8f;	/* above U+10FFFF */
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

#endif
