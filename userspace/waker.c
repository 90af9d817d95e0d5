// SPDX-License-Identifier: GPL-2.0
/* Per-CPU wakers for held bytes (waker.h). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <bpf/bpf.h>

#include "log.h"
#include "ring.h"
#include "waker.h"

enum { EV_RING, EV_STOP };

struct waker {
	struct wakers *set;
	pthread_t tid;
	int cpu;
	int ring_fd;		/* this CPU's ring in the kernel's map */
	struct rings *ring;	/* ... mapped, to empty it */
	int epfd;
	bool running;		/* the thread was started (joined at stop) */
	bool registered;	/* its ring is in the kernel's map */
	bool realtime;		/* the thread's own scheduling (waker_fn) */
	atomic_uint_fast64_t passes;
};

struct wakers {
	struct waker *w;	/* ncpus slots, indexed by CPU */
	size_t n;		/* started */
	int ncpus, map_fd, stop_fd;
	pthread_mutex_t *lock;
	waker_fn fn;
	void *ctx;
};

/* A wakeup record says nothing; reading it is emptying the ring. */
static int drop_record(void *ctx, void *data, size_t size)
{
	(void)ctx;
	(void)data;
	(void)size;
	return 0;
}

static void *waker_main(void *p)
{
	struct waker *t = p;
	struct wakers *s = t->set;
	struct epoll_event evs[2];
	int n, i;

	pthread_mutex_lock(s->lock);
	s->fn(s->ctx, false, &t->realtime);
	pthread_mutex_unlock(s->lock);
	for (;;) {
		bool rang = false;

		n = epoll_wait(t->epfd, evs, 2, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* The kernel wakes the loop for this CPU from now on. */
			pr_warn("the waker of CPU %d stops: epoll_wait: %s", t->cpu,
				strerror(errno));
			bpf_map_delete_elem(s->map_fd, &t->cpu);
			__atomic_store_n(&t->registered, false, __ATOMIC_RELAXED);
			return NULL;
		}
		for (i = 0; i < n; i++) {
			if (evs[i].data.u32 == EV_STOP)
				return NULL;
			rang = true;
		}
		if (!rang)
			continue;
		/* Emptied before the data ring is read: a wakeup from now on is
		 * for bytes this pass may not see, and wakes the next. */
		rings__consume(t->ring);
		pthread_mutex_lock(s->lock);
		s->fn(s->ctx, true, &t->realtime);
		pthread_mutex_unlock(s->lock);
		atomic_fetch_add_explicit(&t->passes, 1, memory_order_relaxed);
	}
}

static void close_waker(struct waker *t)
{
	rings__free(t->ring);
	t->ring = NULL;
	if (t->epfd >= 0)
		close(t->epfd);
	if (t->ring_fd >= 0)
		close(t->ring_fd);
	t->epfd = t->ring_fd = -1;
}

/* A ring, a thread pinned to cpu, then the ring in the kernel's map. */
static int start_waker(struct wakers *s, struct waker *t, int cpu)
{
	struct epoll_event ring_ev = { .events = EPOLLIN, .data.u32 = EV_RING };
	struct epoll_event stop_ev = { .events = EPOLLIN, .data.u32 = EV_STOP };
	char name[16];
	pthread_attr_t attr;
	cpu_set_t one;
	int err;

	*t = (struct waker){ .set = s, .cpu = cpu, .ring_fd = -1, .epfd = -1 };
	t->ring_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "mcpw_wake", 0, 0,
				    (__u32)sysconf(_SC_PAGESIZE), NULL);
	if (t->ring_fd < 0)
		return -errno;
	t->ring = rings__new();
	if (!t->ring) {
		close_waker(t);
		return -ENOMEM;
	}
	err = rings__add(t->ring, t->ring_fd, drop_record, NULL);
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!err && t->epfd < 0)
		err = -errno;
	if (!err && (epoll_ctl(t->epfd, EPOLL_CTL_ADD, rings__epoll_fd(t->ring), &ring_ev) ||
		     epoll_ctl(t->epfd, EPOLL_CTL_ADD, s->stop_fd, &stop_ev)))
		err = -errno;
	if (err) {
		close_waker(t);
		return err;
	}
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	pthread_attr_init(&attr);
	err = -pthread_attr_setaffinity_np(&attr, sizeof(one), &one);
	if (!err)
		err = -pthread_create(&t->tid, &attr, waker_main, t);
	pthread_attr_destroy(&attr);
	if (err) {
		close_waker(t);
		return err;
	}
	t->running = true;
	snprintf(name, sizeof(name), "mcpw-wake/%d", cpu);
	pthread_setname_np(t->tid, name);
	/* Only now may the kernel ring it: someone is there to answer. */
	if (bpf_map_update_elem(s->map_fd, &cpu, &t->ring_fd, BPF_ANY))
		return -errno;	/* running but unregistered: stopped with the rest */
	t->registered = true;
	return 0;
}

void wakers__unregister(int map_fd, int ncpus)
{
	int cpu;

	for (cpu = 0; cpu < ncpus; cpu++)
		bpf_map_delete_elem(map_fd, &cpu);
}

static void stop_all(struct wakers *s)
{
	uint64_t one = 1;
	int cpu;

	wakers__unregister(s->map_fd, s->ncpus);
	if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
		pr_warn("cannot stop the wakers: %s", strerror(errno));
	for (cpu = 0; cpu < s->ncpus; cpu++) {
		struct waker *t = &s->w[cpu];

		if (t->running)
			pthread_join(t->tid, NULL);
		if (t->ring || t->ring_fd >= 0 || t->epfd >= 0)
			close_waker(t);
	}
	close(s->stop_fd);
	free(s->w);
	free(s);
}

struct wakers *wakers__start(int map_fd, int ncpus, pthread_mutex_t *lock, waker_fn fn,
			     void *ctx, int *err)
{
	sigset_t all, old;
	struct wakers *s;
	cpu_set_t mine;
	int cpu, e, first_err = 0;

	*err = 0;
	if (ncpus <= 0)
		return *err = -EINVAL, NULL;
	/* None started: a slot a previous daemon (pinned maps) filled would
	 * take the held bytes' wakeups to a ring no one reads. */
	if (sched_getaffinity(0, sizeof(mine), &mine)) {
		*err = -errno;
		wakers__unregister(map_fd, ncpus);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->w = calloc((size_t)ncpus, sizeof(*s->w)))) {
		free(s);
		wakers__unregister(map_fd, ncpus);
		return *err = -ENOMEM, NULL;
	}
	*s = (struct wakers){ .w = s->w, .ncpus = ncpus, .map_fd = map_fd, .lock = lock,
			      .fn = fn, .ctx = ctx };
	for (cpu = 0; cpu < ncpus; cpu++)
		s->w[cpu].ring_fd = s->w[cpu].epfd = -1;
	s->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (s->stop_fd < 0) {
		*err = -errno;
		wakers__unregister(map_fd, ncpus);
		free(s->w);
		free(s);
		return NULL;
	}
	/* Signals are the loop's (signalfd): never delivered to a waker. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (cpu = 0; cpu < ncpus; cpu++) {
		/* A slot a previous daemon (pinned maps) or nobody filled: the
		 * kernel wakes the loop for that CPU. */
		if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &mine)) {
			bpf_map_delete_elem(map_fd, &cpu);
			continue;
		}
		e = start_waker(s, &s->w[cpu], cpu);
		if (e) {
			bpf_map_delete_elem(map_fd, &cpu);
			if (!first_err)
				first_err = e;
			pr_warn("no waker on CPU %d (%s): its held bytes wake the event loop",
				cpu, strerror(-e));
			continue;
		}
		s->n++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!s->n) {
		stop_all(s);
		*err = first_err ? first_err : -ENOENT;
		return NULL;
	}
	return s;
}

void wakers__stop(struct wakers *s)
{
	if (s)
		stop_all(s);
}

void wakers__cpus(const struct wakers *s, char *buf, size_t len)
{
	size_t used = 0;
	int cpu, from = -1;

	if (len)
		buf[0] = '\0';
	if (!s)
		return;
	for (cpu = 0; cpu <= s->ncpus; cpu++) {
		bool on = cpu < s->ncpus && __atomic_load_n(&s->w[cpu].registered, __ATOMIC_RELAXED);
		int n;

		if (on && from < 0)
			from = cpu;
		if (on || from < 0)
			continue;
		n = from == cpu - 1 ? snprintf(buf + used, len - used, "%s%d", used ? "," : "", from) :
			snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "", from, cpu - 1);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
		from = -1;
	}
}

uint64_t wakers__cpu_ns(const struct wakers *s)
{
	uint64_t sum = 0;
	struct timespec ts;
	clockid_t id;
	int cpu;

	if (!s)
		return 0;
	for (cpu = 0; cpu < s->ncpus; cpu++) {
		if (!s->w[cpu].running || pthread_getcpuclockid(s->w[cpu].tid, &id) ||
		    clock_gettime(id, &ts))
			continue;
		sum += (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
	return sum;
}

uint64_t wakers__passes(const struct wakers *s)
{
	uint64_t sum = 0;
	int cpu;

	if (!s)
		return 0;
	for (cpu = 0; cpu < s->ncpus; cpu++)
		sum += atomic_load_explicit(&s->w[cpu].passes, memory_order_relaxed);
	return sum;
}
