// SPDX-License-Identifier: GPL-2.0
/*
 * Scenarios with real MCP software: the official TypeScript SDK's server
 * (tests/e2e/node/server.mjs) and clients (client.mjs on SDK 1.x,
 * inspector.mjs on the v2 SDK), Streamable HTTP, bearer JWTs signed here
 * and checked by the agent (require_signature), every workload in its own
 * cgroup. Each scenario asserts the exact verdict and action, the evidence
 * of the alert, and whether the server's tool handler ran (the server's
 * record file: one `tool` line per handler run, one `http` line per request
 * that reached it).
 *
 * Every client tags its traffic with a marker (in clientInfo.name and in
 * the echo tool's text) so the record file tells which client reached the
 * server. Scenarios 2-9 run twice: enforce (blocked, never reaches the
 * server) and monitor (`run --mode monitor`: reaches it, alert "alerted").
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "env.h"
#include "harness.h"

#define ISS "https://idp.mcpw.test/realm"
#define ISS_GLOB "https://idp.mcpw.test/*"
#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

struct sc {
	struct env e;
	bool monitor;
	const char *action;	/* what every finding's alert must say */
	char keys[300];		/* jwt.mjs --gen-keys output */
	char cg_srv[256];
	int port;
	char rec[300];		/* server.mjs --record of the "tickets" server */
	char url[128];
};

/* ---- small helpers ----------------------------------------------------- */

static const char *tmp_path(struct sc *s, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", s->e.tmp, name);
	return buf;
}

/* Starts `INTERP tests/e2e/node/PROG ARGS...` (INTERP NULL: node) in a
 * cgroup and netns, stdout to out, stderr to out.err. */
static pid_t spawn_node(struct sc *s, const char *interp, const char *cg, const char *netns,
			const char *out, const char *prog, const char *const *args)
{
	char progpath[PATH_MAX], err[512];
	char *argv[48];
	struct spawn_opts so = { .cgroup = cg, .netns = netns, .stdout_path = out };
	int n = 0;

	snprintf(progpath, sizeof(progpath), "%s/%s", env__node_dir(), prog);
	snprintf(err, sizeof(err), "%s.err", out);
	so.stderr_path = err;
	argv[n++] = (char *)(interp ? interp : env__node_exe());
	argv[n++] = progpath;
	for (; args && *args && n < 47; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	return env__spawn(&s->e, &so, argv);
}

/* Runs a node program to its end; returns its exit status. */
static int run_node(struct sc *s, const char *interp, const char *cg, const char *netns,
		    const char *out, const char *prog, const char *const *args, pid_t *pid)
{
	pid_t p = spawn_node(s, interp, cg, netns, out, prog, args);

	if (pid)
		*pid = p;
	if (p <= 0)
		return -1;
	return env__wait(&s->e, p, 60000);
}

/* Mints a token signed with the test key: jwt.mjs --key ... ARGS. */
static bool mint(struct sc *s, char *tok, size_t len, const char *client_id, const char *jti)
{
	char out[512], key[400], *text;
	int st;

	snprintf(out, sizeof(out), "%s/jwt-%s-%s.txt", s->e.tmp, client_id, jti);
	snprintf(key, sizeof(key), "%s/private.pem", s->keys);
	st = run_node(s, NULL, NULL, NULL, out, "jwt.mjs",
		      ARGS("--key", key, "--iss", ISS, "--sub", client_id, "--client-id", client_id,
			   "--jti", jti, "--aud", "mcp-e2e"), NULL);
	text = env__slurp(out, NULL);
	if (!ASSERT_EQ(st, 0, "jwt.mjs") || !ASSERT_OK_PTR(text, "token")) {
		free(text);
		return false;
	}
	text[strcspn(text, "\r\n")] = '\0';
	snprintf(tok, len, "%s", text);
	free(text);
	return ASSERT_GE(strlen(tok), 20, "token length");
}

/* First JSON line of a file whose `path` is `val` (NULL: the last line). */
static json_t *file_line(const char *file, const char *path, const char *val)
{
	char *buf = env__slurp(file, NULL), *line, *save = NULL;
	json_t *found = NULL;

	if (!buf)
		return NULL;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *o = json_loads(line, 0, NULL);
		const char *v;

		if (!o)
			continue;
		v = path ? env__str(o, path) : NULL;
		if (!path || (v && strcmp(v, val) == 0)) {
			json_decref(found);
			found = o;
			if (path)
				break;
			continue;
		}
		json_decref(o);
	}
	free(buf);
	return found;
}

/*
 * Lines of a server record of this kind whose `path` contains `needle`
 * (path NULL: all of the kind).
 */
static int rec_count(const char *rec, const char *kind, const char *path, const char *needle)
{
	char *buf = env__slurp(rec, NULL), *line, *save = NULL;
	int n = 0;

	if (!buf)
		return 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *o = json_loads(line, 0, NULL);
		const char *v;

		if (!o)
			continue;
		v = path ? env__str(o, path) : NULL;
		if (strcmp(env__str(o, "kind") ? env__str(o, "kind") : "", kind) == 0 &&
		    (!path || (v && strstr(v, needle))))
			n++;
		json_decref(o);
	}
	free(buf);
	return n;
}

/* Tool handler runs for one marker (the echo text), and requests carrying it. */
static int tool_runs(const char *rec, const char *marker)
{
	return rec_count(rec, "tool", "args.text", marker);
}

static int http_seen(const char *rec, const char *marker)
{
	return rec_count(rec, "http", "body", marker);
}

static bool sc_init(struct sc *s, bool monitor)
{
	char out[512];

	memset(s, 0, sizeof(*s));
	s->monitor = monitor;
	s->action = monitor ? "alerted" : "blocked";
	test__set_timeout(300);
	if (!ASSERT_OK(env__init(&s->e), "env"))
		return false;
	snprintf(s->keys, sizeof(s->keys), "%s/keys", s->e.tmp);
	mkdir(s->keys, 0700);
	if (!ASSERT_EQ(run_node(s, NULL, NULL, NULL, tmp_path(s, "keys.out", out, sizeof(out)),
				"jwt.mjs", ARGS("--gen-keys", s->keys), NULL), 0, "gen keys"))
		return false;
	if (!ASSERT_OK(env__cgroup(&s->e, "srv", s->cg_srv, sizeof(s->cg_srv)), "server cgroup"))
		return false;
	tmp_path(s, "tickets.rec", s->rec, sizeof(s->rec));
	return true;
}

/*
 * A recording SDK server in the server cgroup, started before the agent
 * on a port the kernel picks (no race with other tests for a free port);
 * waits until it listens and returns the port in *port.
 */
static bool start_server(struct sc *s, const char *netns, const char *host, int *port,
			 const char *rec, bool modern)
{
	char out[600];
	json_t *ready = NULL;
	pid_t pid;
	int st = -1, i;

	snprintf(out, sizeof(out), "%s.out", rec);
	if (modern)
		pid = spawn_node(s, NULL, s->cg_srv, netns, out, "server.mjs",
				 ARGS("--port", "0", "--host", host, "--record", rec, "--modern"));
	else
		pid = spawn_node(s, NULL, s->cg_srv, netns, out, "server.mjs",
				 ARGS("--port", "0", "--host", host, "--record", rec));
	if (!ASSERT_GE(pid, 1, "server spawn"))
		return false;
	for (i = 0; i < 3000 && !ready; i++) {
		ready = file_line(rec, "kind", "ready");
		if (!ready && (st = env__wait(&s->e, pid, 0)) != -ETIMEDOUT)
			break;
		if (!ready)
			env__sleep_ms(10);
	}
	if (!ASSERT_OK_PTR(ready, "server ready")) {
		char err[700], *text = env__slurp(out, NULL), *etext;

		snprintf(err, sizeof(err), "%s.err", out);
		etext = env__slurp(err, NULL);
		test__log("server: status %d, stdout:\n%s\nstderr:\n%s\n", st,
			  text ? text : "", etext ? etext : "");
		free(text);
		free(etext);
		return false;
	}
	*port = (int)env__int(ready, "port");
	json_decref(ready);
	if (port == &s->port)
		snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/mcp", s->port);
	return ASSERT_GE(*port, 1, "server port");
}

/*
 * The policy: "tickets" on s->port (and more servers), signed tokens
 * required, unknown clients and unattributed requests denied.
 */
static const char *policy(struct sc *s, char *buf, size_t len, const char *more_servers,
			  const char *clients)
{
	snprintf(buf, len,
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}%s],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\","
		 "\"instance_window_seconds\":600,"
		 "\"tokens\":{\"keys\":[{\"file\":\"%s/public.pem\",\"iss\":\"" ISS_GLOB "\"}],"
		 "\"require_signature\":true},"
		 "\"clients\":[%s]}",
		 s->port, more_servers ? more_servers : "", s->keys, clients);
	return buf;
}

static bool start_agent(struct sc *s, const char *pol)
{
	static const char *const monitor_args[] = { "--mode", "monitor", NULL };

	return ASSERT_OK(env__agent_start(&s->e, pol, s->monitor ? monitor_args : NULL),
			 "agent start");
}

/* The evidence every finding carries about a sender in our subtree. */
static void check_alert(struct sc *s, json_t *ev, const char *verdict, const char *client,
			pid_t pid, const char *cg, const char *exe, const char *server, int port)
{
	char portstr[16];

	snprintf(portstr, sizeof(portstr), ":%d", port);
	ASSERT_STREQ(env__str(ev, "kind"), "alert", "kind");
	ASSERT_STREQ(env__str(ev, "verdict"), verdict, "verdict");
	ASSERT_STREQ(env__str(ev, "action"), s->action, "action");
	ASSERT_STREQ(env__str(ev, "mode"), s->monitor ? "monitor" : "enforce", "mode");
	ASSERT_STREQ(env__str(ev, "client"), client, "client");
	ASSERT_STREQ(env__str(ev, "server"), server, "server");
	ASSERT_STREQ(env__str(ev, "node"), "test-node", "node");
	ASSERT_GE(strlen(env__str(ev, "reason") ? env__str(ev, "reason") : ""), 10, "reason");
	ASSERT_OK_PTR(env__str(ev, "time"), "time");
	ASSERT_TRUE(json_is_true(env__get(ev, "workload.attributed")), "attributed");
	ASSERT_EQ(env__int(ev, "workload.pid"), pid, "workload.pid");
	ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg, "workload.cgroup");
	ASSERT_STREQ(env__str(ev, "workload.exe"), exe ? exe : env__node_exe(), "workload.exe");
	ASSERT_GE(env__int(ev, "workload.cgroup_id"), 1, "workload.cgroup_id");
	ASSERT_GE(env__int(ev, "workload.start_time_ns"), 1, "workload.start_time_ns");
	ASSERT_EQ(env__int(ev, "workload.uid"), 0, "workload.uid");
	ASSERT_STRSTR(env__str(ev, "workload.cmdline"), ".mjs", "workload.cmdline");
	ASSERT_GE((long long)json_array_size(env__get(ev, "workload.ancestors")), 1, "ancestors");
	ASSERT_GE(env__int(ev, "workload.netns"), 1, "workload.netns");
	ASSERT_STRSTR(env__str(ev, "connection.dst"), portstr, "connection.dst");
	ASSERT_OK_PTR(env__str(ev, "connection.src"), "connection.src");
	ASSERT_OK_PTR(env__get(ev, "request"), "request");
	ASSERT_STREQ(env__str(ev, "request.http_method"), "POST", "request.http_method");
	ASSERT_STREQ(env__str(ev, "request.path"), "/mcp", "request.path");
}

/* The token evidence: a signed JWT checked against the test key. */
static void check_token(json_t *ev, const char *client_id, const char *jti)
{
	ASSERT_STREQ(env__str(ev, "claim.client_id"), client_id, "claim.client_id");
	ASSERT_STREQ(env__str(ev, "claim.sub"), client_id, "claim.sub");
	ASSERT_STREQ(env__str(ev, "claim.iss"), ISS, "claim.iss");
	ASSERT_STREQ(env__str(ev, "claim.jti"), jti, "claim.jti");
	ASSERT_STREQ(env__str(ev, "claim.token_type"), "jwt", "claim.token_type");
	ASSERT_STREQ(env__str(ev, "claim.token_signature"), "valid", "claim.token_signature");
	ASSERT_EQ(strlen(env__str(ev, "claim.token_sha256") ? env__str(ev, "claim.token_sha256") : ""),
		  64, "claim.token_sha256");
}

/*
 * The first alert for this pid (with method: for that JSON-RPC method).
 * In enforce mode the first finding is the blocked request; in monitor
 * mode we ask for the tools/call, which shows the traffic went on.
 */
static json_t *alert_of(struct sc *s, pid_t pid, const char *method)
{
	char p[32], m[64];

	snprintf(p, sizeof(p), "workload.pid=%d", pid);
	if (!method)
		return env__find_event(&s->e, 15000, "kind=alert", p, NULL);
	snprintf(m, sizeof(m), "request.method=%s", method);
	return env__find_event(&s->e, 15000, "kind=alert", p, m, NULL);
}

/* Alerts about requests (the agent's own health alerts carry `health`). */
static int findings(struct sc *s)
{
	return env__count_events(&s->e, "kind=alert", "health=", NULL);
}

static int alerts_of(struct sc *s, pid_t pid)
{
	char p[32];

	snprintf(p, sizeof(p), "workload.pid=%d", pid);
	return env__count_events(&s->e, "kind=alert", p, NULL);
}

static int requests_of(struct sc *s, pid_t pid)
{
	char p[32];

	snprintf(p, sizeof(p), "workload.pid=%d", pid);
	return env__count_events(&s->e, "kind=request", p, NULL);
}

/*
 * What a finding does to the sender and the server: enforce - the client
 * fails and its marked request never reached the server; monitor - it
 * succeeds, its tool ran, and every alert it caused says "alerted".
 */
static void check_outcome(struct sc *s, const char *what, int client_status, pid_t pid,
			  const char *rec, const char *marker, const char *verdict)
{
	char p[32], msg[160];

	snprintf(p, sizeof(p), "workload.pid=%d", pid);
	if (s->monitor) {
		snprintf(msg, sizeof(msg), "%s: client succeeds in monitor mode", what);
		ASSERT_EQ(client_status, 0, msg);
		snprintf(msg, sizeof(msg), "%s: tool ran in monitor mode", what);
		ASSERT_EQ(tool_runs(rec, marker), 1, msg);
		snprintf(msg, sizeof(msg), "%s: its request reached the server", what);
		ASSERT_GE(http_seen(rec, marker), 1, msg);
		snprintf(msg, sizeof(msg), "%s: all its alerts are %s/alerted", what, verdict);
		ASSERT_EQ(env__count_events(&s->e, "kind=alert", p, "action=alerted", NULL),
			  alerts_of(s, pid), msg);
		ASSERT_EQ(env__count_events(&s->e, "kind=alert", "action=blocked", NULL), 0,
			  "nothing blocked in monitor mode");
	} else {
		snprintf(msg, sizeof(msg), "%s: client fails in enforce mode", what);
		ASSERT_NEQ(client_status, 0, msg);
		snprintf(msg, sizeof(msg), "%s: tool never ran", what);
		ASSERT_EQ(tool_runs(rec, marker), 0, msg);
		snprintf(msg, sizeof(msg), "%s: its request never reached the server", what);
		ASSERT_EQ(http_seen(rec, marker), 0, msg);
		snprintf(msg, sizeof(msg), "%s: one blocked request ends the connection", what);
		ASSERT_EQ(env__count_events(&s->e, "kind=alert", p, "action=blocked", NULL), 1, msg);
	}
}

/* client.mjs against url with a token (or none), tagged with marker. */
static int sdk_client(struct sc *s, const char *interp, const char *cg, const char *netns,
		      const char *url, const char *token, const char *name, const char *marker,
		      const char *tool, pid_t *pid)
{
	char out[512], args[256];

	snprintf(out, sizeof(out), "%s/client-%s.out", s->e.tmp, marker);
	snprintf(args, sizeof(args), "{\"text\":\"%s\"}", marker);
	if (strcmp(tool, "delete_all") == 0)
		snprintf(args, sizeof(args), "{}");
	if (token)
		return run_node(s, interp, cg, netns, out, "client.mjs",
				ARGS("--url", url, "--token", token, "--name", name ? name : marker,
				     "--version", "1.0.0", "--tool", tool, "--args", args,
				     "--timeout-ms", "10000"), pid);
	return run_node(s, interp, cg, netns, out, "client.mjs",
			ARGS("--url", url, "--name", name ? name : marker, "--version", "1.0.0",
			     "--tool", tool, "--args", args, "--timeout-ms", "10000"), pid);
}

/* An allowed client: it worked, its tool ran once, no alert, requests allowed. */
static void check_allowed(struct sc *s, const char *what, int status, pid_t pid,
			  const char *rec, const char *marker, const char *client)
{
	char p[32], c[96], msg[160];
	json_t *ev;

	snprintf(p, sizeof(p), "workload.pid=%d", pid);
	snprintf(c, sizeof(c), "client=%s", client);
	snprintf(msg, sizeof(msg), "%s: client succeeds", what);
	ASSERT_EQ(status, 0, msg);
	snprintf(msg, sizeof(msg), "%s: tool ran once", what);
	ASSERT_EQ(tool_runs(rec, marker), 1, msg);
	ev = env__find_event(&s->e, 10000, "kind=request", p, "request.method=tools/call", NULL);
	snprintf(msg, sizeof(msg), "%s: tools/call allowed", what);
	if (ASSERT_OK_PTR(ev, msg)) {
		ASSERT_STREQ(env__str(ev, "verdict"), "allow", "verdict allow");
		ASSERT_STREQ(env__str(ev, "client"), client, "allowed client");
		ASSERT_STREQ(env__str(ev, "action"), NULL, "no action on an allowed request");
	}
	json_decref(ev);
	snprintf(msg, sizeof(msg), "%s: no alert", what);
	ASSERT_EQ(alerts_of(s, pid), 0, msg);
	snprintf(msg, sizeof(msg), "%s: every request names the client", what);
	ASSERT_EQ(env__count_events(&s->e, "kind=request", p, c, NULL), requests_of(s, pid), msg);
}

static const char *jti_of(const char *marker, char *buf, size_t len)
{
	snprintf(buf, len, "jti-%s-%d", marker, getpid());
	return buf;
}

/* ---- 1. a legitimate client over minutes of keep-alive ------------------ */

void test_scenarios_legit_keepalive(void)
{
	char pol[4096], clients[1024], cg_a[256], tok[2048], out[512], jti[64], pids[32];
	struct sc s;
	json_t *done = NULL, *line = NULL;
	pid_t pid;
	int st, ok_calls;

	if (!sc_init(&s, false))
		goto cleanup;
	test__set_timeout(420);
	if (!ASSERT_OK(env__cgroup(&s.e, "app/a", cg_a, sizeof(cg_a)), "cgroup"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\",\"iss\":\"" ISS_GLOB "\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\",\"exe\":\"%s\",\"uid\":0}],"
		 "\"max_instances\":1,\"tools\":[\"echo\"],\"servers\":[\"tickets\"]}",
		 cg_a, env__node_exe());
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok, sizeof(tok), "ci-bot", jti_of("legit", jti, sizeof(jti))))
		goto cleanup;
	tmp_path(&s, "legit.out", out, sizeof(out));
	pid = spawn_node(&s, NULL, cg_a, NULL, out, "client.mjs",
			 ARGS("--url", s.url, "--token", tok, "--name", "legit", "--version", "1.0.0",
			      "--tool", "echo", "--args", "{\"text\":\"legit\"}",
			      "--duration-s", "120", "--interval-ms", "2000",
			      "--keepalive-ms", "60000", "--timeout-ms", "15000"));
	if (!ASSERT_GE(pid, 1, "client"))
		goto cleanup;
	st = env__wait(&s.e, pid, 200000);
	ASSERT_EQ(st, 0, "every step of the client ok");
	done = file_line(out, "step", "done");
	if (!ASSERT_OK_PTR(done, "client done line"))
		goto cleanup;
	ok_calls = (int)env__int(done, "ok_calls");
	test__log("legit client: %d calls ok, %lld failed\n", ok_calls, env__int(done, "failed_calls"));
	ASSERT_GE(ok_calls, 40, "calls over two minutes");
	ASSERT_EQ(env__int(done, "failed_calls"), 0, "no failed call");
	ASSERT_EQ(tool_runs(s.rec, "legit"), ok_calls, "tool handler ran once per call");
	line = file_line(out, "step", "transport_error");
	ASSERT_NULL(line, "no transport error");
	env__sleep_ms(500);
	ASSERT_EQ(findings(&s), 0, "no alert at all");
	/* Kernel losses come from the whole (shared) host's process churn:
	 * worth a look, not this scenario's finding. */
	if (env__count_events(&s.e, "kind=lost", NULL))
		test__log("note: the agent reported lost kernel records during the run\n");
	snprintf(pids, sizeof(pids), "workload.pid=%d", pid);
	ASSERT_EQ(env__count_events(&s.e, "kind=request", pids, "request.method=tools/call",
				    "verdict=allow", "client=ci-bot", NULL),
		  ok_calls, "one allowed request event per call");
	ASSERT_EQ(env__count_events(&s.e, "kind=request", pids, "claim.token_signature=valid", NULL),
		  requests_of(&s, pid), "every request's token signature checked");
	ASSERT_EQ(env__count_events(&s.e, "kind=request", NULL), requests_of(&s, pid),
		  "every request from the client");
cleanup:
	json_decref(done);
	json_decref(line);
	env__cleanup(&s.e);
}

/* ---- 2. the same token from a workload the policy does not bind --------- */

static void run_mismatch(bool monitor)
{
	char pol[4096], clients[1024], cg_a[256], cg_x[256], tok[2048], jti[64];
	struct sc s;
	json_t *ev = NULL;
	pid_t pa = 0, px = 0;
	int st;

	if (!sc_init(&s, monitor))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&s.e, "app/a", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&s.e, "other/x", cg_x, sizeof(cg_x)), "cgroup x"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\",\"exe\":\"%s\"}]}", cg_a, env__node_exe());
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok, sizeof(tok), "ci-bot", jti_of("ci", jti, sizeof(jti))))
		goto cleanup;

	st = sdk_client(&s, NULL, cg_a, NULL, s.url, tok, NULL, "mm-bound", "echo", &pa);
	check_allowed(&s, "bound workload", st, pa, s.rec, "mm-bound", "ci-bot");

	st = sdk_client(&s, NULL, cg_x, NULL, s.url, tok, NULL, "mm-other", "echo", &px);
	ev = alert_of(&s, px, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "mismatch alert"))
		goto cleanup;
	check_alert(&s, ev, "mismatch", "ci-bot", px, cg_x, NULL, "tickets", s.port);
	check_token(ev, "ci-bot", jti);
	ASSERT_STRSTR(env__str(ev, "reason"), "ci-bot", "reason names the client");
	ASSERT_STRSTR(env__str(ev, "reason"), cg_x, "reason names the sender's cgroup");
	ASSERT_STREQ(env__str(ev, "request.method"), monitor ? "tools/call" : "initialize",
		     "blocked at the first request");
	if (!monitor)
		ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "mm-other", "clientInfo");
	check_outcome(&s, "other workload", st, px, s.rec, "mm-other", "mismatch");
	ASSERT_EQ(env__count_events(&s.e, "kind=alert", "verdict=mismatch", NULL), alerts_of(&s, px),
		  "only mismatch alerts, only from the other workload");
cleanup:
	json_decref(ev);
	env__cleanup(&s.e);
}

void test_scenarios_mismatch(void)
{
	if (test__start_subtest("enforce"))
		run_mismatch(false);
	if (test__start_subtest("monitor"))
		run_mismatch(true);
}

/* ---- 3. an approved clientInfo from the wrong executable ---------------- */

static void run_client_info_exe(bool monitor)
{
	char pol[4096], clients[1024], cg_a[256], copy[512], out[512];
	struct sc s;
	json_t *ev = NULL;
	pid_t pa = 0, pc = 0, pi = 0;
	int st;

	if (!sc_init(&s, monitor))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&s.e, "desk/a", cg_a, sizeof(cg_a)), "cgroup"))
		goto cleanup;
	/* The same node, copied to another path: only the exe differs. */
	snprintf(copy, sizeof(copy), "%s/bin/node", s.e.tmp);
	if (!ASSERT_EQ(env__sh("mkdir -p '%s/bin' && cp '%s' '%s' && chmod 755 '%s'", s.e.tmp,
			       env__node_exe(), copy, copy), 0, "copy node"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"desk\",\"claims\":{\"client_info_name\":\"desk-app\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/desk/*\",\"exe\":\"%s\"}]}", s.e.cg_root, env__node_exe());
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)))
		goto cleanup;

	st = sdk_client(&s, NULL, cg_a, NULL, s.url, NULL, "desk-app", "ci-real", "echo", &pa);
	check_allowed(&s, "approved exe", st, pa, s.rec, "ci-real", "desk");
	ev = env__find_event(&s.e, 5000, "kind=request", "request.method=initialize", NULL);
	if (ASSERT_OK_PTR(ev, "initialize allowed")) {
		ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "desk-app", "clientInfo name");
		ASSERT_STREQ(env__str(ev, "claim.client_info.version"), "1.0.0", "clientInfo version");
	}
	json_decref(ev);
	ev = NULL;

	/* SDK 1.x client through the copied interpreter. */
	st = sdk_client(&s, copy, cg_a, NULL, s.url, NULL, "desk-app", "ci-copy", "echo", &pc);
	ev = alert_of(&s, pc, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "mismatch alert (client.mjs)"))
		goto cleanup;
	check_alert(&s, ev, "mismatch", "desk", pc, cg_a, copy, "tickets", s.port);
	ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "desk-app", "claimed clientInfo");
	if (monitor)
		ASSERT_TRUE(json_is_true(env__get(ev, "claim.client_info.from_session")),
			    "clientInfo from the session's initialize");
	ASSERT_STRSTR(env__str(ev, "reason"), copy, "reason names the executable");
	ASSERT_STREQ(env__str(ev, "claim.client_id"), NULL, "no token");
	check_outcome(&s, "copied exe", st, pc, s.rec, "ci-copy", "mismatch");
	json_decref(ev);
	ev = NULL;

	/* The v2 SDK client through the copied interpreter. */
	tmp_path(&s, "insp-copy.out", out, sizeof(out));
	st = run_node(&s, copy, cg_a, NULL, out, "inspector.mjs",
		      ARGS("--url", s.url, "--name", "desk-app", "--tool", "echo",
			   "--args", "{\"text\":\"ci-insp-copy\"}"), &pi);
	ev = alert_of(&s, pi, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "mismatch alert (inspector.mjs)"))
		goto cleanup;
	check_alert(&s, ev, "mismatch", "desk", pi, cg_a, copy, "tickets", s.port);
	check_outcome(&s, "copied exe, v2 client", st, pi, s.rec, "ci-insp-copy", "mismatch");
cleanup:
	json_decref(ev);
	env__cleanup(&s.e);
}

void test_scenarios_client_info_exe(void)
{
	if (test__start_subtest("enforce"))
		run_client_info_exe(false);
	if (test__start_subtest("monitor"))
		run_client_info_exe(true);
}

/* ---- 4. a cloned client; replicas within max_instances ------------------ */

static void run_clone(bool monitor)
{
	char pol[4096], clients[2048], cg[5][256], tok[5][2048], jti[5][64], out_a[512];
	static const char *const names[5] = { "a", "b", "c", "d", "e" };
	struct sc s;
	json_t *ev = NULL, *done = NULL;
	pid_t pa = 0, pb = 0, pc = 0, pd = 0, pe = 0;
	int st, i;

	if (!sc_init(&s, monitor))
		goto cleanup;
	for (i = 0; i < 5; i++) {
		char rel[32];

		snprintf(rel, sizeof(rel), "fleet/%s", names[i]);
		if (!ASSERT_OK(env__cgroup(&s.e, rel, cg[i], sizeof(cg[i])), "cgroup"))
			goto cleanup;
	}
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"worker\",\"claims\":{\"client_id\":\"worker\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/fleet/*\"}],\"max_instances\":1},"
		 "{\"name\":\"pool\",\"claims\":{\"client_id\":\"pool\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/fleet/*\"}],\"max_instances\":2}",
		 s.e.cg_root, s.e.cg_root);
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)))
		goto cleanup;
	/* Each instance has its own token: a clone, not a replayed token. */
	for (i = 0; i < 5; i++) {
		char m[16];

		snprintf(m, sizeof(m), "clone%d", i);
		if (!mint(&s, tok[i], sizeof(tok[i]), i < 2 ? "worker" : "pool",
			  jti_of(m, jti[i], sizeof(jti[i]))))
			goto cleanup;
	}

	/* The first instance stays live, calling every second. */
	tmp_path(&s, "worker-a.out", out_a, sizeof(out_a));
	pa = spawn_node(&s, NULL, cg[0], NULL, out_a, "client.mjs",
			ARGS("--url", s.url, "--token", tok[0], "--name", "cl-first",
			     "--tool", "echo", "--args", "{\"text\":\"cl-first\"}",
			     "--duration-s", "15", "--interval-ms", "1000",
			     "--keepalive-ms", "60000", "--timeout-ms", "10000"));
	if (!ASSERT_GE(pa, 1, "first instance") ||
	    !ASSERT_TRUE(env__wait_file(out_a, "\"step\":\"call\"", 30000), "first instance live"))
		goto cleanup;
	st = sdk_client(&s, NULL, cg[1], NULL, s.url, tok[1], NULL, "cl-clone", "echo", &pb);
	ev = alert_of(&s, pb, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "clone alert"))
		goto cleanup;
	check_alert(&s, ev, "clone", "worker", pb, cg[1], NULL, "tickets", s.port);
	check_token(ev, "worker", jti[1]);
	ASSERT_EQ(env__int(ev, "related.max_instances"), 1, "related.max_instances");
	ASSERT_EQ((long long)json_array_size(env__get(ev, "related.live_instances")), 1,
		  "one live instance");
	ASSERT_STREQ(env__str(ev, "related.live_instances.0.cgroup"), cg[0], "live instance cgroup");
	ASSERT_EQ(env__int(ev, "related.live_instances.0.pid"), pa, "live instance pid");
	check_outcome(&s, "clone", st, pb, s.rec, "cl-clone", "clone");
	json_decref(ev);
	ev = NULL;
	/* The first instance kept working through it all. */
	ASSERT_EQ(env__wait(&s.e, pa, 60000), 0, "first instance: every call ok");
	done = file_line(out_a, "step", "done");
	if (ASSERT_OK_PTR(done, "first instance done")) {
		ASSERT_EQ(env__int(done, "failed_calls"), 0, "first instance: no failed call");
		ASSERT_EQ(tool_runs(s.rec, "cl-first"), env__int(done, "ok_calls"),
			  "first instance: one tool run per call");
	}
	ASSERT_EQ(alerts_of(&s, pa), 0, "first instance: no alert");

	/* max_instances 2: a second replica is fine, a third is a clone. */
	st = sdk_client(&s, NULL, cg[2], NULL, s.url, tok[2], NULL, "pool-1", "echo", &pc);
	check_allowed(&s, "replica 1", st, pc, s.rec, "pool-1", "pool");
	st = sdk_client(&s, NULL, cg[3], NULL, s.url, tok[3], NULL, "pool-2", "echo", &pd);
	check_allowed(&s, "replica 2 (max_instances 2)", st, pd, s.rec, "pool-2", "pool");
	st = sdk_client(&s, NULL, cg[4], NULL, s.url, tok[4], NULL, "pool-3", "echo", &pe);
	ev = alert_of(&s, pe, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "third replica: clone"))
		goto cleanup;
	check_alert(&s, ev, "clone", "pool", pe, cg[4], NULL, "tickets", s.port);
	ASSERT_EQ(env__int(ev, "related.max_instances"), 2, "related.max_instances 2");
	ASSERT_EQ((long long)json_array_size(env__get(ev, "related.live_instances")), 2,
		  "two live instances");
	check_outcome(&s, "third replica", st, pe, s.rec, "pool-3", "clone");
cleanup:
	json_decref(ev);
	json_decref(done);
	env__cleanup(&s.e);
}

void test_scenarios_clone(void)
{
	if (test__start_subtest("enforce"))
		run_clone(false);
	if (test__start_subtest("monitor"))
		run_clone(true);
}

/* ---- 5. a token replayed from another instance, in another netns -------- */

static void run_token_replay(bool monitor)
{
	char pol[4096], clients[1024], cg_a[256], cg_b[256], tok[2048], jti[64];
	char ns_c[64], ns_s[64], url_veth[128];
	struct sc s;
	json_t *ev = NULL, *first = NULL;
	pid_t pa = 0, pb = 0;
	int st;

	if (!sc_init(&s, monitor))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&s.e, "pods/a", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&s.e, "pods/b", cg_b, sizeof(cg_b)), "cgroup b") ||
	    !ASSERT_OK(env__netns(&s.e, "c", ns_c, sizeof(ns_c)), "netns c") ||
	    !ASSERT_OK(env__netns(&s.e, "s", ns_s, sizeof(ns_s)), "netns s") ||
	    !ASSERT_OK(env__veth(&s.e, ns_c, "10.78.0.1", ns_s, "10.78.0.2"), "veth"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"svc\",\"claims\":{\"client_id\":\"svc\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/pods/*\",\"exe\":\"%s\"}]}",
		 s.e.cg_root, env__node_exe());
	if (!start_server(&s, ns_s, "0.0.0.0", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok, sizeof(tok), "svc", jti_of("svc", jti, sizeof(jti))))
		goto cleanup;
	snprintf(url_veth, sizeof(url_veth), "http://10.78.0.2:%d/mcp", s.port);

	/* The owner, in its own netns, over the veth. */
	st = sdk_client(&s, NULL, cg_a, ns_c, url_veth, tok, NULL, "tr-owner", "echo", &pa);
	check_allowed(&s, "token owner", st, pa, s.rec, "tr-owner", "svc");
	/* The same token from another instance, in the server's netns. */
	snprintf(s.url, sizeof(s.url), "http://127.0.0.1:%d/mcp", s.port);
	st = sdk_client(&s, NULL, cg_b, ns_s, s.url, tok, NULL, "tr-replay", "echo", &pb);
	ev = alert_of(&s, pb, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "token_replay alert"))
		goto cleanup;
	check_alert(&s, ev, "token_replay", "svc", pb, cg_b, NULL, "tickets", s.port);
	check_token(ev, "svc", jti);
	ASSERT_STREQ(env__str(ev, "related.first_use.cgroup"), cg_a, "first use: cgroup");
	ASSERT_EQ(env__int(ev, "related.first_use.pid"), pa, "first use: pid");
	ASSERT_STRSTR(env__str(ev, "reason"), jti, "reason names the token");
	first = env__find_event(&s.e, 1000, "kind=request", "client=svc", NULL);
	if (ASSERT_OK_PTR(first, "owner's request event")) {
		ASSERT_NEQ(env__int(first, "workload.netns"), env__int(ev, "workload.netns"),
			   "owner and replayer in different netns");
		ASSERT_STRSTR(env__str(first, "connection.src"), "10.78.0.1", "owner over the veth");
	}
	check_outcome(&s, "replayed token", st, pb, s.rec, "tr-replay", "token_replay");
cleanup:
	json_decref(ev);
	json_decref(first);
	env__cleanup(&s.e);
}

void test_scenarios_token_replay(void)
{
	if (test__start_subtest("enforce"))
		run_token_replay(false);
	if (test__start_subtest("monitor"))
		run_token_replay(true);
}

/* ---- 6. a stolen session id, used with the thief's own valid token ------- */

static void run_session_hijack(bool monitor)
{
	char pol[4096], clients[1024], cg_a[256], cg_b[256], tok_a[2048], tok_b[2048];
	char jti_a[64], jti_b[64], out_a[512], out_b[512], sfile[512], sid[128] = "";
	struct sc s;
	json_t *ev = NULL;
	char *text = NULL;
	pid_t pa = 0, pb = 0;
	int st;

	if (!sc_init(&s, monitor))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&s.e, "team/a", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&s.e, "team/b", cg_b, sizeof(cg_b)), "cgroup b"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"agent\",\"claims\":{\"client_id\":\"agent\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/team/*\"}]}", s.e.cg_root);
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok_a, sizeof(tok_a), "agent", jti_of("owner", jti_a, sizeof(jti_a))) ||
	    !mint(&s, tok_b, sizeof(tok_b), "agent", jti_of("thief", jti_b, sizeof(jti_b))))
		goto cleanup;
	tmp_path(&s, "owner.out", out_a, sizeof(out_a));
	tmp_path(&s, "session.id", sfile, sizeof(sfile));
	pa = spawn_node(&s, NULL, cg_a, NULL, out_a, "client.mjs",
			ARGS("--url", s.url, "--token", tok_a, "--name", "sh-owner",
			     "--tool", "echo", "--args", "{\"text\":\"sh-owner\"}", "--session-file", sfile,
			     "--hold-s", "60"));
	if (!ASSERT_GE(pa, 1, "owner") ||
	    !ASSERT_TRUE(env__wait_file(out_a, "\"step\":\"call\"", 30000), "owner called"))
		goto cleanup;
	text = env__slurp(sfile, NULL);
	if (!ASSERT_OK_PTR(text, "session file"))
		goto cleanup;
	snprintf(sid, sizeof(sid), "%.*s", (int)strcspn(text, "\r\n "), text);
	ASSERT_EQ(tool_runs(s.rec, "sh-owner"), 1, "owner's tool ran");

	tmp_path(&s, "thief.out", out_b, sizeof(out_b));
	st = run_node(&s, NULL, cg_b, NULL, out_b, "client.mjs",
		      ARGS("--url", s.url, "--token", tok_b, "--session-id", sid,
			   "--tool", "echo", "--args", "{\"text\":\"sh-thief\"}", "--timeout-ms", "10000"), &pb);
	ev = alert_of(&s, pb, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "session_hijack alert"))
		goto cleanup;
	check_alert(&s, ev, "session_hijack", "agent", pb, cg_b, NULL, "tickets", s.port);
	check_token(ev, "agent", jti_b);
	ASSERT_STREQ(env__str(ev, "claim.session_id"), sid, "claim.session_id");
	ASSERT_STREQ(env__str(ev, "related.session_owner.cgroup"), cg_a, "session owner cgroup");
	ASSERT_EQ(env__int(ev, "related.session_owner.pid"), pa, "session owner pid");
	ASSERT_TRUE(json_is_true(env__get(ev, "related.issued_by_server")), "issued by the server");
	ASSERT_STRSTR(env__str(ev, "reason"), sid, "reason names the session");
	check_outcome(&s, "stolen session", st, pb, s.rec, "sh-thief", "session_hijack");
	ASSERT_EQ(alerts_of(&s, pa), 0, "owner: no alert");
cleanup:
	free(text);
	json_decref(ev);
	env__cleanup(&s.e);
}

void test_scenarios_session_hijack(void)
{
	if (test__start_subtest("enforce"))
		run_session_hijack(false);
	if (test__start_subtest("monitor"))
		run_session_hijack(true);
}

/* ---- 7. one connection switching identity ------------------------------ */

static void run_identity_switch(bool monitor)
{
	char pol[4096], clients[1024], cg_a[256], tok_a[2048], tok_b[2048], jti_a[64], jti_b[64];
	char spec[8192], out[512];
	struct sc s;
	json_t *ev = NULL, *done = NULL;
	pid_t pid = 0;
	int st;

	if (!sc_init(&s, monitor))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&s.e, "raw/a", cg_a, sizeof(cg_a)), "cgroup"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"alpha\",\"claims\":{\"client_id\":\"alpha\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\"}]},"
		 "{\"name\":\"beta\",\"claims\":{\"client_id\":\"beta\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\"}]}", cg_a, cg_a);
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok_a, sizeof(tok_a), "alpha", jti_of("alpha", jti_a, sizeof(jti_a))) ||
	    !mint(&s, tok_b, sizeof(tok_b), "beta", jti_of("beta", jti_b, sizeof(jti_b))))
		goto cleanup;
	snprintf(spec, sizeof(spec),
		 "{\"port\":%d,\"auto_session\":true,\"timeout_ms\":10000,\"requests\":["
		 "{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
		 "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
		 "\"clientInfo\":{\"name\":\"switcher\",\"version\":\"1.0\"}}}},"
		 "{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\","
		 "\"Mcp-Protocol-Version\":\"2025-11-25\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}},"
		 "{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\","
		 "\"Mcp-Protocol-Version\":\"2025-11-25\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
		 "\"name\":\"echo\",\"arguments\":{\"text\":\"is-switched\"}}}}]}",
		 s.port, tok_a, tok_a, tok_b);
	tmp_path(&s, "switch.out", out, sizeof(out));
	st = run_node(&s, NULL, cg_a, NULL, out, "raw.mjs", ARGS(spec), &pid);
	ev = alert_of(&s, pid, NULL);
	if (!ASSERT_OK_PTR(ev, "identity_switch alert"))
		goto cleanup;
	check_alert(&s, ev, "identity_switch", "beta", pid, cg_a, NULL, "tickets", s.port);
	check_token(ev, "beta", jti_b);
	ASSERT_STREQ(env__str(ev, "request.method"), "tools/call", "the switching request");
	ASSERT_STREQ(env__str(ev, "request.tool"), "echo", "request.tool");
	ASSERT_STRSTR(env__str(ev, "reason"), "alpha", "reason names the first identity");
	ASSERT_STRSTR(env__str(ev, "reason"), "beta", "reason names the new identity");
	ASSERT_EQ(env__count_events(&s.e, "kind=request", "client=alpha", "verdict=allow", NULL), 2,
		  "initialize and initialized allowed as alpha");
	check_outcome(&s, "identity switch", st, pid, s.rec, "is-switched", "identity_switch");
	done = file_line(out, NULL, NULL);
	if (ASSERT_OK_PTR(done, "raw done"))
		ASSERT_EQ(env__int(done, "responses"), monitor ? 3 : 2, "responses on the connection");
cleanup:
	json_decref(ev);
	json_decref(done);
	env__cleanup(&s.e);
}

void test_scenarios_identity_switch(void)
{
	if (test__start_subtest("enforce"))
		run_identity_switch(false);
	if (test__start_subtest("monitor"))
		run_identity_switch(true);
}

/* ---- 8. a tool the client may not call, a server it may not use --------- */

static void run_denied(bool monitor)
{
	char pol[4096], clients[1024], servers[128], cg_a[256], tok[2048], jti[64];
	char rec2[512], url2[128];
	struct sc s;
	json_t *ev = NULL;
	pid_t pa = 0, pt = 0, ps = 0;
	int st, port2 = 0;

	if (!sc_init(&s, monitor))
		goto cleanup;
	tmp_path(&s, "files.rec", rec2, sizeof(rec2));
	if (!ASSERT_OK(env__cgroup(&s.e, "readers/a", cg_a, sizeof(cg_a)), "cgroup") ||
	    !start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_server(&s, NULL, "127.0.0.1", &port2, rec2, false))
		goto cleanup;
	snprintf(url2, sizeof(url2), "http://127.0.0.1:%d/mcp", port2);
	snprintf(servers, sizeof(servers), ",{\"name\":\"files\",\"port\":%d}", port2);
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"reader\",\"claims\":{\"client_id\":\"reader\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\"}],"
		 "\"tools\":[\"echo\",\"search_*\"],\"servers\":[\"tickets\"]}", cg_a);
	if (!start_agent(&s, policy(&s, pol, sizeof(pol), servers, clients)) ||
	    !mint(&s, tok, sizeof(tok), "reader", jti_of("reader", jti, sizeof(jti))))
		goto cleanup;

	st = sdk_client(&s, NULL, cg_a, NULL, s.url, tok, NULL, "td-echo", "echo", &pa);
	check_allowed(&s, "allowed tool", st, pa, s.rec, "td-echo", "reader");

	/* tool_denied: delete_all is not in the client's tools. */
	st = sdk_client(&s, NULL, cg_a, NULL, s.url, tok, NULL, "td-delete", "delete_all", &pt);
	ev = alert_of(&s, pt, NULL);
	if (!ASSERT_OK_PTR(ev, "tool_denied alert"))
		goto cleanup;
	check_alert(&s, ev, "tool_denied", "reader", pt, cg_a, NULL, "tickets", s.port);
	check_token(ev, "reader", jti);
	ASSERT_STREQ(env__str(ev, "request.method"), "tools/call", "request.method");
	ASSERT_STREQ(env__str(ev, "request.tool"), "delete_all", "request.tool");
	ASSERT_STRSTR(env__str(ev, "reason"), "delete_all", "reason names the tool");
	if (s.monitor) {
		ASSERT_EQ(st, 0, "tool_denied: client ok in monitor mode");
		ASSERT_EQ(rec_count(s.rec, "tool", "name", "delete_all"), 1, "delete_all ran (monitor)");
	} else {
		ASSERT_NEQ(st, 0, "tool_denied: the call fails");
		ASSERT_EQ(rec_count(s.rec, "tool", "name", "delete_all"), 0, "delete_all never ran");
		ASSERT_EQ(rec_count(s.rec, "http", "body", "delete_all"), 0,
			  "the call never reached the server");
		ASSERT_GE(rec_count(s.rec, "http", "body", "td-delete"), 1,
			  "its allowed initialize did");
	}
	json_decref(ev);
	ev = NULL;

	/* server_denied: the same client, on the server it may not use. */
	st = sdk_client(&s, NULL, cg_a, NULL, url2, tok, NULL, "sd-files", "echo", &ps);
	ev = alert_of(&s, ps, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "server_denied alert"))
		goto cleanup;
	check_alert(&s, ev, "server_denied", "reader", ps, cg_a, NULL, "files", port2);
	check_token(ev, "reader", jti);
	ASSERT_STRSTR(env__str(ev, "reason"), "files", "reason names the server");
	check_outcome(&s, "server_denied", st, ps, rec2, "sd-files", "server_denied");
	ASSERT_EQ(tool_runs(s.rec, "sd-files"), 0, "nothing on the other server");
cleanup:
	json_decref(ev);
	env__cleanup(&s.e);
}

void test_scenarios_denied(void)
{
	if (test__start_subtest("enforce"))
		run_denied(false);
	if (test__start_subtest("monitor"))
		run_denied(true);
}

/* ---- 9. an unknown client; a client outside the agent's subtree ------- */

static void run_unknown(bool monitor)
{
	char pol[4096], clients[1024], cg_a[256], tok_u[2048], tok_k[2048], jti_u[64], jti_k[64];
	struct sc s;
	json_t *ev = NULL;
	pid_t pu = 0, pn = 0;
	int st;

	if (!sc_init(&s, monitor))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&s.e, "apps/a", cg_a, sizeof(cg_a)), "cgroup"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"known\",\"claims\":{\"client_id\":\"known\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\"}]}", cg_a);
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok_u, sizeof(tok_u), "stranger", jti_of("stranger", jti_u, sizeof(jti_u))) ||
	    !mint(&s, tok_k, sizeof(tok_k), "known", jti_of("known", jti_k, sizeof(jti_k))))
		goto cleanup;

	st = sdk_client(&s, NULL, cg_a, NULL, s.url, tok_u, NULL, "uk-stranger", "echo", &pu);
	ev = alert_of(&s, pu, monitor ? "tools/call" : NULL);
	if (!ASSERT_OK_PTR(ev, "unknown_client alert"))
		goto cleanup;
	check_alert(&s, ev, "unknown_client", NULL, pu, cg_a, NULL, "tickets", s.port);
	check_token(ev, "stranger", jti_u);
	ASSERT_STRSTR(env__str(ev, "reason"), "stranger", "reason names the claim");
	check_outcome(&s, "unknown client", st, pu, s.rec, "uk-stranger", "unknown_client");
	json_decref(ev);
	ev = NULL;

	/* A known token, but the sender is outside --cgroup-root. */
	st = sdk_client(&s, NULL, NULL, NULL, s.url, tok_k, NULL, "un-outside", "echo", &pn);
	ev = env__find_event(&s.e, 15000, "kind=alert", "verdict=unattributed", NULL);
	if (!ASSERT_OK_PTR(ev, "unattributed alert"))
		goto cleanup;
	ASSERT_STREQ(env__str(ev, "action"), s.action, "action");
	ASSERT_STREQ(env__str(ev, "server"), "tickets", "server");
	ASSERT_STREQ(env__str(ev, "client"), NULL, "no client");
	ASSERT_TRUE(json_is_false(env__get(ev, "workload.attributed")), "not attributed");
	ASSERT_OK_PTR(env__str(ev, "workload.unattributed_reason"), "unattributed_reason");
	ASSERT_STRSTR(env__str(ev, "reason"), "could not be tied", "reason");
	ASSERT_STRSTR(env__str(ev, "connection.dst"), "127.0.0.1", "connection.dst");
	if (monitor) {
		ASSERT_EQ(st, 0, "unattributed: client ok in monitor mode");
		ASSERT_EQ(tool_runs(s.rec, "un-outside"), 1, "unattributed: tool ran (monitor)");
		ASSERT_EQ(env__count_events(&s.e, "kind=alert", "action=blocked", NULL), 0,
			  "nothing blocked");
	} else {
		ASSERT_NEQ(st, 0, "unattributed: client fails");
		ASSERT_EQ(http_seen(s.rec, "un-outside"), 0, "unattributed: never reached the server");
		ASSERT_EQ(env__count_events(&s.e, "kind=alert", "verdict=unattributed", NULL), 1,
			  "one unattributed request blocked");
	}
	ASSERT_EQ(env__count_events(&s.e, "kind=request", NULL), 0, "nothing was allowed");
cleanup:
	json_decref(ev);
	env__cleanup(&s.e);
}

void test_scenarios_unknown(void)
{
	if (test__start_subtest("enforce"))
		run_unknown(false);
	if (test__start_subtest("monitor"))
		run_unknown(true);
}

/* ---- 11. 2026-07-28-era requests crafted by hand ------------------------ */

static void modern_spec(char *buf, size_t len, int port, const char *tok, const char *mcp_method,
			const char *marker)
{
	snprintf(buf, len,
		 "{\"port\":%d,\"timeout_ms\":10000,\"requests\":[{\"method\":\"POST\",\"path\":\"/mcp\","
		 "\"headers\":{\"Authorization\":\"Bearer %s\",\"Mcp-Protocol-Version\":\"2026-07-28\","
		 "\"Mcp-Method\":\"%s\",\"Mcp-Name\":\"echo\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{"
		 "\"name\":\"echo\",\"arguments\":{\"text\":\"%s\"},\"_meta\":{"
		 "\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
		 "\"io.modelcontextprotocol/clientInfo\":{\"name\":\"modern-bot\",\"version\":\"3.1\"},"
		 "\"io.modelcontextprotocol/clientCapabilities\":{}}}}}]}",
		 port, tok, mcp_method, marker);
}

void test_scenarios_modern_era(void)
{
	char pol[4096], clients[1024], cg_a[256], tok[2048], jti[64], spec[8192], out[512];
	char p[32];
	struct sc s;
	json_t *ev = NULL, *resp = NULL;
	pid_t pid = 0;
	int st;

	if (!sc_init(&s, false))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&s.e, "modern/a", cg_a, sizeof(cg_a)), "cgroup"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"modern-bot\",\"claims\":{\"client_id\":\"modern-bot\","
		 "\"client_info_name\":\"modern-bot\"},\"workloads\":[{\"cgroup\":\"%s\"}],"
		 "\"tools\":[\"echo\"]}", cg_a);
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, true) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok, sizeof(tok), "modern-bot", jti_of("modern", jti, sizeof(jti))))
		goto cleanup;

	if (test__start_subtest("allowed")) {
		modern_spec(spec, sizeof(spec), s.port, tok, "tools/call", "md-ok");
		tmp_path(&s, "modern-ok.out", out, sizeof(out));
		st = run_node(&s, NULL, cg_a, NULL, out, "raw.mjs", ARGS(spec), &pid);
		ASSERT_EQ(st, 0, "response arrived");
		resp = file_line(out, NULL, NULL);
		if (ASSERT_OK_PTR(resp, "raw output"))
			ASSERT_EQ(env__int(resp, "responses"), 1, "one response");
		json_decref(resp);
		resp = file_line(out, "headers.content-type", "application/json");
		if (ASSERT_OK_PTR(resp, "a JSON response from the v2 server"))
			ASSERT_EQ(env__int(resp, "status"), 200, "status 200");
		json_decref(resp);
		resp = NULL;
		ASSERT_EQ(tool_runs(s.rec, "md-ok"), 1, "tool ran");
		ASSERT_EQ(rec_count(s.rec, "route", "era", "modern"), 1, "served as 2026-07-28");
		ASSERT_EQ(rec_count(s.rec, "tool", "era", "modern"), 1, "tool ran in the modern era");
		snprintf(p, sizeof(p), "workload.pid=%d", pid);
		ev = env__find_event(&s.e, 10000, "kind=request", p, NULL);
		if (ASSERT_OK_PTR(ev, "request event")) {
			ASSERT_STREQ(env__str(ev, "verdict"), "allow", "allowed");
			ASSERT_STREQ(env__str(ev, "client"), "modern-bot", "client");
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "modern-bot",
				     "clientInfo from _meta");
			ASSERT_STREQ(env__str(ev, "claim.client_info.version"), "3.1", "version");
			ASSERT_STREQ(env__str(ev, "claim.protocol_version"), "2026-07-28",
				     "protocol version");
			ASSERT_STREQ(env__str(ev, "claim.session_id"), NULL, "no session");
			ASSERT_STREQ(env__str(ev, "request.era"), "2026-07-28+", "era");
			ASSERT_STREQ(env__str(ev, "request.method"), "tools/call", "method");
			ASSERT_STREQ(env__str(ev, "request.tool"), "echo", "tool");
			ASSERT_EQ(env__int(ev, "request.id"), 7, "id");
			ASSERT_EQ(env__int(ev, "workload.pid"), pid, "pid");
			ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg_a, "cgroup");
			check_token(ev, "modern-bot", jti);
		}
		ASSERT_EQ(findings(&s), 0, "no alert");
		json_decref(ev);
		ev = NULL;
	}
	if (test__start_subtest("header_disagrees")) {
		/* Mcp-Method says tools/list, the body says tools/call. */
		modern_spec(spec, sizeof(spec), s.port, tok, "tools/list", "md-bad");
		tmp_path(&s, "modern-bad.out", out, sizeof(out));
		st = run_node(&s, NULL, cg_a, NULL, out, "raw.mjs", ARGS(spec), &pid);
		ASSERT_NEQ(st, 0, "no response: the connection was reset");
		ev = alert_of(&s, pid, NULL);
		if (ASSERT_OK_PTR(ev, "malformed alert")) {
			check_alert(&s, ev, "malformed", NULL, pid, cg_a, NULL, "tickets", s.port);
			ASSERT_STRSTR(env__str(ev, "reason"), "Mcp-Method", "reason names the header");
		}
		ASSERT_EQ(http_seen(s.rec, "md-bad"), 0, "never reached the server");
		ASSERT_EQ(tool_runs(s.rec, "md-bad"), 0, "tool never ran");
		ASSERT_EQ(findings(&s), 1, "one alert");
	}
cleanup:
	json_decref(ev);
	json_decref(resp);
	env__cleanup(&s.e);
}

/* ---- 12. the v2 SDK client, legitimate and spoofed ----------------------- */

void test_scenarios_v2_client(void)
{
	char pol[4096], clients[2048], cg_a[256], cg_z[256], tok_i[2048], tok_c[2048];
	char jti_i[64], jti_c[64], out[512];
	struct sc s;
	json_t *ev = NULL, *line = NULL;
	pid_t pid = 0;
	int st;

	if (!sc_init(&s, false))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&s.e, "inspect/a", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&s.e, "ci/z", cg_z, sizeof(cg_z)), "cgroup z"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"inspector\",\"claims\":{\"client_id\":\"inspector\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\",\"exe\":\"%s\"}]},"
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\"}]},"
		 "{\"name\":\"desk\",\"claims\":{\"client_info_name\":\"desk-app\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\"}]}", cg_a, env__node_exe(), cg_z, cg_z);
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok_i, sizeof(tok_i), "inspector", jti_of("insp", jti_i, sizeof(jti_i))) ||
	    !mint(&s, tok_c, sizeof(tok_c), "ci-bot", jti_of("cibot", jti_c, sizeof(jti_c))))
		goto cleanup;

	if (test__start_subtest("legitimate")) {
		tmp_path(&s, "v2-ok.out", out, sizeof(out));
		st = run_node(&s, NULL, cg_a, NULL, out, "inspector.mjs",
			      ARGS("--url", s.url, "--token", tok_i, "--tool", "echo",
				   "--args", "{\"text\":\"v2-ok\"}"), &pid);
		check_allowed(&s, "v2 client", st, pid, s.rec, "v2-ok", "inspector");
		line = file_line(out, NULL, NULL);
		if (ASSERT_OK_PTR(line, "inspector output")) {
			ASSERT_STRSTR(env__str(line, "impl"), "@modelcontextprotocol/client@2",
				      "the v2 SDK");
			ASSERT_TRUE(json_is_true(env__get(line, "ok")), "ok");
		}
		ev = env__find_event(&s.e, 5000, "kind=request", "request.method=initialize",
				     "client=inspector", NULL);
		if (ASSERT_OK_PTR(ev, "initialize event")) {
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"),
				     "mcpwarden-e2e-inspector", "v2 clientInfo");
			check_token(ev, "inspector", jti_i);
		}
		json_decref(ev);
		ev = NULL;
	}
	if (test__start_subtest("spoofed_token")) {
		/* Its token claims ci-bot, which is bound to another cgroup. */
		tmp_path(&s, "v2-spoof.out", out, sizeof(out));
		st = run_node(&s, NULL, cg_a, NULL, out, "inspector.mjs",
			      ARGS("--url", s.url, "--token", tok_c, "--tool", "echo",
				   "--args", "{\"text\":\"v2-spoof\"}"), &pid);
		ev = alert_of(&s, pid, NULL);
		if (ASSERT_OK_PTR(ev, "mismatch alert")) {
			check_alert(&s, ev, "mismatch", "ci-bot", pid, cg_a, NULL, "tickets", s.port);
			check_token(ev, "ci-bot", jti_c);
			ASSERT_STREQ(env__str(ev, "request.method"), "initialize", "request.method");
		}
		check_outcome(&s, "v2 spoofed token", st, pid, s.rec, "v2-spoof", "mismatch");
		json_decref(ev);
		ev = NULL;
	}
	if (test__start_subtest("spoofed_client_info")) {
		/* No token; its clientInfo names desk-app, bound to another cgroup. */
		tmp_path(&s, "v2-spoof-ci.out", out, sizeof(out));
		st = run_node(&s, NULL, cg_a, NULL, out, "inspector.mjs",
			      ARGS("--url", s.url, "--name", "desk-app", "--tool", "echo",
				   "--args", "{\"text\":\"v2-spoof-ci\"}"), &pid);
		ev = alert_of(&s, pid, NULL);
		if (ASSERT_OK_PTR(ev, "mismatch alert")) {
			check_alert(&s, ev, "mismatch", "desk", pid, cg_a, NULL, "tickets", s.port);
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "desk-app", "clientInfo");
			ASSERT_STREQ(env__str(ev, "claim.client_id"), NULL, "no token");
		}
		check_outcome(&s, "v2 spoofed clientInfo", st, pid, s.rec, "v2-spoof-ci", "mismatch");
	}
cleanup:
	json_decref(ev);
	json_decref(line);
	env__cleanup(&s.e);
}

/* ---- a large call from the SDK client ----------------------------------- */

/* The length of the echo text the server's tool got for marker; -1 if none. */
static long long tool_text_len(const char *rec, const char *marker)
{
	char *buf = env__slurp(rec, NULL), *line, *save = NULL;
	long long n = -1;

	for (line = buf ? strtok_r(buf, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
		json_t *o = json_loads(line, 0, NULL);
		const char *v = o ? env__str(o, "args.text") : NULL;

		if (o && strcmp(env__str(o, "kind") ? env__str(o, "kind") : "", "tool") == 0 && v &&
		    strstr(v, marker))
			n = (long long)strlen(v);
		json_decref(o);
	}
	free(buf);
	return n;
}

/*
 * The SDK client calls a tool with a 100 KB argument (the shape of a file
 * or a document handed to a tool). Its tools/call, on a judged session but
 * with headers the first request did not have, is judged on its head: no
 * tool limits or clientInfo identities in this policy, so no body can
 * change the verdict. The call succeeds and the tool gets every byte.
 */
void test_scenarios_large_call(void)
{
	char pol[4096], clients[1024], cg_a[256], tok[2048], out[512], jti[64], marker[64];
	char path[600], *args = NULL;
	const size_t pad = 100000;
	struct sc s;
	json_t *st = NULL;
	pid_t pid;
	int status;

	if (!sc_init(&s, false))
		goto cleanup;
	test__set_timeout(180);
	if (!ASSERT_OK(env__cgroup(&s.e, "app/a", cg_a, sizeof(cg_a)), "cgroup"))
		goto cleanup;
	snprintf(clients, sizeof(clients),
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\",\"iss\":\"" ISS_GLOB "\"},"
		 "\"workloads\":[{\"cgroup\":\"%s\"}]}", cg_a);
	if (!start_server(&s, NULL, "127.0.0.1", &s.port, s.rec, false) ||
	    !start_agent(&s, policy(&s, pol, sizeof(pol), NULL, clients)) ||
	    !mint(&s, tok, sizeof(tok), "ci-bot", jti_of("large", jti, sizeof(jti))))
		goto cleanup;
	snprintf(marker, sizeof(marker), "large-%d-", getpid());
	args = malloc(pad + 128);
	if (!ASSERT_OK_PTR(args, "args"))
		goto cleanup;
	snprintf(args, pad + 128, "{\"text\":\"%s", marker);
	memset(args + strlen(args), 'x', pad);
	strcpy(args + strlen(marker) + 9 + pad, "\"}");
	tmp_path(&s, "large.out", out, sizeof(out));
	status = run_node(&s, NULL, cg_a, NULL, out, "client.mjs",
			  ARGS("--url", s.url, "--token", tok, "--name", "large", "--version", "1.0.0",
			       "--tool", "echo", "--args", args, "--no-get-stream", "--timeout-ms",
			       "15000", "--max-result-chars", "64"), &pid);
	check_allowed(&s, "large call", status, pid, s.rec, marker, "ci-bot");
	ASSERT_EQ(tool_text_len(s.rec, marker), (long long)(strlen(marker) + pad),
		  "the tool got every byte");
	snprintf(path, sizeof(path), "%s/status.json", s.e.tmp);
	env__sh("%s status --state-dir %s > %s", env__bin(), s.e.agent.state_dir, path);
	st = json_load_file(path, 0, NULL);
	ASSERT_GE(json_integer_value(json_object_get(st, "judged_on_head")), 1,
		  "the call was judged on its head");
cleanup:
	json_decref(st);
	free(args);
	env__cleanup(&s.e);
}
