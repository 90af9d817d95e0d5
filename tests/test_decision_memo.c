// SPDX-License-Identifier: GPL-2.0
/*
 * Repeated judgments (decider__judge_again): a connection's fast-path
 * requests send an allowed head again, and the identity checks are not
 * done again while what they read still holds. Each case changes one thing
 * they read (the session's owner, the token's binding, the policy, the
 * body's clientInfo or tool) and wants the finding a full judgment gives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_fixture.h"
#include "decision.h"
#include "harness.h"
#include "intern.h"
#include "policy.h"

#define POLICY_X "{\"servers\":[{\"name\":\"t\",\"port\":8080},{\"name\":\"u\",\"port\":8081}]," \
	"\"clients\":[{\"name\":\"a\",\"claims\":{\"client_id\":\"a\"}," \
	"\"workloads\":[{\"cgroup\":\"/x/*\"}],\"tools\":[\"echo\"],\"servers\":[\"t\"]}]}"

struct fixture {
	struct decider *d;
	struct policy *p;
	struct conn c, c2;		/* two workload instances, both in /x */
	struct conn c3;			/* another connection of c's process */
	struct conn c4;			/* one of another thread of it */
	struct mcp_message msg;
	struct request r;
	struct decider_memo memo;
};

static void make_conn(struct conn *c, uint32_t pid, uint32_t tid, const char *cgroup)
{
	fixture__conn(c, pid, tid, cgroup, 1000 + pid);
}

/* A tools/call of tool with token sha (client_id a) and session s1. */
static void make_request(struct fixture *f, const char *sha, const char *tool)
{
	memset(&f->r, 0, sizeof(f->r));
	memset(&f->msg, 0, sizeof(f->msg));
	f->msg.method = "tools/call";
	f->msg.tool = (char *)tool;
	f->msg.is_request = true;
	f->r.body.n_msgs = 1;
	f->r.body.msgs = &f->msg;
	f->r.has_body = true;
	f->r.method = "tools/call";
	f->r.tool = tool;
	f->r.session_id = "s1";
	f->r.token.present = true;
	f->r.token.is_jwt = true;
	f->r.token.client_id = "a";
	snprintf(f->r.token.sha256, sizeof(f->r.token.sha256), "%s", sha);
}

static bool setup_with(struct fixture *f, const char *policy)
{
	struct policy_error err = {};

	memset(f, 0, sizeof(*f));
	f->d = fixture__decider(policy, &f->p, &err);
	if (!ASSERT_OK_PTR(f->d, err.msg))
		return false;
	make_conn(&f->c, 41, 41, "/x/one");
	make_conn(&f->c2, 42, 42, "/x/two");
	make_conn(&f->c3, 41, 41, "/x/one");
	f->c3.cookie = 3000;
	make_conn(&f->c4, 41, 43, "/x/one");	/* another thread */
	f->c4.cookie = 4000;
	make_request(f, "aaaa", "echo");
	return true;
}

static bool setup(struct fixture *f)
{
	return setup_with(f, POLICY_X);
}

static void teardown(struct fixture *f)
{
	decider__memo_clear(&f->memo);
	decider__conn_release(&f->c);
	decider__conn_release(&f->c2);
	decider__conn_release(&f->c3);
	decider__conn_release(&f->c4);
	workload__unshare(f->c.client);
	workload__unshare(f->c2.client);
	workload__unshare(f->c3.client);
	workload__unshare(f->c4.client);
	decider__free(f->d);
	policy__free(f->p);
}

/* c's request again from conn, through the memo: its verdict. */
static enum verdict again_on(struct fixture *f, struct conn *conn, uint64_t now)
{
	struct decision out;

	decider__judge_again(f->d, conn, &f->r, now, &out, &f->memo);
	json_decref(out.related);
	return out.verdict;
}

static enum verdict again(struct fixture *f, uint64_t now)
{
	return again_on(f, &f->c, now);
}

static uint64_t repeated(struct fixture *f)
{
	struct decider_stats st;

	decider__stats(f->d, &st);
	return st.repeated;
}

/* The connection judged allowed twice: the memo is made, then used. */
static bool warm(struct fixture *f)
{
	return ASSERT_EQ(again(f, 1000), VERDICT_ALLOW, "first: judged in full") &&
	       ASSERT_EQ(again(f, 2000), VERDICT_ALLOW, "second: repeated") &&
	       ASSERT_EQ(repeated(f), 1, "one judgment repeated");
}

void test_decision_memo(void)
{
	struct decision out;
	struct fixture f;

	if (test__start_subtest("repeats_and_tools")) {
		if (setup(&f) && warm(&f)) {
			make_request(&f, "aaaa", "rm");
			ASSERT_EQ(again(&f, 3000), VERDICT_TOOL_DENIED,
				  "the body's tool is checked");
			make_request(&f, "aaaa", "echo");
			ASSERT_EQ(again(&f, 4000), VERDICT_ALLOW, "allowed again");
			ASSERT_EQ(repeated(&f), 2, "and repeated: the identity had not changed");
		}
		teardown(&f);
	}
	if (test__start_subtest("next_connection_of_the_process")) {
		/* Churn: the same head on the process's next connection. */
		if (setup(&f) && warm(&f)) {
			ASSERT_EQ(f.c3.client, f.c.client, "one shared workload");
			ASSERT_EQ(again_on(&f, &f.c3, 3000), VERDICT_ALLOW, "allowed");
			ASSERT_EQ(repeated(&f), 2, "repeated");
			ASSERT_STREQ(decider__conn_client(&f.c3), "a",
				     "the new connection counts as the instance's");
			f.c3.server_name = "u";
			ASSERT_EQ(again_on(&f, &f.c3, 4000), VERDICT_SERVER_DENIED,
				  "another server is judged in full");
			ASSERT_EQ(repeated(&f), 2, "not repeated");
		}
		teardown(&f);
	}
	if (test__start_subtest("instance_counted_once")) {
		/* max_instances 1: once both of instance A's connections (one
		 * judged, one admitted on the memo) are closed and its window
		 * is over, instance B may take the identity. */
		static const char one[] = "{\"servers\":[{\"name\":\"t\",\"port\":8080}],"
			"\"clients\":[{\"name\":\"a\",\"claims\":{\"client_id\":\"a\"},"
			"\"workloads\":[{\"cgroup\":\"/x/*\"}],\"max_instances\":1}]}";
		uint64_t later = 3000 + 61ull * 1000000000ull;

		if (setup_with(&f, one) && warm(&f)) {
			ASSERT_EQ(again_on(&f, &f.c3, 3000), VERDICT_ALLOW, "c3 on the memo");
			ASSERT_EQ(repeated(&f), 2, "repeated");
			decider__conn_closed(f.d, &f.c, 3000);
			make_request(&f, "bbbb", "echo");
			f.r.session_id = NULL;
			decider__judge(f.d, &f.c2, &f.r, later, &out);
			ASSERT_EQ(out.verdict, VERDICT_CLONE, "A is live while c3 is open");
			json_decref(out.related);
			decider__conn_closed(f.d, &f.c3, 3000);
			decider__judge(f.d, &f.c2, &f.r, later, &out);
			ASSERT_EQ(out.verdict, VERDICT_ALLOW, "then B may take it");
			json_decref(out.related);
		}
		teardown(&f);
	}
	if (test__start_subtest("threads_of_the_process")) {
		/* Each thread is a workload of its own, of one instance: the
		 * first judgment of another thread joins the memo. */
		if (setup(&f) && warm(&f)) {
			ASSERT_NEQ(f.c4.client, f.c.client, "the thread's own workload");
			ASSERT_EQ(again_on(&f, &f.c4, 3000), VERDICT_ALLOW, "judged in full");
			ASSERT_EQ(repeated(&f), 1, "not repeated");
			ASSERT_EQ(again_on(&f, &f.c4, 4000), VERDICT_ALLOW, "allowed");
			ASSERT_EQ(again(&f, 5000), VERDICT_ALLOW, "allowed");
			ASSERT_EQ(repeated(&f), 3, "both threads' judgments repeated");
		}
		teardown(&f);
	}
	if (test__start_subtest("other_workload")) {
		/* Another instance sends the same head: not its judgment. */
		if (setup(&f) && warm(&f)) {
			f.r.session_id = NULL;
			ASSERT_EQ(again_on(&f, &f.c2, 3000), VERDICT_TOKEN_REPLAY,
				  "the token is c's");
			ASSERT_EQ(repeated(&f), 1, "not repeated");
		}
		teardown(&f);
	}
	if (test__start_subtest("client_info_in_the_body")) {
		if (setup(&f)) {
			f.r.client_name = "one";
			if (warm(&f)) {
				f.r.client_name = "two";
				ASSERT_EQ(again(&f, 3000), VERDICT_IDENTITY_SWITCH,
					  "another clientInfo is judged in full");
			}
		}
		teardown(&f);
	}
	if (test__start_subtest("session_bound_again")) {
		/* The session ends; another instance uses its id first; the
		 * first connection's next request is a hijack. */
		if (setup(&f) && warm(&f)) {
			decider__session_ended(f.d, "s1");
			make_request(&f, "bbbb", "echo");
			decider__judge(f.d, &f.c2, &f.r, 3000, &out);
			ASSERT_EQ(out.verdict, VERDICT_ALLOW, "the other instance binds s1");
			make_request(&f, "aaaa", "echo");
			ASSERT_EQ(again(&f, 4000), VERDICT_SESSION_HIJACK, "s1 is no longer c's");
		}
		teardown(&f);
	}
	if (test__start_subtest("session_issued_elsewhere")) {
		/* c bound s1 at its first use; then the server is seen
		 * issuing s1 to another instance: s1 is that one's now. */
		if (setup(&f) && warm(&f)) {
			decider__session_issued(f.d, "s1", &f.c2, 3000);
			ASSERT_EQ(again(&f, 4000), VERDICT_SESSION_HIJACK, "s1 is no longer c's");
			ASSERT_EQ(repeated(&f), 1, "judged in full");
		}
		teardown(&f);
	}
	if (test__start_subtest("token_bound_again")) {
		/* The token's binding expires; another instance uses it first. */
		if (setup(&f)) {
			f.r.session_id = NULL;
			if (warm(&f)) {
				uint64_t later = DECISION_TOKEN_TTL_NS + 10000;

				decider__expire(f.d, later);
				decider__judge(f.d, &f.c2, &f.r, later + 1, &out);
				ASSERT_EQ(out.verdict, VERDICT_ALLOW,
					  "the other instance binds the token");
				json_decref(out.related);
				ASSERT_EQ(again(&f, later + 2), VERDICT_TOKEN_REPLAY,
					  "the token is no longer c's");
			}
		}
		teardown(&f);
	}
	if (test__start_subtest("policy_reloaded")) {
		static const char other[] = "{\"servers\":[{\"name\":\"t\",\"port\":8080}],"
			"\"clients\":[{\"name\":\"a\",\"claims\":{\"client_id\":\"a\"},"
			"\"workloads\":[{\"cgroup\":\"/y/*\"}]}]}";
		struct policy_error err = {};
		struct policy *p2 = NULL;

		if (setup(&f) && warm(&f) &&
		    ASSERT_OK(policy__load_buffer("t2.json", other, strlen(other), &p2, &err),
			      err.msg)) {
			decider__set_policy(f.d, p2);
			ASSERT_EQ(again(&f, 3000), VERDICT_MISMATCH, "judged on the new policy");
		}
		teardown(&f);
		policy__free(p2);
	}
}

/* c's request with session sid and token sha, judged in full: its verdict. */
static enum verdict judge_as(struct fixture *f, struct conn *c, const char *sid, const char *sha,
			     uint64_t now)
{
	struct decision out;

	make_request(f, sha, "echo");
	f->r.session_id = sid;
	decider__judge(f->d, c, &f->r, now, &out);
	json_decref(out.related);
	return out.verdict;
}

/* c (instance A) uses n new session ids and tokens, from `from` on. */
static bool flood(struct fixture *f, size_t from, size_t n, uint64_t now)
{
	char sid[32], sha[65];
	size_t i;

	for (i = from; i < from + n; i++) {
		snprintf(sid, sizeof(sid), "flood-%zu", i);
		snprintf(sha, sizeof(sha), "%064zx", i);
		if (!ASSERT_EQ(judge_as(f, &f->c, sid, sha, now), VERDICT_ALLOW, sid))
			return false;
	}
	return true;
}

/*
 * One allowed instance that mints session ids (bound at first use) and
 * tokens (no signature keys) by the thousand holds at most its share of
 * each table: its least recently used go, and the next workload's session
 * and token are still bound, so their hijack and replay are found (with
 * one table for everyone, the flood filled it and both were refused: the
 * attacker then bound them at its own first use). Its share's order, most
 * recently used last, survives a save and a load.
 */
void test_decision_instance_share(void)
{
	const size_t share = DECISION_MAX_PER_INSTANCE, total = DECISION_MAX_SESSIONS + 8;
	char dir[] = "/tmp/mcpw-share-XXXXXX", path[300] = "", sid[32], sha[65];
	struct decider_stats st = {};
	struct decider *back = NULL;
	struct fixture f;

	if (!setup(&f) || !ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp"))
		goto out;
	if (!flood(&f, 0, total, 1000))
		goto out;
	decider__stats(f.d, &st);
	ASSERT_EQ(st.sessions, share, "one instance holds its share of sessions");
	ASSERT_EQ(st.tokens, share, "and of tokens");
	ASSERT_EQ(st.evicted_sessions, total - share, "its own oldest sessions went");
	ASSERT_EQ(st.evicted_tokens, total - share, "and tokens");
	ASSERT_EQ(st.refused_sessions + st.refused_tokens, 0, "nothing refused");

	/* The victim's session, issued by the server, and its token. */
	decider__session_issued(f.d, "victim-session", &f.c2, 2000);
	ASSERT_EQ(judge_as(&f, &f.c2, "victim-session", "ffff", 2000), VERDICT_ALLOW,
		  "the victim's first request");
	ASSERT_EQ(judge_as(&f, &f.c, "victim-session", "aaaa", 3000), VERDICT_SESSION_HIJACK,
		  "its session used by the flooder: hijack");
	ASSERT_EQ(judge_as(&f, &f.c, NULL, "ffff", 3000), VERDICT_TOKEN_REPLAY,
		  "its token used by the flooder: replay");

	/* The flooder's oldest still bound, used again, outlives the next. */
	snprintf(sid, sizeof(sid), "flood-%zu", total - share);
	snprintf(sha, sizeof(sha), "%064zx", total - share);
	ASSERT_EQ(judge_as(&f, &f.c2, sid, "ffff", 4000), VERDICT_SESSION_HIJACK,
		  "the oldest kept is still the flooder's");
	ASSERT_EQ(judge_as(&f, &f.c, sid, sha, 4000), VERDICT_ALLOW, "used again");
	snprintf(path, sizeof(path), "%s/state.json", dir);
	back = decider__new();
	if (!ASSERT_OK_PTR(back, "decider") || !ASSERT_OK(decider__save(f.d, path, 5000), "save") ||
	    !ASSERT_OK(decider__load(back, path, 5000), "load"))
		goto out;
	decider__free(f.d);
	f.d = back;
	back = NULL;
	decider__set_policy(f.d, f.p);
	if (!flood(&f, total, 1, 6000))
		goto out;
	ASSERT_EQ(judge_as(&f, &f.c2, sid, "ffff", 7000), VERDICT_SESSION_HIJACK,
		  "after a restart the one used again is still kept");
	snprintf(sid, sizeof(sid), "flood-%zu", total - share + 1);
	ASSERT_EQ(judge_as(&f, &f.c2, sid, "ffff", 7000), VERDICT_ALLOW,
		  "and the next oldest went (the victim binds it)");
	decider__stats(f.d, &st);
	ASSERT_EQ(st.sessions, share + 2, "the flooder's share and the victim's two");
out:
	unlink(path);
	rmdir(dir);
	decider__free(back);
	teardown(&f);
}

/*
 * Tokens are bound by issuer and jti, however long (claims up to 1 KiB
 * each): two tokens whose keys agree for their first 600 bytes are two
 * tokens (the key was cut there, and the second one's first use from
 * another instance was a token_replay of the first), and a long one is
 * still found again.
 */
void test_decision_long_token_keys(void)
{
	char jti1[901], jti2[901];
	struct decision out;
	struct fixture f;

	memset(jti1, 'j', 900);
	jti1[900] = '\0';
	memcpy(jti2, jti1, sizeof(jti2));
	jti2[899] = 'k';
	if (!setup(&f))
		goto out;
	make_request(&f, "aaaa", "echo");
	f.r.session_id = NULL;
	f.r.token.iss = "https://issuer.example";
	f.r.token.jti = jti1;
	decider__judge(f.d, &f.c, &f.r, 1000, &out);
	json_decref(out.related);
	ASSERT_EQ(out.verdict, VERDICT_ALLOW, "c's token");
	snprintf(f.r.token.sha256, sizeof(f.r.token.sha256), "bbbb");
	f.r.token.jti = jti2;
	decider__judge(f.d, &f.c2, &f.r, 2000, &out);
	json_decref(out.related);
	ASSERT_EQ(out.verdict, VERDICT_ALLOW, "another token for c2, not a replay of c's");
	f.r.token.jti = jti1;
	decider__judge(f.d, &f.c2, &f.r, 3000, &out);
	json_decref(out.related);
	ASSERT_EQ(out.verdict, VERDICT_TOKEN_REPLAY, "c's own token from c2 is");
out:
	teardown(&f);
}
