// SPDX-License-Identifier: GPL-2.0
/*
 * Claim extraction end to end, in monitor mode (traffic is never changed):
 * real SDK clients and hand-crafted requests reach a real SDK server, and
 * every request event names exactly what the request claimed (bearer token
 * facts, clientInfo, session id, era) and who really sent it. The bearer
 * token itself never reaches the events.
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

/* ---- helpers ---------------------------------------------------------- */

/* Runs jwt.mjs with ARGS and reads the token it prints. */
static int mint(char *out, size_t len, const char *args)
{
	char cmd[2048];
	FILE *f;
	size_t n;

	snprintf(cmd, sizeof(cmd), "node '%s' %s", env__node_script("jwt.mjs"), args);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (!fgets(out, (int)len, f))
		out[0] = '\0';
	if (pclose(f) != 0)
		return -1;
	n = strlen(out);
	while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		out[--n] = '\0';
	return n ? 0 : -1;
}

/* Starts `node SCRIPT args...` in cgroup cg with stdout to out. */
static pid_t spawn_node(struct env *e, const char *cg, const char *out, const char *script,
			const char *const *args)
{
	char *argv[40];
	struct spawn_opts so = { .cgroup = cg, .stdout_path = out };
	int n = 0;

	argv[n++] = "node";
	argv[n++] = (char *)env__node_script(script);
	while (args && *args && n < 39)
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

/*
 * The recording MCP server in cgroup cg, on a free port (*port); a port
 * someone took meanwhile (the server exits at once) means another try.
 */
static pid_t start_server(struct env *e, const char *cg, const char *tag, bool modern, int *port,
			  char *record, size_t rlen)
{
	char portstr[16], out[512];
	int attempt;

	snprintf(record, rlen, "%s/%s.record.jsonl", e->tmp, tag);
	snprintf(out, sizeof(out), "%s/%s.server.out", e->tmp, tag);
	for (attempt = 0; attempt < 3; attempt++) {
		pid_t pid;
		int waited;

		*port = env__free_port();
		snprintf(portstr, sizeof(portstr), "%d", *port);
		pid = spawn_node(e, cg, out, "server.mjs",
				 (const char *[]){ "--port", portstr, "--record", record,
						   modern ? "--modern" : NULL, NULL });
		if (pid <= 0)
			return -1;
		for (waited = 0; waited < 45000; waited += 100) {
			if (file_has(out, "\"ready\":true"))
				return pid;
			if (env__wait(e, pid, 0) != -ETIMEDOUT)
				break;	/* exited: the port was taken */
			env__sleep_ms(100);
		}
		show_file("server output", out);
		if (waited >= 45000)
			return -1;
	}
	return -1;
}

/*
 * env__agent_start gives the agent 20 s to become ready; loading the BPF
 * programs on a loaded shared machine can take longer, so a slow start
 * gets another minute before it counts as a failure.
 */
static int agent_start_patient(struct env *e, const char *policy)
{
	int err = env__agent_start(e, policy, NULL);
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

/* A string field of the first client output line whose "step" is step. */
static char *client_field(const char *path, const char *step, const char *field)
{
	char *buf = env__slurp(path, NULL), *line, *save = NULL, *val = NULL;

	if (!buf)
		return NULL;
	for (line = strtok_r(buf, "\n", &save); line && !val; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *s = j ? json_string_value(json_object_get(j, "step")) : NULL;

		if (s && strcmp(s, step) == 0) {
			const char *v = json_string_value(json_object_get(j, field));

			val = v ? strdup(v) : NULL;
		}
		json_decref(j);
	}
	free(buf);
	return val;
}

/*
 * No event carries needle anywhere but in a command line (the sender's own
 * argv, reported as evidence).
 */
static bool events_lack(struct env *e, const char *needle)
{
	char *buf = env__slurp(e->agent.events_path, NULL), *line, *save = NULL;
	bool ok = buf != NULL;

	for (line = buf ? strtok_r(buf, "\n", &save) : NULL; line && ok;
	     line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		char *text;

		if (!j)
			continue;
		json_object_del(json_object_get(j, "workload"), "cmdline");
		json_object_del(json_object_get(j, "server_workload"), "cmdline");
		text = json_dumps(j, JSON_COMPACT);
		if (text && strstr(text, needle)) {
			test__log("leaked in: %s", text);
			ok = false;
		}
		free(text);
		json_decref(j);
	}
	free(buf);
	return ok;
}

static bool file_lacks(const char *path, const char *needle)
{
	char *s = env__slurp(path, NULL);
	bool ok = s && !strstr(s, needle);

	free(s);
	return ok;
}

struct jwt_ident {
	const char *iss, *sub, *client_id, *azp, *jti;
	char token[4096];
	char sha[65];
};

static int mint_ident(struct jwt_ident *id)
{
	char args[1024];

	snprintf(args, sizeof(args), "--iss '%s' --sub '%s' --client-id '%s' --azp '%s' --jti '%s' "
		 "--secret e2e-hmac-secret-of-at-least-32-bytes",
		 id->iss, id->sub, id->client_id, id->azp, id->jti);
	if (mint(id->token, sizeof(id->token), args))
		return -1;
	env__sha256_hex(id->token, id->sha);
	return 0;
}

/* Every JWT claim field, exact. */
static void assert_jwt_claim(json_t *ev, const struct jwt_ident *id, const char *what)
{
	char w[128];

	snprintf(w, sizeof(w), "%s: claim.client_id", what);
	ASSERT_STREQ(env__str(ev, "claim.client_id"), id->client_id, w);
	snprintf(w, sizeof(w), "%s: claim.sub", what);
	ASSERT_STREQ(env__str(ev, "claim.sub"), id->sub, w);
	snprintf(w, sizeof(w), "%s: claim.iss", what);
	ASSERT_STREQ(env__str(ev, "claim.iss"), id->iss, w);
	snprintf(w, sizeof(w), "%s: claim.azp", what);
	ASSERT_STREQ(env__str(ev, "claim.azp"), id->azp, w);
	snprintf(w, sizeof(w), "%s: claim.jti", what);
	ASSERT_STREQ(env__str(ev, "claim.jti"), id->jti, w);
	snprintf(w, sizeof(w), "%s: claim.token_sha256", what);
	ASSERT_STREQ(env__str(ev, "claim.token_sha256"), id->sha, w);
	snprintf(w, sizeof(w), "%s: claim.token_type", what);
	ASSERT_STREQ(env__str(ev, "claim.token_type"), "jwt", w);
}

static void assert_workload(json_t *ev, pid_t pid, const char *cg, const char *what)
{
	char w[128];

	snprintf(w, sizeof(w), "%s: workload.pid", what);
	ASSERT_EQ(env__int(ev, "workload.pid"), pid, w);
	snprintf(w, sizeof(w), "%s: workload.cgroup", what);
	ASSERT_STREQ(env__str(ev, "workload.cgroup"), cg, w);
	snprintf(w, sizeof(w), "%s: workload.exe", what);
	ASSERT_STREQ(env__str(ev, "workload.exe"), env__node_exe(), w);
	snprintf(w, sizeof(w), "%s: workload.attributed", what);
	ASSERT_TRUE(json_is_true(env__get(ev, "workload.attributed")), w);
}

/* ---- SDK client over Streamable HTTP ----------------------------------- */

/*
 * One agent, one server, several clients in two cgroups: a JWT client
 * (every claim field exact, clientInfo carried from initialize to later
 * requests), an opaque token, a malformed JWT, and a session the server
 * issued that another workload tries to use.
 */
void test_claims_http(void)
{
	char policy[4096], cg_a[256], cg_b[256], cg_srv[256], record[512], url[128];
	char out_a[512], out_opq[512], out_bad[512], out_own[512], out_thief[512], sidfile[512];
	char opaque[128], opaque_sha[65], bad_tok[256], bad_sha[65], pidbuf[32], sidcond[320];
	struct jwt_ident ci = { .iss = "https://auth.e2e.test", .sub = "svc-ci", .client_id = "ci-bot",
				.azp = "ci-azp" };
	struct jwt_ident ops = { .iss = "https://auth.e2e.test", .sub = "svc-ops",
				 .client_id = "ops-bot", .azp = "ops-azp" };
	char jti_ci[64], jti_ops[64];
	struct env e;
	json_t *ev = NULL;
	char *sid = NULL, *events = NULL;
	pid_t srv, cli;
	int port;

	test__set_timeout(180);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!ASSERT_TRUE(env__node_exe()[0] != '\0', "node found in PATH"))
		goto cleanup;
	if (!ASSERT_OK(env__cgroup(&e, "ci/a", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&e, "ops/b", cg_b, sizeof(cg_b)), "cgroup b") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup srv"))
		goto cleanup;
	/* The server listens before the agent starts; its connections come after. */
	srv = start_server(&e, cg_srv, "tickets", false, &port, record, sizeof(record));
	if (!ASSERT_GE(srv, 1, "server"))
		goto cleanup;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/mcp", port);

	snprintf(jti_ci, sizeof(jti_ci), "jti-ci-%d-%d", getpid(), rand() % 100000);
	snprintf(jti_ops, sizeof(jti_ops), "jti-ops-%d-%d", getpid(), rand() % 100000);
	ci.jti = jti_ci;
	ops.jti = jti_ops;
	if (!ASSERT_OK(mint_ident(&ci), "mint ci token") ||
	    !ASSERT_OK(mint_ident(&ops), "mint ops token"))
		goto cleanup;
	snprintf(opaque, sizeof(opaque), "opq_%d_%d_notajwt", getpid(), rand());
	env__sha256_hex(opaque, opaque_sha);
	/* Header and signature are fine; the payload has '*', not base64url. */
	snprintf(bad_tok, sizeof(bad_tok), "eyJhbGciOiJIUzI1NiJ9.eyJzdWIi*bad*base64.c2lnbmF0dXJl");
	env__sha256_hex(bad_tok, bad_sha);

	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"monitor\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"alert\",\"unattributed\":\"alert\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},\"workloads\":[{\"cgroup\":\"%s\"}]},"
		 "{\"name\":\"ops-bot\",\"claims\":{\"client_id\":\"ops-bot\"},\"workloads\":[{\"cgroup\":\"%s\"}]},"
		 "{\"name\":\"opaque-bot\",\"claims\":{\"token_sha256\":\"%s\"},\"workloads\":[{\"cgroup\":\"%s\"}]}]}",
		 port, cg_a, cg_b, opaque_sha, cg_a);
	if (!ASSERT_OK(agent_start_patient(&e, policy), "agent start"))
		goto cleanup;

	if (test__start_subtest("jwt")) {
		snprintf(out_a, sizeof(out_a), "%s/client-jwt.out", e.tmp);
		cli = spawn_node(&e, cg_a, out_a, "client.mjs",
				 (const char *[]){ "--url", url, "--token", ci.token, "--name", "ci-agent",
						   "--version", "3.1.4", "--tool", "echo", "--args",
						   "{\"text\":\"claims-jwt\"}", "--print-session",
						   "--no-get-stream", NULL });
		if (!ASSERT_EQ(env__wait(&e, cli, 60000), 0, "client exit (monitor: untouched)")) {
			show_file("client", out_a);
			goto jwt_done;
		}
		sid = client_field(out_a, "session", "sessionId");
		if (!ASSERT_OK_PTR(sid, "client printed its session id"))
			goto jwt_done;
		ASSERT_EQ(record_count(record, "tool", "claims-jwt"), 1, "tool ran");
		snprintf(pidbuf, sizeof(pidbuf), "workload.pid=%d", cli);

		ev = env__find_event(&e, WAIT_MS, pidbuf, "request.method=initialize", NULL);
		if (ASSERT_OK_PTR(ev, "initialize event")) {
			ASSERT_STREQ(env__str(ev, "kind"), "request", "initialize: kind");
			ASSERT_STREQ(env__str(ev, "verdict"), "allow", "initialize: verdict");
			ASSERT_STREQ(env__str(ev, "client"), "ci-bot", "initialize: client");
			assert_jwt_claim(ev, &ci, "initialize");
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "ci-agent", "initialize: name");
			ASSERT_STREQ(env__str(ev, "claim.client_info.version"), "3.1.4",
				     "initialize: version");
			ASSERT_NULL(env__get(ev, "claim.client_info.from_session"),
				    "initialize: clientInfo is its own");
			ASSERT_NULL(env__get(ev, "claim.session_id"), "initialize: no session yet");
			ASSERT_STREQ(env__str(ev, "request.method"), "initialize", "initialize: method");
			ASSERT_STREQ(env__str(ev, "request.http_method"), "POST", "initialize: POST");
			assert_workload(ev, cli, cg_a, "initialize");
		}
		json_decref(ev);

		snprintf(sidcond, sizeof(sidcond), "claim.session_id=%s", sid);
		ev = env__find_event(&e, WAIT_MS, "request.method=notifications/initialized",
				     sidcond, NULL);
		if (ASSERT_OK_PTR(ev, "notifications/initialized event")) {
			ASSERT_STREQ(env__str(ev, "kind"), "request", "initialized: kind");
			ASSERT_STREQ(env__str(ev, "verdict"), "allow", "initialized: verdict");
			ASSERT_STREQ(env__str(ev, "client"), "ci-bot", "initialized: client");
			assert_jwt_claim(ev, &ci, "initialized");
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "ci-agent",
				     "initialized: name from the session");
			ASSERT_STREQ(env__str(ev, "claim.client_info.version"), "3.1.4",
				     "initialized: version from the session");
			ASSERT_TRUE(json_is_true(env__get(ev, "claim.client_info.from_session")),
				    "initialized: from_session");
			ASSERT_STREQ(env__str(ev, "claim.session_id"), sid, "initialized: session id");
			ASSERT_STREQ(env__str(ev, "claim.protocol_version"), "2025-11-25",
				     "initialized: protocol version header");
			assert_workload(ev, cli, cg_a, "initialized");
		}
		json_decref(ev);

		ev = env__find_event(&e, WAIT_MS, "request.method=tools/call", "request.tool=echo",
				     sidcond, NULL);
		if (ASSERT_OK_PTR(ev, "tools/call event")) {
			ASSERT_STREQ(env__str(ev, "kind"), "request", "call: kind");
			ASSERT_STREQ(env__str(ev, "verdict"), "allow", "call: verdict");
			ASSERT_STREQ(env__str(ev, "client"), "ci-bot", "call: client");
			assert_jwt_claim(ev, &ci, "call");
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "ci-agent", "call: name");
			ASSERT_STREQ(env__str(ev, "claim.client_info.version"), "3.1.4", "call: version");
			ASSERT_TRUE(json_is_true(env__get(ev, "claim.client_info.from_session")),
				    "call: from_session");
			ASSERT_STREQ(env__str(ev, "claim.session_id"), sid, "call: session id");
			ASSERT_STREQ(env__str(ev, "request.tool"), "echo", "call: tool");
			ASSERT_STREQ(env__str(ev, "request.era"), "session", "call: era");
			ASSERT_STREQ(env__str(ev, "mode"), "monitor", "call: mode");
			assert_workload(ev, cli, cg_a, "call");
		}
		json_decref(ev);
		ev = NULL;
		ASSERT_EQ(env__count_events(&e, "kind=alert", pidbuf, NULL), 0, "no alert");
jwt_done:
		;
	}

	if (test__start_subtest("opaque_token")) {
		snprintf(out_opq, sizeof(out_opq), "%s/client-opaque.out", e.tmp);
		cli = spawn_node(&e, cg_a, out_opq, "client.mjs",
				 (const char *[]){ "--url", url, "--token", opaque, "--name", "opaque-agent",
						   "--version", "0.9", "--tool", "echo", "--args",
						   "{\"text\":\"claims-opaque\"}", "--no-get-stream", NULL });
		if (!ASSERT_EQ(env__wait(&e, cli, 60000), 0, "client exit")) {
			show_file("client", out_opq);
			goto opaque_done;
		}
		snprintf(pidbuf, sizeof(pidbuf), "workload.pid=%d", cli);
		ev = env__find_event(&e, WAIT_MS, pidbuf, "request.method=tools/call", NULL);
		if (ASSERT_OK_PTR(ev, "tools/call event")) {
			ASSERT_STREQ(env__str(ev, "kind"), "request", "kind");
			ASSERT_STREQ(env__str(ev, "verdict"), "allow", "verdict");
			ASSERT_STREQ(env__str(ev, "client"), "opaque-bot", "client (by token_sha256)");
			ASSERT_STREQ(env__str(ev, "claim.token_type"), "opaque", "token_type");
			ASSERT_STREQ(env__str(ev, "claim.token_sha256"), opaque_sha, "token_sha256");
			ASSERT_NULL(env__get(ev, "claim.client_id"), "no client_id");
			ASSERT_NULL(env__get(ev, "claim.sub"), "no sub");
			/* Not reported as a broken JWT ("not_jwt" merely says what it is). */
			ASSERT_TRUE(!env__str(ev, "claim.token_error") ||
				    strcmp(env__str(ev, "claim.token_error"), "not_jwt") == 0,
				    "token_error absent or not_jwt");
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "opaque-agent", "name");
			ASSERT_STREQ(env__str(ev, "request.tool"), "echo", "tool");
			assert_workload(ev, cli, cg_a, "opaque");
		}
		json_decref(ev);
		ev = NULL;
		ASSERT_EQ(record_count(record, "tool", "claims-opaque"), 1, "tool ran");
opaque_done:
		;
	}

	if (test__start_subtest("malformed_jwt")) {
		snprintf(out_bad, sizeof(out_bad), "%s/client-bad.out", e.tmp);
		cli = spawn_node(&e, cg_a, out_bad, "client.mjs",
				 (const char *[]){ "--url", url, "--token", bad_tok, "--name", "bad-agent",
						   "--tool", "echo", "--args",
						   "{\"text\":\"claims-badjwt\"}", "--no-get-stream", NULL });
		if (!ASSERT_EQ(env__wait(&e, cli, 60000), 0, "client exit (monitor: untouched)")) {
			show_file("client", out_bad);
			goto bad_done;
		}
		snprintf(pidbuf, sizeof(pidbuf), "workload.pid=%d", cli);
		ev = env__find_event(&e, WAIT_MS, pidbuf, "request.method=tools/call", NULL);
		if (ASSERT_OK_PTR(ev, "tools/call event")) {
			ASSERT_STREQ(env__str(ev, "claim.token_error"), "bad_base64", "token_error");
			ASSERT_STREQ(env__str(ev, "claim.token_sha256"), bad_sha, "token_sha256");
			ASSERT_NULL(env__get(ev, "claim.client_id"), "no client_id");
			ASSERT_NULL(env__get(ev, "claim.sub"), "no sub");
			/* No identity a policy client could match: unknown, alerted only. */
			ASSERT_STREQ(env__str(ev, "kind"), "alert", "kind");
			ASSERT_STREQ(env__str(ev, "verdict"), "unknown_client", "verdict");
			ASSERT_STREQ(env__str(ev, "action"), "alerted", "action");
			assert_workload(ev, cli, cg_a, "malformed jwt");
		}
		json_decref(ev);
		ev = NULL;
		ASSERT_EQ(record_count(record, "tool", "claims-badjwt"), 1, "tool ran (monitor)");
bad_done:
		;
	}

	if (test__start_subtest("session_binding")) {
		pid_t owner, thief;
		char *stolen = NULL;

		snprintf(out_own, sizeof(out_own), "%s/client-owner.out", e.tmp);
		snprintf(out_thief, sizeof(out_thief), "%s/client-thief.out", e.tmp);
		snprintf(sidfile, sizeof(sidfile), "%s/owner.sid", e.tmp);
		/* The owner keeps its session (and GET stream) alive meanwhile. */
		owner = spawn_node(&e, cg_a, out_own, "client.mjs",
				   (const char *[]){ "--url", url, "--token", ci.token, "--name",
						     "owner-agent", "--version", "1.2", "--tool", "echo",
						     "--args", "{\"text\":\"claims-owner\"}", "--calls", "2",
						     "--session-file", sidfile, "--hold-s", "30", NULL });
		if (!ASSERT_GE(owner, 1, "owner") ||
		    !ASSERT_TRUE(env__wait_file(out_own, "\"i\":2", 60000), "owner made its calls")) {
			show_file("owner", out_own);
			goto session_done;
		}
		stolen = env__slurp(sidfile, NULL);
		if (!ASSERT_OK_PTR(stolen, "session file"))
			goto session_done;
		stolen[strcspn(stolen, "\r\n")] = '\0';
		snprintf(sidcond, sizeof(sidcond), "claim.session_id=%s", stolen);
		snprintf(pidbuf, sizeof(pidbuf), "workload.pid=%d", owner);
		/* Later requests of the owner carry the server-issued session
		 * (events may lag the server's answers: wait for both). */
		for (int waited = 0; waited < WAIT_MS; waited += 100) {
			if (env__count_events(&e, "kind=request", pidbuf, "request.method=tools/call",
					      sidcond, "claim.client_info.name=owner-agent", NULL) >= 2)
				break;
			env__sleep_ms(100);
		}
		ASSERT_EQ(env__count_events(&e, "kind=request", pidbuf, "request.method=tools/call",
					    sidcond, "claim.client_info.name=owner-agent", NULL), 2,
			  "owner's calls carry its session id and clientInfo");

		thief = spawn_node(&e, cg_b, out_thief, "client.mjs",
				   (const char *[]){ "--url", url, "--token", ops.token, "--session-id",
						     stolen, "--tool", "echo", "--args",
						     "{\"text\":\"claims-thief\"}", NULL });
		if (!ASSERT_EQ(env__wait(&e, thief, 60000), 0, "thief exit (monitor: untouched)"))
			show_file("thief", out_thief);
		ASSERT_EQ(record_count(record, "tool", "claims-thief"), 1,
			  "monitor: the stolen session reached the server");
		snprintf(pidbuf, sizeof(pidbuf), "workload.pid=%d", thief);
		ev = env__find_event(&e, WAIT_MS, "kind=alert", pidbuf, "request.method=tools/call",
				     NULL);
		if (ASSERT_OK_PTR(ev, "thief's alert")) {
			ASSERT_STREQ(env__str(ev, "verdict"), "session_hijack", "verdict");
			ASSERT_STREQ(env__str(ev, "action"), "alerted", "action (monitor)");
			ASSERT_STREQ(env__str(ev, "client"), "ops-bot", "client");
			ASSERT_STREQ(env__str(ev, "claim.session_id"), stolen, "claim.session_id");
			assert_jwt_claim(ev, &ops, "thief");
			ASSERT_STREQ(env__str(ev, "request.tool"), "echo", "tool");
			assert_workload(ev, thief, cg_b, "thief");
			ASSERT_STREQ(env__str(ev, "related.session_owner.cgroup"), cg_a,
				     "owner = the workload the server issued it to");
			ASSERT_EQ(env__int(ev, "related.session_owner.pid"), owner, "owner pid");
			ASSERT_TRUE(json_is_true(env__get(ev, "related.issued_by_server")),
				    "bound when the server issued it");
			ASSERT_TRUE(env__str(ev, "reason") && *env__str(ev, "reason"), "reason");
		}
		json_decref(ev);
		ev = NULL;
		env__kill(&e, owner);
session_done:
		free(stolen);
	}

	/*
	 * The bearer tokens never appear in what the agent writes. client.mjs
	 * takes its token on the command line, which the agent reports as
	 * evidence (workload.cmdline): everything else must lack it. A token
	 * that is in no command line (raw.mjs reads it from a spec file) is
	 * nowhere at all in the events or the agent's log.
	 */
	if (test__start_subtest("no_token_in_events")) {
		struct jwt_ident hidden = ci;
		char jti_hidden[64], specpath[512], out_raw[512], spec[8192], jticond[128];

		snprintf(jti_hidden, sizeof(jti_hidden), "jti-hidden-%d-%d", getpid(), rand() % 100000);
		hidden.jti = jti_hidden;
		if (!ASSERT_OK(mint_ident(&hidden), "mint hidden token"))
			goto leak_done;
		snprintf(spec, sizeof(spec),
			 "{\"port\":%d,\"timeout_ms\":15000,\"requests\":[{\"method\":\"POST\","
			 "\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\"},"
			 "\"body\":{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
			 "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
			 "\"clientInfo\":{\"name\":\"hidden-agent\",\"version\":\"1\"}}}}]}",
			 port, hidden.token);
		snprintf(specpath, sizeof(specpath), "%s/hidden.spec.json", e.tmp);
		snprintf(out_raw, sizeof(out_raw), "%s/raw-hidden.out", e.tmp);
		if (!ASSERT_OK(env__write(specpath, spec, strlen(spec)), "spec file"))
			goto leak_done;
		cli = spawn_node(&e, cg_a, out_raw, "raw.mjs", (const char *[]){ specpath, NULL });
		if (!ASSERT_EQ(env__wait(&e, cli, 60000), 0, "raw initialize answered"))
			show_file("raw", out_raw);
		snprintf(jticond, sizeof(jticond), "claim.jti=%s", jti_hidden);
		ev = env__find_event(&e, WAIT_MS, "kind=request", jticond, NULL);
		if (ASSERT_OK_PTR(ev, "the hidden token's request was judged"))
			ASSERT_STREQ(env__str(ev, "claim.token_sha256"), hidden.sha, "its sha256");
		json_decref(ev);
		ev = NULL;
		env__agent_stop(&e);	/* everything it will write is written */

		events = env__slurp(e.agent.events_path, NULL);
		if (ASSERT_OK_PTR(events, "events file")) {
			ASSERT_FALSE(strstr(events, hidden.token), "hidden token absent from events");
			ASSERT_FALSE(strstr(events, strrchr(hidden.token, '.') + 1),
				     "hidden token's signature absent from events");
		}
		ASSERT_TRUE(file_lacks(e.agent.log_path, hidden.token), "hidden token absent from the log");
		ASSERT_TRUE(events_lack(&e, ci.token), "ci token only in the sender's cmdline");
		ASSERT_TRUE(events_lack(&e, ops.token), "ops token only in the sender's cmdline");
		ASSERT_TRUE(events_lack(&e, opaque), "opaque token only in the sender's cmdline");
		ASSERT_TRUE(events_lack(&e, bad_tok), "malformed token only in the sender's cmdline");
		ASSERT_TRUE(events_lack(&e, strrchr(ci.token, '.') + 1),
			    "ci signature only in the sender's cmdline");
leak_done:
		;
	}
cleanup:
	free(sid);
	free(events);
	json_decref(ev);
	env__cleanup(&e);
}

/* ---- 2026-07-28 era, hand-crafted -------------------------------------- */

static const char *modern_spec(char *buf, size_t len, int port, const char *token,
			       const char *mcp_name, const char *text)
{
	snprintf(buf, len,
		 "{\"port\":%d,\"timeout_ms\":15000,\"requests\":[{\"method\":\"POST\",\"path\":\"/mcp\","
		 "\"headers\":{\"Authorization\":\"Bearer %s\",\"Mcp-Protocol-Version\":\"2026-07-28\","
		 "\"Mcp-Method\":\"tools/call\",\"Mcp-Name\":\"%s\"},"
		 "\"body\":{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{"
		 "\"name\":\"echo\",\"arguments\":{\"text\":\"%s\"},\"_meta\":{"
		 "\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
		 "\"io.modelcontextprotocol/clientInfo\":{\"name\":\"ci-modern\",\"version\":\"2.0.0\"},"
		 "\"io.modelcontextprotocol/clientCapabilities\":{}}}}}]}",
		 port, token, mcp_name, text);
	return buf;
}

void test_claims_modern(void)
{
	char policy[2048], cg_a[256], cg_srv[256], record[512], spec[8192], out[512], pidbuf[32];
	struct jwt_ident ci = { .iss = "https://auth.e2e.test", .sub = "svc-ci", .client_id = "ci-bot",
				.azp = "ci-azp" };
	char jti[64];
	struct env e;
	json_t *ev = NULL;
	pid_t srv, cli;
	int port;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!ASSERT_OK(env__cgroup(&e, "ci/modern", cg_a, sizeof(cg_a)), "cgroup a") ||
	    !ASSERT_OK(env__cgroup(&e, "srv", cg_srv, sizeof(cg_srv)), "cgroup srv"))
		goto cleanup;
	srv = start_server(&e, cg_srv, "modern", true, &port, record, sizeof(record));
	if (!ASSERT_GE(srv, 1, "server --modern"))
		goto cleanup;
	snprintf(jti, sizeof(jti), "jti-modern-%d-%d", getpid(), rand() % 100000);
	ci.jti = jti;
	if (!ASSERT_OK(mint_ident(&ci), "mint token"))
		goto cleanup;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"monitor\",\"servers\":[{\"name\":\"tickets\",\"port\":%d}],"
		 "\"unknown_client\":\"alert\",\"unattributed\":\"alert\",\"clients\":["
		 "{\"name\":\"ci-bot\",\"claims\":{\"client_id\":\"ci-bot\"},\"workloads\":[{\"cgroup\":\"%s\"}]}]}",
		 port, cg_a);
	if (!ASSERT_OK(agent_start_patient(&e, policy), "agent start"))
		goto cleanup;

	if (test__start_subtest("era_2026")) {
		snprintf(out, sizeof(out), "%s/raw-modern.out", e.tmp);
		modern_spec(spec, sizeof(spec), port, ci.token, "echo", "modern-ok");
		cli = spawn_node(&e, cg_a, out, "raw.mjs", (const char *[]){ spec, NULL });
		if (!ASSERT_EQ(env__wait(&e, cli, 60000), 0, "raw client got its response"))
			show_file("raw", out);
		ASSERT_EQ(record_count(record, "tool", "modern-ok"), 1, "tool ran");
		snprintf(pidbuf, sizeof(pidbuf), "workload.pid=%d", cli);
		ev = env__find_event(&e, WAIT_MS, pidbuf, "request.method=tools/call", NULL);
		if (ASSERT_OK_PTR(ev, "request event")) {
			ASSERT_STREQ(env__str(ev, "kind"), "request", "kind");
			ASSERT_STREQ(env__str(ev, "verdict"), "allow", "verdict");
			ASSERT_STREQ(env__str(ev, "client"), "ci-bot", "client");
			ASSERT_STREQ(env__str(ev, "request.era"), "2026-07-28+", "era");
			ASSERT_STREQ(env__str(ev, "request.tool"), "echo", "tool");
			ASSERT_EQ(env__int(ev, "request.id"), 7, "id");
			ASSERT_STREQ(env__str(ev, "claim.client_info.name"), "ci-modern",
				     "clientInfo from _meta");
			ASSERT_STREQ(env__str(ev, "claim.client_info.version"), "2.0.0",
				     "clientInfo version from _meta");
			ASSERT_NULL(env__get(ev, "claim.client_info.from_session"), "not from a session");
			ASSERT_NULL(env__get(ev, "claim.session_id"), "no session in this era");
			ASSERT_STREQ(env__str(ev, "claim.protocol_version"), "2026-07-28",
				     "protocol_version");
			assert_jwt_claim(ev, &ci, "modern");
			assert_workload(ev, cli, cg_a, "modern");
		}
		json_decref(ev);
		ev = NULL;
	}

	if (test__start_subtest("mcp_name_mismatch")) {
		snprintf(out, sizeof(out), "%s/raw-mismatch.out", e.tmp);
		modern_spec(spec, sizeof(spec), port, ci.token, "search_tickets", "modern-liar");
		cli = spawn_node(&e, cg_a, out, "raw.mjs", (const char *[]){ spec, NULL });
		/* Monitor mode: whatever the server answers, the bytes reached it. */
		ASSERT_GE(env__wait(&e, cli, 60000), 0, "raw client finished");
		ASSERT_EQ(record_count(record, "http", "modern-liar"), 1,
			  "monitor: the server read the request");
		snprintf(pidbuf, sizeof(pidbuf), "workload.pid=%d", cli);
		ev = env__find_event(&e, WAIT_MS, pidbuf, "kind=alert", NULL);
		if (ASSERT_OK_PTR(ev, "alert")) {
			ASSERT_STREQ(env__str(ev, "verdict"), "malformed", "verdict");
			ASSERT_STREQ(env__str(ev, "action"), "alerted", "action (monitor)");
			ASSERT_STRSTR(env__str(ev, "reason"), "Mcp-Name", "reason names the header");
			ASSERT_STRSTR(env__str(ev, "reason"), "search_tickets", "reason: header value");
			ASSERT_STRSTR(env__str(ev, "reason"), "echo", "reason: body's tool");
			assert_workload(ev, cli, cg_a, "mismatch");
		}
		json_decref(ev);
		ev = NULL;
		ASSERT_EQ(env__count_events(&e, "kind=request", pidbuf, NULL), 0,
			  "no allow for the lying request");
	}
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}
