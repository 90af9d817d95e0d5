// SPDX-License-Identifier: GPL-2.0
/*
 * The daemon's run loop. One thread, one epoll set (and a waker on each
 * CPU that reads the rings when held bytes ring it, under the loop's lock:
 * waker.h):
 *
 *   rings     events ring  exec/fork/exit -> process table
 *                          CONN_OPEN/CLOSE -> connection table, `connection`
 *             data ring    held (enforce) or mirrored (monitor) request
 *                          bytes -> HTTP parser -> request -> decision ->
 *                          release (re-inject) or deny (drop + reset);
 *                          server response heads -> session issuance
 *   signalfd  SIGHUP reload, SIGTERM/SIGINT stop
 *   timerfd   heartbeat (the kernel's fail mode watches it), loss
 *             reporting, held-too-long and kernel-flagged connections,
 *             expiry of live state
 *
 * Enforcement invariant: bytes of a protected connection reach the server
 * only (a) re-injected here after an allowed verdict, in stream order, or
 * (b) passed by the kernel inside a range this loop granted. Anything
 * lost, over a limit, or unparseable is denied, never passed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/utsname.h>
#include <dirent.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "cgroup.h"
#include "conn.h"
#include "ctl.h"
#include "decision.h"
#include "dynlib.h"
#include "hmap.h"
#include "http.h"
#include "jwt.h"
#include "k8s.h"
#include "attest.h"
#include "kernel.h"
#include "metrics.h"
#include "sinks.h"
#include "bpfstats.h"
#include "log.h"
#include "output.h"
#include "podmeta.h"
#include "policy.h"
#include "proctab.h"
#include "render.h"
#include "request.h"
#include "schedguard.h"
#include "stdio_guard.h"
#include "store.h"
#include "waker.h"
#include "workload.h"

#define TICK_MS			100
#define HEARTBEAT_TIMEOUT_NS	(1500ull * 1000000)
#define MIRROR_WINDOW		(1u << 20)
#define EGRESS_WINDOW		(64u << 10)
#define PROC_GRACE_NS		(60ull * 1000000000)
#define PENDING_OPEN_NS		(300ull * 1000000)
/* Sockets to end, in batches (end_queued): at most this many waiting, and
 * walks of a namespace's sockets this far apart. */
#define END_QUEUE		256
#define END_SPACING_NS		(50ull * 1000000)
/* Connections over capacity reported one event each, a second. */
#define OVER_EVENTS_PER_S	100
#define CLOSED_SLOTS		16384	/* a power of two: closed_slot() */
/* Unjudged bytes the daemon keeps across all connections (held copies and
 * partial requests in parsers). Past it, the oldest incomplete requests
 * (started SHED_MIN_AGE_NS ago or more) are ended to make room; when none
 * is that old, the peer pushing past it is denied. */
#define MAX_PENDING_TOTAL	(256ull << 20)
#define SHED_MIN_AGE_NS		(1000ull * 1000000)
#define SHED_RESCAN_NS		(100ull * 1000000)
/* How long a request may take to arrive whole (--request-timeout). */
#define REQUEST_TIMEOUT_S	30
#define REQUEST_TIMEOUT_MAX_S	3600

struct agent {
	const struct agent_opts *opts;
	struct policy *policy;
	bool enforce;
	struct kernel *kernel;
	struct rings *rings;
	struct proctab *procs;
	struct resolver *resolver;
	struct podmeta *pods;
	struct k8s *k8s;
	bool policy_uses_pods;		/* some selector needs pod facts */
	/* No body can change a verdict (no tool limits, no clientInfo
	 * identities): a large request can be judged on its head. */
	bool judge_on_head;
	uint64_t judged_on_head;	/* requests judged so (status) */
	struct decider *decider;
	struct output *out;
	struct ctl *ctl;
	struct attest *attest;
	struct store *store;		/* fleet mode */
	struct hmap *sighted;		/* client+instance -> last sighting put (ms) */
	char store_problem[256];	/* "" when the store is ready */
	struct sink *sinks;
	struct metrics *metrics;
	struct latency_hist verdict_latency;
	struct latency_hist verdict_wait;	/* of it: held bytes waiting to be read */
	char scheduling[160];		/* how the event loop is scheduled */
	struct sched_guard sched;
	bool reporting_plain;		/* real-time set aside for reporting */
	uint64_t plain_report_batches;	/* loop passes that did so */
	uint64_t actions[VERDICT__MAX][3];	/* allowed, alerted, blocked */
	uint64_t sink_dropped[16];
	struct stdio_ctx stdio;
	uint64_t started_ns;
	struct jwt_keyset *keys;
	struct jwt_cache *tokens;	/* facts of recent tokens (checked with keys) */
	struct render *render;		/* event text reused across events */
	struct fast_head *fast_heads;	/* FAST_HEAD_SLOTS by cookie, as many by process */
	uint64_t fast_heads_reused, fast_bodies_reused;
	struct hmap *conns;		/* cookie -> struct conn */
	struct conn *closing;		/* closed ones, newest first (reap_closed) */
	/* Opened, `connection` event not written yet, oldest first
	 * (report_connections). */
	struct conn *unreported, **unreported_tail;
	/* Cookies of connections freed lately, direct-mapped (CLOSED_SLOTS):
	 * records still in the data ring for them must not resurrect the
	 * connection. */
	uint64_t *closed;
	struct hmap *listeners;		/* (netns << 16 | port) -> struct mcpw_task */
	struct hmap *netns_fds;		/* netns inode -> fd + 1 */
	struct http_limits limits;
	char cgroup_mount[PATH_MAX];
	char cgroup_root[PATH_MAX];	/* cgroup path of the scope */
	char cgroup_dir[PATH_MAX];	/* its directory */
	char node[256];
	char pin_dir[PATH_MAX];
	json_t *stale_pins;		/* other layouts' pin directories removed at start */
	uint64_t counters[MCPW_CNT__MAX];	/* last reported */
	uint64_t conns_dropped;
	uint32_t max_conns;		/* --max-connections */
	/* Sockets waiting to be ended (denied, over capacity), when the last
	 * walk ended some, and how many walks so far. */
	struct end_req { uint64_t cookie; uint32_t netns, pid; } end_q[END_QUEUE];
	size_t end_n;
	uint64_t last_end_ns, end_walks, end_by_address;
	/* Connections over capacity (MCPW_CONN_OVER_CAPACITY): how many were
	 * ended, passed, or under no hook; the second whose events are being
	 * written one by one, how many were, how many more were summed; when
	 * the last one came. */
	uint64_t over_ended, over_passed, over_unhooked;
	uint64_t over_second, over_summed;
	uint32_t over_events;
	uint64_t last_over_ns;
	/* Session, token and instance bindings refused (decider_stats), as
	 * last reported, and when one last was. */
	uint64_t refused_reported[3], last_refused_ns;
	/* And bindings an instance over its share dropped (no health:
	 * a gateway of many sessions does so all day, and only its own). */
	uint64_t evicted_reported[2];
	uint64_t procs_evicted_reported;	/* live processes pushed out */
	uint64_t reshown_stalls;	/* connections ended after a re-shown segment */
	uint64_t early_dropped;		/* fast-path copies not kept (limit) */
	uint64_t fast_unread;		/* fast-path copies that could not be read */
	uint64_t pending_total;		/* sum of conn->pending */
	uint64_t max_pending;		/* MAX_PENDING_TOTAL (tests: smaller) */
	uint64_t request_timeout_ns;	/* --request-timeout */
	/* Connections ended for a request that did not arrive whole in time,
	 * or that was the oldest incomplete one when room was needed. */
	uint64_t requests_timed_out, requests_shed;
	uint64_t shed_next_scan_ns;	/* no scan for room before (shed_oldest) */
	uint32_t fast_gen;		/* fast-path template generations */
	struct hmap *inst;		/* instance templates: key hash -> struct inst_entry */
	bool policy_uses_client_info;	/* some client matches on clientInfo */
	bool emitting_fast;		/* the event is about a fast-path request */
	/* Health: never look healthy while blind. */
	char health[2048];		/* "" when healthy, else the reasons */
	uint64_t last_loss_ns;
	/* Events streams whose writes failed (output_stats.write_lost). */
	uint64_t out_write_lost, last_out_fail_ns, last_out_log_ns, out_lost_logged;
	int reopen_errno;		/* last said of reopening the events file */
	char state_problem[PATH_MAX + 64];	/* "" while state.json is saved */
	char k8s_error[256];		/* the pod watch's last error, as logged */
	char reload_problem[640];	/* "" unless the last reload failed */
	/* The policy file watched (inotify on its directory, -1: not): a
	 * change is checked once the directory is quiet, and reloaded when
	 * its digest is not the one last tried (by SIGHUP or the watch). */
	int policy_watch;
	uint64_t policy_check_at;
	char policy_tried[65];
	uint64_t last_sink_drop_ns;	/* an --output sink last dropped events */
	char sink_dropping[128];	/* which */
	uint64_t k8s_down_since;	/* its watch not streaming since (0: it is) */
	char out_problem[PATH_MAX + 64];
	uint64_t health_resolved, health_cg_fail;
	uint64_t ticks;
	bool stop;
	int epfd, sigfd, timerfd;
	/* The loop and the wakers take turns, one at a time, under lock. */
	pthread_mutex_t lock;
	struct wakers *wakers;
	bool loop_realtime;		/* the loop thread's own scheduling */
	int kick_fd;			/* a waker left records for the loop */
	uint64_t kicks;
	struct mcpw_loop_state *loop_state;	/* shared with the kernel */
	uint64_t held_records;		/* held-bytes records read */
	uint64_t ring_wakeups;		/* loop passes the rings woke */
	uint64_t reads_on;		/* passes for held bytes that came while reading */
	bool drain_barrier_passed;	/* test_barrier("drain_busy"), once */
	bool test_stall;		/* MCPW_TEST_DRAIN_STALL */
	uint64_t test_stalled_at;	/* the held count it last stopped at */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- connections ------------------------------------------------------- */

static void forget_pending(struct agent *a, struct conn *c)
{
	a->pending_total -= c->pending;
	c->pending = 0;
	c->pending_since_ns = 0;
}

/* A copy of a fast-path record that arrived before its CONN_OPEN. */
struct early_rec {
	struct early_rec *next;
	size_t size;
	unsigned char ev[];
};

/* Per connection, copies kept while its open record is late. */
#define EARLY_MAX_BYTES (64u << 10)

static void early_free(struct conn *c)
{
	while (c->early) {
		struct early_rec *r = c->early;

		c->early = r->next;
		free(r);
	}
	c->early_tail = NULL;
	c->early_bytes = 0;
}

static void fast_head_forget(struct agent *a, uint64_t cookie);

static void report_connections(struct agent *a);

static void conn_free(struct agent *a, struct conn *c)
{
	/* The list may still hold it (reported or not): emptied first. */
	if (a->unreported)
		report_connections(a);
	render__forget(a->render, c->cookie);
	fast_head_forget(a, c->cookie);
	early_free(c);
	forget_pending(a, c);
	decider__conn_release(c);
	workload__unshare(c->client);
	workload__unshare(c->server);
	http_parser__free(c->parser);
	free(c->held);
	free(c->server_name);
	free(c->init_client_name);
	free(c->init_client_version);
	free(c);
}

/*
 * The closed cookies: a slot a cookie, overwritten by a later one. The
 * records of a closed connection are all drained within a tick or two of
 * its reaping; 16384 slots keep a cookie for over a second at 10k closes
 * a second. One forgotten too soon costs a connection entry that
 * check_conns() finds gone from the kernel and closes. Fixed memory and
 * no allocation per close (a table of every cookie of the last seconds
 * cost a node per close and a sweep, ~5% of the daemon under churn).
 */
static size_t closed_slot(uint64_t cookie)
{
	return (size_t)((cookie * 0x9e3779b97f4a7c15ull) >> 50) & (CLOSED_SLOTS - 1);
}

static bool was_closed(const struct agent *a, uint64_t cookie)
{
	return cookie && a->closed[closed_slot(cookie)] == cookie;
}

static struct conn *conn_get(struct agent *a, uint64_t cookie, bool create)
{
	struct conn *c = hmap__get(a->conns, cookie);

	if (c || !create)
		return c;
	/* Room for every connection the kernel tracks and as many closed
	 * ones not yet reaped (a tick's churn): a connection the kernel holds
	 * bytes of and the daemon cannot track would hang. */
	if (hmap__size(a->conns) >= 2 * (size_t)a->max_conns) {
		a->conns_dropped++;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->cookie = cookie;
	c->opened_ns = now_ns();
	c->client = c->server = &workload__none;
	if (hmap__put(a->conns, cookie, c)) {
		free(c);
		return NULL;
	}
	return c;
}

static const char *server_name_for(const struct agent *a, uint16_t port)
{
	const struct policy_server *s = policy__server_by_port(a->policy, port);

	return s ? s->name : NULL;
}

/* An fd for the network namespace with this inode (-1: our own/unknown). */
static int netns_fd(struct agent *a, uint32_t inum, uint32_t pid_hint)
{
	char path[64];
	struct stat st;
	intptr_t cached;
	int fd;

	if (!inum)
		return -1;
	if (stat("/proc/self/ns/net", &st) == 0 && st.st_ino == inum)
		return -1;
	cached = a->netns_fds ? (intptr_t)hmap__get(a->netns_fds, inum) : 0;
	if (cached)
		return (int)cached - 1;
	if (!pid_hint)
		return -1;
	snprintf(path, sizeof(path), "/proc/%u/ns/net", pid_hint);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || st.st_ino != inum) {
		close(fd);
		return -1;
	}
	if (!a->netns_fds || hmap__put(a->netns_fds, inum, (void *)(intptr_t)(fd + 1))) {
		close(fd);	/* not kept: it would leak */
		return -1;
	}
	return fd;
}

/*
 * The namespace descriptors kept for ending connections, closed every few
 * seconds: an open descriptor keeps its network namespace alive, and a
 * node's pods come and go, each with a namespace of its own. Kept for
 * ever, every namespace a denial was ever made in stayed allocated, and
 * the agent's descriptors with them.
 */
static void forget_netns_fds(struct agent *a)
{
	struct hmap_iter it;
	void *val;

	if (!a->netns_fds || !hmap__size(a->netns_fds))
		return;
	hmap__iter_init(a->netns_fds, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val))
		close((int)(intptr_t)val - 1);
	hmap__free(a->netns_fds);
	a->netns_fds = hmap__new(false);
}

/* ---- instance templates ------------------------------------------------- */

struct inst_entry {
	struct mcpw_inst_key key;
	uint64_t cgid;
	char *client;
};

static uint64_t inst_hash(const struct mcpw_inst_key *k)
{
	return k->start_ns * 0x9e3779b97f4a7c15ull ^ k->tgid;
}

static void inst_drop(struct agent *a, uint64_t h)
{
	struct inst_entry *e = hmap__del(a->inst, h);

	if (!e)
		return;
	kernel__del_inst(a->kernel, &e->key);
	free(e->client);
	free(e);
}

/* A finding about a workload instance: new connections of every process
 * in it are judged again. */
static void inst_forget_instance(struct agent *a, uint64_t cgid)
{
	struct hmap_iter it;
	uint64_t h;
	void *val;

	hmap__iter_init(a->inst, &it);
	while (hmap__iter_next(&it, &h, NULL, &val))
		if (((struct inst_entry *)val)->cgid == cgid)
			inst_drop(a, h);
}

static void inst_clear(struct agent *a)
{
	struct hmap_iter it;
	uint64_t h;

	hmap__iter_init(a->inst, &it);
	while (hmap__iter_next(&it, &h, NULL, NULL))
		inst_drop(a, h);
	kernel__clear_inst(a->kernel);
}

static void inst_install(struct agent *a, struct conn *c, const char *client,
			 struct mcpw_fast_tmpl *t)
{
	struct mcpw_inst_key key = { .tgid = c->client->pid, .start_ns = c->client->start_ns };
	uint64_t h = inst_hash(&key);
	struct inst_entry *e = hmap__get(a->inst, h);

	if (c->client->remote || !key.tgid || !key.start_ns || c->preexisting ||
	    (!e && hmap__size(a->inst) >= 16384))
		return;
	t->start = 0;
	t->port = c->port;
	t->uid = c->client->uid;
	if (kernel__set_inst(a->kernel, &key, t))
		return;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || hmap__put(a->inst, h, e)) {
			free(e);
			kernel__del_inst(a->kernel, &key);
			return;
		}
		e->key = key;
	}
	e->cgid = c->client->cgroup_id;
	free(e->client);
	e->client = strdup(client);
}

/* ---- events ------------------------------------------------------------ */

/* c's workload and connection members (and its server's workload). */
static void write_conn_members(struct agent *a, struct output_line *l, struct conn *c,
			       bool server_workload)
{
	struct output_raw raw[2], srv;

	if (render__conn(a->render, c, raw)) {
		oline__raw(l, raw[0].key, raw[0].json, raw[0].len);
		oline__raw(l, raw[1].key, raw[1].json, raw[1].len);
	} else {
		oline__json(l, "workload", workload__json(c->client));
		oline__json(l, "connection", conn__json(c));
	}
	if (!server_workload)
		return;
	if (render__workload(a->render, true, c->server, &srv))
		oline__raw(l, srv.key, srv.json, srv.len);
	else
		oline__json(l, "server_workload", workload__json(c->server));
}

static void emit_connection(struct agent *a, struct conn *c)
{
	struct output_line *l = output__begin(a->out, "connection");

	oline__str(l, "server", c->server_name);
	write_conn_members(a, l, c, true);
	output__end(a->out, l);
}

/*
 * A connection's `connection` event is written after its open record is
 * read, not while it is: by the first other event about it, or at the end
 * of the loop pass at the latest (before the pass's lines are flushed). A
 * first request's bytes, read in the same pass, no longer wait behind the
 * rendering of both ends' workloads (~15 µs of a first sight's p50 here).
 */
static void defer_connection(struct agent *a, struct conn *c)
{
	/* Opened twice (the start-up walk, then its record), it is reported
	 * twice, as before, but listed once. */
	c->unreported = true;
	if (c->unreported_listed)
		return;
	c->unreported_listed = true;
	c->unreported_next = NULL;
	*a->unreported_tail = c;
	a->unreported_tail = &c->unreported_next;
}

static void report_connection(struct agent *a, struct conn *c)
{
	if (!c->unreported)
		return;
	c->unreported = false;	/* left in the list, passed over there */
	emit_connection(a, c);
}

/* Every deferred one, in the order they opened; empties the list. */
static void report_connections(struct agent *a)
{
	struct conn *c = a->unreported;

	a->unreported = NULL;
	a->unreported_tail = &a->unreported;
	while (c) {
		struct conn *next = c->unreported_next;

		c->unreported_next = NULL;
		c->unreported_listed = false;
		report_connection(a, c);
		c = next;
	}
}

/* released_ns: when the request's bytes were released (0: not released,
 * the verdict is now). */
static void emit_decision(struct agent *a, struct conn *c, struct request *r,
			  struct decision *d, bool blocked, uint64_t released_ns)
{
	struct output_line *l;
	struct output_raw claim;

	report_connection(a, c);
	l = output__begin(a->out, d->alert ? "alert" : "request");
	oline__str(l, "server", c->server_name);
	oline__str(l, "verdict", d->alert ? verdict__name(d->verdict) : "allow");
	if (d->alert)
		oline__str(l, "action", blocked ? "blocked" : "alerted");
	if (d->client)
		oline__str(l, "client", d->client->name);
	if (d->alert)
		oline__str(l, "reason", d->reason);
	oline__str(l, "mode", a->enforce ? "enforce" : "monitor");
	if (a->emitting_fast) {
		oline__bool(l, "fast_path", true);
	} else if (c->req_start_ktime) {
		/* To the release, when it came first: not the writing. */
		uint64_t us = ((released_ns ? released_ns : now_ns()) - c->req_start_ktime) / 1000;
		uint64_t wait = c->req_start_read_ns > c->req_start_ktime ?
				(c->req_start_read_ns - c->req_start_ktime) / 1000 : 0;

		oline__int(l, "verdict_latency_us", (long long)us);
		oline__int(l, "verdict_wait_us", (long long)wait);
		latency_hist__add(&a->verdict_latency, us);
		latency_hist__add(&a->verdict_wait, wait);
	}
	if (d->verdict < VERDICT__MAX)
		a->actions[d->verdict][!d->alert ? 0 : blocked ? 2 : 1]++;
	if (d->alert && !c->client->remote && c->client->cgroup_id)
		inst_forget_instance(a, c->client->cgroup_id);
	if (r)
		request__write_request(r, l);
	oline__json(l, "related", d->related);
	d->related = NULL;
	write_conn_members(a, l, c, false);
	if (!r)
		oline__raw(l, "claim", "{}", 2);
	else if (render__claim(a->render, r, &claim))
		oline__raw(l, claim.key, claim.json, claim.len);
	else
		oline__json(l, "claim", request__claim_json(r));
	output__end(a->out, l);
}

static void emit_lost(struct agent *a, const char *what, uint64_t count, const char *detail)
{
	json_t *ev = json_pack("{s:s,s:I,s:s}", "source", what, "count", (json_int_t)count,
			       "detail", detail);

	output__emit(a->out, "lost", ev);
}

/* ---- verdicts ---------------------------------------------------------- */

/* What the kernel does with c's next bytes follows from c and the mode:
 * ended (denied), passed (its server no longer protected), held until
 * judged (enforce mode) or mirrored (monitor mode). */
static __u32 conn_action(const struct agent *a, const struct conn *c)
{
	if (c->denied)
		return MCPW_ACT_DROP;
	if (c->unprotected)
		return MCPW_ACT_PASS;
	return a->enforce ? MCPW_ACT_HOLD : MCPW_ACT_MIRROR;
}

/* Writes c's verdict: its action, and how far its bytes are released,
 * passed and copied. */
static void write_verdict(struct agent *a, struct conn *c)
{
	struct mcpw_conn_verdict v = {
		.action = conn_action(a, c),
		.released_end = c->released_end,
		.pass_until = c->pass_until > c->released_end ? c->pass_until : c->released_end,
		.copy_until = c->copy_until,
		.egress_copy_until = c->pending_initialize ? UINT64_MAX : 0,
	};
	int err = kernel__set_verdict(a->kernel, c->cookie, &v);

	if (err)
		pr_warn("cannot write the verdict of connection %llu: %s",
			(unsigned long long)c->cookie, strerror(-err));
}

/*
 * Ends the sockets queued to be ended: one walk of a network namespace's
 * sockets (bpf_sock_destroy from a TCP iterator) for all of its queued
 * ones. A walk visits every bucket of the namespace's TCP table: ~3 ms
 * here with a handful of sockets, ~7 ms with 20,000, whatever the number
 * of cookies. Ending each denied connection with walks of its own (one a
 * socket, both ends) let any client cost the daemon that much a request
 * it was refused (a full CPU at ~150 refusals a second). Sockets are
 * therefore ended by their address where the kernel can (end_socket), and
 * otherwise walks are at least END_SPACING_NS apart unless `now` (a
 * connection nothing in the kernel holds): what is queued meanwhile is
 * ended at the next tick, together. The kernel already drops every byte
 * of a denied connection; only the reset waits.
 */
static void end_queued(struct agent *a, bool now)
{
	uint64_t cookies[END_QUEUE], t = now_ns();
	size_t i, j, n;
	int err;

	if (!a->end_n || (!now && a->end_n < END_QUEUE && t - a->last_end_ns < END_SPACING_NS))
		return;
	a->last_end_ns = t;
	while (a->end_n) {
		struct end_req first = a->end_q[0];

		for (i = j = n = 0; i < a->end_n; i++) {
			if (a->end_q[i].netns == first.netns)
				cookies[n++] = a->end_q[i].cookie;
			else
				a->end_q[j++] = a->end_q[i];
		}
		a->end_n = j;
		a->end_walks++;
		err = kernel__destroy(a->kernel, cookies, n, netns_fd(a, first.netns, first.pid));
		if (err)
			pr_debug("ending %zu sockets: %s", n, strerror(-err));
	}
}

/*
 * Ends a socket: its tuple is t (s = its own end), its namespace netns (pid:
 * a process in it). By its address through sock_diag, at once; where the
 * kernel cannot, queued for end_queued()'s walk.
 */
static void end_socket(struct agent *a, uint64_t cookie, const struct mcpw_tuple *t,
		       uint32_t netns, uint32_t pid)
{
	int err;

	if (!cookie)
		return;
	err = kernel__end_socket(a->kernel, cookie, t, netns_fd(a, netns, pid));
	/* -ENOENT: closed already (the cookie names no other socket). */
	if (err == 0 || err == -ENOENT) {
		a->end_by_address++;
		return;
	}
	if (err != -EOPNOTSUPP)
		pr_debug("ending socket %llu by its address: %s", (unsigned long long)cookie,
			 strerror(-err));
	if (a->end_n == END_QUEUE)
		end_queued(a, true);
	a->end_q[a->end_n++] = (struct end_req){ .cookie = cookie, .netns = netns, .pid = pid };
}

/* Ends a denied connection: nothing more passes, both ends are reset. */
static void deny_conn(struct agent *a, struct conn *c)
{
	struct mcpw_tuple peer = conn__reversed(&c->tuple);

	c->denied = true;
	forget_pending(a, c);
	write_verdict(a, c);
	free(c->held);
	c->held = NULL;
	c->held_len = c->held_cap = 0;
	end_socket(a, c->cookie, &c->tuple, c->netns, c->server->pid);
	end_socket(a, c->client_cookie, &peer, c->client->netns, c->client->pid);
	end_queued(a, false);
}

/*
 * A release in two halves, so that what is made from the request's bytes
 * (its fast-path template) is made once they are on their way, not before:
 * inject_held() sends the held bytes up to stream offset `end` to the
 * server, and they stay in the buffer until drop_released() takes them out
 * and writes the verdict that lets what follows them pass. sent_ns (may be
 * NULL): when they were sent, which is the request's verdict latency; the
 * verdict written after them is not on its path (~12 µs at a first
 * sight's p50 here).
 */
static int inject_held(struct agent *a, struct conn *c, uint64_t end, uint64_t *sent_ns)
{
	size_t off, len;
	int err;

	if (end > c->released_end) {
		off = (size_t)(c->released_end - c->held_base);
		len = (size_t)(end - c->released_end);
		if (off + len > c->held_len)
			return -EINVAL;	/* never release what was not held */
		err = kernel__inject(a->kernel, c->cookie, c->held + off, len);
		if (err)
			return err;
		c->released_end = end;
	}
	if (sent_ns)
		*sent_ns = now_ns();
	return 0;
}

static void drop_released(struct agent *a, struct conn *c)
{
	size_t n;

	if (c->released_end <= c->held_base)
		return;		/* nothing sent since the last drop */
	n = (size_t)(c->released_end - c->held_base);
	memmove(c->held, c->held + n, c->held_len - n);
	c->held_len -= n;
	c->held_base = c->released_end;
	if (!c->held_len) {
		free(c->held);	/* most connections are idle most of the time */
		c->held = NULL;
		c->held_cap = 0;
	}
	c->first_hold_ns = c->held_len ? now_ns() : 0;
	write_verdict(a, c);
}

/* Both halves at once. */
static int release(struct agent *a, struct conn *c, uint64_t end)
{
	int err = inject_held(a, c, end, NULL);

	if (!err)
		drop_released(a, c);
	return err;
}

static bool selectors_use_pods(const struct policy_workload *w, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (w[i].has_pod)
			return true;
	return false;
}

static bool uses_pods(const struct policy *p)
{
	size_t i;

	for (i = 0; i < p->n_clients; i++)
		if (selectors_use_pods(p->clients[i].workloads, p->clients[i].n_workloads))
			return true;
	for (i = 0; i < p->n_servers; i++)
		if (selectors_use_pods(p->servers[i].launchers, p->servers[i].n_launchers))
			return true;
	return false;
}

static bool uses_tools(const struct policy *p)
{
	size_t i;

	for (i = 0; i < p->n_clients; i++)
		if (p->clients[i].has_tools)
			return true;
	return false;
}

static bool uses_client_info(const struct policy *p)
{
	size_t i;

	for (i = 0; i < p->n_clients; i++)
		if (p->clients[i].claims.client_info_name)
			return true;
	return false;
}

/* What the daemon's paths need to know of a policy, at start and reload. */
static void policy_facts(struct agent *a, const struct policy *p)
{
	a->policy_uses_client_info = uses_client_info(p);
	a->policy_uses_pods = uses_pods(p);
	a->judge_on_head = !a->policy_uses_client_info && !uses_tools(p);
}

/*
 * After an allowed request, the template that lets the kernel pass later
 * requests on this connection whose header block is the same byte for byte
 * (but for the Content-Length digits), when nothing in a body could change
 * the verdict: no tool limits, no clientInfo-based identities, no 2026-era
 * header checks, a plain Content-Length body (NULL otherwise: everything
 * else keeps coming here).
 */
static struct mcpw_fast_tmpl *fast_template(struct agent *a, struct conn *c,
					    const struct request *r, const struct decision *d,
					    const struct http_message *m)
{
	struct mcpw_fast_tmpl *t;
	size_t head_len = (size_t)(m->head_end - m->start), off, cl_off, cl_len;
	const char *head;

	if (!a->enforce || d->alert || d->verdict != VERDICT_ALLOW || !d->client ||
	    d->client->has_tools || a->policy_uses_client_info || r->era == MCP_ERA_STATELESS ||
	    strcmp(m->method, "POST") || m->chunked || m->content_length < 0 ||
	    head_len > MCPW_FAST_HEAD_MAX || m->start < c->held_base ||
	    http_message__header(m, "mcp-method") || http_message__header(m, "mcp-name") ||
	    http_message__header(m, "expect") || r->is_initialize)
		return NULL;
	off = (size_t)(m->start - c->held_base);
	if (off + head_len > c->held_len)
		return NULL;
	head = c->held + off;
	if (!http__content_length_digits(head, head_len, &cl_off, &cl_len))
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->gen = ++a->fast_gen;
	t->head_len = (__u32)head_len;
	t->cl_off = (__u32)cl_off;
	t->cl_len = (__u32)cl_len;
	t->start = m->end;
	t->max_body = a->limits.max_body_bytes;
	memcpy(t->head, head, head_len);
	return t;
}

/*
 * Installed once the request it was made from is released: the template
 * serves the connection's next requests, not this one, and its two map
 * updates stay off this request's path. A next request that arrives in
 * between is held and judged as usual (the template starts at this
 * request's end, which the kernel has then passed).
 */
static void install_fast(struct agent *a, struct conn *c, const struct decision *d,
			 struct mcpw_fast_tmpl *t)
{
	if (kernel__set_fast(a->kernel, c->cookie, t) == 0)
		inst_install(a, c, d->client->name, t);
	free(t);
}

/* The kernel passed requests on its fast path: the stream resumes at the
 * request it held (the first one that was not the same). */
static bool resync_after_fast(struct agent *a, struct conn *c, const struct mcpw_data_event *e)
{
	struct mcpw_conn_state st;

	if (e->offset < c->next_off || c->held_len ||
	    kernel__get_state(a->kernel, c->cookie, &st))
		return false;
	/* Held from the next request's first byte, or from within the body of
	 * the one the kernel passed last (a segment shown again, or merged
	 * with the next request's: see srv_verdict). */
	if (e->offset != st.fast_next &&
	    !(e->offset < st.fast_next && st.fast_next == st.fast_pass_until))
		return false;
	/* A fresh parser starts at the held request (see on_data). */
	http_parser__free(c->parser);
	c->parser = NULL;
	c->released_end = c->held_base = c->next_off = e->offset;
	c->parsed_end = c->skip_until = st.fast_next;
	forget_pending(a, c);
	return true;
}

/* The kernel passed the rest of a request judged on its head: the stream
 * resumes at the first segment it held again, inside that range (its start
 * is then released unparsed, see skip_until) or at its end. */
static bool resync_after_head(struct conn *c, const struct mcpw_data_event *e)
{
	if (e->offset < c->next_off || e->offset > c->pass_until || c->held_len)
		return false;
	http_parser__free(c->parser);
	c->parser = NULL;
	c->released_end = c->held_base = c->next_off = e->offset;
	if (c->parsed_end < e->offset)
		c->parsed_end = e->offset;
	return true;
}

/* A release that did not happen ends the connection: what follows the
 * bytes could not be delivered in order. */
static void release_failed(struct agent *a, struct conn *c, int err, const char *what)
{
	if (err == -ENOTCONN) {
		c->denied = true;	/* the server side is gone */
		return;
	}
	pr_warn("cannot release %s on connection %llu (%s); ending it", what,
		(unsigned long long)c->cookie, strerror(-err));
	deny_conn(a, c);
}

/* Writes c's verdict for what it is now, with every byte it holds on its
 * way (what: the bytes, should that fail). */
static void release_all(struct agent *a, struct conn *c, const char *what)
{
	int err;

	if (!c->held_len)
		write_verdict(a, c);
	else if ((err = release(a, c, c->held_base + c->held_len)))
		release_failed(a, c, err, what);
}

static void finish_request(struct agent *a, struct conn *c, struct request *r,
			   struct decision *d, const struct http_message *m)
{
	struct mcpw_fast_tmpl *t;
	uint64_t end = m->end, released_ns = 0;
	/* Passed before a switch to enforce mode: reported as monitor mode
	 * does, and the connection's next request waits for its verdict. */
	bool delivered = a->enforce && end <= c->released_end;
	bool blocked = a->enforce && d->deny && !delivered;
	int err;

	if (!a->enforce || blocked || delivered) {
		emit_decision(a, c, r, d, blocked, 0);
		if (blocked)
			deny_conn(a, c);
		return;
	}
	/* Made from its head once it is sent, installed once the kernel has
	 * its verdict. */
	err = inject_held(a, c, end, &released_ns);
	t = err ? NULL : fast_template(a, c, r, d, m);
	drop_released(a, c);
	if (t)
		install_fast(a, c, d, t);
	/* Reported once the request is on its way: the event is not on the
	 * request's path. */
	emit_decision(a, c, r, d, false, released_ns);
	if (err)
		release_failed(a, c, err, "an allowed request");
}

static void handle_request(struct agent *a, struct conn *c, const struct http_message *m)
{
	struct decision d;
	struct request r;

	if (request__read(&r, m, a->keys, a->tokens)) {
		pr_err("out of memory reading a request");
		return;
	}
	c->requests++;
	decider__judge(a->decider, c, &r, now_ns(), &d);
	if (r.is_initialize && !(a->enforce && d.deny)) {
		/* Its response issues the session id; remember who asked. */
		free(c->init_client_name);
		free(c->init_client_version);
		c->init_client_name = r.client_name ? strdup(r.client_name) : NULL;
		c->init_client_version = r.client_version ? strdup(r.client_version) : NULL;
		c->pending_initialize++;
	}
	if (r.session_id && strcmp(m->method, "DELETE") == 0 && !(a->enforce && d.deny))
		decider__session_ended(a->decider, r.session_id);
	finish_request(a, c, &r, &d, m);
	json_decref(d.related);
	request__release(&r);
}

/*
 * A large request judged once its head and the first bytes of its body are
 * in, instead of once all of it is: held whole, its bytes would count as
 * unread at the server's socket until released, and a body larger than the
 * socket's receive window (128 KiB by default) would close that window and
 * stall the client on its zero-window probe (~200 ms; see README). Only
 * where no body can change a verdict (agent->judge_on_head: no tool limits,
 * no clientInfo identities), for a session-era POST with a Content-Length
 * body within the inspected limit, whose body starts as a JSON-RPC request
 * object naming a method other than initialize. The kernel passes the rest
 * of the body (pass_until); as on the fast path, a body that breaks after
 * its first bytes is not seen.
 */
#define HEAD_JUDGE_MIN_BODY (32u << 10)
#define HEAD_JUDGE_MAX_SCAN (64u << 10)	/* body bytes searched for the method */

static void judge_on_head(struct agent *a, struct conn *c, const struct http_message *partial)
{
	uint64_t held_end = c->held_base + c->held_len, released_ns = 0;
	struct mcpw_fast_tmpl *t;
	struct http_message m;
	struct mcp_prefix pre;
	struct decision d;
	struct request r;
	size_t body_off, body_len;
	int found, err;

	/* Called for every record fed while a request is incomplete: what
	 * needs no look at the request first. */
	if (!a->enforce || !a->judge_on_head || c->blind || c->denied)
		return;
	/* Stream offsets, as process_requests() makes them. */
	m = *partial;
	m.start += c->parser_base;
	m.head_end += c->parser_base;
	if (c->no_head_judge_at == m.start + 1 || strcmp(m.method, "POST") || m.chunked ||
	    m.content_length < HEAD_JUDGE_MIN_BODY ||
	    (unsigned long long)m.content_length > a->limits.max_body_bytes ||
	    m.start < c->held_base || m.head_end > held_end ||
	    http_message__header(&m, "mcp-method") || http_message__header(&m, "mcp-name") ||
	    http_message__header(&m, "expect"))
		return;
	m.end = m.head_end + (uint64_t)m.content_length;
	body_off = (size_t)(m.head_end - c->held_base);
	body_len = (size_t)(held_end - m.head_end);
	found = mcp__prefix(c->held + body_off, body_len < HEAD_JUDGE_MAX_SCAN ? body_len :
			    HEAD_JUDGE_MAX_SCAN, &pre);
	if (found == 0 && body_len < HEAD_JUDGE_MAX_SCAN)
		return;		/* more of the body first */
	if (found != 1 || strcmp(pre.method, "initialize") == 0) {
		c->no_head_judge_at = m.start + 1;	/* held whole, judged as usual */
		return;
	}
	if (request__read_head(&r, &m, a->keys, a->tokens)) {
		pr_err("out of memory reading a request");
		return;
	}
	if (r.malformed || r.era != MCP_ERA_SESSION) {
		c->no_head_judge_at = m.start + 1;
		request__release(&r);
		return;
	}
	r.method = pre.method;
	r.id = pre.id[0] ? pre.id : NULL;
	c->requests++;
	a->judged_on_head++;
	decider__judge(a->decider, c, &r, now_ns(), &d);
	/* All that was fed is this request's. */
	forget_pending(a, c);
	c->parsed_end = m.end;
	if (d.deny) {
		emit_decision(a, c, &r, &d, true, 0);
		deny_conn(a, c);
	} else {
		/* The rest of the body passes in the kernel, and whatever of it
		 * the kernel held meanwhile is released unparsed. */
		c->pass_until = c->skip_until = m.end;
		err = inject_held(a, c, held_end, &released_ns);
		t = err ? NULL : fast_template(a, c, &r, &d, &m);
		drop_released(a, c);
		if (t)
			install_fast(a, c, &d, t);
		emit_decision(a, c, &r, &d, false, released_ns);
		if (err)
			release_failed(a, c, err, "an allowed request");
	}
	c->req_start_ktime = 0;
	json_decref(d.related);
	request__release(&r);
	/* m's head lives in the parser: freed last. The next request gets a
	 * parser of its own (on_data). */
	http_parser__free(c->parser);
	c->parser = NULL;
}

/* The alert of a stream failure: malformed, blocked in enforce mode. */
static void stream_alert(struct agent *a, struct conn *c, const char *code, const char *why)
{
	struct decision d = { .verdict = VERDICT_MALFORMED, .deny = true, .alert = true };

	snprintf(d.reason, sizeof(d.reason), "Malformed request (%s): %s", code, why);
	emit_decision(a, c, NULL, &d, a->enforce, 0);
}

/* A stream that cannot be parsed, or bytes that were lost: judged as
 * malformed (enforce: denied), never passed. */
static void stream_failure(struct agent *a, struct conn *c, const char *code, const char *why)
{
	stream_alert(a, c, code, why);
	if (a->enforce) {
		deny_conn(a, c);
	} else {
		c->blind = true;
		forget_pending(a, c);
	}
}

/* A request is on its way on c (bytes fed, not yet a whole request), not
 * waiting on anything but its own bytes. */
static bool request_incomplete(const struct conn *c)
{
	return c->pending && c->pending_since_ns && c->open_seen && !c->denied && !c->blind &&
	       !c->pod_wait && !c->remote_wait;
}

static int by_request_start(const void *x, const void *y)
{
	const struct conn *a = *(const struct conn *const *)x, *b = *(const struct conn *const *)y;

	return a->pending_since_ns < b->pending_since_ns ? -1 :
	       a->pending_since_ns > b->pending_since_ns;
}

/*
 * Room for `need` more unjudged bytes, made by ending the connections
 * whose incomplete requests are the oldest (SHED_MIN_AGE_NS or more; not
 * c's): a client that trickles partial requests on many connections (no
 * token needed, only a connection) could otherwise fill the limit and
 * have every other client's next request denied. Whole requests arrive in
 * milliseconds; a trickle ages. Ends enough to fall to 7/8 of the limit,
 * so that one scan serves many records. Whether there is room now.
 */
static bool shed_oldest(struct agent *a, struct conn *except, uint64_t need)
{
	uint64_t now = now_ns(), target = a->max_pending / 8 * 7;
	struct conn **v = NULL;
	struct hmap_iter it;
	size_t n = 0, cap = 0, i;
	void *val;

	/* A scan that found nothing old enough is not repeated for every
	 * record that follows: the limit kept full by young requests would
	 * cost a walk of every connection a record. */
	if (now < a->shed_next_scan_ns)
		return false;

	hmap__iter_init(a->conns, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct conn *c = val, **g;

		if (c == except || !request_incomplete(c) ||
		    now - c->pending_since_ns < SHED_MIN_AGE_NS)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			g = realloc(v, cap * sizeof(*v));
			if (!g)
				break;
			v = g;
		}
		v[n++] = c;
	}
	qsort(v, n, sizeof(*v), by_request_start);
	for (i = 0; i < n && a->pending_total + need > target; i++) {
		char why[200];

		snprintf(why, sizeof(why), "the agent holds its limit of unjudged bytes across "
			 "connections, and this request, still incomplete after %llu ms, was the "
			 "oldest", (unsigned long long)((now - v[i]->pending_since_ns) / 1000000));
		a->requests_shed++;
		stream_failure(a, v[i], "over_limit", why);
	}
	free(v);
	if (a->pending_total + need <= a->max_pending)
		return true;
	a->shed_next_scan_ns = now + SHED_RESCAN_NS;
	return false;
}

/*
 * Ends c if its request has taken longer than --request-timeout to arrive
 * whole: held bytes the server never sees, and memory, for as long as a
 * client cares to trickle them. In monitor mode the bytes reach the
 * server anyway: the alert says what enforce mode would do, once a
 * request, and the connection stays watched (a stream failure would stop
 * reading it, and a slow request would buy the rest of the connection
 * out of sight); the memory is the limit's (shed_oldest).
 */
static void check_request_time(struct agent *a, struct conn *c, uint64_t now)
{
	char why[160];

	if (!request_incomplete(c) || now - c->pending_since_ns <= a->request_timeout_ns ||
	    c->late_reported == c->pending_since_ns)
		return;
	snprintf(why, sizeof(why), "the request did not arrive whole within %llu s "
		 "(--request-timeout)", (unsigned long long)(a->request_timeout_ns / 1000000000ull));
	a->requests_timed_out++;
	if (a->enforce) {
		stream_failure(a, c, "request_timeout", why);
		return;
	}
	c->late_reported = c->pending_since_ns;
	stream_alert(a, c, "request_timeout", why);
}

#define POD_WAIT_NS (2000ull * 1000000)
/* How long a remote client's first requests wait for its node's attestation. */
#define REMOTE_WAIT_NS (1500ull * 1000000)

/*
 * A workload in a pod whose metadata has not arrived cannot be matched
 * against pod selectors yet: its requests wait (held in enforce mode), at
 * most POD_WAIT_NS from the connection's start, for the pod watch. After
 * that they are judged with the pod still pending, which pod selectors do
 * not match: never silently allowed.
 */
static bool waiting_for_pod(struct agent *a, struct conn *c)
{
	if (!a->policy_uses_pods || !c->client->pod || !c->client->pod->pending)
		return false;
	if (now_ns() - c->opened_ns > POD_WAIT_NS)
		return false;
	if (a->pods) {
		struct pod_info *p = podmeta__lookup(a->pods, c->client->pod->uid);

		if (p && !p->pending) {
			struct workload w;

			workload__copy(&w, c->client);
			podmeta__put(w.pod);
			w.pod = p;
			conn__set_client(c, &w);
			c->render_gen++;
			return false;
		}
		podmeta__put(p);
	}
	return true;
}

static void process_requests(struct agent *a, struct conn *c)
{
	struct http_message *m;
	const char *err;

	if (waiting_for_pod(a, c)) {
		c->pod_wait = true;
		return;
	}
	c->pod_wait = false;
	if (c->remote_wait) {
		if (now_ns() - c->opened_ns < REMOTE_WAIT_NS)
			return;
		/* The client's node never said: judged as unattributed. */
		struct workload w;

		c->remote_wait = false;
		c->render_gen++;
		workload__copy(&w, c->client);
		w.why_unattributed = "no agent in the fleet attested this connection's "
			"client in time";
		conn__set_client(c, &w);
	}

	if (!c->parser)
		return;
	while (!c->denied && (m = http_parser__next(c->parser))) {
		uint64_t done;

		/* Stream offsets: the parser counts from where it started. */
		m->start += c->parser_base;
		m->head_end += c->parser_base;
		m->end += c->parser_base;
		done = m->end > c->parsed_end ? m->end - c->parsed_end : 0;

		done = done < c->pending ? done : c->pending;
		c->pending -= done;
		a->pending_total -= done;
		/* What is left is the next request's: it started no later
		 * than the newest record. */
		if (done)
			c->pending_since_ns = c->pending ? c->last_rec_read_ns : 0;
		c->parsed_end = m->end;
		handle_request(a, c, m);
		/* Bytes after this request were already fed: the next one
		 * started no later than the newest record. */
		if (c->parser_base + http_parser__offset(c->parser) > m->end) {
			c->req_start_ktime = c->last_rec_ktime;
			c->req_start_read_ns = c->last_rec_read_ns;
		} else {
			c->req_start_ktime = 0;
		}
		http_message__free(m);
	}
	if (c->denied || c->blind)
		return;
	err = http_parser__error(c->parser);
	if (err) {
		char why[160];

		snprintf(why, sizeof(why), "the HTTP stream is not valid HTTP/1.1 (%s)", err);
		stream_failure(a, c, err, why);
		return;
	}
	if (http_parser__partial(c->parser)) {
		judge_on_head(a, c, http_parser__partial(c->parser));
		if (!c->parser)
			return;
	}
	/* Idle between requests: the parser's buffers go until needed. */
	if (c->parser_base + http_parser__offset(c->parser) == c->parsed_end) {
		http_parser__free(c->parser);
		c->parser = NULL;
	}
}

/* A held request's first buffer: most requests fit, and glibc serves it
 * from its small bins (below 1 KiB). A larger first one (it was 4 KiB)
 * made every connection's first malloc consolidate all freed small chunks
 * first: 2-3% of the daemon's CPU under first sights (perf, P2). */
#define HELD_FIRST_CAP 1000

static int append_held(struct conn *c, const char *data, size_t len)
{
	if (c->held_len + len > c->held_cap) {
		size_t cap = c->held_cap ? c->held_cap : HELD_FIRST_CAP;
		char *n;

		while (cap < c->held_len + len)
			cap *= 2;
		n = realloc(c->held, cap);
		if (!n)
			return -ENOMEM;
		c->held = n;
		c->held_cap = cap;
	}
	memcpy(c->held + c->held_len, data, len);
	if (!c->held_len)
		c->first_hold_ns = now_ns();
	c->held_len += len;
	return 0;
}

static void extend_mirror(struct agent *a, struct conn *c)
{
	if (a->enforce || c->blind || c->next_off + MIRROR_WINDOW / 2 < c->copy_until)
		return;
	c->copy_until = c->next_off + MIRROR_WINDOW;
	write_verdict(a, c);
}

/*
 * A response head on the way to the client. Heads are copied only while an
 * initialize on this connection awaits its response; a new Mcp-Session-Id
 * there is a session the server issued on this connection. Once no
 * initialize is pending the copying stops (responses of judged
 * connections never come to the daemon).
 */
static void handle_egress(struct agent *a, struct conn *c, const struct mcpw_data_event *e)
{
	const char *p = e->data, *end = e->data + e->len, *line, *eol;
	char sid[256];

	if (e->len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || !c->pending_initialize)
		return;
	/* Interim responses (100 Continue) are not the answer. */
	if (e->len > 9 && p[9] == '1')
		return;
	line = memchr(p, '\n', (size_t)(end - p));
	while (line && ++line < end) {
		eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol || eol == line || (eol == line + 1 && line[0] == '\r'))
			break;	/* end of head (or of what was copied) */
		if ((size_t)(eol - line) > 15 && strncasecmp(line, "mcp-session-id:", 15) == 0) {
			const char *v = line + 15;
			size_t n;

			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			n = (size_t)(eol - v);
			while (n && (v[n - 1] == '\r' || v[n - 1] == ' ' || v[n - 1] == '\t'))
				n--;
			if (n && n < sizeof(sid)) {
				memcpy(sid, v, n);
				sid[n] = '\0';
				decider__session_issued(a->decider, sid, c, now_ns());
			}
			break;
		}
		line = eol;
	}
	/* This head answers the oldest pending initialize. */
	if (--c->pending_initialize == 0 && !c->denied)
		write_verdict(a, c);
}

static void report_failopen(struct agent *a, struct conn *c, uint64_t bytes)
{
	json_t *ev;

	report_connection(a, c);
	ev = json_pack("{s:s,s:I,s:s}", "source", "fail_open", "count", (json_int_t)bytes,
		       "detail", "bytes passed to the server unjudged while the agent was not "
		       "running (policy fail: open)");
	if (c->server_name)
		json_object_set_new(ev, "server", json_string(c->server_name));
	json_object_set_new(ev, "workload", workload__json(c->client));
	json_object_set_new(ev, "connection", conn__json(c));
	output__emit(a->out, "lost", ev);
}

/*
 * Bytes the kernel passed unjudged while the daemon was away (fail: open)
 * leave a gap in what we saw. Judging resumes at the next held segment,
 * which starts a new request on a well-behaved client; if it does not, the
 * parser says so and the connection is judged malformed.
 */
/* The stream read again from off on, a fresh parser there: the bytes
 * before it passed without the agent. */
static void resume_at(struct agent *a, struct conn *c, uint64_t off)
{
	http_parser__free(c->parser);
	c->parser = NULL;
	c->released_end = c->held_base = c->next_off = c->parsed_end = off;
	forget_pending(a, c);
}

static bool resync_after_failopen(struct agent *a, struct conn *c,
				  const struct mcpw_data_event *e)
{
	struct mcpw_conn_state st;

	if (e->offset < c->next_off || kernel__get_state(a->kernel, c->cookie, &st) ||
	    !(st.flags & MCPW_ST_FAILOPEN) || c->held_len)
		return false;
	resume_at(a, c, e->offset);
	return true;
}

/* A switch to enforce mode found the connection mirrored: the kernel
 * passed bytes past its copy window uncopied, and holds from some byte on.
 * The stream resumes at the first held one. */
static bool resync_after_mirror(struct agent *a, struct conn *c, const struct mcpw_data_event *e)
{
	if (!c->mirrored || !a->enforce || !(e->flags & MCPW_DATA_HELD) ||
	    e->offset < c->next_off || c->held_len)
		return false;
	resume_at(a, c, e->offset);
	c->mirrored = false;
	return true;
}

/* Protected again after passing unread (a reload named its server
 * again): the stream resumes at its next record. */
static bool resync_after_unread(struct agent *a, struct conn *c, const struct mcpw_data_event *e)
{
	if (!c->reprotected || e->offset < c->next_off || c->held_len)
		return false;
	resume_at(a, c, e->offset);
	return true;
}

/* A fast head's last body, parsed: the next request with the same head
 * and the same body bytes (a client repeating a call) is not parsed again.
 * Bodies up to FAST_BODY_MAX bytes. Most clients number their calls, so
 * bodies rarely repeat: a kept body that was never reused is replaced only
 * every FAST_BODY_RETRY misses, not copied on every request. */
#define FAST_BODY_MAX 4096
#define FAST_BODY_RETRY 16

struct fast_body {
	char *raw;
	size_t len;
	struct mcp_body parsed;
	bool reused;		/* since it was kept */
	unsigned int misses;	/* since it was kept */
};

/*
 * A request the kernel passed on the fast path: judged already (its header
 * block is a judged one's), so it only needs its `request` event, and a
 * judgment to keep live state (instances, sessions) current. Should that
 * judgment find something now, the request was already delivered: the
 * alert says so (alerted) and the connection's templates are dropped, so
 * its next request waits for a verdict again. cache: the body cache of the
 * fast head m's head came from, or NULL; a hit lends its parse to the
 * request, a miss leaves the request's parse in it for the next one.
 * memo: the judgment last made with m's head, or NULL.
 */
static void judge_fast(struct agent *a, struct conn *c, const struct http_message *m,
		       const struct http_message *head_only, uint32_t seg_len,
		       struct fast_body *cache, struct decider_memo *memo)
{
	struct http_message head;
	struct decision d = {};
	struct request r;
	bool have = false, hit = false;

	if (m && cache && cache->raw && cache->len == m->body_len &&
	    memcmp(cache->raw, m->body, m->body_len) == 0) {
		hit = true;
		have = request__read_parsed(&r, m, a->keys, a->tokens, &cache->parsed) == 0;
		cache->reused = true;
		a->fast_bodies_reused++;
	} else if (m && request__read(&r, m, a->keys, a->tokens) == 0) {
		have = true;
	} else if (!m && head_only) {
		head = *head_only;
		head.body_len = seg_len > head.head_end ? seg_len - head.head_end : 0;
		have = request__read_head(&r, &head, a->keys, a->tokens) == 0;
		if (have) {
			decider__session_client_info(a->decider, &r);
			d.verdict = VERDICT_ALLOW;
		}
	}
	if (!have) {
		a->fast_unread++;	/* reported as lost: never silently */
		return;
	}
	c->requests++;
	if (m && memo)
		decider__judge_again(a->decider, c, &r, now_ns(), &d, memo);
	else if (m)
		decider__judge(a->decider, c, &r, now_ns(), &d);
	a->emitting_fast = true;
	emit_decision(a, c, &r, &d, false, 0);
	a->emitting_fast = false;
	if (d.alert) {
		/* The connection may read its process's template in place
		 * (MCPW_ST_INST_REF): that goes too, whatever the instance. */
		struct mcpw_inst_key ik = { .tgid = c->client->pid, .start_ns = c->client->start_ns };

		kernel__del_fast(a->kernel, c->cookie);
		inst_drop(a, inst_hash(&ik));
		if (!c->client->remote && c->client->cgroup_id)
			inst_forget_instance(a, c->client->cgroup_id);
	}
	json_decref(d.related);
	if (cache && m && !hit && r.has_body && m->body_len <= FAST_BODY_MAX &&
	    (!cache->raw || cache->reused || ++cache->misses >= FAST_BODY_RETRY)) {
		char *raw = malloc(m->body_len ? m->body_len : 1);

		if (raw) {
			/* The request's parse moves into the cache. */
			memcpy(raw, m->body, m->body_len);
			free(cache->raw);
			mcp_body__release(&cache->parsed);
			cache->raw = raw;
			cache->len = m->body_len;
			cache->parsed = r.body;
			cache->reused = false;
			cache->misses = 0;
			r.body_shared = true;
		}
	}
	request__release(&r);
}

/*
 * The head of the last kernel-passed request parsed on each recent
 * connection. The kernel passes a request only when its header block is a
 * judged one's but for the Content-Length digits, so the next request on
 * the connection usually has this very head: it is matched byte for byte
 * (the digits aside) and only the body is read. A client process that
 * opens a connection per request (churn) sends one head on each: the
 * first request of a connection is matched against its process's last
 * one. Bounded: FAST_HEAD_SLOTS connections by cookie, as many processes
 * by pid and start time (the second half of the array). A key only says
 * where to look: a head is reused only when its bytes match, so two keys
 * sharing a slot cost a parse, never a wrong one.
 */
#define FAST_HEAD_SLOTS 256

struct fast_head {
	uint64_t cookie;		/* the key (cookie or process); 0: empty */
	char *raw;			/* the head, blank line included */
	size_t len;
	size_t cl_off, cl_len;		/* its Content-Length digits */
	struct http_message *msg;	/* parsed from it (body: the first one's) */
	struct fast_body body;		/* the last body judged with it */
	struct decider_memo memo;	/* the last judgment made with it */
};

static void fast_head_clear(struct fast_head *h)
{
	free(h->raw);
	http_message__free(h->msg);
	free(h->body.raw);
	mcp_body__release(&h->body.parsed);
	decider__memo_clear(&h->memo);
	memset(h, 0, sizeof(*h));
}

static void fast_head_forget(struct agent *a, uint64_t cookie)
{
	struct fast_head *h = a->fast_heads ? &a->fast_heads[cookie % FAST_HEAD_SLOTS] : NULL;

	if (h && h->cookie == cookie)
		fast_head_clear(h);
}

/* The slot of c's client process, or NULL (not a local process). */
static struct fast_head *fast_head_of_process(struct agent *a, const struct conn *c,
					      uint64_t *key)
{
	const struct workload *w = c->client;

	if (!w || !w->pid)
		return NULL;
	*key = ((uint64_t)w->pid << 32 ^ w->start_ns) | 1;
	return &a->fast_heads[FAST_HEAD_SLOTS + *key % FAST_HEAD_SLOTS];
}

/* Keeps m's head (it starts at data[0]) in h, under key. */
static bool fast_head_keep(struct fast_head *h, uint64_t key, const char *data,
			   struct http_message *m)
{
	size_t len = (size_t)(m->head_end - m->start), off, n;

	if (m->start != 0 || m->chunked || m->content_length < 0 ||
	    !http__content_length_digits(data, len, &off, &n))
		return false;
	fast_head_clear(h);
	h->raw = malloc(len);
	if (!h->raw)
		return false;
	memcpy(h->raw, data, len);
	h->len = len;
	h->cl_off = off;
	h->cl_len = n;
	h->msg = m;
	h->cookie = key;
	return true;
}

/* The request in data[0, n) has the kept head but for its Content-Length:
 * its head length and Content-Length, else false. */
static bool fast_head_match(const struct fast_head *h, const char *data, size_t n,
			    size_t *head_len, long long *cl)
{
	size_t d = 0, rest = h->len - h->cl_off - h->cl_len;
	long long v = 0;

	if (n < h->cl_off || memcmp(data, h->raw, h->cl_off))
		return false;
	while (h->cl_off + d < n && d <= 10 && data[h->cl_off + d] >= '0' &&
	       data[h->cl_off + d] <= '9')
		v = v * 10 + (data[h->cl_off + d++] - '0');
	if (d == 0 || d > 10 || h->cl_off + d + rest > n ||
	    memcmp(data + h->cl_off + d, h->raw + h->cl_off + h->cl_len, rest))
		return false;
	*head_len = h->cl_off + d + rest;
	*cl = v;
	return true;
}

/* Judges the record's request with h's parsed head, if its head is h's
 * but for the Content-Length and its whole body is in the record. */
static bool fast_head_reuse(struct agent *a, struct conn *c, struct fast_head *h,
			    const struct mcpw_data_event *e)
{
	struct http_message same;
	size_t head_len;
	long long cl;

	if (!fast_head_match(h, e->data, e->len, &head_len, &cl) ||
	    head_len + (size_t)cl != e->seg_len || head_len + (size_t)cl > e->len ||
	    (size_t)cl > a->limits.max_body_bytes)
		return false;
	same = *h->msg;
	same.body = (char *)e->data + head_len;
	same.body_len = (size_t)cl;
	same.content_length = cl;
	same.start = 0;
	same.head_end = head_len;
	same.end = head_len + (size_t)cl;
	a->fast_heads_reused++;
	judge_fast(a, c, &same, NULL, e->seg_len, &h->body, &h->memo);
	return true;
}

static void handle_fast_record(struct agent *a, struct conn *c, const struct mcpw_data_event *e)
{
	struct fast_head *h = &a->fast_heads[c->cookie % FAST_HEAD_SLOTS], *hp, *keep = NULL;
	struct http_parser *p;
	struct http_message *m;
	uint64_t pkey = 0;

	if (h->cookie == c->cookie && fast_head_reuse(a, c, h, e))
		return;
	hp = c->requests == 0 ? fast_head_of_process(a, c, &pkey) : NULL;
	if (hp && hp->cookie == pkey && fast_head_reuse(a, c, hp, e))
		return;
	p = http_parser__new(HTTP_REQUEST, &a->limits);
	if (!p) {
		a->fast_unread++;
		return;
	}
	http_parser__feed(p, e->data, e->len);
	m = http_parser__next(p);
	judge_fast(a, c, m, m ? NULL : http_parser__partial(p), e->seg_len, NULL, NULL);
	/* A connection's head is kept from its second request on (most
	 * connections of a churning client send one); a first request's, for
	 * its process's next connections. */
	if (m && !c->denied)
		keep = c->requests >= 2 ? h : hp;
	if (!keep || !fast_head_keep(keep, keep == h ? c->cookie : pkey, e->data, m))
		http_message__free(m);
	http_parser__free(p);
}

/*
 * The events ring is read before the data ring, but a record reserved and
 * not yet committed there stops that read: a fast-path copy can then be
 * read before its connection's open record. Keep it until then.
 */
static void keep_early(struct agent *a, struct conn *c, const struct mcpw_data_event *e,
		       size_t size)
{
	struct early_rec *r;

	if (c->early_bytes + size > EARLY_MAX_BYTES || !(r = malloc(sizeof(*r) + size))) {
		a->early_dropped++;
		return;
	}
	r->next = NULL;
	r->size = size;
	memcpy(r->ev, e, size);
	*(c->early ? c->early_tail : &c->early) = r;
	c->early_tail = &r->next;
	c->early_bytes += size;
}

static void replay_early(struct agent *a, struct conn *c)
{
	struct early_rec *r;

	for (r = c->early; r && !c->blind && !c->denied; r = r->next)
		handle_fast_record(a, c, (const struct mcpw_data_event *)r->ev);
	early_free(c);
}

/* The calling thread (the loop) real-time at the lowest priority, or plain. */
static int go_realtime(void)
{
	struct sched_param sp = { .sched_priority = 1 };

	return sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) ? -errno : 0;
}

static int go_plain(void)
{
	struct sched_param sp = { .sched_priority = 0 };

	return sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &sp) ? -errno : 0;
}

/*
 * Copies of requests the kernel already passed only need their events: no
 * one waits on them, and a batch of thousands run real-time would hold
 * their CPU away from the very server and client they report on for
 * milliseconds. The loop handles them as a plain task and is real-time
 * again before it sleeps (back_to_realtime()).
 */
static void report_as_plain_task(struct agent *a)
{
	if (!a->sched.realtime || a->reporting_plain)
		return;
	if (go_plain() == 0) {
		a->reporting_plain = true;
		a->plain_report_batches++;
	}
}

/*
 * Keeps the calling thread (the loop, or a waker) scheduled as the loop
 * should be: real-time while a->sched says so. Each thread keeps its own
 * *realtime, and changes only when the two differ.
 */
static void sched_in_step(struct agent *a, bool *realtime)
{
	int err;

	if (*realtime == a->sched.realtime)
		return;
	err = a->sched.realtime ? go_realtime() : go_plain();
	if (err)
		pr_warn("cannot make a thread of the event loop %s (%s)",
			a->sched.realtime ? "real-time" : "plain", strerror(-err));
	*realtime = a->sched.realtime;
}

static void back_to_realtime(struct agent *a)
{
	int err;

	if (!a->reporting_plain)
		return;
	a->reporting_plain = false;
	if (a->sched.realtime && (err = go_realtime())) {
		/* Said once: the loop stays plain from now on. */
		a->sched.realtime = false;
		a->sched.resume_ns = 0;
		snprintf(a->scheduling, sizeof(a->scheduling), "normal (SCHED_FIFO refused: %s)",
			 strerror(-err));
		pr_warn("cannot make the event loop real-time again (%s): it stays a plain task",
			strerror(-err));
	}
}

/* Less than half the smallest default receive window: bytes held count as
 * unread at the server's socket until released (see judge_on_head). */
#define SKIP_RELEASE_BATCH (32u << 10)

/*
 * A connection to a port the policy no longer protects (a reload or a
 * restart dropped its server): none of the agent's business any more, as
 * new connections there are not. What it held goes on its way, the kernel
 * passes the rest (srv_verdict looks at the port), and what still comes
 * held (bytes behind ones held before) is released unread.
 */
static void unprotect(struct agent *a, struct conn *c)
{
	if (c->unprotected || c->denied)
		return;
	c->unprotected = true;
	c->pending_initialize = 0;
	http_parser__free(c->parser);
	c->parser = NULL;
	forget_pending(a, c);
	release_all(a, c, "held bytes of a server no longer protected");
}

static void open_conn(struct agent *a, struct conn *c, const struct mcpw_conn_event *e);
static void recover_open(struct agent *a, struct mcpw_conn_event *e);

/* A previous daemon's connection (adopted pinned maps) on a port this
 * policy does not protect: seeding skips those ports, so bytes it held
 * are the first the agent hears of it. Opened here, unprotected. */
static bool open_unprotected(struct agent *a, struct conn *c)
{
	struct mcpw_conn_event ev = { .cookie = c->cookie };

	if (c->open_seen || !kernel__adopted(a->kernel))
		return false;
	recover_open(a, &ev);
	if (!ev.tuple.sport || server_name_for(a, ev.tuple.sport))
		return false;
	open_conn(a, c, &ev);
	return c->unprotected;
}

static void pass_unprotected(struct agent *a, struct conn *c, const struct mcpw_data_event *e)
{
	int err;

	if (!(e->flags & MCPW_DATA_HELD))
		return;
	if (!c->held_len)
		c->released_end = c->held_base = e->offset;	/* passed since: not held */
	if (append_held(c, e->data, e->len)) {
		release_failed(a, c, -ENOMEM, "held bytes of a server no longer protected");
		return;
	}
	err = release(a, c, e->offset + e->len);	/* writes PASS */
	if (err)
		release_failed(a, c, err, "held bytes of a server no longer protected");
}

static int on_data(void *ctx, void *data, size_t size)
{
	struct agent *a = ctx;
	const struct mcpw_data_event *e = data;
	struct conn *c;
	uint32_t skip;

	if (size < offsetof(struct mcpw_data_event, data) || e->len > size -
	    offsetof(struct mcpw_data_event, data))
		return 0;
	if (e->flags & MCPW_DATA_STDIN) {
		stdio__on_stdin(&a->stdio, e);
		return 0;
	}
	if (e->flags & MCPW_DATA_HELD)
		a->held_records++;
	/* A live connection first, then the closed cookies. */
	c = conn_get(a, e->cookie, false);
	if (!c && (was_closed(a, e->cookie) || !(c = conn_get(a, e->cookie, true))))
		return 0;
	if (e->flags & MCPW_DATA_EGRESS) {
		handle_egress(a, c, e);
		return 0;
	}
	if (c->denied)
		return 0;
	if (c->unprotected || ((e->flags & MCPW_DATA_HELD) && open_unprotected(a, c))) {
		pass_unprotected(a, c, e);
		return 0;
	}
	if (e->flags & MCPW_DATA_FAST) {
		report_as_plain_task(a);
		if (c->open_seen && !c->blind)
			handle_fast_record(a, c, e);
		else if (!c->open_seen)
			keep_early(a, c, e, size);
		return 0;
	}
	if (e->offset != c->next_off && !resync_after_fast(a, c, e) &&
	    !resync_after_head(c, e) && !resync_after_failopen(a, c, e) &&
	    !resync_after_mirror(a, c, e) && !resync_after_unread(a, c, e)) {
		char why[160];

		snprintf(why, sizeof(why), "%llu bytes of the stream were lost before the agent "
			 "could read them (the data ring was full)",
			 (unsigned long long)(e->offset - c->next_off));
		c->next_off = e->offset + e->len;
		if (!c->blind)
			stream_failure(a, c, "bytes_lost", why);
		return 0;
	}
	c->next_off = e->offset + e->len;
	c->reprotected = false;
	/* The first `skip` bytes end a request the kernel passed: held, and
	 * on their way at once, never parsed. */
	skip = e->offset >= c->skip_until ? 0 :
	       c->skip_until - e->offset < e->len ? (uint32_t)(c->skip_until - e->offset) : e->len;
	if (a->pending_total + e->len - skip > a->max_pending &&
	    !shed_oldest(a, c, e->len - skip)) {
		stream_failure(a, c, "over_limit", "the agent already holds its limit of unjudged "
			       "bytes across connections");
		return 0;
	}
	if (e->flags & MCPW_DATA_HELD) {
		int err;

		c->mirrored = false;
		if (!c->held_len)
			c->held_base = e->offset;
		if (append_held(c, e->data, e->len)) {
			stream_failure(a, c, "out_of_memory", "the agent ran out of memory");
			return 0;
		}
		/* Released at the range's end, or every SKIP_RELEASE_BATCH bytes
		 * (the rest of a request judged on its head can come this way
		 * whole: one injection per record would cost more than it). */
		if (skip && (e->offset + skip >= c->skip_until ||
			     e->offset + skip - c->released_end >= SKIP_RELEASE_BATCH) &&
		    (err = release(a, c, e->offset + skip))) {
			release_failed(a, c, err, "the end of a passed request");
			return 0;
		}
		/* Held before a switch to monitor mode: on its way now. */
		if (!a->enforce && (err = release(a, c, e->offset + e->len))) {
			release_failed(a, c, err, "bytes held before monitor mode");
			return 0;
		}
	} else if (!c->held_len && e->offset + e->len > c->released_end) {
		/* Passed by the kernel (monitor mode, or before a switch to
		 * enforce mode): delivered, nothing of it to release. */
		c->released_end = c->held_base = e->offset + e->len;
	}
	if (skip == e->len)
		return 0;
	c->pending += e->len - skip;
	a->pending_total += e->len - skip;
	if (c->blind)
		return 0;
	c->last_rec_ktime = e->hdr.ktime_ns;
	c->last_rec_read_ns = now_ns();
	if (!c->pending_since_ns)
		c->pending_since_ns = c->last_rec_read_ns;
	if (!c->req_start_ktime) {
		c->req_start_ktime = e->hdr.ktime_ns;
		c->req_start_read_ns = c->last_rec_read_ns;
	}
	if (!c->parser) {
		c->parser = http_parser__new(HTTP_REQUEST, &a->limits);
		if (!c->parser) {
			stream_failure(a, c, "out_of_memory", "the agent ran out of memory");
			return 0;
		}
		c->parser_base = e->offset + skip;
		c->parsed_end = e->offset + skip;
	}
	http_parser__feed(c->parser, e->data + skip, e->len - skip);
	extend_mirror(a, c);
	if (c->open_seen)
		process_requests(a, c);
	return 0;
}

/* After a reload (and its mode): each open connection under its port's
 * server, if any. */
static void apply_servers(struct agent *a)
{
	struct hmap_iter it;
	void *val;

	hmap__iter_init(a->conns, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct conn *c = val;
		const char *name = server_name_for(a, c->port);

		if (!c->open_seen || c->closing || !c->port)
			continue;
		if (!name) {
			unprotect(a, c);
		} else if (c->unprotected) {
			/* Named again: judged again from its next record on
			 * (mirrored from where the kernel is, in monitor mode). */
			struct mcpw_conn_state st;

			c->unprotected = false;
			c->reprotected = true;
			free(c->server_name);
			c->server_name = strdup(name);
			if (kernel__get_state(a->kernel, c->cookie, &st) == 0)
				c->copy_until = st.bytes_in + MIRROR_WINDOW;
			write_verdict(a, c);
		} else if (!c->server_name || strcmp(c->server_name, name)) {
			free(c->server_name);
			c->server_name = strdup(name);
		}
	}
}

/*
 * A reload that changed the mode, applied to the connections already open.
 * To enforce mode: each one's next bytes are held (what the kernel passed
 * before is delivered: on_data counts it released), and one the agent
 * stopped reading in monitor mode cannot be judged, so it ends. To monitor
 * mode: what is held goes on its way, and the kernel mirrors again.
 */
static void apply_mode(struct agent *a)
{
	struct hmap_iter it;
	void *val;

	hmap__iter_init(a->conns, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct conn *c = val;

		if (c->denied || c->closing || c->unprotected)
			continue;
		if (a->enforce && c->blind) {
			stream_failure(a, c, "unread", "the agent had stopped reading this "
				       "connection in monitor mode; enforce mode ends it");
		} else if (a->enforce) {
			c->mirrored = true;
			write_verdict(a, c);
		} else {
			c->copy_until = c->next_off + MIRROR_WINDOW;
			release_all(a, c, "held bytes on the switch to monitor mode");
		}
	}
}

/* ---- fleet mode -------------------------------------------------------- */

/* "CIP:CPORT>SIP:SPORT", the key both nodes compute for a connection. */
static void fleet_key(const struct mcpw_tuple *client_view, char *buf, size_t len)
{
	char c[64], s[64];

	conn__addr(client_view, true, c, sizeof(c));
	conn__addr(client_view, false, s, sizeof(s));
	snprintf(buf, len, "%s>%s", c, s);
}

static void fleet_adopt(struct agent *a, struct conn *c, const char *json)
{
	json_t *o = json_loads(json, 0, NULL);
	struct workload w;

	if (o && workload__from_json(o, &w) == 0) {
		conn__set_client(c, &w);
		c->render_gen++;
	}
	json_decref(o);
}

/* c's fleet attribution key: the client's view of its tuple. Made when
 * needed rather than kept in every connection. */
#define FLEET_KEY_MAX 112

static void conn_fleet_key(const struct conn *c, char *key, size_t len)
{
	struct mcpw_tuple cv = {};

	memcpy(cv.saddr, c->tuple.daddr, 16);
	memcpy(cv.daddr, c->tuple.saddr, 16);
	cv.sport = c->tuple.dport;
	cv.dport = c->tuple.sport;
	fleet_key(&cv, key, len);
}

static void fleet_lookup(struct agent *a, struct conn *c)
{
	char key[FLEET_KEY_MAX];
	const char *json = NULL;
	int err;

	conn_fleet_key(c, key, sizeof(key));
	err = store__conn_lookup(a->store, key, &json);
	if (err == 0 && json)
		fleet_adopt(a, c, json);
	else if (err == -EINPROGRESS)
		c->remote_wait = true;	/* held until conn_found or the bound */
}

static void fleet_on_conn_found(void *ctx, const char *key, const char *json)
{
	struct agent *a = ctx;
	struct hmap_iter it;
	void *val;

	hmap__iter_init(a->conns, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct conn *c = val;
		char mine[FLEET_KEY_MAX];

		if (!c->remote_wait)
			continue;
		conn_fleet_key(c, mine, sizeof(mine));
		if (strcmp(mine, key))
			continue;
		c->remote_wait = false;
		fleet_adopt(a, c, json);
		process_requests(a, c);
	}
}

static void fleet_on_health(void *ctx, const struct store_health *h)
{
	struct agent *a = ctx;

	if (h->ready)
		a->store_problem[0] = '\0';
	else
		snprintf(a->store_problem, sizeof(a->store_problem), "the fleet store is %s%s%s",
			 h->connected ? "not ready" : "unreachable", h->last_error[0] ? ": " : "",
			 h->last_error);
}

static void fleet_drain(struct agent *a)
{
	static const struct store_callbacks cb = {
		.conn_found = fleet_on_conn_found,
		.health_changed = fleet_on_health,
	};

	store__drain(a->store, &cb, a);
}

/* Our client's connection to a protected port: tell the fleet who it is. */
static void fleet_publish_client(struct agent *a, const struct mcpw_client_event *e)
{
	struct workload w;
	char key[112], *json;
	json_t *o;

	resolver__resolve(a->resolver, &e->task, &w);
	if (!w.attributed) {
		workload__release(&w);
		return;
	}
	fleet_key(&e->tuple, key, sizeof(key));
	o = workload__json(&w);
	json = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (json)
		store__conn_publish(a->store, key, json, 0);
	free(json);
	json_decref(o);
	workload__release(&w);
}

static size_t fleet_remote_instances(void *ctx, const char *client, json_t **out, size_t max)
{
	struct agent *a = ctx;
	struct store_sighting s[64];
	ssize_t n = store__sightings(a->store, client, s, 64), i;
	size_t k = 0;

	for (i = 0; i < n && k < max; i++) {
		json_t *ev;

		if (s[i].local)
			continue;
		ev = json_loads(s[i].evidence, 0, NULL);
		if (!ev)
			ev = json_object();
		json_object_set_new(ev, "node", json_string(s[i].node));
		out[k++] = ev;
	}
	return k;
}

static int fleet_token_claim(void *ctx, const char *key, const struct workload *w,
			     int64_t exp, json_t **owner)
{
	struct agent *a = ctx;
	char *evidence, *owner_json = NULL;
	json_t *o = workload__json(w), *ow;
	int err;

	evidence = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	err = store__token_claim(a->store, key, w->instance, evidence ? evidence : "{}", exp,
				 &owner_json);
	free(evidence);
	if (err != -EEXIST) {
		free(owner_json);
		return err == 0 ? 0 : -1;
	}
	ow = owner_json ? json_loads(owner_json, 0, NULL) : NULL;
	free(owner_json);
	*owner = json_incref(json_object_get(ow, "evidence"));
	if (!*owner)
		*owner = json_object();
	if (!json_object_get(*owner, "node") && json_object_get(ow, "node"))
		json_object_set(*owner, "node", json_object_get(ow, "node"));
	json_decref(ow);
	return 1;
}

static void fleet_sighting(void *ctx, const char *client, const struct workload *w)
{
	struct agent *a = ctx;
	uint64_t h = 1469598103934665603ull, now_ms = now_ns() / 1000000;
	uintptr_t last;
	const char *p;
	char *json;
	json_t *o;

	/* Evidence JSON only when the store may write (it writes at most
	 * every third of the TTL); a cheap per-instance rate limit here. */
	for (p = client; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ull;
	}
	h ^= w->instance;
	last = (uintptr_t)hmap__get(a->sighted, h);
	if (last && now_ms - last < 5000)
		return;
	if (hmap__size(a->sighted) > 65536)
		return;
	hmap__put(a->sighted, h, (void *)(uintptr_t)now_ms);
	o = workload__json(w);
	json = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (json)
		store__sighting_put(a->store, client, w->instance, json);
	free(json);
	json_decref(o);
}

static void fleet_alert_sink(void *ctx, const char *kind, json_t *ev, const char *line,
			     size_t len)
{
	struct agent *a = ctx;

	(void)ev;
	(void)len;
	if (strcmp(kind, "alert") == 0)
		store__alert_publish(a->store, line);
}

static int open_fleet(struct agent *a, char *msg, size_t len)
{
	const struct agent_opts *o = a->opts;
	struct store_config cfg = {
		.url = o->cluster,
		.node = a->node,
		.creds_file = o->cluster_creds,
		.ca_file = o->cluster_ca,
		.cert_file = o->cluster_cert,
		.key_file = o->cluster_key,
		.sighting_ttl_sec = a->policy->instance_window_sec,
	};
	struct decider_fleet hooks = {
		.ctx = a,
		.remote_instances = fleet_remote_instances,
		.token_claim = fleet_token_claim,
		.sighting = fleet_sighting,
	};
	int err;

	if (!o->cluster)
		return 0;
	err = store__open(&cfg, &a->store);
	if (err) {
		char why[300];

		if (err == -EPROTONOSUPPORT)
			snprintf(why, sizeof(why), "use nats:// or tls://");
		else if (err != -ELIBACC || dynlib__nats(why, sizeof(why)) == 0)
			snprintf(why, sizeof(why), "%s", strerror(-err));
		snprintf(msg, len, "--cluster %s: %s", o->cluster, why);
		return err;
	}
	a->sighted = hmap__new(false);
	decider__set_fleet(a->decider, &hooks);
	output__add_line_sink(a->out, fleet_alert_sink, a);
	snprintf(a->store_problem, sizeof(a->store_problem), "the fleet store is not ready yet");
	return 0;
}

/* ---- connection records ---------------------------------------------- */

static void open_conn(struct agent *a, struct conn *c, const struct mcpw_conn_event *e)
{
	uint64_t key = ((uint64_t)e->netns << 16) | e->tuple.sport;
	struct mcpw_task *listener;
	struct workload w;

	c->render_gen++;
	c->tuple = e->tuple;
	c->netns = e->netns;
	c->port = e->tuple.sport;
	c->client_cookie = e->client_cookie;
	c->preexisting = e->flags & MCPW_CONN_PREEXISTING;
	free(c->server_name);
	c->server_name = server_name_for(a, c->port) ? strdup(server_name_for(a, c->port)) : NULL;
	if (!c->copy_until)
		c->copy_until = MIRROR_WINDOW;

	if (e->flags & MCPW_CONN_CLIENT_KNOWN) {
		struct mcpw_inst_key ik = { .tgid = e->client.tgid, .start_ns = e->client.start_ns };
		struct inst_entry *ie;

		resolver__resolve(a->resolver, &e->client, &w);
		conn__set_client(c, &w);
		/* The kernel may pass its requests on its process's template:
		 * count it as one of that instance's connections now. */
		ie = hmap__get(a->inst, inst_hash(&ik));
		if (ie && c->client->attributed)
			decider__admit(a->decider, c, ie->client, now_ns());
	} else {
		resolver__resolve(a->resolver, NULL, &w);
		w.why_unattributed = "no connect() from a process inside --cgroup-root "
			"was seen for this connection (a remote client, or one outside the scope)";
		conn__set_client(c, &w);
		if (a->store)
			fleet_lookup(a, c);
	}
	listener = hmap__get(a->listeners, key);
	memset(&w, 0, sizeof(w));	/* no listener known: the empty workload */
	if ((e->flags & MCPW_CONN_SERVER_KNOWN) || listener)
		resolver__resolve(a->resolver, (e->flags & MCPW_CONN_SERVER_KNOWN) ?
				  &e->server : listener, &w);
	conn__set_server(c, &w);
	c->open_seen = true;
	defer_connection(a, c);
	/* A previous daemon's, on a port this policy does not protect. */
	if (c->port && !server_name_for(a, c->port)) {
		unprotect(a, c);
		return;
	}
	/* Bytes that arrived before this record was read. */
	replay_early(a, c);
	process_requests(a, c);
}

/* ---- connections over capacity ---------------------------------------- */

/*
 * A protected connection the kernel had no room for (--max-connections):
 * nothing of it can be judged, which is what the policy's `fail` covers.
 * In enforce mode with fail closed the kernel lets none of its bytes
 * through (over_verdict) and it is ended here, both ends; otherwise it
 * passes unjudged. Either way a `lost` event names it with what is known
 * of both ends, so the workload filling the table is seen; beyond
 * OVER_EVENTS_PER_S a second they are counted into one.
 */
/* What cannot be judged is ended: enforce mode with `fail: closed`. */
static bool ends_unjudged(const struct agent *a)
{
	return a->enforce && a->policy->fail != POLICY_FAIL_OPEN;
}

static void over_capacity(struct agent *a, const struct mcpw_conn_event *e)
{
	struct mcpw_tuple peer = conn__reversed(&e->tuple);
	bool end = ends_unjudged(a);
	const struct mcpw_task *server = NULL;
	struct conn tmp = { .cookie = e->cookie };
	struct output_line *l;
	struct workload w;
	uint64_t now = now_ns();

	if (e->flags & MCPW_CONN_SERVER_KNOWN)
		server = &e->server;
	else
		server = hmap__get(a->listeners, ((uint64_t)e->netns << 16) | e->tuple.sport);
	a->last_over_ns = now;
	a->over_unhooked += !!(e->flags & MCPW_CONN_UNHOOKED);
	if (end) {
		a->over_ended++;
		end_socket(a, e->cookie, &e->tuple, e->netns, server ? server->pid : 0);
		if (e->flags & MCPW_CONN_CLIENT_KNOWN)
			end_socket(a, e->client_cookie, &peer, e->client.netns, e->client.pid);
		/* Under no hook at all: its bytes reach the server until then. */
		end_queued(a, e->flags & MCPW_CONN_UNHOOKED);
	} else {
		a->over_passed++;
	}
	if (now / 1000000000ull != a->over_second) {
		a->over_second = now / 1000000000ull;
		a->over_events = 0;
	}
	if (a->over_events >= OVER_EVENTS_PER_S) {
		a->over_summed++;
		return;
	}
	a->over_events++;

	tmp.tuple = e->tuple;
	tmp.netns = e->netns;
	tmp.preexisting = e->flags & MCPW_CONN_PREEXISTING;
	l = output__begin(a->out, "lost");
	oline__str(l, "source", "over_capacity");
	oline__int(l, "count", 1);
	oline__str(l, "detail", (e->flags & MCPW_CONN_UNHOOKED) ?
		   "a protected connection over --max-connections, and over the kernel's room "
		   "for those: it cannot be judged, and nothing in the kernel held its bytes" :
		   "a protected connection over --max-connections: it cannot be judged");
	oline__str(l, "action", end ? "ended" : "passed");
	/* Whether the kernel held its bytes meanwhile (over_verdict). */
	oline__bool(l, "held", !(e->flags & MCPW_CONN_UNHOOKED));
	oline__str(l, "server", server_name_for(a, e->tuple.sport));
	oline__int(l, "max_connections", a->max_conns);
	resolver__resolve(a->resolver, (e->flags & MCPW_CONN_CLIENT_KNOWN) ? &e->client : NULL,
			  &w);
	oline__json(l, "workload", workload__json(&w));
	workload__release(&w);
	oline__json(l, "connection", conn__json(&tmp));
	memset(&w, 0, sizeof(w));
	if (server)
		resolver__resolve(a->resolver, server, &w);
	oline__json(l, "server_workload", workload__json(&w));
	workload__release(&w);
	output__end(a->out, l);
}

static void mark_closing(struct agent *a, struct conn *c)
{
	c->closing = true;
	c->closed_tick = a->ticks;
	c->closing_next = a->closing;
	a->closing = c;
}

/*
 * The close record comes through the events ring, which is read before the
 * data ring: the connection's last bytes may still be waiting there. So a
 * closed connection is only marked here, judged to the end, and freed by
 * reap_closed() once the rings have been drained after its close.
 */
static void close_conn(struct agent *a, const struct mcpw_close_event *e)
{
	struct conn *c = hmap__get(a->conns, e->cookie);

	if (!c || c->closing)
		return;
	mark_closing(a, c);
	/* Bytes that passed unjudged on a connection that is now gone are
	 * reported here: its kernel state went with it. */
	if (e->failopen_bytes > c->failopen_reported)
		report_failopen(a, c, e->failopen_bytes - c->failopen_reported);
}

/* After a full drain of the rings: free the connections closed before it.
 * Only the closing ones are visited (not every open connection a tick):
 * those closed in this tick are at the head of the list, and stay. */
static void reap_closed(struct agent *a)
{
	struct conn **pp = &a->closing, *c;
	uint64_t now = now_ns();

	while ((c = *pp) && c->closed_tick == a->ticks)
		pp = &c->closing_next;
	*pp = NULL;
	while (c) {
		struct conn *next = c->closing_next;

		hmap__del(a->conns, c->cookie);
		/* Records still in flight for it must not resurrect it. */
		a->closed[closed_slot(c->cookie)] = c->cookie;
		decider__conn_closed(a->decider, c, now);
		conn_free(a, c);
		c = next;
	}
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct agent *a = ctx;
	const struct mcpw_event_hdr *h = data;

	if (size < sizeof(*h))
		return 0;
	switch (h->type) {
	case MCPW_EV_EXEC:
		if (size >= sizeof(struct mcpw_exec_event)) {
			const struct mcpw_exec_event *x = data;
			struct mcpw_inst_key ik = { .tgid = x->task.tgid, .start_ns = x->task.start_ns };

			/* The kernel dropped its template at exec; so do we. */
			inst_drop(a, inst_hash(&ik));
			proctab__on_exec(a->procs, data);
			stdio__on_exec(&a->stdio, data);
		}
		break;
	case MCPW_EV_FORK:
		if (size >= sizeof(struct mcpw_fork_event))
			proctab__on_fork(a->procs, data);
		break;
	case MCPW_EV_EXIT:
		if (size >= sizeof(struct mcpw_exit_event)) {
			const struct mcpw_exit_event *x = data;
			struct mcpw_inst_key ik = { .tgid = x->tgid, .start_ns = x->start_ns };

			inst_drop(a, inst_hash(&ik));
			proctab__on_exit(a->procs, data, now_ns());
		}
		break;
	case MCPW_EV_CONN_OPEN:
		if (size >= sizeof(struct mcpw_conn_event)) {
			const struct mcpw_conn_event *e = data;
			struct conn *c;

			if (e->flags & MCPW_CONN_OVER_CAPACITY) {
				over_capacity(a, e);
				break;
			}
			c = conn_get(a, e->cookie, true);
			/* Accepted between the attach and the start-up walk of
			 * the sockets, a connection is opened twice: the walk
			 * named its client from /proc; a record without the
			 * kernel's connect() attribution (the connect() came
			 * before the hook) must not unname it. */
			if (c && !(c->open_seen && !(e->flags & MCPW_CONN_CLIENT_KNOWN)))
				open_conn(a, c, e);
		}
		break;
	case MCPW_EV_CLIENT_CONNECT:
		if (a->store && size >= sizeof(struct mcpw_client_event))
			fleet_publish_client(a, data);
		break;
	case MCPW_EV_CONN_CLOSE:
		if (size >= sizeof(struct mcpw_close_event))
			close_conn(a, data);
		break;
	default:
		break;
	}
	return 0;
}

/* ---- connections that predate the agent ------------------------------ */

/*
 * Tests only (MCPW_TEST_BARRIER_DIR): stops at a named point, programs
 * attached, until the test says go: NAME.reached is created, NAME.go
 * awaited (10 s at most). What happens at start-up in a few microseconds
 * can then be made to happen on purpose.
 */
static void test_barrier(const char *name)
{
	const char *dir = getenv("MCPW_TEST_BARRIER_DIR");
	char path[PATH_MAX];
	int i, fd;

	if (!dir || !*dir)
		return;
	snprintf(path, sizeof(path), "%s/%s.reached", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	snprintf(path, sizeof(path), "%s/%s.go", dir, name);
	for (i = 0; i < 1000 && access(path, F_OK); i++)
		usleep(10 * 1000);
	pr_info("test barrier %s: %s", name, i < 1000 ? "released" : "timed out");
}

struct seed_ctx {
	struct mcpw_conn_event *recs;
	size_t n, cap;
};

static void seed_collect(void *ctx, const struct mcpw_conn_event *e)
{
	struct seed_ctx *s = ctx;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct mcpw_conn_event *n = realloc(s->recs, cap * sizeof(*n));

		if (!n)
			return;
		s->recs = n;
		s->cap = cap;
	}
	s->recs[s->n++] = *e;
}

static bool same_conn(const struct mcpw_conn_event *srv, const struct mcpw_conn_event *cli)
{
	/* Server view s=server, d=client; client view s=client, d=server. */
	return srv->tuple.sport == cli->tuple.dport && srv->tuple.dport == cli->tuple.sport &&
	       memcmp(srv->tuple.saddr, cli->tuple.daddr, 16) == 0 &&
	       memcmp(srv->tuple.daddr, cli->tuple.saddr, 16) == 0;
}

/* Connections a previous daemon was judging: continue from its verdicts. */
static void adopt_verdict(struct agent *a, struct conn *c)
{
	struct mcpw_conn_verdict v;

	if (kernel__get_verdict(a->kernel, c->cookie, &v))
		return;
	c->released_end = c->next_off = c->held_base = c->parsed_end = v.released_end;
	c->copy_until = v.copy_until;
	c->pending_initialize = v.egress_copy_until != 0;
	if (v.action == MCPW_ACT_DROP) {
		deny_conn(a, c);
	} else if (!a->enforce && v.action != MCPW_ACT_MIRROR) {
		/* A previous enforcing daemon's: mirrored from now on (bytes
		 * it held and did not release come first, see on_data). */
		c->copy_until = c->next_off + MIRROR_WINDOW;
		write_verdict(a, c);
	}
}

static void seed_all(struct agent *a)
{
	struct seed_ctx s = {};
	struct hmap *seen = hmap__new(false);
	struct dirent *de;
	DIR *d;
	size_t i, j;

	/* Every network namespace any process is in. */
	kernel__seed(a->kernel, -1, seed_collect, &s);
	d = opendir("/proc");
	while (d && seen && (de = readdir(d))) {
		char path[64];
		struct stat st;
		int fd;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/net", de->d_name);
		if (stat(path, &st) || hmap__get(seen, st.st_ino))
			continue;
		hmap__put(seen, st.st_ino, (void *)1);
		fd = netns_fd(a, (uint32_t)st.st_ino, (uint32_t)atoi(de->d_name));
		if (fd >= 0)
			kernel__seed(a->kernel, fd, seed_collect, &s);
	}
	if (d)
		closedir(d);
	hmap__free(seen);

	for (i = 0; i < s.n; i++) {
		struct mcpw_conn_event *e = &s.recs[i];
		struct mcpw_task task;

		if (!(e->flags & MCPW_CONN_LISTENER))
			continue;
		if (resolver__find_socket_owner(a->resolver, e->inode, &task) == 0) {
			struct mcpw_task *t = malloc(sizeof(*t));

			task.netns = e->netns;
			if (t) {
				*t = task;
				free(hmap__get(a->listeners,
					       ((uint64_t)e->netns << 16) | e->tuple.sport));
				hmap__put(a->listeners, ((uint64_t)e->netns << 16) | e->tuple.sport, t);
			}
		}
	}
	for (i = 0; i < s.n; i++) {
		struct mcpw_conn_event *e = &s.recs[i];
		struct conn *c;

		if (!(e->flags & MCPW_CONN_SERVER_KNOWN) || (e->flags & MCPW_CONN_LISTENER))
			continue;
		if (hmap__get(a->conns, e->cookie))
			continue;
		e->flags &= ~MCPW_CONN_SERVER_KNOWN;
		if (resolver__find_socket_owner(a->resolver, e->inode, &e->server) == 0) {
			e->server.netns = e->netns;
			e->flags |= MCPW_CONN_SERVER_KNOWN;
		}
		for (j = 0; j < s.n; j++) {
			struct mcpw_conn_event *cli = &s.recs[j];

			if (!(cli->flags & MCPW_CONN_CLIENT_KNOWN) || !same_conn(e, cli))
				continue;
			if (resolver__find_socket_owner(a->resolver, cli->inode, &e->client) == 0) {
				e->client.netns = cli->netns;
				e->client_cookie = cli->cookie;
				e->flags |= MCPW_CONN_CLIENT_KNOWN;
			}
			break;
		}
		if (e->flags & MCPW_CONN_OVER_CAPACITY) {
			over_capacity(a, e);
			continue;
		}
		c = conn_get(a, e->cookie, true);
		if (c) {
			open_conn(a, c, e);
			/* Its next bytes are mid-stream only if a request was
			 * in flight; the parser then calls it malformed. */
			c->next_off = 0;
			adopt_verdict(a, c);
		}
	}
	free(s.recs);
}

/* ---- periodic work ----------------------------------------------------- */

/* A `lost` event for what a running count gained since *reported (the
 * detail formatted only then); whether there was any. */
static bool lost_since(struct agent *a, const char *source, uint64_t total, uint64_t *reported,
		       const char *fmt, ...)
{
	char detail[200];
	va_list ap;

	if (total <= *reported)
		return false;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	emit_lost(a, source, total - *reported, detail);
	*reported = total;
	return true;
}

/*
 * Bindings the decider refused, their table full: whoever uses those
 * sessions or tokens, or runs those instances, is not checked against
 * them (no session_hijack, token_replay or clone). A `lost` event a
 * second while it goes on, health degraded for a minute after. Bindings
 * an instance over its share dropped are reported the same way, without
 * the health; live processes a full process table forgot, with it.
 */
static void report_refused_bindings(struct agent *a)
{
	static const struct {
		const char *source, *finding, *of;
		unsigned int max;
	} t[3] = {
		{ "sessions", "session_hijack", "", DECISION_MAX_SESSIONS },
		{ "tokens", "token_replay", "", DECISION_MAX_TOKENS },
		{ "instances", "clone", " of one client", DECISION_MAX_INSTANCES },
	};
	struct decider_stats ds;
	struct proctab_stats ps;
	uint64_t refused[3], evicted[2];
	bool bad = false;
	int i;

	decider__stats(a->decider, &ds);
	proctab__stats(a->procs, &ps);
	refused[0] = ds.refused_sessions;
	refused[1] = ds.refused_tokens;
	refused[2] = ds.refused_instances;
	evicted[0] = ds.evicted_sessions;
	evicted[1] = ds.evicted_tokens;
	for (i = 0; i < 3; i++)
		bad |= lost_since(a, t[i].source, refused[i], &a->refused_reported[i],
				  "new %s bindings refused: %u are bound%s, the table is full; %s "
				  "cannot be found for those", t[i].source, t[i].max, t[i].of,
				  t[i].finding);
	for (i = 0; i < 2; i++)
		lost_since(a, t[i].source, evicted[i], &a->evicted_reported[i],
			   "%s bindings dropped: a workload instance holds %u at most and bound a "
			   "new one; its least recently used went, and %s cannot be found for those",
			   t[i].source, DECISION_MAX_PER_INSTANCE, t[i].finding);
	bad |= lost_since(a, "processes", ps.evicted_live, &a->procs_evicted_reported,
			  "live processes forgotten, the process table full: their lineage "
			  "(ancestors, exe digest) is read again from /proc when they connect, and "
			  "what exited meanwhile is not known");
	if (bad)
		a->last_refused_ns = now_ns();
}

static void report_losses(struct agent *a)
{
	uint64_t cur[MCPW_CNT__MAX];

	if (kernel__counters(a->kernel, cur))
		return;
	if (cur[MCPW_CNT_EVENTS_LOST] > a->counters[MCPW_CNT_EVENTS_LOST] ||
	    cur[MCPW_CNT_DATA_LOST] > a->counters[MCPW_CNT_DATA_LOST] ||
	    cur[MCPW_CNT_FAST_COPY_LOST] > a->counters[MCPW_CNT_FAST_COPY_LOST])
		a->last_loss_ns = now_ns();
	if (cur[MCPW_CNT_EVENTS_LOST] > a->counters[MCPW_CNT_EVENTS_LOST])
		emit_lost(a, "events_ring", cur[MCPW_CNT_EVENTS_LOST] - a->counters[MCPW_CNT_EVENTS_LOST],
			  "process or connection records dropped: the events ring was full");
	if (cur[MCPW_CNT_DATA_LOST] > a->counters[MCPW_CNT_DATA_LOST])
		emit_lost(a, "data_ring", cur[MCPW_CNT_DATA_LOST] - a->counters[MCPW_CNT_DATA_LOST],
			  "request or response bytes not copied: the data ring was full; "
			  "affected connections were judged malformed");
	if (cur[MCPW_CNT_OVERLIMIT] > a->counters[MCPW_CNT_OVERLIMIT])
		emit_lost(a, "held_limit", cur[MCPW_CNT_OVERLIMIT] - a->counters[MCPW_CNT_OVERLIMIT],
			  "segments dropped because a connection held more unjudged bytes than "
			  "allowed; affected connections were denied");
	if (cur[MCPW_CNT_SOCKHASH_FAIL] > a->counters[MCPW_CNT_SOCKHASH_FAIL])
		emit_lost(a, "sockhash", cur[MCPW_CNT_SOCKHASH_FAIL] - a->counters[MCPW_CNT_SOCKHASH_FAIL],
			  "protected connections over --max-connections the kernel could not "
			  "put under its over-capacity hook either (full): nothing in the kernel "
			  "held their bytes (see the over_capacity events)");
	if (cur[MCPW_CNT_STORAGE_FAIL] > a->counters[MCPW_CNT_STORAGE_FAIL])
		emit_lost(a, "sock_storage", cur[MCPW_CNT_STORAGE_FAIL] -
			  a->counters[MCPW_CNT_STORAGE_FAIL],
			  "sockets got no kernel storage (out of memory): a client's connect() "
			  "was not attributed, or a protected server's responses are not read "
			  "(sessions it issues are bound at first use)");
	if (cur[MCPW_CNT_FAST_COPY_LOST] > a->counters[MCPW_CNT_FAST_COPY_LOST])
		emit_lost(a, "requests", cur[MCPW_CNT_FAST_COPY_LOST] -
			  a->counters[MCPW_CNT_FAST_COPY_LOST],
			  "requests the kernel passed on judged connections were not reported: "
			  "the data ring was full (the daemon fell behind)");
	if (a->fast_unread) {
		emit_lost(a, "requests", a->fast_unread,
			  "copies of kernel-passed requests the daemon could not read (out of "
			  "memory, or not an HTTP request head)");
		a->fast_unread = 0;
	}
	if (a->early_dropped) {
		emit_lost(a, "requests", a->early_dropped,
			  "copies of kernel-passed requests not reported: their connection's open "
			  "record was late and the copies waiting for it hit their limit");
		a->early_dropped = 0;
	}
	if (a->conns_dropped) {
		emit_lost(a, "connections", a->conns_dropped,
			  "connections the daemon could not track (table full)");
		a->conns_dropped = 0;
	}
	report_refused_bindings(a);
	if (a->over_summed) {
		emit_lost(a, "over_capacity", a->over_summed,
			  "more protected connections over --max-connections than are reported "
			  "one by one (100 a second); see status "
			  "connections.over_capacity");
		a->over_summed = 0;
	}
	memcpy(a->counters, cur, sizeof(cur));
}

/*
 * A connection whose open record was lost (events ring full): the kernel's
 * state for it still names the client process the connect hook saw, and
 * the process table knows that process. The 4-tuple stays unknown.
 */
static void recover_open(struct agent *a, struct mcpw_conn_event *e)
{
	struct mcpw_conn_state st;
	struct proc *p;

	if (kernel__get_state(a->kernel, e->cookie, &st))
		return;
	e->tuple.sport = (uint16_t)st.server_port;
	if (!st.client_tgid || !(p = proctab__get(a->procs, st.client_tgid, st.client_start)))
		return;
	e->client.tgid = p->tgid;
	e->client.pid = p->tgid;
	e->client.ppid = p->ppid;
	e->client.uid = p->uid;
	e->client.gid = p->gid;
	e->client.start_ns = p->start_ns;
	e->client.cgroup_id = p->cgroup_id;
	memcpy(e->client.comm, p->comm, sizeof(e->client.comm));
	e->flags |= MCPW_CONN_CLIENT_KNOWN;
}

/*
 * When the kernel shows a segment again (srv_verdict), the bytes shown
 * before are cut off it; where they could not all be cut (the kernel
 * refused a cut), TCP counts the rest as read twice, and a request's last bytes can
 * then sit in the socket with nothing to wake the verdict program: the
 * client waits for an answer that never comes. A connection whose count stops inside a request
 * the kernel passed, for two checks (1-2 s) with nothing held, is ended and
 * said so rather than left hanging (true: ended).
 */
#define RESHOWN_STALL_CHECKS 2

static bool reshown_stalled(struct agent *a, struct conn *c, const struct mcpw_conn_state *st)
{
	if (st->bytes_in >= st->fast_pass_until || st->bytes_in != c->stall_bytes_in ||
	    c->held_len) {
		c->stall_bytes_in = st->bytes_in;
		c->stall_checks = 0;
		return false;
	}
	if (++c->stall_checks < RESHOWN_STALL_CHECKS)
		return false;
	a->reshown_stalls++;
	emit_lost(a, "stream", 1, "the kernel showed already delivered bytes of a server socket "
		  "again and counted them as read twice; the rest of a request then never reached "
		  "the agent's program, and the connection was ended rather than left hanging");
	deny_conn(a, c);
	return true;
}

/* What the kernel's state of a live connection says: trouble flagged on
 * its held bytes, and bytes passed unjudged while the daemon was away. */
static void check_state(struct agent *a, struct conn *c, const struct mcpw_conn_state *st)
{
	if (c->denied || c->unprotected ||
	    ((st->flags & MCPW_ST_RESHOWN) && reshown_stalled(a, c, st)))
		return;
	if (st->flags & MCPW_ST_OVERLIMIT)
		stream_failure(a, c, "over_limit", "the client sent more unjudged bytes "
			       "than a connection may hold");
	else if ((st->flags & MCPW_ST_LOST) && !c->blind)
		stream_failure(a, c, "bytes_lost", "request bytes were lost before the "
			       "agent could read them");
	if (st->failopen_bytes > c->failopen_reported) {
		report_failopen(a, c, st->failopen_bytes - c->failopen_reported);
		c->failopen_reported = st->failopen_bytes;
	}
}

/* Gone from the kernel and its close record lost with a full ring: close
 * it here, or it would stay forever. */
static void state_gone(struct agent *a, struct conn *c)
{
	if (!c->closing && c->open_seen)
		mark_closing(a, c);
}

static void state_seen(void *ctx, uint64_t cookie, const struct mcpw_conn_state *st)
{
	struct agent *a = ctx;
	struct conn *c = hmap__get(a->conns, cookie);

	if (!c || c->state_round == a->ticks)
		return;
	c->state_round = a->ticks;
	check_state(a, c, st);
}

static void check_conns(struct agent *a)
{
	struct hmap_iter it;
	uint64_t cookie, now = now_ns();
	bool batched;
	void *val;

	hmap__iter_init(a->conns, &it);
	while (hmap__iter_next(&it, &cookie, NULL, &val)) {
		struct conn *c = val;

		if (!c->open_seen && now - c->opened_ns > PENDING_OPEN_NS) {
			/* Its CONN_OPEN record was lost: judge what we know. */
			struct mcpw_conn_event e = { .cookie = cookie };

			recover_open(a, &e);
			open_conn(a, c, &e);
			continue;
		}
		if (c->pod_wait || c->remote_wait)
			process_requests(a, c);
		check_request_time(a, c, now);
		/* Fleet: instances with open connections stay live everywhere. */
		if (a->store && decider__conn_client(c))
			fleet_sighting(a, decider__conn_client(c), c->client);
	}
	/* The kernel's states read in batches: with thousands of connections
	 * open, a lookup each was thousands of syscalls a second. A state
	 * read before its connection's open record is seen here next time. */
	batched = kernel__each_state(a->kernel, state_seen, a) == 0;
	hmap__iter_init(a->conns, &it);
	while (hmap__iter_next(&it, &cookie, NULL, &val)) {
		struct conn *c = val;
		struct mcpw_conn_state st;
		int err;

		if (c->state_round == a->ticks)
			continue;
		if (batched) {
			state_gone(a, c);
			continue;
		}
		/* No batch lookups in this kernel (or they failed): one each. */
		c->state_round = a->ticks;
		err = kernel__get_state(a->kernel, cookie, &st);
		if (err == -ENOENT)
			state_gone(a, c);
		else if (!err)
			check_state(a, c, &st);
	}
}

/*
 * A burst (thousands of connections opening, a backlog of requests, the
 * saved state's JSON) leaves the heap with freed space that malloc keeps;
 * a long-running daemon gives it back once there is enough of it.
 */
#define TRIM_FREE_BYTES (4u << 20)

static void release_free_memory(void)
{
	struct mallinfo2 mi = mallinfo2();

	if (mi.fordblks > TRIM_FREE_BYTES)
		malloc_trim(0);
}

static void save_state(struct agent *a)
{
	char path[PATH_MAX], problem[sizeof(a->state_problem)] = "";
	int err;

	snprintf(path, sizeof(path), "%s/state.json", a->opts->state_dir);
	err = decider__save(a->decider, path, now_ns());
	/* Unsaved, a restart forgets which workload each session and token
	 * is bound to: health says so while it lasts, the log once. */
	if (err)
		snprintf(problem, sizeof(problem), "the live state cannot be saved to %s: %s",
			 path, strerror(-err));
	if (strcmp(problem, a->state_problem)) {
		if (err)
			pr_warn("%s", problem);
		else
			pr_info("the live state is saved to %s again", path);
		snprintf(a->state_problem, sizeof(a->state_problem), "%s", problem);
	}
	/* The state's JSON was built and freed: a few KiB per session. */
	release_free_memory();
}

/*
 * The pod watch, weighed every second. Not listed 10 s after the start, or
 * its watch down for a minute: pods are not known (policies that name pods
 * cannot match, requests wait POD_WAIT_NS for them), so health says so
 * with the watcher's last error (a 403 of missing RBAC, an unreachable API
 * server), and the log says each new error once.
 */
#define K8S_SYNC_GRACE_NS (10ull * 1000000000ull)
#define K8S_DOWN_GRACE_NS (60ull * 1000000000ull)

static void k8s_health(struct agent *a, uint64_t now, char *reasons, size_t size, size_t *n)
{
	struct k8s_stats ks;
	const char *why = NULL;

	k8s__stats(a->k8s, &ks);
	if (ks.last_error[0] && strcmp(ks.last_error, a->k8s_error)) {
		pr_warn("kubernetes pod watch: %s", ks.last_error);
		snprintf(a->k8s_error, sizeof(a->k8s_error), "%s", ks.last_error);
	}
	if (ks.connected)
		a->k8s_down_since = 0;
	else if (!a->k8s_down_since)
		a->k8s_down_since = now;
	if (!ks.synced && now - a->started_ns > K8S_SYNC_GRACE_NS)
		why = "the Kubernetes API's pods have not been listed";
	else if (ks.synced && a->k8s_down_since && now - a->k8s_down_since > K8S_DOWN_GRACE_NS)
		why = "the Kubernetes pod watch has been down for over a minute";
	if (why && *n < size)
		*n += (size_t)snprintf(reasons + *n, size - *n, "%s%s: pods are not known%s%s",
				       *n ? "; " : "", why, ks.last_error[0] ? " (" : "",
				       ks.last_error);
	if (why && ks.last_error[0] && *n < size)
		*n += (size_t)snprintf(reasons + *n, size - *n, ")");
}

/* Whether `when` (0: never) is within the minute before `now`; it may be
 * after `now`, taken later in the same tick. */
static bool in_last_minute(uint64_t when, uint64_t now)
{
	return when && when + 60ull * 1000000000ull > now;
}

/*
 * Health, every second: whatever leaves the agent blind or not as
 * configured (the reasons below; README, Metrics and health). A change is
 * an alert, and `status` and the metrics endpoint report it.
 */
static void check_health(struct agent *a, uint64_t now)
{
	char reasons[sizeof(((struct agent *)0)->health)] = "";
	uint64_t resolved, cg_fail, d_res, d_fail;
	size_t n = 0;

#define REASON(...) (n += (size_t)snprintf(reasons + n, sizeof(reasons) > n ? sizeof(reasons) - n : 0, \
					   "%s", n ? "; " : ""), \
		     n += (size_t)snprintf(reasons + n, sizeof(reasons) > n ? sizeof(reasons) - n : 0, \
					   __VA_ARGS__))
	if (in_last_minute(a->last_loss_ns, now))
		REASON("kernel records were lost in the last minute (see lost events)");
	if (a->store_problem[0])
		REASON("%s", a->store_problem);
	if (in_last_minute(a->last_out_fail_ns, now))
		REASON("%s in the last minute (see lost events)", a->out_problem);
	if (a->state_problem[0])
		REASON("%s", a->state_problem);
	if (a->reload_problem[0])
		REASON("%s", a->reload_problem);
	if (in_last_minute(a->last_sink_drop_ns, now))
		REASON("the output %s dropped events in the last minute (see lost events)",
		       a->sink_dropping);
	if (in_last_minute(a->last_refused_ns, now))
		REASON("session, token or instance bindings were refused, or live processes "
		       "forgotten, in the last minute: a table was full (see lost events)");
	if (in_last_minute(a->last_over_ns, now))
		REASON("protected connections over --max-connections (%u) in the last minute "
		       "could not be judged: %s (see lost events)", a->max_conns,
		       ends_unjudged(a) ? "ended" : "passed");
	if (a->k8s)
		k8s_health(a, now, reasons, sizeof(reasons), &n);
	if (access("/proc/self/stat", R_OK))
		REASON("/proc is not readable: processes cannot be attributed");
	resolver__stats(a->resolver, &resolved, &cg_fail);
	d_res = resolved - a->health_resolved;
	d_fail = cg_fail - a->health_cg_fail;
	a->health_resolved = resolved;
	a->health_cg_fail = cg_fail;
	if (d_res >= 10 && d_fail * 2 > d_res)
		REASON("%llu of %llu workloads resolved in the last second had no known cgroup",
		       (unsigned long long)d_fail, (unsigned long long)d_res);
#undef REASON
	if (strcmp(reasons, a->health) == 0)
		return;
	output__emit(a->out, "alert", json_pack("{s:s,s:s,s:s,s:s}", "verdict", "degraded",
		"action", "alerted", "health", reasons[0] ? "degraded" : "ok",
		"reason", reasons[0] ? reasons : "The agent is healthy again."));
	snprintf(a->health, sizeof(a->health), "%s", reasons);
}

/* Sinks that drop events say so, as `lost` events. */
static void report_sink_drops(struct agent *a, uint64_t now)
{
	struct sink_stats st[16];
	size_t n = sinks__stats(a->sinks, st, 16), i;

	for (i = 0; i < n; i++) {
		if (st[i].dropped > a->sink_dropped[i]) {
			output__emit(a->out, "lost", json_pack("{s:s,s:s,s:I,s:s}", "source",
				     "output", "sink", st[i].name, "count",
				     (json_int_t)(st[i].dropped - a->sink_dropped[i]), "detail",
				     "events this sink could not keep up with or write"));
			a->sink_dropped[i] = st[i].dropped;
			a->last_sink_drop_ns = now;
			snprintf(a->sink_dropping, sizeof(a->sink_dropping), "%s", st[i].name);
		}
	}
}

/*
 * Events an events stream could not write (a full disk, a closed pipe): a
 * `lost` event, which reaches whatever still takes events (the control
 * socket's followers, --output sinks, the stream itself once it writes
 * again), health degraded for a minute, and a line on stderr when it
 * starts and once a minute while it lasts.
 */
static void report_output_failures(struct agent *a, uint64_t now)
{
	struct output_stats os;
	uint64_t n;

	output__stats(a->out, &os);
	if (os.write_lost <= a->out_write_lost)
		return;
	n = os.write_lost - a->out_write_lost;
	a->out_write_lost = os.write_lost;
	a->last_out_fail_ns = now;
	snprintf(a->out_problem, sizeof(a->out_problem), "events could not be written to %s: %s",
		 os.write_failed_on ? os.write_failed_on : "?",
		 os.write_errno == EAGAIN ? "its reader is not keeping up" :
		 strerror(os.write_errno));
	if (!a->last_out_log_ns || now - a->last_out_log_ns >= 60ull * 1000000000ull) {
		pr_warn("%s (%llu events lost since this was last said)", a->out_problem,
			(unsigned long long)(os.write_lost - a->out_lost_logged));
		a->last_out_log_ns = now;
		a->out_lost_logged = os.write_lost;
	}
	output__emit(a->out, "lost", json_pack("{s:s,s:s,s:I,s:s}", "source", "output", "sink",
		     os.write_failed_on ? os.write_failed_on : "?", "count", (json_int_t)n,
		     "detail", a->out_problem));
}

/* The events file rotated away (moved or removed): the next events go to
 * a new file at its path. Checked every second and on SIGHUP. */
static void reopen_events_file(struct agent *a)
{
	struct output_stats os;

	if (output__reopen_moved(a->out)) {
		pr_info("the events file was moved or removed: writing to a new one at %s",
			a->opts->events);
		return;
	}
	output__stats(a->out, &os);
	if (os.reopen_errno && os.reopen_errno != a->reopen_errno)
		pr_warn("the events file was moved or removed and %s cannot be opened again: "
			"%s (still writing to the old one)", a->opts->events,
			strerror(os.reopen_errno));
	a->reopen_errno = os.reopen_errno;
}

static void guard_scheduling(struct agent *a);
static void check_policy_file(struct agent *a, uint64_t now);

static void tick(struct agent *a)
{
	uint64_t now = now_ns();

	kernel__heartbeat(a->kernel);
	/* Records the kernel batched (no wakeup) are read at least this often;
	 * connections closed before this drain are done. */
	rings__consume(a->rings);
	reap_closed(a);
	end_queued(a, false);
	a->ticks++;
	if (a->metrics)
		metrics__tick(a->metrics, now);
	if (a->attest)
		attest__tick(a->attest, now);
	if (a->ctl)
		ctl__tick(a->ctl, now);
	if (a->policy_watch >= 0)
		check_policy_file(a, now);
	if (a->ticks % 10 == 0) {
		guard_scheduling(a);
		report_losses(a);
		report_sink_drops(a, now);
		reopen_events_file(a);
		report_output_failures(a, now);
		check_health(a, now);
		check_conns(a);
		stdio__sweep(&a->stdio);
		release_free_memory();
	}
	if (a->ticks % 50 == 0) {
		forget_netns_fds(a);
		proctab__reap(a->procs, now, PROC_GRACE_NS);
		decider__expire(a->decider, now);
		save_state(a);
	}
}

/* ---- setup ------------------------------------------------------------- */

static int load_policy(const char *path, struct policy **out, char *msg, size_t len)
{
	struct policy_error perr = {};
	int err;

	if (path)
		err = policy__load_file(path, out, &perr);
	else
		err = policy__load_buffer("(embedded default policy)", policy_default_json,
					  strlen(policy_default_json), out, &perr);
	if (err)
		policy_error__format(&perr, msg, len);
	return err;
}

static int load_keys(struct policy *p, struct jwt_keyset **out, char *msg, size_t len)
{
	struct jwt_keyset *ks;
	size_t i;
	int err;

	*out = NULL;
	if (!p->n_token_keys)
		return 0;
	ks = jwt_keyset__new();
	if (!ks)
		return -ENOMEM;
	for (i = 0; i < p->n_token_keys; i++) {
		err = jwt_keyset__add_file(ks, p->token_keys[i].file, p->token_keys[i].iss,
					   p->token_keys[i].hmac, msg, len);
		if (err) {
			jwt_keyset__free(ks);
			return err;
		}
	}
	*out = ks;
	return 0;
}

static bool mode_enforce(const struct agent *a, const struct policy *p)
{
	if (a->opts->mode)
		return strcmp(a->opts->mode, "enforce") == 0;
	return p->mode == POLICY_MODE_ENFORCE;
}

static size_t policy_ports(const struct policy *p, uint16_t *ports, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < p->n_servers && n < max; i++)
		if (!p->servers[i].is_stdio)
			ports[n++] = p->servers[i].port;
	return n;
}

static struct mcpw_config kernel_config(const struct agent *a, const struct policy *p)
{
	struct mcpw_config cfg = {
		.enforce = mode_enforce(a, p),
		.fail_open = p->fail == POLICY_FAIL_OPEN,
		.daemon_timeout_ns = HEARTBEAT_TIMEOUT_NS,
		.max_held = MCPW_DEFAULT_MAX_HELD,
		.mirror_window = MIRROR_WINDOW,
		.egress_window = EGRESS_WINDOW,
		.self_tgid = (__u32)getpid(),
		.mirror_fast = !a->opts->request_events || strcmp(a->opts->request_events, "judged"),
		.fleet = a->opts->cluster != NULL,
	};

	return cfg;
}

/* A reload that failed leaves the previous policy in force: health says so
 * until a reload succeeds, so a rejected policy is not mistaken for the
 * one enforced. */
static void reload_failed(struct agent *a, const char *why)
{
	snprintf(a->reload_problem, sizeof(a->reload_problem),
		 "the last policy reload failed, the previous policy is in force: %s", why);
}

static void reload(struct agent *a, const char *trigger)
{
	struct policy *np = NULL;
	struct jwt_keyset *nk = NULL;
	struct mcpw_config cfg;
	uint16_t ports[MCPW_MAX_PORTS];
	char msg[512];
	size_t n;
	json_t *ev;
	int err;

	/* Rotated, then told: the reload's event goes to the new file. */
	reopen_events_file(a);

	err = load_policy(a->opts->policy_path, &np, msg, sizeof(msg));
	if (!err)
		err = load_keys(np, &nk, msg, sizeof(msg));
	if (err) {
		policy__free(np);
		ev = json_pack("{s:s,s:s,s:s,s:s}", "status", "rejected", "error", msg,
			       "digest", a->policy->digest, "trigger", trigger);
		output__emit(a->out, "policy", ev);
		pr_err("policy reload rejected, keeping the policy in force: %s", msg);
		reload_failed(a, msg);
		return;
	}
	n = policy_ports(np, ports, MCPW_MAX_PORTS);
	cfg = kernel_config(a, np);
	err = kernel__set_ports(a->kernel, ports, n);
	if (!err) {
		err = kernel__set_config(a->kernel, &cfg);
		if (err) {
			/* The ports back as the policy in force has them. */
			n = policy_ports(a->policy, ports, MCPW_MAX_PORTS);
			kernel__set_ports(a->kernel, ports, n);
		}
	}
	if (err) {
		snprintf(msg, sizeof(msg), "cannot update the kernel side: %s", strerror(-err));
		policy__free(np);
		jwt_keyset__free(nk);
		output__emit(a->out, "policy", json_pack("{s:s,s:s,s:s,s:s}", "status", "rejected",
							 "error", msg, "digest", a->policy->digest,
							 "trigger", trigger));
		pr_err("policy reload failed, keeping the policy in force: %s", msg);
		reload_failed(a, msg);
		return;
	}
	a->reload_problem[0] = '\0';
	decider__set_policy(a->decider, np);
	/* Templates were judged by the old policy. */
	kernel__clear_fast(a->kernel);
	inst_clear(a);
	policy_facts(a, np);
	a->stdio.policy = np;
	a->stdio.enforce = cfg.enforce;
	err = stdio__sync(&a->stdio);
	if (err < 0)
		pr_warn("cannot load the stdio servers' executables: %s", strerror(-err));
	resolver__set_want_sha256(a->resolver, policy__needs_exe_sha256(np));
	policy__free(a->policy);
	jwt_keyset__free(a->keys);
	jwt_cache__clear(a->tokens);	/* signatures were checked with the old keys */
	a->policy = np;
	a->keys = nk;
	if (a->enforce != (bool)cfg.enforce) {
		a->enforce = cfg.enforce;
		apply_mode(a);
	}
	apply_servers(a);
	ev = json_pack("{s:s,s:s,s:s,s:s,s:s}", "status", "loaded", "source", np->source,
		       "digest", np->digest, "mode", a->enforce ? "enforce" : "monitor",
		       "trigger", trigger);
	output__emit(a->out, "policy", ev);
	/* New ports may have live connections and listeners already. */
	seed_all(a);
}

static int find_scope(struct agent *a, char *msg, size_t len)
{
	const char *root = a->opts->cgroup_root;
	size_t mlen;
	struct stat st;

	if (cgroup__find_mount("/proc/self/mountinfo", a->cgroup_mount, sizeof(a->cgroup_mount))) {
		snprintf(msg, len, "no cgroup v2 hierarchy is mounted (looked in "
			 "/proc/self/mountinfo); mount one with: mount -t cgroup2 none /sys/fs/cgroup");
		return -ENOENT;
	}
	mlen = strlen(a->cgroup_mount);
	if (!root || !*root) {
		snprintf(a->cgroup_root, sizeof(a->cgroup_root), "/");
	} else if (strncmp(root, a->cgroup_mount, mlen) == 0 && (root[mlen] == '/' || !root[mlen])) {
		/* A directory under the mount. */
		snprintf(a->cgroup_root, sizeof(a->cgroup_root), "%s", root[mlen] ? root + mlen : "/");
	} else if (root[0] == '/') {
		/* A cgroup path. */
		snprintf(a->cgroup_root, sizeof(a->cgroup_root), "%s", root);
	} else {
		snprintf(msg, len, "--cgroup-root %s: give a cgroup path (/ci) or a directory "
			 "under %s", root, a->cgroup_mount);
		return -EINVAL;
	}
	/* No trailing slash except for the root itself. */
	mlen = strlen(a->cgroup_root);
	while (mlen > 1 && a->cgroup_root[mlen - 1] == '/')
		a->cgroup_root[--mlen] = '\0';
	snprintf(a->cgroup_dir, sizeof(a->cgroup_dir), "%s%s", a->cgroup_mount,
		 strcmp(a->cgroup_root, "/") ? a->cgroup_root : "");
	if (stat(a->cgroup_dir, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(msg, len, "--cgroup-root: %s is not a cgroup v2 directory", a->cgroup_dir);
		return -ENOENT;
	}
	return 0;
}

static void emit_ready(struct agent *a)
{
	json_t *ev = json_object();
	json_t *ports = json_array();
	size_t i;

	for (i = 0; i < a->policy->n_servers; i++) {
		const struct policy_server *s = &a->policy->servers[i];

		if (!s->is_stdio)
			json_array_append_new(ports, json_pack("{s:s,s:i}", "name", s->name,
							       "port", s->port));
	}
	json_object_set_new(ev, "version", json_string(MCPWARDEN_VERSION));
	json_object_set_new(ev, "pid", json_integer(getpid()));
	json_object_set_new(ev, "mode", json_string(a->enforce ? "enforce" : "monitor"));
	json_object_set_new(ev, "policy", json_pack("{s:s,s:s}", "source", a->policy->source,
						    "digest", a->policy->digest));
	json_object_set_new(ev, "servers", ports);
	json_object_set_new(ev, "cgroup_root", json_string(a->cgroup_root));
	json_object_set_new(ev, "cgroup_mount", json_string(a->cgroup_mount));
	json_object_set_new(ev, "tracepoints", json_string(kernel__tracepoint_flavour(a->kernel)));
	json_object_set_new(ev, "attachments", json_integer((json_int_t)kernel__n_links(a->kernel)));
	json_object_set_new(ev, "scheduling", json_string(a->scheduling));
	if (a->pin_dir[0]) {
		json_object_set_new(ev, "pinned", json_string(a->pin_dir));
		json_object_set_new(ev, "adopted", json_boolean(kernel__adopted(a->kernel)));
	}
	if (json_array_size(a->stale_pins))
		json_object_set(ev, "removed_pins", a->stale_pins);
	output__emit(a->out, "ready", ev);
}

static const char *const counter_names[MCPW_CNT__MAX] = {
	[MCPW_CNT_EVENTS_LOST] = "events_lost",
	[MCPW_CNT_DATA_LOST] = "data_lost",
	[MCPW_CNT_HELD_SEGS] = "held_segments",
	[MCPW_CNT_HELD_BYTES] = "held_bytes",
	[MCPW_CNT_PASS_SEGS] = "passed_segments",
	[MCPW_CNT_DROP_SEGS] = "dropped_segments",
	[MCPW_CNT_MIRROR_SEGS] = "mirrored_segments",
	[MCPW_CNT_FAILOPEN_SEGS] = "failopen_segments",
	[MCPW_CNT_FAILCLOSED_SEGS] = "failclosed_segments",
	[MCPW_CNT_OVERLIMIT] = "overlimit_segments",
	[MCPW_CNT_INJECT_OK] = "injected_frames",
	[MCPW_CNT_INJECT_FAIL] = "inject_failures",
	[MCPW_CNT_SOCKHASH_FAIL] = "sockhash_failures",
	[MCPW_CNT_NO_STATE] = "no_state",
	[MCPW_CNT_TUPLE_MISS] = "tuple_misses",
	[MCPW_CNT_STORAGE_FAIL] = "storage_failures",
	[MCPW_CNT_SEG_TOO_BIG] = "segment_too_big",
	[MCPW_CNT_EGRESS_COPIED] = "egress_copied",
	[MCPW_CNT_STDIO_KILLED] = "stdio_killed",
	[MCPW_CNT_FAST_REQUESTS] = "fast_path_requests",
	[MCPW_CNT_FAST_COPY_LOST] = "fast_path_copies_lost",
	[MCPW_CNT_RESEQUENCED] = "resequenced_segments",
	[MCPW_CNT_RESHOWN_TRIMMED] = "reshown_bytes_trimmed",
	[MCPW_CNT_SCRATCH_BUSY] = "scratch_busy",
	[MCPW_CNT_OVER_CAPACITY] = "over_capacity",
	[MCPW_CNT_OVER_DROP_SEGS] = "over_capacity_dropped_segments",
	[MCPW_CNT_OVER_PASS_SEGS] = "over_capacity_passed_segments",
	[MCPW_CNT_WAKER_RUNG] = "held_wakeups_on_cpu",
	[MCPW_CNT_WAKER_NONE] = "held_wakeups_loop",
	[MCPW_CNT_WAKER_PENDING] = "held_wakeups_pending",
	[MCPW_CNT_WAKER_BUSY] = "held_wakeups_not_needed",
	[MCPW_CNT_WAKER_STREAM] = "held_wakeups_stream",
};

static json_t *status_json(void *ctx)
{
	struct agent *a = ctx;
	struct decider_stats ds;
	struct proctab_stats ps;
	struct output_stats os;
	uint64_t cnt[MCPW_CNT__MAX];
	size_t i, own_tmpl, proc_tmpl;
	json_t *st, *k, *v;

	decider__stats(a->decider, &ds);
	proctab__stats(a->procs, &ps);
	output__stats(a->out, &os);
	st = json_object();
	json_object_set_new(st, "version", json_string(MCPWARDEN_VERSION));
	json_object_set_new(st, "pid", json_integer(getpid()));
	json_object_set_new(st, "node", json_string(a->node));
	json_object_set_new(st, "scheduling", json_string(a->scheduling));
	json_object_set_new(st, "plain_report_batches",
			    json_integer((json_int_t)a->plain_report_batches));
	{
		char cpus[128];

		wakers__cpus(a->wakers, cpus, sizeof(cpus));
		/* Held bytes on a CPU with a waker wake it, not the loop. */
		json_object_set_new(st, "wakers", json_pack("{s:s,s:I,s:I,s:I,s:I}", "cpus", cpus,
			"passes", (json_int_t)wakers__passes(a->wakers),
			"loop_kicks", (json_int_t)a->kicks,
			"loop_ring_wakeups", (json_int_t)a->ring_wakeups,
			"reads_on", (json_int_t)a->reads_on));
	}
	json_object_set_new(st, "reshown_stalls_ended",
			    json_integer((json_int_t)a->reshown_stalls));
	json_object_set_new(st, "judged_on_head", json_integer((json_int_t)a->judged_on_head));
	/* Unjudged bytes held for incomplete requests, and the requests
	 * ended for taking too long or for the room. */
	json_object_set_new(st, "pending", json_pack("{s:I,s:I,s:I,s:I,s:I}", "bytes",
		(json_int_t)a->pending_total, "max", (json_int_t)a->max_pending, "timed_out",
		(json_int_t)a->requests_timed_out, "shed", (json_int_t)a->requests_shed,
		"request_timeout_s", (json_int_t)(a->request_timeout_ns / 1000000000ull)));
	json_object_set_new(st, "mode", json_string(a->enforce ? "enforce" : "monitor"));
	json_object_set_new(st, "uptime_s", json_integer((json_int_t)((now_ns() - a->started_ns) / 1000000000ull)));
	json_object_set_new(st, "policy", json_pack("{s:s,s:s}", "source", a->policy->source,
						    "digest", a->policy->digest));
	json_object_set_new(st, "cgroup_root", json_string(a->cgroup_root));
	json_object_set_new(st, "programs", json_pack("{s:s,s:s,s:I}", "tracepoints",
		kernel__tracepoint_flavour(a->kernel), "stream_offsets",
		kernel__stream_offsets(a->kernel), "attachments",
		(json_int_t)kernel__n_links(a->kernel)));
	kernel__count_templates(a->kernel, &own_tmpl, &proc_tmpl);
	json_object_set_new(st, "tables", json_pack("{s:{s:I,s:I,s:I,s:I},"
		"s:{s:I,s:I,s:{s:I,s:I,s:I}},s:I,s:I,s:I,s:I,s:{s:I,s:I},s:{s:I,s:I,s:I}}",
		"processes", "size", (json_int_t)ps.size, "max", (json_int_t)ps.max,
		"evicted_live", (json_int_t)ps.evicted_live, "proc_errors",
		(json_int_t)ps.proc_errors,
		"connections", "size", (json_int_t)hmap__size(a->conns), "max",
		(json_int_t)a->max_conns,
		"over_capacity", "ended", (json_int_t)a->over_ended, "passed",
		(json_int_t)a->over_passed, "unhooked", (json_int_t)a->over_unhooked,
		"sessions", (json_int_t)ds.sessions, "tokens", (json_int_t)ds.tokens,
		"instances", (json_int_t)ds.instances,
		"workloads", (json_int_t)workload__shared_count(),
		"fast_templates", "connections", (json_int_t)own_tmpl, "processes",
		(json_int_t)proc_tmpl, "bindings_refused", "sessions",
		(json_int_t)ds.refused_sessions, "tokens", (json_int_t)ds.refused_tokens,
		"instances", (json_int_t)ds.refused_instances));
	/* Dropped for a newer one of the same workload instance, over its
	 * share (decision.h): only that instance's own. */
	json_object_set_new(json_object_get(st, "tables"), "bindings_evicted",
			    json_pack("{s:I,s:I,s:I}", "sessions", (json_int_t)ds.evicted_sessions,
				      "tokens", (json_int_t)ds.evicted_tokens, "per_instance",
				      (json_int_t)DECISION_MAX_PER_INSTANCE));
	/* Sockets ended (denied connections, connections over capacity):
	 * the walks that ended them, and how many wait for the next. */
	json_object_set_new(st, "ending", json_pack("{s:I,s:I,s:I}", "by_address",
		(json_int_t)a->end_by_address, "walks", (json_int_t)a->end_walks, "queued",
		(json_int_t)a->end_n));
	k = json_object();
	if (kernel__counters(a->kernel, cnt) == 0)
		for (i = 0; i < MCPW_CNT__MAX; i++)
			json_object_set_new(k, counter_names[i] ? counter_names[i] : "?",
					    json_integer((json_int_t)cnt[i]));
	json_object_set_new(st, "kernel_counters", k);
	/* Every verdict given, as /metrics counts them: the decider's, and
	 * the stream's own (a request that is not HTTP, arrived too slowly,
	 * or lost its bytes is malformed without reaching the decider). */
	v = json_object();
	for (i = 0; i < VERDICT__MAX; i++)
		json_object_set_new(v, verdict__name((enum verdict)i), json_integer(
			(json_int_t)(a->actions[i][0] + a->actions[i][1] + a->actions[i][2])));
	json_object_set_new(st, "verdicts", v);
	json_object_set_new(st, "events", json_pack("{s:I,s:I,s:I,s:s?,s:I}", "written",
		(json_int_t)os.events, "dropped", (json_int_t)os.dropped, "write_failures",
		(json_int_t)os.write_lost, "last_write_error",
		a->out_problem[0] ? a->out_problem : NULL, "file_reopened",
		(json_int_t)os.reopened));
	/* Readers of `mcpwarden events` that fell too far behind. */
	json_object_set_new(json_object_get(st, "events"), "readers_dropped",
			    json_integer(a->ctl ? (json_int_t)ctl__dropped_followers(a->ctl) : 0));
	{
		struct mallinfo2 mi = mallinfo2();
		unsigned long long th, tm;
		uint64_t wr, wu;

		json_object_set_new(st, "heap", json_pack("{s:I,s:I}",
			"in_use_bytes", (json_int_t)mi.uordblks, "free_bytes", (json_int_t)mi.fordblks));
		/* How much repeated work the caches saved (render.h, jwt.h,
		 * handle_fast_record). */
		jwt_cache__stats(a->tokens, &th, &tm);
		render__stats(a->render, &wr, &wu);
		json_object_set_new(st, "reuse", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
			"token_facts_reused", (json_int_t)th, "token_facts_parsed", (json_int_t)tm,
			"workloads_reused", (json_int_t)wu, "workloads_rendered", (json_int_t)wr,
			"fast_heads_reused", (json_int_t)a->fast_heads_reused,
			"fast_bodies_reused", (json_int_t)a->fast_bodies_reused,
			"judgments_repeated", (json_int_t)ds.repeated));
	}
	if (a->store) {
		struct store_health sh;

		store__health(a->store, &sh);
		json_object_set_new(st, "cluster", store_health__json(&sh));
	}
	if (a->attest) {
		struct attest_stats as;

		attest__get_stats(a->attest, &as);
		json_object_set_new(st, "attestation", json_pack(
			"{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "socket", attest__path(a->attest),
			"requests", (json_int_t)as.requests, "answered", (json_int_t)as.answered,
			"unknown", (json_int_t)as.unknown, "refused", (json_int_t)as.refused,
			"malformed", (json_int_t)as.malformed, "dropped", (json_int_t)as.dropped));
	}
	if (a->metrics) {
		struct metrics_stats ms;

		metrics__stats(a->metrics, &ms);
		json_object_set_new(st, "metrics_endpoint", json_pack(
			"{s:I,s:I,s:I,s:I,s:I,s:I}", "requests", (json_int_t)ms.requests,
			"scrapes", (json_int_t)ms.scrapes,
			"bad_requests", (json_int_t)ms.bad_requests,
			"timeouts", (json_int_t)ms.timeouts, "rejected", (json_int_t)ms.rejected,
			"body_errors", (json_int_t)ms.body_errors));
	}
	if (a->k8s) {
		struct k8s_stats ks;

		k8s__stats(a->k8s, &ks);
		json_object_set_new(st, "kubernetes", json_pack(
			"{s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:s?}", "connected", ks.connected,
			"synced", ks.synced, "pods_applied", (json_int_t)ks.applied,
			"pods_rejected", (json_int_t)ks.rejected, "lists", (json_int_t)ks.lists,
			"relists", (json_int_t)ks.relists, "reconnects", (json_int_t)ks.reconnects,
			"events_dropped", (json_int_t)ks.dropped, "last_error",
			ks.last_error[0] ? ks.last_error : NULL));
	}
	json_object_set_new(st, "health", json_pack("{s:s,s:s}", "status",
		a->health[0] ? "degraded" : "ok", "reasons", a->health));
	return st;
}

static void collect_metrics(void *ctx, struct prom_buf *b)
{
	static const char *const action_names[3] = { "allowed", "alerted", "blocked" };
	static const char *const kind_names[8] = { "ready", "connection", "request", "alert",
						   "policy", "lost", "shutdown", "health" };
	struct agent *a = ctx;
	struct output_stats os;
	struct decider_stats ds;
	struct proctab_stats ps;
	uint64_t cnt[MCPW_CNT__MAX];
	char buf[32];
	size_t i, j;

	output__stats(a->out, &os);
	for (i = 0; i < 8; i++)
		prom__counter(b, "mcpwarden_events_total", "Events written, by kind.",
			      PROM_LABELS("kind", kind_names[i]), (double)os.by_kind[i]);
	prom__counter(b, "mcpwarden_events_dropped_total", "Events that could not be written.",
		      NULL, (double)os.dropped);
	for (i = 0; i < VERDICT__MAX; i++)
		for (j = 0; j < 3; j++)
			prom__counter(b, "mcpwarden_verdicts_total", "Judged requests, by verdict "
				      "and action.", PROM_LABELS("verdict", verdict__name((enum verdict)i),
				      "action", action_names[j]), (double)a->actions[i][j]);
	latency_hist__prom(&a->verdict_latency, b, "mcpwarden_verdict_latency_seconds",
			   "From a request's first byte held in the kernel to its verdict.", NULL);
	latency_hist__prom(&a->verdict_wait, b, "mcpwarden_verdict_wait_seconds",
			   "Of the verdict latency: the held first byte waiting for the daemon "
			   "to read it (wakeup and scheduling).", NULL);
	if (kernel__counters(a->kernel, cnt) == 0) {
		prom__counter(b, "mcpwarden_ring_lost_total", "Kernel records lost: ring full.",
			      PROM_LABELS("ring", "events"), (double)cnt[MCPW_CNT_EVENTS_LOST]);
		prom__counter(b, "mcpwarden_ring_lost_total", "Kernel records lost: ring full.",
			      PROM_LABELS("ring", "data"),
			      (double)(cnt[MCPW_CNT_DATA_LOST] + cnt[MCPW_CNT_FAST_COPY_LOST]));
		for (i = 0; i < MCPW_CNT__MAX; i++)
			if (counter_names[i])
				prom__counter(b, "mcpwarden_kernel_total", "Kernel-side counters.",
					      PROM_LABELS("counter", counter_names[i]), (double)cnt[i]);
	}
	prom__gauge(b, "mcpwarden_bpf_stats_enabled", "kernel.bpf_stats_enabled.", NULL,
		    bpfstats__enabled());
	if (bpfstats__enabled()) {
		int fds[64];
		struct bpf_prog_stat st[64];
		size_t n = kernel__prog_fds(a->kernel, fds, 64);

		if (bpfstats__read(fds, n, st) == 0) {
			for (i = 0; i < n; i++) {
				prom__counter(b, "mcpwarden_bpf_prog_runs_total", "BPF program runs.",
					      PROM_LABELS("prog", st[i].name), (double)st[i].run_cnt);
				prom__counter(b, "mcpwarden_bpf_prog_run_seconds_total",
					      "BPF program run time.", PROM_LABELS("prog", st[i].name),
					      (double)st[i].run_time_ns / 1e9);
			}
		}
	}
	decider__stats(a->decider, &ds);
	proctab__stats(a->procs, &ps);
#define TABLE(name, size, limit)							\
	do {										\
		prom__gauge(b, "mcpwarden_table_entries", "Entries in a bounded table.",	\
			    PROM_LABELS("table", name), (double)(size));			\
		prom__gauge(b, "mcpwarden_table_limit", "Limit of a bounded table.",	\
			    PROM_LABELS("table", name), (double)(limit));			\
	} while (0)
	TABLE("processes", ps.size, ps.max);
	TABLE("connections", hmap__size(a->conns), a->max_conns);
	TABLE("sessions", ds.sessions, DECISION_MAX_SESSIONS);
	TABLE("tokens", ds.tokens, DECISION_MAX_TOKENS);
	TABLE("pending_bytes", a->pending_total, a->max_pending);
#undef TABLE
	/* What a full table turned away: nothing of it is judged or checked. */
	prom__counter(b, "mcpwarden_table_refused_total", "Entries a full table refused.",
		      PROM_LABELS("table", "sessions"), (double)ds.refused_sessions);
	prom__counter(b, "mcpwarden_table_refused_total", "Entries a full table refused.",
		      PROM_LABELS("table", "tokens"), (double)ds.refused_tokens);
	prom__counter(b, "mcpwarden_table_refused_total", "Entries a full table refused.",
		      PROM_LABELS("table", "instances"), (double)ds.refused_instances);
	prom__counter(b, "mcpwarden_table_evicted_total", "Bindings a workload instance over "
		      "its share dropped, its least recently used.",
		      PROM_LABELS("table", "sessions"), (double)ds.evicted_sessions);
	prom__counter(b, "mcpwarden_table_evicted_total", "Bindings a workload instance over "
		      "its share dropped, its least recently used.",
		      PROM_LABELS("table", "tokens"), (double)ds.evicted_tokens);
#define INCOMPLETE_HELP "Incomplete requests given up on: too slow (--request-timeout; " \
	"its connection ended in enforce mode, alerted in monitor mode), or the oldest when " \
	"the unjudged bytes' limit needed room."
	prom__counter(b, "mcpwarden_incomplete_requests_ended_total", INCOMPLETE_HELP,
		      PROM_LABELS("why", "timeout"), (double)a->requests_timed_out);
	prom__counter(b, "mcpwarden_incomplete_requests_ended_total", INCOMPLETE_HELP,
		      PROM_LABELS("why", "room"), (double)a->requests_shed);
#undef INCOMPLETE_HELP
	prom__counter(b, "mcpwarden_connections_over_capacity_total", "Protected connections "
		      "over --max-connections, by what happened to them.",
		      PROM_LABELS("action", "ended"), (double)a->over_ended);
	prom__counter(b, "mcpwarden_connections_over_capacity_total", "Protected connections "
		      "over --max-connections, by what happened to them.",
		      PROM_LABELS("action", "passed"), (double)a->over_passed);
	snprintf(buf, sizeof(buf), "%s", a->health[0] ? "degraded" : "ok");
	prom__gauge(b, "mcpwarden_healthy", "1 when the agent sees everything it should.",
		    NULL, a->health[0] ? 0 : 1);
	sinks__collect(a->sinks, b);
}

static int health_cb(void *ctx, char *reason, size_t len)
{
	struct agent *a = ctx;

	if (!a->health[0])
		return 0;
	snprintf(reason, len, "%s", a->health);
	return 1;
}

static bool addr_is_loopback(const uint8_t *a)
{
	static const uint8_t v6_lo[16] = { [15] = 1 };
	static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

	return memcmp(a, v6_lo, 16) == 0 || (memcmp(a, mapped, 12) == 0 && a[12] == 127);
}

/*
 * The attestation API's question: who is on the client end of this
 * connection? Answered from kernel state only: the protected connection's
 * attribution, else what the connect hook recorded for the 4-tuple.
 */
static int attest_lookup(void *ctx, const struct attest_query *q, json_t **out)
{
	struct agent *a = ctx;
	struct mcpw_tuple_key key = {};
	struct mcpw_sock_attr attr;
	struct hmap_iter it;
	struct workload w;
	struct conn *c;
	void *val;

	/* A protected connection accepted a moment ago may still be a record
	 * in the ring, and the kernel gave its client's attribution to that
	 * record (the 4-tuple's entry is gone): read the rings first. */
	rings__consume(a->rings);
	c = q->sock_cookie ? hmap__get(a->conns, q->sock_cookie) : NULL;

	if (!c) {
		hmap__iter_init(a->conns, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val)) {
			struct conn *x = val;

			if (x->open_seen && x->tuple.sport == q->server.port &&
			    x->tuple.dport == q->client.port &&
			    memcmp(x->tuple.saddr, q->server.addr, 16) == 0 &&
			    memcmp(x->tuple.daddr, q->client.addr, 16) == 0 &&
			    (!addr_is_loopback(q->client.addr) || !q->netns || x->netns == q->netns)) {
				c = x;
				break;
			}
		}
	}
	if (c && c->open_seen) {
		*out = workload__json(c->client);
		return c->preexisting ? ATTEST_SOURCE_PROC : ATTEST_SOURCE_KERNEL;
	}
	memcpy(key.caddr, q->client.addr, 16);
	memcpy(key.saddr, q->server.addr, 16);
	key.cport = q->client.port;
	key.sport = q->server.port;
	key.netns = addr_is_loopback(q->client.addr) ? q->netns : 0;
	if (kernel__lookup_tuple(a->kernel, &key, &attr))
		return -ENOENT;
	resolver__resolve(a->resolver, &attr.task, &w);
	*out = workload__json(&w);
	workload__release(&w);
	return ATTEST_SOURCE_KERNEL;
}

/* Adds fd to the loop's epoll set (readable). 0 or -1 with errno. */
static int watch_fd(struct agent *a, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	return epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static int setup_fds(struct agent *a)
{
	struct itimerspec its = {
		.it_interval = { 0, TICK_MS * 1000000L },
		.it_value = { 0, TICK_MS * 1000000L },
	};
	struct rlimit nofile;
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	log__nonblocking();
	/* Descriptors (BPF objects, namespaces, clients of its sockets): the
	 * soft limit, often 1024, raised to the hard one. */
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	/* An events file past a file-size limit: the write fails (EFBIG) and
	 * is reported, rather than the signal ending the agent. */
	signal(SIGXFSZ, SIG_IGN);
	a->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	a->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	a->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->sigfd < 0 || a->timerfd < 0 || a->epfd < 0 || a->kick_fd < 0)
		return -errno;
	if (timerfd_settime(a->timerfd, 0, &its, NULL))
		return -errno;
	if (watch_fd(a, a->sigfd) || watch_fd(a, a->timerfd) || watch_fd(a, a->kick_fd) ||
	    watch_fd(a, rings__epoll_fd(a->rings)) ||
	    (a->ctl && watch_fd(a, ctl__fd(a->ctl))) ||
	    (a->metrics && watch_fd(a, metrics__fd(a->metrics))) ||
	    (a->attest && watch_fd(a, attest__fd(a->attest))) ||
	    (a->store && watch_fd(a, store__fd(a->store))))
		return -errno;
	return 0;
}

/*
 * The policy file's directory is watched rather than the file: an editor
 * saves through a new file renamed over the old one, and a Kubernetes
 * ConfigMap volume swaps a `..data` symlink; either is an event in the
 * directory. The check waits until it has been quiet for POLICY_QUIET_NS.
 */
#define POLICY_QUIET_NS (300ull * 1000000ull)

static void watch_policy(struct agent *a)
{
	char dir[PATH_MAX], *slash;

	if (!a->opts->policy_path)
		return;
	snprintf(dir, sizeof(dir), "%s", a->opts->policy_path);
	slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	a->policy_watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (a->policy_watch < 0 ||
	    inotify_add_watch(a->policy_watch, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
			      IN_DELETE | IN_ATTRIB) < 0 ||
	    watch_fd(a, a->policy_watch)) {
		pr_warn("cannot watch %s for policy changes (%s): reload with SIGHUP", dir,
			strerror(errno));
		if (a->policy_watch >= 0)
			close(a->policy_watch);
		a->policy_watch = -1;
	}
	snprintf(a->policy_tried, sizeof(a->policy_tried), "%s", a->policy->digest);
}

static void on_policy_dir(struct agent *a)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	while (read(a->policy_watch, buf, sizeof(buf)) > 0)
		;
	a->policy_check_at = now_ns() + POLICY_QUIET_NS;
}

/* From the tick: the directory has been quiet; a file whose digest is not
 * the one last tried is loaded. */
static void check_policy_file(struct agent *a, uint64_t now)
{
	char digest[65];
	int err;

	if (!a->policy_check_at || now < a->policy_check_at)
		return;
	a->policy_check_at = 0;
	/* A file that cannot be read (removed, its mount gone) is tried too,
	 * once a distinct error: the reload is rejected and says why (a
	 * `policy` event, health), the policy in force stays. Passed over, an
	 * operator who removed the file or broke its mount saw nothing. */
	err = policy__file_digest(a->opts->policy_path, digest);
	if (err)
		snprintf(digest, sizeof(digest), "unreadable: %d", err);
	if (strcmp(digest, a->policy_tried) == 0)
		return;
	memcpy(a->policy_tried, digest, sizeof(digest));
	pr_info("the policy file changed: reloading %s", a->opts->policy_path);
	reload(a, "file");
}

static void on_signal(struct agent *a)
{
	struct signalfd_siginfo si;

	while (read(a->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			/* Always reloaded; what it read is not tried again by
			 * the watch. */
			if (a->opts->policy_path)
				policy__file_digest(a->opts->policy_path, a->policy_tried);
			reload(a, "signal");
		} else
			a->stop = true;
	}
}

/* Pod metadata arrived: requests waiting for it can be judged now. */
static void retry_pod_waits(struct agent *a)
{
	struct hmap_iter it;
	void *val;

	hmap__iter_init(a->conns, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val)) {
		struct conn *c = val;

		if (c->pod_wait || c->remote_wait)
			process_requests(a, c);
		/* Fleet: instances with open connections stay live everywhere. */
		if (a->store && decider__conn_client(c))
			fleet_sighting(a, decider__conn_client(c), c->client);
	}
}

static int start_k8s(struct agent *a, char *msg, size_t len)
{
	const struct agent_opts *o = a->opts;
	struct k8s_opts ko = {
		.api_server = o->kube_api,
		.token_file = o->kube_token,
		.ca_file = o->kube_ca,
		.node_name = a->node,
	};
	int err;

	if (o->no_kube || o->pods_file || (!o->kube_api && !getenv("KUBERNETES_SERVICE_HOST")))
		return 0;
	err = k8s__start(&ko, &a->k8s, msg, len);
	if (err)
		return err;
	if (watch_fd(a, k8s__fd(a->k8s))) {
		snprintf(msg, len, "cannot watch the pod watcher: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/*
 * In a container with its own cgroup namespace, /proc/PID/cgroup would
 * show other workloads' paths relative to ours ("/../.."): join the host's
 * (hostPID shows it as PID 1's) so paths are the ones policies name.
 */
static void join_host_cgroupns(void)
{
	struct stat self, init;
	int fd;

	if (stat("/proc/self/ns/cgroup", &self) || stat("/proc/1/ns/cgroup", &init) ||
	    self.st_ino == init.st_ino)
		return;
	fd = open("/proc/1/ns/cgroup", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWCGROUP))
		pr_warn("running in a private cgroup namespace and cannot join the host's (%s): "
			"cgroup paths in events and policies will be relative to it",
			strerror(errno));
	else
		pr_info("joined the host's cgroup namespace");
	if (fd >= 0)
		close(fd);
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The event loop runs SCHED_FIFO (lowest priority) by default: a request
 * held for a verdict waits for this loop, and a plain task can wait a
 * scheduler tick (4 ms at HZ=250) behind whatever runs on its CPU. Only
 * this thread: threads started later (SCHED_RESET_ON_FORK) and every other
 * thread stay plain. A loop that is busy
 * gives it up for a while (guard_scheduling()).
 */
static void set_scheduling(struct agent *a)
{
	int e;

	sched_guard__init(&a->sched, false, thread_cpu_ns(), now_ns());
	if (a->opts->scheduling && strcmp(a->opts->scheduling, "normal") == 0) {
		snprintf(a->scheduling, sizeof(a->scheduling), "normal");
		return;
	}
	e = -go_realtime();
	if (!e) {
		snprintf(a->scheduling, sizeof(a->scheduling), "realtime");
		sched_guard__init(&a->sched, true, thread_cpu_ns(), now_ns());
		a->loop_realtime = true;
		return;
	}
	snprintf(a->scheduling, sizeof(a->scheduling), "normal (SCHED_FIFO refused: %s)",
		 strerror(e));
	pr_warn("cannot run the event loop SCHED_FIFO (%s): held requests may wait behind "
		"other tasks for their verdict%s", strerror(e),
		e == EPERM ? " (it needs CAP_SYS_NICE and, with RT group scheduling, a cpu "
		"cgroup with cpu.rt_runtime_us; --scheduling normal says this is meant)" : "");
}

/* Every second: a loop busy most of the time gives real-time up for a
 * while (schedguard.h). */
static void guard_scheduling(struct agent *a)
{
	uint64_t now = now_ns();
	enum sched_change c;

	if (!a->sched.realtime && !a->sched.resume_ns)
		return;	/* never real-time, or not coming back */
	/* The wakers do the loop's work too: their time counts as its. */
	c = sched_guard__tick(&a->sched, thread_cpu_ns() + wakers__cpu_ns(a->wakers), now);
	if (c == SCHED_TO_NORMAL) {
		if (go_plain())
			return;
		sched_guard__applied(&a->sched, c, now);
		snprintf(a->scheduling, sizeof(a->scheduling), "normal (real-time suspended: the "
			 "loop was busy %u%% of the last second)", a->sched.busy_pct);
		pr_warn("the event loop was busy %u%% of the last second: it runs as a plain "
			"task for at least %llu s", a->sched.busy_pct,
			SCHED_GUARD_PAUSE_NS / 1000000000ull);
	} else if (c == SCHED_TO_REALTIME) {
		if (go_realtime()) {
			a->sched.resume_ns = 0;	/* refused now: stay plain */
			return;
		}
		sched_guard__applied(&a->sched, c, now);
		snprintf(a->scheduling, sizeof(a->scheduling), "realtime");
		pr_info("the event loop is calm again: real-time once more");
	}
}

/*
 * Whether the rings are being read (struct mcpw_loop_state): while they
 * are, held bytes ring no waker. Cleared with a full barrier before the
 * count of held segments is read again (drain()).
 */
static void set_busy(struct agent *a, bool busy)
{
	if (a->loop_state)
		__atomic_store_n(&a->loop_state->busy, busy, __ATOMIC_SEQ_CST);
}

static uint64_t held_count(const struct agent *a)
{
	return a->loop_state ? __atomic_load_n(&a->loop_state->held, __ATOMIC_SEQ_CST) : 0;
}

/* What ends every pass of the loop or a waker: the deferred `connection`
 * events, the pass's lines written, real-time again. */
static void end_pass(struct agent *a)
{
	report_connections(a);
	output__flush(a->out);
	back_to_realtime(a);
}

/* How long one thread reads the rings on end before it lets others in. */
#define DRAIN_BUDGET_NS (1000ull * 1000)

/* Tests (MCPW_TEST_DRAIN_STALL): a waker's first pass for newly held
 * bytes stops at once, as one does at a record still being written (which
 * no test can hold open on another CPU): they are left for whoever reads
 * next. */
static bool test_stalled(struct agent *a, bool waker, uint64_t held_seen)
{
	if (!a->test_stall || !waker || held_seen == a->test_stalled_at)
		return false;
	a->test_stalled_at = held_seen;
	return true;
}

/*
 * Reads the rings, under a->lock, until no held bytes wait: after each
 * pass it says it stopped reading (set_busy), then reads on if held
 * segments were counted since the pass began, since their wakers were
 * not rung (struct mcpw_loop_state). True when it stopped with work left
 * (its budget spent, or a record still being written on another CPU): it
 * is still `busy`, so no waker is rung, and the caller makes sure the
 * loop comes back at once. waker: a waker's pass, not the loop's.
 */
static bool drain(struct agent *a, bool waker)
{
	uint64_t start = now_ns(), seen, before;

	for (;;) {
		set_busy(a, true);
		seen = held_count(a);
		before = a->held_records;
		if (test_stalled(a, waker, seen))
			return true;
		rings__consume(a->rings);
		end_pass(a);
		if (!a->drain_barrier_passed) {
			/* Tests: held bytes can arrive while the rings are busy. */
			a->drain_barrier_passed = true;
			if (getenv("MCPW_TEST_DRAIN_BARRIER"))
				test_barrier("drain_busy");
			start = now_ns();	/* the wait is not the pass's */
		}
		/* Held bytes read: more soon after are a stream (MCPW_STREAM_NS). */
		if (a->loop_state && a->held_records != before)
			__atomic_store_n(&a->loop_state->held_read_ns, now_ns(), __ATOMIC_RELAXED);
		if (rings__stalled(a->rings) || now_ns() - start > DRAIN_BUDGET_NS)
			return true;
		set_busy(a, false);
		if (held_count(a) == seen)
			return false;
		a->reads_on++;
	}
}

static void run_loop(struct agent *a)
{
	struct epoll_event evs[8];
	int n, i, rb_fd = rings__epoll_fd(a->rings);
	uint64_t expirations;
	bool again = false;	/* the rings have more: read them at once */

	while (!a->stop) {
		bool rings = again;

		n = epoll_wait(a->epfd, evs, 8, again ? 0 : 1000);
		if (n < 0 && errno != EINTR) {
			pr_err("epoll_wait: %s", strerror(errno));
			break;
		}
		pthread_mutex_lock(&a->lock);
		for (i = 0; i < n; i++) {
			if (evs[i].data.fd == rb_fd) {
				a->ring_wakeups++;
				rings = true;
			} else if (evs[i].data.fd == a->kick_fd) {
				if (read(a->kick_fd, &expirations, sizeof(expirations)) > 0)
					rings = true;
			} else if (evs[i].data.fd == a->timerfd) {
				if (read(a->timerfd, &expirations, sizeof(expirations)) > 0)
					tick(a);
				rings = true;	/* and the rings, whatever woke them */
			} else if (evs[i].data.fd == a->sigfd) {
				on_signal(a);
			} else if (evs[i].data.fd == a->policy_watch) {
				on_policy_dir(a);
			} else if (a->ctl && evs[i].data.fd == ctl__fd(a->ctl)) {
				ctl__on_readable(a->ctl);
			} else if (a->store && evs[i].data.fd == store__fd(a->store)) {
				fleet_drain(a);
			} else if (a->attest && evs[i].data.fd == attest__fd(a->attest)) {
				attest__on_readable(a->attest);
			} else if (a->metrics && evs[i].data.fd == metrics__fd(a->metrics)) {
				metrics__on_readable(a->metrics);
			} else if (a->k8s && evs[i].data.fd == k8s__fd(a->k8s)) {
				if (k8s__drain(a->k8s, a->pods) > 0)
					retry_pod_waits(a);
			}
		}
		if (rings)
			again = drain(a, false);
		else
			end_pass(a);
		sched_in_step(a, &a->loop_realtime);
		pthread_mutex_unlock(&a->lock);
	}
}

/*
 * A waker's turn (waker.h), under a->lock: the loop's reading of the
 * rings. Work left after the budget (a steady stream of held requests) or
 * behind a record still being written goes to the loop, which is not tied
 * to one CPU; the rings stay `busy` for it, so no waker is rung meanwhile.
 */
static void waker_pass(void *ctx, bool woken, bool *realtime)
{
	struct agent *a = ctx;
	uint64_t one = 1;

	sched_in_step(a, realtime);
	if (!woken)
		return;
	if (drain(a, true)) {
		if (write(a->kick_fd, &one, sizeof(one)) == sizeof(one)) {
			a->kicks++;
		} else {
			pr_warn("a waker cannot hand the rings to the event loop (%s): what "
				"is left is read on the loop's next tick", strerror(errno));
			set_busy(a, false);
		}
	}
	sched_in_step(a, realtime);
}

static void start_wakers(struct agent *a)
{
	char cpus[128];
	int err;

	a->loop_state = kernel__loop_state(a->kernel);
	if (!a->loop_state) {
		pr_warn("no wakers (cannot map the loop's state: %s): held bytes wake the "
			"event loop wherever it sleeps", strerror(errno));
		wakers__unregister(kernel__wakers_fd(a->kernel), libbpf_num_possible_cpus());
		return;
	}
	set_busy(a, false);
	a->loop_state->stream_ns = MCPW_STREAM_NS;
	a->test_stall = getenv("MCPW_TEST_DRAIN_STALL") != NULL;
	if (getenv("MCPW_TEST_STREAM_MS"))	/* tests: every held request a stream */
		a->loop_state->stream_ns = strtoull(getenv("MCPW_TEST_STREAM_MS"), NULL, 10) *
					   1000000ull;
	a->wakers = wakers__start(kernel__wakers_fd(a->kernel), libbpf_num_possible_cpus(),
				  &a->lock, waker_pass, a, &err);
	if (!a->wakers) {
		pr_warn("no wakers (%s): held bytes wake the event loop wherever it sleeps",
			strerror(-err));
		return;
	}
	wakers__cpus(a->wakers, cpus, sizeof(cpus));
	pr_info("held bytes wake a thread on the CPU that held them (CPUs %s)", cpus);
}

static void shutdown_agent(struct agent *a, const char *why)
{
	struct hmap_iter it;
	void *val;

	/* A connection with unjudged bytes held cannot be completed once the
	 * kernel side goes: end it rather than let its tail through alone. */
	if (a->enforce && a->conns) {
		hmap__iter_init(a->conns, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val)) {
			struct conn *c = val;

			if (!c->denied && c->held_len)
				deny_conn(a, c);
		}
	}
	end_queued(a, true);
	if (a->out) {
		json_t *ev = json_pack("{s:s}", "reason", why);

		report_connections(a);

		if (a->pin_dir[0]) {
			json_object_set_new(ev, "pinned", json_string(a->pin_dir));
			pr_info("the kernel side stays attached and enforcing (pinned in %s); "
				"remove it with: mcpwarden run --cleanup --state-dir %s",
				a->pin_dir, a->opts->state_dir);
		}
		output__emit(a->out, "shutdown", ev);
		/* The last events: written now, and said if they could not be. */
		output__drain(a->out);
		a->last_out_log_ns = 0;
		report_output_failures(a, now_ns());
	}
}

static void teardown(struct agent *a)
{
	struct hmap_iter it;
	void *val;

	if (a->conns) {
		hmap__iter_init(a->conns, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val))
			conn_free(a, val);
		hmap__free(a->conns);
	}
	free(a->closed);
	json_decref(a->stale_pins);
	if (a->inst) {
		hmap__iter_init(a->inst, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val)) {
			free(((struct inst_entry *)val)->client);
			free(val);
		}
		hmap__free(a->inst);
	}
	if (a->listeners) {
		hmap__iter_init(a->listeners, &it);
		while (hmap__iter_next(&it, NULL, NULL, &val))
			free(val);
		hmap__free(a->listeners);
	}
	forget_netns_fds(a);
	hmap__free(a->netns_fds);
	rings__free(a->rings);
	stdio__free(&a->stdio);
	attest__close(a->attest);
	kernel__close(a->kernel);
	ctl__close(a->ctl);
	decider__free(a->decider);
	resolver__free(a->resolver);
	k8s__stop(a->k8s);
	podmeta__free(a->pods);
	proctab__free(a->procs);
	jwt_keyset__free(a->keys);
	jwt_cache__free(a->tokens);
	render__free(a->render);
	for (size_t i = 0; a->fast_heads && i < 2 * FAST_HEAD_SLOTS; i++)
		fast_head_clear(&a->fast_heads[i]);
	free(a->fast_heads);
	policy__free(a->policy);
	sinks__free_all(a->sinks, 2000);
	output__free(a->out);
	store__close(a->store);
	hmap__free(a->sighted);
	metrics__close(a->metrics);
	if (a->epfd > 0)
		close(a->epfd);
	if (a->sigfd > 0)
		close(a->sigfd);
	if (a->timerfd > 0)
		close(a->timerfd);
	if (a->kick_fd >= 0)
		close(a->kick_fd);
	pthread_mutex_destroy(&a->lock);
	if (a->policy_watch >= 0)
		close(a->policy_watch);
}

/*
 * The layout of the pinned maps: bumped whenever a pinned map's key, value
 * or size changes, or a map is added (2: mcpw_config gained `fleet`; 3: the
 * counters array grew, and srv_over came), so that a build never adopts
 * maps it cannot read, nor fails to load beside them.
 */
#define PIN_LAYOUT	"v3"

/* One pinned instance per state directory: its name's first 16 characters. */
static void pin_prefix(const char *state_dir, char *buf, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	const char *p;

	for (p = state_dir; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ull;
	}
	snprintf(buf, len, "%016llx-", (unsigned long long)h);
}

/* The layout's name: a connection table of another size is another
 * layout too (a pinned map is adopted only in its own size). */
static void pin_layout(uint32_t max_conns, char *buf, size_t len)
{
	if (max_conns == MCPW_MAX_CONNS)
		snprintf(buf, len, "%s", PIN_LAYOUT);
	else
		snprintf(buf, len, "%s-c%u", PIN_LAYOUT, max_conns);
}

void agent__pin_dir(const char *state_dir, uint32_t max_conns, char *buf, size_t len)
{
	char prefix[32], layout[32];

	pin_prefix(state_dir, prefix, sizeof(prefix));
	pin_layout(max_conns, layout, sizeof(layout));
	snprintf(buf, len, PIN_ROOT "/%s%s", prefix, layout);
}

/*
 * Removes what builds of another pinned layout left for this state directory
 * (an upgrade after a pinned stop): this build cannot adopt those maps, and
 * their programs would go on judging the subtree with no daemon behind them.
 * Bytes they held are lost with them; each directory removed is said, and
 * named in *removed (a JSON array, for the ready event) when it is given.
 * 0, or -errno with msg set.
 */
static int remove_other_layouts(const char *state_dir, uint32_t max_conns, json_t *removed,
				char *msg, size_t len)
{
	char prefix[32], layout[32], path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(PIN_ROOT);
	int err = 0;

	if (!d)
		return 0;	/* nothing pinned, or no bpffs: the load says so */
	pin_prefix(state_dir, prefix, sizeof(prefix));
	pin_layout(max_conns, layout, sizeof(layout));
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 ||
		    (max_conns && strcmp(de->d_name + strlen(prefix), layout) == 0))
			continue;
		snprintf(path, sizeof(path), PIN_ROOT "/%s", de->d_name);
		pr_warn("removing the kernel side an earlier mcpwarden build or "
			"--max-connections pinned at %s (layout %s; this one's is %s): it cannot "
			"be adopted, and bytes it held are lost", path, de->d_name + strlen(prefix),
			layout);
		err = kernel__cleanup_pins(path);
		if (err) {
			snprintf(msg, len, "cannot remove the kernel side an earlier build pinned at "
				 "%s: %s; remove it (rm -r %s) and start again", path,
				 strerror(-err), path);
			break;
		}
		if (removed)
			json_array_append_new(removed, json_string(path));
	}
	closedir(d);
	return err;
}

static int cleanup_pins(const struct agent_opts *o)
{
	char dir[PATH_MAX], msg[PATH_MAX + 200];
	int err;

	agent__pin_dir(o->state_dir, MCPW_MAX_CONNS, dir, sizeof(dir));
	err = kernel__cleanup_pins(dir);
	if (err) {
		fprintf(stderr, "mcpwarden: cannot remove pinned state in %s: %s\n", dir,
			strerror(-err));
		return 1;
	}
	if (remove_other_layouts(o->state_dir, 0, NULL, msg, sizeof(msg))) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		return 1;
	}
	printf("removed pinned state for %s (%s)\n", o->state_dir, dir);
	return 0;
}

/* s as a decimal number from lo to hi, into *n; false when it is not one. */
static bool bounded_number(const char *s, unsigned long lo, unsigned long hi, unsigned long *n)
{
	char *end;

	errno = 0;
	*n = strtoul(s, &end, 10);
	return !errno && end != s && !*end && *s != '-' && *n >= lo && *n <= hi;
}

/* With priority inheritance: a real-time waker waiting for its turn lends
 * its priority to a loop that reports a batch as a plain task. */
static void init_lock(pthread_mutex_t *lock)
{
	pthread_mutexattr_t attr;

	pthread_mutexattr_init(&attr);
	if (pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT))
		pr_debug("no priority inheritance for the loop's lock");
	pthread_mutex_init(lock, &attr);
	pthread_mutexattr_destroy(&attr);
}

int agent__run(const struct agent_opts *o)
{
	struct agent a = { .opts = o, .epfd = -1, .sigfd = -1, .timerfd = -1,
			   .policy_watch = -1, .kick_fd = -1 };
	struct kernel_error kerr = {};
	struct kernel_opts kopts = {};
	struct resolver_opts ropts = {};
	uint16_t ports[MCPW_MAX_PORTS];
	char msg[512];
	int err, status = 1;

	a.limits = http_default_limits;
	init_lock(&a.lock);
	/* The loop and its wakers take turns: one heap for all, not an arena
	 * per thread holding memory another thread freed. */
	mallopt(M_ARENA_MAX, 1);
	if (o->cleanup)
		return cleanup_pins(o);
	err = load_policy(o->policy_path, &a.policy, msg, sizeof(msg));
	if (err) {
		fprintf(stderr, "%s\n", msg);
		return 2;
	}
	if (o->request_events && strcmp(o->request_events, "all") &&
	    strcmp(o->request_events, "judged")) {
		fprintf(stderr, "mcpwarden: --request-events must be all or judged, not %s\n",
			o->request_events);
		status = 2;
		goto out;
	}
	if (o->scheduling && strcmp(o->scheduling, "realtime") &&
	    strcmp(o->scheduling, "normal")) {
		fprintf(stderr, "mcpwarden: --scheduling must be realtime or normal, not %s\n",
			o->scheduling);
		status = 2;
		goto out;
	}
	a.max_conns = MCPW_MAX_CONNS;
	if (o->max_connections) {
		unsigned long n;

		if (!bounded_number(o->max_connections, MCPW_MIN_CONNS, MCPW_MAX_CONNS_LIMIT, &n)) {
			fprintf(stderr, "mcpwarden: --max-connections must be a number from %u to "
				"%u, not %s\n", MCPW_MIN_CONNS, MCPW_MAX_CONNS_LIMIT,
				o->max_connections);
			status = 2;
			goto out;
		}
		a.max_conns = (uint32_t)n;
	}
	a.request_timeout_ns = REQUEST_TIMEOUT_S * 1000000000ull;
	if (o->request_timeout) {
		unsigned long n;

		if (!bounded_number(o->request_timeout, 1, REQUEST_TIMEOUT_MAX_S, &n)) {
			fprintf(stderr, "mcpwarden: --request-timeout must be a number of seconds "
				"from 1 to %u, not %s\n", REQUEST_TIMEOUT_MAX_S, o->request_timeout);
			status = 2;
			goto out;
		}
		a.request_timeout_ns = n * 1000000000ull;
	}
	a.max_pending = MAX_PENDING_TOTAL;
	if (getenv("MCPW_TEST_MAX_PENDING"))	/* tests: a limit they can reach */
		a.max_pending = strtoull(getenv("MCPW_TEST_MAX_PENDING"), NULL, 10) ?: a.max_pending;
	if (o->mode && strcmp(o->mode, "enforce") && strcmp(o->mode, "monitor")) {
		fprintf(stderr, "mcpwarden: --mode must be monitor or enforce, not %s\n", o->mode);
		status = 2;
		goto out;
	}
	a.enforce = mode_enforce(&a, a.policy);
	if (load_keys(a.policy, &a.keys, msg, sizeof(msg))) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		status = 2;
		goto out;
	}
	a.tokens = jwt_cache__new();
	a.render = render__new();
	a.fast_heads = calloc(2 * FAST_HEAD_SLOTS, sizeof(*a.fast_heads));
	if (!a.tokens || !a.render || !a.fast_heads) {
		fprintf(stderr, "mcpwarden: out of memory\n");
		status = 1;
		goto out;
	}
	if (kernel__probe(&kerr)) {
		fprintf(stderr, "mcpwarden: %s\n", kerr.msg);
		status = kerr.missing_feature ? 3 : 1;
		goto out;
	}
	join_host_cgroupns();
	if (find_scope(&a, msg, sizeof(msg))) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		status = 3;
		goto out;
	}
	if (o->node_name) {
		snprintf(a.node, sizeof(a.node), "%s", o->node_name);
	} else {
		struct utsname u;

		snprintf(a.node, sizeof(a.node), "%s", uname(&u) == 0 ? u.nodename : "unknown");
	}

	a.out = output__new(a.node);
	a.conns = hmap__new(false);
	a.unreported_tail = &a.unreported;
	a.closed = calloc(CLOSED_SLOTS, sizeof(*a.closed));
	a.inst = hmap__new(false);
	a.listeners = hmap__new(false);
	a.netns_fds = hmap__new(false);
	a.procs = proctab__new(131072, "/proc");
	a.decider = decider__new();
	a.pods = podmeta__new();
	if (!a.out || !a.conns || !a.closed || !a.inst || !a.listeners || !a.netns_fds || !a.procs || !a.decider ||
	    !a.pods) {
		fprintf(stderr, "mcpwarden: out of memory\n");
		goto out;
	}
	/* --events (or stdout) unless only --output sinks were asked for. */
	if ((o->events || !o->n_outputs) &&
	    output__add_jsonl(a.out, o->events ? o->events : "-", msg, sizeof(msg))) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		status = 2;
		goto out;
	}
	for (size_t i = 0; i < o->n_outputs; i++) {
		err = sinks__add(a.out, o->outputs[i], &a.sinks, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "mcpwarden: %s\n", msg);
			status = err == -EINVAL ? 2 : 1;
			goto out;
		}
	}
	if (o->metrics) {
		err = metrics__open(o->metrics, &a.metrics, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "mcpwarden: %s\n", msg);
			status = err == -EINVAL ? 2 : 1;
			goto out;
		}
		metrics__set_collect(a.metrics, collect_metrics, &a);
		metrics__set_health(a.metrics, health_cb, &a);
	}
	err = open_fleet(&a, msg, sizeof(msg));
	if (err) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		status = err == -EINVAL || err == -EPROTONOSUPPORT || err == -ENOENT ? 2 : 1;
		goto out;
	}
	if (o->pods_file && podmeta__load_file(a.pods, o->pods_file, msg, sizeof(msg))) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		status = 2;
		goto out;
	}
	decider__set_policy(a.decider, a.policy);
	policy_facts(&a, a.policy);

	ropts.cgroup_mount = a.cgroup_mount;
	ropts.cgroup_root = a.cgroup_root;
	ropts.node = a.node;
	ropts.proc_root = "/proc";
	ropts.want_exe_sha256 = policy__needs_exe_sha256(a.policy);
	a.resolver = resolver__new(&ropts, a.procs);
	if (!a.resolver) {
		fprintf(stderr, "mcpwarden: out of memory\n");
		goto out;
	}
	resolver__set_podmeta(a.resolver, a.pods);

	kopts.cgroup_dir = a.cgroup_dir;
	a.stale_pins = json_array();
	if (remove_other_layouts(o->state_dir, a.max_conns, a.stale_pins, msg, sizeof(msg))) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		goto out;
	}
	if (o->pin == 1 || (o->pin == -1 && a.enforce)) {
		agent__pin_dir(o->state_dir, a.max_conns, a.pin_dir, sizeof(a.pin_dir));
		kopts.pin_dir = a.pin_dir;
	}
	kopts.max_conns = a.max_conns;
	kopts.config = kernel_config(&a, a.policy);
	kopts.ports = ports;
	kopts.n_ports = policy_ports(a.policy, ports, MCPW_MAX_PORTS);
	log__route_libbpf();
	err = kernel__open(&kopts, &a.kernel, &kerr);
	if (err) {
		fprintf(stderr, "mcpwarden: %s\n", kerr.msg);
		status = kerr.missing_feature ? 3 : 1;
		goto out;
	}
	/* A previous daemon's templates (reused pinned maps) were judged by
	 * its policy, which may not be this one: each connection's next
	 * request is judged again, as after a reload. New generations start
	 * above every one its connections carry: the kernel takes a template
	 * of an unchanged generation for the one it had, and would keep the
	 * old one's place in the stream. */
	a.fast_gen = kernel__max_template_gen(a.kernel);
	kernel__clear_fast(a.kernel);
	kernel__clear_inst(a.kernel);
	a.started_ns = now_ns();
	err = ctl__open(o->state_dir, status_json, &a, &a.ctl, msg, sizeof(msg));
	if (err) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		goto out;
	}
	output__add_line_sink(a.out, ctl__on_event, a.ctl);
	{
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/%s", o->state_dir, ATTEST_SOCKET_NAME);
		err = attest__open(o->attest_socket ? o->attest_socket : path,
				   o->attest_gid < 0 ? ATTEST_NO_GROUP : (gid_t)o->attest_gid,
				   attest_lookup, &a, &a.attest, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "mcpwarden: %s\n", msg);
			goto out;
		}
	}
	{
		char path[PATH_MAX];

		/* Sessions, token bindings and instances of a previous run. */
		snprintf(path, sizeof(path), "%s/state.json", o->state_dir);
		if (decider__load(a.decider, path, now_ns()) == 0)
			pr_info("restored sessions, tokens and instances from %s", path);
	}
	a.stdio = (struct stdio_ctx){ .kernel = a.kernel, .resolver = a.resolver, .procs = a.procs,
				      .out = a.out, .policy = a.policy, .enforce = a.enforce };
	err = stdio__sync(&a.stdio);
	if (err < 0)
		pr_warn("cannot load the stdio servers' executables: %s", strerror(-err));
	a.rings = kernel__rings(a.kernel, on_event, on_data, &a);
	if (!a.rings || setup_fds(&a)) {
		fprintf(stderr, "mcpwarden: cannot set up the event loop: %s\n", strerror(errno));
		goto out;
	}
	err = start_k8s(&a, msg, sizeof(msg));
	if (err) {
		fprintf(stderr, "mcpwarden: %s\n", msg);
		status = 2;
		goto out;
	}
	watch_policy(&a);
	test_barrier("before_seed");
	/* The process table after attaching, so nothing falls in between. */
	err = proctab__seed(a.procs);
	if (err < 0)
		pr_warn("cannot read /proc (%s): processes older than the agent are unknown",
			strerror(-err));
	seed_all(&a);
	set_scheduling(&a);
	start_wakers(&a);
	emit_ready(&a);
	output__flush(a.out);	/* readiness is read from it at once */
	run_loop(&a);
	/* Alone again from here on. */
	wakers__stop(a.wakers);
	a.wakers = NULL;
	shutdown_agent(&a, "signal");
	save_state(&a);
	status = 0;
out:
	teardown(&a);
	return status;
}
