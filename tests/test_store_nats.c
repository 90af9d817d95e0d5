// SPDX-License-Identifier: GPL-2.0
/*
 * The fleet store on a real nats-server with JetStream (userspace/store.h).
 * Each test starts its own server on a free loopback port with a store
 * directory of its own, opens two store handles as two nodes ("node-a",
 * "node-b") and checks what one node writes against what the other sees:
 * attributions (also when the lookup comes first), sightings and their TTL,
 * token claims, the alert stream read by a durable pull consumer, TLS, a
 * server without JetStream, and an outage (the server killed, then back on the
 * same port and directory, then back with nothing) with every call timed
 * while it is down. The server is killed by its pid and its directory
 * removed, pass or fail.
 *
 * Needs nats-server and libnats (Debian: nats-server, libnats-dev).
 */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <nats/nats.h>

#include "harness.h"
#include "store.h"

#define READY_MS	15000
#define SEEN_MS		3000
#ifdef __SANITIZE_THREAD__
#define SLOW		5	/* ThreadSanitizer alone makes a pthread_create ~20 ms */
#else
#define SLOW		1
#endif
#define FAST_MS		(50 * SLOW)
#define CLAIM_MS	(250 * SLOW)	/* twice the claim timeout, and some */

struct nats_server {
	pid_t pid;
	int port;
	bool no_js;		/* a server without JetStream (misconfigured) */
	bool tls;		/* TLS with dir/server.{pem,key} */
	char dir[PATH_MAX];	/* ours; removed at the end */
	char store_dir[PATH_MAX + 8];
};

/* What the drain callbacks saw. */
struct seen {
	char key[256];
	char value[1024];
	int found;
	int sightings_changed;
	int health_changes;
	bool connected;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static bool port_open(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (fd >= 0)
		close(fd);
	return ok;
}

static int server_start(struct nats_server *srv)
{
	char port[16], log[PATH_MAX + 8];
	int64_t deadline;

	if (!srv->dir[0]) {
		snprintf(srv->dir, sizeof(srv->dir), "/tmp/mcpw-nats-XXXXXX");
		if (!mkdtemp(srv->dir)) {
			srv->dir[0] = '\0';
			return -errno;
		}
		snprintf(srv->store_dir, sizeof(srv->store_dir), "%s/js", srv->dir);
	}
	if (!srv->port)
		srv->port = free_port();
	snprintf(port, sizeof(port), "%d", srv->port);
	snprintf(log, sizeof(log), "%s/server.log", srv->dir);
	srv->pid = fork();
	if (srv->pid < 0)
		return -errno;
	if (srv->pid == 0) {
		char cert[PATH_MAX + 16], key[PATH_MAX + 16];
		const char *argv[] = { "nats-server", srv->no_js ? "-D" : "-js", "-a", "127.0.0.1",
				       "-p", port, "-sd", srv->store_dir, "-l", log,
				       "--tls", "--tlscert", cert, "--tlskey", key, NULL };

		if (!srv->tls)
			argv[10] = NULL;
		snprintf(cert, sizeof(cert), "%s/server.pem", srv->dir);
		snprintf(key, sizeof(key), "%s/server.key", srv->dir);
		/* Dies with the test, even when the runner kills it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execvp("nats-server", (char **)argv);
		execv("/usr/sbin/nats-server", (char **)argv);
		_exit(127);
	}
	deadline = now_ms() + 10000;
	while (now_ms() < deadline) {
		int status;

		if (port_open(srv->port))
			return 0;
		if (waitpid(srv->pid, &status, WNOHANG) == srv->pid) {
			srv->pid = 0;
			test__log("nats-server exited (%d): is it installed? (apt-get install "
				  "nats-server)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			return -ENOENT;
		}
		usleep(20000);
	}
	return -ETIMEDOUT;
}

static void server_kill(struct nats_server *srv)
{
	if (srv->pid > 0) {
		kill(srv->pid, SIGKILL);
		waitpid(srv->pid, NULL, 0);
	}
	srv->pid = 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void server_cleanup(struct nats_server *srv)
{
	server_kill(srv);
	if (srv->dir[0])
		rm_tree(srv->dir);
	srv->dir[0] = '\0';
}

static void on_found(void *ctx, const char *key, const char *value)
{
	struct seen *s = ctx;

	snprintf(s->key, sizeof(s->key), "%s", key);
	snprintf(s->value, sizeof(s->value), "%s", value);
	s->found++;
}

static void on_sightings(void *ctx, const char *client)
{
	((struct seen *)ctx)->sightings_changed++;
}

static void on_health(void *ctx, const struct store_health *h)
{
	struct seen *s = ctx;

	s->health_changes++;
	s->connected = h->connected;
}

static const struct store_callbacks callbacks = {
	.conn_found = on_found,
	.sightings_changed = on_sightings,
	.health_changed = on_health,
};

/* Drains both stores as their fds say, for up to ms. */
static void pump(struct store *a, struct seen *sa, struct store *b, struct seen *sb, int ms)
{
	struct pollfd pfd[2] = {
		{ .fd = a ? store__fd(a) : -1, .events = POLLIN },
		{ .fd = b ? store__fd(b) : -1, .events = POLLIN },
	};

	poll(pfd, 2, ms);
	if (a)
		store__drain(a, &callbacks, sa);
	if (b)
		store__drain(b, &callbacks, sb);
}

#define WAIT_FOR(cond, ms) ({						\
	int64_t ___end = now_ms() + (ms);				\
	while (!(cond) && now_ms() < ___end)				\
		pump(a, &sa, b, &sb, 10);				\
	(cond);								\
})

static bool is_ready(struct store *s)
{
	struct store_health h;

	store__health(s, &h);
	return h.ready;
}

static bool is_connected(struct store *s)
{
	struct store_health h;

	store__health(s, &h);
	return h.connected;
}

static struct store *open_node(const struct nats_server *srv, const char *node,
			       unsigned int sighting_ttl)
{
	char url[64];
	struct store_config cfg = {
		.url = url,
		.node = node,
		.sighting_ttl_sec = sighting_ttl,
		.reconnect_wait_ms = 200,
	};
	struct store *s = NULL;

	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", srv->port);
	if (store__open(&cfg, &s))
		return NULL;
	return s;
}

static size_t count_sightings(struct store *s, const char *client)
{
	struct store_sighting out[16];
	ssize_t n = store__sightings(s, client, out, 16);

	return n > 0 ? (size_t)n : 0;
}

static bool has_sighting(struct store *s, const char *client, const char *node,
			 uint64_t instance)
{
	struct store_sighting out[16];
	ssize_t i, n = store__sightings(s, client, out, 16);

	for (i = 0; i < n; i++) {
		if (out[i].instance == instance && !strcmp(out[i].node, node))
			return true;
	}
	return false;
}

static bool lookup_is(struct store *s, const char *key, const char *want)
{
	const char *value = NULL;

	return store__conn_lookup(s, key, &value) == 0 && value && strstr(value, want);
}

/* Each test's start: a server and two ready nodes. */
#define SETUP(ttl)							\
	struct nats_server srv = { 0 };					\
	struct seen sa = { 0 }, sb = { 0 };				\
	struct store *a = NULL, *b = NULL;				\
	test__set_timeout(120);						\
	signal(SIGPIPE, SIG_IGN);					\
	if (!ASSERT_OK(server_start(&srv), "start nats-server"))	\
		goto cleanup;						\
	a = open_node(&srv, "node-a", (ttl));				\
	b = open_node(&srv, "node-b", (ttl));				\
	if (!ASSERT_OK_PTR(a, "open node-a") || !ASSERT_OK_PTR(b, "open node-b")) \
		goto cleanup;						\
	if (!ASSERT_TRUE(WAIT_FOR(is_ready(a) && is_ready(b), READY_MS), "both nodes ready")) \
		goto cleanup

#define TEARDOWN()							\
	store__close(a);						\
	store__close(b);						\
	server_cleanup(&srv)

void test_store_nats_attribution(void)
{
	const char *k4 = "10.0.0.1:40000>10.0.0.2:8080";
	const char *k6 = "[fd00::1]:40001>[fd00::2]:8080";
	const char *value = NULL;
	struct store_health h;
	int64_t t0;
	int err;

	SETUP(60);

	/* Published on A, looked up on B afterwards. */
	ASSERT_OK(store__conn_publish(a, k4, "{\"node\":\"node-a\",\"pid\":42}", 0), "publish");
	err = store__conn_lookup(b, k4, &value);
	if (err) {
		ASSERT_EQ(err, -EINPROGRESS, "lookup before it arrived");
		ASSERT_TRUE(WAIT_FOR(sb.found == 1, SEEN_MS), "conn_found on B");
		ASSERT_STREQ(sb.key, k4, "found key");
	}
	ASSERT_TRUE(WAIT_FOR(lookup_is(b, k4, "\"pid\":42"), SEEN_MS), "B attributes k4");

	/* Looked up on B first: the answer comes by the watch. */
	sb.found = 0;
	t0 = now_ms();
	ASSERT_EQ(store__conn_lookup(b, k6, &value), -EINPROGRESS, "lookup of an unknown key");
	ASSERT_TRUE(now_ms() - t0 < FAST_MS, "a miss does not wait");
	ASSERT_OK(store__conn_publish(a, k6, "{\"node\":\"node-a\",\"pid\":43}", 0), "publish v6");
	t0 = now_ms();
	ASSERT_TRUE(WAIT_FOR(sb.found == 1, SEEN_MS), "conn_found after the publish");
	test__log("lookup-first answered in %lld ms", (long long)(now_ms() - t0));
	ASSERT_STREQ(sb.key, k6, "found key");
	ASSERT_STRSTR(sb.value, "\"pid\":43", "found value");
	ASSERT_TRUE(lookup_is(b, k6, "\"pid\":43"), "then cached");

	/* A re-used 4-tuple: the latest publisher wins. */
	ASSERT_OK(store__conn_publish(a, k4, "{\"node\":\"node-a\",\"pid\":44}", 0), "republish");
	ASSERT_TRUE(WAIT_FOR(lookup_is(b, k4, "\"pid\":44"), SEEN_MS), "B sees the new owner");

	/* Closed on A: gone on B. */
	ASSERT_OK(store__conn_withdraw(a, k6), "withdraw");
	ASSERT_TRUE(WAIT_FOR(store__conn_lookup(b, k6, &value) == -EINPROGRESS, SEEN_MS),
		    "withdrawn on B");
	ASSERT_EQ(store__conn_withdraw(a, k6), -ENOENT, "withdraw twice");

	/* Keys the store refuses. */
	ASSERT_EQ(store__conn_publish(a, "no-arrow", "{}", 0), -EINVAL, "no '>'");
	ASSERT_EQ(store__conn_publish(a, ">x", "{}", 0), -EINVAL, "empty client");
	ASSERT_EQ(store__conn_publish(a, "a>b>c", "{}", 0), -EINVAL, "two '>'");
	ASSERT_EQ(store__conn_lookup(b, NULL, &value), -EINVAL, "NULL key");

	store__health(b, &h);
	ASSERT_GE(h.lookups, 3, "lookups counted");
	ASSERT_GE(h.lookups_resolved, 1, "resolved counted");
	store__health(a, &h);
	ASSERT_GE(h.conn_writes, 3, "writes counted");
	ASSERT_EQ(h.write_errors, 0, "no write errors");
cleanup:
	TEARDOWN();
}

void test_store_nats_sightings(void)
{
	const char *odd = "team.bot/α:1 =x";
	struct store_sighting out[4];
	struct store_health h;
	ssize_t n, i;
	int k;

	SETUP(60);

	ASSERT_OK(store__sighting_put(a, "ci-bot", 101, "{\"node\":\"node-a\",\"cgroup\":\"/a\"}"),
		  "put on A");
	ASSERT_OK(store__sighting_put(b, "ci-bot", 202, "{\"node\":\"node-b\",\"cgroup\":\"/b\"}"),
		  "put on B");
	ASSERT_TRUE(WAIT_FOR(count_sightings(a, "ci-bot") == 2 && count_sightings(b, "ci-bot") == 2,
			     SEEN_MS), "both instances visible on both nodes");
	n = store__sightings(b, "ci-bot", out, 4);
	ASSERT_EQ(n, 2, "two on B");
	for (i = 0; i < n; i++) {
		if (out[i].instance == 101) {
			ASSERT_STREQ(out[i].node, "node-a", "A's node");
			ASSERT_FALSE(out[i].local, "A's is remote on B");
			ASSERT_STRSTR(out[i].evidence, "\"cgroup\":\"/a\"", "A's evidence on B");
		} else {
			ASSERT_EQ(out[i].instance, 202, "B's instance");
			ASSERT_TRUE(out[i].local, "B's own is local");
		}
	}
	ASSERT_GE(sb.sightings_changed, 1, "B told of A's sighting");
	ASSERT_EQ(store__sightings(b, "ci-bot", out, 1), 1, "max respected");
	ASSERT_EQ(count_sightings(b, "nobody"), 0, "unknown client");

	/* Names with dots, slashes, spaces and UTF-8 survive the key encoding. */
	ASSERT_OK(store__sighting_put(a, odd, 7, "{\"x\":1}"), "odd name");
	ASSERT_TRUE(WAIT_FOR(has_sighting(b, odd, "node-a", 7), SEEN_MS), "odd name on B");

	/* Every request may call it: writes stay at one per TTL/3. */
	store__health(a, &h);
	for (k = 0; k < 1000; k++)
		store__sighting_put(a, "ci-bot", 101, "{\"node\":\"node-a\",\"cgroup\":\"/a\"}");
	pump(a, &sa, b, &sb, 200);
	{
		struct store_health h2;

		store__health(a, &h2);
		ASSERT_TRUE(h2.sighting_writes - h.sighting_writes <= 1, "writes rate-limited");
		ASSERT_EQ(h2.my_sightings, 2, "two of A's own");
	}
	ASSERT_EQ(store__sighting_put(a, "", 1, "{}"), -EINVAL, "empty client");
	ASSERT_EQ(store__sighting_put(a, "c", 1, NULL), -EINVAL, "no evidence");
cleanup:
	TEARDOWN();
}

void test_store_nats_sighting_ttl(void)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	kvStore *kv = NULL;
	char url[64];
	int64_t end;
	bool kept = true;

	SETUP(2);

	ASSERT_OK(store__sighting_put(a, "once", 1, "{\"n\":1}"), "put once");
	ASSERT_OK(store__sighting_put(a, "kept", 2, "{\"n\":2}"), "put kept");
	ASSERT_TRUE(WAIT_FOR(has_sighting(b, "once", "node-a", 1) &&
			     has_sighting(b, "kept", "node-a", 2), SEEN_MS), "both seen on B");
	/* "kept" is used every 200 ms for 4 s (twice the TTL); "once" is not. */
	end = now_ms() + 4000;
	while (now_ms() < end) {
		store__sighting_put(a, "kept", 2, "{\"n\":2}");
		pump(a, &sa, b, &sb, 200);
		kept &= has_sighting(b, "kept", "node-a", 2);
	}
	ASSERT_TRUE(kept, "a used instance never expires on B");
	ASSERT_FALSE(has_sighting(b, "once", "node-a", 1), "an unused one expired on B");
	ASSERT_FALSE(has_sighting(a, "once", "node-a", 1), "and on A");
	/* And in the bucket itself: the server expired it too. */
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", srv.port);
	if (ASSERT_EQ(natsConnection_ConnectTo(&nc, url), NATS_OK, "connect") &&
	    ASSERT_EQ(natsConnection_JetStream(&js, nc, NULL), NATS_OK, "JetStream") &&
	    ASSERT_EQ(js_KeyValue(&kv, js, "mcpwarden_sightings"), NATS_OK, "bucket")) {
		kvStatus *st = NULL;
		kvEntry *e = NULL;

		ASSERT_EQ(kvStore_Get(&e, kv, "once.node-a.1"), NATS_NOT_FOUND, "expired there");
		kvEntry_Destroy(e);
		e = NULL;
		ASSERT_EQ(kvStore_Get(&e, kv, "kept.node-a.2"), NATS_OK, "refreshed there");
		kvEntry_Destroy(e);
		if (ASSERT_EQ(kvStore_Status(&st, kv), NATS_OK, "bucket status")) {
			ASSERT_EQ(kvStatus_TTL(st), 2000000000ll, "bucket TTL (ns)");
			ASSERT_EQ(kvStatus_History(st), 1, "history 1");
			kvStatus_Destroy(st);
		}
	}
	{
		struct store_health h;

		store__health(a, &h);
		ASSERT_EQ(h.sighting_ttl_sec, 2, "TTL in force");
		ASSERT_EQ(h.my_sightings, 1, "A forgot its expired one");
	}
cleanup:
	kvStore_Destroy(kv);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	TEARDOWN();
}

void test_store_nats_token_claim(void)
{
	char *owner = NULL;
	int64_t t0;

	SETUP(60);

	t0 = now_ms();
	ASSERT_OK(store__token_claim(a, "sha256:aa11", 1, "{\"cgroup\":\"/a/1\"}", 0, &owner),
		  "first claim on A");
	test__log("first claim took %lld ms", (long long)(now_ms() - t0));
	ASSERT_NULL(owner, "no owner for a new token");
	ASSERT_OK(store__token_claim(a, "sha256:aa11", 1, "{}", 0, &owner), "same instance again");

	/* Another node replays it. */
	t0 = now_ms();
	ASSERT_EQ(store__token_claim(b, "sha256:aa11", 2, "{\"cgroup\":\"/b/2\"}", 0, &owner),
		  -EEXIST, "replay from B");
	ASSERT_TRUE(now_ms() - t0 < CLAIM_MS, "bounded by twice the claim timeout");
	ASSERT_STRSTR(owner, "\"node\":\"node-a\"", "first owner's node");
	ASSERT_STRSTR(owner, "\"instance\":1", "first owner's instance");
	ASSERT_STRSTR(owner, "\"cgroup\":\"/a/1\"", "first owner's evidence");
	free(owner);
	owner = NULL;
	/* Cached now: the same answer without a round trip. */
	ASSERT_EQ(store__token_claim(b, "sha256:aa11", 2, "{}", 0, &owner), -EEXIST, "cached");
	free(owner);
	owner = NULL;

	/* Another instance on the same node. */
	ASSERT_EQ(store__token_claim(a, "sha256:aa11", 3, "{}", 0, &owner), -EEXIST,
		  "replay on A");
	free(owner);
	owner = NULL;

	/* B first this time, with a jti key. */
	ASSERT_OK(store__token_claim(b, "jti:https://auth.example.com:77", 2, "{}", 0, NULL),
		  "B claims");
	ASSERT_EQ(store__token_claim(a, "jti:https://auth.example.com:77", 1, "{}", 0, &owner),
		  -EEXIST, "A replays B's");
	ASSERT_STRSTR(owner, "\"node\":\"node-b\"", "B owns it");
	free(owner);
	owner = NULL;

	/* A claim whose token expired gives way to the next user. */
	ASSERT_OK(store__token_claim(a, "sha256:old", 1, "{}", time(NULL) - 1, NULL), "old token");
	ASSERT_OK(store__token_claim(b, "sha256:old", 2, "{}", time(NULL) + 600, NULL),
		  "expired claim taken over");

	ASSERT_EQ(store__token_claim(a, "", 1, "{}", 0, NULL), -EINVAL, "empty key");
	ASSERT_EQ(store__token_claim(a, "sha256:bad", 1, "not json", 0, NULL), -EINVAL,
		  "bad evidence");
	{
		struct store_health h;

		store__health(b, &h);
		ASSERT_GE(h.token_conflicts, 2, "conflicts counted");
	}
cleanup:
	free(owner);
	TEARDOWN();
}

/* A SOC forwarder: a durable pull consumer on the alert stream. */
static int fetch_alerts(natsSubscription *sub, char subjects[][64], int max, int timeout_ms)
{
	natsMsgList list = { 0 };
	int i, n = 0;

	if (natsSubscription_Fetch(&list, sub, max, timeout_ms, NULL) != NATS_OK)
		return 0;
	for (i = 0; i < list.Count; i++) {
		snprintf(subjects[n++], 64, "%s", natsMsg_GetSubject(list.Msgs[i]));
		natsMsg_Ack(list.Msgs[i], NULL);
	}
	natsMsgList_Destroy(&list);
	return n;
}

static natsSubscription *bind_soc(jsCtx *js)
{
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsErrCode jerr = 0;

	jsSubOptions_Init(&so);
	so.Stream = "MCPWARDEN_ALERTS";
	so.Consumer = "soc";
	if (js_PullSubscribe(&sub, js, "mcpwarden.alerts.>", "soc", NULL, &so, &jerr) != NATS_OK)
		return NULL;
	return sub;
}

void test_store_nats_alerts(void)
{
	char url[64], subjects[16][64], line[128];
	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	jsStreamInfo *si = NULL;
	jsConsumerInfo *ci = NULL;
	jsConsumerConfig cc;
	jsCtx *js = NULL;
	jsErrCode jerr = 0;
	struct store_health h;
	int i, n, from_a = 0, from_b = 0;

	SETUP(60);

	for (i = 0; i < 3; i++) {
		snprintf(line, sizeof(line), "{\"kind\":\"alert\",\"verdict\":\"clone\",\"n\":%d}", i);
		ASSERT_OK(store__alert_publish(a, line), "alert from A");
	}
	for (i = 0; i < 2; i++)
		ASSERT_OK(store__alert_publish(b, "{\"kind\":\"alert\",\"verdict\":\"mismatch\"}"),
			  "alert from B");
	ASSERT_EQ(store__alert_publish(a, ""), -EINVAL, "empty alert");
	ASSERT_TRUE(WAIT_FOR(({ struct store_health ha, hb; store__health(a, &ha);
				store__health(b, &hb); ha.alerts_published == 3 &&
				hb.alerts_published == 2; }), SEEN_MS), "all published");

	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", srv.port);
	if (!ASSERT_EQ(natsConnection_ConnectTo(&nc, url), NATS_OK, "SOC connects") ||
	    !ASSERT_EQ(natsConnection_JetStream(&js, nc, NULL), NATS_OK, "SOC JetStream"))
		goto cleanup;
	if (ASSERT_EQ(js_GetStreamInfo(&si, js, "MCPWARDEN_ALERTS", NULL, &jerr), NATS_OK,
		      "stream info")) {
		ASSERT_EQ(si->Config->Storage, js_FileStorage, "file storage");
		ASSERT_EQ(si->Config->Retention, js_LimitsPolicy, "limits retention");
		ASSERT_EQ(si->Config->MaxAge, 7ll * 86400 * 1000000000, "max age 7 days");
		ASSERT_EQ(si->State.Msgs, 5, "five alerts stored");
		jsStreamInfo_Destroy(si);
	}
	jsConsumerConfig_Init(&cc);
	cc.Durable = "soc";
	cc.AckPolicy = js_AckExplicit;
	if (!ASSERT_EQ(js_AddConsumer(&ci, js, "MCPWARDEN_ALERTS", &cc, NULL, &jerr), NATS_OK,
		       "durable consumer"))
		goto cleanup;
	jsConsumerInfo_Destroy(ci);
	sub = bind_soc(js);
	if (!ASSERT_OK_PTR(sub, "pull subscription"))
		goto cleanup;
	n = fetch_alerts(sub, subjects, 16, 2000);
	ASSERT_EQ(n, 5, "the forwarder reads every alert");
	for (i = 0; i < n; i++) {
		from_a += !strcmp(subjects[i], "mcpwarden.alerts.node-a");
		from_b += !strcmp(subjects[i], "mcpwarden.alerts.node-b");
	}
	ASSERT_EQ(from_a, 3, "subject per node (A)");
	ASSERT_EQ(from_b, 2, "subject per node (B)");

	/* The forwarder restarts: it resumes after what it acknowledged. */
	natsSubscription_Destroy(sub);
	sub = bind_soc(js);
	if (!ASSERT_OK_PTR(sub, "pull subscription again"))
		goto cleanup;
	ASSERT_EQ(fetch_alerts(sub, subjects, 16, 300), 0, "nothing read twice");
	ASSERT_OK(store__alert_publish(b, "{\"kind\":\"alert\",\"verdict\":\"token_replay\"}"),
		  "one more");
	ASSERT_TRUE(WAIT_FOR(({ store__health(b, &h); h.alerts_published == 3; }), SEEN_MS),
		    "published");
	ASSERT_EQ(fetch_alerts(sub, subjects, 16, 2000), 1, "only the new one");
cleanup:
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	TEARDOWN();
}

/* Runs one call and checks it came back fast. */
#define FAST(call, what) ({						\
	int64_t ___t0 = now_ms();					\
	long long ___r = (long long)(call);				\
	int64_t ___dt = now_ms() - ___t0;				\
	if (!ASSERT_TRUE(___dt < FAST_MS, what))			\
		test__log("%s took %lld ms", what, (long long)___dt);	\
	___r;								\
})

void test_store_nats_outage(void)
{
	const char *k1 = "10.1.0.1:1000>10.2.0.1:8080", *k2 = "10.1.0.1:1001>10.2.0.1:8080";
	const char *k3 = "10.1.0.1:1002>10.2.0.1:8080";
	const char *value = NULL;
	struct store_health h;
	char *owner = NULL;

	SETUP(60);

	ASSERT_OK(store__sighting_put(a, "ci-bot", 1, "{\"i\":1}"), "sighting 1");
	ASSERT_OK(store__conn_publish(a, k1, "{\"pid\":1}", 0), "attribution 1");
	ASSERT_OK(store__conn_publish(a, k3, "{\"pid\":3}", 0), "attribution 3");
	ASSERT_TRUE(WAIT_FOR(has_sighting(b, "ci-bot", "node-a", 1) && lookup_is(b, k1, "\"pid\":1") &&
			     lookup_is(b, k3, "\"pid\":3"), SEEN_MS), "B sees A before the outage");

	/* The store dies. Nothing the agent calls may wait for it. */
	server_kill(&srv);
	ASSERT_EQ(FAST(store__sighting_put(a, "ci-bot", 2, "{\"i\":2}"), "sighting_put"), 0,
		  "sighting_put while down");
	ASSERT_EQ(FAST(store__conn_publish(a, k2, "{\"pid\":2}", 0), "conn_publish"), 0,
		  "conn_publish while down");
	ASSERT_EQ(FAST(store__alert_publish(a, "{\"kind\":\"alert\",\"n\":1}"), "alert_publish"),
		  0, "alert buffered");
	ASSERT_EQ(FAST(store__conn_withdraw(a, k3), "conn_withdraw"), 0, "closed while down");
	FAST(store__conn_lookup(a, "10.9.9.9:1>10.2.0.1:8080", &value), "conn_lookup");
	FAST(store__sightings(b, "ci-bot", NULL, 0), "sightings");
	{
		/* Sent before the client noticed: bounded by the claim timeout. */
		int64_t t0 = now_ms();

		store__token_claim(a, "sha256:down", 1, "{}", 0, &owner);
		ASSERT_TRUE(now_ms() - t0 < CLAIM_MS, "token_claim in the first instants");
	}
	free(owner);
	owner = NULL;
	ASSERT_TRUE(WAIT_FOR(!sa.connected && !sb.connected, 5000), "health_changed: down");
	ASSERT_FALSE(is_connected(a) || is_connected(b), "both see it down");
	ASSERT_EQ(FAST(store__token_claim(a, "sha256:down2", 1, "{}", 0, &owner), "token_claim"),
		  -EAGAIN, "token_claim says: judge locally");
	ASSERT_EQ(FAST(store__conn_lookup(b, "10.9.9.8:1>10.2.0.1:8080", &value), "lookup"),
		  -ENOTCONN, "lookup says: unreachable");
	ASSERT_TRUE(has_sighting(b, "ci-bot", "node-a", 1), "B still answers from its cache");
	ASSERT_TRUE(lookup_is(b, k1, "\"pid\":1"), "and attributes what it knew");
	store__health(a, &h);
	ASSERT_FALSE(h.ready, "A degraded");
	ASSERT_TRUE(h.last_error[0] != '\0', "with a reason");
	ASSERT_EQ(h.alerts_pending, 1, "the alert waits");
	test__log("degraded: %s", h.last_error);

	/* Back on the same port and store directory. */
	if (!ASSERT_OK(server_start(&srv), "restart nats-server"))
		goto cleanup;
	ASSERT_TRUE(WAIT_FOR(is_ready(a) && is_ready(b) && sa.connected, READY_MS),
		    "both ready again");
	ASSERT_TRUE(WAIT_FOR(has_sighting(b, "ci-bot", "node-a", 2) && lookup_is(b, k2, "\"pid\":2"),
			     SEEN_MS), "what A did while down reaches B");
	if (!ASSERT_TRUE(WAIT_FOR(store__conn_lookup(b, k3, &value) == -EINPROGRESS, SEEN_MS),
			 "and what it closed is gone")) {
		store__health(a, &h);
		test__log("A: my_conns %zu conn_writes %llu errors %llu last %s", h.my_conns,
			  (unsigned long long)h.conn_writes, (unsigned long long)h.write_errors,
			  h.last_error);
		store__health(b, &h);
		test__log("B: resyncs %llu conn_cache %zu last %s", (unsigned long long)h.resyncs,
			  h.conn_cache, h.last_error);
	}
	ASSERT_TRUE(WAIT_FOR(({ store__health(a, &h); h.alerts_published == 1; }), SEEN_MS),
		    "the buffered alert lands");
	store__health(a, &h);
	ASSERT_GE(h.reconnects, 1, "a reconnect counted");
	ASSERT_EQ(h.alerts_pending, 0, "nothing pending");

	/* Back with nothing (a new server): catch-up re-puts what A still holds. */
	server_kill(&srv);
	ASSERT_TRUE(WAIT_FOR(!is_connected(a), 5000), "down again");
	rm_tree(srv.store_dir);
	if (!ASSERT_OK(server_start(&srv), "start an empty nats-server"))
		goto cleanup;
	ASSERT_TRUE(WAIT_FOR(is_ready(a) && is_ready(b), READY_MS), "ready on the new server");
	ASSERT_TRUE(WAIT_FOR(has_sighting(b, "ci-bot", "node-a", 1) &&
			     has_sighting(b, "ci-bot", "node-a", 2) &&
			     lookup_is(b, k1, "\"pid\":1") && lookup_is(b, k2, "\"pid\":2"), SEEN_MS),
		    "A's live sightings and attributions re-put");
	ASSERT_OK(store__token_claim(a, "sha256:after", 1, "{}", 0, NULL), "claims work again");
cleanup:
	free(owner);
	TEARDOWN();
}

void test_store_nats_down_at_start(void)
{
	struct nats_server srv = { 0 };
	struct seen sa = { 0 }, sb = { 0 };
	struct store *a = NULL, *b = NULL;
	const char *value = NULL;
	struct store_health h;
	int64_t t0;

	test__set_timeout(60);
	/* The library's one-time start (TLS, threads) is not what is timed. */
	nats_Open(-1);
	srv.port = free_port();
	/* Nothing listens yet. */
	t0 = now_ms();
	a = open_node(&srv, "node-a", 60);
	test__log("open took %lld ms", (long long)(now_ms() - t0));
	ASSERT_TRUE(now_ms() - t0 < FAST_MS, "open does not wait for the server");
	if (!ASSERT_OK_PTR(a, "open without a server"))
		goto cleanup;
	pump(a, &sa, NULL, NULL, 100);
	store__health(a, &h);
	ASSERT_FALSE(h.connected, "degraded from the start");
	ASSERT_EQ(FAST(store__token_claim(a, "sha256:x", 1, "{}", 0, NULL), "claim"), -EAGAIN,
		  "claim");
	ASSERT_EQ(FAST(store__conn_lookup(a, "1.1.1.1:1>2.2.2.2:2", &value), "lookup"), -ENOTCONN,
		  "lookup");
	ASSERT_OK(store__sighting_put(a, "c", 1, "{}"), "sighting queued");
	ASSERT_OK(store__alert_publish(a, "{\"kind\":\"alert\"}"), "alert queued");

	if (!ASSERT_OK(server_start(&srv), "start nats-server late"))
		goto cleanup;
	ASSERT_TRUE(WAIT_FOR(is_ready(a), READY_MS), "connects in the background");
	ASSERT_TRUE(WAIT_FOR(({ store__health(a, &h); h.alerts_published == 1 &&
				h.sighting_writes == 1; }), SEEN_MS), "and catches up");
	ASSERT_TRUE(WAIT_FOR(has_sighting(a, "c", "node-a", 1), SEEN_MS), "its own echo");
cleanup:
	store__close(a);
	store__close(b);
	server_cleanup(&srv);
}

void test_store_nats_config(void)
{
	struct store_config cfg = { .url = "nats://127.0.0.1:1", .node = "n" };
	struct store *s = NULL;
	json_t *j;
	struct store_health h;

	cfg.url = "redis://127.0.0.1:6379";
	ASSERT_EQ(store__open(&cfg, &s), -EPROTONOSUPPORT, "no redis backend yet");
	cfg.url = "nats://127.0.0.1:1";
	cfg.node = "";
	ASSERT_EQ(store__open(&cfg, &s), -EINVAL, "a node name is required");
	cfg.node = "n";
	cfg.creds_file = "/nonexistent/user.creds";
	ASSERT_EQ(store__open(&cfg, &s), -ENOENT, "missing credentials");
	cfg.creds_file = NULL;
	cfg.cert_file = "/etc/hostname";
	ASSERT_EQ(store__open(&cfg, &s), -EINVAL, "a certificate without its key");
	cfg.cert_file = NULL;
	if (!ASSERT_OK(store__open(&cfg, &s), "open"))
		return;
	store__health(s, &h);
	j = store_health__json(&h);
	ASSERT_OK_PTR(j, "health as JSON");
	ASSERT_STREQ(json_string_value(json_object_get(j, "state")), "degraded", "state");
	json_decref(j);
	store__close(s);
}

void test_store_nats_no_jetstream(void)
{
	struct nats_server srv = { .no_js = true };
	struct seen sa = { 0 }, sb = { 0 };
	struct store *a = NULL, *b = NULL;
	struct store_health h;

	test__set_timeout(60);
	if (!ASSERT_OK(server_start(&srv), "start nats-server without JetStream"))
		goto cleanup;
	a = open_node(&srv, "node-a", 60);
	if (!ASSERT_OK_PTR(a, "open"))
		goto cleanup;
	ASSERT_TRUE(WAIT_FOR(({ store__health(a, &h); h.connected && h.last_error[0]; }), 5000),
		    "connected, with a complaint");
	pump(a, &sa, NULL, NULL, 500);
	store__health(a, &h);
	ASSERT_FALSE(h.ready, "never ready without JetStream");
	ASSERT_STRSTR(h.last_error, "JetStream is not enabled", "says why");
	ASSERT_EQ(store__token_claim(a, "sha256:x", 1, "{}", 0, NULL), -EAGAIN, "judged locally");
	ASSERT_OK(store__alert_publish(a, "{\"kind\":\"alert\"}"), "alerts still buffered");
cleanup:
	store__close(a);
	server_cleanup(&srv);
}

/* A CA and a server certificate for 127.0.0.1, made with the openssl tool. */
static int make_certs(const char *dir)
{
	char cmd[4 * PATH_MAX];

	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && ( "
		 "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca "
		 "-keyout ca.key -out ca.pem && "
		 "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 "
		 "-keyout server.key -out server.csr && "
		 "printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext && "
		 "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
		 "-days 1 -extfile san.ext -out server.pem ) >/dev/null 2>&1",
		 dir);
	return system(cmd) == 0 ? 0 : -EIO;
}

void test_store_nats_tls(void)
{
	struct nats_server srv = { .tls = true };
	struct seen sa = { 0 }, sb = { 0 };
	struct store *a = NULL, *b = NULL;
	char url[64], ca[PATH_MAX + 8];
	struct store_config cfg = { .url = url, .node = "node-a", .ca_file = ca };
	struct store_health h;

	test__set_timeout(60);
	snprintf(srv.dir, sizeof(srv.dir), "/tmp/mcpw-nats-XXXXXX");
	if (!ASSERT_OK_PTR(mkdtemp(srv.dir), "temporary directory")) {
		srv.dir[0] = '\0';
		goto cleanup;
	}
	snprintf(srv.store_dir, sizeof(srv.store_dir), "%s/js", srv.dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", srv.dir);
	if (!ASSERT_OK(make_certs(srv.dir), "certificates (openssl)") ||
	    !ASSERT_OK(server_start(&srv), "start nats-server with TLS"))
		goto cleanup;
	snprintf(url, sizeof(url), "tls://127.0.0.1:%d", srv.port);

	/* Verified against our CA: works end to end. */
	if (!ASSERT_OK(store__open(&cfg, &a), "open over TLS"))
		goto cleanup;
	ASSERT_TRUE(WAIT_FOR(is_ready(a), READY_MS), "ready over TLS");
	ASSERT_OK(store__token_claim(a, "sha256:tls", 1, "{}", 0, NULL), "a claim over TLS");

	/* Without the CA the server is not trusted: never connected. */
	cfg.ca_file = NULL;
	cfg.node = "node-b";
	if (!ASSERT_OK(store__open(&cfg, &b), "open without the CA"))
		goto cleanup;
	pump(a, &sa, b, &sb, 1500);
	store__health(b, &h);
	ASSERT_FALSE(h.connected, "an untrusted server is refused");
cleanup:
	store__close(a);
	store__close(b);
	server_cleanup(&srv);
}
