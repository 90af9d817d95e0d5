/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Event text reused across events. A connection's workload, connection and
 * (usually) claim members are the same in every event about it, and all the
 * connections of one process, or to one server, carry the same workload:
 * each is rendered as compact JSON once and spliced into event lines
 * (oline__raw()). Bounded: RENDER_CONN_SLOTS connections by cookie,
 * RENDER_WL_SLOTS workloads (half for clients, half for servers); an older
 * entry is simply rendered again.
 */
#ifndef MCPW_RENDER_H
#define MCPW_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "output.h"
#include "request.h"
#include "workload.h"

#define RENDER_CONN_SLOTS 256
#define RENDER_WL_SLOTS 64
#define RENDER_CLAIM_SLOTS 64

struct render;

struct render *render__new(void);
void render__free(struct render *r);

/*
 * w, a shared workload (workload__share), as the "workload" member (server
 * false) or "server_workload" (true). The rendering is kept by w's
 * workload__id(): equal workloads are one shared copy, so the same id
 * means the same rendering, and a changed workload (pod metadata, fleet
 * attestation) is another copy with another id and renders anew. raw
 * stays valid until the next call with the same `server`.
 */
bool render__workload(struct render *r, bool server, const struct workload *w,
		      struct output_raw *raw);
/*
 * raw[0] c's client workload (as above), raw[1] its "connection" member,
 * kept per cookie until c->render_gen changes. Valid until the next
 * render__conn().
 */
bool render__conn(struct render *r, const struct conn *c, struct output_raw raw[2]);
/*
 * req's "claim" member, kept (RENDER_CLAIM_SLOTS) with the inputs it was
 * rendered from, for every connection that claims the same. Valid until
 * the next render__claim().
 */
bool render__claim(struct render *r, const struct request *req, struct output_raw *raw);
/* Drops what is kept for a closed connection. */
void render__forget(struct render *r, uint64_t cookie);
/* Workloads rendered, and renderings reused, since render__new(). */
void render__stats(const struct render *r, uint64_t *rendered, uint64_t *reused);

#endif
