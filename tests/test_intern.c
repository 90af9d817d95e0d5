// SPDX-License-Identifier: GPL-2.0
/* Interned strings: one copy per distinct string, freed with its last ref. */
#include "harness.h"
#include "intern.h"

void test_intern_refcount(void)
{
	size_t base = intern__size();
	char buf[32] = "/usr/bin/node";
	const char *a = intern__get("/usr/bin/node");
	const char *b = intern__get(buf);
	const char *c = intern__ref(a);

	ASSERT_TRUE(a == b && b == c, "one shared copy");
	ASSERT_STREQ(a, "/usr/bin/node", "content");
	ASSERT_EQ(intern__size(), base + 1, "one entry");
	buf[0] = 'X';
	ASSERT_STREQ(a, "/usr/bin/node", "a copy, not the caller's buffer");
	intern__put(a);
	intern__put(b);
	ASSERT_EQ(intern__size(), base + 1, "alive while referenced");
	intern__put(c);
	ASSERT_EQ(intern__size(), base, "gone with the last reference");
	ASSERT_NULL(intern__get(NULL), "NULL stays NULL");
	intern__put(NULL);
}
