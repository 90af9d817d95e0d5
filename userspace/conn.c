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

static void set_end(const struct workload **end, struct workload *w)
{
	const struct workload *shared = workload__share(w);

	workload__unshare(*end);
	*end = shared ? shared : &workload__none;
}

void conn__set_client(struct conn *c, struct workload *w)
{
	set_end(&c->client, w);
}

void conn__set_server(struct conn *c, struct workload *w)
{
	set_end(&c->server, w);
}

size_t conn__text(const struct conn *c, char *buf, size_t len)
{
	char src[64], dst[64];
	int n;

	/* Addresses and numbers only: nothing to escape. */
	conn__addr(&c->tuple, false, src, sizeof(src));
	conn__addr(&c->tuple, true, dst, sizeof(dst));
	n = snprintf(buf, len, "{\"src\":\"%s\",\"dst\":\"%s\",\"netns\":%lld,\"cookie\":%lld,"
		     "\"preexisting\":%s}", src, dst, (long long)c->netns, (long long)c->cookie,
		     c->preexisting ? "true" : "false");
	return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

json_t *conn__json(const struct conn *c)
{
	char text[CONN_TEXT_MAX];
	size_t n = conn__text(c, text, sizeof(text));

	return n ? json_loadb(text, n, 0, NULL) : NULL;
}
