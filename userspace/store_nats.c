// SPDX-License-Identifier: GPL-2.0
/*
 * The fleet store on NATS JetStream (store.h, docs/fleet.md).
 *
 *   bucket mcpwarden_conns      SERVER.CLIENT -> workload JSON   (Put, Delete)
 *   bucket mcpwarden_sightings  CLIENT.NODE.INSTANCE -> evidence (Create, CAS)
 *   bucket mcpwarden_tokens     TOKEN -> first owner             (Create)
 *   stream MCPWARDEN_ALERTS     mcpwarden.alerts.NODE            (Publish)
 *
 * Keys are encoded (key_enc()) so any client, node or token name is one
 * subject token. Threads and data flow:
 *
 *   caller (the agent's loop)   reads caches (conns, sightings, tokens),
 *        |  ^                   records what this node owns (mine[]) and
 *        |  |                   queues writes, lookups and alerts
 *   todo/gets/alerts   events + eventfd (store__fd())
 *        v  |
 *   worker thread               connects, sets buckets up after every
 *        |                      (re)connect, writes what is queued,
 *        |                      refreshes and re-puts what this node owns
 *   watch threads (2)           kvWatcher_Next() on conns and sightings,
 *                               entries -> events
 *
 * libnats calls its own callbacks on its threads; they only flip flags
 * under the lock. No libnats call is made with the lock held, so no lock
 * order between ours and the library's exists. Every queue is bounded:
 * todo by the mine[] tables (an entry is queued at most once), gets by
 * STORE_MAX_LOOKUPS, alerts by count and bytes, events by MAX_EVENTS
 * (watch threads wait for room; the caller drains).
 *
 * Catch-up: after each (re)connect the worker re-creates buckets and the
 * stream if the server lost them, restarts both watches (a full re-read:
 * entries the caches hold that the re-read does not bring are dropped),
 * re-puts every live sighting and attribution of this node, and flushes
 * the alerts buffered meanwhile (de-duplicated by message id).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <jansson.h>
#include <nats/nats.h>

#define MCPW_DL_NATS
#include "dynlib.h"
#include "hmap.h"
#include "store.h"

#define BUCKET_CONNS		"mcpwarden_conns"
#define BUCKET_SIGHTINGS	"mcpwarden_sightings"
#define BUCKET_TOKENS		"mcpwarden_tokens"
#define ALERT_STREAM		"MCPWARDEN_ALERTS"
#define ALERT_SUBJECTS		"mcpwarden.alerts.>"
#define ALERT_SUBJECT_PRE	"mcpwarden.alerts."

#define WORK_WAIT_MS		2000	/* the worker's JetStream requests */
#define CONNECT_TIMEOUT_MS	2000
#define PING_INTERVAL_MS	5000	/* a silent server is noticed in ~10 s */
#define TICK_MS			1000
#define WATCH_NEXT_MS		1000
#define SETUP_RETRY_MIN_MS	250
#define SETUP_RETRY_MAX_MS	10000
#define WORK_BATCH		64
#define MAX_EVENTS		16384
#define CLOSE_WAIT_MS		3000
#define DUPLICATE_WINDOW_MS	(120 * 1000)
#define KEY_BUF			(STORE_MAX_KEY * 3 + 1)
#define KVKEY_BUF		(2 * KEY_BUF + 24)

#define NS_PER_MS		1000000ll

enum bucket { B_CONNS, B_SIGHTINGS, B_TOKENS, B__MAX };
#define B_WATCHED		2	/* conns and sightings are watched */

/* A value this node owns in a bucket (under the lock). */
struct mine {
	char *value;
	uint64_t rev;		/* last revision written, 0 unknown */
	int64_t written;	/* mono ms of the last write, 0 never */
	int64_t seen;		/* sightings: mono ms of the last put */
	int64_t until;		/* conns: mono ms the publisher's ttl ends, 0 none */
	bool queued;
	bool sent;		/* a write went out: it may be in the bucket,
				 * even when its answer was lost */
	bool withdrawn;
};

struct todo {
	struct todo *next;
	enum bucket b;
	char key[];		/* the KV key */
};

struct alert {
	struct alert *next;
	uint64_t seq;
	size_t len;
	char line[];
};

enum ev_type {
	EV_ENTRY,		/* a watched (or fetched) entry */
	EV_RESYNC,		/* a watch restarted: a full re-read follows */
	EV_SYNCED,		/* that re-read is complete */
};

struct ev {
	struct ev *next;
	enum ev_type type;
	enum bucket b;
	unsigned int gen;
	bool deleted;
	int64_t created_ms;	/* wall ms, the server's stamp */
	char *key;		/* the KV key */
	char *value;
};

struct watch {
	struct nats_store *ns;
	enum bucket b;
	pthread_t thread;
	bool started;
	kvWatcher *w;		/* lent to the thread by the worker */
	unsigned int gen;
	bool busy;		/* the thread is using w */
	bool broken;		/* w failed: the worker restarts it */
};

/* Caches, the caller's thread only. */
struct cached_conn {
	char *value;
	int64_t expires_ms;
	unsigned int gen;
};

struct sighting {
	struct sighting *next;
	char *node;
	uint64_t instance;
	char *evidence;
	int64_t expires_ms;
	unsigned int gen;
	bool local;
};

struct sgroup {
	struct sighting *head;
};

struct token_owner {
	char *node;
	uint64_t instance;
	char *json;
	int64_t expires_ms;
};

struct nats_store {
	struct store base;

	/* Set at open, read-only after. */
	char node[STORE_MAX_KEY + 1];
	char node_enc[KEY_BUF];
	char alert_subject[sizeof(ALERT_SUBJECT_PRE) + KEY_BUF];
	int64_t conn_ttl_ms, token_ttl_ms, alert_age_ms;
	int64_t alert_max_bytes;
	int replicas;
	int claim_timeout_ms;
	uint64_t boot;		/* message id prefix: unique per open */
	int efd;
	natsOptions *opts;

	pthread_mutex_t lock;
	pthread_cond_t work_cond;	/* the worker waits here */
	pthread_cond_t watch_cond;	/* watch threads, and waiting for them */
	pthread_cond_t closed_cond;
	pthread_t worker;
	bool worker_started;
	struct watch watches[B_WATCHED];

	/* Under the lock. */
	bool stop;
	bool up;		/* the connection is up */
	bool ready;		/* and set up since it last came up */
	bool need_setup;
	bool closed;		/* libnats' closed callback ran */
	natsConnection *nc;	/* set once by the worker */
	jsCtx *js, *js_claim;
	kvStore *kv[B__MAX];
	kvStore *kv_claim;	/* tokens, with the claim timeout */
	int64_t sighting_ttl_ms;
	struct hmap *mine[2];	/* B_CONNS, B_SIGHTINGS: KV key -> struct mine */
	struct todo *todo, **todo_tail;
	struct todo *gets, **gets_tail;
	size_t n_gets;
	struct alert *alerts, **alerts_tail;
	size_t n_alerts, alert_bytes;
	uint64_t alert_seq;
	int64_t alert_retry;	/* mono ms */
	struct ev *evs, **evs_tail;
	size_t n_evs;
	struct store_health h;	/* the fields the worker and callbacks own */

	/* The caller's thread only. */
	struct hmap *conns;	/* canonical key -> struct cached_conn */
	struct hmap *clients;	/* client -> struct sgroup */
	size_t n_sightings;
	struct hmap *tokens;	/* token key -> struct token_owner */
	struct hmap *lookups;	/* canonical key -> int64_t expiry (wall ms) */
	unsigned int gen[B_WATCHED];
	int64_t ttl_ms;		/* sighting TTL, copied at each drain */
	bool was_up, was_ready;
	int64_t last_sweep;
	struct store_health hm;	/* the fields the caller owns */
};

#define to_ns(s) ((struct nats_store *)(s))

/* ---- small helpers ------------------------------------------------------ */

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

static void kick(struct nats_store *ns)
{
	uint64_t one = 1;

	/* Only fails when the counter would overflow: it is readable then. */
	if (write(ns->efd, &one, sizeof(one)) < 0)
		return;
}

/* Under the lock: the latest problem, in operator words. */
static void set_error(struct nats_store *ns, const char *what, natsStatus s)
{
	const char *detail = nats_GetLastError(NULL);

	if (s == NATS_NO_RESPONDERS)
		detail = "JetStream is not enabled for this server or account (nats-server -js)";
	else if (!detail || !*detail)
		detail = natsStatus_GetText(s);
	snprintf(ns->h.last_error, sizeof(ns->h.last_error), "%s: %s", what, detail);
}

static void set_changed(struct nats_store *ns)
{
	ns->h.changed_ms = wall_ms();
}

/*
 * Keys and subject tokens may hold [A-Za-z0-9_=-] (and '.' between
 * tokens). '.' becomes '_', every other byte "=XX": names stay readable
 * and the mapping is one-to-one.
 */
static bool plain(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

static int key_enc(const char *src, size_t len, char *dst, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, n = 0;

	if (!len)
		return -EINVAL;
	if (len > STORE_MAX_KEY)
		return -ENAMETOOLONG;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		if (n + 4 > size)
			return -ENAMETOOLONG;
		if (plain(c)) {
			dst[n++] = (char)c;
		} else if (c == '.') {
			dst[n++] = '_';
		} else {
			dst[n++] = '=';
			dst[n++] = hex[c >> 4];
			dst[n++] = hex[c & 15];
		}
	}
	dst[n] = '\0';
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int key_dec(const char *src, size_t len, char *dst, size_t size)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		if (n + 1 >= size)
			return -ENAMETOOLONG;
		if (src[i] == '_') {
			dst[n++] = '.';
		} else if (src[i] == '=') {
			int hi, lo;

			if (i + 2 >= len)
				return -EINVAL;
			hi = hexval(src[i + 1]);
			lo = hexval(src[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			dst[n++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (plain((unsigned char)src[i])) {
			dst[n++] = src[i];
		} else {
			return -EINVAL;
		}
	}
	if (!n)
		return -EINVAL;
	dst[n] = '\0';
	return 0;
}

/*
 * "CLIENT>SERVER" -> "enc(SERVER).enc(CLIENT)": the server first, so a
 * node can later watch only the attributions of its own servers.
 */
static int conn_kvkey(const char *key, char *out, size_t size)
{
	const char *gt;
	size_t len, n;
	int err;

	if (!key)
		return -EINVAL;
	len = strlen(key);
	if (len > STORE_MAX_KEY)
		return -ENAMETOOLONG;
	gt = strchr(key, '>');
	if (!gt || gt == key || !gt[1] || strchr(gt + 1, '>'))
		return -EINVAL;
	err = key_enc(gt + 1, strlen(gt + 1), out, size);
	if (err)
		return err;
	n = strlen(out);
	if (n + 2 > size)
		return -ENAMETOOLONG;
	out[n++] = '.';
	return key_enc(key, (size_t)(gt - key), out + n, size - n);
}

static int conn_key_from_kv(const char *kvkey, char *out, size_t size)
{
	const char *dot = strchr(kvkey, '.');
	char server[KEY_BUF], client[KEY_BUF];

	if (!dot || strchr(dot + 1, '.'))
		return -EINVAL;
	if (key_dec(kvkey, (size_t)(dot - kvkey), server, sizeof(server)) ||
	    key_dec(dot + 1, strlen(dot + 1), client, sizeof(client)))
		return -EINVAL;
	if ((size_t)snprintf(out, size, "%s>%s", client, server) >= size)
		return -ENAMETOOLONG;
	return 0;
}

static int sighting_kvkey(const struct nats_store *ns, const char *client, uint64_t instance,
			  char *out, size_t size)
{
	char enc[KEY_BUF];
	int err;

	if (!client)
		return -EINVAL;
	err = key_enc(client, strlen(client), enc, sizeof(enc));
	if (err)
		return err;
	snprintf(out, size, "%s.%s.%llu", enc, ns->node_enc, (unsigned long long)instance);
	return 0;
}

/* "CLIENT.NODE.INSTANCE" -> its parts. */
static int sighting_parse(const char *kvkey, char *client, char *node, size_t size,
			  uint64_t *instance)
{
	const char *d1 = strchr(kvkey, '.'), *d2;
	char *end;

	if (!d1)
		return -EINVAL;
	d2 = strchr(d1 + 1, '.');
	if (!d2 || strchr(d2 + 1, '.') || !d2[1])
		return -EINVAL;
	if (key_dec(kvkey, (size_t)(d1 - kvkey), client, size) ||
	    key_dec(d1 + 1, (size_t)(d2 - d1 - 1), node, size))
		return -EINVAL;
	errno = 0;
	*instance = strtoull(d2 + 1, &end, 10);
	if (*end || errno)
		return -EINVAL;
	return 0;
}

/* Where a watched entry stops being live here: its TTL from when the
 * server stored it, never later than a TTL from now (clock skew). */
static int64_t expiry(int64_t created_ms, int64_t ttl_ms)
{
	int64_t now = wall_ms();

	if (created_ms <= 0 || created_ms > now)
		return now + ttl_ms;
	return created_ms + ttl_ms;
}

static bool valid_object(const char *json, size_t len)
{
	json_t *v = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
	bool ok = json_is_object(v);

	json_decref(v);
	return ok;
}

/* ---- queues (under the lock) -------------------------------------------- */

static int push_todo(struct todo ***tail, enum bucket b, const char *key)
{
	size_t len = strlen(key);
	struct todo *t = malloc(sizeof(*t) + len + 1);

	if (!t)
		return -ENOMEM;
	t->next = NULL;
	t->b = b;
	memcpy(t->key, key, len + 1);
	**tail = t;
	*tail = &t->next;
	return 0;
}

static struct todo *pop_todo(struct todo **head, struct todo ***tail)
{
	struct todo *t = *head;

	if (t) {
		*head = t->next;
		if (!*head)
			*tail = head;
	}
	return t;
}

static void queue_mine(struct nats_store *ns, enum bucket b, const char *key, struct mine *m)
{
	if (m->queued || push_todo(&ns->todo_tail, b, key))
		return;
	m->queued = true;
	pthread_cond_signal(&ns->work_cond);
}

static void mine_free(struct mine *m)
{
	if (m) {
		free(m->value);
		free(m);
	}
}

static void ev_free(struct ev *e)
{
	if (e) {
		free(e->key);
		free(e->value);
		free(e);
	}
}

/* Under the lock. wait: block (watch threads) until there is room. */
static bool post_event(struct nats_store *ns, struct ev *e, bool wait)
{
	while (ns->n_evs >= MAX_EVENTS && wait && !ns->stop)
		pthread_cond_wait(&ns->watch_cond, &ns->lock);
	if (ns->n_evs >= MAX_EVENTS || ns->stop) {
		ev_free(e);
		return false;
	}
	e->next = NULL;
	*ns->evs_tail = e;
	ns->evs_tail = &e->next;
	if (ns->n_evs++ == 0)
		kick(ns);
	return true;
}

static struct ev *ev_new(enum ev_type type, enum bucket b, unsigned int gen)
{
	struct ev *e = calloc(1, sizeof(*e));

	if (e) {
		e->type = type;
		e->b = b;
		e->gen = gen;
	}
	return e;
}

/* ---- libnats callbacks (its threads) ------------------------------------ */

static void on_connected(natsConnection *nc, void *closure)
{
	struct nats_store *ns = closure;

	pthread_mutex_lock(&ns->lock);
	ns->up = true;
	ns->need_setup = true;
	set_changed(ns);
	pthread_cond_signal(&ns->work_cond);
	kick(ns);
	pthread_mutex_unlock(&ns->lock);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
	struct nats_store *ns = closure;

	pthread_mutex_lock(&ns->lock);
	ns->h.reconnects++;
	pthread_mutex_unlock(&ns->lock);
	on_connected(nc, closure);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	struct nats_store *ns = closure;

	pthread_mutex_lock(&ns->lock);
	if (ns->up) {
		ns->h.disconnects++;
		if (!ns->stop)
			snprintf(ns->h.last_error, sizeof(ns->h.last_error),
				 "lost the connection to the store; reconnecting");
	}
	ns->up = false;
	ns->ready = false;
	set_changed(ns);
	kick(ns);
	pthread_mutex_unlock(&ns->lock);
}

static void on_closed(natsConnection *nc, void *closure)
{
	struct nats_store *ns = closure;

	pthread_mutex_lock(&ns->lock);
	ns->up = false;
	ns->ready = false;
	ns->closed = true;
	pthread_cond_broadcast(&ns->closed_cond);
	pthread_mutex_unlock(&ns->lock);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
			   void *closure)
{
	struct nats_store *ns = closure;

	pthread_mutex_lock(&ns->lock);
	snprintf(ns->h.last_error, sizeof(ns->h.last_error), "store: %s",
		 natsStatus_GetText(err));
	pthread_mutex_unlock(&ns->lock);
}

/* ---- watch threads ------------------------------------------------------ */

static struct ev *entry_event(struct nats_store *ns, enum bucket b, kvEntry *e)
{
	kvOperation op = kvEntry_Operation(e);
	const char *key = kvEntry_Key(e);
	const void *val = kvEntry_Value(e);
	int len = kvEntry_ValueLen(e);
	struct ev *ev = ev_new(EV_ENTRY, b, 0);

	if (!ev)
		return NULL;
	ev->deleted = op == kvOp_Delete || op == kvOp_Purge;
	ev->created_ms = kvEntry_Created(e) / NS_PER_MS;
	ev->key = strdup(key ? key : "");
	if (!ev->deleted) {
		if (len <= 0 || len > STORE_MAX_VALUE || !valid_object(val, (size_t)len)) {
			pthread_mutex_lock(&ns->lock);
			ns->h.bad_values++;
			pthread_mutex_unlock(&ns->lock);
			ev_free(ev);
			return NULL;
		}
		ev->value = strndup(val, (size_t)len);
	}
	if (!ev->key || (!ev->deleted && !ev->value)) {
		ev_free(ev);
		return NULL;
	}
	return ev;
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	struct nats_store *ns = w->ns;

	pthread_mutex_lock(&ns->lock);
	while (!ns->stop) {
		kvWatcher *kw = w->w;
		unsigned int gen = w->gen;
		kvEntry *e = NULL;
		struct ev *ev = NULL;
		natsStatus s;

		if (!kw || w->broken) {
			pthread_cond_wait(&ns->watch_cond, &ns->lock);
			continue;
		}
		w->busy = true;
		pthread_mutex_unlock(&ns->lock);

		s = kvWatcher_Next(&e, kw, WATCH_NEXT_MS);
		if (s == NATS_OK) {
			/* A NULL entry marks the end of the initial values. */
			ev = e ? entry_event(ns, w->b, e) : ev_new(EV_SYNCED, w->b, gen);
			kvEntry_Destroy(e);
		}

		pthread_mutex_lock(&ns->lock);
		if (ev)
			post_event(ns, ev, true);
		if (s != NATS_OK && s != NATS_TIMEOUT && s != NATS_ILLEGAL_STATE && !ns->stop) {
			/* ILLEGAL_STATE: the worker stopped it on purpose. */
			set_error(ns, w->b == B_CONNS ? "watching attributions" : "watching sightings",
				  s);
			w->broken = true;
			pthread_cond_signal(&ns->work_cond);
		}
		w->busy = false;
		pthread_cond_broadcast(&ns->watch_cond);
	}
	pthread_mutex_unlock(&ns->lock);
	return NULL;
}

/* ---- the worker --------------------------------------------------------- */

static const char *const bucket_names[B__MAX] = {
	[B_CONNS] = BUCKET_CONNS,
	[B_SIGHTINGS] = BUCKET_SIGHTINGS,
	[B_TOKENS] = BUCKET_TOKENS,
};

static int nats_err(struct nats_store *ns, const char *what, natsStatus s)
{
	pthread_mutex_lock(&ns->lock);
	set_error(ns, what, s);
	pthread_mutex_unlock(&ns->lock);
	switch (s) {
	case NATS_TIMEOUT:
		return -ETIMEDOUT;
	case NATS_NO_MEMORY:
		return -ENOMEM;
	case NATS_NOT_FOUND:
		return -ENOENT;
	default:
		return -EIO;
	}
}

static int connect_nats(struct nats_store *ns)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL, *js_claim = NULL;
	jsOptions jo;
	natsStatus s;

	s = natsConnection_Connect(&nc, ns->opts);
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED)
		return nats_err(ns, "connecting to the store", s);
	jsOptions_Init(&jo);
	jo.Wait = WORK_WAIT_MS;
	s = natsConnection_JetStream(&js, nc, &jo);
	if (s == NATS_OK) {
		jsOptions_Init(&jo);
		jo.Wait = ns->claim_timeout_ms;
		s = natsConnection_JetStream(&js_claim, nc, &jo);
	}
	if (s != NATS_OK) {
		jsCtx_Destroy(js);
		natsConnection_Destroy(nc);
		return nats_err(ns, "starting JetStream", s);
	}
	pthread_mutex_lock(&ns->lock);
	ns->nc = nc;
	ns->js = js;
	ns->js_claim = js_claim;
	if (natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED && !ns->up) {
		/* Connected in the call: libnats calls no callback then. */
		ns->up = true;
		ns->need_setup = true;
		set_changed(ns);
		kick(ns);
	} else if (!ns->up) {
		snprintf(ns->h.last_error, sizeof(ns->h.last_error),
			 "cannot reach the store; retrying in the background");
	}
	pthread_mutex_unlock(&ns->lock);
	return 0;
}

static int ensure_bucket(struct nats_store *ns, enum bucket b, int64_t ttl_ms, int64_t *in_force)
{
	kvStore *kv = NULL;
	kvStatus *st = NULL;
	kvConfig kc;
	natsStatus s;

	kvConfig_Init(&kc);
	kc.Bucket = bucket_names[b];
	kc.History = 1;
	kc.TTL = ttl_ms * NS_PER_MS;
	kc.MaxValueSize = STORE_MAX_VALUE + 1024;
	kc.StorageType = js_FileStorage;
	kc.Replicas = ns->replicas;
	s = js_CreateKeyValue(&kv, ns->js, &kc);
	if (s != NATS_OK) {
		/* It exists with another configuration: use it as it is. */
		s = js_KeyValue(&kv, ns->js, bucket_names[b]);
		if (s != NATS_OK)
			return nats_err(ns, "creating the store's buckets", s);
	}
	*in_force = ttl_ms;
	if (kvStore_Status(&st, kv) == NATS_OK) {
		int64_t ttl = kvStatus_TTL(st) / NS_PER_MS;

		if (ttl > 0 && ttl != ttl_ms) {
			pthread_mutex_lock(&ns->lock);
			snprintf(ns->h.last_error, sizeof(ns->h.last_error),
				 "bucket %s has a TTL of %llds, not %llds: using the bucket's",
				 bucket_names[b], (long long)ttl / 1000, (long long)ttl_ms / 1000);
			pthread_mutex_unlock(&ns->lock);
			*in_force = ttl;
		}
		kvStatus_Destroy(st);
	}
	pthread_mutex_lock(&ns->lock);
	if (!ns->kv[b]) {
		ns->kv[b] = kv;
		kv = NULL;
	}
	pthread_mutex_unlock(&ns->lock);
	kvStore_Destroy(kv);
	return 0;
}

static int ensure_alert_stream(struct nats_store *ns)
{
	const char *subjects[] = { ALERT_SUBJECTS };
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsStreamConfig sc;
	natsStatus s;

	jsStreamConfig_Init(&sc);
	sc.Name = ALERT_STREAM;
	sc.Description = "mcpwarden alerts from every node";
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Retention = js_LimitsPolicy;
	sc.Storage = js_FileStorage;
	sc.Discard = js_DiscardOld;
	sc.MaxAge = ns->alert_age_ms * NS_PER_MS;
	sc.MaxBytes = ns->alert_max_bytes;
	sc.MaxMsgSize = STORE_MAX_ALERT;
	sc.Duplicates = (int64_t)DUPLICATE_WINDOW_MS * NS_PER_MS;
	sc.Replicas = ns->replicas;
	s = js_AddStream(&si, ns->js, &sc, NULL, &jerr);
	jsStreamInfo_Destroy(si);
	/* An operator's own configuration of the stream is kept. */
	if (s != NATS_OK && jerr != JSStreamNameExistErr)
		return nats_err(ns, "creating the alert stream", s);
	return 0;
}

/* Replaces bucket b's watch with a new one: a full re-read. */
static int restart_watch(struct nats_store *ns, enum bucket b)
{
	struct watch *w = &ns->watches[b];
	kvWatcher *old, *nw = NULL;
	natsStatus s;
	struct ev *ev;

	pthread_mutex_lock(&ns->lock);
	old = w->w;
	w->w = NULL;
	pthread_mutex_unlock(&ns->lock);
	if (old) {
		kvWatcher_Stop(old);
		pthread_mutex_lock(&ns->lock);
		while (w->busy)
			pthread_cond_wait(&ns->watch_cond, &ns->lock);
		pthread_mutex_unlock(&ns->lock);
		kvWatcher_Destroy(old);
	}
	s = kvStore_WatchAll(&nw, ns->kv[b], NULL);
	if (s != NATS_OK)
		return nats_err(ns, "watching the store", s);
	pthread_mutex_lock(&ns->lock);
	w->gen++;
	ev = ev_new(EV_RESYNC, b, w->gen);
	if (ev)
		post_event(ns, ev, false);
	w->w = nw;
	w->broken = false;
	pthread_cond_broadcast(&ns->watch_cond);
	pthread_mutex_unlock(&ns->lock);
	return 0;
}

/* Under the lock: queue every live value of this node (catch-up). */
static void queue_all_mine(struct nats_store *ns)
{
	struct hmap_iter it;
	const char *key;
	void *val;
	int b;

	for (b = 0; b < 2; b++) {
		hmap__iter_init(ns->mine[b], &it);
		while (hmap__iter_next(&it, NULL, &key, &val)) {
			struct mine *m = val;

			if (!m->queued && !push_todo(&ns->todo_tail, b, key))
				m->queued = true;
		}
	}
}

static int setup(struct nats_store *ns)
{
	kvStore *claim = NULL;
	int64_t ttl, unused;
	int err;

	pthread_mutex_lock(&ns->lock);
	ttl = ns->sighting_ttl_ms;
	pthread_mutex_unlock(&ns->lock);

	err = ensure_bucket(ns, B_CONNS, ns->conn_ttl_ms, &unused);
	if (!err)
		err = ensure_bucket(ns, B_SIGHTINGS, ttl, &ttl);
	if (!err)
		err = ensure_bucket(ns, B_TOKENS, ns->token_ttl_ms, &unused);
	if (!err)
		err = ensure_alert_stream(ns);
	if (err)
		return err;
	if (!ns->kv_claim) {
		natsStatus s = js_KeyValue(&claim, ns->js_claim, BUCKET_TOKENS);

		if (s != NATS_OK)
			return nats_err(ns, "opening the token bucket", s);
	}
	pthread_mutex_lock(&ns->lock);
	if (claim)
		ns->kv_claim = claim;
	ns->sighting_ttl_ms = ttl;
	pthread_mutex_unlock(&ns->lock);

	err = restart_watch(ns, B_CONNS);
	if (!err)
		err = restart_watch(ns, B_SIGHTINGS);
	if (err)
		return err;

	pthread_mutex_lock(&ns->lock);
	if (ns->up && !ns->need_setup) {
		ns->ready = true;
		set_changed(ns);
		queue_all_mine(ns);
		ns->alert_retry = 0;
		kick(ns);
	}
	pthread_mutex_unlock(&ns->lock);
	return 0;
}

static bool conflict(natsStatus s)
{
	/* A JetStream API error (wrong last sequence); not a transport one. */
	return s == NATS_ERR;
}

/* Put-if-absent, else compare-and-set at the revision we last wrote (or
 * the one the bucket holds: our own entry from before a restart). */
static natsStatus write_sighting(struct nats_store *ns, const char *key, const char *value,
				 uint64_t *rev)
{
	kvStore *kv = ns->kv[B_SIGHTINGS];
	uint64_t nrev = 0;
	kvEntry *e = NULL;
	natsStatus s;

	if (*rev) {
		s = kvStore_UpdateString(&nrev, kv, key, value, *rev);
		if (s == NATS_OK || !conflict(s))
			goto out;
	}
	s = kvStore_CreateString(&nrev, kv, key, value);
	if (s == NATS_OK || !conflict(s))
		goto out;
	pthread_mutex_lock(&ns->lock);
	ns->h.cas_retries++;
	pthread_mutex_unlock(&ns->lock);
	s = kvStore_Get(&e, kv, key);
	if (s == NATS_OK) {
		s = kvStore_UpdateString(&nrev, kv, key, value, kvEntry_Revision(e));
		kvEntry_Destroy(e);
	}
out:
	if (s == NATS_OK)
		*rev = nrev;
	return s;
}

static void do_todo(struct nats_store *ns, struct todo *t)
{
	struct hmap *tab = ns->mine[t->b];
	struct mine *m = hmap__sget(tab, t->key);
	kvStore *kv = ns->kv[t->b];
	char *value;
	uint64_t rev;
	bool withdrawn;
	natsStatus s;

	if (!m)
		return;
	m->queued = false;
	m->sent = true;
	value = strdup(m->value);
	rev = m->rev;
	withdrawn = m->withdrawn;
	pthread_mutex_unlock(&ns->lock);

	if (!value)
		s = NATS_NO_MEMORY;
	else if (withdrawn)
		s = kvStore_Delete(kv, t->key);
	else if (t->b == B_SIGHTINGS)
		s = write_sighting(ns, t->key, value, &rev);
	else
		s = kvStore_PutString(&rev, kv, t->key, value);
	free(value);

	pthread_mutex_lock(&ns->lock);
	m = hmap__sget(tab, t->key);
	if (s != NATS_OK) {
		ns->h.write_errors++;
		set_error(ns, t->b == B_CONNS ? "publishing an attribution" : "putting a sighting",
			  s);
		return;		/* the tick retries it */
	}
	if (t->b == B_CONNS)
		ns->h.conn_writes++;
	else
		ns->h.sighting_writes++;
	if (withdrawn) {
		if (m && m->withdrawn)
			mine_free(hmap__sdel(tab, t->key));
		return;
	}
	if (m) {
		m->rev = rev;
		m->written = mono_ms();
	} else if (t->b == B_CONNS) {
		/* Withdrawn while we wrote it: take it back. */
		pthread_mutex_unlock(&ns->lock);
		kvStore_Delete(kv, t->key);
		pthread_mutex_lock(&ns->lock);
	}
}

static void do_get(struct nats_store *ns, struct todo *t)
{
	kvEntry *e = NULL;
	struct ev *ev = NULL;
	natsStatus s;

	ns->n_gets--;
	pthread_mutex_unlock(&ns->lock);
	s = kvStore_Get(&e, ns->kv[B_CONNS], t->key);
	if (s == NATS_OK) {
		ev = entry_event(ns, B_CONNS, e);
		kvEntry_Destroy(e);
	}
	pthread_mutex_lock(&ns->lock);
	if (ev)
		post_event(ns, ev, false);
	else if (s != NATS_OK && s != NATS_NOT_FOUND)
		set_error(ns, "looking up an attribution", s);
}

static bool do_alert(struct nats_store *ns)
{
	struct alert *a = ns->alerts;
	char id[KEY_BUF + 64];
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	jsPubOptions po;
	natsStatus s;

	/* Only this thread takes alerts off the head: a stays valid. */
	snprintf(id, sizeof(id), "%s-%llx-%llu", ns->node_enc, (unsigned long long)ns->boot,
		 (unsigned long long)a->seq);
	pthread_mutex_unlock(&ns->lock);
	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.ExpectStream = ALERT_STREAM;
	s = js_Publish(&ack, ns->js, ns->alert_subject, a->line, (int)a->len, &po, &jerr);
	jsPubAck_Destroy(ack);
	pthread_mutex_lock(&ns->lock);
	if (s != NATS_OK) {
		set_error(ns, "publishing an alert", s);
		ns->alert_retry = mono_ms() + TICK_MS;
		return false;
	}
	ns->alerts = a->next;
	if (!ns->alerts)
		ns->alerts_tail = &ns->alerts;
	ns->n_alerts--;
	ns->alert_bytes -= a->len;
	ns->h.alerts_published++;
	free(a);
	return true;
}

/* Under the lock; drops it around each network call. */
static bool do_work(struct nats_store *ns)
{
	int n;

	for (n = 0; n < WORK_BATCH && ns->ready && !ns->stop; n++) {
		struct todo *t;

		if ((t = pop_todo(&ns->gets, &ns->gets_tail))) {
			do_get(ns, t);
			free(t);
		} else if ((t = pop_todo(&ns->todo, &ns->todo_tail))) {
			do_todo(ns, t);
			free(t);
		} else if (ns->alerts && mono_ms() >= ns->alert_retry) {
			if (!do_alert(ns))
				break;
		} else {
			return n > 0;
		}
	}
	return true;
}

/* Under the lock, once a second: refresh, expire and retry what we own. */
static void tick(struct nats_store *ns)
{
	int64_t now = mono_ms(), ttl = ns->sighting_ttl_ms;
	struct hmap_iter it;
	const char *key;
	void *val;

	hmap__iter_init(ns->mine[B_SIGHTINGS], &it);
	while (hmap__iter_next(&it, NULL, &key, &val)) {
		struct mine *m = val;

		if (now - m->seen > ttl) {
			/* The bucket expires it too; nothing to send. */
			mine_free(hmap__sdel(ns->mine[B_SIGHTINGS], key));
		} else if (!m->written || (m->seen > m->written && now - m->written >= ttl / 3)) {
			queue_mine(ns, B_SIGHTINGS, key, m);
		}
	}
	hmap__iter_init(ns->mine[B_CONNS], &it);
	while (hmap__iter_next(&it, NULL, &key, &val)) {
		struct mine *m = val;

		if (m->withdrawn) {
			queue_mine(ns, B_CONNS, key, m);	/* a failed delete */
		} else if (m->until && now > m->until) {
			if (m->sent) {
				m->withdrawn = true;
				queue_mine(ns, B_CONNS, key, m);
			} else if (!m->queued) {
				mine_free(hmap__sdel(ns->mine[B_CONNS], key));
			}
		} else if (!m->written || now - m->written >= ns->conn_ttl_ms / 2) {
			queue_mine(ns, B_CONNS, key, m);
		}
	}
	/* The caller sweeps its caches when it drains. */
	kick(ns);
}

static void *worker_main(void *arg)
{
	struct nats_store *ns = arg;
	int64_t next_tick = 0, setup_at = 0, connect_at = 0;
	int64_t backoff = SETUP_RETRY_MIN_MS;

	pthread_mutex_lock(&ns->lock);
	while (!ns->stop) {
		int64_t now = mono_ms(), wake;
		struct timespec ts;
		int b;

		if (!ns->nc) {
			if (now >= connect_at) {
				pthread_mutex_unlock(&ns->lock);
				connect_nats(ns);
				pthread_mutex_lock(&ns->lock);
				connect_at = mono_ms() + SETUP_RETRY_MAX_MS;
				continue;
			}
		} else if (ns->up && ns->need_setup && now >= setup_at) {
			ns->need_setup = false;
			pthread_mutex_unlock(&ns->lock);
			if (setup(ns)) {
				pthread_mutex_lock(&ns->lock);
				ns->need_setup = true;
				setup_at = mono_ms() + backoff;
				backoff = backoff * 2 > SETUP_RETRY_MAX_MS ? SETUP_RETRY_MAX_MS :
									     backoff * 2;
				kick(ns);
			} else {
				pthread_mutex_lock(&ns->lock);
				backoff = SETUP_RETRY_MIN_MS;
			}
			continue;
		}
		if (now >= next_tick) {
			next_tick = now + TICK_MS;
			tick(ns);
			for (b = 0; b < B_WATCHED && ns->ready; b++) {
				if (!ns->watches[b].broken)
					continue;
				pthread_mutex_unlock(&ns->lock);
				restart_watch(ns, b);
				pthread_mutex_lock(&ns->lock);
			}
		}
		if (ns->ready && ns->up && do_work(ns))
			continue;
		wake = next_tick;
		if (ns->need_setup && setup_at > now && setup_at < wake)
			wake = setup_at;
		if (!ns->nc && connect_at < wake)
			wake = connect_at;
		deadline_after(&ts, wake - now > 0 ? wake - now : 1);
		pthread_cond_timedwait(&ns->work_cond, &ns->lock, &ts);
	}
	pthread_mutex_unlock(&ns->lock);
	return NULL;
}

/* ---- the caller's caches ------------------------------------------------ */

static void cached_conn_free(struct cached_conn *c)
{
	if (c) {
		free(c->value);
		free(c);
	}
}

static void sighting_free(struct sighting *s)
{
	if (s) {
		free(s->node);
		free(s->evidence);
		free(s);
	}
}

static void token_owner_free(struct token_owner *t)
{
	if (t) {
		free(t->node);
		free(t->json);
		free(t);
	}
}

/* Makes room in a full cache: any entry goes (a miss is only slower). */
static void evict_one(struct nats_store *ns, struct hmap *m, void (*fr)(void *))
{
	struct hmap_iter it;
	const char *key;
	void *val;

	hmap__iter_init(m, &it);
	if (hmap__iter_next(&it, NULL, &key, &val)) {
		fr(hmap__sdel(m, key));
		ns->hm.evicted++;
	}
}

static void free_cached_conn(void *p)
{
	cached_conn_free(p);
}

static void free_token_owner(void *p)
{
	token_owner_free(p);
}

static void apply_conn(struct nats_store *ns, struct ev *ev, const struct store_callbacks *cb,
		       void *ctx)
{
	char key[2 * STORE_MAX_KEY + 8];
	struct cached_conn *c;
	void *waiting;

	if (conn_key_from_kv(ev->key, key, sizeof(key))) {
		ns->hm.bad_values++;
		return;
	}
	if (ev->deleted) {
		cached_conn_free(hmap__sdel(ns->conns, key));
		return;
	}
	c = hmap__sget(ns->conns, key);
	if (!c) {
		if (hmap__size(ns->conns) >= STORE_MAX_CONNS)
			evict_one(ns, ns->conns, free_cached_conn);
		c = calloc(1, sizeof(*c));
		if (!c || hmap__sput(ns->conns, key, c)) {
			free(c);
			return;
		}
	}
	free(c->value);
	c->value = ev->value;
	ev->value = NULL;
	c->expires_ms = expiry(ev->created_ms, ns->conn_ttl_ms);
	c->gen = ns->gen[B_CONNS];
	waiting = hmap__sdel(ns->lookups, key);
	if (waiting) {
		free(waiting);
		ns->hm.lookups_resolved++;
		if (cb && cb->conn_found)
			cb->conn_found(ctx, key, c->value);
	}
}

static struct sighting **find_sighting(struct sgroup *g, const char *node, uint64_t instance)
{
	struct sighting **pp;

	for (pp = &g->head; *pp; pp = &(*pp)->next) {
		if ((*pp)->instance == instance && !strcmp((*pp)->node, node))
			return pp;
	}
	return pp;
}

static void drop_group_if_empty(struct nats_store *ns, const char *client, struct sgroup *g)
{
	if (!g->head)
		free(hmap__sdel(ns->clients, client));
}

static void apply_sighting(struct nats_store *ns, struct ev *ev, const struct store_callbacks *cb,
			   void *ctx)
{
	char client[STORE_MAX_KEY + 1], node[STORE_MAX_KEY + 1];
	struct sighting **pp, *s;
	struct sgroup *g;
	uint64_t instance;
	bool local, added = false;

	if (sighting_parse(ev->key, client, node, sizeof(client), &instance)) {
		ns->hm.bad_values++;
		return;
	}
	local = !strcmp(node, ns->node);
	g = hmap__sget(ns->clients, client);
	if (ev->deleted) {
		if (!g)
			return;
		pp = find_sighting(g, node, instance);
		if (!*pp)
			return;
		s = *pp;
		*pp = s->next;
		sighting_free(s);
		ns->n_sightings--;
		drop_group_if_empty(ns, client, g);
		if (!local && cb && cb->sightings_changed)
			cb->sightings_changed(ctx, client);
		return;
	}
	if (!g) {
		g = calloc(1, sizeof(*g));
		if (!g || hmap__sput(ns->clients, client, g)) {
			free(g);
			return;
		}
	}
	pp = find_sighting(g, node, instance);
	s = *pp;
	if (!s) {
		/* Full: the newcomer is not cached (counted; health shows it). */
		if (ns->n_sightings >= STORE_MAX_SIGHTINGS) {
			ns->hm.evicted++;
			drop_group_if_empty(ns, client, g);
			return;
		}
		s = calloc(1, sizeof(*s));
		if (!s || !(s->node = strdup(node))) {
			free(s);
			drop_group_if_empty(ns, client, g);
			return;
		}
		s->instance = instance;
		s->local = local;
		*pp = s;
		ns->n_sightings++;
		added = true;
	}
	free(s->evidence);
	s->evidence = ev->value;
	ev->value = NULL;
	s->expires_ms = expiry(ev->created_ms, ns->ttl_ms);
	s->gen = ns->gen[B_SIGHTINGS];
	if (added && !local && cb && cb->sightings_changed)
		cb->sightings_changed(ctx, client);
}

/* Drops cached sightings that expired (when) or were not re-read (gen). */
static void sweep_sightings(struct nats_store *ns, int64_t now, bool by_gen, unsigned int gen,
			    const struct store_callbacks *cb, void *ctx)
{
	struct hmap_iter it;
	const char *client;
	void *val;

	hmap__iter_init(ns->clients, &it);
	while (hmap__iter_next(&it, NULL, &client, &val)) {
		struct sgroup *g = val;
		struct sighting **pp = &g->head;
		bool changed = false;

		while (*pp) {
			struct sighting *s = *pp;

			if (s->expires_ms > now && (!by_gen || s->gen == gen)) {
				pp = &s->next;
				continue;
			}
			*pp = s->next;
			changed |= !s->local;
			sighting_free(s);
			ns->n_sightings--;
		}
		if (changed && cb && cb->sightings_changed)
			cb->sightings_changed(ctx, client);
		if (!g->head)
			free(hmap__sdel(ns->clients, client));
	}
}

static void sweep_conns(struct nats_store *ns, int64_t now, bool by_gen, unsigned int gen)
{
	struct hmap_iter it;
	const char *key;
	void *val;

	hmap__iter_init(ns->conns, &it);
	while (hmap__iter_next(&it, NULL, &key, &val)) {
		struct cached_conn *c = val;

		if (c->expires_ms <= now || (by_gen && c->gen != gen))
			cached_conn_free(hmap__sdel(ns->conns, key));
	}
}

static void sweep(struct nats_store *ns, const struct store_callbacks *cb, void *ctx)
{
	int64_t now = wall_ms();
	struct hmap_iter it;
	const char *key;
	void *val;

	sweep_conns(ns, now, false, 0);
	sweep_sightings(ns, now, false, 0, cb, ctx);
	hmap__iter_init(ns->tokens, &it);
	while (hmap__iter_next(&it, NULL, &key, &val)) {
		if (((struct token_owner *)val)->expires_ms <= now)
			token_owner_free(hmap__sdel(ns->tokens, key));
	}
	hmap__iter_init(ns->lookups, &it);
	while (hmap__iter_next(&it, NULL, &key, &val)) {
		if (*(int64_t *)val <= now) {
			free(hmap__sdel(ns->lookups, key));
			ns->hm.lookups_expired++;
		}
	}
}

static void apply(struct nats_store *ns, struct ev *ev, const struct store_callbacks *cb,
		  void *ctx)
{
	switch (ev->type) {
	case EV_ENTRY:
		if (ev->b == B_CONNS)
			apply_conn(ns, ev, cb, ctx);
		else
			apply_sighting(ns, ev, cb, ctx);
		break;
	case EV_RESYNC:
		ns->gen[ev->b] = ev->gen;
		ns->hm.resyncs++;
		break;
	case EV_SYNCED:
		/* What the re-read did not bring was deleted meanwhile. */
		if (ev->gen != ns->gen[ev->b])
			break;
		if (ev->b == B_CONNS)
			sweep_conns(ns, wall_ms(), true, ev->gen);
		else
			sweep_sightings(ns, wall_ms(), true, ev->gen, cb, ctx);
		break;
	}
}

/* ---- store_ops ---------------------------------------------------------- */

static int nats_fd(struct store *s)
{
	return to_ns(s)->efd;
}

static void nats_health(struct store *s, struct store_health *h);

static int nats_drain(struct store *s, const struct store_callbacks *cb, void *ctx)
{
	struct nats_store *ns = to_ns(s);
	struct ev *list, *ev;
	uint64_t count;
	bool up, ready;
	int n = 0;

	pthread_mutex_lock(&ns->lock);
	list = ns->evs;
	ns->evs = NULL;
	ns->evs_tail = &ns->evs;
	ns->n_evs = 0;
	/* Nothing is queued now: the next event kicks the fd again. */
	if (read(ns->efd, &count, sizeof(count)) < 0)
		count = 0;
	pthread_cond_broadcast(&ns->watch_cond);
	ns->ttl_ms = ns->sighting_ttl_ms;
	up = ns->up;
	ready = ns->ready;
	pthread_mutex_unlock(&ns->lock);

	while ((ev = list)) {
		list = ev->next;
		apply(ns, ev, cb, ctx);
		ev_free(ev);
		n++;
	}
	if (mono_ms() - ns->last_sweep >= TICK_MS) {
		ns->last_sweep = mono_ms();
		sweep(ns, cb, ctx);
	}
	if (up != ns->was_up || ready != ns->was_ready) {
		ns->was_up = up;
		ns->was_ready = ready;
		if (cb && cb->health_changed) {
			struct store_health h;

			nats_health(s, &h);
			cb->health_changed(ctx, &h);
		}
	}
	return n;
}

/* Under the lock, the table full: a closed connection's pending delete
 * gives way to an open one (the bucket's TTL ends the closed one). */
static bool drop_withdrawn(struct nats_store *ns)
{
	struct hmap_iter it;
	const char *key;
	void *val;

	hmap__iter_init(ns->mine[B_CONNS], &it);
	while (hmap__iter_next(&it, NULL, &key, &val)) {
		if (((struct mine *)val)->withdrawn) {
			mine_free(hmap__sdel(ns->mine[B_CONNS], key));
			return true;
		}
	}
	return false;
}

/* Under the lock: this node's entry for kvkey in bucket b, added if new. */
static struct mine *mine_get(struct nats_store *ns, enum bucket b, const char *kvkey, size_t max,
			     int *err)
{
	struct mine *m = hmap__sget(ns->mine[b], kvkey);

	if (m)
		return m;
	if (hmap__size(ns->mine[b]) >= max && !(b == B_CONNS && drop_withdrawn(ns))) {
		*err = -ENOSPC;
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m || hmap__sput(ns->mine[b], kvkey, m)) {
		free(m);
		*err = -ENOMEM;
		return NULL;
	}
	return m;
}

static int nats_conn_publish(struct store *s, const char *key, const char *workload_json,
			     unsigned int ttl_sec)
{
	struct nats_store *ns = to_ns(s);
	char kvkey[KVKEY_BUF];
	struct mine *m;
	char *value;
	int err;

	err = conn_kvkey(key, kvkey, sizeof(kvkey));
	if (err)
		return err;
	if (!workload_json || !*workload_json)
		return -EINVAL;
	if (strlen(workload_json) > STORE_MAX_VALUE)
		return -EMSGSIZE;
	value = strdup(workload_json);
	if (!value)
		return -ENOMEM;
	pthread_mutex_lock(&ns->lock);
	m = mine_get(ns, B_CONNS, kvkey, STORE_MAX_CONNS, &err);
	if (m) {
		free(m->value);
		m->value = value;
		value = NULL;
		m->withdrawn = false;
		m->until = ttl_sec ? mono_ms() + (int64_t)ttl_sec * 1000 : 0;
		queue_mine(ns, B_CONNS, kvkey, m);
	}
	pthread_mutex_unlock(&ns->lock);
	free(value);
	return err;
}

static int nats_conn_withdraw(struct store *s, const char *key)
{
	struct nats_store *ns = to_ns(s);
	char kvkey[KVKEY_BUF];
	struct mine *m;
	int err;

	err = conn_kvkey(key, kvkey, sizeof(kvkey));
	if (err)
		return err;
	pthread_mutex_lock(&ns->lock);
	m = hmap__sget(ns->mine[B_CONNS], kvkey);
	if (!m || m->withdrawn) {
		err = -ENOENT;
	} else if (m->sent) {
		/* Deleted now, or by the catch-up once the store is back. */
		m->withdrawn = true;
		queue_mine(ns, B_CONNS, kvkey, m);
	} else {
		/* Never sent: nothing to take back. */
		mine_free(hmap__sdel(ns->mine[B_CONNS], kvkey));
	}
	pthread_mutex_unlock(&ns->lock);
	return err;
}

static int nats_conn_lookup(struct store *s, const char *key, const char **workload_json)
{
	struct nats_store *ns = to_ns(s);
	char kvkey[KVKEY_BUF];
	struct cached_conn *c;
	int64_t *expires;
	bool ready;
	int err;

	err = conn_kvkey(key, kvkey, sizeof(kvkey));
	if (err)
		return err;
	ns->hm.lookups++;
	c = hmap__sget(ns->conns, key);
	if (c && c->expires_ms > wall_ms()) {
		ns->hm.lookup_hits++;
		*workload_json = c->value;
		return 0;
	}
	pthread_mutex_lock(&ns->lock);
	ready = ns->ready;
	pthread_mutex_unlock(&ns->lock);
	if (!hmap__sget(ns->lookups, key)) {
		if (hmap__size(ns->lookups) >= STORE_MAX_LOOKUPS)
			return -ENOSPC;
		expires = malloc(sizeof(*expires));
		if (!expires || hmap__sput(ns->lookups, key, expires)) {
			free(expires);
			return -ENOMEM;
		}
		*expires = wall_ms() + STORE_LOOKUP_WAIT_MS;
		/* The watch may lag (or be re-reading): ask the bucket too. */
		pthread_mutex_lock(&ns->lock);
		if (ready && ns->n_gets < STORE_MAX_LOOKUPS &&
		    !push_todo(&ns->gets_tail, B_CONNS, kvkey)) {
			ns->n_gets++;
			pthread_cond_signal(&ns->work_cond);
		}
		pthread_mutex_unlock(&ns->lock);
	}
	return ready ? -EINPROGRESS : -ENOTCONN;
}

static int nats_sighting_put(struct store *s, const char *client, uint64_t instance,
			     const char *evidence_json)
{
	struct nats_store *ns = to_ns(s);
	char kvkey[KVKEY_BUF];
	struct mine *m;
	int64_t now;
	int err;

	err = sighting_kvkey(ns, client, instance, kvkey, sizeof(kvkey));
	if (err)
		return err;
	if (!evidence_json || !*evidence_json)
		return -EINVAL;
	if (strlen(evidence_json) > STORE_MAX_VALUE)
		return -EMSGSIZE;
	now = mono_ms();
	pthread_mutex_lock(&ns->lock);
	m = mine_get(ns, B_SIGHTINGS, kvkey, STORE_MAX_MY_SIGHTINGS, &err);
	if (!m)
		goto out;
	m->seen = now;
	/* Writes are rate-limited: the bucket needs one per third of its TTL. */
	if (!m->queued && (!m->written || now - m->written >= ns->sighting_ttl_ms / 3)) {
		char *value = strdup(evidence_json);

		if (!value) {
			err = -ENOMEM;
		} else {
			free(m->value);
			m->value = value;
			queue_mine(ns, B_SIGHTINGS, kvkey, m);
		}
	}
	if (!m->value) {
		/* A new entry we could not fill. */
		mine_free(hmap__sdel(ns->mine[B_SIGHTINGS], kvkey));
	}
out:
	pthread_mutex_unlock(&ns->lock);
	return err;
}

static ssize_t nats_sightings(struct store *s, const char *client, struct store_sighting *out,
			      size_t max)
{
	struct nats_store *ns = to_ns(s);
	struct sgroup *g;
	struct sighting *si;
	int64_t now = wall_ms();
	size_t n = 0;

	if (!client)
		return -EINVAL;
	g = hmap__sget(ns->clients, client);
	for (si = g ? g->head : NULL; si && n < max; si = si->next) {
		if (si->expires_ms <= now)
			continue;
		out[n].node = si->node;
		out[n].instance = si->instance;
		out[n].evidence = si->evidence;
		out[n].local = si->local;
		out[n].expires_ms = si->expires_ms;
		n++;
	}
	return (ssize_t)n;
}

static int cache_owner(struct nats_store *ns, const char *token_key, const char *node,
		       uint64_t instance, const char *json, int64_t expires_ms)
{
	struct token_owner *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->node = strdup(node);
	t->json = strdup(json);
	t->instance = instance;
	t->expires_ms = expires_ms;
	if (!t->node || !t->json) {
		token_owner_free(t);
		return -ENOMEM;
	}
	if (hmap__size(ns->tokens) >= STORE_MAX_TOKENS)
		evict_one(ns, ns->tokens, free_token_owner);
	token_owner_free(hmap__sdel(ns->tokens, token_key));
	if (hmap__sput(ns->tokens, token_key, t)) {
		token_owner_free(t);
		return -ENOMEM;
	}
	return 0;
}

static int owner_answer(struct nats_store *ns, const struct token_owner *t, uint64_t instance,
			char **owner_json)
{
	if (!strcmp(t->node, ns->node) && t->instance == instance)
		return 0;
	ns->hm.token_conflicts++;
	if (owner_json) {
		*owner_json = strdup(t->json);
		if (!*owner_json)
			return -ENOMEM;
	}
	return -EEXIST;
}

/* How long a claim stands: the bucket's TTL, or the token's exp if sooner. */
static int64_t claim_end(const struct nats_store *ns, int64_t claimed_ms, int64_t exp_unix)
{
	int64_t end = claimed_ms + ns->token_ttl_ms;

	if (exp_unix > 0 && exp_unix * 1000 < end)
		end = exp_unix * 1000;
	return end;
}

/* The value of a claim: who claims, when, until when, and the evidence. */
static int claim_value(const struct nats_store *ns, uint64_t instance, const char *evidence_json,
		       int64_t now, int64_t expires_unix, char **out)
{
	json_t *ev, *val;

	ev = json_loads(evidence_json ? evidence_json : "{}", JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(ev)) {
		json_decref(ev);
		return -EINVAL;
	}
	val = json_pack("{s:s, s:I, s:I, s:I, s:o}", "node", ns->node, "instance",
			(json_int_t)instance, "claimed_ms", (json_int_t)now, "exp",
			(json_int_t)expires_unix, "evidence", ev);
	*out = val ? json_dumps(val, JSON_COMPACT) : NULL;
	json_decref(val);
	if (!*out)
		return -ENOMEM;
	if (strlen(*out) > STORE_MAX_VALUE) {
		free(*out);
		*out = NULL;
		return -EMSGSIZE;
	}
	return 0;
}

/*
 * The key exists: read its owner and cache it. A claim whose token has
 * expired (or that is not a claim at all) is taken over by compare-and-set.
 * Returns 0 with *taken when we took it, or a NATS status.
 */
static natsStatus claim_existing(struct nats_store *ns, kvStore *kv, const char *token_key,
				 const char *kvkey, const char *value, uint64_t instance,
				 int64_t now, int64_t expires_unix, bool *taken)
{
	kvEntry *e = NULL;
	json_t *owner;
	const char *onode;
	int64_t oexp;
	uint64_t rev;
	natsStatus st;

	*taken = false;
	st = kvStore_Get(&e, kv, kvkey);
	if (st != NATS_OK)
		return st;
	owner = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
	onode = json_string_value(json_object_get(owner, "node"));
	oexp = json_integer_value(json_object_get(owner, "exp"));
	if (!onode) {
		ns->hm.bad_values++;
		oexp = 1;
	}
	if (oexp > 0 && oexp * 1000 <= now) {
		st = kvStore_UpdateString(&rev, kv, kvkey, value, kvEntry_Revision(e));
		if (st == NATS_OK) {
			*taken = true;
			cache_owner(ns, token_key, ns->node, instance, value,
				    claim_end(ns, now, expires_unix));
		}
	} else if (cache_owner(ns, token_key, onode,
			       (uint64_t)json_integer_value(json_object_get(owner, "instance")),
			       kvEntry_ValueString(e),
			       claim_end(ns, json_integer_value(json_object_get(owner, "claimed_ms")),
					 oexp))) {
		st = NATS_NO_MEMORY;
	}
	json_decref(owner);
	kvEntry_Destroy(e);
	return st;
}

static int nats_token_claim(struct store *s, const char *token_key, uint64_t instance,
			    const char *evidence_json, int64_t expires_unix, char **owner_json)
{
	struct nats_store *ns = to_ns(s);
	char kvkey[KEY_BUF], *value = NULL;
	struct token_owner *t;
	int64_t now = wall_ms();
	natsConnection *nc;
	natsStatus st;
	bool ready, taken;
	uint64_t rev;
	kvStore *kv;
	int err;

	if (owner_json)
		*owner_json = NULL;
	if (!token_key)
		return -EINVAL;
	err = key_enc(token_key, strlen(token_key), kvkey, sizeof(kvkey));
	if (err)
		return err;
	t = hmap__sget(ns->tokens, token_key);
	if (t && t->expires_ms > now)
		return owner_answer(ns, t, instance, owner_json);
	err = claim_value(ns, instance, evidence_json, now, expires_unix, &value);
	if (err)
		return err;
	ns->hm.token_claims++;

	pthread_mutex_lock(&ns->lock);
	ready = ns->ready && ns->up;
	kv = ns->kv_claim;
	nc = ns->nc;
	pthread_mutex_unlock(&ns->lock);
	if (!ready || !kv || natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) {
		free(value);
		ns->hm.token_unavailable++;
		return -EAGAIN;
	}

	st = kvStore_CreateString(&rev, kv, kvkey, value);
	if (st == NATS_OK) {
		err = cache_owner(ns, token_key, ns->node, instance, value,
				  claim_end(ns, now, expires_unix));
		free(value);
		return err;
	}
	if (conflict(st))
		st = claim_existing(ns, kv, token_key, kvkey, value, instance, now, expires_unix,
				    &taken);
	free(value);
	if (st == NATS_NO_MEMORY)
		return -ENOMEM;
	if (st != NATS_OK) {
		ns->hm.token_unavailable++;
		pthread_mutex_lock(&ns->lock);
		set_error(ns, "claiming a token", st);
		pthread_mutex_unlock(&ns->lock);
		return -EAGAIN;
	}
	t = hmap__sget(ns->tokens, token_key);
	if (!t)
		return -ENOMEM;
	return taken ? 0 : owner_answer(ns, t, instance, owner_json);
}

static int nats_alert_publish(struct store *s, const char *json_line)
{
	struct nats_store *ns = to_ns(s);
	struct alert *a;
	size_t len;

	if (!json_line || !*json_line)
		return -EINVAL;
	len = strlen(json_line);
	if (len > STORE_MAX_ALERT)
		return -EMSGSIZE;
	pthread_mutex_lock(&ns->lock);
	if (ns->n_alerts >= STORE_MAX_ALERTS_PENDING ||
	    ns->alert_bytes + len > STORE_MAX_ALERT_BYTES) {
		ns->h.alerts_dropped++;
		pthread_mutex_unlock(&ns->lock);
		return -ENOBUFS;
	}
	a = malloc(sizeof(*a) + len + 1);
	if (!a) {
		pthread_mutex_unlock(&ns->lock);
		return -ENOMEM;
	}
	a->next = NULL;
	a->seq = ++ns->alert_seq;
	a->len = len;
	memcpy(a->line, json_line, len + 1);
	*ns->alerts_tail = a;
	ns->alerts_tail = &a->next;
	ns->n_alerts++;
	ns->alert_bytes += len;
	pthread_cond_signal(&ns->work_cond);
	pthread_mutex_unlock(&ns->lock);
	return 0;
}

static void nats_health(struct store *s, struct store_health *h)
{
	struct nats_store *ns = to_ns(s);

	pthread_mutex_lock(&ns->lock);
	*h = ns->h;
	h->connected = ns->up;
	h->ready = ns->ready;
	h->alerts_pending = ns->n_alerts;
	h->my_conns = hmap__size(ns->mine[B_CONNS]);
	h->my_sightings = hmap__size(ns->mine[B_SIGHTINGS]);
	h->sighting_ttl_sec = (unsigned int)(ns->sighting_ttl_ms / 1000);
	h->bad_values += ns->hm.bad_values;
	pthread_mutex_unlock(&ns->lock);
	h->lookups = ns->hm.lookups;
	h->lookup_hits = ns->hm.lookup_hits;
	h->lookups_resolved = ns->hm.lookups_resolved;
	h->lookups_expired = ns->hm.lookups_expired;
	h->token_claims = ns->hm.token_claims;
	h->token_conflicts = ns->hm.token_conflicts;
	h->token_unavailable = ns->hm.token_unavailable;
	h->evicted = ns->hm.evicted;
	h->resyncs = ns->hm.resyncs;
	h->conn_cache = hmap__size(ns->conns);
	h->sighting_cache = ns->n_sightings;
	h->token_cache = hmap__size(ns->tokens);
	h->lookups_waiting = hmap__size(ns->lookups);
}

/* ---- open and close ----------------------------------------------------- */

static void free_sgroups(struct hmap *m)
{
	struct hmap_iter it;
	void *val;

	if (!m)
		return;
	hmap__iter_init(m, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct sgroup *g = val;

		while (g->head) {
			struct sighting *s = g->head;

			g->head = s->next;
			sighting_free(s);
		}
		free(g);
	}
	hmap__free(m);
}

static void free_values(struct hmap *m, void (*fr)(void *))
{
	struct hmap_iter it;
	void *val;

	if (!m)
		return;
	hmap__iter_init(m, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val))
		fr(val);
	hmap__free(m);
}

static void free_mine(void *p)
{
	mine_free(p);
}

static void free_todos(struct todo *t)
{
	while (t) {
		struct todo *next = t->next;

		free(t);
		t = next;
	}
}

static void nats_close(struct store *s)
{
	struct nats_store *ns = to_ns(s);
	natsConnection *nc;
	struct timespec ts;
	bool closed = true;
	int b;

	if (!ns)
		return;
	pthread_mutex_lock(&ns->lock);
	ns->stop = true;
	pthread_cond_broadcast(&ns->work_cond);
	pthread_cond_broadcast(&ns->watch_cond);
	nc = ns->nc;
	pthread_mutex_unlock(&ns->lock);
	/* Ends requests in flight at once, and the watches' waits. */
	if (nc)
		natsConnection_Close(nc);
	if (ns->worker_started)
		pthread_join(ns->worker, NULL);
	/* The worker is gone: nobody else stops or replaces a watcher now. */
	for (b = 0; b < B_WATCHED; b++) {
		if (ns->watches[b].w)
			kvWatcher_Stop(ns->watches[b].w);
	}
	for (b = 0; b < B_WATCHED; b++) {
		if (ns->watches[b].started)
			pthread_join(ns->watches[b].thread, NULL);
		kvWatcher_Destroy(ns->watches[b].w);
	}
	nc = ns->nc;		/* the worker may have connected meanwhile */
	if (nc) {
		natsConnection_Close(nc);
		/* The closed callback is libnats' last use of ns. */
		pthread_mutex_lock(&ns->lock);
		deadline_after(&ts, CLOSE_WAIT_MS);
		while (!ns->closed) {
			if (pthread_cond_timedwait(&ns->closed_cond, &ns->lock, &ts) == ETIMEDOUT)
				break;
		}
		closed = ns->closed;
		pthread_mutex_unlock(&ns->lock);
	}
	for (b = 0; b < B__MAX; b++)
		kvStore_Destroy(ns->kv[b]);
	kvStore_Destroy(ns->kv_claim);
	jsCtx_Destroy(ns->js);
	jsCtx_Destroy(ns->js_claim);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(ns->opts);
	free_values(ns->mine[B_CONNS], free_mine);
	free_values(ns->mine[B_SIGHTINGS], free_mine);
	free_todos(ns->todo);
	free_todos(ns->gets);
	while (ns->alerts) {
		struct alert *a = ns->alerts;

		ns->alerts = a->next;
		free(a);
	}
	while (ns->evs) {
		struct ev *e = ns->evs;

		ns->evs = e->next;
		ev_free(e);
	}
	free_values(ns->conns, free_cached_conn);
	free_sgroups(ns->clients);
	free_values(ns->tokens, free_token_owner);
	free_values(ns->lookups, free);
	if (ns->efd >= 0)
		close(ns->efd);
	if (!closed)
		return;	/* libnats may still call back: keep ns (a leak, not a crash) */
	pthread_mutex_destroy(&ns->lock);
	pthread_cond_destroy(&ns->work_cond);
	pthread_cond_destroy(&ns->watch_cond);
	pthread_cond_destroy(&ns->closed_cond);
	free(ns);
}

static int build_options(struct nats_store *ns, const struct store_config *cfg)
{
	char name[64 + STORE_MAX_KEY];
	natsOptions *o = NULL;
	natsStatus s;

	if (cfg->creds_file && access(cfg->creds_file, R_OK))
		return -ENOENT;
	if (cfg->ca_file && access(cfg->ca_file, R_OK))
		return -ENOENT;
	if ((cfg->cert_file && access(cfg->cert_file, R_OK)) ||
	    (cfg->key_file && access(cfg->key_file, R_OK)))
		return -ENOENT;
	if (!cfg->cert_file != !cfg->key_file)
		return -EINVAL;
	if (natsOptions_Create(&o) != NATS_OK)
		return -ENOMEM;
	snprintf(name, sizeof(name), "mcpwarden/%s", ns->node);
	s = natsOptions_SetURL(o, cfg->url);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, name);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, cfg->reconnect_wait_ms ?
							    cfg->reconnect_wait_ms : 1000);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectJitter(o, 100, 1000);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, ns);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, on_disconnected, ns);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, on_reconnected, ns);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, on_closed, ns);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, on_async_error, ns);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, PING_INTERVAL_MS);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, 2);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, CONNECT_TIMEOUT_MS);
	/* A request in flight when the link drops fails now, not at its timeout. */
	if (s == NATS_OK)
		s = natsOptions_SetFailRequestsOnDisconnect(o, true);
	if (s == NATS_OK && !strncmp(cfg->url, "tls://", 6))
		s = natsOptions_SetSecure(o, true);
	if (s == NATS_OK && cfg->ca_file)
		s = natsOptions_LoadCATrustedCertificates(o, cfg->ca_file);
	if (s == NATS_OK && cfg->cert_file)
		s = natsOptions_LoadCertificatesChain(o, cfg->cert_file, cfg->key_file);
	if (s == NATS_OK && cfg->creds_file)
		s = natsOptions_SetUserCredentialsFromFiles(o, cfg->creds_file, NULL);
	if (s != NATS_OK) {
		natsOptions_Destroy(o);
		return s == NATS_NO_MEMORY ? -ENOMEM : -EINVAL;
	}
	ns->opts = o;
	return 0;
}

static int nats_open(const struct store_config *cfg, struct store **out)
{
	struct nats_store *ns;
	int err, b;

	if (!cfg->node || !*cfg->node || strlen(cfg->node) > STORE_MAX_KEY)
		return -EINVAL;
	if (dynlib__nats(NULL, 0))
		return -ELIBACC;	/* why: dynlib__nats() */
	ns = calloc(1, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	ns->base.ops = &store_nats_ops;
	ns->efd = -1;
	pthread_mutex_init(&ns->lock, NULL);
	cond_init_mono(&ns->work_cond);
	cond_init_mono(&ns->watch_cond);
	cond_init_mono(&ns->closed_cond);
	ns->todo_tail = &ns->todo;
	ns->gets_tail = &ns->gets;
	ns->alerts_tail = &ns->alerts;
	ns->evs_tail = &ns->evs;
	snprintf(ns->node, sizeof(ns->node), "%s", cfg->node);
	err = key_enc(cfg->node, strlen(cfg->node), ns->node_enc, sizeof(ns->node_enc));
	if (err)
		goto fail;
	snprintf(ns->alert_subject, sizeof(ns->alert_subject), ALERT_SUBJECT_PRE "%s",
		 ns->node_enc);
	ns->sighting_ttl_ms = (int64_t)(cfg->sighting_ttl_sec ? cfg->sighting_ttl_sec : 60) * 1000;
	ns->ttl_ms = ns->sighting_ttl_ms;
	ns->conn_ttl_ms = (int64_t)(cfg->conn_ttl_sec ? cfg->conn_ttl_sec : 3600) * 1000;
	ns->token_ttl_ms = (int64_t)(cfg->token_ttl_sec ? cfg->token_ttl_sec : 86400) * 1000;
	ns->alert_age_ms = (int64_t)(cfg->alert_max_age_sec ? cfg->alert_max_age_sec :
							       7 * 86400) * 1000;
	ns->alert_max_bytes = cfg->alert_max_bytes ? (int64_t)cfg->alert_max_bytes : 1ll << 30;
	ns->replicas = cfg->replicas ? (int)cfg->replicas : 1;
	ns->claim_timeout_ms = cfg->claim_timeout_ms ? (int)cfg->claim_timeout_ms : 100;
	ns->boot = (uint64_t)wall_ms() << 16 ^ (uint64_t)getpid();
	err = -ENOMEM;
	ns->mine[B_CONNS] = hmap__new(true);
	ns->mine[B_SIGHTINGS] = hmap__new(true);
	ns->conns = hmap__new(true);
	ns->clients = hmap__new(true);
	ns->tokens = hmap__new(true);
	ns->lookups = hmap__new(true);
	if (!ns->mine[B_CONNS] || !ns->mine[B_SIGHTINGS] || !ns->conns || !ns->clients ||
	    !ns->tokens || !ns->lookups)
		goto fail;
	ns->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ns->efd < 0) {
		err = -errno;
		goto fail;
	}
	err = build_options(ns, cfg);
	if (err)
		goto fail;
	for (b = 0; b < B_WATCHED; b++) {
		ns->watches[b].ns = ns;
		ns->watches[b].b = b;
		err = -pthread_create(&ns->watches[b].thread, NULL, watch_main, &ns->watches[b]);
		if (err)
			goto fail;
		ns->watches[b].started = true;
	}
	err = -pthread_create(&ns->worker, NULL, worker_main, ns);
	if (err)
		goto fail;
	ns->worker_started = true;
	*out = &ns->base;
	return 0;
fail:
	nats_close(&ns->base);
	return err;
}

const struct store_ops store_nats_ops = {
	.name = "nats",
	.open = nats_open,
	.close = nats_close,
	.fd = nats_fd,
	.drain = nats_drain,
	.conn_publish = nats_conn_publish,
	.conn_withdraw = nats_conn_withdraw,
	.conn_lookup = nats_conn_lookup,
	.sighting_put = nats_sighting_put,
	.sightings = nats_sightings,
	.token_claim = nats_token_claim,
	.alert_publish = nats_alert_publish,
	.health = nats_health,
};
