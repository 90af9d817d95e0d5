// SPDX-License-Identifier: GPL-2.0
/*
 * `mcpwarden who SRC DST`: asks the running agent's attestation socket
 * which workload owns the connection SRC -> DST, through the same client
 * library MCP servers link, and prints the agent's JSON answer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attest.h"
/* By path: the agent's build has no -Ilib/attest of its own. */
#include "../lib/attest/mcpwarden_attest.h"

static bool is_v4(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

	return ss->ss_family == AF_INET || IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
}

int attest__cli_who(const char *socket_path, const char *src, const char *dst)
{
	struct sockaddr_storage s, d;
	socklen_t slen, dlen;
	char *answer;
	int ret;

	if (!src || !dst || mcpw_attest_parse_addr(src, &s, &slen) ||
	    mcpw_attest_parse_addr(dst, &d, &dlen)) {
		fprintf(stderr, "mcpwarden who: want SRC and DST as a.b.c.d:port or [v6]:port "
			"(SRC the client end, DST the server end)\n");
		return 2;
	}
	if (is_v4(&s) != is_v4(&d)) {
		fprintf(stderr, "mcpwarden who: %s and %s are of different address families\n",
			src, dst);
		return 2;
	}
	if (!socket_path)
		socket_path = ATTEST_DEFAULT_SOCKET;
	answer = malloc(MCPW_ATTEST_MAX_RESPONSE);
	if (!answer) {
		fprintf(stderr, "mcpwarden who: out of memory\n");
		return 1;
	}
	ret = mcpw_attest_who(socket_path, (struct sockaddr *)&s, (struct sockaddr *)&d, answer,
			      MCPW_ATTEST_MAX_RESPONSE);
	if (ret >= 0)
		printf("%s\n", answer);
	else if (ret == -EACCES)
		fprintf(stderr, "mcpwarden who: permission denied on %s: only root and the "
			"agent's attestation group may ask\n", socket_path);
	else
		fprintf(stderr, "mcpwarden who: no answer from an agent at %s (%s): is `mcpwarden "
			"run` running with this socket?\n", socket_path, mcpw_attest_strstatus(ret));
	free(answer);
	return ret == MCPW_ATTEST_OK ? 0 : 1;
}
