// SPDX-License-Identifier: GPL-2.0
/* When the event loop may stay real-time (schedguard.h). */
#include "schedguard.h"

void sched_guard__init(struct sched_guard *g, bool realtime, uint64_t cpu_ns, uint64_t now_ns)
{
	*g = (struct sched_guard){ .realtime = realtime, .last_cpu_ns = cpu_ns,
				   .last_ns = now_ns };
}

enum sched_change sched_guard__tick(struct sched_guard *g, uint64_t cpu_ns, uint64_t now_ns)
{
	uint64_t wall = now_ns - g->last_ns, busy = cpu_ns - g->last_cpu_ns;

	if (now_ns <= g->last_ns || cpu_ns < g->last_cpu_ns)
		return SCHED_KEEP;
	g->busy_pct = (unsigned int)(busy >= wall ? 100 : busy * 100 / wall);
	g->last_ns = now_ns;
	g->last_cpu_ns = cpu_ns;
	if (g->realtime && g->busy_pct > SCHED_GUARD_SUSPEND_PCT)
		return SCHED_TO_NORMAL;
	if (!g->realtime && g->resume_ns && now_ns >= g->resume_ns &&
	    g->busy_pct < SCHED_GUARD_RESUME_PCT)
		return SCHED_TO_REALTIME;
	return SCHED_KEEP;
}

void sched_guard__applied(struct sched_guard *g, enum sched_change c, uint64_t now_ns)
{
	if (c == SCHED_TO_NORMAL) {
		g->realtime = false;
		g->resume_ns = now_ns + SCHED_GUARD_PAUSE_NS;
	} else if (c == SCHED_TO_REALTIME) {
		g->realtime = true;
		g->resume_ns = 0;
	}
}
