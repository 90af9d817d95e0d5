// SPDX-License-Identifier: GPL-2.0
/*
 * Every judgment end to end, in enforce and in monitor mode. Real SDK
 * clients (and hand-crafted requests) in real cgroups talk to a real SDK
 * server that records every HTTP request it reads and every tool it runs.
 *
 * Enforce: the finding's request never reaches the server (no `http` line
 * in the record, no `tool` line), the sender sees its connection end, and
 * the alert carries exactly who sent what (action "blocked"). Monitor: the
 * same request reaches the server and the alert says "alerted". Legitimate
 * requests in the same run are allowed and served.
 *
 * The policies say "mode":"enforce"; the monitor runs use `--mode monitor`,
 * which overrides it. Policy clients list their tools: that keeps every
 * request judged by the daemon (a client without tool limits lets the
 * kernel pass repeated header blocks on its own fast path, which writes no
 * request event), so each legitimate request is a request event here.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "env.h"
#include "harness.h"

#define WAIT_MS 20000
#define CLIENT_MS 60000
#define SECRET "--secret e2e-hmac-secret-of-at-least-32-bytes"

static const char *const monitor_args[] = { "--mode", "monitor", NULL };

/* ---- helpers ---------------------------------------------------------- */

struct ident {
	const char *client_id, *sub;
	char jti[64];
	char token[4096];
	char sha[65];
};

/* Mints an HS256 JWT for id (a fresh jti) with jwt.mjs. */
static int mint(struct ident *id, const char *jti_tag)
{
	char cmd[2048];
	FILE *f;
	size_t n;

	snprintf(id->jti, sizeof(id->jti), "jti-%s-%d-%d", jti_tag, getpid(), rand() % 1000000);
	snprintf(cmd, sizeof(cmd), "node '%s' --iss https://auth.e2e.test --sub '%s' "
		 "--client-id '%s' --jti '%s' " SECRET, env__node_script("jwt.mjs"), id->sub,
		 id->client_id, id->jti);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (!fgets(id->token, sizeof(id->token), f))
		id->token[0] = '\0';
	if (pclose(f) != 0)
		return -1;
	n = strlen(id->token);
	while (n && (id->token[n - 1] == '\n' || id->token[n - 1] == '\r'))
		id->token[--n] = '\0';
	env__sha256_hex(id->token, id->sha);
	return n ? 0 : -1;
}

static pid_t spawn_node(struct env *e, const char *cg, const char *out, const char *script,
			const char *const *args)
{
	char *argv[48];
	struct spawn_opts so = { .cgroup = cg, .stdout_path = out };
	int n = 0;

	argv[n++] = "node";
	argv[n++] = (char *)env__node_script(script);
	while (args && *args && n < 47)
		argv[n++] = (char *)*args++;
	argv[n] = NULL;
	return env__spawn(e, &so, argv);
}

static bool file_has(const char *path, const char *needle)
{
	char *s = env__slurp(path, NULL);
	bool found = s && strstr(s, needle);

	free(s);
	return found;
}

static void show_file(const char *what, const char *path)
{
	char *s = env__slurp(path, NULL);

	test__log("%s (%s):\n%s", what, path, s ? s : "(none)");
	free(s);
}

struct server {
	pid_t pid;
	int port;
	char url[128];
	char record[512];
};

/*
 * Starts the recording server on a free port; a port someone took
 * meanwhile (the server exits at once) means another try on another port.
 */
static bool start_server(struct env *e, const char *cg, const char *tag, struct server *s)
{
	char portstr[16], out[512];
	int attempt;

	snprintf(s->record, sizeof(s->record), "%s/%s.record.jsonl", e->tmp, tag);
	snprintf(out, sizeof(out), "%s/%s.server.out", e->tmp, tag);
	for (attempt = 0; attempt < 3; attempt++) {
		int waited;

		s->port = env__free_port();
		snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/mcp", s->port);
		snprintf(portstr, sizeof(portstr), "%d", s->port);
		s->pid = spawn_node(e, cg, out, "server.mjs",
				    (const char *[]){ "--port", portstr, "--record", s->record, NULL });
		if (s->pid <= 0)
			return false;
		for (waited = 0; waited < 45000; waited += 100) {
			if (file_has(out, "\"ready\":true"))
				return true;
			if (env__wait(e, s->pid, 0) != -ETIMEDOUT)
				break;	/* exited: the port was taken */
			env__sleep_ms(100);
		}
		show_file("server output", out);
		if (waited >= 45000)
			return false;
	}
	return false;
}

/* Lines of a record file of kind `kind` whose text contains needle. */
static int record_count(const char *path, const char *kind, const char *needle)
{
	char *buf = env__slurp(path, NULL), *line, *save = NULL;
	int n = 0;

	if (!buf)
		return 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *k = j ? json_string_value(json_object_get(j, "kind")) : NULL;

		if (k && strcmp(k, kind) == 0 && (!needle || strstr(line, needle)))
			n++;
		json_decref(j);
	}
	free(buf);
	return n;
}

/* A client.mjs run: identity, one call of tool with a marker argument. */
struct client {
	const char *cg;		/* NULL: outside the agent's subtree */
	const struct ident *id;
	const char *name;	/* clientInfo name, unique per client */
	const char *tool;
	const char *marker;	/* the call's argument, unique per client */
	const char *session_id;	/* steal this session */
	const char *session_file;
	const char *hold_s;	/* keep the session and GET stream this long */
	const char *url;
	char out[512];
	pid_t pid;
};

static pid_t client_start(struct env *e, struct client *c)
{
	const char *args[40];
	char argjson[256];
	int n = 0;

	snprintf(c->out, sizeof(c->out), "%s/client-%s.out", e->tmp, c->name);
	snprintf(argjson, sizeof(argjson), "{\"%s\":\"%s\"}",
		 strcmp(c->tool, "search_tickets") == 0 ? "query" : "text", c->marker);
	args[n++] = "--url";
	args[n++] = c->url;
	args[n++] = "--token";
	args[n++] = c->id->token;
	args[n++] = "--name";
	args[n++] = c->name;
	args[n++] = "--version";
	args[n++] = "1.0.0";
	args[n++] = "--tool";
	args[n++] = c->tool;
	args[n++] = "--args";
	args[n++] = argjson;
	args[n++] = "--timeout-ms";
	args[n++] = "20000";
	if (c->session_id) {
		args[n++] = "--session-id";
		args[n++] = c->session_id;
	}
	if (c->session_file) {
		args[n++] = "--session-file";
		args[n++] = c->session_file;
	}
	if (c->hold_s) {
		args[n++] = "--hold-s";
		args[n++] = c->hold_s;
	} else {
		args[n++] = "--no-get-stream";
	}
	args[n] = NULL;
	c->pid = spawn_node(e, c->cg, c->out, "client.mjs", args);
	return c->pid;
}

/* The client ran to its end with every step ok: it was served. */
static bool client_served(struct env *e, struct client *c, const char *what)
{
	int st = env__wait(e, c->pid, CLIENT_MS);

	if (!ASSERT_EQ(st, 0, what)) {
		show_file("client output", c->out);
		return false;
	}
	return true;
}

/* The client failed because its connection was reset or closed under it. */
static bool client_cut_off(struct env *e, struct client *c, const char *what)
{
	int st = env__wait(e, c->pid, CLIENT_MS);
	char w[160];
	bool ok;

	snprintf(w, sizeof(w), "%s: client failed", what);
	ok = ASSERT_EQ(st, 1, w);
	snprintf(w, sizeof(w), "%s: client saw a network error (reset/closed)", what);
	ok = ASSERT_TRUE(file_has(c->out, "\"kind\":\"network\""), w) && ok;
	if (!ok)
		show_file("client output", c->out);
	return ok;
}

struct expect {
	const char *verdict;
	bool enforce;
	const char *client;	/* NULL: the alert names none */
	pid_t pid;		/* 0: not attributed */
	const char *cgroup;
	const struct ident *id;
	const char *ci_name;
	const char *method, *tool;
	const char *server;
};

/* The alert says exactly who sent what, and what was done. */
static void check_alert(json_t *ev, const struct expect *x)
{
	char w[160];
	const char *reason = env__str(ev, "reason");

#define W(fmt) (snprintf(w, sizeof(w), "%s %s: " fmt, x->verdict, \
			 x->enforce ? "enforce" : "monitor"), w)
	ASSERT_STREQ(env__str(ev, "kind"), "alert", W("kind"));
	ASSERT_STREQ(env__str(ev, "verdict"), x->verdict, W("verdict"));
	ASSERT_STREQ(env__str(ev, "action"), x->enforce ? "blocked" : "alerted", W("action"));
	ASSERT_STREQ(env__str(ev, "mode"), x->enforce ? "enforce" : "monitor", W("mode"));
	ASSERT_STREQ(env__str(ev, "client"), x->client, W("client"));
	ASSERT_TRUE(reason && *reason, W("reason is given"));
	if (x->server)
		ASSERT_STREQ(env__str(ev, "server"), x->server, W("server"));
	if (x->pid) {
		ASSERT_EQ(env__int(ev, "workload.pid"), x->pid, W("workload.pid"));
		ASSERT_STREQ(env__str(ev, "workload.cgroup"), x->cgroup, W("workload.cgroup"));
		ASSERT_STREQ(env__str(ev, "workload.exe"), env__node_exe(), W("workload.exe"));
		ASSERT_TRUE(json_is_true(env__get(ev, "workload.attributed")), W("attributed"));
	}
	if (x->id) {
		ASSERT_STREQ(env__str(ev, "claim.client_id"), x->id->client_id, W("claim.client_id"));
		ASSERT_STREQ(env__str(ev, "claim.sub"), x->id->sub, W("claim.sub"));
		ASSERT_STREQ(env__str(ev, "claim.iss"), "https://auth.e2e.test", W("claim.iss"));
		ASSERT_STREQ(env__str(ev, "claim.jti"), x->id->jti, W("claim.jti"));
		ASSERT_STREQ(env__str(ev, "claim.token_sha256"), x->id->sha, W("claim.token_sha256"));
	}
	if (x->ci_name)
		ASSERT_STREQ(env__str(ev, "claim.client_info.name"), x->ci_name,
			     W("claim.client_info.name"));
	if (x->method)
		ASSERT_STREQ(env__str(ev, "request.method"), x->method, W("request.method"));
	ASSERT_STREQ(env__str(ev, "request.tool"), x->tool, W("request.tool"));
#undef W
}

/* The alert for the request `method` sent by pid. */
static json_t *alert_of(struct env *e, pid_t pid, const char *method)
{
	char pidc[48], mc[96];

	snprintf(pidc, sizeof(pidc), "workload.pid=%d", pid);
	snprintf(mc, sizeof(mc), "request.method=%s", method);
	return env__find_event(e, WAIT_MS, "kind=alert", pidc, mc, NULL);
}

/* The request `method` of pid was judged allow (events may lag the
 * server's answer: wait for it). */
static bool allowed(struct env *e, pid_t pid, const char *method)
{
	char pidc[48], mc[96];
	json_t *ev;

	snprintf(pidc, sizeof(pidc), "workload.pid=%d", pid);
	snprintf(mc, sizeof(mc), "request.method=%s", method);
	ev = env__find_event(e, WAIT_MS, "kind=request", "verdict=allow", pidc, mc, NULL);
	json_decref(ev);
	return ev != NULL;
}

/* A legitimate client was served and its call judged allow. */
static void check_served(struct env *e, struct client *c, const char *record, const char *what)
{
	char w[160];
	json_t *ev;
	char pidc[48];

	snprintf(w, sizeof(w), "%s: legitimate client served", what);
	if (!client_served(e, c, w))
		return;
	snprintf(w, sizeof(w), "%s: its tool ran", what);
	ASSERT_EQ(record_count(record, "tool", c->marker), 1, w);
	snprintf(pidc, sizeof(pidc), "workload.pid=%d", c->pid);
	ev = env__find_event(e, WAIT_MS, "kind=request", pidc, "request.method=tools/call", NULL);
	snprintf(w, sizeof(w), "%s: its call is a request event", what);
	if (ASSERT_OK_PTR(ev, w)) {
		snprintf(w, sizeof(w), "%s: verdict allow", what);
		ASSERT_STREQ(env__str(ev, "verdict"), "allow", w);
	}
	json_decref(ev);
	snprintf(w, sizeof(w), "%s: no alert", what);
	ASSERT_EQ(env__count_events(e, "kind=alert", pidc, NULL), 0, w);
}

/* The request with marker (a clientInfo name or a call argument) never
 * reached the server: no HTTP request and no tool run carry it. */
static void check_never_read(const char *record, const char *marker, const char *what)
{
	char w[160];

	snprintf(w, sizeof(w), "%s: the server never read it", what);
	ASSERT_EQ(record_count(record, "http", marker), 0, w);
	snprintf(w, sizeof(w), "%s: no tool ran for it", what);
	ASSERT_EQ(record_count(record, "tool", marker), 0, w);
}

static void check_was_read(const char *record, const char *marker, const char *what)
{
	char w[160];

	snprintf(w, sizeof(w), "%s: the server read it (monitor)", what);
	ASSERT_GE(record_count(record, "http", marker), 1, w);
}

/*
 * env__agent_start gives the agent 20 s to become ready; loading the BPF
 * programs on a loaded shared machine can take longer, so a slow start
 * gets another minute before it counts as a failure.
 */
static int agent_start_patient(struct env *e, const char *policy, const char *const *extra)
{
	int err = env__agent_start(e, policy, extra);
	json_t *ready;

	if (err != -ETIMEDOUT || !e->agent_running)
		return err;
	ready = env__find_event(e, 60000, "kind=ready", NULL);
	if (!ready)
		return -ETIMEDOUT;
	test__log("the agent took more than 20 s to become ready");
	json_decref(ready);
	return 0;
}

static bool agent_start(struct env *e, const char *policy, bool enforce)
{
	return ASSERT_OK(agent_start_patient(e, policy, enforce ? NULL : monitor_args),
			 "agent start");
}

/* After a failure: what the agent decided, one line an event. */
static void dump_on_failure(struct env *e)
{
	char *buf, *line, *save = NULL;

	if (!test__failed())
		return;
	test__log("scratch dir %s; judged requests:", e->tmp);
	buf = env__slurp(e->agent.events_path, NULL);
	for (line = buf ? strtok_r(buf, "\n", &save) : NULL; line;
	     line = strtok_r(NULL, "\n", &save)) {
		json_t *ev = json_loads(line, 0, NULL);
		const char *kind = ev ? env__str(ev, "kind") : NULL;

		if (kind && (!strcmp(kind, "alert") || !strcmp(kind, "request") ||
			     !strcmp(kind, "lost")))
			test__log("  %s %s %s pid %lld %s %s %s", kind,
				  env__str(ev, "verdict") ? env__str(ev, "verdict") : "-",
				  env__str(ev, "action") ? env__str(ev, "action") : "-",
				  env__int(ev, "workload.pid"),
				  env__str(ev, "request.method") ? env__str(ev, "request.method") : "-",
				  env__str(ev, "connection.src") ? env__str(ev, "connection.src") : "-",
				  env__str(ev, "reason") ? env__str(ev, "reason") : "");
		json_decref(ev);
	}
	free(buf);
}

/* ---- mismatch, unknown_client, unattributed ---------------------------- */

static void judge_identity(bool enforce)
{
	char policy[2048], cg_good[256], cg_rogue[256], cg_unk[256], cg_srv[256];
	struct ident ci = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident ci2 = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident ci3 = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident stranger = { .client_id = "stranger", .sub = "svc-stranger" };
	struct client good = { .name = "id-good", .tool = "echo", .marker = "mk-id-good" };
	struct client rogue = { .name = "id-rogue", .tool = "echo", .marker = "mk-id-rogue" };
	struct client unk = { .name = "id-unknown", .tool = "echo", .marker = "mk-id-unknown" };
	struct client outside = { .name = "id-outside", .tool = "echo", .marker = "mk-id-outside" };
	struct server srv;
	struct env e;
	json_t *ev = NULL;
	char jticond[128];

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!ASSERT_OK(env__cgroup(&e, "ci/good", cg_good, sizeof(cg_good)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "rogue/x", cg_rogue, sizeof(cg_rogue)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "ci/unknown", cg_unk, sizeof(cg_unk)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		goto cleanup;
	if (!ASSERT_OK(mint(&ci, "good"), "mint") || !ASSERT_OK(mint(&ci2, "rogue"), "mint") ||
	    !ASSERT_OK(mint(&ci3, "outside"), "mint") ||
	    !ASSERT_OK(mint(&stranger, "stranger"), "mint"))
		goto cleanup;
	if (!ASSERT_TRUE(start_server(&e, cg_srv, "tickets", &srv), "server"))
		goto cleanup;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/ci/*\"}],\"tools\":[\"echo\",\"search_tickets\"]}]}",
		 srv.port, e.cg_root);
	if (!agent_start(&e, policy, enforce))
		goto cleanup;

	good.cg = cg_good;
	good.id = &ci;
	good.url = srv.url;
	rogue.cg = cg_rogue;
	rogue.id = &ci2;
	rogue.url = srv.url;
	unk.cg = cg_unk;
	unk.id = &stranger;
	unk.url = srv.url;
	outside.cg = NULL;
	outside.id = &ci3;
	outside.url = srv.url;
	/* Independent of each other: all at once. */
	if (!ASSERT_GE(client_start(&e, &good), 1, "good") ||
	    !ASSERT_GE(client_start(&e, &rogue), 1, "rogue") ||
	    !ASSERT_GE(client_start(&e, &unk), 1, "unknown") ||
	    !ASSERT_GE(client_start(&e, &outside), 1, "outside"))
		goto cleanup;

	check_served(&e, &good, srv.record, "ci-bot in its cgroup");

	/* mismatch: ci-bot's identity from a cgroup ci-bot does not run in. */
	if (enforce) {
		client_cut_off(&e, &rogue, "mismatch");
		check_never_read(srv.record, rogue.name, "mismatch");
	} else {
		client_served(&e, &rogue, "mismatch: monitor leaves the client alone");
		check_was_read(srv.record, rogue.name, "mismatch");
		ASSERT_EQ(record_count(srv.record, "tool", rogue.marker), 1, "mismatch: tool ran");
	}
	ev = alert_of(&e, rogue.pid, "initialize");
	if (ASSERT_OK_PTR(ev, "mismatch alert"))
		check_alert(ev, &(struct expect){ .verdict = "mismatch", .enforce = enforce,
						  .client = "ci-bot", .pid = rogue.pid,
						  .cgroup = cg_rogue, .id = &ci2,
						  .ci_name = rogue.name, .method = "initialize",
						  .server = "tickets" });
	json_decref(ev);
	ev = NULL;
	if (!enforce) {
		ev = alert_of(&e, rogue.pid, "tools/call");
		if (ASSERT_OK_PTR(ev, "mismatch alert on the call"))
			check_alert(ev, &(struct expect){ .verdict = "mismatch", .enforce = false,
							  .client = "ci-bot", .pid = rogue.pid,
							  .cgroup = cg_rogue, .id = &ci2,
							  .ci_name = rogue.name, .method = "tools/call",
							  .tool = "echo" });
		json_decref(ev);
		ev = NULL;
	}

	/* unknown_client: a claim no policy client has. */
	if (enforce) {
		client_cut_off(&e, &unk, "unknown_client");
		check_never_read(srv.record, unk.name, "unknown_client");
	} else {
		client_served(&e, &unk, "unknown_client: monitor leaves the client alone");
		check_was_read(srv.record, unk.name, "unknown_client");
		ASSERT_EQ(record_count(srv.record, "tool", unk.marker), 1, "unknown_client: tool ran");
	}
	ev = alert_of(&e, unk.pid, "initialize");
	if (ASSERT_OK_PTR(ev, "unknown_client alert"))
		check_alert(ev, &(struct expect){ .verdict = "unknown_client", .enforce = enforce,
						  .client = NULL, .pid = unk.pid, .cgroup = cg_unk,
						  .id = &stranger, .ci_name = unk.name,
						  .method = "initialize" });
	json_decref(ev);
	ev = NULL;

	/* unattributed: a sender outside the agent's cgroup subtree. */
	if (enforce) {
		client_cut_off(&e, &outside, "unattributed");
		check_never_read(srv.record, outside.name, "unattributed");
	} else {
		client_served(&e, &outside, "unattributed: monitor leaves the client alone");
		check_was_read(srv.record, outside.name, "unattributed");
		ASSERT_EQ(record_count(srv.record, "tool", outside.marker), 1,
			  "unattributed: tool ran");
	}
	snprintf(jticond, sizeof(jticond), "claim.jti=%s", ci3.jti);
	ev = env__find_event(&e, WAIT_MS, "kind=alert", jticond, "request.method=initialize", NULL);
	if (ASSERT_OK_PTR(ev, "unattributed alert")) {
		check_alert(ev, &(struct expect){ .verdict = "unattributed", .enforce = enforce,
						  .client = NULL, .id = &ci3, .ci_name = outside.name,
						  .method = "initialize" });
		ASSERT_TRUE(json_is_false(env__get(ev, "workload.attributed")),
			    "unattributed: workload.attributed false");
		ASSERT_OK_PTR(env__str(ev, "workload.unattributed_reason"),
			      "unattributed: the reason it is not attributed");
	}
	json_decref(ev);
	ev = NULL;
	ASSERT_EQ(env__count_events(&e, "kind=request", jticond, NULL), 0,
		  "unattributed: nothing of it allowed");
cleanup:
	dump_on_failure(&e);
	json_decref(ev);
	env__cleanup(&e);
}

void test_judgment_identity(void)
{
	test__set_timeout(240);
	if (test__start_subtest("enforce"))
		judge_identity(true);
	if (test__start_subtest("monitor"))
		judge_identity(false);
}

/* ---- tool_denied, server_denied ---------------------------------------- */

static void judge_access(bool enforce)
{
	char policy[2048], cg_a[256], cg_b[256], cg_c[256], cg_srv[256];
	/* One token each: a token shared by two cgroups would be replayed. */
	struct ident ci = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident ci_tool = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident ci_srv = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct client good = { .name = "acc-good", .tool = "echo", .marker = "mk-acc-good" };
	struct client tooly = { .name = "acc-tool", .tool = "search_tickets", .marker = "mk-acc-tool" };
	struct client srvy = { .name = "acc-server", .tool = "echo", .marker = "mk-acc-server" };
	struct server tickets, files;
	struct env e;
	json_t *ev = NULL;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!ASSERT_OK(env__cgroup(&e, "ci/a", cg_a, sizeof(cg_a)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "ci/b", cg_b, sizeof(cg_b)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "ci/c", cg_c, sizeof(cg_c)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		goto cleanup;
	if (!ASSERT_OK(mint(&ci, "acc"), "mint") || !ASSERT_OK(mint(&ci_tool, "acctool"), "mint") ||
	    !ASSERT_OK(mint(&ci_srv, "accsrv"), "mint"))
		goto cleanup;
	if (!ASSERT_TRUE(start_server(&e, cg_srv, "tickets", &tickets), "tickets server"))
		goto cleanup;
	if (!ASSERT_TRUE(start_server(&e, cg_srv, "files", &files), "files server"))
		goto cleanup;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d},"
		 "{\"name\":\"files\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/ci/*\"}],\"tools\":[\"echo\"],"
		 "\"servers\":[\"tickets\"]}]}",
		 tickets.port, files.port, e.cg_root);
	if (!agent_start(&e, policy, enforce))
		goto cleanup;

	good.cg = cg_a;
	good.id = &ci;
	good.url = tickets.url;
	tooly.cg = cg_b;
	tooly.id = &ci_tool;
	tooly.url = tickets.url;
	srvy.cg = cg_c;
	srvy.id = &ci_srv;
	srvy.url = files.url;
	if (!ASSERT_GE(client_start(&e, &good), 1, "good") ||
	    !ASSERT_GE(client_start(&e, &tooly), 1, "tool client") ||
	    !ASSERT_GE(client_start(&e, &srvy), 1, "server client"))
		goto cleanup;
	check_served(&e, &good, tickets.record, "echo on tickets");

	/* tool_denied: the session is fine, the call is not. */
	if (enforce) {
		client_cut_off(&e, &tooly, "tool_denied");
		check_never_read(tickets.record, tooly.marker, "tool_denied");
		ASSERT_EQ(record_count(tickets.record, "tool", "search_tickets"), 0,
			  "tool_denied: search_tickets never ran");
	} else {
		client_served(&e, &tooly, "tool_denied: monitor leaves the client alone");
		check_was_read(tickets.record, tooly.marker, "tool_denied");
		ASSERT_EQ(record_count(tickets.record, "tool", tooly.marker), 1,
			  "tool_denied: tool ran (monitor)");
	}
	ASSERT_TRUE(allowed(&e, tooly.pid, "initialize"), "tool_denied: initialize allowed");
	ev = alert_of(&e, tooly.pid, "tools/call");
	if (ASSERT_OK_PTR(ev, "tool_denied alert"))
		check_alert(ev, &(struct expect){ .verdict = "tool_denied", .enforce = enforce,
						  .client = "ci-bot", .pid = tooly.pid, .cgroup = cg_b,
						  .id = &ci_tool, .ci_name = tooly.name,
						  .method = "tools/call", .tool = "search_tickets",
						  .server = "tickets" });
	json_decref(ev);
	ev = NULL;

	/* server_denied: ci-bot may not use "files" at all. */
	if (enforce) {
		client_cut_off(&e, &srvy, "server_denied");
		check_never_read(files.record, srvy.name, "server_denied");
	} else {
		client_served(&e, &srvy, "server_denied: monitor leaves the client alone");
		check_was_read(files.record, srvy.name, "server_denied");
		ASSERT_EQ(record_count(files.record, "tool", srvy.marker), 1,
			  "server_denied: tool ran (monitor)");
	}
	ev = alert_of(&e, srvy.pid, "initialize");
	if (ASSERT_OK_PTR(ev, "server_denied alert"))
		check_alert(ev, &(struct expect){ .verdict = "server_denied", .enforce = enforce,
						  .client = "ci-bot", .pid = srvy.pid, .cgroup = cg_c,
						  .id = &ci_srv, .ci_name = srvy.name,
						  .method = "initialize", .server = "files" });
	json_decref(ev);
	ev = NULL;
cleanup:
	dump_on_failure(&e);
	json_decref(ev);
	env__cleanup(&e);
}

void test_judgment_access(void)
{
	test__set_timeout(240);
	if (test__start_subtest("enforce"))
		judge_access(true);
	if (test__start_subtest("monitor"))
		judge_access(false);
}

/* ---- malformed ---------------------------------------------------------- */

static pid_t raw_start(struct env *e, const char *cg, const char *tag, const char *spec,
		       char *out, size_t olen)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.spec.json", e->tmp, tag);
	snprintf(out, olen, "%s/raw-%s.out", e->tmp, tag);
	if (env__write(path, spec, strlen(spec)))
		return -1;
	return spawn_node(e, cg, out, "raw.mjs", (const char *[]){ path, NULL });
}

/* raw.mjs saw the peer close or reset the connection before its answer. */
static void raw_cut_off(struct env *e, pid_t pid, const char *out, const char *what)
{
	char w[160];

	snprintf(w, sizeof(w), "%s: raw client missed its response", what);
	ASSERT_EQ(env__wait(e, pid, CLIENT_MS), 1, w);
	snprintf(w, sizeof(w), "%s: the connection was closed/reset by the peer", what);
	if (!ASSERT_TRUE(file_has(out, "\"closed\":true"), w))
		show_file("raw output", out);
}

static void judge_malformed(bool enforce)
{
	char policy[2048], cg_a[256], cg_srv[256], spec[8192], out_junk[512], out_text[512];
	char out_json[512];
	struct ident ci = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct client good = { .name = "mal-good", .tool = "echo", .marker = "mk-mal-good" };
	struct server srv;
	struct env e;
	json_t *ev = NULL;
	pid_t junk, text, notrpc;
	char pidc[48];

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!ASSERT_OK(env__cgroup(&e, "ci/a", cg_a, sizeof(cg_a)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		goto cleanup;
	if (!ASSERT_OK(mint(&ci, "mal"), "mint"))
		goto cleanup;
	if (!ASSERT_TRUE(start_server(&e, cg_srv, "tickets", &srv), "server"))
		goto cleanup;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/ci/*\"}],"
		 "\"tools\":[\"echo\",\"search_tickets\"]}]}", srv.port, e.cg_root);
	if (!agent_start(&e, policy, enforce))
		goto cleanup;

	good.cg = cg_a;
	good.id = &ci;
	good.url = srv.url;
	if (!ASSERT_GE(client_start(&e, &good), 1, "good"))
		goto cleanup;

	/* Bytes that are not HTTP at all (a TLS ClientHello-like prefix). */
	snprintf(spec, sizeof(spec),
		 "{\"port\":%d,\"timeout_ms\":15000,\"requests\":[{\"raw_b64\":\"%s\"}]}", srv.port,
		 /* 16 03 01 00 a5 01 00 00 a1 03 03 "mk-mal-junk\r\n\r\n" */
		 "FgMBAKUBAAChAwNtay1tYWwtanVuaw0KDQo=");
	junk = raw_start(&e, cg_a, "junk", spec, out_junk, sizeof(out_junk));
	/* A POST whose body is not JSON at all. */
	snprintf(spec, sizeof(spec),
		 "{\"port\":%d,\"timeout_ms\":15000,\"requests\":[{\"method\":\"POST\",\"path\":\"/mcp\","
		 "\"headers\":{\"Authorization\":\"Bearer %s\"},\"body\":\"mk-mal-text is not JSON-RPC\"}]}",
		 srv.port, ci.token);
	text = raw_start(&e, cg_a, "text", spec, out_text, sizeof(out_text));
	/* A POST whose body is JSON but not JSON-RPC. */
	snprintf(spec, sizeof(spec),
		 "{\"port\":%d,\"timeout_ms\":15000,\"requests\":[{\"method\":\"POST\",\"path\":\"/mcp\","
		 "\"headers\":{\"Authorization\":\"Bearer %s\"},\"body\":{\"hello\":\"mk-mal-json\"}}]}",
		 srv.port, ci.token);
	notrpc = raw_start(&e, cg_a, "json", spec, out_json, sizeof(out_json));
	if (!ASSERT_GE(junk, 1, "junk sender") || !ASSERT_GE(text, 1, "text sender") ||
	    !ASSERT_GE(notrpc, 1, "json sender"))
		goto cleanup;

	check_served(&e, &good, srv.record, "a well-formed request");

	if (enforce) {
		raw_cut_off(&e, junk, out_junk, "malformed (not HTTP)");
		/* node:http never parsed them (a reset may still be reported). */
		ASSERT_EQ(record_count(srv.record, "client_error", "HPE_"), 0,
			  "malformed (not HTTP): the server never read the bytes");
		raw_cut_off(&e, text, out_text, "malformed (text body)");
		check_never_read(srv.record, "mk-mal-text", "malformed (text body)");
		raw_cut_off(&e, notrpc, out_json, "malformed (JSON, not JSON-RPC)");
		check_never_read(srv.record, "mk-mal-json", "malformed (JSON, not JSON-RPC)");
	} else {
		ASSERT_EQ(env__wait(&e, junk, CLIENT_MS), 0, "monitor: junk answered by the server");
		ASSERT_GE(record_count(srv.record, "client_error", "HPE_"), 1,
			  "malformed (not HTTP): the server read the bytes (monitor)");
		ASSERT_EQ(env__wait(&e, text, CLIENT_MS), 0, "monitor: text body answered");
		check_was_read(srv.record, "mk-mal-text", "malformed (text body)");
		ASSERT_EQ(env__wait(&e, notrpc, CLIENT_MS), 0, "monitor: JSON body answered");
		check_was_read(srv.record, "mk-mal-json", "malformed (JSON, not JSON-RPC)");
	}

	snprintf(pidc, sizeof(pidc), "workload.pid=%d", junk);
	ev = env__find_event(&e, WAIT_MS, "kind=alert", pidc, NULL);
	if (ASSERT_OK_PTR(ev, "malformed (not HTTP) alert")) {
		check_alert(ev, &(struct expect){ .verdict = "malformed", .enforce = enforce,
						  .pid = junk, .cgroup = cg_a });
		ASSERT_STRSTR(env__str(ev, "reason"), "HTTP", "malformed (not HTTP): reason");
	}
	json_decref(ev);
	ev = NULL;
	ASSERT_EQ(env__count_events(&e, "kind=request", pidc, NULL), 0,
		  "malformed (not HTTP): nothing allowed");

	snprintf(pidc, sizeof(pidc), "workload.pid=%d", text);
	ev = env__find_event(&e, WAIT_MS, "kind=alert", pidc, NULL);
	if (ASSERT_OK_PTR(ev, "malformed (text body) alert")) {
		check_alert(ev, &(struct expect){ .verdict = "malformed", .enforce = enforce,
						  .pid = text, .cgroup = cg_a, .id = &ci });
		ASSERT_STREQ(env__str(ev, "request.http_method"), "POST",
			     "malformed (text body): http_method");
	}
	json_decref(ev);
	ev = NULL;

	snprintf(pidc, sizeof(pidc), "workload.pid=%d", notrpc);
	ev = env__find_event(&e, WAIT_MS, "kind=alert", pidc, NULL);
	if (ASSERT_OK_PTR(ev, "malformed (JSON, not JSON-RPC) alert")) {
		check_alert(ev, &(struct expect){ .verdict = "malformed", .enforce = enforce,
						  .pid = notrpc, .cgroup = cg_a, .id = &ci });
		ASSERT_STREQ(env__str(ev, "request.http_method"), "POST",
			     "malformed (JSON): http_method");
	}
	json_decref(ev);
	ev = NULL;
cleanup:
	dump_on_failure(&e);
	json_decref(ev);
	env__cleanup(&e);
}

void test_judgment_malformed(void)
{
	test__set_timeout(240);
	if (test__start_subtest("enforce"))
		judge_malformed(true);
	if (test__start_subtest("monitor"))
		judge_malformed(false);
}

/* ---- clone -------------------------------------------------------------- */

static void judge_clone(bool enforce, int max_instances)
{
	char policy[2048], cg_one[256], cg_two[256], cg_srv[256];
	struct ident id1 = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident id2 = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct client one = { .name = "clone-one", .tool = "echo", .marker = "mk-clone-one",
			      .hold_s = "60" };
	struct client two = { .name = "clone-two", .tool = "echo", .marker = "mk-clone-two" };
	struct server srv;
	struct env e;
	json_t *ev = NULL;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!ASSERT_OK(env__cgroup(&e, "ci/one", cg_one, sizeof(cg_one)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "ci/two", cg_two, sizeof(cg_two)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		goto cleanup;
	/* Same identity, two tokens: a second instance, not a replayed token. */
	if (!ASSERT_OK(mint(&id1, "clone1"), "mint") || !ASSERT_OK(mint(&id2, "clone2"), "mint"))
		goto cleanup;
	if (!ASSERT_TRUE(start_server(&e, cg_srv, "tickets", &srv), "server"))
		goto cleanup;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/ci/*\"}],"
		 "\"tools\":[\"echo\",\"search_tickets\"],\"max_instances\":%d}]}",
		 srv.port, e.cg_root, max_instances);
	if (!agent_start(&e, policy, enforce))
		goto cleanup;

	one.cg = cg_one;
	one.id = &id1;
	one.url = srv.url;
	two.cg = cg_two;
	two.id = &id2;
	two.url = srv.url;
	if (!ASSERT_GE(client_start(&e, &one), 1, "first instance"))
		goto cleanup;
	/* The first instance is connected and has made its call. */
	if (!ASSERT_TRUE(env__wait_file(one.out, "\"step\":\"call\"", CLIENT_MS),
			 "first instance called")) {
		show_file("first instance", one.out);
		goto cleanup;
	}
	ASSERT_TRUE(file_has(one.out, "\"ok\":true,\"tool\""), "first instance's call ok");
	ASSERT_EQ(record_count(srv.record, "tool", one.marker), 1, "first instance's tool ran");
	ASSERT_TRUE(allowed(&e, one.pid, "tools/call"), "first instance allowed");

	if (!ASSERT_GE(client_start(&e, &two), 1, "second instance"))
		goto cleanup;
	if (max_instances >= 2) {
		check_served(&e, &two, srv.record, "second instance within max_instances 2");
		ASSERT_EQ(env__count_events(&e, "kind=alert", NULL), 0, "max_instances 2: no alert");
		goto cleanup;
	}
	if (enforce) {
		client_cut_off(&e, &two, "clone");
		check_never_read(srv.record, two.name, "clone");
	} else {
		client_served(&e, &two, "clone: monitor leaves the client alone");
		check_was_read(srv.record, two.name, "clone");
		ASSERT_EQ(record_count(srv.record, "tool", two.marker), 1, "clone: tool ran");
	}
	ev = alert_of(&e, two.pid, "initialize");
	if (ASSERT_OK_PTR(ev, "clone alert")) {
		check_alert(ev, &(struct expect){ .verdict = "clone", .enforce = enforce,
						  .client = "ci-bot", .pid = two.pid, .cgroup = cg_two,
						  .id = &id2, .ci_name = two.name,
						  .method = "initialize" });
		ASSERT_EQ(json_array_size(env__get(ev, "related.live_instances")), 1,
			  "clone: one live instance");
		ASSERT_STREQ(env__str(ev, "related.live_instances.0.cgroup"), cg_one,
			     "clone: the live instance is the first one");
		ASSERT_EQ(env__int(ev, "related.live_instances.0.pid"), one.pid,
			  "clone: the live instance's pid");
		ASSERT_EQ(env__int(ev, "related.max_instances"), 1, "clone: max_instances");
	}
	json_decref(ev);
	ev = NULL;
	/* The incumbent is not displaced. */
	ASSERT_EQ(env__count_events(&e, "kind=alert", "workload.cgroup=", NULL) +
		  env__count_events(&e, "kind=alert", "verdict=clone", "client=", NULL), 0,
		  "clone: every alert names its workload and client");
	{
		char pidc[48];

		snprintf(pidc, sizeof(pidc), "workload.pid=%d", one.pid);
		ASSERT_EQ(env__count_events(&e, "kind=alert", pidc, NULL), 0,
			  "clone: the first instance is never the one refused");
	}
cleanup:
	dump_on_failure(&e);
	json_decref(ev);
	env__cleanup(&e);
}

void test_judgment_clone(void)
{
	test__set_timeout(240);
	if (test__start_subtest("enforce"))
		judge_clone(true, 1);
	if (test__start_subtest("monitor"))
		judge_clone(false, 1);
	if (test__start_subtest("max_instances_2"))
		judge_clone(true, 2);
}

/* ---- token_replay ------------------------------------------------------- */

static void judge_token_replay(bool enforce)
{
	char policy[2048], cg_one[256], cg_two[256], cg_srv[256];
	struct ident id = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct client one = { .name = "replay-one", .tool = "echo", .marker = "mk-replay-one" };
	struct client two = { .name = "replay-two", .tool = "echo", .marker = "mk-replay-two" };
	struct server srv;
	struct env e;
	json_t *ev = NULL;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!ASSERT_OK(env__cgroup(&e, "ci/one", cg_one, sizeof(cg_one)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "ci/two", cg_two, sizeof(cg_two)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		goto cleanup;
	if (!ASSERT_OK(mint(&id, "replay"), "mint"))
		goto cleanup;
	if (!ASSERT_TRUE(start_server(&e, cg_srv, "tickets", &srv), "server"))
		goto cleanup;
	/* Both cgroups allowed, two instances allowed: only the token is wrong. */
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/ci/*\"}],"
		 "\"tools\":[\"echo\",\"search_tickets\"],\"max_instances\":2}]}",
		 srv.port, e.cg_root);
	if (!agent_start(&e, policy, enforce))
		goto cleanup;

	one.cg = cg_one;
	one.id = &id;
	one.url = srv.url;
	two.cg = cg_two;
	two.id = &id;
	two.url = srv.url;
	if (!ASSERT_GE(client_start(&e, &one), 1, "first user"))
		goto cleanup;
	check_served(&e, &one, srv.record, "the token's first user");
	if (!ASSERT_GE(client_start(&e, &two), 1, "second user"))
		goto cleanup;
	if (enforce) {
		client_cut_off(&e, &two, "token_replay");
		check_never_read(srv.record, two.name, "token_replay");
	} else {
		client_served(&e, &two, "token_replay: monitor leaves the client alone");
		check_was_read(srv.record, two.name, "token_replay");
		ASSERT_EQ(record_count(srv.record, "tool", two.marker), 1, "token_replay: tool ran");
	}
	ev = alert_of(&e, two.pid, "initialize");
	if (ASSERT_OK_PTR(ev, "token_replay alert")) {
		check_alert(ev, &(struct expect){ .verdict = "token_replay", .enforce = enforce,
						  .client = "ci-bot", .pid = two.pid, .cgroup = cg_two,
						  .id = &id, .ci_name = two.name,
						  .method = "initialize" });
		ASSERT_STREQ(env__str(ev, "related.first_use.cgroup"), cg_one,
			     "token_replay: first used in the first cgroup");
		ASSERT_EQ(env__int(ev, "related.first_use.pid"), one.pid,
			  "token_replay: first user's pid");
		ASSERT_STRSTR(env__str(ev, "reason"), id.jti, "token_replay: reason names the jti");
	}
	json_decref(ev);
	ev = NULL;
cleanup:
	dump_on_failure(&e);
	json_decref(ev);
	env__cleanup(&e);
}

void test_judgment_token_replay(void)
{
	test__set_timeout(240);
	if (test__start_subtest("enforce"))
		judge_token_replay(true);
	if (test__start_subtest("monitor"))
		judge_token_replay(false);
}

/* ---- session_hijack ----------------------------------------------------- */

/*
 * Two clients in their own cgroups (ci/owner as ci-bot, ops/thief as
 * ops-bot), a fresh token each, the recording server, and the agent on a
 * policy that allows both the same tools.
 */
static bool hijack_setup(struct env *e, struct ident *ci, struct ident *ops,
			 char cg_owner[256], char cg_thief[256], struct server *srv, bool enforce)
{
	char policy[2048], cg_srv[256];

	if (!ASSERT_OK(env__cgroup(e, "ci/owner", cg_owner, 256), "cgroup") ||
	    !ASSERT_OK(env__cgroup(e, "ops/thief", cg_thief, 256), "cgroup") ||
	    !ASSERT_OK(env__cgroup(e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		return false;
	if (!ASSERT_OK(mint(ci, "owner"), "mint") || !ASSERT_OK(mint(ops, "thief"), "mint"))
		return false;
	if (!ASSERT_TRUE(start_server(e, cg_srv, "tickets", srv), "server"))
		return false;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/ci/*\"}],"
		 "\"tools\":[\"echo\",\"search_tickets\"]},"
		 "{\"name\":\"ops-bot\",\"claims\":{\"client_id\":\"ops-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/ops/*\"}],"
		 "\"tools\":[\"echo\",\"search_tickets\"]}]}",
		 srv->port, e->cg_root, e->cg_root);
	return agent_start(e, policy, enforce);
}

static void judge_session_hijack(bool enforce)
{
	char cg_owner[256], cg_thief[256], sidfile[512];
	char sidcond[64];
	struct ident ci = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident ops = { .client_id = "ops-bot", .sub = "svc-ops" };
	struct client owner = { .name = "hijack-owner", .tool = "echo", .marker = "mk-hijack-owner",
				.hold_s = "60" };
	struct client thief = { .name = "hijack-thief", .tool = "echo", .marker = "mk-hijack-thief" };
	struct server srv;
	struct env e;
	json_t *ev = NULL;
	char *sid = NULL;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!hijack_setup(&e, &ci, &ops, cg_owner, cg_thief, &srv, enforce))
		goto cleanup;

	snprintf(sidfile, sizeof(sidfile), "%s/owner.sid", e.tmp);
	owner.cg = cg_owner;
	owner.id = &ci;
	owner.url = srv.url;
	owner.session_file = sidfile;
	if (!ASSERT_GE(client_start(&e, &owner), 1, "owner"))
		goto cleanup;
	if (!ASSERT_TRUE(env__wait_file(owner.out, "\"step\":\"call\"", CLIENT_MS), "owner called")) {
		show_file("owner", owner.out);
		goto cleanup;
	}
	ASSERT_EQ(record_count(srv.record, "tool", owner.marker), 1, "owner's tool ran");
	ASSERT_TRUE(allowed(&e, owner.pid, "tools/call"), "owner allowed");
	sid = env__slurp(sidfile, NULL);
	if (!ASSERT_OK_PTR(sid, "owner's session id"))
		goto cleanup;
	sid[strcspn(sid, "\r\n")] = '\0';

	/* Another workload, with a valid identity of its own, uses it. */
	thief.cg = cg_thief;
	thief.id = &ops;
	thief.url = srv.url;
	thief.session_id = sid;
	if (!ASSERT_GE(client_start(&e, &thief), 1, "thief"))
		goto cleanup;
	if (enforce) {
		client_cut_off(&e, &thief, "session_hijack");
		check_never_read(srv.record, thief.marker, "session_hijack");
	} else {
		client_served(&e, &thief, "session_hijack: monitor leaves the client alone");
		check_was_read(srv.record, thief.marker, "session_hijack");
		ASSERT_EQ(record_count(srv.record, "tool", thief.marker), 1,
			  "session_hijack: tool ran in the stolen session");
	}
	ev = alert_of(&e, thief.pid, "tools/call");
	if (ASSERT_OK_PTR(ev, "session_hijack alert")) {
		check_alert(ev, &(struct expect){ .verdict = "session_hijack", .enforce = enforce,
						  .client = "ops-bot", .pid = thief.pid,
						  .cgroup = cg_thief, .id = &ops,
						  .method = "tools/call", .tool = "echo" });
		ASSERT_STREQ(env__str(ev, "claim.session_id"), sid, "session_hijack: session id");
		ASSERT_STREQ(env__str(ev, "related.session_owner.cgroup"), cg_owner,
			     "session_hijack: the owner's cgroup");
		ASSERT_EQ(env__int(ev, "related.session_owner.pid"), owner.pid,
			  "session_hijack: the owner's pid");
	}
	json_decref(ev);
	ev = NULL;
	snprintf(sidcond, sizeof(sidcond), "workload.pid=%d", thief.pid);
	ASSERT_EQ(env__count_events(&e, "kind=request", sidcond, NULL), 0,
		  "session_hijack: nothing of the thief allowed");
cleanup:
	dump_on_failure(&e);
	free(sid);
	json_decref(ev);
	env__cleanup(&e);
}

/* The session id the response `index` of a raw.mjs output carried. */
static char *raw_session(const char *out, int index)
{
	char *buf = env__slurp(out, NULL), *line, *save = NULL, *sid = NULL;

	if (!buf)
		return NULL;
	for (line = strtok_r(buf, "\n", &save); line && !sid; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		json_t *r = json_object_get(j, "response");
		const char *v;

		if (json_is_integer(r) && json_integer_value(r) == index) {
			v = json_string_value(json_object_get(json_object_get(j, "headers"),
							      "mcp-session-id"));
			if (v)
				sid = strdup(v);
		}
		json_decref(j);
	}
	free(buf);
	return sid;
}

/*
 * A session begun by a second initialize on a connection whose responses the
 * daemon had stopped reading (judged, nothing pending): the kernel must read
 * that initialize's response again, so the id counts as issued by the
 * server to the owner, and a thief using it is a hijack of an issued session.
 */
static void judge_session_hijack_reinit(void)
{
	char cg_owner[256], cg_thief[256], spec[16384], out[512];
	struct ident ci = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident ops = { .client_id = "ops-bot", .sub = "svc-ops" };
	struct client thief = { .name = "reinit-thief", .tool = "echo", .marker = "mk-reinit-thief" };
	struct server srv;
	struct env e;
	json_t *ev = NULL;
	char *sid1 = NULL, *sid2 = NULL;
	pid_t owner;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!hijack_setup(&e, &ci, &ops, cg_owner, cg_thief, &srv, true))
		goto cleanup;

	/* One connection: initialize, three calls in that session (their
	 * responses need no reading), initialize again, a call in the new
	 * session. */
#define RI_HDR "\"headers\":{\"Authorization\":\"Bearer %s\",\"MCP-Protocol-Version\":\"2025-11-25\""
#define RI_INIT(id) \
	"{\"method\":\"POST\",\"path\":\"/mcp\"," RI_HDR "},\"body\":{\"jsonrpc\":\"2.0\",\"id\":" #id "," \
	"\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{}," \
	"\"clientInfo\":{\"name\":\"reinit-owner\",\"version\":\"1\"}}}}"
#define RI_NOTE \
	"{\"method\":\"POST\",\"path\":\"/mcp\"," RI_HDR ",\"Mcp-Session-Id\":\"{{session}}\"}," \
	"\"body\":{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}"
#define RI_CALL(id) \
	"{\"method\":\"POST\",\"path\":\"/mcp\"," RI_HDR ",\"Mcp-Session-Id\":\"{{session}}\"}," \
	"\"body\":{\"jsonrpc\":\"2.0\",\"id\":" #id ",\"method\":\"tools/call\"," \
	"\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"mk-reinit-owner-" #id "\"}}}}"
	snprintf(spec, sizeof(spec),
		 "{\"port\":%d,\"timeout_ms\":15000,\"requests\":[" RI_INIT(1) "," RI_NOTE ","
		 RI_CALL(2) "," RI_CALL(3) "," RI_CALL(4) "," RI_INIT(5) "," RI_NOTE "," RI_CALL(6) "]}",
		 srv.port, ci.token, ci.token, ci.token, ci.token, ci.token, ci.token, ci.token,
		 ci.token);
#undef RI_HDR
#undef RI_INIT
#undef RI_NOTE
#undef RI_CALL
	owner = raw_start(&e, cg_owner, "owner", spec, out, sizeof(out));
	if (!ASSERT_EQ(env__wait(&e, owner, CLIENT_MS), 0, "owner: every response on one connection")) {
		show_file("raw output", out);
		goto cleanup;
	}
	ASSERT_EQ(record_count(srv.record, "tool", "mk-reinit-owner-6"), 1, "owner's last call ran");
	sid1 = raw_session(out, 0);
	sid2 = raw_session(out, 5);
	if (!ASSERT_OK_PTR(sid1, "first session id") || !ASSERT_OK_PTR(sid2, "second session id"))
		goto cleanup;
	ASSERT_TRUE(strcmp(sid1, sid2) != 0, "two sessions");

	thief.cg = cg_thief;
	thief.id = &ops;
	thief.url = srv.url;
	thief.session_id = sid2;
	if (!ASSERT_GE(client_start(&e, &thief), 1, "thief"))
		goto cleanup;
	client_cut_off(&e, &thief, "session_hijack after re-initialize");
	check_never_read(srv.record, thief.marker, "session_hijack after re-initialize");
	ev = alert_of(&e, thief.pid, "tools/call");
	if (ASSERT_OK_PTR(ev, "session_hijack alert")) {
		ASSERT_STREQ(env__str(ev, "verdict"), "session_hijack", "verdict");
		ASSERT_STREQ(env__str(ev, "claim.session_id"), sid2, "the second session");
		/* Learned from the server's response, not from the owner's first use. */
		ASSERT_TRUE(json_is_true(env__get(ev, "related.issued_by_server")),
			    "the second session was seen issued by the server");
		ASSERT_STREQ(env__str(ev, "related.session_owner.cgroup"), cg_owner,
			     "the owner's cgroup");
	}
cleanup:
	dump_on_failure(&e);
	free(sid1);
	free(sid2);
	json_decref(ev);
	env__cleanup(&e);
}

void test_judgment_session_hijack(void)
{
	test__set_timeout(300);
	if (test__start_subtest("enforce"))
		judge_session_hijack(true);
	if (test__start_subtest("monitor"))
		judge_session_hijack(false);
	if (test__start_subtest("second_initialize"))
		judge_session_hijack_reinit();
}

/* ---- identity_switch ---------------------------------------------------- */

static void judge_identity_switch(bool enforce)
{
	char policy[2048], cg_a[256], cg_srv[256], spec[16384], out[512], pidc[48];
	struct ident ci = { .client_id = "ci-bot", .sub = "svc-ci" };
	struct ident ops = { .client_id = "ops-bot", .sub = "svc-ops" };
	struct server srv;
	struct env e;
	json_t *ev = NULL;
	pid_t raw;
	char *sid = NULL;

	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!ASSERT_OK(env__cgroup(&e, "bots/sw", cg_a, sizeof(cg_a)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup"))
		goto cleanup;
	if (!ASSERT_OK(mint(&ci, "swa"), "mint") || !ASSERT_OK(mint(&ops, "swb"), "mint"))
		goto cleanup;
	if (!ASSERT_TRUE(start_server(&e, cg_srv, "tickets", &srv), "server"))
		goto cleanup;
	/* The sender may be either client: only the switch is wrong. */
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"unattributed\":\"deny\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/bots/*\"}]},"
		 "{\"name\":\"ops-bot\",\"claims\":{\"client_id\":\"ops-bot\"},"
		 "\"workloads\":[{\"cgroup\":\"%s/bots/*\"}]}]}",
		 srv.port, e.cg_root, e.cg_root);
	if (!agent_start(&e, policy, enforce))
		goto cleanup;

	/*
	 * One TCP connection: a session as ci-bot, then a call as ops-bot.
	 * X-Seq makes every header block differ, so each request is judged
	 * (and reported) on its own rather than passed by the kernel's fast
	 * path for repeated header blocks, which emits no request event.
	 */
	snprintf(spec, sizeof(spec),
		 "{\"port\":%d,\"timeout_ms\":15000,\"auto_session\":true,\"requests\":["
		 "{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
		 "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
		 "\"clientInfo\":{\"name\":\"switcher\",\"version\":\"1.0\"}}}},"
		 "{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\","
		 "\"Mcp-Protocol-Version\":\"2025-11-25\",\"X-Seq\":\"2\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}},"
		 "{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\","
		 "\"Mcp-Protocol-Version\":\"2025-11-25\",\"X-Seq\":\"3\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{"
		 "\"name\":\"echo\",\"arguments\":{\"text\":\"mk-switch-a\"}}}},"
		 "{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\","
		 "\"Mcp-Protocol-Version\":\"2025-11-25\",\"X-Seq\":\"4\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{"
		 "\"name\":\"echo\",\"arguments\":{\"text\":\"mk-switch-b\"}}}}]}",
		 srv.port, ci.token, ci.token, ci.token, ops.token);
	raw = raw_start(&e, cg_a, "switch", spec, out, sizeof(out));
	if (!ASSERT_GE(raw, 1, "raw sender"))
		goto cleanup;
	if (enforce) {
		raw_cut_off(&e, raw, out, "identity_switch");
		ASSERT_TRUE(file_has(out, "\"responses\":3"), "identity_switch: the first three served");
		check_never_read(srv.record, "mk-switch-b", "identity_switch");
	} else {
		if (!ASSERT_EQ(env__wait(&e, raw, CLIENT_MS), 0, "monitor: all four answered"))
			show_file("raw", out);
		check_was_read(srv.record, "mk-switch-b", "identity_switch");
		ASSERT_EQ(record_count(srv.record, "tool", "mk-switch-b"), 1,
			  "identity_switch: tool ran (monitor)");
	}
	ASSERT_EQ(record_count(srv.record, "tool", "mk-switch-a"), 1, "the first identity's call ran");
	ASSERT_TRUE(allowed(&e, raw, "tools/call"), "the first identity's call allowed");

	snprintf(pidc, sizeof(pidc), "workload.pid=%d", raw);
	ev = env__find_event(&e, WAIT_MS, "kind=request", pidc, "request.method=initialize", NULL);
	if (ASSERT_OK_PTR(ev, "initialize allowed"))
		ASSERT_STREQ(env__str(ev, "client"), "ci-bot", "initialize as ci-bot");
	json_decref(ev);
	ev = env__find_event(&e, WAIT_MS, "kind=request", pidc, "request.method=tools/call", NULL);
	if (ASSERT_OK_PTR(ev, "first call allowed") && env__str(ev, "claim.session_id"))
		sid = strdup(env__str(ev, "claim.session_id"));
	json_decref(ev);
	ev = alert_of(&e, raw, "tools/call");
	if (ASSERT_OK_PTR(ev, "identity_switch alert")) {
		check_alert(ev, &(struct expect){ .verdict = "identity_switch", .enforce = enforce,
						  .client = "ops-bot", .pid = raw, .cgroup = cg_a,
						  .id = &ops, .ci_name = "switcher",
						  .method = "tools/call", .tool = "echo" });
		ASSERT_STREQ(env__str(ev, "claim.session_id"), sid,
			     "identity_switch: same session");
		ASSERT_STRSTR(env__str(ev, "reason"), "ci-bot", "identity_switch: reason names the first");
		ASSERT_STRSTR(env__str(ev, "reason"), "ops-bot", "identity_switch: and the second");
	}
	json_decref(ev);
	ev = NULL;
cleanup:
	dump_on_failure(&e);
	free(sid);
	json_decref(ev);
	env__cleanup(&e);
}

void test_judgment_identity_switch(void)
{
	test__set_timeout(180);
	if (test__start_subtest("enforce"))
		judge_identity_switch(true);
	if (test__start_subtest("monitor"))
		judge_identity_switch(false);
}
