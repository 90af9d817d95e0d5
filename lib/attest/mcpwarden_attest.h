/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * mcpwarden attestation client: ask the local mcpwarden agent which
 * workload (process, executable, user, cgroup, container, pod) is really
 * on the other end of a TCP connection. The answer comes from kernel state
 * the agent recorded, never from anything the peer claimed.
 *
 * Depends on libc only; no global state, safe from any thread. Each call
 * is one short blocking exchange on a Unix socket, bounded by
 * MCPW_ATTEST_TIMEOUT_MS per step (connect, send, receive).
 *
 * Return values of mcpw_attest_who() and mcpw_attest_who_fd():
 *   0                      the agent answered with a workload
 *   MCPW_ATTEST_UNKNOWN    the agent knows no such connection
 *   MCPW_ATTEST_DENIED     the caller may not ask (not root, not in the group)
 *   MCPW_ATTEST_FAILED     the agent reported another error
 *   -errno                 no answer: -ENOENT/-ECONNREFUSED no agent,
 *                          -EACCES socket mode, -ETIMEDOUT, -ENOBUFS
 *                          json_out too small, -EPROTO not a response
 * For every value >= 0, json_out holds the agent's one-line JSON answer
 * (without its newline); see mcpw_attest_parse().
 */
#ifndef MCPWARDEN_ATTEST_H
#define MCPWARDEN_ATTEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MCPW_ATTEST_DEFAULT_SOCKET	"/run/mcpwarden/attest.sock"
#define MCPW_ATTEST_TIMEOUT_MS		2000
/* The agent never sends more; a buffer of this size always fits. */
#define MCPW_ATTEST_MAX_RESPONSE	(64 * 1024)

enum mcpw_attest_status {
	MCPW_ATTEST_OK = 0,
	MCPW_ATTEST_UNKNOWN = 1,
	MCPW_ATTEST_DENIED = 2,
	MCPW_ATTEST_FAILED = 3,
};

/*
 * Asks about the connection from src (the client end) to dst (the server
 * end), both AF_INET or AF_INET6 (IPv4-mapped is fine). socket_path NULL
 * means MCPW_ATTEST_DEFAULT_SOCKET.
 */
int mcpw_attest_who(const char *socket_path, const struct sockaddr *src,
		    const struct sockaddr *dst, char *json_out, size_t len);

/*
 * Asks about an accepted TCP socket by passing it to the agent
 * (SCM_RIGHTS); the agent reads its addresses and socket cookie itself,
 * which also tells two connections with equal addresses in different
 * network namespaces apart. accepted_fd stays open and untouched here.
 */
int mcpw_attest_who_fd(const char *socket_path, int accepted_fd, char *json_out, size_t len);

/* A few fields of an answer. Strings are NUL-terminated, empty if absent. */
struct mcpw_attest_result {
	int ok;			/* the answer's "ok" */
	char error[128];	/* when !ok */
	char source[16];	/* "kernel" or "proc" */
	int attributed;		/* the workload is tied to a process in scope */
	uint32_t pid;		/* thread group id; 0 when unattributed */
	uint32_t uid;
	uint32_t gid;
	uint64_t cgroup_id;
	char exe[1024];
	char cgroup[1024];	/* cgroup v2 path */
	char container_id[128];
	char pod_namespace[256];
	char pod_name[256];
	char pod_uid[64];
	int truncated;		/* some string did not fit and was cut */
};

/* Fills r from an answer; 0, or -EPROTO when json is not an answer. */
int mcpw_attest_parse(const char *json, struct mcpw_attest_result *r);

/*
 * "a.b.c.d:port" or "[v6]:port" (as the agent writes them) into a socket
 * address; 0 or -EINVAL.
 */
int mcpw_attest_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len);

/* Words for a return value of mcpw_attest_who*(). */
const char *mcpw_attest_strstatus(int status);

#ifdef __cplusplus
}
#endif

#endif
