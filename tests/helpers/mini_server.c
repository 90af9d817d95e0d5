// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal MCP-over-HTTP responder for benchmarks: epoll, one thread, one
 * small JSON-RPC result per complete request (Content-Length framing),
 * keep-alive. What a fast MCP server costs, so the agent's share shows.
 *
 *   mini_server ADDR PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define BUF (4u << 20)

struct client {
	int fd;
	size_t len;
	char *buf;
};

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	"Mcp-Session-Id: bench-session\r\nContent-Length: 75\r\n\r\n"
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}}";

static size_t complete(const char *b, size_t len)
{
	const char *end = memmem(b, len, "\r\n\r\n", 4), *cl;
	size_t head, body = 0;

	if (!end)
		return 0;
	head = (size_t)(end - b) + 4;
	cl = memmem(b, head, "Content-Length:", 15);
	if (!cl)
		cl = memmem(b, head, "content-length:", 15);
	if (cl)
		body = strtoul(cl + 15, NULL, 10);
	return len >= head + body ? head + body : 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct epoll_event ev, evs[64];
	int lfd, ep, one = 1;

	if (argc < 3)
		return 2;
	a.sin_port = htons((uint16_t)atoi(argv[2]));
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 1024)) {
		perror("listen");
		return 1;
	}
	ep = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1), i;

		for (i = 0; i < n; i++) {
			struct client *c = evs[i].data.ptr;
			size_t rl;
			ssize_t r;

			if (!c) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

				if (fd < 0)
					continue;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				c = calloc(1, sizeof(*c));
				c->fd = fd;
				c->buf = malloc(BUF);
				ev.events = EPOLLIN;
				ev.data.ptr = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				continue;
			}
			r = read(c->fd, c->buf + c->len, BUF - c->len);
			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				close(c->fd);
				free(c->buf);
				free(c);
				continue;
			}
			c->len += (size_t)r;
			while ((rl = complete(c->buf, c->len))) {
				if (write(c->fd, reply, sizeof(reply) - 1) < 0)
					break;
				memmove(c->buf, c->buf + rl, c->len - rl);
				c->len -= rl;
			}
		}
	}
}
