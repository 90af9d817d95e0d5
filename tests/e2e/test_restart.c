// SPDX-License-Identifier: GPL-2.0
/*
 * Restart without a gap: an enforcing agent pins its kernel side; kill -9
 * leaves it enforcing per the policy's `fail` (closed here: requests are
 * held, none leaks), and a restarted agent adopts the pinned state, judges
 * what was held and releases the legitimate requests. `run --cleanup`
 * removes everything. What a restart adopts and a reload changes reaches
 * the connections already open: templates, generations, the mode.
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
#include "agent.h"

#define REQ_FMT "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" \
		"Authorization: Bearer %s\r\nContent-Length: %zu\r\n\r\n%s"
#define BODY "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}"

static void write_req(const char *path, const char *token)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), REQ_FMT, token, strlen(BODY), BODY);

	env__write(path, buf, (size_t)n);
}

static pid_t client(struct env *e, const char *cg, int port, const char *req, const char *out)
{
	struct spawn_opts so = { .cgroup = cg, .stdout_path = out };
	char portstr[16];

	snprintf(portstr, sizeof(portstr), "%d", port);
	return env__spawn(e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "client",
					      "127.0.0.1", portstr, (char *)req, NULL });
}

static size_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (size_t)st.st_size;
}

/* Total bytes the tcp_peer server recorded over all connections. */
static size_t server_bytes(const char *dir)
{
	char path[600];
	size_t total = 0;
	int i;

	for (i = 1; i < 64; i++) {
		snprintf(path, sizeof(path), "%s/conn-%d.bin", dir, i);
		total += file_size(path);
	}
	return total;
}

static long long kernel_counter(struct env *e, const char *name)
{
	char dotted[128];

	snprintf(dotted, sizeof(dotted), "kernel_counters.%s", name);
	return env__status_int(e, dotted);
}

/*
 * The stage of the kill -9 tests: the policy (one client, token "hello"
 * from cgroup cg_ok, fail closed) for port into policy, and a tcp_peer
 * server in cg_srv recording each connection into dir. The server's pid,
 * or -1.
 */
static pid_t stage_server(struct env *e, const char *cg_ok, const char *cg_srv, int port,
			  char *policy, size_t plen, char *dir, size_t dlen)
{
	struct spawn_opts so = { .cgroup = cg_srv };
	char portstr[16], out[600];
	pid_t srv;

	/* sha256("hello") is the allowed client's opaque token. */
	snprintf(policy, plen,
		 "{\"mode\":\"enforce\",\"fail\":\"closed\",\"servers\":[{\"name\":\"t\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":[{\"name\":\"ok\","
		 "\"claims\":{\"token_sha256\":\"%s\"},\"workloads\":[{\"cgroup\":\"%s\"}]}]}",
		 port, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", cg_ok);
	snprintf(dir, dlen, "%s/srv", e->tmp);
	mkdir(dir, 0755);
	snprintf(portstr, sizeof(portstr), "%d", port);
	snprintf(out, sizeof(out), "%s/srv.out", e->tmp);
	so.stdout_path = out;
	srv = env__spawn(e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "server",
					     "127.0.0.1", portstr, dir, NULL });
	return srv > 0 && env__wait_file(out, "listening", 5000) ? srv : -1;
}

void test_restart_kill9(void)
{
	char policy[2048], cg_ok[256], cg_bad[256], cg_srv[256], dir[512];
	char req_ok[512], req_bad[512], out_a[512], out_b[512], out_c[512], pin_dir[512];
	char cgdir[600], cmd[1024];
	const char *pin[] = { "--pin", NULL };
	struct env e;
	json_t *ev = NULL;
	pid_t a, b, c;
	size_t before;
	bool root_existed;
	int port;

	test__set_timeout(240);
	/* No other agent's pins: the root this one makes goes with it. */
	root_existed = access(PIN_ROOT, F_OK) == 0;
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	if (!ASSERT_OK(env__cgroup(&e, "ok", cg_ok, sizeof(cg_ok)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "bad", cg_bad, sizeof(cg_bad)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		goto cleanup;
	snprintf(req_ok, sizeof(req_ok), "%s/ok.req", e.tmp);
	snprintf(req_bad, sizeof(req_bad), "%s/bad.req", e.tmp);
	write_req(req_ok, "hello");
	write_req(req_bad, "stolen-or-unknown");
	if (!ASSERT_GE(stage_server(&e, cg_ok, cg_srv, port, policy, sizeof(policy), dir,
				    sizeof(dir)), 1, "server"))
		goto cleanup;

	if (!ASSERT_OK(env__agent_start(&e, policy, pin), "agent start (pinned)"))
		goto cleanup;
	ev = env__find_event(&e, 1000, "kind=ready", NULL);
	ASSERT_OK_PTR(env__get(ev, "pinned"), "ready names its pin directory");
	snprintf(pin_dir, sizeof(pin_dir), "%s", env__str(ev, "pinned") ?: "");
	json_decref(ev);
	ev = NULL;

	/* Traffic flows: an allowed request is served. */
	snprintf(out_a, sizeof(out_a), "%s/a.out", e.tmp);
	a = client(&e, cg_ok, port, req_ok, out_a);
	if (!ASSERT_EQ(env__wait(&e, a, 10000), 0, "allowed request before the crash"))
		goto cleanup;

	/* kill -9: no clean stop, nothing detaches. */
	kill(e.agent.pid, SIGKILL);
	env__wait(&e, e.agent.pid, 5000);
	e.agent_running = false;
	before = server_bytes(dir);

	snprintf(out_b, sizeof(out_b), "%s/b.out", e.tmp);
	snprintf(out_c, sizeof(out_c), "%s/c.out", e.tmp);
	b = client(&e, cg_ok, port, req_ok, out_b);
	c = client(&e, cg_bad, port, req_bad, out_c);
	env__sleep_ms(2500);
	ASSERT_EQ(server_bytes(dir), before, "fail closed: nothing reached the server while "
		  "the agent was dead");
	snprintf(cgdir, sizeof(cgdir), "%s%s", e.cg_mount, e.cg_root);
	snprintf(cmd, sizeof(cmd), "bpftool cgroup show %s | grep -q connect4", cgdir);
	ASSERT_EQ(env__sh("%s", cmd), 0, "programs still attached after kill -9");

	/* The restarted agent adopts the pinned state and judges the backlog. */
	e.agent.events_read = 0;
	if (!ASSERT_OK(env__agent_start(&e, policy, pin), "agent restart"))
		goto cleanup;
	ev = env__find_event(&e, 1000, "kind=ready", NULL);
	ASSERT_TRUE(json_is_true(env__get(ev, "adopted")), "restart adopted the pinned state");
	json_decref(ev);
	ev = NULL;
	ASSERT_EQ(env__wait(&e, b, 15000), 0, "the held legitimate request was released");
	ASSERT_EQ(env__wait(&e, c, 15000), 3, "the held bad request was refused and reset");
	ev = env__wait_event(&e, 10000, "kind=alert", "verdict=unknown_client", NULL);
	if (ASSERT_OK_PTR(ev, "alert for the request held during the outage")) {
		ASSERT_STREQ(env__str(ev, "action"), "blocked", "action");
		ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_bad, "sender");
	}
	{
		char *srv_bytes = NULL, path[600];
		int i;
		bool leaked = false;

		for (i = 1; i < 64; i++) {
			snprintf(path, sizeof(path), "%s/conn-%d.bin", dir, i);
			srv_bytes = env__slurp(path, NULL);
			if (srv_bytes && strstr(srv_bytes, "stolen-or-unknown"))
				leaked = true;
			free(srv_bytes);
		}
		ASSERT_FALSE(leaked, "the bad request never reached the server");
	}

	/* Clean stop keeps the pins (enforcing); --cleanup removes them. */
	ASSERT_EQ(env__agent_stop(&e), 0, "clean stop");
	ASSERT_EQ(access(pin_dir, F_OK), 0, "still pinned after a clean stop");
	ASSERT_EQ(env__sh("%s run --cleanup --state-dir %s >/dev/null", env__bin(),
			  e.agent.state_dir), 0, "cleanup");
	ASSERT_NEQ(access(pin_dir, F_OK), 0, "pin directory removed");
	if (!root_existed)
		ASSERT_NEQ(access(PIN_ROOT, F_OK), 0, "and the pins' root it made");
	ASSERT_NEQ(env__sh("%s", cmd), 0, "nothing attached after cleanup");
cleanup:
	json_decref(ev);
	if (e.agent.state_dir[0])
		env__sh("%s run --cleanup --state-dir %s >/dev/null 2>&1", env__bin(),
			e.agent.state_dir);
	env__cleanup(&e);
}

/*
 * A daemon killed with -9 leaves its wakers' rings in the pinned map
 * (waker.h), with no one to read them. Restarted on fewer CPUs, the new
 * daemon empties the slots it has no waker for, so held bytes on such a
 * CPU wake its event loop, not a dead ring.
 */
void test_restart_wakers(void)
{
	char policy[2048], cg_ok[256], cg_srv[256], dir[512], req[512], out[512];
	const char *pin[] = { "--pin", NULL };
	long long loop0;
	struct env e;
	pid_t srv;
	int port;

	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		test__log("one CPU: nothing to tell apart, skipped");
		return;
	}
	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	if (!ASSERT_OK(env__cgroup(&e, "ok", cg_ok, sizeof(cg_ok)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		goto cleanup;
	snprintf(req, sizeof(req), "%s/ok.req", e.tmp);
	write_req(req, "hello");
	srv = stage_server(&e, cg_ok, cg_srv, port, policy, sizeof(policy), dir, sizeof(dir));
	if (!ASSERT_GE(srv, 1, "server") || !ASSERT_OK(env__pin(srv, 1), "server on CPU 1") ||
	    !ASSERT_OK(env__agent_start(&e, policy, pin), "agent start (pinned)"))
		goto cleanup;
	kill(e.agent.pid, SIGKILL);
	env__wait(&e, e.agent.pid, 5000);
	e.agent_running = false;

	e.agent.events_read = 0;
	ASSERT_OK(env__pin(0, 0), "agent on CPU 0");
	if (!ASSERT_OK(env__agent_start(&e, policy, pin), "restart on CPU 0")) {
		env__pin(0, -1);
		goto cleanup;
	}
	env__pin(0, -1);
	loop0 = env__status_int(&e, "wakers.loop_ring_wakeups");
	ASSERT_OK(env__pin(0, 1), "client on CPU 1");
	snprintf(out, sizeof(out), "%s/a.out", e.tmp);
	ASSERT_EQ(env__wait(&e, client(&e, cg_ok, port, req, out), 10000), 0, "answered");
	env__pin(0, -1);
	ASSERT_EQ(kernel_counter(&e, "held_wakeups_on_cpu"), 0, "no dead ring rung");
	ASSERT_GE(kernel_counter(&e, "held_wakeups_loop"), 1, "CPU 1 has no waker now");
	ASSERT_GE(env__status_int(&e, "wakers.loop_ring_wakeups") - loop0, 1, "the loop was woken");
cleanup:
	if (e.agent.state_dir[0])
		env__sh("%s run --cleanup --state-dir %s >/dev/null 2>&1", env__bin(),
			e.agent.state_dir);
	env__cleanup(&e);
}

/*
 * A restart that adopts the pinned maps meets the previous daemon's
 * fast-path templates and the connections that passed requests on them.
 * Those templates were judged by the previous policy: each connection's
 * next request is judged again by the new one (the request after a policy
 * change is blocked, not passed on the old template). And the new
 * daemon's templates never repeat a generation a connection carries: the
 * kernel would take one for the template it replaces and never pass
 * another request of that connection in place.
 */
#define TPL_TOKEN "restart-fast-token"
#define TPL_CALL(id, ua, text, pause)                                                        \
	"{\"pause_before_ms\":" #pause ",\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{"  \
	"\"Authorization\":\"Bearer " TPL_TOKEN "\",\"User-Agent\":\"" ua "\","                 \
	"\"MCP-Protocol-Version\":\"2025-11-25\"},\"body\":{\"jsonrpc\":\"2.0\",\"id\":" #id ","  \
	"\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\""    \
	text "\"}}}}"

/* The same with another token, no User-Agent. */
#define MODE_CALL(id, token, text, pause)                                                   \
	"{\"pause_before_ms\":" #pause ",\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{"  \
	"\"Authorization\":\"Bearer " token "\",\"MCP-Protocol-Version\":\"2025-11-25\"},"      \
	"\"body\":{\"jsonrpc\":\"2.0\",\"id\":" #id ",\"method\":\"tools/call\",\"params\":"    \
	"{\"name\":\"echo\",\"arguments\":{\"text\":\"" text "\"}}}}"

/* raw.mjs on one connection from cgroup cg to port, in the background:
 * requests is the spec's list (without brackets), tag names its output. */
static pid_t raw_on(struct env *e, const char *cg, int port, const char *tag,
		    const char *requests)
{
	char script[PATH_MAX], path[600], out[600], *spec;
	struct spawn_opts so = { .cgroup = cg, .stdout_path = out };
	pid_t pid;

	if (asprintf(&spec, "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[%s]}", port,
		     requests) < 0)
		return -1;
	snprintf(script, sizeof(script), "%s/raw.mjs", env__node_dir());
	snprintf(out, sizeof(out), "%s/raw-%s.out", e->tmp, tag);
	snprintf(path, sizeof(path), "%s.spec", out);
	env__write(path, spec, strlen(spec));
	free(spec);
	pid = env__spawn(e, &so, (char *[]){ "node", script, path, NULL });
	return pid;
}

/* Request id's alert, with `action` (what: the assertion's name). */
static void check_action(struct env *e, const char *id, const char *action, const char *what)
{
	char cond[64];
	json_t *ev;

	snprintf(cond, sizeof(cond), "request.id=%s", id);
	ev = env__find_event(e, 5000, "kind=alert", cond, NULL);
	if (ASSERT_OK_PTR(ev, what))
		ASSERT_STREQ(env__str(ev, "action"), action, "action");
	json_decref(ev);
}

/* Whether request id's event says it passed in the kernel as `fast`. */
static void check_request_fast(struct env *e, const char *id, bool fast)
{
	char cond[64];
	json_t *ev;

	snprintf(cond, sizeof(cond), "request.id=%s", id);
	ev = env__find_event(e, 3000, "kind=request", cond, NULL);
	if (ASSERT_OK_PTR(ev, id))
		ASSERT_EQ(json_is_true(env__get(ev, "fast_path")), fast, "passed in the kernel");
	json_decref(ev);
}

/* A counter of `mcpwarden status`'s kernel_counters. */
/* Stops the agent (its kernel side stays, pinned) and starts it again. */
static int restart_pinned(struct env *e, const char *policy)
{
	const char *pin[] = { "--pin", NULL };
	json_t *ev;
	bool adopted;

	if (env__agent_stop(e) != 0)
		return -1;
	e->agent.events_read = 0;
	if (env__agent_start(e, policy, pin))
		return -1;
	ev = env__find_event(e, 1000, "kind=ready", NULL);
	adopted = json_is_true(env__get(ev, "adopted"));
	json_decref(ev);
	return adopted ? 0 : -1;
}

void test_restart_templates(void)
{
	char policy[1024], denying[1024], cg_c[256], cg_s[256], rec[600], sha[65];
	const char *pin[] = { "--pin", NULL };
	struct env e;
	json_t *ev = NULL;
	pid_t cli;
	int port;

	test__set_timeout(180);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = env__free_port();
	env__sha256_hex(TPL_TOKEN, sha);
	if (!ASSERT_OK(env__cgroup(&e, "c", cg_c, sizeof(cg_c)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "s", cg_s, sizeof(cg_s)), "cgroup"))
		goto cleanup;
	/* No tool limits, no clientInfo claims: the fast path applies. */
#define TPL_POLICY                                                                          \
	"{\"mode\":\"enforce\",\"servers\":[{\"name\":\"t\",\"port\":%d}],"              \
	"\"unknown_client\":\"deny\",\"clients\":[{\"name\":\"a\",\"claims\":"            \
	"{\"token_sha256\":\"%s\"},\"workloads\":[{\"cgroup\":\"%s\"}]}]}"
	snprintf(policy, sizeof(policy), TPL_POLICY, port, sha, cg_c);
	/* The same client, now only from another cgroup. */
	snprintf(denying, sizeof(denying), TPL_POLICY, port, sha, cg_s);
	if (!ASSERT_OK(env__json_server(&e, cg_s, port, rec, sizeof(rec)), "server") ||
	    !ASSERT_OK(env__agent_start(&e, policy, pin), "agent (pinned)"))
		goto cleanup;

	if (test__start_subtest("generations_continue")) {
		/* 1 judged: the daemon's first template (generation 1); 2
		 * passes on it. Restart. 3 differs: judged, a new template; 4
		 * passes on that one. */
		cli = raw_on(&e, cg_c, port, "gen",
			     TPL_CALL(1, "ua-1", "one", 0) ","
			     TPL_CALL(2, "ua-1", "two-before", 0) ","
			     TPL_CALL(3, "ua-2", "three", 4000) ","
			     TPL_CALL(4, "ua-2", "four-after", 0));
		ASSERT_TRUE(env__wait_file(rec, "two-before", 5000), "2 reached the server");
		check_request_fast(&e, "2", true);
		if (!ASSERT_OK(restart_pinned(&e, policy), "restart, adopting the pinned maps"))
			goto cleanup;
		ASSERT_EQ(env__wait(&e, cli, 20000), 0, "all four answered on one connection");
		check_request_fast(&e, "3", false);
		check_request_fast(&e, "4", true);
	}
	if (test__start_subtest("policy_change_reaches_judged_connections")) {
		/* 5 judged, 6 passes on its template. Restart with a policy
		 * that allows this client only from another cgroup: 7, the
		 * same head as 6, is judged again and blocked. */
		cli = raw_on(&e, cg_c, port, "policy",
			     TPL_CALL(5, "ua-3", "five", 0) ","
			     TPL_CALL(6, "ua-3", "six-before", 0) ","
			     TPL_CALL(7, "ua-3", "seven-after", 4000));
		ASSERT_TRUE(env__wait_file(rec, "six-before", 5000), "6 reached the server");
		check_request_fast(&e, "6", true);
		if (!ASSERT_OK(restart_pinned(&e, denying), "restart with another policy"))
			goto cleanup;
		ASSERT_NEQ(env__wait(&e, cli, 20000), 0, "7 got no answer");
		ev = env__find_event(&e, 5000, "kind=alert", "request.id=7", NULL);
		if (ASSERT_OK_PTR(ev, "7 judged by the new policy")) {
			/* The claim's client, from elsewhere. */
			ASSERT_STREQ(env__str(ev, "verdict"), "mismatch", "verdict");
			ASSERT_STREQ(env__str(ev, "action"), "blocked", "blocked");
		}
		ASSERT_FALSE(env__wait_file(rec, "seven-after", 1000), "7 never reached it");
	}
	if (test__start_subtest("monitor_after_restart")) {
		/* 8 judged (allowed again). Restart in monitor mode: 9, a
		 * token no client has, is delivered (the adopted connection
		 * is mirrored, not held for a verdict monitor mode never
		 * writes) and reported. */
		char monitor[1024];
		long long held;

		snprintf(monitor, sizeof(monitor), "%s", policy);
		memcpy(strstr(monitor, "\"enforce\""), "\"monitor\"", 9);
		if (!ASSERT_OK(restart_pinned(&e, policy), "restart with the first policy"))
			goto cleanup;
		cli = raw_on(&e, cg_c, port, "monitor",
			     TPL_CALL(8, "ua-4", "eight", 0) ","
			     MODE_CALL(9, "not-a-known-token", "nine-monitored", 4000));
		ASSERT_TRUE(env__wait_file(rec, "eight", 5000), "8 reached the server");
		if (!ASSERT_OK(restart_pinned(&e, monitor), "restart in monitor mode"))
			goto cleanup;
		held = kernel_counter(&e, "held_segments");
		ASSERT_EQ(env__wait(&e, cli, 20000), 0, "9 answered");
		ASSERT_EQ(kernel_counter(&e, "held_segments"), held, "9 was not held on its way");
		ASSERT_TRUE(env__wait_file(rec, "nine-monitored", 1000), "9 reached the server");
		check_action(&e, "9", "alerted", "9 reported");
	}
	if (test__start_subtest("server_dropped_at_restart")) {
		/* 10 judged. The agent stops; 12, a token no client has, is
		 * held (fail closed). It starts again with a policy that
		 * protects another port only: 12 is delivered, not judged
		 * (new connections to this server would not be either). */
		char other[1024];
		long long held;
		pid_t idle;

		snprintf(other, sizeof(other), TPL_POLICY, env__free_port(), sha, cg_c);
		if (!ASSERT_OK(restart_pinned(&e, policy), "restart with the first policy"))
			goto cleanup;
		cli = raw_on(&e, cg_c, port, "dropped",
			     TPL_CALL(10, "ua-5", "ten", 0) ","
			     MODE_CALL(12, "not-a-known-token", "twelve-unprotected", 4000));
		/* And a connection idle across the restart: 16 passes in the
		 * kernel, which knows the port is no longer protected. */
		idle = raw_on(&e, cg_c, port, "idle",
			      TPL_CALL(15, "ua-6", "fifteen", 0) ","
			      TPL_CALL(16, "ua-6", "sixteen-unprotected", 10000));
		ASSERT_TRUE(env__wait_file(rec, "\"fifteen\"", 5000), "15 reached the server");
		ASSERT_TRUE(env__wait_file(rec, "\"ten\"", 5000), "10 reached the server");
		if (!ASSERT_EQ(env__agent_stop(&e), 0, "stop"))
			goto cleanup;
		env__sleep_ms(4500);	/* 12 sent meanwhile */
		ASSERT_FALSE(env__wait_file(rec, "twelve-unprotected", 10), "12 held meanwhile");
		e.agent.events_read = 0;
		if (!ASSERT_OK(env__agent_start(&e, other, pin), "start without this server"))
			goto cleanup;
		ASSERT_EQ(env__wait(&e, cli, 20000), 0, "12 answered");
		ASSERT_TRUE(env__wait_file(rec, "twelve-unprotected", 1000), "12 reached it");
		held = kernel_counter(&e, "held_segments");
		ASSERT_EQ(env__wait(&e, idle, 20000), 0, "16 answered");
		ASSERT_EQ(kernel_counter(&e, "held_segments"), held, "16 was not held");
		ASSERT_EQ(env__count_events(&e, "kind=alert", NULL), 0, "nothing judged");
	}
cleanup:
	json_decref(ev);
	if (e.agent.state_dir[0])
		env__sh("%s run --cleanup --state-dir %s >/dev/null 2>&1", env__bin(),
			e.agent.state_dir);
	env__cleanup(&e);
}

/*
 * A reload that changes the mode reaches the connections already open: a
 * request after monitor -> enforce is judged before it is delivered (a
 * refused one never reaches the server), and one after enforce -> monitor
 * is delivered without waiting (a refused one is reported, not blocked).
 */
#define MODE_POLICY                                                                         \
	"{\"mode\":\"%s\",\"servers\":[{\"name\":\"t\",\"port\":%d},{\"name\":\"raw\","        \
	"\"port\":%d}],\"unknown_client\":\"deny\",\"clients\":[{\"name\":\"a\",\"claims\":"      \
	"{\"token_sha256\":\"%s\"},\"workloads\":[{\"cgroup\":\"%s\"}]}]}"

/* Writes policy and reloads it (SIGHUP). */
static int reload_policy(struct env *e, const char *policy)
{
	json_t *ev;

	if (env__write(e->agent.policy_path, policy, strlen(policy)))
		return -1;
	kill(e->agent.pid, SIGHUP);
	ev = env__wait_event(e, 10000, "kind=policy", "status=loaded", NULL);
	if (!ev)
		return -1;
	json_decref(ev);
	return 0;
}

/* The same with MODE_POLICY in `mode`: ports[0] the MCP server's,
 * ports[1] tcp_peer's. */
static int reload_mode(struct env *e, const int ports[2], const char *sha, const char *cg,
		       const char *mode)
{
	char policy[1024];

	snprintf(policy, sizeof(policy), MODE_POLICY, mode, ports[0], ports[1], sha, cg);
	return reload_policy(e, policy);
}

void test_restart_reload_mode(void)
{
	char policy[1024], cg_c[256], cg_s[256], spec[4096], out[600], rec[600], sha[65];
	struct spawn_opts so = {};
	struct env e;
	json_t *ev = NULL;
	char raw_dir[600], raw_port[16], only_raw[1024];
	pid_t cli, cli2;
	int port, ports[2];

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	port = ports[0] = env__free_port();
	ports[1] = env__free_port();
	env__sha256_hex(TPL_TOKEN, sha);
	if (!ASSERT_OK(env__cgroup(&e, "c", cg_c, sizeof(cg_c)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "s", cg_s, sizeof(cg_s)), "cgroup"))
		goto cleanup;
	/* tcp_peer: a server that reads anything and answers nothing. */
	snprintf(raw_dir, sizeof(raw_dir), "%s/peer", e.tmp);
	mkdir(raw_dir, 0755);
	snprintf(raw_port, sizeof(raw_port), "%d", ports[1]);
	snprintf(out, sizeof(out), "%s/peer.out", e.tmp);
	so.cgroup = cg_s;
	so.stdout_path = out;
	env__spawn(&e, &so, (char *[]){ (char *)env__helper("tcp_peer"), "server", "127.0.0.1",
					raw_port, raw_dir, NULL });
	snprintf(policy, sizeof(policy), MODE_POLICY, "monitor", ports[0], ports[1], sha, cg_c);
	/* tcp_peer's port alone: the MCP server no longer protected. */
	snprintf(only_raw, sizeof(only_raw),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"raw\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"clients\":[{\"name\":\"a\",\"claims\":"
		 "{\"token_sha256\":\"%s\"},\"workloads\":[{\"cgroup\":\"%s\"}]}]}",
		 ports[1], sha, cg_c);
	if (!ASSERT_OK(env__json_server(&e, cg_s, port, rec, sizeof(rec)), "server") ||
	    !ASSERT_TRUE(env__wait_file(out, "listening", 5000), "tcp_peer") ||
	    !ASSERT_OK(env__agent_start(&e, policy, NULL), "agent (monitor)"))
		goto cleanup;

	if (test__start_subtest("monitor_to_enforce")) {
		/* 1 allowed (mirrored); reload to enforce; 2 carries a token
		 * no client has, on the same connection. */
		cli = raw_on(&e, cg_c, port, "m2e",
			     MODE_CALL(1, TPL_TOKEN, "one", 0) ","
			     MODE_CALL(2, "not-a-known-token", "two-refused", 3000));
		/* And a connection to tcp_peer that monitor mode stopped
		 * reading (not HTTP): after the switch it cannot be judged,
		 * so it ends. */
		cli2 = raw_on(&e, cg_c, ports[1], "blind",
			      "{\"raw\":\"NOT HTTP AT ALL\\r\\n\\r\\n\","
			      "\"expect_no_response\":true},{\"raw\":\"eleven-unread\","
			      "\"pause_before_ms\":3000,\"expect_no_response\":true}");
		ASSERT_TRUE(env__wait_file(rec, "\"one\"", 5000), "1 reached the server");
		ev = env__find_event(&e, 5000, "kind=alert", "verdict=malformed", NULL);
		ASSERT_OK_PTR(ev, "monitor mode stopped reading the other connection");
		json_decref(ev);
		ev = NULL;
		ASSERT_OK(reload_mode(&e, ports, sha, cg_c, "enforce"), "to enforce");
		ASSERT_NEQ(env__wait(&e, cli, 20000), 0, "2 got no answer");
		ev = env__find_event(&e, 5000, "kind=alert", "verdict=malformed", "action=blocked",
				     NULL);
		if (ASSERT_OK_PTR(ev, "its end is reported"))
			ASSERT_STRSTR(env__str(ev, "reason"), "enforce mode ends it", "reason");
		env__wait(&e, cli2, 20000);
		snprintf(out, sizeof(out), "%s/conn-1.bin", raw_dir);
		ASSERT_TRUE(env__wait_file(out, "NOT HTTP", 100), "tcp_peer read the first bytes");
		ASSERT_FALSE(env__wait_file(out, "eleven-unread", 100),
			     "the bytes after the switch never reached it");
		json_decref(ev);
		ev = NULL;
		check_action(&e, "2", "blocked", "2 judged");
		ASSERT_FALSE(env__wait_file(rec, "two-refused", 1000), "2 never reached it");
	}
	if (test__start_subtest("enforce_to_monitor")) {
		/* 3 allowed (held and judged); reload to monitor while 4, a
		 * token no client has, is on its way in 150-byte pieces 2 s
		 * apart (held as they came before, mirrored after): delivered
		 * whole, and reported. */
		snprintf(spec, sizeof(spec), "%s,{\"split\":150,\"delay_ms\":2000,%s",
			 MODE_CALL(3, TPL_TOKEN, "three", 0),
			 MODE_CALL(4, "not-a-known-token", "four-reported", 0) + 1);
		cli = raw_on(&e, cg_c, port, "e2m", spec);
		ASSERT_TRUE(env__wait_file(rec, "\"three\"", 5000), "3 reached the server");
		ASSERT_OK(reload_mode(&e, ports, sha, cg_c, "monitor"), "to monitor");
		ASSERT_EQ(env__wait(&e, cli, 20000), 0, "4 answered");
		ASSERT_TRUE(env__wait_file(rec, "four-reported", 1000), "4 reached the server");
		check_action(&e, "4", "alerted", "4 reported");
	}
	if (test__start_subtest("server_no_longer_protected")) {
		/* Enforce mode again; 21 allowed (held and judged). A reload
		 * whose policy no longer names this server: 22, a token no
		 * client has, is none of the agent's business any more. */
		if (!ASSERT_OK(reload_mode(&e, ports, sha, cg_c, "enforce"), "to enforce"))
			goto cleanup;
		cli = raw_on(&e, cg_c, port, "unprotected",
			     MODE_CALL(21, TPL_TOKEN, "twenty-one", 0) ","
			     MODE_CALL(22, "not-a-known-token", "twenty-two-unprotected", 3000));
		ASSERT_TRUE(env__wait_file(rec, "twenty-one", 5000), "21 reached the server");
		ASSERT_OK(reload_policy(&e, only_raw), "reloaded without the MCP server");
		ASSERT_EQ(env__wait(&e, cli, 20000), 0, "22 answered");
		ASSERT_TRUE(env__wait_file(rec, "twenty-two-unprotected", 1000),
			    "22 reached the server");
		ASSERT_EQ(env__count_events(&e, "kind=alert", "request.id=22", NULL), 0,
			  "no alert for it");
	}
	if (test__start_subtest("server_protected_again")) {
		/* One connection across two reloads: 30 allowed; the server
		 * dropped: 31, a token no client has, passes unread; the
		 * server named again: 32, the same, is judged and blocked. */
		if (!ASSERT_OK(reload_mode(&e, ports, sha, cg_c, "enforce"), "both servers"))
			goto cleanup;
		cli = raw_on(&e, cg_c, port, "again",
			     MODE_CALL(30, TPL_TOKEN, "thirty", 0) ","
			     MODE_CALL(31, "not-a-known-token", "thirty-one", 3000) ","
			     MODE_CALL(32, "not-a-known-token", "thirty-two-judged", 3000));
		ASSERT_TRUE(env__wait_file(rec, "\"thirty\"", 5000), "30 reached the server");
		ASSERT_OK(reload_policy(&e, only_raw), "the server dropped");
		ASSERT_TRUE(env__wait_file(rec, "thirty-one", 5000), "31 reached the server");
		ASSERT_OK(reload_mode(&e, ports, sha, cg_c, "enforce"), "the server named again");
		ASSERT_NEQ(env__wait(&e, cli, 20000), 0, "32 got no answer");
		ASSERT_FALSE(env__wait_file(rec, "thirty-two-judged", 500), "32 never reached it");
		check_action(&e, "32", "blocked", "32 judged");
		ASSERT_EQ(env__count_events(&e, "kind=alert", "request.id=31", NULL), 0,
			  "31 was not");
	}
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}
