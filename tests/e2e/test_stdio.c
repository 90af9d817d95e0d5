// SPDX-License-Identifier: GPL-2.0
/*
 * stdio MCP servers: a real SDK client launches a real SDK stdio server.
 * Launched by an allowed parent it works end to end; launched from another
 * cgroup it is killed before it runs a line of its own code (enforce) or
 * alerted (monitor); a launcher claiming another client's clientInfo is a
 * mismatch.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "harness.h"

struct stdio_env {
	struct env e;
	char cg_ok[256], cg_other[256], node[PATH_MAX];
	char policy[4096];
};

static int setup(struct stdio_env *s, const char *mode)
{
	char *node;

	if (env__init(&s->e))
		return -1;
	if (env__cgroup(&s->e, "launchers/ok", s->cg_ok, sizeof(s->cg_ok)) ||
	    env__cgroup(&s->e, "launchers/other", s->cg_other, sizeof(s->cg_other)))
		return -1;
	node = realpath("/usr/bin/node", NULL);
	if (!node)
		return -1;
	snprintf(s->node, sizeof(s->node), "%s", node);
	free(node);
	snprintf(s->policy, sizeof(s->policy),
		 "{\"mode\":\"%s\",\"servers\":[{\"name\":\"files\",\"stdio\":{\"exe\":\"%s\","
		 "\"args\":\"*stdio-server.mjs*\"},\"launchers\":[{\"cgroup\":\"%s\"}]}],"
		 "\"unknown_client\":\"deny\",\"clients\":["
		 "{\"name\":\"files-agent\",\"claims\":{\"client_info_name\":\"files-agent\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\"}]},"
		 "{\"name\":\"admin\",\"claims\":{\"client_info_name\":\"admin-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/admin\"}]}]}",
		 mode, s->node, s->cg_ok, s->cg_ok, s->e.cg_root);
	return env__agent_start(&s->e, s->policy, NULL);
}

/* Runs stdio-client.mjs in cgroup cg; returns its exit status. */
static int launch(struct stdio_env *s, const char *cg, const char *name, const char *record)
{
	char script[PATH_MAX], out[512];
	struct spawn_opts so = { .cgroup = cg };
	pid_t pid;

	snprintf(script, sizeof(script), "%s/stdio-client.mjs", env__node_dir());
	snprintf(out, sizeof(out), "%s/client-%s.out", s->e.tmp, name);
	so.stdout_path = out;
	pid = env__spawn(&s->e, &so, (char *[]){ "node", script, "--name", (char *)name,
						 "--record", (char *)record, "--timeout-ms", "10000",
						 NULL });
	return env__wait(&s->e, pid, 30000);
}

static int count_in(const char *path, const char *needle)
{
	char *buf = env__slurp(path, NULL), *p;
	int n = 0;

	for (p = buf; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	free(buf);
	return n;
}

void test_stdio_enforce(void)
{
	struct stdio_env s = {};
	char rec[512];
	json_t *ev = NULL;

	test__set_timeout(240);
	if (!ASSERT_OK(setup(&s, "enforce"), "setup"))
		goto cleanup;

	if (test__start_subtest("allowed_launcher")) {
		snprintf(rec, sizeof(rec), "%s/allowed.rec", s.e.tmp);
		ASSERT_EQ(launch(&s, s.cg_ok, "files-agent", rec), 0, "client call succeeded");
		ASSERT_EQ(count_in(rec, "\"kind\":\"started\""), 1, "server ran");
		ASSERT_EQ(count_in(rec, "\"kind\":\"tool\""), 1, "tool ran");
		ev = env__find_event(&s.e, 5000, "kind=request", "transport=stdio",
				     "claim.client_info.name=files-agent", NULL);
		if (ASSERT_OK_PTR(ev, "clientInfo judged and allowed")) {
			ASSERT_STREQ(env__str(ev, "client"), "files-agent", "client");
			ASSERT_STREQ(env__str(ev, "workload.cgroup"), s.cg_ok, "launcher cgroup");
			ASSERT_STREQ(env__str(ev, "server_workload.exe"), s.node, "server exe");
		}
		json_decref(ev);
		ev = NULL;
		ASSERT_EQ(env__count_events(&s.e, "kind=alert", NULL), 0, "no alert");
	}
	if (test__start_subtest("foreign_launcher_killed")) {
		snprintf(rec, sizeof(rec), "%s/foreign.rec", s.e.tmp);
		ASSERT_NEQ(launch(&s, s.cg_other, "files-agent", rec), 0, "client call failed");
		/* Killed at exec: not one line of the server's own code ran. */
		ASSERT_EQ(count_in(rec, "\"kind\":\"started\""), 0, "server never started");
		ev = env__find_event(&s.e, 5000, "kind=alert", "verdict=stdio_parent", NULL);
		if (ASSERT_OK_PTR(ev, "stdio_parent alert")) {
			ASSERT_STREQ(env__str(ev, "action"), "blocked", "action");
			ASSERT_STREQ(env__str(ev, "server"), "files", "server");
			ASSERT_STREQ(env__str(ev, "workload.cgroup"), s.cg_other, "launcher cgroup");
			ASSERT_STREQ(env__str(ev, "server_workload.exe"), s.node, "server exe");
			ASSERT_STRSTR(env__str(ev, "server_workload.cmdline"), "stdio-server.mjs",
				      "server cmdline");
			ASSERT_GE((long long)json_array_size(env__get(ev, "server_workload.ancestors")),
				  2, "ancestor chain");
		}
		json_decref(ev);
		ev = NULL;
	}
	if (test__start_subtest("spoofed_client_info")) {
		snprintf(rec, sizeof(rec), "%s/spoof.rec", s.e.tmp);
		ASSERT_NEQ(launch(&s, s.cg_ok, "admin-bot", rec), 0, "client call failed");
		ASSERT_EQ(count_in(rec, "\"kind\":\"tool\""), 0, "tool never ran");
		ev = env__find_event(&s.e, 5000, "kind=alert", "verdict=mismatch",
				     "transport=stdio", NULL);
		if (ASSERT_OK_PTR(ev, "mismatch alert")) {
			ASSERT_STREQ(env__str(ev, "action"), "blocked", "action");
			ASSERT_STREQ(env__str(ev, "client"), "admin", "claimed client");
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "admin-bot", "claim");
		}
		json_decref(ev);
		ev = NULL;
	}
cleanup:
	json_decref(ev);
	env__cleanup(&s.e);
}

void test_stdio_monitor(void)
{
	struct stdio_env s = {};
	char rec[512];
	json_t *ev = NULL;

	test__set_timeout(180);
	if (!ASSERT_OK(setup(&s, "monitor"), "setup"))
		goto cleanup;
	snprintf(rec, sizeof(rec), "%s/foreign.rec", s.e.tmp);
	ASSERT_EQ(launch(&s, s.cg_other, "files-agent", rec), 0, "client call succeeded");
	ASSERT_EQ(count_in(rec, "\"kind\":\"started\""), 1, "server ran");
	ASSERT_EQ(count_in(rec, "\"kind\":\"tool\""), 1, "tool ran");
	ev = env__find_event(&s.e, 5000, "kind=alert", "verdict=stdio_parent", NULL);
	if (ASSERT_OK_PTR(ev, "stdio_parent alert"))
		ASSERT_STREQ(env__str(ev, "action"), "alerted", "action");
cleanup:
	json_decref(ev);
	env__cleanup(&s.e);
}
