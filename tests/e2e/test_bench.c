// SPDX-License-Identifier: GPL-2.0
/*
 * `make bench` itself: one row run short (P1, both connection counts,
 * three pairs of one second after the warm-up pair), then what the README
 * promises of every run is checked on its JSON and its table. Each A run
 * is an agent that enforced and passed the requests on its fast path; the
 * ratio is the median of the A runs over the median of the B runs, the
 * pairs' range the range of the A_i/B_i; the target is judged on the
 * ratio; the agent's CPU and peak RSS are there; and the bench leaves
 * nothing behind (its cgroup subtree, its programs, bpf_stats, its work
 * directory). The numbers themselves are not judged: performance claims
 * live in the bench, not in tests.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <bpf/bpf.h>

#include "env.h"
#include "harness.h"

extern char **environ;

/* Programs loaded now under the agent's verdict program's name. */
static int count_verdict_progs(void)
{
	__u32 id = 0;
	int n = 0;

	while (bpf_prog_get_next_id(id, &id) == 0) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_prog_get_fd_by_id(id);

		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
		    strcmp(info.name, "srv_verdict") == 0)
			n++;
		close(fd);
	}
	return n;
}

/* Work directories of benches (mktemp /tmp/mcpw-bench.XXXXXX). */
static int count_work_dirs(void)
{
	DIR *d = opendir("/tmp");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += strncmp(de->d_name, "mcpw-bench.", 11) == 0;
	closedir(d);
	return n;
}

static int read_stats_flag(void)
{
	char *s = env__slurp("/proc/sys/kernel/bpf_stats_enabled", NULL);
	int v = s ? atoi(s) : -1;

	free(s);
	return v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static bool near(double got, double want)
{
	return fabs(got - want) <= 1e-3 * fabs(want) + 1e-4;
}

/* One P1 row of the JSON, held to how the bench says it computes it. */
static void check_row(json_t *row, int pairs)
{
	json_t *a = json_object_get(row, "a"), *b = json_object_get(row, "b");
	json_t *pr = json_object_get(row, "pair_ratios");
	const char *name = json_string_value(json_object_get(row, "name"));
	double av[16], bv[16], lo = 1e9, hi = 0, ratio, target;
	size_t i, n;

	test__log("row %s", name ? name : "?");
	if (!ASSERT_EQ(json_array_size(a), (size_t)pairs, "one A run a pair") ||
	    !ASSERT_EQ(json_array_size(b), (size_t)pairs, "one B run a pair") ||
	    !ASSERT_EQ(json_array_size(pr), (size_t)pairs, "one ratio a pair"))
		return;
	n = json_array_size(a);
	for (i = 0; i < n; i++) {
		json_t *ra = json_array_get(a, i), *rb = json_array_get(b, i);
		double q;

		av[i] = json_number_value(json_object_get(ra, "value"));
		bv[i] = json_number_value(json_object_get(rb, "value"));
		ASSERT_TRUE(av[i] > 0 && bv[i] > 0, "both runs of the pair measured a rate");
		ASSERT_EQ(json_integer_value(json_object_get(ra, "errors")), 0, "A run without errors");
		/* An A run is the agent, enforcing, passing requests on its fast
		 * path and reporting them; a B run has no agent. */
		ASSERT_TRUE(json_integer_value(json_object_get(ra, "requests")) > 0, "A requests");
		ASSERT_TRUE(json_integer_value(json_object_get(json_object_get(ra, "kernel_counters"),
							       "held_segments")) > 0,
			    "the A run's agent enforced: it held the first request");
		ASSERT_TRUE(json_integer_value(json_object_get(json_object_get(ra, "kernel_counters"),
							       "fast_path_requests")) > 0,
			    "and passed the next ones in the kernel");
		ASSERT_TRUE(json_number_value(json_object_get(ra, "agent_cpu_s")) > 0, "A agent CPU");
		ASSERT_TRUE(json_integer_value(json_object_get(ra, "agent_hwm_kib")) > 0, "A agent RSS");
		ASSERT_NULL(json_object_get(rb, "agent_cpu_s"), "a B run has no agent");
		q = json_number_value(json_array_get(pr, i));
		ASSERT_TRUE(near(q, av[i] / bv[i]), "pair ratio = A_i / B_i");
		lo = q < lo ? q : lo;
		hi = q > hi ? q : hi;
	}
	ratio = json_number_value(json_object_get(row, "ratio"));
	ASSERT_TRUE(near(json_number_value(json_object_get(row, "agent")), median(av, n)),
		    "agent = median of the A runs");
	ASSERT_TRUE(near(json_number_value(json_object_get(row, "baseline")), median(bv, n)),
		    "baseline = median of the B runs");
	ASSERT_TRUE(near(ratio, median(av, n) / median(bv, n)), "ratio of the medians");
	ASSERT_TRUE(near(json_number_value(json_object_get(row, "pair_min")), lo), "pairs min");
	ASSERT_TRUE(near(json_number_value(json_object_get(row, "pair_max")), hi), "pairs max");
	target = json_number_value(json_object_get(row, "target"));
	ASSERT_TRUE(target > 0, "a target");
	ASSERT_EQ(json_is_true(json_object_get(row, "pass")), ratio >= target,
		  "judged on the ratio");
	ASSERT_TRUE(json_number_value(json_object_get(row, "agent_cpu_s")) > 0, "agent CPU");
	ASSERT_TRUE(json_integer_value(json_object_get(row, "agent_peak_rss_kib")) > 0,
		    "agent peak RSS");
	ASSERT_EQ(json_integer_value(json_object_get(row, "events_lost")), 0, "no events lost");
}

void test_bench_harness(void)
{
	struct env e;
	char json_path[600], json_env[620], out_path[600], script[PATH_MAX + 32], cgdir[900];
	char line[700];
	char *envp[256], *out = NULL;
	json_t *rep = NULL, *rows;
	int stats0, progs0, dirs0, n_env = 0, rc, p1 = 0;
	size_t i;
	pid_t pid;

	test__set_timeout(400);
	if (!ASSERT_OK(env__init(&e), "env"))
		return;
	snprintf(json_path, sizeof(json_path), "%s/bench.json", e.tmp);
	snprintf(out_path, sizeof(out_path), "%s/bench.out", e.tmp);
	snprintf(script, sizeof(script), "%s/scripts/bench", env__top());
	stats0 = read_stats_flag();
	progs0 = count_verdict_progs();
	dirs0 = count_work_dirs();

	for (i = 0; environ[i] && n_env < 240; i++)
		if (strncmp(environ[i], "BENCH_", 6))
			envp[n_env++] = environ[i];
	envp[n_env++] = "BENCH_QUICK=1";
	envp[n_env++] = "BENCH_ONLY=P1";
	envp[n_env++] = "BENCH_PAIRS=3";
	envp[n_env++] = "BENCH_SECONDS=1";
	snprintf(json_env, sizeof(json_env), "BENCH_JSON=%s", json_path);
	envp[n_env++] = json_env;
	envp[n_env] = NULL;
	pid = env__spawn(&e, &(struct spawn_opts){ .stdout_path = out_path, .cwd = env__top(),
						   .envp = envp },
			 (char *[]){ script, NULL });
	if (!ASSERT_TRUE(pid > 0, "start the bench"))
		goto out;
	rc = env__wait(&e, pid, 360 * 1000);
	out = env__slurp(out_path, NULL);
	if (!ASSERT_EQ(rc, 0, "the bench's exit status (misses are not failures without "
			   "BENCH_STRICT)"))
		test__log("%s", out ? out : "(no output)");

	/* What it leaves: nothing. */
	snprintf(cgdir, sizeof(cgdir), "%s/mcpw-bench-%d", e.cg_mount, (int)pid);
	ASSERT_TRUE(access(cgdir, F_OK) != 0, "its cgroup subtree is gone");
	ASSERT_EQ(read_stats_flag(), stats0, "bpf_stats_enabled as it was");
	/* A program goes some time after its last reference (RCU), and a
	 * previous test's may still be going at the start. */
	for (i = 0; i < 40 && count_verdict_progs() > progs0; i++)
		env__sleep_ms(50);
	ASSERT_TRUE(count_verdict_progs() <= progs0, "none of its agents' programs left");
	ASSERT_EQ(count_work_dirs(), dirs0, "its work directory is gone");

	/* The table, and where the JSON went. */
	ASSERT_OK_PTR(out, "output");
	if (out) {
		ASSERT_STRSTR(out, "| id", "the table's header");
		ASSERT_STRSTR(out, "| P1 ", "P1's rows in the table");
		snprintf(line, sizeof(line), "JSON in %s", json_path);
		ASSERT_STRSTR(out, line, "says where the JSON is");
	}

	rep = json_load_file(json_path, 0, NULL);
	if (!ASSERT_OK_PTR(rep, "the JSON"))
		goto out;
	ASSERT_EQ(json_integer_value(json_object_get(json_object_get(rep, "config"), "pairs")), 3,
		  "pairs as asked");
	rows = json_object_get(rep, "rows");
	for (i = 0; i < json_array_size(rows); i++) {
		json_t *row = json_array_get(rows, i);

		if (strcmp(json_string_value(json_object_get(row, "id")) ?: "", "P1"))
			continue;
		p1++;
		check_row(row, 3);
	}
	ASSERT_EQ(p1, 2, "P1 on one and on 16 connections, nothing else asked for");
	ASSERT_EQ(json_array_size(rows), (size_t)2, "only the rows asked for");
out:
	json_decref(rep);
	free(out);
	env__cleanup(&e);
}
