// SPDX-License-Identifier: GPL-2.0
/*
 * P7: the sighting round trip on loopback. Node A puts a sighting of a new
 * client; the clock stops when node B's cache answers store__sightings()
 * for it (A's worker -> JetStream KV -> B's watch -> B's drain), as an
 * agent on B would see it.
 *
 *   sighting_rtt [-n ITERATIONS] [nats://HOST:PORT]
 *
 * The server is the argument, else $NATS_URL; without either it starts its
 * own nats-server -js on a free loopback port (and kills it, by pid, at the
 * end). Prints one JSON line:
 *   {"n":1000,"p50_us":..,"p99_us":..,"max_us":..,"lost":0}
 * Exit status 0, 1 on failure (no server, not ready, a sighting lost).
 *
 * Build: cc ... tests/helpers/sighting_rtt.c userspace/store_nats.c
 *        userspace/hmap.c -lnats -ljansson -lpthread
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "store.h"

#define WARMUP		50
#define READY_MS	15000
#define ONE_MS		2000	/* a round trip slower than this is lost */

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static bool port_open(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (fd >= 0)
		close(fd);
	return ok;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static pid_t server_start(int port, const char *dir)
{
	char p[16], sd[PATH_MAX], log[PATH_MAX];
	int64_t deadline = now_us() + 10000000;
	pid_t pid;

	snprintf(p, sizeof(p), "%d", port);
	snprintf(sd, sizeof(sd), "%s/js", dir);
	snprintf(log, sizeof(log), "%s/server.log", dir);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("nats-server", "nats-server", "-js", "-a", "127.0.0.1", "-p", p, "-sd", sd,
		       "-l", log, (char *)NULL);
		execl("/usr/sbin/nats-server", "nats-server", "-js", "-a", "127.0.0.1", "-p", p,
		      "-sd", sd, "-l", log, (char *)NULL);
		_exit(127);
	}
	while (pid > 0 && now_us() < deadline) {
		if (port_open(port))
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		usleep(20000);
	}
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return -1;
}

static void drain(struct store *a, struct store *b, int timeout_ms)
{
	struct pollfd pfd[2] = {
		{ .fd = store__fd(a), .events = POLLIN },
		{ .fd = store__fd(b), .events = POLLIN },
	};

	poll(pfd, 2, timeout_ms);
	store__drain(a, NULL, NULL);
	store__drain(b, NULL, NULL);
}

static bool ready(struct store *s)
{
	struct store_health h;

	store__health(s, &h);
	return h.ready;
}

static int cmp_i64(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

	return a < b ? -1 : a > b;
}

static struct store *open_node(const char *url, const char *node)
{
	struct store_config cfg = { .url = url, .node = node };
	struct store *s = NULL;

	return store__open(&cfg, &s) ? NULL : s;
}

int main(int argc, char **argv)
{
	char url[256] = "", dir[] = "/tmp/mcpw-rtt-XXXXXX", client[64];
	struct store *a = NULL, *b = NULL;
	struct store_sighting one;
	int64_t *rtt = NULL, deadline, run;
	int n = 1000, i, opt, lost = 0, ret = 1;
	const char *env = getenv("NATS_URL");
	pid_t pid = -1;
	bool own_dir = false;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt == 'n')
			n = atoi(optarg);
		else
			goto usage;
	}
	if (n <= 0 || n > 1000000 || argc - optind > 1)
		goto usage;
	if (optind < argc)
		snprintf(url, sizeof(url), "%s", argv[optind]);
	else if (env && *env)
		snprintf(url, sizeof(url), "%s", env);
	signal(SIGPIPE, SIG_IGN);
	if (!url[0]) {
		int port = free_port();

		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			return 1;
		}
		own_dir = true;
		pid = server_start(port, dir);
		if (pid < 0) {
			fprintf(stderr, "sighting_rtt: cannot start nats-server (apt-get install "
				"nats-server)\n");
			goto out;
		}
		snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
	}
	a = open_node(url, "rtt-a");
	b = open_node(url, "rtt-b");
	rtt = calloc((size_t)n, sizeof(*rtt));
	if (!a || !b || !rtt) {
		fprintf(stderr, "sighting_rtt: cannot open the store\n");
		goto out;
	}
	deadline = now_us() + READY_MS * 1000ll;
	while (!(ready(a) && ready(b)) && now_us() < deadline)
		drain(a, b, 10);
	if (!ready(a) || !ready(b)) {
		fprintf(stderr, "sighting_rtt: the store is not ready\n");
		goto out;
	}
	run = now_us() ^ ((int64_t)getpid() << 40);
	for (i = -WARMUP; i < n; i++) {
		int64_t t0;

		/* New to the bucket even when the server is reused. */
		snprintf(client, sizeof(client), "rtt-%lld-%d", (long long)run, i + WARMUP);
		t0 = now_us();
		store__sighting_put(a, client, 1, "{\"bench\":true}");
		deadline = t0 + ONE_MS * 1000ll;
		while (store__sightings(b, client, &one, 1) < 1 && now_us() < deadline)
			drain(a, b, 5);
		if (store__sightings(b, client, &one, 1) < 1)
			lost++;
		else if (i >= 0)
			rtt[i] = now_us() - t0;
	}
	qsort(rtt, (size_t)n, sizeof(*rtt), cmp_i64);
	printf("{\"n\":%d,\"p50_us\":%lld,\"p99_us\":%lld,\"max_us\":%lld,\"lost\":%d}\n", n,
	       (long long)rtt[n / 2], (long long)rtt[(n * 99) / 100 - (n >= 100 ? 1 : 0)],
	       (long long)rtt[n - 1], lost);
	ret = lost ? 1 : 0;
out:
	store__close(a);
	store__close(b);
	free(rtt);
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (own_dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return ret;
usage:
	fprintf(stderr, "usage: sighting_rtt [-n ITERATIONS] [nats://HOST:PORT]\n");
	return 2;
}
