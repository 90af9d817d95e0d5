// SPDX-License-Identifier: GPL-2.0
/*
 * What waking a sleeping thread costs on this machine, for the bench to
 * set P2's latencies against: a thread blocked in epoll_wait() (real-time
 * when allowed, as the agent's loop) is woken by an eventfd write from a
 * thread on another CPU, or on its own, after an idle gap. A held request
 * wakes the agent's loop this way (the ring buffer's wakeup), and the
 * release wakes the server the same way.
 *
 *   wake_lat [SAMPLES [GAP_US]]
 *
 * Prints one JSON line: p50/p99 wakeup latency in µs for a sleeper on
 * another CPU (cross) and on the waker's CPU (same), and the p50 time the
 * waker's write() took in each case.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

struct run {
	int cpu_waker, cpu_sleeper, samples, gap_us;
	int efd, epfd;
	uint64_t *lat, *write_ns;
	int err;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int pin(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	return pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

static void *sleeper(void *arg)
{
	struct run *r = arg;
	struct sched_param sp = { .sched_priority = 1 };
	int i;

	if (pin(r->cpu_sleeper)) {
		r->err = EINVAL;
		return NULL;
	}
	pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);	/* best effort */
	for (i = 0; i < r->samples; i++) {
		struct epoll_event ev;
		uint64_t sent, woke;
		int n;

		do
			n = epoll_wait(r->epfd, &ev, 1, 5000);
		while (n < 0 && errno == EINTR);
		woke = now_ns();
		if (n != 1 || read(r->efd, &sent, sizeof(sent)) != sizeof(sent)) {
			__atomic_store_n(&r->err, n == 0 ? ETIMEDOUT : errno ? errno : EIO, __ATOMIC_RELEASE);
			return NULL;
		}
		__atomic_store_n(&r->lat[i], woke > sent ? woke - sent : 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *v, int n, int p)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return (double)v[(size_t)n * (size_t)p / 100 < (size_t)n ? (size_t)n * (size_t)p / 100 : (size_t)n - 1] / 1000.0;
}

static int measure(struct run *r)
{
	struct epoll_event ev = { .events = EPOLLIN };
	pthread_t th;
	int i;

	r->efd = eventfd(0, EFD_CLOEXEC);
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	r->lat = calloc((size_t)r->samples, sizeof(*r->lat));
	r->write_ns = calloc((size_t)r->samples, sizeof(*r->write_ns));
	if (r->efd < 0 || r->epfd < 0 || !r->lat || !r->write_ns ||
	    epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->efd, &ev) || pin(r->cpu_waker))
		return -1;
	if (pthread_create(&th, NULL, sleeper, r))
		return -1;
	for (i = 0; i < r->samples && !r->err; i++) {
		uint64_t t;

		usleep((useconds_t)r->gap_us);	/* both sides idle: the sleeper's CPU halts */
		t = now_ns();
		/* The value is the send time; the sleeper reads it back (one
		 * write at a time: it has read the last one). */
		if (write(r->efd, &t, sizeof(t)) != sizeof(t))
			break;
		r->write_ns[i] = now_ns() - t;
		while (!__atomic_load_n(&r->err, __ATOMIC_ACQUIRE) && i + 1 < r->samples &&
		       !__atomic_load_n(&r->lat[i], __ATOMIC_ACQUIRE) && now_ns() - t < 1000000000ull)
			usleep(50);
	}
	pthread_join(th, NULL);
	return r->err || i < r->samples ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct run cross = { 0 }, same = { 0 };
	int samples = argc > 1 ? atoi(argv[1]) : 300, gap = argc > 2 ? atoi(argv[2]) : 2000;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (samples < 10 || gap < 0) {
		fprintf(stderr, "usage: wake_lat [SAMPLES>=10 [GAP_US]]\n");
		return 2;
	}
	cross = (struct run){ .cpu_waker = 0, .cpu_sleeper = cpus > 1 ? 1 : 0, .samples = samples, .gap_us = gap };
	same = (struct run){ .cpu_waker = 0, .cpu_sleeper = 0, .samples = samples, .gap_us = gap };
	if (measure(&cross) || measure(&same)) {
		fprintf(stderr, "wake_lat: measurement failed: %s\n",
			strerror(cross.err ? cross.err : same.err ? same.err : errno));
		return 1;
	}
	printf("{\"cpus\":%ld,\"samples\":%d,\"gap_us\":%d,\"cross_p50_us\":%.1f,\"cross_p99_us\":%.1f,"
	       "\"same_p50_us\":%.1f,\"same_p99_us\":%.1f,\"waker_write_cross_p50_us\":%.1f,"
	       "\"waker_write_same_p50_us\":%.1f}\n", cpus, samples, gap,
	       pct_us(cross.lat, samples, 50), pct_us(cross.lat, samples, 99),
	       pct_us(same.lat, samples, 50), pct_us(same.lat, samples, 99),
	       pct_us(cross.write_ns, samples, 50), pct_us(same.write_ns, samples, 50));
	return 0;
}
