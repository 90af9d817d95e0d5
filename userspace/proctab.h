/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The process table: every process on the node, seeded from /proc at start
 * (so processes older than the agent are known) and kept by the kernel's
 * exec/fork/exit records. A process is (tgid, start time), so a reused pid
 * is a different process. Exited processes stay for a grace period: their
 * connection or request may still be on its way through the rings. The
 * table is bounded; when full, the oldest exited entries go first, and an
 * insert that still does not fit is counted, never silent.
 */
#ifndef MCPW_PROCTAB_H
#define MCPW_PROCTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpwarden/events.h"

struct proc {
	uint32_t tgid;
	uint32_t ppid;
	uint32_t uid, gid;
	uint64_t start_ns;	/* CLOCK_BOOTTIME ns; 0 when unknown */
	uint64_t cgroup_id;
	char comm[MCPW_COMM_LEN];
	char *exe;		/* absolute path when known */
	char *cmdline;		/* argv joined by spaces */
	bool exited;
	uint64_t exit_ns;	/* CLOCK_MONOTONIC ns */
	bool sha_done;
	char exe_sha256[65];
	/* table links */
	struct proc *hnext;
	struct proc *lprev, *lnext;
};

struct proctab;

struct proctab_stats {
	size_t size;
	size_t max;
	uint64_t evicted_live;	/* live entries pushed out by a full table */
	uint64_t proc_errors;	/* /proc reads that failed unexpectedly */
};

/* proc_root: normally "/proc" (tests may point elsewhere). */
struct proctab *proctab__new(size_t max, const char *proc_root);
void proctab__free(struct proctab *t);

/* Reads every process from /proc. Returns how many, or -errno. */
int proctab__seed(struct proctab *t);

void proctab__on_exec(struct proctab *t, const struct mcpw_exec_event *e);
void proctab__on_fork(struct proctab *t, const struct mcpw_fork_event *e);
void proctab__on_exit(struct proctab *t, const struct mcpw_exit_event *e, uint64_t now_ns);

/* start_ns 0 matches any start time. NULL when unknown. */
struct proc *proctab__lookup(struct proctab *t, uint32_t tgid, uint64_t start_ns);
/* Like lookup, but reads /proc/TGID when the table does not know it. */
struct proc *proctab__get(struct proctab *t, uint32_t tgid, uint64_t start_ns);

/* Drops exited processes older than grace_ns. */
void proctab__reap(struct proctab *t, uint64_t now_ns, uint64_t grace_ns);

void proctab__stats(const struct proctab *t, struct proctab_stats *out);

/* SHA-256 of the executable, computed once per process (NULL if unreadable). */
const char *proctab__exe_sha256(struct proctab *t, struct proc *p);

/* Whether two start times name the same process (/proc has 10 ms ticks). */
bool proc__same_start(uint64_t a_ns, uint64_t b_ns);

#endif
