/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Events out (PRODUCT.md "Events"): every event gets `time` (RFC 3339,
 * UTC, microseconds), `kind` and `node`, then goes to every sink. The
 * native sink writes JSON Lines to stdout or appends to a file. Writing
 * never blocks verdicts for long: a sink that cannot keep up drops events
 * and the drops are counted and reported.
 */
#ifndef MCPW_OUTPUT_H
#define MCPW_OUTPUT_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

struct output;

struct output_stats {
	uint64_t events;
	uint64_t dropped;
	uint64_t by_kind[8];	/* enum output_kind order */
};

struct output *output__new(const char *node);
void output__free(struct output *o);

/* "-" for stdout, or a file path (appended). 0 or -errno, message in err. */
int output__add_jsonl(struct output *o, const char *target, char *err, size_t errlen);

/* An extra sink: gets every finished event (after time/kind/node). */
typedef void (*output_sink_fn)(void *ctx, const char *kind, json_t *event);
int output__add_sink(struct output *o, output_sink_fn fn, void *ctx);

/* Adds time/kind/node to ev (stolen) and writes it. */
void output__emit(struct output *o, const char *kind, json_t *ev);
void output__flush(struct output *o);
void output__stats(const struct output *o, struct output_stats *s);

/* RFC 3339 UTC with microseconds, into buf (>= 32 bytes). */
void output__time(char *buf, size_t len);

#endif
