// SPDX-License-Identifier: GPL-2.0
/*
 * The bench's floor: a bare sockmap on the server's accepted sockets
 * (tests/helpers/bpf/sockmap_floor.bpf.c), nothing else.
 *
 *   sockmap_floor CGROUP_DIR PORT
 *
 * Attaches to the cgroup (sockets of processes in it), prints "ready",
 * and holds everything until SIGTERM or SIGINT; all of it goes when the
 * process does (nothing pinned). Prints at the end how many sockets it
 * held and segments it passed ("sockets N segments M"): a floor that
 * was not in the path is no floor.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "sockmap_floor.skel.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(int argc, char **argv)
{
	struct sockmap_floor_bpf *s = NULL;
	struct bpf_link *link = NULL;
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t none;
	int cg = -1, ret = 1;

	if (argc != 3 || atoi(argv[2]) <= 0 || atoi(argv[2]) > 65535) {
		fprintf(stderr, "usage: sockmap_floor CGROUP_DIR PORT\n");
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	s = sockmap_floor_bpf__open();
	if (!s) {
		fprintf(stderr, "sockmap_floor: open: %s\n", strerror(errno));
		return 1;
	}
	s->rodata->port = (__u32)atoi(argv[2]);
	if (sockmap_floor_bpf__load(s)) {
		fprintf(stderr, "sockmap_floor: load: %s\n", strerror(errno));
		goto out;
	}
	cg = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0) {
		fprintf(stderr, "sockmap_floor: %s: %s\n", argv[1], strerror(errno));
		goto out;
	}
	if (bpf_prog_attach(bpf_program__fd(s->progs.floor_verdict), bpf_map__fd(s->maps.floor_srv),
			    BPF_SK_SKB_STREAM_VERDICT, 0)) {
		fprintf(stderr, "sockmap_floor: verdict: %s\n", strerror(errno));
		goto out;
	}
	link = bpf_program__attach_cgroup(s->progs.floor_ops, cg);
	if (!link) {
		fprintf(stderr, "sockmap_floor: sockops: %s\n", strerror(errno));
		goto out;
	}
	printf("ready\n");
	fflush(stdout);
	sigemptyset(&none);
	while (!stop)
		sigsuspend(&none);
	printf("sockets %llu segments %llu\n", (unsigned long long)s->bss->sockets,
	       (unsigned long long)s->bss->segments);
	ret = 0;
out:
	bpf_link__destroy(link);
	if (cg >= 0)
		close(cg);
	sockmap_floor_bpf__destroy(s);
	return ret;
}
