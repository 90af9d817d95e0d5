/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A protected connection as the daemon tracks it, keyed by the server-side
 * socket cookie: both ends' workloads, the request parser, the bytes held
 * in the kernel and not yet released, and the identity it has presented.
 */
#ifndef MCPW_CONN_H
#define MCPW_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "http.h"
#include "workload.h"
#include "mcpwarden/events.h"

struct decider_ident;

struct conn {
	uint64_t cookie;		/* server-side socket */
	uint64_t client_cookie;		/* client-side socket when local, else 0 */
	struct mcpw_tuple tuple;	/* server view */
	uint32_t netns;
	uint16_t port;
	char *server_name;

	bool open_seen;			/* CONN_OPEN (or seed) processed */
	bool preexisting;
	bool denied;			/* verdict DROP written, being ended */
	bool blind;			/* stopped parsing (monitor mode) */
	bool unprotected;		/* its port is no longer a protected
					 * server's: passed, not read */
	bool reprotected;		/* protected again: bytes passed unread
					 * before its next record */
	bool mirrored;			/* mirrored when enforce mode began: bytes
					 * may have passed uncopied before its
					 * first held ones */
	bool pod_wait;			/* requests wait for pod metadata */
	bool closing;			/* closed; freed after the next drain */
	uint64_t closed_tick;
	struct conn *closing_next;	/* the agent's list of closing ones */
	bool unreported;		/* its `connection` event not written yet */
	bool unreported_listed;		/* in the agent's list of those */
	struct conn *unreported_next;
	uint64_t state_round;		/* tick its kernel state was last checked */
	bool remote_wait;		/* requests wait for the client's node */

	/* Both ends' workloads are shared (workload__share): thousands of
	 * connections have the same server and few clients. Never NULL once
	 * made (&workload__none when unknown); replaced whole, never written
	 * through (conn__set_client). */
	const struct workload *client;
	const struct workload *server;
	/* Bumped whenever client, tuple or netns change: the rendered
	 * workload and connection members of its events are stale. */
	uint32_t render_gen;

	struct http_parser *parser;	/* NULL while idle (memory) */
	uint64_t parser_base;		/* stream offset of the parser's byte 0 */
	/* Held bytes [held_base, held_base + held_len) not yet released. */
	char *held;
	size_t held_len, held_cap;
	uint64_t held_base;
	uint64_t next_off;		/* next ingress offset expected */
	uint64_t released_end;
	uint64_t parsed_end;		/* end of the last complete request */
	uint64_t pending;		/* bytes fed and not yet part of a request */
	uint64_t pending_since_ns;	/* read the oldest of them (0: none) */
	uint64_t late_reported;		/* the pending_since_ns a timeout was reported for */
	uint64_t copy_until;		/* mirror window granted */
	/* Held bytes before this offset end a request the kernel passed (it
	 * showed their segment again, or merged with the next request's):
	 * released as they come, never parsed. */
	uint64_t skip_until;
	/* The kernel may pass bytes up to here once everything held before
	 * them is released: the rest of a request judged on its head. */
	uint64_t pass_until;
	/* The request starting at this offset is not to be judged on its
	 * head (its body's first bytes did not allow it); 0: none. */
	uint64_t no_head_judge_at;
	/* After a segment was shown again: the kernel's byte count when last
	 * checked, and how many checks it has not moved inside a request. */
	uint64_t stall_bytes_in;
	unsigned int stall_checks;

	/* Identity first presented on this connection (decision.c). */
	struct decider_ident *ident;
	uint64_t instance;		/* registered with ident->client */
	bool instance_registered;
	const char *instance_client;	/* whose instance it registered (interned) */
	/* clientInfo of the last initialize, for the session it opens. */
	char *init_client_name;
	char *init_client_version;

	/* Response heads wanted (Mcp-Session-Id issuance). */
	unsigned int pending_initialize;

	uint64_t failopen_reported;	/* bytes already reported */
	uint64_t requests;
	uint64_t req_start_ktime;	/* first byte of the pending request */
	uint64_t last_rec_ktime;
	uint64_t req_start_read_ns;	/* when the daemon read that byte's record */
	uint64_t last_rec_read_ns;
	uint64_t opened_ns;
	uint64_t first_hold_ns;		/* oldest unreleased held byte arrived */
	struct conn *next_pending;	/* waiting for CONN_OPEN */
	/* Kernel-passed request copies read before CONN_OPEN (the rings are
	 * read one after the other): replayed by open_conn(). */
	struct early_rec *early, **early_tail;
	size_t early_bytes;
};

/* Replace an end's workload by w (its references are taken, w is left
 * empty): the shared copy of w, or &workload__none when out of memory. */
void conn__set_client(struct conn *c, struct workload *w);
void conn__set_server(struct conn *c, struct workload *w);

/* "ip:port" of each end (server view: s = server, d = client). */
void conn__addr(const struct mcpw_tuple *t, bool server_end, char *buf, size_t len);
/* The `connection` object as compact JSON text into buf: its length, or 0
 * when it does not fit (CONN_TEXT_MAX always does). */
#define CONN_TEXT_MAX 256
size_t conn__text(const struct conn *c, char *buf, size_t len);
/* The tuple as the other end sees it (s and d swapped). */
struct mcpw_tuple conn__reversed(const struct mcpw_tuple *t);
json_t *conn__json(const struct conn *c);

#endif
