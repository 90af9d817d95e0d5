// SPDX-License-Identifier: GPL-2.0
/*
 * Holds N open connections to an MCP server for the memory benchmark
 * (`make bench`, M). With JUDGE=1 every connection first carries one
 * tools/call (bearer token from RR_TOKEN, its own session id) and waits for
 * its response, so the agent has judged each one before the count is
 * taken. JUDGE=2: every connection sends the same head (one session id),
 * the first one alone (and 100 ms) before the others, so that they can be
 * admitted on the process's template. Prints one JSON line, then keeps the connections
 * open until stdin closes or SIGTERM/SIGINT arrives (HOLD_STDIN=0: until
 * the signal alone, for a caller whose stdin is /dev/null).
 *
 *   hold_conns ADDR PORT N [JUDGE]
 *   {"open":N,"judged":J,"errors":E,"seconds":S}
 *
 * RLIMIT_NOFILE is raised as far as the hard limit allows; N above that
 * is cut down and the JSON says how many were opened.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define BATCH 128	/* requests in flight at once while judging */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(const struct sockaddr_in *a)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a))) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads one HTTP response with a Content-Length body, 2 s at most. */
static int read_response(int fd)
{
	char buf[4096];
	size_t have = 0, need = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char *end, *cl;
		ssize_t n;

		if (poll(&p, 1, 2000) <= 0)
			return -1;
		n = read(fd, buf + have, sizeof(buf) - have - 1);
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
		if (have + 1 >= sizeof(buf))
			return -1;
	}
}

static int send_request(int fd, const char *token, long i, bool same)
{
	char body[256], req[4096], session[32];
	int blen, rlen;

	blen = snprintf(body, sizeof(body), "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\","
			"\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"hold\"}}}", i);
	if (same)
		snprintf(session, sizeof(session), "hold-same");
	else
		snprintf(session, sizeof(session), "hold-%ld", i);
	rlen = snprintf(req, sizeof(req), "POST /mcp HTTP/1.1\r\nHost: bench\r\n"
			"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
			"Authorization: Bearer %s\r\nMcp-Session-Id: %s\r\n"
			"Mcp-Protocol-Version: 2025-11-25\r\nContent-Length: %d\r\n\r\n%s",
			token, session, blen, body);
	if (rlen <= 0 || (size_t)rlen >= sizeof(req))
		return -1;
	return send_all(fd, req, (size_t)rlen);
}

int main(int argc, char **argv)
{
	const char *token = getenv("RR_TOKEN") ? getenv("RR_TOKEN") : "opaque-bench-token";
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct sigaction sa = { .sa_handler = on_signal };
	long want, open_n = 0, judged = 0, errors = 0, i, j, end;
	struct rlimit rl;
	double t0 = now_s();
	int judge, watch_stdin, *fds;

	if (argc < 4 || (want = strtol(argv[3], NULL, 10)) <= 0) {
		fprintf(stderr, "usage: hold_conns ADDR PORT N [JUDGE]\n");
		return 2;
	}
	judge = argc > 4 ? atoi(argv[4]) : 0;
	a.sin_port = htons((uint16_t)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) {
		fprintf(stderr, "hold_conns: bad address %s\n", argv[1]);
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t need = (rlim_t)want + 64;

		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if ((rlim_t)want + 16 > rl.rlim_cur)
			want = (long)rl.rlim_cur - 16;
	}
	fds = calloc((size_t)want, sizeof(*fds));
	if (!fds)
		return 1;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (i = 0; i < want && !stop; i++) {
		int fd = dial(&a);

		if (fd < 0) {
			errors++;
			if (errors > 100)
				break;
			continue;
		}
		fds[open_n++] = fd;
	}
	/* In batches: every request of a batch is sent before any answer is
	 * awaited, so the agent judges a batch concurrently. */
	for (i = 0; judge && i < open_n && !stop; i = end) {
		int sent[BATCH];

		end = judge == 2 && i == 0 ? 1 : i + BATCH < open_n ? i + BATCH : open_n;
		for (j = i; j < end; j++)
			sent[j - i] = send_request(fds[j], token, j, judge == 2) == 0;
		for (j = i; j < end; j++) {
			if (sent[j - i] && read_response(fds[j]) == 0)
				judged++;
			else
				errors++;
		}
		/* The agent installs the template it made just after it lets
		 * the request through: the answer can come first. */
		if (judge == 2 && i == 0)
			usleep(100 * 1000);
	}
	printf("{\"open\":%ld,\"judged\":%ld,\"errors\":%ld,\"seconds\":%.3f}\n", open_n, judged,
	       errors, now_s() - t0);
	fflush(stdout);

	watch_stdin = !getenv("HOLD_STDIN") || strcmp(getenv("HOLD_STDIN"), "0");
	while (!stop) {
		struct pollfd p = { .fd = watch_stdin ? 0 : -1, .events = POLLIN };
		char buf[64];

		if (poll(&p, 1, 1000) > 0 && read(0, buf, sizeof(buf)) <= 0)
			break;
	}
	for (i = 0; i < open_n; i++)
		close(fds[i]);
	free(fds);
	return 0;
}
