/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A connection from a made-up workload, for tests and fuzz targets that
 * drive the decider without a kernel: process pid (thread tid) of
 * /usr/bin/client in `cgroup`, its instance the cgroup id 5000 + pid, to
 * server "t", in pod pod_uid ("" or NULL: in none). Release with
 * decider__conn_release and workload__unshare. And a decider on a policy.
 */
#ifndef MCPW_CONN_FIXTURE_H
#define MCPW_CONN_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "decision.h"
#include "intern.h"
#include "policy.h"
#include "workload.h"

static inline void fixture__conn_in_pod(struct conn *c, uint32_t pid, uint32_t tid,
					const char *cgroup, uint64_t cookie, const char *pod_uid)
{
	struct workload w = {};

	memset(c, 0, sizeof(*c));
	c->cookie = cookie;
	c->server_name = "t";
	w.attributed = true;
	w.pid = pid;
	w.tid = tid;
	w.cgroup_id = 5000 + pid;
	w.instance = 5000 + pid;
	w.exe = intern__get("/usr/bin/client");
	w.cgroup = intern__get(cgroup);
	w.node = "node-a";
	if (pod_uid)
		snprintf(w.meta.pod_uid, sizeof(w.meta.pod_uid), "%s", pod_uid);
	conn__set_client(c, &w);
	intern__put(w.exe);
	intern__put(w.cgroup);
}

static inline void fixture__conn(struct conn *c, uint32_t pid, uint32_t tid, const char *cgroup,
				 uint64_t cookie)
{
	fixture__conn_in_pod(c, pid, tid, cgroup, cookie, NULL);
}

/* A decider on policy (JSON text), policy kept in *p: NULL with err->msg
 * set when either cannot be made. */
static inline struct decider *fixture__decider(const char *policy, struct policy **p,
					       struct policy_error *err)
{
	struct decider *d = decider__new();

	*p = NULL;
	if (!d) {
		snprintf(err->msg, sizeof(err->msg), "no memory for a decider");
		return NULL;
	}
	if (policy__load_buffer("t.json", policy, strlen(policy), p, err)) {
		decider__free(d);
		return NULL;
	}
	decider__set_policy(d, *p);
	return d;
}

#endif
