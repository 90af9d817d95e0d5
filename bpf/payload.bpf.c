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
 *   srv_egress (cgroup_skb egress): server->client packets, the start of
 *     their payload copied while the daemon wants to see response heads
 *     (Mcp-Session-Id issuance).
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

/* Room for len payload bytes in the data ring, so a segment is either
 * copied whole or not at all. */
static __always_inline bool ring_has_room(__u32 len)
{
	__u64 avail = bpf_ringbuf_query(&data, BPF_RB_AVAIL_DATA);
	__u64 need = len + (len / MCPW_CHUNK_LEN + 1) * (sizeof(struct mcpw_data_event) -
							MCPW_CHUNK_LEN + 16);

	return avail + need <= MCPW_DATA_RING_BYTES;
}

/*
 * Once held bytes are in the data ring: wakes the waker of this CPU (their
 * records asked for no wakeup), unless a daemon thread is reading the
 * rings. The count of held segments goes up first, a full barrier, then
 * `busy` is read; the daemon clears `busy`, then reads the count (struct
 * mcpw_loop_state): either it sees these bytes counted and reads on, or
 * this sees it gone and rings. A waker's ring full means it has not read
 * the wakeups before this one: it is due to run, and reads the data ring
 * after it empties its own, so these bytes are read too.
 */
static __always_inline void wake_waker(void *waker, struct mcpw_loop_state *ls)
{
	__u64 one = 1;

	if (ls) {
		one = __sync_fetch_and_add(&ls->held, 1) + 1;
		if (ls->busy) {
			count_stat(MCPW_CNT_WAKER_BUSY, 1);
			return;
		}
	}
	if (bpf_ringbuf_output(waker, &one, sizeof(one), BPF_RB_FORCE_WAKEUP))
		count_stat(MCPW_CNT_WAKER_PENDING, 1);
	else
		count_stat(MCPW_CNT_WAKER_RUNG, 1);
}

/* copy_skb's chunks, through the scratch record e. */
struct copy_ctx {
	struct __sk_buff *skb;
	struct mcpw_data_event *e;	/* the scratch record */
	__u64 off;			/* the stream offset of byte `from` */
	__u64 ts;
	__u64 wake;			/* the last chunk's ring flags */
	__u32 len, from;
	int err;
};

/* Chunk i of copy_skb(); 1 stops the loop. */
static int copy_chunk(__u32 i, void *p)
{
	struct copy_ctx *c = p;
	struct mcpw_data_event *e = c->e;
	__u32 pos = i * MCPW_CHUNK_LEN, n;

	if (pos >= c->len)
		return 1;
	n = c->len - pos;
	if (n > MCPW_CHUNK_LEN)
		n = MCPW_CHUNK_LEN;
	/* Keep the bound visible to the verifier. */
	n &= 2 * MCPW_CHUNK_LEN - 1;
	if (n == 0 || n > MCPW_CHUNK_LEN || bpf_skb_load_bytes(c->skb, c->from + pos, e->data, n))
		goto fail;
	set_hdr(&e->hdr, MCPW_EV_DATA, offsetof(struct mcpw_data_event, data) + n, c->ts);
	e->offset = c->off + pos;
	e->len = n;
	if (bpf_ringbuf_output(&data, e, offsetof(struct mcpw_data_event, data) + n,
			       pos + n >= c->len ? c->wake : BPF_RB_NO_WAKEUP))
		goto fail;
	return 0;
fail:
	c->err = -1;
	return 1;
}

/*
 * Copies len bytes of a segment, from its byte `from` on, to the data ring
 * in chunks, as the stream's bytes at off. 0 or -1. flags_from: the
 * record's MCPW_DATA_* flags, and `from` in the upper 32 bits (a BPF
 * function takes five arguments). A global function, verified once rather
 * than on every path of srv_verdict that calls it; its chunks are
 * bpf_loop() steps, verified once whatever the segment's size (an unrolled
 * loop cost the verifier a walk per chunk and ran out of its budget above
 * ~140 chunks; TCP coalesces a loopback segment up to 17 frags of 32 KiB).
 * The clock and the wakeup are decided once a segment; only the last chunk
 * asks for a wakeup.
 */
__noinline int copy_skb(struct __sk_buff *skb, __u64 cookie, __u64 off, __u32 len,
			__u64 flags_from)
{
	__u32 flags = (__u32)flags_from;
	struct copy_ctx c = {
		.skb = skb, .off = off, .len = len, .from = (__u32)(flags_from >> 32),
	};
	struct mcpw_loop_state *ls = NULL;
	struct scratch_ref ref;
	void *waker = NULL;

	if (len > MCPW_CHUNK_LEN * MCPW_MAX_SEG_CHUNKS) {
		count(MCPW_CNT_SEG_TOO_BIG, 1);
		return -1;
	}
	if (!ring_has_room(len))
		return -1;
	c.e = scratch_take(&ref);
	if (!c.e)
		return -1;
	c.ts = bpf_ktime_get_ns();
	c.wake = RB_DATA_BATCH;
	if (flags & MCPW_DATA_HELD) {
		__u32 cpu = bpf_get_smp_processor_id(), key = 0;

		/* Someone waits: wake the daemon now, on this CPU if it can,
		 * unless this is a stream for the loop (MCPW_STREAM_NS). */
		waker = bpf_map_lookup_elem(&wakers, &cpu);
		ls = bpf_map_lookup_elem(&loop_state, &key);
		if (waker && ls && !ls->busy && c.ts - ls->held_read_ns < ls->stream_ns) {
			waker = NULL;
			count_stat(MCPW_CNT_WAKER_STREAM, 1);
		} else if (!waker) {
			count_stat(MCPW_CNT_WAKER_NONE, 1);
		}
		c.wake = waker ? BPF_RB_NO_WAKEUP : RB_NOW;
	}
	c.e->cookie = cookie;
	c.e->flags = flags;
	c.e->seg_len = len;
	c.e->sender_tgid = 0;
	if (bpf_loop(MCPW_MAX_SEG_CHUNKS, copy_chunk, &c, 0) < 0)
		c.err = -1;
	scratch_give(&ref);
	if (waker)
		wake_waker(waker, ls);
	return c.err;
}

/* ---- fast path ---------------------------------------------------------- */

/* The head of a fast-path request as same_bytes() reads it: the first
 * bytes of the scratch record's data (MCPW_CHUNK_LEN >= this). */
struct fast_buf {
	char b[MCPW_FAST_HEAD_MAX + 8];
};

_Static_assert(MCPW_CHUNK_LEN >= sizeof(struct fast_buf), "the head fits the record");

#define FAST_MASK (MCPW_FAST_HEAD_MAX - 1)

/*
 * Whether n bytes of a at a_off equal t at t_off, eight at a time. A global
 * function, so the verifier checks it once rather than at every call with
 * every combination of bounds. The masks keep each index inside the
 * arrays (2 KiB + 8); callers have already checked that a_off + n and
 * t_off + n fit, so the masks change nothing.
 */
__noinline int same_bytes(const struct fast_buf *a, __u32 a_off, const struct mcpw_fast_tmpl *t,
			  __u32 t_off, __u32 n)
{
	__u32 i, j, words, base;

	if (!a || !t || n > MCPW_FAST_HEAD_MAX)
		return 0;
	words = n / 8;
	for (i = 0; i < MCPW_FAST_HEAD_MAX / 8; i++) {
		if (i >= words)
			break;
		if (*(const __u64 *)(a->b + ((a_off + i * 8) & FAST_MASK)) !=
		    *(const __u64 *)(t->head + ((t_off + i * 8) & FAST_MASK)))
			return 0;
	}
	base = words * 8;
	for (j = 0; j < 8; j++) {
		if (base + j >= n)
			break;
		if (a->b[(a_off + base + j) & FAST_MASK] != t->head[(t_off + base + j) & FAST_MASK])
			return 0;
	}
	return 1;
}

/* The record of a fast-path request: e already holds its first n bytes. */
static __always_inline void mirror_first(struct mcpw_data_event *e, __u64 cookie, __u64 off,
					 __u32 n, __u64 req_len)
{
	barrier_var(n);
	if (n == 0 || n > MCPW_CHUNK_LEN)
		return;
	/* No time: the daemon times held bytes only, and reading the clock
	 * cost ~120 ns a request here. */
	set_hdr(&e->hdr, MCPW_EV_DATA, offsetof(struct mcpw_data_event, data) + n, 0);
	e->cookie = cookie;
	e->offset = off;
	e->len = n;
	e->flags = MCPW_DATA_FAST;
	e->seg_len = (__u32)req_len;
	e->sender_tgid = 0;
	/* The request passes either way: only its report is lost. */
	if (bpf_ringbuf_output(&data, e, offsetof(struct mcpw_data_event, data) + n, RB_DATA_BATCH))
		count(MCPW_CNT_FAST_COPY_LOST, 1);
}

/* Whether the request at the segment's start matches template t: its
 * first bytes are loaded into e (which reports it, when reported). */
static __always_inline bool fast_match(struct __sk_buff *skb, struct mcpw_config *cfg,
				       struct mcpw_conn_state *st, const struct mcpw_fast_tmpl *t,
				       struct mcpw_data_event *e, __u64 cookie, __u64 off,
				       __u32 len)
{
	struct fast_buf *fb = (struct fast_buf *)e->data;
	__u32 n, loaded, cl, i, d, tail_off, tail, head_len;
	__u64 body = 0;

	/* Reported: the record's first chunk. Not reported: the header block
	 * alone (its Content-Length may have up to 10 digits where the
	 * template has one), never the body. */
	if (cfg->mirror_fast)
		loaded = MCPW_CHUNK_LEN;
	else
		loaded = t->head_len < MCPW_FAST_HEAD_MAX - 10 ? t->head_len + 10 : MCPW_FAST_HEAD_MAX;
	loaded = len < loaded ? len : loaded;
	loaded &= 2 * MCPW_CHUNK_LEN - 1;
	if (loaded < 16 || loaded > MCPW_CHUNK_LEN)
		return false;
	if (bpf_skb_load_bytes(skb, 0, e->data, loaded))
		return false;
	n = loaded < MCPW_FAST_HEAD_MAX ? loaded : MCPW_FAST_HEAD_MAX;
	cl = t->cl_off;
	head_len = t->head_len;
	tail_off = cl + t->cl_len;
	if (cl >= n || head_len > MCPW_FAST_HEAD_MAX || tail_off > head_len)
		return false;
	if (!same_bytes(fb, 0, t, 0, cl))
		return false;
	i = cl;
	for (d = 0; d < 11; d++) {
		char c;

		if (i >= n)
			return false;
		c = fb->b[i & FAST_MASK];
		if (c < '0' || c > '9')
			break;
		body = body * 10 + (__u64)(c - '0');
		i++;
	}
	if (d == 0 || d > 10)
		return false;
	tail = head_len - tail_off;
	if (i + tail > n)
		return false;
	if (!same_bytes(fb, i, t, tail_off, tail))
		return false;
	if (body > t->max_body || len > (__u64)(i + tail) + body)
		return false;	/* too big, or more than one request: hold */
	st->fast_next = off + i + tail + body;
	st->fast_pass_until = st->fast_next;
	st->fast_requests++;
	/* Not waited on, still recorded: the request's first segment goes to
	 * the daemon for its `request` event (a full ring only loses the
	 * record, counted; the request was already judged). */
	if (cfg->mirror_fast)
		mirror_first(e, cookie, off, loaded, i + tail + body);
	return true;
}

/*
 * A request on a judged connection that needs no new judgment: its header
 * block is the judged template with other Content-Length digits. Passes it
 * (and its body, through fast_pass_until) without the daemon.
 *
 * A connection admitted on its process's template (MCPW_ST_INST_REF) reads
 * that template in place for as long as it stays the one it was admitted
 * on: no copy of 2 KiB per connection (allocated, copied and freed again
 * under churn, and kernel memory for every open one). A replaced or
 * dropped process template is never the same generation again: the
 * connection then has only a template of its own, if the daemon judged it
 * one, and otherwise its requests are held and judged.
 */
static __always_inline bool fast_path(struct __sk_buff *skb, struct mcpw_config *cfg,
				      struct mcpw_conn_state *st, __u64 cookie, __u64 off, __u32 len)
{
	struct mcpw_inst_key ik = { .tgid = st->client_tgid, .start_ns = st->client_start };
	struct mcpw_fast_tmpl *t = NULL;
	struct mcpw_data_event *e;
	struct scratch_ref ref;
	bool adopt = false, by_inst = false, ok;

	if (st->flags & MCPW_ST_INST_REF) {
		t = bpf_map_lookup_elem(&inst_tmpl, &ik);
		if (t && t->gen == st->fast_gen)
			by_inst = true;
		else
			st->flags &= ~MCPW_ST_INST_REF;
	}
	if (!by_inst) {
		t = bpf_map_lookup_elem(&fast_tmpl, &cookie);
		if (!t && off == 0 && st->client_tgid) {
			/* A new connection of a judged client process. */
			t = bpf_map_lookup_elem(&inst_tmpl, &ik);
			if (!t || t->port != st->server_port || t->uid != st->client_uid)
				return false;
			st->fast_gen = t->gen;
			st->fast_next = 0;
			adopt = true;
		} else if (!t) {
			return false;
		} else if (t->gen != st->fast_gen) {
			st->fast_gen = t->gen;
			st->fast_next = t->start;
		}
	}
	if (off != st->fast_next)
		return false;
	e = scratch_take(&ref);
	if (!e)
		return false;
	ok = fast_match(skb, cfg, st, t, e, cookie, off, len);
	scratch_give(&ref);
	if (!ok)
		return false;
	/* Its later requests use its process's template too. */
	if (adopt)
		st->flags |= MCPW_ST_INST_FAST | MCPW_ST_INST_REF;
	count_stat(MCPW_CNT_FAST_REQUESTS, 1);
	return true;
}

/* Holds the segment's bytes from its byte `from` on (the stream's bytes
 * off .. off + len): copied to the daemon, dropped here. */
static __always_inline int hold(struct __sk_buff *skb, struct mcpw_config *cfg,
				struct mcpw_conn_state *st, const struct mcpw_conn_verdict *v,
				__u64 cookie, __u64 off, __u32 len, __u32 from)
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
	/* What is held counts from where this run of holding began, or from
	 * the last release within it: the fast path may have passed many
	 * megabytes since the last release, and none of them are held. */
	if (everything_released)
		st->hold_start = off;
	if (off + len - (st->hold_start > released ? st->hold_start : released) > cfg->max_held) {
		st->flags |= MCPW_ST_OVERLIMIT;
		count(MCPW_CNT_OVERLIMIT, 1);
		return SK_DROP;
	}
	if (copy_skb(skb, cookie, off, len, (__u64)from << 32 | MCPW_DATA_HELD) < 0) {
		/* Gone for good: the daemon ends this connection. */
		st->flags |= MCPW_ST_LOST;
		st->lost_bytes += len;
		count(MCPW_CNT_DATA_LOST, 1);
		return SK_DROP;
	}
	st->held_end = off + len;
	count_stat(MCPW_CNT_HELD_SEGS, 1);
	count_stat(MCPW_CNT_HELD_BYTES, len);
	return SK_DROP;
}

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* The stream offset of the segment's first byte by TCP's own count:
 * bytes_received is every byte TCP accepted, up to rcv_nxt. */
static __always_inline __u64 tcp_offset(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u32 seq = ((struct tcp_skb_cb *)kskb->cb)->seq;
	struct tcp_sock *tp;

	/* Direct loads through BTF, no helper call per field: a stream
	 * verdict's socket is a TCP one. */
	tp = bpf_rdonly_cast(kskb->sk, bpf_core_type_id_kernel(struct tcp_sock));
	return tp->bytes_received - (__u32)(tp->rcv_nxt - seq);
}

/* bpf_skb_adjust_room takes at most this many bytes off an sk_skb's front
 * per call; TRIM_CALLS calls cover a segment as large as copy_skb takes. */
#define TRIM_STEP 4095
#define TRIM_CALLS (MCPW_CHUNK_LEN * MCPW_MAX_SEG_CHUNKS / TRIM_STEP + 1)

struct trim_ctx {
	struct __sk_buff *skb;
	__u32 n, done;
};

/* One bpf_skb_adjust_room() call of trim_front(); 1 stops the loop. */
static int trim_step(__u32 i, void *p)
{
	struct trim_ctx *t = p;
	__u32 k;

	if (t->done >= t->n)
		return 1;
	k = t->n - t->done < TRIM_STEP ? t->n - t->done : TRIM_STEP;
	if (bpf_skb_adjust_room(t->skb, -(__s32)k, 0, 0))
		return 1;
	t->done += k;
	return 0;
}

/*
 * Cuts the first n bytes off the segment; returns how many it cut (fewer
 * if the kernel refused). bpf_loop() steps: verified once, however many.
 */
static __always_inline __u32 trim_front(struct __sk_buff *skb, __u32 n)
{
	struct trim_ctx t = { .skb = skb, .n = n };

	bpf_loop(TRIM_CALLS, trim_step, &t, 0);
	return t.done;
}

/*
 * by_seq: the segment's place in the stream is TCP's (tcp_offset), not the
 * sum of the segments shown so far. When TCP merged a retransmission with
 * later data, the socket queues bytes it already received in front of new
 * ones, and this kernel shows the whole segment again (seen on 6.18, under
 * receive-buffer pressure; tcp_peer's overlap mode makes one on demand):
 * summing lengths then misplaces every later byte, and passing it would
 * deliver bytes twice. The bytes shown before are cut off the segment:
 * whatever the socket then drops or delivers, it counts as read once
 * (counted twice, its read count runs ahead of what it received, and it
 * stops announcing a short final segment: the request stalls). Bytes it
 * could not cut are not delivered again: the new ones are held and the
 * daemon injects them.
 */
static __always_inline int verdict(struct __sk_buff *skb, bool by_seq)
{
	struct mcpw_config *cfg = get_config();
	struct mcpw_conn_verdict *v;
	struct mcpw_conn_state *st;
	__u64 cookie, off;
	__u32 len = skb->len, action, from = 0;

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
	if (by_seq) {
		__u64 t = tcp_offset(skb);

		if (!(st->flags & MCPW_ST_TCP_BASE)) {
			st->tcp_base = t - off;
			st->flags |= MCPW_ST_TCP_BASE;
		}
		t -= st->tcp_base;
		if (t != off) {
			count_stat(MCPW_CNT_RESEQUENCED, 1);
			if (t < off) {
				__u32 seen = off - t < len ? (__u32)(off - t) : len;
				__u32 cut = trim_front(skb, seen);

				if (cut)
					count_stat(MCPW_CNT_RESHOWN_TRIMMED, cut);
				if (seen == len)	/* all shown before */
					return cut == len ? SK_DROP :
					       cfg->enforce ? SK_DROP : SK_PASS;
				from = seen - cut;
				len -= seen;
				if (from)
					st->flags |= MCPW_ST_RESHOWN;
			} else {
				off = t;	/* bytes no verdict saw: the daemon ends it */
			}
		}
	}
	st->bytes_in = off + len;

	v = bpf_map_lookup_elem(&conn_verdict, &cookie);
	action = v ? v->action : (cfg->enforce ? MCPW_ACT_HOLD : MCPW_ACT_MIRROR);
	/* A port the policy no longer protects (a reload or a restart dropped
	 * its server; new connections there are not even put here): passed,
	 * once whatever was held before is released. A denied connection
	 * stays denied. */
	if (action != MCPW_ACT_DROP && !port_protected(skb->local_port) && !from &&
	    st->held_end <= (v ? v->released_end : 0)) {
		count_stat(MCPW_CNT_PASS_SEGS, 1);
		return SK_PASS;
	}

	switch (action) {
	case MCPW_ACT_DROP:
		count_stat(MCPW_CNT_DROP_SEGS, 1);
		return SK_DROP;
	case MCPW_ACT_PASS:
		if (from || st->held_end > v->released_end)
			return hold(skb, cfg, st, v, cookie, off, len, from);
		count_stat(MCPW_CNT_PASS_SEGS, 1);
		return SK_PASS;
	case MCPW_ACT_MIRROR: {
		__u64 window = v ? v->copy_until : cfg->mirror_window;

		/* Held before a switch to monitor mode, not released yet: held
		 * too, or these bytes would pass ahead of them. */
		if (st->held_end > (v ? v->released_end : 0))
			return hold(skb, cfg, st, v, cookie, off, len, from);
		/* Monitor mode leaves the traffic as the kernel has it. */
		if (off < window && copy_skb(skb, cookie, off, len, (__u64)from << 32) < 0) {
			st->flags |= MCPW_ST_LOST;
			st->lost_bytes += len;
			count(MCPW_CNT_DATA_LOST, 1);
		}
		count_stat(MCPW_CNT_MIRROR_SEGS, 1);
		return SK_PASS;
	}
	default:
		/* Only once every held byte is released, to keep the order. */
		if (!from && st->held_end <= (v ? v->released_end : 0) &&
		    ((v && off + len <= v->pass_until) || off + len <= st->fast_pass_until ||
		     fast_path(skb, cfg, st, cookie, off, len))) {
			count_stat(MCPW_CNT_PASS_SEGS, 1);
			return SK_PASS;
		}
		return hold(skb, cfg, st, v, cookie, off, len, from);
	}
}

/* The kernel has bpf_cast_to_kern_ctx and bpf_rdonly_cast (6.2+): placed
 * by TCP's count. */
SEC("sk_skb/stream_verdict")
int srv_verdict(struct __sk_buff *skb)
{
	return verdict(skb, true);
}

/* Older kernels: placed by the sum of the segments shown. */
SEC("sk_skb/stream_verdict")
int srv_verdict_sum(struct __sk_buff *skb)
{
	return verdict(skb, false);
}

/*
 * Connections over capacity (`srv_over`): no state, no verdict, nothing
 * the daemon could judge them by. What cannot be judged is what the
 * policy's `fail` covers: in enforce mode with fail closed nothing
 * passes, and the daemon ends the connection; otherwise it passes,
 * counted and reported.
 */
SEC("sk_skb/stream_verdict")
int over_verdict(struct __sk_buff *skb)
{
	struct mcpw_config *cfg = get_config();

	if (cfg && (!cfg->enforce || cfg->fail_open)) {
		count(MCPW_CNT_OVER_PASS_SEGS, 1);
		return SK_PASS;
	}
	count(MCPW_CNT_OVER_DROP_SEGS, 1);
	return SK_DROP;
}

/* ---- server -> client ------------------------------------------------- */

#define EGRESS_COPY_MAX 2048
#define ETH_P_IP_BE 0x0008	/* htons(0x0800) */
#define ETH_P_IPV6_BE 0xDD86	/* htons(0x86DD) */

/*
 * Server -> client packets of protected connections, from a cgroup_skb
 * egress program: the start of each packet's TCP payload is copied while
 * the daemon wants response heads (Mcp-Session-Id issuance). A cgroup_skb
 * program leaves the socket's send path alone; an sk_msg program on the
 * SOCKHASH would move every server write onto tcp_bpf_sendmsg, which
 * measured at a third of the request rate on loopback.
 */
SEC("cgroup_skb/egress")
int srv_egress(struct __sk_buff *skb)
{
	struct mcpw_config *cfg;
	struct mcpw_conn_verdict *v;
	struct mcpw_conn_state *st;
	struct mcpw_data_event *e;
	struct mcpw_sock_attr *a;
	struct scratch_ref ref;
	struct bpf_sock *sk;
	__u32 key = 0, n, hoff, plen, *gen;
	__u64 cookie, off, window;
	__u8 b, doff;

	/* Every packet every socket of the subtree sends comes here: its
	 * local port (one array load) sets aside the packets of clients and
	 * of every unprotected server; then the socket's own storage (a
	 * pointer away) says whether it is a protected server's connection
	 * before any map is searched. */
	if (!port_protected(skb->local_port))
		return 1;
	sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	a = bpf_sk_storage_get(&sock_attr, sk, 0, 0);
	if (!a || !(a->flags & MCPW_ATTR_SERVED))
		return 1;
	if (skb->protocol == ETH_P_IP_BE) {
		if (bpf_skb_load_bytes(skb, 0, &b, 1))
			return 1;
		hoff = (b & 0x0f) * 4;
	} else if (skb->protocol == ETH_P_IPV6_BE) {
		hoff = 40;	/* TCP sockets send no extension headers */
	} else {
		return 1;
	}
	if (bpf_skb_load_bytes(skb, hoff + 12, &doff, 1))
		return 1;
	hoff += (doff >> 4) * 4;
	if (hoff >= skb->len)
		return 1;
	plen = skb->len - hoff;
	gen = bpf_map_lookup_elem(&egress_gen, &key);
	if (!gen)
		return 1;
	/* A judged connection whose responses the daemon does not want (the
	 * steady state of keep-alive traffic): counted in the storage, no
	 * map searched. Any verdict that could want them again bumps the
	 * generation. */
	if ((a->flags & MCPW_ATTR_EGRESS_DONE) && a->egress_gen == *gen) {
		a->out_skipped += plen;
		return 1;
	}
	cfg = get_config();
	if (!cfg)
		return 1;
	cookie = a->sock_cookie;
	st = bpf_map_lookup_elem(&conn_state, &cookie);
	if (!st)
		return 1;
	if (a->flags & MCPW_ATTR_EGRESS_DONE) {
		st->bytes_out += a->out_skipped;
		a->out_skipped = 0;
		a->flags &= ~MCPW_ATTR_EGRESS_DONE;
	}
	off = st->bytes_out;
	st->bytes_out = off + plen;
	v = bpf_map_lookup_elem(&conn_verdict, &cookie);
	/* A connection admitted on its process's template never sent an
	 * initialize: nothing to learn from its responses. */
	window = v ? v->egress_copy_until :
		 (st->flags & MCPW_ST_INST_FAST) ? 0 : cfg->egress_window;
	if (window == 0) {
		a->egress_gen = *gen;
		a->flags |= MCPW_ATTR_EGRESS_DONE;
	}
	if (off >= window)
		return 1;
	n = plen < EGRESS_COPY_MAX ? plen : EGRESS_COPY_MAX;
	n &= 2 * EGRESS_COPY_MAX - 1;
	if (n == 0 || n > EGRESS_COPY_MAX)
		return 1;
	e = scratch_take(&ref);
	if (!e) {
		count(MCPW_CNT_DATA_LOST, 1);
		return 1;
	}
	if (bpf_skb_load_bytes(skb, hoff, e->data, n)) {
		scratch_give(&ref);
		return 1;
	}
	fill_hdr(&e->hdr, MCPW_EV_DATA, offsetof(struct mcpw_data_event, data) + n);
	e->cookie = cookie;
	e->offset = off;
	e->len = n;
	e->seg_len = plen;
	e->flags = MCPW_DATA_EGRESS;
	e->sender_tgid = 0;
	/* Read before any request that uses the session: those are held,
	 * and their wakeup drains the ring in order. */
	if (bpf_ringbuf_output(&data, e, offsetof(struct mcpw_data_event, data) + n, RB_DATA_BATCH))
		count(MCPW_CNT_DATA_LOST, 1);
	else
		count_stat(MCPW_CNT_EGRESS_COPIED, 1);
	scratch_give(&ref);
	return 1;
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
	count_stat(MCPW_CNT_INJECT_OK, 1);
	return SK_PASS;
fail:
	count(MCPW_CNT_INJECT_FAIL, 1);
	return SK_DROP;
}
