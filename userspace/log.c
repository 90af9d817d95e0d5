// SPDX-License-Identifier: GPL-2.0
/* Leveled logging to stderr; libbpf's output demoted one level. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
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

void log__vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	if (level > cur_level)
		return;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	/* Strip one trailing newline so every message is exactly one line. */
	if (n > 0 && (size_t)n < sizeof(line) && line[n - 1] == '\n')
		line[n - 1] = '\0';
	fprintf(stderr, "mcpwarden: %s: %s\n", level_names[level], line);
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
	fprintf(stderr, "mcpwarden: libbpf: ");
	return vfprintf(stderr, fmt, ap);
}

void log__route_libbpf(void)
{
	libbpf_set_print(libbpf_print);
}
