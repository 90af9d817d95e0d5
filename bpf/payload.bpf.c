// SPDX-License-Identifier: GPL-2.0
/*
 * Request bytes at the server's socket.
 *
 *   srv_verdict (sk_skb stream verdict on `srv`): every client->server
 *     segment of a protected connection, in TCP order, before the server
 *     can read it. What happens is decided by the daemon's verdict for the
 *     connection (conn_verdict) and acted on here:
 *       HOLD   copy the segment to the `data` ring and drop it from the
 *              socket: the server never sees it until the daemon
 *              re-injects it (inj_msg). Segments inside a judged range
 *              (pass_until) pass directly, once everything held before
 *              them has been released, so order is kept.
 *       PASS   pass (a judged connection that needs no more judgments).
 *       MIRROR pass and copy while inside the copy window (monitor mode).
 *       DROP   drop (denied; the daemon is ending the connection).
 *     With no verdict yet the global mode decides (HOLD in enforce mode).
 *     When the daemon's heartbeat is stale the policy's `fail` decides:
 *     open passes (counted, reported later), closed keeps holding.
 *
 *   srv_egress (sk_msg on `srv`): server->client bytes, copied while the
 *     daemon wants to see response heads (Mcp-Session-Id issuance).
 *
 *   inj_msg (sk_msg on `inj`): the daemon's re-injection socket. Each
 *     write is one frame: struct mcpw_inject_hdr then `len` bytes. The
 *     header is popped and the bytes are redirected into the receive queue
 *     of the server socket named by the cookie (BPF_F_INGRESS).
 *
 * Copying held bytes to a ring instead of redirecting them into a daemon
 * socket keeps every connection's bytes framed and ordered in one place,
 * and keeps the psock backlog work queue (which collapses bulk loopback
 * throughput) out of the path. Bulk bodies of judged requests never take
 * this path: they pass under pass_until.
 */
#include "common.bpf.h"

#define SK_DROP 0
#define SK_PASS 1

/* One data record of scratch per CPU: too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mcpw_data_event);
} scratch SEC(".maps");

/* Room for len payload bytes in the data ring, so a segment is either
 * copied whole or not at all. */
static __always_inline bool ring_has_room(__u32 len)
{
	__u64 avail = bpf_ringbuf_query(&data, BPF_RB_AVAIL_DATA);
	__u64 need = len + (len / MCPW_CHUNK_LEN + 1) * (sizeof(struct mcpw_data_event) -
							MCPW_CHUNK_LEN + 16);

	return avail + need <= MCPW_DATA_RING_BYTES;
}

/* Copies a whole segment to the data ring in chunks. 0 or -1. */
static __always_inline int copy_skb(struct __sk_buff *skb, __u64 cookie, __u64 off,
				    __u32 len, __u32 flags)
{
	struct mcpw_data_event *e;
	__u32 key = 0, i;

	if (len > MCPW_CHUNK_LEN * MCPW_MAX_SEG_CHUNKS) {
		count(MCPW_CNT_SEG_TOO_BIG, 1);
		return -1;
	}
	if (!ring_has_room(len))
		return -1;
	e = bpf_map_lookup_elem(&scratch, &key);
	if (!e)
		return -1;
	e->cookie = cookie;
	e->flags = flags;
	e->seg_len = len;
	e->sender_tgid = 0;
	for (i = 0; i < MCPW_MAX_SEG_CHUNKS; i++) {
		__u32 pos = i * MCPW_CHUNK_LEN;
		__u32 n;

		if (pos >= len)
			break;
		n = len - pos;
		if (n > MCPW_CHUNK_LEN)
			n = MCPW_CHUNK_LEN;
		/* Keep the bound visible to the verifier. */
		n &= 2 * MCPW_CHUNK_LEN - 1;
		if (n == 0 || n > MCPW_CHUNK_LEN)
			return -1;
		if (bpf_skb_load_bytes(skb, pos, e->data, n))
			return -1;
		fill_hdr(&e->hdr, MCPW_EV_DATA, offsetof(struct mcpw_data_event, data) + n);
		e->offset = off + pos;
		e->len = n;
		if (bpf_ringbuf_output(&data, e, offsetof(struct mcpw_data_event, data) + n, 0))
			return -1;
	}
	return 0;
}

static __always_inline int hold(struct __sk_buff *skb, struct mcpw_config *cfg,
				struct mcpw_conn_state *st, const struct mcpw_conn_verdict *v,
				__u64 cookie, __u64 off, __u32 len)
{
	__u64 released = v ? v->released_end : 0;
	bool everything_released = st->held_end <= released;

	if (!daemon_alive(cfg)) {
		/* Fail open only when nothing is waiting in the ring: passing
		 * bytes behind held ones would reorder the stream. */
		if (cfg->fail_open && everything_released) {
			st->flags |= MCPW_ST_FAILOPEN;
			st->failopen_bytes += len;
			count(MCPW_CNT_FAILOPEN_SEGS, 1);
			return SK_PASS;
		}
		st->flags |= MCPW_ST_FAILCLOSED;
		count(MCPW_CNT_FAILCLOSED_SEGS, 1);
		/* Keep holding: a daemon that comes back judges them. */
	}
	if (off + len - released > cfg->max_held) {
		st->flags |= MCPW_ST_OVERLIMIT;
		count(MCPW_CNT_OVERLIMIT, 1);
		return SK_DROP;
	}
	if (copy_skb(skb, cookie, off, len, MCPW_DATA_HELD) < 0) {
		/* Gone for good: the daemon ends this connection. */
		st->flags |= MCPW_ST_LOST;
		st->lost_bytes += len;
		count(MCPW_CNT_DATA_LOST, 1);
		return SK_DROP;
	}
	st->held_end = off + len;
	count(MCPW_CNT_HELD_SEGS, 1);
	count(MCPW_CNT_HELD_BYTES, len);
	return SK_DROP;
}

SEC("sk_skb/stream_verdict")
int srv_verdict(struct __sk_buff *skb)
{
	struct mcpw_config *cfg = get_config();
	struct mcpw_conn_verdict *v;
	struct mcpw_conn_state *st;
	__u64 cookie, off;
	__u32 len = skb->len, action;

	if (!cfg)
		return SK_DROP;
	cookie = bpf_get_socket_cookie(skb);
	st = bpf_map_lookup_elem(&conn_state, &cookie);
	if (!st) {
		/* Evicted or never seen: judge it like a new connection. */
		struct mcpw_conn_state fresh = {};

		count(MCPW_CNT_NO_STATE, 1);
		bpf_map_update_elem(&conn_state, &cookie, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&conn_state, &cookie);
		if (!st)
			return cfg->enforce ? SK_DROP : SK_PASS;
	}
	off = st->bytes_in;
	st->bytes_in = off + len;

	v = bpf_map_lookup_elem(&conn_verdict, &cookie);
	action = v ? v->action : (cfg->enforce ? MCPW_ACT_HOLD : MCPW_ACT_MIRROR);

	switch (action) {
	case MCPW_ACT_DROP:
		count(MCPW_CNT_DROP_SEGS, 1);
		return SK_DROP;
	case MCPW_ACT_PASS:
		if (st->held_end > v->released_end)
			return hold(skb, cfg, st, v, cookie, off, len);
		count(MCPW_CNT_PASS_SEGS, 1);
		return SK_PASS;
	case MCPW_ACT_MIRROR: {
		__u64 window = v ? v->copy_until : cfg->mirror_window;

		if (off < window && copy_skb(skb, cookie, off, len, 0) < 0) {
			st->flags |= MCPW_ST_LOST;
			st->lost_bytes += len;
			count(MCPW_CNT_DATA_LOST, 1);
		}
		count(MCPW_CNT_MIRROR_SEGS, 1);
		return SK_PASS;
	}
	default:
		if (v && st->held_end <= v->released_end && off + len <= v->pass_until) {
			count(MCPW_CNT_PASS_SEGS, 1);
			return SK_PASS;
		}
		return hold(skb, cfg, st, v, cookie, off, len);
	}
}

/* ---- server -> client ------------------------------------------------- */

#define EGRESS_COPY_MAX 2048

SEC("sk_msg")
int srv_egress(struct sk_msg_md *msg)
{
	struct mcpw_config *cfg = get_config();
	struct mcpw_conn_verdict *v;
	struct mcpw_conn_state *st;
	struct mcpw_data_event *e;
	struct mcpw_sock_attr *a;
	__u64 cookie, off, window;
	__u32 key = 0, n;

	if (!cfg || !msg->sk)
		return SK_PASS;
	/* sk_msg has no bpf_get_socket_cookie(): sock.bpf.c left the cookie
	 * in the socket's storage when it admitted the connection. */
	a = bpf_sk_storage_get(&sock_attr, msg->sk, 0, 0);
	if (!a)
		return SK_PASS;
	cookie = a->sock_cookie;
	st = bpf_map_lookup_elem(&conn_state, &cookie);
	if (!st)
		return SK_PASS;
	off = st->bytes_out;
	st->bytes_out = off + msg->size;
	v = bpf_map_lookup_elem(&conn_verdict, &cookie);
	window = v ? v->egress_copy_until : cfg->egress_window;
	if (off >= window)
		return SK_PASS;

	/* A response head is what is wanted: the first bytes of a write. */
	n = msg->size;
	if (n > EGRESS_COPY_MAX)
		n = EGRESS_COPY_MAX;
	if (n == 0 || bpf_msg_pull_data(msg, 0, n, 0))
		return SK_PASS;
	e = bpf_map_lookup_elem(&scratch, &key);
	if (!e)
		return SK_PASS;
	n &= 2 * EGRESS_COPY_MAX - 1;
	if (n == 0 || n > EGRESS_COPY_MAX)
		return SK_PASS;
	if (bpf_probe_read_kernel(e->data, n, msg->data))
		return SK_PASS;
	fill_hdr(&e->hdr, MCPW_EV_DATA, offsetof(struct mcpw_data_event, data) + n);
	e->cookie = cookie;
	e->offset = off;
	e->len = n;
	e->seg_len = msg->size;
	e->flags = MCPW_DATA_EGRESS;
	e->sender_tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_ringbuf_output(&data, e, offsetof(struct mcpw_data_event, data) + n, 0))
		count(MCPW_CNT_DATA_LOST, 1);
	else
		count(MCPW_CNT_EGRESS_COPIED, 1);
	return SK_PASS;
}

/* ---- re-injection ----------------------------------------------------- */

SEC("sk_msg")
int inj_msg(struct sk_msg_md *msg)
{
	struct mcpw_inject_hdr h;
	void *data, *data_end;
	long ret;

	if (bpf_msg_pull_data(msg, 0, sizeof(h), 0))
		goto fail;
	data = msg->data;
	data_end = msg->data_end;
	if (data + sizeof(h) > data_end)
		goto fail;
	__builtin_memcpy(&h, data, sizeof(h));
	if (h.magic != MCPW_INJECT_MAGIC || h.len == 0 || h.len + sizeof(h) < msg->size)
		goto fail;
	if (bpf_msg_pop_data(msg, 0, sizeof(h), 0))
		goto fail;
	ret = bpf_msg_redirect_hash(msg, &srv, &h.cookie, BPF_F_INGRESS);
	if (ret != SK_PASS)
		goto fail;
	/* The frame may span several sendmsg pieces: the verdict covers all
	 * of its bytes. Set only after a successful redirect, or a failed
	 * frame's cached verdict would swallow the next frame. */
	bpf_msg_apply_bytes(msg, h.len);
	count(MCPW_CNT_INJECT_OK, 1);
	return SK_PASS;
fail:
	count(MCPW_CNT_INJECT_FAIL, 1);
	return SK_DROP;
}
