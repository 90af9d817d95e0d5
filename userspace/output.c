// SPDX-License-Identifier: GPL-2.0
/* Event writer: stamping and fan-out to sinks. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "output.h"
#include "jsonesc.h"

#define MAX_SINKS 8

static const char *const kinds[] = {
	"ready", "connection", "request", "alert", "policy", "lost", "shutdown", "health",
};

/*
 * A JSON Lines stream (stdout or an appended file), written through a
 * buffer of its own: one write(2) per batch of events rather than one per
 * few (glibc's stdio buffer is 4 KiB whatever setvbuf() is asked for, a
 * write per ~3 events under load: ~15% of the daemon's CPU at 16
 * connections of P1), and every failed write seen: stdio drops a buffer
 * it could not write and says so only in the stream's error flag, so a
 * full disk lost events silently. Lines a write could not take are
 * counted (output_stats.write_lost) with the error; a line cut short by
 * one is ended before the next, so a reader sees one bad line rather than
 * two run together.
 *
 * A pipe or a socket (stdout read by a container runtime, journald, a
 * shell pipeline) is written without blocking: a reader that stops would
 * otherwise stop the agent's loop, its verdicts and its heartbeat (the
 * kernel then applies the policy's `fail`). What the reader has not taken
 * waits in the buffer; lines that find it full are dropped and counted
 * (EAGAIN: the reader is not keeping up).
 */
#define JSONL_BUF (64 * 1024)
#define JSONL_DRAIN_MS 1000	/* at exit, for a slow reader to take the rest */
/* A new events file: events carry session ids and token digests, not for
 * every local user (the --output file sinks' mode too). */
#define JSONL_MODE 0640

struct jsonl_sink {
	int fd;
	bool owned;		/* opened here: closed by output__free() */
	bool cut;		/* the last write ended inside a line */
	bool tty;		/* a terminal: written line by line */
	bool sock;		/* a socket: sent with MSG_DONTWAIT */
	bool file;		/* a regular file opened by path: reopened if moved */
	char *buf;		/* JSONL_BUF bytes */
	size_t len;		/* of them waiting to be written */
	char *name;		/* the file, or "stdout" */
};

struct sink {
	output_sink_fn fn;
	output_needs_fn needs;	/* NULL: the object of every event */
	void *ctx;
	bool line_only;
};

struct output_line {
	char *buf;
	size_t len, cap;
	bool failed;		/* out of memory: the event is dropped */
	const char *kind;
};

struct output {
	char *node;
	char *node_json;	/* node as a JSON string */
	struct jsonl_sink jsonl[MAX_SINKS];
	size_t n_jsonl;
	struct sink sinks[MAX_SINKS];
	size_t n_sinks;
	bool object_sinks;	/* a sink reads event objects */
	struct output_stats stats;
	struct output_line line;
};

void output__time(char *buf, size_t len)
{
	/* The date and time to the second, formatted once per second. */
	static __thread time_t last_sec = -1;
	static __thread char base[32];
	static __thread size_t base_len;
	struct timespec ts;
	struct tm tm;
	long us;
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != last_sec) {
		gmtime_r(&ts.tv_sec, &tm);
		base_len = strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
		last_sec = ts.tv_sec;
	}
	if (len < base_len + 9) {
		snprintf(buf, len, "%s", base);
		return;
	}
	/* ".uuuuuuZ" by hand: this runs for every event. */
	memcpy(buf, base, base_len);
	buf[base_len] = '.';
	us = ts.tv_nsec / 1000;
	for (i = 6; i >= 1; i--, us /= 10)
		buf[base_len + (size_t)i] = (char)('0' + us % 10);
	buf[base_len + 7] = 'Z';
	buf[base_len + 8] = '\0';
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
	output__drain(o);
	for (i = 0; i < o->n_jsonl; i++) {
		if (o->jsonl[i].owned)
			close(o->jsonl[i].fd);
		free(o->jsonl[i].buf);
		free(o->jsonl[i].name);
	}
	free(o->line.buf);
	free(o->node);
	free(o->node_json);
	free(o);
}

int output__add_jsonl(struct output *o, const char *target, char *err, size_t errlen)
{
	bool out = strcmp(target, "-") == 0;
	struct jsonl_sink k = { .fd = STDOUT_FILENO };
	struct stat st;

	if (o->n_jsonl == MAX_SINKS) {
		snprintf(err, errlen, "too many event outputs");
		return -E2BIG;
	}
	k.buf = malloc(JSONL_BUF);
	k.name = strdup(out ? "stdout" : target);
	if (!k.buf || !k.name) {
		free(k.buf);
		free(k.name);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!out) {
		k.fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, JSONL_MODE);
		if (k.fd < 0) {
			int e = errno;

			snprintf(err, errlen, "cannot open the events file %s: %s", target,
				 strerror(e));
			free(k.buf);
			free(k.name);
			return -e;
		}
		k.owned = true;
	}
	k.tty = isatty(k.fd);
	if (!k.tty && fstat(k.fd, &st) == 0) {
		k.file = !out && S_ISREG(st.st_mode);
		if (S_ISSOCK(st.st_mode)) {
			k.sock = true;
		} else if (S_ISFIFO(st.st_mode)) {
			/* An open file description of our own, non-blocking:
			 * setting O_NONBLOCK on stdout would change it for
			 * every process that shares it. */
			char self[64];
			int fd;

			snprintf(self, sizeof(self), "/proc/self/fd/%d", k.fd);
			fd = open(self, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
			if (fd >= 0) {
				if (k.owned)
					close(k.fd);
				k.fd = fd;
				k.owned = true;
			}
		}
	}
	o->jsonl[o->n_jsonl++] = k;
	return 0;
}

/* Whole lines: the bytes of n lines from buf, each ending in '\n'. */
static uint64_t lines_in(const char *buf, size_t n)
{
	uint64_t lines = 0;
	const char *p = buf, *end = buf + n;

	while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) {
		lines++;
		p++;
	}
	return lines;
}

static ssize_t write_some(const struct jsonl_sink *k, const char *buf, size_t n)
{
	ssize_t w;

	do
		w = k->sock ? send(k->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) :
			      write(k->fd, buf, n);
	while (w < 0 && errno == EINTR);
	return w;
}

static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK;
}

static void count_lost(struct output *o, const struct jsonl_sink *k, uint64_t lines, int err)
{
	o->stats.write_errno = err;
	o->stats.write_failed_on = k->name;
	o->stats.write_lost += lines;
	o->stats.dropped += lines;
}

/*
 * Writes n bytes of whole lines; *done: how many went. 0, -EAGAIN (a
 * reader not taking more now: the caller keeps the rest, nothing is lost
 * yet), or another -errno: the lines not (wholly) written are counted
 * lost.
 */
static int jsonl_write(struct output *o, struct jsonl_sink *k, const char *buf, size_t n,
		       size_t *done)
{
	ssize_t w = 0;
	int err;

	*done = 0;
	if (k->cut && n) {
		/* End the line a failed write cut short. */
		w = write_some(k, "\n", 1);
		if (w != 1)
			goto fail;
		k->cut = false;
	}
	while (*done < n) {
		w = write_some(k, buf + *done, n - *done);
		if (w <= 0)
			goto fail;
		*done += (size_t)w;
	}
	return 0;
fail:
	err = w < 0 ? errno : EIO;
	if (would_block(err))
		return -EAGAIN;
	if (*done && buf[*done - 1] != '\n')
		k->cut = true;
	count_lost(o, k, lines_in(buf + *done, n - *done), err);
	return -err;
}

static void jsonl_flush(struct output *o, struct jsonl_sink *k)
{
	size_t done;

	if (k->len && jsonl_write(o, k, k->buf, k->len, &done) == -EAGAIN) {
		/* The reader took `done` bytes: the rest waits. */
		memmove(k->buf, k->buf + done, k->len - done);
		k->len -= done;
		return;
	}
	k->len = 0;
}

void output__drain(struct output *o)
{
	struct timespec t0, t;
	size_t i;
	long ms;

	output__flush(o);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < o->n_jsonl; i++) {
		struct jsonl_sink *k = &o->jsonl[i];

		while (k->len) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			ms = JSONL_DRAIN_MS - ((t.tv_sec - t0.tv_sec) * 1000 +
					       (t.tv_nsec - t0.tv_nsec) / 1000000);
			if (ms <= 0 || poll(&(struct pollfd){ .fd = k->fd, .events = POLLOUT }, 1,
					    (int)ms) <= 0)
				break;
			jsonl_flush(o, k);
		}
		if (k->len) {
			count_lost(o, k, lines_in(k->buf, k->len), EAGAIN);
			k->len = 0;
		}
	}
}

/* One line (len bytes, its '\n' added here). */
static void jsonl_put(struct output *o, struct jsonl_sink *k, const char *line, size_t len)
{
	size_t done;
	int err;

	if (k->len + len + 1 > JSONL_BUF)
		jsonl_flush(o, k);
	if (k->len && k->len + len + 1 > JSONL_BUF) {
		/* The reader has not taken what waits: no room. */
		count_lost(o, k, 1, EAGAIN);
		return;
	}
	if (len + 1 > JSONL_BUF) {
		/* Larger than the buffer: written as it is, then its end. */
		err = jsonl_write(o, k, line, len, &done);
		if (err) {
			/* No '\n' in it for jsonl_write() to count; too large
			 * to wait in the buffer for a slow reader. */
			if (err == -EAGAIN && done)
				k->cut = true;
			count_lost(o, k, 1, -err);
			return;
		}
		err = jsonl_write(o, k, "\n", 1, &done);
		if (err) {
			k->cut = true;	/* the line went, its end did not */
			if (err == -EAGAIN)
				count_lost(o, k, 1, EAGAIN);
		}
		return;
	}
	memcpy(k->buf + k->len, line, len);
	k->buf[k->len + len] = '\n';
	k->len += len + 1;
	if (k->tty)
		jsonl_flush(o, k);
}

int output__add_sink_needs(struct output *o, output_sink_fn fn, output_needs_fn needs,
			   void *ctx)
{
	if (o->n_sinks == MAX_SINKS)
		return -E2BIG;
	o->sinks[o->n_sinks++] = (struct sink){ fn, needs, ctx, false };
	o->object_sinks = true;
	return 0;
}

int output__add_sink(struct output *o, output_sink_fn fn, void *ctx)
{
	return output__add_sink_needs(o, fn, NULL, ctx);
}

int output__add_line_sink(struct output *o, output_sink_fn fn, void *ctx)
{
	if (o->n_sinks == MAX_SINKS)
		return -E2BIG;
	o->sinks[o->n_sinks++] = (struct sink){ fn, NULL, ctx, true };
	return 0;
}

static bool needs_object(const struct sink *s, const char *kind)
{
	return !s->line_only && (!s->needs || s->needs(s->ctx, kind));
}

static int kind_index(const char *kind)
{
	size_t i;

	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i], kind) == 0)
			return (int)i;
	return -1;
}

/* Writes a finished line (len bytes and a NUL) everywhere; sinks that
 * read objects get it parsed back. */
static void send_line(struct output *o, const char *kind, const char *line, size_t len)
{
	bool need[MAX_SINKS], parse = false;
	json_t *whole = NULL;
	size_t i;
	int k;

	o->stats.events++;
	k = kind_index(kind);
	if (k >= 0)
		o->stats.by_kind[k]++;
	/* Flushed by output__flush() after each batch the loop handles:
	 * readers follow live, without one write(2) per event. */
	for (i = 0; i < o->n_jsonl; i++)
		jsonl_put(o, &o->jsonl[i], line, len);
	/* Asked once a sink and event: a sink's answer costs a kind lookup. */
	for (i = 0; i < o->n_sinks; i++) {
		need[i] = o->object_sinks && needs_object(&o->sinks[i], kind);
		parse |= need[i];
	}
	if (parse)
		whole = json_loadb(line, len, 0, NULL);
	for (i = 0; i < o->n_sinks; i++) {
		if (need[i] && !whole) {
			o->stats.dropped++;
			continue;
		}
		o->sinks[i].fn(o->sinks[i].ctx, kind, need[i] ? whole : NULL, line, len);
	}
	json_decref(whole);
}

/* ---- events written as text ---------------------------------------------- */

static bool line_reserve(struct output_line *l, size_t more)
{
	size_t cap;
	char *n;

	if (l->failed)
		return false;
	if (l->len + more + 1 <= l->cap)
		return true;
	cap = l->cap ? l->cap : 2048;
	while (cap < l->len + more + 1)
		cap *= 2;
	n = realloc(l->buf, cap);
	if (!n) {
		l->failed = true;
		return false;
	}
	l->buf = n;
	l->cap = cap;
	return true;
}

static void line_put(struct output_line *l, const char *s, size_t n)
{
	if (!line_reserve(l, n))
		return;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void line_put_cb(void *l, const char *s, size_t n)
{
	line_put(l, s, n);
}

/* s as a JSON string, escaped as jansson escapes (no \/, UTF-8 kept):
 * room for the most it can take, then written in place. */
static void line_put_string(struct output_line *l, const char *s)
{
	size_t n = strlen(s);

	if (line_reserve(l, JSON_ESCAPED_MAX(n)))
		l->len += json_escape_buf(l->buf + l->len, s, n);
}

/* ,"key": (no comma right after an opening brace or bracket; key NULL:
 * an array element). Keys are literals. */
static void line_key(struct output_line *l, const char *key)
{
	size_t kl = key ? strlen(key) : 0;

	if (!line_reserve(l, kl + 4))
		return;
	if (l->buf[l->len - 1] != '{' && l->buf[l->len - 1] != '[')
		l->buf[l->len++] = ',';
	if (!key)
		return;
	l->buf[l->len++] = '"';
	memcpy(l->buf + l->len, key, kl);
	l->len += kl;
	l->buf[l->len++] = '"';
	l->buf[l->len++] = ':';
}

/* Starts a line: time, kind and node first, for readers that skim; each
 * from ev when ev has a member of that name (a relayed event's own). */
static struct output_line *begin_line(struct output *o, const char *kind, json_t *ev)
{
	struct output_line *l = &o->line;
	char ts[40];

	l->failed = false;
	l->len = 0;
	l->kind = kind;
	line_put(l, "{", 1);
	if (ev && json_object_get(ev, "time")) {
		oline__json(l, "time", json_incref(json_object_get(ev, "time")));
	} else {
		output__time(ts, sizeof(ts));
		oline__str(l, "time", ts);
	}
	if (ev && json_object_get(ev, "kind"))
		oline__json(l, "kind", json_incref(json_object_get(ev, "kind")));
	else
		oline__str(l, "kind", kind);
	if (ev && json_object_get(ev, "node"))
		oline__json(l, "node", json_incref(json_object_get(ev, "node")));
	else
		oline__raw(l, "node", o->node_json, strlen(o->node_json));
	return l;
}

struct output_line *output__begin(struct output *o, const char *kind)
{
	return begin_line(o, kind, NULL);
}

void output__emit(struct output *o, const char *kind, json_t *ev)
{
	struct output_line *l;
	const char *key;
	json_t *v;

	if (!ev) {
		o->stats.dropped++;
		return;
	}
	l = begin_line(o, kind, ev);
	json_object_foreach(ev, key, v) {
		if (strcmp(key, "time") && strcmp(key, "kind") && strcmp(key, "node"))
			oline__json(l, key, json_incref(v));
	}
	output__end(o, l);
	json_decref(ev);
}

void oline__str(struct output_line *l, const char *key, const char *val)
{
	if (!val)
		return;
	line_key(l, key);
	line_put_string(l, val);
}

void oline__int(struct output_line *l, const char *key, long long v)
{
	line_key(l, key);
	json_put_int(v, line_put_cb, l);
}

void oline__bool(struct output_line *l, const char *key, bool v)
{
	line_key(l, key);
	line_put(l, v ? "true" : "false", v ? 4 : 5);
}

void oline__raw(struct output_line *l, const char *key, const char *json, size_t len)
{
	line_key(l, key);
	line_put(l, json, len);
}

void oline__json(struct output_line *l, const char *key, json_t *v)
{
	char *text;

	if (!v)
		return;
	text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	if (text)
		oline__raw(l, key, text, strlen(text));
	else
		l->failed = true;
	free(text);
	json_decref(v);
}

void oline__open(struct output_line *l, const char *key)
{
	line_key(l, key);
	line_put(l, "{", 1);
}

void oline__open_array(struct output_line *l, const char *key)
{
	line_key(l, key);
	line_put(l, "[", 1);
}

void oline__close(struct output_line *l)
{
	line_put(l, "}", 1);
}

void oline__close_array(struct output_line *l)
{
	line_put(l, "]", 1);
}

void output__end(struct output *o, struct output_line *l)
{
	line_put(l, "}", 1);
	if (l->failed) {
		o->stats.dropped++;
		return;
	}
	l->buf[l->len] = '\0';
	send_line(o, l->kind, l->buf, l->len);
}

void output__flush(struct output *o)
{
	size_t i;

	for (i = 0; i < o->n_jsonl; i++)
		jsonl_flush(o, &o->jsonl[i]);
}

int output__reopen_moved(struct output *o)
{
	struct stat at_path, open_st;
	int reopened = 0, fd;
	size_t i;

	for (i = 0; i < o->n_jsonl; i++) {
		struct jsonl_sink *k = &o->jsonl[i];

		if (!k->file || fstat(k->fd, &open_st))
			continue;
		if (stat(k->name, &at_path) == 0 && at_path.st_dev == open_st.st_dev &&
		    at_path.st_ino == open_st.st_ino)
			continue;
		/* Moved or removed (rotated): what waits goes to the old file,
		 * the next lines to a new one at the path. */
		jsonl_flush(o, k);
		fd = open(k->name, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, JSONL_MODE);
		if (fd < 0) {
			/* Kept on the old one; tried again next time. */
			o->stats.reopen_errno = errno;
			continue;
		}
		close(k->fd);
		k->fd = fd;
		k->cut = false;
		o->stats.reopened++;
		o->stats.reopen_errno = 0;
		reopened++;
	}
	return reopened;
}

void output__stats(const struct output *o, struct output_stats *s)
{
	*s = o->stats;
}
