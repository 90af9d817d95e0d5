/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Wakers: a thread pinned to each CPU the daemon may run on, asleep on
 * that CPU's wakeup ring (the kernel's `wakers` map). Held bytes ring the
 * CPU that held them, and its waker reads the data ring there, as the
 * event loop would, under the loop's lock.
 *
 * Why: the bytes of a new identity wait in the kernel until the daemon
 * reads them. Woken through the data ring, the loop thread runs wherever
 * it slept; on a virtual machine a thread asleep on another, idle vCPU
 * waits for the host to run that vCPU (here p50 ~100 µs, p99 1-3 ms),
 * while a thread on the CPU that is already running wakes locally (p99
 * ~100-300 µs). A CPU without a waker (outside the daemon's affinity, or
 * the wakers could not start) wakes the loop as before.
 *
 * Every pass runs under the caller's lock, so the daemon's state stays
 * single-threaded: at most one thread works on it at a time.
 */
#ifndef MCPW_WAKER_H
#define MCPW_WAKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wakers;

/*
 * One pass of a waker, called with the lock held: woken false once when
 * the thread starts (it sets up its scheduling before it first sleeps),
 * true each time its ring rang. *realtime is the thread's own: whether it
 * runs real-time now, for the function to keep in step with the loop's.
 */
typedef void (*waker_fn)(void *ctx, bool woken, bool *realtime);

/*
 * Starts a waker on every CPU of the calling thread's affinity, each
 * registered in map_fd (an array of ring maps indexed by CPU, ncpus
 * slots) once it is running; every other slot is emptied. NULL and
 * -errno in *err when none could start (nothing is left registered).
 */
struct wakers *wakers__start(int map_fd, int ncpus, pthread_mutex_t *lock, waker_fn fn,
			     void *ctx, int *err);
/* Empties the map's ncpus slots: the kernel wakes the loop for every CPU
 * (no wakers, or a previous daemon's left in pinned maps). */
void wakers__unregister(int map_fd, int ncpus);
/* Empties the map's slots, stops and joins the threads. NULL is a no-op. */
void wakers__stop(struct wakers *w);
/* The CPUs with a waker, as a list ("0-3,6"). */
void wakers__cpus(const struct wakers *w, char *buf, size_t len);
/* The CPU time all the wakers used, in ns. */
uint64_t wakers__cpu_ns(const struct wakers *w);
/* Passes run because a ring rang. */
uint64_t wakers__passes(const struct wakers *w);

#endif
