/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The attestation API: a local Unix socket on which MCP servers and gateways
 * ask "which workload is really on the other end of this connection?" and
 * get the answer from kernel state, never from anything the peer claimed.
 *
 * Protocol (one exchange per connection, then the agent closes):
 *   -> {"op":"who","src":"10.0.0.1:43210","dst":"10.0.0.2:8080"}\n
 *      src is the client end, dst the server end; IPv6 as "[addr]:port".
 *   -> {"op":"who_fd"}\n  with one SCM_RIGHTS descriptor: the caller's
 *      accepted TCP socket. Its addresses, cookie and network namespace
 *      are read from the socket itself; the agent's copy is closed at once.
 *   <- {"ok":true,"workload":{...},"source":"kernel"|"proc",
 *       "connection":{"src":"...","dst":"..."}}\n
 *   <- {"ok":false,"error":"unknown connection"|"not permitted"|...}\n
 * A caller can only ask: no selector, identity or workload field is ever
 * read from a request (unknown keys are refused).
 *
 * Who may ask: root, and members of one configured group. The socket is
 * 0660 root:GROUP (0600 without a group), and every accepted peer is
 * checked again by SO_PEERCRED/SO_PEERGROUPS before a byte is read, so a
 * loosened file mode alone never admits anyone.
 *
 * Event loop: attest__fd() is an epoll descriptor holding the listener and
 * every client, so the agent registers one fd (as for the control socket)
 * and calls attest__on_readable() when it fires; nothing ever blocks.
 * attest__tick() drops clients past their deadline. Limits: request bytes,
 * response bytes, clients at once, seconds per client (below).
 */
#ifndef MCPW_ATTEST_H
#define MCPW_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#define ATTEST_SOCKET_NAME	"attest.sock"
#define ATTEST_DEFAULT_SOCKET	"/run/mcpwarden/" ATTEST_SOCKET_NAME
#define ATTEST_NO_GROUP		((gid_t)-1)	/* root only */

#define ATTEST_MAX_REQUEST	4096		/* bytes, newline included */
#define ATTEST_MAX_RESPONSE	(64u << 10)
#define ATTEST_MAX_CLIENTS	64
#define ATTEST_CLIENT_TIMEOUT_NS (1000ull * 1000000)	/* accept to close */

enum attest_op {
	ATTEST_OP_WHO = 1,
	ATTEST_OP_WHO_FD,
};

/* One end of a TCP connection, as the kernel side keys its tuples. */
struct attest_addr {
	uint8_t addr[16];	/* IPv6, or IPv4 mapped ::ffff:a.b.c.d */
	uint16_t port;		/* host byte order */
	uint16_t family;	/* AF_INET (mapped) or AF_INET6 */
};

struct attest_request {
	enum attest_op op;
	struct attest_addr src;	/* client end; only for ATTEST_OP_WHO */
	struct attest_addr dst;	/* server end */
};

/* What the agent's lookup is asked. Nothing here comes from the peer's
 * claims: addresses are the caller's question, the rest is kernel state. */
struct attest_query {
	struct attest_addr client;
	struct attest_addr server;
	/* SO_COOKIE of the socket passed with who_fd (the server end when it
	 * is an accepted socket, as the caller promises); 0 for a tuple. */
	uint64_t sock_cookie;
	/* Network namespace inode: of the passed socket (netns_from_socket),
	 * else of the caller's process (a hint: 127.0.0.1 in two namespaces
	 * is two connections); 0 when unknown. */
	uint32_t netns;
	bool netns_from_socket;
	/* The asking process, from SO_PEERCRED at connect time. */
	pid_t caller_pid;
	uid_t caller_uid;
	gid_t caller_gid;
};

enum attest_source {
	ATTEST_SOURCE_KERNEL = 0,	/* attribution recorded by the kernel side */
	ATTEST_SOURCE_PROC = 1,		/* reconstructed from /proc (pre-existing) */
};

/*
 * The agent's answer: returns an enum attest_source and sets *workload_out
 * to a new reference (workload__json()), or a negative errno: -ENOENT for
 * "unknown connection", -EPERM/-EACCES for "not permitted" (the agent may
 * refuse a caller per query), anything else is "lookup failed".
 */
typedef int (*attest_lookup_fn)(void *ctx, const struct attest_query *q, json_t **workload_out);

struct attest_stats {
	uint64_t requests;	/* complete requests read from permitted callers */
	uint64_t answered;	/* ok:true */
	uint64_t unknown;	/* unknown connection */
	uint64_t refused;	/* not permitted (credentials) */
	uint64_t malformed;	/* bad request, too large, bad descriptor */
	uint64_t dropped;	/* timed out, too many clients, write failed */
};

struct attest;

/*
 * Creates the socket at path (a stale socket there is replaced; anything
 * else there, or a live agent answering, is an error). With a group the
 * socket is 0660 root:group and every directory above it must let that
 * group search it, or this fails rather than serve nobody; a missing
 * parent directory is created 0710 root:group (0700 without a group).
 */
int attest__open(const char *path, gid_t group, attest_lookup_fn lookup, void *ctx,
		 struct attest **out, char *err, size_t errlen);
void attest__close(struct attest *a);
int attest__fd(const struct attest *a);
/* attest__fd() is readable: accept, read, answer, write, without blocking. */
void attest__on_readable(struct attest *a);
/* Drops clients past their deadline; now_ns is CLOCK_MONOTONIC. */
void attest__tick(struct attest *a, uint64_t now_ns);
void attest__get_stats(const struct attest *a, struct attest_stats *st);
const char *attest__path(const struct attest *a);

/*
 * Parses one request line (without its newline; a trailing '\r' is
 * allowed). Returns 0, or -EINVAL with *why set to the static reason sent
 * back to the caller. Exposed for the fuzz target.
 */
int attest__parse_request(const char *line, size_t len, struct attest_request *req,
			  const char **why);
/* "a.b.c.d:port" or "[v6]:port"; returns 0 or -ENOSPC. */
int attest__format_addr(const struct attest_addr *a, char *buf, size_t len);

/* The CLI (`mcpwarden who SRC DST`): prints the answer, returns an exit
 * status: 0 answered, 1 unknown/refused/no agent, 2 bad usage. */
int attest__cli_who(const char *socket_path, const char *src, const char *dst);

#endif
