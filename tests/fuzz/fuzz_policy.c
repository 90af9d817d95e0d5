// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for the policy file: policy__load_buffer() on the input,
 * then the invariants the rest of the daemon relies on. An error must name
 * a position inside the input (or none); a loaded policy must have what the
 * schema requires, and the matchers must run on it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

/* The error's LINE:COL must point at a byte of the input, or just past it. */
static void check_position(const uint8_t *data, size_t size, const struct policy_error *e)
{
	size_t i = 0, line_len = 0;
	int line = 1;

	if (e->line == 0)
		return;
	if (e->line < 0 || e->col < 1)
		__builtin_trap();
	while (line < e->line) {
		if (i >= size)
			__builtin_trap();
		if (data[i++] == '\n')
			line++;
	}
	while (i + line_len < size && data[i + line_len] != '\n')
		line_len++;
	if ((size_t)e->col > line_len + 1)
		__builtin_trap();
}

static void check_policy(const struct policy *p)
{
	struct workload_view wv = { .cgroup = "/a/b", .exe = "/usr/bin/node", .uid = 0 };
	size_t i;

	if (!p->n_servers || strlen(p->digest) != 64 || !p->source)
		__builtin_trap();
	for (i = 0; i < p->n_servers; i++) {
		const struct policy_server *s = &p->servers[i];

		if (!s->name || (s->is_stdio ? !s->stdio_exe || s->port : !s->port))
			__builtin_trap();
		if (!s->is_stdio && policy__server_by_port(p, s->port) != s)
			__builtin_trap();
		policy_workloads__match(s->launchers, s->n_launchers, &wv);
	}
	for (i = 0; i < p->n_clients; i++) {
		const struct policy_client *c = &p->clients[i];
		const struct policy_claims *k = &c->claims;
		/* The client's own patterns as the claimed values. */
		struct claim_view cv = {
			.client_id = k->client_id, .sub = k->sub, .iss = k->iss,
			.azp = k->azp, .client_info_name = k->client_info_name,
			.user_agent = k->user_agent, .token_sha256 = k->token_sha256,
		};

		if (!c->name || !c->n_workloads)
			__builtin_trap();
		policy_claims__match(k, &cv);
		policy_workloads__match(c->workloads, c->n_workloads, &wv);
		policy_client__tool_allowed(c, "tools/x");
		policy_client__server_allowed(c, p->servers[0].name);
	}
	policy__needs_exe_sha256(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy *p = NULL;
	struct policy_error err;
	char buf[600];
	int ret;

	ret = policy__load_buffer("fuzz.json", (const char *)data, size, &p, &err);
	if (ret == 0) {
		if (!p)
			__builtin_trap();
		check_policy(p);
		policy__free(p);
		return 0;
	}
	if (p || (ret != -EINVAL && ret != -ENOMEM) || !err.msg[0])
		__builtin_trap();
	check_position(data, size, &err);
	policy_error__format(&err, buf, sizeof(buf));
	return 0;
}
