// SPDX-License-Identifier: GPL-2.0
/*
 * Fleet mode, two nodes on one machine: network namespaces A (client
 * workloads) and B (the MCP server) joined by a veth pair, one agent per
 * node scoped to its own cgroup subtree, a real nats-server with JetStream
 * on loopback. A remote legitimate client is allowed with node A's
 * evidence, a remote mismatch is blocked, a clone across the two nodes is
 * caught, and with NATS down each node keeps enforcing locally, reports
 * degraded health, and recovers when NATS returns.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "env.h"
#include "harness.h"

struct fleet {
	struct env a, b;		/* node-a (clients), node-b (server) */
	char ns_a[64], ns_b[64];
	char nats_dir[512], nats_url[64];
	pid_t nats;
	int nats_port, port;
	char policy[4096];
	char url[128];
};

static pid_t start_nats(struct fleet *f)
{
	char port[16], out[600];
	struct spawn_opts so = {};

	snprintf(port, sizeof(port), "%d", f->nats_port);
	snprintf(out, sizeof(out), "%s/nats.log", f->b.tmp);
	so.stdout_path = out;
	f->nats = env__spawn(&f->b, &so, (char *[]){ "nats-server", "-js", "-a", "127.0.0.1", "-p",
						     port, "-sd", f->nats_dir, NULL });
	if (f->nats > 0 && !env__wait_file(out, "Server is ready", 10000))
		return -1;
	return f->nats;
}

static char *mint(struct fleet *f, const char *client_id, const char *jti)
{
	char cmd[1024], path[600];
	char *tok;

	snprintf(path, sizeof(path), "%s/tok-%s", f->a.tmp, jti);
	snprintf(cmd, sizeof(cmd), "node %s/jwt.mjs --iss https://issuer.test --sub %s "
		 "--client-id %s --jti %s > %s", env__node_dir(), client_id, client_id, jti, path);
	if (env__sh("%s", cmd))
		return NULL;
	tok = env__slurp(path, NULL);
	if (tok)
		tok[strcspn(tok, "\n")] = '\0';
	return tok;
}

/* An SDK client in (env, cgroup, netns); returns its pid. */
static pid_t client(struct fleet *f, struct env *e, const char *cg, const char *ns,
		    const char *token, const char *name, const char *hold)
{
	char script[PATH_MAX], out[600];
	struct spawn_opts so = { .cgroup = cg, .netns = ns };

	snprintf(script, sizeof(script), "%s/client.mjs", env__node_dir());
	snprintf(out, sizeof(out), "%s/client-%s.out", e->tmp, name);
	so.stdout_path = out;
	return env__spawn(e, &so, (char *[]){ "node", script, "--url", f->url, "--token",
					      (char *)token, "--name", (char *)name, "--calls", "1",
					      "--hold-s", (char *)hold, "--timeout-ms", "8000", NULL });
}

static int setup(struct fleet *f, char *cg_srv, size_t len)
{
	char port[16], rec[600], out[600], script[PATH_MAX];
	const char *extra_a[] = { "--cluster", f->nats_url, "--node-name", "node-a", NULL };
	const char *extra_b[] = { "--cluster", f->nats_url, "--node-name", "node-b", NULL };
	struct spawn_opts so = {};

	if (env__init(&f->a) || env__init(&f->b))
		return -1;
	f->nats_port = env__free_port();
	do
		f->port = env__free_port();
	while (f->port == f->nats_port);
	snprintf(f->nats_dir, sizeof(f->nats_dir), "%s/nats", f->b.tmp);
	snprintf(f->nats_url, sizeof(f->nats_url), "nats://127.0.0.1:%d", f->nats_port);
	snprintf(f->url, sizeof(f->url), "http://10.88.0.2:%d/mcp", f->port);
	if (env__netns(&f->a, "a", f->ns_a, sizeof(f->ns_a)) ||
	    env__netns(&f->b, "b", f->ns_b, sizeof(f->ns_b)) ||
	    env__veth(&f->a, f->ns_a, "10.88.0.1", f->ns_b, "10.88.0.2"))
		return -1;
	if (env__cgroup(&f->b, "srv", cg_srv, len) || start_nats(f) <= 0)
		return -1;
	/* Both nodes run one policy (as a DaemonSet would): the client is bound
	 * to its cgroups on either node, one instance at a time. */
	snprintf(f->policy, sizeof(f->policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},\"workloads\":["
		 "{\"node\":\"node-a\",\"cgroup\":\"%s/ok/*\"},{\"node\":\"node-b\",\"cgroup\":\"%s/ok/*\"}],"
		 "\"max_instances\":1},"
		 "{\"name\":\"local-bot\",\"claims\":{\"client_id\":\"local-bot\"},\"workloads\":["
		 "{\"cgroup\":\"%s/ok/*\"}]}]}",
		 f->port, f->a.cg_root, f->b.cg_root, f->b.cg_root);
	if (env__agent_start(&f->a, f->policy, extra_a) || env__agent_start(&f->b, f->policy, extra_b))
		return -1;
	snprintf(port, sizeof(port), "%d", f->port);
	snprintf(rec, sizeof(rec), "%s/server.rec", f->b.tmp);
	snprintf(out, sizeof(out), "%s/server.out", f->b.tmp);
	snprintf(script, sizeof(script), "%s/server.mjs", env__node_dir());
	so.cgroup = cg_srv;
	so.netns = f->ns_b;
	so.stdout_path = out;
	if (env__spawn(&f->b, &so, (char *[]){ "node", script, "--host", "10.88.0.2", "--port",
					      port, "--record", rec, NULL }) <= 0 ||
	    !env__wait_file(out, "\"ready\":true", 15000))
		return -1;
	return 0;
}

static void teardown(struct fleet *f)
{
	env__cleanup(&f->a);
	env__cleanup(&f->b);
}

void test_fleet_two_nodes(void)
{
	char cg_srv[256], cg_ok1[256], cg_bad[256], cg_ok2[256], cg_local[256];
	struct fleet f = {};
	char *t1 = NULL, *t2 = NULL, *t3 = NULL;
	json_t *ev = NULL;
	pid_t p1, p;

	test__set_timeout(280);
	if (!ASSERT_OK(setup(&f, cg_srv, sizeof(cg_srv)), "two nodes and NATS"))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&f.a, "ok/1", cg_ok1, sizeof(cg_ok1)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&f.a, "bad", cg_bad, sizeof(cg_bad)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&f.b, "ok/2", cg_ok2, sizeof(cg_ok2)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&f.b, "ok/local", cg_local, sizeof(cg_local)), "cgroup"))
		goto cleanup;
	t1 = mint(&f, "ci-bot", "fleet-j1");
	t2 = mint(&f, "ci-bot", "fleet-j2");
	t3 = mint(&f, "local-bot", "fleet-j3");
	if (!ASSERT_OK_PTR(t1, "token") || !ASSERT_OK_PTR(t2, "token") || !ASSERT_OK_PTR(t3, "token"))
		goto cleanup;

	/* libnats is opened for fleet mode (and only then: attribution_connection). */
	ASSERT_EQ(env__maps_has(f.a.agent.pid, "libnats"), 1, "fleet mode loaded libnats");
	if (test__start_subtest("remote_allowed")) {
		/* Instance 1 on node A stays connected for the clone check. */
		p1 = client(&f, &f.a, cg_ok1, f.ns_a, t1, "ci-bot", "40");
		ev = env__wait_event(&f.b, 20000, "kind=request", "request.method=tools/call", NULL);
		if (ASSERT_OK_PTR(ev, "node B judged the remote client's call")) {
			ASSERT_STREQ(env__str(ev, "verdict"), "allow", "allowed");
			ASSERT_STREQ(env__str(ev, "client"), "ci-bot", "client");
			ASSERT_STREQ(env__str(ev, "workload.node"), "node-a", "evidence from node A");
			ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_ok1, "client's cgroup on node A");
			ASSERT_STREQ(env__str(ev, "workload.exe"), "/usr/bin/node", "client exe");
		}
		json_decref(ev);
		ev = NULL;
		(void)p1;
	}
	if (test__start_subtest("remote_mismatch")) {
		p = client(&f, &f.a, cg_bad, f.ns_a, t1, "ci-bot-bad", "0");
		ASSERT_NEQ(env__wait(&f.a, p, 30000), 0, "the client was refused");
		ev = env__find_event(&f.b, 10000, "kind=alert", "verdict=mismatch", NULL);
		if (ASSERT_OK_PTR(ev, "mismatch on node B")) {
			ASSERT_STREQ(env__str(ev, "action"), "blocked", "blocked");
			ASSERT_STREQ(env__str(ev, "workload.node"), "node-a", "client node's evidence");
			ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_bad, "client cgroup");
		}
		json_decref(ev);
		ev = NULL;
	}
	if (test__start_subtest("clone_across_nodes")) {
		/* Same identity, another token, a second instance on node B while
		 * the first (node A) is live: a clone. */
		env__sleep_ms(1500);
		p = client(&f, &f.b, cg_ok2, f.ns_b, t2, "ci-bot-clone", "0");
		ASSERT_NEQ(env__wait(&f.b, p, 30000), 0, "the clone was refused");
		ev = env__find_event(&f.b, 10000, "kind=alert", "verdict=clone", NULL);
		if (ASSERT_OK_PTR(ev, "clone on node B")) {
			ASSERT_STREQ(env__str(ev, "action"), "blocked", "blocked");
			ASSERT_STREQ(env__str(ev, "workload.node"), "node-b", "the new instance");
			ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_ok2, "its cgroup");
			ASSERT_STREQ(env__str(ev, "related.live_instances.0.node"), "node-a",
				     "the live instance, with node A's evidence");
			ASSERT_STREQ(env__str(ev, "related.live_instances.0.cgroup"), cg_ok1,
				     "its cgroup");
		}
		json_decref(ev);
		ev = NULL;
	}
	if (test__start_subtest("nats_down")) {
		char st[600], cmd[1024];

		kill(f.nats, SIGKILL);
		env__wait(&f.b, f.nats, 5000);
		/* Local enforcement continues: a local legitimate client is
		 * allowed, an unknown one blocked. */
		p = client(&f, &f.b, cg_local, f.ns_b, t3, "local-ok", "0");
		ASSERT_EQ(env__wait(&f.b, p, 30000), 0, "local client allowed with NATS down");
		p = client(&f, &f.b, cg_local, f.ns_b, "not-a-known-token", "local-unknown", "0");
		ASSERT_NEQ(env__wait(&f.b, p, 30000), 0, "unknown client still blocked");
		ev = env__find_event(&f.b, 10000, "kind=alert", "verdict=unknown_client", NULL);
		ASSERT_OK_PTR(ev, "unknown_client alert with NATS down");
		json_decref(ev);
		ev = NULL;
		ev = env__find_event(&f.b, 10000, "kind=alert", "verdict=degraded", "health=degraded",
				     NULL);
		if (ASSERT_OK_PTR(ev, "degraded health alert"))
			ASSERT_STRSTR(env__str(ev, "reason"), "fleet store", "names the store");
		json_decref(ev);
		ev = NULL;
		snprintf(st, sizeof(st), "%s/status.json", f.b.tmp);
		snprintf(cmd, sizeof(cmd), "%s status --state-dir %s > %s", env__bin(),
			 f.b.agent.state_dir, st);
		env__sh("%s", cmd);
		ASSERT_TRUE(env__wait_file(st, "\"degraded\"", 1000), "status says degraded");
		/* NATS returns: health recovers. */
		if (ASSERT_GE(start_nats(&f), 1, "nats restarted")) {
			ev = env__find_event(&f.b, 30000, "kind=alert", "verdict=degraded",
					     "health=ok", NULL);
			ASSERT_OK_PTR(ev, "healthy again after NATS returned");
		}
	}
cleanup:
	json_decref(ev);
	free(t1);
	free(t2);
	free(t3);
	teardown(&f);
}
