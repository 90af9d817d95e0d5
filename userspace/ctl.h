/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The control socket: a root-only (0600) Unix socket in --state-dir that
 * `mcpwarden status` and `mcpwarden events [--follow]` talk to while the
 * agent runs in the background. One request line per connection:
 *   "status"        -> one JSON document, then close
 *   "events"        -> the recent events (JSON Lines), then close
 *   "events follow" -> the recent events, then every new one
 * Never waited on: a client is written to as its socket takes bytes. A
 * reader that falls more than CTL_HISTORY events behind is disconnected
 * (counted: ctl__dropped_followers()).
 */
#ifndef MCPW_CTL_H
#define MCPW_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define CTL_SOCKET_NAME "mcpwarden.sock"
#define CTL_HISTORY 1024

struct ctl;

typedef json_t *(*ctl_status_fn)(void *ctx);

int ctl__open(const char *state_dir, ctl_status_fn status, void *ctx, struct ctl **out,
	      char *err, size_t errlen);
void ctl__close(struct ctl *c);
int ctl__fd(const struct ctl *c);
/* ctl__fd() is readable: accept clients, read requests, send events. */
void ctl__on_readable(struct ctl *c);
/* Every 100 ms or so (now_ns: CLOCK_MONOTONIC): closes clients that sent
 * no request within 2 s. */
void ctl__tick(struct ctl *c, uint64_t now_ns);
/* Output sink: remember the event and send it to followers. */
void ctl__on_event(void *ctx, const char *kind, json_t *ev, const char *line, size_t len);
uint64_t ctl__dropped_followers(const struct ctl *c);

/* The CLI side: prints the answer to stdout. Returns an exit status. */
int ctl__client(const char *state_dir, const char *cmd, bool follow);

#endif
