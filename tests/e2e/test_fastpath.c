// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel fast path of a judged connection: a later request whose header
 * block is the judged one's (but for Content-Length) passes without the
 * daemon; the first request that differs is held and judged as usual, and
 * the daemon picks the stream up again exactly there; a request carrying
 * another identity is still an identity_switch.
 */
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "harness.h"

#define TOKEN_A "fast-token-a"

static int run_raw(struct env *e, const char *cg, const char *spec, const char *out)
{
	char script[PATH_MAX], specpath[600];
	struct spawn_opts so = { .cgroup = cg, .stdout_path = out };
	pid_t pid;

	snprintf(script, sizeof(script), "%s/raw.mjs", env__node_dir());
	snprintf(specpath, sizeof(specpath), "%s/spec-%d.json", e->tmp, rand());
	env__write(specpath, spec, strlen(spec));
	pid = env__spawn(e, &so, (char *[]){ "node", script, specpath, NULL });
	return env__wait(e, pid, 30000);
}

/* An integer of `mcpwarden status`: member name of object obj (NULL: the
 * top level). */
static long long status_int(struct env *e, const char *obj, const char *name)
{
	char dotted[128];

	snprintf(dotted, sizeof(dotted), "%s%s%s", obj ? obj : "", obj ? "." : "", name);
	return env__status_int(e, dotted);
}

static long long status_counter(struct env *e, const char *name)
{
	return status_int(e, "kernel_counters", name);
}

/* A member of the status's "reuse" object (repeated work the caches saved). */
static long long status_reuse(struct env *e, const char *name)
{
	return status_int(e, "reuse", name);
}

static int count_lines(struct env *e, const char *a, const char *b);

/* The request event of id: passed in the kernel or not, and (field NULL:
 * nothing more) with field = want. */
static void check_request(struct env *e, const char *id, bool fast, const char *field,
			  const char *want)
{
	char cond[64];
	json_t *ev;

	snprintf(cond, sizeof(cond), "request.id=%s", id);
	ev = env__find_event(e, 3000, "kind=request", cond, NULL);
	if (ASSERT_OK_PTR(ev, id)) {
		ASSERT_EQ(json_is_true(env__get(ev, "fast_path")), fast, "passed in the kernel");
		if (field)
			ASSERT_STREQ(env__str(ev, field), want, field);
	}
	json_decref(ev);
}

/* Request id was blocked as verdict, and its text never reached the
 * server (its record rec). */
static void check_refused(struct env *e, const char *id, const char *verdict, const char *rec,
			  const char *text)
{
	char want[64], cond[64];
	json_t *ev;

	snprintf(want, sizeof(want), "verdict=%s", verdict);
	snprintf(cond, sizeof(cond), "request.id=%s", id);
	ev = env__find_event(e, 5000, "kind=alert", want, cond, NULL);
	if (ASSERT_OK_PTR(ev, verdict))
		ASSERT_STREQ(env__str(ev, "action"), "blocked", "blocked");
	json_decref(ev);
	ASSERT_FALSE(env__wait_file(rec, text, 1000), "never reached the server");
}

/*
 * A raw.mjs request (into buf) whose Authorization header comes before its
 * Content-Length (given by hand: raw.mjs adds its own after the headers it
 * adds, and before the test's).
 */
static void call_token_first(char *buf, size_t len, int id, const char *token, const char *text)
{
	char body[512];
	int n = snprintf(body, sizeof(body), "{\\\"jsonrpc\\\":\\\"2.0\\\",\\\"id\\\":%d,\\\"method\\\":"
			 "\\\"tools/call\\\",\\\"params\\\":{\\\"name\\\":\\\"echo\\\",\\\"arguments\\\":"
			 "{\\\"text\\\":\\\"%s\\\"}}}", id, text);
	int backslashes = 0, i;

	for (i = 0; i < n; i++)
		backslashes += body[i] == '\\';
	snprintf(buf, len, "{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":["
		 "[\"Authorization\",\"Bearer %s\"],[\"Content-Length\",\"%d\"],"
		 "[\"User-Agent\",\"ua-o\"],[\"MCP-Protocol-Version\",\"2025-11-25\"]],"
		 "\"body\":\"%s\"}", token, n - backslashes, body);
}

#define TOKEN_B "fast-token-b"

/*
 * Clients a (TOKEN_A) and b (claims b_claims, a JSON object; NULL: TOKEN_B),
 * both from cgroup cg_c, no tool limits (with b by TOKEN_B, no clientInfo
 * claims either: the fast path applies), the agent, and the SDK test
 * server recording tool calls to rec. The port, or 0 when something
 * failed (asserted).
 */
static int start_two_clients(struct env *e, const char *b_claims, char *cg_c, size_t cglen,
			     char *rec, size_t reclen)
{
	char policy[1024], cg_s[256], sha_a[65], sha_b[65], by_token[128];
	int port = env__free_port();

	env__sha256_hex(TOKEN_A, sha_a);
	env__sha256_hex(TOKEN_B, sha_b);
	snprintf(by_token, sizeof(by_token), "{\"token_sha256\":\"%s\"}", sha_b);
	if (!ASSERT_OK(env__cgroup(e, "c", cg_c, cglen), "cgroup") ||
	    !ASSERT_OK(env__cgroup(e, "s", cg_s, sizeof(cg_s)), "cgroup"))
		return 0;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"t\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"clients\":["
		 "{\"name\":\"a\",\"claims\":{\"token_sha256\":\"%s\"},\"workloads\":[{\"cgroup\":\"%s\"}]},"
		 "{\"name\":\"b\",\"claims\":%s,\"workloads\":[{\"cgroup\":\"%s\"}]}]}",
		 port, sha_a, cg_c, b_claims ? b_claims : by_token, cg_c);
	if (!ASSERT_OK(env__agent_start(e, policy, NULL), "agent") ||
	    !ASSERT_OK(env__json_server(e, cg_s, port, rec, reclen), "server"))
		return 0;
	return port;
}

void test_fastpath_resync(void)
{
	char cg_c[256], spec[4096], out[600], rec[600];
	struct env e;
	json_t *ev = NULL;
	long long fast0;
	int port;

	test__set_timeout(180);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_two_clients(&e, NULL, cg_c, sizeof(cg_c), rec, sizeof(rec))))
		goto cleanup;
	fast0 = status_counter(&e, "fast_path_requests");

	if (test__start_subtest("miss_then_resync")) {
		/* 1 judged; 2 fast; 3 differs (User-Agent): held, judged,
		 * released; 4 fast again on 3's template. */
/* A raw.mjs request: an echo of text with token tok; more: spec members. */
#define REQ(tok, id, ua, text, more) \
	"{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer " tok "\"," \
	"\"User-Agent\":\"" ua "\",\"MCP-Protocol-Version\":\"2025-11-25\"},\"body\":{\"jsonrpc\":\"2.0\"," \
	"\"id\":" #id ",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"" text \
	"\"}}}" more "}"
#define CALL(id, ua, text) REQ(TOKEN_A, id, ua, text, "")
		snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[%s,%s,%s,%s]}",
			 port, CALL(1, "ua-1", "one"), CALL(2, "ua-1", "second-longer"),
			 CALL(3, "ua-2", "three"), CALL(4, "ua-2", "fourth-longer-still"));
		snprintf(out, sizeof(out), "%s/raw1.out", e.tmp);
		ASSERT_EQ(run_raw(&e, cg_c, spec, out), 0, "all four answered on one connection");
		ASSERT_TRUE(env__wait_file(rec, "fourth-longer-still", 3000), "the server got all four");
		ASSERT_GE(status_counter(&e, "fast_path_requests") - fast0, 2, "two passed in the kernel");
		ev = env__find_event(&e, 3000, "kind=request", "request.id=3", NULL);
		ASSERT_OK_PTR(ev, "the request that differed was judged by the daemon");
		json_decref(ev);
		ev = NULL;
		/* Not waited on, still recorded. */
		ev = env__find_event(&e, 3000, "kind=request", "request.id=2", NULL);
		if (ASSERT_OK_PTR(ev, "the fast-path request has its event")) {
			ASSERT_TRUE(json_is_true(env__get(ev, "fast_path")), "marked fast_path");
			ASSERT_STREQ(env__str(ev, "request.tool"), "echo", "tool read from the copy");
			ASSERT_EQ(env__get(ev, "verdict_latency_us") == NULL, 1,
				  "no verdict latency: it did not wait");
		}
		json_decref(ev);
		ev = NULL;
		ev = env__find_event(&e, 3000, "kind=request", "request.id=3", NULL);
		ASSERT_FALSE(json_is_true(env__get(ev, "fast_path")), "request 3 was held and judged");
		json_decref(ev);
		ev = NULL;
	}
	if (test__start_subtest("heads_reused")) {
		/* 31 judged; 32 fast, its head kept; 33, 1234 and the broken
		 * body fast with the kept head and other Content-Lengths (read
		 * without parsing the head again); 36 held again: the broken
		 * body dropped the connection's template. */
		long long reused0 = status_reuse(&e, "fast_heads_reused");
		char c36[1024];

		/* Sent once the daemon has read the broken one. */
		snprintf(c36, sizeof(c36), "{\"pause_before_ms\":1500,%s", CALL(36, "ua-1", "after") + 1);

		snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":["
			 "%s,%s,%s,%s,{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{"
			 "\"Authorization\":\"Bearer " TOKEN_A "\",\"User-Agent\":\"ua-1\","
			 "\"MCP-Protocol-Version\":\"2025-11-25\"},\"body\":\"{\\\"jsonrpc\\\":"
			 "\\\"2.0\\\",\\\"id\\\":35,\"},%s]}",
			 port, CALL(31, "ua-1", "x"), CALL(32, "ua-1", "a-longer-text"),
			 CALL(33, "ua-1", "yet-another-text-longer"), CALL(1234, "ua-1", "t"),
			 c36);
		snprintf(out, sizeof(out), "%s/raw3.out", e.tmp);
		ASSERT_EQ(run_raw(&e, cg_c, spec, out), 0, "all six answered on one connection");
		ASSERT_TRUE(env__wait_file(rec, "after", 3000), "the server got the last one");
		check_request(&e, "33", true, "request.tool", "echo");
		check_request(&e, "1234", true, "request.method", "tools/call");
		ev = env__find_event(&e, 3000, "kind=alert", "verdict=malformed", NULL);
		if (ASSERT_OK_PTR(ev, "the broken body is reported")) {
			ASSERT_TRUE(json_is_true(env__get(ev, "fast_path")), "it had passed in the kernel");
			ASSERT_STREQ(env__str(ev, "action"), "alerted", "alerted, not blocked");
		}
		json_decref(ev);
		ev = NULL;
		check_request(&e, "36", false, NULL, NULL);	/* held and judged again */
		ASSERT_GE(status_reuse(&e, "fast_heads_reused") - reused0, 3,
			  "33, 1234 and the broken one read with the kept head");
	}
	if (test__start_subtest("bodies_reused")) {
		/* 61 judged; 61 again fast, its head kept; 61 fast with the
		 * kept head, its body parsed and kept; 61 fast, the kept parse
		 * reused; 62 fast, a body of the same length that differs
		 * (parsed, not taken for 61's); 62 again, 62's parse reused. */
		long long bodies0 = status_reuse(&e, "fast_bodies_reused");
		long long repeated0 = status_reuse(&e, "judgments_repeated");

		snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":["
			 "%s,%s,%s,%s,%s,%s]}", port,
			 CALL(61, "ua-3", "same"), CALL(61, "ua-3", "same"), CALL(61, "ua-3", "same"),
			 CALL(61, "ua-3", "same"), CALL(62, "ua-3", "same"), CALL(62, "ua-3", "same"));
		snprintf(out, sizeof(out), "%s/raw-bodies.out", e.tmp);
		ASSERT_EQ(run_raw(&e, cg_c, spec, out), 0, "all six answered on one connection");
		ev = env__find_event(&e, 3000, "kind=request", "request.id=62", "fast_path=true", NULL);
		ASSERT_OK_PTR(ev, "62 passed in the kernel and reported");
		json_decref(ev);
		ev = NULL;
		usleep(300 * 1000);	/* the second 62's record */
		ASSERT_EQ(env__count_events(&e, "kind=request", "request.id=61", NULL), 4,
			  "four requests reported as 61");
		ASSERT_EQ(env__count_events(&e, "kind=request", "request.id=62", "fast_path=true",
					    "request.tool=echo", NULL), 2,
			  "both 62s reported as 62, passed in the kernel");
		ASSERT_EQ(env__count_events(&e, "kind=alert", "request.id=62", NULL), 0,
			  "no alert for 62");
		ASSERT_EQ(status_reuse(&e, "fast_bodies_reused") - bodies0, 2,
			  "the fourth 61 and the second 62 were not parsed again");
		/* The third 61 made the connection's memo (decider.h), the
		 * rest repeat it: same head, same identity. */
		ASSERT_GE(status_reuse(&e, "judgments_repeated") - repeated0, 3,
			  "the fourth 61 and both 62s were not judged in full again");
	}
	if (test__start_subtest("held_again_after_bulk")) {
		/* 41 judged (small: a large first request is held whole); 42-53
		 * fast, 220 kB each: more than a connection may hold (2 MiB)
		 * passed in the kernel since the last release, even if 42 came
		 * before 41's template was in. 54 differs: held and judged, not
		 * taken for too many held bytes; 55 fast again. */
		size_t big = 220 * 1000, cap = 16 * big, at;
		char *bulk = malloc(cap), *text = malloc(big + 1);
		long long fast1 = status_counter(&e, "fast_path_requests");
		int id;

		if (!ASSERT_OK_PTR(bulk, "alloc") || !ASSERT_OK_PTR(text, "alloc")) {
			free(bulk);
			free(text);
			goto cleanup;
		}
		memset(text, 'b', big);
		text[big] = '\0';
		at = snprintf(bulk, cap, "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[", port);
		for (id = 41; id <= 55; id++)
			at += snprintf(bulk + at, cap - at, "%s{\"method\":\"POST\",\"path\":\"/mcp\","
				       "\"headers\":{\"Authorization\":\"Bearer " TOKEN_A "\","
				       "\"User-Agent\":\"%s\",\"MCP-Protocol-Version\":\"2025-11-25\"},"
				       "\"body\":{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\","
				       "\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"%s%d\"}}}}",
				       id > 41 ? "," : "", id >= 54 ? "ua-3" : "ua-1", id,
				       id > 41 && id < 54 ? text : "after-bulk-", id);
		snprintf(bulk + at, cap - at, "]}");
		snprintf(out, sizeof(out), "%s/raw4.out", e.tmp);
		ASSERT_EQ(run_raw(&e, cg_c, bulk, out), 0, "all fifteen answered on one connection");
		free(bulk);
		free(text);
		ASSERT_TRUE(env__wait_file(rec, "after-bulk-55", 3000), "the server got the last one");
		/* The bulk requests' events carry no id: their bodies were not read. */
		ASSERT_GE(status_counter(&e, "fast_path_requests") - fast1, 12, "43-53 and 55 fast");
		check_request(&e, "54", false, NULL, NULL);
		check_request(&e, "55", true, NULL, NULL);
		ASSERT_EQ(count_lines(&e, "over_limit", ""), 0, "no connection taken for holding too much");
	}
	if (test__start_subtest("identity_switch_on_fast_connection")) {
		snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[%s,%s,%s]}",
			 port, CALL(7, "ua-1", "first"), CALL(8, "ua-1", "second"),
			 REQ(TOKEN_B, 9, "ua-1", "switched", ""));
		snprintf(out, sizeof(out), "%s/raw2.out", e.tmp);
		ASSERT_NEQ(run_raw(&e, cg_c, spec, out), 0, "the switched request got no answer");
		check_refused(&e, "9", "identity_switch", rec, "switched");
	}
	if (test__start_subtest("pipelined_behind_a_fast_request")) {
		/* 61 judged, 62 fast; then 63 (the same head) and, in the
		 * same write, a request with token b: one segment. The kernel
		 * passes a segment only when it holds one fast request and no
		 * more: this one is held, 63 released and the other refused. */
		snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[%s,%s,%s,%s]}",
			 port, CALL(61, "ua-p", "p-one"), CALL(62, "ua-p", "p-two"),
			 CALL(63, "ua-p", "p-three"),
			 REQ(TOKEN_B, 64, "ua-p", "joined-switch", ",\"joined\":true"));
		snprintf(out, sizeof(out), "%s/raw3.out", e.tmp);
		ASSERT_NEQ(run_raw(&e, cg_c, spec, out), 0, "the joined request got no answer");
		ASSERT_TRUE(env__wait_file(rec, "p-three", 3000), "the request before it served");
		check_refused(&e, "64", "identity_switch", rec, "joined-switch");
	}
	if (test__start_subtest("token_before_content_length")) {
		/* The template covers the header block before the
		 * Content-Length digits too: here the token is there. */
		char r1[1024], r2[1024], r3[1024];

		call_token_first(r1, sizeof(r1), 71, TOKEN_A, "cl-one");
		call_token_first(r2, sizeof(r2), 72, TOKEN_A, "cl-two");
		call_token_first(r3, sizeof(r3), 73, TOKEN_B, "cl-switch");
		snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[%s,%s,%s]}",
			 port, r1, r2, r3);
		snprintf(out, sizeof(out), "%s/raw4.out", e.tmp);
		ASSERT_NEQ(run_raw(&e, cg_c, spec, out), 0, "the switched request got no answer");
		check_request(&e, "72", true, NULL, NULL);
		ASSERT_TRUE(env__wait_file(rec, "cl-two", 3000), "the fast request served");
		check_refused(&e, "73", "identity_switch", rec, "cl-switch");
	}
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}

/*
 * Churn tests: client cgroup cg_c (allowed with TOKEN_A, and only from exe
 * when it is given), mini_server in its own cgroup on port port_s, agent
 * in enforce mode.
 */
static int churn_setup(struct env *e, const char *exe, char cg_c[256], char port_s[16])
{
	char policy[1024], cg_s[256], sha[65], exe_json[600] = "", srvout[600];
	struct spawn_opts so = {};
	int port = env__free_port();

	env__sha256_hex(TOKEN_A, sha);
	if (!ASSERT_OK(env__cgroup(e, "c", cg_c, 256), "cgroup") ||
	    !ASSERT_OK(env__cgroup(e, "s", cg_s, sizeof(cg_s)), "cgroup"))
		return -1;
	if (exe)
		snprintf(exe_json, sizeof(exe_json), ",\"exe\":\"%s\"", exe);
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"t\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"clients\":[{\"name\":\"a\",\"claims\":"
		 "{\"token_sha256\":\"%s\"},\"workloads\":[{\"cgroup\":\"%s\"%s}]}]}",
		 port, sha, cg_c, exe_json);
	if (!ASSERT_OK(env__agent_start(e, policy, NULL), "agent"))
		return -1;
	snprintf(port_s, 16, "%d", port);
	snprintf(srvout, sizeof(srvout), "%s/srv.out", e->tmp);
	so.cgroup = cg_s;
	so.stdout_path = srvout;
	env__spawn(e, &so, (char *[]){ (char *)env__helper("mini_server"), "127.0.0.1", port_s, NULL });
	return ASSERT_TRUE(env__wait_file(srvout, "listening", 5000), "server") ? 0 : -1;
}

/*
 * Templates belong to the process that was judged: another executable in
 * the same cgroup sending byte-identical requests on new connections is
 * judged (and here refused: the policy binds the client to one exe).
 */
void test_fastpath_other_process(void)
{
	char cg_c[256], copy[600], port_s[16], out_a[600], out_b[600];
	struct spawn_opts so = {};
	char *env_tok[] = { "RR_TOKEN=fast-token-a", "PATH=/usr/bin:/bin", NULL };
	struct env e;
	json_t *ev = NULL;
	pid_t a, b;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	snprintf(copy, sizeof(copy), "%s/rr_bench_copy", e.tmp);
	if (!ASSERT_EQ(env__sh("cp %s %s", env__helper("rr_bench"), copy), 0, "copy") ||
	    churn_setup(&e, env__helper("rr_bench"), cg_c, port_s))
		goto cleanup;
	/* The allowed process churns connections for 4 s (its template in
	 * use); meanwhile a copy of it, another exe, sends the same bytes. */
	so.cgroup = cg_c;
	so.envp = env_tok;
	snprintf(out_a, sizeof(out_a), "%s/a.out", e.tmp);
	so.stdout_path = out_a;
	a = env__spawn(&e, &so, (char *[]){ (char *)env__helper("rr_bench"), "127.0.0.1", port_s,
					    "1", "4", "0", "1", NULL });
	env__sleep_ms(1500);
	snprintf(out_b, sizeof(out_b), "%s/b.out", e.tmp);
	so.stdout_path = out_b;
	b = env__spawn(&e, &so, (char *[]){ copy, "127.0.0.1", port_s, "1", "1", "0", "1", NULL });
	ASSERT_EQ(env__wait(&e, a, 20000), 0, "allowed process ran");
	ASSERT_EQ(env__wait(&e, b, 20000), 0, "copy ran");
	ASSERT_TRUE(env__wait_file(out_a, "\"errors\":0", 1000), "the allowed process was never refused");
	ASSERT_FALSE(env__wait_file(out_b, "\"errors\":0", 500), "the copy was refused");
	ev = env__find_event(&e, 5000, "kind=alert", "verdict=mismatch", NULL);
	if (ASSERT_OK_PTR(ev, "mismatch for the other executable")) {
		ASSERT_EQ(env__int(ev, "workload.pid"), b, "the copy's pid");
		ASSERT_STREQ(env__str(ev, "workload.exe"), copy, "the copy's exe");
	}
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}

/* Lines of the agent's events with both needles (cheap: no JSON parse). */
static int count_lines(struct env *e, const char *a, const char *b)
{
	char *buf = env__slurp(e->agent.events_path, NULL), *line, *save = NULL;
	int n = 0;

	for (line = buf ? strtok_r(buf, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save))
		n += strstr(line, a) && strstr(line, b);
	free(buf);
	return n;
}

/* rr_bench as the allowed client (TOKEN_A) in cg_c: CONNS SECONDS BODY_BYTES
 * NEW_CONN_EACH; its JSON line goes to out. */
static pid_t rr_start(struct env *e, const char *cg_c, const char *port_s, const char *conns,
		      const char *secs, const char *body, const char *churn, const char *out)
{
	char *env_tok[] = { "RR_TOKEN=" TOKEN_A, "PATH=/usr/bin:/bin", NULL };
	struct spawn_opts so = { .cgroup = cg_c, .envp = env_tok, .stdout_path = out };

	return env__spawn(e, &so, (char *[]){ (char *)env__helper("rr_bench"), "127.0.0.1",
					      (char *)port_s, (char *)conns, (char *)secs,
					      (char *)body, (char *)churn, NULL });
}

/* Waits for rr_bench: how many requests it made, all answered; -1 (and a
 * failed assertion) otherwise. */
static long long rr_requests(struct env *e, pid_t c, const char *out)
{
	long long requests = -1;
	char *res, *p;

	if (!ASSERT_EQ(env__wait(e, c, 30000), 0, "rr_bench ran") ||
	    !ASSERT_TRUE(env__wait_file(out, "\"errors\":0", 1000), "no request failed"))
		return -1;
	res = env__slurp(out, NULL);
	if (res && (p = strstr(res, "\"requests\":")))
		requests = atoll(p + 11);
	free(res);
	return requests;
}

/*
 * Connection churn on a process template: each new connection's requests
 * pass in the kernel, and every one of them is still reported, even when
 * the copy of a request is read before its connection's open record (the
 * two rings are read one after the other).
 */
void test_fastpath_churn_every_request_reported(void)
{
	char cg_c[256], port_s[16], out[600], filter[64];
	long long requests;
	int n = 0, i;
	struct env e;
	pid_t c;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (churn_setup(&e, NULL, cg_c, port_s))
		goto cleanup;
	snprintf(out, sizeof(out), "%s/churn.out", e.tmp);
	c = rr_start(&e, cg_c, port_s, "4", "3", "0", "1", out);
	requests = rr_requests(&e, c, out);
	if (!ASSERT_GE(requests, 500, "enough churn to race the rings"))
		goto cleanup;
	/* Every request has its event (the agent may still be catching up). */
	snprintf(filter, sizeof(filter), "\"pid\":%d,", c);
	for (i = 0; i < 20 && n < requests; i++) {
		n = count_lines(&e, "\"kind\":\"request\"", filter);
		if (n < requests)
			env__sleep_ms(500);
	}
	ASSERT_EQ(n, requests, "a request event for every request");
	ASSERT_EQ(count_lines(&e, "\"kind\":\"lost\"", ""), 0, "nothing lost");
	ASSERT_EQ(count_lines(&e, "\"kind\":\"alert\"", ""), 0, "nothing refused");
	/* Each connection sends one request, with the head its process's
	 * other connections sent: parsed once, matched for the rest. */
	ASSERT_GE(status_reuse(&e, "fast_heads_reused"), requests / 2,
		  "the process's head reused on its new connections");
	ASSERT_GE(status_reuse(&e, "judgments_repeated"), requests / 2,
		  "and its judgment repeated (decider_memo)");
	/* The reports were written as a plain task; idle, the loop is
	 * real-time again. */
	ASSERT_GE(status_int(&e, NULL, "plain_report_batches"), 1,
		  "reports of kernel-passed requests written as a plain task");
	ASSERT_EQ(sched_getscheduler(e.agent.pid), SCHED_FIFO | SCHED_RESET_ON_FORK,
		  "the loop is real-time again once the reports are written");
	/* Connections share their workloads (test_workload_share); the last
	 * one to go takes them along. */
	for (i = 0; i < 20 && status_int(&e, "tables", "workloads") != 0; i++)
		env__sleep_ms(250);
	ASSERT_EQ(status_int(&e, "tables", "workloads"), 0,
		  "no shared workload outlives its connections");
cleanup:
	env__cleanup(&e);
}

/*
 * Connections of one process admitted on its template read it in place:
 * 64 connections of one process, each with the same request (the first
 * judged alone), hold one template of their own between them (the first
 * one's) and the process's, not a 2 KiB copy each in the kernel.
 */
void test_fastpath_adopted_share_template(void)
{
	char cg_c[256], port_s[16], out[600];
	char *env_tok[] = { "RR_TOKEN=" TOKEN_A, "HOLD_STDIN=0", "PATH=/usr/bin:/bin", NULL };
	struct spawn_opts so = { .envp = env_tok, .stdout_path = out };
	struct env e;
	pid_t h;

	test__set_timeout(90);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (churn_setup(&e, NULL, cg_c, port_s))
		goto cleanup;
	snprintf(out, sizeof(out), "%s/hold.out", e.tmp);
	so.cgroup = cg_c;
	h = env__spawn(&e, &so, (char *[]){ (char *)env__helper("hold_conns"), "127.0.0.1", port_s,
					    "64", "2", NULL });
	if (!ASSERT_TRUE(env__wait_file(out, "\"judged\":64,\"errors\":0", 20000),
			 "64 connections, every request answered"))
		goto stop;
	ASSERT_GE(status_counter(&e, "fast_path_requests"), 63,
		  "the later connections passed in the kernel");
	ASSERT_EQ(env__status_int(&e, "tables.fast_templates.processes"), 1, "the process's template");
	ASSERT_EQ(env__status_int(&e, "tables.fast_templates.connections"), 1,
		  "one connection template: the judged connection's, none per admitted one");
stop:
	env__kill(&e, h);
cleanup:
	env__cleanup(&e);
}

/*
 * A daemon that falls behind never hides it: requests the kernel passes on
 * a judged connection while their copies find the data ring full are
 * reported in a `lost` event (source "requests"), and with the requests
 * that were reported they add up to every request sent. The daemon is
 * stopped (SIGSTOP) while the client keeps sending, so the ring fills.
 */
void test_fastpath_unreported_requests_counted(void)
{
	char cg_c[256], port_s[16], out[600], filter[64];
	long long requests, lost = 0;
	json_t *ev = NULL;
	int n = 0, i;
	struct env e;
	pid_t c;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (churn_setup(&e, NULL, cg_c, port_s))
		goto cleanup;
	snprintf(out, sizeof(out), "%s/rr.out", e.tmp);
	/* One keep-alive connection, 3 KiB bodies: each copy is ~3 KiB, so
	 * a few thousand requests fill the ring. */
	c = rr_start(&e, cg_c, port_s, "1", "5", "3000", "0", out);
	env__sleep_ms(800);
	if (!ASSERT_OK(kill(e.agent.pid, SIGSTOP), "stop the daemon"))
		goto cleanup;
	env__sleep_ms(3000);
	kill(e.agent.pid, SIGCONT);
	/* The kernel passed them without the daemon. */
	requests = rr_requests(&e, c, out);
	if (!ASSERT_GE(requests, 3000, "enough requests to fill the ring"))
		goto cleanup;
	ev = env__wait_event(&e, 8000, "kind=lost", "source=requests", NULL);
	if (!ASSERT_OK_PTR(ev, "a lost event for the unreported requests"))
		goto cleanup;
	ASSERT_STRSTR(env__str(ev, "detail"), "data ring was full", "says why");
	lost = env__int(ev, "count");
	snprintf(filter, sizeof(filter), "\"pid\":%d,", c);
	for (i = 0; i < 20; i++) {
		json_decref(ev);
		while ((ev = env__wait_event(&e, 0, "kind=lost", "source=requests", NULL))) {
			lost += env__int(ev, "count");
			json_decref(ev);
		}
		n = count_lines(&e, "\"kind\":\"request\"", filter);
		if (n + lost >= requests)
			break;
		env__sleep_ms(500);
	}
	ASSERT_GE(lost, 1, "some were lost");
	ASSERT_EQ(n + lost, requests, "reported + lost = every request");
	ASSERT_EQ(count_lines(&e, "\"action\":\"blocked\"", ""), 0, "nothing refused");
	ASSERT_EQ(count_lines(&e, "\"verdict\":\"degraded\"", "lost"), 1, "health says so");
cleanup:
	json_decref(ev);
	env__cleanup(&e);
}

/*
 * One client cgroup (cg_c) with TOKEN_A, its policy member extra (tool
 * limits, or ""), the agent (with agent_args, or none), and the SDK test
 * server (stateless, JSON responses) recording tool calls to rec. The
 * port, or 0 when something failed (asserted).
 */
static int start_one_client(struct env *e, const char *extra, const char *const *agent_args,
			    char *cg_c, size_t cglen, char *rec, size_t reclen)
{
	char policy[1024], cg_s[256], sha_a[65];
	int port = env__free_port();

	env__sha256_hex(TOKEN_A, sha_a);
	if (!ASSERT_OK(env__cgroup(e, "c", cg_c, cglen), "cgroup") ||
	    !ASSERT_OK(env__cgroup(e, "s", cg_s, sizeof(cg_s)), "cgroup"))
		return 0;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"t\",\"port\":%d}],"
		 "\"unknown_client\":\"deny\",\"clients\":["
		 "{\"name\":\"a\",\"claims\":{\"token_sha256\":\"%s\"}%s,"
		 "\"workloads\":[{\"cgroup\":\"%s\"}]}]}",
		 port, sha_a, extra, cg_c);
	if (!ASSERT_OK(env__agent_start(e, policy, agent_args), "agent"))
		return 0;
	return ASSERT_OK(env__json_server(e, cg_s, port, rec, reclen), "server") ? port : 0;
}

/*
 * --request-events judged: requests the kernel passes get no event and no
 * copy; the fast path still needs only the header block, whatever the
 * body, and a Content-Length with more digits than the template's still
 * matches. A request whose head differs is held and judged.
 */
void test_fastpath_judged_events(void)
{
	char cg_c[256], spec[8192], out[600], rec[600], *raw = NULL;
	const char *extra[] = { "--request-events", "judged", NULL };
	struct env e;
	long long fast0;
	int port;

#define TEXT100 "0123456789012345678901234567890123456789012345678901234567890123456789" \
		"012345678901234567890123456789"
	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_one_client(&e, "", extra, cg_c, sizeof(cg_c), rec, sizeof(rec))))
		goto cleanup;
	fast0 = status_counter(&e, "fast_path_requests");
	/* 81 judged; 82 fast; 83 fast, a body of ~1000 bytes (a
	 * Content-Length of 4 digits against the template's 3); 84 another
	 * User-Agent: held and judged. */
	snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[%s,%s,%s,%s]}",
		 port, CALL(81, "ua-j", "one"), CALL(82, "ua-j", "two"),
		 CALL(83, "ua-j", TEXT100 TEXT100 TEXT100 TEXT100 TEXT100 TEXT100 TEXT100 TEXT100
		      TEXT100 TEXT100),
		 CALL(84, "ua-k", "four"));
	snprintf(out, sizeof(out), "%s/raw-judged.out", e.tmp);
	ASSERT_EQ(run_raw(&e, cg_c, spec, out), 0, "all four answered on one connection");
	raw = env__slurp(out, NULL);
	ASSERT_OK_PTR(raw ? strstr(raw, "\"response\":3,\"status\":200") : NULL, "84 answered");
	check_request(&e, "81", false, NULL, NULL);
	check_request(&e, "84", false, NULL, NULL);
	ASSERT_EQ(env__count_events(&e, "kind=request", "request.id=82", NULL), 0,
		  "82 passed in the kernel: no event (judged only)");
	ASSERT_EQ(env__count_events(&e, "kind=request", "request.id=83", NULL), 0,
		  "83 passed in the kernel: no event (judged only)");
	ASSERT_EQ(status_counter(&e, "fast_path_requests") - fast0, 2, "82 and 83 on the fast path");
	ASSERT_EQ(status_counter(&e, "fast_path_copies_lost"), 0, "nothing copied to lose");
cleanup:
	free(raw);
	env__cleanup(&e);
#undef TEXT100
}

/*
 * Sends one tools/call whose text argument is text_len x's (as raw.mjs sends
 * it: its body is JSON.stringify of the object, no spaces), from cgroup cg to
 * port, with raw.mjs options opts (JSON members, each followed by a comma)
 * and the requests in `after` (",{...}" or ""). raw.mjs's exit status, or
 * -ENOMEM; its output in *raw (when raw is given), the body's length in
 * *body_len.
 */
static int send_big(struct env *e, const char *cg, int port, int id, const char *token,
		    size_t text_len, const char *opts, const char *after, const char *tag,
		    char **raw, size_t *body_len)
{
	char out[600], *text = malloc(text_len + 1), *body = NULL, *spec = NULL;
	int st = -ENOMEM;

	if (!text)
		return st;
	memset(text, 'x', text_len);
	text[text_len] = '\0';
	if (asprintf(&body, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":"
		     "{\"name\":\"echo\",\"arguments\":{\"text\":\"%s\"}}}", id, text) < 0)
		body = NULL;
	if (body && asprintf(&spec, "{\"host\":\"127.0.0.1\",\"port\":%d,%s\"requests\":[{\"method\":"
			     "\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer %s\","
			     "\"User-Agent\":\"ua-big\",\"MCP-Protocol-Version\":\"2025-11-25\"},"
			     "\"body\":%s}%s]}", port, opts, token, body, after) < 0)
		spec = NULL;
	if (spec) {
		*body_len = strlen(body);
		snprintf(out, sizeof(out), "%s/raw-%s.out", e->tmp, tag);
		st = run_raw(e, cg, spec, out);
		if (raw)
			*raw = env__slurp(out, NULL);
	}
	free(spec);
	free(body);
	free(text);
	return st;
}

/* The longest run of c in s. */
static size_t longest_run(const char *s, char c)
{
	size_t best = 0, n = 0;

	for (; s && *s; s++) {
		n = *s == c ? n + 1 : 0;
		best = n > best ? n : best;
	}
	return best;
}

/*
 * A large first request, where no body can change a verdict, is judged on
 * its head and the first bytes of its body; the kernel passes the rest. The
 * server gets every byte, in order, and the request pipelined behind it
 * (whose head shares a segment with the first one's tail) is judged as
 * usual. A denied one is refused on its head: the server sees none of it.
 */
void test_fastpath_large_first_request(void)
{
	char cg_c[256], rec[600], *raw = NULL, *recs = NULL;
	const size_t text_len = 200000;
	size_t body_len = 0;
	struct env e;
	json_t *ev;
	int port;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_one_client(&e, "", NULL, cg_c, sizeof(cg_c), rec, sizeof(rec))))
		goto cleanup;

	ASSERT_EQ(send_big(&e, cg_c, port, 1, TOKEN_A, text_len, "\"pipeline\":true,\"max_body\":400000,",
			   "," CALL(2, "ua-big", "after"), "big", &raw, &body_len), 0,
		  "both answered on one connection");
	ASSERT_EQ(longest_run(raw, 'x'), text_len, "the server echoed every byte of the text");
	ASSERT_OK_PTR(raw ? strstr(raw, "\"response\":1,\"status\":200") : NULL,
		      "the pipelined request answered");
	ASSERT_EQ(status_int(&e, NULL, "judged_on_head"), 1, "judged on its head");
	ev = env__find_event(&e, 3000, "kind=request", "request.id=1", NULL);
	if (ASSERT_OK_PTR(ev, "its request event")) {
		ASSERT_STREQ(env__str(ev, "verdict"), "allow", "allowed");
		ASSERT_STREQ(env__str(ev, "request.method"), "tools/call", "method from the body's start");
		ASSERT_TRUE(json_is_true(env__get(ev, "request.body_unread")), "body not read whole");
		ASSERT_EQ(env__int(ev, "request.body_bytes"), (long long)body_len,
			  "body length from Content-Length");
	}
	json_decref(ev);
	/* In the kernel or judged here, as its segments fell. */
	ev = env__find_event(&e, 3000, "kind=request", "request.id=2", "verdict=allow", NULL);
	ASSERT_OK_PTR(ev, "the pipelined request allowed");
	json_decref(ev);

	/* Unknown token: denied on its head, nothing reaches the server. */
	ASSERT_NEQ(send_big(&e, cg_c, port, 3, "not-a-known-token", text_len, "\"timeout_ms\":3000,",
			    "", "denied", NULL, &body_len), 0, "no answer");
	ev = env__find_event(&e, 3000, "kind=alert", "verdict=unknown_client", NULL);
	if (ASSERT_OK_PTR(ev, "the alert"))
		ASSERT_STREQ(env__str(ev, "action"), "blocked", "blocked");
	json_decref(ev);
	ASSERT_EQ(status_int(&e, NULL, "judged_on_head"), 2, "judged on its head");
	recs = env__slurp(rec, NULL);
	ASSERT_TRUE(recs && strstr(recs, "\"requestId\":1") && !strstr(recs, "\"requestId\":3"),
		    "the server saw the allowed call, not the denied one");

	/* A slow sender: 4000-byte pieces 1 ms apart. Judged on the first
	 * piece; the rest trickles through the kernel (and the daemon, for
	 * what the kernel held meanwhile) in order. */
	free(raw);
	raw = NULL;
	ASSERT_EQ(send_big(&e, cg_c, port, 4, TOKEN_A, text_len,
			   "\"split\":4000,\"delay_ms\":1,\"max_body\":400000,", "", "slow", &raw,
			   &body_len), 0, "answered");
	ASSERT_EQ(longest_run(raw, 'x'), text_len, "the server echoed every byte of the text");
	ASSERT_EQ(status_int(&e, NULL, "judged_on_head"), 3, "judged on its head");
cleanup:
	free(recs);
	free(raw);
	env__cleanup(&e);
}

/* Where a body can change the verdict (here a tool limit), a large request
 * is held whole and judged on its body, as any other. */
void test_fastpath_large_request_tools(void)
{
	char cg_c[256], rec[600], *raw = NULL;
	const size_t text_len = 100000;
	size_t body_len = 0;
	struct env e;
	json_t *ev;
	int port;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_one_client(&e, ",\"tools\":[\"echo\"]", NULL, cg_c, sizeof(cg_c), rec,
				      sizeof(rec))))
		goto cleanup;
	ASSERT_EQ(send_big(&e, cg_c, port, 5, TOKEN_A, text_len, "\"max_body\":200000,", "", "tools",
			   &raw, &body_len), 0, "answered");
	ASSERT_EQ(longest_run(raw, 'x'), text_len, "the server echoed every byte of the text");
	ASSERT_EQ(status_int(&e, NULL, "judged_on_head"), 0, "not judged on its head");
	ev = env__find_event(&e, 3000, "kind=request", "request.id=5", NULL);
	if (ASSERT_OK_PTR(ev, "its request event")) {
		ASSERT_STREQ(env__str(ev, "request.tool"), "echo", "judged on its body");
		ASSERT_FALSE(json_is_true(env__get(ev, "request.body_unread")), "body read");
	}
	json_decref(ev);
cleanup:
	free(raw);
	env__cleanup(&e);
}

/*
 * Under tool limits a body can change the verdict: no template is made,
 * and a call of a tool the client may not use, with a header block the
 * kernel saw allowed twice, is held and refused before the server reads it.
 */
void test_fastpath_tool_limits_judged(void)
{
	char cg_c[256], rec[600], spec[4096], out[600];
	struct env e;
	int port;

#define TCALL(id, tool, text) \
	"{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer " TOKEN_A "\"," \
	"\"MCP-Protocol-Version\":\"2025-11-25\"},\"body\":{\"jsonrpc\":\"2.0\",\"id\":" #id "," \
	"\"method\":\"tools/call\",\"params\":{\"name\":\"" tool "\",\"arguments\":{\"text\":\"" \
	text "\"}}}}"
	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_one_client(&e, ",\"tools\":[\"echo\"]", NULL, cg_c, sizeof(cg_c), rec,
				      sizeof(rec))))
		goto cleanup;
	snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[%s,%s,%s]}",
		 port, TCALL(1, "echo", "tl-one"), TCALL(2, "echo", "tl-two"),
		 TCALL(3, "search_tickets", "tl-denied"));
	snprintf(out, sizeof(out), "%s/raw.out", e.tmp);
	ASSERT_NEQ(run_raw(&e, cg_c, spec, out), 0, "the denied call got no answer");
	ASSERT_TRUE(env__wait_file(rec, "tl-two", 3000), "the allowed calls served");
	check_refused(&e, "3", "tool_denied", rec, "tl-denied");
	ASSERT_EQ(status_counter(&e, "fast_path_requests"), 0, "nothing passed in the kernel");
cleanup:
	env__cleanup(&e);
}

/*
 * A request (raw.mjs) with TOKEN_A, User-Agent ua-n, the header members
 * `hdrs` (",\"K\":\"V\"" or "") and the JSON-RPC call `call` (its id,
 * method and params members).
 */
#define NREQ(hdrs, call) \
	"{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer " TOKEN_A "\"," \
	"\"User-Agent\":\"ua-n\",\"MCP-Protocol-Version\":\"2025-11-25\"" hdrs "}," \
	"\"body\":{\"jsonrpc\":\"2.0\"," call "}}"
#define NCALL(id, text) \
	"\"id\":" #id ",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"," \
	"\"arguments\":{\"text\":\"" text "\"}}"
#define NINIT(id) \
	"\"id\":" #id ",\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\"," \
	"\"capabilities\":{},\"clientInfo\":{\"name\":\"nt\",\"version\":\"1\"}}"

/*
 * Sends first and second on one connection from cg_c to port (raw.mjs's
 * output in e->tmp/raw-TAG.out); how many requests passed in the kernel
 * meanwhile. *status: raw.mjs's exit status (0: every expected response
 * came).
 */
static long long two_on_one(struct env *e, const char *cg_c, int port, const char *first,
			    const char *second, const char *tag, int *status)
{
	char spec[4096], out[600];
	long long fast0 = status_counter(e, "fast_path_requests");

	snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":[%s,%s]}",
		 port, first, second);
	snprintf(out, sizeof(out), "%s/raw-%s.out", e->tmp, tag);
	*status = run_raw(e, cg_c, spec, out);
	return status_counter(e, "fast_path_requests") - fast0;
}

/* Both answered, both judged by the daemon (ids a and b). */
static void two_judged(struct env *e, const char *cg_c, int port, const char *first,
		       const char *second, const char *a, const char *b)
{
	int status;

	ASSERT_EQ(two_on_one(e, cg_c, port, first, second, a, &status), 0,
		  "the repeated header block was held and judged");
	ASSERT_EQ(status, 0, "both answered on one connection");
	check_request(e, a, false, NULL, NULL);
	check_request(e, b, false, NULL, NULL);
}

/*
 * Where what follows a request's header block could matter, the judged
 * request leaves no template, and the same header block again is held
 * and judged: a request that waits for 100 Continue (a server that
 * answers it without reading its body would have the kernel pass the next
 * request as that body, unjudged), an initialize (its clientInfo, and
 * the session its response issues on the connection), and anything of
 * the stateless era (whose requests and responses differ in a header).
 */
void test_fastpath_no_template(void)
{
	char cg_c[256], rec[600];
	struct env e;
	int port;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_one_client(&e, "", NULL, cg_c, sizeof(cg_c), rec, sizeof(rec))))
		goto cleanup;
	if (test__start_subtest("expect_continue"))
		two_judged(&e, cg_c, port, NREQ(",\"Expect\":\"100-continue\"", NCALL(41, "ec-one")),
			   NREQ(",\"Expect\":\"100-continue\"", NCALL(42, "ec-two")), "41", "42");
	if (test__start_subtest("initialize"))
		two_judged(&e, cg_c, port, NREQ("", NINIT(51)), NREQ("", NINIT(52)), "51", "52");
	/* 2026-07-28 and later: a request needs its Mcp-Method header, a
	 * response must not have one; the same head after a response is a
	 * request without it (malformed), never one the kernel passes. */
	if (test__start_subtest("stateless_era")) {
#define SREQ(body, more) \
	"{\"method\":\"POST\",\"path\":\"/mcp\",\"headers\":{\"Authorization\":\"Bearer " TOKEN_A "\"," \
	"\"User-Agent\":\"ua-s\",\"MCP-Protocol-Version\":\"2026-07-28\"},\"body\":" body more "}"
		int status;

		ASSERT_EQ(two_on_one(&e, cg_c, port,
				     SREQ("{\"jsonrpc\":\"2.0\",\"id\":81,\"result\":{}}", ""),
				     SREQ("{\"jsonrpc\":\"2.0\",\"id\":82,\"method\":\"tools/call\","
					  "\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":"
					  "\"se-two\"}}}", ",\"expect_no_response\":true"),
				     "81", &status), 0, "nothing passed in the kernel");
#undef SREQ
		check_refused(&e, "82", "malformed", rec, "se-two");
	}
	/* Two plain calls, none of the above: the second passes in the
	 * kernel, so the test can tell. */
	if (test__start_subtest("plain_calls_fast")) {
		int status;

		ASSERT_EQ(two_on_one(&e, cg_c, port, NREQ("", NCALL(61, "pc-one")),
				     NREQ("", NCALL(62, "pc-two")), "61", &status), 1, "62 in the kernel");
		ASSERT_EQ(status, 0, "both answered on one connection");
		check_request(&e, "62", true, NULL, NULL);
	}
cleanup:
	env__cleanup(&e);
}

/*
 * A policy that names any client by clientInfo makes no templates: the
 * session's clientInfo is part of every request's claim, and the kernel
 * does not know it.
 */
void test_fastpath_client_info_policy_judged(void)
{
	char cg_c[256], rec[600];
	struct env e;
	int port;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_two_clients(&e, "{\"client_info_name\":\"ci-other\"}", cg_c,
				       sizeof(cg_c), rec, sizeof(rec))))
		goto cleanup;
	two_judged(&e, cg_c, port, NREQ("", NCALL(71, "ci-one")), NREQ("", NCALL(72, "ci-two")),
		   "71", "72");
cleanup:
	env__cleanup(&e);
}
#undef NREQ
#undef NCALL
#undef NINIT

/* Node: one request per new connection, from one process, each head the
 * same bytes: `node two_conns.mjs PORT_A ID_A PORT_B ID_B [UID]` sends
 * ID_A to PORT_A, then (as UID, when given) ID_B to PORT_B. */
static const char two_conns_js[] =
	"import net from 'node:net';\n"
	"const [pa, ia, pb, ib, uid] = process.argv.slice(2);\n"
	"const req = (id) => { const b = JSON.stringify({ jsonrpc: '2.0', id: Number(id),\n"
	"  method: 'tools/call', params: { name: 'echo', arguments: { text: `pt-${id}` } } });\n"
	"  return 'POST /mcp HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer " TOKEN_A "\\r\\n' +\n"
	"    'Content-Type: application/json\\r\\nAccept: application/json, text/event-stream\\r\\n' +\n"
	"    `MCP-Protocol-Version: 2025-11-25\\r\\nContent-Length: ${b.length}\\r\\n\\r\\n${b}`; };\n"
	"const send = (port, id) => new Promise((done) => {\n"
	"  let got = '';\n"
	"  const s = net.connect(Number(port), '127.0.0.1', () => s.write(req(id)));\n"
	"  const end = (how) => { s.destroy(); done(how); };\n"
	"  s.on('data', (d) => { got += d; if (/\\r\\n\\r\\n[\\s\\S]*\\}/.test(got)) end('answered'); });\n"
	"  s.on('error', () => end('reset')); s.on('close', () => end('closed'));\n"
	"  setTimeout(() => end('timeout'), 3000); });\n"
	"console.log(JSON.stringify({ id: ia, got: await send(pa, ia) }));\n"
	"if (uid) process.setuid(Number(uid));\n"
	"console.log(JSON.stringify({ id: ib, got: await send(pb, ib) }));\n";

static pid_t two_conns(struct env *e, const char *cg, int pa, const char *ia, int pb,
		       const char *ib, const char *uid, const char *out)
{
	char script[600], a[16], b[16];
	struct spawn_opts so = { .cgroup = cg, .stdout_path = out };

	snprintf(script, sizeof(script), "%s/two_conns.mjs", e->tmp);
	if (env__write(script, two_conns_js, strlen(two_conns_js)))
		return -1;
	snprintf(a, sizeof(a), "%d", pa);
	snprintf(b, sizeof(b), "%d", pb);
	return env__spawn(e, &so, (char *[]){ "node", script, a, (char *)ia, b, (char *)ib,
					      (char *)uid, NULL });
}

/*
 * A new connection of a judged process may pass on the template that
 * process was judged for (adopted in the kernel), but only to the same
 * server and as the same user: the process's connection to a server its
 * client may not use, or its connection after it changed its uid to one
 * its client's workloads do not have, is held and judged, and refused.
 */
void test_fastpath_process_template_bounds(void)
{
	char policy[1024], cg_c[256], cg_s[256], rec_t[600], rec_u[600], out[600], sha_a[65];
	struct env e;
	int pt, pu;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	pt = env__free_port();
	do
		pu = env__free_port();
	while (pu == pt);
	env__sha256_hex(TOKEN_A, sha_a);
	if (!ASSERT_OK(env__cgroup(&e, "c", cg_c, sizeof(cg_c)), "cgroup") ||
	    !ASSERT_OK(env__cgroup(&e, "s", cg_s, sizeof(cg_s)), "cgroup"))
		goto cleanup;
	snprintf(policy, sizeof(policy),
		 "{\"mode\":\"enforce\",\"servers\":[{\"name\":\"t\",\"port\":%d},"
		 "{\"name\":\"u\",\"port\":%d}],\"unknown_client\":\"deny\",\"clients\":["
		 "{\"name\":\"a\",\"claims\":{\"token_sha256\":\"%s\"},\"servers\":[\"t\"],"
		 "\"workloads\":[{\"cgroup\":\"%s\",\"uid\":0}]}]}",
		 pt, pu, sha_a, cg_c);
	if (!ASSERT_OK(env__agent_start(&e, policy, NULL), "agent") ||
	    !ASSERT_OK(env__json_server(&e, cg_s, pt, rec_t, sizeof(rec_t)), "server t") ||
	    !ASSERT_OK(env__json_server(&e, cg_s, pu, rec_u, sizeof(rec_u)), "server u"))
		goto cleanup;
	if (test__start_subtest("other_server")) {
		snprintf(out, sizeof(out), "%s/port.out", e.tmp);
		ASSERT_EQ(env__wait(&e, two_conns(&e, cg_c, pt, "91", pu, "92", NULL, out), 20000),
			  0, "client ran");
		ASSERT_TRUE(env__wait_file(out, "{\"id\":\"91\",\"got\":\"answered\"}", 1000),
			    "the first answered");
		check_request(&e, "91", false, NULL, NULL);
		check_refused(&e, "92", "server_denied", rec_u, "pt-92");
	}
	if (test__start_subtest("other_uid")) {
		snprintf(out, sizeof(out), "%s/uid.out", e.tmp);
		ASSERT_EQ(env__wait(&e, two_conns(&e, cg_c, pt, "93", pt, "94", "65534", out), 20000),
			  0, "client ran");
		ASSERT_TRUE(env__wait_file(out, "{\"id\":\"93\",\"got\":\"answered\"}", 1000),
			    "the first answered");
		check_request(&e, "93", false, NULL, NULL);
		check_refused(&e, "94", "mismatch", rec_t, "pt-94");
	}
	ASSERT_EQ(status_counter(&e, "fast_path_requests"), 0, "nothing passed in the kernel");
cleanup:
	env__cleanup(&e);
}

/*
 * The kernel's template match needs Content-Length digits where the
 * judged request had them: the same header block with an empty
 * Content-Length is not the judged request with a body of 0 bytes, but a
 * request the daemon must read (it is malformed), never one the kernel
 * passes.
 */
void test_fastpath_content_length_digits(void)
{
	static const char body[] = "{\\\"jsonrpc\\\":\\\"2.0\\\",\\\"id\\\":5,\\\"method\\\":"
				   "\\\"tools/call\\\",\\\"params\\\":{\\\"name\\\":\\\"echo\\\","
				   "\\\"arguments\\\":{\\\"text\\\":\\\"cl-one\\\"}}}";
	char cg_c[256], rec[600], spec[4096], out[600], hdrs[512];
	struct env e;
	json_t *ev;
	long long fast0;
	size_t i, n = 0;
	int port;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_one_client(&e, "", NULL, cg_c, sizeof(cg_c), rec, sizeof(rec))))
		goto cleanup;
	fast0 = status_counter(&e, "fast_path_requests");
	/* Both heads the same bytes but for the Content-Length value. */
#define CL_HEADERS(cl) \
	"[[\"Content-Type\",\"application/json\"],[\"Accept\",\"application/json, text/event-stream\"]," \
	"[\"Authorization\",\"Bearer " TOKEN_A "\"],[\"User-Agent\",\"ua-cl\"]," \
	"[\"MCP-Protocol-Version\",\"2025-11-25\"],[\"Content-Length\",\"" cl "\"]]"
	for (i = 0; body[i]; i++)
		n += body[i] != '\\';	/* its bytes as sent: unescaped */
	snprintf(hdrs, sizeof(hdrs), CL_HEADERS("%zu"), n);
	snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"requests\":["
		 "{\"headers\":%s,\"body\":\"%s\"},{\"headers\":" CL_HEADERS("") ","
		 "\"expect_no_response\":true}],\"linger_ms\":1000}", port, hdrs, body);
#undef CL_HEADERS
	snprintf(out, sizeof(out), "%s/raw-cl.out", e.tmp);
	run_raw(&e, cg_c, spec, out);
	ASSERT_TRUE(env__wait_file(rec, "cl-one", 3000), "the first request served");
	check_request(&e, "5", false, NULL, NULL);
	ev = env__find_event(&e, 5000, "kind=alert", "verdict=malformed", NULL);
	ASSERT_OK_PTR(ev, "the empty Content-Length read by the daemon: malformed");
	json_decref(ev);
	ASSERT_EQ(status_counter(&e, "fast_path_requests") - fast0, 0, "nothing passed in the kernel");
cleanup:
	env__cleanup(&e);
}

/*
 * The kernel passes a request on its connection's template only once
 * everything held before it is released: a request held for judgment
 * (here while the daemon is stopped) keeps the next one, template or not,
 * behind it, and both reach the server in order once judged.
 */
void test_fastpath_behind_held(void)
{
	char cg_c[256], rec[600], spec[4096], specpath[600], script[PATH_MAX], out[600];
	char *got = NULL, *three, *four;
	struct spawn_opts so = { .stdout_path = out };
	struct env e;
	long long fast0;
	bool stopped = false;
	pid_t raw;
	int port, i;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_one_client(&e, "", NULL, cg_c, sizeof(cg_c), rec, sizeof(rec))))
		goto cleanup;
	fast0 = status_counter(&e, "fast_path_requests");
	/* 101 judged, 102 on the template; after a pause (the daemon stopped
	 * meanwhile) 103 differs: held; 104 matches the template. */
	snprintf(spec, sizeof(spec), "{\"host\":\"127.0.0.1\",\"port\":%d,\"linger_ms\":4000,"
		 "\"requests\":[%s,%s,%s,%s]}", port, CALL(101, "ua-h", "hb-one"),
		 CALL(102, "ua-h", "hb-two"),
		 REQ(TOKEN_A, 103, "ua-i", "hb-three",
		     ",\"pause_before_ms\":1500,\"expect_no_response\":true"),
		 REQ(TOKEN_A, 104, "ua-h", "hb-four",
		     ",\"pause_before_ms\":300,\"expect_no_response\":true"));
	snprintf(specpath, sizeof(specpath), "%s/spec-held.json", e.tmp);
	snprintf(script, sizeof(script), "%s/raw.mjs", env__node_dir());
	snprintf(out, sizeof(out), "%s/raw-held.out", e.tmp);
	so.cgroup = cg_c;
	if (!ASSERT_OK(env__write(specpath, spec, strlen(spec)), "spec"))
		goto cleanup;
	raw = env__spawn(&e, &so, (char *[]){ "node", script, specpath, NULL });
	if (!ASSERT_TRUE(env__wait_file(out, "\"response\":1,", 10000), "101 and 102 answered"))
		goto cleanup;
	kill(e.agent.pid, SIGSTOP);
	stopped = true;
	env__sleep_ms(2500);	/* 103 and 104 sent */
	ASSERT_FALSE(env__wait_file(rec, "hb-four", 500), "104 waited behind the held 103");
	kill(e.agent.pid, SIGCONT);
	stopped = false;
	for (i = 0; i < 100 && !(got && strstr(got, "hb-four")); i++) {
		free(got);
		env__sleep_ms(50);
		got = env__slurp(rec, NULL);
	}
	three = got ? strstr(got, "hb-three") : NULL;
	four = got ? strstr(got, "hb-four") : NULL;
	if (ASSERT_OK_PTR(three, "103 served") && ASSERT_OK_PTR(four, "104 served"))
		ASSERT_TRUE(three < four, "in the order sent");
	ASSERT_EQ(status_counter(&e, "fast_path_requests") - fast0, 1, "102 alone in the kernel");
	env__wait(&e, raw, 10000);
cleanup:
	if (stopped)
		kill(e.agent.pid, SIGCONT);
	free(got);
	env__cleanup(&e);
}

/* Node: requests on named connections of one process, in order, each
 * answered (or ended) before the next: `node conns.mjs PORT NAME:TOKEN:ID
 * ...`; every head is the same bytes but for the token. */
static const char conns_js[] =
	"import net from 'node:net';\n"
	"const port = Number(process.argv[2]);\n"
	"const conns = new Map();\n"
	"const req = (tok, id) => { const b = JSON.stringify({ jsonrpc: '2.0', id: Number(id),\n"
	"  method: 'tools/call', params: { name: 'echo', arguments: { text: `pr-${id}` } } });\n"
	"  return `POST /mcp HTTP/1.1\\r\\nHost: x\\r\\nAuthorization: Bearer ${tok}\\r\\n` +\n"
	"    'Content-Type: application/json\\r\\nAccept: application/json, text/event-stream\\r\\n' +\n"
	"    `MCP-Protocol-Version: 2025-11-25\\r\\nContent-Length: ${b.length}\\r\\n\\r\\n${b}`; };\n"
	"const open = (name) => new Promise((done) => {\n"
	"  const s = net.connect(port, '127.0.0.1', () => done(s));\n"
	"  s.got = ''; s.on('data', (d) => { s.got += d; s.wake?.('answered'); });\n"
	"  s.on('error', () => s.wake?.('reset')); s.on('close', () => s.wake?.('closed'));\n"
	"  conns.set(name, s); });\n"
	"for (const step of process.argv.slice(3)) {\n"
	"  const [name, tok, id] = step.split(':');\n"
	"  const s = conns.get(name) ?? await open(name);\n"
	"  s.got = '';\n"
	"  const how = await new Promise((done) => { s.wake = done; s.write(req(tok, id));\n"
	"    setTimeout(() => done('timeout'), 3000); });\n"
	"  console.log(JSON.stringify({ id, got: how }));\n"
	"}\n"
	"for (const s of conns.values()) s.destroy();\n";

/*
 * A connection admitted on its process's template reads that template in
 * place only while it stays the one it was admitted on. When another
 * connection of the process is judged for another identity, the template
 * is replaced, and the admitted connection's request in that identity is
 * held and judged: an identity_switch on that connection, not a pass.
 */
void test_fastpath_process_template_replaced(void)
{
	char cg_c[256], rec[600], out[600], script[600];
	struct spawn_opts so = { .stdout_path = out };
	struct env e;
	json_t *ev;
	pid_t pid;
	int port;

	test__set_timeout(120);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	if (!(port = start_two_clients(&e, NULL, cg_c, sizeof(cg_c), rec, sizeof(rec))))
		goto cleanup;
	snprintf(script, sizeof(script), "%s/conns.mjs", e.tmp);
	snprintf(out, sizeof(out), "%s/conns.out", e.tmp);
	so.cgroup = cg_c;
	if (!ASSERT_OK(env__write(script, conns_js, strlen(conns_js)), "script"))
		goto cleanup;
	{
		char port_s[16];

		snprintf(port_s, sizeof(port_s), "%d", port);
		/* 201 judged (the process's template: a); 202 on a new
		 * connection, admitted on it; 203 on a third, judged as b (the
		 * template replaced); 204 as b on the admitted one. */
		pid = env__spawn(&e, &so, (char *[]){ "node", script, port_s,
						      "one:" TOKEN_A ":201", "adm:" TOKEN_A ":202",
						      "three:" TOKEN_B ":203", "adm:" TOKEN_B ":204",
						      NULL });
	}
	ASSERT_EQ(env__wait(&e, pid, 30000), 0, "client ran");
	check_request(&e, "202", true, NULL, NULL);
	check_request(&e, "203", false, NULL, NULL);
	ev = env__find_event(&e, 5000, "kind=alert", "request.id=204", NULL);
	if (ASSERT_OK_PTR(ev, "204 judged")) {
		ASSERT_STREQ(env__str(ev, "verdict"), "identity_switch", "verdict");
		ASSERT_STREQ(env__str(ev, "action"), "blocked", "blocked");
		ASSERT_FALSE(json_is_true(env__get(ev, "fast_path")), "not passed in the kernel");
	}
	json_decref(ev);
	ASSERT_FALSE(env__wait_file(rec, "pr-204", 500), "204 never reached the server");
cleanup:
	env__cleanup(&e);
}
