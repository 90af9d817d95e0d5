// SPDX-License-Identifier: GPL-2.0
/*
 * Control socket server (in the agent) and client (the CLI).
 *
 * The agent's side never blocks its loop on a client: clients are served
 * from an epoll set of their own (its fd is the one the agent watches).
 * Each reader of events has a cursor into the history ring, a line's
 * sequence number and the bytes of it already sent, and is written to as
 * its socket takes bytes: `events` gets the whole history however large
 * its lines, a follower rides out a burst of up to CTL_HISTORY events, and
 * one that falls further behind (its next line overwritten) is
 * disconnected and counted, never waited on.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include "ctl.h"
#include "listener.h"

#define MAX_CLIENTS 16
#define REQUEST_MAX 64
#define REQUEST_TIMEOUT_NS (2ull * 1000000000ull)
#define READER_SNDBUF (8 << 20)
#define CTL_CLIENT_TIMEOUT_S 10

enum client_state {
	CL_FREE,
	CL_REQUEST,	/* reading its request line */
	CL_EVENTS,	/* being sent the history, then closed */
	CL_FOLLOW,	/* the history, then every new event */
};

struct client {
	enum client_state state;
	int fd;
	uint32_t watching;	/* epoll events asked for */
	char req[REQUEST_MAX];
	size_t req_len;
	uint64_t since_ns;	/* first tick that saw it waiting (0: none yet) */
	uint64_t next;		/* sequence number of the next line to send */
	uint64_t until;		/* and of the line it stops before */
	size_t sent;		/* bytes of that line already sent */
};

struct ctl {
	int fd;			/* listening */
	int ep;			/* the listener and the clients */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ctl_status_fn status;
	void *ctx;
	/* Line seq lives in slot seq % CTL_HISTORY, with its newline. */
	char *history[CTL_HISTORY];
	size_t hist_len[CTL_HISTORY];
	size_t hist_cap[CTL_HISTORY];	/* reused: a busy agent keeps no allocator busy */
	uint64_t hist_end;		/* sequence number of the next line */
	size_t hist_n;			/* lines kept: hist_end - hist_n is the oldest */
	struct client clients[MAX_CLIENTS];
	size_t n_readers;		/* clients in CL_EVENTS or CL_FOLLOW */
	struct listener_pause pause;	/* out of descriptors: re-armed by ctl__tick */
	uint64_t dropped;
};

static int make_dirs(const char *dir)
{
	char buf[256], *p;

	if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

int ctl__open(const char *state_dir, ctl_status_fn status, void *ctx, struct ctl **out,
	      char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct ctl *c;
	mode_t old;
	int ret, probe;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->status = status;
	c->ctx = ctx;
	ret = make_dirs(state_dir);
	if (ret) {
		snprintf(err, errlen, "cannot create the state directory %s: %s", state_dir,
			 strerror(-ret));
		free(c);
		return ret;
	}
	if (snprintf(c->path, sizeof(c->path), "%s/%s", state_dir, CTL_SOCKET_NAME) >=
	    (int)sizeof(c->path)) {
		snprintf(err, errlen, "the state directory path is too long for a socket");
		free(c);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, c->path, sizeof(c->path));
	/* Another agent answering there owns this state directory. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
		close(probe);
		snprintf(err, errlen, "another mcpwarden is running with state directory %s",
			 state_dir);
		free(c);
		return -EADDRINUSE;
	}
	if (probe >= 0)
		close(probe);
	unlink(c->path);
	c->ep = -1;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		goto fail;
	old = umask(0177);	/* the socket is created 0600 */
	ret = bind(c->fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (ret || chmod(c->path, 0600) || listen(c->fd, 16))
		goto fail;
	c->ep = epoll_create1(EPOLL_CLOEXEC);
	if (c->ep < 0 || epoll_ctl(c->ep, EPOLL_CTL_ADD, c->fd,
				   &(struct epoll_event){ .events = EPOLLIN, .data.u64 = 0 }))
		goto fail;
	*out = c;
	return 0;
fail:
	ret = -errno;
	snprintf(err, errlen, "cannot create the control socket %s: %s", c->path, strerror(errno));
	if (c->ep >= 0)
		close(c->ep);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return ret;
}

static void client_close(struct ctl *c, struct client *cl)
{
	if (cl->state == CL_FREE)
		return;
	if (cl->state == CL_EVENTS || cl->state == CL_FOLLOW)
		c->n_readers--;
	close(cl->fd);	/* leaves the epoll set with it */
	cl->state = CL_FREE;
	cl->fd = -1;
}

void ctl__close(struct ctl *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < MAX_CLIENTS; i++)
		client_close(c, &c->clients[i]);
	for (i = 0; i < CTL_HISTORY; i++)
		free(c->history[i]);
	close(c->ep);
	close(c->fd);
	unlink(c->path);
	free(c);
}

int ctl__fd(const struct ctl *c)
{
	return c->ep;
}

uint64_t ctl__dropped_followers(const struct ctl *c)
{
	return c->dropped;
}

static void client_watch(struct ctl *c, struct client *cl, uint32_t events)
{
	if (cl->watching == events)
		return;
	epoll_ctl(c->ep, EPOLL_CTL_MOD, cl->fd, &(struct epoll_event){
		.events = events, .data.u64 = (uint64_t)(cl - c->clients) + 1 });
	cl->watching = events;
}

/*
 * Sends the reader what its socket takes of the lines from its cursor on.
 * Done with the history: an `events` reader is closed, a follower waits
 * for the next event. A reader whose next line was overwritten fell
 * further behind than the history reaches: disconnected, counted.
 */
static void client_pump(struct ctl *c, struct client *cl)
{
	while (cl->next < c->hist_end && cl->next < cl->until) {
		size_t slot = cl->next % CTL_HISTORY;
		ssize_t n;

		if (cl->next < c->hist_end - c->hist_n) {
			c->dropped++;
			client_close(c, cl);
			return;
		}
		n = send(cl->fd, c->history[slot] + cl->sent, c->hist_len[slot] - cl->sent,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			client_watch(c, cl, EPOLLOUT);
			return;
		}
		if (n <= 0) {
			client_close(c, cl);	/* gone */
			return;
		}
		cl->sent += (size_t)n;
		if (cl->sent == c->hist_len[slot]) {
			cl->next++;
			cl->sent = 0;
		}
	}
	if (cl->next == cl->until)
		client_close(c, cl);
	else
		/* Caught up: told only when it is gone (EPOLLHUP comes
		 * unasked). A reader that shut down its sending side after
		 * its request (socat, a script) still reads. */
		client_watch(c, cl, 0);
}

static void client_request(struct ctl *c, struct client *cl)
{
	char *req = cl->req;

	req[strcspn(req, "\r\n")] = '\0';
	if (strcmp(req, "status") == 0) {
		json_t *st = c->status(c->ctx);
		char *s = st ? json_dumps(st, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

		/* A status reply is small: a blocking send is fine here. */
		if (s) {
			fcntl(cl->fd, F_SETFL, 0);
			if (send(cl->fd, s, strlen(s), MSG_NOSIGNAL) >= 0)
				send(cl->fd, "\n", 1, MSG_NOSIGNAL);
		}
		free(s);
		json_decref(st);
		client_close(c, cl);
		return;
	}
	if (strcmp(req, "events") == 0 || strcmp(req, "events follow") == 0) {
		/* Room for a burst while the reader is not scheduled (the
		 * agent's loop runs real-time): kernel memory, used only
		 * while the reader lags. Best effort. */
		int sndbuf = READER_SNDBUF;

		setsockopt(cl->fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
		cl->state = strcmp(req, "events") == 0 ? CL_EVENTS : CL_FOLLOW;
		c->n_readers++;
		cl->next = c->hist_end - c->hist_n;
		/* `events` is the history as it stands now. */
		cl->until = cl->state == CL_EVENTS ? c->hist_end : UINT64_MAX;
		cl->sent = 0;
		client_pump(c, cl);
		return;
	}
	send(cl->fd, "{\"error\":\"unknown request\"}\n", 28, MSG_NOSIGNAL | MSG_DONTWAIT);
	client_close(c, cl);
}

static void client_readable(struct ctl *c, struct client *cl)
{
	ssize_t n;

	n = recv(cl->fd, cl->req + cl->req_len, sizeof(cl->req) - 1 - cl->req_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c, cl);
		return;
	}
	cl->req_len += (size_t)n;
	cl->req[cl->req_len] = '\0';
	if (strchr(cl->req, '\n') || cl->req_len == sizeof(cl->req) - 1)
		client_request(c, cl);
}

static void accept_clients(struct ctl *c)
{
	struct client *cl;
	size_t i;
	int fd;

	for (;;) {
		fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			listener__starved(&c->pause, c->ep, c->fd, errno);
			return;
		}
		for (i = 0; i < MAX_CLIENTS && c->clients[i].state != CL_FREE; i++)
			;
		if (i == MAX_CLIENTS) {
			char req[REQUEST_MAX];

			/* Its request read first, when it is in: closed unread,
			 * it would reset the connection before the answer. */
			while (recv(fd, req, sizeof(req), MSG_DONTWAIT) > 0)
				;
			send(fd, "{\"error\":\"too many clients\"}\n", 29,
			     MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			c->dropped++;
			continue;
		}
		cl = &c->clients[i];
		*cl = (struct client){ .state = CL_REQUEST, .fd = fd, .watching = EPOLLIN };
		if (epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &(struct epoll_event){
				.events = EPOLLIN, .data.u64 = i + 1 })) {
			close(fd);
			cl->state = CL_FREE;
		}
	}
}

void ctl__on_readable(struct ctl *c)
{
	struct epoll_event evs[MAX_CLIENTS + 1];
	struct client *cl;
	int n, i;

	n = epoll_wait(c->ep, evs, MAX_CLIENTS + 1, 0);
	for (i = 0; i < n; i++) {
		if (evs[i].data.u64 == 0) {
			accept_clients(c);
			continue;
		}
		cl = &c->clients[evs[i].data.u64 - 1];
		if (cl->state == CL_REQUEST)
			client_readable(c, cl);
		else if (evs[i].events & (EPOLLHUP | EPOLLERR))
			client_close(c, cl);
		else if (evs[i].events & EPOLLOUT)
			client_pump(c, cl);
	}
}

void ctl__tick(struct ctl *c, uint64_t now_ns)
{
	size_t i;

	listener__resume(&c->pause, c->ep, c->fd, (epoll_data_t){ .u64 = 0 });
	/* A client that connects and says nothing holds a slot for 2 s. */
	for (i = 0; i < MAX_CLIENTS; i++) {
		struct client *cl = &c->clients[i];

		if (cl->state != CL_REQUEST)
			continue;
		if (!cl->since_ns)
			cl->since_ns = now_ns;
		else if (now_ns - cl->since_ns > REQUEST_TIMEOUT_NS)
			client_close(c, cl);
	}
}

void ctl__on_event(void *ctx, const char *kind, json_t *ev, const char *line, size_t len)
{
	struct ctl *c = ctx;
	size_t slot = c->hist_end % CTL_HISTORY, i;
	char *with_nl = c->history[slot];

	(void)kind;
	(void)ev;
	if (c->hist_cap[slot] < len + 1) {
		size_t cap = len + 1 > 1024 ? len + 1 + 256 : 1024;

		free(with_nl);
		c->history[slot] = with_nl = malloc(cap);
		c->hist_cap[slot] = with_nl ? cap : 0;
		if (!with_nl) {
			/* Out of memory: the slot's old line is gone, the
			 * history starts after it. */
			c->hist_len[slot] = 0;
			c->hist_n -= c->hist_n == CTL_HISTORY;
			return;
		}
	}
	memcpy(with_nl, line, len);
	with_nl[len] = '\n';
	c->hist_len[slot] = len + 1;
	c->hist_end++;
	if (c->hist_n < CTL_HISTORY)
		c->hist_n++;
	if (!c->n_readers)
		return;
	/* Every reader is sent what its socket takes now, not only when the
	 * loop next waits: a batch of the loop can make thousands of events,
	 * and a reader that keeps reading keeps up meanwhile. One that does
	 * not is dropped once this overwrites its next line. */
	for (i = 0; i < MAX_CLIENTS; i++) {
		struct client *cl = &c->clients[i];

		if (cl->state == CL_FOLLOW || cl->state == CL_EVENTS)
			client_pump(c, cl);
	}
}

int ctl__client(const char *state_dir, const char *cmd, bool follow)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	static const char refused[] = "{\"error\":";
	char buf[65536], req[32];
	bool first = true, sent;
	ssize_t n, w;
	size_t off;
	int fd;

	if (snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%s", state_dir, CTL_SOCKET_NAME) >=
	    (int)sizeof(addr.sun_path)) {
		fprintf(stderr, "mcpwarden: state directory path too long\n");
		return 2;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		fprintf(stderr, "mcpwarden: no agent is answering at %s (%s): is `mcpwarden run "
			"--state-dir %s` running, and are you root?\n", addr.sun_path,
			strerror(errno), state_dir);
		if (fd >= 0)
			close(fd);
		return 1;
	}
	snprintf(req, sizeof(req), "%s%s\n", cmd, follow ? " follow" : "");
	/* A stuck agent (its loop stopped) accepts and never answers: the
	 * CLI gives up rather than hang whoever runs it (a probe, a script).
	 * A follower waits for events as long as it takes, once answered. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){ .tv_sec = CTL_CLIENT_TIMEOUT_S },
		   sizeof(struct timeval));
	/* Sent or not, what the agent said is read: an agent that refuses a
	 * client (too many) answers and closes, maybe before the request
	 * arrives, and its answer is still there to read. */
	sent = send(fd, req, strlen(req), MSG_NOSIGNAL) >= 0;
	/* What arrives is written as it arrives, a read at a time: a follower
	 * keeps up with thousands of events a second into a pipe (a write(2)
	 * a line could not), and a terminal still sees each line at once. */
	while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
		if (first && n > 0 && (size_t)n >= sizeof(refused) - 1 &&
		    memcmp(buf, refused, sizeof(refused) - 1) == 0) {
			/* The agent refused the request: said on stderr. */
			fprintf(stderr, "mcpwarden: the agent answered %.*s", (int)n, buf);
			close(fd);
			return 1;
		}
		if (first && follow)
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &(struct timeval){ 0 },
				   sizeof(struct timeval));
		first = false;
		for (off = 0; n > 0 && off < (size_t)n;) {
			w = write(STDOUT_FILENO, buf + off, (size_t)n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				close(fd);
				return 1;	/* stdout is gone */
			}
			off += (size_t)w;
		}
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		fprintf(stderr, "mcpwarden: the agent at %s did not answer within %d s: its "
			"event loop is not running (stopped, or stuck)\n", addr.sun_path,
			CTL_CLIENT_TIMEOUT_S);
		close(fd);
		return 1;
	}
	if (n < 0)
		fprintf(stderr, "mcpwarden: reading from the agent: %s\n", strerror(errno));
	else if (first)
		fprintf(stderr, "mcpwarden: the agent closed the connection without an answer%s\n",
			sent ? "" : " (the request could not be sent)");
	close(fd);
	if (first)
		return 1;
	if (follow) {
		fprintf(stderr, "mcpwarden: the agent ended the stream: it stopped, or this "
			"reader fell more than %d events behind\n", CTL_HISTORY);
		return 1;
	}
	return n < 0 ? 1 : 0;
}
