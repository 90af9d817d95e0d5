// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for MCP bodies. The first input byte picks the MCP
 * headers sent with the body (two bits each for Mcp-Method, Mcp-Name and
 * MCP-Protocol-Version); the rest is the body given to mcp__parse().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp.h"

static const char *const methods[] = { NULL, "tools/call", "initialize", " tools/list\t" };
static const char *const names[] = { NULL, "search", "=?base64?c2VhcmNo?=", "=?base64?x?=" };
static const char *const versions[] = { NULL, "2025-06-18", "2026-07-28", "2026-13-99" };

static void check(const struct mcp_body *b)
{
	size_t i;

	if (b->error && !b->error_detail)
		__builtin_trap();
	if (b->error)
		return;
	if (b->n_msgs == 0 || (!b->batch && b->n_msgs != 1) || b->n_msgs > MCP_MAX_BATCH)
		__builtin_trap();
	for (i = 0; i < b->n_msgs; i++) {
		const struct mcp_message *m = &b->msgs[i];

		if (m->is_request + m->is_notification + m->is_response != 1)
			__builtin_trap();
		if (m->is_response != !m->method || m->is_notification != (m->method && !m->id))
			__builtin_trap();
		if (m->tool && (!m->method || strcmp(m->method, "tools/call")))
			__builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mcp_headers h;
	struct mcp_body b;

	if (size < 1)
		return 0;
	h.method = methods[data[0] & 3];
	h.name = names[(data[0] >> 2) & 3];
	h.protocol_version = versions[(data[0] >> 4) & 3];
	if (mcp__parse((const char *)data + 1, size - 1, (data[0] & 0x40) ? NULL : &h, &b))
		return 0;
	check(&b);
	mcp_body__release(&b);
	return 0;
}
