// SPDX-License-Identifier: GPL-2.0
/*
 * Attestation API tests. A real TCP server (this test process) accepts
 * connections from two client processes, then asks a real attestation
 * socket about each accepted connection, by 4-tuple and by passing the
 * accepted socket, through the client library and the CLI. The agent's
 * lookup is a fake that knows those two connections (by client port, and
 * by socket cookie) and answers with two different fake workloads; it also
 * echoes the query it got, so the test can check what the server read from
 * the kernel (caller pid, socket cookie, network namespace).
 *
 * The server runs in a child process (attest__open starts a helper thread,
 * which a fork would not carry along). Callers that must be refused drop to
 * uid/gid 65534 before they connect, with a socket mode that lets them
 * connect, so the credential check is what refuses them.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "harness.h"
#include "attest.h"
#include "../lib/attest/mcpwarden_attest.h"

#define TEST_GROUP	4242	/* the permitted group; nobody's is 65534 */
#define NOBODY		65534

/* ---- the fake agent ----------------------------------------------------- */

struct fake_conn {
	struct attest_addr client, server;
	uint64_t cookie;	/* server-side socket; 0: tuple only */
	uint32_t pid;
	const char *exe;
	int source;
	int ret;		/* < 0: the lookup fails so */
};

static struct fake_conn fakes[8];
static int n_fakes;

static void to_attest_addr(const struct sockaddr_storage *ss, struct attest_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		a->addr[10] = a->addr[11] = 0xff;
		memcpy(a->addr + 12, &in->sin_addr, 4);
		a->port = ntohs(in->sin_port);
		a->family = AF_INET;
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		memcpy(a->addr, &in6->sin6_addr, 16);
		a->port = ntohs(in6->sin6_port);
		a->family = AF_INET6;
	}
}

static json_t *fake_workload(const struct fake_conn *f, const struct attest_query *q)
{
	return json_pack("{s:b,s:i,s:s,s:i,s:i,s:s,s:I,s:[{s:i,s:s}],s:{s:I,s:i,s:i,s:I,s:b}}",
			 "attributed", 1, "pid", (int)f->pid, "exe", f->exe, "uid", 1000,
			 "gid", 1000, "cgroup", "/test/attest", "cgroup_id", (json_int_t)77,
			 "ancestors", "pid", 1, "exe", "/sbin/init",
			 "x_query", "caller_pid", (json_int_t)q->caller_pid,
			 "caller_uid", (int)q->caller_uid, "caller_gid", (int)q->caller_gid,
			 "sock_cookie", (json_int_t)q->sock_cookie,
			 "netns_from_socket", q->netns_from_socket);
}

static int fake_lookup(void *ctx, const struct attest_query *q, json_t **out)
{
	int i;

	for (i = 0; i < n_fakes; i++) {
		const struct fake_conn *f = &fakes[i];

		if (q->sock_cookie ? q->sock_cookie != f->cookie :
		    memcmp(&q->client, &f->client, sizeof(q->client)) ||
		    memcmp(&q->server, &f->server, sizeof(q->server)))
			continue;
		if (f->ret < 0)
			return f->ret;
		*out = fake_workload(f, q);
		return f->source;
	}
	return -ENOENT;
}

static struct fake_conn *add_fake(const char *src, const char *dst, uint32_t pid,
				  const char *exe)
{
	struct attest_request req;
	struct fake_conn *f = &fakes[n_fakes++];
	char line[256];
	const char *why;

	snprintf(line, sizeof(line), "{\"op\":\"who\",\"src\":\"%s\",\"dst\":\"%s\"}", src, dst);
	memset(f, 0, sizeof(*f));
	if (attest__parse_request(line, strlen(line), &req, &why) == 0) {
		f->client = req.src;
		f->server = req.dst;
	}
	f->pid = pid;
	f->exe = exe;
	return f;
}

/* ---- the attestation server in a child ---------------------------------- */

struct server {
	pid_t pid;
	int pipe_fd;		/* stats come back here at stop */
	char dir[64];
	char path[128];
};

static volatile sig_atomic_t stop_serving;

static void on_term(int sig)
{
	stop_serving = 1;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void serve(struct server *s, gid_t group, mode_t mode, int wr)
{
	struct sigaction sa = { .sa_handler = on_term };
	struct attest_stats st = {};
	struct attest *a = NULL;
	char err[256] = "", ok;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigaction(SIGTERM, &sa, NULL);
	ok = attest__open(s->path, group, fake_lookup, NULL, &a, err, sizeof(err)) == 0;
	if (ok && mode)
		chmod(s->path, mode);
	if (!ok)
		fprintf(stderr, "attest__open: %s\n", err);
	if (write(wr, &ok, 1) != 1 || !ok)
		_exit(1);
	while (!stop_serving) {
		struct pollfd p = { .fd = attest__fd(a), .events = POLLIN };

		if (poll(&p, 1, 20) > 0)
			attest__on_readable(a);
		attest__tick(a, mono_ns());
	}
	attest__get_stats(a, &st);
	attest__close(a);
	if (write(wr, &st, sizeof(st)) != sizeof(st))
		_exit(1);
	exit(0);	/* not _exit: let LeakSanitizer look */
}

/* mode != 0 loosens the socket after open, so only the credential check
 * stands between a caller and an answer. */
static bool server_start(struct server *s, gid_t group, mode_t mode)
{
	int p[2];
	char ok = 0;

	memset(s, 0, sizeof(*s));
	s->pid = -1;
	snprintf(s->dir, sizeof(s->dir), "/tmp/mcpw-attest-XXXXXX");
	if (!ASSERT_OK_PTR(mkdtemp(s->dir), "mkdtemp"))
		return false;
	chmod(s->dir, 0755);
	snprintf(s->path, sizeof(s->path), "%s/attest.sock", s->dir);
	if (!ASSERT_OK(pipe(p), "pipe"))
		return false;
	fflush(stdout);
	s->pid = fork();
	if (s->pid == 0) {
		close(p[0]);
		serve(s, group, mode, p[1]);
	}
	close(p[1]);
	s->pipe_fd = p[0];
	return ASSERT_EQ(read(p[0], &ok, 1), 1, "server ready") && ASSERT_EQ(ok, 1, "attest__open");
}

static bool server_stop(struct server *s, struct attest_stats *st)
{
	struct attest_stats dummy;
	int status = 0;
	bool ok = true;

	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		ok = ASSERT_EQ(read(s->pipe_fd, st ? st : &dummy, sizeof(*st)), sizeof(*st),
			       "server stats");
		waitpid(s->pid, &status, 0);
		ok = ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
				 "server exits cleanly") && ok;
		close(s->pipe_fd);
	}
	unlink(s->path);
	rmdir(s->dir);
	s->pid = -1;
	return ok;
}

/* ---- TCP server and its client workloads -------------------------------- */

struct tcp_setup {
	int lfd;
	uint16_t port;
	pid_t clients[2];
	int accepted[2];
	struct sockaddr_storage peer[2], local[2];
	uint64_t cookie[2];
};

/* A client workload: connects, then waits until the server hangs up. */
static pid_t spawn_client(uint16_t port)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		char b;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)))
			_exit(1);
		while (read(fd, &b, 1) > 0)
			;
		_exit(0);
	}
	return pid;
}

static bool tcp_start(struct tcp_setup *t)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int i;

	memset(t, 0, sizeof(*t));
	t->accepted[0] = t->accepted[1] = -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!ASSERT_GE(t->lfd, 0, "tcp socket") ||
	    !ASSERT_OK(bind(t->lfd, (struct sockaddr *)&sin, sizeof(sin)), "bind") ||
	    !ASSERT_OK(listen(t->lfd, 8), "listen") ||
	    !ASSERT_OK(getsockname(t->lfd, (struct sockaddr *)&sin, &len), "getsockname"))
		return false;
	t->port = ntohs(sin.sin_port);
	/* One client at a time, so accepted[i] is clients[i]'s connection. */
	for (i = 0; i < 2; i++) {
		socklen_t l = sizeof(t->peer[i]);

		t->clients[i] = spawn_client(t->port);
		if (!ASSERT_GE(t->clients[i], 1, "fork client"))
			return false;
		t->accepted[i] = accept4(t->lfd, (struct sockaddr *)&t->peer[i], &l, SOCK_CLOEXEC);
		if (!ASSERT_GE(t->accepted[i], 0, "accept"))
			return false;
		l = sizeof(t->local[i]);
		getsockname(t->accepted[i], (struct sockaddr *)&t->local[i], &l);
		l = sizeof(t->cookie[i]);
		if (!ASSERT_OK(getsockopt(t->accepted[i], SOL_SOCKET, SO_COOKIE, &t->cookie[i], &l),
			       "SO_COOKIE"))
			return false;
	}
	return true;
}

static void tcp_stop(struct tcp_setup *t)
{
	int i;

	for (i = 0; i < 2; i++) {
		/* shutdown, not only close: later children hold copies. */
		if (t->accepted[i] >= 0) {
			shutdown(t->accepted[i], SHUT_RDWR);
			close(t->accepted[i]);
		}
		if (t->clients[i] > 0)
			waitpid(t->clients[i], NULL, 0);
	}
	if (t->lfd >= 0)
		close(t->lfd);
}

static void fake_from_tcp(const struct tcp_setup *t, int i, const char *exe, int source)
{
	struct fake_conn *f = &fakes[n_fakes++];

	memset(f, 0, sizeof(*f));
	to_attest_addr(&t->peer[i], &f->client);
	to_attest_addr(&t->local[i], &f->server);
	f->cookie = t->cookie[i];
	f->pid = (uint32_t)t->clients[i];
	f->exe = exe;
	f->source = source;
}

/* ---- raw protocol ------------------------------------------------------- */

static int unix_connect(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 3 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads one answer line (or up to EOF); returns its length or -1. */
static ssize_t read_line(int fd, char *out, size_t cap)
{
	size_t used = 0;

	while (used + 1 < cap) {
		ssize_t n = recv(fd, out + used, cap - 1 - used, 0);

		if (n <= 0)
			break;
		used += (size_t)n;
		if (memchr(out, '\n', used))
			break;
	}
	out[used] = '\0';
	return used ? (ssize_t)used : -1;
}

/* Sends bytes (with descriptors) on a fresh connection, returns the answer. */
static ssize_t raw_ask(const char *path, const void *req, size_t len, const int *fds, int nfds,
		       bool shut_wr, char *out, size_t cap)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))] = {};
	struct iovec iov = { .iov_base = (void *)req, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fd = unix_connect(path);
	ssize_t n;

	out[0] = '\0';
	if (fd < 0)
		return -1;
	if (nfds) {
		struct cmsghdr *cm;

		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
	}
	/* The server may answer and hang up before it has read it all. */
	if (sendmsg(fd, &mh, MSG_NOSIGNAL) < 0) {
		/* the answer, if any, is still worth reading */
	}
	if (shut_wr)
		shutdown(fd, SHUT_WR);
	n = read_line(fd, out, cap);
	close(fd);
	return n;
}

static const char *answer_error(const char *line, char *buf, size_t len)
{
	json_t *root = json_loads(line, 0, NULL);
	const char *e = json_string_value(json_object_get(root, "error"));

	snprintf(buf, len, "%s", e ? e : "(none)");
	json_decref(root);
	return buf;
}

#define ASSERT_ANSWER_ERROR(line, expected, what) ({			\
	char ___b[128];							\
	ASSERT_STREQ(answer_error((line), ___b, sizeof(___b)), (expected), (what)); \
})

/* ---- tests -------------------------------------------------------------- */

static bool check_answer(const char *json, uint32_t pid, const char *exe, const char *source,
			 const char *what)
{
	struct mcpw_attest_result r;
	bool ok;

	if (!ASSERT_OK(mcpw_attest_parse(json, &r), what))
		return false;
	ok = ASSERT_TRUE(r.ok, what);
	ok = ASSERT_EQ(r.pid, pid, what) && ok;
	ok = ASSERT_STREQ(r.exe, exe, what) && ok;
	ok = ASSERT_STREQ(r.source, source, what) && ok;
	ok = ASSERT_EQ(r.uid, 1000, what) && ok;
	ok = ASSERT_STREQ(r.cgroup, "/test/attest", what) && ok;
	ok = ASSERT_EQ(r.cgroup_id, 77, what) && ok;
	ok = ASSERT_TRUE(r.attributed, what) && ok;
	return ok;
}

static json_t *x_query(const char *json)
{
	json_t *root = json_loads(json, 0, NULL);
	json_t *q = json_incref(json_object_get(json_object_get(root, "workload"), "x_query"));

	json_decref(root);
	return q;
}

static int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

void test_attest_two_clients(void)
{
	struct tcp_setup t = { .lfd = -1 };
	struct server s = { .pid = -1 };
	struct attest_stats st = {};
	static const char *exes[2] = { "/fake/client-a", "/fake/client-b" };
	static const char *sources[2] = { "kernel", "proc" };
	char *json = malloc(MCPW_ATTEST_MAX_RESPONSE);
	struct stat ns;
	json_t *q = NULL;
	int i;

	n_fakes = 0;
	if (!ASSERT_OK_PTR(json, "malloc") || !tcp_start(&t))
		goto cleanup;
	fake_from_tcp(&t, 0, exes[0], ATTEST_SOURCE_KERNEL);
	fake_from_tcp(&t, 1, exes[1], ATTEST_SOURCE_PROC);
	if (!ASSERT_NEQ(t.clients[0], t.clients[1], "two client processes") ||
	    !server_start(&s, ATTEST_NO_GROUP, 0))
		goto cleanup;
	stat("/proc/self/ns/net", &ns);

	for (i = 0; i < 2; i++) {
		char what[64];

		snprintf(what, sizeof(what), "who client %d", i);
		ASSERT_EQ(mcpw_attest_who(s.path, (struct sockaddr *)&t.peer[i],
					  (struct sockaddr *)&t.local[i], json,
					  MCPW_ATTEST_MAX_RESPONSE), MCPW_ATTEST_OK, what);
		check_answer(json, (uint32_t)t.clients[i], exes[i], sources[i], what);
		q = x_query(json);
		ASSERT_EQ(json_integer_value(json_object_get(q, "sock_cookie")), 0, what);
		ASSERT_EQ(json_integer_value(json_object_get(q, "caller_pid")), getpid(), what);
		json_decref(q);
		q = NULL;

		snprintf(what, sizeof(what), "who_fd client %d", i);
		ASSERT_EQ(mcpw_attest_who_fd(s.path, t.accepted[i], json,
					     MCPW_ATTEST_MAX_RESPONSE), MCPW_ATTEST_OK, what);
		check_answer(json, (uint32_t)t.clients[i], exes[i], sources[i], what);
		/* The lookup saw the socket's own cookie and namespace. */
		q = x_query(json);
		ASSERT_EQ(json_integer_value(json_object_get(q, "sock_cookie")),
			  (long long)t.cookie[i], what);
		ASSERT_TRUE(json_is_true(json_object_get(q, "netns_from_socket")), what);
		ASSERT_EQ(json_integer_value(json_object_get(q, "caller_pid")), getpid(), what);
		ASSERT_EQ(json_integer_value(json_object_get(q, "caller_uid")), getuid(), what);
		json_decref(q);
		q = NULL;
		/* Our copy is still ours after the agent closed its own. */
		ASSERT_EQ(fcntl(t.accepted[i], F_GETFD), FD_CLOEXEC, "accepted fd still open");
	}
	/* The agent keeps no passed socket: its descriptors stay as they were. */
	{
		int before, k;

		usleep(50 * 1000);	/* the last answer's socket closes after the send */
		before = count_fds(s.pid);

		for (k = 0; k < 20; k++)
			mcpw_attest_who_fd(s.path, t.accepted[k % 2], json, MCPW_ATTEST_MAX_RESPONSE);
		usleep(50 * 1000);	/* the closer thread runs on its own time */
		ASSERT_EQ(count_fds(s.pid), before, "server descriptors after 20 who_fd");
	}
	/* The same ports the other way round is not a known connection. */
	ASSERT_EQ(mcpw_attest_who(s.path, (struct sockaddr *)&t.local[0],
				  (struct sockaddr *)&t.peer[0], json, MCPW_ATTEST_MAX_RESPONSE),
		  MCPW_ATTEST_UNKNOWN, "reversed tuple");
	ASSERT_ANSWER_ERROR(json, "unknown connection", "reversed tuple answer");
	ASSERT_OK(server_stop(&s, &st) ? 0 : -1, "server stop");
	ASSERT_EQ(st.answered, 24, "answered");
	ASSERT_EQ(st.unknown, 1, "unknown");
	ASSERT_EQ(st.refused + st.malformed + st.dropped, 0, "nothing else");
cleanup:
	server_stop(&s, NULL);
	tcp_stop(&t);
	free(json);
}

void test_attest_unknown_and_errors(void)
{
	struct server s = { .pid = -1 };
	struct sockaddr_storage a, b;
	socklen_t al, bl;
	char json[4096];
	struct fake_conn *f;

	n_fakes = 0;
	f = add_fake("[2001:db8::1]:40000", "[2001:db8::2]:8080", 4321, "/fake/v6");
	f->source = ATTEST_SOURCE_KERNEL;
	f = add_fake("10.0.0.1:1111", "10.0.0.2:8080", 1, "/x");
	f->ret = -EACCES;
	f = add_fake("10.0.0.1:2222", "10.0.0.2:8080", 1, "/x");
	f->ret = -EIO;
	if (!server_start(&s, ATTEST_NO_GROUP, 0))
		goto cleanup;

	mcpw_attest_parse_addr("[2001:db8::1]:40000", &a, &al);
	mcpw_attest_parse_addr("[2001:db8::2]:8080", &b, &bl);
	ASSERT_EQ(mcpw_attest_who(s.path, (struct sockaddr *)&a, (struct sockaddr *)&b, json,
				  sizeof(json)), MCPW_ATTEST_OK, "IPv6 tuple");
	check_answer(json, 4321, "/fake/v6", "kernel", "IPv6 tuple");
	ASSERT_STRSTR(json, "\"connection\":{\"src\":\"[2001:db8::1]:40000\","
		      "\"dst\":\"[2001:db8::2]:8080\"}", "connection echoed");

	mcpw_attest_parse_addr("10.9.9.9:5555", &a, &al);
	mcpw_attest_parse_addr("10.0.0.2:8080", &b, &bl);
	ASSERT_EQ(mcpw_attest_who(s.path, (struct sockaddr *)&a, (struct sockaddr *)&b, json,
				  sizeof(json)), MCPW_ATTEST_UNKNOWN, "unknown tuple");
	ASSERT_ANSWER_ERROR(json, "unknown connection", "unknown tuple answer");

	/* The agent's lookup may refuse or fail on its own. */
	mcpw_attest_parse_addr("10.0.0.1:1111", &a, &al);
	ASSERT_EQ(mcpw_attest_who(s.path, (struct sockaddr *)&a, (struct sockaddr *)&b, json,
				  sizeof(json)), MCPW_ATTEST_DENIED, "lookup refuses");
	mcpw_attest_parse_addr("10.0.0.1:2222", &a, &al);
	ASSERT_EQ(mcpw_attest_who(s.path, (struct sockaddr *)&a, (struct sockaddr *)&b, json,
				  sizeof(json)), MCPW_ATTEST_FAILED, "lookup fails");
	ASSERT_ANSWER_ERROR(json, "lookup failed", "lookup fails answer");

	/* A caller's buffer too small for the answer is an error, not a cut. */
	ASSERT_EQ(mcpw_attest_who(s.path, (struct sockaddr *)&a, (struct sockaddr *)&b, json, 8),
		  -ENOBUFS, "small buffer");
	/* Nobody answering. */
	ASSERT_EQ(mcpw_attest_who("/nonexistent/attest.sock", (struct sockaddr *)&a,
				  (struct sockaddr *)&b, json, sizeof(json)), -ENOENT, "no agent");
	ASSERT_EQ(mcpw_attest_who_fd(s.path, -1, json, sizeof(json)), -EBADF, "bad fd");
cleanup:
	server_stop(&s, NULL);
}

void test_attest_malformed(void)
{
	static const struct {
		const char *req;
		const char *error;
	} cases[] = {
		{ "{not json\n", "malformed request" },
		{ "\n", "malformed request" },
		{ "[\"who\"]\n", "malformed request" },
		{ "{\"op\":\"who\"}\n", "who needs src and dst" },
		{ "{\"op\":\"whom\"}\n", "unknown op" },
		{ "{\"op\":7}\n", "request needs an op" },
		{ "{\"op\":\"who\",\"src\":\"1.2.3.4:1\",\"dst\":\"1.2.3.4:2\",\"pid\":1}\n",
		  "unknown key in request" },
		{ "{\"op\":\"who\",\"src\":\"1.2.3.4:1\",\"dst\":\"1.2.3.4:2\",\"workload\":{}}\n",
		  "unknown key in request" },
		{ "{\"op\":\"who\",\"op\":\"who\",\"src\":\"1.2.3.4:1\",\"dst\":\"1.2.3.4:2\"}\n",
		  "malformed request" },
		{ "{\"op\":\"who\",\"src\":\"1.2.3.4\",\"dst\":\"1.2.3.4:2\"}\n",
		  "bad address (want a.b.c.d:port or [v6]:port)" },
		{ "{\"op\":\"who\",\"src\":\"1.2.3.4:0\",\"dst\":\"1.2.3.4:2\"}\n",
		  "bad address (want a.b.c.d:port or [v6]:port)" },
		{ "{\"op\":\"who\",\"src\":\"1.2.3.4:65536\",\"dst\":\"1.2.3.4:2\"}\n",
		  "bad address (want a.b.c.d:port or [v6]:port)" },
		{ "{\"op\":\"who\",\"src\":\"localhost:80\",\"dst\":\"1.2.3.4:2\"}\n",
		  "bad address (want a.b.c.d:port or [v6]:port)" },
		{ "{\"op\":\"who\",\"src\":\"::1:80\",\"dst\":\"1.2.3.4:2\"}\n",
		  "bad address (want a.b.c.d:port or [v6]:port)" },
		{ "{\"op\":\"who\",\"src\":\"[fe80::1%eth0]:80\",\"dst\":\"[::1]:2\"}\n",
		  "bad address (want a.b.c.d:port or [v6]:port)" },
		{ "{\"op\":\"who\",\"src\":\"[::1]:80\",\"dst\":\"1.2.3.4:2\"}\n",
		  "src and dst are of different families" },
		{ "{\"op\":\"who_fd\",\"src\":\"1.2.3.4:1\"}\n",
		  "who_fd takes its addresses from the socket" },
		{ "{\"op\":\"who_fd\"}\n", "who_fd needs the socket passed with SCM_RIGHTS" },
	};
	static const char who_line[] =
		"{\"op\":\"who\",\"src\":\"10.0.0.1:1000\",\"dst\":\"10.0.0.2:8080\"}\n";
	static const char mapped_line[] =
		"{\"op\":\"who\",\"src\":\"[::ffff:10.0.0.1]:1000\",\"dst\":\"10.0.0.2:8080\"}\r\n";
	struct server s = { .pid = -1 };
	struct attest_stats st = {};
	char line[4096], big[6000];
	int pipefd[2] = { -1, -1 }, lfd = -1, two[2];
	size_t i;

	n_fakes = 0;
	add_fake("10.0.0.1:1000", "10.0.0.2:8080", 99, "/fake/ok")->source = ATTEST_SOURCE_PROC;
	if (!server_start(&s, ATTEST_NO_GROUP, 0))
		goto cleanup;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ASSERT_GE(raw_ask(s.path, cases[i].req, strlen(cases[i].req), NULL, 0, false,
				  line, sizeof(line)), 1, cases[i].req);
		ASSERT_ANSWER_ERROR(line, cases[i].error, cases[i].req);
	}

	/* Descriptors where none belong, or the wrong kind. */
	if (!ASSERT_OK(pipe(pipefd), "pipe"))
		goto cleanup;
	raw_ask(s.path, who_line, strlen(who_line), pipefd, 1, false, line, sizeof(line));
	ASSERT_ANSWER_ERROR(line, "who takes no descriptor", "who with a descriptor");
	raw_ask(s.path, "{\"op\":\"who_fd\"}\n", 16, pipefd, 1, false, line, sizeof(line));
	ASSERT_ANSWER_ERROR(line, "not a connected TCP socket", "who_fd with a pipe");
	two[0] = pipefd[0];
	two[1] = pipefd[1];
	raw_ask(s.path, "{\"op\":\"who_fd\"}\n", 16, two, 2, false, line, sizeof(line));
	ASSERT_ANSWER_ERROR(line, "one descriptor expected", "who_fd with two descriptors");
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	listen(lfd, 1);
	raw_ask(s.path, "{\"op\":\"who_fd\"}\n", 16, &lfd, 1, false, line, sizeof(line));
	ASSERT_ANSWER_ERROR(line, "not a connected TCP socket", "who_fd with a listener");

	/* Oversized, with and without a newline at the end. */
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"op\":\"who\",", 12);
	ASSERT_GE(raw_ask(s.path, big, sizeof(big), NULL, 0, false, line, sizeof(line)), 1,
		  "oversized");
	ASSERT_ANSWER_ERROR(line, "request too large", "oversized");
	big[sizeof(big) - 1] = '\n';
	raw_ask(s.path, big, sizeof(big), NULL, 0, false, line, sizeof(line));
	ASSERT_ANSWER_ERROR(line, "request too large", "oversized line");
	/* Right at the limit: 4095 bytes and the newline are fine. */
	snprintf(big, sizeof(big), "{\"op\":\"who\",\"src\":\"10.0.0.1:1000\","
		 "\"dst\":\"10.0.0.2:8080\"");
	memset(big + strlen(big), ' ', ATTEST_MAX_REQUEST - 2 - strlen(big));
	big[ATTEST_MAX_REQUEST - 2] = '}';
	big[ATTEST_MAX_REQUEST - 1] = '\n';
	raw_ask(s.path, big, ATTEST_MAX_REQUEST, NULL, 0, false, line, sizeof(line));
	ASSERT_STRSTR(line, "\"ok\":true", "request at the limit");

	/* No newline, but the caller shut down writing: still a request. */
	raw_ask(s.path, who_line, strlen(who_line) - 1, NULL, 0, true, line, sizeof(line));
	ASSERT_STRSTR(line, "\"pid\":99", "request ended by EOF");
	ASSERT_STRSTR(line, "\"source\":\"proc\"", "source");
	/* After all that the server still answers. */
	raw_ask(s.path, mapped_line, strlen(mapped_line), NULL, 0, false, line, sizeof(line));
	ASSERT_STRSTR(line, "\"pid\":99", "v4-mapped is the same connection");
	ASSERT_OK(server_stop(&s, &st) ? 0 : -1, "server stop");
	ASSERT_EQ(st.malformed, sizeof(cases) / sizeof(cases[0]) + 6, "malformed counted");
	ASSERT_EQ(st.answered, 3, "answered");
cleanup:
	server_stop(&s, NULL);
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	if (lfd >= 0)
		close(lfd);
}

/* Runs fn in a child that has dropped to uid 65534 with the given groups;
 * returns what the child's mcpw_attest_who() returned (as exit status). */
static int ask_as(const char *path, gid_t gid, const gid_t *groups, size_t n)
{
	struct sockaddr_storage a, b;
	socklen_t al, bl;
	int status = 0;
	pid_t pid;

	mcpw_attest_parse_addr("10.0.0.1:1000", &a, &al);
	mcpw_attest_parse_addr("10.0.0.2:8080", &b, &bl);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char json[4096];
		int ret;

		if (setgroups(n, groups) || setgid(gid) || setuid(NOBODY))
			_exit(100);
		ret = mcpw_attest_who(path, (struct sockaddr *)&a, (struct sockaddr *)&b, json,
				      sizeof(json));
		if (ret == MCPW_ATTEST_DENIED && !strstr(json, "\"error\":\"not permitted\""))
			_exit(101);
		_exit(ret < 0 ? 200 : ret);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void test_attest_permissions(void)
{
	static const gid_t in_group[] = { 100, TEST_GROUP };
	struct server s = { .pid = -1 };
	struct attest_stats st = {};
	struct stat sb;

	if (geteuid() != 0) {
		test__log("skipped: needs root to act as other users");
		return;
	}
	n_fakes = 0;
	add_fake("10.0.0.1:1000", "10.0.0.2:8080", 99, "/fake/ok");

	if (test__start_subtest("group")) {
		if (!server_start(&s, TEST_GROUP, 0))
			goto cleanup;
		ASSERT_OK(stat(s.path, &sb), "stat socket");
		ASSERT_EQ(sb.st_mode & 07777, 0660, "socket mode");
		ASSERT_EQ(sb.st_gid, TEST_GROUP, "socket group");
		/* Let anyone connect: the credential check must do the refusing. */
		chmod(s.path, 0666);
		ASSERT_EQ(ask_as(s.path, NOBODY, NULL, 0), MCPW_ATTEST_DENIED, "outsider");
		ASSERT_EQ(ask_as(s.path, TEST_GROUP, NULL, 0), MCPW_ATTEST_OK, "primary group");
		ASSERT_EQ(ask_as(s.path, NOBODY, in_group, 2), MCPW_ATTEST_OK,
			  "supplementary group");
		ASSERT_EQ(ask_as(s.path, NOBODY, in_group, 1), MCPW_ATTEST_DENIED,
			  "other supplementary group");
		server_stop(&s, &st);
		ASSERT_EQ(st.refused, 2, "refusals counted");
		ASSERT_EQ(st.answered, 2, "answers counted");
		/* A refused caller's request is never read. */
		ASSERT_EQ(st.requests, 2, "requests read");
	}
	if (test__start_subtest("root_only")) {
		if (!server_start(&s, ATTEST_NO_GROUP, 0666))
			goto cleanup;
		ASSERT_EQ(ask_as(s.path, TEST_GROUP, in_group, 2), MCPW_ATTEST_DENIED,
			  "group member, root-only socket");
		server_stop(&s, &st);
		ASSERT_EQ(st.refused, 1, "refusal counted");
	}
	if (test__start_subtest("socket_mode")) {
		/* Without loosening, the file mode alone keeps outsiders out. */
		if (!server_start(&s, ATTEST_NO_GROUP, 0))
			goto cleanup;
		ASSERT_OK(stat(s.path, &sb), "stat socket");
		ASSERT_EQ(sb.st_mode & 07777, 0600, "root-only socket mode");
		ASSERT_EQ(ask_as(s.path, TEST_GROUP, in_group, 2), 200, "cannot even connect");
		server_stop(&s, &st);
		ASSERT_EQ(st.refused, 0, "never reached the check");
	}
cleanup:
	server_stop(&s, NULL);
}

void test_attest_limits(void)
{
	struct server s = { .pid = -1 };
	struct attest_stats st = {};
	int idle[ATTEST_MAX_CLIENTS], i, fd;
	char line[256];
	uint64_t t0;

	for (i = 0; i < ATTEST_MAX_CLIENTS; i++)
		idle[i] = -1;
	n_fakes = 0;
	if (!server_start(&s, ATTEST_NO_GROUP, 0))
		goto cleanup;

	if (test__start_subtest("deadline")) {
		/* A client that never sends is dropped after its deadline. */
		fd = unix_connect(s.path);
		if (!ASSERT_GE(fd, 0, "connect"))
			goto cleanup;
		t0 = mono_ns();
		ASSERT_EQ(recv(fd, line, sizeof(line), 0), 0, "closed by the server");
		ASSERT_GE(mono_ns() - t0, ATTEST_CLIENT_TIMEOUT_NS / 2, "not before the deadline");
		ASSERT_TRUE(mono_ns() - t0 < 3 * ATTEST_CLIENT_TIMEOUT_NS, "soon after it");
		close(fd);
	}
	if (test__start_subtest("max_clients")) {
		for (i = 0; i < ATTEST_MAX_CLIENTS; i++) {
			idle[i] = unix_connect(s.path);
			if (!ASSERT_GE(idle[i], 0, "idle client"))
				goto cleanup;
		}
		/* Each idle client holds its slot until its deadline. */
		usleep(100 * 1000);
		fd = unix_connect(s.path);
		if (!ASSERT_GE(fd, 0, "one too many"))
			goto cleanup;
		ASSERT_GE(read_line(fd, line, sizeof(line)), 1, "answer");
		ASSERT_ANSWER_ERROR(line, "busy", "one too many");
		close(fd);
		for (i = 0; i < ATTEST_MAX_CLIENTS; i++) {
			close(idle[i]);
			idle[i] = -1;
		}
		/* Slots come back. */
		usleep(100 * 1000);
		raw_ask(s.path, "{\"op\":\"who_fd\"}\n", 16, NULL, 0, false, line, sizeof(line));
		ASSERT_ANSWER_ERROR(line, "who_fd needs the socket passed with SCM_RIGHTS",
				    "served again");
	}
	server_stop(&s, &st);
	ASSERT_GE(st.dropped, 1, "drops counted");
cleanup:
	for (i = 0; i < ATTEST_MAX_CLIENTS; i++)
		if (idle[i] >= 0)
			close(idle[i]);
	server_stop(&s, NULL);
}

void test_attest_open(void)
{
	char dir[] = "/tmp/mcpw-attest-open-XXXXXX", path[128], sub[128], err[256];
	struct server s = { .pid = -1 };
	struct attest *a = NULL;
	struct stat sb;
	int fd;

	if (!ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp"))
		return;
	chmod(dir, 0700);
	snprintf(path, sizeof(path), "%s/attest.sock", dir);
	ASSERT_EQ(attest__open("relative.sock", ATTEST_NO_GROUP, fake_lookup, NULL, &a, err,
			       sizeof(err)), -EINVAL, "relative path");
	/* A group cannot reach a socket behind a 0700 directory: say so. */
	ASSERT_EQ(attest__open(path, TEST_GROUP, fake_lookup, NULL, &a, err, sizeof(err)),
		  -EACCES, "unreachable for the group");
	ASSERT_STRSTR(err, "cannot reach", "explained");
	ASSERT_NEQ(access(path, F_OK), 0, "nothing created");
	/* Not a socket at the path: left alone. */
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	close(fd);
	ASSERT_EQ(attest__open(path, ATTEST_NO_GROUP, fake_lookup, NULL, &a, err, sizeof(err)),
		  -EEXIST, "regular file in the way");
	unlink(path);
	/* A missing socket directory is created for the group: 0710. */
	chmod(dir, 0755);
	snprintf(sub, sizeof(sub), "%s/run/attest.sock", dir);
	if (ASSERT_OK(attest__open(sub, TEST_GROUP, fake_lookup, NULL, &a, err, sizeof(err)),
		      err)) {
		snprintf(sub, sizeof(sub), "%s/run", dir);
		ASSERT_OK(stat(sub, &sb), "stat socket dir");
		ASSERT_EQ(sb.st_mode & 07777, 0710, "socket dir mode");
		ASSERT_EQ(sb.st_gid, TEST_GROUP, "socket dir group");
		attest__close(a);
		a = NULL;
		snprintf(sub, sizeof(sub), "%s/run/attest.sock", dir);
		ASSERT_NEQ(access(sub, F_OK), 0, "socket removed on close");
		snprintf(sub, sizeof(sub), "%s/run", dir);
		rmdir(sub);
	}
	/* A live agent keeps its socket; a stale one is replaced. */
	n_fakes = 0;
	if (server_start(&s, ATTEST_NO_GROUP, 0)) {
		ASSERT_EQ(attest__open(s.path, ATTEST_NO_GROUP, fake_lookup, NULL, &a, err,
				       sizeof(err)), -EADDRINUSE, "live agent");
		kill(s.pid, SIGKILL);
		waitpid(s.pid, NULL, 0);
		s.pid = -1;
		close(s.pipe_fd);
		ASSERT_OK(access(s.path, F_OK), "stale socket left behind");
		if (ASSERT_OK(attest__open(s.path, ATTEST_NO_GROUP, fake_lookup, NULL, &a, err,
					   sizeof(err)), err))
			attest__close(a);
	}
	server_stop(&s, NULL);
	rmdir(dir);
}

void test_attest_cli(void)
{
	struct tcp_setup t = { .lfd = -1 };
	struct server s = { .pid = -1 };
	char src[64], dst[64];
	struct sockaddr_in *p, *l;

	n_fakes = 0;
	if (!tcp_start(&t))
		goto cleanup;
	fake_from_tcp(&t, 0, "/fake/client-a", ATTEST_SOURCE_KERNEL);
	if (!server_start(&s, ATTEST_NO_GROUP, 0))
		goto cleanup;
	p = (struct sockaddr_in *)&t.peer[0];
	l = (struct sockaddr_in *)&t.local[0];
	snprintf(src, sizeof(src), "127.0.0.1:%u", ntohs(p->sin_port));
	snprintf(dst, sizeof(dst), "127.0.0.1:%u", ntohs(l->sin_port));
	ASSERT_EQ(attest__cli_who(s.path, src, dst), 0, "known connection");
	ASSERT_EQ(attest__cli_who(s.path, dst, src), 1, "unknown connection");
	ASSERT_EQ(attest__cli_who(s.path, "127.0.0.1", dst), 2, "no port");
	ASSERT_EQ(attest__cli_who(s.path, "[::1]:80", dst), 2, "mixed families");
	ASSERT_EQ(attest__cli_who(s.path, NULL, dst), 2, "missing argument");
	ASSERT_EQ(attest__cli_who("/nonexistent/attest.sock", src, dst), 1, "no agent");
cleanup:
	server_stop(&s, NULL);
	tcp_stop(&t);
}

void test_attest_client_parse(void)
{
	struct mcpw_attest_result r;
	struct sockaddr_storage ss;
	socklen_t len;
	char deep[400], *longexe;
	size_t i;

	ASSERT_OK(mcpw_attest_parse("{\"ok\":true,\"workload\":{\"attributed\":true,\"pid\":42,"
		"\"tid\":43,\"comm\":\"n\\u00f6de\",\"exe\":\"/usr/bin/n\\u00f6de \\ud83d\\ude00\","
		"\"uid\":1000,\"gid\":1001,\"cgroup\":\"\\/kubepods.slice\\/x\","
		"\"cgroup_id\":18446744073709551615,\"container_id\":\"abc\","
		"\"pod\":{\"uid\":\"u-1\",\"namespace\":\"ns\",\"name\":\"p\","
		"\"labels\":{\"a\":\"b\"}},\"ancestors\":[{\"pid\":1,\"exe\":\"/sbin/init\"}],"
		"\"node\":null,\"x\":[1.5e3,-2,[[]],{}]},\"source\":\"proc\","
		"\"connection\":{\"src\":\"1.2.3.4:5\",\"dst\":\"6.7.8.9:10\"}} ", &r), "full");
	ASSERT_TRUE(r.ok, "ok");
	ASSERT_TRUE(r.attributed, "attributed");
	ASSERT_EQ(r.pid, 42, "pid");
	ASSERT_EQ(r.uid, 1000, "uid");
	ASSERT_EQ(r.gid, 1001, "gid");
	ASSERT_TRUE(r.cgroup_id == UINT64_MAX, "cgroup_id");
	ASSERT_STREQ(r.exe, "/usr/bin/n\xc3\xb6" "de \xf0\x9f\x98\x80", "exe unescaped");
	ASSERT_STREQ(r.cgroup, "/kubepods.slice/x", "cgroup");
	ASSERT_STREQ(r.container_id, "abc", "container");
	ASSERT_STREQ(r.pod_namespace, "ns", "pod ns");
	ASSERT_STREQ(r.pod_name, "p", "pod name");
	ASSERT_STREQ(r.pod_uid, "u-1", "pod uid");
	ASSERT_STREQ(r.source, "proc", "source");
	ASSERT_FALSE(r.truncated, "not truncated");

	ASSERT_OK(mcpw_attest_parse("{\"ok\":false,\"error\":\"unknown connection\"}", &r),
		  "error answer");
	ASSERT_FALSE(r.ok, "not ok");
	ASSERT_STREQ(r.error, "unknown connection", "error");

	/* A string longer than its field is cut at a character, and flagged. */
	longexe = malloc(3000);
	if (ASSERT_OK_PTR(longexe, "malloc")) {
		strcpy(longexe, "{\"ok\":true,\"workload\":{\"exe\":\"");
		for (i = strlen(longexe); i < 2900; i += 2)
			memcpy(longexe + i, "\xc3\xb6", 2);
		strcpy(longexe + 2900, "\"}}");
		ASSERT_OK(mcpw_attest_parse(longexe, &r), "long exe");
		ASSERT_TRUE(r.truncated, "truncated flagged");
		ASSERT_TRUE(strlen(r.exe) < sizeof(r.exe), "fits");
		ASSERT_EQ(strlen(r.exe) % 2, 0, "cut between characters");
		free(longexe);
	}

	for (i = 0; i < sizeof(deep) - 1; i++)
		deep[i] = i < 200 ? '[' : ']';
	deep[sizeof(deep) - 1] = '\0';
	{
		static const char *bad[] = {
			"", "{", "[]", "{\"ok\":tru}", "{\"ok\":true} x", "{\"workload\":{}}",
			"{\"ok\":true,\"error\":\"a\\u0000b\"}", "{\"ok\":true,\"error\":\"\x01\"}",
			"{\"ok\":true,\"x\":\"\\q\"}", "{\"ok\":true,}", "{\"ok\":true \"a\":1}",
			"{\"ok\":true,\"x\":\"unterminated}",
		};
		char buf[512];

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			ASSERT_EQ(mcpw_attest_parse(bad[i], &r), -EPROTO, bad[i]);
		snprintf(buf, sizeof(buf), "{\"ok\":true,\"x\":%s}", deep);
		ASSERT_EQ(mcpw_attest_parse(buf, &r), -EPROTO, "too deep");
	}

	ASSERT_OK(mcpw_attest_parse_addr("10.0.0.1:80", &ss, &len), "v4");
	ASSERT_EQ(ss.ss_family, AF_INET, "v4 family");
	ASSERT_EQ(len, sizeof(struct sockaddr_in), "v4 len");
	ASSERT_OK(mcpw_attest_parse_addr("[::1]:65535", &ss, &len), "v6");
	ASSERT_EQ(ss.ss_family, AF_INET6, "v6 family");
	ASSERT_EQ(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 65535, "v6 port");
	ASSERT_EQ(mcpw_attest_parse_addr("::1:80", &ss, &len), -EINVAL, "bare v6");
	ASSERT_EQ(mcpw_attest_parse_addr("10.0.0.1:0", &ss, &len), -EINVAL, "port 0");
	ASSERT_EQ(mcpw_attest_parse_addr("10.0.0.1:", &ss, &len), -EINVAL, "no port");
	ASSERT_EQ(mcpw_attest_parse_addr("10.0.0.1:8x", &ss, &len), -EINVAL, "bad port");
	ASSERT_EQ(mcpw_attest_parse_addr("[::1]80", &ss, &len), -EINVAL, "no colon");
	ASSERT_EQ(mcpw_attest_parse_addr("host:80", &ss, &len), -EINVAL, "name");
}
