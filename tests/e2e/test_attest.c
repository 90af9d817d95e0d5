// SPDX-License-Identifier: GPL-2.0
/*
 * The attestation API with the real agent: a server asks who is on the
 * other end of the connections it accepted from two client workloads (by
 * passing the socket, and by 4-tuple) and gets each client's attested
 * workload; a caller that is neither root nor in the API's group is
 * refused; `mcpwarden who` answers from the command line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "env.h"
#include "harness.h"

/* The server's answer about the client on port (a line "KIND PORT 0 JSON"). */
static json_t *answer(const char *out, const char *kind, int port)
{
	char *buf = env__slurp(out, NULL), *line, *save = NULL;
	char prefix[64];
	json_t *found = NULL;

	snprintf(prefix, sizeof(prefix), "%s %d 0 ", kind, port);
	for (line = buf ? strtok_r(buf, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, prefix, strlen(prefix)) == 0) {
			found = json_loads(line + strlen(prefix), 0, NULL);
			break;
		}
	}
	free(buf);
	return found;
}

void test_attest_real_agent(void)
{
	char policy[512], cg_a[256], cg_b[256], cg_s[256], portstr[16], out[512], sock[512];
	char out_a[512], cmd[1024];
	struct spawn_opts so = {};
	struct env e;
	json_t *ans = NULL;
	pid_t srv, ca, cb;
	int port, i;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	if (!ASSERT_OK(env__cgroup(&e, "a", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&e, "b", cg_b, sizeof(cg_b)), "cgroup b") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_s, sizeof(cg_s)), "cgroup srv"))
		goto cleanup;
	snprintf(policy, sizeof(policy), "{\"mode\":\"monitor\",\"servers\":[{\"name\":\"gw\","
		 "\"port\":%d}],\"unknown_client\":\"alert\",\"unattributed\":\"alert\"}", port);
	if (!ASSERT_OK(env__agent_start(&e, policy, NULL), "agent"))
		goto cleanup;
	snprintf(sock, sizeof(sock), "%s/attest.sock", e.agent.state_dir);
	{
		/* Root-only sockets: the control socket and (without a group)
		 * the attestation socket, in a root-only state directory. */
		char ctl[600];
		struct stat st;

		snprintf(ctl, sizeof(ctl), "%s/mcpwarden.sock", e.agent.state_dir);
		if (ASSERT_OK(stat(ctl, &st), "control socket"))
			ASSERT_EQ(st.st_mode & 0777, 0600, "control socket mode");
		if (ASSERT_OK(stat(sock, &st), "attestation socket"))
			ASSERT_EQ(st.st_mode & 0777, 0600, "attestation socket mode");
		if (ASSERT_OK(stat(e.agent.state_dir, &st), "state dir"))
			ASSERT_EQ(st.st_mode & 0077, 0, "state dir closed to others");
	}
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(out, sizeof(out), "%s/attest-server.out", e.tmp);
	so.cgroup = cg_s;
	so.stdout_path = out;
	/* Asked at once after each accept, before the client sends a byte:
	 * the kernel's record of the connection may still be in the ring. */
	srv = env__spawn(&e, &so, (char *[]){ (char *)env__helper("attest_server"), "127.0.0.1",
					      portstr, sock, "2", "0", NULL });
	if (!ASSERT_TRUE(env__wait_file(out, "listening", 5000), "server listening"))
		goto cleanup;

	/* Two clients in two workloads, each holding its connection open. */
	snprintf(out_a, sizeof(out_a), "%s/a.req", e.tmp);
	env__write(out_a, "x", 1);
	so.cgroup = cg_a;
	so.stdout_path = NULL;
	ca = env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "hold", "127.0.0.1",
					     portstr, out_a, "5", NULL });
	env__sleep_ms(100);
	so.cgroup = cg_b;
	cb = env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "hold", "127.0.0.1",
					     portstr, out_a, "5", NULL });
	if (!ASSERT_EQ(env__wait(&e, srv, 20000), 0, "server asked about both"))
		goto cleanup;

	for (i = 0; i < 2; i++) {
		pid_t pid = i ? cb : ca;
		const char *cg = i ? cg_b : cg_a;
		int cport = -1;

		/* Find this client's port from the agent's connection events. */
		{
			char cond[64];
			json_t *ev;

			snprintf(cond, sizeof(cond), "workload.pid=%d", pid);
			ev = env__find_event(&e, 3000, "kind=connection", cond, NULL);
			if (ev) {
				const char *src = env__str(ev, "connection.src");

				cport = src && strrchr(src, ':') ? atoi(strrchr(src, ':') + 1) : -1;
				json_decref(ev);
			}
		}
		if (!ASSERT_GE(cport, 1, "client's connection seen"))
			continue;
		ans = answer(out, "fd", cport);
		if (ASSERT_OK_PTR(ans, "answer by passed socket")) {
			ASSERT_TRUE(json_is_true(json_object_get(ans, "ok")), "ok");
			ASSERT_EQ(env__int(ans, "workload.pid"), pid, "attested pid");
			ASSERT_STREQ(env__str(ans, "workload.cgroup"), cg, "attested cgroup");
			ASSERT_STREQ(env__str(ans, "workload.exe"), env__helper("tcp_peer"), "exe");
		}
		json_decref(ans);
		ans = answer(out, "tuple", cport);
		if (ASSERT_OK_PTR(ans, "answer by tuple")) {
			ASSERT_EQ(env__int(ans, "workload.pid"), pid, "attested pid (tuple)");
			ASSERT_STREQ(env__str(ans, "workload.cgroup"), cg, "attested cgroup (tuple)");
		}
		json_decref(ans);
		ans = NULL;
	}

	/* The CLI asks the same question; an unknown connection is an error. */
	ASSERT_EQ(env__sh("%s who 127.0.0.1:1 127.0.0.1:2 --socket %s >/dev/null 2>&1",
			  env__bin(), sock), 1, "unknown connection: exit 1");
	/* Neither root nor in the group: refused (the socket is 0600 and the
	 * agent checks the caller's credentials as well). */
	snprintf(cmd, sizeof(cmd), "chmod 0755 %s %s; chmod 0666 %s; setpriv --reuid=65534 "
		 "--regid=65534 --clear-groups %s who 127.0.0.1:1 127.0.0.1:%d --socket %s 2>&1 | "
		 "grep -q 'not permitted'", e.tmp, e.agent.state_dir, sock, env__bin(), port, sock);
	ASSERT_EQ(env__sh("%s", cmd), 0, "a non-permitted caller is refused");
	/* What the socket answered and refused shows in status. */
	snprintf(out, sizeof(out), "%s/status.json", e.tmp);
	if (ASSERT_EQ(env__sh("%s status --state-dir %s > %s", env__bin(), e.agent.state_dir,
			      out), 0, "status")) {
		json_t *st = json_load_file(out, 0, NULL);

		ASSERT_STREQ(env__str(st, "attestation.socket"), sock, "status: the socket");
		ASSERT_GE(env__int(st, "attestation.answered"), 2, "status: answered");
		ASSERT_GE(env__int(st, "attestation.unknown"), 1, "status: unknown");
		ASSERT_GE(env__int(st, "attestation.refused"), 1, "status: refused");
		json_decref(st);
	}
cleanup:
	json_decref(ans);
	env__cleanup(&e);
}
