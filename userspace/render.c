// SPDX-License-Identifier: GPL-2.0
/* Event text reused across events (render.h). */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "hmap.h"
#include "render.h"

struct render_slot {
	uint64_t cookie;	/* 0: empty */
	uint32_t gen;		/* the conn's render_gen it was made from */
	size_t conn_len;
	char conn[CONN_TEXT_MAX];	/* connection JSON */
};

/* A claim and what it was made from (its key): a client's connections
 * and requests usually claim the same. */
struct claim_render {
	char *key, *text;
	size_t key_len, len;
};

struct wl_render {
	uint64_t from;		/* workload__id() it was rendered from */
	char *text;		/* NULL: empty */
	size_t len;
};

struct render {
	struct render_slot conn[RENDER_CONN_SLOTS];
	struct wl_render wl[RENDER_WL_SLOTS];
	struct claim_render claim[RENDER_CLAIM_SLOTS];
	uint64_t workloads_rendered, workloads_reused;
};

static void claim_clear(struct claim_render *cr)
{
	free(cr->key);
	free(cr->text);
	memset(cr, 0, sizeof(*cr));
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

/* r's claim as JSON text, kept by what it was made from. */
bool render__claim(struct render *rc, const struct request *r, struct output_raw *raw)
{
	char key[CLAIM_KEY_MAX];
	struct claim_render *cr;
	size_t klen;
	json_t *o;
	char *text;

	if (!claim_key(r, key, &klen))
		return false;
	cr = &rc->claim[hmap__hash_bytes(key, klen) % RENDER_CLAIM_SLOTS];
	if (!cr->text || cr->key_len != klen || memcmp(cr->key, key, klen)) {
		claim_clear(cr);
		o = request__claim_json(r);
		text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		json_decref(o);
		cr->key = text ? malloc(klen) : NULL;
		if (!cr->key) {
			free(text);
			return false;
		}
		memcpy(cr->key, key, klen);
		cr->key_len = klen;
		cr->text = text;
		cr->len = strlen(text);
	}
	*raw = (struct output_raw){ "claim", cr->text, cr->len };
	return true;
}

void render__forget(struct render *rc, uint64_t cookie)
{
	struct render_slot *s = rc ? &rc->conn[cookie % RENDER_CONN_SLOTS] : NULL;

	if (s && s->cookie == cookie)
		s->cookie = 0;
}


static void wl_render_clear(struct wl_render *r)
{
	free(r->text);
	memset(r, 0, sizeof(*r));
}

/* Client workloads use the first half of the slots, server workloads the
 * second: one event's two renderings never evict each other. */
bool render__workload(struct render *rc, bool server, const struct workload *w,
		      struct output_raw *raw)
{
	uint64_t id = workload__id(w);
	const char *key = server ? "server_workload" : "workload";
	struct wl_render *r;
	json_t *o;

	r = &rc->wl[(server ? RENDER_WL_SLOTS / 2 : 0) + id % (RENDER_WL_SLOTS / 2)];
	if (r->text && r->from == id) {
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
		r->from = id;
	}
	*raw = (struct output_raw){ key, r->text, r->len };
	return true;
}

/* The workload and connection members of c's events. */
bool render__conn(struct render *rc, const struct conn *c, struct output_raw raw[2])
{
	struct render_slot *s;

	if (!render__workload(rc, false, c->client, &raw[0]))
		return false;
	s = &rc->conn[c->cookie % RENDER_CONN_SLOTS];
	if (s->cookie != c->cookie || s->gen != c->render_gen) {
		s->cookie = 0;
		s->conn_len = conn__text(c, s->conn, sizeof(s->conn));
		if (!s->conn_len)
			return false;
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
	for (i = 0; i < RENDER_WL_SLOTS; i++)
		wl_render_clear(&rc->wl[i]);
	for (i = 0; i < RENDER_CLAIM_SLOTS; i++)
		claim_clear(&rc->claim[i]);
	free(rc);
}

void render__stats(const struct render *rc, uint64_t *rendered, uint64_t *reused)
{
	*rendered = rc ? rc->workloads_rendered : 0;
	*reused = rc ? rc->workloads_reused : 0;
}
