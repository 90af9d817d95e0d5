// SPDX-License-Identifier: GPL-2.0
/*
 * The wakers' map (waker.h): when no waker can start, no slot is left
 * holding a ring, or the kernel would send held bytes' wakeups to a ring
 * no one reads (a previous daemon's, in pinned maps) instead of waking
 * the loop.
 */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/resource.h>
#include <bpf/bpf.h>

#include "harness.h"
#include "waker.h"

static void never(void *ctx, bool woken, bool *realtime)
{
	(void)ctx;
	(void)woken;
	(void)realtime;
}

void test_waker_failed_start_empties_slots(void)
{
	LIBBPF_OPTS(bpf_map_create_opts, opts);
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	long page = sysconf(_SC_PAGESIZE);
	int ring = -1, map = -1, cpu, err = 0, inner, lowest;
	struct rlimit old, lim;
	struct wakers *w;

	ring = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "wake_test", 0, 0, (__u32)page, NULL);
	if (!ASSERT_GE(ring, 0, "ring"))
		return;
	opts.inner_map_fd = ring;
	map = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "wakers_test", sizeof(__u32),
			     sizeof(__u32), 2, &opts);
	if (!ASSERT_GE(map, 0, "map of rings"))
		goto out;
	/* A previous daemon's rings in both slots. */
	for (cpu = 0; cpu < 2; cpu++)
		ASSERT_OK(bpf_map_update_elem(map, &cpu, &ring, BPF_ANY), "slot filled");
	/* No descriptor left: the wakers' eventfd cannot be made. */
	lowest = dup(0);
	if (!ASSERT_GE(lowest, 0, "dup"))
		goto out;
	close(lowest);
	getrlimit(RLIMIT_NOFILE, &old);
	lim = old;
	lim.rlim_cur = (rlim_t)lowest;
	if (!ASSERT_OK(setrlimit(RLIMIT_NOFILE, &lim), "limit descriptors"))
		goto out;
	w = wakers__start(map, 2, &lock, never, NULL, &err);
	setrlimit(RLIMIT_NOFILE, &old);
	ASSERT_NULL(w, "no wakers");
	ASSERT_EQ(err, -EMFILE, "said why");
	wakers__stop(w);
	for (cpu = 0; cpu < 2; cpu++)
		ASSERT_ERR(bpf_map_lookup_elem(map, &cpu, &inner), "slot emptied");
out:
	if (map >= 0)
		close(map);
	close(ring);
}
