/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Records the kernel side hands to the daemon, and the maps' key/value
 * layouts both sides read and write. Included by the bpf/ sources (after
 * vmlinux.h) and by userspace (after <linux/types.h>). Every struct has
 * explicit padding and a size assertion so the two compilers agree.
 *
 * Data flows:
 *   events ring  process lifecycle, connection open/close (small, frequent)
 *   data ring    held or mirrored request bytes, server response bytes
 *   conn_state   per server-side connection, written by the kernel only
 *   conn_verdict per server-side connection, written by the daemon only
 */
#ifndef MCPW_EVENTS_H
#define MCPW_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#include "limits.h"

enum mcpw_event_type {
	MCPW_EV_EXEC = 1,
	MCPW_EV_FORK,
	MCPW_EV_EXIT,
	MCPW_EV_CONN_OPEN,	/* server side accepted a protected connection */
	MCPW_EV_CONN_CLOSE,
	MCPW_EV_DATA,		/* bytes on a protected connection */
	MCPW_EV_CONN_PREEXISTING,	/* found by the socket iterator */
	MCPW_EV_STDIO_KILL,	/* a stdio server killed at exec */
	MCPW_EV_CLIENT_CONNECT,	/* a workload in scope connected to a protected port */
};


/* Who did something: the task, in the kernel's own words. */
struct mcpw_task {
	__u32 tgid;
	__u32 pid;
	__u32 ppid;		/* real parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 netns;		/* network namespace inode */
	__u64 start_ns;		/* group leader start, CLOCK_BOOTTIME ns */
	__u64 cgroup_id;	/* cgroup v2 id */
	char comm[MCPW_COMM_LEN];
};
_Static_assert(sizeof(struct mcpw_task) == 56, "mcpw_task layout");

struct mcpw_event_hdr {
	__u32 type;		/* enum mcpw_event_type */
	__u32 size;		/* whole record, header included */
	__u64 ktime_ns;		/* bpf_ktime_get_ns() at emission */
};
_Static_assert(sizeof(struct mcpw_event_hdr) == 16, "hdr layout");

struct mcpw_exec_event {
	struct mcpw_event_hdr hdr;
	struct mcpw_task task;
	__u32 filename_len;
	__u32 args_len;		/* bytes of args, NUL-separated */
	__u32 args_truncated;
	__u32 flags;		/* MCPW_EXEC_* */
	char filename[MCPW_PATH_LEN];
	char args[MCPW_ARGS_LEN];
};

#define MCPW_EXEC_STOPPED	(1u << 0)	/* a stdio server candidate, stopped
						 * before its first instruction until
						 * the daemon decides (SIGCONT/SIGKILL) */

/* Key of the stdio server executables map: the file, not its name. */
struct mcpw_file_key {
	__u64 dev;		/* kernel encoding: major << 20 | minor */
	__u64 ino;
};

struct mcpw_fork_event {
	struct mcpw_event_hdr hdr;
	struct mcpw_task child;	/* ppid names the parent */
};

struct mcpw_exit_event {
	struct mcpw_event_hdr hdr;
	__u32 tgid;
	__u32 exit_code;
	__u64 start_ns;
};

/* A TCP 4-tuple, addresses as IPv6 (IPv4 mapped ::ffff:a.b.c.d). */
struct mcpw_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;		/* host byte order */
	__u16 dport;
	__u16 family;		/* AF_INET or AF_INET6 of the socket */
	__u16 pad;
};
_Static_assert(sizeof(struct mcpw_tuple) == 40, "tuple layout");

/* Attribution a socket carries (socket-local storage, and the tuple map). */
struct mcpw_sock_attr {
	struct mcpw_task task;
	__u64 sock_cookie;	/* of the socket this was recorded on */
	__u32 flags;		/* MCPW_ATTR_* */
	/* MCPW_ATTR_EGRESS_DONE: the egress generation it was set in, and the
	 * server -> client bytes sent since (not yet in conn_state). */
	__u32 egress_gen;
	__u64 out_skipped;
};
_Static_assert(sizeof(struct mcpw_sock_attr) == 80, "sock_attr layout");

#define MCPW_ATTR_CONNECT	(1u << 0)	/* recorded at connect() */
#define MCPW_ATTR_BIND		(1u << 1)	/* recorded at bind() */
#define MCPW_ATTR_SERVED	(1u << 2)	/* a protected server's connection */
#define MCPW_ATTR_EGRESS_DONE	(1u << 3)	/* served: nothing of its responses to
						 * copy while the egress generation
						 * stays egress_gen (see srv_egress) */

/* Key of the client attribution published at connect time. The netns is
 * set only for loopback addresses: 127.0.0.1 in two namespaces are two
 * different hosts, a routed address is one. */
struct mcpw_tuple_key {
	__u8 caddr[16];		/* client */
	__u8 saddr[16];		/* server */
	__u16 cport;
	__u16 sport;
	__u32 netns;
};
_Static_assert(sizeof(struct mcpw_tuple_key) == 40, "tuple_key layout");

/* Fleet mode: the client end of a connection to a protected port, for the
 * server's node to attribute it (see userspace/store.h). */
struct mcpw_client_event {
	struct mcpw_event_hdr hdr;
	struct mcpw_tuple tuple;	/* client view: s = client, d = server */
	__u64 cookie;			/* client socket */
	struct mcpw_task task;
};

#define MCPW_CONN_CLIENT_KNOWN	(1u << 0)	/* client attribution found */
#define MCPW_CONN_SERVER_KNOWN	(1u << 1)	/* listener owner known */
#define MCPW_CONN_PREEXISTING	(1u << 2)	/* established before the agent */
#define MCPW_CONN_LISTENER	(1u << 3)	/* iterator: a listening socket */
/* No room in `srv`: the connection cannot be judged. Under srv_over's
 * verdict instead (nothing passes in enforce mode with fail closed) until
 * the daemon ends it; UNHOOKED: no room there either, nothing in the
 * kernel stops its bytes. */
#define MCPW_CONN_OVER_CAPACITY	(1u << 4)
#define MCPW_CONN_UNHOOKED	(1u << 5)

struct mcpw_conn_event {
	struct mcpw_event_hdr hdr;
	__u64 cookie;		/* server-side socket cookie */
	struct mcpw_tuple tuple;	/* server view: s = server, d = client */
	__u32 netns;		/* server socket's namespace */
	__u32 flags;		/* MCPW_CONN_* */
	__u64 inode;		/* socket inode (iterator only) */
	__u64 client_cookie;	/* client-side socket, when local */
	struct mcpw_task client;
	struct mcpw_task server;
	__u32 srv_uid;		/* socket owner uid (iterator) */
	__u32 pad;
};

struct mcpw_close_event {
	struct mcpw_event_hdr hdr;
	__u64 cookie;
	__u64 bytes_in;
	__u64 bytes_out;
	__u64 failopen_bytes;	/* passed unjudged while the daemon was away */
	__u64 fast_requests;	/* passed by the kernel fast path */
};

/* Data record flags. */
#define MCPW_DATA_HELD		(1u << 0)	/* dropped in the kernel, daemon must release */
#define MCPW_DATA_EGRESS	(1u << 1)	/* server -> client */
#define MCPW_DATA_FAILOPEN	(1u << 2)	/* passed while the daemon was away */
#define MCPW_DATA_STDIN		(1u << 3)	/* a stdio server's stdin; cookie = its tgid */
#define MCPW_DATA_FAST		(1u << 4)	/* passed on the fast path: a copy of the
						 * request's first segment for the
						 * record (seg_len = the request's
						 * length); nothing to release */

struct mcpw_data_event {
	struct mcpw_event_hdr hdr;
	__u64 cookie;
	__u64 offset;		/* stream offset of data[0] */
	__u32 len;		/* bytes in data */
	__u32 flags;		/* MCPW_DATA_* */
	__u32 seg_len;		/* length of the whole segment this chunk is from */
	__u32 sender_tgid;	/* egress: the server process that wrote it */
	char data[MCPW_CHUNK_LEN];
};

/* ---- per-connection state ------------------------------------------- */

/* Kernel-owned; the daemon only reads it. */
struct mcpw_conn_state {
	__u64 bytes_in;		/* client -> server bytes seen */
	__u64 held_end;		/* stream offset just past the last held byte */
	/* Where the current run of held bytes began: bytes the fast path
	 * passed after the last release were never held. */
	__u64 hold_start;
	__u64 tcp_base;		/* TCP's byte count at our offset 0 (MCPW_ST_TCP_BASE) */
	__u64 bytes_out;	/* server -> client bytes seen */
	__u64 copied_out;	/* server -> client bytes copied */
	__u32 flags;		/* MCPW_ST_* */
	__u32 server_port;
	__u64 failopen_bytes;	/* passed unjudged while the daemon was away */
	__u64 lost_bytes;	/* held bytes that could not be copied */
	/* Kernel fast path (see struct mcpw_fast_tmpl). */
	__u64 fast_next;	/* stream offset where the next request starts */
	__u64 fast_pass_until;	/* body bytes of a fast-passed request */
	__u64 fast_requests;	/* requests passed without the daemon */
	__u32 fast_gen;		/* template generation fast_next belongs to */
	__u32 pad;
	/* The local client process, when the connect hook saw it. */
	__u32 client_tgid;
	__u32 client_uid;
	__u64 client_start;
};
_Static_assert(sizeof(struct mcpw_conn_state) == 120, "conn_state layout");

/* Key of a client process's template: a new connection from the same
 * process (same image: exec drops it) to the same port with the same
 * header block needs no new judgment either (connection churn). */
struct mcpw_inst_key {
	__u32 tgid;
	__u32 pad;
	__u64 start_ns;
};

#define MCPW_ST_LOST		(1u << 0)	/* held bytes were lost: end it */
#define MCPW_ST_OVERLIMIT	(1u << 1)	/* too many bytes held */
#define MCPW_ST_FAILOPEN	(1u << 2)	/* bytes passed while daemon away */
#define MCPW_ST_FAILCLOSED	(1u << 3)	/* bytes dropped while daemon away */
#define MCPW_ST_INST_FAST	(1u << 4)	/* admitted by its instance's template */
#define MCPW_ST_TCP_BASE	(1u << 5)	/* tcp_base is set */
#define MCPW_ST_RESHOWN	(1u << 6)	/* a segment was shown again (see srv_verdict) */
#define MCPW_ST_INST_REF	(1u << 7)	/* reads its process's template in place */

enum mcpw_action {
	MCPW_ACT_HOLD = 0,	/* judge in userspace (default) */
	MCPW_ACT_PASS,		/* judged: pass without copying */
	MCPW_ACT_MIRROR,	/* pass and copy (monitor mode) */
	MCPW_ACT_DROP,		/* denied: drop everything */
};

/* Daemon-owned; the kernel only reads it. */
struct mcpw_conn_verdict {
	__u32 action;		/* enum mcpw_action */
	__u32 flags;		/* MCPW_V_* */
	__u64 released_end;	/* every held byte below this was re-injected */
	__u64 pass_until;	/* bytes below this pass without a copy */
	__u64 copy_until;	/* MIRROR: copy bytes below this offset */
	__u64 egress_copy_until;/* copy server -> client bytes below this */
};
_Static_assert(sizeof(struct mcpw_conn_verdict) == 40, "conn_verdict layout");

/*
 * The kernel fast path of a judged connection: a later request whose header
 * block is byte-identical to the judged one (same method, target, token,
 * session, every header) except for the Content-Length digits passes
 * without waking the daemon, its body under fast_pass_until. The daemon
 * installs a template only when nothing in a body can change the verdict
 * (no tool limits, no clientInfo claims, session-era headers). Anything
 * else (another header, pipelining, a too-big body) is held as usual.
 */
#define MCPW_FAST_HEAD_MAX 2048

struct mcpw_fast_tmpl {
	__u32 gen;		/* bumped for every template installed */
	__u32 head_len;		/* header block length, CRLFCRLF included */
	__u32 cl_off;		/* first digit of the Content-Length value */
	__u32 cl_len;		/* its digits in the template */
	__u64 start;		/* stream offset where the next request starts */
	__u64 max_body;		/* larger bodies are held */
	__u32 port;		/* process templates: the server port ... */
	__u32 uid;		/* ... and the uid they were judged for */
	char head[MCPW_FAST_HEAD_MAX + 8];	/* + 8: word compares may overrun */
};

/* ---- global configuration (one array element) ------------------------ */

struct mcpw_config {
	__u32 enforce;		/* 1: hold unjudged bytes; 0: mirror */
	__u32 fail_open;	/* daemon away: 1 pass, 0 drop */
	__u64 daemon_timeout_ns;/* heartbeat older than this: daemon away */
	__u64 max_held;		/* held-but-unreleased bytes per connection */
	__u64 mirror_window;	/* MIRROR default copy window for new conns */
	__u64 egress_window;	/* server -> client bytes copied by default */
	__u32 self_tgid;	/* the daemon: its own sockets are ignored */
	__u32 mirror_fast;	/* copy fast-path requests for their events */
	__u32 fleet;		/* report client connects (MCPW_EV_CLIENT_CONNECT) */
	__u32 pad;
};
_Static_assert(sizeof(struct mcpw_config) == 56, "config layout");

/*
 * Whether the daemon is reading the rings (the `loop_state` map, mapped
 * into the daemon). Held bytes ring a waker only while `busy` is 0; a
 * daemon thread that stops reading clears it, then looks at `held` again
 * and reads on if it moved, so bytes are never left without a reader.
 */
struct mcpw_loop_state {
	__u32 busy;		/* written by the daemon */
	__u32 pad;
	__u64 held;		/* held segments in the data ring, ever */
	__u64 held_read_ns;	/* when the daemon last read held bytes */
	__u64 stream_ns;	/* MCPW_STREAM_NS, written by the daemon */
};

/* Held bytes this soon after the daemon last read held bytes are a
 * stream: they wake the loop, which runs on whichever CPU is free, not a
 * waker tied to theirs (payload.bpf.c). */
#define MCPW_STREAM_NS (500ull * 1000)

/* Frame header the daemon writes before each re-injected chunk. */
struct mcpw_inject_hdr {
	__u64 cookie;
	__u32 len;
	__u32 magic;
};
_Static_assert(sizeof(struct mcpw_inject_hdr) == 16, "inject header layout");
#define MCPW_INJECT_MAGIC 0x4d435057u	/* "MCPW" */

/* ---- kernel-side counters (percpu array, exported by the daemon) ------ */

enum mcpw_counter {
	MCPW_CNT_EVENTS_LOST = 0,	/* events ring full */
	MCPW_CNT_DATA_LOST,		/* data ring full */
	MCPW_CNT_HELD_SEGS,
	MCPW_CNT_HELD_BYTES,
	MCPW_CNT_PASS_SEGS,		/* passed by a cached verdict */
	MCPW_CNT_DROP_SEGS,
	MCPW_CNT_MIRROR_SEGS,
	MCPW_CNT_FAILOPEN_SEGS,
	MCPW_CNT_FAILCLOSED_SEGS,
	MCPW_CNT_OVERLIMIT,
	MCPW_CNT_INJECT_OK,
	MCPW_CNT_INJECT_FAIL,
	MCPW_CNT_SOCKHASH_FAIL,		/* a protected connection under no hook */
	MCPW_CNT_NO_STATE,
	MCPW_CNT_TUPLE_MISS,
	MCPW_CNT_STORAGE_FAIL,
	MCPW_CNT_SEG_TOO_BIG,
	MCPW_CNT_EGRESS_COPIED,
	MCPW_CNT_STDIO_KILLED,
	MCPW_CNT_FAST_REQUESTS,		/* passed by the kernel fast path */
	MCPW_CNT_FAST_COPY_LOST,	/* ... and not reported: data ring full */
	MCPW_CNT_RESEQUENCED,		/* a segment shown again, or after a gap */
	MCPW_CNT_RESHOWN_TRIMMED,	/* ... its bytes shown before cut off it */
	MCPW_CNT_SCRATCH_BUSY,		/* every scratch record of the CPU in use */
	MCPW_CNT_OVER_CAPACITY,		/* connections put under srv_over */
	MCPW_CNT_OVER_DROP_SEGS,	/* ... their segments dropped */
	MCPW_CNT_OVER_PASS_SEGS,	/* ... their segments passed unjudged */
	MCPW_CNT_WAKER_RUNG,		/* held bytes woke their CPU's waker */
	MCPW_CNT_WAKER_NONE,		/* ... no waker on their CPU: the loop */
	MCPW_CNT_WAKER_PENDING,		/* ... its ring full: a wakeup pending */
	MCPW_CNT_WAKER_BUSY,		/* ... none: the daemon was reading */
	MCPW_CNT_WAKER_STREAM,		/* ... the loop: a stream of held bytes */
	MCPW_CNT__MAX,
};

#endif
