// SPDX-License-Identifier: GPL-2.0
/*
 * A TCP peer for end-to-end tests, exact to the byte.
 *
 *   tcp_peer server ADDR PORT DIR   accept; each connection's bytes are
 *       appended to DIR/conn-N.bin as read; every complete HTTP request
 *       (head + Content-Length body) gets a small 200 JSON-RPC reply and a
 *       line in DIR/requests.log ("N <offset> <length>").
 *   tcp_peer client ADDR PORT FILE [SPLIT [DELAY_MS [REPLIES]]]
 *       send FILE in SPLIT-byte writes (0: one write), DELAY_MS apart, then
 *       read until REPLIES HTTP responses (default 1) or EOF/reset.
 *       Prints "replies N" or "reset"/"closed"; exit 0 all replies, 3 reset
 *       or closed early, 1 other errors.
 *   tcp_peer quick ADDR PORT        connect and exit at once.
 *   tcp_peer hold ADDR PORT FILE SECONDS
 *       connect, sleep SECONDS (while the test starts the agent), then
 *       send FILE and read one reply (a connection older than the agent).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/tcp.h>

static int resolve(const char *addr, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST }, *res;

	if (getaddrinfo(addr, port, &hints, &res))
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int dial(const char *addr, const char *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	if (resolve(addr, port, &ss, &len))
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len))
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Length of the complete HTTP request at buf, or 0 if incomplete. */
static size_t request_len(const char *buf, size_t len)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	const char *cl;
	size_t head, body = 0;

	if (!end)
		return 0;
	head = (size_t)(end - buf) + 4;
	cl = memmem(buf, head, "\r\ncontent-length:", 17);
	if (!cl)
		cl = memmem(buf, head, "\r\nContent-Length:", 17);
	if (cl)
		body = strtoul(cl + 17, NULL, 10);
	return len >= head + body ? head + body : 0;
}

static void serve(int fd, const char *dir, int n)
{
	static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				    "Content-Length: 36\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
	char path[512], buf[65536];
	char *acc = NULL;
	size_t acc_len = 0, consumed_total = 0;
	FILE *log;
	int out;
	ssize_t r;

	snprintf(path, sizeof(path), "%s/conn-%d.bin", dir, n);
	out = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	snprintf(path, sizeof(path), "%s/requests.log", dir);
	/* Wait in poll(), as event-loop servers do: a thread blocked inside
	 * recv() when the agent adopts a pre-existing connection into its
	 * SOCKHASH would not see bytes queued there until it returns. */
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		size_t rl;

		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			break;
		r = read(fd, buf, sizeof(buf));
		/* A socket whose bytes the agent holds can be woken with nothing
		 * to read yet: EAGAIN even on a blocking socket. Event-loop
		 * servers shrug it off; so does this one. */
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			fprintf(stderr, "spurious wakeup (%s)\n", strerror(errno));
			continue;
		}
		if (r <= 0)
			break;

		if (write(out, buf, (size_t)r) != r)
			break;
		acc = realloc(acc, acc_len + (size_t)r);
		memcpy(acc + acc_len, buf, (size_t)r);
		acc_len += (size_t)r;
		while ((rl = request_len(acc, acc_len))) {
			log = fopen(path, "a");
			if (log) {
				fprintf(log, "%d %zu %zu\n", n, consumed_total, rl);
				fclose(log);
			}
			consumed_total += rl;
			memmove(acc, acc + rl, acc_len - rl);
			acc_len -= rl;
			if (write(fd, reply, sizeof(reply) - 1) < 0)
				break;
		}
	}
	close(out);
	free(acc);
	close(fd);
}

static int server(const char *addr, const char *port, const char *dir)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int lfd, one = 1, n = 0;

	signal(SIGCHLD, SIG_IGN);
	if (resolve(addr, port, &ss, &len))
		return 1;
	lfd = socket(ss.ss_family, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, 128)) {
		perror("listen");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0)
			continue;
		n++;
		if (fork() == 0) {
			close(lfd);
			serve(fd, dir, n);
			_exit(0);
		}
		close(fd);
	}
}

static int read_replies(int fd, int want)
{
	char buf[65536];
	int got = 0;
	ssize_t r;
	size_t have = 0;
	char *acc = NULL;

	while (got < want) {
		r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == ECONNRESET) {
			printf("reset after %d replies\n", got);
			free(acc);
			return 3;
		}
		if (r <= 0) {
			printf("closed after %d replies\n", got);
			free(acc);
			return 3;
		}
		acc = realloc(acc, have + (size_t)r + 1);
		memcpy(acc + have, buf, (size_t)r);
		have += (size_t)r;
		acc[have] = '\0';
		got = 0;
		for (char *p = acc; (p = strstr(p, "HTTP/1.1 ")); p += 9)
			got++;
	}
	printf("replies %d\n", got);
	free(acc);
	return 0;
}

static int send_file(int fd, const char *file, size_t split, int delay_ms)
{
	struct stat st;
	char *data;
	int in = open(file, O_RDONLY);
	size_t off = 0;

	if (in < 0 || fstat(in, &st))
		return -1;
	data = malloc((size_t)st.st_size + 1);
	if (!data || read(in, data, (size_t)st.st_size) != st.st_size)
		return -1;
	close(in);
	while (off < (size_t)st.st_size) {
		size_t n = split ? split : (size_t)st.st_size;
		ssize_t w;

		if (n > (size_t)st.st_size - off)
			n = (size_t)st.st_size - off;
		w = write(fd, data + off, n);
		if (w < 0) {
			printf("%s during send\n", errno == EPIPE || errno == ECONNRESET ? "reset" : strerror(errno));
			free(data);
			return -2;
		}
		off += (size_t)w;
		if (delay_ms && off < (size_t)st.st_size)
			usleep((useconds_t)delay_ms * 1000);
	}
	free(data);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 5 && strcmp(argv[1], "server") == 0)
		return server(argv[2], argv[3], argv[4]);
	if (argc >= 4 && strcmp(argv[1], "quick") == 0) {
		int fd = dial(argv[2], argv[3]);

		return fd < 0 ? 1 : 0;
	}
	if (argc >= 5 && strcmp(argv[1], "client") == 0) {
		int fd = dial(argv[2], argv[3]), ret;

		if (fd < 0) {
			printf("connect failed: %s\n", strerror(errno));
			return 1;
		}
		ret = send_file(fd, argv[4], argc > 5 ? strtoul(argv[5], NULL, 10) : 0,
				argc > 6 ? atoi(argv[6]) : 0);
		if (ret == -2)
			return 3;
		if (ret)
			return 1;
		return read_replies(fd, argc > 7 ? atoi(argv[7]) : 1);
	}
	if (argc >= 6 && strcmp(argv[1], "hold") == 0) {
		int fd = dial(argv[2], argv[3]);

		if (fd < 0)
			return 1;
		printf("connected\n");
		sleep((unsigned int)atoi(argv[5]));
		if (send_file(fd, argv[4], 0, 0))
			return 3;
		return read_replies(fd, 1);
	}
	fprintf(stderr, "usage: see the head of tcp_peer.c\n");
	return 2;
}
