// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel mechanism the agent is built on, with nothing of the agent:
 * accepted sockets of one port go into a SOCKHASH (sockops), and a stream
 * verdict program passes every segment. What P1 costs with this alone is
 * the floor any agent that holds bytes at the server's socket starts from
 * (tests/helpers/sockmap_floor.c; the bench's P1f rows).
 */
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 port = 0;
__u64 sockets = 0, segments = 0;	/* for the loader to show it was in the path */

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} floor_srv SEC(".maps");

SEC("sockops")
int floor_ops(struct bpf_sock_ops *skops)
{
	__u64 cookie;

	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB || skops->local_port != port)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	if (!bpf_sock_hash_update(skops, &floor_srv, &cookie, BPF_NOEXIST))
		__sync_fetch_and_add(&sockets, 1);
	return 1;
}

SEC("sk_skb/stream_verdict")
int floor_verdict(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&segments, 1);
	return SK_PASS;
}
