// SPDX-License-Identifier: GPL-2.0
/*
 * HTTP/1.1 parser tests. Real captured requests are fed at every split point
 * and one byte at a time, and must come out the same each way, offsets
 * included; every limit is tried at its edge; every ambiguity the parser
 * must refuse is fed whole and byte by byte and must fail with its reason.
 */
#include <stdlib.h>

#include "harness.h"
#include "http.h"

/* Node 20 fetch (undici) as the MCP TypeScript SDK's Streamable HTTP client
 * sends a tools/call; fetch's Headers lower-case every name. */
static const char mcp_post[] =
	"POST /mcp HTTP/1.1\r\n"
	"host: 127.0.0.1:8080\r\n"
	"connection: keep-alive\r\n"
	"authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20iLCJzdWIiOiJjaS1ib3QiLCJjbGllbnRfaWQiOiJjaS1ib3QifQ.c2lnbmF0dXJl\r\n"
	"content-type: application/json\r\n"
	"accept: application/json, text/event-stream\r\n"
	"mcp-session-id: 3f2b9c1e-7a4d-4e8b-9c2a-1d5e6f7a8b9c\r\n"
	"mcp-protocol-version: 2025-06-18\r\n"
	"accept-language: *\r\n"
	"sec-fetch-mode: cors\r\n"
	"user-agent: node\r\n"
	"accept-encoding: gzip, deflate\r\n"
	"content-length: 115\r\n"
	"\r\n"
	"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"search_tickets\",\"arguments\":{\"query\":\"login bug\"}}}";

static const char mcp_post_body[] =
	"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"search_tickets\",\"arguments\":{\"query\":\"login bug\"}}}";

/* Node's http.request streaming an initialize with req.write() per piece:
 * no length known up front, so chunked. Mixed-case names as Node keeps them. */
static const char chunked_post[] =
	"POST /mcp HTTP/1.1\r\n"
	"Content-Type: application/json\r\n"
	"Accept: application/json, text/event-stream\r\n"
	"Authorization: Bearer opaque-7c1d2e\r\n"
	"MCP-Protocol-Version: 2025-06-18\r\n"
	"Host: localhost:3000\r\n"
	"Connection: keep-alive\r\n"
	"Transfer-Encoding: chunked\r\n"
	"\r\n"
	"2e\r\n"
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
	"\r\n"
	"3b\r\n"
	"\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
	"\r\n"
	"32\r\n"
	"\"clientInfo\":{\"name\":\"ci-bot\",\"version\":\"1.4.2\"}}}"
	"\r\n"
	"0\r\n"
	"\r\n";

static const char chunked_post_body[] =
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\","
	"\"params\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
	"\"clientInfo\":{\"name\":\"ci-bot\",\"version\":\"1.4.2\"}}}";

/* The SDK opening its standalone SSE stream. */
static const char sse_get[] =
	"GET /mcp HTTP/1.1\r\n"
	"host: 127.0.0.1:8080\r\n"
	"connection: keep-alive\r\n"
	"Accept: text/event-stream\r\n"
	"mcp-session-id: 3f2b9c1e-7a4d-4e8b-9c2a-1d5e6f7a8b9c\r\n"
	"mcp-protocol-version: 2025-06-18\r\n"
	"accept-language: *\r\n"
	"sec-fetch-mode: cors\r\n"
	"user-agent: node\r\n"
	"accept-encoding: gzip, deflate\r\n"
	"\r\n";

#define RAW(s) (s), (sizeof(s) - 1)

struct want_header {
	const char *name;
	const char *value;
};

struct want {
	const char *method;		/* NULL: a response */
	const char *target;
	int status;
	int version_minor;
	const struct want_header *headers;	/* NULL-name terminated */
	const char *body;
	size_t body_len;
	bool body_truncated;
	bool chunked;
	long long content_length;
	uint64_t start;
	uint64_t head_end;
	uint64_t end;
};

static const struct want_header mcp_post_headers[] = {
	{ "host", "127.0.0.1:8080" },
	{ "connection", "keep-alive" },
	{ "authorization", "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20iLCJzdWIiOiJjaS1ib3QiLCJjbGllbnRfaWQiOiJjaS1ib3QifQ.c2lnbmF0dXJl" },
	{ "content-type", "application/json" },
	{ "accept", "application/json, text/event-stream" },
	{ "mcp-session-id", "3f2b9c1e-7a4d-4e8b-9c2a-1d5e6f7a8b9c" },
	{ "mcp-protocol-version", "2025-06-18" },
	{ "accept-language", "*" },
	{ "sec-fetch-mode", "cors" },
	{ "user-agent", "node" },
	{ "accept-encoding", "gzip, deflate" },
	{ "content-length", "115" },
	{ NULL, NULL },
};

static const struct want_header chunked_post_headers[] = {
	{ "content-type", "application/json" },
	{ "accept", "application/json, text/event-stream" },
	{ "authorization", "Bearer opaque-7c1d2e" },
	{ "mcp-protocol-version", "2025-06-18" },
	{ "host", "localhost:3000" },
	{ "connection", "keep-alive" },
	{ "transfer-encoding", "chunked" },
	{ NULL, NULL },
};

static const struct want_header sse_get_headers[] = {
	{ "host", "127.0.0.1:8080" },
	{ "connection", "keep-alive" },
	{ "accept", "text/event-stream" },
	{ "mcp-session-id", "3f2b9c1e-7a4d-4e8b-9c2a-1d5e6f7a8b9c" },
	{ "mcp-protocol-version", "2025-06-18" },
	{ "accept-language", "*" },
	{ "sec-fetch-mode", "cors" },
	{ "user-agent", "node" },
	{ "accept-encoding", "gzip, deflate" },
	{ NULL, NULL },
};

static uint64_t head_len(const char *raw)
{
	return (uint64_t)(strstr(raw, "\r\n\r\n") - raw) + 4;
}

static struct want want_mcp_post(uint64_t at)
{
	return (struct want){
		.method = "POST", .target = "/mcp", .version_minor = 1,
		.headers = mcp_post_headers,
		.body = mcp_post_body, .body_len = sizeof(mcp_post_body) - 1,
		.content_length = 115,
		.start = at, .head_end = at + head_len(mcp_post),
		.end = at + sizeof(mcp_post) - 1,
	};
}

static struct want want_chunked_post(uint64_t at)
{
	return (struct want){
		.method = "POST", .target = "/mcp", .version_minor = 1,
		.headers = chunked_post_headers,
		.body = chunked_post_body, .body_len = sizeof(chunked_post_body) - 1,
		.chunked = true, .content_length = -1,
		.start = at, .head_end = at + head_len(chunked_post),
		.end = at + sizeof(chunked_post) - 1,
	};
}

static struct want want_sse_get(uint64_t at)
{
	return (struct want){
		.method = "GET", .target = "/mcp", .version_minor = 1,
		.headers = sse_get_headers,
		.body = "", .body_len = 0, .content_length = -1,
		.start = at, .head_end = at + sizeof(sse_get) - 1,
		.end = at + sizeof(sse_get) - 1,
	};
}

static bool msg_matches(const struct http_message *m, const struct want *w)
{
	size_t i = 0;

	if (!ASSERT_OK_PTR(m, "message"))
		return false;
	if (w->method) {
		if (!ASSERT_STREQ(m->method, w->method, "method") ||
		    !ASSERT_STREQ(m->target, w->target, "target"))
			return false;
	} else if (!ASSERT_EQ(m->status, w->status, "status")) {
		return false;
	}
	if (!ASSERT_EQ(m->version_minor, w->version_minor, "version"))
		return false;
	for (i = 0; w->headers && w->headers[i].name; i++) {
		if (!ASSERT_GE(m->n_headers, i + 1, "header count") ||
		    !ASSERT_STREQ(m->headers[i].name, w->headers[i].name, "header name") ||
		    !ASSERT_STREQ(m->headers[i].value, w->headers[i].value, "header value"))
			return false;
	}
	if (!ASSERT_EQ(m->n_headers, i, "header count"))
		return false;
	if (!ASSERT_OK_PTR(m->body, "body") ||
	    !ASSERT_EQ(m->body_len, w->body_len, "body length") ||
	    !ASSERT_MEMEQ(m->body, w->body, w->body_len, "body") ||
	    !ASSERT_EQ(m->body[m->body_len], '\0', "body NUL"))
		return false;
	return ASSERT_EQ(m->body_truncated, w->body_truncated, "truncated") &&
	       ASSERT_EQ(m->chunked, w->chunked, "chunked") &&
	       ASSERT_EQ(m->content_length, w->content_length, "content_length") &&
	       ASSERT_EQ(m->start, w->start, "start") &&
	       ASSERT_EQ(m->head_end, w->head_end, "head_end") &&
	       ASSERT_EQ(m->end, w->end, "end");
}

/* Takes the next message and checks it against w. */
static bool next_matches(struct http_parser *p, const struct want *w)
{
	struct http_message *m = http_parser__next(p);
	bool ok = msg_matches(m, w);

	http_message__free(m);
	return ok;
}

static bool feed_ok(struct http_parser *p, const char *data, size_t len)
{
	int err = http_parser__feed(p, data, len);

	if (err)
		test__log("feed error %d: %s", err, http_parser__error(p));
	return ASSERT_OK(err, "feed");
}

static void feed_bytes(struct http_parser *p, const char *data, size_t len, int *err)
{
	size_t i;

	for (i = 0; i < len && !*err; i++)
		*err = http_parser__feed(p, data + i, 1);
}

/*
 * Feeds raw split in two at every point, then one byte at a time, and checks
 * that exactly the wanted messages come out each time.
 */
static void check_all_splits(enum http_kind kind, const char *raw, size_t len,
			     const struct want *wants, size_t n_wants)
{
	struct http_parser *p = NULL;
	size_t k, i;
	int err = 0;

	for (k = 0; k <= len; k++) {
		p = http_parser__new(kind, NULL);
		if (!ASSERT_OK_PTR(p, "new"))
			return;
		if (!feed_ok(p, raw, k) || !feed_ok(p, raw + k, len - k)) {
			test__log("split at %zu", k);
			goto cleanup;
		}
		for (i = 0; i < n_wants; i++)
			if (!next_matches(p, &wants[i])) {
				test__log("split at %zu, message %zu", k, i);
				goto cleanup;
			}
		if (!ASSERT_NULL(http_parser__next(p), "no more messages") ||
		    !ASSERT_EQ(http_parser__offset(p), len, "offset") ||
		    !ASSERT_NULL(http_parser__error(p), "error"))
			goto cleanup;
		http_parser__free(p);
		p = NULL;
	}

	/* One byte at a time, watching partial() appear exactly between the
	 * end of each head and the end of its message. */
	p = http_parser__new(kind, NULL);
	if (!ASSERT_OK_PTR(p, "new"))
		return;
	i = 0;
	for (k = 0; k < len; k++) {
		const struct http_message *part;
		struct http_message *m;

		err = http_parser__feed(p, raw + k, 1);
		if (!ASSERT_OK(err, "one-byte feed")) {
			test__log("at byte %zu: %s", k, http_parser__error(p));
			goto cleanup;
		}
		part = http_parser__partial(p);
		if (i < n_wants && k + 1 >= wants[i].head_end && k + 1 < wants[i].end) {
			if (!ASSERT_OK_PTR(part, "partial") ||
			    !ASSERT_EQ(part->head_end, wants[i].head_end, "partial head_end") ||
			    !ASSERT_EQ(part->chunked, wants[i].chunked, "partial chunked"))
				goto cleanup;
		} else if (!ASSERT_NULL(part, "no partial")) {
			test__log("at byte %zu", k);
			goto cleanup;
		}
		m = http_parser__next(p);
		if (!m)
			continue;
		if (!ASSERT_EQ(k + 1, wants[i].end, "completed at its end"))
			goto cleanup;
		if (!msg_matches(m, &wants[i])) {
			http_message__free(m);
			goto cleanup;
		}
		http_message__free(m);
		i++;
	}
	ASSERT_EQ(i, n_wants, "messages");
cleanup:
	http_parser__free(p);
}

void test_http_split_requests(void)
{
	struct want w;

	if (test__start_subtest("mcp_post")) {
		w = want_mcp_post(0);
		check_all_splits(HTTP_REQUEST, RAW(mcp_post), &w, 1);
	}
	if (test__start_subtest("chunked_post")) {
		w = want_chunked_post(0);
		check_all_splits(HTTP_REQUEST, RAW(chunked_post), &w, 1);
	}
	if (test__start_subtest("sse_get")) {
		w = want_sse_get(0);
		check_all_splits(HTTP_REQUEST, RAW(sse_get), &w, 1);
	}
}

/* The three captures back to back, as one connection would carry them. */
void test_http_pipelined(void)
{
	char buf[4096];
	struct want w[4];
	size_t n = 0;
	struct http_parser *p = NULL;

	memcpy(buf + n, mcp_post, sizeof(mcp_post) - 1);
	w[0] = want_mcp_post(n);
	n += sizeof(mcp_post) - 1;
	memcpy(buf + n, sse_get, sizeof(sse_get) - 1);
	w[1] = want_sse_get(n);
	n += sizeof(sse_get) - 1;
	memcpy(buf + n, chunked_post, sizeof(chunked_post) - 1);
	w[2] = want_chunked_post(n);
	n += sizeof(chunked_post) - 1;
	memcpy(buf + n, mcp_post, sizeof(mcp_post) - 1);
	w[3] = want_mcp_post(n);
	n += sizeof(mcp_post) - 1;

	if (test__start_subtest("one_feed")) {
		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, buf, n))
			goto cleanup;
		if (!next_matches(p, &w[0]) || !next_matches(p, &w[1]) ||
		    !next_matches(p, &w[2]) || !next_matches(p, &w[3]))
			goto cleanup;
		ASSERT_NULL(http_parser__next(p), "no more");
		ASSERT_OK(http_parser__finish(p), "finish");
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("every_split"))
		check_all_splits(HTTP_REQUEST, buf, n, w, 4);
cleanup:
	http_parser__free(p);
}

void test_http_chunked(void)
{
	struct http_parser *p = NULL;
	struct http_message *m = NULL;
	int err = 0;

	if (test__start_subtest("extensions_and_trailers")) {
		static const char raw[] =
			"POST /x HTTP/1.1\r\n"
			"Transfer-Encoding: Chunked\r\n"
			"\r\n"
			"5;name\r\nhello\r\n"
			"0006 ; a = b ;q=\"x;\\\"y\\\\\" ;z\r\nworld!\r\n"
			"A;tok=v1\r\n0123456789\r\n"
			"0;last=1\r\n"
			"Expires: never\r\n"
			"X-Checksum: abc\r\n"
			"\r\n";
		const struct want_header hdrs[] = {
			{ "transfer-encoding", "Chunked" }, { NULL, NULL },
		};
		struct want w = {
			.method = "POST", .target = "/x", .version_minor = 1,
			.headers = hdrs, .body = "helloworld!0123456789",
			.body_len = 21, .chunked = true, .content_length = -1,
			.head_end = 48, .end = sizeof(raw) - 1,
		};

		check_all_splits(HTTP_REQUEST, RAW(raw), &w, 1);
		/* Trailers are not merged into the headers. */
		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw)))
			goto cleanup;
		m = http_parser__next(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_NULL(http_message__header(m, "x-checksum"), "trailer not a header");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("hex_case_and_zero_padding")) {
		static const char raw[] =
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"0000000000000001\r\na\r\n"
			"f\r\n0123456789abcde\r\n"
			"F\r\n0123456789ABCDE\r\n"
			"000\r\n\r\n";

		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw)))
			goto cleanup;
		m = http_parser__next(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_STREQ(m->body, "a0123456789abcde0123456789ABCDE", "body");
		ASSERT_EQ(m->end, sizeof(raw) - 1, "end");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("incomplete_until_last_crlf")) {
		static const char raw[] =
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";

		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new") ||
		    !feed_ok(p, raw, sizeof(raw) - 2))
			goto cleanup;
		if (!ASSERT_NULL(http_parser__next(p), "not before the last LF") ||
		    !ASSERT_OK_PTR(http_parser__partial(p), "partial"))
			goto cleanup;
		err = http_parser__finish(p);
		ASSERT_EQ(err, -EBADMSG, "finish mid-trailer");
		ASSERT_STREQ(http_parser__error(p), "truncated", "reason");
	}
cleanup:
	http_message__free(m);
	http_parser__free(p);
}

/* Feeds raw whole; true when it failed with err and reason. */
static bool fails_with(enum http_kind kind, const struct http_limits *lim,
		       const char *raw, size_t len, int want_err, const char *reason)
{
	struct http_parser *p = http_parser__new(kind, lim);
	uint64_t off;
	bool ok = false;
	int err;

	if (!ASSERT_OK_PTR(p, "new"))
		return false;
	err = http_parser__feed(p, raw, len);
	if (!ASSERT_EQ(err, want_err, "feed error") ||
	    !ASSERT_STREQ(http_parser__error(p), reason, "reason"))
		goto out;
	/* Sticky: nothing more is consumed or accepted. */
	off = http_parser__offset(p);
	if (!ASSERT_EQ(http_parser__feed(p, "GET / HTTP/1.1\r\n\r\n", 18), want_err, "sticky") ||
	    !ASSERT_EQ(http_parser__offset(p), off, "nothing consumed") ||
	    !ASSERT_EQ(http_parser__finish(p), want_err, "finish sticky"))
		goto out;
	http_parser__free(p);

	/* Byte by byte: same reason, at the same offset. */
	p = http_parser__new(kind, lim);
	if (!ASSERT_OK_PTR(p, "new"))
		return false;
	err = 0;
	feed_bytes(p, raw, len, &err);
	ok = ASSERT_EQ(err, want_err, "one-byte feed error") &&
	     ASSERT_STREQ(http_parser__error(p), reason, "one-byte reason") &&
	     ASSERT_EQ(http_parser__offset(p), off, "same error offset");
out:
	http_parser__free(p);
	return ok;
}

struct reject_case {
	const char *name;
	const char *raw;
	size_t len;
	const char *reason;
};

#define REJECT(n, s, r) { (n), (s), sizeof(s) - 1, (r) }

static const struct reject_case request_rejects[] = {
	REJECT("cl_and_te", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "te_with_content_length"),
	REJECT("te_and_cl", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "te_with_content_length"),
	REJECT("cl_differs", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", "duplicate_content_length"),
	REJECT("cl_list", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", "bad_content_length"),
	REJECT("cl_negative", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "bad_content_length"),
	REJECT("cl_plus", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", "bad_content_length"),
	REJECT("cl_hex", "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello", "bad_content_length"),
	REJECT("cl_empty", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", "bad_content_length"),
	REJECT("cl_inner_space", "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", "bad_content_length"),
	REJECT("cl_overflow", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", "bad_content_length"),
	REJECT("te_gzip", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "bad_transfer_encoding"),
	REJECT("te_gzip_chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "bad_transfer_encoding"),
	REJECT("te_chunked_twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "bad_transfer_encoding"),
	REJECT("te_two_fields", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "bad_transfer_encoding"),
	REJECT("te_identity", "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", "bad_transfer_encoding"),
	REJECT("te_suffix", "POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n", "bad_transfer_encoding"),
	REJECT("te_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "bad_transfer_encoding"),
	REJECT("obs_fold", "GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n", "obs_fold"),
	REJECT("obs_fold_tab", "GET / HTTP/1.1\r\nX-A: 1\r\n\tcontinued\r\n\r\n", "obs_fold"),
	REJECT("space_after_start_line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", "obs_fold"),
	REJECT("bare_lf_start_line", "GET / HTTP/1.1\nHost: a\r\n\r\n", "bare_lf"),
	REJECT("bare_lf_header", "GET / HTTP/1.1\r\nHost: a\n\r\n", "bare_lf"),
	REJECT("bare_lf_blank_line", "GET / HTTP/1.1\r\nHost: a\r\n\n", "bare_lf"),
	REJECT("bare_cr_in_value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "bare_cr"),
	REJECT("space_before_colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", "space_before_colon"),
	REJECT("tab_before_colon", "GET / HTTP/1.1\r\nContent-Length\t: 0\r\n\r\n", "space_before_colon"),
	REJECT("name_at", "GET / HTTP/1.1\r\nHo@st: a\r\n\r\n", "bad_header_name"),
	REJECT("name_quote", "GET / HTTP/1.1\r\nX\"y: a\r\n\r\n", "bad_header_name"),
	REJECT("name_empty", "GET / HTTP/1.1\r\n: a\r\n\r\n", "bad_header_name"),
	REJECT("name_no_colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", "bad_header_name"),
	REJECT("name_high_byte", "GET / HTTP/1.1\r\nX\xc3\xa9: a\r\n\r\n", "bad_header_name"),
	REJECT("value_ctl", "GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", "bad_header_value"),
	REJECT("value_del", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", "bad_header_value"),
	REJECT("value_nul", "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", "bad_header_value"),
	REJECT("value_esc", "GET / HTTP/1.1\r\nX: \x1b[0m\r\n\r\n", "bad_header_value"),
	REJECT("method_token", "G(ET / HTTP/1.1\r\n\r\n", "bad_method"),
	REJECT("method_long", "ABCDEFGHIJKLMNOPQRSTUVWX / HTTP/1.1\r\n\r\n", "bad_method"),
	REJECT("method_nul", "GE\0T / HTTP/1.1\r\n\r\n", "bad_method"),
	REJECT("target_ctl", "GET /\x01 HTTP/1.1\r\n\r\n", "bad_target"),
	REJECT("target_high", "GET /\xff HTTP/1.1\r\n\r\n", "bad_target"),
	REJECT("double_space", "GET  / HTTP/1.1\r\n\r\n", "bad_start_line"),
	REJECT("http09", "GET /\r\n", "bad_start_line"),
	REJECT("leading_empty_line", "\r\nGET / HTTP/1.1\r\n\r\n", "bad_start_line"),
	REJECT("http12", "GET / HTTP/1.2\r\n\r\n", "bad_version"),
	REJECT("http20", "GET / HTTP/2.0\r\n\r\n", "bad_version"),
	REJECT("h2_preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "bad_version"),
	REJECT("lowercase_version", "GET / http/1.1\r\n\r\n", "bad_version"),
	REJECT("trailing_space", "GET / HTTP/1.1 \r\n\r\n", "bad_version"),
	REJECT("chunk_overflow", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000001\r\n", "chunk_size_overflow"),
	REJECT("chunk_not_hex", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad_chunk"),
	REJECT("chunk_empty_size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "bad_chunk"),
	REJECT("chunk_negative", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "bad_chunk"),
	REJECT("chunk_trailing_ws", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n", "bad_chunk"),
	REJECT("chunk_empty_ext", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n", "bad_chunk"),
	REJECT("chunk_ext_bad_value", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\r\nhello\r\n", "bad_chunk"),
	REJECT("chunk_ext_cr_in_quote", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"x\r\n\"\r\nhello\r\n", "bad_chunk"),
	REJECT("chunk_ext_lf", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nhello\r\n", "bare_lf"),
	REJECT("chunk_bare_lf", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n", "bare_lf"),
	REJECT("chunk_data_too_long", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n", "bad_chunk"),
	REJECT("chunk_data_bare_lf", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", "bad_chunk"),
	REJECT("trailer_obs_fold", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\r\n 2\r\n\r\n", "obs_fold"),
	REJECT("trailer_bad_name", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX Y: 1\r\n\r\n", "bad_header_name"),
	REJECT("trailer_bare_lf", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n", "bare_lf"),
};

static const struct reject_case response_rejects[] = {
	REJECT("cl_and_te", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "te_with_content_length"),
	REJECT("cl_differs", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n", "duplicate_content_length"),
	REJECT("chunked_not_last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "bad_transfer_encoding"),
	REJECT("te_empty_element", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n", "bad_transfer_encoding"),
	REJECT("te_http10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "bad_transfer_encoding"),
	REJECT("status_short", "HTTP/1.1 20 OK\r\n\r\n", "bad_status"),
	REJECT("status_alpha", "HTTP/1.1 2x0 OK\r\n\r\n", "bad_status"),
	REJECT("status_low", "HTTP/1.1 099 Odd\r\n\r\n", "bad_status"),
	REJECT("status_long", "HTTP/1.1 2000 OK\r\n\r\n", "bad_status"),
	REJECT("reason_ctl", "HTTP/1.1 200 O\x01K\r\n\r\n", "bad_status"),
	REJECT("http2", "HTTP/2 200\r\n\r\n", "bad_version"),
	REJECT("bare_lf", "HTTP/1.1 200 OK\n\n", "bare_lf"),
	REJECT("obs_fold", "HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n", "obs_fold"),
	REJECT("chunk_overflow", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", "chunk_size_overflow"),
	REJECT("after_101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello", "protocol_switched"),
};

void test_http_reject(void)
{
	size_t i;

	for (i = 0; i < sizeof(request_rejects) / sizeof(request_rejects[0]); i++) {
		const struct reject_case *c = &request_rejects[i];
		char name[64];

		snprintf(name, sizeof(name), "request_%s", c->name);
		if (test__start_subtest(name))
			fails_with(HTTP_REQUEST, NULL, c->raw, c->len, -EBADMSG, c->reason);
	}
	for (i = 0; i < sizeof(response_rejects) / sizeof(response_rejects[0]); i++) {
		const struct reject_case *c = &response_rejects[i];
		char name[64];

		snprintf(name, sizeof(name), "response_%s", c->name);
		if (test__start_subtest(name))
			fails_with(HTTP_RESPONSE, NULL, c->raw, c->len, -EBADMSG, c->reason);
	}
}

/* Messages before an error still come out, with their offsets. */
void test_http_error_after_good(void)
{
	static const char raw[] =
		"GET /a HTTP/1.1\r\n\r\n"
		"GET /b HTTP/1.1\r\nHost : x\r\n\r\n";
	struct http_parser *p = http_parser__new(HTTP_REQUEST, NULL);
	struct http_message *m = NULL;

	if (!ASSERT_OK_PTR(p, "new"))
		return;
	ASSERT_EQ(http_parser__feed(p, RAW(raw)), -EBADMSG, "feed");
	ASSERT_STREQ(http_parser__error(p), "space_before_colon", "reason");
	/* The error is at the LF ending the bad line. */
	ASSERT_EQ(http_parser__offset(p), 19 + 17 + 9, "offset of the error");
	m = http_parser__next(p);
	if (!ASSERT_OK_PTR(m, "first message"))
		goto cleanup;
	ASSERT_STREQ(m->target, "/a", "target");
	ASSERT_EQ(m->end, 19, "end");
	ASSERT_NULL(http_parser__next(p), "nothing else");
	ASSERT_NULL(http_parser__partial(p), "no partial");
cleanup:
	http_message__free(m);
	http_parser__free(p);
}

/* Accepted oddities: things RFC 9112 allows that do not touch framing. */
void test_http_accept(void)
{
	struct http_parser *p = NULL;
	struct http_message *m = NULL;

	if (test__start_subtest("same_content_length_twice")) {
		static const char raw[] =
			"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 005\r\n\r\nhello";

		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw)))
			goto cleanup;
		m = http_parser__next(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_EQ(m->content_length, 5, "content_length");
		ASSERT_STREQ(m->body, "hello", "body");
		ASSERT_EQ(http_message__header_count(m, "content-length"), 2, "count");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("ows_trim_and_lookup")) {
		static const char raw[] =
			"GET /?q=a%20b HTTP/1.0\r\n"
			"X-Empty:\r\n"
			"X-Pad: \t  padded value \t\r\n"
			"X-Multi: one\r\n"
			"x-MULTI: two\r\n"
			"X-Obs: caf\xc3\xa9\r\n"
			"\r\n";

		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw)))
			goto cleanup;
		m = http_parser__next(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_EQ(m->version_minor, 0, "HTTP/1.0");
		ASSERT_STREQ(m->target, "/?q=a%20b", "target");
		ASSERT_STREQ(http_message__header(m, "x-empty"), "", "empty value");
		ASSERT_STREQ(http_message__header(m, "x-pad"), "padded value", "trimmed");
		ASSERT_STREQ(http_message__header(m, "x-multi"), "one", "first of two");
		ASSERT_EQ(http_message__header_count(m, "x-multi"), 2, "count");
		ASSERT_STREQ(m->headers[3].name, "x-multi", "lower-cased");
		ASSERT_STREQ(http_message__header(m, "x-obs"), "caf\xc3\xa9", "obs-text");
		ASSERT_NULL(http_message__header(m, "X-Pad"), "lookup is by lower-case");
		ASSERT_EQ(http_message__header_count(m, "nope"), 0, "absent");
		ASSERT_EQ(m->body_len, 0, "no body");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("get_with_length")) {
		static const char raw[] =
			"GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /2 HTTP/1.1\r\n\r\n";

		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw)))
			goto cleanup;
		m = http_parser__next(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_STREQ(m->body, "hi", "body");
		http_message__free(m);
		m = http_parser__next(p);
		if (!ASSERT_OK_PTR(m, "second"))
			goto cleanup;
		ASSERT_STREQ(m->target, "/2", "second target");
		ASSERT_EQ(m->start, 39, "second start");
	}
cleanup:
	http_message__free(m);
	http_parser__free(p);
}

static char *make_head(size_t n_extra_headers, size_t pad)
{
	char *buf = malloc(64 + n_extra_headers * 16 + pad);
	size_t i, n;

	if (!buf)
		return NULL;
	n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");
	for (i = 0; i < n_extra_headers; i++)
		n += (size_t)sprintf(buf + n, "X-H%zu: v\r\n", i % 10);
	n += (size_t)sprintf(buf + n, "X-Pad: ");
	memset(buf + n, 'p', pad);
	n += pad;
	sprintf(buf + n, "\r\n\r\n");
	return buf;
}

void test_http_limits(void)
{
	struct http_limits lim = http_default_limits;
	struct http_parser *p = NULL;
	struct http_message *m = NULL;
	char *raw = NULL;
	size_t len, i;

	if (test__start_subtest("header_bytes_edge")) {
		raw = make_head(3, 100);
		if (!ASSERT_OK_PTR(raw, "head"))
			goto cleanup;
		len = strlen(raw);
		lim.max_header_bytes = len;
		p = http_parser__new(HTTP_REQUEST, &lim);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, raw, len) ||
		    !ASSERT_OK_PTR(m = http_parser__next(p), "fits exactly"))
			goto cleanup;
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
		lim.max_header_bytes = len - 1;
		fails_with(HTTP_REQUEST, &lim, raw, len, -E2BIG, "header_too_large");
		/* A long line with no CRLF at all is cut at the limit too. */
		memset(raw, 'A', len);
		lim.max_header_bytes = 64;
		fails_with(HTTP_REQUEST, &lim, raw, len, -E2BIG, "header_too_large");
		free(raw);
		raw = NULL;
		lim = http_default_limits;
	}
	if (test__start_subtest("header_count_edge")) {
		raw = make_head(9, 1);	/* 10 fields with X-Pad */
		if (!ASSERT_OK_PTR(raw, "head"))
			goto cleanup;
		len = strlen(raw);
		lim.max_headers = 10;
		p = http_parser__new(HTTP_REQUEST, &lim);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, raw, len) ||
		    !ASSERT_OK_PTR(m = http_parser__next(p), "fits exactly"))
			goto cleanup;
		ASSERT_EQ(m->n_headers, 10, "headers");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
		lim.max_headers = 9;
		fails_with(HTTP_REQUEST, &lim, raw, len, -E2BIG, "too_many_headers");
		lim.max_headers = 0;
		fails_with(HTTP_REQUEST, &lim, raw, len, -E2BIG, "too_many_headers");
		free(raw);
		raw = NULL;
		lim = http_default_limits;
	}
	if (test__start_subtest("trailer_limits")) {
		static const char raw_t[] =
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"0\r\nA: 1\r\nB: 2222222222222222222222222222222222222222\r\n\r\n";

		lim.max_headers = 1;
		fails_with(HTTP_REQUEST, &lim, RAW(raw_t), -E2BIG, "too_many_headers");
		lim.max_headers = 2;
		p = http_parser__new(HTTP_REQUEST, &lim);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw_t)) ||
		    !ASSERT_OK_PTR(m = http_parser__next(p), "two trailers fit"))
			goto cleanup;
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
		lim = http_default_limits;
		lim.max_header_bytes = 47;	/* the head fits, the 53 trailer bytes not */
		fails_with(HTTP_REQUEST, &lim, RAW(raw_t), -E2BIG, "header_too_large");
		lim = http_default_limits;
	}
	if (test__start_subtest("request_body_edge")) {
		static const char cl5[] = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
		static const char ch5[] =
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n";

		lim.max_body_bytes = 5;
		for (i = 0; i < 2; i++) {
			p = http_parser__new(HTTP_REQUEST, &lim);
			if (!ASSERT_OK_PTR(p, "new") ||
			    !feed_ok(p, i ? ch5 : cl5, i ? sizeof(ch5) - 1 : sizeof(cl5) - 1) ||
			    !ASSERT_OK_PTR(m = http_parser__next(p), "fits exactly"))
				goto cleanup;
			ASSERT_STREQ(m->body, "hello", "body");
			ASSERT_FALSE(m->body_truncated, "not truncated");
			http_message__free(m);
			m = NULL;
			http_parser__free(p);
			p = NULL;
		}
		lim.max_body_bytes = 4;
		/* Refused as soon as the length is known, before the body. */
		fails_with(HTTP_REQUEST, &lim, cl5, sizeof(cl5) - 6, -E2BIG, "body_too_large");
		fails_with(HTTP_REQUEST, &lim, RAW(ch5), -E2BIG, "body_too_large");
		lim.max_body_bytes = 0;
		fails_with(HTTP_REQUEST, &lim, RAW(ch5), -E2BIG, "body_too_large");
		lim = http_default_limits;
		fails_with(HTTP_REQUEST, &lim,
			   RAW("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n"),
			   -E2BIG, "body_too_large");
	}
	if (test__start_subtest("pending_edge")) {
		static const char two[] = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";

		lim.max_pending = 2;
		p = http_parser__new(HTTP_REQUEST, &lim);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(two)))
			goto cleanup;
		/* Taking one makes room again. */
		http_message__free(http_parser__next(p));
		if (!feed_ok(p, RAW("GET /3 HTTP/1.1\r\n\r\n")))
			goto cleanup;
		ASSERT_EQ(http_parser__feed(p, RAW("POST /4 HTTP/1.1\r\nContent-Length: 1\r\n\r\nx")),
			  -E2BIG, "third untaken");
		ASSERT_STREQ(http_parser__error(p), "too_many_pending", "reason");
		/* Stopped on the byte that would have completed it. */
		ASSERT_EQ(http_parser__offset(p), 3 * 19 + 39, "offset");
		m = http_parser__next(p);
		if (!ASSERT_OK_PTR(m, "queued before the error"))
			goto cleanup;
		ASSERT_STREQ(m->target, "/2", "second");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
		lim.max_pending = 1;
		fails_with(HTTP_REQUEST, &lim, RAW(two), -E2BIG, "too_many_pending");
		lim = http_default_limits;
	}
	if (test__start_subtest("chunk_extension_budget")) {
		/* Extension bytes add up over the message, as in Node's fix for
		 * CVE-2024-22019; one over the budget is refused. */
		static const char raw_e[] =
			"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			"1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nx\r\n"
			"1;b=bbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\ny\r\n0\r\n\r\n";

		/* 31 + 31 extension bytes against a 61 and a 62 byte budget. */
		lim.max_header_bytes = 61;
		fails_with(HTTP_REQUEST, &lim, RAW(raw_e), -E2BIG, "chunk_ext_too_large");
		lim.max_header_bytes = 62;
		p = http_parser__new(HTTP_REQUEST, &lim);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw_e)) ||
		    !ASSERT_OK_PTR(m = http_parser__next(p), "fits exactly"))
			goto cleanup;
		ASSERT_STREQ(m->body, "xy", "body");
		http_message__free(m);
		m = NULL;
		/* The budget is per message. */
		if (!feed_ok(p, RAW(raw_e)) ||
		    !ASSERT_OK_PTR(m = http_parser__next(p), "second message"))
			goto cleanup;
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
		raw = malloc(20000);
		if (!ASSERT_OK_PTR(raw, "malloc"))
			goto cleanup;
		len = (size_t)sprintf(raw, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
		for (i = 0; i < 1000; i++)
			len += (size_t)sprintf(raw + len, "1;e=0123456789\r\nx\r\n");
		lim = http_default_limits;
		lim.max_header_bytes = 4096;
		fails_with(HTTP_REQUEST, &lim, raw, len, -E2BIG, "chunk_ext_too_large");
		free(raw);
		raw = NULL;
		lim = http_default_limits;
	}
	if (test__start_subtest("response_body_truncated")) {
		static const char cl[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
					 "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz";
		static const char ch[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
					 "6\r\n012345\r\n4\r\n6789\r\n0\r\n\r\n";

		lim.max_body_bytes = 4;
		for (i = 0; i < 2; i++) {
			p = http_parser__new(HTTP_RESPONSE, &lim);
			if (!ASSERT_OK_PTR(p, "new") ||
			    !feed_ok(p, i ? ch : cl, i ? sizeof(ch) - 1 : sizeof(cl) - 1) ||
			    !ASSERT_OK_PTR(m = http_parser__next(p), "message"))
				goto cleanup;
			ASSERT_EQ(m->body_len, 4, "kept");
			ASSERT_STREQ(m->body, "0123", "prefix");
			ASSERT_TRUE(m->body_truncated, "truncated");
			ASSERT_EQ(m->end, i ? sizeof(ch) - 1 : 49, "framed in full");
			http_message__free(m);
			m = NULL;
			if (!i) {
				m = http_parser__next(p);
				if (!ASSERT_OK_PTR(m, "next response in sync"))
					goto cleanup;
				ASSERT_STREQ(m->body, "z", "second body");
				ASSERT_FALSE(m->body_truncated, "second whole");
				http_message__free(m);
				m = NULL;
			}
			http_parser__free(p);
			p = NULL;
		}
		lim = http_default_limits;
	}
cleanup:
	free(raw);
	http_message__free(m);
	http_parser__free(p);
}

static struct http_message *take(struct http_parser *p)
{
	return http_parser__next(p);
}

void test_http_responses(void)
{
	struct http_parser *p = NULL;
	struct http_message *m = NULL;

	if (test__start_subtest("content_length_with_session")) {
		static const char raw[] =
			"HTTP/1.1 200 OK\r\n"
			"X-Powered-By: Express\r\n"
			"mcp-session-id: 3f2b9c1e-7a4d-4e8b-9c2a-1d5e6f7a8b9c\r\n"
			"Content-Type: application/json\r\n"
			"Content-Length: 36\r\n"
			"Date: Tue, 01 Jul 2025 10:00:00 GMT\r\n"
			"Connection: keep-alive\r\n"
			"Keep-Alive: timeout=5\r\n"
			"\r\n"
			"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
		const struct want_header hdrs[] = {
			{ "x-powered-by", "Express" },
			{ "mcp-session-id", "3f2b9c1e-7a4d-4e8b-9c2a-1d5e6f7a8b9c" },
			{ "content-type", "application/json" },
			{ "content-length", "36" },
			{ "date", "Tue, 01 Jul 2025 10:00:00 GMT" },
			{ "connection", "keep-alive" },
			{ "keep-alive", "timeout=5" },
			{ NULL, NULL },
		};
		struct want w = {
			.status = 200, .version_minor = 1, .headers = hdrs,
			.body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
			.body_len = 36, .content_length = 36,
			.head_end = head_len(raw), .end = sizeof(raw) - 1,
		};

		check_all_splits(HTTP_RESPONSE, RAW(raw), &w, 1);
	}
	if (test__start_subtest("sse_chunked")) {
		static const char raw[] =
			"HTTP/1.1 200 OK\r\n"
			"Content-Type: text/event-stream\r\n"
			"Cache-Control: no-cache\r\n"
			"Connection: keep-alive\r\n"
			"mcp-session-id: 3f2b9c1e\r\n"
			"Date: Tue, 01 Jul 2025 10:00:00 GMT\r\n"
			"Transfer-Encoding: chunked\r\n"
			"\r\n"
			"47\r\n"
			"event: message\n"
			"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n"
			"\r\n"
			"0\r\n\r\n";
		const struct want_header hdrs[] = {
			{ "content-type", "text/event-stream" },
			{ "cache-control", "no-cache" },
			{ "connection", "keep-alive" },
			{ "mcp-session-id", "3f2b9c1e" },
			{ "date", "Tue, 01 Jul 2025 10:00:00 GMT" },
			{ "transfer-encoding", "chunked" },
			{ NULL, NULL },
		};
		struct want w = {
			.status = 200, .version_minor = 1, .headers = hdrs,
			.body = "event: message\n"
				"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n",
			.body_len = 71, .chunked = true, .content_length = -1,
			.head_end = head_len(raw), .end = sizeof(raw) - 1,
		};

		check_all_splits(HTTP_RESPONSE, RAW(raw), &w, 1);
	}
	if (test__start_subtest("no_body_statuses")) {
		/* 100 and 204 carry no body; 304 none even with a length. */
		static const char raw[] =
			"HTTP/1.1 100 Continue\r\n\r\n"
			"HTTP/1.1 204 No Content\r\n\r\n"
			"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
			"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
			"HTTP/1.1 404\r\nContent-Length: 2\r\n\r\nno";
		const struct want_header cl99[] = { { "content-length", "99" }, { NULL, NULL } };
		const struct want_header cl0[] = { { "content-length", "0" }, { NULL, NULL } };
		const struct want_header cl2[] = { { "content-length", "2" }, { NULL, NULL } };
		struct want w[5] = {
			{ .status = 100, .version_minor = 1, .body = "", .content_length = -1,
			  .start = 0, .head_end = 25, .end = 25 },
			{ .status = 204, .version_minor = 1, .body = "", .content_length = -1,
			  .start = 25, .head_end = 52, .end = 52 },
			{ .status = 304, .version_minor = 1, .headers = cl99, .body = "",
			  .content_length = 99, .start = 52, .head_end = 101, .end = 101 },
			{ .status = 202, .version_minor = 1, .headers = cl0, .body = "",
			  .content_length = 0, .start = 101, .head_end = 145, .end = 145 },
			{ .status = 404, .version_minor = 1, .headers = cl2, .body = "no",
			  .body_len = 2, .content_length = 2, .start = 145, .head_end = 180,
			  .end = 182 },
		};

		check_all_splits(HTTP_RESPONSE, RAW(raw), w, 5);
	}
	if (test__start_subtest("until_close")) {
		static const char raw[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it";

		p = http_parser__new(HTTP_RESPONSE, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw)))
			goto cleanup;
		if (!ASSERT_NULL(take(p), "not before the close") ||
		    !ASSERT_OK_PTR(http_parser__partial(p), "partial"))
			goto cleanup;
		if (!feed_ok(p, RAW(" and more")) ||
		    !ASSERT_OK(http_parser__finish(p), "finish"))
			goto cleanup;
		m = take(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_EQ(m->version_minor, 0, "1.0");
		ASSERT_STREQ(m->body, "all of it and more", "body");
		ASSERT_EQ(m->content_length, -1, "no length");
		ASSERT_EQ(m->end, sizeof(raw) - 1 + 9, "end at close");
		ASSERT_NULL(http_parser__partial(p), "no partial");
		ASSERT_OK(http_parser__finish(p), "finish twice");
		ASSERT_EQ(http_parser__feed(p, "x", 1), -EBADMSG, "feed after finish");
		ASSERT_STREQ(http_parser__error(p), "after_finish", "reason");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("until_close_other_coding")) {
		static const char raw[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b";

		p = http_parser__new(HTTP_RESPONSE, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw)) ||
		    !ASSERT_OK(http_parser__finish(p), "finish"))
			goto cleanup;
		m = take(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_EQ(m->body_len, 2, "body to the close");
		ASSERT_FALSE(m->chunked, "not chunked");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("stacked_coding_chunked_last")) {
		static const char raw[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
					  "Transfer-Encoding: CHUNKED\r\n\r\n2\r\nab\r\n0\r\n\r\n";

		p = http_parser__new(HTTP_RESPONSE, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(raw)))
			goto cleanup;
		m = take(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_TRUE(m->chunked, "chunked");
		ASSERT_STREQ(m->body, "ab", "body");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("truncated_on_finish")) {
		static const char *const cuts[] = {
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
			"HTTP/1.1 200 OK\r\nContent-Le",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
			"H",
		};
		size_t i;

		for (i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
			p = http_parser__new(HTTP_RESPONSE, NULL);
			if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, cuts[i], strlen(cuts[i])))
				goto cleanup;
			ASSERT_EQ(http_parser__finish(p), -EBADMSG, "finish");
			ASSERT_STREQ(http_parser__error(p), "truncated", "reason");
			http_parser__free(p);
			p = NULL;
		}
	}
	if (test__start_subtest("head_response")) {
		/* The answer to HEAD announces a length it does not send; the
		 * next response must still be read from its own first byte. */
		static const char raw[] =
			"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nmcp-session-id: s1\r\n\r\n{}";

		p = http_parser__new(HTTP_RESPONSE, NULL);
		if (!ASSERT_OK_PTR(p, "new") ||
		    !ASSERT_OK(http_parser__expect_response(p, "HEAD"), "expect HEAD") ||
		    !ASSERT_OK(http_parser__expect_response(p, "POST"), "expect POST") ||
		    !feed_ok(p, RAW(raw)))
			goto cleanup;
		m = take(p);
		if (!ASSERT_OK_PTR(m, "HEAD response"))
			goto cleanup;
		ASSERT_EQ(m->body_len, 0, "no body");
		ASSERT_EQ(m->content_length, 1000, "length as announced");
		ASSERT_EQ(m->end, 41, "end at head");
		http_message__free(m);
		m = take(p);
		if (!ASSERT_OK_PTR(m, "POST response"))
			goto cleanup;
		ASSERT_STREQ(http_message__header(m, "mcp-session-id"), "s1", "session");
		ASSERT_STREQ(m->body, "{}", "body");
		http_message__free(m);
		m = NULL;
		ASSERT_EQ(http_parser__expect_response(NULL, "GET"), -EINVAL, "NULL");
		http_parser__free(p);
		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new"))
			goto cleanup;
		ASSERT_EQ(http_parser__expect_response(p, "GET"), -EINVAL, "request parser");
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("head_after_interim")) {
		/* 1xx answers nothing: the HEAD is answered by the 200. */
		static const char raw[] =
			"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
			"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"
			"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsession";

		p = http_parser__new(HTTP_RESPONSE, NULL);
		if (!ASSERT_OK_PTR(p, "new") ||
		    !ASSERT_OK(http_parser__expect_response(p, "HEAD"), "expect") ||
		    !feed_ok(p, RAW(raw)))
			goto cleanup;
		http_message__free(take(p));
		http_message__free(take(p));
		m = take(p);
		if (!ASSERT_OK_PTR(m, "third"))
			goto cleanup;
		ASSERT_STREQ(m->body, "session", "body");
		ASSERT_EQ(m->end, sizeof(raw) - 1, "end");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("expect_bounded")) {
		struct http_limits lim = http_default_limits;

		lim.max_pending = 2;
		p = http_parser__new(HTTP_RESPONSE, &lim);
		if (!ASSERT_OK_PTR(p, "new"))
			goto cleanup;
		ASSERT_OK(http_parser__expect_response(p, "HEAD"), "1");
		ASSERT_OK(http_parser__expect_response(p, "GET"), "ordinary is free");
		ASSERT_OK(http_parser__expect_response(p, "CONNECT"), "2");
		ASSERT_EQ(http_parser__expect_response(p, "HEAD"), -E2BIG, "3");
		ASSERT_STREQ(http_parser__error(p), "too_many_pending", "reason");
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("connect_tunnel")) {
		static const char raw[] = "HTTP/1.1 200 Connection Established\r\n\r\n";

		p = http_parser__new(HTTP_RESPONSE, NULL);
		if (!ASSERT_OK_PTR(p, "new") ||
		    !ASSERT_OK(http_parser__expect_response(p, "CONNECT"), "expect") ||
		    !feed_ok(p, RAW(raw)))
			goto cleanup;
		m = take(p);
		if (!ASSERT_OK_PTR(m, "message"))
			goto cleanup;
		ASSERT_EQ(m->end, sizeof(raw) - 1, "end");
		ASSERT_OK(http_parser__finish(p), "finish in a tunnel");
		http_message__free(m);
		m = NULL;
		http_parser__free(p);
		p = NULL;
	}
cleanup:
	http_message__free(m);
	http_parser__free(p);
}

void test_http_finish(void)
{
	struct http_parser *p = NULL;

	if (test__start_subtest("idle")) {
		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, RAW(sse_get)))
			goto cleanup;
		ASSERT_OK(http_parser__finish(p), "finish between messages");
		http_message__free(http_parser__next(p));
		http_parser__free(p);
		p = NULL;
	}
	if (test__start_subtest("request_cut")) {
		size_t k;

		/* Every proper prefix of a request is "truncated" on close. */
		for (k = 1; k < sizeof(mcp_post) - 1; k += 7) {
			p = http_parser__new(HTTP_REQUEST, NULL);
			if (!ASSERT_OK_PTR(p, "new") || !feed_ok(p, mcp_post, k))
				goto cleanup;
			if (!ASSERT_EQ(http_parser__finish(p), -EBADMSG, "finish") ||
			    !ASSERT_STREQ(http_parser__error(p), "truncated", "reason"))
				goto cleanup;
			http_parser__free(p);
			p = NULL;
		}
	}
	if (test__start_subtest("bad_args")) {
		struct http_message empty = { .content_length = -1 };

		ASSERT_NULL(http_parser__new((enum http_kind)7, NULL), "bad kind");
		http_parser__free(NULL);
		http_message__free(NULL);
		ASSERT_NULL(http_message__header(&empty, "host"), "no headers");
		p = http_parser__new(HTTP_REQUEST, NULL);
		if (!ASSERT_OK_PTR(p, "new"))
			goto cleanup;
		ASSERT_OK(http_parser__feed(p, NULL, 0), "empty feed");
		ASSERT_EQ(http_parser__offset(p), 0, "offset");
		ASSERT_NULL(http_parser__next(p), "nothing");
		ASSERT_NULL(http_parser__partial(p), "no partial");
		ASSERT_NULL(http_parser__error(p), "no error");
	}
cleanup:
	http_parser__free(p);
}

/* Offsets stay exact across many pipelined messages of mixed framing. */
void test_http_offsets(void)
{
	static const char *const parts[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=y\r\na\r\n0\r\nT: v\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!",
	};
	const size_t n = sizeof(parts) / sizeof(parts[0]);
	struct http_parser *p = http_parser__new(HTTP_RESPONSE, NULL);
	struct http_message *m = NULL;
	uint64_t at = 0;
	size_t round, i;

	if (!ASSERT_OK_PTR(p, "new"))
		return;
	for (round = 0; round < 10; round++) {
		for (i = 0; i < n; i++) {
			size_t len = strlen(parts[i]);

			if (!feed_ok(p, parts[i], len))
				goto cleanup;
			m = http_parser__next(p);
			if (!ASSERT_OK_PTR(m, "message") ||
			    !ASSERT_EQ(m->start, at, "start") ||
			    !ASSERT_EQ(m->head_end, at + head_len(parts[i]), "head_end") ||
			    !ASSERT_EQ(m->end, at + len, "end"))
				goto cleanup;
			http_message__free(m);
			m = NULL;
			at += len;
		}
	}
	ASSERT_EQ(http_parser__offset(p), at, "offset");
cleanup:
	http_message__free(m);
	http_parser__free(p);
}

/* A 1 MiB body and a 16 KiB head one byte per feed: quadratic work here
 * would blow the time limit. */
void test_http_linear(void)
{
	const size_t body = 1024 * 1024;
	struct http_limits lim = http_default_limits;
	struct http_parser *p = NULL;
	struct http_message *m = NULL;
	char *raw = NULL, *c;
	size_t len, i;
	int err = 0;

	test__set_timeout(30);
	lim.max_headers = 1000;
	raw = malloc(body + 32 * 1024);
	if (!ASSERT_OK_PTR(raw, "malloc"))
		return;
	len = (size_t)sprintf(raw, "POST / HTTP/1.1\r\nX-Long: ");
	memset(raw + len, 'v', 8000);
	len += 8000;
	len += (size_t)sprintf(raw + len, "\r\n");
	for (i = 0; i < 700; i++)
		len += (size_t)sprintf(raw + len, "X-N: %zu\r\n", i);
	len += (size_t)sprintf(raw + len, "Content-Length: %zu\r\n\r\n", body);
	c = raw + len;
	for (i = 0; i < body; i++)
		c[i] = (char)('a' + i % 26);
	len += body;

	p = http_parser__new(HTTP_REQUEST, &lim);
	if (!ASSERT_OK_PTR(p, "new"))
		goto cleanup;
	feed_bytes(p, raw, len, &err);
	if (!ASSERT_OK(err, "feed"))
		goto cleanup;
	m = http_parser__next(p);
	if (!ASSERT_OK_PTR(m, "message"))
		goto cleanup;
	ASSERT_EQ(m->n_headers, 702, "headers");
	ASSERT_EQ(m->body_len, body, "body");
	ASSERT_MEMEQ(m->body, c, body, "body bytes");
cleanup:
	http_message__free(m);
	http_parser__free(p);
	free(raw);
}
