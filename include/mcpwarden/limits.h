/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * Limits shared by the kernel side and the daemon. Every one of them is a
 * bound a peer could otherwise push on; crossing one is counted and
 * reported (see enum mcpw_counter in events.h), never silent.
 * Mirrored in docs/limits.md.
 */
#ifndef MCPW_LIMITS_H
#define MCPW_LIMITS_H

#define MCPW_COMM_LEN		16
#define MCPW_PATH_LEN		256	/* exec filename bytes captured */
#define MCPW_ARGS_LEN		512	/* exec argv bytes captured */
#define MCPW_CHUNK_LEN		4096	/* payload bytes per data record */
#define MCPW_MAX_SEG_CHUNKS	512	/* segments above 2 MiB (the held limit) are refused */

#define MCPW_MAX_CONNS		65536	/* protected connections tracked (default of
					 * --max-connections) */
#define MCPW_MIN_CONNS		16
#define MCPW_MAX_CONNS_LIMIT	(1u << 20)
#define MCPW_MAX_OVERFLOW	4096	/* connections over capacity awaiting their end
					 * (at most --max-connections) */
#define MCPW_MAX_TUPLES		65536	/* client attributions awaiting accept */
#define MCPW_MAX_PORTS		256	/* protected ports */
#define MCPW_PORT_WORDS		1024	/* 65536 ports, a bit each (port_bits) */

#define MCPW_EVENTS_RING_BYTES	(2u << 20)
#define MCPW_DATA_RING_BYTES	(8u << 20)

/* Held-but-unreleased bytes per connection (header block + body limit +
 * pipelining slack); more is judged "malformed: over limit". */
#define MCPW_DEFAULT_MAX_HELD	(2u << 20)

#endif
