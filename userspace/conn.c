// SPDX-License-Identifier: GPL-2.0
/* Connection evidence: addresses and the `connection` object of events. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "conn.h"

void conn__addr(const struct mcpw_tuple *t, bool server_end, char *buf, size_t len)
{
	const unsigned char *a = server_end ? t->saddr : t->daddr;
	unsigned int port = server_end ? t->sport : t->dport;
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	char ip[INET6_ADDRSTRLEN] = "?";

	if (memcmp(a, mapped, sizeof(mapped)) == 0) {
		inet_ntop(AF_INET, a + 12, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, port);
	} else {
		inet_ntop(AF_INET6, a, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, port);
	}
}

json_t *conn__json(const struct conn *c)
{
	char src[64], dst[64];

	conn__addr(&c->tuple, false, src, sizeof(src));
	conn__addr(&c->tuple, true, dst, sizeof(dst));
	return json_pack("{s:s,s:s,s:I,s:I,s:b}", "src", src, "dst", dst,
			 "netns", (json_int_t)c->netns, "cookie", (json_int_t)c->cookie,
			 "preexisting", c->preexisting);
}
