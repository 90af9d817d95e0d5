// SPDX-License-Identifier: GPL-2.0
/*
 * Test runner: runs every registered test (build/tests.h) in its own child
 * process with a time limit, prints one line per test or subtest and ends
 * with the summary line `N passed, N failed`. A test's log is shown when it
 * fails (always with -v).
 *
 *   test_runner [-v] [-l] [-t GLOB[,GLOB...]] [-x GLOB[,GLOB...]]
 */
#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define DEFINE_TEST(name) void test_##name(void);
#include "tests.h"
#undef DEFINE_TEST

struct test_def {
	const char *name;
	void (*fn)(void);
};

#define DEFINE_TEST(name) { #name, test_##name },
static const struct test_def tests[] = {
#include "tests.h"
};
#undef DEFINE_TEST

/* Shared between the runner and the test child. */
struct test_state {
	unsigned int timeout;
	int sub_passed;
	int sub_failed;
	int fails;		/* assertion failures in the current (sub)test */
	int total_fails;
	bool in_subtest;
	char cur_sub[128];
	char report[8192];	/* subtest result lines, for the parent */
	size_t report_len;
};

static struct test_state *state;
static const char *cur_test;
static char *include_globs, *exclude_globs;
static bool verbose;

static bool glob_list_match(const char *list, const char *name)
{
	char buf[1024], *save = NULL, *tok;

	if (!list)
		return false;
	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char with_star[256];

		if (fnmatch(tok, name, 0) == 0)
			return true;
		/* A bare test name also selects all its subtests. */
		snprintf(with_star, sizeof(with_star), "%s/*", tok);
		if (fnmatch(with_star, name, 0) == 0)
			return true;
	}
	return false;
}

static bool selected(const char *name, bool is_prefix)
{
	if (exclude_globs && glob_list_match(exclude_globs, name))
		return false;
	if (!include_globs)
		return true;
	if (glob_list_match(include_globs, name))
		return true;
	if (is_prefix) {
		/* A test is run when any of its subtests could match. */
		char buf[1024], *save = NULL, *tok;

		snprintf(buf, sizeof(buf), "%s", include_globs);
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			size_t n = strlen(name);

			if (strncmp(tok, name, n) == 0 && tok[n] == '/')
				return true;
		}
	}
	return false;
}

static __attribute__((format(printf, 1, 2))) void report_append(const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(state->report) - state->report_len;
	int n;

	if (room <= 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(state->report + state->report_len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		state->report_len += (size_t)n < room ? (size_t)n : room - 1;
}

void test__fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	state->fails++;
	state->total_fails++;
	fprintf(stdout, "    %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

void test__log(const char *fmt, ...)
{
	va_list ap;

	fputs("    ", stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

bool test__failed(void)
{
	return state->fails > 0;
}

void test__set_timeout(unsigned int seconds)
{
	state->timeout = seconds;
	alarm(seconds);
}

static void end_subtest(void)
{
	if (!state->in_subtest)
		return;
	if (state->fails) {
		state->sub_failed++;
		report_append("FAIL %s/%s\n", cur_test, state->cur_sub);
	} else {
		state->sub_passed++;
		report_append("ok   %s/%s\n", cur_test, state->cur_sub);
	}
	fprintf(stdout, "  -- end %s: %s\n", state->cur_sub, state->fails ? "FAIL" : "ok");
	fflush(stdout);
	state->in_subtest = false;
	state->fails = 0;
}

bool test__start_subtest(const char *name)
{
	char full[512];

	end_subtest();
	snprintf(full, sizeof(full), "%s/%s", cur_test, name);
	if (!selected(full, false))
		return false;
	snprintf(state->cur_sub, sizeof(state->cur_sub), "%s", name);
	state->in_subtest = true;
	state->fails = 0;
	fprintf(stdout, "  -- subtest %s\n", name);
	fflush(stdout);
	return true;
}

/*
 * A test cut short (its time limit, or SIGINT/SIGTERM) still undoes what
 * it set up: the signal handler runs the registered clean-ups (agents,
 * servers, cgroups, namespaces) and exits. It runs them itself, on top of
 * the interrupted test's stack, whose env they need. Tests spend their
 * time waiting (poll, sleep, waitpid), so the signal does not in practice
 * land inside a half-done allocation.
 */
#define MAX_ABORT_FNS 4
static struct {
	void (*fn)(void *);
	void *arg;
} abort_fns[MAX_ABORT_FNS];
static volatile sig_atomic_t abort_sig;

void test__on_abort(void (*fn)(void *), void *arg)
{
	int i;

	for (i = 0; i < MAX_ABORT_FNS; i++) {
		if (abort_fns[i].fn && abort_fns[i].arg == arg)
			abort_fns[i].fn = NULL;
	}
	for (i = 0; fn && i < MAX_ABORT_FNS; i++) {
		if (!abort_fns[i].fn) {
			abort_fns[i].fn = fn;
			abort_fns[i].arg = arg;
			return;
		}
	}
}

static void on_abort_signal(int sig)
{
	int i;

	sigset_t set;

	abort_sig = sig;
	signal(SIGALRM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	/* The clean-ups get their own, last time limit (unblocked: this
	 * handler may be SIGALRM's own). */
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	alarm(60);
	printf("    test %s\n", abort_sig == SIGALRM ? "timed out" : "interrupted");
	for (i = MAX_ABORT_FNS - 1; i >= 0; i--) {
		if (abort_fns[i].fn) {
			void (*fn)(void *) = abort_fns[i].fn;

			abort_fns[i].fn = NULL;
			fn(abort_fns[i].arg);
		}
	}
	fflush(stdout);
	_exit(abort_sig == SIGALRM ? 124 : 128 + abort_sig);
}

/* Runs one test in a child process and adds its results to the counts. */
static int run_one(const struct test_def *t, int *passed, int *failed)
{
	char logpath[] = "/tmp/mcpw-test-log-XXXXXX";
	int logfd = mkstemp(logpath);
	pid_t pid;
	int status = 0;
	bool child_ok;
	int sub_total;

	if (logfd < 0) {
		perror("mkstemp");
		return -1;
	}
	unlink(logpath);
	memset(state, 0, sizeof(*state));
	state->timeout = 300;
	fflush(stdout);

	pid = fork();
	if (pid == 0) {
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		setvbuf(stdout, NULL, _IOLBF, 0);
		cur_test = t->name;
		signal(SIGALRM, on_abort_signal);
		signal(SIGINT, on_abort_signal);
		signal(SIGTERM, on_abort_signal);
		alarm(state->timeout);
		t->fn();
		end_subtest();
		fflush(stdout);
		_exit(state->total_fails ? 1 : 0);
	}
	if (pid < 0) {
		perror("fork");
		close(logfd);
		return -1;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;

	child_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	sub_total = state->sub_passed + state->sub_failed;
	if (state->report_len)
		fputs(state->report, stdout);
	if (sub_total == 0 && child_ok) {
		(*passed)++;
		printf("ok   %s\n", t->name);
	} else if (!child_ok && (sub_total == 0 || state->sub_failed == 0 ||
				 !WIFEXITED(status) || WEXITSTATUS(status) == 124)) {
		/* The test as a whole failed beyond what its subtests say:
		 * no subtests, a crash, a timeout, or a failure between them. */
		(*failed)++;
		if (WIFSIGNALED(status))
			printf("FAIL %s (killed by signal %d)\n", t->name, WTERMSIG(status));
		else if (WEXITSTATUS(status) == 124)
			printf("FAIL %s (timed out after %us)\n", t->name, state->timeout);
		else
			printf("FAIL %s\n", t->name);
	}
	*passed += state->sub_passed;
	*failed += state->sub_failed;

	if (!child_ok || verbose) {
		char buf[4096];
		ssize_t n;

		lseek(logfd, 0, SEEK_SET);
		while ((n = read(logfd, buf, sizeof(buf))) > 0)
			fwrite(buf, 1, (size_t)n, stdout);
	}
	close(logfd);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	size_t i;
	int opt, passed = 0, failed = 0;
	bool list = false;

	while ((opt = getopt(argc, argv, "vlt:x:")) != -1) {
		switch (opt) {
		case 'v': verbose = true; break;
		case 'l': list = true; break;
		case 't': include_globs = optarg; break;
		case 'x': exclude_globs = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-v] [-l] [-t GLOBS] [-x GLOBS]\n", argv[0]);
			return 2;
		}
	}
	if (list) {
		for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			puts(tests[i].name);
		return 0;
	}
	state = mmap(NULL, sizeof(*state), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (state == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		struct timespec a, b;

		if (!selected(tests[i].name, true))
			continue;
		printf("# %s\n", tests[i].name);
		clock_gettime(CLOCK_MONOTONIC, &a);
		run_one(&tests[i], &passed, &failed);
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("#   %.1fs\n", (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
