// SPDX-License-Identifier: GPL-2.0
/*
 * What a launcher writes to a stdio MCP server: the first bytes the server
 * reads from its stdin (the `initialize` with its clientInfo), for the
 * servers the daemon is watching (stdio_watch, filled before it lets the
 * stopped server continue). Each watched server has a byte budget; the
 * daemon stops watching once it has read the clientInfo.
 *
 * Classic syscall tracepoints: they are stable, need no kprobes, and cost
 * one hash lookup per read(2) while a watch exists (the daemon attaches
 * them only when the policy has stdio servers).
 */
#include "common.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);	/* server tgid */
	__type(value, __u32);	/* bytes left to copy */
} stdio_watch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);	/* pid_tgid in read(2) */
	__type(value, __u64);	/* its buffer */
} stdio_reads SEC(".maps");

SEC("tp/syscalls/sys_enter_read")
int stdin_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u64 id, buf;
	__u32 tgid;

	if (ctx->args[0] != 0)
		return 0;
	id = bpf_get_current_pid_tgid();
	tgid = id >> 32;
	if (!bpf_map_lookup_elem(&stdio_watch, &tgid))
		return 0;
	buf = ctx->args[1];
	bpf_map_update_elem(&stdio_reads, &id, &buf, BPF_ANY);
	return 0;
}

SEC("tp/syscalls/sys_exit_read")
int stdin_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), *buf;
	struct mcpw_data_event *e;
	struct scratch_ref ref;
	__u32 tgid = id >> 32, n, *budget;
	long ret = ctx->ret;

	buf = bpf_map_lookup_elem(&stdio_reads, &id);
	if (!buf)
		return 0;
	bpf_map_delete_elem(&stdio_reads, &id);
	budget = bpf_map_lookup_elem(&stdio_watch, &tgid);
	if (!budget || ret <= 0)
		return 0;
	n = ret < MCPW_CHUNK_LEN ? ret : MCPW_CHUNK_LEN;
	if (n > *budget)
		n = *budget;
	/* Keep the bound visible to the verifier after the min() above. */
	barrier_var(n);
	if (n == 0 || n > MCPW_CHUNK_LEN)
		return 0;
	e = scratch_take(&ref);
	if (!e) {
		count(MCPW_CNT_DATA_LOST, 1);
		return 0;
	}
	if (bpf_probe_read_user(e->data, n, (void *)*buf)) {
		scratch_give(&ref);
		return 0;
	}
	*budget -= n;
	fill_hdr(&e->hdr, MCPW_EV_DATA, offsetof(struct mcpw_data_event, data) + n);
	e->cookie = tgid;
	e->offset = 0;
	e->len = n;
	e->seg_len = ret;
	e->flags = MCPW_DATA_STDIN;
	e->sender_tgid = tgid;
	if (bpf_ringbuf_output(&data, e, offsetof(struct mcpw_data_event, data) + n, RB_NOW))
		count(MCPW_CNT_DATA_LOST, 1);
	scratch_give(&ref);
	return 0;
}
