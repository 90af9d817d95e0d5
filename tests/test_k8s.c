// SPDX-License-Identifier: GPL-2.0
/*
 * Pod watch tests against a fake API server: a thread on 127.0.0.1 that
 * answers each request from a per-test script, with the fixtures in
 * tests/data/k8s/ (a PodList, watch events as the API server streams them
 * with chunked encoding, Status objects). Each script step the test must
 * observe first waits for the test to advance f->step, so what podmeta
 * holds is checked after each stage, not only at the end.
 */
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "k8s.h"
#include "podmeta.h"
#include "workload.h"

#define UID_AGENT	"8f1c2a6e-3b1d-4c5e-9a7f-0d2b4e6f8a10"
#define UID_INDEXER	"2b7e4d90-6a1f-4e3c-8d5b-7f9a1c3e5b20"
#define UID_TICKETS	"c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"
#define UID_FILES	"d9e8f7a6-b5c4-4d3e-a2f1-0e9d8c7b6a50"
#define SELECTOR	"fieldSelector=spec.nodeName%3Dnode-a"
#define FAKE_MAX_REQS	32

struct fake_req {
	char target[2048];
	char auth[512];
};

struct fake {
	int lfd;
	int port;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int step;		/* advanced by the test */
	bool stop;
	int n_reqs;
	struct fake_req reqs[FAKE_MAX_REQS];
	void (*serve)(struct fake *f, int idx, const struct fake_req *r, int fd);
};

static struct fake fake;
static char tmpdir[PATH_MAX];
static char token_path[PATH_MAX + 16];

static const char *data(const char *name)
{
	static char p[PATH_MAX + 64];
	const char *top = getenv("MCPW_TOP");

	snprintf(p, sizeof(p), "%s/tests/data/k8s/%s", top ? top : ".", name);
	return p;
}

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return NULL;
	if (getdelim(&buf, &len, '\0', f) < 0) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* ---- the fake API server ---------------------------------------------- */

static bool fake_stopping(struct fake *f)
{
	bool stop;

	pthread_mutex_lock(&f->lock);
	stop = f->stop;
	pthread_mutex_unlock(&f->lock);
	return stop;
}

/* Blocks the script until the test reaches step (or the test ends). */
static void fake_wait_step(struct fake *f, int step)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	pthread_mutex_lock(&f->lock);
	while (!f->stop && f->step < step &&
	       pthread_cond_timedwait(&f->cond, &f->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&f->lock);
}

static void fake_set_step(struct fake *f, int step)
{
	pthread_mutex_lock(&f->lock);
	f->step = step;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

static int fake_n_reqs(struct fake *f)
{
	int n;

	pthread_mutex_lock(&f->lock);
	n = f->n_reqs;
	pthread_mutex_unlock(&f->lock);
	return n;
}

static void send_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n <= 0)
			return;	/* the client went away: the test sees it */
		buf += n;
		len -= (size_t)n;
	}
}

static void reply(int fd, int status, const char *body)
{
	char head[256];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
		 status, status == 200 ? "OK" : "Error", strlen(body));
	send_all(fd, head, strlen(head));
	send_all(fd, body, strlen(body));
}

static void reply_file(int fd, int status, const char *name)
{
	char *body = slurp(data(name));

	reply(fd, status, body ? body : "");
	free(body);
}

static void stream_begin(int fd)
{
	static const char head[] =
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

	send_all(fd, head, sizeof(head) - 1);
}

static void stream_chunk(int fd, const char *data_, size_t len)
{
	char size[32];

	snprintf(size, sizeof(size), "%zx\r\n", len);
	send_all(fd, size, strlen(size));
	send_all(fd, data_, len);
	send_all(fd, "\r\n", 2);
}

/* One event line, cut in two chunks so the client must join them. */
static void stream_line(int fd, const char *line, size_t len)
{
	char *buf = malloc(len + 1);
	size_t half = len / 2;

	if (!buf)
		return;
	memcpy(buf, line, len);
	buf[len] = '\n';
	stream_chunk(fd, buf, half);
	usleep(2000);
	stream_chunk(fd, buf + half, len + 1 - half);
	free(buf);
}

/* Lines first..first+count-1 of a fixture (count < 0: to the end). */
static void stream_lines(int fd, const char *name, int first, int count)
{
	char *text = slurp(data(name)), *line, *nl;
	int i = 0;

	for (line = text; line && *line; line = nl + 1, i++) {
		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line);
		if (i >= first && (count < 0 || i < first + count) && nl > line)
			stream_line(fd, line, (size_t)(nl - line));
		if (!*nl)
			break;
	}
	free(text);
}

static void stream_end(int fd)
{
	send_all(fd, "0\r\n\r\n", 5);
}

/* Keeps a watch open until the client hangs up or the test ends. */
static void hold(struct fake *f, int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[256];

	while (!fake_stopping(f)) {
		if (poll(&p, 1, 20) > 0 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			return;
	}
}

static bool read_request(int fd, struct fake_req *r)
{
	char buf[16384], *end, *line, *sp;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t len = 0;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	while (len < sizeof(buf) - 1) {
		if (poll(&p, 1, 5000) <= 0)
			return false;
		n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	end = strstr(buf, "\r\n");
	if (!end || strncmp(buf, "GET ", 4) != 0)
		return false;
	*end = '\0';
	sp = strchr(buf + 4, ' ');
	if (sp)
		*sp = '\0';
	snprintf(r->target, sizeof(r->target), "%s", buf + 4);
	for (line = end + 2; (end = strstr(line, "\r\n")) && end != line; line = end + 2) {
		*end = '\0';
		if (strncasecmp(line, "Authorization:", 14) == 0)
			snprintf(r->auth, sizeof(r->auth), "%s", line + 14 + strspn(line + 14, " "));
	}
	return true;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd p = { .fd = f->lfd, .events = POLLIN };
	struct fake_req r;
	int fd, idx;

	while (!fake_stopping(f)) {
		if (poll(&p, 1, 20) <= 0)
			continue;
		fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		if (read_request(fd, &r)) {
			pthread_mutex_lock(&f->lock);
			idx = f->n_reqs;
			if (idx < FAKE_MAX_REQS)
				f->reqs[f->n_reqs++] = r;
			pthread_mutex_unlock(&f->lock);
			if (idx < FAKE_MAX_REQS)
				f->serve(f, idx, &r, fd);
		}
		close(fd);
	}
	return NULL;
}

static bool fake_start(struct fake *f,
		       void (*serve)(struct fake *, int, const struct fake_req *, int))
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->serve = serve;
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(f->lfd, 16) || getsockname(f->lfd, (struct sockaddr *)&sa, &sl))
		return false;
	f->port = ntohs(sa.sin_port);
	if (pthread_create(&f->thread, NULL, fake_main, f)) {
		close(f->lfd);
		f->lfd = -1;
		return false;
	}
	return true;
}

static void fake_stop(struct fake *f)
{
	if (f->lfd <= 0)
		return;
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	close(f->lfd);
	f->lfd = -1;
}

static struct fake_req *req(struct fake *f, int i)
{
	static struct fake_req none;

	return i < fake_n_reqs(f) ? &f->reqs[i] : &none;
}

/* ---- test side --------------------------------------------------------- */

static bool write_token(const char *value)
{
	char tmp[PATH_MAX + 32];
	FILE *fp;

	/* As the kubelet rotates projected tokens: a new file renamed in. */
	snprintf(tmp, sizeof(tmp), "%s/.token.tmp", tmpdir);
	fp = fopen(tmp, "w");
	if (!fp)
		return false;
	fprintf(fp, "%s\n", value);
	fclose(fp);
	return rename(tmp, token_path) == 0;
}

static bool setup(const char *token)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/mcpw-k8s-XXXXXX");
	if (!mkdtemp(tmpdir))
		return false;
	snprintf(token_path, sizeof(token_path), "%s/token", tmpdir);
	return write_token(token);
}

static void teardown(void)
{
	char p[PATH_MAX + 32];

	unlink(token_path);
	snprintf(p, sizeof(p), "%s/.token.tmp", tmpdir);
	unlink(p);
	rmdir(tmpdir);
}

static void opts_for(struct k8s_opts *o, char *url, size_t urllen)
{
	snprintf(url, urllen, "http://127.0.0.1:%d", fake.port);
	memset(o, 0, sizeof(*o));
	o->api_server = url;
	o->token_file = token_path;
	o->node_name = "node-a";
	o->backoff_min_ms = 20;
	o->backoff_max_ms = 200;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Drains as the daemon's loop would until done() holds or time runs out. */
static bool pump(struct k8s *w, struct podmeta *pm, bool (*done)(struct k8s *, struct podmeta *),
		 int timeout_ms)
{
	struct pollfd p = { .fd = k8s__fd(w), .events = POLLIN };
	long long end = now_ms() + timeout_ms;

	for (;;) {
		if (done(w, pm))
			return true;
		if (now_ms() > end)
			return false;
		if (poll(&p, 1, 20) > 0)
			k8s__drain(w, pm);
	}
}

/* The pod's facts when known, NULL when absent or pending. */
static struct pod_info *pod(struct podmeta *pm, const char *uid)
{
	struct pod_info *pi = podmeta__lookup(pm, uid);

	if (pi && pi->pending) {
		podmeta__put(pi);
		return NULL;
	}
	return pi;
}

static bool has_pod(struct podmeta *pm, const char *uid)
{
	struct pod_info *pi = pod(pm, uid);

	podmeta__put(pi);
	return pi != NULL;
}

static const char *label(const struct pod_info *pi, const char *key)
{
	size_t i;

	for (i = 0; pi && i < pi->n_labels; i++)
		if (strcmp(pi->labels[i].key, key) == 0)
			return pi->labels[i].value;
	return NULL;
}

static bool pod_label_is(struct podmeta *pm, const char *uid, const char *key, const char *val)
{
	struct pod_info *pi = pod(pm, uid);
	const char *v = label(pi, key);
	bool ok = v && strcmp(v, val) == 0;

	podmeta__put(pi);
	return ok;
}

static struct k8s_stats stats_of(struct k8s *w)
{
	struct k8s_stats st;

	k8s__stats(w, &st);
	return st;
}

/* ---- LIST, then WATCH events, then a resumed watch --------------------- */

static void serve_list_watch(struct fake *f, int idx, const struct fake_req *r, int fd)
{
	switch (idx) {
	case 0:
		reply_file(fd, 200, "podlist.json");
		return;
	case 1:
		stream_begin(fd);
		fake_wait_step(f, 1);
		stream_lines(fd, "watch.jsonl", 0, -1);
		fake_wait_step(f, 2);
		stream_end(fd);	/* as at timeoutSeconds */
		return;
	default:
		stream_begin(fd);
		hold(f, fd);
	}
}

static bool listed(struct k8s *w, struct podmeta *pm)
{
	return k8s__synced(w) && has_pod(pm, UID_AGENT) && has_pod(pm, UID_INDEXER);
}

static bool events_applied(struct k8s *w, struct podmeta *pm)
{
	return has_pod(pm, UID_TICKETS) && !has_pod(pm, UID_INDEXER) &&
	       pod_label_is(pm, UID_AGENT, "track", "canary");
}

static bool rewatched(struct k8s *w, struct podmeta *pm)
{
	return fake_n_reqs(&fake) >= 3 && stats_of(w).connected;
}

void test_k8s_list_watch(void)
{
	struct podmeta *pm = podmeta__new();
	struct k8s *w = NULL;
	struct k8s_opts o;
	struct pod_info *pi = NULL;
	struct k8s_stats st;
	char url[64], err[256];
	long long t;
	int i;

	if (!ASSERT_OK_PTR(pm, "podmeta") || !ASSERT_TRUE(setup("tok-list-watch"), "token") ||
	    !ASSERT_TRUE(fake_start(&fake, serve_list_watch), "fake server"))
		goto cleanup;
	opts_for(&o, url, sizeof(url));
	if (!ASSERT_OK(k8s__start(&o, &w, err, sizeof(err)), err))
		goto cleanup;
	ASSERT_FALSE(k8s__synced(w), "not synced before the LIST is applied");

	/* The LIST alone. */
	if (!ASSERT_TRUE(pump(w, pm, listed, 5000), "LIST applied"))
		goto cleanup;
	pi = pod(pm, UID_AGENT);
	if (!ASSERT_OK_PTR(pi, "agent pod"))
		goto cleanup;
	ASSERT_STREQ(pi->namespace_, "support", "namespace");
	ASSERT_STREQ(pi->name, "support-agent-7d9f8b6c5-x2x9q", "name");
	ASSERT_STREQ(pi->service_account, "support-agent", "service account");
	ASSERT_STREQ(pi->image, "registry.example.com/support-agent:1.4.2", "first container's image");
	ASSERT_STREQ(label(pi, "app.kubernetes.io/name"), "support-agent", "label");
	ASSERT_EQ(pi->n_labels, 2, "labels");
	podmeta__put(pi);
	pi = pod(pm, UID_INDEXER);
	if (ASSERT_OK_PTR(pi, "indexer pod")) {
		ASSERT_STREQ(pi->service_account, "indexer", "service account");
		ASSERT_STREQ(label(pi, "statefulset.kubernetes.io/pod-name"), "indexer-0", "label");
	}
	podmeta__put(pi);
	pi = NULL;
	ASSERT_FALSE(has_pod(pm, UID_TICKETS), "no watch event applied yet");

	/* ADDED, MODIFIED, DELETED, BOOKMARK. */
	fake_set_step(&fake, 1);
	if (!ASSERT_TRUE(pump(w, pm, events_applied, 5000), "watch events applied"))
		goto cleanup;
	pi = pod(pm, UID_TICKETS);
	if (ASSERT_OK_PTR(pi, "ADDED pod")) {
		ASSERT_STREQ(pi->namespace_, "tickets", "namespace");
		ASSERT_STREQ(pi->service_account, "tickets", "service account");
		ASSERT_STREQ(pi->image, "registry.example.com/tickets:3.1.0", "image");
		ASSERT_STREQ(label(pi, "app"), "tickets", "label");
	}
	podmeta__put(pi);
	pi = NULL;
	ASSERT_EQ(podmeta__size(pm), 2, "pods after the events");

	/* The server ends the watch; the next resumes from the bookmark. */
	fake_set_step(&fake, 2);
	if (!ASSERT_TRUE(pump(w, pm, rewatched, 5000), "watch resumed"))
		goto cleanup;
	ASSERT_STRSTR(req(&fake, 0)->target, "/api/v1/pods?", "LIST path");
	ASSERT_STRSTR(req(&fake, 0)->target, SELECTOR, "LIST names the node");
	ASSERT_STRSTR(req(&fake, 0)->target, "resourceVersion=0", "first LIST from the cache");
	ASSERT_STRSTR(req(&fake, 0)->target, "limit=500", "LIST is paged");
	ASSERT_NULL(strstr(req(&fake, 0)->target, "watch"), "LIST is not a watch");
	ASSERT_STRSTR(req(&fake, 1)->target, SELECTOR, "watch names the node");
	ASSERT_STRSTR(req(&fake, 1)->target, "watch=1", "watch");
	ASSERT_STRSTR(req(&fake, 1)->target, "resourceVersion=1000&", "watch from the LIST");
	ASSERT_STRSTR(req(&fake, 1)->target, "allowWatchBookmarks=true", "bookmarks");
	ASSERT_STRSTR(req(&fake, 2)->target, "watch=1", "resumed watch");
	ASSERT_STRSTR(req(&fake, 2)->target, "resourceVersion=1010&", "resumed at the bookmark");
	for (i = 0; i < 3; i++)
		ASSERT_STREQ(req(&fake, i)->auth, "Bearer tok-list-watch", "bearer token");
	st = stats_of(w);
	ASSERT_TRUE(st.synced, "synced");
	ASSERT_EQ(st.lists, 1, "one LIST");
	ASSERT_EQ(st.relists, 0, "no relist");
	ASSERT_EQ(st.dropped, 0, "nothing dropped");
	ASSERT_EQ(st.applied, 5, "2 listed + 3 events");

	/* Stopping interrupts a watch the server holds open. */
	t = now_ms();
	k8s__stop(w);
	w = NULL;
	ASSERT_TRUE(now_ms() - t < 2000, "stop is prompt");
cleanup:
	podmeta__put(pi);
	k8s__stop(w);
	fake_stop(&fake);
	podmeta__free(pm);
	teardown();
}

/* ---- a dropped connection; the rotated token on reconnect -------------- */

static void serve_reconnect(struct fake *f, int idx, const struct fake_req *r, int fd)
{
	switch (idx) {
	case 0:
		reply_file(fd, 200, "podlist.json");
		return;
	case 1:
		stream_begin(fd);
		stream_lines(fd, "watch.jsonl", 0, 2);	/* ADDED, MODIFIED */
		fake_wait_step(f, 1);
		/* Gone mid-stream: no final chunk. */
		shutdown(fd, SHUT_RDWR);
		return;
	case 2:
		stream_begin(fd);
		stream_lines(fd, "watch.jsonl", 2, 1);	/* DELETED */
		hold(f, fd);
		return;
	default:
		stream_begin(fd);
		hold(f, fd);
	}
}

static bool first_events(struct k8s *w, struct podmeta *pm)
{
	return has_pod(pm, UID_TICKETS) && pod_label_is(pm, UID_AGENT, "track", "canary");
}

static bool indexer_gone(struct k8s *w, struct podmeta *pm)
{
	return k8s__synced(w) && !has_pod(pm, UID_INDEXER);
}

void test_k8s_reconnect(void)
{
	struct podmeta *pm = podmeta__new();
	struct k8s *w = NULL;
	struct k8s_opts o;
	struct k8s_stats st;
	char url[64], err[256];

	if (!ASSERT_OK_PTR(pm, "podmeta") || !ASSERT_TRUE(setup("token-one"), "token") ||
	    !ASSERT_TRUE(fake_start(&fake, serve_reconnect), "fake server"))
		goto cleanup;
	opts_for(&o, url, sizeof(url));
	if (!ASSERT_OK(k8s__start(&o, &w, err, sizeof(err)), err))
		goto cleanup;
	if (!ASSERT_TRUE(pump(w, pm, first_events, 5000), "first events"))
		goto cleanup;
	ASSERT_TRUE(has_pod(pm, UID_INDEXER), "indexer still there");

	/* The kubelet rotates the token, then the connection drops. */
	if (!ASSERT_TRUE(write_token("token-two"), "rotate token"))
		goto cleanup;
	fake_set_step(&fake, 1);
	if (!ASSERT_TRUE(pump(w, pm, indexer_gone, 5000), "event after reconnecting"))
		goto cleanup;
	ASSERT_EQ(fake_n_reqs(&fake), 3, "reconnected without a LIST");
	ASSERT_STRSTR(req(&fake, 2)->target, "watch=1", "a watch");
	ASSERT_STRSTR(req(&fake, 2)->target, "resourceVersion=1002&", "resumed after the last event");
	ASSERT_STREQ(req(&fake, 1)->auth, "Bearer token-one", "first token");
	ASSERT_STREQ(req(&fake, 2)->auth, "Bearer token-two", "token re-read on reconnect");
	ASSERT_TRUE(has_pod(pm, UID_TICKETS) && has_pod(pm, UID_AGENT), "others kept");
	st = stats_of(w);
	ASSERT_GE(st.reconnects, 1, "reconnects");
	ASSERT_EQ(st.relists, 0, "no relist");
	ASSERT_STRSTR(st.last_error, "watch pods", "the drop is reported");
cleanup:
	k8s__stop(w);
	fake_stop(&fake);
	podmeta__free(pm);
	teardown();
}

/* ---- 410: as a watch event, as an HTTP status; paged LIST -------------- */

static void serve_relist(struct fake *f, int idx, const struct fake_req *r, int fd)
{
	switch (idx) {
	case 0:
		reply_file(fd, 200, "podlist.json");
		return;
	case 1:
		stream_begin(fd);
		stream_lines(fd, "watch.jsonl", 0, 1);	/* ADDED tickets */
		fake_wait_step(f, 1);
		stream_lines(fd, "expired.jsonl", 0, 1);
		stream_end(fd);
		return;
	case 2:
		reply_file(fd, 200, "podlist-page1.json");
		return;
	case 3:
		reply_file(fd, 200, "podlist-page2.json");
		return;
	case 4:
		fake_wait_step(f, 2);
		reply_file(fd, 410, "status-410.json");
		return;
	case 5:
		reply_file(fd, 200, "podlist-after.json");
		return;
	default:
		stream_begin(fd);
		hold(f, fd);
	}
}

static bool ticket_added(struct k8s *w, struct podmeta *pm)
{
	return k8s__synced(w) && has_pod(pm, UID_TICKETS);
}

static bool relisted(struct k8s *w, struct podmeta *pm)
{
	return stats_of(w).lists >= 2;
}

static bool relisted_again(struct k8s *w, struct podmeta *pm)
{
	return stats_of(w).lists >= 3 && fake_n_reqs(&fake) >= 7 && stats_of(w).connected;
}

void test_k8s_relist(void)
{
	struct podmeta *pm = podmeta__new();
	struct k8s *w = NULL;
	struct pod_info *pi;
	struct k8s_opts o;
	struct k8s_stats st;
	char url[64], err[256];

	if (!ASSERT_OK_PTR(pm, "podmeta") || !ASSERT_TRUE(setup("tok-relist"), "token") ||
	    !ASSERT_TRUE(fake_start(&fake, serve_relist), "fake server"))
		goto cleanup;
	opts_for(&o, url, sizeof(url));
	if (!ASSERT_OK(k8s__start(&o, &w, err, sizeof(err)), err))
		goto cleanup;
	if (!ASSERT_TRUE(pump(w, pm, ticket_added, 5000), "LIST and first event"))
		goto cleanup;

	/* ERROR 410 in the stream: LIST again, two pages. */
	fake_set_step(&fake, 1);
	if (!ASSERT_TRUE(pump(w, pm, relisted, 5000), "relisted after ERROR 410"))
		goto cleanup;
	ASSERT_FALSE(has_pod(pm, UID_TICKETS), "a pod the new LIST lacks is gone");
	ASSERT_FALSE(has_pod(pm, UID_INDEXER), "another pod the new LIST lacks is gone");
	ASSERT_TRUE(has_pod(pm, UID_FILES), "second page applied");
	ASSERT_TRUE(pod_label_is(pm, UID_AGENT, "track", "stable"), "first page applied");
	pi = pod(pm, UID_AGENT);
	if (ASSERT_OK_PTR(pi, "agent pod"))
		ASSERT_STREQ(pi->image, "registry.example.com/support-agent:1.4.3", "image updated");
	podmeta__put(pi);
	ASSERT_EQ(podmeta__size(pm), 2, "pods after the relist");
	ASSERT_STRSTR(stats_of(w).last_error, "410", "the expiry is reported");
	ASSERT_NULL(strstr(req(&fake, 2)->target, "resourceVersion"), "relist reads current state");
	ASSERT_STRSTR(req(&fake, 2)->target, SELECTOR, "relist names the node");
	ASSERT_NULL(strstr(req(&fake, 2)->target, "continue="), "first page");
	ASSERT_STRSTR(req(&fake, 3)->target,
		      "continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MjAwMCwic3RhcnQiOiJzdXBwb3J0L3N1cHBvcnQtYWdlbnQifQ%3D%3D",
		      "second page asked with the continue token");

	/* HTTP 410 answering the watch: LIST again. */
	fake_set_step(&fake, 2);
	if (!ASSERT_TRUE(pump(w, pm, relisted_again, 5000), "relisted after HTTP 410"))
		goto cleanup;
	ASSERT_STRSTR(req(&fake, 4)->target, "resourceVersion=2000&", "watch from the paged LIST");
	ASSERT_STRSTR(req(&fake, 4)->target, "watch=1", "a watch");
	ASSERT_NULL(strstr(req(&fake, 5)->target, "watch=1"), "then a LIST");
	ASSERT_STRSTR(req(&fake, 6)->target, "resourceVersion=2100&", "watch from the new LIST");
	st = stats_of(w);
	ASSERT_EQ(st.relists, 2, "two relists");
	ASSERT_EQ(st.lists, 3, "three LISTs");
	ASSERT_TRUE(has_pod(pm, UID_AGENT) && has_pod(pm, UID_FILES), "state kept");
cleanup:
	k8s__stop(w);
	fake_stop(&fake);
	podmeta__free(pm);
	teardown();
}

/* ---- 401 until the token is right -------------------------------------- */

static void serve_auth(struct fake *f, int idx, const struct fake_req *r, int fd)
{
	if (strcmp(r->auth, "Bearer right-token") != 0) {
		reply_file(fd, 401, "status-401.json");
		return;
	}
	if (!strstr(r->target, "watch=1")) {
		reply_file(fd, 200, "podlist.json");
		return;
	}
	stream_begin(fd);
	hold(f, fd);
}

static bool refused(struct k8s *w, struct podmeta *pm)
{
	return fake_n_reqs(&fake) >= 2 && strstr(stats_of(w).last_error, "401");
}

static bool synced(struct k8s *w, struct podmeta *pm)
{
	return k8s__synced(w);
}

void test_k8s_unauthorized(void)
{
	struct podmeta *pm = podmeta__new();
	struct k8s *w = NULL;
	struct k8s_opts o;
	struct k8s_stats st;
	char url[64], err[256];

	if (!ASSERT_OK_PTR(pm, "podmeta") || !ASSERT_TRUE(setup("s3cr3t-wrong"), "token") ||
	    !ASSERT_TRUE(fake_start(&fake, serve_auth), "fake server"))
		goto cleanup;
	opts_for(&o, url, sizeof(url));
	if (!ASSERT_OK(k8s__start(&o, &w, err, sizeof(err)), err))
		goto cleanup;
	if (!ASSERT_TRUE(pump(w, pm, refused, 5000), "refused, retried"))
		goto cleanup;
	st = stats_of(w);
	ASSERT_FALSE(st.synced, "not synced while refused");
	ASSERT_EQ(podmeta__size(pm), 0, "no pods");
	ASSERT_STRSTR(st.last_error, "Unauthorized", "the server's reason");
	ASSERT_STRSTR(st.last_error, "ClusterRole", "what to check");
	ASSERT_NULL(strstr(st.last_error, "s3cr3t"), "the token is never in a message");
	ASSERT_GE(st.reconnects, 1, "retried");

	if (!ASSERT_TRUE(write_token("right-token"), "fix token"))
		goto cleanup;
	ASSERT_TRUE(pump(w, pm, synced, 5000), "synced once the token works");
	ASSERT_EQ(podmeta__size(pm), 2, "listed pods");
cleanup:
	k8s__stop(w);
	fake_stop(&fake);
	podmeta__free(pm);
	teardown();
}

/* ---- limits: an over-long event line, a full queue --------------------- */

static char *pod_event(const char *type, int i, size_t pad)
{
	char *pad_s = malloc(pad + 1), *out = NULL;

	if (!pad_s)
		return NULL;
	memset(pad_s, 'x', pad);
	pad_s[pad] = '\0';
	if (asprintf(&out, "{\"type\":\"%s\",\"object\":{\"kind\":\"Pod\",\"metadata\":{"
		     "\"name\":\"burst-%d\",\"namespace\":\"burst\",\"uid\":\"00000000-0000-4000-8000-%012d\","
		     "\"resourceVersion\":\"%d\",\"labels\":{\"app\":\"burst\",\"pad\":\"%s\"}},"
		     "\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"busybox:1.36\"}],"
		     "\"serviceAccountName\":\"default\",\"nodeName\":\"node-a\"}}}",
		     type, i, i, 1100 + i, pad_s) < 0)
		out = NULL;
	free(pad_s);
	return out;
}

static void stream_event(int fd, const char *type, int i, size_t pad)
{
	char *ev = pod_event(type, i, pad);

	if (ev)
		stream_line(fd, ev, strlen(ev));
	free(ev);
}

static void serve_long_line(struct fake *f, int idx, const struct fake_req *r, int fd)
{
	switch (idx) {
	case 0:
	case 2:
		reply_file(fd, 200, "podlist.json");
		return;
	case 1:
		stream_begin(fd);
		stream_event(fd, "ADDED", 1, 4096);
		hold(f, fd);
		return;
	default:
		stream_begin(fd);
		hold(f, fd);
	}
}

static char burst_uid[64];

static bool relisted_and_watching(struct k8s *w, struct podmeta *pm)
{
	return stats_of(w).lists >= 2 && fake_n_reqs(&fake) >= 4;
}

void test_k8s_long_line(void)
{
	struct podmeta *pm = podmeta__new();
	struct k8s *w = NULL;
	struct k8s_opts o;
	struct k8s_stats st;
	char url[64], err[256];

	if (!ASSERT_OK_PTR(pm, "podmeta") || !ASSERT_TRUE(setup("tok"), "token") ||
	    !ASSERT_TRUE(fake_start(&fake, serve_long_line), "fake server"))
		goto cleanup;
	opts_for(&o, url, sizeof(url));
	o.line_max = 2048;
	if (!ASSERT_OK(k8s__start(&o, &w, err, sizeof(err)), err))
		goto cleanup;
	if (!ASSERT_TRUE(pump(w, pm, relisted_and_watching, 5000), "relisted"))
		goto cleanup;
	st = stats_of(w);
	ASSERT_EQ(st.relists, 1, "one relist");
	ASSERT_STRSTR(st.last_error, "longer than 2048 bytes", "reported");
	snprintf(burst_uid, sizeof(burst_uid), "00000000-0000-4000-8000-%012d", 1);
	ASSERT_FALSE(has_pod(pm, burst_uid), "the long event was not applied");
	ASSERT_EQ(podmeta__size(pm), 2, "the LIST's pods");
cleanup:
	k8s__stop(w);
	fake_stop(&fake);
	podmeta__free(pm);
	teardown();
}

#define BURST 8

static void serve_burst(struct fake *f, int idx, const struct fake_req *r, int fd)
{
	char *list, *ev, *p;
	size_t cap = 65536, len;
	int i;

	switch (idx) {
	case 0:
		reply_file(fd, 200, "podlist.json");
		return;
	case 1:
		stream_begin(fd);
		fake_wait_step(f, 1);
		for (i = 0; i < BURST; i++)
			stream_event(fd, "ADDED", i, 8);
		hold(f, fd);
		return;
	case 2:
		/* The relist: every pod the burst added. */
		list = malloc(cap);
		if (!list)
			return;
		len = (size_t)snprintf(list, cap, "{\"kind\":\"PodList\",\"apiVersion\":\"v1\","
				       "\"metadata\":{\"resourceVersion\":\"1200\"},\"items\":[");
		for (i = 0; i < BURST; i++) {
			ev = pod_event("ADDED", i, 8);
			p = ev ? strstr(ev, "\"object\":") : NULL;
			if (p)
				len += (size_t)snprintf(list + len, cap - len, "%s%.*s", i ? "," : "",
							(int)(strlen(p) - 10), p + 9);
			free(ev);
		}
		snprintf(list + len, cap - len, "]}");
		reply(fd, 200, list);
		free(list);
		return;
	default:
		stream_begin(fd);
		hold(f, fd);
	}
}

static bool dropped(struct k8s *w)
{
	long long end = now_ms() + 5000;

	while (now_ms() < end) {
		if (stats_of(w).dropped > 0)
			return true;
		usleep(10000);
	}
	return false;
}

static bool burst_listed(struct k8s *w, struct podmeta *pm)
{
	int i;

	if (stats_of(w).lists < 2)
		return false;
	for (i = 0; i < BURST; i++) {
		snprintf(burst_uid, sizeof(burst_uid), "00000000-0000-4000-8000-%012d", i);
		if (!has_pod(pm, burst_uid))
			return false;
	}
	return true;
}

void test_k8s_queue_full(void)
{
	struct podmeta *pm = podmeta__new();
	struct k8s *w = NULL;
	struct k8s_opts o;
	struct k8s_stats st;
	char url[64], err[256];

	if (!ASSERT_OK_PTR(pm, "podmeta") || !ASSERT_TRUE(setup("tok"), "token") ||
	    !ASSERT_TRUE(fake_start(&fake, serve_burst), "fake server"))
		goto cleanup;
	opts_for(&o, url, sizeof(url));
	o.queue_max = 2;
	if (!ASSERT_OK(k8s__start(&o, &w, err, sizeof(err)), err))
		goto cleanup;
	if (!ASSERT_TRUE(pump(w, pm, synced, 5000), "listed"))
		goto cleanup;
	/* A loop that does not drain while events pour in. */
	fake_set_step(&fake, 1);
	if (!ASSERT_TRUE(dropped(w), "events dropped"))
		goto cleanup;
	if (!ASSERT_TRUE(pump(w, pm, burst_listed, 5000), "relist heals the loss"))
		goto cleanup;
	st = stats_of(w);
	ASSERT_GE(st.relists, 1, "relisted");
	ASSERT_GE(st.dropped, 1, "counted");
	ASSERT_STRSTR(st.last_error, "queue full", "reported");
	ASSERT_EQ(podmeta__size(pm), BURST, "the relist replaced the old pods");
	ASSERT_STRSTR(req(&fake, 2)->target, SELECTOR, "a LIST");
	ASSERT_NULL(strstr(req(&fake, 2)->target, "watch=1"), "a LIST");
cleanup:
	k8s__stop(w);
	fake_stop(&fake);
	podmeta__free(pm);
	teardown();
}

/* ---- options refused at start; stop during a long backoff -------------- */

void test_k8s_start_errors(void)
{
	struct k8s_opts o = { .node_name = "node-a", .token_file = "" };
	struct k8s *w = NULL;
	char err[256];

	k8s__stop(NULL);

	o.api_server = "http://127.0.0.1:1";
	o.node_name = NULL;
	ASSERT_EQ(k8s__start(&o, &w, err, sizeof(err)), -EINVAL, "no node name");
	ASSERT_STRSTR(err, "node", "message");
	ASSERT_NULL(w, "nothing returned");
	o.node_name = "node-a";

	o.api_server = "http://10.96.0.1:6443";
	ASSERT_EQ(k8s__start(&o, &w, err, sizeof(err)), -EINVAL, "clear text to a remote host");
	ASSERT_STRSTR(err, "clear text", "message");

	o.api_server = "ftp://127.0.0.1/";
	ASSERT_EQ(k8s__start(&o, &w, err, sizeof(err)), -EINVAL, "not http");
	ASSERT_STRSTR(err, "not an http", "message");

	o.api_server = "https://127.0.0.1:6443/?x=1";
	ASSERT_EQ(k8s__start(&o, &w, err, sizeof(err)), -EINVAL, "a query in the URL");

	o.api_server = "http://127.0.0.1:1";
	o.token_file = "/nonexistent/token";
	ASSERT_EQ(k8s__start(&o, &w, err, sizeof(err)), -ENOENT, "missing token");
	ASSERT_STRSTR(err, "/nonexistent/token", "message names the file");

	/* In a pod: the URL from the environment, then the CA file. */
	o.token_file = "";
	o.api_server = NULL;
	unsetenv("KUBERNETES_SERVICE_HOST");
	ASSERT_EQ(k8s__start(&o, &w, err, sizeof(err)), -EINVAL, "no API server known");
	ASSERT_STRSTR(err, "KUBERNETES_SERVICE_HOST", "message");
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	o.ca_file = "/nonexistent/ca.crt";
	ASSERT_EQ(k8s__start(&o, &w, err, sizeof(err)), -ENOENT, "missing CA");
	ASSERT_STRSTR(err, "/nonexistent/ca.crt", "message names the file");
	ASSERT_NULL(w, "nothing returned");
}

static void serve_500(struct fake *f, int idx, const struct fake_req *r, int fd)
{
	reply(fd, 500, "{\"kind\":\"Status\",\"message\":\"etcdserver: request timed out\",\"code\":500}");
}

static bool failed_once(struct k8s *w, struct podmeta *pm)
{
	return stats_of(w).last_error[0] != '\0';
}

void test_k8s_stop_in_backoff(void)
{
	struct podmeta *pm = podmeta__new();
	struct k8s *w = NULL;
	struct k8s_opts o;
	char url[64], err[256];
	long long t;

	if (!ASSERT_OK_PTR(pm, "podmeta") || !ASSERT_TRUE(setup("tok"), "token") ||
	    !ASSERT_TRUE(fake_start(&fake, serve_500), "fake server"))
		goto cleanup;
	opts_for(&o, url, sizeof(url));
	o.backoff_min_ms = 60000;
	o.backoff_max_ms = 60000;
	if (!ASSERT_OK(k8s__start(&o, &w, err, sizeof(err)), err))
		goto cleanup;
	if (!ASSERT_TRUE(pump(w, pm, failed_once, 5000), "LIST failed"))
		goto cleanup;
	ASSERT_STRSTR(stats_of(w).last_error, "HTTP 500: etcdserver: request timed out", "reported");
	ASSERT_FALSE(k8s__synced(w), "not synced");
	t = now_ms();
	k8s__stop(w);
	w = NULL;
	ASSERT_TRUE(now_ms() - t < 2000, "stop does not wait out the backoff");
	ASSERT_EQ(fake_n_reqs(&fake), 1, "no retry before the backoff");
cleanup:
	k8s__stop(w);
	fake_stop(&fake);
	podmeta__free(pm);
	teardown();
}
