// SPDX-License-Identifier: GPL-2.0
/* Leveled logging to stderr; libbpf's output demoted one level. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <bpf/libbpf.h>

#include "log.h"

static enum log_level cur_level = LOG_INFO;

static const char *const level_names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARN] = "warn",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

void log__set_level(enum log_level level)
{
	cur_level = level;
}

enum log_level log__level(void)
{
	return cur_level;
}

int log__parse_level(const char *name, enum log_level *level)
{
	unsigned int i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * stderr read through a pipe or a socket (a container runtime, journald)
 * is written without blocking, as the events are: a reader that stops must
 * not stop the agent's loop on a log line. A message it cannot take now is
 * dropped, and the next one that goes through says how many were.
 */
static int log_fd = STDERR_FILENO;
static bool log_sock;
static unsigned long log_dropped;

void log__nonblocking(void)
{
	struct stat st;
	int fd;

	if (fstat(STDERR_FILENO, &st))
		return;
	if (S_ISSOCK(st.st_mode)) {
		log_sock = true;
	} else if (S_ISFIFO(st.st_mode)) {
		/* An open file description of our own: O_NONBLOCK on fd 2
		 * itself would change it for every process sharing it. */
		fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0)
			log_fd = fd;
	}
}

/* One write: a line shorter than PIPE_BUF goes whole or not at all. */
static bool log_write(const char *buf, size_t len)
{
	ssize_t w;

	do
		w = log_sock ? send(log_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) :
			       write(log_fd, buf, len);
	while (w < 0 && errno == EINTR);
	return w == (ssize_t)len;
}

/* "mcpwarden: TAG: message", one line, one write. */
static void log_line(const char *tag, const char *fmt, va_list ap)
{
	char msg[2048], line[2200];
	unsigned long dropped;
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	/* Strip one trailing newline so every message is exactly one line. */
	if (n > 0 && (size_t)n < sizeof(msg) && msg[n - 1] == '\n')
		msg[n - 1] = '\0';
	dropped = __atomic_exchange_n(&log_dropped, 0, __ATOMIC_RELAXED);
	if (dropped) {
		n = snprintf(line, sizeof(line), "mcpwarden: warn: %lu earlier messages were "
			     "dropped: stderr's reader was not keeping up\n", dropped);
		if (!log_write(line, (size_t)n)) {
			__atomic_add_fetch(&log_dropped, dropped + 1, __ATOMIC_RELAXED);
			return;
		}
	}
	n = snprintf(line, sizeof(line), "mcpwarden: %s: %s\n", tag, msg);
	if (n > 0 && !log_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1))
		__atomic_add_fetch(&log_dropped, 1, __ATOMIC_RELAXED);
}

void log__vmsg(enum log_level level, const char *fmt, va_list ap)
{
	if (level <= cur_level)
		log_line(level_names[level], fmt, ap);
}

void log__msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log__vmsg(level, fmt, ap);
	va_end(ap);
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum log_level ours;

	switch (level) {
	case LIBBPF_WARN:
		ours = LOG_INFO;
		break;
	case LIBBPF_INFO:
		ours = LOG_DEBUG;
		break;
	default:
		/* libbpf's debug output (verifier logs) only at debug. */
		if (cur_level < LOG_DEBUG)
			return 0;
		ours = LOG_DEBUG;
		break;
	}
	if (ours > cur_level)
		return 0;
	if (ours == LOG_DEBUG) {
		/* Verifier logs run to many lines: whole, for whoever asked
		 * for debug output. */
		fprintf(stderr, "mcpwarden: libbpf: ");
		return vfprintf(stderr, fmt, ap);
	}
	log_line("libbpf", fmt, ap);
	return 0;
}

void log__route_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
