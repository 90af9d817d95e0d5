/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Workload evidence: what the kernel says about a task (tgid, start time,
 * ids, cgroup id) completed from the process table and the cgroup tree into
 * what an alert shows and a policy selector matches: exe, cmdline, cgroup
 * path, container id, pod, ancestors, node. A workload outside
 * --cgroup-root is out of scope and treated as unattributed.
 */
#ifndef MCPW_WORKLOAD_H
#define MCPW_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "cgroup.h"
#include "mcpwarden/events.h"
#include "policy.h"

#define WORKLOAD_MAX_ANCESTORS 8

struct proctab;
struct podmeta;

/* String fields of workloads are interned (intern.h): shared, never
 * written through, released with workload__release(). */
struct workload_ancestor {
	uint32_t pid;
	const char *exe;
};

struct pod_info {
	char *namespace_;
	char *name;
	char *uid;
	char *service_account;
	char *image;
	struct policy_label *labels;
	size_t n_labels;
	bool pending;		/* pod uid known, metadata not (yet) */
};

struct workload {
	bool attributed;	/* false: only the fields below that say so */
	uint32_t pid;		/* tgid */
	uint32_t tid;
	uint32_t ppid;
	uint32_t uid, gid;
	uint64_t start_ns;
	uint64_t cgroup_id;
	uint32_t netns;
	char comm[MCPW_COMM_LEN];
	const char *exe;
	const char *exe_sha256;
	const char *cmdline;
	const char *cgroup;	/* cgroup v2 path, NULL when unknown */
	struct cgroup_meta meta;
	struct workload_ancestor ancestors[WORKLOAD_MAX_ANCESTORS];
	size_t n_ancestors;
	struct pod_info *pod;	/* NULL: not in a pod */
	/* A workload instance, unique in the fleet: the cgroup id here, and
	 * mixed with the node's name for a workload another node attested. */
	uint64_t instance;
	bool remote;		/* attested by another node's agent */
	const char *node;
	const char *node_buf;	/* interned node name when remote */
	const char *why_unattributed;	/* static reason when !attributed */
};

struct resolver;

struct resolver_opts {
	const char *cgroup_mount;	/* cgroup2 mount point */
	const char *cgroup_root;	/* scope, as a cgroup path ("/" = all) */
	const char *node;		/* node name */
	const char *proc_root;		/* "/proc" */
	bool want_exe_sha256;
};

struct resolver *resolver__new(const struct resolver_opts *o, struct proctab *procs);
void resolver__free(struct resolver *r);
void resolver__set_want_sha256(struct resolver *r, bool want);
void resolver__set_podmeta(struct resolver *r, struct podmeta *pm);

/*
 * Resolves the task into w (freshly allocated fields; release with
 * workload__release). Always returns a usable workload: when the task
 * cannot be tied to a workload in scope, w->attributed is false and
 * why_unattributed says why.
 */
void resolver__resolve(struct resolver *r, const struct mcpw_task *task, struct workload *w);

/* The process owning socket inode `ino` (pre-existing connections). */
int resolver__find_socket_owner(struct resolver *r, uint64_t ino, struct mcpw_task *task);

/* Resolutions so far, and how many could not find the cgroup (health). */
void resolver__stats(const struct resolver *r, uint64_t *resolved, uint64_t *cgroup_failures);

/* The cgroup path of a cgroup id (cached). NULL when unknown. */
const char *resolver__cgroup_path(struct resolver *r, uint64_t id, uint32_t pid_hint);

void workload__release(struct workload *w);
int workload__copy(struct workload *dst, const struct workload *src);

/*
 * Shared workloads: one refcounted, read-only copy of each distinct
 * workload (its strings are interned, so equal bytes are equal workloads).
 * Thousands of connections have the same server, and usually few clients.
 * workload__share() takes w's references (w is left empty) and returns the
 * shared copy, or NULL when out of memory (w then released). Not
 * thread-safe: the daemon's loop thread only.
 */
extern const struct workload workload__none;	/* the empty workload */
const struct workload *workload__share(struct workload *w);
/* A shared workload's number, never given to another (0: NULL): a cache
 * keyed by it needs no reference. */
uint64_t workload__id(const struct workload *shared);
void workload__unshare(const struct workload *shared);
size_t workload__shared_count(void);
/* The selector view of w; strings point into w, the pod view into pv. */
void workload__view(const struct workload *w, struct workload_view *v, struct pod_view *pv,
		    const char **anc_exes);
/* A workload another node's agent attested (its workload__json plus
 * "node"). Returns 0 or -EINVAL. */
int workload__from_json(json_t *o, struct workload *w);

/* A command line fit for events: secrets after --token and friends, and
 * anything shaped like a JWT, replaced by "[redacted]". Caller frees. */
char *workload__redact_cmdline(const char *cmdline);
/* The JSON evidence object of an event. */
json_t *workload__json(const struct workload *w);

#endif
