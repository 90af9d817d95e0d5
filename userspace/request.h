/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One HTTP request to a protected MCP server, read for what it claims and
 * asks: the bearer token's facts (never the token), the MCP headers, the
 * JSON-RPC messages. A request that cannot be read as HTTP + JSON-RPC is
 * `malformed` with a reason code and a sentence.
 */
#ifndef MCPW_REQUEST_H
#define MCPW_REQUEST_H

#include <stdbool.h>
#include <jansson.h>

#include "http.h"
#include "jwt.h"
#include "mcp.h"

struct request {
	const struct http_message *http;
	struct jwt_facts token;
	bool token_shared;		/* token's strings belong to a jwt_cache */
	struct mcp_body body;
	bool body_shared;		/* body belongs to the caller (request__read_parsed) */
	bool has_body;
	const char *session_id;		/* Mcp-Session-Id */
	/* Its key in the decider's sessions (the id, or a digest of a long
	 * one), made once for the session_id it was made for (the decider's
	 * request_session_key()). */
	const char *session_key, *session_key_for;
	char session_key_buf[72];
	const char *protocol_version;	/* MCP-Protocol-Version */
	const char *user_agent;
	enum mcp_era era;
	/* First request message's method/id, first tools/call's tool. */
	const char *method;
	const char *id;
	const char *tool;
	/* clientInfo: from this body (initialize or _meta), else the
	 * session's (filled in by the caller). */
	const char *client_name;
	const char *client_version;
	bool client_info_from_session;
	bool is_initialize;
	bool body_unread;		/* head only: the body was not seen */
	/* NULL, or a reason code ("bad_http", "header_mismatch", ...). */
	const char *malformed;
	char malformed_detail[256];
};

/* Reads m (which must outlive r). keys and tokens (a cache of token
 * facts, which must outlive r and not be used for another request until
 * r is released) may be NULL. Returns 0 or -ENOMEM. */
int request__read(struct request *r, const struct http_message *m, const struct jwt_keyset *keys,
		  struct jwt_cache *tokens);
/* As request__read, with m's body already parsed (same body bytes, same
 * head): parsed is borrowed, and must outlive r. */
int request__read_parsed(struct request *r, const struct http_message *m,
			 const struct jwt_keyset *keys, struct jwt_cache *tokens,
			 const struct mcp_body *parsed);
/* The head only (a fast-path record whose body was not copied, a request
 * judged before its body is in): token, headers, no JSON-RPC. */
int request__read_head(struct request *r, const struct http_message *m,
		       const struct jwt_keyset *keys, struct jwt_cache *tokens);
void request__release(struct request *r);

/* Marks a request malformed with a reason code and a sentence. */
void request__set_malformed(struct request *r, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Event objects (PRODUCT.md "Events"). */
json_t *request__claim_json(const struct request *r);
struct output_line;
/* The "request" member of a request or alert event. */
void request__write_request(const struct request *r, struct output_line *l);

#endif
