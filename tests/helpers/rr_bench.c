// SPDX-License-Identifier: GPL-2.0
/*
 * Request/response load generator for `make bench`: C connections, each
 * sending one MCP tools/call (bearer JWT, session id) and waiting for the
 * whole response before the next, for a fixed time. Prints one JSON line:
 *   {"requests":N,"seconds":S,"rps":R,"p50_us":..,"p99_us":..,"errors":E}
 *
 *   rr_bench ADDR PORT CONNS SECONDS [BODY_BYTES [NEW_CONN_EACH]]
 * BODY_BYTES pads the tools/call arguments (bulk bodies); NEW_CONN_EACH=1
 * opens a new connection per request (connection churn). A connect, write
 * or read that stalls for STALL_SECONDS counts as an error.
 * RR_CC=NAME: the connections' congestion control (TCP_CONGESTION), e.g.
 * cubic instead of the host's default.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/inet_diag.h>	/* struct tcp_bbr_info */
#include <linux/tcp.h>	/* struct tcp_info with the *_limited times */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>

#define MAX_SAMPLES (1u << 20)
#define STALL_SECONDS 5

static const char *addr, *cong;
static int port, seconds, body_bytes, churn;
static char *request;
static size_t request_len;

struct worker {
	pthread_t th;
	uint64_t requests, errors;
	uint64_t busy_us, rwnd_limited_us, sndbuf_limited_us;	/* TCP_INFO, kept connections */
	uint64_t retrans, reord_seen;	/* TCP_INFO: segments sent again, reorderings seen */
	int bbr, bbr_startup;		/* a BBR connection; still in its start-up gain */
	uint32_t *lat_us;
	size_t n_lat;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int dial(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tmo = { .tv_sec = STALL_SECONDS };
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	inet_pton(AF_INET, addr, &a.sin_addr);
	/* A stalled connect, write or read ends as an error instead of
	 * hanging the whole run (SO_SNDTIMEO also bounds connect). */
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
		if (cong)	/* checked in main() */
			setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cong, strlen(cong));
	}
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Reads one HTTP response with a Content-Length body. */
static int read_response(int fd, char *buf, size_t cap)
{
	size_t have = 0, need = 0;

	for (;;) {
		ssize_t n = read(fd, buf + have, cap - have - 1);
		char *end, *cl;

		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
		if (!need && (end = strstr(buf, "\r\n\r\n"))) {
			cl = strcasestr(buf, "content-length:");
			need = (size_t)(end - buf) + 4 + (cl ? strtoul(cl + 15, NULL, 10) : 0);
		}
		if (need && have >= need)
			return 0;
		if (have + 1 >= cap)
			return -1;
	}
}

/*
 * Whether the connection's congestion control is BBR and still in its
 * start-up (cwnd gain 2.89; 2 once it has decided the path is full). On
 * loopback that decides P6's rate: see docs/performance.md.
 */
static void bbr_state(int fd, struct worker *w)
{
	char cc[16] = "";
	union tcp_cc_info info;
	socklen_t l = sizeof(cc);

	if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, &l) || strncmp(cc, "bbr", sizeof(cc)))
		return;
	l = sizeof(info);
	memset(&info, 0, sizeof(info));
	if (getsockopt(fd, IPPROTO_TCP, TCP_CC_INFO, &info, &l) || l < sizeof(info.bbr))
		return;
	w->bbr = 1;
	w->bbr_startup = info.bbr.bbr_cwnd_gain > 2 * 256 + 128;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	uint64_t end = now_ns() + (uint64_t)seconds * 1000000000ull;
	char *buf = malloc(1 << 16);
	int fd = -1;

	while (now_ns() < end) {
		uint64_t t0;
		size_t off = 0;

		if (fd < 0 && (fd = dial()) < 0) {
			w->errors++;
			usleep(1000);
			continue;
		}
		t0 = now_ns();
		errno = 0;
		while (off < request_len) {
			ssize_t n = write(fd, request + off, request_len - off);

			if (n <= 0)
				break;
			off += (size_t)n;
		}
		if (off < request_len || read_response(fd, buf, 1 << 16)) {
			struct sockaddr_in me;
			socklen_t ml = sizeof(me);

			if (getsockname(fd, (struct sockaddr *)&me, &ml))
				me.sin_port = 0;
			fprintf(stderr, "rr_bench: request failed (%s, %s) from port %u after %llu us\n",
				off < request_len ? "write" : "read", errno ? strerror(errno) : "closed",
				ntohs(me.sin_port), (unsigned long long)((now_ns() - t0) / 1000));
			w->errors++;
			close(fd);
			fd = -1;
			continue;
		}
		w->requests++;
		if (w->n_lat < MAX_SAMPLES)
			w->lat_us[w->n_lat++] = (uint32_t)((now_ns() - t0) / 1000);
		if (churn) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0) {
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);

		/* Where the sending time went: the receiver's window, our send
		 * buffer, or neither. */
		memset(&ti, 0, sizeof(ti));
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl))
			tl = 0;
		if (tl >= offsetof(struct tcp_info, tcpi_sndbuf_limited) + sizeof(ti.tcpi_sndbuf_limited)) {
			w->busy_us = ti.tcpi_busy_time;
			w->rwnd_limited_us = ti.tcpi_rwnd_limited;
			w->sndbuf_limited_us = ti.tcpi_sndbuf_limited;
		}
		/* Segments sent again and reorderings the sender saw: on
		 * loopback, a connection that reordered (see P6). */
		if (tl >= offsetof(struct tcp_info, tcpi_reord_seen) + sizeof(ti.tcpi_reord_seen)) {
			w->retrans = ti.tcpi_total_retrans;
			w->reord_seen = ti.tcpi_reord_seen;
		}
		bbr_state(fd, w);
		close(fd);
	}
	free(buf);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* A tools/call whose arguments carry pad_bytes of padding. */
static char *make_request(const char *token, int pad_bytes)
{
	char *pad, *body, *req;

	if (pad_bytes < 0)
		pad_bytes = 0;
	pad = malloc((size_t)pad_bytes + 1);
	if (!pad)
		return NULL;
	memset(pad, 'x', (size_t)pad_bytes);
	pad[pad_bytes] = '\0';
	if (asprintf(&body, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
		     "{\"name\":\"echo\",\"arguments\":{\"text\":\"hello%s\"}}}", pad) < 0) {
		free(pad);
		return NULL;
	}
	free(pad);
	if (asprintf(&req, "POST /mcp HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
		     "Accept: application/json, text/event-stream\r\nAuthorization: Bearer %s\r\n"
		     "Mcp-Session-Id: bench-session\r\nMcp-Protocol-Version: 2025-11-25\r\n"
		     "Content-Length: %zu\r\n\r\n%s", token, strlen(body), body) < 0)
		req = NULL;
	free(body);
	return req;
}

int main(int argc, char **argv)
{
	const char *token = getenv("RR_TOKEN") ? getenv("RR_TOKEN") : "opaque-bench-token";
	struct worker *ws;
	uint32_t *all;
	size_t n_all = 0, i;
	uint64_t reqs = 0, errs = 0, t0, t1, busy = 0, rwnd = 0, sndbuf = 0, retrans = 0, reord = 0;
	int bbr = 0, bbr_startup = 0;
	int conns;

	if (argc < 5) {
		fprintf(stderr, "usage: rr_bench ADDR PORT CONNS SECONDS [BODY_BYTES [NEW_CONN_EACH]]\n");
		return 2;
	}
	addr = argv[1];
	port = atoi(argv[2]);
	conns = atoi(argv[3]);
	seconds = atoi(argv[4]);
	body_bytes = argc > 5 ? atoi(argv[5]) : 0;
	churn = argc > 6 ? atoi(argv[6]) : 0;
	cong = getenv("RR_CC");
	if (cong) {
		/* A run with another congestion control than asked measures
		 * something else: refused before it starts. */
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cong, strlen(cong))) {
			fprintf(stderr, "rr_bench: cannot use congestion control %s: %s\n", cong,
				strerror(errno));
			return 2;
		}
		close(fd);
	}
	request = make_request(token, body_bytes);
	if (!request)
		return 1;
	request_len = strlen(request);
	ws = calloc((size_t)conns, sizeof(*ws));
	t0 = now_ns();
	for (i = 0; i < (size_t)conns; i++) {
		ws[i].lat_us = malloc(MAX_SAMPLES * sizeof(uint32_t));
		pthread_create(&ws[i].th, NULL, run, &ws[i]);
	}
	for (i = 0; i < (size_t)conns; i++)
		pthread_join(ws[i].th, NULL);
	t1 = now_ns();
	all = malloc((size_t)conns * MAX_SAMPLES * sizeof(uint32_t));
	for (i = 0; i < (size_t)conns; i++) {
		memcpy(all + n_all, ws[i].lat_us, ws[i].n_lat * sizeof(uint32_t));
		n_all += ws[i].n_lat;
		reqs += ws[i].requests;
		errs += ws[i].errors;
		busy += ws[i].busy_us;
		rwnd += ws[i].rwnd_limited_us;
		sndbuf += ws[i].sndbuf_limited_us;
		retrans += ws[i].retrans;
		reord += ws[i].reord_seen;
		bbr += ws[i].bbr;
		bbr_startup += ws[i].bbr_startup;
	}
	qsort(all, n_all, sizeof(*all), cmp_u32);
	printf("{\"requests\":%llu,\"seconds\":%.3f,\"rps\":%.1f,\"p50_us\":%u,\"p99_us\":%u,"
	       "\"errors\":%llu,\"tcp_busy_us\":%llu,\"tcp_rwnd_limited_us\":%llu,"
	       "\"tcp_sndbuf_limited_us\":%llu,\"tcp_retrans\":%llu,\"tcp_reord_seen\":%llu,"
	       "\"bbr_conns\":%d,\"bbr_startup_conns\":%d}\n", (unsigned long long)reqs, (double)(t1 - t0) / 1e9,
	       (double)reqs * 1e9 / (double)(t1 - t0), n_all ? all[n_all / 2] : 0,
	       n_all ? all[n_all * 99 / 100] : 0, (unsigned long long)errs,
	       (unsigned long long)busy, (unsigned long long)rwnd, (unsigned long long)sndbuf,
	       (unsigned long long)retrans, (unsigned long long)reord, bbr, bbr_startup);
	return 0;
}
