// SPDX-License-Identifier: GPL-2.0
/*
 * The judgment of one request. Order (the first finding is the verdict):
 *
 *   malformed      the request is not HTTP + JSON-RPC we can read
 *   unattributed   no workload in scope sent it        (policy: unattributed)
 *   unknown_client its claims match no policy client   (policy: unknown_client)
 *   mismatch       they match a client whose workloads do not include it
 *   server_denied  that client may not use this server
 *   tool_denied    a tools/call names a tool it may not call
 *   session_hijack its Mcp-Session-Id belongs to another workload instance
 *   identity_switch the connection or session started as someone else
 *   token_replay   its token was first used by another instance, or a
 *                  Kubernetes service-account token names another pod
 *   clone          the client is already live in max_instances instances
 *
 * A workload instance is its cgroup (by id). An instance is live for a
 * client while it holds an open connection that presented the client's
 * identity, or for instance_window_seconds after its last request.
 * Identity is bound by stable claims (client, iss, sub, client_id, azp,
 * clientInfo name) plus the instance, never by token bytes: a refreshed
 * token from the same instance is not a finding. State changes only for
 * allowed requests, so a blocked newcomer never displaces the incumbent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "decision.h"
#include "jsonesc.h"
#include "hmap.h"
#include "intern.h"
#include "jwt.h"

static const char *const verdict_names[VERDICT__MAX] = {
	[VERDICT_ALLOW] = "allow",
	[VERDICT_MISMATCH] = "mismatch",
	[VERDICT_UNKNOWN_CLIENT] = "unknown_client",
	[VERDICT_CLONE] = "clone",
	[VERDICT_TOKEN_REPLAY] = "token_replay",
	[VERDICT_SESSION_HIJACK] = "session_hijack",
	[VERDICT_IDENTITY_SWITCH] = "identity_switch",
	[VERDICT_TOOL_DENIED] = "tool_denied",
	[VERDICT_SERVER_DENIED] = "server_denied",
	[VERDICT_UNATTRIBUTED] = "unattributed",
	[VERDICT_STDIO_PARENT] = "stdio_parent",
	[VERDICT_MALFORMED] = "malformed",
};

const char *verdict__name(enum verdict v)
{
	return v < VERDICT__MAX ? verdict_names[v] : "unknown";
}

/* Who, in evidence form (a small copy: the workload itself may go). */
struct who {
	uint64_t instance;	/* node-wide unique (see struct workload) */
	uint64_t cgroup_id;
	uint32_t pid;
	const char *exe;	/* interned */
	const char *cgroup;
	const char *node;
};

/* Stable claims of an identity. Its strings, and those of sessions and
 * tokens, are interned: thousands of connections and sessions present
 * the same few identities. */
struct decider_ident {
	const char *client;
	const char *iss, *sub, *client_id, *azp, *ci_name;
};

/*
 * What sessions and tokens share: the key their table borrows (fixed-size,
 * NUL-padded: see binding_key) and their place in the list of their
 * workload instance's bindings of that kind, least recently used first.
 * An instance holds at most DECISION_MAX_PER_INSTANCE of each: a new one
 * over that drops its own least recently used, never another instance's
 * (owner_link). Each binding has its owner.
 */
enum bind_kind { BIND_SESSION, BIND_TOKEN, BIND__MAX };

#define BINDING_KEY_RAW	64
#define BINDING_KEY_MAX	(sizeof("sha256:") + 64)

struct lru_link {
	struct lru_link *prev, *next;
};

struct binding {
	char key[BINDING_KEY_MAX];
	struct lru_link link;
	struct owner *owner;
};

/* One workload instance's bindings (decider.owners, by instance). */
struct owner {
	uint64_t instance;
	struct lru_link lru[BIND__MAX];	/* circular; the head is the oldest */
	unsigned int n[BIND__MAX];
};

struct decider_session {
	struct binding b;	/* first: the table's value is the session */
	struct who who;
	bool issued;		/* seen issued by the server (else first use) */
	const char *client_name, *client_version;	/* its initialize's clientInfo */
	struct decider_ident ident;
	bool has_ident;
	uint64_t last_ns;
};

struct decider_token {
	struct binding b;	/* first, as in a session */
	struct who who;
	const char *client;
	uint64_t expires_ns;
	uint64_t last_ns;
};

struct decider_instance {
	struct who who;
	uint64_t last_ns;
	unsigned int open_conns;
};

struct client_live {
	struct hmap *instances;	/* instance id -> struct decider_instance */
};

struct decider {
	const struct policy *policy;
	struct decider_fleet fleet;
	bool has_fleet;
	struct hmap *sessions;	/* session key -> struct decider_session */
	struct hmap *tokens;	/* token key -> struct decider_token */
	struct hmap *owners;	/* instance -> struct owner */
	struct hmap *clients;	/* client name -> struct client_live */
	/* Bindings refused: their table was full. */
	uint64_t refused_sessions, refused_tokens, refused_instances;
	/* Bindings an instance over its share dropped (BIND_*). */
	uint64_t evicted[BIND__MAX];
	uint64_t verdicts[VERDICT__MAX];
	/* Moves whenever a kept judgment may no longer hold (struct
	 * decider_memo): a session or token binding changed or went, an
	 * instance went, the policy or saved state came in. */
	uint64_t gen;
	uint64_t memo_hits;
};

/*
 * A session's or token's key in its table: the session id or token key
 * itself, or for one longer than BINDING_KEY_RAW "sha256:" and its digest
 * (buf, BINDING_KEY_MAX). Raw ids up to a header block's 16 KiB let any
 * allowed client fill the 65536 sessions with a gigabyte of the daemon's
 * memory (and of the state file, saved every 5 s); server ids (UUIDs, 36
 * bytes) keep their text. NULL when the digest cannot be made.
 */
static const char *binding_key(const char *key, char *buf)
{
	size_t n = strlen(key);

	if (n <= BINDING_KEY_RAW)
		return key;
	memcpy(buf, "sha256:", 7);
	return jwt__sha256_hex(key, n, buf + 7) ? NULL : buf;
}

_Static_assert(BINDING_KEY_MAX <= sizeof(((struct request *)0)->session_key_buf),
	       "a request keeps its session key");

/* r's session key, made once for its session id (a long id is hashed once
 * a request, not at each look-up of a judgment); NULL without a usable
 * one. Made again if the id was changed since. */
static const char *request_session_key(struct request *r)
{
	if (r->session_key_for != r->session_id) {
		r->session_key = r->session_id ? binding_key(r->session_id, r->session_key_buf) :
			NULL;
		r->session_key_for = r->session_id;
	}
	return r->session_key;
}

/* An interned copy of s, NULL for NULL or "". */
static const char *intern0(const char *s)
{
	return s && *s ? intern__get(s) : NULL;
}

static void who_set(struct who *w, const struct workload *wl)
{
	w->instance = wl->instance;
	w->cgroup_id = wl->cgroup_id;
	w->node = intern__get(wl->node);
	w->pid = wl->pid;
	w->exe = intern__ref(wl->exe);
	w->cgroup = intern__ref(wl->cgroup);
}

static void who_free(struct who *w)
{
	intern__put(w->exe);
	intern__put(w->cgroup);
	intern__put(w->node);
}

static json_t *who_json(const struct who *w)
{
	json_t *o = json_object();

	json_object_set_new(o, "pid", json_integer(w->pid));
	if (w->exe)
		json_object_set_new(o, "exe", json_string(w->exe));
	if (w->cgroup)
		json_object_set_new(o, "cgroup", json_string(w->cgroup));
	json_object_set_new(o, "cgroup_id", json_integer((json_int_t)w->cgroup_id));
	if (w->node)
		json_object_set_new(o, "node", json_string(w->node));
	return o;
}

static void ident_free(struct decider_ident *i)
{
	intern__put(i->client);
	intern__put(i->iss);
	intern__put(i->sub);
	intern__put(i->client_id);
	intern__put(i->azp);
	intern__put(i->ci_name);
	memset(i, 0, sizeof(*i));
}

static void session_free(struct decider_session *s)
{
	who_free(&s->who);
	intern__put(s->client_name);
	intern__put(s->client_version);
	ident_free(&s->ident);
	free(s);
}

static void token_free(struct decider_token *t)
{
	who_free(&t->who);
	intern__put(t->client);
	free(t);
}

static void client_live_free(struct client_live *cl)
{
	struct hmap_iter it;
	void *val;

	hmap__iter_init(cl->instances, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		who_free(&((struct decider_instance *)val)->who);
		free(val);
	}
	hmap__free(cl->instances);
	free(cl);
}

struct decider *decider__new(void)
{
	struct decider *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->sessions = hmap__new_fixed(BINDING_KEY_MAX);
	d->tokens = hmap__new_fixed(BINDING_KEY_MAX);
	d->owners = hmap__new(false);
	d->clients = hmap__new(true);
	d->gen = 1;
	if (!d->sessions || !d->tokens || !d->owners || !d->clients) {
		decider__free(d);
		return NULL;
	}
	return d;
}

void decider__free(struct decider *d)
{
	struct hmap_iter it;
	void *val;

	if (!d)
		return;
	if (d->sessions) {
		hmap__iter_init(d->sessions, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val))
			session_free(val);
	}
	if (d->tokens) {
		hmap__iter_init(d->tokens, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val))
			token_free(val);
	}
	if (d->owners) {
		hmap__iter_init(d->owners, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val))
			free(val);
	}
	if (d->clients) {
		hmap__iter_init(d->clients, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val))
			client_live_free(val);
	}
	hmap__free(d->sessions);
	hmap__free(d->tokens);
	hmap__free(d->owners);
	hmap__free(d->clients);
	free(d);
}

void decider__set_policy(struct decider *d, const struct policy *p)
{
	d->policy = p;
	d->gen++;
}

void decider__set_fleet(struct decider *d, const struct decider_fleet *f)
{
	d->has_fleet = f != NULL;
	if (f)
		d->fleet = *f;
}

static uint64_t window_ns(const struct decider *d)
{
	unsigned int s = d->policy && d->policy->instance_window_sec ?
			 d->policy->instance_window_sec : 60;

	return (uint64_t)s * 1000000000ull;
}

/* ---- helpers ----------------------------------------------------------- */

static void set_reason(struct decision *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_reason(struct decision *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
}

static void finding(struct decider *d, struct decision *out, enum verdict v,
		    enum policy_action action)
{
	out->verdict = v;
	out->deny = action == POLICY_DENY;
	out->alert = action != POLICY_ALLOW;
	d->verdicts[v]++;
}

/* "pid 123 (/usr/bin/node) in cgroup /ci/a" */
static void describe(const struct workload *w, char *buf, size_t len)
{
	snprintf(buf, len, "pid %u (%s) in cgroup %s", w->pid, w->exe ? w->exe : w->comm,
		 w->cgroup ? w->cgroup : "?");
}

static void describe_who(const struct who *w, char *buf, size_t len)
{
	snprintf(buf, len, "pid %u (%s) in cgroup %s", w->pid, w->exe ? w->exe : "?",
		 w->cgroup ? w->cgroup : "?");
}

/* The claims a policy may match, as this request makes them. */
static void claim_view(const struct decider *d, const struct request *r, struct claim_view *v,
		       bool *token_untrusted)
{
	const struct jwt_facts *t = &r->token;
	bool trust = t->is_jwt;

	*token_untrusted = false;
	if (t->is_jwt && (t->sig == JWT_SIG_INVALID || t->sig == JWT_SIG_UNSUPPORTED ||
			  (d->policy->require_signature && t->sig != JWT_SIG_VALID))) {
		trust = false;
		*token_untrusted = true;
	}
	memset(v, 0, sizeof(*v));
	if (trust) {
		v->client_id = t->client_id;
		v->sub = t->sub;
		v->iss = t->iss;
		v->azp = t->azp;
	}
	if (t->present && !*token_untrusted)
		v->token_sha256 = t->sha256;
	v->client_info_name = r->client_name;
	v->user_agent = r->user_agent;
}

static void claims_text(const struct claim_view *v, char *buf, size_t len)
{
	size_t n = 0;

#define ADD(key, val)								\
	do {									\
		if ((val) && n < len)						\
			n += (size_t)snprintf(buf + n, len - n, "%s%s \"%s\"",	\
					      n ? ", " : "", key, (val));	\
	} while (0)
	ADD("client_id", v->client_id);
	ADD("sub", v->sub);
	ADD("iss", v->iss);
	ADD("clientInfo", v->client_info_name);
#undef ADD
	if (!n)
		snprintf(buf, len, "no identity at all");
}

static struct client_live *client_live(struct decider *d, const char *name)
{
	struct client_live *cl = hmap__sget(d->clients, name);

	if (cl)
		return cl;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return NULL;
	cl->instances = hmap__new(false);
	if (!cl->instances || hmap__sput(d->clients, name, cl)) {
		hmap__free(cl->instances);
		free(cl);
		return NULL;
	}
	return cl;
}

static bool instance_live(const struct decider *d, const struct decider_instance *in, uint64_t now)
{
	return in->open_conns > 0 || now - in->last_ns < window_ns(d);
}

/* Drops instances no longer live. */
static void prune_instances(struct decider *d, struct client_live *cl, uint64_t now)
{
	struct hmap_iter it;
	uint64_t key;
	void *val;

	hmap__iter_init(cl->instances, &it);
	while (hmap__iter_next(&it, &key, NULL, &val)) {
		if (!instance_live(d, val, now)) {
			d->gen++;
			hmap__del(cl->instances, key);
			who_free(&((struct decider_instance *)val)->who);
			free(val);
		}
	}
}

/*
 * t's key in d->tokens, in buf (BINDING_KEY_MAX): its issuer and jti
 * (binding_key: hashed when long; cut short, two tokens whose keys agreed
 * up to the cut were one), else the token's own digest.
 */
static const char *token_key(const struct jwt_facts *t, char *buf)
{
	char full[2 * JWT_MAX_CLAIM_BYTES + 8];
	const char *key = NULL;
	int n;

	if (t->jti) {
		n = snprintf(full, sizeof(full), "jti:%s:%s", t->iss ? t->iss : "", t->jti);
		if (n > 0 && (size_t)n < sizeof(full))
			key = binding_key(full, buf);
		if (key == full)
			memcpy(buf, full, (size_t)n + 1);
		if (key)
			return buf;
	}
	snprintf(buf, BINDING_KEY_MAX, "sha256:%s", t->sha256);
	return buf;
}

/* ---- bindings per instance (struct binding) ---------------------------- */

static void lru_init(struct lru_link *head)
{
	head->prev = head->next = head;
}

static void lru_unlink(struct lru_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	lru_init(l);
}

static void lru_append(struct lru_link *head, struct lru_link *l)
{
	l->prev = head->prev;
	l->next = head;
	head->prev->next = l;
	head->prev = l;
}

static struct binding *binding_of(const struct lru_link *l)
{
	return (struct binding *)((char *)l - offsetof(struct binding, link));
}

static struct hmap *bind_table(struct decider *d, enum bind_kind k)
{
	return k == BIND_SESSION ? d->sessions : d->tokens;
}

/* key as its table's fixed-size key; false when it is not one. */
static bool fixed_key(const char *key, char out[BINDING_KEY_MAX])
{
	size_t n = strlen(key);

	if (n >= BINDING_KEY_MAX)
		return false;
	memset(out, 0, BINDING_KEY_MAX);
	memcpy(out, key, n);
	return true;
}

static void *binding_get(struct decider *d, enum bind_kind k, const char *key)
{
	char fixed[BINDING_KEY_MAX];

	return fixed_key(key, fixed) ? hmap__bget(bind_table(d, k), fixed) : NULL;
}

static void binding_free(enum bind_kind k, struct binding *b)
{
	if (k == BIND_SESSION)
		session_free((struct decider_session *)b);
	else
		token_free((struct decider_token *)b);
}

/* Out of its owner's list; an owner with none left goes. */
static void owner_unlink(struct decider *d, enum bind_kind k, struct binding *b)
{
	struct owner *o = b->owner;

	if (!o)
		return;
	lru_unlink(&b->link);
	b->owner = NULL;
	o->n[k]--;
	if (!o->n[BIND_SESSION] && !o->n[BIND_TOKEN]) {
		hmap__del(d->owners, o->instance);
		free(o);
	}
}

/* Out of its table and its owner's list, and freed. */
static void binding_drop(struct decider *d, enum bind_kind k, struct binding *b)
{
	d->gen++;
	hmap__bdel(bind_table(d, k), b->key);
	owner_unlink(d, k, b);
	binding_free(k, b);
}

/*
 * Into the list of instance's bindings, as its most recently used. An
 * instance already holding its share drops its least recently used: an
 * allowed client that mints session ids or tokens by the thousand (a
 * session is bound at its first use, a token needs no signature unless
 * keys are configured) can then crowd out only its own, never the
 * bindings of the next workload to open a session (session_hijack and
 * token_replay would find nothing against those). -ENOMEM: not linked.
 */
static int owner_link(struct decider *d, enum bind_kind k, struct binding *b, uint64_t instance)
{
	struct owner *o = hmap__get(d->owners, instance);

	if (!o) {
		o = calloc(1, sizeof(*o));
		if (!o)
			return -ENOMEM;
		o->instance = instance;
		lru_init(&o->lru[BIND_SESSION]);
		lru_init(&o->lru[BIND_TOKEN]);
		if (hmap__put(d->owners, instance, o)) {
			free(o);
			return -ENOMEM;
		}
	}
	if (o->n[k] >= DECISION_MAX_PER_INSTANCE) {
		/* Not the last: the owner stays. */
		binding_drop(d, k, binding_of(o->lru[k].next));
		d->evicted[k]++;
	}
	lru_append(&o->lru[k], &b->link);
	b->owner = o;
	o->n[k]++;
	return 0;
}

/* Whether instance may bind one more of kind k: its table has room, or
 * the instance holds its share already (its oldest makes the room). */
static bool binding_room(struct decider *d, enum bind_kind k, uint64_t instance)
{
	const struct owner *o;

	if (hmap__size(bind_table(d, k)) < (k == BIND_SESSION ? DECISION_MAX_SESSIONS :
					     DECISION_MAX_TOKENS))
		return true;
	o = hmap__get(d->owners, instance);
	return o && o->n[k] >= DECISION_MAX_PER_INSTANCE;
}

/* Used now: the most recently used of its owner's. */
static void binding_touch(enum bind_kind k, struct binding *b)
{
	if (!b->owner)
		return;
	lru_unlink(&b->link);
	lru_append(&b->owner->lru[k], &b->link);
}

/*
 * A new binding b, under key, of instance: into its table (which
 * borrows b->key) and its owner's list. Its table has room (the caller
 * checked). 0, or an error and b is the caller's to free.
 */
static int binding_add(struct decider *d, enum bind_kind k, struct binding *b, const char *key,
		       uint64_t instance)
{
	lru_init(&b->link);
	if (!fixed_key(key, b->key))
		return -EINVAL;
	if (hmap__bput(bind_table(d, k), b->key, b))
		return -ENOMEM;
	if (owner_link(d, k, b, instance)) {
		hmap__bdel(bind_table(d, k), b->key);
		return -ENOMEM;
	}
	return 0;
}

static bool differs(const char *a, const char *b)
{
	return a && b && strcmp(a, b) != 0;
}

/* A different identity: a stable claim present on both sides changed. */
static bool ident_differs(const struct decider_ident *old, const struct decider_ident *now,
			  const char **what)
{
	if (differs(old->client, now->client)) {
		*what = "policy client";
		return true;
	}
	if (differs(old->iss, now->iss)) {
		*what = "iss";
		return true;
	}
	if (differs(old->sub, now->sub)) {
		*what = "sub";
		return true;
	}
	if (differs(old->client_id, now->client_id)) {
		*what = "client_id";
		return true;
	}
	if (differs(old->azp, now->azp)) {
		*what = "azp";
		return true;
	}
	if (differs(old->ci_name, now->ci_name)) {
		*what = "clientInfo name";
		return true;
	}
	return false;
}

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

/* The identity a request presents, borrowed from its claims (valid while
 * it is judged): compared on every request, interned only when kept
 * (ident_copy). */
static void ident_from(struct decider_ident *i, const char *client, const struct claim_view *v)
{
	i->client = nonempty(client);
	i->iss = nonempty(v->iss);
	i->sub = nonempty(v->sub);
	i->client_id = nonempty(v->client_id);
	i->azp = nonempty(v->azp);
	i->ci_name = nonempty(v->client_info_name);
}

static const char *ident_val(const struct decider_ident *i, const char *what)
{
	if (strcmp(what, "policy client") == 0)
		return i->client;
	if (strcmp(what, "iss") == 0)
		return i->iss;
	if (strcmp(what, "sub") == 0)
		return i->sub;
	if (strcmp(what, "client_id") == 0)
		return i->client_id;
	if (strcmp(what, "azp") == 0)
		return i->azp;
	return i->ci_name;
}

/* ---- the judgment ------------------------------------------------------ */

static const struct policy_client *match_client(const struct policy *p,
						const struct claim_view *cv,
						const struct workload *w,
						const struct policy_client **claimed)
{
	const char *anc[WORKLOAD_MAX_ANCESTORS];
	struct workload_view wv;
	struct pod_view pv;
	size_t i;

	workload__view(w, &wv, &pv, anc);
	*claimed = NULL;
	for (i = 0; i < p->n_clients; i++) {
		const struct policy_client *c = &p->clients[i];

		if (!policy_claims__match(&c->claims, cv))
			continue;
		if (!*claimed)
			*claimed = c;
		if (policy_workloads__match(c->workloads, c->n_workloads, &wv))
			return c;
	}
	return NULL;
}

static bool check_tools(struct decider *d, const struct policy_client *client,
			const struct request *r, struct decision *out)
{
	size_t i;

	if (!client->has_tools)
		return true;
	for (i = 0; i < r->body.n_msgs; i++) {
		const struct mcp_message *m = &r->body.msgs[i];
		char allowed[256] = "";
		size_t j, n = 0;

		if (!m->method || strcmp(m->method, "tools/call") != 0)
			continue;
		if (m->tool && policy_client__tool_allowed(client, m->tool))
			continue;
		for (j = 0; j < client->n_tools && n < sizeof(allowed); j++)
			n += (size_t)snprintf(allowed + n, sizeof(allowed) - n, "%s%s",
					      j ? ", " : "", client->tools[j]);
		finding(d, out, VERDICT_TOOL_DENIED, POLICY_DENY);
		set_reason(out, "Client \"%s\" may not call tool \"%s\" (allowed: %s).",
			   client->name, m->tool ? m->tool : "(none named)",
			   client->n_tools ? allowed : "none");
		return false;
	}
	return true;
}

static bool check_session(struct decider *d, struct conn *c, const struct request *r,
			  const struct decider_ident *now_ident, struct decision *out)
{
	struct decider_session *s;
	char owner[300], sender[300];
	const char *what;

	if (!r->session_key)
		return true;
	s = binding_get(d, BIND_SESSION, r->session_key);
	if (!s)
		return true;
	if (s->who.instance != c->client->instance) {
		describe_who(&s->who, owner, sizeof(owner));
		describe(c->client, sender, sizeof(sender));
		finding(d, out, VERDICT_SESSION_HIJACK, POLICY_DENY);
		set_reason(out, "Mcp-Session-Id %s was %s %s but is used by %s.", r->session_id,
			   s->issued ? "issued by the server to" : "first used by", owner, sender);
		out->related = json_pack("{s:o,s:b}", "session_owner", who_json(&s->who),
					 "issued_by_server", s->issued);
		return false;
	}
	if (s->has_ident && ident_differs(&s->ident, now_ident, &what)) {
		finding(d, out, VERDICT_IDENTITY_SWITCH, POLICY_DENY);
		set_reason(out, "Session %s started with %s \"%s\" and now presents \"%s\".",
			   r->session_id, what, ident_val(&s->ident, what),
			   ident_val(now_ident, what));
		return false;
	}
	return true;
}

static bool check_conn_ident(struct decider *d, struct conn *c,
			     const struct decider_ident *now_ident, struct decision *out)
{
	const struct decider_ident *old = c->ident;
	const char *what;

	if (!old || !ident_differs(old, now_ident, &what))
		return true;
	finding(d, out, VERDICT_IDENTITY_SWITCH, POLICY_DENY);
	set_reason(out, "This connection started with %s \"%s\" and now presents \"%s\".",
		   what, ident_val(old, what), ident_val(now_ident, what));
	out->related = json_pack("{s:s?,s:s?,s:s?}", "first_client", old->client,
				 "first_sub", old->sub, "first_client_id", old->client_id);
	return false;
}

/* Keeps a presented identity: its strings interned. */
static void ident_copy(struct decider_ident *dst, const struct decider_ident *src)
{
	dst->client = intern0(src->client);
	dst->iss = intern0(src->iss);
	dst->sub = intern0(src->sub);
	dst->client_id = intern0(src->client_id);
	dst->azp = intern0(src->azp);
	dst->ci_name = intern0(src->ci_name);
}

static void conn_set_ident(struct conn *c, const struct decider_ident *i)
{
	if (c->ident)
		return;
	c->ident = calloc(1, sizeof(*c->ident));
	if (c->ident)
		ident_copy(c->ident, i);
}

static bool check_token(struct decider *d, struct conn *c, const struct request *r,
			struct decision *out)
{
	const struct jwt_facts *t = &r->token;
	char kbuf[BINDING_KEY_MAX], first[300], sender[300];
	struct decider_token *tok;
	const char *key;

	if (!t->present)
		return true;
	if (t->k8s_pod_uid && strcmp(t->k8s_pod_uid, c->client->meta.pod_uid) != 0) {
		describe(c->client, sender, sizeof(sender));
		finding(d, out, VERDICT_TOKEN_REPLAY, POLICY_DENY);
		set_reason(out, "A Kubernetes service-account token of pod %s (%s/%s) is used by "
			   "%s, %s.", t->k8s_pod_uid, t->k8s_namespace ? t->k8s_namespace : "?",
			   t->k8s_pod_name ? t->k8s_pod_name : "?", sender,
			   c->client->meta.pod_uid[0] ? "a different pod" : "which is not in a pod");
		return false;
	}
	key = token_key(t, kbuf);
	tok = binding_get(d, BIND_TOKEN, key);
	if (!tok && d->has_fleet && d->fleet.token_claim) {
		json_t *owner = NULL;

		/* First seen here: was it first used on another node? */
		if (d->fleet.token_claim(d->fleet.ctx, key, c->client, t->has_exp ? t->exp : 0,
					 &owner) == 1) {
			describe(c->client, sender, sizeof(sender));
			finding(d, out, VERDICT_TOKEN_REPLAY, POLICY_DENY);
			set_reason(out, "Token %s%s was first used on node %s by pid %lld (%s) and is "
				   "now replayed by %s on node %s.", t->jti ? "jti " : "sha256 ",
				   t->jti ? t->jti : t->sha256,
				   json_string_value(json_object_get(owner, "node")) ?: "?",
				   (long long)json_integer_value(json_object_get(owner, "pid")),
				   json_string_value(json_object_get(owner, "exe")) ?: "?", sender,
				   c->client->node ? c->client->node : "?");
			out->related = json_pack("{s:o}", "first_use", owner);
			return false;
		}
		json_decref(owner);
	}
	if (tok && tok->who.instance != c->client->instance) {
		describe_who(&tok->who, first, sizeof(first));
		describe(c->client, sender, sizeof(sender));
		finding(d, out, VERDICT_TOKEN_REPLAY, POLICY_DENY);
		set_reason(out, "Token %s%s was first used by %s and is now replayed by %s.",
			   t->jti ? "jti " : "sha256 ", t->jti ? t->jti : t->sha256, first, sender);
		out->related = json_pack("{s:o}", "first_use", who_json(&tok->who));
		return false;
	}
	return true;
}

static bool check_clone(struct decider *d, struct conn *c, const struct policy_client *client,
			uint64_t now, struct decision *out)
{
	struct client_live *cl;
	struct hmap_iter it;
	json_t *live;
	void *val;
	char sender[300], first[300] = "";
	size_t n;

	json_t *remote[64];
	size_t n_remote = 0, i;

	if (!client->max_instances)
		return true;
	cl = client_live(d, client->name);
	if (!cl)
		return true;
	if (hmap__get(cl->instances, c->client->instance))
		return true;
	prune_instances(d, cl, now);
	if (d->has_fleet && d->fleet.remote_instances)
		n_remote = d->fleet.remote_instances(d->fleet.ctx, client->name, remote, 64);
	n = hmap__size(cl->instances) + n_remote;
	if (n < client->max_instances) {
		for (i = 0; i < n_remote; i++)
			json_decref(remote[i]);
		return true;
	}
	live = json_array();
	for (i = 0; i < n_remote; i++) {
		if (!first[0])
			snprintf(first, sizeof(first), "pid %lld (%s) in cgroup %s on node %s",
				 (long long)json_integer_value(json_object_get(remote[i], "pid")),
				 json_string_value(json_object_get(remote[i], "exe")) ?: "?",
				 json_string_value(json_object_get(remote[i], "cgroup")) ?: "?",
				 json_string_value(json_object_get(remote[i], "node")) ?: "?");
		json_array_append_new(live, remote[i]);
	}
	hmap__iter_init(cl->instances, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct decider_instance *in = val;

		if (!first[0])
			describe_who(&in->who, first, sizeof(first));
		json_array_append_new(live, who_json(&in->who));
	}
	describe(c->client, sender, sizeof(sender));
	finding(d, out, VERDICT_CLONE, POLICY_DENY);
	set_reason(out, "Client \"%s\" is already live in %zu workload instance%s (%s%s) and "
		   "max_instances is %u; the new instance %s was refused.", client->name, n,
		   n == 1 ? "" : "s", first, n > 1 ? ", ..." : "", client->max_instances, sender);
	out->related = json_pack("{s:o,s:i}", "live_instances", live, "max_instances",
				 (json_int_t)client->max_instances);
	return false;
}

/* c's workload instance holds client's identity (live while c is open). */
static void register_instance(struct decider *d, struct conn *c, const char *client, uint64_t now)
{
	struct client_live *cl = client_live(d, client);
	struct decider_instance *in;

	if (!cl)
		return;
	in = hmap__get(cl->instances, c->client->instance);
	if (!in && hmap__size(cl->instances) < DECISION_MAX_INSTANCES) {
		in = calloc(1, sizeof(*in));
		if (in) {
			who_set(&in->who, c->client);
			if (hmap__put(cl->instances, c->client->instance, in)) {
				who_free(&in->who);
				free(in);
				in = NULL;
			}
		}
	} else if (!in) {
		d->refused_instances++;
	}
	if (!in)
		return;
	in->last_ns = now;
	if (d->has_fleet && d->fleet.sighting)
		d->fleet.sighting(d->fleet.ctx, client, c->client);
	if (!c->instance_registered) {
		in->open_conns++;
		c->instance_registered = true;
		c->instance = c->client->instance;
		intern__put(c->instance_client);
		c->instance_client = intern__get(client);
	}
}

void decider__admit(struct decider *d, struct conn *c, const char *client, uint64_t now)
{
	register_instance(d, c, client, now);
}

/* How long a token stays bound to its first instance: until it expires,
 * at most DECISION_TOKEN_TTL_NS. */
static uint64_t token_ttl(const struct jwt_facts *t)
{
	long long left;

	if (!t->has_exp)
		return DECISION_TOKEN_TTL_NS;
	left = t->exp - (long long)time(NULL);
	if (left <= 0)
		return 60ull * 1000000000ull;	/* expired: keep it a minute */
	if ((unsigned long long)left > DECISION_TOKEN_TTL_NS / 1000000000ull)
		return DECISION_TOKEN_TTL_NS;
	return (uint64_t)left * 1000000000ull;
}

/* An allowed request updates the live state. */
static void record(struct decider *d, struct conn *c, const struct request *r,
		   const struct policy_client *client, const struct decider_ident *now_ident,
		   uint64_t now)
{
	const struct jwt_facts *t = &r->token;

	conn_set_ident(c, now_ident);
	if (client)
		register_instance(d, c, client->name, now);
	if (t->present) {
		char kbuf[BINDING_KEY_MAX];
		const char *key = token_key(t, kbuf);
		struct decider_token *tok = binding_get(d, BIND_TOKEN, key);

		if (!tok && binding_room(d, BIND_TOKEN, c->client->instance)) {
			tok = calloc(1, sizeof(*tok));
			if (tok) {
				who_set(&tok->who, c->client);
				tok->client = intern0(client ? client->name : NULL);
				tok->expires_ns = now + token_ttl(t);
				if (binding_add(d, BIND_TOKEN, &tok->b, key, tok->who.instance)) {
					token_free(tok);
					tok = NULL;
				}
			}
		} else if (!tok) {
			d->refused_tokens++;
		}
		if (tok) {
			tok->last_ns = now;
			binding_touch(BIND_TOKEN, &tok->b);
		}
	}
	if (r->session_key) {
		struct decider_session *s = binding_get(d, BIND_SESSION, r->session_key);

		if (!s && binding_room(d, BIND_SESSION, c->client->instance)) {
			/* Not seen issued (issued before the agent started, or
			 * its response was not seen): bound at first use. */
			s = calloc(1, sizeof(*s));
			if (s) {
				who_set(&s->who, c->client);
				if (binding_add(d, BIND_SESSION, &s->b, r->session_key,
						s->who.instance)) {
					session_free(s);
					s = NULL;
				}
			}
		} else if (!s) {
			d->refused_sessions++;
		}
		if (s) {
			s->last_ns = now;
			binding_touch(BIND_SESSION, &s->b);
			if (!s->has_ident) {
				s->has_ident = true;
				ident_copy(&s->ident, now_ident);
			}
		}
	}
}

void decider__session_client_info(struct decider *d, struct request *r)
{
	struct decider_session *s;
	const char *key;

	if (r->client_name || !(key = request_session_key(r)))
		return;
	s = binding_get(d, BIND_SESSION, key);
	if (s && s->client_name) {
		r->client_name = s->client_name;
		r->client_version = s->client_version;
		r->client_info_from_session = true;
	}
}

void decider__judge(struct decider *d, struct conn *c, struct request *r, uint64_t now,
		    struct decision *out)
{
	const struct policy *p = d->policy;
	const struct policy_client *client, *claimed;
	struct claim_view cv;
	struct decider_ident now_ident = {};
	char who[300], claims[400];
	bool untrusted;

	memset(out, 0, sizeof(*out));
	out->verdict = VERDICT_ALLOW;

	if (r->malformed) {
		finding(d, out, VERDICT_MALFORMED, POLICY_DENY);
		set_reason(out, "Malformed request (%s): %s", r->malformed, r->malformed_detail);
		return;
	}
	if (!c->client->attributed) {
		finding(d, out, VERDICT_UNATTRIBUTED, p->unattributed);
		set_reason(out, "The request could not be tied to a workload: %s.",
			   c->client->why_unattributed ? c->client->why_unattributed : "unknown");
		if (out->verdict == VERDICT_UNATTRIBUTED && !out->alert)
			out->verdict = VERDICT_ALLOW;
		return;
	}

	request_session_key(r);
	decider__session_client_info(d, r);
	claim_view(d, r, &cv, &untrusted);

	client = match_client(p, &cv, c->client, &claimed);
	if (!client) {
		/* Only findings need them in words. */
		claims_text(&cv, claims, sizeof(claims));
		describe(c->client, who, sizeof(who));
	}
	if (!client && !claimed) {
		finding(d, out, VERDICT_UNKNOWN_CLIENT, p->unknown_client);
		set_reason(out, "No policy client matches the claimed identity (%s%s), sent by %s.",
			   claims, untrusted ? "; the token's signature did not verify, so its "
			   "claims were ignored" : "", who);
		if (!out->alert)
			out->verdict = VERDICT_ALLOW;
		if (!out->deny) {
			/* Let through: the connection still keeps what it was. */
			ident_from(&now_ident, NULL, &cv);
			conn_set_ident(c, &now_ident);
		}
		return;
	}
	if (!client) {
		out->client = claimed;
		finding(d, out, VERDICT_MISMATCH, POLICY_DENY);
		set_reason(out, "The claimed identity (%s) belongs to client \"%s\", but it was "
			   "sent by %s, uid %u, which none of that client's workloads allows.",
			   claims, claimed->name, who, c->client->uid);
		return;
	}
	out->client = client;
	if (!policy_client__server_allowed(client, c->server_name)) {
		finding(d, out, VERDICT_SERVER_DENIED, POLICY_DENY);
		set_reason(out, "Client \"%s\" may not use server \"%s\".", client->name,
			   c->server_name ? c->server_name : "?");
		return;
	}
	if (!check_tools(d, client, r, out))
		return;

	ident_from(&now_ident, client->name, &cv);
	if (check_session(d, c, r, &now_ident, out) &&
	    check_conn_ident(d, c, &now_ident, out) &&
	    check_token(d, c, r, out) &&
	    check_clone(d, c, client, now, out)) {
		d->verdicts[VERDICT_ALLOW]++;
		record(d, c, r, client, &now_ident, now);
	}
}

void decider__memo_clear(struct decider_memo *m)
{
	if (m->ident) {
		ident_free(m->ident);
		free(m->ident);
	}
	intern__put(m->server);
	memset(m, 0, sizeof(*m));
}

/* Another reference to each of src's interned strings. */
static void ident_ref(struct decider_ident *dst, const struct decider_ident *src)
{
	dst->client = src->client ? intern__ref(src->client) : NULL;
	dst->iss = src->iss ? intern__ref(src->iss) : NULL;
	dst->sub = src->sub ? intern__ref(src->sub) : NULL;
	dst->client_id = src->client_id ? intern__ref(src->client_id) : NULL;
	dst->azp = src->azp ? intern__ref(src->azp) : NULL;
	dst->ci_name = src->ci_name ? intern__ref(src->ci_name) : NULL;
}

/* Keeps the allowed judgment of r on c in m, when what it read can be
 * found again by reference: the session, the token's binding and the
 * instance (all made by record() if they were new). */
static void memo_fill(struct decider *d, struct conn *c, const struct request *r,
		      const struct policy_client *pc, struct decider_memo *m)
{
	struct claim_view cv;
	struct decider_ident now;
	struct client_live *cl;
	char kbuf[BINDING_KEY_MAX];
	bool untrusted;

	if (!c->ident || !c->instance_registered || c->instance != c->client->instance)
		return;
	if (r->session_id && !(r->session_key && (m->sess = binding_get(d, BIND_SESSION,
									  r->session_key))))
		return;
	if (r->token.present) {
		m->tok = binding_get(d, BIND_TOKEN, token_key(&r->token, kbuf));
		if (!m->tok || m->tok->who.instance != c->client->instance)
			return;
	}
	cl = hmap__sget(d->clients, pc->name);
	m->inst = cl ? hmap__get(cl->instances, c->instance) : NULL;
	m->ident = calloc(1, sizeof(*m->ident));
	if (!m->inst || !m->ident)
		return;
	/* The identity judged (the connection's own may be older). */
	claim_view(d, r, &cv, &untrusted);
	ident_from(&now, pc->name, &cv);
	ident_copy(m->ident, &now);
	m->server = intern0(c->server_name);
	m->pc = pc;
	m->clients[0] = workload__id(c->client);
	m->gen = d->gen;
}

/* Both interned (ident_copy, ident_ref): equal strings, equal pointers. */
static bool ident_equal(const struct decider_ident *a, const struct decider_ident *b)
{
	return a->client == b->client && a->iss == b->iss && a->sub == b->sub &&
	       a->client_id == b->client_id && a->azp == b->azp && a->ci_name == b->ci_name;
}

/* A workload m was made for (by id: ids are never reused). */
static bool memo_knows(const struct decider_memo *m, uint64_t id)
{
	size_t i;

	for (i = 0; i < DECIDER_MEMO_CLIENTS; i++)
		if (m->clients[i] == id)
			return true;
	return false;
}

/*
 * After a full judgment that allowed r on c: keeps it in m. When m holds
 * a judgment that read the very same things for another workload of the
 * same instance (the threads of one process are workloads of their own),
 * c's workload joins it instead of replacing it.
 */
static void memo_keep(struct decider *d, struct conn *c, const struct request *r,
		      const struct policy_client *pc, struct decider_memo *m)
{
	struct decider_memo t = {};

	memo_fill(d, c, r, pc, &t);
	if (t.gen && m->gen == t.gen && m->pc == t.pc && m->server == t.server &&
	    m->sess == t.sess && m->tok == t.tok && m->inst == t.inst &&
	    ident_equal(m->ident, t.ident)) {
		m->clients[m->next_client++ % DECIDER_MEMO_CLIENTS] = t.clients[0];
		decider__memo_clear(&t);
		return;
	}
	decider__memo_clear(m);
	*m = t;
	m->next_client = 1;
}

static bool same_name(const char *kept, const char *now)
{
	if (!now || !*now)
		return !kept;
	return kept && strcmp(kept, now) == 0;
}

void decider__judge_again(struct decider *d, struct conn *c, struct request *r, uint64_t now,
			  struct decision *out, struct decider_memo *m)
{
	const char *what;

	if (m->gen == d->gen && memo_knows(m, workload__id(c->client)) && !r->malformed &&
	    !r->session_id == !m->sess && !r->token.present == !m->tok &&
	    same_name(m->server, c->server_name) &&
	    (!c->instance_registered || c->instance == c->client->instance) &&
	    (!c->ident || ident_equal(c->ident, m->ident) ||
	     !ident_differs(c->ident, m->ident, &what))) {
		if (!r->client_name && m->sess && m->sess->client_name) {
			r->client_name = m->sess->client_name;
			r->client_version = m->sess->client_version;
			r->client_info_from_session = true;
		}
		if (same_name(m->ident->ci_name, r->client_name)) {
			/* The identity checks read what they read last
			 * time: only the tools are the body's own. */
			memset(out, 0, sizeof(*out));
			out->verdict = VERDICT_ALLOW;
			out->client = m->pc;
			if (!check_tools(d, m->pc, r, out))
				return;
			d->verdicts[VERDICT_ALLOW]++;
			/* record(): a new connection of the workload takes
			 * the identity and counts as the instance's. */
			if (!c->ident && (c->ident = calloc(1, sizeof(*c->ident))))
				ident_ref(c->ident, m->ident);
			if (!c->instance_registered) {
				m->inst->open_conns++;
				c->instance_registered = true;
				c->instance = c->client->instance;
				intern__put(c->instance_client);
				c->instance_client = intern__ref(m->ident->client);
			}
			m->inst->last_ns = now;
			if (d->has_fleet && d->fleet.sighting)
				d->fleet.sighting(d->fleet.ctx, m->pc->name, c->client);
			if (m->tok) {
				m->tok->last_ns = now;
				binding_touch(BIND_TOKEN, &m->tok->b);
			}
			if (m->sess) {
				m->sess->last_ns = now;
				binding_touch(BIND_SESSION, &m->sess->b);
			}
			d->memo_hits++;
			return;
		}
	}
	decider__judge(d, c, r, now, out);
	if (out->verdict == VERDICT_ALLOW && !out->alert && out->client)
		memo_keep(d, c, r, out->client, m);
	else
		decider__memo_clear(m);
}

void decider__session_issued(struct decider *d, const char *sid, const struct conn *c,
			     uint64_t now)
{
	char skey[BINDING_KEY_MAX];
	struct decider_session *s;

	if (!(sid = binding_key(sid, skey)))
		return;
	s = binding_get(d, BIND_SESSION, sid);

	if (s && s->issued)
		return;	/* a server does not issue one id twice */
	if (!s) {
		if (!binding_room(d, BIND_SESSION, c->client->instance)) {
			d->refused_sessions++;
			return;
		}
		s = calloc(1, sizeof(*s));
		if (!s)
			return;
		if (binding_add(d, BIND_SESSION, &s->b, sid, c->client->instance)) {
			free(s);
			return;
		}
	} else {
		/* Bound again, to the issuing connection. */
		owner_unlink(d, BIND_SESSION, &s->b);
		if (owner_link(d, BIND_SESSION, &s->b, c->client->instance)) {
			binding_drop(d, BIND_SESSION, &s->b);
			return;
		}
		who_free(&s->who);
		d->gen++;
	}
	who_set(&s->who, c->client);
	s->issued = true;
	s->last_ns = now;
	intern__put(s->client_name);
	intern__put(s->client_version);
	s->client_name = intern0(c->init_client_name);
	s->client_version = intern0(c->init_client_version);
}

void decider__session_ended(struct decider *d, const char *sid)
{
	char skey[BINDING_KEY_MAX];
	struct decider_session *s;

	if (!(sid = binding_key(sid, skey)))
		return;
	s = binding_get(d, BIND_SESSION, sid);
	if (s)
		binding_drop(d, BIND_SESSION, &s->b);
}

void decider__conn_closed(struct decider *d, struct conn *c, uint64_t now)
{
	struct client_live *cl;
	struct decider_instance *in;

	if (!c->instance_registered || !c->instance_client)
		return;
	cl = hmap__sget(d->clients, c->instance_client);
	if (!cl)
		return;
	in = hmap__get(cl->instances, c->instance);
	if (in && in->open_conns) {
		in->open_conns--;
		in->last_ns = now;
	}
	c->instance_registered = false;
}

const char *decider__conn_client(const struct conn *c)
{
	return c->instance_registered ? c->instance_client : NULL;
}

void decider__conn_release(struct conn *c)
{
	intern__put(c->instance_client);
	c->instance_client = NULL;
	if (c->ident) {
		ident_free(c->ident);
		free(c->ident);
		c->ident = NULL;
	}
}

void decider__expire(struct decider *d, uint64_t now)
{
	struct hmap_iter it;
	void *val;

	hmap__iter_init(d->tokens, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct decider_token *t = val;

		if (now > t->expires_ns)
			binding_drop(d, BIND_TOKEN, &t->b);
	}
	hmap__iter_init(d->sessions, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct decider_session *s = val;

		if (now - s->last_ns > DECISION_SESSION_IDLE_NS)
			binding_drop(d, BIND_SESSION, &s->b);
	}
	hmap__iter_init(d->clients, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val))
		prune_instances(d, val, now);
}

void decider__stats(const struct decider *d, struct decider_stats *s)
{
	struct hmap_iter it;
	void *val;

	memset(s, 0, sizeof(*s));
	s->sessions = hmap__size(d->sessions);
	s->tokens = hmap__size(d->tokens);
	hmap__iter_init(d->clients, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val))
		s->instances += hmap__size(((struct client_live *)val)->instances);
	s->refused_sessions = d->refused_sessions;
	s->refused_tokens = d->refused_tokens;
	s->refused_instances = d->refused_instances;
	s->evicted_sessions = d->evicted[BIND_SESSION];
	s->evicted_tokens = d->evicted[BIND_TOKEN];
	s->repeated = d->memo_hits;
	memcpy(s->verdicts, d->verdicts, sizeof(s->verdicts));
}

/* ---- snapshot ---------------------------------------------------------- */

static void boot_id(char *buf, size_t len)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");

	buf[0] = '\0';
	if (f) {
		if (!fgets(buf, (int)len, f))
			buf[0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		fclose(f);
	}
}

static void who_load(struct who *w, json_t *o)
{
	w->instance = (uint64_t)json_integer_value(json_object_get(o, "instance"));
	w->cgroup_id = (uint64_t)json_integer_value(json_object_get(o, "cgroup_id"));
	w->node = intern__get(json_string_value(json_object_get(o, "node")));
	w->pid = (uint32_t)json_integer_value(json_object_get(o, "pid"));
	w->exe = intern__get(json_string_value(json_object_get(o, "exe")));
	w->cgroup = intern__get(json_string_value(json_object_get(o, "cgroup")));
}

static void ident_load(struct decider_ident *i, json_t *o)
{
	i->client = intern0(json_string_value(json_object_get(o, "client")));
	i->iss = intern0(json_string_value(json_object_get(o, "iss")));
	i->sub = intern0(json_string_value(json_object_get(o, "sub")));
	i->client_id = intern0(json_string_value(json_object_get(o, "client_id")));
	i->azp = intern0(json_string_value(json_object_get(o, "azp")));
	i->ci_name = intern0(json_string_value(json_object_get(o, "ci_name")));
}

/*
 * The state file, written as text one entry at a time: with tens of
 * thousands of sessions a whole tree would be tens of MiB of heap, and
 * building and dumping jansson objects per entry cost ~14 us a session
 * (136 ms every 5 s with 10k sessions, on the event loop). Strings go
 * through json_escape_string: a byte that starts no valid UTF-8 sequence
 * (a header may carry obs-text) is saved as U+FFFD rather than failing the
 * whole save, as jansson's json_string() did.
 */
struct state_out {
	int fd;
	bool ok;
	int err;		/* why not ok */
	char last;		/* the last byte put: '{' or '[' needs no comma */
	size_t len;
	char buf[64 * 1024];	/* written out whole: a few syscalls a save */
};

static void out_flush(struct state_out *o)
{
	size_t off = 0;

	while (o->ok && off < o->len) {
		ssize_t n = write(o->fd, o->buf + off, o->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			o->ok = false;
			o->err = n < 0 ? errno : EIO;
		} else {
			off += (size_t)n;
		}
	}
	o->len = 0;
}

static void out_put(void *ctx, const char *p, size_t n)
{
	struct state_out *o = ctx;

	if (n)
		o->last = p[n - 1];
	while (o->ok && n) {
		size_t room = sizeof(o->buf) - o->len, k = n < room ? n : room;

		memcpy(o->buf + o->len, p, k);
		o->len += k;
		p += k;
		n -= k;
		if (o->len == sizeof(o->buf))
			out_flush(o);
	}
}

/* A comma, unless right after an opening brace or bracket. */
static void out_sep(struct state_out *o)
{
	if (o->last != '{' && o->last != '[')
		out_put(o, ",", 1);
}

/* ,"key": with the key escaped (session ids and token hashes are keys). */
static void out_key(struct state_out *o, const char *key)
{
	out_sep(o);
	json_escape_string(key, out_put, o);
	out_put(o, ":", 1);
}

/* An object as a member (key) or as an array element (key NULL). */
static void out_open(struct state_out *o, const char *key)
{
	if (key)
		out_key(o, key);
	else
		out_sep(o);
	out_put(o, "{", 1);
}

/* A string, or null as json_pack's "s?" writes a NULL. */
static void out_str(struct state_out *o, const char *key, const char *val)
{
	out_key(o, key);
	if (val)
		json_escape_string(val, out_put, o);
	else
		out_put(o, "null", 4);
}

static void out_int(struct state_out *o, const char *key, long long v)
{
	out_key(o, key);
	json_put_int(v, out_put, o);
}

static void out_who(struct state_out *o, const struct who *w)
{
	out_open(o, "who");
	out_int(o, "instance", (long long)w->instance);
	out_int(o, "cgroup_id", (long long)w->cgroup_id);
	out_int(o, "pid", (int)w->pid);
	out_str(o, "exe", w->exe);
	out_str(o, "cgroup", w->cgroup);
	out_str(o, "node", w->node);
	out_put(o, "}", 1);
}

static void out_ident(struct state_out *o, const struct decider_ident *i)
{
	out_open(o, "ident");
	out_str(o, "client", i->client);
	out_str(o, "iss", i->iss);
	out_str(o, "sub", i->sub);
	out_str(o, "client_id", i->client_id);
	out_str(o, "azp", i->azp);
	out_str(o, "ci_name", i->ci_name);
	out_put(o, "}", 1);
}

/* o's sessions, its least recently used first. */
static void save_sessions(struct state_out *out, const struct owner *o)
{
	const struct lru_link *l;

	for (l = o->lru[BIND_SESSION].next; out->ok && l != &o->lru[BIND_SESSION]; l = l->next) {
		const struct decider_session *se = (const void *)binding_of(l);

		out_open(out, se->b.key);
		out_who(out, &se->who);
		out_key(out, "issued");
		out_put(out, se->issued ? "true" : "false", se->issued ? 4 : 5);
		out_str(out, "client_name", se->client_name);
		out_str(out, "client_version", se->client_version);
		out_int(out, "last_ns", (long long)se->last_ns);
		if (se->has_ident)
			out_ident(out, &se->ident);
		out_put(out, "}", 1);
	}
}

static void save_tokens(struct state_out *out, const struct owner *o)
{
	const struct lru_link *l;

	for (l = o->lru[BIND_TOKEN].next; out->ok && l != &o->lru[BIND_TOKEN]; l = l->next) {
		const struct decider_token *t = (const void *)binding_of(l);

		out_open(out, t->b.key);
		out_who(out, &t->who);
		out_str(out, "client", t->client);
		out_int(out, "expires_ns", (long long)t->expires_ns);
		out_int(out, "last_ns", (long long)t->last_ns);
		out_put(out, "}", 1);
	}
}

int decider__save(const struct decider *d, const char *path, uint64_t now)
{
	struct state_out *out = malloc(sizeof(*out));	/* its buffer: 64 KiB */
	struct hmap_iter it;
	const char *key;
	char tmp[4096], boot[64];
	void *val;
	int err = 0;

	if (!out)
		return -ENOMEM;
	boot_id(boot, sizeof(boot));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	/* Session ids and token bindings: root's eyes only. */
	out->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out->fd < 0) {
		err = -errno;
		free(out);
		return err;
	}
	out->ok = true;
	out->err = 0;
	out->len = 0;
	out->last = 0;
	out_put(out, "{", 1);
	out_int(out, "version", 1);
	out_str(out, "boot_id", boot);
	out_int(out, "saved_ns", (long long)now);
	/* By instance, each one's least recently used first (decider__load). */
	out_open(out, "sessions");
	hmap__iter_init(d->owners, &it);
	while (out->ok && hmap__iter_next(&it, NULL, NULL, &val))
		save_sessions(out, val);
	out_put(out, "}", 1);
	out_open(out, "tokens");
	hmap__iter_init(d->owners, &it);
	while (out->ok && hmap__iter_next(&it, NULL, NULL, &val))
		save_tokens(out, val);
	out_put(out, "}", 1);
	out_open(out, "clients");
	hmap__iter_init(d->clients, &it);
	while (out->ok && hmap__iter_next(&it, NULL, &key, &val)) {
		const struct client_live *cl = val;
		struct hmap_iter it2;
		void *v2;

		out_key(out, key);
		out_put(out, "[", 1);
		hmap__iter_init(cl->instances, &it2);
		while (out->ok && hmap__iter_next(&it2, NULL, NULL, &v2)) {
			const struct decider_instance *ins = v2;

			out_open(out, NULL);
			out_who(out, &ins->who);
			out_int(out, "last_ns", (long long)ins->last_ns);
			out_put(out, "}", 1);
		}
		out_put(out, "]", 1);
	}
	out_put(out, "}}", 2);
	out_flush(out);
	if (close(out->fd) && out->ok) {
		out->ok = false;
		out->err = errno;
	}
	if (out->ok && rename(tmp, path)) {
		out->ok = false;
		out->err = errno;
	}
	if (!out->ok) {
		unlink(tmp);
		err = -(out->err ? out->err : EIO);
	}
	free(out);
	return err;
}

int decider__load(struct decider *d, const char *path, uint64_t now)
{
	char boot[64], kbuf[BINDING_KEY_MAX];
	const char *key, *bkey;
	json_t *root, *o, *v;
	size_t i;

	root = json_load_file(path, 0, NULL);
	if (!root)
		return -ENOENT;
	boot_id(boot, sizeof(boot));
	if (json_integer_value(json_object_get(root, "version")) != 1 ||
	    strcmp(json_string_value(json_object_get(root, "boot_id")) ?: "", boot) != 0) {
		json_decref(root);
		return -ESTALE;
	}
	/* In the order saved, each instance's least recently used first, so
	 * that their lists come back in that order. A key of an older
	 * agent's that is too long is hashed as a new one would be. */
	json_object_foreach(json_object_get(root, "sessions"), key, o) {
		struct decider_session *se;

		if (!(bkey = binding_key(key, kbuf)) || binding_get(d, BIND_SESSION, bkey))
			continue;
		se = calloc(1, sizeof(*se));
		if (!se)
			break;
		who_load(&se->who, json_object_get(o, "who"));
		if (!binding_room(d, BIND_SESSION, se->who.instance) ||
		    binding_add(d, BIND_SESSION, &se->b, bkey, se->who.instance)) {
			session_free(se);
			continue;
		}
		se->issued = json_is_true(json_object_get(o, "issued"));
		se->client_name = intern0(json_string_value(json_object_get(o, "client_name")));
		se->client_version = intern0(json_string_value(json_object_get(o, "client_version")));
		se->last_ns = (uint64_t)json_integer_value(json_object_get(o, "last_ns"));
		if ((v = json_object_get(o, "ident"))) {
			se->has_ident = true;
			ident_load(&se->ident, v);
		}
	}
	json_object_foreach(json_object_get(root, "tokens"), key, o) {
		struct decider_token *t;

		if (!(bkey = binding_key(key, kbuf)) || binding_get(d, BIND_TOKEN, bkey))
			continue;
		t = calloc(1, sizeof(*t));
		if (!t)
			break;
		who_load(&t->who, json_object_get(o, "who"));
		if (!binding_room(d, BIND_TOKEN, t->who.instance) ||
		    binding_add(d, BIND_TOKEN, &t->b, bkey, t->who.instance)) {
			token_free(t);
			continue;
		}
		t->client = intern0(json_string_value(json_object_get(o, "client")));
		t->expires_ns = (uint64_t)json_integer_value(json_object_get(o, "expires_ns"));
		t->last_ns = (uint64_t)json_integer_value(json_object_get(o, "last_ns"));
	}
	json_object_foreach(json_object_get(root, "clients"), key, o) {
		struct client_live *cl = client_live(d, key);

		json_array_foreach(o, i, v) {
			struct decider_instance *in;

			if (!cl || hmap__size(cl->instances) >= DECISION_MAX_INSTANCES)
				break;
			in = calloc(1, sizeof(*in));
			if (!in)
				break;
			who_load(&in->who, json_object_get(v, "who"));
			/* Live for a full window from now: the restart
			 * must not let a newcomer in. */
			in->last_ns = now;
			if (hmap__get(cl->instances, in->who.instance) ||
			    hmap__put(cl->instances, in->who.instance, in)) {
				who_free(&in->who);
				free(in);
			}
		}
	}
	json_decref(root);
	d->gen++;
	return 0;
}
