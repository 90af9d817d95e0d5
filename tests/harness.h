/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Test harness: bool-returning ASSERT_* macros in the style of the kernel's
 * selftests/bpf test_progs.h. A test is a function `void test_NAME(void)` in
 * tests/test_*.c or tests/e2e/test_*.c; scripts/gen-tests-h finds it, so
 * adding a test never means editing a list. Each test runs in its own child
 * process (tests/runner.c); a failed assertion marks the test failed and the
 * test decides whether to go on (`if (!ASSERT_...) goto cleanup;`).
 */
#ifndef MCPW_TEST_HARNESS_H
#define MCPW_TEST_HARNESS_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <stdint.h>

void test__fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void test__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Starts a named subtest; returns false when filtered out by -t. */
bool test__start_subtest(const char *name);
/* Override the default per-test time limit (seconds). */
void test__set_timeout(unsigned int seconds);
/* What to undo when the test is cut short (time limit, SIGINT, SIGTERM):
 * fn(arg) runs before the test process exits. Up to 4; a NULL fn drops
 * the registration of arg. */
void test__on_abort(void (*fn)(void *), void *arg);
/* True when the test has already failed an assertion. */
bool test__failed(void);

#define ASSERT_TRUE(cond, what) ({					\
	bool ___ok = (cond);						\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__, "%s: expected true: %s",	\
			   (what), #cond);				\
	___ok;								\
})

#define ASSERT_FALSE(cond, what) ({					\
	bool ___ok = !(cond);						\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__, "%s: expected false: %s",	\
			   (what), #cond);				\
	___ok;								\
})

#define ASSERT_EQ(actual, expected, what) ({				\
	long long ___a = (long long)(actual);				\
	long long ___e = (long long)(expected);				\
	bool ___ok = ___a == ___e;					\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__,				\
			   "%s: %s = %lld, expected %lld",		\
			   (what), #actual, ___a, ___e);		\
	___ok;								\
})

#define ASSERT_NEQ(actual, unexpected, what) ({				\
	long long ___a = (long long)(actual);				\
	long long ___e = (long long)(unexpected);			\
	bool ___ok = ___a != ___e;					\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__,				\
			   "%s: %s = %lld, expected anything else",	\
			   (what), #actual, ___a);			\
	___ok;								\
})

#define ASSERT_GE(actual, bound, what) ({				\
	long long ___a = (long long)(actual);				\
	long long ___b = (long long)(bound);				\
	bool ___ok = ___a >= ___b;					\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__,				\
			   "%s: %s = %lld, expected >= %lld",		\
			   (what), #actual, ___a, ___b);		\
	___ok;								\
})

#define ASSERT_OK(err, what) ({						\
	long long ___e = (long long)(err);				\
	bool ___ok = ___e == 0;						\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__, "%s failed: %lld (%s)",	\
			   (what), ___e,				\
			   ___e < 0 ? strerror((int)-___e) : "");	\
	___ok;								\
})

#define ASSERT_ERR(err, what) ({					\
	long long ___e = (long long)(err);				\
	bool ___ok = ___e < 0;						\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__,				\
			   "%s: expected an error, got %lld",		\
			   (what), ___e);				\
	___ok;								\
})

#define ASSERT_OK_PTR(ptr, what) ({					\
	const void *___p = (ptr);					\
	bool ___ok = ___p != NULL;					\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__, "%s: unexpected NULL",	\
			   (what));					\
	___ok;								\
})

#define ASSERT_NULL(ptr, what) ({					\
	const void *___p = (ptr);					\
	bool ___ok = ___p == NULL;					\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__, "%s: expected NULL",	\
			   (what));					\
	___ok;								\
})

#define ASSERT_STREQ(actual, expected, what) ({				\
	const char *___a = (actual);					\
	const char *___e = (expected);					\
	bool ___ok = ___a && ___e ? strcmp(___a, ___e) == 0 : ___a == ___e; \
	if (!___ok)							\
		test__fail(__FILE__, __LINE__,				\
			   "%s: %s = \"%s\", expected \"%s\"",		\
			   (what), #actual, ___a ? ___a : "(null)",	\
			   ___e ? ___e : "(null)");			\
	___ok;								\
})

#define ASSERT_STRSTR(haystack, needle, what) ({			\
	const char *___h = (haystack);					\
	const char *___n = (needle);					\
	bool ___ok = ___h && strstr(___h, ___n);			\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__,				\
			   "%s: \"%s\" not found in \"%s\"",		\
			   (what), ___n, ___h ? ___h : "(null)");	\
	___ok;								\
})

#define ASSERT_MEMEQ(actual, expected, len, what) ({			\
	size_t ___l = (len);						\
	bool ___ok = memcmp((actual), (expected), ___l) == 0;		\
	if (!___ok)							\
		test__fail(__FILE__, __LINE__,				\
			   "%s: %zu bytes differ", (what), ___l);	\
	___ok;								\
})

#endif
