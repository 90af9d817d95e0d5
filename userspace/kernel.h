/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel side as the daemon sees it: feature probes, the skeleton's
 * lifecycle (open, configure, load, attach to the --cgroup-root subtree),
 * the maps the daemon writes (ports, config, heartbeat, verdicts), the
 * re-injection sockets, and the socket iterators (seeding connections that
 * predate the agent, ending denied ones).
 */
#ifndef MCPW_KERNEL_H
#define MCPW_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>

#include "mcpwarden/events.h"
#include "ring.h"

struct kernel;

struct kernel_opts {
	const char *cgroup_dir;		/* absolute path of the subtree root */
	/* bpffs directory to pin maps and links in, so enforcement outlives
	 * the daemon and a restarted daemon adopts it; NULL: no pinning. */
	const char *pin_dir;
	struct mcpw_config config;
	const uint16_t *ports;
	size_t n_ports;
	/* Protected connections the kernel tracks (0: MCPW_MAX_CONNS); one
	 * more is put under the over-capacity verdict. */
	uint32_t max_conns;
};

/* Why kernel__open failed, for the operator (exit status 3 vs 1). */
struct kernel_error {
	bool missing_feature;		/* exit 3 */
	char msg[512];
};

/* Checks privileges and kernel features, mounts what is missing. */
int kernel__probe(struct kernel_error *err);

int kernel__open(const struct kernel_opts *opts, struct kernel **out, struct kernel_error *err);
/* Detaches everything, except what is pinned (that stays enforcing). */
void kernel__close(struct kernel *k);
/* Whether this open adopted state a previous daemon pinned. */
bool kernel__adopted(const struct kernel *k);
/* Removes everything pinned under pin_dir: links (detaching them) and maps. */
int kernel__cleanup_pins(const char *pin_dir);

/* Which flavours loaded, for `status` and the ready event. */
const char *kernel__tracepoint_flavour(const struct kernel *k);
/* How request bytes are placed in their stream: "tcp" (TCP's own count,
 * 6.2+) or "summed" (segment lengths added up). */
const char *kernel__stream_offsets(const struct kernel *k);
size_t kernel__n_links(const struct kernel *k);

int kernel__set_ports(struct kernel *k, const uint16_t *ports, size_t n);
int kernel__set_config(struct kernel *k, const struct mcpw_config *cfg);
int kernel__heartbeat(struct kernel *k);

/* The map of the wakers' rings, one slot per possible CPU (waker.h). */
int kernel__wakers_fd(const struct kernel *k);
/* The loop's state shared with the kernel, mapped (NULL: errno). */
struct mcpw_loop_state *kernel__loop_state(struct kernel *k);
/* Ring buffers: events first, then data. NULL with errno set. */
struct rings *kernel__rings(struct kernel *k, ring_fn on_event, ring_fn on_data, void *ctx);

int kernel__set_verdict(struct kernel *k, uint64_t cookie, const struct mcpw_conn_verdict *v);
int kernel__get_verdict(struct kernel *k, uint64_t cookie, struct mcpw_conn_verdict *v);
int kernel__del_verdict(struct kernel *k, uint64_t cookie);
int kernel__get_state(struct kernel *k, uint64_t cookie, struct mcpw_conn_state *st);

/*
 * Calls fn for every connection the kernel has a state for, read a few
 * hundred at a time (a syscall a batch rather than one a connection).
 * 0, or -errno (-EINVAL or -EOPNOTSUPP: the kernel has no batch lookups);
 * fn may have been called for some before a failure.
 */
typedef void (*kernel_state_fn)(void *ctx, uint64_t cookie, const struct mcpw_conn_state *st);
int kernel__each_state(struct kernel *k, kernel_state_fn fn, void *ctx);

/*
 * Re-injects len bytes into the receive queue of the server socket with
 * this cookie. Returns 0, -ENOTCONN when that socket is gone, -EAGAIN when
 * the injection path is congested (retry later), other -errno.
 */
int kernel__inject(struct kernel *k, uint64_t cookie, const void *buf, size_t len);

/*
 * Runs the seeding iterator in the network namespace behind netns_fd
 * (-1: the daemon's own) and calls fn for each connection found.
 */
typedef void (*kernel_seed_fn)(void *ctx, const struct mcpw_conn_event *e);
int kernel__seed(struct kernel *k, int netns_fd, kernel_seed_fn fn, void *ctx);

/* Ends TCP sockets by cookie in the namespace behind netns_fd (-1: own). */
int kernel__destroy(struct kernel *k, const uint64_t *cookies, size_t n, int netns_fd);
/* Ends one TCP socket by its tuple t (s = its own end) and cookie through
 * sock_diag (SOCK_DESTROY), in netns_fd's namespace (-1: ours): 0, -ENOENT
 * (no such socket: gone already), -EOPNOTSUPP when the kernel cannot
 * (kernel__destroy's walk can), or -errno. */
int kernel__end_socket(struct kernel *k, uint64_t cookie, const struct mcpw_tuple *t,
		       int netns_fd);

/* Installs (or replaces) a connection's fast-path template; del removes it;
 * clear removes every template (policy reload). */
int kernel__set_fast(struct kernel *k, uint64_t cookie, const struct mcpw_fast_tmpl *t);
int kernel__del_fast(struct kernel *k, uint64_t cookie);
void kernel__clear_fast(struct kernel *k);
/* Fast-path templates in the kernel: connections' own and processes'
 * (2 KiB of kernel memory each). Walks both maps: for status, not a hot path. */
void kernel__count_templates(struct kernel *k, size_t *conns, size_t *procs);

/* Instance templates: a judged workload instance's new connections. */
int kernel__set_inst(struct kernel *k, const struct mcpw_inst_key *key,
		     const struct mcpw_fast_tmpl *t);
void kernel__del_inst(struct kernel *k, const struct mcpw_inst_key *key);
void kernel__clear_inst(struct kernel *k);
/* The highest template generation in the kernel (a previous daemon's, in
 * reused pinned maps: its templates' and the one each connection's place
 * belongs to): new ones must not repeat it. Walks the three maps. */
uint32_t kernel__max_template_gen(struct kernel *k);

/* Replaces the set of stdio server executables (file identities). */
int kernel__set_stdio_exes(struct kernel *k, const struct mcpw_file_key *keys, size_t n);
/* Processes stopped at exec still waiting for a decision. Returns how many
 * were written to tgids (at most max). */
size_t kernel__stdio_stopped(struct kernel *k, uint32_t *tgids, uint64_t *starts, size_t max);
void kernel__stdio_done(struct kernel *k, uint32_t tgid);

/* Reading stdio servers' stdin: attach or detach the read(2) tracepoints
 * (only while the policy has stdio servers), and watch one server. */
int kernel__stdin_attach(struct kernel *k, bool on);
int kernel__stdin_watch(struct kernel *k, uint32_t tgid, uint32_t budget);
void kernel__stdin_unwatch(struct kernel *k, uint32_t tgid);

/* The client attribution the kernel recorded at connect time for a tuple. */
int kernel__lookup_tuple(struct kernel *k, const struct mcpw_tuple_key *key,
			 struct mcpw_sock_attr *out);

/* File descriptors of the loaded programs (for bpf_stats). Returns how many. */
size_t kernel__prog_fds(struct kernel *k, int *fds, size_t max);

/* Sums the per-CPU counters into out[MCPW_CNT__MAX]. */
int kernel__counters(struct kernel *k, uint64_t *out);

#endif
