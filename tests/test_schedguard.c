// SPDX-License-Identifier: GPL-2.0
/*
 * When the event loop gives real-time up and takes it back
 * (schedguard.h): busy most of a second -> plain; plain for the pause
 * and calm -> real-time again; a loop that never was real-time stays
 * plain.
 */
#include "harness.h"
#include "schedguard.h"

#define S 1000000000ull

void test_schedguard_busy_then_calm(void)
{
	struct sched_guard g;
	uint64_t now = 100 * S, cpu = 5 * S;
	enum sched_change c;
	int i;

	sched_guard__init(&g, true, cpu, now);
	/* 40% busy: stays real-time. */
	now += S;
	cpu += 4 * S / 10;
	ASSERT_EQ(sched_guard__tick(&g, cpu, now), SCHED_KEEP, "40% busy: keep");
	ASSERT_EQ(g.busy_pct, 40, "busy share");
	/* 90% busy: gives it up. */
	now += S;
	cpu += 9 * S / 10;
	c = sched_guard__tick(&g, cpu, now);
	ASSERT_EQ(c, SCHED_TO_NORMAL, "90% busy: plain");
	sched_guard__applied(&g, c, now);
	ASSERT_FALSE(g.realtime, "plain now");
	/* Calm, but within the pause: stays plain. */
	for (i = 0; i < 29; i++) {
		now += S;
		cpu += S / 10;
		ASSERT_EQ(sched_guard__tick(&g, cpu, now), SCHED_KEEP, "paused");
	}
	/* Past the pause but busy: still plain. */
	now += 2 * S;
	cpu += 2 * S * 5 / 10;
	ASSERT_EQ(sched_guard__tick(&g, cpu, now), SCHED_KEEP, "50% busy after the pause");
	/* Calm after the pause: real-time again. */
	now += S;
	cpu += S / 10;
	c = sched_guard__tick(&g, cpu, now);
	ASSERT_EQ(c, SCHED_TO_REALTIME, "calm after the pause: real-time");
	sched_guard__applied(&g, c, now);
	ASSERT_TRUE(g.realtime, "real-time again");
}

void test_schedguard_never_realtime(void)
{
	struct sched_guard g;

	sched_guard__init(&g, false, 0, S);
	ASSERT_EQ(sched_guard__tick(&g, S / 100, 100 * S), SCHED_KEEP,
		  "a loop that never was real-time is not made so");
	/* A clock that does not move is no evidence. */
	sched_guard__init(&g, true, S, S);
	ASSERT_EQ(sched_guard__tick(&g, 2 * S, S), SCHED_KEEP, "no time passed");
}
