/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small chained hash map with opaque values and one kind of key per map:
 * u64, strings (copied), or byte strings of one fixed length that the
 * caller keeps alive while they are in the map (usually inside the value,
 * so a node costs no second copy). Bounds are the caller's business: every
 * table built on this has an explicit limit checked before insertion.
 */
#ifndef MCPW_HMAP_H
#define MCPW_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hmap;

struct hmap_iter {
	struct hmap *map;
	size_t bucket;
	void *node;
	void *next;
};

struct hmap *hmap__new(bool string_keys);
/* Keys of key_len bytes, borrowed (see above). */
struct hmap *hmap__new_fixed(size_t key_len);
/* Frees the map; values are the caller's (free them first). */
void hmap__free(struct hmap *m);
size_t hmap__size(const struct hmap *m);

void *hmap__get(const struct hmap *m, uint64_t key);
/* Inserts or replaces; returns 0 or -ENOMEM. */
int hmap__put(struct hmap *m, uint64_t key, void *val);
/* Removes; returns the value or NULL. */
void *hmap__del(struct hmap *m, uint64_t key);

void *hmap__sget(const struct hmap *m, const char *key);
int hmap__sput(struct hmap *m, const char *key, void *val);
void *hmap__sdel(struct hmap *m, const char *key);

void *hmap__bget(const struct hmap *m, const void *key);
int hmap__bput(struct hmap *m, const void *key, void *val);
void *hmap__bdel(struct hmap *m, const void *key);

/* Iteration that tolerates deleting the current entry. */
void hmap__iter_init(struct hmap *m, struct hmap_iter *it);
/* key: u64 keys (0 for the others); skey: a string or fixed key. */
bool hmap__iter_next(struct hmap_iter *it, uint64_t *key, const char **skey, void **val);

/* FNV-1a of n bytes, mixed: for callers that index their own tables. */
uint64_t hmap__hash_bytes(const void *p, size_t n);

#endif
