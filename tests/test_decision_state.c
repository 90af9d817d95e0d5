// SPDX-License-Identifier: GPL-2.0
/*
 * Live state across restarts (decider__save / decider__load): what one
 * decider saves, another restores; the file is root's only (session ids
 * are credentials); a failed save leaves neither a file nor a temporary.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "decision.h"
#include "harness.h"
#include "intern.h"

static void make_conn(struct conn *c, uint32_t pid)
{
	struct workload w = {};

	memset(c, 0, sizeof(*c));
	c->cookie = 1000 + pid;
	w.attributed = true;
	w.pid = pid;
	w.cgroup_id = 5000 + pid;
	w.instance = 5000 + pid;
	w.exe = intern__get("/usr/bin/agent-\"x\"");
	w.cgroup = intern__get("/kubepods/pod-\xc3\xa9");
	w.node = "node-a";
	conn__set_client(c, &w);
}

void test_decision_state_roundtrip(void)
{
	/* The last is obs-text, which a header may carry: saved as U+FFFD
	 * (jansson refused it, and with it the whole save). */
	static const char *const sids[] = { "plain", "with \"quotes\" and \\", "caf\xc3\xa9",
					    "tab\there", "obs \xff" };
	char dir[] = "/tmp/mcpw-state-XXXXXX", path[256], bad[300];
	struct decider *d = decider__new(), *back = decider__new();
	struct decider_stats st = {};
	struct conn c, c2;
	struct stat sb;
	json_t *root;
	size_t i;

	if (!ASSERT_OK_PTR(d, "decider") || !ASSERT_OK_PTR(back, "decider") ||
	    !ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp"))
		goto out;
	snprintf(path, sizeof(path), "%s/state.json", dir);
	make_conn(&c, 41);
	make_conn(&c2, 42);
	for (i = 0; i < sizeof(sids) / sizeof(sids[0]); i++)
		decider__session_issued(d, sids[i], i % 2 ? &c2 : &c, 1000);
	decider__admit(d, &c, "ci-bot", 1000);
	decider__stats(d, &st);
	ASSERT_EQ(st.sessions, 5, "sessions kept");

	if (!ASSERT_OK(decider__save(d, path, 2000), "save"))
		goto cleanup;
	if (ASSERT_OK(stat(path, &sb), "state file"))
		ASSERT_EQ(sb.st_mode & 0777, 0600, "root's eyes only");
	root = json_load_file(path, 0, NULL);
	if (ASSERT_OK_PTR(root, "the file is JSON")) {
		json_t *plain = json_object_get(json_object_get(root, "sessions"), "plain");

		ASSERT_EQ(json_object_size(json_object_get(root, "sessions")), 5, "five sessions");
		ASSERT_OK_PTR(json_object_get(json_object_get(root, "sessions"), sids[1]),
			      "an escaped session id reads back as itself");
		ASSERT_OK_PTR(json_object_get(json_object_get(root, "sessions"), "obs \xef\xbf\xbd"),
			      "an obs-text byte reads back as U+FFFD");
		ASSERT_STREQ(json_string_value(json_object_get(json_object_get(plain, "who"), "exe")),
			     "/usr/bin/agent-\"x\"", "the workload's exe");
		ASSERT_STREQ(json_string_value(json_object_get(json_object_get(plain, "who"), "cgroup")),
			     "/kubepods/pod-\xc3\xa9", "its cgroup");
		ASSERT_EQ(json_integer_value(json_object_get(json_object_get(plain, "who"), "pid")), 41,
			  "its pid");
		ASSERT_TRUE(json_is_true(json_object_get(plain, "issued")), "issued by the server");
		ASSERT_EQ(json_integer_value(json_object_get(root, "saved_ns")), 2000, "saved_ns");
		ASSERT_EQ(json_object_size(json_object_get(root, "clients")), 1, "one client");
	}
	json_decref(root);

	ASSERT_OK(decider__load(back, path, 3000), "load");
	decider__stats(back, &st);
	ASSERT_EQ(st.sessions, 5, "sessions restored");
	ASSERT_EQ(st.instances, 1, "instance restored");

	/* Nowhere to write: an error, and nothing left behind. */
	snprintf(bad, sizeof(bad), "%s/missing/state.json", dir);
	ASSERT_ERR(decider__save(d, bad, 2000), "save into a missing directory");
	snprintf(bad, sizeof(bad), "%s/missing/state.json.tmp", dir);
	ASSERT_NEQ(access(bad, F_OK), 0, "no temporary left");
cleanup:
	unlink(path);
	rmdir(dir);
	decider__conn_release(&c);
	decider__conn_release(&c2);
	workload__unshare(c.client);
	workload__unshare(c2.client);
out:
	decider__free(d);
	decider__free(back);
}

/*
 * A full sessions table refuses a new binding, counts the refusal (the
 * agent reports it: a `lost` event, health), and keeps the bindings it
 * has: the first session stays bound to its workload, not handed to the
 * next one that uses it.
 */
void test_decision_state_full_table(void)
{
	enum { FILLERS = DECISION_MAX_SESSIONS / DECISION_MAX_PER_INSTANCE };
	struct decider *d = decider__new();
	struct decider_stats st = {};
	struct conn c[FILLERS], c2;
	char sid[32];
	size_t i;

	if (!ASSERT_OK_PTR(d, "decider"))
		return;
	/* Each instance holds its share at most: it takes this many. */
	for (i = 0; i < FILLERS; i++)
		make_conn(&c[i], 100 + i);
	make_conn(&c2, 42);
	for (i = 0; i < DECISION_MAX_SESSIONS; i++) {
		snprintf(sid, sizeof(sid), "s-%zu", i);
		decider__session_issued(d, sid, &c[i / DECISION_MAX_PER_INSTANCE], 1000);
	}
	decider__stats(d, &st);
	ASSERT_EQ(st.sessions, DECISION_MAX_SESSIONS, "full");
	ASSERT_EQ(st.refused_sessions, 0, "nothing refused yet");
	decider__session_issued(d, "one-more", &c2, 2000);
	decider__stats(d, &st);
	ASSERT_EQ(st.sessions, DECISION_MAX_SESSIONS, "still full");
	ASSERT_EQ(st.refused_sessions, 1, "the refusal counted");
	decider__session_issued(d, "s-0", &c2, 2000);
	decider__stats(d, &st);
	ASSERT_EQ(st.refused_sessions, 1, "an id already bound is no refusal");
	decider__session_issued(d, "mine", &c[0], 2000);
	decider__stats(d, &st);
	ASSERT_EQ(st.refused_sessions, 1, "an instance at its share makes its own room");
	ASSERT_EQ(st.evicted_sessions, 1, "its oldest went");
	for (i = 0; i < FILLERS; i++) {
		decider__conn_release(&c[i]);
		workload__unshare(c[i].client);
	}
	decider__conn_release(&c2);
	workload__unshare(c2.client);
	decider__free(d);
}

/*
 * A session id longer than 64 bytes is kept by its SHA-256: an allowed
 * client's 16 KiB ids cannot make the table (and the state file) a
 * gigabyte. The same id finds its binding again; a UUID keeps its text.
 */
void test_decision_state_long_session_id(void)
{
	char dir[] = "/tmp/mcpw-state-XXXXXX", path[256], *sid = malloc(16001);
	struct decider *d = decider__new();
	struct decider_stats st = {};
	const char *key;
	struct conn c;
	json_t *root = NULL, *v;

	if (!ASSERT_OK_PTR(d, "decider") || !ASSERT_OK_PTR(sid, "sid") ||
	    !ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp"))
		goto out;
	memset(sid, 'a', 16000);
	sid[16000] = '\0';
	make_conn(&c, 41);
	decider__session_issued(d, sid, &c, 1000);
	decider__session_issued(d, sid, &c, 1000);
	decider__session_issued(d, "6f1c2a4e-3b7d-4e8a-9c0f-1a2b3c4d5e6f", &c, 1000);
	decider__stats(d, &st);
	ASSERT_EQ(st.sessions, 2, "two sessions");
	snprintf(path, sizeof(path), "%s/state.json", dir);
	if (ASSERT_OK(decider__save(d, path, 2000), "save"))
		root = json_load_file(path, 0, NULL);
	json_object_foreach(json_object_get(root, "sessions"), key, v) {
		if (key[0] == 's')
			ASSERT_TRUE(strncmp(key, "sha256:", 7) == 0 && strlen(key) == 71,
				    "the long id kept by its digest");
		else
			ASSERT_STREQ(key, "6f1c2a4e-3b7d-4e8a-9c0f-1a2b3c4d5e6f", "a UUID as it is");
	}
	decider__session_ended(d, sid);
	decider__stats(d, &st);
	ASSERT_EQ(st.sessions, 1, "the long id ended by its id");
	json_decref(root);
	unlink(path);
	rmdir(dir);
	decider__conn_release(&c);
	workload__unshare(c.client);
out:
	free(sid);
	decider__free(d);
}
