// SPDX-License-Identifier: GPL-2.0
/* Connection evidence: addresses and the `connection` object of events. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "conn.h"

/* Decimal digits of v at p; returns the end. */
static char *put_dec(char *p, unsigned long long v)
{
	char tmp[20];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* An IPv4 address by hand: inet_ntop's sprintf per octet showed in the
 * daemon's profile under connection churn (a text per connection). */
void conn__addr(const struct mcpw_tuple *t, bool server_end, char *buf, size_t len)
{
	const unsigned char *a = server_end ? t->saddr : t->daddr;
	unsigned int port = server_end ? t->sport : t->dport;
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	char ip[INET6_ADDRSTRLEN] = "?", v4[sizeof("255.255.255.255:65535")], *p = v4;
	size_t n;
	int i;

	if (memcmp(a, mapped, sizeof(mapped)) == 0) {
		for (i = 12; i < 16; i++) {
			p = put_dec(p, a[i]);
			*p++ = i < 15 ? '.' : ':';
		}
		p = put_dec(p, port);
		n = (size_t)(p - v4) < len ? (size_t)(p - v4) : len ? len - 1 : 0;
		if (len) {
			memcpy(buf, v4, n);
			buf[n] = '\0';
		}
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
	char text[CONN_TEXT_MAX], src[64], dst[64], *p = text;
	size_t n;

	/* Addresses and numbers only: nothing to escape. Put together by hand
	 * (snprintf's format parsing cost as much as the rest of the event). */
	conn__addr(&c->tuple, false, src, sizeof(src));
	conn__addr(&c->tuple, true, dst, sizeof(dst));
#define PUT(s) do { n = strlen(s); memcpy(p, s, n); p += n; } while (0)
	PUT("{\"src\":\"");
	PUT(src);
	PUT("\",\"dst\":\"");
	PUT(dst);
	PUT("\",\"netns\":");
	p = put_dec(p, c->netns);
	PUT(",\"cookie\":");
	p = put_dec(p, c->cookie);
	PUT(c->preexisting ? ",\"preexisting\":true}" : ",\"preexisting\":false}");
#undef PUT
	n = (size_t)(p - text);
	if (n >= len)
		return 0;
	memcpy(buf, text, n);
	buf[n] = '\0';
	return n;
}

struct mcpw_tuple conn__reversed(const struct mcpw_tuple *t)
{
	struct mcpw_tuple r = *t;

	memcpy(r.saddr, t->daddr, sizeof(r.saddr));
	memcpy(r.daddr, t->saddr, sizeof(r.daddr));
	r.sport = t->dport;
	r.dport = t->sport;
	return r;
}

json_t *conn__json(const struct conn *c)
{
	char text[CONN_TEXT_MAX];
	size_t n = conn__text(c, text, sizeof(text));

	return n ? json_loadb(text, n, 0, NULL) : NULL;
}
