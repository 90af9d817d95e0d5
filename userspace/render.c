// SPDX-License-Identifier: GPL-2.0
/* Event text reused across events (render.h). */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "render.h"

struct render_slot {
	uint64_t cookie;	/* 0: empty */
	uint32_t gen;		/* the conn's render_gen it was made from */
	char *conn;		/* connection JSON */
	size_t conn_len;
	/* The last claim rendered on the connection, and what it was made
	 * from (claim_key): its next requests usually claim the same. */
	char *claim_key, *claim;
	size_t claim_key_len, claim_len;
};

struct wl_render {
	struct workload from;
	char *text;		/* NULL: empty */
	size_t len;
};

struct render {
	struct render_slot conn[RENDER_CONN_SLOTS];
	struct wl_render wl[RENDER_WL_SLOTS];
	uint64_t workloads_rendered, workloads_reused;
};

static void render_clear(struct render_slot *s)
{
	free(s->conn);
	free(s->claim_key);
	free(s->claim);
	memset(s, 0, sizeof(*s));
}

#define CLAIM_KEY_MAX 2048

static bool key_add(char *buf, size_t *at, const char *str)
{
	uint32_t n = str ? (uint32_t)strlen(str) : UINT32_MAX;
	size_t need = sizeof(n) + (str ? n : 0);

	if (*at + need > CLAIM_KEY_MAX)
		return false;
	memcpy(buf + *at, &n, sizeof(n));
	if (str)
		memcpy(buf + *at + sizeof(n), str, n);
	*at += need;
	return true;
}

/* Everything request__claim_json() reads from r: the token is known by
 * its digest (its facts follow from its bytes) and signature verdict. */
static bool claim_key(const struct request *r, char *buf, size_t *len)
{
	char flags[4] = { r->token.present ? 'T' : '-', (char)('0' + r->token.sig),
			  r->client_info_from_session ? 'S' : '-', 0 };

	*len = 0;
	return key_add(buf, len, flags) && key_add(buf, len, r->token.sha256) &&
	       key_add(buf, len, r->session_id) && key_add(buf, len, r->protocol_version) &&
	       key_add(buf, len, r->user_agent) && key_add(buf, len, r->client_name) &&
	       key_add(buf, len, r->client_version);
}

/* r's claim as JSON text, from the connection's slot when it is the same. */
bool render__claim(struct render *rc, const struct conn *c, const struct request *r,
		   struct output_raw *raw)
{
	struct render_slot *s = &rc->conn[c->cookie % RENDER_CONN_SLOTS];
	char key[CLAIM_KEY_MAX];
	size_t klen;
	json_t *o;
	char *text;

	if (s->cookie != c->cookie || !claim_key(r, key, &klen))
		return false;
	if (!s->claim || s->claim_key_len != klen || memcmp(s->claim_key, key, klen)) {
		o = request__claim_json(r);
		text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		json_decref(o);
		if (!text)
			return false;
		free(s->claim);
		free(s->claim_key);
		s->claim = text;
		s->claim_len = strlen(text);
		s->claim_key = malloc(klen);
		s->claim_key_len = klen;
		if (!s->claim_key) {
			free(s->claim);
			s->claim = NULL;
			return false;
		}
		memcpy(s->claim_key, key, klen);
	}
	*raw = (struct output_raw){ "claim", s->claim, s->claim_len };
	return true;
}

void render__forget(struct render *rc, uint64_t cookie)
{
	struct render_slot *s = rc ? &rc->conn[cookie % RENDER_CONN_SLOTS] : NULL;

	if (s && s->cookie == cookie)
		render_clear(s);
}


static void wl_render_clear(struct wl_render *r)
{
	free(r->text);
	workload__release(&r->from);
	memset(r, 0, sizeof(*r));
}

/* Client workloads use the first half of the slots, server workloads the
 * second: one event's two renderings never evict each other. */
bool render__workload(struct render *rc, bool server, const struct workload *w,
		      struct output_raw *raw)
{
	uint64_t h = ((uint64_t)w->pid << 32 | w->tid) ^ w->start_ns ^ (w->cgroup_id << 7) ^
		     (uint64_t)(uintptr_t)w->pod ^ w->instance;
	const char *key = server ? "server_workload" : "workload";
	struct wl_render *r;
	json_t *o;

	r = &rc->wl[(server ? RENDER_WL_SLOTS / 2 : 0) +
			  (h ^ (h >> 29)) % (RENDER_WL_SLOTS / 2)];
	if (r->text && memcmp(&r->from, w, sizeof(*w)) == 0) {
		rc->workloads_reused++;
	} else {
		rc->workloads_rendered++;
		wl_render_clear(r);
		o = workload__json(w);
		r->text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		json_decref(o);
		if (!r->text)
			return false;
		r->len = strlen(r->text);
		workload__copy(&r->from, w);
	}
	*raw = (struct output_raw){ key, r->text, r->len };
	return true;
}

/* The workload and connection members of c's events. */
bool render__conn(struct render *rc, const struct conn *c, struct output_raw raw[2])
{
	struct render_slot *s;

	if (!render__workload(rc, false, &c->client, &raw[0]))
		return false;
	s = &rc->conn[c->cookie % RENDER_CONN_SLOTS];
	if (s->cookie != c->cookie || s->gen != c->render_gen) {
		json_t *k = conn__json(c);
		char *kt = k ? json_dumps(k, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

		json_decref(k);
		if (!kt)
			return false;
		render_clear(s);
		s->conn = kt;
		s->conn_len = strlen(kt);
		s->cookie = c->cookie;
		s->gen = c->render_gen;
	}
	raw[1] = (struct output_raw){ "connection", s->conn, s->conn_len };
	return true;
}

struct render *render__new(void)
{
	return calloc(1, sizeof(struct render));
}

void render__free(struct render *rc)
{
	size_t i;

	if (!rc)
		return;
	for (i = 0; i < RENDER_CONN_SLOTS; i++)
		render_clear(&rc->conn[i]);
	for (i = 0; i < RENDER_WL_SLOTS; i++)
		wl_render_clear(&rc->wl[i]);
	free(rc);
}

void render__stats(const struct render *rc, uint64_t *rendered, uint64_t *reused)
{
	*rendered = rc ? rc->workloads_rendered : 0;
	*reused = rc ? rc->workloads_reused : 0;
}
