// SPDX-License-Identifier: GPL-2.0
/*
 * Event sinks behind --output (grammar and formats in sinks.h).
 *
 * Caller's thread: output__emit calls sink_on_event, which filters by
 * kind, formats the event (native, Falco or OCSF JSON, wrapped in an RFC
 * 5424 frame for syslog) into one allocated line and appends it to the
 * sink's bounded queue, or drops it and counts the drop when the queue is
 * full. Nothing there waits on I/O.
 *
 * Writer thread, one per sink: takes lines in batches and writes them to
 * stdout, to a file (appending; rotated by size, the rotated file gzipped
 * here so compression never delays the caller), or to a syslog peer over
 * TCP with octet-counted framing (RFC 6587), reconnecting with backoff
 * while lines wait in the queue. Shutdown drains each queue until a
 * deadline, then drops what is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <zlib.h>

#include "metrics.h"
#include "sinks.h"

#ifndef MCPWARDEN_VERSION
#define MCPWARDEN_VERSION "0.0.0"
#endif

#define QUEUE_LINES_DEFAULT	8192
#define QUEUE_LINES_MAX		(1u << 20)
#define QUEUE_BYTES_DEFAULT	(8ull << 20)
#define QUEUE_BYTES_MIN		(4ull << 10)
#define QUEUE_BYTES_MAX		(1ull << 30)
#define WRITE_BATCH		64
#define FILE_MAX_BYTES_DEFAULT	(100ull << 20)
#define FILE_KEEP_DEFAULT	5
#define FILE_KEEP_MAX		100
#define GZIP_CHUNK		(64u << 10)
#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		10000
#define CONNECT_TIMEOUT_MS	5000
#define POLL_SLICE_MS		100
#define FALCO_OUTPUT_MAX	4096
#define OCSF_SCHEMA_VERSION	"1.1.0"
#define SYSLOG_FACILITY_DEFAULT	16	/* local0 */

enum sink_format {
	FMT_NATIVE,
	FMT_FALCO,
	FMT_OCSF,
};

enum sink_target {
	TGT_STDOUT,
	TGT_FILE,
	TGT_SYSLOG,
};

#define T_STDOUT	(1u << TGT_STDOUT)
#define T_FILE		(1u << TGT_FILE)
#define T_SYSLOG	(1u << TGT_SYSLOG)
#define T_ALL		(T_STDOUT | T_FILE | T_SYSLOG)

static const char *const format_names[] = { "native", "falco", "ocsf" };
static const char *const target_names[] = { "stdout", "file", "syslog" };

/* The kinds output.c stamps (its kinds[] table, PRODUCT.md "Events"). */
static const char *const event_kinds[] = {
	"ready", "connection", "request", "alert", "policy", "lost", "shutdown", "health",
};

/* Findings about who holds an identity, as opposed to what it may do. */
static const char *const identity_verdicts[] = {
	"mismatch", "clone", "token_replay", "session_hijack", "identity_switch", "stdio_parent",
};

struct line {
	char *buf;
	size_t len;
};

struct sink {
	struct sink *next;
	enum sink_format format;
	enum sink_target target;
	uint32_t kinds;			/* bit per event_kinds[]; 0 = every kind */

	/* file: writer thread only once started */
	char *path;
	uint64_t max_bytes;
	unsigned int keep;
	int fd;
	uint64_t size;
	bool cut;			/* file, stdout: a line was cut short */

	/* syslog: writer thread only */
	char host[256];
	char port[8];
	char app[49];
	unsigned int facility;
	char procid[16];
	int sock;
	unsigned int backoff_ms;

	/* caller's thread only */
	uint64_t seq;

	/* shared: everything below under lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct line *ring;
	size_t ring_cap, head, count;
	uint64_t bytes, max_queue_bytes;
	bool stopping;
	uint64_t stop_deadline_ns;
	struct sink_stats st;

	/* The batch in the writer's hands; freed here if it is cancelled. */
	struct line batch[WRITE_BATCH];
	pthread_t thread;
	bool started;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- spec parsing ------------------------------------------------------ */

static int parse_size(const char *v, uint64_t *out)
{
	unsigned long long n;
	uint64_t mul = 1;
	char *end;

	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		switch (*end) {
		case 'k': case 'K': mul = 1ull << 10; break;
		case 'm': case 'M': mul = 1ull << 20; break;
		case 'g': case 'G': mul = 1ull << 30; break;
		default: return -EINVAL;
		}
		if (end[1])
			return -EINVAL;
	}
	if (n > UINT64_MAX / mul)
		return -EINVAL;
	*out = n * mul;
	return 0;
}

static int parse_uint(const char *v, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long n;
	char *end;

	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

static int set_max_bytes(struct sink *s, const char *v)
{
	return parse_size(v, &s->max_bytes);
}

static int set_keep(struct sink *s, const char *v)
{
	unsigned long n;
	int err = parse_uint(v, 0, FILE_KEEP_MAX, &n);

	if (!err)
		s->keep = (unsigned int)n;
	return err;
}

static int set_format(struct sink *s, const char *v)
{
	size_t i;

	for (i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
		if (strcmp(v, format_names[i]) == 0) {
			s->format = (enum sink_format)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int set_app(struct sink *s, const char *v)
{
	size_t i, n = strlen(v);

	if (n == 0 || n >= sizeof(s->app))
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (v[i] < 33 || v[i] > 126)
			return -EINVAL;
	memcpy(s->app, v, n + 1);
	return 0;
}

static int set_facility(struct sink *s, const char *v)
{
	static const char *const names[] = {
		"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp",
		"cron", "authpriv", "ftp",
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(v, names[i]) == 0) {
			s->facility = (unsigned int)i;
			return 0;
		}
	}
	if (strncmp(v, "local", 5) == 0 && v[5] >= '0' && v[5] <= '7' && !v[6]) {
		s->facility = 16u + (unsigned int)(v[5] - '0');
		return 0;
	}
	return -EINVAL;
}

static int set_queue(struct sink *s, const char *v)
{
	unsigned long n;
	int err = parse_uint(v, 1, QUEUE_LINES_MAX, &n);

	if (!err)
		s->ring_cap = n;
	return err;
}

static int set_queue_bytes(struct sink *s, const char *v)
{
	uint64_t n;

	if (parse_size(v, &n) || n < QUEUE_BYTES_MIN || n > QUEUE_BYTES_MAX)
		return -EINVAL;
	s->max_queue_bytes = n;
	return 0;
}

static int kind_index(const char *kind, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(event_kinds) / sizeof(event_kinds[0]); i++)
		if (strlen(event_kinds[i]) == n && strncmp(event_kinds[i], kind, n) == 0)
			return (int)i;
	return -1;
}

static int set_kinds(struct sink *s, const char *v)
{
	const char *p = v, *comma;
	uint32_t mask = 0;
	int k;

	do {
		comma = strchr(p, ',');
		k = kind_index(p, comma ? (size_t)(comma - p) : strlen(p));
		if (k < 0)
			return -EINVAL;
		mask |= 1u << k;
		p = comma + 1;
	} while (comma);
	s->kinds = mask;
	return 0;
}

static const struct sink_option {
	const char *key;
	unsigned int targets;	/* T_* bits it applies to */
	const char *expect;	/* for the operator's error message */
	int (*set)(struct sink *s, const char *val);
} sink_options[] = {
	{ "max_bytes", T_FILE, "a size in bytes with an optional k, m or g suffix (0: never rotate)",
	  set_max_bytes },
	{ "keep", T_FILE, "0 to 100 rotated files", set_keep },
	{ "format", T_SYSLOG, "native, falco or ocsf", set_format },
	{ "app", T_SYSLOG, "1 to 48 printable ASCII characters without spaces", set_app },
	{ "facility", T_SYSLOG, "kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, "
	  "authpriv, ftp or local0 to local7", set_facility },
	{ "queue", T_ALL, "1 to 1048576 lines", set_queue },
	{ "queue_bytes", T_ALL, "a size from 4k to 1g", set_queue_bytes },
	{ "kinds", T_ALL, "a comma list of ready, connection, request, alert, policy, lost, "
	  "shutdown, health", set_kinds },
};

static int parse_options(struct sink *s, const char *spec, char *opts, char *err, size_t errlen)
{
	char *save = NULL, *tok, *eq;
	size_t i;

	for (tok = strtok_r(opts, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
		const struct sink_option *o = NULL;

		eq = strchr(tok, '=');
		if (!eq) {
			snprintf(err, errlen, "--output %s: option %s needs a value (KEY=VALUE)", spec,
				 tok);
			return -EINVAL;
		}
		*eq = '\0';
		for (i = 0; i < sizeof(sink_options) / sizeof(sink_options[0]); i++)
			if (strcmp(tok, sink_options[i].key) == 0)
				o = &sink_options[i];
		if (!o) {
			snprintf(err, errlen, "--output %s: unknown option %s", spec, tok);
			return -EINVAL;
		}
		if (!(o->targets & (1u << s->target))) {
			snprintf(err, errlen, "--output %s: option %s does not apply to %s outputs",
				 spec, tok, target_names[s->target]);
			return -EINVAL;
		}
		if (o->set(s, eq + 1)) {
			snprintf(err, errlen, "--output %s: bad %s \"%s\": expected %s", spec, tok,
				 eq + 1, o->expect);
			return -EINVAL;
		}
	}
	return 0;
}

/* "tcp://HOST:PORT" with HOST a name, IPv4 or [IPv6]. */
static int parse_syslog_target(struct sink *s, const char *t)
{
	const char *host, *colon, *end;
	size_t n;
	unsigned long port;

	if (strncmp(t, "tcp://", 6))
		return -EINVAL;
	host = t + 6;
	if (*host == '[') {
		end = strchr(host, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		host++;
		n = (size_t)(end - host);
		colon = end + 1;
	} else {
		colon = strrchr(host, ':');
		if (!colon)
			return -EINVAL;
		n = (size_t)(colon - host);
		if (memchr(host, ':', n) || memchr(host, '/', n))
			return -EINVAL;
	}
	if (n == 0 || n >= sizeof(s->host) || parse_uint(colon + 1, 1, 65535, &port))
		return -EINVAL;
	memcpy(s->host, host, n);
	s->host[n] = '\0';
	snprintf(s->port, sizeof(s->port), "%lu", port);
	return 0;
}

static int parse_spec(struct sink *s, const char *spec, char *err, size_t errlen)
{
	const char *colon = strchr(spec, ':'), *q;
	char *target = NULL, *opts = NULL;
	size_t flen, tlen;
	int ret = -EINVAL;

	flen = colon ? (size_t)(colon - spec) : 0;
	if (flen == 5 && strncmp(spec, "jsonl", 5) == 0) {
		s->format = FMT_NATIVE;
	} else if (flen == 5 && strncmp(spec, "falco", 5) == 0) {
		s->format = FMT_FALCO;
	} else if (flen == 4 && strncmp(spec, "ocsf", 4) == 0) {
		s->format = FMT_OCSF;
	} else if (flen == 6 && strncmp(spec, "syslog", 6) == 0) {
		s->format = FMT_NATIVE;
		s->target = TGT_SYSLOG;
	} else {
		snprintf(err, errlen, "--output %s: expected FORMAT:TARGET, FORMAT one of jsonl, "
			 "falco, ocsf or syslog", spec);
		return -EINVAL;
	}
	q = strchr(colon + 1, '?');
	tlen = q ? (size_t)(q - colon - 1) : strlen(colon + 1);
	snprintf(s->st.name, sizeof(s->st.name), "%.*s", (int)(flen + 1 + tlen), spec);
	target = strndup(colon + 1, tlen);
	opts = q ? strdup(q + 1) : NULL;
	if (!target || (q && !opts)) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	if (s->target == TGT_SYSLOG) {
		if (parse_syslog_target(s, target)) {
			snprintf(err, errlen, "--output %s: expected syslog:tcp://HOST:PORT "
				 "(IPv6 in brackets; syslog goes over TCP only)", spec);
			goto out;
		}
	} else if (strcmp(target, "-") == 0) {
		s->target = TGT_STDOUT;
	} else if (!target[0]) {
		snprintf(err, errlen, "--output %s: expected - (stdout) or a file path after the "
			 "colon", spec);
		goto out;
	} else {
		s->target = TGT_FILE;
		s->path = target;
		target = NULL;
	}
	ret = opts ? parse_options(s, spec, opts, err, errlen) : 0;
out:
	free(target);
	free(opts);
	return ret;
}

/* ---- reading events ---------------------------------------------------- */

static json_t *jget(json_t *o, const char *a, const char *b, const char *c)
{
	const char *path[3] = { a, b, c };
	size_t i;

	for (i = 0; i < 3 && path[i]; i++) {
		if (!json_is_object(o))
			return NULL;
		o = json_object_get(o, path[i]);
	}
	return o;
}

static const char *jstr(json_t *o, const char *a, const char *b, const char *c)
{
	json_t *v = jget(o, a, b, c);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool is_scalar(const json_t *v)
{
	return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
}

static void set_str(json_t *o, const char *key, const char *val)
{
	if (val)
		json_object_set_new(o, key, json_string(val));
}

static void set_copy(json_t *o, const char *key, json_t *val)
{
	if (val)
		json_object_set(o, key, val);
}

static bool str_in(const char *s, const char *const *set, size_t n)
{
	size_t i;

	for (i = 0; s && i < n; i++)
		if (strcmp(s, set[i]) == 0)
			return true;
	return false;
}

static bool is_identity_verdict(const char *verdict)
{
	return str_in(verdict, identity_verdicts,
		      sizeof(identity_verdicts) / sizeof(identity_verdicts[0]));
}

/* "1.2.3.4:80" or "[::1]:80" into ip and port. */
static bool split_endpoint(const char *ep, char *ip, size_t iplen, long *port)
{
	const char *colon, *start = ep;
	size_t n;

	if (!ep)
		return false;
	colon = strrchr(ep, ':');
	if (!colon || !colon[1])
		return false;
	n = (size_t)(colon - ep);
	if (ep[0] == '[') {
		if (n < 2 || ep[n - 1] != ']')
			return false;
		start++;
		n -= 2;
	}
	if (n == 0 || n >= iplen)
		return false;
	memcpy(ip, start, n);
	ip[n] = '\0';
	*port = strtol(colon + 1, NULL, 10);
	return true;
}

/* Event time (RFC 3339, as output__time writes it) in ms since the epoch. */
static int64_t event_time_ms(const char *t)
{
	struct tm tm = {};
	struct timespec now;
	const char *p;
	int64_t ms = 0, scale = 100;

	p = t ? strptime(t, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!p) {
		clock_gettime(CLOCK_REALTIME, &now);
		return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	}
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			ms += (*p - '0') * scale;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ---- how loud an event is ---------------------------------------------- */

enum level {
	LV_CRITICAL,
	LV_ERROR,
	LV_WARNING,
	LV_NOTICE,
	LV_INFO,
};

static const char *const falco_priority[] = {
	"Critical", "Error", "Warning", "Notice", "Informational",
};

/* RFC 5424 severities: a blocked request is an error, an allowed finding
 * a warning, the agent's own life notices, traffic informational. */
static const unsigned int syslog_severity[] = { 3, 3, 4, 5, 6 };

static enum level event_level(const char *kind, json_t *ev)
{
	const char *action = jstr(ev, "action", NULL, NULL);
	const char *status = jstr(ev, "status", NULL, NULL);

	if (strcmp(kind, "alert") == 0) {
		if (!action || strcmp(action, "blocked"))
			return LV_WARNING;
		return is_identity_verdict(jstr(ev, "verdict", NULL, NULL)) ? LV_CRITICAL :
									       LV_ERROR;
	}
	if (strcmp(kind, "request") == 0 || strcmp(kind, "connection") == 0)
		return LV_INFO;
	if (strcmp(kind, "lost") == 0)
		return LV_ERROR;
	if (strcmp(kind, "policy") == 0 && status && strcmp(status, "rejected") == 0)
		return LV_ERROR;
	if (strcmp(kind, "health") == 0 && status && strcmp(status, "ok"))
		return LV_WARNING;
	return LV_NOTICE;
}

/* ---- Falco format ------------------------------------------------------ */

static const struct falco_field {
	const char *key;
	const char *path[3];
} falco_fields[] = {
	{ "mcp.verdict", { "verdict" } },
	{ "mcp.action", { "action" } },
	{ "mcp.mode", { "mode" } },
	{ "mcp.client", { "client" } },
	{ "mcp.server", { "server" } },
	{ "mcp.reason", { "reason" } },
	{ "mcp.method", { "request", "method" } },
	{ "mcp.tool", { "request", "tool" } },
	{ "mcp.request_id", { "request", "id" } },
	{ "mcp.session_id", { "claim", "session_id" } },
	{ "mcp.claim.client_id", { "claim", "client_id" } },
	{ "mcp.claim.sub", { "claim", "sub" } },
	{ "mcp.claim.iss", { "claim", "iss" } },
	{ "mcp.claim.client_info", { "claim", "client_info", "name" } },
	{ "mcp.claim.user_agent", { "claim", "user_agent" } },
	{ "mcp.claim.token_sha256", { "claim", "token_sha256" } },
	{ "mcp.verdict_latency_us", { "verdict_latency_us" } },
	{ "mcp.cgroup", { "workload", "cgroup" } },
	{ "mcp.exe_sha256", { "workload", "exe_sha256" } },
	{ "proc.pid", { "workload", "pid" } },
	{ "proc.ppid", { "workload", "ppid" } },
	{ "proc.name", { "workload", "comm" } },
	{ "proc.exepath", { "workload", "exe" } },
	{ "proc.cmdline", { "workload", "cmdline" } },
	{ "user.uid", { "workload", "uid" } },
	{ "group.gid", { "workload", "gid" } },
	{ "container.id", { "workload", "container_id" } },
	{ "k8s.pod.name", { "workload", "pod", "name" } },
	{ "k8s.ns.name", { "workload", "pod", "namespace" } },
	{ "k8s.pod.uid", { "workload", "pod", "uid" } },
};

/* Fields every request-shaped event carries, null when unknown (as Falco
 * writes a field it could not resolve), so consumers see one shape. */
static void falco_request_fields(json_t *of, json_t *ev)
{
	char ip[64];
	long port;
	size_t i;

	for (i = 0; i < sizeof(falco_fields) / sizeof(falco_fields[0]); i++) {
		const struct falco_field *f = &falco_fields[i];
		json_t *v = jget(ev, f->path[0], f->path[1], f->path[2]);

		json_object_set_new(of, f->key, is_scalar(v) ? json_incref(v) : json_null());
	}
	/* Falco's fd.c* is the client end, fd.s* the server end. */
	if (split_endpoint(jstr(ev, "connection", "src", NULL), ip, sizeof(ip), &port)) {
		json_object_set_new(of, "fd.cip", json_string(ip));
		json_object_set_new(of, "fd.cport", json_integer(port));
	} else {
		json_object_set_new(of, "fd.cip", json_null());
		json_object_set_new(of, "fd.cport", json_null());
	}
	if (split_endpoint(jstr(ev, "connection", "dst", NULL), ip, sizeof(ip), &port)) {
		json_object_set_new(of, "fd.sip", json_string(ip));
		json_object_set_new(of, "fd.sport", json_integer(port));
	} else {
		json_object_set_new(of, "fd.sip", json_null());
		json_object_set_new(of, "fd.sport", json_null());
	}
}

/* Other kinds: their own top-level values, as mcp.KEY. */
static void falco_other_fields(json_t *of, json_t *ev)
{
	const char *key;
	json_t *v;
	char name[128];

	json_object_foreach(ev, key, v) {
		if (!is_scalar(v) || !strcmp(key, "time") || !strcmp(key, "kind") ||
		    !strcmp(key, "node"))
			continue;
		snprintf(name, sizeof(name), "mcp.%s", key);
		json_object_set(of, name, v);
	}
	if (json_is_object(json_object_get(ev, "workload")) ||
	    json_is_object(json_object_get(ev, "connection")))
		falco_request_fields(of, ev);
}

struct text {
	char buf[FALCO_OUTPUT_MAX];
	size_t len;
};

static __attribute__((format(printf, 2, 3))) void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len >= sizeof(t->buf) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n < sizeof(t->buf) - t->len ? (size_t)n : sizeof(t->buf) - t->len - 1;
}

/* " key=value" with Falco's <NA> for what is unknown. */
static void text_kv(struct text *t, const char *key, json_t *v)
{
	if (json_is_string(v))
		text_add(t, " %s=%s", key, json_string_value(v));
	else if (json_is_integer(v))
		text_add(t, " %s=%" JSON_INTEGER_FORMAT, key, json_integer_value(v));
	else if (json_is_real(v))
		text_add(t, " %s=%g", key, json_real_value(v));
	else if (json_is_boolean(v))
		text_add(t, " %s=%s", key, json_is_true(v) ? "true" : "false");
	else
		text_add(t, " %s=<NA>", key);
}

static void falco_output(struct text *t, const char *time, const char *prio, const char *rule,
			 const char *kind, json_t *ev)
{
	const char *ns = jstr(ev, "workload", "pod", "namespace");
	const char *pod = jstr(ev, "workload", "pod", "name");
	bool alert = strcmp(kind, "alert") == 0;
	size_t mark;

	text_add(t, "%s: %s %s", time, prio, rule);
	if (alert)
		text_kv(t, "action", jget(ev, "action", NULL, NULL));
	text_add(t, " (");
	mark = t->len;
	if (alert || strcmp(kind, "request") == 0) {
		text_kv(t, "client", jget(ev, "client", NULL, NULL));
		text_kv(t, "server", jget(ev, "server", NULL, NULL));
		text_kv(t, "method", jget(ev, "request", "method", NULL));
		text_kv(t, "tool", jget(ev, "request", "tool", NULL));
	} else if (strcmp(kind, "connection") == 0) {
		text_kv(t, "server", jget(ev, "server", NULL, NULL));
	} else {
		const char *key;
		json_t *v;

		json_object_foreach(ev, key, v)
			if (is_scalar(v) && strcmp(key, "time") && strcmp(key, "kind") &&
			    strcmp(key, "node"))
				text_kv(t, key, v);
	}
	if (json_is_object(json_object_get(ev, "workload"))) {
		text_kv(t, "pid", jget(ev, "workload", "pid", NULL));
		text_kv(t, "exe", jget(ev, "workload", "exe", NULL));
		text_kv(t, "uid", jget(ev, "workload", "uid", NULL));
		text_kv(t, "cgroup", jget(ev, "workload", "cgroup", NULL));
		text_kv(t, "container", jget(ev, "workload", "container_id", NULL));
		if (ns && pod)
			text_add(t, " pod=%s/%s", ns, pod);
	}
	if (json_is_object(json_object_get(ev, "connection"))) {
		text_kv(t, "src", jget(ev, "connection", "src", NULL));
		text_kv(t, "dst", jget(ev, "connection", "dst", NULL));
	}
	if (alert)
		text_kv(t, "reason", jget(ev, "reason", NULL, NULL));
	/* Drop the space the first pair started with. */
	if (t->len > mark && t->buf[mark] == ' ') {
		memmove(t->buf + mark, t->buf + mark + 1, t->len - mark);
		t->len--;
	}
	text_add(t, ")");
}

static void falco_rule(char *rule, size_t len, const char *kind, json_t *ev)
{
	const char *verdict = jstr(ev, "verdict", NULL, NULL);
	const char *status = jstr(ev, "status", NULL, NULL);

	if ((strcmp(kind, "alert") == 0 || strcmp(kind, "request") == 0) && verdict)
		snprintf(rule, len, "MCP %s", verdict);
	else if (strcmp(kind, "ready") == 0 || strcmp(kind, "shutdown") == 0)
		snprintf(rule, len, "MCP agent %s", kind);
	else if (strcmp(kind, "lost") == 0)
		snprintf(rule, len, "MCP events lost");
	else if (strcmp(kind, "policy") == 0 && status)
		snprintf(rule, len, "MCP policy %s", status);
	else
		snprintf(rule, len, "MCP %s", kind);
}

static json_t *falco_doc(const char *kind, json_t *ev)
{
	const char *time = jstr(ev, "time", NULL, NULL);
	const char *verdict = jstr(ev, "verdict", NULL, NULL);
	const char *action = jstr(ev, "action", NULL, NULL);
	const char *prio = falco_priority[event_level(kind, ev)];
	json_t *doc = json_object(), *of = json_object(), *tags = json_array();
	char rule[128], now[40];
	struct text out;

	if (!doc || !of || !tags) {
		json_decref(doc);
		json_decref(of);
		json_decref(tags);
		return NULL;
	}
	out.len = 0;
	out.buf[0] = '\0';
	if (!time) {
		output__time(now, sizeof(now));
		time = now;
	}
	falco_rule(rule, sizeof(rule), kind, ev);
	json_object_set_new(of, "mcp.kind", json_string(kind));
	if (!strcmp(kind, "alert") || !strcmp(kind, "request") || !strcmp(kind, "connection"))
		falco_request_fields(of, ev);
	else
		falco_other_fields(of, ev);
	falco_output(&out, time, prio, rule, kind, ev);

	json_array_append_new(tags, json_string("mcp"));
	json_array_append_new(tags, json_string(kind));
	if (verdict && (!strcmp(kind, "alert") || !strcmp(kind, "request")))
		json_array_append_new(tags, json_string(verdict));
	if (action && !strcmp(kind, "alert"))
		json_array_append_new(tags, json_string(action));

	json_object_set_new(doc, "time", json_string(time));
	json_object_set_new(doc, "rule", json_string(rule));
	json_object_set_new(doc, "priority", json_string(prio));
	json_object_set_new(doc, "output", json_stringn(out.buf, out.len));
	json_object_set_new(doc, "output_fields", of);
	json_object_set_new(doc, "source", json_string("mcpwarden"));
	json_object_set_new(doc, "tags", tags);
	json_object_set_new(doc, "hostname", json_string(jstr(ev, "node", NULL, NULL) ?: ""));
	return doc;
}

/* ---- OCSF Detection Finding -------------------------------------------- */

static json_t *ocsf_process(json_t *w)
{
	json_t *p = json_object(), *file, *anc, *lineage, *v;
	const char *exe = jstr(w, "exe", NULL, NULL), *sha = jstr(w, "exe_sha256", NULL, NULL);
	const char *comm = jstr(w, "comm", NULL, NULL), *base;
	char uid[32];
	size_t i;

	v = json_object_get(w, "pid");
	if (json_is_integer(v))
		json_object_set(p, "pid", v);
	base = exe ? strrchr(exe, '/') : NULL;
	set_str(p, "name", comm ? comm : base ? base + 1 : exe);
	set_str(p, "cmd_line", jstr(w, "cmdline", NULL, NULL));
	if (exe) {
		file = json_pack("{s:s,s:s,s:i,s:s}", "path", exe, "name", base ? base + 1 : exe,
				 "type_id", 1, "type", "Regular File");
		if (file && sha)
			json_object_set_new(file, "hashes",
					    json_pack("[{s:i,s:s,s:s}]", "algorithm_id", 3,
						      "algorithm", "SHA-256", "value", sha));
		if (file)
			json_object_set_new(p, "file", file);
	}
	v = json_object_get(w, "uid");
	if (json_is_integer(v)) {
		snprintf(uid, sizeof(uid), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		json_object_set_new(p, "user", json_pack("{s:s}", "uid", uid));
	}
	v = json_object_get(w, "ppid");
	if (json_is_integer(v))
		json_object_set_new(p, "parent_process", json_pack("{s:O}", "pid", v));
	anc = json_object_get(w, "ancestors");
	if (json_array_size(anc)) {
		lineage = json_array();
		json_array_foreach(anc, i, v)
			if (jstr(v, "exe", NULL, NULL))
				json_array_append_new(lineage, json_string(jstr(v, "exe", NULL, NULL)));
		json_object_set_new(p, "lineage", lineage);
	}
	if (jstr(w, "container_id", NULL, NULL)) {
		json_t *c = json_object();

		set_str(c, "uid", jstr(w, "container_id", NULL, NULL));
		set_str(c, "runtime", jstr(w, "container_runtime", NULL, NULL));
		set_str(c, "pod_uuid", jstr(w, "pod", "uid", NULL));
		json_object_set_new(p, "container", c);
	}
	return p;
}

static json_t *ocsf_endpoint(const char *ep, const char *svc)
{
	char ip[64];
	long port;

	if (!split_endpoint(ep, ip, sizeof(ip), &port))
		return NULL;
	return svc ? json_pack("{s:s,s:i,s:s}", "ip", ip, "port", (int)port, "svc_name", svc) :
		     json_pack("{s:s,s:i}", "ip", ip, "port", (int)port);
}

static json_t *ocsf_evidence(json_t *ev)
{
	json_t *e = json_object(), *w = json_object_get(ev, "workload"), *data, *v;
	const char *server = jstr(ev, "server", NULL, NULL);
	const char *method = jstr(ev, "request", "method", NULL);

	if (json_is_object(w))
		json_object_set_new(e, "process", ocsf_process(w));
	if ((v = ocsf_endpoint(jstr(ev, "connection", "src", NULL), NULL)))
		json_object_set_new(e, "src_endpoint", v);
	if ((v = ocsf_endpoint(jstr(ev, "connection", "dst", NULL), server)))
		json_object_set_new(e, "dst_endpoint", v);
	if (method) {
		/* A JSON-RPC call is an API call: operation, request id, service. */
		json_t *api = json_pack("{s:s}", "operation", method), *id;
		char idbuf[32];

		id = jget(ev, "request", "id", NULL);
		if (json_is_integer(id)) {
			snprintf(idbuf, sizeof(idbuf), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
			json_object_set_new(api, "request", json_pack("{s:s}", "uid", idbuf));
		} else if (json_is_string(id)) {
			json_object_set_new(api, "request", json_pack("{s:O}", "uid", id));
		}
		if (server)
			json_object_set_new(api, "service", json_pack("{s:s}", "name", server));
		json_object_set_new(e, "api", api);
	}
	/* The claimed identity and the request as the agent read them have no
	 * OCSF object of their own: they are the evidence data. */
	data = json_object();
	set_copy(data, "claim", json_object_get(ev, "claim"));
	set_copy(data, "request", json_object_get(ev, "request"));
	set_copy(data, "related", json_object_get(ev, "related"));
	set_copy(data, "reason", json_object_get(ev, "reason"));
	json_object_set_new(e, "data", data);
	return e;
}

static json_t *ocsf_doc(struct sink *s, json_t *ev)
{
	const char *verdict = jstr(ev, "verdict", NULL, NULL) ?: "unknown";
	const char *action = jstr(ev, "action", NULL, NULL);
	const char *reason = jstr(ev, "reason", NULL, NULL) ?: verdict;
	const char *node = jstr(ev, "node", NULL, NULL) ?: "";
	bool blocked = action && strcmp(action, "blocked") == 0;
	bool high = is_identity_verdict(verdict);
	int64_t ms = event_time_ms(jstr(ev, "time", NULL, NULL));
	json_t *doc, *mcp, *w = json_object_get(ev, "workload");
	char uid[160], title[96], analytic[96];

	snprintf(uid, sizeof(uid), "mcpwarden-%s-%lld-%llu", node, (long long)ms,
		 (unsigned long long)++s->seq);
	snprintf(title, sizeof(title), "MCP %s", verdict);
	snprintf(analytic, sizeof(analytic), "mcpwarden.%s", verdict);
	doc = json_pack("{s:i,s:s,s:i,s:s,s:i,s:s,s:i,s:s,s:I,s:i,s:s,s:i,s:s,"
			"s:i,s:s,s:i,s:s,s:b,s:s}",
			"class_uid", 2004, "class_name", "Detection Finding",
			"category_uid", 2, "category_name", "Findings",
			"activity_id", 1, "activity_name", "Create",
			"type_uid", 200401, "type_name", "Detection Finding: Create",
			"time", (json_int_t)ms,
			"severity_id", high ? 4 : 3, "severity", high ? "High" : "Medium",
			"status_id", 1, "status", "New",
			"action_id", blocked ? 2 : 1, "action", blocked ? "Denied" : "Allowed",
			"disposition_id", blocked ? 2 : 15,
			"disposition", blocked ? "Blocked" : "Detected",
			"is_alert", 1,
			"message", reason);
	if (!doc)
		return NULL;
	json_object_set_new(doc, "metadata",
			    json_pack("{s:s,s:{s:s,s:s,s:s},s:[s]}",
				      "version", OCSF_SCHEMA_VERSION,
				      "product", "name", "mcpwarden", "vendor_name", "mcpwarden",
				      "version", MCPWARDEN_VERSION,
				      "profiles", "security_control"));
	json_object_set_new(doc, "finding_info",
			    json_pack("{s:s,s:s,s:s,s:[s,s],s:I,s:{s:s,s:s,s:i,s:s}}",
				      "uid", uid, "title", title, "desc", reason,
				      "types", "mcp", verdict, "created_time", (json_int_t)ms,
				      "analytic", "uid", analytic, "name", verdict,
				      "type_id", 1, "type", "Rule"));
	json_object_set_new(doc, "device", json_pack("{s:s,s:i,s:s}", "hostname", node,
						     "type_id", 1, "type", "Server"));
	json_object_set_new(doc, "evidences", json_pack("[o]", ocsf_evidence(ev)));
	mcp = json_object();
	set_copy(mcp, "verdict", json_object_get(ev, "verdict"));
	set_copy(mcp, "action", json_object_get(ev, "action"));
	set_copy(mcp, "mode", json_object_get(ev, "mode"));
	set_copy(mcp, "client", json_object_get(ev, "client"));
	set_copy(mcp, "server", json_object_get(ev, "server"));
	set_copy(mcp, "cgroup", json_object_get(w, "cgroup"));
	set_copy(mcp, "gid", json_object_get(w, "gid"));
	set_copy(mcp, "pod", json_object_get(w, "pod"));
	json_object_set_new(doc, "unmapped", json_pack("{s:o}", "mcp", mcp));
	return doc;
}

/* ---- lines ------------------------------------------------------------- */

/* RFC 5424 header fields are PRINTUSASCII without spaces, bounded. */
static void header_field(char *dst, size_t len, const char *src)
{
	size_t i;

	if (!src || !*src) {
		snprintf(dst, len, "-");
		return;
	}
	for (i = 0; i < len - 1 && src[i]; i++)
		dst[i] = src[i] > 32 && src[i] < 127 ? src[i] : '_';
	dst[i] = '\0';
}

/* "LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG". MSG is
 * ASCII-only JSON, so it needs no BOM (MSG-ANY). */
static char *syslog_frame(const struct sink *s, const char *kind, json_t *ev,
			  const char *msg, size_t msg_len, size_t *out_len)
{
	char head[512], host[256], ts[33], msgid[33], prefix[24];
	unsigned int pri = s->facility * 8 + syslog_severity[event_level(kind, ev)];
	int hn, pn;
	char *out;

	header_field(host, sizeof(host), jstr(ev, "node", NULL, NULL));
	header_field(ts, sizeof(ts), jstr(ev, "time", NULL, NULL));
	header_field(msgid, sizeof(msgid), kind);
	hn = snprintf(head, sizeof(head), "<%u>1 %s %s %s %s %s - ", pri, ts, host, s->app,
		      s->procid, msgid);
	pn = snprintf(prefix, sizeof(prefix), "%zu ", (size_t)hn + msg_len);
	out = malloc((size_t)pn + (size_t)hn + msg_len);
	if (!out)
		return NULL;
	memcpy(out, prefix, (size_t)pn);
	memcpy(out + pn, head, (size_t)hn);
	memcpy(out + pn + hn, msg, msg_len);
	*out_len = (size_t)pn + (size_t)hn + msg_len;
	return out;
}

static char *format_line(struct sink *s, const char *kind, json_t *ev, const char *native,
			 size_t native_len, size_t *len)
{
	size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
	json_t *doc;
	char *text, *line;
	size_t n;

	if (s->format == FMT_NATIVE && s->target != TGT_SYSLOG) {
		/* The line output__emit already made. */
		line = malloc(native_len + 2);
		if (!line)
			return NULL;
		memcpy(line, native, native_len);
		line[native_len] = '\n';
		line[native_len + 1] = '\0';
		*len = native_len + 1;
		return line;
	}
	switch (s->format) {
	case FMT_FALCO:
		doc = falco_doc(kind, ev);
		break;
	case FMT_OCSF:
		doc = ocsf_doc(s, ev);
		break;
	default:
		doc = json_incref(ev);
		break;
	}
	if (!doc)
		return NULL;
	if (s->target == TGT_SYSLOG)
		flags |= JSON_ENSURE_ASCII;
	text = json_dumps(doc, flags);
	json_decref(doc);
	if (!text)
		return NULL;
	n = strlen(text);
	if (s->target == TGT_SYSLOG) {
		line = syslog_frame(s, kind, ev, text, n, len);
		free(text);
		return line;
	}
	line = realloc(text, n + 2);
	if (!line) {
		free(text);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*len = n + 1;
	return line;
}

/* ---- the queue --------------------------------------------------------- */

static void stat_add(struct sink *s, uint64_t *counter, uint64_t n)
{
	pthread_mutex_lock(&s->lock);
	*counter += n;
	pthread_mutex_unlock(&s->lock);
}

/* Events of kinds the sink does not write (--output ...,kinds=, and OCSF
 * writes alerts only). */
static bool sink_skips(const struct sink *s, const char *kind)
{
	int k = kind_index(kind, strlen(kind));

	return (s->kinds && (k < 0 || !(s->kinds & (1u << k)))) ||
	       (s->format == FMT_OCSF && strcmp(kind, "alert"));
}

/* Whether format_line() reads the event's object (the native format to a
 * file or stream writes the line output__end made). */
static bool sink_needs(void *ctx, const char *kind)
{
	const struct sink *s = ctx;

	return !sink_skips(s, kind) && !(s->format == FMT_NATIVE && s->target != TGT_SYSLOG);
}

static void sink_on_event(void *ctx, const char *kind, json_t *ev, const char *native,
			  size_t native_len)
{
	struct sink *s = ctx;
	char *line;
	size_t len = 0;

	if (sink_skips(s, kind)) {
		stat_add(s, &s->st.skipped, 1);
		return;
	}
	line = format_line(s, kind, ev, native, native_len, &len);
	if (!line) {
		stat_add(s, &s->st.dropped, 1);
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (s->stopping || s->count == s->ring_cap || s->bytes + len > s->max_queue_bytes) {
		s->st.dropped++;
		pthread_mutex_unlock(&s->lock);
		free(line);
		return;
	}
	s->ring[(s->head + s->count) % s->ring_cap] = (struct line){ line, len };
	s->count++;
	s->bytes += len;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Waits for lines; 0 once stopping with nothing left. */
static size_t queue_take(struct sink *s)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (!s->count && !s->stopping)
		pthread_cond_wait(&s->cond, &s->lock);
	while (n < WRITE_BATCH && s->count) {
		s->batch[n++] = s->ring[s->head];
		s->bytes -= s->ring[s->head].len;
		s->head = (s->head + 1) % s->ring_cap;
		s->count--;
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Past the shutdown deadline: stop trying, drop what is left. */
static bool aborting(struct sink *s)
{
	bool stop;

	pthread_mutex_lock(&s->lock);
	stop = s->stopping && mono_ns() >= s->stop_deadline_ns;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

/* Sleeps ms, or less once past the shutdown deadline. */
static void backoff_wait(struct sink *s, unsigned int ms)
{
	uint64_t until = mono_ns() + (uint64_t)ms * 1000000ull, target;
	struct timespec ts;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		/* Stopping (signalled on the same cond) moves the wake-up
		 * to the shutdown deadline if that comes first. */
		target = s->stopping && s->stop_deadline_ns < until ? s->stop_deadline_ns : until;
		if (mono_ns() >= target)
			break;
		ts.tv_sec = (time_t)(target / 1000000000ull);
		ts.tv_nsec = (long)(target % 1000000000ull);
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---- stdout and files -------------------------------------------------- */

/* The one place a writer may be cancelled (sinks__free_all past its
 * deadline): a write to a pipe nobody reads, or a hung disk. */
static int write_all(int fd, const char *buf, size_t len, size_t *done)
{
	int old, err = 0;
	ssize_t n;

	*done = 0;
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
	while (*done < len) {
		n = write(fd, buf + *done, len - *done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			break;
		}
		*done += (size_t)n;
	}
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	return err;
}

/*
 * One line (ending in '\n') to a stream of lines; *done: its bytes written.
 * A write that fails after part of a line (a disk that filled mid-line)
 * leaves it cut: it is ended before the next line, or that line would be
 * glued to it and lost too.
 */
static int write_line(struct sink *s, int fd, const char *buf, size_t len, size_t *done)
{
	struct stat st;
	size_t nl;
	int err;

	*done = 0;
	if (s->cut) {
		/* A file replaced meanwhile (rotated away) has no cut line. */
		if (!(s->target == TGT_FILE && fstat(fd, &st) == 0 && st.st_size == 0) &&
		    (err = write_all(fd, "\n", 1, &nl)))
			return err;
		s->cut = false;
	}
	err = write_all(fd, buf, len, done);
	if (err && *done)
		s->cut = true;
	return err;
}

static int file_open(struct sink *s)
{
	struct stat st;
	int fd, err;

	fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
		close(fd);
		return err;
	}
	s->fd = fd;
	s->size = (uint64_t)st.st_size;
	return 0;
}

static int gzip_file(const char *src, const char *dst)
{
	char tmp[PATH_MAX + 8];
	int in = -1, out = -1, err = 0;
	gzFile gz = NULL;
	char *buf = NULL;
	ssize_t n;

	snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
	buf = malloc(GZIP_CHUNK);
	in = open(src, O_RDONLY | O_CLOEXEC);
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (!buf || in < 0 || out < 0) {
		err = buf ? -errno : -ENOMEM;
		goto out;
	}
	gz = gzdopen(out, "wb6");
	if (!gz) {
		err = -ENOMEM;
		goto out;
	}
	out = -1;	/* gzclose closes it */
	while ((n = read(in, buf, GZIP_CHUNK)) > 0) {
		if (gzwrite(gz, buf, (unsigned int)n) != (int)n) {
			err = -EIO;
			break;
		}
	}
	if (n < 0 && !err)
		err = -errno;
	if (gzclose(gz) != Z_OK && !err)
		err = -EIO;
	gz = NULL;
	if (!err && rename(tmp, dst))
		err = -errno;
out:
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	if (err)
		unlink(tmp);
	free(buf);
	return err;
}

/*
 * FILE.rotating (the file just rotated away, or one left by a crash in the
 * middle of a rotation) becomes FILE.1.gz; older ones move up one and
 * those past `keep` are deleted, whatever keep was on earlier runs.
 */
static void file_finish_rotation(struct sink *s)
{
	char src[PATH_MAX + 16], from[PATH_MAX + 16], to[PATH_MAX + 16];
	unsigned int i;

	snprintf(src, sizeof(src), "%s.rotating", s->path);
	if (access(src, F_OK))
		return;
	for (i = FILE_KEEP_MAX + 1; i >= s->keep && i > 0; i--) {
		snprintf(to, sizeof(to), "%s.%u.gz", s->path, i);
		unlink(to);
	}
	for (i = s->keep; i > 1; i--) {
		snprintf(from, sizeof(from), "%s.%u.gz", s->path, i - 1);
		snprintf(to, sizeof(to), "%s.%u.gz", s->path, i);
		if (rename(from, to) && errno != ENOENT)
			stat_add(s, &s->st.errors, 1);
	}
	snprintf(to, sizeof(to), "%s.1.gz", s->path);
	if (s->keep && gzip_file(src, to))
		stat_add(s, &s->st.errors, 1);
	unlink(src);
}

static void file_rotate(struct sink *s)
{
	char rot[PATH_MAX + 16];
	int err = 0;

	close(s->fd);
	s->fd = -1;
	snprintf(rot, sizeof(rot), "%s.rotating", s->path);
	if (rename(s->path, rot) && errno != ENOENT)
		err = -errno;
	if (err) {
		stat_add(s, &s->st.errors, 1);
	} else {
		stat_add(s, &s->st.rotations, 1);
		file_finish_rotation(s);
	}
	if (file_open(s) == 0 && err)
		s->size = 0;	/* keep appending; try again after max_bytes more */
}

static int file_write(struct sink *s, const char *buf, size_t len)
{
	size_t done;
	int err;

	if (s->fd < 0 && (err = file_open(s)))
		goto fail;
	if (s->max_bytes && s->size && s->size + len > s->max_bytes) {
		file_rotate(s);
		if (s->fd < 0 && (err = file_open(s)))
			goto fail;
	}
	err = write_line(s, s->fd, buf, len, &done);
	s->size += done;
	if (err) {
		/* Reopened for the next line: the file may have been replaced. */
		close(s->fd);
		s->fd = -1;
		goto fail;
	}
	return 0;
fail:
	stat_add(s, &s->st.errors, 1);
	return err;
}

/* ---- syslog over TCP --------------------------------------------------- */

/* 1 when fd is ready, -ETIMEDOUT past timeout_ms (or the shutdown deadline;
 * timeout_ms < 0 waits for that alone), -EPIPE on a socket error. */
static int wait_fd(struct sink *s, int fd, short events, int timeout_ms)
{
	uint64_t until = timeout_ms < 0 ? UINT64_MAX :
			 mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	for (;;) {
		if (aborting(s) || mono_ns() >= until)
			return -ETIMEDOUT;
		n = poll(&p, 1, POLL_SLICE_MS);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			return (p.revents & events) ? 1 : -EPIPE;
	}
}

static int syslog_connect(struct sink *s)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	int fd, rc, err = -EHOSTUNREACH, soerr, one = 1;
	socklen_t sl = sizeof(soerr);

	rc = getaddrinfo(s->host, s->port, &hints, &res);
	if (rc)
		return rc == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS) {
			err = -errno;
			close(fd);
			continue;
		}
		rc = wait_fd(s, fd, POLLOUT, CONNECT_TIMEOUT_MS);
		soerr = 0;
		if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && !soerr) {
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
			s->sock = fd;
			freeaddrinfo(res);
			return 0;
		}
		err = rc < 0 ? rc : soerr ? -soerr : -EHOSTUNREACH;
		close(fd);
		if (err == -ETIMEDOUT && aborting(s))
			break;
	}
	freeaddrinfo(res);
	return err;
}

static void syslog_disconnect(struct sink *s)
{
	if (s->sock >= 0)
		close(s->sock);
	s->sock = -1;
	pthread_mutex_lock(&s->lock);
	s->st.connected = false;
	pthread_mutex_unlock(&s->lock);
}

/* A syslog peer never talks: end of stream or an error means it is gone
 * (checked before each line so the line goes to the next connection). */
static bool peer_gone(int fd)
{
	char buf[256];
	ssize_t n;

	for (;;) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n == 0)
			return true;
		return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
	}
}

static int send_all(struct sink *s, const char *buf, size_t len)
{
	ssize_t n;
	int rc;

	while (len) {
		n = send(s->sock, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* A peer that stops reading holds us here, and the
			 * queue, not the caller, takes the overflow. */
			rc = wait_fd(s, s->sock, POLLOUT, -1);
			if (rc < 0)
				return rc;
			continue;
		}
		return n < 0 ? -errno : -EPIPE;
	}
	return 0;
}

static int syslog_write(struct sink *s, const char *buf, size_t len)
{
	int err;

	for (;;) {
		if (aborting(s))
			return -ETIMEDOUT;
		if (s->sock < 0) {
			err = syslog_connect(s);
			if (err) {
				stat_add(s, &s->st.errors, 1);
				backoff_wait(s, s->backoff_ms);
				s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
										   s->backoff_ms * 2;
				continue;
			}
			s->backoff_ms = BACKOFF_MIN_MS;
			pthread_mutex_lock(&s->lock);
			s->st.connected = true;
			s->st.connects++;
			pthread_mutex_unlock(&s->lock);
		}
		if (peer_gone(s->sock)) {
			syslog_disconnect(s);
			continue;
		}
		err = send_all(s, buf, len);
		if (!err)
			return 0;
		/* Part of a frame may have gone: the stream cannot go on. The
		 * whole line is sent again on the next connection. */
		syslog_disconnect(s);
		stat_add(s, &s->st.errors, 1);
		if (err == -ETIMEDOUT)
			return err;
	}
}

/* ---- writer thread ----------------------------------------------------- */

static int deliver(struct sink *s, const char *buf, size_t len)
{
	size_t done;

	if (aborting(s))
		return -ETIMEDOUT;
	switch (s->target) {
	case TGT_FILE:
		return file_write(s, buf, len);
	case TGT_SYSLOG:
		return syslog_write(s, buf, len);
	default:
		if (write_line(s, STDOUT_FILENO, buf, len, &done)) {
			stat_add(s, &s->st.errors, 1);
			return -EIO;
		}
		return 0;
	}
}

static void *writer_main(void *arg)
{
	struct sink *s = arg;
	sigset_t all;
	size_t n, i;
	int err;

	/* Signals belong to the agent's loop; a closed pipe is an error here. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	if (s->target == TGT_FILE)
		file_finish_rotation(s);
	while ((n = queue_take(s))) {
		for (i = 0; i < n; i++) {
			err = deliver(s, s->batch[i].buf, s->batch[i].len);
			free(s->batch[i].buf);
			s->batch[i].buf = NULL;
			pthread_mutex_lock(&s->lock);
			if (err)
				s->st.dropped++;
			else
				s->st.written++;
			pthread_mutex_unlock(&s->lock);
		}
	}
	return NULL;
}

/* ---- lifecycle --------------------------------------------------------- */

static void sink_free(struct sink *s)
{
	size_t i;

	if (!s)
		return;
	for (i = 0; s->ring && i < s->count; i++)
		free(s->ring[(s->head + i) % s->ring_cap].buf);
	for (i = 0; i < WRITE_BATCH; i++)
		free(s->batch[i].buf);
	if (s->fd >= 0)
		close(s->fd);
	if (s->sock >= 0)
		close(s->sock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->ring);
	free(s->path);
	free(s);
}

static void sinks_stop(struct sink *list, unsigned int timeout_ms)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct timespec until;
	struct sink *s;

	for (s = list; s; s = s->next) {
		pthread_mutex_lock(&s->lock);
		s->stopping = true;
		s->stop_deadline_ns = deadline;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
	/* The writers stop on their own by the deadline except inside a
	 * blocking write; a little grace, then they are cancelled there. */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000 + 1;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	for (s = list; s; s = s->next) {
		if (!s->started)
			continue;
		if (pthread_timedjoin_np(s->thread, NULL, &until)) {
			pthread_cancel(s->thread);
			pthread_join(s->thread, NULL);
		}
		s->started = false;
	}
}

int sinks__add(struct output *o, const char *spec, struct sink **list, char *err,
	       size_t errlen)
{
	pthread_condattr_t ca;
	struct sink *s, **tail;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->fd = -1;
	s->sock = -1;
	s->ring_cap = QUEUE_LINES_DEFAULT;
	s->max_queue_bytes = QUEUE_BYTES_DEFAULT;
	s->max_bytes = FILE_MAX_BYTES_DEFAULT;
	s->keep = FILE_KEEP_DEFAULT;
	s->facility = SYSLOG_FACILITY_DEFAULT;
	s->backoff_ms = BACKOFF_MIN_MS;
	snprintf(s->app, sizeof(s->app), "mcpwarden");
	snprintf(s->procid, sizeof(s->procid), "%d", (int)getpid());
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);

	ret = parse_spec(s, spec, err, errlen);
	if (ret)
		goto fail;
	s->st.format = format_names[s->format];
	s->st.target = target_names[s->target];
	s->ring = calloc(s->ring_cap, sizeof(*s->ring));
	if (!s->ring) {
		snprintf(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	if (s->target == TGT_FILE) {
		ret = file_open(s);
		if (ret) {
			snprintf(err, errlen, "--output %s: cannot open %s: %s", spec, s->path,
				 strerror(-ret));
			goto fail;
		}
	}
	ret = -pthread_create(&s->thread, NULL, writer_main, s);
	if (ret) {
		snprintf(err, errlen, "--output %s: cannot start its writer thread: %s", spec,
			 strerror(-ret));
		goto fail;
	}
	s->started = true;
	ret = output__add_sink_needs(o, sink_on_event, sink_needs, s);
	if (ret) {
		snprintf(err, errlen, "--output %s: too many event outputs", spec);
		sinks_stop(s, 0);
		goto fail;
	}
	for (tail = list; *tail; tail = &(*tail)->next)
		;
	*tail = s;
	return 0;
fail:
	sink_free(s);
	return ret;
}

size_t sinks__stats(const struct sink *list, struct sink_stats *out, size_t max)
{
	const struct sink *s;
	size_t n = 0;

	for (s = list; s; s = s->next, n++) {
		struct sink *w = (struct sink *)s;	/* the lock, only */

		if (n >= max)
			continue;
		pthread_mutex_lock(&w->lock);
		out[n] = s->st;
		out[n].queued = s->count;
		out[n].queued_bytes = s->bytes;
		pthread_mutex_unlock(&w->lock);
	}
	return n;
}

void sinks__collect(const struct sink *list, struct prom_buf *b)
{
	struct sink_stats st;
	const struct sink *s;

	for (s = list; s; s = s->next) {
		const char *const *l;

		sinks__stats(s, &st, 1);
		l = PROM_LABELS("sink", st.name, "format", st.format);
		prom__counter(b, "mcpwarden_sink_lines_written_total",
			      "Event lines a sink wrote out.", l, (double)st.written);
		prom__counter(b, "mcpwarden_sink_lines_dropped_total",
			      "Event lines a sink lost: queue full or write failed.", l,
			      (double)st.dropped);
		prom__counter(b, "mcpwarden_sink_events_skipped_total",
			      "Events a sink does not carry (kinds filter, OCSF non-alerts).", l,
			      (double)st.skipped);
		prom__counter(b, "mcpwarden_sink_errors_total",
			      "Open, write, rotate, compress or connect failures of a sink.", l,
			      (double)st.errors);
		prom__gauge(b, "mcpwarden_sink_queue_lines", "Lines waiting in a sink's queue.",
			    l, (double)st.queued);
		prom__gauge(b, "mcpwarden_sink_queue_bytes", "Bytes waiting in a sink's queue.",
			    l, (double)st.queued_bytes);
		if (strcmp(st.target, "file") == 0)
			prom__counter(b, "mcpwarden_sink_rotations_total",
				      "Size-based rotations of a file sink.", l,
				      (double)st.rotations);
		if (strcmp(st.target, "syslog") == 0) {
			prom__gauge(b, "mcpwarden_sink_connected",
				    "1 while a syslog sink is connected to its peer.", l,
				    st.connected ? 1 : 0);
			prom__counter(b, "mcpwarden_sink_connects_total",
				      "Connections a syslog sink made.", l, (double)st.connects);
		}
	}
}

void sinks__free_all(struct sink *list, unsigned int timeout_ms)
{
	struct sink *s, *next;

	sinks_stop(list, timeout_ms);
	for (s = list; s; s = next) {
		next = s->next;
		sink_free(s);
	}
}
