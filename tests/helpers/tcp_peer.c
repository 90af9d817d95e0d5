// SPDX-License-Identifier: GPL-2.0
/*
 * A TCP peer for end-to-end tests, exact to the byte.
 *
 *   tcp_peer server ADDR PORT DIR [BACKLOG [ACCEPT_AFTER]]
 *       accept; each connection's bytes are
 *       appended to DIR/conn-N.bin as read; every complete HTTP request
 *       (head + Content-Length body) gets a small 200 JSON-RPC reply and a
 *       line in DIR/requests.log ("N <offset> <length>"). BACKLOG: listen()'s
 *       (default 128; 0 queues one connection and drops the next SYNs);
 *       ACCEPT_AFTER: accept nothing until this file exists.
 *   tcp_peer client ADDR PORT FILE [SPLIT [DELAY_MS [REPLIES]]]
 *       send FILE in SPLIT-byte writes (0: one write), DELAY_MS apart, then
 *       read until REPLIES HTTP responses (default 1) or EOF/reset.
 *       Prints "replies N" or "reset"/"closed"; exit 0 all replies, 3 reset
 *       or closed early, 1 other errors.
 *   tcp_peer quick ADDR PORT        connect and exit at once.
 *   tcp_peer hold ADDR PORT FILE SECONDS
 *       connect, sleep SECONDS (while the test starts the agent), then
 *       send FILE and read one reply (a connection older than the agent).
 *   tcp_peer overlap ADDR PORT FILE OVERLAP TAIL [FIRST]
 *       the server sees bytes it already received again, in front of new
 *       ones, as after a retransmission TCP merged with later data (IPv4
 *       loopback): FIRST (when given) is sent and answered first; then
 *       FILE up to OVERLAP + TAIL bytes before its end; then a raw segment
 *       carrying the last OVERLAP bytes sent and the next OVERLAP ones;
 *       then the rest through the socket, which starts again at those new
 *       bytes. Reads one reply for FILE: prints "replies 1", or "timeout"
 *       after 8 s (exit 4).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/time.h>

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

static int server(const char *addr, const char *port, const char *dir, int backlog,
		  const char *accept_after)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int lfd, one = 1, n = 0;

	signal(SIGCHLD, SIG_IGN);
	if (resolve(addr, port, &ss, &len))
		return 1;
	lfd = socket(ss.ss_family, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, len) || listen(lfd, backlog)) {
		perror("listen");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	while (accept_after && access(accept_after, F_OK))
		usleep(20 * 1000);
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
		/* Only where SO_RCVTIMEO is set (overlap): a stalled request. */
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			printf("timeout after %d replies\n", got);
			free(acc);
			return 4;
		}
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

static char *slurp(const char *file, size_t *len)
{
	struct stat st;
	char *data = NULL;
	int in = open(file, O_RDONLY);

	if (in >= 0 && fstat(in, &st) == 0 && (data = malloc((size_t)st.st_size + 1)) &&
	    read(in, data, (size_t)st.st_size) == st.st_size) {
		*len = (size_t)st.st_size;
	} else {
		free(data);
		data = NULL;
	}
	if (in >= 0)
		close(in);
	return data;
}

static uint32_t csum_add(uint32_t sum, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (; n > 1; n -= 2, b += 2)
		sum += (uint32_t)b[0] << 8 | b[1];
	if (n)
		sum += (uint32_t)b[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/*
 * The last TCP header the socket `fd` sent, seen on a raw socket opened
 * before it connected: its copy (options included) in th, its length, and
 * the sequence number after its payload. -1 if none was seen.
 */
static int last_sent(int raw, int fd, uint8_t *th, size_t *th_len, uint32_t *seq_end)
{
	struct sockaddr_in me, peer;
	socklen_t sl = sizeof(me);
	uint8_t pkt[65536];
	bool seen = false;
	ssize_t r;

	if (getsockname(fd, (struct sockaddr *)&me, &sl))
		return -1;
	sl = sizeof(peer);
	if (getpeername(fd, (struct sockaddr *)&peer, &sl))
		return -1;
	while ((r = recv(raw, pkt, sizeof(pkt), MSG_DONTWAIT)) > 0) {
		const struct iphdr *ip = (const struct iphdr *)pkt;
		const struct tcphdr *t;
		size_t ihl = (size_t)ip->ihl * 4, tl;
		uint32_t end;

		if ((size_t)r < ihl + sizeof(*t))
			continue;
		t = (const struct tcphdr *)(pkt + ihl);
		tl = (size_t)t->doff * 4;
		if (t->source != me.sin_port || t->dest != peer.sin_port ||
		    ip->saddr != me.sin_addr.s_addr || (size_t)r < ihl + tl || tl > 60)
			continue;
		end = ntohl(t->seq) + (uint32_t)((size_t)ntohs(ip->tot_len) - ihl - tl) +
		      (t->syn ? 1 : 0);
		if (seen && (int32_t)(end - *seq_end) < 0)
			continue;
		memcpy(th, t, tl);
		*th_len = tl;
		*seq_end = end;
		seen = true;
	}
	return seen ? 0 : -1;
}

static int overlap(const char *addr, const char *port, const char *file, size_t ov, size_t tail,
		   const char *first)
{
	struct timeval tmo = { .tv_sec = 8 };
	struct sockaddr_in dst = { .sin_family = AF_INET };
	uint8_t th[60], *pkt;
	size_t len, th_len, cut;
	uint32_t seq_end, sum;
	struct tcphdr *t;
	char *data;
	int raw, fd, ret;

	raw = socket(AF_INET, SOCK_RAW, IPPROTO_TCP);
	data = slurp(file, &len);
	if (raw < 0 || !data || len < 2 * ov + tail || ov == 0) {
		printf("setup failed: %s\n", raw < 0 ? strerror(errno) : "file");
		return 1;
	}
	fd = dial(addr, port);
	if (fd < 0) {
		printf("connect failed: %s\n", strerror(errno));
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo));
	if (first) {
		if (send_file(fd, first, 0, 0))
			return 3;
		ret = read_replies(fd, 1);
		if (ret)
			return ret;
	}
	cut = len - ov - tail;
	if (write(fd, data, cut) != (ssize_t)cut) {
		printf("short write\n");
		return 1;
	}
	usleep(200 * 1000);	/* sent, acknowledged, shown to the server's socket */
	if (last_sent(raw, fd, th, &th_len, &seq_end)) {
		printf("did not see the connection's segments\n");
		return 1;
	}
	pkt = malloc(th_len + 2 * ov);
	if (!pkt)
		return 1;
	memcpy(pkt, th, th_len);
	memcpy(pkt + th_len, data + cut - ov, 2 * ov);
	t = (struct tcphdr *)pkt;
	t->seq = htonl(seq_end - (uint32_t)ov);
	t->ack = 1;
	t->psh = 1;
	t->syn = t->fin = t->rst = 0;
	t->check = 0;
	inet_pton(AF_INET, addr, &dst.sin_addr);
	/* Pseudo-header: both addresses are the loopback one. */
	sum = csum_add(0, &dst.sin_addr, 4);
	sum = csum_add(sum, &dst.sin_addr, 4);
	sum += IPPROTO_TCP + (uint32_t)(th_len + 2 * ov);
	sum = csum_add(sum, pkt, th_len + 2 * ov);
	t->check = csum_fold(sum);
	if (sendto(raw, pkt, th_len + 2 * ov, 0, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
		printf("raw send failed: %s\n", strerror(errno));
		return 1;
	}
	free(pkt);
	usleep(200 * 1000);
	/* TCP sends these from `cut` on: the OVERLAP bytes the raw segment
	 * already delivered, and the TAIL after them. */
	if (write(fd, data + cut, len - cut) != (ssize_t)(len - cut)) {
		printf("short write\n");
		return 1;
	}
	free(data);
	return read_replies(fd, 1);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 5 && strcmp(argv[1], "server") == 0)
		return server(argv[2], argv[3], argv[4], argc > 5 ? atoi(argv[5]) : 128,
			      argc > 6 ? argv[6] : NULL);
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
	if (argc >= 7 && strcmp(argv[1], "overlap") == 0)
		return overlap(argv[2], argv[3], argv[4], strtoul(argv[5], NULL, 10),
			       strtoul(argv[6], NULL, 10), argc > 7 ? argv[7] : NULL);
	fprintf(stderr, "usage: see the head of tcp_peer.c\n");
	return 2;
}
