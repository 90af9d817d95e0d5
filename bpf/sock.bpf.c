// SPDX-License-Identifier: GPL-2.0
/*
 * Socket attribution, all attached to the --cgroup-root subtree:
 *
 *   cgroup/connect4,6  runs in the connecting task: who is connecting is
 *                      stored in the socket's local storage.
 *   cgroup/bind4,6     same for the task that binds a listener; the storage
 *                      is cloned to every socket it accepts.
 *   sockops            TCP_CONNECT_CB (source port now known) publishes the
 *                      client's attribution under its 4-tuple;
 *                      PASSIVE_ESTABLISHED_CB on a protected port puts the
 *                      server's accepted socket in the `srv` SOCKHASH (so
 *                      payload.bpf.c sees its bytes) and emits CONN_OPEN
 *                      with both ends (the client's 4-tuple entry is
 *                      consumed: CONN_OPEN carries it on).
 *   inet_sock_set_state  a protected connection closing: CONN_CLOSE.
 *   iter/tcp           seeding connections that predate the agent, and
 *                      ending denied ones with bpf_sock_destroy().
 *
 * Loopback tuples are keyed with their network namespace: 127.0.0.1 in
 * two namespaces are two hosts.
 */
#include "common.bpf.h"

#define TCP_ESTABLISHED_STATE 1
#define TCP_CLOSE_STATE 7
#define TCP_LISTEN_STATE 10
#define SOCK_STREAM_TYPE 1
#define IPPROTO_TCP_NUM 6

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

static __always_inline bool is_self(void)
{
	struct mcpw_config *cfg = get_config();

	return cfg && cfg->self_tgid && (bpf_get_current_pid_tgid() >> 32) == cfg->self_tgid;
}

static __always_inline int record_task(void *ctx, struct bpf_sock *sk, __u32 flag)
{
	struct mcpw_sock_attr *a;

	if (!sk || is_self())
		return 1;
	a = bpf_sk_storage_get(&sock_attr, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!a) {
		count(MCPW_CNT_STORAGE_FAIL, 1);
		return 1;
	}
	fill_current_task(&a->task);
	a->flags = flag;
	a->sock_cookie = bpf_get_socket_cookie(ctx);
	return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM_TYPE || ctx->protocol != IPPROTO_TCP_NUM)
		return 1;
	return record_task(ctx, ctx->sk, MCPW_ATTR_CONNECT);
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM_TYPE || ctx->protocol != IPPROTO_TCP_NUM)
		return 1;
	return record_task(ctx, ctx->sk, MCPW_ATTR_CONNECT);
}

SEC("cgroup/bind4")
int bind4(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM_TYPE || ctx->protocol != IPPROTO_TCP_NUM)
		return 1;
	return record_task(ctx, ctx->sk, MCPW_ATTR_BIND);
}

SEC("cgroup/bind6")
int bind6(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM_TYPE || ctx->protocol != IPPROTO_TCP_NUM)
		return 1;
	return record_task(ctx, ctx->sk, MCPW_ATTR_BIND);
}

/* ---- tuples ----------------------------------------------------------- */

static __always_inline void addr4_mapped(__u8 *dst, __u32 be_addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &be_addr, 4);
}

static __always_inline bool is_loopback(const __u8 *a)
{
	int i;

	/* ::ffff:127.0.0.0/104 */
	if (a[10] == 0xff && a[11] == 0xff) {
		for (i = 0; i < 10; i++)
			if (a[i])
				return false;
		return a[12] == 127;
	}
	/* ::1 */
	for (i = 0; i < 15; i++)
		if (a[i])
			return false;
	return a[15] == 1;
}

static __always_inline __u32 sock_netns(struct bpf_sock *bsk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(bsk);

	if (!tp)
		return 0;
	return BPF_CORE_READ(tp, inet_conn.icsk_inet.sk.__sk_common.skc_net.net, ns.inum);
}

/* Fills local/remote addresses of a sockops socket as 16-byte addresses. */
static __always_inline void skops_addrs(struct bpf_sock_ops *skops, __u8 *local, __u8 *remote)
{
	if (skops->family == AF_INET) {
		addr4_mapped(local, skops->local_ip4);
		addr4_mapped(remote, skops->remote_ip4);
	} else {
		__u32 l[4], r[4];

		l[0] = skops->local_ip6[0];
		l[1] = skops->local_ip6[1];
		l[2] = skops->local_ip6[2];
		l[3] = skops->local_ip6[3];
		r[0] = skops->remote_ip6[0];
		r[1] = skops->remote_ip6[1];
		r[2] = skops->remote_ip6[2];
		r[3] = skops->remote_ip6[3];
		__builtin_memcpy(local, l, 16);
		__builtin_memcpy(remote, r, 16);
	}
}

static __always_inline __u16 skops_remote_port(struct bpf_sock_ops *skops)
{
	/* remote_port is network byte order in the low 16 bits on current
	 * kernels; very old ones put it in the high 16 bits. */
	__u32 rp = skops->remote_port;

	return rp & 0xffff ? bpf_ntohs(rp & 0xffff) : bpf_ntohs(rp >> 16);
}

static __always_inline void publish_client(struct bpf_sock_ops *skops)
{
	struct mcpw_config *cfg;
	struct mcpw_tuple_key key = {};
	struct mcpw_sock_attr *a;
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return;
	a = bpf_sk_storage_get(&sock_attr, sk, 0, 0);
	if (!a || !(a->flags & MCPW_ATTR_CONNECT))
		return;
	skops_addrs(skops, key.caddr, key.saddr);
	key.cport = skops->local_port;
	key.sport = skops_remote_port(skops);
	key.netns = is_loopback(key.saddr) ? sock_netns(sk) : 0;
	bpf_map_update_elem(&tuple_attr, &key, a, BPF_ANY);

	/* Fleet mode: the server may be on another node, whose agent can
	 * only learn who this is from ours. A lone node's daemon reads the
	 * client from CONN_OPEN: no record (and no wakeup) per connect. */
	cfg = get_config();
	if (cfg && cfg->fleet && port_protected(key.sport)) {
		struct mcpw_client_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (!e) {
			count(MCPW_CNT_EVENTS_LOST, 1);
			return;
		}
		fill_hdr(&e->hdr, MCPW_EV_CLIENT_CONNECT, sizeof(*e));
		__builtin_memcpy(e->tuple.saddr, key.caddr, 16);
		__builtin_memcpy(e->tuple.daddr, key.saddr, 16);
		e->tuple.sport = key.cport;
		e->tuple.dport = key.sport;
		e->tuple.family = skops->family;
		e->tuple.pad = 0;
		e->cookie = a->sock_cookie;
		e->task = a->task;
		bpf_ringbuf_submit(e, RB_EVENTS_BATCH);
	}
}

/*
 * A protected server socket `srv` had no room for (the table is full:
 * --max-connections) is put under over_verdict's map instead, and the
 * daemon told to end it. Its CONN_OPEN flags, from how that went.
 */
static __always_inline __u32 over_flags(long err)
{
	if (err) {
		count(MCPW_CNT_SOCKHASH_FAIL, 1);
		return MCPW_CONN_OVER_CAPACITY | MCPW_CONN_UNHOOKED;
	}
	count(MCPW_CNT_OVER_CAPACITY, 1);
	return MCPW_CONN_OVER_CAPACITY;
}

static __always_inline void init_conn(__u64 cookie, __u16 port, const struct mcpw_task *client)
{
	struct mcpw_conn_state st = {};

	st.server_port = port;
	if (client) {
		st.client_tgid = client->tgid;
		st.client_uid = client->uid;
		st.client_start = client->start_ns;
	}
	bpf_map_update_elem(&conn_state, &cookie, &st, BPF_NOEXIST);
}

/*
 * A protected server socket is established: the kernel state it needs
 * (payload hook, connection state, the cookie srv_egress reads) is set up
 * first, so that a full events ring loses only the record, never the
 * connection's attribution or fast path.
 */
static __always_inline void on_passive(struct bpf_sock_ops *skops)
{
	struct mcpw_tuple_key key = {};
	struct mcpw_sock_attr *a, *srv_attr, cli;
	struct mcpw_conn_event *e;
	struct bpf_sock *sk = skops->sk;
	__u16 port = skops->local_port;
	__u32 netns, over = 0;
	__u64 cookie;

	if (!sk || !port_protected(port))
		return;
	cookie = bpf_get_socket_cookie(skops);
	if (bpf_sock_hash_update(skops, &srv, &cookie, BPF_NOEXIST))
		over = over_flags(bpf_sock_hash_update(skops, &srv_over, &cookie, BPF_NOEXIST));

	netns = sock_netns(sk);
	skops_addrs(skops, key.saddr, key.caddr);
	key.cport = skops_remote_port(skops);
	key.sport = port;
	key.netns = is_loopback(key.saddr) ? netns : 0;
	a = bpf_map_lookup_elem(&tuple_attr, &key);
	if (!a) {
		count_stat(MCPW_CNT_TUPLE_MISS, 1);
	} else {
		/* Consumed: the connection carries it from here on. Left in
		 * the LRU, every connect under churn evicted one (~0.7 us a
		 * connection of sockops time, bpf_stats). */
		cli = *a;
		a = &cli;
		bpf_map_delete_elem(&tuple_attr, &key);
	}
	/* Cloned from the listener: who bound it. The cookie is left here for
	 * srv_egress, which cannot ask for it. A connection over capacity
	 * gets no state: nothing of it is judged or read. */
	srv_attr = bpf_sk_storage_get(&sock_attr, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!over) {
		init_conn(cookie, port, a ? &a->task : NULL);
		if (srv_attr) {
			srv_attr->sock_cookie = cookie;
			srv_attr->flags = (srv_attr->flags | MCPW_ATTR_SERVED) &
					  ~MCPW_ATTR_EGRESS_DONE;
			srv_attr->out_skipped = 0;
		} else
			count(MCPW_CNT_STORAGE_FAIL, 1);
	}

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(MCPW_CNT_EVENTS_LOST, 1);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	fill_hdr(&e->hdr, MCPW_EV_CONN_OPEN, sizeof(*e));
	e->cookie = cookie;
	__builtin_memcpy(e->tuple.saddr, key.saddr, 16);
	__builtin_memcpy(e->tuple.daddr, key.caddr, 16);
	e->tuple.sport = port;
	e->tuple.dport = key.cport;
	e->tuple.family = skops->family;
	e->netns = netns;
	e->flags = over;
	if (a) {
		e->client = a->task;
		e->client_cookie = a->sock_cookie;
		e->flags |= MCPW_CONN_CLIENT_KNOWN;
	}
	if (srv_attr && (srv_attr->flags & MCPW_ATTR_BIND)) {
		e->server = srv_attr->task;
		e->flags |= MCPW_CONN_SERVER_KNOWN;
	}
	bpf_ringbuf_submit(e, RB_EVENTS_BATCH);
}

SEC("sockops")
int on_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		publish_client(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		on_passive(skops);
		break;
	default:
		break;
	}
	return 1;
}

/* ---- close ------------------------------------------------------------ */

/* out_skipped: server -> client bytes srv_egress counted in the socket's
 * storage rather than in conn_state (only tp_btf can read the storage; the
 * daemon uses bytes_out for nothing but the record). */
static __always_inline int on_state(const struct sock *sk, int newstate, __u64 out_skipped)
{
	struct mcpw_close_event *e;
	struct mcpw_conn_state *st;
	__u64 cookie = 0;

	if (newstate != TCP_CLOSE_STATE || !sk)
		return 0;
	/* sockops already asked for this socket's cookie, so it is set. */
	bpf_probe_read_kernel(&cookie, sizeof(cookie), &sk->__sk_common.skc_cookie);
	if (!cookie)
		return 0;
	st = bpf_map_lookup_elem(&conn_state, &cookie);
	if (!st)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		fill_hdr(&e->hdr, MCPW_EV_CONN_CLOSE, sizeof(*e));
		e->cookie = cookie;
		e->bytes_in = st->bytes_in;
		e->bytes_out = st->bytes_out + out_skipped;
		e->failopen_bytes = st->failopen_bytes;
		e->fast_requests = st->fast_requests;
		bpf_ringbuf_submit(e, RB_EVENTS_BATCH);
	} else {
		count(MCPW_CNT_EVENTS_LOST, 1);
	}
	bpf_map_delete_elem(&conn_state, &cookie);
	bpf_map_delete_elem(&conn_verdict, &cookie);
	bpf_map_delete_elem(&fast_tmpl, &cookie);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(state_btf, const struct sock *sk, int oldstate, int newstate)
{
	struct mcpw_sock_attr *a;

	/* Every TCP socket of the host changes state through here: the
	 * closes of sockets on unprotected ports end at one array load. By
	 * TCP_CLOSE an accepted socket has given its port back (inet_num is
	 * 0): its source port is what is left, as the tracepoint's own
	 * `sport` is (state_tp). */
	if (newstate != TCP_CLOSE_STATE || !sk ||
	    !port_protected(bpf_ntohs(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport))))
		return 0;
	a = bpf_sk_storage_get(&sock_attr, (struct sock *)sk, 0, 0);
	return on_state(sk, newstate,
			a && (a->flags & MCPW_ATTR_EGRESS_DONE) ? a->out_skipped : 0);
}

SEC("tp/sock/inet_sock_set_state")
int state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->newstate != TCP_CLOSE_STATE || !port_protected(ctx->sport))
		return 0;
	return on_state((const struct sock *)ctx->skaddr, ctx->newstate, 0);
}

/* ---- iterators -------------------------------------------------------- */

/*
 * Connections established before the agent: server-side sockets on a
 * protected port join `srv` (so their next bytes are judged like any
 * other) and are reported with their inode, which the daemon maps to the
 * owning processes through /proc. Client-side sockets to a protected port
 * are reported the same way, for the daemon to attribute the client, and
 * so are listeners on protected ports (their owner is the server).
 * Iterates the namespace the daemon opened the iterator in.
 */
SEC("iter/tcp")
int seed_conns(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct mcpw_conn_event e = {};
	struct tcp_sock *tp;
	struct sock *sk;
	__u16 lport, rport;
	bool server, listener;
	int state;

	if (!skc)
		return 0;
	state = BPF_CORE_READ(skc, skc_state);
	if (state != TCP_ESTABLISHED_STATE && state != TCP_LISTEN_STATE)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	sk = (struct sock *)tp;
	lport = BPF_CORE_READ(skc, skc_num);
	rport = bpf_ntohs(BPF_CORE_READ(skc, skc_dport));
	server = port_protected(lport);
	listener = state == TCP_LISTEN_STATE;
	if (listener && !server)
		return 0;
	if (!server && !port_protected(rport))
		return 0;

	fill_hdr(&e.hdr, MCPW_EV_CONN_PREEXISTING, sizeof(e));
	e.cookie = bpf_get_socket_cookie(sk);
	e.tuple.family = BPF_CORE_READ(skc, skc_family);
	if (e.tuple.family == AF_INET) {
		addr4_mapped(e.tuple.saddr, BPF_CORE_READ(skc, skc_rcv_saddr));
		addr4_mapped(e.tuple.daddr, BPF_CORE_READ(skc, skc_daddr));
	} else {
		BPF_CORE_READ_INTO(&e.tuple.saddr, skc, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e.tuple.daddr, skc, skc_v6_daddr.in6_u.u6_addr8);
	}
	e.tuple.sport = lport;
	e.tuple.dport = rport;
	e.netns = BPF_CORE_READ(skc, skc_net.net, ns.inum);
	e.inode = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	e.srv_uid = ctx->uid;
	e.flags = MCPW_CONN_PREEXISTING | (server ? MCPW_CONN_SERVER_KNOWN : MCPW_CONN_CLIENT_KNOWN);
	if (listener)
		e.flags |= MCPW_CONN_LISTENER;
	else if (server) {
		struct mcpw_sock_attr *a;
		long err = 0;

		/* Already under the payload hook when it has a state: put
		 * there by on_passive (accepted after the attach, before this
		 * walk) or by a previous daemon. Adding a socket that has a
		 * verdict program again fails (-EBUSY), and is no failure. */
		if (!bpf_map_lookup_elem(&conn_state, &e.cookie))
			err = bpf_map_update_elem(&srv, &e.cookie, sk, BPF_NOEXIST);
		if (err && err != -17) {
			/* -EBUSY, then -EEXIST: already under srv_over. */
			err = bpf_map_update_elem(&srv_over, &e.cookie, sk, BPF_NOEXIST);
			e.flags |= over_flags(err == -16 || err == -17 ? 0 : err);
			goto out;
		}
		init_conn(e.cookie, lport, NULL);
		a = bpf_sk_storage_get(&sock_attr, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (a) {
			a->sock_cookie = e.cookie;
			a->flags |= MCPW_ATTR_SERVED;
		} else
			count(MCPW_CNT_STORAGE_FAIL, 1);
	}
out:
	bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}

/* Ends the connections the daemon denied (cookies in `to_destroy`). */
SEC("iter/tcp")
int destroy_conns(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;
	__u64 cookie;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	cookie = bpf_get_socket_cookie((struct sock *)tp);
	if (!bpf_map_lookup_elem(&to_destroy, &cookie))
		return 0;
	bpf_sock_destroy(skc);
	bpf_map_delete_elem(&to_destroy, &cookie);
	return 0;
}
