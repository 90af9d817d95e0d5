/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fleet store: state that agents on different nodes share (docs/fleet.md).
 *
 *   connection attribution  the agent on the client's node publishes who
 *                           opened a connection; the agent on the server's
 *                           node looks it up for requests it cannot
 *                           attribute locally
 *   identity sightings      which workload instances hold a client's
 *                           identity right now, cluster-wide (clone)
 *   token claims            the first instance to use a token owns it
 *                           (token_replay across nodes)
 *   alerts                  a durable stream a SOC forwarder consumes
 *
 * A backend is a struct store_ops; its handle embeds struct store first
 * (as a driver embeds struct device). store__open() picks the backend by
 * the URL's scheme; nats:// and tls:// are NATS JetStream (store_nats.c).
 * A Redis/Valkey backend adds a row to the table in store__open().
 *
 * Threading: every store__*() call is made from one thread (the agent's
 * run loop). Backends talk to the network on their own threads and hand
 * results back through store__fd() (readable: call store__drain()).
 * Apart from store__token_claim(), no call waits on the network: the hot
 * path reads local caches kept current by watches, and writes are queued.
 * When the store is unreachable, calls keep working on local state and
 * report it (-ENOTCONN, -EAGAIN, health); the backend catches up on its
 * own when the store returns.
 *
 * Strings a call returns through a `const char **` are the store's and stay
 * valid until the next store__drain() or store__close().
 */
#ifndef MCPW_STORE_H
#define MCPW_STORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <jansson.h>

/* Limits every backend enforces (a peer node can push on all of them). */
#define STORE_MAX_KEY		200	/* bytes of a caller's key */
#define STORE_MAX_VALUE		16384	/* bytes of a workload/evidence JSON */
#define STORE_MAX_ALERT		65536	/* bytes of one alert line */
#define STORE_MAX_ALERTS_PENDING 4096	/* alerts buffered while disconnected */
#define STORE_MAX_ALERT_BYTES	(8u << 20)
#define STORE_MAX_CONNS		65536	/* attributions cached; mine published */
#define STORE_MAX_SIGHTINGS	65536	/* instances cached, all clients */
#define STORE_MAX_MY_SIGHTINGS	16384	/* instances this node keeps alive */
#define STORE_MAX_TOKENS	65536	/* token claims cached */
#define STORE_MAX_LOOKUPS	4096	/* attribution lookups waiting */
#define STORE_LOOKUP_WAIT_MS	30000	/* a waiting lookup is forgotten after */

struct store_config {
	const char *url;	/* nats://HOST:PORT or tls://HOST:PORT; a
				 * comma-separated list for a cluster */
	const char *node;	/* this node's name (required) */
	const char *creds_file;	/* NATS user credentials (JWT + seed) */
	const char *ca_file;	/* CA bundle for the server's certificate */
	const char *cert_file;	/* client certificate (mutual TLS) ... */
	const char *key_file;	/* ... and its key */
	unsigned int sighting_ttl_sec;	/* the policy's instance window; 0 = 60 */
	unsigned int conn_ttl_sec;	/* attribution bucket TTL; 0 = 3600 */
	unsigned int token_ttl_sec;	/* token bucket TTL; 0 = 86400 */
	unsigned int alert_max_age_sec;	/* alert stream retention; 0 = 7 days */
	uint64_t alert_max_bytes;	/* alert stream size bound; 0 = 1 GiB */
	unsigned int replicas;		/* stream replicas (clustered NATS); 0 = 1 */
	unsigned int claim_timeout_ms;	/* store__token_claim() bound; 0 = 100 */
	unsigned int reconnect_wait_ms;	/* between reconnect attempts; 0 = 1000 */
};

/* A live instance of a client, as some node reported it. */
struct store_sighting {
	const char *node;
	uint64_t instance;	/* the instance id on that node (cgroup id) */
	const char *evidence;	/* JSON object the reporting agent gave */
	bool local;		/* reported by this node */
	int64_t expires_ms;	/* unix ms */
};

struct store_health {
	bool connected;		/* a live connection to the store */
	bool ready;		/* connected, buckets and watches set up */
	char last_error[256];	/* the most recent problem, operator words */
	int64_t changed_ms;	/* unix ms of the last connected/ready change */
	uint64_t disconnects, reconnects;
	uint64_t alerts_published, alerts_dropped;
	size_t alerts_pending;
	uint64_t conn_writes, sighting_writes, write_errors, cas_retries;
	uint64_t lookups, lookup_hits, lookups_resolved, lookups_expired;
	uint64_t token_claims, token_conflicts, token_unavailable;
	uint64_t bad_values;	/* malformed entries from peers, ignored */
	uint64_t evicted;	/* cache entries dropped at a limit */
	uint64_t resyncs;	/* full re-reads of a bucket (watch restarts) */
	size_t conn_cache, sighting_cache, token_cache, lookups_waiting;
	size_t my_conns, my_sightings;
	unsigned int sighting_ttl_sec;	/* in force (the bucket's) */
};

struct store_callbacks {
	/* A waiting store__conn_lookup() was answered. */
	void (*conn_found)(void *ctx, const char *key, const char *workload_json);
	/* Another node's sighting of this client appeared or went. */
	void (*sightings_changed)(void *ctx, const char *client);
	/* connected or ready changed. */
	void (*health_changed)(void *ctx, const struct store_health *h);
};

struct store;

struct store_ops {
	const char *name;
	int (*open)(const struct store_config *cfg, struct store **out);
	void (*close)(struct store *s);
	int (*fd)(struct store *s);
	int (*drain)(struct store *s, const struct store_callbacks *cb, void *ctx);
	int (*conn_publish)(struct store *s, const char *key, const char *workload_json,
			    unsigned int ttl_sec);
	int (*conn_withdraw)(struct store *s, const char *key);
	int (*conn_lookup)(struct store *s, const char *key, const char **workload_json);
	int (*sighting_put)(struct store *s, const char *client, uint64_t instance,
			    const char *evidence_json);
	ssize_t (*sightings)(struct store *s, const char *client, struct store_sighting *out,
			     size_t max);
	int (*token_claim)(struct store *s, const char *token_key, uint64_t instance,
			   const char *evidence_json, int64_t expires_unix, char **owner_json);
	int (*alert_publish)(struct store *s, const char *json_line);
	void (*health)(struct store *s, struct store_health *h);
};

/* The head of every backend's handle. */
struct store {
	const struct store_ops *ops;
};

extern const struct store_ops store_nats_ops;

/*
 * Opens the store cfg->url names. Never waits on the network: an
 * unreachable store is not an error (health says so and the backend keeps
 * trying). Returns 0, -EINVAL (bad configuration), -EPROTONOSUPPORT (no
 * backend for the scheme), -ENOENT (a credentials or TLS file is missing)
 * or -ENOMEM.
 */
static inline int store__open(const struct store_config *cfg, struct store **out)
{
	/* A Redis/Valkey backend adds its schemes here. */
	static const struct {
		const char *scheme;
		const struct store_ops *ops;
	} store_backends[] = {
		{ "nats://", &store_nats_ops },
		{ "tls://", &store_nats_ops },
	};
	size_t i;

	if (!cfg || !cfg->url || !out)
		return -EINVAL;
	for (i = 0; i < sizeof(store_backends) / sizeof(store_backends[0]); i++) {
		if (!strncmp(cfg->url, store_backends[i].scheme, strlen(store_backends[i].scheme)))
			return store_backends[i].ops->open(cfg, out);
	}
	return -EPROTONOSUPPORT;
}

/* Stops the backend's threads and frees everything; accepts NULL. */
static inline void store__close(struct store *s)
{
	if (s)
		s->ops->close(s);
}

/* Readable when store__drain() has work; never changes while open. */
static inline int store__fd(struct store *s)
{
	return s->ops->fd(s);
}

/*
 * Applies what the backend's threads received (watched entries, lookup
 * answers, connection changes) to the local caches, expires old entries,
 * and calls back. Returns the number of updates applied or -errno.
 */
static inline int store__drain(struct store *s, const struct store_callbacks *cb, void *ctx)
{
	return s->ops->drain(s, cb, ctx);
}

/*
 * Connection attribution. key is "CLIENTIP:CPORT>SERVERIP:SPORT" as the
 * server's node will see it (after NAT), IPv6 addresses in brackets.
 * Publishing keeps the entry alive for ttl_sec (0: until withdrawn),
 * re-publishing it after a reconnect. Returns 0 (queued), -EINVAL,
 * -ENAMETOOLONG, -EMSGSIZE or -ENOSPC (this node already publishes
 * STORE_MAX_CONNS connections).
 */
static inline int store__conn_publish(struct store *s, const char *key, const char *workload_json,
				      unsigned int ttl_sec)
{
	return s->ops->conn_publish(s, key, workload_json, ttl_sec);
}

/* The connection closed: stop publishing it. 0 or -ENOENT. */
static inline int store__conn_withdraw(struct store *s, const char *key)
{
	return s->ops->conn_withdraw(s, key);
}

/*
 * 0 with *workload_json when the attribution is known here; -EINPROGRESS
 * when it is being fetched (cb->conn_found() reports it if it arrives
 * within STORE_LOOKUP_WAIT_MS); -ENOTCONN when the store is unreachable
 * (it is still reported if it arrives once reconnected); -ENOSPC when
 * STORE_MAX_LOOKUPS are waiting; -EINVAL or -ENAMETOOLONG for a bad key.
 */
static inline int store__conn_lookup(struct store *s, const char *key, const char **workload_json)
{
	return s->ops->conn_lookup(s, key, workload_json);
}

/*
 * This node saw instance use client's identity now. Cheap enough for every
 * request: the backend writes at most once per third of the sighting TTL.
 * Call it again for instances that stay live without requests (open
 * connections), or they expire cluster-wide after the TTL.
 * Returns 0, -EINVAL, -ENAMETOOLONG, -EMSGSIZE or -ENOSPC.
 */
static inline int store__sighting_put(struct store *s, const char *client, uint64_t instance,
				      const char *evidence_json)
{
	return s->ops->sighting_put(s, client, instance, evidence_json);
}

/*
 * The live instances of client on every node (this one's included,
 * marked local), from the local cache: fills at most max, returns how
 * many it filled.
 */
static inline ssize_t store__sightings(struct store *s, const char *client,
				       struct store_sighting *out, size_t max)
{
	return s->ops->sightings(s, client, out, max);
}

/*
 * The first instance to present a token owns it, cluster-wide (until the
 * token bucket's TTL, or expires_unix when given and sooner). Returns 0
 * when the token is new or already this instance's; -EEXIST when another
 * instance (here or on another node) owns it, with *owner_json (malloc'd,
 * the caller frees it) = {"node","instance","claimed_ms","evidence"};
 * -EAGAIN when the store cannot answer now (disconnected: at once;
 * connected: after at most twice the claim timeout) so the caller judges
 * locally. Answers are cached: only a token's first use waits.
 */
static inline int store__token_claim(struct store *s, const char *token_key, uint64_t instance,
				     const char *evidence_json, int64_t expires_unix,
				     char **owner_json)
{
	return s->ops->token_claim(s, token_key, instance, evidence_json, expires_unix,
				   owner_json);
}

/*
 * Queues one alert (a JSON object, no newline) for the alert stream.
 * Buffered while disconnected; -ENOBUFS when the buffer is full (the alert
 * is dropped and counted), -EMSGSIZE past STORE_MAX_ALERT.
 */
static inline int store__alert_publish(struct store *s, const char *json_line)
{
	return s->ops->alert_publish(s, json_line);
}

static inline void store__health(struct store *s, struct store_health *h)
{
	s->ops->health(s, h);
}

/* Health as `mcpwarden status` shows it. */
static inline json_t *store_health__json(const struct store_health *h)
{
	return json_pack("{s:s, s:b, s:b, s:s, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
			 " s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I,"
			 " s:I, s:I, s:I, s:I}, s:I}",
			 "state", h->ready ? "ok" : h->connected ? "starting" : "degraded",
			 "connected", h->connected, "ready", h->ready,
			 "last_error", h->last_error, "changed_ms", (json_int_t)h->changed_ms,
			 "counters",
			 "disconnects", (json_int_t)h->disconnects,
			 "reconnects", (json_int_t)h->reconnects,
			 "alerts_published", (json_int_t)h->alerts_published,
			 "alerts_dropped", (json_int_t)h->alerts_dropped,
			 "conn_writes", (json_int_t)h->conn_writes,
			 "sighting_writes", (json_int_t)h->sighting_writes,
			 "write_errors", (json_int_t)h->write_errors,
			 "cas_retries", (json_int_t)h->cas_retries,
			 "lookups", (json_int_t)h->lookups,
			 "lookup_hits", (json_int_t)h->lookup_hits,
			 "lookups_resolved", (json_int_t)h->lookups_resolved,
			 "lookups_expired", (json_int_t)h->lookups_expired,
			 "token_claims", (json_int_t)h->token_claims,
			 "token_conflicts", (json_int_t)h->token_conflicts,
			 "token_unavailable", (json_int_t)h->token_unavailable,
			 "bad_values", (json_int_t)h->bad_values,
			 "evicted", (json_int_t)h->evicted,
			 "resyncs", (json_int_t)h->resyncs,
			 "sizes",
			 "alerts_pending", (json_int_t)h->alerts_pending,
			 "conn_cache", (json_int_t)h->conn_cache,
			 "sighting_cache", (json_int_t)h->sighting_cache,
			 "token_cache", (json_int_t)h->token_cache,
			 "lookups_waiting", (json_int_t)h->lookups_waiting,
			 "my_conns", (json_int_t)h->my_conns,
			 "my_sightings", (json_int_t)h->my_sightings,
			 "sighting_ttl_sec", (json_int_t)h->sighting_ttl_sec);
}

#endif
