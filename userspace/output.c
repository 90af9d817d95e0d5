// SPDX-License-Identifier: GPL-2.0
/* Event writer: stamping and fan-out to sinks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "output.h"

#define MAX_SINKS 8

static const char *const kinds[] = {
	"ready", "connection", "request", "alert", "policy", "lost", "shutdown", "health",
};

struct jsonl_sink {
	FILE *f;
	bool owned;
};

struct sink {
	output_sink_fn fn;
	void *ctx;
	bool line_only;
};

struct output {
	char *node;
	char *node_json;	/* node as a JSON string */
	struct jsonl_sink jsonl[MAX_SINKS];
	size_t n_jsonl;
	struct sink sinks[MAX_SINKS];
	size_t n_sinks;
	struct output_stats stats;
};

void output__time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char base[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", base, ts.tv_nsec / 1000);
}

struct output *output__new(const char *node)
{
	struct output *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->node = strdup(node ? node : "");
	if (o->node) {
		json_t *n = json_string(o->node);

		o->node_json = n ? json_dumps(n, JSON_ENCODE_ANY) : NULL;
		json_decref(n);
	}
	if (!o->node || !o->node_json) {
		free(o->node);
		free(o->node_json);
		free(o);
		return NULL;
	}
	return o;
}

void output__free(struct output *o)
{
	size_t i;

	if (!o)
		return;
	for (i = 0; i < o->n_jsonl; i++) {
		fflush(o->jsonl[i].f);
		if (o->jsonl[i].owned)
			fclose(o->jsonl[i].f);
	}
	free(o->node);
	free(o->node_json);
	free(o);
}

int output__add_jsonl(struct output *o, const char *target, char *err, size_t errlen)
{
	FILE *f;

	if (o->n_jsonl == MAX_SINKS) {
		snprintf(err, errlen, "too many event outputs");
		return -E2BIG;
	}
	if (strcmp(target, "-") == 0) {
		o->jsonl[o->n_jsonl++] = (struct jsonl_sink){ stdout, false };
		return 0;
	}
	f = fopen(target, "ae");
	if (!f) {
		int e = errno;

		snprintf(err, errlen, "cannot open the events file %s: %s", target, strerror(e));
		return -e;
	}
	/* Lines are flushed after each batch (output__flush): a buffer that
	 * holds a batch saves a write(2) per few events. */
	setvbuf(f, NULL, _IOFBF, 256 * 1024);
	o->jsonl[o->n_jsonl++] = (struct jsonl_sink){ f, true };
	return 0;
}

int output__add_sink(struct output *o, output_sink_fn fn, void *ctx)
{
	if (o->n_sinks == MAX_SINKS)
		return -E2BIG;
	o->sinks[o->n_sinks++] = (struct sink){ fn, ctx, false };
	return 0;
}

int output__add_line_sink(struct output *o, output_sink_fn fn, void *ctx)
{
	if (o->n_sinks == MAX_SINKS)
		return -E2BIG;
	o->sinks[o->n_sinks++] = (struct sink){ fn, ctx, true };
	return 0;
}

static int kind_index(const char *kind)
{
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i], kind) == 0)
			return (int)i;
	return -1;
}

/* line (ending in '}') with ,"key":json... spliced in before its '}'. */
static char *splice_raw(char *line, size_t *len, const struct output_raw *raw, size_t n_raw)
{
	size_t need = *len, i, at;
	char *out;

	for (i = 0; i < n_raw; i++)
		need += strlen(raw[i].key) + raw[i].len + 4;
	out = realloc(line, need + 1);
	if (!out) {
		free(line);
		return NULL;
	}
	at = *len - 1;	/* the closing brace */
	for (i = 0; i < n_raw; i++) {
		size_t kl = strlen(raw[i].key);

		if (at > 1)	/* not right after the opening brace */
			out[at++] = ',';
		out[at++] = '"';
		memcpy(out + at, raw[i].key, kl);
		at += kl;
		out[at++] = '"';
		out[at++] = ':';
		memcpy(out + at, raw[i].json, raw[i].len);
		at += raw[i].len;
	}
	out[at++] = '}';
	out[at] = '\0';
	*len = at;
	return out;
}

/* The raw members as values in ev, for sinks that read the object. */
static void add_raw(json_t *ev, const struct output_raw *raw, size_t n_raw)
{
	size_t i;

	for (i = 0; i < n_raw; i++) {
		json_t *v = json_loadb(raw[i].json, raw[i].len, JSON_DECODE_ANY, NULL);

		if (v)
			json_object_set_new(ev, raw[i].key, v);
	}
}

/* The stamped event as a whole object, for sinks that read objects. */
static json_t *stamped(struct output *o, const char *ts, const char *kind, json_t *ev)
{
	json_t *out = json_object();

	json_object_set_new(out, "time", json_string(ts));
	json_object_set_new(out, "kind", json_string(kind));
	json_object_set_new(out, "node", json_string(o->node));
	json_object_update(out, ev);
	return out;
}

/* {"time":..,"kind":..,"node":.., then ev's members: ev's own text with
 * the stamp spliced in front, without copying ev into a new object. */
static char *stamped_line(struct output *o, const char *ts, const char *kind, json_t *ev,
			  size_t *len)
{
	char stamp[2048], *body, *line;	/* the node name is at most 255 bytes */
	size_t bl;
	int pl;

	if (json_object_get(ev, "time") || json_object_get(ev, "kind") ||
	    json_object_get(ev, "node")) {
		json_t *out = stamped(o, ts, kind, ev);

		line = out ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
		json_decref(out);
		*len = line ? strlen(line) : 0;
		return line;
	}
	body = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!body)
		return NULL;
	bl = strlen(body);	/* "{...}" or "{}" */
	pl = snprintf(stamp, sizeof(stamp), "{\"time\":\"%s\",\"kind\":\"%s\",\"node\":%s", ts,
		      kind, o->node_json);
	line = pl > 0 && (size_t)pl < sizeof(stamp) ? malloc((size_t)pl + bl + 2) : NULL;
	if (!line) {
		free(body);
		return NULL;
	}
	memcpy(line, stamp, (size_t)pl);
	if (bl > 2) {
		line[pl] = ',';
		memcpy(line + pl + 1, body + 1, bl);	/* members, '}' and NUL */
		*len = (size_t)pl + bl;
	} else {
		line[pl] = '}';
		line[pl + 1] = '\0';
		*len = (size_t)pl + 1;
	}
	free(body);
	return line;
}

void output__emit_with(struct output *o, const char *kind, json_t *ev,
		       const struct output_raw *raw, size_t n_raw)
{
	json_t *whole = NULL;
	char ts[40];
	char *line;
	size_t i, len = 0;
	int k;

	if (!ev) {
		o->stats.dropped++;
		return;
	}
	/* time, kind, node first, for readers that skim. */
	output__time(ts, sizeof(ts));
	line = stamped_line(o, ts, kind, ev, &len);
	if (line && n_raw)
		line = splice_raw(line, &len, raw, n_raw);
	if (!line) {
		o->stats.dropped++;
		json_decref(ev);
		return;
	}
	o->stats.events++;
	k = kind_index(kind);
	if (k >= 0)
		o->stats.by_kind[k]++;
	for (i = 0; i < o->n_jsonl; i++) {
		/* Flushed by output__flush() after each batch the loop handles:
		 * readers follow live, without one write(2) per event. */
		if (fwrite(line, 1, len, o->jsonl[i].f) != len || fputc('\n', o->jsonl[i].f) == EOF)
			o->stats.dropped++;
	}
	for (i = 0; i < o->n_sinks; i++) {
		if (!o->sinks[i].line_only && !whole) {
			whole = stamped(o, ts, kind, ev);
			add_raw(whole, raw, n_raw);
		}
		o->sinks[i].fn(o->sinks[i].ctx, kind, o->sinks[i].line_only ? NULL : whole, line, len);
	}
	free(line);
	json_decref(whole);
	json_decref(ev);
}

void output__emit(struct output *o, const char *kind, json_t *ev)
{
	output__emit_with(o, kind, ev, NULL, 0);
}

void output__flush(struct output *o)
{
	size_t i;

	for (i = 0; i < o->n_jsonl; i++)
		fflush(o->jsonl[i].f);
}

void output__stats(const struct output *o, struct output_stats *s)
{
	*s = o->stats;
}
