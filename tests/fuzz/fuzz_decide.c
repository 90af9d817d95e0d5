// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for the judgment (userspace/decision.c), differential:
 * the same requests are judged by two deciders, one always in full
 * (decider__judge) and one the way the agent judges kernel-passed requests
 * (decider__judge_again, repeating a kept judgment when a request's head
 * is byte for byte the one its memo was made from, but for its
 * Content-Length). A kept judgment must never say other than a full one:
 * a request the memo allowed that a full judgment finds against would be
 * a way past every identity check. Any difference aborts.
 *
 * The input: byte 0 picks the connection (four: two workload instances,
 * another thread of the first, a workload in another cgroup) and its
 * server, byte 1 what happens after its requests (the server issues the
 * last request's session, the connection closes, time passes and the live
 * state expires, or the agent restarts on its saved state); the rest is
 * the connection's bytes, read as HTTP/1.1 requests (http.c, request.c:
 * token, MCP headers, JSON-RPC). Live state (sessions, tokens, instances)
 * carries over from input to input, and is started afresh every 4096
 * inputs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_fixture.h"
#include "decision.h"
#include "http.h"
#include "intern.h"
#include "policy.h"
#include "request.h"

#define N_CONNS 4
#define HEAD_MAX 4096

static const char policy_text[] =
	"{\"servers\":[{\"name\":\"t\",\"port\":8080},{\"name\":\"u\",\"port\":8081}],"
	"\"unknown_client\":\"deny\",\"unattributed\":\"alert\","
	"\"clients\":["
	"{\"name\":\"a\",\"claims\":{\"client_id\":\"a\"},\"workloads\":[{\"cgroup\":\"/x/*\"}],"
	"\"tools\":[\"echo\",\"search\"],\"servers\":[\"t\"],\"max_instances\":1},"
	"{\"name\":\"b\",\"claims\":{\"client_info_name\":\"b*\"},"
	"\"workloads\":[{\"cgroup\":\"/y/*\"}]},"
	"{\"name\":\"c\",\"claims\":{\"sub\":\"svc-*\",\"iss\":\"https://i\"},"
	"\"workloads\":[{\"exe\":\"/usr/bin/client\"}],\"max_instances\":2},"
	"{\"name\":\"d\",\"claims\":{\"user_agent\":\"ua-d/*\"},"
	"\"workloads\":[{\"cgroup\":\"/x/*\"},{\"cgroup\":\"/y/*\"}]}]}";

struct side {
	struct decider *d;
	struct conn c[N_CONNS];
};

static struct policy *policy;
static struct side full, kept;
static struct decider_memo memo[N_CONNS];
/* The head each memo was last filled from (head_shape). */
static char memo_head[N_CONNS][HEAD_MAX];
static size_t memo_head_len[N_CONNS];
static uint64_t now = 1000000000ull, inputs;

static void side_conns(struct side *s)
{
	fixture__conn(&s->c[0], 41, 41, "/x/one", 1);
	fixture__conn(&s->c[1], 42, 42, "/x/two", 2);
	fixture__conn(&s->c[2], 41, 43, "/x/one", 3);
	fixture__conn(&s->c[3], 44, 44, "/y/one", 4);
}

static void side_release(struct side *s)
{
	int i;

	for (i = 0; i < N_CONNS; i++) {
		decider__conn_release(&s->c[i]);
		workload__unshare(s->c[i].client);
	}
	decider__free(s->d);
}

static void start(void)
{
	int i;

	if (full.d) {
		side_release(&full);
		side_release(&kept);
		for (i = 0; i < N_CONNS; i++)
			decider__memo_clear(&memo[i]);
	}
	full.d = decider__new();
	kept.d = decider__new();
	if (!full.d || !kept.d)
		abort();
	decider__set_policy(full.d, policy);
	decider__set_policy(kept.d, policy);
	side_conns(&full);
	side_conns(&kept);
	memset(memo_head_len, 0, sizeof(memo_head_len));
}

/* Both sides go through what an agent's restart keeps (decider__save,
 * decider__load): the saved sessions, tokens and instances, on new
 * connections and empty memos. */
static void restart(void)
{
	struct side *sides[2] = { &full, &kept };
	struct decider *n[2] = { decider__new(), decider__new() };
	char path[64];
	int i;

	snprintf(path, sizeof(path), "/tmp/mcpw-fuzz-decide-%d.json", (int)getpid());
	for (i = 0; i < 2; i++)
		if (!n[i] || decider__save(sides[i]->d, path, now) ||
		    decider__load(n[i], path, now))
			break;
	unlink(path);
	if (i < 2) {	/* nowhere to save: neither side restarts */
		decider__free(n[0]);
		decider__free(n[1]);
		return;
	}
	for (i = 0; i < 2; i++) {
		side_release(sides[i]);
		sides[i]->d = n[i];
		decider__set_policy(n[i], policy);
		side_conns(sides[i]);
	}
	for (i = 0; i < N_CONNS; i++)
		decider__memo_clear(&memo[i]);
	memset(memo_head_len, 0, sizeof(memo_head_len));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct policy_error err = {};

	(void)argc;
	(void)argv;
	if (policy__load_buffer("fuzz.json", policy_text, strlen(policy_text), &policy, &err))
		abort();
	return 0;
}

static bool same_client(const struct decision *x, const struct decision *y)
{
	const char *a = x->client ? x->client->name : NULL, *b = y->client ? y->client->name : NULL;

	return a == b || (a && b && strcmp(a, b) == 0);
}

/*
 * head (len bytes) without its Content-Length value, into out (HEAD_MAX):
 * the agent keeps a judgment for heads that are the same but for it (a
 * kernel-passed request's header block is its template's with other
 * Content-Length digits). Its length, or 0 when it does not fit.
 */
static size_t head_shape(const uint8_t *head, size_t len, char *out)
{
	static const char name[] = "\r\ncontent-length:";
	size_t i = 0, n = 0, k;

	if (len > HEAD_MAX)
		return 0;
	while (i < len) {
		for (k = 0; k < sizeof(name) - 1 && i + k < len; k++)
			if ((head[i + k] | (k >= 2 ? 0x20 : 0)) != (uint8_t)name[k])
				break;
		if (k == sizeof(name) - 1) {
			memcpy(out + n, name, k);
			n += k;
			for (i += k; i < len && head[i] != '\r'; i++)
				;
			continue;
		}
		out[n++] = (char)head[i++];
	}
	return n;
}

/* One request on connection i of both sides; head: its head's bytes. */
static void judge(int i, const struct http_message *m, const uint8_t *head)
{
	struct decision df = {}, dk = {};
	struct request rf, rk;
	char shape[HEAD_MAX];
	size_t shape_len = head_shape(head, m->head_end - m->start, shape);

	if (request__read(&rf, m, NULL, NULL) || request__read(&rk, m, NULL, NULL))
		abort();
	decider__judge(full.d, &full.c[i], &rf, now, &df);
	/* The agent's promise: the memo is only asked about its own head. */
	if (!shape_len || shape_len != memo_head_len[i] ||
	    memcmp(memo_head[i], shape, shape_len) != 0) {
		decider__memo_clear(&memo[i]);
		memo_head_len[i] = shape_len;
		memcpy(memo_head[i], shape, shape_len);
	}
	decider__judge_again(kept.d, &kept.c[i], &rk, now, &dk, &memo[i]);
	if (df.verdict != dk.verdict || df.deny != dk.deny || df.alert != dk.alert ||
	    !same_client(&df, &dk))
		__builtin_trap();
	if (df.verdict != VERDICT_ALLOW && !df.reason[0])
		__builtin_trap();
	json_decref(df.related);
	json_decref(dk.related);
	request__release(&rf);
	request__release(&rk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_parser *p;
	struct http_message *m;
	char sid[128] = "";
	int i;

	if (size < 2)
		return 0;
	if (inputs++ % 4096 == 0)
		start();
	i = data[0] % N_CONNS;
	full.c[i].server_name = kept.c[i].server_name = data[0] & 0x10 ? "u" : "t";
	p = http_parser__new(HTTP_REQUEST, &http_default_limits);
	if (!p)
		abort();
	http_parser__feed(p, data + 2, size - 2);
	while ((m = http_parser__next(p))) {
		const char *s = http_message__header(m, "mcp-session-id");

		judge(i, m, data + 2 + m->start);
		if (s)
			snprintf(sid, sizeof(sid), "%s", s);
		http_message__free(m);
	}
	http_parser__free(p);
	now += (uint64_t)(data[1] & 0x0f) * 10000000000ull;	/* up to 150 s */
	if ((data[1] & 0x10) && sid[0]) {
		decider__session_issued(full.d, sid, &full.c[i], now);
		decider__session_issued(kept.d, sid, &kept.c[i], now);
	}
	if (data[1] & 0x20) {
		decider__conn_closed(full.d, &full.c[i], now);
		decider__conn_closed(kept.d, &kept.c[i], now);
		decider__conn_release(&full.c[i]);
		decider__conn_release(&kept.c[i]);
		decider__memo_clear(&memo[i]);
		memo_head_len[i] = 0;
	}
	if ((data[1] & 0xc0) == 0x40) {
		now += 7ull * 3600 * 1000000000ull;
		decider__expire(full.d, now);
		decider__expire(kept.d, now);
	}
	if (data[1] == 0xff)
		restart();
	return 0;
}
