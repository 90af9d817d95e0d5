// SPDX-License-Identifier: GPL-2.0
/*
 * Request reading: HTTP message -> headers, bearer token facts, JSON-RPC.
 *
 * An MCP request is a POST with a JSON body, a GET (the server-to-client
 * SSE stream), or a DELETE (ending a session). Anything else reaching a
 * protected MCP endpoint is not MCP and is malformed. Repeated
 * security-relevant headers are malformed too: which copy a server reads
 * is up to the server, so the agent refuses to guess.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "output.h"
#include "request.h"

static const char *const single_headers[] = {
	"authorization", "mcp-session-id", "mcp-protocol-version", "mcp-method",
	"mcp-name", "content-type", "content-length", "transfer-encoding", "host",
};

void request__set_malformed(struct request *r, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (r->malformed)
		return;	/* the first reason is the one reported */
	r->malformed = code;
	va_start(ap, fmt);
	vsnprintf(r->malformed_detail, sizeof(r->malformed_detail), fmt, ap);
	va_end(ap);
}

/* Names are compared pairwise (a head has a few), and only a name seen
 * twice is looked for among the single ones. */
static void check_repeats(struct request *r, const struct http_message *m)
{
	size_t i, j, k;

	for (i = 1; i < m->n_headers; i++) {
		const char *name = m->headers[i].name;

		for (j = 0; j < i; j++) {
			if (m->headers[j].name[0] != name[0] || strcmp(m->headers[j].name, name))
				continue;
			for (k = 0; k < sizeof(single_headers) / sizeof(single_headers[0]); k++)
				if (strcmp(single_headers[k], name) == 0)
					request__set_malformed(r, "duplicate_header",
							       "the request repeats the %s header",
							       single_headers[k]);
			break;
		}
	}
}

static void read_token(struct request *r, const struct jwt_keyset *keys,
		       struct jwt_cache *tokens)
{
	const char *auth = http_message__header(r->http, "authorization");
	const char *tok;
	size_t len;

	if (!auth)
		return;
	if (jwt__bearer(auth, &tok, &len)) {
		/* Another scheme (Basic, DPoP...): not a claim we can read,
		 * and not nothing either. */
		request__set_malformed(r, "bad_authorization",
				       "the Authorization header is not a Bearer credential");
		return;
	}
	jwt_cache__get(tokens, keys, tok, len, &r->token, &r->token_shared);
}

static void summarize_body(struct request *r)
{
	size_t i;

	for (i = 0; i < r->body.n_msgs; i++) {
		const struct mcp_message *m = &r->body.msgs[i];

		if (!r->method && m->method) {
			r->method = m->method;
			r->id = m->id;
		}
		if (!r->tool && m->tool)
			r->tool = m->tool;
		if (m->method && strcmp(m->method, "initialize") == 0)
			r->is_initialize = true;
		if (!r->client_name && m->client_name) {
			r->client_name = m->client_name;
			r->client_version = m->client_version;
		}
	}
}

static int read_request(struct request *r, const struct http_message *m,
			const struct jwt_keyset *keys, struct jwt_cache *tokens,
			const struct mcp_body *parsed)
{
	struct mcp_headers hdrs;
	size_t i;
	int err;

	memset(r, 0, sizeof(*r));
	r->http = m;
	check_repeats(r, m);
	r->session_id = http_message__header(m, "mcp-session-id");
	r->protocol_version = http_message__header(m, "mcp-protocol-version");
	r->user_agent = http_message__header(m, "user-agent");
	r->era = mcp__era(r->protocol_version);
	read_token(r, keys, tokens);

	if (strcmp(m->method, "POST") == 0) {
		hdrs.method = http_message__header(m, "mcp-method");
		hdrs.name = http_message__header(m, "mcp-name");
		hdrs.protocol_version = r->protocol_version;
		if (parsed) {
			r->body = *parsed;
			r->body_shared = true;
		} else if ((err = mcp__parse(m->body ? m->body : "", m->body_len, &hdrs, &r->body))) {
			return err;
		}
		r->has_body = true;
		if (r->body.error)
			request__set_malformed(r, r->body.error, "%s",
					       r->body.error_detail ? r->body.error_detail :
					       "the body is not an acceptable JSON-RPC message");
		summarize_body(r);
		if (r->era == MCP_ERA_UNKNOWN) {
			for (i = 0; i < r->body.n_msgs; i++)
				if (r->body.msgs[i].protocol_version)
					r->era = mcp__era(r->body.msgs[i].protocol_version);
		}
	} else if (strcmp(m->method, "GET") == 0 || strcmp(m->method, "DELETE") == 0) {
		if (m->body_len)
			request__set_malformed(r, "unexpected_body",
					       "a %s request to an MCP endpoint carries a body",
					       m->method);
		r->method = strcmp(m->method, "GET") == 0 ? "GET stream" : "DELETE session";
	} else {
		request__set_malformed(r, "bad_method",
				       "HTTP method %s is not used by MCP's Streamable HTTP "
				       "transport", m->method);
	}
	return 0;
}

int request__read(struct request *r, const struct http_message *m, const struct jwt_keyset *keys,
		  struct jwt_cache *tokens)
{
	return read_request(r, m, keys, tokens, NULL);
}

int request__read_parsed(struct request *r, const struct http_message *m,
			 const struct jwt_keyset *keys, struct jwt_cache *tokens,
			 const struct mcp_body *parsed)
{
	return read_request(r, m, keys, tokens, parsed);
}

int request__read_head(struct request *r, const struct http_message *m,
		       const struct jwt_keyset *keys, struct jwt_cache *tokens)
{
	memset(r, 0, sizeof(*r));
	r->http = m;
	check_repeats(r, m);
	r->session_id = http_message__header(m, "mcp-session-id");
	r->protocol_version = http_message__header(m, "mcp-protocol-version");
	r->user_agent = http_message__header(m, "user-agent");
	r->era = mcp__era(r->protocol_version);
	r->body_unread = true;
	read_token(r, keys, tokens);
	return 0;
}

void request__release(struct request *r)
{
	if (!r->token_shared)
		jwt_facts__release(&r->token);
	if (!r->body_shared)
		mcp_body__release(&r->body);
}

static void set_str(json_t *o, const char *key, const char *val)
{
	if (val)
		json_object_set_new(o, key, json_string(val));
}

json_t *request__claim_json(const struct request *r)
{
	const struct jwt_facts *t = &r->token;
	json_t *o = json_object();

	if (t->present) {
		set_str(o, "iss", t->iss);
		set_str(o, "sub", t->sub);
		set_str(o, "aud", t->aud);
		set_str(o, "client_id", t->client_id);
		set_str(o, "azp", t->azp);
		set_str(o, "jti", t->jti);
		set_str(o, "scope", t->scope);
		if (t->has_exp)
			json_object_set_new(o, "exp", json_integer(t->exp));
		if (t->cnf)
			json_object_set_new(o, "cnf", json_loads(t->cnf, 0, NULL));
		set_str(o, "token_sha256", t->sha256);
		json_object_set_new(o, "token_type", json_string(t->is_jwt ? "jwt" : "opaque"));
		if (t->error)
			set_str(o, "token_error", t->error);
		if (t->sig != JWT_SIG_UNCHECKED) {
			static const char *const names[] = {
				[JWT_SIG_UNCHECKED] = "unchecked", [JWT_SIG_VALID] = "valid",
				[JWT_SIG_INVALID] = "invalid", [JWT_SIG_NO_KEY] = "no_key",
				[JWT_SIG_UNSUPPORTED] = "unsupported",
			};

			set_str(o, "token_signature", names[t->sig]);
		}
		if (t->k8s_pod_uid) {
			json_t *k = json_object();

			set_str(k, "namespace", t->k8s_namespace);
			set_str(k, "pod_name", t->k8s_pod_name);
			set_str(k, "pod_uid", t->k8s_pod_uid);
			set_str(k, "service_account", t->k8s_sa_name);
			json_object_set_new(o, "kubernetes", k);
		}
	}
	if (r->client_name || r->client_version) {
		json_t *ci = json_object();

		set_str(ci, "name", r->client_name);
		set_str(ci, "version", r->client_version);
		if (r->client_info_from_session)
			json_object_set_new(ci, "from_session", json_true());
		json_object_set_new(o, "client_info", ci);
	}
	set_str(o, "session_id", r->session_id);
	set_str(o, "protocol_version", r->protocol_version);
	set_str(o, "user_agent", r->user_agent);
	return o;
}

void request__write_request(const struct request *r, struct output_line *l)
{
	size_t i;

	oline__open(l, "request");
	oline__str(l, "http_method", r->http->method);
	oline__str(l, "path", r->http->target);
	oline__str(l, "method", r->method);
	oline__str(l, "tool", r->tool);
	if (r->id)	/* compact JSON already (mcp.c) */
		oline__raw(l, "id", r->id, strlen(r->id));
	if (r->body.batch) {
		oline__open_array(l, "batch");
		for (i = 0; i < r->body.n_msgs; i++) {
			oline__open(l, NULL);
			oline__str(l, "method", r->body.msgs[i].method);
			oline__str(l, "tool", r->body.msgs[i].tool);
			oline__close(l);
		}
		oline__close_array(l);
	}
	oline__str(l, "era", r->era == MCP_ERA_STATELESS ? "2026-07-28+" :
			     r->era == MCP_ERA_SESSION ? "session" : "unknown");
	/* A body not read (or not all in yet) is as long as its head says. */
	oline__int(l, "body_bytes", r->body_unread && r->http->content_length >= 0 ?
		   r->http->content_length : (long long)r->http->body_len);
	if (r->body_unread)
		oline__bool(l, "body_unread", true);
	oline__close(l);
}
