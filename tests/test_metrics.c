// SPDX-License-Identifier: GPL-2.0
/*
 * Metrics endpoint tests (userspace/metrics.c, userspace/bpfstats.c). The
 * responder runs on a free loopback port and is driven the way the agent
 * drives it, by calling metrics__on_readable when its fd is readable,
 * while real sockets talk to it. Bodies are checked by a strict parser of
 * the text exposition format here, and by `promtool check metrics` when
 * promtool is installed (Debian package prometheus).
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "harness.h"
#include "bpfstats.h"
#include "metrics.h"

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int connect_to(int port)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Serves while reading the client's answer until it closes or ms pass.
 * Returns the bytes read (NUL-terminated in *out), or -1 on timeout. */
static ssize_t pump(struct metrics *m, int fd, char **out, int ms)
{
	uint64_t until = mono_ns() + (uint64_t)ms * 1000000ull;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	struct pollfd p[2] = {
		{ .fd = metrics__fd(m), .events = POLLIN },
		{ .fd = fd, .events = POLLIN },
	};
	ssize_t n;

	while (mono_ns() < until) {
		poll(p, 2, 20);
		if (p[0].revents & POLLIN)
			metrics__on_readable(m);
		if (!(p[1].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (len + 4096 > cap)
			buf = realloc(buf, cap *= 2);
		n = recv(fd, buf + len, cap - len - 1, MSG_DONTWAIT);
		if (n > 0) {
			len += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			buf[len] = '\0';
			*out = buf;
			return (ssize_t)len;
		}
	}
	free(buf);
	*out = NULL;
	return -1;
}

/* One exchange: raw request in, whole answer out. */
static ssize_t exchange_n(struct metrics *m, const char *req, size_t len, char **out)
{
	int fd = connect_to(metrics__port(m));
	ssize_t n;

	*out = NULL;
	if (fd < 0)
		return -1;
	if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	n = pump(m, fd, out, 5000);
	close(fd);
	return n;
}

static ssize_t exchange(struct metrics *m, const char *req, char **out)
{
	return exchange_n(m, req, strlen(req), out);
}

static int status_of(const char *resp)
{
	int status = 0;

	if (!resp || sscanf(resp, "HTTP/1.1 %d ", &status) != 1)
		return -1;
	return status;
}

static const char *body_of(const char *resp)
{
	const char *p = resp ? strstr(resp, "\r\n\r\n") : NULL;

	return p ? p + 4 : NULL;
}

static long content_length(const char *resp)
{
	const char *p = resp ? strstr(resp, "\r\nContent-Length: ") : NULL;

	return p ? strtol(p + 18, NULL, 10) : -1;
}

/* ---- a strict reader of the text exposition format 0.0.4 ------------- */

struct fam_seen {
	char name[128];
	char type[16];
	bool closed;		/* another family has started since */
};

static bool valid_name(const char *s, size_t n, bool metric)
{
	size_t i;

	if (!n)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		      (metric && c == ':') || (i && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

static bool valid_value(const char *s)
{
	char *end;

	if (!strcmp(s, "NaN") || !strcmp(s, "+Inf") || !strcmp(s, "-Inf"))
		return true;
	strtod(s, &end);
	return end != s && *end == '\0';
}

/* Checks one sample line; returns the metric name length. */
static size_t check_sample(const char *line, char *le, size_t lelen)
{
	const char *p = line, *name = line;
	size_t n;

	le[0] = '\0';
	while (*p && *p != '{' && *p != ' ')
		p++;
	n = (size_t)(p - name);
	if (!valid_name(name, n, true))
		return 0;
	if (*p == '{') {
		p++;
		while (*p != '}') {
			const char *ln = p;
			char val[256];
			size_t vl = 0;

			while (*p && *p != '=')
				p++;
			if (!valid_name(ln, (size_t)(p - ln), false) || p[0] != '=' || p[1] != '"')
				return 0;
			p += 2;
			while (*p && *p != '"') {
				if (*p == '\\') {
					if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
						return 0;
					p++;
				} else if (*p == '\n') {
					return 0;
				}
				if (vl < sizeof(val) - 1)
					val[vl++] = *p;
				p++;
			}
			if (*p != '"')
				return 0;
			val[vl] = '\0';
			if ((size_t)(p - ln) > 4 && strncmp(ln, "le=", 3) == 0)
				snprintf(le, lelen, "%s", val);
			p++;
			if (*p == ',')
				p++;
			else if (*p != '}')
				return 0;
		}
		p++;
	}
	if (*p != ' ' || !valid_value(p + 1))
		return 0;
	return n;
}

/* Every line well-formed, HELP and TYPE once per family and before its
 * samples, each family's samples together, histogram buckets cumulative
 * and ending in +Inf = _count. Returns the number of families. */
static int check_exposition(const char *body)
{
	struct fam_seen *fams = calloc(4096, sizeof(*fams));
	int n_fams = 0, cur = -1, i, ret = -1;
	double last_bucket = -1, inf_bucket = -1;
	char *copy = strdup(body), *save = NULL, *line, le[64];

	if (!ASSERT_TRUE(body[0] == '\0' || body[strlen(body) - 1] == '\n', "ends in a newline"))
		goto out;
	for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[128], word[16];

		if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) {
			bool help = line[2] == 'H';

			if (!ASSERT_TRUE(sscanf(line + 7, "%127s", name) == 1, line))
				goto out;
			for (i = 0; i < n_fams && strcmp(fams[i].name, name); i++)
				;
			if (help) {
				if (!ASSERT_EQ(i, n_fams, "HELP once per family"))
					goto out;
				if (cur >= 0)
					fams[cur].closed = true;
				snprintf(fams[n_fams].name, sizeof(fams[0].name), "%s", name);
				cur = n_fams++;
				last_bucket = -1;
				continue;
			}
			if (!ASSERT_TRUE(i == cur && !fams[cur].type[0], "TYPE once, after HELP") ||
			    !ASSERT_TRUE(sscanf(line + 7, "%*s %15s", word) == 1, line) ||
			    !ASSERT_TRUE(!strcmp(word, "counter") || !strcmp(word, "gauge") ||
					 !strcmp(word, "histogram"), word))
				goto out;
			snprintf(fams[cur].type, sizeof(fams[cur].type), "%s", word);
			continue;
		}
		if (!ASSERT_TRUE(line[0] != '#', line))
			goto out;
		{
			size_t n = check_sample(line, le, sizeof(le));
			const char *suffix;
			double v = strtod(strrchr(line, ' ') + 1, NULL);

			if (!ASSERT_TRUE(n > 0, line) || !ASSERT_TRUE(cur >= 0, "sample after TYPE"))
				goto out;
			suffix = line + strlen(fams[cur].name);
			if (!ASSERT_TRUE(!strncmp(line, fams[cur].name, strlen(fams[cur].name)), line))
				goto out;
			if (strcmp(fams[cur].type, "histogram")) {
				if (!ASSERT_EQ(n, strlen(fams[cur].name), "sample of its family"))
					goto out;
				continue;
			}
			if (!strncmp(suffix, "_bucket", 7)) {
				if (!ASSERT_TRUE(le[0] != '\0', "bucket has le") ||
				    !ASSERT_TRUE(v >= last_bucket, "buckets cumulative"))
					goto out;
				last_bucket = v;
				if (!strcmp(le, "+Inf"))
					inf_bucket = v;
			} else if (!strncmp(suffix, "_count", 6)) {
				if (!ASSERT_TRUE(v == inf_bucket, "+Inf bucket equals _count"))
					goto out;
				last_bucket = -1;
			} else if (!ASSERT_TRUE(!strncmp(suffix, "_sum", 4), line)) {
				goto out;
			}
		}
	}
	ret = n_fams;
out:
	free(copy);
	free(fams);
	return ret;
}

/* promtool's own check when it is there (exit 0: no problems). */
static void promtool_check(const char *body)
{
	char path[] = "/tmp/mcpw-metrics-XXXXXX", cmd[256];
	int fd, st;

	if (access("/usr/bin/promtool", X_OK)) {
		test__log("promtool not installed: strict parser only");
		return;
	}
	fd = mkstemp(path);
	if (!ASSERT_GE(fd, 0, "mkstemp"))
		return;
	ASSERT_EQ(write(fd, body, strlen(body)), (ssize_t)strlen(body), "write body");
	close(fd);
	snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s 2>&1", path);
	st = system(cmd);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "promtool check metrics");
	unlink(path);
}

/* ---- the tests --------------------------------------------------------- */

struct scrape_ctx {
	struct latency_hist lat;
	int label_sets;
};

static void collect(void *ctx, struct prom_buf *b)
{
	struct scrape_ctx *c = ctx;
	char verdict[32];
	int i;

	/* Families interleaved on purpose: the builder groups them. */
	prom__counter(b, "mcpw_test_events_total", "Events written, by kind.",
		      PROM_LABELS("kind", "alert"), 3);
	prom__gauge(b, "mcpw_test_table_entries", "Entries in a table.",
		    PROM_LABELS("table", "conns"), 12);
	prom__counter(b, "mcpw_test_events_total", "ignored: HELP comes from the first call",
		      PROM_LABELS("kind", "request"), 1e6);
	prom__gauge(b, "mcpw_test_table_entries", NULL, PROM_LABELS("table", "procs"), 0.5);
	prom__counter(b, "mcpw_test_escapes_total", "Help with a backslash \\ and\na newline.",
		      PROM_LABELS("path", "C:\\dir", "quote", "say \"hi\"", "nl", "a\nb"), 1);
	prom__gauge(b, "mcpw_test_ratio", "A gauge without labels.", NULL, 0.1);
	prom__gauge(b, "mcpw_test_nan", "Not a number.", NULL, 0.0 / 0.0);
	latency_hist__prom(&c->lat, b, "mcpw_test_verdict_latency_seconds",
			   "Verdict latency.", NULL);
	latency_hist__prom(&c->lat, b, "mcpw_test_stage_latency_seconds", "Per stage.",
			   PROM_LABELS("stage", "parse"));
	latency_hist__prom(&c->lat, b, "mcpw_test_stage_latency_seconds", "Per stage.",
			   PROM_LABELS("stage", "decide"));
	/* A big body: written out over many non-blocking sends. */
	for (i = 0; i < c->label_sets; i++) {
		snprintf(verdict, sizeof(verdict), "verdict_%05d", i);
		prom__counter(b, "mcpw_test_verdicts_total", "Verdicts, by verdict and action.",
			      PROM_LABELS("verdict", verdict, "action", i % 2 ? "blocked" : "alerted"),
			      (double)i);
	}
	/* Left out and counted, never emitted broken. */
	prom__counter(b, "0bad name", "x", NULL, 1);
	prom__gauge(b, "mcpw_test_events_total", "type clash", NULL, 1);
	prom__counter(b, "mcpw_test_bad_label_total", "x", PROM_LABELS("__reserved", "x"), 1);
}

static int health_state;

static int health(void *ctx, char *reason, size_t len)
{
	if (!health_state)
		return 0;
	snprintf(reason, len, "ring buffer lost events\r\nfor 3 ticks");
	return -1;
}

void test_metrics_scrape(void)
{
	struct scrape_ctx ctx = { .label_sets = 2000 };
	struct metrics_stats st;
	struct metrics *m = NULL;
	char err[256], *resp = NULL;
	const char *body;
	ssize_t n;
	static const uint64_t obs[] = { 5, 10, 11, 30, 99, 250, 251, 4000, 99999, 100000, 100001,
					7000000 };
	size_t i;

	for (i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
		latency_hist__add(&ctx.lat, obs[i]);
	if (!ASSERT_OK(metrics__open("127.0.0.1:0", &m, err, sizeof(err)), err))
		return;
	ASSERT_TRUE(metrics__port(m) > 0, "bound a port");
	metrics__set_collect(m, collect, &ctx);
	n = exchange(m, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n", &resp);
	if (!ASSERT_TRUE(n > 100000, "a body over 100 KB arrived whole"))
		goto cleanup;
	ASSERT_EQ(status_of(resp), 200, "status");
	ASSERT_STRSTR(resp, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n", "type");
	ASSERT_STRSTR(resp, "\r\nConnection: close\r\n", "close");
	body = body_of(resp);
	ASSERT_EQ(content_length(resp), (long)strlen(body), "Content-Length");
	ASSERT_EQ(check_exposition(body), 8, "families");
	ASSERT_STRSTR(body, "# HELP mcpw_test_events_total Events written, by kind.\n"
		      "# TYPE mcpw_test_events_total counter\n"
		      "mcpw_test_events_total{kind=\"alert\"} 3\n"
		      "mcpw_test_events_total{kind=\"request\"} 1000000\n", "grouped family");
	ASSERT_STRSTR(body, "# HELP mcpw_test_escapes_total Help with a backslash \\\\ and\\na "
		      "newline.\n", "HELP escaped");
	ASSERT_STRSTR(body, "mcpw_test_escapes_total{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\","
		      "nl=\"a\\nb\"} 1\n", "label values escaped");
	ASSERT_STRSTR(body, "mcpw_test_table_entries{table=\"procs\"} 0.5\n", "gauge value");
	ASSERT_STRSTR(body, "mcpw_test_ratio 0.1\n", "shortest double");
	ASSERT_STRSTR(body, "mcpw_test_nan NaN\n", "NaN");
	ASSERT_STRSTR(body, "mcpw_test_verdict_latency_seconds_bucket{le=\"1e-05\"} 2\n", "10us");
	ASSERT_STRSTR(body, "mcpw_test_verdict_latency_seconds_bucket{le=\"2.5e-05\"} 3\n", "25us");
	ASSERT_STRSTR(body, "mcpw_test_verdict_latency_seconds_bucket{le=\"0.1\"} 10\n", "100ms");
	ASSERT_STRSTR(body, "mcpw_test_verdict_latency_seconds_bucket{le=\"+Inf\"} 12\n", "+Inf");
	ASSERT_STRSTR(body, "mcpw_test_verdict_latency_seconds_count 12\n", "count");
	ASSERT_STRSTR(body, "mcpw_test_verdict_latency_seconds_sum 7.304656\n", "sum in seconds");
	ASSERT_STRSTR(body, "mcpw_test_stage_latency_seconds_bucket{stage=\"decide\",le=\"0.0001\"} 5\n",
		      "labels then le");
	ASSERT_FALSE(strstr(body, "type clash"), "clashing family left out");
	ASSERT_FALSE(strstr(body, "bad"), "bad names left out");
	promtool_check(body);
	free(resp);
	resp = NULL;

	/* HEAD: the same head, no body. */
	n = exchange(m, "HEAD /metrics HTTP/1.0\r\n\r\n", &resp);
	ASSERT_EQ(status_of(resp), 200, "HEAD status");
	ASSERT_TRUE(content_length(resp) > 100000, "HEAD Content-Length");
	ASSERT_STREQ(body_of(resp), "", "HEAD has no body");
	metrics__stats(m, &st);
	ASSERT_EQ(st.scrapes, 2, "scrapes");
	ASSERT_EQ(st.body_errors, 3, "left-out samples counted");
cleanup:
	free(resp);
	metrics__close(m);
}

void test_metrics_healthz(void)
{
	struct metrics *m = NULL;
	char err[256], *resp = NULL;
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n";

	if (!ASSERT_OK(metrics__open("127.0.0.1:0", &m, err, sizeof(err)), err))
		return;
	exchange(m, req, &resp);
	ASSERT_EQ(status_of(resp), 200, "no callback: healthy");
	ASSERT_STREQ(body_of(resp), "ok\n", "ok");
	free(resp);
	metrics__set_health(m, health, NULL);
	health_state = 0;
	exchange(m, req, &resp);
	ASSERT_EQ(status_of(resp), 200, "healthy");
	ASSERT_STREQ(body_of(resp), "ok\n", "ok");
	free(resp);
	health_state = 1;
	exchange(m, req, &resp);
	ASSERT_EQ(status_of(resp), 503, "unhealthy");
	ASSERT_STREQ(body_of(resp), "ring buffer lost events  for 3 ticks\n", "reason, one line");
	free(resp);
	/* A query string does not change the path. */
	exchange(m, "GET /healthz?verbose=1 HTTP/1.1\r\n\r\n", &resp);
	ASSERT_EQ(status_of(resp), 503, "query ignored");
	free(resp);
	metrics__close(m);
}

void test_metrics_errors(void)
{
	static const struct {
		const char *req;
		int status;
	} cases[] = {
		{ "GET /nope HTTP/1.1\r\n\r\n", 404 },
		{ "GET / HTTP/1.1\r\n\r\n", 404 },
		{ "GET /metricsx HTTP/1.1\r\n\r\n", 404 },
		{ "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405 },
		{ "HELLO\r\n\r\n", 400 },
		{ "GET /metrics\r\n\r\n", 400 },
		{ "GET /metrics HTTP/2.0\r\n\r\n", 400 },
		{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400 },
		{ "GET metrics HTTP/1.1\r\n\r\n", 400 },
		{ "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", 400 },
		{ "GET /metrics HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400 },
		{ "GET /metrics HTTP/1.1\r\nX : a\r\n\r\n", 400 },
		{ "GET  /metrics HTTP/1.1\r\n\r\n", 400 },
		{ "GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n", 400 },
		{ "\r\n\r\nGET /healthz HTTP/1.1\n\n", 200 },
	};
	struct metrics_stats st;
	struct metrics *m = NULL;
	char err[256], *resp = NULL, *big;
	size_t i;
	ssize_t n;

	if (!ASSERT_OK(metrics__open("127.0.0.1:0", &m, err, sizeof(err)), err))
		return;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		exchange(m, cases[i].req, &resp);
		ASSERT_EQ(status_of(resp), cases[i].status, cases[i].req);
		ASSERT_STRSTR(resp, "\r\nConnection: close\r\n", "close");
		free(resp);
	}
	exchange(m, "DELETE /metrics HTTP/1.1\r\n\r\n", &resp);
	ASSERT_STRSTR(resp, "\r\nAllow: GET, HEAD\r\n", "405 says what is allowed");
	free(resp);

	/* A head past 4 KiB: 400, then closed; the server reads no more. */
	big = malloc(6000);
	n = snprintf(big, 6000, "GET /metrics HTTP/1.1\r\nX-Pad: ");
	memset(big + n, 'a', 6000 - (size_t)n);
	n = exchange_n(m, big, 6000, &resp);
	ASSERT_TRUE(n >= 0, "answered and closed");
	ASSERT_EQ(status_of(resp), 400, "oversized request");
	free(resp);
	free(big);
	metrics__stats(m, &st);
	ASSERT_EQ(st.bad_requests, 11, "bad requests counted");
	metrics__close(m);
}

static void drive(struct metrics *m, int ms)
{
	uint64_t until = mono_ns() + (uint64_t)ms * 1000000ull;
	struct pollfd p = { .fd = metrics__fd(m), .events = POLLIN };

	while (mono_ns() < until) {
		if (poll(&p, 1, 10) > 0)
			metrics__on_readable(m);
	}
}

static bool closed_by_peer(int fd)
{
	char c;

	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

void test_metrics_slow_client(void)
{
	struct metrics_stats st;
	struct metrics *m = NULL;
	char err[256], *resp = NULL;
	int slow = -1, idle = -1;

	if (!ASSERT_OK(metrics__open("127.0.0.1:0", &m, err, sizeof(err)), err))
		return;
	slow = connect_to(metrics__port(m));
	idle = connect_to(metrics__port(m));
	if (!ASSERT_GE(slow, 0, "connect") || !ASSERT_GE(idle, 0, "connect"))
		goto cleanup;
	ASSERT_EQ(send(slow, "GET /metrics HTTP/1.1\r\nHost:", 28, 0), 28, "half a request");
	drive(m, 100);
	ASSERT_FALSE(closed_by_peer(slow), "waiting for the rest");
	metrics__tick(m, mono_ns());
	drive(m, 20);
	ASSERT_FALSE(closed_by_peer(slow), "not yet past the deadline");
	metrics__tick(m, mono_ns() + METRICS_READ_TIMEOUT_NS + 1000000000ull);
	ASSERT_TRUE(closed_by_peer(slow), "slow client dropped");
	ASSERT_TRUE(closed_by_peer(idle), "idle client dropped");
	metrics__stats(m, &st);
	ASSERT_EQ(st.timeouts, 2, "timeouts counted");
	/* Still serving. */
	exchange(m, "GET /healthz HTTP/1.1\r\n\r\n", &resp);
	ASSERT_EQ(status_of(resp), 200, "serves after drops");
cleanup:
	free(resp);
	if (slow >= 0)
		close(slow);
	if (idle >= 0)
		close(idle);
	metrics__close(m);
}

void test_metrics_max_clients(void)
{
	int fds[METRICS_MAX_CLIENTS + 1], i, extra;
	struct metrics_stats st;
	struct metrics *m = NULL;
	char err[256], *resp = NULL;

	for (i = 0; i <= METRICS_MAX_CLIENTS; i++)
		fds[i] = -1;
	if (!ASSERT_OK(metrics__open("127.0.0.1:0", &m, err, sizeof(err)), err))
		return;
	for (i = 0; i < METRICS_MAX_CLIENTS; i++) {
		fds[i] = connect_to(metrics__port(m));
		drive(m, 5);
	}
	extra = connect_to(metrics__port(m));
	fds[METRICS_MAX_CLIENTS] = extra;
	if (!ASSERT_GE(extra, 0, "17th connects"))
		goto cleanup;
	if (!ASSERT_TRUE(pump(m, extra, &resp, 3000) > 0, "17th answered"))
		goto cleanup;
	ASSERT_EQ(status_of(resp), 503, "turned away");
	metrics__stats(m, &st);
	ASSERT_EQ(st.rejected, 1, "rejected counted");
	for (i = 0; i < METRICS_MAX_CLIENTS; i++)
		ASSERT_FALSE(closed_by_peer(fds[i]), "the 16 are kept");
	free(resp);
	resp = NULL;
	/* A slot frees up and the next client is served. */
	ASSERT_EQ(send(fds[0], "GET /healthz HTTP/1.1\r\n\r\n", 25, 0), 25, "send");
	ASSERT_TRUE(pump(m, fds[0], &resp, 3000) > 0, "answered");
	ASSERT_EQ(status_of(resp), 200, "served");
	free(resp);
	resp = NULL;
	exchange(m, "GET /healthz HTTP/1.1\r\n\r\n", &resp);
	ASSERT_EQ(status_of(resp), 200, "new client served");
cleanup:
	free(resp);
	for (i = 0; i <= METRICS_MAX_CLIENTS; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	metrics__close(m);
}

#define PARSE(s) metrics__parse_request((s), strlen(s), &req)

void test_metrics_parse(void)
{
	static const char full[] = "GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nBODY";
	struct metrics_request req;
	char *buf;
	size_t i;
	int ret;

	ret = metrics__parse_request(full, sizeof(full) - 1, &req);
	ASSERT_EQ(ret, (int)sizeof(full) - 1 - 4, "head length");
	ASSERT_EQ(req.status, 200, "status");
	ASSERT_EQ(req.route, METRICS_ROUTE_METRICS, "route");
	ASSERT_FALSE(req.head, "GET");
	for (i = 0; i < sizeof(full) - 1 - 4; i++)
		if (!ASSERT_EQ(metrics__parse_request(full, i, &req), 0, "prefix needs more"))
			break;
	ASSERT_EQ(PARSE("HEAD /healthz HTTP/1.0\n\n"), 24, "bare LF");
	ASSERT_TRUE(req.head && req.route == METRICS_ROUTE_HEALTHZ, "HEAD /healthz");
	ASSERT_EQ(PARSE("get /metrics HTTP/1.1\r\n\r\n"), 25, "lower");
	ASSERT_EQ(req.status, 405, "methods are case-sensitive");
	ASSERT_EQ(PARSE("GET /x HTTP/1.1\r\nA:\r\n\r\n"), 23, "empty value");
	ASSERT_EQ(req.status, 404, "404");
	ASSERT_EQ(PARSE("GET /x HTTP/1.1\r\n\tA: b\r\n\r\n"), -EINVAL, "fold");
	ASSERT_EQ(req.status, 400, "400");
	ASSERT_EQ(PARSE("GET /x HTTP/1.1\r\nA: \x01\r\n\r\n"), -EINVAL, "control byte");
	ASSERT_EQ(PARSE("GET /x HTTP/1.1\r\nA: \xc3\xa9\r\n\r\n"), 26, "obs-text allowed");
	ASSERT_EQ(PARSE("GET /\x7f HTTP/1.1\r\n\r\n"), -EINVAL, "DEL");
	ASSERT_EQ(PARSE("GET /x HTTP/1.1\r\nA: b\r\n"), 0, "no end yet");

	/* The bound: a head of exactly METRICS_MAX_REQUEST bytes, then one more. */
	buf = malloc(METRICS_MAX_REQUEST + 2);
	ret = snprintf(buf, 64, "GET /metrics HTTP/1.1\r\nX: ");
	memset(buf + ret, 'a', METRICS_MAX_REQUEST - (size_t)ret - 4);
	memcpy(buf + METRICS_MAX_REQUEST - 4, "\r\n\r\n", 4);
	ASSERT_EQ(metrics__parse_request(buf, METRICS_MAX_REQUEST, &req), METRICS_MAX_REQUEST,
		  "at the bound");
	memmove(buf + ret + 1, buf + ret, METRICS_MAX_REQUEST - (size_t)ret);
	ASSERT_EQ(metrics__parse_request(buf, METRICS_MAX_REQUEST + 1, &req), -E2BIG, "past it");
	ASSERT_EQ(req.status, 400, "400");
	ASSERT_EQ(metrics__parse_request(buf, METRICS_MAX_REQUEST, &req), -E2BIG,
		  "a full buffer without the end");
	free(buf);
}

void test_metrics_prom_builder(void)
{
	static const uint64_t counts[] = { 1, 0, 2 };
	static const double bounds[] = { 0.5, 1, 2.5 }, bad_bounds[] = { 1, 1, 2 };
	struct prom_buf *b = prom__new();
	const char *body;
	size_t len;

	prom__gauge(b, "g", "", PROM_LABELS("a", "1"), 1e300);
	prom__gauge(b, "g", "", PROM_LABELS("a", "2"), -2.5e-7);
	prom__gauge(b, "g", "", PROM_LABELS("a", "3"), 1.0 / 0.0);
	prom__gauge(b, "g", "", PROM_LABELS("a", "4"), -123456789012.0);
	prom__gauge(b, "ns:g", "colon allowed", NULL, 2);
	prom__histogram(b, "h", "h", NULL, counts, bounds, 3, 4.25, 5);
	ASSERT_EQ(prom__errors(b), 0, "all fine so far");
	prom__histogram(b, "h2", "bounds must rise", NULL, counts, bad_bounds, 3, 1, 5);
	prom__histogram(b, "h3", "count below the buckets", NULL, counts, bounds, 3, 1, 2);
	prom__histogram(b, "h4", "le is ours", PROM_LABELS("le", "x"), counts, bounds, 3, 1, 5);
	prom__gauge(b, "g", "", PROM_LABELS("a", "1", "a", "2"), 1);
	prom__gauge(b, "g", "", PROM_LABELS("1a", "x"), 1);
	prom__gauge(b, "g-dash", "", NULL, 1);
	prom__gauge(b, "", "", NULL, 1);
	prom__counter(b, "g", "", NULL, 1);
	ASSERT_EQ(prom__errors(b), 8, "each bad call counted");
	body = prom__body(b, &len);
	ASSERT_EQ(len, strlen(body), "length");
	ASSERT_STRSTR(body, "# HELP g\n# TYPE g gauge\ng{a=\"1\"} 1e+300\n"
		      "g{a=\"2\"} -2.5e-07\ng{a=\"3\"} +Inf\ng{a=\"4\"} -123456789012\n", "values");
	ASSERT_STRSTR(body, "ns:g 2\n", "colon name");
	ASSERT_STRSTR(body, "h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"2.5\"} 3\n"
		      "h_bucket{le=\"+Inf\"} 5\nh_sum 4.25\nh_count 5\n", "histogram");
	ASSERT_FALSE(strstr(body, "h2") || strstr(body, "h3") || strstr(body, "h4"),
		     "bad histograms left out");
	ASSERT_EQ(check_exposition(body), 3, "well-formed");
	prom__free(b);
}

void test_metrics_addr(void)
{
	static const char *const bad[] = {
		"", "9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:x",
		"::1:9464", "[::1]9464", "[::1:9464",
	};
	struct metrics *m = NULL;
	char err[256], *resp = NULL;
	size_t i;
	int ret;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_EQ(metrics__open(bad[i], &m, err, sizeof(err)), -EINVAL, bad[i]);
		ASSERT_STRSTR(err, "--metrics", "message");
	}
	ret = metrics__open(":0", &m, err, sizeof(err));
	if (ASSERT_OK(ret, err)) {
		exchange(m, "GET /healthz HTTP/1.1\r\n\r\n", &resp);
		ASSERT_EQ(status_of(resp), 200, "any address answers on 127.0.0.1");
		free(resp);
		metrics__close(m);
	}
	ret = metrics__open("[::1]:0", &m, err, sizeof(err));
	if (ret)
		test__log("no IPv6 loopback here: %s", err);
	else
		metrics__close(m);
	ret = metrics__open("localhost:0", &m, err, sizeof(err));
	if (ASSERT_OK(ret, err))
		metrics__close(m);
	/* A port in use. */
	ASSERT_OK(metrics__open("127.0.0.1:0", &m, err, sizeof(err)), err);
	{
		struct metrics *m2 = NULL;
		char addr[64];

		snprintf(addr, sizeof(addr), "127.0.0.1:%d", metrics__port(m));
		ASSERT_EQ(metrics__open(addr, &m2, err, sizeof(err)), -EADDRINUSE, "port in use");
		ASSERT_STRSTR(err, "cannot listen on", "message");
	}
	metrics__close(m);
}

void test_metrics_latency_hist(void)
{
	struct latency_hist h = {};

	latency_hist__add(&h, 0);
	latency_hist__add(&h, 10);
	latency_hist__add(&h, 11);
	latency_hist__add(&h, 100000);
	latency_hist__add(&h, 100001);
	ASSERT_EQ(h.count, 5, "count");
	ASSERT_EQ(h.sum_us, 200022, "sum");
	ASSERT_EQ(h.buckets[0], 2, "<= 10us");
	ASSERT_EQ(h.buckets[1], 1, "<= 25us");
	ASSERT_EQ(h.buckets[LATENCY_BUCKETS - 1], 1, "<= 100ms");
	ASSERT_EQ(latency_hist_bounds_us[LATENCY_BUCKETS - 1], 100000, "last bound");
}

/* Needs CAP_BPF (or root); without it the test only says so. */
void test_metrics_bpfstats(void)
{
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts);
	struct bpf_prog_stat st[2];
	char pkt[64] = {};
	int fds[2], stats_fd = -1, fd, n;

	fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, "mcpw_stat_test", "GPL", prog, 2, &opts);
	if (fd < 0) {
		test__log("cannot load a BPF program (%s): bpfstats not exercised",
			  strerror(-fd));
		return;
	}
	fds[0] = fd;
	fds[1] = -1;
	n = bpfstats__read(fds, 2, st);
	ASSERT_EQ(n, 1, "one of two fds readable");
	ASSERT_STREQ(st[0].name, "mcpw_stat_test", "name");
	ASSERT_EQ(st[0].type, BPF_PROG_TYPE_SOCKET_FILTER, "type");
	ASSERT_TRUE(st[0].id > 0, "id");
	ASSERT_EQ(bpfstats__read(&fds[1], 1, st), -EBADF, "none readable");

	/* Counting on while the fd is held, without touching the sysctl. */
	stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	if (stats_fd < 0) {
		test__log("BPF_ENABLE_STATS refused: %s", strerror(-stats_fd));
		goto cleanup;
	}
	{
		LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = pkt, .data_size_in = sizeof(pkt),
			    .repeat = 10);

		ASSERT_OK(bpf_prog_test_run_opts(fd, &run), "test run");
	}
	n = bpfstats__read(fds, 1, st);
	ASSERT_EQ(n, 1, "read");
	ASSERT_GE(st[0].run_cnt, 10, "runs counted");
	ASSERT_TRUE(st[0].run_time_ns > 0, "run time counted");
	test__log("run_cnt %llu run_time_ns %llu sysctl %d", (unsigned long long)st[0].run_cnt,
		  (unsigned long long)st[0].run_time_ns, bpfstats__enabled());
cleanup:
	if (stats_fd >= 0)
		close(stats_fd);
	close(fd);
}
