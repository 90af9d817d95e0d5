/* SPDX-License-Identifier: GPL-2.0 */
/*
 * stdio MCP servers: a client starts them as a child and speaks JSON-RPC
 * over pipes, so the real identity is who launched them. The kernel stops
 * every process whose executable is a stdio server's (see process.bpf.c)
 * before its first instruction; here the exec is matched against the
 * policy's stdio servers (exe and args globs) and its ancestors against
 * the server's `launchers`. Allowed: SIGCONT. Otherwise `stdio_parent`:
 * SIGKILL in enforce mode (the server never ran a line of its own code),
 * SIGCONT and an alert in monitor mode. The first JSON-RPC messages the
 * server then reads from stdin are read too (bounded): the `initialize`
 * clientInfo must name a client whose workloads include the launcher.
 */
#ifndef MCPW_STDIO_GUARD_H
#define MCPW_STDIO_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcpwarden/events.h"

struct kernel;
struct resolver;
struct proctab;
struct output;
struct policy;

struct hmap;

struct stdio_ctx {
	struct kernel *kernel;
	struct resolver *resolver;
	struct proctab *procs;
	struct output *out;
	const struct policy *policy;
	bool enforce;
	bool stdin_ok;		/* the read(2) tracepoints are attached */
	struct hmap *watched;	/* server tgid -> struct stdio_watch */
	uint64_t killed, allowed, alerted;
};

/* Resolves the stdio servers' exe globs to files and loads them into the
 * kernel. Returns how many files, or -errno. */
int stdio__sync(struct stdio_ctx *s);
/* An exec record: judges it when the kernel stopped the process. */
void stdio__on_exec(struct stdio_ctx *s, const struct mcpw_exec_event *e);
/* Judges stopped processes whose exec record never arrived, and forgets
 * watched servers that are gone. */
void stdio__sweep(struct stdio_ctx *s);
/* Bytes a watched server read from its stdin: the launcher's clientInfo
 * is held against the launcher's workload (a launcher claiming to be
 * another client is `mismatch`). */
void stdio__on_stdin(struct stdio_ctx *s, const struct mcpw_data_event *e);
void stdio__free(struct stdio_ctx *s);

#endif
