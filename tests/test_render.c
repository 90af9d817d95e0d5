// SPDX-License-Identifier: GPL-2.0
/*
 * Event text reused across events (render.h): what is handed out is what
 * a fresh rendering gives, it stays valid for the event being written,
 * and it follows every change of what it was rendered from.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "intern.h"
#include "render.h"

static char *fresh(json_t *o)
{
	char *t = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

	json_decref(o);
	return t;
}

static bool same(const struct output_raw *raw, const char *want)
{
	return want && raw->len == strlen(want) && memcmp(raw->json, want, raw->len) == 0;
}

/* The connection member as a jansson object would render it. */
static char *conn_as_object(const struct conn *c)
{
	char src[64], dst[64];

	conn__addr(&c->tuple, false, src, sizeof(src));
	conn__addr(&c->tuple, true, dst, sizeof(dst));
	return fresh(json_pack("{s:s,s:s,s:I,s:I,s:b}", "src", src, "dst", dst,
			       "netns", (json_int_t)c->netns, "cookie", (json_int_t)c->cookie,
			       "preexisting", c->preexisting));
}

static void make_workload(struct workload *w, uint32_t pid, const char *exe)
{
	memset(w, 0, sizeof(*w));
	w->attributed = true;
	w->pid = pid;
	w->tid = pid + 1;
	w->start_ns = (uint64_t)pid * 7919;
	w->cgroup_id = 1000 + pid % 17;
	w->uid = pid % 3;
	w->exe = intern__get(exe);
	w->node = "test-node";
}

/* An event's client and server workloads never evict each other: the
 * client's text is still whole after the server's is rendered. */
void test_render_workload_pairs(void)
{
	struct render *r = render__new();
	struct output_raw cli, srv;
	const struct workload *sc, *ss;
	struct workload c, s;
	char *want_c = NULL, *want_s = NULL;
	uint64_t rendered = 0, reused = 0;
	int i, bad = 0;

	if (!ASSERT_OK_PTR(r, "render"))
		return;
	srand(42);
	for (i = 0; i < 500 && !bad; i++) {
		make_workload(&c, 2 + (uint32_t)rand() % 4000000, "/usr/bin/client");
		make_workload(&s, 2 + (uint32_t)rand() % 4000000, "/usr/bin/server");
		want_c = fresh(workload__json(&c));
		want_s = fresh(workload__json(&s));
		sc = workload__share(&c);
		ss = workload__share(&s);
		if (!render__workload(r, false, sc, &cli) || !render__workload(r, true, ss, &srv))
			bad = 1;
		else if (!same(&cli, want_c) || !same(&srv, want_s))
			bad = 2;
		/* The client again, as the next event of its connection
		 * would: still kept, not rendered a third time. */
		else if (!render__workload(r, false, sc, &cli) || !same(&cli, want_c))
			bad = 3;
		ASSERT_STREQ(cli.key, "workload", "client key");
		ASSERT_STREQ(srv.key, "server_workload", "server key");
		free(want_c);
		free(want_s);
		workload__unshare(sc);
		workload__unshare(ss);
	}
	ASSERT_EQ(bad, 0, "every pair rendered and both texts intact");
	render__stats(r, &rendered, &reused);
	ASSERT_EQ(rendered, 1000, "each workload rendered once");
	ASSERT_EQ(reused, 500, "the client's second use reused");
	render__free(r);
}

/* The same workload is rendered once; any change renders anew. */
void test_render_workload_changes(void)
{
	struct render *r = render__new();
	const struct workload *s1, *s2, *s3;
	struct output_raw a, b;
	struct workload w;
	char *want = NULL;

	if (!ASSERT_OK_PTR(r, "render"))
		return;
	make_workload(&w, 4242, "/usr/bin/agent-x");
	s1 = workload__share(&w);
	if (ASSERT_TRUE(render__workload(r, false, s1, &a), "first") &&
	    ASSERT_TRUE(render__workload(r, false, s1, &b), "again"))
		ASSERT_TRUE(a.json == b.json, "kept, not rendered again");
	/* A changed workload is another shared copy. */
	make_workload(&w, 4242, "/usr/bin/agent-x");
	w.attributed = false;
	w.why_unattributed = "the sender's cgroup is not known";
	want = fresh(workload__json(&w));
	s2 = workload__share(&w);
	if (ASSERT_TRUE(render__workload(r, false, s2, &b), "changed"))
		ASSERT_TRUE(same(&b, want), "the change is in the text");
	ASSERT_OK_PTR(strstr(want, "unattributed_reason"), "the reason is rendered");
	free(want);
	/* Freed, its address may go to another workload: that one is
	 * rendered anew (kept by id, not by address). */
	workload__unshare(s1);
	make_workload(&w, 4242, "/usr/bin/other");
	want = fresh(workload__json(&w));
	s3 = workload__share(&w);
	if (ASSERT_TRUE(render__workload(r, false, s3, &b), "other exe"))
		ASSERT_TRUE(same(&b, want), "the new exe is in the text");
	free(want);
	workload__unshare(s2);
	workload__unshare(s3);
	render__free(r);
	ASSERT_EQ(workload__shared_count(), 0, "the renderings hold no workload");
}

/* A connection's member follows its render_gen; a closed one is dropped. */
void test_render_conn_and_claim(void)
{
	struct render *r = render__new();
	struct conn c = {};
	struct output_raw raw[2], claim, again;
	struct request req = {};
	struct workload w;
	char *want = NULL;

	if (!ASSERT_OK_PTR(r, "render"))
		return;
	make_workload(&w, 777, "/usr/bin/client");
	conn__set_client(&c, &w);
	c.cookie = 12345;
	c.netns = 4026531840u;
	c.tuple.family = 2;
	c.tuple.sport = 8080;
	c.tuple.dport = 40000;
	want = conn_as_object(&c);
	if (ASSERT_TRUE(render__conn(r, &c, raw), "conn")) {
		ASSERT_STREQ(raw[1].key, "connection", "key");
		ASSERT_TRUE(same(&raw[1], want), "connection text");
	}
	free(want);
	c.tuple.dport = 40001;
	c.render_gen++;
	c.preexisting = true;
	want = conn_as_object(&c);
	if (ASSERT_TRUE(render__conn(r, &c, raw), "conn after a change"))
		ASSERT_TRUE(same(&raw[1], want), "rendered anew");
	free(want);

	req.session_id = "session-1";
	req.protocol_version = "2025-11-25";
	req.token.present = true;
	strcpy(req.token.sha256, "ab12");
	req.token.client_id = "ci-bot";
	want = fresh(request__claim_json(&req));
	if (ASSERT_TRUE(render__claim(r, &req, &claim), "claim") &&
	    ASSERT_TRUE(same(&claim, want), "claim text") &&
	    ASSERT_TRUE(render__claim(r, &req, &again), "claim again"))
		ASSERT_TRUE(claim.json == again.json, "kept");
	free(want);
	req.session_id = "session-2";
	want = fresh(request__claim_json(&req));
	if (ASSERT_TRUE(render__claim(r, &req, &claim), "other session"))
		ASSERT_TRUE(same(&claim, want), "the new session is in the text");
	free(want);
	req.token.sig = JWT_SIG_INVALID;
	want = fresh(request__claim_json(&req));
	if (ASSERT_TRUE(render__claim(r, &req, &claim), "other signature verdict"))
		ASSERT_TRUE(same(&claim, want), "the verdict is in the text");
	free(want);

	/* Another connection (or this one forgotten) claiming the same:
	 * the same text, not rendered again. */
	render__forget(r, c.cookie);
	if (ASSERT_TRUE(render__claim(r, &req, &again), "claim after the connection went"))
		ASSERT_TRUE(claim.json == again.json, "kept across connections");
	workload__unshare(c.client);
	render__free(r);
}

/* The connection text, byte for byte: ends of every width, IPv4 (written
 * by hand) and IPv6, and cookies past 32 bits. */
void test_render_conn_text(void)
{
	static const unsigned char v4a[16] = { [10] = 0xff, [11] = 0xff, 10, 0, 200, 255 };
	static const unsigned char v4b[16] = { [10] = 0xff, [11] = 0xff, 0, 0, 0, 0 };
	static const unsigned char v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	struct conn c;
	char buf[CONN_TEXT_MAX], a[64];
	size_t n;

	memset(&c, 0, sizeof(c));
	memcpy(c.tuple.saddr, v4a, 16);
	memcpy(c.tuple.daddr, v4b, 16);
	c.tuple.sport = 65535;
	c.tuple.dport = 0;
	c.netns = 4026531833u;
	c.cookie = 0x123456789abull;
	c.preexisting = true;
	conn__addr(&c.tuple, true, a, sizeof(a));
	ASSERT_STREQ(a, "10.0.200.255:65535", "server end");
	conn__addr(&c.tuple, false, a, sizeof(a));
	ASSERT_STREQ(a, "0.0.0.0:0", "client end");
	conn__addr(&c.tuple, true, a, 8);
	ASSERT_STREQ(a, "10.0.20", "cut to the buffer, terminated");
	n = conn__text(&c, buf, sizeof(buf));
	ASSERT_STREQ(buf, "{\"src\":\"0.0.0.0:0\",\"dst\":\"10.0.200.255:65535\","
		     "\"netns\":4026531833,\"cookie\":1250999896491,\"preexisting\":true}", "text");
	ASSERT_EQ(n, strlen(buf), "its length");
	ASSERT_EQ(conn__text(&c, buf, n), 0, "a buffer one short takes nothing");
	memcpy(c.tuple.daddr, v6, 16);
	c.tuple.dport = 443;
	c.preexisting = false;
	c.cookie = 7;
	n = conn__text(&c, buf, sizeof(buf));
	ASSERT_STREQ(buf, "{\"src\":\"[2001:db8::1]:443\",\"dst\":\"10.0.200.255:65535\","
		     "\"netns\":4026531833,\"cookie\":7,\"preexisting\":false}", "IPv6");
	ASSERT_EQ(n, strlen(buf), "its length");
}
