// SPDX-License-Identifier: GPL-2.0
/*
 * Runs every libFuzzer target (build/fuzz/fuzz_*, ASan + UBSan) for a short,
 * bounded time from its committed seed corpus, so `make test` exercises
 * every parser of untrusted input under the sanitizers. A crash, leak or
 * sanitizer report fails the subtest. MCPW_FUZZ_SECONDS sets the time.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

void test_fuzz_smoke(void)
{
	const char *secs = getenv("MCPW_FUZZ_SECONDS");
	struct dirent *de;
	DIR *d = opendir("build/fuzz");
	int ran = 0;

	test__set_timeout(600);
	if (!ASSERT_OK_PTR(d, "build/fuzz (run make fuzz)"))
		return;
	while ((de = readdir(d))) {
		char cmd[1024], corpus[256], scratch[256];
		int st;

		if (strncmp(de->d_name, "fuzz_", 5) != 0 || strchr(de->d_name, '.'))
			continue;
		if (!test__start_subtest(de->d_name + 5))
			continue;
		snprintf(corpus, sizeof(corpus), "tests/fuzz/corpus/%s", de->d_name + 5);
		snprintf(scratch, sizeof(scratch), "/tmp/mcpw-fuzz-%d-%s", getpid(), de->d_name + 5);
		/* Work on a copy: the committed seeds stay small. */
		snprintf(cmd, sizeof(cmd),
			 "rm -rf %s && mkdir -p %s && cp -r %s/. %s/ 2>/dev/null; "
			 "build/fuzz/%s -max_total_time=%s -timeout=10 -rss_limit_mb=2048 "
			 "-print_final_stats=1 %s > %s.log 2>&1; st=$?; tail -n 5 %s.log; "
			 "rm -rf %s %s.log; exit $st",
			 scratch, scratch, corpus, scratch, de->d_name, secs ? secs : "15", scratch,
			 scratch, scratch, scratch, scratch);
		st = system(cmd);
		ASSERT_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), 0, de->d_name);
		ran++;
	}
	closedir(d);
	ASSERT_GE(ran, 1, "fuzz targets run");
}
