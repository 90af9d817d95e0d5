// SPDX-License-Identifier: GPL-2.0
/* The hash map under every daemon table: each kind of key, growth,
 * deletion during iteration. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "hmap.h"

void test_hmap_u64(void)
{
	struct hmap *m = hmap__new(false);
	struct hmap_iter it;
	uint64_t k, sum = 0;
	size_t seen = 0;
	void *v;

	if (!ASSERT_OK_PTR(m, "new"))
		return;
	/* Past several doublings (64 buckets at first). */
	for (k = 1; k <= 1000; k++)
		ASSERT_OK(hmap__put(m, k << 20, (void *)(uintptr_t)k), "put");
	ASSERT_EQ(hmap__size(m), 1000, "size");
	ASSERT_EQ((uintptr_t)hmap__get(m, 500ull << 20), 500, "get after growth");
	ASSERT_NULL(hmap__get(m, 500), "absent key");
	ASSERT_OK(hmap__put(m, 7ull << 20, (void *)(uintptr_t)70), "replace");
	ASSERT_EQ(hmap__size(m), 1000, "a replaced key is not added");
	ASSERT_EQ((uintptr_t)hmap__del(m, 7ull << 20), 70, "del returns the value");
	ASSERT_NULL(hmap__del(m, 7ull << 20), "del twice");
	/* Deleting the current entry while iterating: the odd ones. */
	hmap__iter_init(m, &it);
	while (hmap__iter_next(&it, &k, NULL, &v)) {
		seen++;
		if ((uintptr_t)v % 2)
			hmap__del(m, k);
	}
	ASSERT_EQ(seen, 999, "every entry seen once");
	ASSERT_EQ(hmap__size(m), 500, "the even ones left");
	hmap__iter_init(m, &it);
	while (hmap__iter_next(&it, NULL, NULL, &v))
		sum += (uintptr_t)v;
	ASSERT_EQ(sum, 250500, "2 + 4 + ... + 1000");
	hmap__free(m);
}

void test_hmap_strings(void)
{
	struct hmap *m = hmap__new(true);
	char key[32] = "session-1";
	const char *sk;

	if (!ASSERT_OK_PTR(m, "new"))
		return;
	ASSERT_OK(hmap__sput(m, key, m), "put");
	key[0] = 'X';
	ASSERT_TRUE(hmap__sget(m, "session-1") == m, "the key was copied");
	ASSERT_NULL(hmap__sget(m, key), "another key");
	{
		struct hmap_iter it;
		uint64_t k = 1;

		hmap__iter_init(m, &it);
		ASSERT_TRUE(hmap__iter_next(&it, &k, &sk, NULL), "one entry");
		ASSERT_STREQ(sk, "session-1", "its key");
		ASSERT_EQ(k, 0, "no u64 key");
	}
	ASSERT_TRUE(hmap__sdel(m, "session-1") == m, "del");
	ASSERT_EQ(hmap__size(m), 0, "empty");
	hmap__free(m);
}

struct item {
	char key[24];
	int n;
};

void test_hmap_fixed_keys(void)
{
	struct hmap *m = hmap__new_fixed(sizeof(((struct item *)0)->key));
	struct item *items = calloc(300, sizeof(*items)), probe = {};
	int i, found = 0;

	ASSERT_NULL(hmap__new_fixed(0), "a fixed key has a length");
	if (!ASSERT_OK_PTR(m, "new") || !ASSERT_OK_PTR(items, "items"))
		goto out;
	for (i = 0; i < 300; i++) {
		/* Keys that differ only past a NUL: compared as bytes. */
		items[i].key[20] = (char)i;
		items[i].key[21] = (char)(i >> 8);
		items[i].n = i;
		ASSERT_OK(hmap__bput(m, items[i].key, &items[i]), "put");
	}
	ASSERT_EQ(hmap__size(m), 300, "all distinct");
	for (i = 0; i < 300; i++) {
		memset(&probe, 0, sizeof(probe));
		probe.key[20] = (char)i;
		probe.key[21] = (char)(i >> 8);
		if (hmap__bget(m, probe.key) == &items[i])
			found++;
	}
	ASSERT_EQ(found, 300, "found by an equal key elsewhere in memory");
	ASSERT_TRUE(hmap__bdel(m, items[5].key) == &items[5], "del");
	ASSERT_NULL(hmap__bget(m, items[5].key), "gone");
	ASSERT_EQ(hmap__size(m), 299, "size");
out:
	hmap__free(m);
	free(items);
}
