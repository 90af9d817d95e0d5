/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps and helpers shared by every mcpwarden BPF program. The .bpf.c files
 * are compiled separately and statically linked (bpftool gen object) into
 * one object and one skeleton; maps are declared __weak here so each file
 * can use them and the linker keeps exactly one of each.
 */
#ifndef MCPW_COMMON_BPF_H
#define MCPW_COMMON_BPF_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "mcpwarden/events.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* ---- rings ------------------------------------------------------------ */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MCPW_EVENTS_RING_BYTES);
} events SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MCPW_DATA_RING_BYTES);
} data SEC(".maps") __weak;

/*
 * Wakers: held bytes wake a daemon thread pinned to the CPU that held them
 * (waker.h) through that CPU's ring here, rather than the loop through the
 * data ring. On a virtual machine a thread asleep on another, idle vCPU
 * can take milliseconds to run (the host has to run the vCPU); one on the
 * CPU that is running anyway wakes locally. The daemon puts a ring at each
 * CPU it has a waker on; a CPU without one wakes the loop as before. The
 * records carry nothing: the data ring keeps every byte, in order.
 */
struct waker_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);	/* a page: the daemon sets its size */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);		/* the possible CPUs, set at load */
	__type(key, __u32);
	__array(values, struct waker_ring);
} wakers SEC(".maps") __weak;

/* struct mcpw_loop_state: shared with the daemon through a mapping. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct mcpw_loop_state);
} loop_state SEC(".maps") __weak;

/* ---- counters --------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MCPW_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps") __weak;

/* ---- configuration ---------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mcpw_config);
} mcpw_cfg SEC(".maps") __weak;

/* CLOCK_MONOTONIC ns of the daemon's last heartbeat. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} heartbeat SEC(".maps") __weak;

/* Bumped by the daemon whenever a connection's response window may have
 * opened again (a verdict asking for responses, a verdict removed, a new
 * configuration): srv_egress then looks at every connection's verdict
 * again. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} egress_gen SEC(".maps") __weak;

/* The protected local ports (host byte order), a bit each: bit port % 64
 * of word port / 64. One array load tells a packet or a socket of a
 * protected port from the rest of the subtree's (and, for the state
 * tracepoint, the host's) before any socket storage or hash map is
 * searched; sockops and the start-up walk ask the same. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MCPW_PORT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} port_bits SEC(".maps") __weak;

static __always_inline bool port_protected(__u32 port)
{
	__u32 key = (port >> 6) & (MCPW_PORT_WORDS - 1);
	__u64 *w = bpf_map_lookup_elem(&port_bits, &key);

	return w && ((*w >> (port & 63)) & 1);
}

/* ---- attribution ------------------------------------------------------ */

/* Who created/connected/bound a socket. Cloned to accepted sockets, so a
 * server's accepted connection carries its listener's owner. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct mcpw_sock_attr);
} sock_attr SEC(".maps") __weak;

/* Client attribution by 4-tuple, published at connect time and read when
 * the server side accepts. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MCPW_MAX_TUPLES);
	__type(key, struct mcpw_tuple_key);
	__type(value, struct mcpw_sock_attr);
} tuple_attr SEC(".maps") __weak;

/* ---- protected connections -------------------------------------------- */

/* Server-side accepted sockets of protected ports, by socket cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MCPW_MAX_CONNS);
	__type(key, __u64);
	__type(value, __u64);
} srv SEC(".maps") __weak;

/* Protected connections `srv` had no room for (--max-connections): their
 * bytes go to over_verdict until the daemon ends them. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MCPW_MAX_OVERFLOW);
	__type(key, __u64);
	__type(value, __u64);
} srv_over SEC(".maps") __weak;

/* The daemon's re-injection sockets. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} inj SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MCPW_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct mcpw_conn_state);
} conn_state SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MCPW_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct mcpw_conn_verdict);
} conn_verdict SEC(".maps") __weak;

/* Fast-path templates of judged connections (see struct mcpw_fast_tmpl). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MCPW_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct mcpw_fast_tmpl);
} fast_tmpl SEC(".maps") __weak;

/* Fast-path templates of judged client processes, for their new
 * connections (see struct mcpw_inst_key). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct mcpw_inst_key);
	__type(value, struct mcpw_fast_tmpl);
} inst_tmpl SEC(".maps") __weak;

/* Sockets the daemon wants ended (cookie -> 1); see sock.bpf.c destroyer. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} to_destroy SEC(".maps") __weak;

/* The --cgroup-root directory, for tracepoints (which see every task on
 * the node) to act only on tasks inside the agent's scope. */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} scope_cgroup SEC(".maps") __weak;

/* Executables of stdio MCP servers (file identity -> 1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct mcpw_file_key);
	__type(value, __u32);
} stdio_exes SEC(".maps") __weak;

/* Processes stopped at exec awaiting the daemon (tgid -> start_ns), so a
 * lost exec record never leaves one stopped unnoticed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} stdio_stopped SEC(".maps") __weak;

/* ---- helpers ---------------------------------------------------------- */

/*
 * Ring wakeups: only what someone waits for wakes the daemon at once (held
 * request bytes, a stopped stdio server, its stdin); everything else is
 * batched (the daemon drains the rings on every wakeup and every 100 ms
 * tick), which saves a context switch per connection and per fast-path
 * request. A batched record that finds its ring a quarter full wakes the
 * daemon anyway: a burst (connection churn) must not fill the ring while
 * the daemon sleeps until its tick.
 */
#define RB_NOW   BPF_RB_FORCE_WAKEUP

/*
 * How full a ring is, asked by one batched record in RB_QUERY_EVERY per CPU
 * and ring: the query reads the position the daemon writes from another
 * CPU, and that cache line cost ~300 ns a record on the kernel fast path
 * (bpf_stats). Between two queries a CPU adds at most RB_QUERY_EVERY
 * records (64 KiB of 4 KiB chunks), far less than the quarter of a ring
 * that wakes the daemon.
 */
#define RB_QUERY_EVERY 16

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);		/* 0: events, 1: data */
	__type(key, __u32);
	__type(value, __u32);
} rb_batched SEC(".maps") __weak;

static __always_inline __u64 rb_batch_flags(void *rb, __u32 which, __u64 size)
{
	__u32 *n = bpf_map_lookup_elem(&rb_batched, &which);

	if (n && ((*n)++ % RB_QUERY_EVERY))
		return BPF_RB_NO_WAKEUP;
	return bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) > size / 4 ? BPF_RB_FORCE_WAKEUP :
									BPF_RB_NO_WAKEUP;
}
#define RB_EVENTS_BATCH rb_batch_flags(&events, 0, MCPW_EVENTS_RING_BYTES)
#define RB_DATA_BATCH   rb_batch_flags(&data, 1, MCPW_DATA_RING_BYTES)

/*
 * Counters are per CPU, but a program can still be interrupted on its CPU
 * by another that counts too (see scratch_take): a plain add could then
 * lose the other's increment. Losses and failures, which the daemon reports
 * (losses are never silent), are added atomically; count_stat() is for the
 * statistics of the hot paths, where an increment lost in such a race
 * costs nothing and an atomic add costs on every packet.
 */
static __always_inline __u64 *counter_of(enum mcpw_counter c)
{
	__u32 key = c;

	return bpf_map_lookup_elem(&counters, &key);
}

static __always_inline void count(enum mcpw_counter c, __u64 n)
{
	__u64 *v = counter_of(c);

	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void count_stat(enum mcpw_counter c, __u64 n)
{
	__u64 *v = counter_of(c);

	if (v)
		*v += n;
}

/*
 * Per-CPU scratch records (a record is too big for the BPF stack). A
 * program can be interrupted on its CPU by another that needs one: a
 * softirq's stream verdict inside a server's backlog processing (which
 * runs with bottom halves enabled), or, on a preemptible kernel, another
 * task. Sharing one record per CPU would let the second overwrite the
 * first's bytes between loading them and writing them to the ring (held
 * bytes of one connection reported as another's). So each user takes a
 * free record of its CPU's, atomically, and gives it back.
 */
#define SCRATCH_SLOTS 4

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct mcpw_data_event);
} scratch SEC(".maps") __weak;

/* Bit i: record i of this CPU is in use. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} scratch_busy SEC(".maps") __weak;

struct scratch_ref {
	__u32 *busy;
	__u32 bit;
};

/* A free scratch record of this CPU, or NULL (counted): give it back with
 * scratch_give() on every path. */
static __always_inline struct mcpw_data_event *scratch_take(struct scratch_ref *ref)
{
	struct mcpw_data_event *e;
	__u32 key = 0, i, bit, *busy;

	busy = bpf_map_lookup_elem(&scratch_busy, &key);
	if (!busy)
		return NULL;
	/* Unrolled: each try has its slot number as a constant. */
#pragma clang loop unroll(full)
	for (i = 0; i < SCRATCH_SLOTS; i++) {
		__u32 slot = i;

		bit = 1u << i;
		if (__sync_fetch_and_or(busy, bit) & bit)
			continue;
		e = bpf_map_lookup_elem(&scratch, &slot);
		if (!e) {
			__sync_fetch_and_and(busy, ~bit);
			return NULL;
		}
		ref->busy = busy;
		ref->bit = bit;
		return e;
	}
	count(MCPW_CNT_SCRATCH_BUSY, 1);
	return NULL;
}

static __always_inline void scratch_give(struct scratch_ref *ref)
{
	__sync_fetch_and_and(ref->busy, ~ref->bit);
}

static __always_inline struct mcpw_config *get_config(void)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&mcpw_cfg, &key);
}

static __always_inline void fill_task(struct mcpw_task *t, struct task_struct *task)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	t->tgid = BPF_CORE_READ(task, tgid);
	t->pid = BPF_CORE_READ(task, pid);
	t->ppid = BPF_CORE_READ(task, real_parent, tgid);
	t->uid = BPF_CORE_READ(task, cred, euid.val);
	t->gid = BPF_CORE_READ(task, cred, egid.val);
	t->netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	/* Boot-time start so it compares with /proc/PID/stat's starttime. */
	t->start_ns = BPF_CORE_READ(leader, start_boottime);
	BPF_CORE_READ_STR_INTO(&t->comm, leader, comm);
}

static __always_inline void fill_current_task(struct mcpw_task *t)
{
	fill_task(t, (struct task_struct *)bpf_get_current_task());
	t->cgroup_id = bpf_get_current_cgroup_id();
}

static __always_inline bool daemon_alive(const struct mcpw_config *cfg)
{
	__u32 key = 0;
	__u64 *hb = bpf_map_lookup_elem(&heartbeat, &key);

	return hb && *hb && bpf_ktime_get_ns() - *hb < cfg->daemon_timeout_ns;
}

static __always_inline void set_hdr(struct mcpw_event_hdr *h, __u32 type, __u32 size,
				    __u64 ktime_ns)
{
	h->type = type;
	h->size = size;
	h->ktime_ns = ktime_ns;
}

static __always_inline void fill_hdr(struct mcpw_event_hdr *h, __u32 type, __u32 size)
{
	set_hdr(h, type, size, bpf_ktime_get_ns());
}

#endif
