// SPDX-License-Identifier: GPL-2.0
/* Control socket server (in the agent) and client (the CLI). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "ctl.h"

#define MAX_FOLLOWERS 16

struct ctl {
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ctl_status_fn status;
	void *ctx;
	char *history[CTL_HISTORY];	/* lines with their newline */
	size_t hist_cap[CTL_HISTORY];	/* reused: a busy agent keeps no allocator busy */
	size_t hist_next, hist_n;
	int followers[MAX_FOLLOWERS];
	size_t n_followers;
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
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		goto fail;
	old = umask(0177);	/* the socket is created 0600 */
	ret = bind(c->fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (ret || chmod(c->path, 0600) || listen(c->fd, 16))
		goto fail;
	*out = c;
	return 0;
fail:
	ret = -errno;
	snprintf(err, errlen, "cannot create the control socket %s: %s", c->path, strerror(errno));
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return ret;
}

void ctl__close(struct ctl *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n_followers; i++)
		close(c->followers[i]);
	for (i = 0; i < CTL_HISTORY; i++)
		free(c->history[i]);
	close(c->fd);
	unlink(c->path);
	free(c);
}

int ctl__fd(const struct ctl *c)
{
	return c->fd;
}

uint64_t ctl__dropped_followers(const struct ctl *c)
{
	return c->dropped;
}

static bool write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static bool send_history(struct ctl *c, int fd)
{
	size_t i, start = (c->hist_next + CTL_HISTORY - c->hist_n) % CTL_HISTORY;

	for (i = 0; i < c->hist_n; i++) {
		const char *line = c->history[(start + i) % CTL_HISTORY];

		if (line && !write_all(fd, line, strlen(line)))
			return false;
	}
	return true;
}

void ctl__accept(struct ctl *c)
{
	struct pollfd pfd;
	char req[64] = "";
	ssize_t n;
	int fd;

	fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	/* The client writes its one line right away; do not wait long. */
	pfd.fd = fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 500) != 1 || (n = recv(fd, req, sizeof(req) - 1, 0)) <= 0) {
		close(fd);
		return;
	}
	req[n] = '\0';
	req[strcspn(req, "\r\n")] = '\0';
	if (strcmp(req, "status") == 0) {
		json_t *st = c->status(c->ctx);
		char *s = st ? json_dumps(st, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;

		/* A status reply is small: a blocking send is fine here. */
		if (s) {
			fcntl(fd, F_SETFL, 0);
			if (send(fd, s, strlen(s), MSG_NOSIGNAL) >= 0)
				send(fd, "\n", 1, MSG_NOSIGNAL);
		}
		free(s);
		json_decref(st);
		close(fd);
		return;
	}
	if (strcmp(req, "events") == 0 || strcmp(req, "events follow") == 0) {
		bool follow = strcmp(req, "events follow") == 0;

		fcntl(fd, F_SETFL, O_NONBLOCK);
		if (!send_history(c, fd) || !follow || c->n_followers == MAX_FOLLOWERS) {
			if (follow && c->n_followers == MAX_FOLLOWERS)
				c->dropped++;
			close(fd);
			return;
		}
		c->followers[c->n_followers++] = fd;
		return;
	}
	write_all(fd, "{\"error\":\"unknown request\"}\n", 28);
	close(fd);
}

void ctl__on_event(void *ctx, const char *kind, json_t *ev, const char *line, size_t len)
{
	struct ctl *c = ctx;
	char *with_nl = c->history[c->hist_next];
	size_t i;

	(void)kind;
	(void)ev;
	if (c->hist_cap[c->hist_next] < len + 2) {
		size_t cap = len + 2 > 1024 ? len + 2 + 256 : 1024;

		free(with_nl);
		c->history[c->hist_next] = with_nl = malloc(cap);
		c->hist_cap[c->hist_next] = with_nl ? cap : 0;
		if (!with_nl) {
			/* Out of memory: when full, the lost line was the
			 * oldest one (history starts after it). */
			c->hist_n -= c->hist_n == CTL_HISTORY;
			return;
		}
	}
	memcpy(with_nl, line, len);
	with_nl[len] = '\n';
	with_nl[len + 1] = '\0';
	for (i = 0; i < c->n_followers;) {
		if (write_all(c->followers[i], with_nl, len + 1)) {
			i++;
			continue;
		}
		close(c->followers[i]);
		c->followers[i] = c->followers[--c->n_followers];
		c->dropped++;
	}
	c->hist_next = (c->hist_next + 1) % CTL_HISTORY;
	if (c->hist_n < CTL_HISTORY)
		c->hist_n++;
}

int ctl__client(const char *state_dir, const char *cmd, bool follow)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char buf[8192], req[32];
	ssize_t n;
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
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
		close(fd);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	close(fd);
	return 0;
}
