/* SPDX-License-Identifier: GPL-2.0 */
/*
 * BPF ring buffer consumer that maps each ring's data once.
 *
 * libbpf's ring_buffer maps the data area twice, back to back, so a record
 * that wraps around the end reads as one piece; the kernel fills every
 * page of that mapping when it is made, so each ring costs twice its size
 * in resident memory for the life of the daemon (20 MiB of the agent's
 * 32 MiB at start). Here the data area is mapped once and the rare record
 * that wraps is copied into a buffer. Records are consumed in the order
 * the rings were added, each ring up to its producer position.
 */
#ifndef MCPW_RING_H
#define MCPW_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int (*ring_fn)(void *ctx, void *data, size_t size);

struct rings;

struct rings *rings__new(void);
/* Adds a BPF_MAP_TYPE_RINGBUF map. 0 or -errno. */
int rings__add(struct rings *r, int map_fd, ring_fn fn, void *ctx);
/* An epoll fd, readable when some ring has records. */
int rings__epoll_fd(const struct rings *r);
/*
 * Hands the records each ring had committed when its turn came to its
 * function, in ring order (what arrives meanwhile waits for the next
 * call). Stops early when a function returns < 0 (that value is
 * returned); otherwise returns the number of records.
 */
int rings__consume(struct rings *r);
/* Whether the last rings__consume() stopped at a record still being
 * written (it and those after it wait for the next call; whoever waits on
 * the epoll fd sees them, level-triggered, once written). */
bool rings__stalled(const struct rings *r);
/* Bytes of ring memory mapped into the process. */
size_t rings__mapped_bytes(const struct rings *r);
void rings__free(struct rings *r);

#endif
