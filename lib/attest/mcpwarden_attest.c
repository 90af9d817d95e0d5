// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * mcpwarden attestation client (see mcpwarden_attest.h). One request line
 * out, one answer line back. The answer has a fixed shape written by the
 * agent, so a small bounded JSON reader here is enough and keeps the
 * library free of dependencies: it decodes strings and unsigned integers,
 * and skips anything else up to a fixed nesting depth.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "mcpwarden_attest.h"

#define MAX_DEPTH 32

/* ---- the exchange ------------------------------------------------------- */

static int connect_agent(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct timeval tv = {
		.tv_sec = MCPW_ATTEST_TIMEOUT_MS / 1000,
		.tv_usec = (MCPW_ATTEST_TIMEOUT_MS % 1000) * 1000,
	};
	int fd, err;

	if (!path)
		path = MCPW_ATTEST_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The send timeout also bounds connect() on a full backlog. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		goto fail;
	while (connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		if (errno != EINTR)
			goto fail;
	}
	return fd;
fail:
	err = errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
	close(fd);
	return err;
}

static int send_request(int fd, const char *req, size_t len, int pass_fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	bool fd_sent = pass_fd < 0;

	memset(cbuf, 0, sizeof(cbuf));
	while (len) {
		struct iovec iov = { .iov_base = (void *)req, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (!fd_sent) {
			struct cmsghdr *cm;

			mh.msg_control = cbuf;
			mh.msg_controllen = sizeof(cbuf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
		}
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		fd_sent = true;
		req += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads up to the newline; out is NUL-terminated without it. */
static int read_answer(int fd, char *out, size_t cap)
{
	size_t used = 0;

	for (;;) {
		char *nl;
		ssize_t n;

		if (used + 1 >= cap)
			return -ENOBUFS;
		n = recv(fd, out + used, cap - 1 - used, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		if (n == 0)
			break;
		nl = memchr(out + used, '\n', (size_t)n);
		used += (size_t)n;
		if (nl) {
			*nl = '\0';
			return 0;
		}
	}
	out[used] = '\0';
	/* The agent always ends its line: a bare EOF means no answer. */
	return used ? -EPROTO : -ECONNRESET;
}

static int classify(const char *json)
{
	struct mcpw_attest_result r;

	if (mcpw_attest_parse(json, &r))
		return -EPROTO;
	if (r.ok)
		return MCPW_ATTEST_OK;
	if (strcmp(r.error, "unknown connection") == 0)
		return MCPW_ATTEST_UNKNOWN;
	if (strcmp(r.error, "not permitted") == 0)
		return MCPW_ATTEST_DENIED;
	return MCPW_ATTEST_FAILED;
}

static int exchange(const char *path, const char *req, int pass_fd, char *out, size_t len)
{
	int fd, err;

	if (!out || len < 2)
		return -EINVAL;
	out[0] = '\0';
	fd = connect_agent(path);
	if (fd < 0)
		return fd;
	err = send_request(fd, req, strlen(req), pass_fd);
	/* A refused caller is answered and hung up on before the agent reads
	 * a byte, so the request may not go out: the answer still counts. */
	if (!err || err == -EPIPE || err == -ECONNRESET) {
		int ret = read_answer(fd, out, len);

		if (!ret || !err)
			err = ret;
	}
	close(fd);
	return err ? err : classify(out);
}

static int format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	int n;

	if (!sa)
		return -EINVAL;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		n = snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		n = snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		return -EAFNOSUPPORT;
	}
	return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

int mcpw_attest_who(const char *socket_path, const struct sockaddr *src,
		    const struct sockaddr *dst, char *json_out, size_t len)
{
	char s[64], d[64], req[200];
	int err;

	err = format_addr(src, s, sizeof(s));
	if (!err)
		err = format_addr(dst, d, sizeof(d));
	if (err)
		return err;
	snprintf(req, sizeof(req), "{\"op\":\"who\",\"src\":\"%s\",\"dst\":\"%s\"}\n", s, d);
	return exchange(socket_path, req, -1, json_out, len);
}

int mcpw_attest_who_fd(const char *socket_path, int accepted_fd, char *json_out, size_t len)
{
	if (accepted_fd < 0)
		return -EBADF;
	return exchange(socket_path, "{\"op\":\"who_fd\"}\n", accepted_fd, json_out, len);
}

const char *mcpw_attest_strstatus(int status)
{
	switch (status) {
	case MCPW_ATTEST_OK:
		return "ok";
	case MCPW_ATTEST_UNKNOWN:
		return "unknown connection";
	case MCPW_ATTEST_DENIED:
		return "not permitted";
	case MCPW_ATTEST_FAILED:
		return "the agent reported an error";
	default:
		return status < 0 ? strerror(-status) : "unexpected status";
	}
}

int mcpw_attest_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN];
	const char *port_s, *end;
	unsigned long port = 0;
	size_t host_len;
	bool v6;

	if (!text || !ss || !len)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	v6 = text[0] == '[';
	if (v6) {
		end = strchr(text, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		host_len = (size_t)(end - text - 1);
		port_s = end + 2;
		text++;
	} else {
		end = strrchr(text, ':');
		if (!end)
			return -EINVAL;
		host_len = (size_t)(end - text);
		port_s = end + 1;
	}
	if (host_len == 0 || host_len >= sizeof(host) || !*port_s || strlen(port_s) > 5)
		return -EINVAL;
	for (end = port_s; *end; end++) {
		if (*end < '0' || *end > '9')
			return -EINVAL;
		port = port * 10 + (unsigned long)(*end - '0');
	}
	if (port == 0 || port > 65535)
		return -EINVAL;
	memcpy(host, text, host_len);
	host[host_len] = '\0';
	if (v6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			return -EINVAL;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
			return -EINVAL;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*len = sizeof(*in);
	}
	return 0;
}

/* ---- the answer --------------------------------------------------------- */

struct reader {
	const char *p, *end;
	int *truncated;
};

static void skip_ws(struct reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static bool take(struct reader *r, char c)
{
	skip_ws(r);
	if (r->p >= r->end || *r->p != c)
		return false;
	r->p++;
	return true;
}

static bool literal(struct reader *r, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return false;
	r->p += n;
	return true;
}

static int hex4(const char *p, unsigned int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < 4; i++) {
		char c = p[i];

		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (unsigned int)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (unsigned int)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (unsigned int)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

static size_t utf8_encode(unsigned int cp, char *buf)
{
	if (cp < 0x80) {
		buf[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		buf[0] = (char)(0xc0 | (cp >> 6));
		buf[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		buf[0] = (char)(0xe0 | (cp >> 12));
		buf[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		buf[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	buf[0] = (char)(0xf0 | (cp >> 18));
	buf[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	buf[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	buf[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* \u escape at r->p (after the backslash-u); a pair for astral planes. */
static int unicode_escape(struct reader *r, unsigned int *cp)
{
	unsigned int lo;

	if (r->end - r->p < 4 || hex4(r->p, cp))
		return -1;
	r->p += 4;
	if (*cp >= 0xd800 && *cp < 0xdc00 && r->end - r->p >= 6 && r->p[0] == '\\' &&
	    r->p[1] == 'u' && hex4(r->p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
		r->p += 6;
		*cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
	} else if (*cp >= 0xd800 && *cp < 0xe000) {
		*cp = 0xfffd;	/* lone surrogate */
	}
	return *cp == 0 ? -1 : 0;	/* NUL would cut a C string short */
}

/* A JSON string into out (cap bytes with the NUL; out NULL to skip). A
 * string that does not fit is cut at a whole character and flagged. */
static int read_string(struct reader *r, char *out, size_t cap)
{
	size_t used = 0;
	bool cut = false;

	if (!take(r, '"'))
		return -1;
	while (r->p < r->end) {
		char enc[4];
		size_t n = 1;
		unsigned char c = (unsigned char)*r->p++;

		if (c == '"') {
			if (out && cap)
				out[used] = '\0';
			if (cut && r->truncated)
				*r->truncated = 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		enc[0] = (char)c;
		if (c == '\\') {
			unsigned int cp;

			if (r->p >= r->end)
				return -1;
			c = (unsigned char)*r->p++;
			switch (c) {
			case '"': case '\\': case '/': enc[0] = (char)c; break;
			case 'b': enc[0] = '\b'; break;
			case 'f': enc[0] = '\f'; break;
			case 'n': enc[0] = '\n'; break;
			case 'r': enc[0] = '\r'; break;
			case 't': enc[0] = '\t'; break;
			case 'u':
				if (unicode_escape(r, &cp))
					return -1;
				n = utf8_encode(cp, enc);
				break;
			default:
				return -1;
			}
		} else if (c >= 0x80) {
			/* Raw UTF-8: copy the whole sequence so a cut never splits it. */
			while (n < 4 && r->p < r->end && ((unsigned char)*r->p & 0xc0) == 0x80)
				enc[n++] = *r->p++;
		}
		if (!out || cut)
			continue;
		if (used + n + 1 > cap) {
			cut = true;
			continue;
		}
		memcpy(out + used, enc, n);
		used += n;
	}
	return -1;
}

static int read_u64(struct reader *r, uint64_t *v)
{
	uint64_t x = 0;
	const char *start;

	skip_ws(r);
	start = r->p;
	while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
		unsigned int d = (unsigned int)(*r->p - '0');

		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
		r->p++;
	}
	if (r->p == start || (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E')))
		return -1;
	*v = x;
	return 0;
}

static int skip_value(struct reader *r, int depth);

/* Calls member() for each key of an object; member reads the value. */
static int each_member(struct reader *r, int depth,
		       int (*member)(struct reader *r, const char *key, void *arg, int depth),
		       void *arg)
{
	char key[32];
	int *saved = r->truncated;

	if (depth > MAX_DEPTH || !take(r, '{'))
		return -1;
	if (take(r, '}'))
		return 0;
	do {
		int dummy = 0, ret;

		/* A key too long for key[] is no key we read: skip its value. */
		r->truncated = &dummy;
		ret = read_string(r, key, sizeof(key));
		r->truncated = saved;
		if (ret || !take(r, ':'))
			return -1;
		ret = dummy ? skip_value(r, depth + 1) : member(r, key, arg, depth + 1);
		if (ret)
			return -1;
	} while (take(r, ','));
	return take(r, '}') ? 0 : -1;
}

static int skip_member(struct reader *r, const char *key, void *arg, int depth)
{
	(void)key;
	(void)arg;
	return skip_value(r, depth);
}

static int skip_value(struct reader *r, int depth)
{
	skip_ws(r);
	if (depth > MAX_DEPTH || r->p >= r->end)
		return -1;
	switch (*r->p) {
	case '{':
		return each_member(r, depth, skip_member, NULL);
	case '[':
		r->p++;
		if (take(r, ']'))
			return 0;
		do {
			if (skip_value(r, depth + 1))
				return -1;
		} while (take(r, ','));
		return take(r, ']') ? 0 : -1;
	case '"':
		return read_string(r, NULL, 0);
	case 't':
		return literal(r, "true") ? 0 : -1;
	case 'f':
		return literal(r, "false") ? 0 : -1;
	case 'n':
		return literal(r, "null") ? 0 : -1;
	default:
		if (*r->p != '-' && (*r->p < '0' || *r->p > '9'))
			return -1;
		r->p++;
		while (r->p < r->end && strchr("0123456789+-.eE", *r->p))
			r->p++;
		return 0;
	}
}

static int read_bool(struct reader *r, int *v)
{
	skip_ws(r);
	if (literal(r, "true"))
		*v = 1;
	else if (literal(r, "false"))
		*v = 0;
	else
		return -1;
	return 0;
}

/* Numbers the agent writes are unsigned; any other value leaves 0. */
static int read_u32_or_skip(struct reader *r, uint32_t *v, int depth)
{
	uint64_t x;
	const char *at = r->p;

	if (read_u64(r, &x) == 0 && x <= UINT32_MAX) {
		*v = (uint32_t)x;
		return 0;
	}
	r->p = at;
	return skip_value(r, depth);
}

static int pod_member(struct reader *r, const char *key, void *arg, int depth)
{
	struct mcpw_attest_result *res = arg;

	if (strcmp(key, "namespace") == 0)
		return read_string(r, res->pod_namespace, sizeof(res->pod_namespace));
	if (strcmp(key, "name") == 0)
		return read_string(r, res->pod_name, sizeof(res->pod_name));
	if (strcmp(key, "uid") == 0)
		return read_string(r, res->pod_uid, sizeof(res->pod_uid));
	return skip_value(r, depth);
}

static int workload_member(struct reader *r, const char *key, void *arg, int depth)
{
	struct mcpw_attest_result *res = arg;

	if (strcmp(key, "attributed") == 0)
		return read_bool(r, &res->attributed);
	if (strcmp(key, "pid") == 0)
		return read_u32_or_skip(r, &res->pid, depth);
	if (strcmp(key, "uid") == 0)
		return read_u32_or_skip(r, &res->uid, depth);
	if (strcmp(key, "gid") == 0)
		return read_u32_or_skip(r, &res->gid, depth);
	if (strcmp(key, "cgroup_id") == 0) {
		const char *at = r->p;

		if (read_u64(r, &res->cgroup_id) == 0)
			return 0;
		r->p = at;
		return skip_value(r, depth);
	}
	if (strcmp(key, "exe") == 0)
		return read_string(r, res->exe, sizeof(res->exe));
	if (strcmp(key, "cgroup") == 0)
		return read_string(r, res->cgroup, sizeof(res->cgroup));
	if (strcmp(key, "container_id") == 0)
		return read_string(r, res->container_id, sizeof(res->container_id));
	if (strcmp(key, "pod") == 0)
		return each_member(r, depth, pod_member, res);
	return skip_value(r, depth);
}

struct top {
	struct mcpw_attest_result *res;
	bool seen_ok;
};

static int top_member(struct reader *r, const char *key, void *arg, int depth)
{
	struct top *t = arg;
	struct mcpw_attest_result *res = t->res;

	if (strcmp(key, "ok") == 0) {
		t->seen_ok = true;
		return read_bool(r, &res->ok);
	}
	if (strcmp(key, "error") == 0)
		return read_string(r, res->error, sizeof(res->error));
	if (strcmp(key, "source") == 0)
		return read_string(r, res->source, sizeof(res->source));
	if (strcmp(key, "workload") == 0)
		return each_member(r, depth, workload_member, res);
	return skip_value(r, depth);
}

int mcpw_attest_parse(const char *json, struct mcpw_attest_result *res)
{
	struct top t = { .res = res };
	struct reader r;

	if (!json || !res)
		return -EINVAL;
	memset(res, 0, sizeof(*res));
	r.p = json;
	r.end = json + strlen(json);
	r.truncated = &res->truncated;
	if (each_member(&r, 0, top_member, &t))
		goto bad;
	skip_ws(&r);
	if (r.p != r.end || !t.seen_ok)
		goto bad;
	return 0;
bad:
	memset(res, 0, sizeof(*res));
	return -EPROTO;
}
