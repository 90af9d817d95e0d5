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
	uint64_t dropped;	/* not written anywhere asked: every cause */
	uint64_t by_kind[8];	/* enum output_kind order */
	/* Lines an events stream's write(2) failed for (a full disk, a
	 * closed pipe), the last error and the stream's name. */
	uint64_t write_lost;
	int write_errno;
	const char *write_failed_on;
	/* Events files found moved or removed and opened again at their path
	 * (output__reopen_moved), and the last error doing so. */
	uint64_t reopened;
	int reopen_errno;
};

struct output *output__new(const char *node);
void output__free(struct output *o);

/* "-" for stdout, or a file path (appended). 0 or -errno, message in err. */
int output__add_jsonl(struct output *o, const char *target, char *err, size_t errlen);

/* An extra sink: gets every finished event (after time/kind/node), and
 * the native JSON line already made of it (compact, no newline, len
 * bytes and a NUL), so a sink that writes the native format does not format again. */
typedef void (*output_sink_fn)(void *ctx, const char *kind, json_t *event,
			       const char *line, size_t len);
int output__add_sink(struct output *o, output_sink_fn fn, void *ctx);
/* A sink that only reads the line: its event argument is NULL. */
int output__add_line_sink(struct output *o, output_sink_fn fn, void *ctx);
/* A sink that reads the object of some kinds only (needs(ctx, kind)): the
 * line is parsed back into an object only when a sink needs it, and the
 * others get NULL. At thousands of request events a second, parsing each
 * back for a sink that writes alerts alone was the output's largest cost. */
typedef bool (*output_needs_fn)(void *ctx, const char *kind);
int output__add_sink_needs(struct output *o, output_sink_fn fn, output_needs_fn needs,
			   void *ctx);

/* Adds time/kind/node to ev (stolen) and writes it. */
void output__emit(struct output *o, const char *kind, json_t *ev);

/* A member already rendered as compact JSON text (len bytes), e.g. a
 * connection's workload, which stays the same for all its requests
 * (written with oline__raw()). */
struct output_raw {
	const char *key;
	const char *json;
	size_t len;
};
/*
 * An event written as text, member by member, for the events sent most
 * often (requests, alerts, connections): no object is built unless a sink
 * reads objects. output__begin() stamps time/kind/node into the output's
 * one line buffer; members follow in order; output__end() sends it.
 * Strings are escaped as JSON (invalid UTF-8 becomes U+FFFD). One line is
 * built at a time.
 */
struct output_line;
struct output_line *output__begin(struct output *o, const char *kind);
/* Members; a NULL string is left out. */
void oline__str(struct output_line *l, const char *key, const char *val);
void oline__int(struct output_line *l, const char *key, long long v);
void oline__bool(struct output_line *l, const char *key, bool v);
/* A value already rendered as compact JSON text. */
void oline__raw(struct output_line *l, const char *key, const char *json, size_t len);
/* A JSON value (stolen; NULL is left out). */
void oline__json(struct output_line *l, const char *key, json_t *v);
/* Nested object (or array): members after this go into it until
 * oline__close() (oline__close_array()). key NULL: an array element. */
void oline__open(struct output_line *l, const char *key);
void oline__open_array(struct output_line *l, const char *key);
void oline__close(struct output_line *l);
void oline__close_array(struct output_line *l);
void output__end(struct output *o, struct output_line *l);

void output__flush(struct output *o);
/* An events file moved or removed (logrotate's create mode; copytruncate
 * needs nothing) is opened again at its path, for the next lines. Returns
 * how many were. */
int output__reopen_moved(struct output *o);
/* At exit: output__flush(), and a slow reader of a pipe or socket gets a
 * second to take what waits; what it does not take is counted lost. */
void output__drain(struct output *o);
void output__stats(const struct output *o, struct output_stats *s);

/* RFC 3339 UTC with microseconds, into buf (>= 32 bytes). */
void output__time(char *buf, size_t len);

#endif
