/* SPDX-License-Identifier: GPL-2.0 */
/*
 * `mcpwarden run`: the daemon. Loads the policy and the kernel side, then
 * turns kernel records into connections, requests, decisions, verdicts
 * written back to the kernel, and events.
 */
#ifndef MCPW_AGENT_H
#define MCPW_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent_opts {
	const char *policy_path;	/* NULL: the embedded default policy */
	const char *mode;		/* NULL: the policy's */
	const char *events;		/* "-" (stdout) or a file */
	const char *cgroup_root;	/* NULL: the cgroup2 mount's root */
	const char *state_dir;
	const char *node_name;		/* NULL: hostname */
	const char *pods_file;		/* pod metadata fixture (tests) */
	const char *kube_api;		/* API server URL (default: in-cluster) */
	const char *kube_token;
	const char *kube_ca;
	bool no_kube;
	const char *outputs[8];		/* --output SPEC, repeatable */
	size_t n_outputs;
	const char *metrics;		/* --metrics ADDR:PORT */
	const char *attest_socket;	/* NULL: STATE_DIR/attest.sock */
	const char *cluster;		/* nats://HOST:PORT: fleet mode */
	const char *cluster_creds;
	const char *cluster_ca;
	const char *cluster_cert;
	const char *cluster_key;
	long attest_gid;		/* -1: root only */
	const char *request_events;	/* "all" (default) or "judged" */
	const char *scheduling;		/* "realtime" (default) or "normal" */
	const char *max_connections;	/* NULL: MCPW_MAX_CONNS */
	const char *request_timeout;	/* seconds; NULL: REQUEST_TIMEOUT_S */
	const char *log_level;
	int pin;			/* -1 default (pin in enforce mode), 0 no, 1 yes */
	bool cleanup;			/* remove pinned state and exit */
};

/* Every agent's pins are under this directory, which goes with the last. */
#define PIN_ROOT "/sys/fs/bpf/mcpwarden"
/* The bpffs directory an agent with this state directory pins into. */
void agent__pin_dir(const char *state_dir, uint32_t max_conns, char *buf, size_t len);

/* Runs until SIGTERM/SIGINT. Returns the process exit status. */
int agent__run(const struct agent_opts *o);

#endif
