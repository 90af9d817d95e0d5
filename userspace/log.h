/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One logging module for the daemon (xdp-tools lib/util/logging.c style).
 * Operator-facing messages go to stderr with a level; events never go
 * through here (see output.h). libbpf's own messages are routed through
 * log__libbpf_print() and demoted one level.
 */
#ifndef MCPW_LOG_H
#define MCPW_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

void log__set_level(enum log_level level);
enum log_level log__level(void);
/* Parses "error", "warn", "info", "debug"; returns 0 or -EINVAL. */
int log__parse_level(const char *name, enum log_level *level);
void log__msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log__vmsg(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* The agent's run: stderr, when a pipe or a socket, is written without
 * blocking from now on (messages it cannot take are dropped, counted). */
void log__nonblocking(void);
/* Installs the libbpf print callback. */
void log__route_libbpf(void);

#define pr_err(...)   log__msg(LOG_ERROR, __VA_ARGS__)
#define pr_warn(...)  log__msg(LOG_WARN, __VA_ARGS__)
#define pr_info(...)  log__msg(LOG_INFO, __VA_ARGS__)
#define pr_debug(...) log__msg(LOG_DEBUG, __VA_ARGS__)

#endif
