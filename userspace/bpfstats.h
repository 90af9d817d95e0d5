/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-program BPF run statistics for the metrics endpoint: run count and
 * run time, as the kernel counts them only while statistics are enabled
 * (sysctl kernel.bpf_stats_enabled=1, or a BPF_ENABLE_STATS fd held open).
 * Counting costs a little on every program run, so the agent only reads
 * what an operator chose to turn on.
 */
#ifndef MCPW_BPFSTATS_H
#define MCPW_BPFSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bpf_prog_stat {
	uint32_t id;		/* kernel program id */
	uint32_t type;		/* enum bpf_prog_type */
	char name[16];		/* as loaded (BPF_OBJ_NAME_LEN) */
	uint64_t run_cnt;
	uint64_t run_time_ns;
	uint64_t recursion_misses;
};

/* Whether /proc/sys/kernel/bpf_stats_enabled reads 1. */
bool bpfstats__enabled(void);

/*
 * Reads the statistics of n programs by fd into out[0..n). Returns how many
 * were read (a program whose fd cannot be queried is left out) or -errno
 * when none could be.
 */
int bpfstats__read(const int *prog_fds, size_t n, struct bpf_prog_stat *out);

#endif
