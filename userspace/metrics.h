/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The Prometheus endpoint behind `--metrics ADDR:PORT`: GET /metrics
 * answers the text exposition format 0.0.4, GET /healthz 200 "ok" or 503
 * with the reason. Everything runs in the caller's epoll loop; see
 * metrics.c for why this is a small built-in responder and not a library.
 *
 * The body is built per scrape by a collect callback through the prom__
 * builder, which escapes label values, groups samples by family whatever
 * the order of the calls, and writes HELP and TYPE once per family.
 */
#ifndef MCPW_METRICS_H
#define MCPW_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_CLIENTS	16
#define METRICS_MAX_REQUEST	4096		/* request line and headers */
#define METRICS_READ_TIMEOUT_NS	(5ull * 1000000000ull)
#define METRICS_WRITE_TIMEOUT_NS (10ull * 1000000000ull)
#define PROM_MAX_BODY		(8u << 20)

struct metrics;
struct prom_buf;

/* ---- the text exposition builder --------------------------------------- */

/* A label set: name, value pairs, NULL-terminated; NULL for none. */
#define PROM_LABELS(...) ((const char *const[]){ __VA_ARGS__, NULL })

struct prom_buf *prom__new(void);
void prom__free(struct prom_buf *b);

/*
 * Add one sample. The first call for a family fixes its HELP and TYPE; a
 * name, label or type that does not fit the format, a family used with two
 * types, and anything past PROM_MAX_BODY is left out and counted in
 * prom__errors().
 */
void prom__counter(struct prom_buf *b, const char *name, const char *help,
		   const char *const *labels, double value);
void prom__gauge(struct prom_buf *b, const char *name, const char *help,
		 const char *const *labels, double value);
/*
 * bucket_counts[i] counts observations in (bounds[i-1], bounds[i]], not
 * cumulated; bounds rise strictly; count includes those above the last
 * bound (the +Inf bucket).
 */
void prom__histogram(struct prom_buf *b, const char *name, const char *help,
		     const char *const *labels, const uint64_t *bucket_counts,
		     const double *bounds, size_t n, double sum, uint64_t count);

/* The finished body (NUL-terminated, owned by b) and its length. */
const char *prom__body(struct prom_buf *b, size_t *len);
size_t prom__errors(const struct prom_buf *b);

/* ---- verdict latency --------------------------------------------------- */

#define LATENCY_BUCKETS 12

/* Upper bounds in microseconds: 10, 25, 50, 100, 250, 500, 1000, 2500,
 * 5000, 10000, 25000, 100000. */
extern const uint64_t latency_hist_bounds_us[LATENCY_BUCKETS];

struct latency_hist {
	uint64_t buckets[LATENCY_BUCKETS];	/* per bucket, not cumulated */
	uint64_t count;				/* every observation */
	uint64_t sum_us;
};

void latency_hist__add(struct latency_hist *h, uint64_t us);
/* Exported in seconds, as Prometheus names units. */
void latency_hist__prom(const struct latency_hist *h, struct prom_buf *b, const char *name,
			const char *help, const char *const *labels);

/* ---- the HTTP responder ------------------------------------------------ */

typedef void (*metrics_collect_fn)(void *ctx, struct prom_buf *b);
/* 0 when healthy; otherwise the reason goes in reason (shown with 503). */
typedef int (*metrics_health_fn)(void *ctx, char *reason, size_t len);

struct metrics_stats {
	uint64_t requests;	/* answered, any status */
	uint64_t scrapes;	/* GET /metrics answered 200 */
	uint64_t bad_requests;	/* answered 400 */
	uint64_t timeouts;	/* clients dropped by metrics__tick */
	uint64_t rejected;	/* connections turned away: METRICS_MAX_CLIENTS busy */
	uint64_t body_errors;	/* samples the last scrape left out */
};

/*
 * Listens on addr_port: "127.0.0.1:9464", "[::1]:9464", "node.local:9464",
 * or ":9464" for every address (IPv6 and IPv4). Port 0 picks a free port
 * (metrics__port). 0 or -errno, with an operator message in err.
 */
int metrics__open(const char *addr_port, struct metrics **out, char *err, size_t errlen);
void metrics__close(struct metrics *m);
void metrics__set_collect(struct metrics *m, metrics_collect_fn fn, void *ctx);
void metrics__set_health(struct metrics *m, metrics_health_fn fn, void *ctx);

/*
 * One fd for the caller's epoll set (EPOLLIN): an epoll fd of our own that
 * holds the listening socket and every client, so the caller registers
 * nothing else. When it is readable, call metrics__on_readable.
 */
int metrics__fd(const struct metrics *m);
void metrics__on_readable(struct metrics *m);
/* Drops clients past their deadline; now is CLOCK_MONOTONIC in ns. */
void metrics__tick(struct metrics *m, uint64_t now_ns);
int metrics__port(const struct metrics *m);
void metrics__stats(const struct metrics *m, struct metrics_stats *st);

/* ---- the request parser (exposed for its fuzz target) ------------------ */

enum metrics_route {
	METRICS_ROUTE_NONE,
	METRICS_ROUTE_METRICS,
	METRICS_ROUTE_HEALTHZ,
};

struct metrics_request {
	int status;		/* 200 (route chosen), 400, 404 or 405 */
	enum metrics_route route;
	bool head;		/* HEAD: headers only */
};

/*
 * Parses the request head in buf. Returns 0 while more bytes are needed,
 * the length of the head once complete (req filled: 200, 404 or 405), or
 * -EINVAL for a malformed request and -E2BIG for a head longer than
 * METRICS_MAX_REQUEST (req->status 400 for both). Bytes after the head
 * are ignored: every answer closes the connection.
 */
int metrics__parse_request(const char *buf, size_t len, struct metrics_request *req);

#endif
