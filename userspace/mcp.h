/* SPDX-License-Identifier: GPL-2.0 */
/*
 * JSON-RPC / MCP body reading (jsonlite.h). Extracts what a request claims and
 * asks for: method, id, tool name, clientInfo (from initialize params, or
 * from params._meta["io.modelcontextprotocol/clientInfo"] in 2026-07-28 and
 * later), for single messages and 2025-03-26 batches. For 2026-era requests
 * the Mcp-Method / Mcp-Name headers must agree with the body.
 *
 * Security: parsing must see what the server's JSON parser sees. Duplicate
 * object keys are rejected (JSON.parse keeps the last, other parsers the
 * first), as are NUL bytes in strings and non-UTF-8 text.
 */
#ifndef MCPW_MCP_H
#define MCPW_MCP_H

#include <stdbool.h>
#include <stddef.h>

/* Largest batch read; more is an error ("too_many_messages"). */
#define MCP_MAX_BATCH 64
/* clientInfo name and version, bytes each; longer is "bad_params". */
#define MCP_MAX_CLIENT_INFO 256

struct mcp_message {
	char *method;		/* NULL for a response */
	char *id;		/* compact JSON of "id"; NULL for a notification */
	bool is_request;	/* method and id */
	bool is_notification;	/* method, no id */
	bool is_response;	/* result or error, no method */
	char *tool;		/* tools/call params.name */
	char *resource_uri;	/* resources/read params.uri */
	char *prompt;		/* prompts/get params.name */
	char *client_name;	/* clientInfo.name */
	char *client_version;	/* clientInfo.version */
	bool client_info_from_meta;
	char *protocol_version;	/* initialize params.protocolVersion, else
				 * _meta["io.modelcontextprotocol/protocolVersion"] */
};

struct mcp_body {
	bool batch;
	size_t n_msgs;
	struct mcp_message *msgs;
	/* NULL, or a static reason code: "bad_json", "not_jsonrpc",
	 * "empty_batch", "too_many_messages", "duplicate_key",
	 * "header_mismatch", "missing_header", "bad_params",
	 * "batch_not_allowed" (a batch in 2026-07-28 or later). On error,
	 * msgs holds what was read before it. */
	const char *error;
	char *error_detail;	/* human sentence for the alert, or NULL */
};

/* The MCP headers of the HTTP request that carried the body (NULL: absent). */
struct mcp_headers {
	const char *method;		/* Mcp-Method */
	const char *name;		/* Mcp-Name */
	const char *protocol_version;	/* MCP-Protocol-Version */
};

enum mcp_era {
	MCP_ERA_UNKNOWN = 0,
	MCP_ERA_SESSION,	/* up to 2025-11-25: initialize + Mcp-Session-Id */
	MCP_ERA_STATELESS,	/* 2026-07-28 and later: clientInfo in _meta */
};

/* Era of a protocol version string ("2025-06-18"); UNKNOWN for NULL/bad. */
enum mcp_era mcp__era(const char *protocol_version);

/*
 * Parses a body. Returns 0 with out filled (out->error set when the body is
 * not acceptable MCP), or -ENOMEM. Zeroes out first.
 */
int mcp__parse(const char *body, size_t len, const struct mcp_headers *hdrs,
	       struct mcp_body *out);
void mcp_body__release(struct mcp_body *b);

/* What a JSON-RPC request object's first bytes say (mcp__prefix). */
struct mcp_prefix {
	char method[64];
	char id[64];		/* compact JSON (a number or a plain string); "" if not seen */
};

/*
 * The top-level "method" (and "id", when seen first or within the same
 * bytes) of a JSON-RPC request object from the first len bytes of its body,
 * for a request judged before its whole body is in (agent.c,
 * judge_on_head). 1: method found; 0: not within these bytes; -1: not a
 * plain request object (a batch, an escaped or too long method, a member
 * that is not JSON). Keys written with escapes are not matched, and a later
 * duplicate cannot be seen: what it returns names the request in its
 * event, never decides a verdict.
 */
int mcp__prefix(const char *body, size_t len, struct mcp_prefix *out);

#endif
