// SPDX-License-Identifier: GPL-2.0
/*
 * A server that asks the agent who is on the other end of each connection
 * it accepts, through the attestation client library: once by passing the
 * accepted socket, once by its 4-tuple. One line per answer on stdout:
 *   fd <client-port> <json>
 *   tuple <client-port> <json>
 *
 *   attest_server ADDR PORT SOCKET N [DELAY_MS]
 *
 * serves N connections, then exits; asks DELAY_MS (default 300) after each
 * accept, 0: at once, as a server that checks its peer before reading.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "mcpwarden_attest.h"

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int lfd, one = 1, n, i, delay_ms;
	static char json[MCPW_ATTEST_MAX_RESPONSE];

	if (argc < 5)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	a.sin_port = htons((uint16_t)atoi(argv[2]));
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	n = atoi(argv[4]);
	delay_ms = argc > 5 ? atoi(argv[5]) : 300;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 16)) {
		perror("listen");
		return 1;
	}
	printf("listening\n");
	for (i = 0; i < n; i++) {
		struct sockaddr_in peer, local;
		socklen_t pl = sizeof(peer), ll = sizeof(local);
		int fd = accept(lfd, (struct sockaddr *)&peer, &pl), r;

		if (fd < 0)
			return 1;
		getsockname(fd, (struct sockaddr *)&local, &ll);
		if (delay_ms > 0)
			usleep((useconds_t)delay_ms * 1000);
		r = mcpw_attest_who_fd(argv[3], fd, json, sizeof(json));
		printf("fd %u %d %s\n", ntohs(peer.sin_port), r, r >= 0 ? json : "");
		r = mcpw_attest_who(argv[3], (struct sockaddr *)&peer, (struct sockaddr *)&local,
				    json, sizeof(json));
		printf("tuple %u %d %s\n", ntohs(peer.sin_port), r, r >= 0 ? json : "");
		close(fd);
	}
	return 0;
}
