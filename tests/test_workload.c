// SPDX-License-Identifier: GPL-2.0
/* Workload evidence: command lines are redacted before they become events. */
#include <stdlib.h>

#include "harness.h"
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
