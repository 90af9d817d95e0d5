/* SPDX-License-Identifier: GPL-2.0 */
/*
 * When the event loop may stay real-time.
 *
 * SCHED_FIFO lets a held request's verdict run as soon as its bytes
 * arrive, which matters while the loop is mostly idle. A loop that is
 * busy most of the time (a flood of requests, or a bug that spins) would
 * instead take its CPU from every plain task there until the kernel's
 * throttling steps in. So the loop gives real-time up when it was busy
 * more than SCHED_GUARD_SUSPEND_PCT of the last window, and takes it back
 * once SCHED_GUARD_PAUSE_NS have passed and it is calm again.
 */
#ifndef MCPW_SCHEDGUARD_H
#define MCPW_SCHEDGUARD_H

#include <stdbool.h>
#include <stdint.h>

#define SCHED_GUARD_SUSPEND_PCT 60
#define SCHED_GUARD_RESUME_PCT 30
#define SCHED_GUARD_PAUSE_NS (30ull * 1000000000)

enum sched_change {
	SCHED_KEEP,
	SCHED_TO_NORMAL,	/* busy: give real-time up */
	SCHED_TO_REALTIME,	/* calm again */
};

struct sched_guard {
	bool realtime;		/* what the loop runs as now */
	uint64_t last_cpu_ns, last_ns;
	uint64_t resume_ns;	/* not real-time again before this */
	unsigned int busy_pct;	/* of the last window */
};

/* A guard for a loop that starts real-time (or not) at now_ns. */
void sched_guard__init(struct sched_guard *g, bool realtime, uint64_t cpu_ns, uint64_t now_ns);
/* Called every second or so with the loop thread's CPU time and the time:
 * what to change. The caller applies it, then sched_guard__applied(). */
enum sched_change sched_guard__tick(struct sched_guard *g, uint64_t cpu_ns, uint64_t now_ns);
void sched_guard__applied(struct sched_guard *g, enum sched_change c, uint64_t now_ns);

#endif
