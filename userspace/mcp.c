// SPDX-License-Identifier: GPL-2.0
/*
 * JSON-RPC / MCP body reading. The body is decoded once (jsonlite.h) with
 * duplicate keys and NUL bytes rejected, so that what we judge is what any
 * server parser would see. Each message is then checked for JSON-RPC shape
 * and the identity-bearing fields are copied out (method, id, tool,
 * resource, prompt, clientInfo, protocol version). Last, the MCP headers
 * are compared with the body: for 2026-07-28 and later they are required,
 * before that they are optional but must still agree when sent, because a
 * gateway routing on the header and a server acting on the body must not
 * see two different requests.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "jsonlite.h"
#include "mcp.h"

#define META_CLIENT_INFO	"io.modelcontextprotocol/clientInfo"
#define META_PROTOCOL_VERSION	"io.modelcontextprotocol/protocolVersion"

/* Attacker-chosen text quoted in error_detail is cut to this many bytes. */
#define DETAIL_QUOTE_MAX	96

/* Last protocol revision with sessions, first without. */
#define LAST_SESSION_ERA	"2025-11-25"
#define FIRST_STATELESS_ERA	"2026-07-28"

static enum mcp_era era_of(const char *v, size_t len)
{
	int month, day;
	size_t i;

	if (len != 10 || v[4] != '-' || v[7] != '-')
		return MCP_ERA_UNKNOWN;
	for (i = 0; i < 10; i++) {
		if (i == 4 || i == 7)
			continue;
		if (v[i] < '0' || v[i] > '9')
			return MCP_ERA_UNKNOWN;
	}
	month = (v[5] - '0') * 10 + (v[6] - '0');
	day = (v[8] - '0') * 10 + (v[9] - '0');
	if (month < 1 || month > 12 || day < 1 || day > 31)
		return MCP_ERA_UNKNOWN;
	/* Fixed-width digits: byte order is date order. */
	if (memcmp(v, LAST_SESSION_ERA, 10) <= 0)
		return MCP_ERA_SESSION;
	if (memcmp(v, FIRST_STATELESS_ERA, 10) >= 0)
		return MCP_ERA_STATELESS;
	return MCP_ERA_UNKNOWN;
}

enum mcp_era mcp__era(const char *protocol_version)
{
	if (!protocol_version)
		return MCP_ERA_UNKNOWN;
	return era_of(protocol_version, strlen(protocol_version));
}

/*
 * Quotes peer-supplied bytes for a human sentence: printable ASCII as is,
 * everything else as \xHH, so control characters cannot forge log lines
 * and look-alike Unicode names stay distinguishable.
 */
static void quote(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < srclen && o + 5 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];

		if (o >= DETAIL_QUOTE_MAX) {
			dst[o++] = '.';
			dst[o++] = '.';
			dst[o++] = '.';
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
}

#define QUOTE_BUF (DETAIL_QUOTE_MAX + 8)

/* Sets the first error only; later ones would explain less. */
static int body_fail(struct mcp_body *b, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int body_fail(struct mcp_body *b, const char *code, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->error)
		return 0;
	b->error = code;
	va_start(ap, fmt);
	n = vasprintf(&b->error_detail, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->error_detail = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* "" for a single message, " in batch message N" otherwise. */
static void where(char *buf, size_t len, const struct mcp_body *b, size_t idx)
{
	if (b->batch)
		snprintf(buf, len, " (batch message %zu)", idx + 1);
	else
		buf[0] = '\0';
}

static int dup_str(char **dst, const char *src)
{
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

/*
 * An id is a string or an integer (MCP forbids null and fractions in
 * requests). Integral reals are accepted as integers: an integer past 64
 * bits is read as a real (jsonlite.h).
 */
static bool id_ok(const struct jl *id, bool response)
{
	double r;

	if (jl__is(id, JL_STRING) || jl__is(id, JL_INTEGER))
		return true;
	if (jl__is(id, JL_NULL))
		return response;
	if (!jl__is(id, JL_REAL))
		return false;
	r = id->v.r;
	/* Every double past 2^53 is a whole number; below, test it without
	 * a cast that would overflow. */
	if (r >= 9007199254740992.0 || r <= -9007199254740992.0)
		return true;
	return r == (double)(long long)r;
}

static int id_text(const struct jl *id, char **out)
{
	json_t *str;
	int n;

	switch (id->type) {
	case JL_REAL:
		/* Only integral values reach here (id_ok). */
		n = asprintf(out, "%.0f", id->v.r);
		break;
	case JL_INTEGER:
		n = asprintf(out, "%lld", id->v.i);
		break;
	case JL_STRING:
		/* Escaped as every other string of an event is (jansson). */
		str = json_string(id->v.s);
		*out = str ? json_dumps(str, JSON_ENCODE_ANY) : NULL;
		json_decref(str);
		return *out ? 0 : -ENOMEM;
	default:
		n = asprintf(out, "null");
		break;
	}
	if (n < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* Copies obj[key] when it is a string; a present non-string is an error. */
static int get_str(const struct jl *obj, const char *key, char **dst, bool *bad)
{
	const struct jl *v = jl__get(obj, key);

	if (!v)
		return 0;
	if (!jl__is(v, JL_STRING)) {
		*bad = true;
		return 0;
	}
	return dup_str(dst, v->v.s);
}

static int read_client_info(struct mcp_body *b, size_t idx, const struct jl *ci,
			    const char *what, char **name, char **version)
{
	char at[48];
	bool bad = false;
	int err;

	where(at, sizeof(at), b, idx);
	if (!jl__is(ci, JL_OBJECT))
		return body_fail(b, "bad_params", "The request's %s is not a JSON object%s.", what, at);
	err = get_str(ci, "name", name, &bad);
	if (!err)
		err = get_str(ci, "version", version, &bad);
	if (err)
		return err;
	if (bad || !*name)
		return body_fail(b, "bad_params",
				 "The request's %s has no string \"name\" or a non-string \"version\"%s.",
				 what, at);
	/* Bound with the session for as long as it lives: any client could
	 * fill the daemon's memory with megabyte names. */
	if (strlen(*name) > MCP_MAX_CLIENT_INFO ||
	    (*version && strlen(*version) > MCP_MAX_CLIENT_INFO))
		return body_fail(b, "bad_params",
				 "The request's %s has a name or version longer than %d bytes%s.",
				 what, MCP_MAX_CLIENT_INFO, at);
	return 0;
}

/* params._meta: the 2026-era envelope (clientInfo, protocolVersion). */
static int read_meta(struct mcp_body *b, size_t idx, const struct jl *params,
		     struct mcp_message *m, char **meta_version)
{
	const struct jl *meta, *ci, *pv;
	char at[48];
	int err;

	where(at, sizeof(at), b, idx);
	meta = jl__get(params, "_meta");
	if (!meta)
		return 0;
	if (!jl__is(meta, JL_OBJECT))
		return body_fail(b, "bad_params",
				 "The request's params._meta is not a JSON object%s.", at);

	pv = jl__get(meta, META_PROTOCOL_VERSION);
	if (pv) {
		if (!jl__is(pv, JL_STRING))
			return body_fail(b, "bad_params",
					 "The request's _meta[\"%s\"] is not a string%s.",
					 META_PROTOCOL_VERSION, at);
		err = dup_str(meta_version, pv->v.s);
		if (err)
			return err;
	}

	ci = jl__get(meta, META_CLIENT_INFO);
	if (!ci)
		return 0;
	err = read_client_info(b, idx, ci, "_meta[\"" META_CLIENT_INFO "\"]",
			       &m->client_name, &m->client_version);
	if (err || b->error)
		return err;
	m->client_info_from_meta = true;
	return 0;
}

static bool str_eq_null(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static int read_initialize(struct mcp_body *b, size_t idx, const struct jl *params,
			   struct mcp_message *m)
{
	char *name = NULL, *version = NULL;
	const struct jl *ci;
	char at[48];
	bool bad = false;
	int err;

	where(at, sizeof(at), b, idx);
	/* The version initialize asks for outranks a _meta one. */
	if (jl__get(params, "protocolVersion")) {
		free(m->protocol_version);
		m->protocol_version = NULL;
	}
	err = get_str(params, "protocolVersion", &m->protocol_version, &bad);
	if (err)
		return err;
	if (bad)
		return body_fail(b, "bad_params",
				 "The initialize params.protocolVersion is not a string%s.", at);

	ci = jl__get(params, "clientInfo");
	if (!ci)
		return 0;
	err = read_client_info(b, idx, ci, "initialize params.clientInfo", &name, &version);
	if (err || b->error)
		goto out;
	/* Two identities in one request would let the server and us each
	 * pick a different one. */
	if (m->client_info_from_meta &&
	    (!str_eq_null(name, m->client_name) || !str_eq_null(version, m->client_version))) {
		err = body_fail(b, "bad_params",
				"The initialize request carries two different clientInfo objects%s.", at);
		goto out;
	}
	free(m->client_name);
	free(m->client_version);
	m->client_name = name;
	m->client_version = version;
	m->client_info_from_meta = false;
	return 0;
out:
	free(name);
	free(version);
	return err;
}

/* The string field a method is about: tools/call name, resources/read uri... */
static int read_target(struct mcp_body *b, size_t idx, const struct jl *params,
		       const char *key, char **dst)
{
	const struct jl *v = jl__get(params, key);
	char at[48], method[QUOTE_BUF];

	if (jl__is(v, JL_STRING))
		return dup_str(dst, v->v.s);
	where(at, sizeof(at), b, idx);
	quote(method, sizeof(method), b->msgs[idx].method, strlen(b->msgs[idx].method));
	return body_fail(b, "bad_params", "The %s request has no string params.%s%s.",
			 method, key, at);
}

static int read_params(struct mcp_body *b, size_t idx, const struct jl *params,
		       char **meta_version)
{
	struct mcp_message *m = &b->msgs[idx];
	const char *method = m->method;
	char at[48], q[QUOTE_BUF];
	bool need_object;
	int err;

	need_object = strcmp(method, "tools/call") == 0 ||
		      strcmp(method, "resources/read") == 0 ||
		      strcmp(method, "prompts/get") == 0 ||
		      strcmp(method, "initialize") == 0;
	where(at, sizeof(at), b, idx);
	if (params && !jl__is(params, JL_OBJECT) && !jl__is(params, JL_ARRAY))
		return body_fail(b, "bad_params",
				 "The request's params is neither an object nor an array%s.", at);
	if (need_object && !jl__is(params, JL_OBJECT)) {
		quote(q, sizeof(q), method, strlen(method));
		return body_fail(b, "bad_params", "The %s request has no params object%s.", q, at);
	}
	if (!jl__is(params, JL_OBJECT))
		return 0;

	err = read_meta(b, idx, params, m, meta_version);
	if (err || b->error)
		return err;
	if (*meta_version) {
		err = dup_str(&m->protocol_version, *meta_version);
		if (err)
			return err;
	}

	if (strcmp(method, "tools/call") == 0)
		return read_target(b, idx, params, "name", &m->tool);
	if (strcmp(method, "resources/read") == 0)
		return read_target(b, idx, params, "uri", &m->resource_uri);
	if (strcmp(method, "prompts/get") == 0)
		return read_target(b, idx, params, "name", &m->prompt);
	if (strcmp(method, "initialize") == 0)
		return read_initialize(b, idx, params, m);
	return 0;
}

/*
 * One message: JSON-RPC shape, then the fields we judge on. meta_version
 * receives a copy of _meta's protocol version, if any.
 */
static int read_message(struct mcp_body *b, size_t idx, const struct jl *msg, char **meta_version)
{
	struct mcp_message *m = &b->msgs[idx];
	const struct jl *jsonrpc, *method, *id, *params;
	bool has_result, has_error;
	char at[48];
	int err;

	where(at, sizeof(at), b, idx);
	if (!jl__is(msg, JL_OBJECT))
		return body_fail(b, "not_jsonrpc", "The message is not a JSON object%s.", at);
	jsonrpc = jl__get(msg, "jsonrpc");
	if (!jl__is(jsonrpc, JL_STRING) || strcmp(jsonrpc->v.s, "2.0") != 0)
		return body_fail(b, "not_jsonrpc",
				 "The message does not declare \"jsonrpc\": \"2.0\"%s.", at);

	method = jl__get(msg, "method");
	id = jl__get(msg, "id");
	params = jl__get(msg, "params");
	has_result = jl__get(msg, "result") != NULL;
	has_error = jl__get(msg, "error") != NULL;

	if (method && !jl__is(method, JL_STRING))
		return body_fail(b, "not_jsonrpc", "The message's \"method\" is not a string%s.", at);
	if (method && (has_result || has_error))
		return body_fail(b, "not_jsonrpc",
				 "The message is both a request and a response%s.", at);
	if (!method && (has_result == has_error || !id))
		return body_fail(b, "not_jsonrpc",
				 "The message is neither a request, a notification nor a response%s.",
				 at);
	if (id && !id_ok(id, !method))
		return body_fail(b, "not_jsonrpc",
				 "The message's \"id\" is not a string or an integer%s.", at);

	if (id) {
		err = id_text(id, &m->id);
		if (err)
			return err;
	}
	if (!method) {
		m->is_response = true;
		return 0;
	}
	err = dup_str(&m->method, method->v.s);
	if (err)
		return err;
	m->is_request = id != NULL;
	m->is_notification = id == NULL;
	return read_params(b, idx, params, meta_version);
}

/* Header value without the optional whitespace HTTP allows around it. */
struct hval {
	const char *p;
	size_t len;
};

static struct hval hval_of(const char *v)
{
	struct hval h = { v, v ? strlen(v) : 0 };

	while (h.len && (h.p[0] == ' ' || h.p[0] == '\t')) {
		h.p++;
		h.len--;
	}
	while (h.len && (h.p[h.len - 1] == ' ' || h.p[h.len - 1] == '\t'))
		h.len--;
	return h;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict padded standard base64 (SEP-2243 says bad padding is an error). */
static int b64_decode(const char *in, size_t len, char **out, size_t *outlen)
{
	size_t i, o = 0, pad = 0;
	char *buf;

	if (len % 4)
		return -EINVAL;
	if (len && in[len - 1] == '=')
		pad++;
	if (pad && in[len - 2] == '=')
		pad++;
	buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < len; i += 4) {
		int v[4], k;
		unsigned int n;

		for (k = 0; k < 4; k++) {
			bool pad_slot = i + 4 == len && k >= 4 - (int)pad;

			v[k] = pad_slot ? 0 : b64_val((unsigned char)in[i + k]);
			if (v[k] < 0)
				goto bad;
		}
		n = (unsigned int)v[0] << 18 | (unsigned int)v[1] << 12 |
		    (unsigned int)v[2] << 6 | (unsigned int)v[3];
		buf[o++] = (char)(n >> 16);
		if (!(i + 4 == len && pad == 2))
			buf[o++] = (char)(n >> 8);
		if (!(i + 4 == len && pad >= 1))
			buf[o++] = (char)n;
		/* Bits below the padding must be zero: one spelling per value. */
		if (i + 4 == len && ((pad == 2 && (n & 0xffff)) || (pad == 1 && (n & 0xff))))
			goto bad;
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return 0;
bad:
	free(buf);
	return -EINVAL;
}

static bool has_b64_sentinel(struct hval h)
{
	static const char prefix[] = "=?base64?";
	size_t plen = sizeof(prefix) - 1;

	return h.len >= plen + 2 && strncasecmp(h.p, prefix, plen) == 0 &&
	       h.p[h.len - 2] == '?' && h.p[h.len - 1] == '=';
}

static bool hval_eq(struct hval h, const char *s)
{
	return s && strlen(s) == h.len && memcmp(h.p, s, h.len) == 0;
}

/* Mcp-Name against the body's name or uri. */
static int check_name(struct mcp_body *b, size_t idx, const char *hdr, const char *body_name,
		      const char *what)
{
	struct hval h = hval_of(hdr);
	char hq[QUOTE_BUF], bq[QUOTE_BUF], at[48];
	char *decoded = NULL;
	size_t dlen = 0;
	bool same;
	int err;

	where(at, sizeof(at), b, idx);
	if (has_b64_sentinel(h)) {
		err = b64_decode(h.p + 9, h.len - 11, &decoded, &dlen);
		if (err == -ENOMEM)
			return err;
		if (err) {
			quote(hq, sizeof(hq), h.p, h.len);
			return body_fail(b, "header_mismatch",
					 "Mcp-Name header \"%s\" is not valid base64%s.", hq, at);
		}
		h.p = decoded;
		h.len = dlen;
	}
	same = hval_eq(h, body_name);
	if (!same) {
		quote(hq, sizeof(hq), h.p, h.len);
		if (body_name) {
			quote(bq, sizeof(bq), body_name, strlen(body_name));
			err = body_fail(b, "header_mismatch",
					"Mcp-Name header says \"%s\" but the body %s \"%s\"%s.",
					hq, what, bq, at);
		} else {
			err = body_fail(b, "header_mismatch",
					"Mcp-Name header says \"%s\" but the body names nothing%s.",
					hq, at);
		}
	} else {
		err = 0;
	}
	free(decoded);
	return err;
}

/* What Mcp-Name must mirror for this message, and how to say it. */
static const char *name_target(const struct mcp_message *m, const struct jl *msg,
			       const char **what, bool *required)
{
	const struct jl *params = jl__get(msg, "params");
	const struct jl *v;

	*required = true;
	if (m->tool) {
		*what = "calls tool";
		return m->tool;
	}
	if (m->resource_uri) {
		*what = "reads resource";
		return m->resource_uri;
	}
	if (m->prompt) {
		*what = "gets prompt";
		return m->prompt;
	}
	/* Other methods: the header is optional but, if sent, mirrors
	 * params.name or params.uri (subscribe, completion, ...). */
	*required = false;
	*what = "names";
	v = jl__get(params, "name");
	if (jl__is(v, JL_STRING))
		return v->v.s;
	v = jl__get(params, "uri");
	if (jl__is(v, JL_STRING))
		return v->v.s;
	return NULL;
}

static int check_headers(struct mcp_body *b, size_t idx, const struct jl *msg,
			 const struct mcp_headers *h, bool stateless)
{
	const struct mcp_message *m = &b->msgs[idx];
	char hq[QUOTE_BUF], bq[QUOTE_BUF], at[48];
	const char *target, *what;
	bool name_required;

	where(at, sizeof(at), b, idx);
	if (!m->method) {
		if (!h->method)
			return 0;
		quote(hq, sizeof(hq), h->method, strlen(h->method));
		return body_fail(b, "header_mismatch",
				 "Mcp-Method header says \"%s\" but the body is a response%s.",
				 hq, at);
	}

	quote(bq, sizeof(bq), m->method, strlen(m->method));
	if (!h->method) {
		if (!stateless)
			goto name;
		return body_fail(b, "missing_header",
				 "The request calls method \"%s\" without the Mcp-Method header the protocol version requires%s.",
				 bq, at);
	}
	if (!hval_eq(hval_of(h->method), m->method)) {
		struct hval hv = hval_of(h->method);

		quote(hq, sizeof(hq), hv.p, hv.len);
		return body_fail(b, "header_mismatch",
				 "Mcp-Method header says \"%s\" but the body calls method \"%s\"%s.",
				 hq, bq, at);
	}

name:
	target = name_target(m, msg, &what, &name_required);
	if (h->name)
		return check_name(b, idx, h->name, target, what);
	if (stateless && name_required)
		return body_fail(b, "missing_header",
				 "The %s request has no Mcp-Name header though the protocol version requires it%s.",
				 bq, at);
	return 0;
}

/*
 * Era of the request: the MCP-Protocol-Version header when sent, else the
 * body's _meta version. When both are sent they must be the same string,
 * or a client could claim the session era in one place to skip the
 * stateless era's header rules and the stateless era in the other.
 */
static int body_era(struct mcp_body *b, const struct mcp_headers *h, const char *meta_version,
		    enum mcp_era *era)
{
	char hq[QUOTE_BUF], bq[QUOTE_BUF];

	*era = MCP_ERA_UNKNOWN;
	if (h->protocol_version && meta_version) {
		struct hval hv = hval_of(h->protocol_version);

		if (!hval_eq(hv, meta_version)) {
			quote(hq, sizeof(hq), hv.p, hv.len);
			quote(bq, sizeof(bq), meta_version, strlen(meta_version));
			return body_fail(b, "header_mismatch",
					 "MCP-Protocol-Version header says \"%s\" but the body's _meta says \"%s\".",
					 hq, bq);
		}
	}
	if (h->protocol_version) {
		struct hval hv = hval_of(h->protocol_version);

		*era = era_of(hv.p, hv.len);
	} else if (meta_version) {
		*era = mcp__era(meta_version);
	}
	return 0;
}

static int load_json(const char *body, size_t len, struct mcp_body *out, struct jl_doc **doc)
{
	struct jl_error jerr;
	char q[QUOTE_BUF];

	*doc = jl__parse(body ? body : "", body ? len : 0, &jerr);
	if (*doc)
		return 0;
	if (jerr.code == JL_NOMEM)
		return -ENOMEM;
	quote(q, sizeof(q), jerr.text, strlen(jerr.text));
	if (jerr.code == JL_DUPLICATE_KEY)
		return body_fail(out, "duplicate_key",
				 "The body repeats a JSON object key, which servers resolve differently (%s).",
				 q);
	return body_fail(out, "bad_json", "The body is not valid JSON (byte %zu: %s).",
			 jerr.position, q);
}

int mcp__parse(const char *body, size_t len, const struct mcp_headers *hdrs,
	       struct mcp_body *out)
{
	static const struct mcp_headers no_headers;
	const struct mcp_headers *h = hdrs ? hdrs : &no_headers;
	char *meta_version = NULL;
	enum mcp_era era;
	struct jl_doc *doc = NULL;
	const struct jl *root = NULL;
	size_t n, i;
	int err;

	memset(out, 0, sizeof(*out));
	err = load_json(body, len, out, &doc);
	if (err || out->error)
		goto out;
	root = jl__root(doc);

	if (jl__is(root, JL_ARRAY)) {
		out->batch = true;
		n = root->n;
		if (n == 0) {
			err = body_fail(out, "empty_batch", "The body is an empty JSON-RPC batch.");
			goto out;
		}
		if (n > MCP_MAX_BATCH) {
			err = body_fail(out, "too_many_messages",
					"The batch holds %zu messages, more than the %d read.",
					n, MCP_MAX_BATCH);
			goto out;
		}
	} else if (jl__is(root, JL_OBJECT)) {
		n = 1;
	} else {
		err = body_fail(out, "not_jsonrpc", "The body is neither a JSON object nor a batch.");
		goto out;
	}

	out->msgs = calloc(n, sizeof(*out->msgs));
	if (!out->msgs) {
		err = -ENOMEM;
		goto out;
	}
	out->n_msgs = n;
	for (i = 0; i < n; i++) {
		const struct jl *msg = out->batch ? jl__at(root, i) : root;
		char *mv = NULL;

		err = read_message(out, i, msg, &mv);
		if (!err && !out->error && mv && !meta_version) {
			meta_version = mv;
			mv = NULL;
		}
		free(mv);
		if (err || out->error)
			goto out;
	}

	err = body_era(out, h, meta_version, &era);
	if (err || out->error)
		goto out;
	if (era == MCP_ERA_STATELESS && out->batch) {
		err = body_fail(out, "batch_not_allowed",
				"The body is a JSON-RPC batch, which protocol versions from %s on do not allow.",
				FIRST_STATELESS_ERA);
		goto out;
	}
	for (i = 0; i < n; i++) {
		const struct jl *msg = out->batch ? jl__at(root, i) : root;

		err = check_headers(out, i, msg, h, era == MCP_ERA_STATELESS);
		if (err || out->error)
			goto out;
	}
out:
	free(meta_version);
	jl__free(doc);
	if (err) {
		mcp_body__release(out);
		return err;
	}
	return 0;
}

static void message__release(struct mcp_message *m)
{
	free(m->method);
	free(m->id);
	free(m->tool);
	free(m->resource_uri);
	free(m->prompt);
	free(m->client_name);
	free(m->client_version);
	free(m->protocol_version);
}

void mcp_body__release(struct mcp_body *b)
{
	size_t i;

	if (!b)
		return;
	for (i = 0; i < b->n_msgs; i++)
		message__release(&b->msgs[i]);
	free(b->msgs);
	free(b->error_detail);
	memset(b, 0, sizeof(*b));
}

/* ---- a body's first bytes ---------------------------------------------- */

static size_t skip_ws(const char *b, size_t i, size_t len)
{
	while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
		i++;
	return i;
}

#define NOT_WITHIN ((size_t)-1)

/* Past the string whose opening quote is at b[i]; NOT_WITHIN if it does not
 * end within len. *escaped: it has a backslash. */
static size_t skip_string(const char *b, size_t i, size_t len, bool *escaped)
{
	for (i++; i < len; i++) {
		if (b[i] == '\\') {
			*escaped = true;
			i++;
		} else if (b[i] == '"') {
			return i + 1;
		}
	}
	return NOT_WITHIN;
}

/* Past the value at b[i] (which is not whitespace); len if it does not end
 * within len. Containers are skipped by their brackets, strings included. */
static size_t skip_value(const char *b, size_t i, size_t len)
{
	size_t depth = 0;
	bool esc;

	if (b[i] == '"') {
		i = skip_string(b, i, len, &esc);
		return i == NOT_WITHIN ? len : i;
	}
	if (b[i] != '{' && b[i] != '[') {
		while (i < len && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' &&
		       b[i] != '\t' && b[i] != '\n' && b[i] != '\r')
			i++;
		return i;
	}
	while (i < len) {
		if (b[i] == '"') {
			i = skip_string(b, i, len, &esc);
			if (i == NOT_WITHIN)
				return len;
			continue;
		}
		if (b[i] == '{' || b[i] == '[')
			depth++;
		else if ((b[i] == '}' || b[i] == ']') && --depth == 0)
			return i + 1;
		i++;
	}
	return len;
}

/*
 * Whether v (len bytes) is an id that can go into an event as it is: a
 * number's characters, or a string of printable ASCII (no escapes: the
 * caller checked). Anything else is left out rather than trusted.
 */
static bool plain_id(const char *v, size_t len)
{
	size_t i;

	if (len && v[0] == '"') {
		for (i = 1; i + 1 < len; i++)
			if (v[i] < 0x20 || v[i] > 0x7e)
				return false;
		return len >= 2;
	}
	for (i = 0; i < len; i++)
		if (!strchr("0123456789+-.eE", v[i]) || !v[i])
			return false;
	return len > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'));
}

/* Whether key b[k, k + klen) is name. */
static bool key_is(const char *b, size_t k, size_t klen, const char *name)
{
	return klen == strlen(name) && memcmp(b + k, name, klen) == 0;
}

int mcp__prefix(const char *b, size_t len, struct mcp_prefix *out)
{
	size_t i = skip_ws(b, 0, len), k, klen, v, end;
	bool esc, found = false;
	int more;

	memset(out, 0, sizeof(*out));
	if (i >= len)
		return 0;
	if (b[i] != '{')
		return -1;
	for (i++;;) {
		/* When the bytes run out: not yet, unless the method is in. */
		more = found ? 1 : 0;
		i = skip_ws(b, i, len);
		if (i >= len)
			return more;
		if (b[i] != '"')
			return found ? 1 : -1;	/* the end of the object, or not JSON */
		esc = false;
		k = i + 1;
		end = skip_string(b, i, len, &esc);
		if (end == NOT_WITHIN)
			return more;
		klen = esc ? 0 : end - 1 - k;	/* escaped keys match nothing */
		i = skip_ws(b, end, len);
		if (i >= len)
			return more;
		if (b[i] != ':')
			return found ? 1 : -1;
		v = i = skip_ws(b, i + 1, len);
		if (i >= len)
			return more;
		esc = false;
		if (b[v] == '"') {
			end = skip_string(b, v, len, &esc);
			if (end == NOT_WITHIN)
				return more;
		} else {
			end = skip_value(b, v, len);
			if (end >= len)
				return more;	/* a number may go on */
		}
		if (!found && key_is(b, k, klen, "method")) {
			if (b[v] != '"' || esc || end - v - 2 >= sizeof(out->method))
				return -1;
			memcpy(out->method, b + v + 1, end - v - 2);
			out->method[end - v - 2] = '\0';
			found = true;
		} else if (!out->id[0] && key_is(b, k, klen, "id") && !esc &&
			   end - v < sizeof(out->id) && plain_id(b + v, end - v)) {
			memcpy(out->id, b + v, end - v);	/* compact JSON, quotes kept */
			out->id[end - v] = '\0';
		}
		i = skip_ws(b, end, len);
		if (i >= len)
			return found ? 1 : 0;
		if (b[i] != ',')
			return found ? 1 : -1;
		i++;
	}
}
