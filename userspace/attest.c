// SPDX-License-Identifier: GPL-2.0
/*
 * Attestation socket server (see attest.h for the protocol).
 *
 * Data flow: the listener and every client sit in a private epoll set whose
 * descriptor the agent polls. accept -> credentials checked (refused peers
 * get one line and are closed before we read anything they sent) -> bytes
 * and at most one SCM_RIGHTS descriptor gathered up to the newline ->
 * request parsed -> query built from kernel state (SO_PEERCRED, and for
 * who_fd the passed socket's own addresses, cookie and netns) -> the
 * agent's lookup -> one response line written (EPOLLOUT if the socket
 * buffer is short) -> close. Every step is non-blocking and bounded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "attest.h"
#include "listener.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define LISTENER_TAG		UINT64_MAX
#define ACCEPT_BATCH		16	/* per wakeup, so one flood cannot starve the loop */
#define EVENT_BATCH		16
#define FDS_PER_RECV		4	/* room to see (and refuse) extra descriptors */
/* Passed descriptors waiting for the closer thread; beyond this the thread
 * is stuck and who_fd is refused rather than piling up open files. */
#define MAX_PENDING_CLOSES	64
#define MAX_PEER_GROUPS		65536	/* NGROUPS_MAX */

struct attest_client {
	int fd;			/* -1: slot free */
	int passed_fd;		/* SCM_RIGHTS descriptor, -1: none */
	uint32_t gen;		/* tells a reused slot from a stale event */
	bool fd_error;		/* more than one descriptor, or truncated */
	struct ucred cred;
	uint64_t deadline_ns;
	char *out;		/* response being written, NULL while reading */
	size_t out_len, out_off;
	size_t in_len;
	char in[ATTEST_MAX_REQUEST];
};

struct attest {
	int epfd;
	int lfd;
	struct listener_pause pause;	/* out of descriptors: re-armed by attest__tick */
	gid_t group;
	attest_lookup_fn lookup;
	void *ctx;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct attest_stats stats;
	/* Closer thread: see queue_close(). */
	int close_wr;
	pthread_t closer;
	bool closer_running;
	atomic_uint *pending_closes;	/* shared with the detached thread */
	struct attest_client clients[ATTEST_MAX_CLIENTS];
};

static const char ERR_NOT_PERMITTED[] = "not permitted";
static const char ERR_BUSY[] = "busy";
static const char ERR_TOO_LARGE[] = "request too large";
static const char ERR_MALFORMED[] = "malformed request";
static const char ERR_UNKNOWN[] = "unknown connection";

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- request parsing ---------------------------------------------------- */

static int parse_port(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0 || n > 5)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static void set_family(struct attest_addr *a)
{
	a->family = IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a->addr) ? AF_INET : AF_INET6;
}

/* "a.b.c.d:port" or "[v6]:port"; no names, no zone ids, no port 0. */
static int parse_addr(const char *s, size_t n, struct attest_addr *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *port;
	size_t host_len;
	struct in_addr v4;

	memset(out, 0, sizeof(*out));
	if (n && s[0] == '[') {
		const char *rb = memchr(s, ']', n);

		if (!rb || (size_t)(rb - s) + 2 > n || rb[1] != ':')
			return -EINVAL;
		host_len = (size_t)(rb - s) - 1;
		port = rb + 2;
		if (host_len == 0 || host_len >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, host_len);
		host[host_len] = '\0';
		if (inet_pton(AF_INET6, host, out->addr) != 1)
			return -EINVAL;
	} else {
		const char *colon = n ? memrchr(s, ':', n) : NULL;

		if (!colon)
			return -EINVAL;
		host_len = (size_t)(colon - s);
		port = colon + 1;
		if (host_len == 0 || host_len >= sizeof(host))
			return -EINVAL;
		memcpy(host, s, host_len);
		host[host_len] = '\0';
		if (inet_pton(AF_INET, host, &v4) != 1)
			return -EINVAL;
		out->addr[10] = 0xff;
		out->addr[11] = 0xff;
		memcpy(out->addr + 12, &v4, 4);
	}
	if (parse_port(port, (size_t)(s + n - port), &out->port))
		return -EINVAL;
	set_family(out);
	return 0;
}

int attest__format_addr(const struct attest_addr *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	int n;

	if (a->family == AF_INET) {
		inet_ntop(AF_INET, a->addr + 12, host, sizeof(host));
		n = snprintf(buf, len, "%s:%u", host, a->port);
	} else {
		inet_ntop(AF_INET6, a->addr, host, sizeof(host));
		n = snprintf(buf, len, "[%s]:%u", host, a->port);
	}
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

static int addr_member(json_t *v, struct attest_addr *out)
{
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return -EINVAL;
	return parse_addr(json_string_value(v), json_string_length(v), out);
}

int attest__parse_request(const char *line, size_t len, struct attest_request *req,
			  const char **why)
{
	json_t *root, *v, *op = NULL, *src = NULL, *dst = NULL;
	const char *key;
	int err = -EINVAL;

	memset(req, 0, sizeof(*req));
	*why = ERR_MALFORMED;
	if (len && line[len - 1] == '\r')
		len--;
	if (len >= ATTEST_MAX_REQUEST) {
		*why = ERR_TOO_LARGE;
		return -EINVAL;
	}
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(root))
		goto out;
	/* Only the question is read: any other key (a claimed pid, a selector,
	 * an identity) is refused rather than ignored, so no caller can come
	 * to believe it influences the answer. */
	json_object_foreach(root, key, v) {
		if (strcmp(key, "op") == 0) {
			op = v;
		} else if (strcmp(key, "src") == 0) {
			src = v;
		} else if (strcmp(key, "dst") == 0) {
			dst = v;
		} else {
			*why = "unknown key in request";
			goto out;
		}
	}
	if (!json_is_string(op)) {
		*why = "request needs an op";
		goto out;
	}
	if (strcmp(json_string_value(op), "who") == 0) {
		req->op = ATTEST_OP_WHO;
		if (!src || !dst) {
			*why = "who needs src and dst";
			goto out;
		}
		if (addr_member(src, &req->src) || addr_member(dst, &req->dst)) {
			*why = "bad address (want a.b.c.d:port or [v6]:port)";
			goto out;
		}
		if (req->src.family != req->dst.family) {
			*why = "src and dst are of different families";
			goto out;
		}
	} else if (strcmp(json_string_value(op), "who_fd") == 0) {
		req->op = ATTEST_OP_WHO_FD;
		if (src || dst) {
			*why = "who_fd takes its addresses from the socket";
			goto out;
		}
	} else {
		*why = "unknown op";
		goto out;
	}
	err = 0;
out:
	json_decref(root);
	if (err)
		memset(req, 0, sizeof(*req));
	return err;
}

/* ---- credentials -------------------------------------------------------- */

static bool groups_contain(const gid_t *groups, size_t n, gid_t group)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (groups[i] == group)
			return true;
	return false;
}

/* Kernels before 4.13 have no SO_PEERGROUPS: read the peer's groups now.
 * Weaker (the groups may have changed since connect, the pid may have been
 * reused), which is why it is only the fallback. */
static bool proc_groups_contain(pid_t pid, gid_t group)
{
	char path[64], *line = NULL, *p, *end;
	size_t cap = 0;
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		for (p = line + 7; *p && !found;) {
			unsigned long g;

			errno = 0;
			g = strtoul(p, &end, 10);
			if (end == p || errno)
				break;
			found = (gid_t)g == group;
			p = end;
		}
		break;
	}
	free(line);
	fclose(f);
	return found;
}

static bool peer_in_group(int fd, pid_t pid, gid_t group)
{
	gid_t small[64], *groups = small;
	socklen_t len = sizeof(small);
	bool found = false;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
		return groups_contain(groups, len / sizeof(gid_t), group);
	if (errno == ENOPROTOOPT)
		return pid > 0 && proc_groups_contain(pid, group);
	if (errno != ERANGE || len > MAX_PEER_GROUPS * sizeof(gid_t))
		return false;
	groups = malloc(len);
	if (groups && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
		found = groups_contain(groups, len / sizeof(gid_t), group);
	free(groups);
	return found;
}

/* The credentials of the process that connected, as the kernel saw them at
 * connect(); nothing the peer says enters into it. */
static bool peer_permitted(const struct attest *a, int fd, const struct ucred *cr)
{
	if (cr->uid == 0)
		return true;
	if (a->group == ATTEST_NO_GROUP)
		return false;
	if (cr->gid == a->group)
		return true;
	return peer_in_group(fd, cr->pid, a->group);
}

/* ---- passed descriptors ------------------------------------------------- */

/*
 * A descriptor a caller passed is closed by a helper thread, never by the
 * event loop: close() runs ->flush on every close of a FUSE or NFS file (a
 * caller's file server could answer never), and the last close of a TCP
 * socket with SO_LINGER waits for its FIN to be acknowledged. Enforcement
 * must not wait on a caller's choices.
 */
struct closer_arg {
	int rd;
	atomic_uint *pending;
};

static void *closer_main(void *p)
{
	struct closer_arg arg = *(struct closer_arg *)p;
	int fd;

	free(p);
	for (;;) {
		ssize_t n = read(arg.rd, &fd, sizeof(fd));

		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof(fd))
			break;
		close(fd);
		atomic_fetch_sub(arg.pending, 1);
	}
	close(arg.rd);
	free(arg.pending);
	return NULL;
}

static int closer_start(struct attest *a)
{
	struct closer_arg *arg;
	sigset_t all, old;
	int fds[2], err;

	a->pending_closes = calloc(1, sizeof(*a->pending_closes));
	arg = malloc(sizeof(*arg));
	if (!a->pending_closes || !arg) {
		free(a->pending_closes);
		a->pending_closes = NULL;
		free(arg);
		return -ENOMEM;
	}
	if (pipe2(fds, O_CLOEXEC)) {
		err = -errno;
		goto fail;
	}
	/* The write end never blocks the loop: a full pipe means close inline. */
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	arg->rd = fds[0];
	arg->pending = a->pending_closes;
	/* The agent takes SIGTERM/SIGHUP through a signalfd, which works only
	 * while no thread leaves them unblocked: this one blocks everything. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&a->closer, NULL, closer_main, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		close(fds[0]);
		close(fds[1]);
		goto fail;
	}
	/* Detached: a close stuck forever must not hang the agent's exit. */
	pthread_detach(a->closer);
	a->close_wr = fds[1];
	a->closer_running = true;
	return 0;
fail:
	free(a->pending_closes);
	a->pending_closes = NULL;
	free(arg);
	return err;
}

static void queue_close(struct attest *a, int fd)
{
	if (fd < 0)
		return;
	if (!a->closer_running) {
		close(fd);
		return;
	}
	atomic_fetch_add(a->pending_closes, 1);
	if (write(a->close_wr, &fd, sizeof(fd)) == sizeof(fd))
		return;
	atomic_fetch_sub(a->pending_closes, 1);
	close(fd);
}

static bool closer_stuck(const struct attest *a)
{
	return a->closer_running && atomic_load(a->pending_closes) >= MAX_PENDING_CLOSES;
}

/* ---- clients ------------------------------------------------------------ */

static void client_free(struct attest *a, struct attest_client *c)
{
	if (c->fd < 0)
		return;
	epoll_ctl(a->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	queue_close(a, c->passed_fd);
	free(c->out);
	c->fd = -1;
	c->passed_fd = -1;
	c->out = NULL;
	c->gen++;
}

static void send_line_now(int fd, const char *error)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "{\"ok\":false,\"error\":\"%s\"}\n", error);

	/* Best effort: a refused or surplus peer gets one try, no buffering. */
	if (send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* nothing more to do for it */
	}
}

static void accept_clients(struct attest *a, uint64_t now)
{
	int i, fd;

	for (i = 0; i < ACCEPT_BATCH; i++) {
		struct ucred cr;
		socklen_t len = sizeof(cr);
		struct epoll_event ev = { .events = EPOLLIN };
		struct attest_client *c = NULL;
		size_t k;

		fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			listener__starved(&a->pause, a->epfd, a->lfd, errno);
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) ||
		    !peer_permitted(a, fd, &cr)) {
			a->stats.refused++;
			send_line_now(fd, ERR_NOT_PERMITTED);
			close(fd);
			continue;
		}
		for (k = 0; k < ATTEST_MAX_CLIENTS && !c; k++)
			if (a->clients[k].fd < 0)
				c = &a->clients[k];
		if (!c) {
			a->stats.dropped++;
			send_line_now(fd, ERR_BUSY);
			close(fd);
			continue;
		}
		ev.data.u64 = ((uint64_t)c->gen << 32) | (uint64_t)(c - a->clients);
		if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			a->stats.dropped++;
			close(fd);
			continue;
		}
		c->fd = fd;
		c->passed_fd = -1;
		c->fd_error = false;
		c->cred = cr;
		c->deadline_ns = now + ATTEST_CLIENT_TIMEOUT_NS;
		c->in_len = 0;
		c->out_len = c->out_off = 0;
	}
}

/* Keeps the first descriptor; any other is closed and spoils the request. */
static void take_fds(struct attest *a, struct attest_client *c, struct msghdr *mh)
{
	struct cmsghdr *cm;

	if (mh->msg_flags & MSG_CTRUNC)
		c->fd_error = true;
	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t i, n;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
			if (c->passed_fd < 0 && !c->fd_error) {
				c->passed_fd = fd;
				continue;
			}
			c->fd_error = true;
			queue_close(a, fd);
		}
	}
}

static int sockaddr_to_addr(const struct sockaddr_storage *ss, struct attest_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		out->addr[10] = 0xff;
		out->addr[11] = 0xff;
		memcpy(out->addr + 12, &in->sin_addr, 4);
		out->port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		memcpy(out->addr, &in6->sin6_addr, 16);
		out->port = ntohs(in6->sin6_port);
	} else {
		return -EAFNOSUPPORT;
	}
	set_family(out);
	return 0;
}

static uint32_t netns_of_fd(int nsfd)
{
	struct stat st;
	uint32_t ino = 0;

	if (nsfd < 0)
		return 0;
	if (fstat(nsfd, &st) == 0)
		ino = (uint32_t)st.st_ino;
	close(nsfd);
	return ino;
}

static uint32_t netns_of_pid(pid_t pid)
{
	char path[64];
	struct stat st;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	return stat(path, &st) == 0 ? (uint32_t)st.st_ino : 0;
}

/* Everything about a who_fd connection comes from the socket itself. */
static int query_from_socket(int fd, struct attest_query *q, const char **why)
{
	struct sockaddr_storage local, peer;
	socklen_t len;
	int domain, type, proto;
	uint32_t ns;

	*why = "not a connected TCP socket";
	len = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) ||
	    (domain != AF_INET && domain != AF_INET6))
		return -EINVAL;
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_STREAM)
		return -EINVAL;
	len = sizeof(proto);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) || proto != IPPROTO_TCP)
		return -EINVAL;
	len = sizeof(local);
	if (getsockname(fd, (struct sockaddr *)&local, &len) ||
	    sockaddr_to_addr(&local, &q->server))
		return -EINVAL;
	len = sizeof(peer);
	if (getpeername(fd, (struct sockaddr *)&peer, &len) ||
	    sockaddr_to_addr(&peer, &q->client))
		return -EINVAL;
	len = sizeof(q->sock_cookie);
	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &q->sock_cookie, &len))
		q->sock_cookie = 0;
	/* SIOCGSKNS needs CAP_NET_ADMIN over the socket's namespace: the
	 * agent has it; without it the caller's namespace is the hint. */
	ns = netns_of_fd(ioctl(fd, SIOCGSKNS));
	if (ns) {
		q->netns = ns;
		q->netns_from_socket = true;
	}
	return 0;
}

static char *error_response(const char *error, size_t *len)
{
	char *s;
	int n = asprintf(&s, "{\"ok\":false,\"error\":\"%s\"}\n", error);

	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return s;
}

static char *ok_response(const struct attest_query *q, json_t *workload, int source,
			 size_t *len)
{
	json_t *resp = json_object(), *conn = json_object();
	char src[64], dst[64], *s = NULL, *line;
	size_t n;

	if (!resp || !conn)
		goto out;
	attest__format_addr(&q->client, src, sizeof(src));
	attest__format_addr(&q->server, dst, sizeof(dst));
	json_object_set_new(conn, "src", json_string(src));
	json_object_set_new(conn, "dst", json_string(dst));
	json_object_set_new(resp, "ok", json_true());
	json_object_set(resp, "workload", workload);
	json_object_set_new(resp, "source",
			    json_string(source == ATTEST_SOURCE_PROC ? "proc" : "kernel"));
	json_object_set(resp, "connection", conn);
	s = json_dumps(resp, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
	json_decref(conn);
	json_decref(resp);
	if (!s)
		return NULL;
	n = strlen(s);
	if (n + 1 > ATTEST_MAX_RESPONSE) {
		free(s);
		return error_response("response too large", len);
	}
	line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return NULL;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*len = n + 1;
	return line;
}

static char *answer(struct attest *a, struct attest_client *c, const char *line, size_t len,
		    size_t *out_len)
{
	struct attest_query q = {
		.caller_pid = c->cred.pid,
		.caller_uid = c->cred.uid,
		.caller_gid = c->cred.gid,
	};
	struct attest_request req;
	const char *why;
	json_t *workload = NULL;
	char *resp;
	int ret;

	a->stats.requests++;
	if (attest__parse_request(line, len, &req, &why))
		goto malformed;
	why = "one descriptor expected";
	if (c->fd_error)
		goto malformed;
	if (req.op == ATTEST_OP_WHO) {
		why = "who takes no descriptor";
		if (c->passed_fd >= 0)
			goto malformed;
		q.client = req.src;
		q.server = req.dst;
		q.netns = netns_of_pid(c->cred.pid);
	} else {
		why = "who_fd needs the socket passed with SCM_RIGHTS";
		if (c->passed_fd < 0)
			goto malformed;
		q.netns = netns_of_pid(c->cred.pid);
		ret = query_from_socket(c->passed_fd, &q, &why);
		queue_close(a, c->passed_fd);
		c->passed_fd = -1;
		if (ret)
			goto malformed;
	}
	ret = a->lookup(a->ctx, &q, &workload);
	if (ret >= 0 && !json_is_object(workload))
		ret = -EIO;
	if (ret == -ENOENT) {
		a->stats.unknown++;
		why = ERR_UNKNOWN;
	} else if (ret == -EPERM || ret == -EACCES) {
		a->stats.refused++;
		why = ERR_NOT_PERMITTED;
	} else if (ret < 0) {
		why = "lookup failed";
	} else {
		resp = ok_response(&q, workload, ret, out_len);
		json_decref(workload);
		if (resp)
			a->stats.answered++;
		return resp;
	}
	json_decref(workload);
	return error_response(why, out_len);
malformed:
	a->stats.malformed++;
	return error_response(why, out_len);
}

static void client_flush(struct attest *a, struct attest_client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;		/* EPOLLOUT brings us back */
		if (n <= 0) {
			a->stats.dropped++;
			break;
		}
		c->out_off += (size_t)n;
	}
	client_free(a, c);
}

static void client_respond(struct attest *a, struct attest_client *c, char *resp, size_t len)
{
	struct epoll_event ev = { .events = EPOLLOUT };

	if (!resp) {
		a->stats.dropped++;
		client_free(a, c);
		return;
	}
	c->out = resp;
	c->out_len = len;
	c->out_off = 0;
	ev.data.u64 = ((uint64_t)c->gen << 32) | (uint64_t)(c - a->clients);
	epoll_ctl(a->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	client_flush(a, c);
}

static void client_read(struct attest *a, struct attest_client *c)
{
	char cbuf[CMSG_SPACE(FDS_PER_RECV * sizeof(int))];
	struct iovec iov = {
		.iov_base = c->in + c->in_len,
		.iov_len = sizeof(c->in) - c->in_len,
	};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = sizeof(cbuf),
	};
	const char *nl;
	char *resp;
	size_t resp_len = 0;
	ssize_t n;

	/* While passed descriptors wait for a stuck closer, take no more:
	 * open files must not pile up without bound. */
	if (closer_stuck(a)) {
		a->stats.dropped++;
		resp = error_response(ERR_BUSY, &resp_len);
		client_respond(a, c, resp, resp_len);
		return;
	}
	n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n < 0) {
		a->stats.dropped++;
		client_free(a, c);
		return;
	}
	take_fds(a, c, &mh);
	if (n == 0) {
		/* EOF: what came is the request (a client may shut down
		 * writing instead of sending the newline). */
		if (c->in_len == 0) {
			client_free(a, c);
			return;
		}
		resp = answer(a, c, c->in, c->in_len, &resp_len);
		client_respond(a, c, resp, resp_len);
		return;
	}
	nl = memchr(c->in + c->in_len, '\n', (size_t)n);
	c->in_len += (size_t)n;
	if (nl) {
		resp = answer(a, c, c->in, (size_t)(nl - c->in), &resp_len);
		client_respond(a, c, resp, resp_len);
		return;
	}
	if (c->in_len == sizeof(c->in)) {
		a->stats.requests++;
		a->stats.malformed++;
		resp = error_response(ERR_TOO_LARGE, &resp_len);
		client_respond(a, c, resp, resp_len);
		return;
	}
	if (c->fd_error) {
		/* Stop reading at once: a peer pushing descriptors gets no
		 * further chance to hand us more. */
		a->stats.requests++;
		a->stats.malformed++;
		resp = error_response("one descriptor expected", &resp_len);
		client_respond(a, c, resp, resp_len);
	}
}

void attest__on_readable(struct attest *a)
{
	struct epoll_event evs[EVENT_BATCH];
	uint64_t now = monotonic_ns();
	int n, i;

	n = epoll_wait(a->epfd, evs, EVENT_BATCH, 0);
	for (i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;
		struct attest_client *c;

		if (tag == LISTENER_TAG) {
			accept_clients(a, now);
			continue;
		}
		if ((tag & 0xffffffffu) >= ATTEST_MAX_CLIENTS)
			continue;
		c = &a->clients[tag & 0xffffffffu];
		if (c->fd < 0 || c->gen != (uint32_t)(tag >> 32))
			continue;
		if (c->out)
			client_flush(a, c);
		else
			client_read(a, c);
	}
}

void attest__tick(struct attest *a, uint64_t now_ns)
{
	size_t i;

	if (!a)
		return;
	for (i = 0; i < ATTEST_MAX_CLIENTS; i++) {
		struct attest_client *c = &a->clients[i];

		if (c->fd >= 0 && now_ns >= c->deadline_ns) {
			a->stats.dropped++;
			client_free(a, c);
		}
	}
	listener__resume(&a->pause, a->epfd, a->lfd, (epoll_data_t){ .u64 = LISTENER_TAG });
}

/* ---- socket setup ------------------------------------------------------- */

/* Every directory above the socket must let a member of group search it;
 * a member is assumed not to own them (root does). ACLs are not read, so
 * a directory opened only by an ACL is reported as closed. */
static int check_reachable(const char *path, gid_t group, char *err, size_t errlen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *p, *slash;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", path);
	for (p = dir + 1; (slash = strchr(p, '/')); p = slash + 1) {
		*slash = '\0';
		if (stat(dir, &st)) {
			int ret = -errno;

			snprintf(err, errlen, "cannot check %s: %s", dir, strerror(-ret));
			return ret;
		}
		if (!(st.st_mode & S_IXOTH) && !(st.st_gid == group && (st.st_mode & S_IXGRP))) {
			snprintf(err, errlen, "members of group %u cannot reach %s: directory %s "
				 "is mode %04o, group %u; choose a socket path in a directory "
				 "they can search", (unsigned int)group, path, dir,
				 (unsigned int)(st.st_mode & 07777), (unsigned int)st.st_gid);
			return -EACCES;
		}
		*slash = '/';
	}
	return 0;
}

/* Creates missing directories above the socket; the last one is the
 * socket's own: 0710 root:group, so members may reach it but not list it. */
static int make_parent(const char *path, gid_t group, char *err, size_t errlen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)], *p, *last;
	int ret;
	mode_t own = group == ATTEST_NO_GROUP ? 0700 : 0710;

	snprintf(dir, sizeof(dir), "%s", path);
	last = strrchr(dir, '/');
	if (!last || last == dir)
		return 0;
	*last = '\0';
	for (p = dir + 1;; p++) {
		bool is_last = *p == '\0';

		if (*p != '/' && !is_last)
			continue;
		*p = '\0';
		if (mkdir(dir, is_last ? own : 0755) == 0) {
			/* mkdir applies the umask: set the mode we mean. */
			if (is_last && (chmod(dir, own) ||
					(group != ATTEST_NO_GROUP && chown(dir, (uid_t)-1, group)))) {
				ret = -errno;
				snprintf(err, errlen, "cannot set up %s: %s", dir, strerror(-ret));
				return ret;
			}
		} else if (errno != EEXIST) {
			ret = -errno;
			snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-ret));
			return ret;
		}
		if (is_last)
			return 0;
		*p = '/';
	}
}

static int bind_socket(struct attest *a, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int ret, probe;

	memcpy(addr.sun_path, a->path, sizeof(a->path));
	/* Another agent answering there owns this socket. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
		close(probe);
		snprintf(err, errlen, "another mcpwarden is answering on %s", a->path);
		return -EADDRINUSE;
	}
	if (probe >= 0)
		close(probe);
	if (lstat(a->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", a->path);
			return -EEXIST;
		}
		unlink(a->path);
	}
	a->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (a->lfd < 0)
		goto fail;
	/* Born 0600; opened to the group only once it belongs to the group. */
	old = umask(0177);
	ret = bind(a->lfd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (ret)
		goto fail;
	if (a->group != ATTEST_NO_GROUP &&
	    (chown(a->path, (uid_t)-1, a->group) || chmod(a->path, 0660)))
		goto fail;
	if (listen(a->lfd, ATTEST_MAX_CLIENTS))
		goto fail;
	return 0;
fail:
	ret = -errno;
	snprintf(err, errlen, "cannot create the attestation socket %s: %s", a->path,
		 strerror(errno));
	return ret;
}

int attest__open(const char *path, gid_t group, attest_lookup_fn lookup, void *ctx,
		 struct attest **out, char *err, size_t errlen)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = LISTENER_TAG };
	struct attest *a;
	size_t i;
	int ret;

	if (!path || path[0] != '/' || !lookup) {
		snprintf(err, errlen, "the attestation socket needs an absolute path");
		return -EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->epfd = a->lfd = a->close_wr = -1;
	a->group = group;
	a->lookup = lookup;
	a->ctx = ctx;
	for (i = 0; i < ATTEST_MAX_CLIENTS; i++) {
		a->clients[i].fd = -1;
		a->clients[i].passed_fd = -1;
	}
	if (snprintf(a->path, sizeof(a->path), "%s", path) >= (int)sizeof(a->path)) {
		snprintf(err, errlen, "the attestation socket path is too long");
		ret = -ENAMETOOLONG;
		goto fail;
	}
	ret = make_parent(a->path, group, err, errlen);
	if (ret)
		goto fail;
	if (group != ATTEST_NO_GROUP) {
		ret = check_reachable(a->path, group, err, errlen);
		if (ret)
			goto fail;
	}
	ret = bind_socket(a, err, errlen);
	if (ret)
		goto fail;
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (a->epfd < 0 || epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->lfd, &ev)) {
		ret = -errno;
		snprintf(err, errlen, "cannot create the attestation epoll set: %s",
			 strerror(errno));
		goto fail;
	}
	ret = closer_start(a);
	if (ret) {
		snprintf(err, errlen, "cannot start the descriptor closer: %s", strerror(-ret));
		goto fail;
	}
	*out = a;
	return 0;
fail:
	attest__close(a);
	return ret;
}

void attest__close(struct attest *a)
{
	size_t i;

	if (!a)
		return;
	for (i = 0; i < ATTEST_MAX_CLIENTS; i++)
		client_free(a, &a->clients[i]);
	if (a->lfd >= 0) {
		close(a->lfd);
		unlink(a->path);
	}
	if (a->epfd >= 0)
		close(a->epfd);
	/* EOF on the pipe ends the closer once it has closed what is queued;
	 * it owns the counter from here on. */
	if (a->closer_running)
		close(a->close_wr);
	free(a);
}

int attest__fd(const struct attest *a)
{
	return a->epfd;
}

const char *attest__path(const struct attest *a)
{
	return a->path;
}

void attest__get_stats(const struct attest *a, struct attest_stats *st)
{
	*st = a->stats;
}
