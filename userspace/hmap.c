// SPDX-License-Identifier: GPL-2.0
/* Chained hash map, doubling at load factor 1. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "hmap.h"

struct hnode {
	struct hnode *next;
	uint64_t key;		/* the key, or a string or fixed key's hash */
	const char *skey;	/* string keys: owned; fixed keys: borrowed */
	void *val;
};

struct hmap {
	struct hnode **buckets;
	size_t n_buckets;
	size_t size;
	bool byte_keys;		/* keys of bytes, found by hash: strings, or fixed-length ... */
	size_t key_len;		/* ... when this is not 0 */
};

static uint64_t hash_u64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ull;
	k ^= k >> 33;
	return k;
}

/*
 * Seeded once per process: session ids and other keys come from peers,
 * and a fixed hash would let one choose keys that all land in one chain.
 */
static uint64_t hash_seed = 1469598103934665603ull;

__attribute__((constructor)) static void hash_seed_init(void)
{
	uint64_t r;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		hash_seed ^= r;
	else
		hash_seed ^= (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
}

/* Eight bytes a step: a workload key is 416 bytes and a bearer token's
 * tail 64, hashed on every request; a multiply per byte showed in perf. */
uint64_t hmap__hash_bytes(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = hash_seed ^ n, w;

	for (; n >= 8; n -= 8, b += 8) {
		memcpy(&w, b, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	if (n) {
		w = 0;
		memcpy(&w, b, n);
		h = (h ^ w) * 0x9e3779b97f4a7c15ull;
	}
	return hash_u64(h);
}

static uint64_t hash_str(const char *s)
{
	return hmap__hash_bytes(s, strlen(s));
}

static struct hmap *new_map(bool byte_keys, size_t key_len)
{
	struct hmap *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->n_buckets = 64;
	m->buckets = calloc(m->n_buckets, sizeof(*m->buckets));
	if (!m->buckets) {
		free(m);
		return NULL;
	}
	m->byte_keys = byte_keys;
	m->key_len = key_len;
	return m;
}

struct hmap *hmap__new(bool string_keys)
{
	return new_map(string_keys, 0);
}

struct hmap *hmap__new_fixed(size_t key_len)
{
	return key_len ? new_map(true, key_len) : NULL;
}

static void free_key(const struct hmap *m, struct hnode *n)
{
	if (!m->key_len)
		free((char *)n->skey);
}

void hmap__free(struct hmap *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->n_buckets; i++) {
		struct hnode *n = m->buckets[i], *next;

		for (; n; n = next) {
			next = n->next;
			free_key(m, n);
			free(n);
		}
	}
	free(m->buckets);
	free(m);
}

size_t hmap__size(const struct hmap *m)
{
	return m->size;
}

static bool same_key(const struct hmap *m, const char *a, const char *b)
{
	return m->key_len ? memcmp(a, b, m->key_len) == 0 : strcmp(a, b) == 0;
}

/* A string or fixed key is looked for by its hash (key), kept in its
 * node: only an equal hash costs a comparison. */
static struct hnode **find(const struct hmap *m, uint64_t key, const char *skey)
{
	struct hnode **pp = &m->buckets[(m->byte_keys ? key : hash_u64(key)) &
					 (m->n_buckets - 1)];

	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->key == key && (!m->byte_keys || same_key(m, (*pp)->skey, skey)))
			return pp;
	}
	return pp;
}

static void grow(struct hmap *m)
{
	size_t n = m->n_buckets * 2, i;
	struct hnode **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return;	/* keep working with longer chains */
	for (i = 0; i < m->n_buckets; i++) {
		struct hnode *node = m->buckets[i], *next;

		for (; node; node = next) {
			size_t s;

			next = node->next;
			s = (m->byte_keys ? node->key : hash_u64(node->key)) & (n - 1);
			node->next = nb[s];
			nb[s] = node;
		}
	}
	free(m->buckets);
	m->buckets = nb;
	m->n_buckets = n;
}

static int put(struct hmap *m, uint64_t key, const char *skey, void *val)
{
	struct hnode **pp = find(m, key, skey), *n;

	if (*pp) {
		(*pp)->val = val;
		return 0;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	if (skey && m->key_len) {
		n->skey = skey;
	} else if (skey) {
		n->skey = strdup(skey);
		if (!n->skey) {
			free(n);
			return -ENOMEM;
		}
	}
	n->key = key;
	n->val = val;
	*pp = n;
	m->size++;
	if (m->size > m->n_buckets)
		grow(m);
	return 0;
}

static void *del(struct hmap *m, uint64_t key, const char *skey)
{
	struct hnode **pp = find(m, key, skey), *n = *pp;
	void *val;

	if (!n)
		return NULL;
	*pp = n->next;
	val = n->val;
	free_key(m, n);
	free(n);
	m->size--;
	return val;
}

void *hmap__get(const struct hmap *m, uint64_t key)
{
	struct hnode *n = *find(m, key, NULL);

	return n ? n->val : NULL;
}

int hmap__put(struct hmap *m, uint64_t key, void *val)
{
	return put(m, key, NULL, val);
}

void *hmap__del(struct hmap *m, uint64_t key)
{
	return del(m, key, NULL);
}

/* Each kind of key only through its own calls: a u64 call on a string
 * map (or the reverse) would read a key as the wrong type. */
void *hmap__sget(const struct hmap *m, const char *key)
{
	struct hnode *n = *find(m, hash_str(key), key);

	return n ? n->val : NULL;
}

int hmap__sput(struct hmap *m, const char *key, void *val)
{
	return put(m, hash_str(key), key, val);
}

void *hmap__sdel(struct hmap *m, const char *key)
{
	return del(m, hash_str(key), key);
}

void *hmap__bget(const struct hmap *m, const void *key)
{
	struct hnode *n = *find(m, hmap__hash_bytes(key, m->key_len), key);

	return n ? n->val : NULL;
}

int hmap__bput(struct hmap *m, const void *key, void *val)
{
	return put(m, hmap__hash_bytes(key, m->key_len), key, val);
}

void *hmap__bdel(struct hmap *m, const void *key)
{
	return del(m, hmap__hash_bytes(key, m->key_len), key);
}

void hmap__iter_init(struct hmap *m, struct hmap_iter *it)
{
	it->map = m;
	it->bucket = 0;
	it->node = NULL;
	it->next = m->n_buckets ? m->buckets[0] : NULL;
}

bool hmap__iter_next(struct hmap_iter *it, uint64_t *key, const char **skey, void **val)
{
	struct hnode *n = it->next;

	/* Growth during iteration is not supported: callers only delete. */
	while (!n) {
		if (++it->bucket >= it->map->n_buckets)
			return false;
		n = it->map->buckets[it->bucket];
	}
	it->node = n;
	it->next = n->next;
	if (key)
		*key = it->map->byte_keys ? 0 : n->key;
	if (skey)
		*skey = n->skey;
	if (val)
		*val = n->val;
	return true;
}
