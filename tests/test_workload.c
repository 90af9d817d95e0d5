// SPDX-License-Identifier: GPL-2.0
/* Workload evidence: command lines are redacted before they become events. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "intern.h"
#include "workload.h"

void test_workload_redact_cmdline(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "node client.mjs --url http://x --token abc123 --name ci",
		  "node client.mjs --url http://x --token [redacted] --name ci" },
		{ "curl -H Authorization: Bearer s3cr3t http://x",
		  "curl -H Authorization: Bearer [redacted] http://x" },
		{ "agent --api-key=k --password=hunter2 --ok=1",
		  "agent --api-key=[redacted] --password=[redacted] --ok=1" },
		{ "tool eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. run",
		  "tool [redacted] run" },
		{ "tool --header=Authorization:eyJa.eyJb.sig", "tool [redacted]" },
		{ "plain command with no secrets", "plain command with no secrets" },
		{ "--token", "--token" },
		{ "", "" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = workload__redact_cmdline(cases[i].in);

		ASSERT_STREQ(got, cases[i].out, cases[i].in);
		free(got);
	}
}

static void wl(struct workload *w, uint32_t pid, const char *exe, const char *why)
{
	memset(w, 0, sizeof(*w));
	w->attributed = !why;
	w->pid = pid;
	w->start_ns = 1000u * pid;
	w->exe = intern__get(exe);
	w->cmdline = intern__get("agent --serve");
	w->ancestors[0].pid = 1;
	w->ancestors[0].exe = intern__get("/sbin/init");
	w->n_ancestors = 1;
	w->why_unattributed = why;
}

/* Equal workloads are one shared copy, counted by reference; a different
 * field is another; the last reference frees it and its strings. */
void test_workload_share(void)
{
	size_t base = workload__shared_count(), strings = intern__size();
	const struct workload *a, *b, *c, *d;
	struct workload w;

	wl(&w, 10, "/usr/bin/client", NULL);
	a = workload__share(&w);
	if (!ASSERT_OK_PTR(a, "share"))
		return;
	ASSERT_EQ(w.exe, NULL, "the references moved to the shared copy");
	wl(&w, 10, "/usr/bin/client", NULL);
	b = workload__share(&w);
	ASSERT_TRUE(a == b, "equal workloads are one copy");
	ASSERT_EQ(workload__shared_count(), base + 1, "one entry");
	wl(&w, 11, "/usr/bin/client", NULL);
	c = workload__share(&w);
	ASSERT_TRUE(c && c != a, "another pid is another workload");
	wl(&w, 10, "/usr/bin/client", "gone");
	d = workload__share(&w);
	ASSERT_TRUE(d && d != a, "another reason is another workload");
	ASSERT_STREQ(a->exe, "/usr/bin/client", "content kept");
	ASSERT_EQ(a->ancestors[0].pid, 1, "ancestors kept");
	workload__unshare(b);
	ASSERT_EQ(workload__shared_count(), base + 3, "still held once");
	ASSERT_STREQ(a->exe, "/usr/bin/client", "alive while held");
	workload__unshare(a);
	ASSERT_EQ(workload__shared_count(), base + 2, "freed with its last reference");
	wl(&w, 10, "/usr/bin/client", NULL);
	a = workload__share(&w);
	ASSERT_TRUE(a && a != c && a != d, "shared again once freed");
	workload__unshare(a);
	workload__unshare(c);
	workload__unshare(d);
	workload__unshare(&workload__none);
	workload__unshare(NULL);
	ASSERT_EQ(workload__shared_count(), base, "all freed");
	ASSERT_EQ(intern__size(), strings, "their strings released");
}
