// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for the metrics endpoint's request parser
 * (metrics__parse_request in userspace/metrics.c).
 *
 * The input is what a client sends. The parser is fed every prefix that
 * can change its answer (each line end, the size bound, the whole input):
 * an answer, once given, must not change as more bytes arrive, a prefix
 * must never be refused for what only later bytes could make wrong, and
 * the length of a complete head must be where it ended. The same bytes
 * then go through a real socket to a live responder, split at points
 * taken from the input, and its status line must be the parser's answer.
 * Any violation aborts.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "metrics.h"

static struct metrics *server;

static void check_result(int ret, const struct metrics_request *req, size_t len)
{
	if (ret > 0) {
		if ((size_t)ret > len || ret > METRICS_MAX_REQUEST)
			abort();
		if (req->status != 200 && req->status != 404 && req->status != 405)
			abort();
		if ((req->status == 404) != (req->route == METRICS_ROUTE_NONE))
			abort();
	} else if (ret < 0) {
		if ((ret != -EINVAL && ret != -E2BIG) || req->status != 400)
			abort();
		if (ret == -E2BIG && len < METRICS_MAX_REQUEST)
			abort();
	} else if (len >= METRICS_MAX_REQUEST) {
		abort();	/* undecided past the bound */
	}
}

static int parse_prefixes(const uint8_t *data, size_t size, struct metrics_request *final)
{
	struct metrics_request req, first = {};
	int ret, decided = 0;
	size_t p;

	for (p = 0; p <= size; p++) {
		/* Only a line end or the bound can change the answer. */
		if (p != size && p != METRICS_MAX_REQUEST && (p == 0 || data[p - 1] != '\n'))
			continue;
		ret = metrics__parse_request((const char *)data, p, &req);
		check_result(ret, &req, p);
		if (decided) {
			if (ret != decided || memcmp(&req, &first, sizeof(req)))
				abort();
		} else if (ret) {
			decided = ret;
			first = req;
			if (ret > 0 && (size_t)ret != p)
				abort();	/* a head ends at the line end just seen */
		}
	}
	*final = first;
	return decided;
}

static void serve_once(const uint8_t *data, size_t size, int expect_status)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)metrics__port(server)),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	struct pollfd p[2];
	char resp[512];
	size_t off = 0, got = 0, piece;
	int fd, status = 0, rounds;
	bool shut = false;
	ssize_t n;

	/* Beyond what the responder drains before closing, a close would
	 * reset the connection under its own answer. */
	if (size > 65536)
		size = 65536;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	p[0] = (struct pollfd){ .fd = metrics__fd(server), .events = POLLIN };
	p[1] = (struct pollfd){ .fd = fd, .events = POLLIN };
	for (rounds = 0; rounds < 10000; rounds++) {
		/* Once an answer arrives nothing more is sent: the responder
		 * has closed its end. */
		if (!got && off < size) {
			piece = data[off] % 7 == 0 ? size - off : (size_t)data[off] % 61 + 1;
			if (piece > size - off)
				piece = size - off;
			n = send(fd, data + off, piece, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				off += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				off = size;	/* closed on us: the answer is in */
		}
		if (off == size && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		poll(p, 2, off < size ? 0 : 10);
		metrics__on_readable(server);
		n = recv(fd, resp + got, sizeof(resp) - 1 - got, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			if (got == sizeof(resp) - 1)
				break;
			continue;
		}
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
	}
	close(fd);
	resp[got] = '\0';
	if (got && sscanf(resp, "HTTP/1.1 %d ", &status) != 1)
		abort();
	/* Undecided input is closed without an answer when the client ends. */
	if (status != expect_status)
		abort();
	if (got && !strstr(resp, "\r\nConnection: close\r\n"))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct metrics_request req;
	char err[256];
	int ret;

	if (!server && metrics__open("127.0.0.1:0", &server, err, sizeof(err)))
		abort();
	ret = parse_prefixes(data, size, &req);
	/* The server reads no further than the bound. */
	serve_once(data, size, ret ? req.status : 0);
	return 0;
}
