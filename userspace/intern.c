// SPDX-License-Identifier: GPL-2.0
/* String interning: a chained hash of refcounted strings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "intern.h"

struct istr {
	struct istr *next;
	uint64_t hash;
	unsigned int refs;
	char s[];
};

static struct istr **buckets;
static size_t n_buckets, n_items;

static uint64_t hash_str(const char *s)
{
	return hmap__hash_bytes(s, strlen(s));
}

static struct istr *of(const char *interned)
{
	return (struct istr *)(interned - offsetof(struct istr, s));
}

static void grow(void)
{
	size_t n = n_buckets ? n_buckets * 2 : 1024, i;
	struct istr **nb = calloc(n, sizeof(*nb));

	if (!nb)
		return;
	for (i = 0; i < n_buckets; i++) {
		struct istr *e = buckets[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	}
	free(buckets);
	buckets = nb;
	n_buckets = n;
}

const char *intern__get(const char *s)
{
	uint64_t h;
	struct istr *e;
	size_t len;

	if (!s)
		return NULL;
	if (n_items >= n_buckets)
		grow();
	if (!buckets)
		return NULL;
	h = hash_str(s);
	for (e = buckets[h & (n_buckets - 1)]; e; e = e->next) {
		if (e->hash == h && strcmp(e->s, s) == 0) {
			e->refs++;
			return e->s;
		}
	}
	len = strlen(s);
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	e->hash = h;
	e->refs = 1;
	memcpy(e->s, s, len + 1);
	e->next = buckets[h & (n_buckets - 1)];
	buckets[h & (n_buckets - 1)] = e;
	n_items++;
	return e->s;
}

const char *intern__ref(const char *interned)
{
	if (interned)
		of(interned)->refs++;
	return interned;
}

void intern__put(const char *interned)
{
	struct istr *e, **pp;

	if (!interned)
		return;
	e = of(interned);
	if (--e->refs)
		return;
	for (pp = &buckets[e->hash & (n_buckets - 1)]; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	n_items--;
	free(e);
}

size_t intern__size(void)
{
	return n_items;
}
