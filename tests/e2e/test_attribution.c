// SPDX-License-Identifier: GPL-2.0
/*
 * Attribution end to end: the real agent, scoped to a private cgroup
 * subtree, names both ends of connections to protected ports.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "env.h"
#include "harness.h"

#define REQ "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
	    "Content-Length: 58\r\n\r\n" \
	    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}"

static const char *monitor_policy(char *buf, size_t len, int port)
{
	snprintf(buf, len, "{\"mode\":\"monitor\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"alert\",\"unattributed\":\"alert\"}", port);
	return buf;
}

/* tcp_peer's server; backlog and accept_after (both or neither): its
 * optional BACKLOG and ACCEPT_AFTER arguments. */
static pid_t start_server_with(struct env *e, const char *cg, const char *netns, const char *addr,
			       int port, char *dir, size_t dlen, const char *backlog,
			       const char *accept_after)
{
	char ports[16], out[512];
	struct spawn_opts so = { .cgroup = cg, .netns = netns };
	pid_t pid;

	snprintf(dir, dlen, "%s/srv-%d", e->tmp, port);
	mkdir(dir, 0755);
	snprintf(out, sizeof(out), "%s/server.out", dir);
	snprintf(ports, sizeof(ports), "%d", port);
	so.stdout_path = out;
	pid = env__spawn(e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "server",
					     (char *)addr, ports, dir, (char *)backlog,
					     (char *)accept_after, NULL });
	if (pid > 0 && !env__wait_file(out, "listening", 5000))
		return -1;
	return pid;
}

static pid_t start_server(struct env *e, const char *cg, const char *netns, const char *addr,
			  int port, char *dir, size_t dlen)
{
	return start_server_with(e, cg, netns, addr, port, dir, dlen, NULL, NULL);
}

static int write_req(struct env *e, char *path, size_t len)
{
	snprintf(path, len, "%s/req.bin", e->tmp);
	return env__write(path, REQ, strlen(REQ));
}

void test_attribution_connection(void)
{
	char policy[512], cg_a[256], cg_b[256], dir[512], req[512], portstr[16], out[512];
	struct spawn_opts so = {};
	struct env e;
	json_t *ev = NULL;
	pid_t srv, cli;
	int port;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	if (!ASSERT_OK(env__cgroup(&e, "clients/a", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&e, "servers/b", cg_b, sizeof(cg_b)), "cgroup b"))
		goto cleanup;
	if (!ASSERT_OK(env__agent_start(&e, monitor_policy(policy, sizeof(policy), port), NULL),
		       "agent start"))
		goto cleanup;
	/* Neither the Kubernetes API nor a fleet is configured: their
	 * libraries are not loaded (dynlib.h; fleet_two_nodes: loaded there). */
	ASSERT_EQ(env__maps_has(e.agent.pid, "libcurl"), 0, "libcurl not loaded");
	ASSERT_EQ(env__maps_has(e.agent.pid, "libnats"), 0, "libnats not loaded");
	ASSERT_EQ(env__maps_has(e.agent.pid, "libbpf"), 1, "the maps were read");
	srv = start_server(&e, cg_b, NULL, "127.0.0.1", port, dir, sizeof(dir));
	if (!ASSERT_GE(srv, 1, "server"))
		goto cleanup;
	write_req(&e, req, sizeof(req));
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(out, sizeof(out), "%s/client.out", e.tmp);
	so.cgroup = cg_a;
	so.stdout_path = out;
	cli = env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "client",
					      "127.0.0.1", portstr, req, NULL });
	if (!ASSERT_EQ(env__wait(&e, cli, 10000), 0, "client exit"))
		goto cleanup;

	ev = env__wait_event(&e, 5000, "kind=connection", "server=tickets", NULL);
	if (!ASSERT_OK_PTR(ev, "connection event"))
		goto cleanup;
	ASSERT_EQ(env__int(ev, "workload.pid"), cli, "client pid");
	ASSERT_STREQ(env__str(ev, "workload.exe"), env__helper("tcp_peer"), "client exe");
	ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_a, "client cgroup");
	ASSERT_TRUE(json_is_true(env__get(ev, "workload.attributed")), "client attributed");
	ASSERT_GE(env__int(ev, "workload.cgroup_id"), 1, "client cgroup id");
	ASSERT_GE(env__int(ev, "workload.start_time_ns"), 1, "client start time");
	ASSERT_STRSTR(env__str(ev, "workload.cmdline"), "client 127.0.0.1", "client cmdline");
	ASSERT_GE(env__int(ev, "workload.netns"), 1, "client netns");
	ASSERT_GE((long long)json_array_size(env__get(ev, "workload.ancestors")), 1, "ancestors");
	ASSERT_EQ(env__int(ev, "server_workload.pid"), srv, "server pid");
	ASSERT_STREQ(env__str(ev, "server_workload.cgroup"), cg_b, "server cgroup");
	ASSERT_STREQ(env__str(ev, "node"), "test-node", "node");
	ASSERT_STRSTR(env__str(ev, "connection.dst"), portstr, "dst port");
	/* Exactly one connection event for one connection. */
	env__sleep_ms(300);
	ASSERT_EQ(env__count_events(&e, "kind=connection", NULL), 1, "one connection event");
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}

/* A client that execs, connects and exits at once is still attributed. */
void test_attribution_short_lived(void)
{
	char policy[512], cg_a[256], cg_b[256], dir[512], portstr[16];
	struct spawn_opts so = {};
	struct env e;
	json_t *ev = NULL;
	pid_t srv, cli;
	int port;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	if (!ASSERT_OK(env__cgroup(&e, "quick", cg_a, sizeof(cg_a)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_b, sizeof(cg_b)), "cgroup srv"))
		goto cleanup;
	if (!ASSERT_OK(env__agent_start(&e, monitor_policy(policy, sizeof(policy), port), NULL),
		       "agent start"))
		goto cleanup;
	srv = start_server(&e, cg_b, NULL, "127.0.0.1", port, dir, sizeof(dir));
	if (!ASSERT_GE(srv, 1, "server"))
		goto cleanup;
	snprintf(portstr, sizeof(portstr), "%d", port);
	so.cgroup = cg_a;
	cli = env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "quick",
					      "127.0.0.1", portstr, NULL });
	if (!ASSERT_EQ(env__wait(&e, cli, 5000), 0, "quick client"))
		goto cleanup;
	ev = env__wait_event(&e, 5000, "kind=connection", NULL);
	if (!ASSERT_OK_PTR(ev, "connection event"))
		goto cleanup;
	ASSERT_EQ(env__int(ev, "workload.pid"), cli, "pid");
	ASSERT_STREQ(env__str(ev, "workload.exe"), env__helper("tcp_peer"), "exe");
	ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_a, "cgroup");
	ASSERT_STRSTR(env__str(ev, "workload.cmdline"), "quick", "cmdline");
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}

/* Processes and a connection older than the agent are attributed. */
void test_attribution_preexisting(void)
{
	char policy[512], cg_a[256], cg_b[256], dir[512], req[512], portstr[16], out[512];
	struct spawn_opts so = {};
	struct env e;
	json_t *ev = NULL;
	pid_t srv, cli;
	int port;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	if (!ASSERT_OK(env__cgroup(&e, "old-client", cg_a, sizeof(cg_a)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "old-server", cg_b, sizeof(cg_b)), "cgroup srv"))
		goto cleanup;
	srv = start_server(&e, cg_b, NULL, "127.0.0.1", port, dir, sizeof(dir));
	if (!ASSERT_GE(srv, 1, "server"))
		goto cleanup;
	write_req(&e, req, sizeof(req));
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(out, sizeof(out), "%s/client.out", e.tmp);
	so.cgroup = cg_a;
	so.stdout_path = out;
	/* Connects now, sends its request 3 s later, after the agent started. */
	cli = env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "hold",
					      "127.0.0.1", portstr, req, "3", NULL });
	if (!ASSERT_TRUE(env__wait_file(out, "connected", 5000), "client connected"))
		goto cleanup;
	if (!ASSERT_OK(env__agent_start(&e, monitor_policy(policy, sizeof(policy), port), NULL),
		       "agent start"))
		goto cleanup;
	ev = env__wait_event(&e, 5000, "kind=connection", NULL);
	if (!ASSERT_OK_PTR(ev, "connection event"))
		goto cleanup;
	ASSERT_TRUE(json_is_true(env__get(ev, "connection.preexisting")), "preexisting");
	ASSERT_EQ(env__int(ev, "workload.pid"), cli, "client pid");
	ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_a, "client cgroup");
	ASSERT_STREQ(env__str(ev, "workload.exe"), env__helper("tcp_peer"), "client exe");
	/* The server forks per connection: the child holds this socket. */
	ASSERT_EQ(env__int(ev, "server_workload.ppid"), srv, "server process (child of the listener)");
	ASSERT_STREQ(env__str(ev, "server_workload.cgroup"), cg_b, "server cgroup");
	json_decref(ev);
	/* Its request, sent after the agent started, is read and judged. */
	ev = env__wait_event(&e, 8000, "kind=alert", "verdict=unknown_client",
			     "request.method=tools/list", NULL);
	ASSERT_OK_PTR(ev, "request on the old connection judged");
	ASSERT_EQ(env__wait(&e, cli, 8000), 0, "client got its reply (monitor mode)");
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}

/*
 * A connection whose connect() came before the agent's hooks and whose
 * handshake completes after them (its SYN was dropped by a full accept
 * queue and retransmitted): the kernel's open record cannot name its
 * client, the agent's start-up walk of the sockets names it from /proc,
 * and the record read after the walk must not take that back. Neither
 * may the walk count the socket the open already put under the payload
 * hook as a failure to do so. The agent is held between attaching and
 * walking (MCPW_TEST_BARRIER_DIR) while the handshake completes.
 */
void test_attribution_connected_during_start(void)
{
	char policy[512], cg_a[256], cg_b[256], dir[512], req[512], portstr[16];
	char script[4096], sh[600], out_a[600], out_b[600], go[600];
	struct spawn_opts so = {};
	struct env e;
	json_t *ev = NULL;
	pid_t srv, cli_a, cli_b;
	int port, err;

	test__set_timeout(90);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (!ASSERT_OK(env__cgroup(&e, "clients/a", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&e, "servers/b", cg_b, sizeof(cg_b)), "cgroup b"))
		goto cleanup;
	/* Backlog 0, accepting nothing until told: A's connection waits in
	 * the accept queue, B's SYNs are dropped. */
	snprintf(go, sizeof(go), "%s/accept-now", e.tmp);
	srv = start_server_with(&e, cg_b, NULL, "127.0.0.1", port, dir, sizeof(dir), "0", go);
	if (!ASSERT_GE(srv, 1, "server"))
		goto cleanup;
	write_req(&e, req, sizeof(req));
	snprintf(out_a, sizeof(out_a), "%s/a.out", e.tmp);
	snprintf(out_b, sizeof(out_b), "%s/b.out", e.tmp);
	so.cgroup = cg_a;
	so.stdout_path = out_a;
	cli_a = env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "hold",
						"127.0.0.1", portstr, req, "1", NULL });
	if (!ASSERT_TRUE(env__wait_file(out_a, "connected", 5000), "A connected (queued)"))
		goto cleanup;
	so.stdout_path = out_b;
	cli_b = env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "hold",
						"127.0.0.1", portstr, req, "3", NULL });
	usleep(200 * 1000);
	if (!ASSERT_FALSE(env__wait_file(out_b, "connected", 10), "B's SYN waits"))
		goto cleanup;
	/* At the barrier: let the server accept, wait for B's retransmitted
	 * SYN to get through, then let the agent walk the sockets. */
	snprintf(sh, sizeof(sh), "%s/at-barrier.sh", e.tmp);
	snprintf(script, sizeof(script),
		 "i=0; while [ ! -e '%s/before_seed.reached' ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done\n"
		 "touch '%s'\n"
		 "i=0; while ! grep -q connected '%s' && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done\n"
		 "touch '%s/before_seed.go'\n",
		 e.tmp, go, out_b, e.tmp);
	env__write(sh, script, strlen(script));
	so.cgroup = NULL;
	so.stdout_path = NULL;
	env__spawn(&e, &so, (char *[]){ "sh", sh, NULL });
	setenv("MCPW_TEST_BARRIER_DIR", e.tmp, 1);
	err = env__agent_start(&e, monitor_policy(policy, sizeof(policy), port), NULL);
	unsetenv("MCPW_TEST_BARRIER_DIR");
	if (!ASSERT_OK(err, "agent start") ||
	    !ASSERT_TRUE(env__wait_file(out_b, "connected", 1000), "B connected at the barrier"))
		goto cleanup;
	{
		char pid_b[32];

		snprintf(pid_b, sizeof(pid_b), "workload.pid=%d", cli_b);
		ev = env__find_event(&e, 10000, "kind=alert", "request.method=tools/list", pid_b, NULL);
		if (ASSERT_OK_PTR(ev, "B's request judged")) {
			ASSERT_STREQ(env__str(ev, "verdict"), "unknown_client",
				     "judged as the process it is (no policy client), not unattributed");
			ASSERT_TRUE(json_is_true(env__get(ev, "workload.attributed")), "attributed");
			ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_a, "B's cgroup");
			ASSERT_TRUE(json_is_true(env__get(ev, "connection.preexisting")),
				    "named by the start-up walk");
		}
	}
	ASSERT_EQ(env__wait(&e, cli_b, 15000), 0, "B got its reply (monitor mode)");
	ASSERT_EQ(env__wait(&e, cli_a, 5000), 0, "A got its reply");
	ASSERT_EQ(env__count_events(&e, "kind=alert", "verdict=unattributed", NULL), 0,
		  "no request judged unattributed");
	ASSERT_EQ(env__count_events(&e, "kind=connection", "workload.attributed=false", NULL), 0,
		  "no connection reported unattributed");
	ASSERT_EQ(env__count_events(&e, "kind=lost", NULL), 0, "nothing reported lost");
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}

/* A connection to a port the policy does not list produces nothing. */
void test_attribution_unprotected_port(void)
{
	char policy[512], cg_a[256], dir[512], req[512], portstr[16];
	struct spawn_opts so = {};
	struct env e;
	pid_t srv, cli;
	int port, other;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	do
		other = env__free_port();
	while (other == port);
	if (!ASSERT_OK(env__cgroup(&e, "c", cg_a, sizeof(cg_a)), "cgroup"))
		goto cleanup;
	if (!ASSERT_OK(env__agent_start(&e, monitor_policy(policy, sizeof(policy), port), NULL),
		       "agent start"))
		goto cleanup;
	srv = start_server(&e, cg_a, NULL, "127.0.0.1", other, dir, sizeof(dir));
	if (!ASSERT_GE(srv, 1, "server"))
		goto cleanup;
	write_req(&e, req, sizeof(req));
	snprintf(portstr, sizeof(portstr), "%d", other);
	so.cgroup = cg_a;
	cli = env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "client",
					      "127.0.0.1", portstr, req, NULL });
	ASSERT_EQ(env__wait(&e, cli, 10000), 0, "client");
	env__sleep_ms(1000);
	ASSERT_EQ(env__count_events(&e, "kind=connection", NULL), 0, "no connection event");
	ASSERT_EQ(env__count_events(&e, "kind=alert", NULL), 0, "no alert");
	ASSERT_EQ(env__count_events(&e, "kind=request", NULL), 0, "no request");
cleanup:
	env__cleanup(&e);
}

/*
 * The agent on a policy that knows no client (monitor mode: alerted;
 * enforce mode: denied), a server in one network namespace (cgroup
 * ns-server) and a client sending REQ to it from another (cgroup
 * ns-client), joined by a veth pair. The client's pid (or -1, having
 * failed an assertion); *srv the server's; cg_a, cg_b the cgroups (256
 * bytes).
 */
static pid_t netns_client(struct env *e, bool enforce, char *cg_a, char *cg_b, pid_t *srv)
{
	char policy[512], dir[512], req[512], portstr[16], out[512], ns_a[64], ns_b[64];
	struct spawn_opts so = {};
	int port = env__free_port();

	if (!ASSERT_OK(env__cgroup(e, "ns-client", cg_a, 256), "cgroup") ||
	    !ASSERT_OK(env__cgroup(e, "ns-server", cg_b, 256), "cgroup srv") ||
	    !ASSERT_OK(env__netns(e, "a", ns_a, sizeof(ns_a)), "netns a") ||
	    !ASSERT_OK(env__netns(e, "b", ns_b, sizeof(ns_b)), "netns b") ||
	    !ASSERT_OK(env__veth(e, ns_a, "10.77.0.1", ns_b, "10.77.0.2"), "veth"))
		return -1;
	snprintf(policy, sizeof(policy), "{\"mode\":\"%s\",\"servers\":[{\"name\":\"tickets\","
		 "\"port\":%d}],\"unknown_client\":\"%s\",\"unattributed\":\"%s\"}",
		 enforce ? "enforce" : "monitor", port, enforce ? "deny" : "alert",
		 enforce ? "deny" : "alert");
	if (!ASSERT_OK(env__agent_start(e, policy, NULL), "agent start"))
		return -1;
	*srv = start_server(e, cg_b, ns_b, "10.77.0.2", port, dir, sizeof(dir));
	if (!ASSERT_GE(*srv, 1, "server"))
		return -1;
	write_req(e, req, sizeof(req));
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(out, sizeof(out), "%s/client.out", e->tmp);
	so.cgroup = cg_a;
	so.netns = ns_a;
	so.stdout_path = out;
	return env__spawn(e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "client",
					      "10.77.0.2", portstr, req, NULL });
}

/* Two network namespaces joined by a veth pair: both ends attributed. */
void test_attribution_netns(void)
{
	char cg_a[256], cg_b[256];
	struct env e;
	json_t *ev = NULL;
	pid_t srv = -1, cli;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	cli = netns_client(&e, false, cg_a, cg_b, &srv);
	if (cli < 1 || !ASSERT_EQ(env__wait(&e, cli, 10000), 0, "client"))
		goto cleanup;
	ev = env__wait_event(&e, 5000, "kind=connection", NULL);
	if (!ASSERT_OK_PTR(ev, "connection event"))
		goto cleanup;
	ASSERT_EQ(env__int(ev, "workload.pid"), cli, "client pid");
	ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_a, "client cgroup");
	ASSERT_EQ(env__int(ev, "server_workload.pid"), srv, "server pid");
	ASSERT_STREQ(env__str(ev, "server_workload.cgroup"), cg_b, "server cgroup");
	ASSERT_STRSTR(env__str(ev, "connection.src"), "10.77.0.1", "src");
	ASSERT_STRSTR(env__str(ev, "connection.dst"), "10.77.0.2", "dst");
	ASSERT_NEQ(env__int(ev, "workload.netns"), env__int(ev, "connection.netns"),
		   "client and server namespaces differ");
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}

/* How many of pid's descriptors are network namespaces. */
static int netns_fds_of(pid_t pid)
{
	char dir[64], path[320], link[64];
	struct dirent *d;
	ssize_t n;
	int count = 0;
	DIR *dp;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	dp = opendir(dir);
	while (dp && (d = readdir(dp))) {
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = '\0';
			count += strncmp(link, "net:[", 5) == 0;
		}
	}
	if (dp)
		closedir(dp);
	return count;
}

/*
 * Ending a denied connection in another network namespace opens that
 * namespace; the descriptor is let go within seconds, so the namespaces
 * of pods long gone are not kept alive by the agent (each was kept for
 * as long as it ran, with a descriptor apiece).
 */
void test_attribution_netns_released(void)
{
	char cg_a[256], cg_b[256];
	struct env e;
	json_t *ev = NULL;
	pid_t srv = -1, cli;
	int i, held;

	test__set_timeout(60);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	cli = netns_client(&e, true, cg_a, cg_b, &srv);
	if (cli < 1)
		goto cleanup;
	ev = env__wait_event(&e, 10000, "kind=alert", "action=blocked", NULL);
	if (!ASSERT_OK_PTR(ev, "the stranger blocked"))
		goto cleanup;
	env__wait(&e, cli, 10000);
	/* One is the agent's own namespace, to come back to, open from its
	 * start. */
	held = netns_fds_of(e.agent.pid);
	test__log("namespace descriptors right after: %d", held);
	ASSERT_GE(held, 2, "its own, and theirs opened to end it");
	for (i = 0; i < 80 && (held = netns_fds_of(e.agent.pid)) > 1; i++)
		env__sleep_ms(100);
	ASSERT_EQ(held, 1, "theirs let go within seconds");
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}
