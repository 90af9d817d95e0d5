/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Event sinks behind `--output SPEC` (repeatable): JSON Lines in the native
 * schema (PRODUCT.md "Events"), Falco-compatible JSON (for Falcosidekick),
 * OCSF Detection Findings, to stdout or a rotated file, or any of the three
 * as RFC 5424 syslog over TCP.
 *
 * Each sink is an output_sink_fn: the event is formatted in the caller's
 * thread (cheap), the finished line goes into a bounded queue, and one
 * writer thread per sink writes it out. A full queue drops the line and
 * counts it: a slow disk or a dead syslog peer never holds a verdict.
 *
 * Spec grammar:
 *
 *   SPEC    = FORMAT ":" TARGET [ "?" OPTION *( "&" OPTION ) ]
 *   FORMAT  = "jsonl" | "falco" | "ocsf" | "syslog"
 *   TARGET  = "-"                       stdout (jsonl, falco, ocsf)
 *           | PATH                      appended file (jsonl, falco, ocsf)
 *           | "tcp://" HOST ":" PORT    syslog only; HOST a name, an IPv4
 *                                       address or "[" IPv6 "]"
 *   OPTION  = KEY "=" VALUE
 *
 *   key          targets  value (default)
 *   max_bytes    file     SIZE: rotate before the file would grow past it;
 *                         0 = never (100M)
 *   keep         file     rotated files kept, 0..100: FILE.1.gz (newest) ..
 *                         FILE.KEEP.gz; 0 = delete on rotation (5)
 *   format       syslog   native | falco | ocsf: the MSG part (native)
 *   app          syslog   APP-NAME, 1..48 printable ASCII (mcpwarden)
 *   facility     syslog   kern user mail daemon auth syslog lpr news uucp
 *                         cron authpriv ftp local0..local7 (local0)
 *   queue        all      lines the queue holds, 1..1048576 (8192)
 *   queue_bytes  all      SIZE the queue holds, 4K..1G (8M)
 *   kinds        all      comma list of event kinds to keep (all)
 *
 *   SIZE is a number with an optional k, m or g suffix (powers of 1024).
 *   A PATH cannot contain '?'. Examples:
 *     jsonl:-
 *     jsonl:/var/log/mcpwarden/events.jsonl?max_bytes=10485760&keep=5
 *     falco:-?kinds=alert
 *     ocsf:/var/log/mcpwarden/findings.ocsf.jsonl
 *     syslog:tcp://127.0.0.1:6514?format=falco&app=mcpwarden&facility=local3
 *
 * The OCSF format carries alerts only (a Detection Finding is a finding);
 * other kinds are counted as skipped, as are kinds left out by `kinds`.
 *
 * Threads: sinks__add and the sink callbacks run in the caller's thread
 * (the thread that calls output__emit); the queues are the only state
 * shared with the writer threads.
 */
#ifndef MCPW_SINKS_H
#define MCPW_SINKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "output.h"

struct sink;
struct prom_buf;

struct sink_stats {
	char name[128];		/* the spec up to its options */
	const char *format;	/* "native", "falco", "ocsf" */
	const char *target;	/* "stdout", "file", "syslog" */
	uint64_t queued;	/* lines waiting now */
	uint64_t queued_bytes;
	uint64_t written;	/* lines written out */
	uint64_t dropped;	/* lines lost: queue full, or failed to write */
	uint64_t skipped;	/* events this sink does not carry */
	uint64_t rotations;	/* file: rotations done */
	uint64_t errors;	/* open, write, rotate, compress or connect failures */
	uint64_t connects;	/* syslog: connections made */
	bool connected;		/* syslog: a connection is up */
};

/*
 * Parses spec, starts the sink's writer thread, registers it with
 * output__add_sink and appends it to the list at *list (NULL to start
 * one). Returns 0, or -EINVAL for a bad spec, -E2BIG when the output has
 * no room for another sink, -errno otherwise, with an operator message in
 * err. Files are opened here so a bad path fails at startup.
 */
int sinks__add(struct output *o, const char *spec, struct sink **list, char *err,
	       size_t errlen);

/* Fills up to max entries, in --output order; returns the number of sinks. */
size_t sinks__stats(const struct sink *list, struct sink_stats *out, size_t max);

/* Adds every sink's counters to a Prometheus body (mcpwarden_sink_*). */
void sinks__collect(const struct sink *list, struct prom_buf *b);

/*
 * Flushes and frees every sink in the list, waiting at most timeout_ms in
 * all for the queues to drain; lines still queued then are dropped. Call
 * after the last output__emit: the output keeps calling registered sinks.
 */
void sinks__free_all(struct sink *list, unsigned int timeout_ms);

#endif
