/* SPDX-License-Identifier: GPL-2.0 */
/*
 * End-to-end test environment: a private cgroup v2 subtree, network
 * namespaces, processes started inside them, a real agent scoped to the
 * subtree, its events, and small TCP peers. Everything a test creates is
 * recorded and removed by env__cleanup(), also when the test failed
 * (call it from the test's cleanup label; the runner's child exit kills
 * nothing on its own).
 */
#ifndef MCPW_TEST_ENV_H
#define MCPW_TEST_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#define ENV_MAX_PROCS 64
#define ENV_MAX_CGROUPS 32
#define ENV_MAX_NETNS 8

struct agent_proc {
	pid_t pid;
	char events_path[256];
	char state_dir[256];
	char policy_path[256];
	char log_path[256];
	size_t events_read;	/* lines consumed by env__next_event */
	int exit_status;
};

struct env {
	char name[64];			/* unique: mcpw-t<pid> */
	char tmp[256];			/* scratch directory */
	char cg_mount[256];		/* cgroup2 mount point */
	char cg_root[256];		/* cgroup path of our subtree: /mcpw-t123 */
	char cg_dirs[ENV_MAX_CGROUPS][512];
	int n_cg;
	pid_t procs[ENV_MAX_PROCS];
	int n_procs;
	char netns[ENV_MAX_NETNS][64];
	int n_netns;
	struct agent_proc agent;
	bool agent_running;
};

/* Paths of the build and of the node programs. */
const char *env__top(void);		/* the repository */
const char *env__bin(void);		/* build/mcpwarden */
const char *env__node_dir(void);	/* tests/e2e/node */
/* tests/e2e/node/NAME (4 rotating buffers: up to 4 in use at once). */
const char *env__node_script(const char *name);
/* The node binary as the agent names it (PATH lookup, symlinks resolved). */
const char *env__node_exe(void);
/* The test MCP server (server.mjs --stateless --json-response) on port in
 * cgroup cg, recording to rec (a path in e->tmp, written here); waits for
 * it to be ready. 0 or -1. */
int env__json_server(struct env *e, const char *cg, int port, char *rec, size_t reclen);
/* Lower-case hex SHA-256 of s (libcrypto). */
void env__sha256_hex(const char *s, char out[65]);
const char *env__helper(const char *name);	/* build/tests/NAME */

/* Creates the subtree and scratch dir. 0 or -errno. */
int env__init(struct env *e);
void env__cleanup(struct env *e);

/* Creates cgroup `rel` under the subtree; returns its cgroup path
 * ("/mcpw-t123/rel") into out. */
int env__cgroup(struct env *e, const char *rel, char *out, size_t len);

/* Creates network namespace NAME-suffix; with peer != NULL also a veth pair
 * between it and the root namespace... see env__veth. */
int env__netns(struct env *e, const char *suffix, char *out, size_t len);
/* Joins two namespaces with a veth pair: a gets ip_a/24, b gets ip_b/24. */
int env__veth(struct env *e, const char *ns_a, const char *ip_a, const char *ns_b,
	      const char *ip_b);

struct spawn_opts {
	const char *cgroup;	/* cgroup path (relative to the mount), or NULL */
	const char *netns;	/* netns name, or NULL */
	const char *stdout_path;	/* NULL: /dev/null */
	const char *stderr_path;	/* NULL: same as stdout */
	const char *cwd;
	uid_t uid;		/* 0: unchanged */
	char *const *envp;	/* NULL: inherit */
};

/* Starts argv[0] (searched in PATH) in the given cgroup/netns. */
pid_t env__spawn(struct env *e, const struct spawn_opts *o, char *const argv[]);
/* Waits for pid up to timeout_ms; returns its exit status (0-255), 128+sig
 * when killed, or -ETIMEDOUT. */
int env__wait(struct env *e, pid_t pid, int timeout_ms);
/* 1 when process pid has a file whose path contains needle mapped (a
 * shared library), 0 when not, -1 when its maps cannot be read. */
int env__maps_has(pid_t pid, const char *needle);
void env__kill(struct env *e, pid_t pid);

/*
 * Starts the agent: policy_json is written to a file; extra args (NULL
 * terminated list) are appended to the command line. Waits for `ready`.
 */
int env__agent_start(struct env *e, const char *policy_json, const char *const *extra);
/* SIGTERM and wait; returns the exit status. */
int env__agent_stop(struct env *e);

/*
 * Waits up to timeout_ms for the next event (after the ones already
 * consumed) matching every "path=value" condition (dotted paths into the
 * event, values compared as text; "path=" matches absence). Returns a new
 * reference or NULL. Conditions end with NULL.
 */
json_t *env__wait_event(struct env *e, int timeout_ms, ...);
/* Like env__wait_event but scans all events from the start, not consuming. */
json_t *env__find_event(struct env *e, int timeout_ms, ...);
/* Counts events so far matching the conditions. */
int env__count_events(struct env *e, ...);
/* Dotted path lookup: "workload.pod.uid", "related.live_instances". */
json_t *env__get(json_t *ev, const char *path);
const char *env__str(json_t *ev, const char *path);
long long env__int(json_t *ev, const char *path);
/* The running agent's `status` at a dotted path, as a number (0 when
 * absent: the status could not be read, or has no such member). */
long long env__status_int(struct env *e, const char *dotted);

/* Reads a whole file (NUL-terminated, caller frees). NULL on error. */
char *env__slurp(const char *path, size_t *len);
/* Writes a file. */
int env__write(const char *path, const char *data, size_t len);
/* Waits until a file contains needle. */
bool env__wait_file(const char *path, const char *needle, int timeout_ms);

/* Runs pid (0: the calling thread, and what it starts from then on) on
 * CPU cpu alone, or with cpu < 0 on every online CPU. 0 or -errno. */
int env__pin(pid_t pid, int cpu);
/* A free TCP port on the loopback (best effort). */
int env__free_port(void);

/* Runs a shell command, returns its exit status. */
int env__sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void env__sleep_ms(int ms);

#endif
