/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Decisions: one request, the workload that really sent it, the policy and
 * the live state (sessions, tokens, workload instances per client) give a
 * verdict (PRODUCT.md "Verdicts") with a one-sentence reason and the
 * related evidence. Decide here, act elsewhere (agent.c writes verdicts).
 *
 * Live state is bounded (DECISION_MAX_* below). A full table refuses new
 * bindings and keeps the ones it has (evicting the oldest would let a
 * flood of new ones unbind a live session or token, for whoever uses it
 * next to bind it); every refusal is counted, and the agent reports it.
 * One workload instance holds at most DECISION_MAX_PER_INSTANCE sessions
 * and as many tokens: a flood from one evicts its own oldest (counted,
 * reported), never another's. Entries go when idle or expired
 * (decider__expire).
 */
#ifndef MCPW_DECISION_H
#define MCPW_DECISION_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "conn.h"
#include "policy.h"
#include "request.h"

#define DECISION_MAX_SESSIONS	65536
#define DECISION_MAX_TOKENS	65536
#define DECISION_MAX_INSTANCES	4096	/* per client */
/* Sessions, and tokens, one workload instance holds at most: over that,
 * its least recently used goes (a sixteenth of a table: it takes sixteen
 * instances, not one allowed client, to fill one). */
#define DECISION_MAX_PER_INSTANCE (DECISION_MAX_SESSIONS / 16)
/* Without an exp claim, a token stays bound to its first workload this long. */
#define DECISION_TOKEN_TTL_NS	(24ull * 3600 * 1000000000ull)
#define DECISION_SESSION_IDLE_NS (6ull * 3600 * 1000000000ull)

enum verdict {
	VERDICT_ALLOW = 0,
	VERDICT_MISMATCH,
	VERDICT_UNKNOWN_CLIENT,
	VERDICT_CLONE,
	VERDICT_TOKEN_REPLAY,
	VERDICT_SESSION_HIJACK,
	VERDICT_IDENTITY_SWITCH,
	VERDICT_TOOL_DENIED,
	VERDICT_SERVER_DENIED,
	VERDICT_UNATTRIBUTED,
	VERDICT_STDIO_PARENT,
	VERDICT_MALFORMED,
	VERDICT__MAX,
};

const char *verdict__name(enum verdict v);

struct decision {
	enum verdict verdict;
	bool deny;		/* the policy says deny (blocked in enforce mode) */
	bool alert;		/* an alert is due (deny or alert) */
	const struct policy_client *client;
	char reason[512];
	json_t *related;	/* extra evidence; the caller takes it */
};

struct decider;

/*
 * Fleet mode (see store.h): other nodes' view of the same identities. Every
 * hook answers from a local cache or within a short bound, so a judgment
 * never waits on the network for long; NULL hooks mean a single node.
 */
struct decider_fleet {
	void *ctx;
	/* Other nodes' live instances of this client: evidence objects
	 * (new references) into out, returns how many. */
	size_t (*remote_instances)(void *ctx, const char *client, json_t **out, size_t max);
	/* The first use of a token, fleet-wide: 0 (new, or ours), 1 with
	 * the first user's evidence in *owner (a new reference), <0 when
	 * the fleet cannot say (judge locally). */
	int (*token_claim)(void *ctx, const char *token_key, const struct workload *w,
			   int64_t exp_unix, json_t **owner);
	/* An allowed request kept this instance of client live. */
	void (*sighting)(void *ctx, const char *client, const struct workload *w);
};

struct decider_stats {
	size_t sessions, tokens, instances;
	/* New bindings refused, their table full: session_hijack,
	 * token_replay and clone cannot be found for those. */
	uint64_t refused_sessions, refused_tokens, refused_instances;
	/* Bindings dropped for a newer one of the same instance, over its
	 * DECISION_MAX_PER_INSTANCE: whoever uses those next binds them. */
	uint64_t evicted_sessions, evicted_tokens;
	uint64_t verdicts[VERDICT__MAX];
	uint64_t repeated;	/* judgments repeated from a memo */
};

struct decider *decider__new(void);
void decider__free(struct decider *d);
/* The policy in force (kept by the caller; live state survives reloads). */
void decider__set_policy(struct decider *d, const struct policy *p);
void decider__set_fleet(struct decider *d, const struct decider_fleet *f);

void decider__judge(struct decider *d, struct conn *c, struct request *r, uint64_t now_ns,
		    struct decision *out);

/*
 * A judgment kept to be repeated. The fast path's requests send the head
 * of an allowed one again byte for byte (token, session id, headers), on
 * its connection or, under churn, on the next connections of its process:
 * only their bodies are new. What the identity checks read of the live
 * state (the session, the token's first user, the instance) is kept by
 * reference, and stays valid for as long as the decider's generation does:
 * it moves whenever a session or token binding changes or goes, an
 * instance goes, or the policy or the saved state is loaded. Zeroed: empty.
 */
struct decider_session;
struct decider_token;
struct decider_instance;
struct decider_ident;
#define DECIDER_MEMO_CLIENTS 4
struct decider_memo {
	uint64_t gen;				/* 0: empty */
	/* workload__id()s it holds for (0: none): one instance's workloads,
	 * such as one process's threads, the last few judged. */
	uint64_t clients[DECIDER_MEMO_CLIENTS];
	unsigned int next_client;
	const char *server;			/* interned server name */
	const struct policy_client *pc;
	struct decider_ident *ident;		/* the identity judged */
	struct decider_session *sess;
	struct decider_token *tok;
	struct decider_instance *inst;
};
/*
 * decider__judge for a request whose head is byte for byte the head of
 * the request memo was last filled with (the caller's promise), from a
 * connection of the same workload: repeats the kept identity checks when
 * memo is still valid for it and the connection (checking only what the
 * body can change: its clientInfo and tools; a new connection takes the
 * identity and counts as the instance's, as after a full judgment), else
 * judges in full and keeps the judgment in memo.
 */
void decider__judge_again(struct decider *d, struct conn *c, struct request *r,
			  uint64_t now_ns, struct decision *out, struct decider_memo *memo);
void decider__memo_clear(struct decider_memo *memo);
/* Fills r's clientInfo from its session when the body has none. */
void decider__session_client_info(struct decider *d, struct request *r);
/* The server issued session id sid on connection c (response to initialize). */
void decider__session_issued(struct decider *d, const char *sid, const struct conn *c,
			     uint64_t now_ns);
void decider__session_ended(struct decider *d, const char *sid);
void decider__conn_closed(struct decider *d, struct conn *c, uint64_t now_ns);
/* A connection the kernel admitted on its instance's fast-path template:
 * it counts as an open connection of that instance of client. */
void decider__admit(struct decider *d, struct conn *c, const char *client, uint64_t now_ns);
/* The policy client c's identity belongs to, when it registered an instance. */
const char *decider__conn_client(const struct conn *c);
/* Frees what the decider keeps on c (its identity). */
void decider__conn_release(struct conn *c);
void decider__expire(struct decider *d, uint64_t now_ns);
void decider__stats(const struct decider *d, struct decider_stats *s);

/*
 * Live state across daemon restarts: sessions, token bindings and client
 * instances, saved as JSON (written to a temporary file and renamed).
 * A snapshot from another boot is ignored (monotonic times would lie).
 * Restored instances hold no open connections; they stay live for the
 * instance window, so a clone cannot slip in while the agent restarts.
 */
int decider__save(const struct decider *d, const char *path, uint64_t now_ns);
int decider__load(struct decider *d, const char *path, uint64_t now_ns);

#endif
