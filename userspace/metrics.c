// SPDX-License-Identifier: GPL-2.0
/*
 * Prometheus endpoint: a small built-in HTTP/1.1 responder and the text
 * exposition builder.
 *
 * Why built in rather than libmicrohttpd: the whole surface is two GET
 * paths, no TLS (a DaemonSet scrape stays on the node or the pod network;
 * put a proxy in front for TLS), no keep-alive, no bodies, no chunking.
 * What is left to parse is one request line and headers under a 4 KiB
 * bound, fed through metrics__parse_request, which has a libFuzzer target
 * (tests/fuzz/fuzz_metrics_http.c). libmicrohttpd would bring its own
 * threads or its own select loop; this fits the agent's single epoll loop
 * and adds no dependency to a privileged binary.
 *
 * Flow: the caller polls metrics__fd(), an epoll fd of our own holding
 * the listening socket and up to METRICS_MAX_CLIENTS clients. On readable,
 * metrics__on_readable accepts, reads each request into a 4 KiB buffer,
 * builds the whole answer (the collect callback runs here, in the
 * caller's thread), and writes it without blocking as the socket drains.
 * Every answer says Connection: close. metrics__tick drops clients that
 * are too slow to send their request or to read the answer.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>	/* classification macros only: no libm */
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "listener.h"
#include "metrics.h"

/* ---- growable text ----------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_add(struct sbuf *s, const char *data, size_t n)
{
	char *np;
	size_t ncap;

	if (s->oom)
		return;
	if (s->len + n + 1 > s->cap) {
		ncap = s->cap ? s->cap : 256;
		while (ncap < s->len + n + 1)
			ncap *= 2;
		np = realloc(s->p, ncap);
		if (!np) {
			s->oom = true;
			return;
		}
		s->p = np;
		s->cap = ncap;
	}
	memcpy(s->p + s->len, data, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void sb_str(struct sbuf *s, const char *str)
{
	sb_add(s, str, strlen(str));
}

static __attribute__((format(printf, 2, 3))) void sb_printf(struct sbuf *s, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	sb_add(s, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* ---- exposition builder ------------------------------------------------ */

#define PROM_MAX_FAMILIES 4096

struct prom_family {
	char *name;
	char *help;
	const char *type;
	struct sbuf samples;
};

struct prom_buf {
	struct prom_family *fams;
	size_t n_fams, cap_fams;
	uint32_t *index;	/* open addressing: family number + 1 */
	size_t index_cap;	/* power of two */
	size_t bytes;		/* samples and headers so far */
	size_t errors;
	struct sbuf body;
};

struct prom_buf *prom__new(void)
{
	return calloc(1, sizeof(struct prom_buf));
}

void prom__free(struct prom_buf *b)
{
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->n_fams; i++) {
		free(b->fams[i].name);
		free(b->fams[i].help);
		free(b->fams[i].samples.p);
	}
	free(b->fams);
	free(b->index);
	free(b->body.p);
	free(b);
}

size_t prom__errors(const struct prom_buf *b)
{
	return b->errors;
}

static uint32_t hash_name(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

static int index_grow(struct prom_buf *b)
{
	size_t ncap = b->index_cap ? b->index_cap * 2 : 64, i, j;
	uint32_t *ni = calloc(ncap, sizeof(*ni));

	if (!ni)
		return -ENOMEM;
	for (i = 0; i < b->n_fams; i++) {
		j = hash_name(b->fams[i].name) & (ncap - 1);
		while (ni[j])
			j = (j + 1) & (ncap - 1);
		ni[j] = (uint32_t)i + 1;
	}
	free(b->index);
	b->index = ni;
	b->index_cap = ncap;
	return 0;
}

#define PROM_MAX_NAME 200

static bool valid_metric_name(const char *s)
{
	size_t i;

	if (!s || !*s || strlen(s) > PROM_MAX_NAME)
		return false;
	for (i = 0; s[i]; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
		      (i && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

static bool valid_label_name(const char *s)
{
	size_t i;

	if (!s || !*s || (s[0] == '_' && s[1] == '_') || strlen(s) > PROM_MAX_NAME)
		return false;
	for (i = 0; s[i]; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		      (i && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

static bool valid_labels(const char *const *labels, bool histogram)
{
	size_t i, j;

	if (!labels)
		return true;
	for (i = 0; labels[i]; i += 2) {
		if (!valid_label_name(labels[i]) || !labels[i + 1])
			return false;
		if (histogram && strcmp(labels[i], "le") == 0)
			return false;
		for (j = 0; j < i; j += 2)
			if (strcmp(labels[i], labels[j]) == 0)
				return false;
	}
	return true;
}

/* Finds or makes the family; NULL (counted) when it cannot be used. */
static struct prom_family *family(struct prom_buf *b, const char *name, const char *help,
				  const char *type)
{
	struct prom_family *f, *nf;
	size_t j;

	if (!valid_metric_name(name))
		goto bad;
	if (b->index_cap) {
		j = hash_name(name) & (b->index_cap - 1);
		while (b->index[j]) {
			f = &b->fams[b->index[j] - 1];
			if (strcmp(f->name, name) == 0)
				return strcmp(f->type, type) == 0 ? f : NULL;
			j = (j + 1) & (b->index_cap - 1);
		}
	}
	if (b->n_fams == PROM_MAX_FAMILIES)
		goto bad;
	if ((b->n_fams + 1) * 2 > b->index_cap && index_grow(b))
		goto bad;
	if (b->n_fams == b->cap_fams) {
		size_t ncap = b->cap_fams ? b->cap_fams * 2 : 32;

		nf = realloc(b->fams, ncap * sizeof(*nf));
		if (!nf)
			goto bad;
		b->fams = nf;
		b->cap_fams = ncap;
	}
	f = &b->fams[b->n_fams];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	f->type = type;
	if (!f->name || !f->help) {
		free(f->name);
		free(f->help);
		goto bad;
	}
	j = hash_name(name) & (b->index_cap - 1);
	while (b->index[j])
		j = (j + 1) & (b->index_cap - 1);
	b->index[j] = (uint32_t)++b->n_fams;
	b->bytes += strlen(name) * 2 + strlen(f->help) + strlen(type) + 20;
	return f;
bad:
	return NULL;
}

static void fmt_value(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	else if (v > -1e15 && v < 1e15 && v == (double)(long long)v)
		snprintf(buf, len, "%.0f", v);	/* integral: no exponent, no libm */
	else {
		/* The shortest form that reads back as the same double. */
		snprintf(buf, len, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, len, "%.17g", v);
	}
}

static void add_escaped(struct sbuf *s, const char *v, bool quote)
{
	const char *p;

	for (p = v; *p; p++) {
		if (*p == '\\')
			sb_add(s, "\\\\", 2);
		else if (*p == '\n')
			sb_add(s, "\\n", 2);
		else if (quote && *p == '"')
			sb_add(s, "\\\"", 2);
		else
			sb_add(s, p, 1);
	}
}

/* name{labels[,le="x"]} value\n into s. */
static void add_sample(struct sbuf *s, const char *name, const char *suffix,
		       const char *const *labels, const char *le, double value)
{
	char num[64];
	size_t i;
	bool any = false;

	sb_str(s, name);
	sb_str(s, suffix);
	for (i = 0; labels && labels[i]; i += 2) {
		sb_add(s, any ? "," : "{", 1);
		sb_str(s, labels[i]);
		sb_add(s, "=\"", 2);
		add_escaped(s, labels[i + 1], true);
		sb_add(s, "\"", 1);
		any = true;
	}
	if (le) {
		sb_add(s, any ? "," : "{", 1);
		sb_add(s, "le=\"", 4);
		sb_str(s, le);
		sb_add(s, "\"", 1);
		any = true;
	}
	if (any)
		sb_add(s, "}", 1);
	fmt_value(num, sizeof(num), value);
	sb_add(s, " ", 1);
	sb_str(s, num);
	sb_add(s, "\n", 1);
}

/* Appends what was built in tmp to the family if it fits the bound. */
static void commit(struct prom_buf *b, struct prom_family *f, struct sbuf *tmp)
{
	if (tmp->oom || b->bytes + tmp->len > PROM_MAX_BODY) {
		b->errors++;
	} else if (tmp->len) {
		sb_add(&f->samples, tmp->p, tmp->len);
		if (f->samples.oom)
			b->errors++;
		else
			b->bytes += tmp->len;
	}
	free(tmp->p);
}

static void scalar(struct prom_buf *b, const char *type, const char *name, const char *help,
		   const char *const *labels, double value)
{
	struct prom_family *f;
	struct sbuf tmp = {};

	if (!valid_labels(labels, false) || !(f = family(b, name, help, type))) {
		b->errors++;
		return;
	}
	add_sample(&tmp, name, "", labels, NULL, value);
	commit(b, f, &tmp);
}

void prom__counter(struct prom_buf *b, const char *name, const char *help,
		   const char *const *labels, double value)
{
	scalar(b, "counter", name, help, labels, value);
}

void prom__gauge(struct prom_buf *b, const char *name, const char *help,
		 const char *const *labels, double value)
{
	scalar(b, "gauge", name, help, labels, value);
}

void prom__histogram(struct prom_buf *b, const char *name, const char *help,
		     const char *const *labels, const uint64_t *bucket_counts,
		     const double *bounds, size_t n, double sum, uint64_t count)
{
	struct prom_family *f;
	struct sbuf tmp = {};
	uint64_t cum = 0;
	char le[64];
	size_t i;

	for (i = 0; i < n; i++) {
		if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
			goto bad;
		cum += bucket_counts[i];
	}
	if (cum > count || !valid_labels(labels, true) || !(f = family(b, name, help, "histogram")))
		goto bad;
	cum = 0;
	for (i = 0; i < n; i++) {
		cum += bucket_counts[i];
		fmt_value(le, sizeof(le), bounds[i]);
		add_sample(&tmp, name, "_bucket", labels, le, (double)cum);
	}
	add_sample(&tmp, name, "_bucket", labels, "+Inf", (double)count);
	add_sample(&tmp, name, "_sum", labels, NULL, sum);
	add_sample(&tmp, name, "_count", labels, NULL, (double)count);
	commit(b, f, &tmp);
	return;
bad:
	b->errors++;
}

const char *prom__body(struct prom_buf *b, size_t *len)
{
	size_t i;

	b->body.len = 0;
	b->body.oom = false;
	sb_add(&b->body, "", 0);
	for (i = 0; i < b->n_fams; i++) {
		struct prom_family *f = &b->fams[i];

		if (!f->samples.len)
			continue;
		sb_printf(&b->body, "# HELP %s%s", f->name, f->help[0] ? " " : "");
		add_escaped(&b->body, f->help, false);
		sb_printf(&b->body, "\n# TYPE %s %s\n", f->name, f->type);
		sb_add(&b->body, f->samples.p, f->samples.len);
	}
	if (b->body.oom) {
		b->errors++;
		*len = 0;
		return "";
	}
	*len = b->body.len;
	return b->body.p;
}

/* ---- verdict latency --------------------------------------------------- */

const uint64_t latency_hist_bounds_us[LATENCY_BUCKETS] = {
	10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000,
};

void latency_hist__add(struct latency_hist *h, uint64_t us)
{
	size_t i;

	h->count++;
	h->sum_us += us;
	for (i = 0; i < LATENCY_BUCKETS; i++) {
		if (us <= latency_hist_bounds_us[i]) {
			h->buckets[i]++;
			return;
		}
	}
}

void latency_hist__prom(const struct latency_hist *h, struct prom_buf *b, const char *name,
			const char *help, const char *const *labels)
{
	double bounds[LATENCY_BUCKETS];
	size_t i;

	for (i = 0; i < LATENCY_BUCKETS; i++)
		bounds[i] = (double)latency_hist_bounds_us[i] / 1e6;
	prom__histogram(b, name, help, labels, h->buckets, bounds, LATENCY_BUCKETS,
			(double)h->sum_us / 1e6, h->count);
}

/* ---- request parser ---------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

/*
 * The next line from *pos, without its LF or CRLF. 1 with a line, 0 when
 * its end has not arrived, -E2BIG when it cannot end within the bound.
 */
static int next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *n)
{
	size_t limit = len < METRICS_MAX_REQUEST ? len : METRICS_MAX_REQUEST;
	const char *nl;

	nl = *pos < limit ? memchr(buf + *pos, '\n', limit - *pos) : NULL;
	if (!nl)
		return len >= METRICS_MAX_REQUEST ? -E2BIG : 0;
	*line = buf + *pos;
	*n = (size_t)(nl - *line);
	*pos = (size_t)(nl - buf) + 1;
	if (*n && (*line)[*n - 1] == '\r')
		(*n)--;
	return 1;
}

static int parse_request_line(const char *l, size_t n, struct metrics_request *req)
{
	size_t m = 0, t, tlen, plen;
	const char *target;

	while (m < n && is_tchar((unsigned char)l[m]))
		m++;
	if (m == 0 || m > 16 || m >= n || l[m] != ' ')
		return -EINVAL;
	target = l + m + 1;
	for (t = 0; m + 1 + t < n && target[t] != ' '; t++) {
		unsigned char c = (unsigned char)target[t];

		if (c < 0x21 || c > 0x7e)
			return -EINVAL;
	}
	tlen = t;
	if (tlen == 0 || target[0] != '/' || m + 1 + tlen >= n)
		return -EINVAL;
	if (n - (m + 1 + tlen + 1) != 8 ||
	    (memcmp(target + tlen + 1, "HTTP/1.1", 8) && memcmp(target + tlen + 1, "HTTP/1.0", 8)))
		return -EINVAL;

	for (plen = 0; plen < tlen && target[plen] != '?'; plen++)
		;
	if (plen == 8 && memcmp(target, "/metrics", 8) == 0)
		req->route = METRICS_ROUTE_METRICS;
	else if (plen == 8 && memcmp(target, "/healthz", 8) == 0)
		req->route = METRICS_ROUTE_HEALTHZ;
	req->head = m == 4 && memcmp(l, "HEAD", 4) == 0;
	if (req->route == METRICS_ROUTE_NONE)
		req->status = 404;
	else if (req->head || (m == 3 && memcmp(l, "GET", 3) == 0))
		req->status = 200;
	else
		req->status = 405;
	return 0;
}

static int parse_header(const char *l, size_t n)
{
	size_t i = 0;

	/* Also refuses obsolete line folding (a line starting with SP/HT). */
	while (i < n && is_tchar((unsigned char)l[i]))
		i++;
	if (i == 0 || i == n || l[i] != ':')
		return -EINVAL;
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)l[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -EINVAL;
	}
	return 0;
}

int metrics__parse_request(const char *buf, size_t len, struct metrics_request *req)
{
	struct metrics_request r = { .status = 400 };
	size_t pos = 0, n;
	const char *line;
	bool have_request_line = false;
	int ret;

	for (;;) {
		ret = next_line(buf, len, &pos, &line, &n);
		if (ret <= 0)
			break;
		if (!have_request_line) {
			/* Empty lines before the request line are allowed. */
			if (n == 0)
				continue;
			ret = parse_request_line(line, n, &r);
			if (ret)
				break;
			have_request_line = true;
			continue;
		}
		if (n == 0) {
			*req = r;
			return (int)pos;
		}
		ret = parse_header(line, n);
		if (ret)
			break;
	}
	if (ret < 0) {
		r.status = 400;
		r.route = METRICS_ROUTE_NONE;
		r.head = false;
	}
	*req = r;
	return ret;
}

/* ---- HTTP responder ---------------------------------------------------- */

#define LISTEN_TAG	UINT32_MAX
#define ACCEPT_BURST	64
#define DRAIN_MAX	65536

enum client_state {
	CLIENT_FREE,
	CLIENT_READING,
	CLIENT_WRITING,
};

struct metrics_client {
	enum client_state state;
	int fd;
	uint64_t deadline_ns;
	char in[METRICS_MAX_REQUEST];
	size_t in_len;
	char *out;
	size_t out_len, out_off;
};

struct metrics {
	int lfd;
	int epfd;
	int port;
	metrics_collect_fn collect;
	void *collect_ctx;
	metrics_health_fn health;
	void *health_ctx;
	struct metrics_stats st;
	struct listener_pause pause;	/* out of descriptors: re-armed by metrics__tick */
	struct metrics_client clients[METRICS_MAX_CLIENTS];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int split_addr(const char *addr_port, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon, *end;
	size_t n;

	if (addr_port[0] == '[') {
		end = strchr(addr_port, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		n = (size_t)(end - addr_port - 1);
		colon = end + 1;
		addr_port++;
	} else {
		colon = strrchr(addr_port, ':');
		if (!colon)
			return -EINVAL;
		n = (size_t)(colon - addr_port);
		if (memchr(addr_port, ':', n))
			return -EINVAL;	/* a bare IPv6 address: needs brackets */
	}
	if (n >= hlen || strlen(colon + 1) >= plen || !colon[1] ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) || atol(colon + 1) > 65535)
		return -EINVAL;
	memcpy(host, addr_port, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int listen_on(const struct sockaddr *sa, socklen_t salen, bool dual)
{
	int fd, one = 1, zero = 0, err;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (dual)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, sa, salen) || listen(fd, METRICS_MAX_CLIENTS)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int open_listener(const char *host, const char *port)
{
	struct addrinfo hints = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	}, *res = NULL, *ai;
	int fd = -EADDRNOTAVAIL, rc;

	if (!host[0]) {
		struct sockaddr_in6 any6 = {
			.sin6_family = AF_INET6,
			.sin6_port = htons((uint16_t)atoi(port)),
			.sin6_addr = IN6ADDR_ANY_INIT,
		};
		struct sockaddr_in any4 = {
			.sin_family = AF_INET,
			.sin_port = htons((uint16_t)atoi(port)),
		};

		/* Every address: one dual-stack socket, IPv4 where there is no IPv6. */
		fd = listen_on((struct sockaddr *)&any6, sizeof(any6), true);
		if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
			fd = listen_on((struct sockaddr *)&any4, sizeof(any4), false);
		return fd;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc)
		return rc == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = listen_on(ai->ai_addr, ai->ai_addrlen, false);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	return fd;
}

int metrics__open(const char *addr_port, struct metrics **out, char *err, size_t errlen)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = LISTEN_TAG };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[256], port[8];
	struct metrics *m;
	int ret, i;

	if (split_addr(addr_port, host, sizeof(host), port, sizeof(port))) {
		snprintf(err, errlen, "--metrics %s: expected ADDR:PORT, [IPV6]:PORT or :PORT",
			 addr_port);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (i = 0; i < METRICS_MAX_CLIENTS; i++)
		m->clients[i].fd = -1;
	m->epfd = -1;
	m->lfd = open_listener(host, port);
	if (m->lfd < 0) {
		ret = m->lfd;
		snprintf(err, errlen, "cannot listen on %s for metrics: %s", addr_port,
			 strerror(-ret));
		goto fail;
	}
	m->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (m->epfd < 0 || epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->lfd, &ev)) {
		ret = -errno;
		snprintf(err, errlen, "cannot set up the metrics endpoint: %s", strerror(-ret));
		goto fail;
	}
	if (getsockname(m->lfd, (struct sockaddr *)&ss, &sl) == 0)
		m->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
			       ((struct sockaddr_in *)&ss)->sin_port);
	*out = m;
	return 0;
fail:
	metrics__close(m);
	return ret;
}

static void client_close(struct metrics *m, struct metrics_client *c)
{
	if (c->state == CLIENT_FREE)
		return;
	epoll_ctl(m->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->out);
	c->out = NULL;
	c->fd = -1;
	c->state = CLIENT_FREE;
}

void metrics__close(struct metrics *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < METRICS_MAX_CLIENTS; i++)
		client_close(m, &m->clients[i]);
	if (m->epfd >= 0)
		close(m->epfd);
	if (m->lfd >= 0)
		close(m->lfd);
	free(m);
}

void metrics__set_collect(struct metrics *m, metrics_collect_fn fn, void *ctx)
{
	m->collect = fn;
	m->collect_ctx = ctx;
}

void metrics__set_health(struct metrics *m, metrics_health_fn fn, void *ctx)
{
	m->health = fn;
	m->health_ctx = ctx;
}

int metrics__fd(const struct metrics *m)
{
	return m->epfd;
}

int metrics__port(const struct metrics *m)
{
	return m->port;
}

void metrics__stats(const struct metrics *m, struct metrics_stats *st)
{
	*st = m->st;
}

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	default: return "Service Unavailable";
	}
}

/* The whole answer, head and body, into c->out. */
static int build_answer(struct metrics *m, struct metrics_client *c,
			const struct metrics_request *req)
{
	static const char text_type[] = "text/plain; charset=utf-8";
	struct prom_buf *b = NULL;
	const char *body, *type = text_type;
	char reason[2048], head[512];
	size_t body_len;
	int status = req->status, hn;

	reason[0] = '\0';
	switch (status) {
	case 200:
		if (req->route == METRICS_ROUTE_METRICS) {
			b = prom__new();
			if (!b)
				return -ENOMEM;
			if (m->collect)
				m->collect(m->collect_ctx, b);
			body = prom__body(b, &body_len);
			m->st.body_errors = prom__errors(b);
			m->st.scrapes++;
			type = "text/plain; version=0.0.4; charset=utf-8";
		} else if (m->health && m->health(m->health_ctx, reason, sizeof(reason) - 2)) {
			size_t i;

			/* Room is left for the newline whatever the callback did. */
			status = 503;
			reason[sizeof(reason) - 2] = '\0';
			if (!reason[0])
				strcpy(reason, "unhealthy");
			for (i = 0; reason[i]; i++)
				if (reason[i] == '\r' || reason[i] == '\n')
					reason[i] = ' ';
			strcat(reason, "\n");
			body = reason;
			body_len = strlen(reason);
		} else {
			body = "ok\n";
			body_len = 3;
		}
		break;
	case 404:
		body = "not found\n";
		body_len = strlen(body);
		break;
	case 405:
		body = "method not allowed\n";
		body_len = strlen(body);
		break;
	default:
		status = 400;
		body = "bad request\n";
		body_len = strlen(body);
		m->st.bad_requests++;
		break;
	}
	hn = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
		      "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
		      status, status_text(status), type, body_len,
		      status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (req->head)
		body_len = 0;
	c->out = malloc((size_t)hn + body_len);
	if (!c->out) {
		prom__free(b);
		return -ENOMEM;
	}
	memcpy(c->out, head, (size_t)hn);
	memcpy(c->out + hn, body, body_len);
	c->out_len = (size_t)hn + body_len;
	c->out_off = 0;
	prom__free(b);
	m->st.requests++;
	return 0;
}

/* Reads what the client sent after the answer, so close() does not reset
 * the connection under an answer the client has not read yet. */
static void drain_and_close(struct metrics *m, struct metrics_client *c)
{
	char buf[4096];
	size_t total = 0;
	ssize_t n;

	shutdown(c->fd, SHUT_WR);
	while (total < DRAIN_MAX && (n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		total += (size_t)n;
	client_close(m, c);
}

static void client_flush(struct metrics *m, struct metrics_client *c)
{
	ssize_t n;

	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		client_close(m, c);
		return;
	}
	drain_and_close(m, c);
}

static void client_answer(struct metrics *m, struct metrics_client *c,
			  const struct metrics_request *req)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (uint32_t)(c - m->clients) };

	if (build_answer(m, c, req) ||
	    epoll_ctl(m->epfd, EPOLL_CTL_MOD, c->fd, &ev)) {
		client_close(m, c);
		return;
	}
	c->state = CLIENT_WRITING;
	c->deadline_ns = mono_ns() + METRICS_WRITE_TIMEOUT_NS;
	client_flush(m, c);
}

static void client_read(struct metrics *m, struct metrics_client *c)
{
	struct metrics_request req;
	bool eof = false, newline = false;
	ssize_t n;
	int ret;

	while (c->in_len < sizeof(c->in)) {
		n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
		if (n > 0) {
			newline |= memchr(c->in + c->in_len, '\n', (size_t)n) != NULL;
			c->in_len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			eof = true;
		else if (errno != EAGAIN && errno != EWOULDBLOCK)
			eof = true;
		break;
	}
	/* Only a new line end (or a full buffer) can change the outcome. */
	if (newline || c->in_len == sizeof(c->in)) {
		ret = metrics__parse_request(c->in, c->in_len, &req);
		if (ret != 0) {
			client_answer(m, c, &req);
			return;
		}
	}
	if (eof)
		client_close(m, c);
}

static void turn_away(struct metrics *m, int fd)
{
	static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n"
				   "Connection: close\r\n\r\nbusy\n";
	ssize_t n = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);

	(void)n;
	close(fd);
	m->st.rejected++;
}

static struct metrics_client *free_slot(struct metrics *m)
{
	uint64_t now = mono_ns();
	size_t i;

	for (i = 0; i < METRICS_MAX_CLIENTS; i++)
		if (m->clients[i].state == CLIENT_FREE)
			return &m->clients[i];
	/* All busy: make room from clients already past their deadline, in
	 * case the caller's tick is late. */
	metrics__tick(m, now);
	for (i = 0; i < METRICS_MAX_CLIENTS; i++)
		if (m->clients[i].state == CLIENT_FREE)
			return &m->clients[i];
	return NULL;
}

static void accept_clients(struct metrics *m)
{
	struct metrics_client *c;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	int fd, i;

	for (i = 0; i < ACCEPT_BURST; i++) {
		fd = accept4(m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			listener__starved(&m->pause, m->epfd, m->lfd, errno);
			return;
		}
		c = free_slot(m);
		if (!c) {
			turn_away(m, fd);
			continue;
		}
		ev.data.u32 = (uint32_t)(c - m->clients);
		if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = CLIENT_READING;
		c->in_len = 0;
		c->deadline_ns = mono_ns() + METRICS_READ_TIMEOUT_NS;
	}
}

void metrics__on_readable(struct metrics *m)
{
	struct epoll_event evs[METRICS_MAX_CLIENTS + 1];
	struct metrics_client *c;
	int n, i;

	n = epoll_wait(m->epfd, evs, METRICS_MAX_CLIENTS + 1, 0);
	for (i = 0; i < n; i++) {
		if (evs[i].data.u32 == LISTEN_TAG) {
			accept_clients(m);
			continue;
		}
		if (evs[i].data.u32 >= METRICS_MAX_CLIENTS)
			continue;
		c = &m->clients[evs[i].data.u32];
		if (c->state == CLIENT_READING)
			client_read(m, c);
		else if (c->state == CLIENT_WRITING)
			client_flush(m, c);
	}
}

void metrics__tick(struct metrics *m, uint64_t now_ns)
{
	size_t i;

	listener__resume(&m->pause, m->epfd, m->lfd, (epoll_data_t){ .u32 = LISTEN_TAG });
	for (i = 0; i < METRICS_MAX_CLIENTS; i++) {
		struct metrics_client *c = &m->clients[i];

		if (c->state != CLIENT_FREE && now_ns > c->deadline_ns) {
			client_close(m, c);
			m->st.timeouts++;
		}
	}
}
