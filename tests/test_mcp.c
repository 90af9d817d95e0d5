// SPDX-License-Identifier: GPL-2.0
/*
 * MCP body reading: what each message claims and asks for, in both eras,
 * and every way a body is refused (reason code and alert sentence).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mcp.h"

static int parse(const char *body, const struct mcp_headers *h, struct mcp_body *b)
{
	return mcp__parse(body, strlen(body), h, b);
}

/* Parses body and checks that it is refused with code. */
static bool refused(const char *body, const struct mcp_headers *h, const char *code)
{
	struct mcp_body b = {};
	bool ok;

	if (!ASSERT_OK(parse(body, h, &b), "mcp__parse"))
		return false;
	ok = ASSERT_STREQ(b.error, code, body);
	if (ok)
		ok = ASSERT_OK_PTR(b.error_detail, "error_detail");
	mcp_body__release(&b);
	return ok;
}

void test_mcp_initialize(void)
{
	const char *body =
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
		"{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
		"\"clientInfo\":{\"name\":\"ci-bot\",\"version\":\"1.2.3\"}}}";
	struct mcp_body b = {};
	struct mcp_message *m;

	if (!ASSERT_OK(parse(body, NULL, &b), "parse"))
		goto cleanup;
	if (!ASSERT_NULL(b.error, "error") || !ASSERT_EQ(b.n_msgs, 1, "n_msgs"))
		goto cleanup;
	m = &b.msgs[0];
	ASSERT_FALSE(b.batch, "batch");
	ASSERT_STREQ(m->method, "initialize", "method");
	ASSERT_STREQ(m->id, "1", "id");
	ASSERT_TRUE(m->is_request, "is_request");
	ASSERT_FALSE(m->is_notification, "is_notification");
	ASSERT_STREQ(m->client_name, "ci-bot", "client name");
	ASSERT_STREQ(m->client_version, "1.2.3", "client version");
	ASSERT_FALSE(m->client_info_from_meta, "from meta");
	ASSERT_STREQ(m->protocol_version, "2025-06-18", "protocolVersion");
	ASSERT_NULL(m->tool, "tool");
cleanup:
	mcp_body__release(&b);
}

void test_mcp_tools_call(void)
{
	const char *body =
		"{\"jsonrpc\":\"2.0\",\"id\":\"req-7\",\"method\":\"tools/call\","
		"\"params\":{\"name\":\"search_tickets\",\"arguments\":{\"q\":\"x\"}}}";
	struct mcp_body b = {};

	if (test__start_subtest("tool_name")) {
		if (!ASSERT_OK(parse(body, NULL, &b), "parse") || !ASSERT_NULL(b.error, "error"))
			goto cleanup;
		ASSERT_STREQ(b.msgs[0].tool, "search_tickets", "tool");
		ASSERT_STREQ(b.msgs[0].id, "\"req-7\"", "string id as JSON");
		mcp_body__release(&b);
	}
	if (test__start_subtest("resources_and_prompts")) {
		if (!ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/read\","
				     "\"params\":{\"uri\":\"file:///etc/hosts\"}}", NULL, &b), "parse"))
			goto cleanup;
		ASSERT_STREQ(b.msgs[0].resource_uri, "file:///etc/hosts", "uri");
		mcp_body__release(&b);
		if (!ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"prompts/get\","
				     "\"params\":{\"name\":\"review\"}}", NULL, &b), "parse"))
			goto cleanup;
		ASSERT_STREQ(b.msgs[0].prompt, "review", "prompt");
		mcp_body__release(&b);
	}
	if (test__start_subtest("bad_params")) {
		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":[1]}",
			NULL, "bad_params");
		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":5}}",
			NULL, "bad_params");
		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"}", NULL, "bad_params");
		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":\"x\"}",
			NULL, "bad_params");
		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
			"{\"clientInfo\":\"ci-bot\"}}", NULL, "bad_params");
		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":"
			"{\"_meta\":[]}}", NULL, "bad_params");
	}
	/* Kept with the session: a name or version past 256 bytes is refused,
	 * in initialize and in the 2026-era _meta; 256 bytes still pass. */
	if (test__start_subtest("client_info_bounded")) {
		char text[1200], name[300];

		memset(name, 'n', 257);
		name[257] = '\0';
		snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":1,"
			 "\"method\":\"initialize\","
			 "\"params\":{\"protocolVersion\":\"2025-11-25\",\"clientInfo\":"
			 "{\"name\":\"%s\",\"version\":\"1\"}}}", name);
		refused(text, NULL, "bad_params");
		snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":1,"
			 "\"method\":\"tools/list\","
			 "\"params\":{\"_meta\":{\"io.modelcontextprotocol/clientInfo\":"
			 "{\"name\":\"ci\",\"version\":\"%s\"}}}}", name);
		refused(text, NULL, "bad_params");
		name[256] = '\0';
		snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":1,"
			 "\"method\":\"initialize\","
			 "\"params\":{\"protocolVersion\":\"2025-11-25\",\"clientInfo\":"
			 "{\"name\":\"%s\",\"version\":\"1\"}}}", name);
		if (ASSERT_OK(parse(text, NULL, &b), "256 bytes")) {
			ASSERT_NULL(b.error, "accepted");
			ASSERT_EQ(strlen(b.msgs[0].client_name ?: ""), 256, "name kept");
		}
		mcp_body__release(&b);
	}
cleanup:
	mcp_body__release(&b);
}

void test_mcp_notification_and_response(void)
{
	struct mcp_body b = {};

	if (!ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
			     NULL, &b), "parse") || !ASSERT_NULL(b.error, "error"))
		goto cleanup;
	ASSERT_TRUE(b.msgs[0].is_notification, "is_notification");
	ASSERT_FALSE(b.msgs[0].is_request, "is_request");
	ASSERT_NULL(b.msgs[0].id, "id");
	mcp_body__release(&b);

	/* A client answering a server request (sampling, roots...). */
	if (!ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}", NULL, &b), "parse") ||
	    !ASSERT_NULL(b.error, "response error"))
		goto cleanup;
	ASSERT_TRUE(b.msgs[0].is_response, "is_response");
	ASSERT_NULL(b.msgs[0].method, "method");
	ASSERT_STREQ(b.msgs[0].id, "4", "id");
	mcp_body__release(&b);

	refused("{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{},\"error\":{}}", NULL, "not_jsonrpc");
	refused("{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"x\",\"result\":{}}", NULL, "not_jsonrpc");
	refused("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"x\"}", NULL, "not_jsonrpc");
	refused("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}", NULL, "not_jsonrpc");
	refused("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}", NULL, "not_jsonrpc");
	refused("{\"id\":1,\"method\":\"x\"}", NULL, "not_jsonrpc");
	refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":7}", NULL, "not_jsonrpc");
	refused("\"just a string\"", NULL, "not_jsonrpc");
cleanup:
	mcp_body__release(&b);
}

/* A batch of n notifications. */
static char *batch_of(size_t n)
{
	static const char one[] = "{\"jsonrpc\":\"2.0\",\"method\":\"n\"}";
	char *s = malloc(n * sizeof(one) + 3);
	size_t i, off = 0;

	if (!s)
		return NULL;
	s[off++] = '[';
	for (i = 0; i < n; i++)
		off += (size_t)sprintf(s + off, "%s%s", i ? "," : "", one);
	strcpy(s + off, "]");
	return s;
}

void test_mcp_batch(void)
{
	const char *body =
		"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\"}},"
		" {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}},"
		" {\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":1,\"message\":\"no\"}}]";
	struct mcp_body b = {};
	char *big = NULL;

	if (test__start_subtest("three")) {
		if (!ASSERT_OK(parse(body, NULL, &b), "parse") || !ASSERT_NULL(b.error, "error"))
			goto cleanup;
		ASSERT_TRUE(b.batch, "batch");
		if (!ASSERT_EQ(b.n_msgs, 3, "n_msgs"))
			goto cleanup;
		ASSERT_STREQ(b.msgs[0].tool, "a", "tool");
		ASSERT_TRUE(b.msgs[1].is_notification, "notification");
		ASSERT_TRUE(b.msgs[2].is_response, "response");
		mcp_body__release(&b);
	}
	if (test__start_subtest("empty"))
		refused("[]", NULL, "empty_batch");
	if (test__start_subtest("too_many")) {
		big = batch_of(MCP_MAX_BATCH + 1);
		if (!ASSERT_OK_PTR(big, "batch_of"))
			goto cleanup;
		refused(big, NULL, "too_many_messages");
		free(big);
		/* Exactly the limit is fine. */
		big = batch_of(MCP_MAX_BATCH);
		if (!ASSERT_OK_PTR(big, "batch_of"))
			goto cleanup;
		if (ASSERT_OK(parse(big, NULL, &b), "parse at limit")) {
			ASSERT_NULL(b.error, "error at limit");
			ASSERT_EQ(b.n_msgs, MCP_MAX_BATCH, "n_msgs at limit");
		}
		mcp_body__release(&b);
	}
	if (test__start_subtest("bad_member"))
		refused("[{\"jsonrpc\":\"2.0\",\"method\":\"a\"}, 5]", NULL, "not_jsonrpc");
cleanup:
	free(big);
	mcp_body__release(&b);
}

void test_mcp_json_strictness(void)
{
	struct mcp_body b = {};

	if (test__start_subtest("duplicate_keys")) {
		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
			"{\"name\":\"search\",\"name\":\"delete_all\"}}", NULL, "duplicate_key");
		refused("{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"method\":\"x\"}", NULL,
			"duplicate_key");
	}
	if (test__start_subtest("bad_json")) {
		refused("{\"jsonrpc\":\"2.0\",", NULL, "bad_json");
		refused("{\"jsonrpc\":\"2.0\",\"method\":\"x\"} trailing", NULL, "bad_json");
		refused("", NULL, "bad_json");
		refused("{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}", NULL, "bad_json");
	}
	if (test__start_subtest("nul_in_string")) {
		static const char raw[] = "{\"jsonrpc\":\"2.0\",\"method\":\"a\0b\"}";

		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
			"{\"name\":\"search\\u0000delete_all\"}}", NULL, "bad_json");
		refused("{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":{\"a\\u0000\":1}}", NULL,
			"bad_json");
		if (ASSERT_OK(mcp__parse(raw, sizeof(raw) - 1, NULL, &b), "raw NUL"))
			ASSERT_STREQ(b.error, "bad_json", "raw NUL byte");
		mcp_body__release(&b);
	}
	if (test__start_subtest("big_integer")) {
		/* Valid JSON a JavaScript server accepts: not malformed. */
		if (ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":"
				    "{\"name\":\"t\",\"arguments\":{\"n\":123456789012345678901234}}}",
				    NULL, &b), "parse")) {
			ASSERT_NULL(b.error, "error");
			ASSERT_STREQ(b.msgs[0].id, "3", "id");
		}
		mcp_body__release(&b);
		if (ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"id\":123456789012345678901234567890,"
				    "\"method\":\"tools/list\"}", NULL, &b), "parse")) {
			ASSERT_NULL(b.error, "huge integer id");
			ASSERT_OK_PTR(b.msgs[0].id, "id kept");
		}
		mcp_body__release(&b);
	}
	if (test__start_subtest("detail_is_escaped")) {
		if (ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\x01oops", NULL, &b),
			      "parse")) {
			ASSERT_STREQ(b.error, "bad_json", "error");
			ASSERT_FALSE(b.error_detail && strchr(b.error_detail, '\x01'), "no raw control");
		}
		mcp_body__release(&b);
	}
	mcp_body__release(&b);
}

static const char *const stateless_call =
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
	"\"name\":\"search\",\"arguments\":{},\"_meta\":{"
	"\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
	"\"io.modelcontextprotocol/clientInfo\":{\"name\":\"ci-bot\",\"version\":\"2.0\"},"
	"\"io.modelcontextprotocol/clientCapabilities\":{}}}}";

void test_mcp_stateless(void)
{
	struct mcp_headers h = {
		.method = "tools/call", .name = "search", .protocol_version = "2026-07-28",
	};
	struct mcp_body b = {};

	if (test__start_subtest("meta_client_info")) {
		if (!ASSERT_OK(parse(stateless_call, &h, &b), "parse"))
			goto cleanup;
		if (!ASSERT_NULL(b.error, "error")) {
			test__log("detail: %s", b.error_detail);
			goto cleanup;
		}
		ASSERT_STREQ(b.msgs[0].client_name, "ci-bot", "client name");
		ASSERT_STREQ(b.msgs[0].client_version, "2.0", "client version");
		ASSERT_TRUE(b.msgs[0].client_info_from_meta, "from meta");
		ASSERT_STREQ(b.msgs[0].protocol_version, "2026-07-28", "protocol version");
		ASSERT_STREQ(b.msgs[0].tool, "search", "tool");
		mcp_body__release(&b);

		/* Era from _meta alone, headers trimmed as HTTP allows. */
		h = (struct mcp_headers){ .method = "tools/call", .name = "  search\t" };
		if (ASSERT_OK(parse(stateless_call, &h, &b), "parse"))
			ASSERT_NULL(b.error, "no version header");
		mcp_body__release(&b);
	}
	if (test__start_subtest("method_mismatch")) {
		h = (struct mcp_headers){ .method = "tools/list", .name = "search",
					  .protocol_version = "2026-07-28" };
		if (!ASSERT_OK(parse(stateless_call, &h, &b), "parse"))
			goto cleanup;
		ASSERT_STREQ(b.error, "header_mismatch", "error");
		ASSERT_STREQ(b.error_detail,
			     "Mcp-Method header says \"tools/list\" but the body calls method \"tools/call\".",
			     "detail");
		mcp_body__release(&b);
		/* Method values are case-sensitive. */
		h.method = "TOOLS/CALL";
		refused(stateless_call, &h, "header_mismatch");
	}
	if (test__start_subtest("name_mismatch")) {
		h = (struct mcp_headers){ .method = "tools/call", .name = "delete_all",
					  .protocol_version = "2026-07-28" };
		if (!ASSERT_OK(parse(stateless_call, &h, &b), "parse"))
			goto cleanup;
		ASSERT_STREQ(b.error, "header_mismatch", "error");
		ASSERT_STREQ(b.error_detail,
			     "Mcp-Name header says \"delete_all\" but the body calls tool \"search\".",
			     "detail");
		mcp_body__release(&b);
		h.name = "Search";
		refused(stateless_call, &h, "header_mismatch");
	}
	if (test__start_subtest("missing_headers")) {
		h = (struct mcp_headers){ .name = "search", .protocol_version = "2026-07-28" };
		refused(stateless_call, &h, "missing_header");
		h = (struct mcp_headers){ .method = "tools/call", .protocol_version = "2026-07-28" };
		refused(stateless_call, &h, "missing_header");
		/* Era from _meta when the version header is absent. */
		refused(stateless_call, NULL, "missing_header");
		/* tools/list needs Mcp-Method only. */
		h = (struct mcp_headers){ .method = "tools/list", .protocol_version = "2026-07-28" };
		if (ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", &h, &b),
			      "parse"))
			ASSERT_NULL(b.error, "tools/list without Mcp-Name");
		mcp_body__release(&b);
		refused("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\"}",
			&(struct mcp_headers){ .protocol_version = "2026-07-28" }, "missing_header");
	}
	if (test__start_subtest("base64_name")) {
		const char *cafe = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
				   "\"params\":{\"name\":\"caf\xc3\xa9\"}}";

		h = (struct mcp_headers){ .method = "tools/call", .name = "=?base64?Y2Fmw6k=?=",
					  .protocol_version = "2026-07-28" };
		if (ASSERT_OK(parse(cafe, &h, &b), "parse"))
			ASSERT_NULL(b.error, "base64 Mcp-Name");
		mcp_body__release(&b);
		h.name = "=?BASE64?Y2Fmw6k=?=";
		if (ASSERT_OK(parse(cafe, &h, &b), "parse"))
			ASSERT_NULL(b.error, "sentinel is case-insensitive");
		mcp_body__release(&b);
		h.name = "=?base64?Y2Fmw6k?=";
		refused(cafe, &h, "header_mismatch");
		h.name = "=?base64?Y2F!w6k=?=";
		refused(cafe, &h, "header_mismatch");
	}
	if (test__start_subtest("version_disagreement")) {
		/* Header claims the session era to dodge the header rules. */
		h = (struct mcp_headers){ .protocol_version = "2025-06-18" };
		refused(stateless_call, &h, "header_mismatch");
	}
	if (test__start_subtest("no_batches")) {
		h = (struct mcp_headers){ .method = "tools/list", .protocol_version = "2026-07-28" };
		refused("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}]", &h,
			"batch_not_allowed");
	}
	if (test__start_subtest("resources_read")) {
		h = (struct mcp_headers){ .method = "resources/read", .name = "file:///a?x=1",
					  .protocol_version = "2026-07-28" };
		if (ASSERT_OK(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\","
				    "\"params\":{\"uri\":\"file:///a?x=1\"}}", &h, &b), "parse"))
			ASSERT_NULL(b.error, "uri matches");
		mcp_body__release(&b);
		h.name = "file:///b";
		refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\","
			"\"params\":{\"uri\":\"file:///a?x=1\"}}", &h, "header_mismatch");
	}
cleanup:
	mcp_body__release(&b);
}

void test_mcp_session_era_headers(void)
{
	const char *call = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
			   "\"params\":{\"name\":\"search\"}}";
	struct mcp_headers h = { .protocol_version = "2025-06-18" };
	struct mcp_body b = {};

	/* Absent headers are fine before 2026-07-28... */
	if (ASSERT_OK(parse(call, &h, &b), "parse"))
		ASSERT_NULL(b.error, "no MCP headers");
	mcp_body__release(&b);
	if (ASSERT_OK(parse(call, NULL, &b), "parse"))
		ASSERT_NULL(b.error, "no headers at all");
	mcp_body__release(&b);
	/* ...but present ones must agree. */
	h.method = "tools/list";
	refused(call, &h, "header_mismatch");
	h.method = "tools/call";
	h.name = "delete_all";
	refused(call, &h, "header_mismatch");
	h.name = "search";
	if (ASSERT_OK(parse(call, &h, &b), "parse"))
		ASSERT_NULL(b.error, "agreeing headers");
	mcp_body__release(&b);
	/* A response does not have a method to name. */
	refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
		&(struct mcp_headers){ .method = "tools/call" }, "header_mismatch");
	/* A batch: the header must agree with every message. */
	refused("[{\"jsonrpc\":\"2.0\",\"method\":\"a\"},{\"jsonrpc\":\"2.0\",\"method\":\"b\"}]",
		&(struct mcp_headers){ .method = "a" }, "header_mismatch");
}

void test_mcp_initialize_meta_conflict(void)
{
	/* Two clientInfo objects that differ: which one is the identity? */
	refused("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
		"\"clientInfo\":{\"name\":\"a\",\"version\":\"1\"},\"_meta\":{"
		"\"io.modelcontextprotocol/clientInfo\":{\"name\":\"b\",\"version\":\"1\"}}}}",
		NULL, "bad_params");
}

void test_mcp_era(void)
{
	ASSERT_EQ(mcp__era("2024-11-05"), MCP_ERA_SESSION, "2024-11-05");
	ASSERT_EQ(mcp__era("2025-03-26"), MCP_ERA_SESSION, "2025-03-26");
	ASSERT_EQ(mcp__era("2025-06-18"), MCP_ERA_SESSION, "2025-06-18");
	ASSERT_EQ(mcp__era("2025-11-25"), MCP_ERA_SESSION, "2025-11-25");
	ASSERT_EQ(mcp__era("2026-07-28"), MCP_ERA_STATELESS, "2026-07-28");
	ASSERT_EQ(mcp__era("2027-01-01"), MCP_ERA_STATELESS, "2027-01-01");
	ASSERT_EQ(mcp__era("2026-01-15"), MCP_ERA_UNKNOWN, "between the eras");
	ASSERT_EQ(mcp__era(NULL), MCP_ERA_UNKNOWN, "NULL");
	ASSERT_EQ(mcp__era(""), MCP_ERA_UNKNOWN, "empty");
	ASSERT_EQ(mcp__era("2026-7-28"), MCP_ERA_UNKNOWN, "short");
	ASSERT_EQ(mcp__era("2026-07-28 "), MCP_ERA_UNKNOWN, "trailing space");
	ASSERT_EQ(mcp__era("2026-13-01"), MCP_ERA_UNKNOWN, "month 13");
	ASSERT_EQ(mcp__era("2026-00-10"), MCP_ERA_UNKNOWN, "month 0");
	ASSERT_EQ(mcp__era("2026-07-32"), MCP_ERA_UNKNOWN, "day 32");
	ASSERT_EQ(mcp__era("2026/07/28"), MCP_ERA_UNKNOWN, "slashes");
	ASSERT_EQ(mcp__era("DRAFT-2026"), MCP_ERA_UNKNOWN, "draft");
}

/* The method of a body known only by its first bytes (id in *id). */
static int prefix(const char *body, size_t len, char *out, char *id)
{
	struct mcp_prefix p;
	int ret = mcp__prefix(body, len, &p);

	strcpy(out, p.method);
	if (id)
		strcpy(id, p.id);
	return ret;
}

/* The same for a whole C string. */
static int whole(const char *body, char *out, char *id)
{
	return prefix(body, strlen(body), out, id);
}

void test_mcp_prefix(void)
{
	const char *body = "{\"jsonrpc\":\"2.0\",\"id\":{\"a\":[1,\"}\\\"]\"]},\"params\":"
			   "{\"x\":\"method\"} , \"method\" : \"tools/call\",\"more\":1}";
	const char *m = strstr(body, "\"method\" :");
	char out[64], id[64];
	size_t n;

	/* Found once its value's closing quote is in, whatever precedes it
	 * (nested containers, brackets and quotes inside strings, a nested
	 * member named method). */
	ASSERT_EQ(whole(body, out, id), 1, "whole body");
	ASSERT_STREQ(out, "tools/call", "method");
	ASSERT_STREQ(id, "", "an id that is an object is not named");
	n = (size_t)(strstr(m, "call\"") - body) + 5;
	ASSERT_EQ(prefix(body, n, out, NULL), 1, "cut just after the value");
	ASSERT_STREQ(out, "tools/call", "method at the cut");
	for (n = 0; n < (size_t)(strstr(m, "call\"") - body) + 4; n++)
		if (!ASSERT_EQ(prefix(body, n, out, NULL), 0, "any shorter prefix: not yet"))
			break;
	ASSERT_EQ(whole("{\"id\":17,\"method\":\"ping\"}", out, id), 1, "number id");
	ASSERT_STREQ(id, "17", "id");
	ASSERT_EQ(whole("{\"method\":\"ping\",\"id\":\"a-b\",\"params\":{", out, id), 1,
		  "string id after the method");
	ASSERT_STREQ(id, "\"a-b\"", "id as compact JSON");
	/* An id that could not go into an event as it is: left out. */
	ASSERT_EQ(whole("{\"id\":\"a\nb\",\"method\":\"ping\"}", out, id), 1, "raw newline in id");
	ASSERT_STREQ(id, "", "not taken");
	ASSERT_EQ(whole("{\"id\":true,\"method\":\"ping\"}", out, id), 1, "literal id");
	ASSERT_STREQ(id, "", "not taken");

	/* Not a plain request object: refused, so the request is held whole. */
	ASSERT_EQ(whole("[{\"method\":\"ping\"}]", out, NULL), -1, "batch");
	ASSERT_EQ(whole("{\"id\":1}", out, NULL), -1, "object without method");
	ASSERT_EQ(whole("{\"method\":7}", out, NULL), -1, "method not a string");
	ASSERT_EQ(whole("{\"method\":\"tools\\/call\"}", out, NULL), -1, "escaped method");
	ASSERT_EQ(whole("{\"m\\u0065thod\":\"x\"}", out, NULL), -1, "escaped key: not matched");
	ASSERT_EQ(whole("{\"method\":\"012345678901234567890123456789012345678901234567890123456789"
			"0123\"}", out, NULL), -1, "method longer than out");
	ASSERT_EQ(whole("x", out, NULL), -1, "not JSON");
	ASSERT_EQ(whole("  \n", out, NULL), 0, "whitespace only: not yet");
}
