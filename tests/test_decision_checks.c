// SPDX-License-Identifier: GPL-2.0
/*
 * The decider's identity checks one at a time: each case is built so that
 * exactly one check can find it (no other binding, session or connection
 * would give the same finding), so a check that stops working fails here
 * even where the end-to-end tests still see the finding through another.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_fixture.h"
#include "decision.h"
#include "harness.h"
#include "intern.h"
#include "policy.h"

#define SEC 1000000000ull

/* Client a: any client_id starting with "a", from /x/... */
#define POLICY_OPEN "{\"servers\":[{\"name\":\"t\",\"port\":8080}]," \
	"\"clients\":[{\"name\":\"a\",\"claims\":{\"client_id\":\"a*\"}," \
	"\"workloads\":[{\"cgroup\":\"/x/*\"}]}]}"
/* ... and live in one workload instance at a time, for 60 s after its
 * last connection closes. */
#define POLICY_ONE "{\"servers\":[{\"name\":\"t\",\"port\":8080}]," \
	"\"instance_window_seconds\":60," \
	"\"clients\":[{\"name\":\"a\",\"claims\":{\"client_id\":\"a*\"}," \
	"\"workloads\":[{\"cgroup\":\"/x/*\"}],\"max_instances\":1}]}"

struct fixture {
	struct decider *d;
	struct policy *p;
	struct conn c;		/* pid 41 in /x/one, in pod pod-1 */
	struct conn c3;		/* another connection of pid 41 */
	struct conn c2;		/* pid 42 in /x/two, in pod pod-2: another instance */
	struct conn c5;		/* pid 45 in /x/five, in no pod */
	struct request r;
	struct decision out;
};

static bool setup(struct fixture *f, const char *policy)
{
	struct policy_error err = {};

	memset(f, 0, sizeof(*f));
	f->d = fixture__decider(policy, &f->p, &err);
	if (!ASSERT_OK_PTR(f->d, err.msg))
		return false;
	fixture__conn_in_pod(&f->c, 41, 41, "/x/one", 1041, "pod-1");
	fixture__conn_in_pod(&f->c3, 41, 41, "/x/one", 3041, "pod-1");
	fixture__conn_in_pod(&f->c2, 42, 42, "/x/two", 1042, "pod-2");
	fixture__conn(&f->c5, 45, 45, "/x/five", 1045);
	return true;
}

static void teardown(struct fixture *f)
{
	struct conn *all[] = { &f->c, &f->c3, &f->c2, &f->c5 };
	size_t i;

	json_decref(f->out.related);
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		decider__conn_release(all[i]);
		workload__unshare(all[i]->client);
	}
	decider__free(f->d);
	policy__free(f->p);
}

/* A tools/call with a JWT of client_id and sub (its digest made of both
 * and tag: a token of its own), in session sid when not NULL. */
static void make_request(struct fixture *f, const char *client_id, const char *sub,
			 const char *tag, const char *sid)
{
	memset(&f->r, 0, sizeof(f->r));
	f->r.method = "tools/call";
	f->r.tool = "echo";
	f->r.session_id = sid;
	f->r.token.present = true;
	f->r.token.is_jwt = true;
	f->r.token.client_id = (char *)client_id;
	f->r.token.sub = (char *)sub;
	snprintf(f->r.token.sha256, sizeof(f->r.token.sha256), "%s-%s-%s", client_id, sub, tag);
}

/* The request from conn at now (seconds): its verdict. */
static enum verdict judge(struct fixture *f, struct conn *conn, uint64_t now_s)
{
	json_decref(f->out.related);
	decider__judge(f->d, conn, &f->r, now_s * SEC, &f->out);
	return f->out.verdict;
}

static void reason_has(struct fixture *f, const char *what, const char *msg)
{
	ASSERT_STRSTR(f->out.reason, what, msg);
}

void test_decision_checks(void)
{
	struct fixture f;

	if (test__start_subtest("service_account_token_of_another_pod")) {
		/* Fresh tokens each time: no binding knows them, only the
		 * pod named in the token can refuse them. */
		if (setup(&f, POLICY_OPEN)) {
			make_request(&f, "a1", "s", "t1", NULL);
			f.r.token.k8s_pod_uid = "pod-1";
			f.r.token.k8s_namespace = "ns";
			f.r.token.k8s_pod_name = "one";
			ASSERT_EQ(judge(&f, &f.c, 1), VERDICT_ALLOW, "used in its own pod");
			make_request(&f, "a1", "s", "t2", NULL);
			f.r.token.k8s_pod_uid = "pod-1";
			ASSERT_EQ(judge(&f, &f.c2, 2), VERDICT_TOKEN_REPLAY, "used in another pod");
			reason_has(&f, "service-account token of pod pod-1", "reason names its pod");
			reason_has(&f, "a different pod", "and says the sender's is another");
			make_request(&f, "a1", "s", "t3", NULL);
			f.r.token.k8s_pod_uid = "pod-1";
			ASSERT_EQ(judge(&f, &f.c5, 3), VERDICT_TOKEN_REPLAY, "used outside any pod");
			reason_has(&f, "which is not in a pod", "reason says so");
		}
		teardown(&f);
	}
	if (test__start_subtest("switch_on_a_connection")) {
		/* No session: only the connection remembers who it was. */
		if (setup(&f, POLICY_OPEN)) {
			make_request(&f, "a1", "s1", "t1", NULL);
			ASSERT_EQ(judge(&f, &f.c, 1), VERDICT_ALLOW, "first identity");
			make_request(&f, "a1", "s2", "t2", NULL);
			ASSERT_EQ(judge(&f, &f.c, 2), VERDICT_IDENTITY_SWITCH, "another sub");
			reason_has(&f, "This connection started with sub \"s1\"", "names the sub");
			make_request(&f, "a1", "s", "t3", NULL);
			ASSERT_EQ(judge(&f, &f.c3, 3), VERDICT_ALLOW, "a new connection may");
			make_request(&f, "a2", "s", "t4", NULL);
			ASSERT_EQ(judge(&f, &f.c3, 4), VERDICT_IDENTITY_SWITCH,
				  "another client_id of the same policy client");
			reason_has(&f, "client_id \"a1\"", "names the client_id");
		}
		teardown(&f);
	}
	if (test__start_subtest("switch_within_a_session")) {
		/* A new connection of the same instance is new to the
		 * connection check: only the session remembers. */
		if (setup(&f, POLICY_OPEN)) {
			make_request(&f, "a1", "s1", "t1", "S");
			ASSERT_EQ(judge(&f, &f.c, 1), VERDICT_ALLOW, "first identity");
			make_request(&f, "a1", "s2", "t2", "S");
			ASSERT_EQ(judge(&f, &f.c3, 2), VERDICT_IDENTITY_SWITCH,
				  "another sub in the session");
			reason_has(&f, "Session S started with sub \"s1\"", "names the session");
			make_request(&f, "a1", "s2", "t2", NULL);
			ASSERT_EQ(judge(&f, &f.c3, 3), VERDICT_ALLOW, "outside the session it may");
		}
		teardown(&f);
	}
	if (test__start_subtest("instance_window")) {
		/* Instance A closes its connection at 2 s: it holds the
		 * identity until 62 s. */
		if (setup(&f, POLICY_ONE)) {
			make_request(&f, "a1", "s", "t1", NULL);
			ASSERT_EQ(judge(&f, &f.c, 1), VERDICT_ALLOW, "instance A");
			decider__conn_closed(f.d, &f.c, 2 * SEC);
			make_request(&f, "a1", "s", "t2", NULL);
			ASSERT_EQ(judge(&f, &f.c2, 30), VERDICT_CLONE, "B inside A's window");
			reason_has(&f, "max_instances is 1", "reason gives the limit");
			decider__expire(f.d, 30 * SEC);
			ASSERT_EQ(judge(&f, &f.c2, 31), VERDICT_CLONE, "still, after an expiry pass");
			ASSERT_EQ(judge(&f, &f.c2, 63), VERDICT_ALLOW, "B once the window is over");
			make_request(&f, "a1", "s", "t3", NULL);
			ASSERT_EQ(judge(&f, &f.c, 64), VERDICT_CLONE, "and now A is the newcomer");
		}
		teardown(&f);
	}
	if (test__start_subtest("idle_session_expires")) {
		uint64_t idle_s = DECISION_SESSION_IDLE_NS / SEC;

		if (setup(&f, POLICY_OPEN)) {
			make_request(&f, "a1", "s", "t1", "S");
			ASSERT_EQ(judge(&f, &f.c, 1), VERDICT_ALLOW, "A binds S");
			make_request(&f, "a1", "s", "t2", "S");
			ASSERT_EQ(judge(&f, &f.c2, 2), VERDICT_SESSION_HIJACK, "B may not use it");
			decider__expire(f.d, (idle_s / 2) * SEC);
			ASSERT_EQ(judge(&f, &f.c2, idle_s / 2 + 1), VERDICT_SESSION_HIJACK,
				  "not while it is in use");
			decider__expire(f.d, (idle_s + 2) * SEC);
			ASSERT_EQ(judge(&f, &f.c2, idle_s + 3), VERDICT_ALLOW,
				  "idle past the limit it is gone, and B binds it");
			make_request(&f, "a1", "s", "t1", "S");
			ASSERT_EQ(judge(&f, &f.c, idle_s + 4), VERDICT_SESSION_HIJACK,
				  "now A may not");
		}
		teardown(&f);
	}
}
