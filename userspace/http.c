// SPDX-License-Identifier: GPL-2.0
/*
 * Incremental, strict HTTP/1.1 parser (contract in http.h).
 *
 * http_parser__feed() looks at every byte once. Start, header and trailer
 * lines are gathered in one line buffer bounded by max_header_bytes and
 * parsed when their CRLF arrives; chunk-size lines are checked byte by byte
 * without buffering; body bytes are copied in runs. So the work is linear in
 * the input however it is split, and the outcome (messages, offsets, error
 * and the offset it happened at) does not depend on the split. A finished
 * message is queued for http_parser__next().
 *
 * Framing is RFC 9112 as a strict server (Node's llhttp) applies it, and
 * anything two parsers could read differently is an error, never a guess.
 * No bytes are skipped between messages (not even the empty lines RFC 9112
 * lets a server ignore), so one message's end is the next one's start.
 *
 * Reason codes of http_parser__error():
 *   -EBADMSG  bare_lf, bare_cr           line ending other than CRLF
 *             bad_start_line             request/status line shape, or an
 *                                        empty line where one was expected
 *             bad_method, bad_target, bad_version, bad_status
 *             bad_header_name            non-token name, no colon
 *             space_before_colon, obs_fold, bad_header_value
 *             bad_content_length         not 1*DIGIT, or too big
 *             duplicate_content_length   differing Content-Length values
 *             te_with_content_length     both framing headers present
 *             bad_transfer_encoding      request: not exactly "chunked";
 *                                        response: chunked not last; 1.0
 *             bad_chunk, chunk_size_overflow (over 16 hex digits)
 *             truncated                  finish() inside a framed message
 *             after_finish               bytes fed after finish()
 *             protocol_switched          bytes after a 101 (or a 2xx to
 *                                        CONNECT): no longer HTTP
 *   -E2BIG    header_too_large (start line, fields and blank line; or
 *             the trailer section), too_many_headers (trailers alike),
 *             body_too_large (requests), chunk_ext_too_large (chunk
 *             extension bytes of one message over max_header_bytes),
 *             too_many_pending
 *   -ENOMEM   no_memory
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

const struct http_limits http_default_limits = {
	.max_header_bytes = 16 * 1024,
	.max_headers = 100,
	.max_body_bytes = 1024 * 1024,
	.max_pending = 64,
};

enum parse_state {
	ST_START_LINE,
	ST_HEADER_LINE,
	ST_BODY_LENGTH,
	ST_BODY_CLOSE,
	ST_CHUNK_SIZE,
	ST_CHUNK_DATA,
	ST_CHUNK_DATA_CR,
	ST_CHUNK_DATA_LF,
	ST_TRAILER_LINE,
	ST_SWITCHED,
};

/* Where we are in "size *( BWS ; BWS name [ BWS = BWS value ] ) CRLF". */
enum chunk_line_state {
	CS_SIZE,
	CS_WS_BEFORE_SEMI,
	CS_NAME_START,
	CS_NAME,
	CS_WS_AFTER_NAME,
	CS_VALUE_START,
	CS_VALUE_TOKEN,
	CS_VALUE_QUOTED,
	CS_VALUE_ESCAPE,
	CS_VALUE_END,
	CS_LF,
};

enum expect_kind {
	EXPECT_NONE,
	EXPECT_HEAD,
	EXPECT_CONNECT,
};

struct expect_entry {
	uint64_t index;		/* which request, counting from 0 */
	enum expect_kind kind;
};

/* Messages are allocated boxed so the queue needs no separate nodes; the
 * message is the first member, so free(m) releases the box. */
struct msg_box {
	struct http_message msg;
	struct msg_box *next;
};

struct http_parser {
	enum http_kind kind;
	struct http_limits limits;
	size_t body_cap_max;		/* max_body_bytes + the NUL */
	enum parse_state state;
	int err;
	const char *reason;
	bool finished;
	uint64_t offset;
	uint64_t msg_start;

	char *line;
	size_t line_len;
	size_t line_cap;
	bool cr;			/* last byte was a CR, LF must follow */
	size_t section_bytes;		/* of this head, or trailer section */
	size_t trailer_fields;

	struct msg_box *cur;
	bool head_done;
	size_t headers_cap;
	size_t body_cap;
	uint64_t left;			/* body or chunk bytes still to come */
	enum chunk_line_state cs;
	unsigned int chunk_digits;
	size_t ext_bytes;
	bool switch_after;

	struct msg_box *q_head;
	struct msg_box *q_tail;
	size_t n_pending;

	/* Responses: which of the requests were HEAD or CONNECT. */
	struct expect_entry *expect;
	size_t expect_cap;
	size_t expect_first;
	size_t expect_len;
	uint64_t n_expected;
	uint64_t n_final;
};

static int parser_fail(struct http_parser *p, int err, const char *reason)
{
	p->err = err;
	p->reason = reason;
	return err;
}

static int bad_msg(struct http_parser *p, const char *reason)
{
	return parser_fail(p, -EBADMSG, reason);
}

static int too_big(struct http_parser *p, const char *reason)
{
	return parser_fail(p, -E2BIG, reason);
}

static int no_mem(struct http_parser *p)
{
	return parser_fail(p, -ENOMEM, "no_memory");
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

/* field-vchar, SP and HTAB: VCHAR and obs-text, no other control. */
static bool is_field_char(unsigned char c)
{
	return c == '\t' || (c >= ' ' && c != 0x7f);
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Makes room for need bytes. Growth is geometric so one-byte feeds stay
 * linear, and capped at max (>= need) so memory follows the limits.
 */
static int buf_reserve(char **buf, size_t *cap, size_t need, size_t max)
{
	size_t ncap;
	char *nbuf;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 64;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (ncap > max)
		ncap = max;
	nbuf = realloc(*buf, ncap);
	if (!nbuf)
		return -ENOMEM;
	*buf = nbuf;
	*cap = ncap;
	return 0;
}

static char *dup_range(const char *s, size_t n, bool lower)
{
	char *d = malloc(n + 1);
	size_t i;

	if (!d)
		return NULL;
	for (i = 0; i < n; i++) {
		char c = s[i];

		d[i] = lower && c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
	}
	d[n] = '\0';
	return d;
}

struct http_parser *http_parser__new(enum http_kind kind, const struct http_limits *limits)
{
	struct http_parser *p;

	if (kind != HTTP_REQUEST && kind != HTTP_RESPONSE) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->kind = kind;
	p->limits = limits ? *limits : http_default_limits;
	p->body_cap_max = p->limits.max_body_bytes < SIZE_MAX ?
			  p->limits.max_body_bytes + 1 : SIZE_MAX;
	p->state = ST_START_LINE;
	return p;
}

void http_message__free(struct http_message *m)
{
	size_t i;

	if (!m)
		return;
	free(m->target);
	for (i = 0; i < m->n_headers; i++) {
		free(m->headers[i].name);
		free(m->headers[i].value);
	}
	free(m->headers);
	free(m->body);
	free(m);
}

void http_parser__free(struct http_parser *p)
{
	struct msg_box *box, *next;

	if (!p)
		return;
	for (box = p->q_head; box; box = next) {
		next = box->next;
		http_message__free(&box->msg);
	}
	if (p->cur)
		http_message__free(&p->cur->msg);
	free(p->line);
	free(p->expect);
	free(p);
}

/* ---- responses: what the request they answer says about the body ------- */

int http_parser__expect_response(struct http_parser *p, const char *method)
{
	enum expect_kind kind;
	struct expect_entry *ring;
	size_t i, ncap;

	if (!p || !method || p->kind != HTTP_RESPONSE)
		return -EINVAL;
	if (p->err)
		return p->err;
	if (strcmp(method, "HEAD") == 0)
		kind = EXPECT_HEAD;
	else if (strcmp(method, "CONNECT") == 0)
		kind = EXPECT_CONNECT;
	else
		kind = EXPECT_NONE;
	p->n_expected++;
	if (kind == EXPECT_NONE)
		return 0;
	if (p->expect_len >= p->limits.max_pending)
		return too_big(p, "too_many_pending");
	if (p->expect_len == p->expect_cap) {
		ncap = p->expect_cap ? p->expect_cap * 2 : 8;
		ring = calloc(ncap, sizeof(*ring));
		if (!ring)
			return no_mem(p);
		for (i = 0; i < p->expect_len; i++)
			ring[i] = p->expect[(p->expect_first + i) % p->expect_cap];
		free(p->expect);
		p->expect = ring;
		p->expect_cap = ncap;
		p->expect_first = 0;
	}
	ring = &p->expect[(p->expect_first + p->expect_len) % p->expect_cap];
	ring->index = p->n_expected - 1;
	ring->kind = kind;
	p->expect_len++;
	return 0;
}

/* Kind of the request the next final response answers. */
static enum expect_kind expect_pop(struct http_parser *p)
{
	uint64_t idx = p->n_final++;

	while (p->expect_len) {
		struct expect_entry e = p->expect[p->expect_first];

		if (e.index > idx)
			break;
		p->expect_first = (p->expect_first + 1) % p->expect_cap;
		p->expect_len--;
		if (e.index == idx)
			return e.kind;
	}
	return EXPECT_NONE;
}

/* ---- start line --------------------------------------------------------- */

static bool parse_version(const char *s, size_t n, int *minor)
{
	if (n != 8 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1'))
		return false;
	*minor = s[7] - '0';
	return true;
}

static int parse_request_line(struct http_parser *p, const char *s, size_t n)
{
	struct http_message *m = &p->cur->msg;
	const char *sp1, *sp2, *end = s + n;
	size_t mlen, i;

	sp1 = memchr(s, ' ', n);
	if (!sp1 || sp1 == s)
		return bad_msg(p, "bad_start_line");
	mlen = sp1 - s;
	for (i = 0; i < mlen; i++)
		if (!is_tchar(s[i]))
			return bad_msg(p, "bad_method");
	if (mlen >= sizeof(m->method))
		return bad_msg(p, "bad_method");
	sp2 = memchr(sp1 + 1, ' ', end - sp1 - 1);
	if (!sp2 || sp2 == sp1 + 1)
		return bad_msg(p, "bad_start_line");
	for (i = 1; sp1 + i < sp2; i++) {
		unsigned char c = sp1[i];

		if (c <= ' ' || c >= 0x7f)
			return bad_msg(p, "bad_target");
	}
	if (!parse_version(sp2 + 1, end - sp2 - 1, &m->version_minor))
		return bad_msg(p, "bad_version");
	memcpy(m->method, s, mlen);
	m->method[mlen] = '\0';
	m->target = dup_range(sp1 + 1, sp2 - sp1 - 1, false);
	if (!m->target)
		return no_mem(p);
	return 0;
}

/* "HTTP/1.x SP 3DIGIT [SP reason]"; a missing reason is tolerated, as by
 * llhttp, since it cannot change the framing. */
static int parse_status_line(struct http_parser *p, const char *s, size_t n)
{
	struct http_message *m = &p->cur->msg;
	const char *sp = memchr(s, ' ', n);
	size_t i;

	if (!parse_version(s, sp ? (size_t)(sp - s) : n, &m->version_minor))
		return bad_msg(p, "bad_version");
	if (!sp)
		return bad_msg(p, "bad_start_line");
	s = sp + 1;
	n -= 9;
	if (n < 3 || (n > 3 && s[3] != ' '))
		return bad_msg(p, "bad_status");
	for (i = 0; i < 3; i++)
		if (s[i] < '0' || s[i] > '9')
			return bad_msg(p, "bad_status");
	m->status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	if (m->status < 100)
		return bad_msg(p, "bad_status");
	for (i = 4; i < n; i++)
		if (!is_field_char(s[i]))
			return bad_msg(p, "bad_status");
	return 0;
}

static int start_line_done(struct http_parser *p)
{
	struct msg_box *box;

	box = calloc(1, sizeof(*box));
	if (!box)
		return no_mem(p);
	p->cur = box;
	box->msg.content_length = -1;
	box->msg.start = p->msg_start;
	p->state = ST_HEADER_LINE;
	if (!p->line_len)
		return bad_msg(p, "bad_start_line");
	if (p->kind == HTTP_REQUEST)
		return parse_request_line(p, p->line, p->line_len);
	return parse_status_line(p, p->line, p->line_len);
}

/* ---- header and trailer fields ------------------------------------------ */

struct field {
	size_t name_len;
	size_t value_off;
	size_t value_len;
};

static int parse_field_line(struct http_parser *p, const char *s, size_t n,
			    struct field *f)
{
	size_t i = 0, j, end;

	/* Leading whitespace is obs-fold (or space after the start line):
	 * some peers unfold it into the previous field, others do not. */
	if (is_ws(s[0]))
		return bad_msg(p, "obs_fold");
	while (i < n && is_tchar(s[i]))
		i++;
	if (i == n)
		return bad_msg(p, "bad_header_name");
	if (s[i] != ':') {
		for (j = i; j < n && is_ws(s[j]); j++)
			;
		if (i && j > i && j < n && s[j] == ':')
			return bad_msg(p, "space_before_colon");
		return bad_msg(p, "bad_header_name");
	}
	if (!i)
		return bad_msg(p, "bad_header_name");
	f->name_len = i;
	for (i++; i < n && is_ws(s[i]); i++)
		;
	for (end = n; end > i && is_ws(s[end - 1]); end--)
		;
	for (j = i; j < end; j++)
		if (!is_field_char(s[j]))
			return bad_msg(p, "bad_header_value");
	f->value_off = i;
	f->value_len = end - i;
	return 0;
}

static int add_header(struct http_parser *p, const struct field *f)
{
	struct http_message *m = &p->cur->msg;
	struct http_header *h;

	if (m->n_headers >= p->limits.max_headers)
		return too_big(p, "too_many_headers");
	if (m->n_headers == p->headers_cap) {
		size_t ncap = p->headers_cap ? p->headers_cap * 2 : 16;

		if (ncap > p->limits.max_headers)
			ncap = p->limits.max_headers;
		h = realloc(m->headers, ncap * sizeof(*h));
		if (!h)
			return no_mem(p);
		m->headers = h;
		p->headers_cap = ncap;
	}
	h = &m->headers[m->n_headers];
	h->name = dup_range(p->line, f->name_len, true);
	h->value = dup_range(p->line + f->value_off, f->value_len, false);
	if (!h->name || !h->value) {
		free(h->name);
		free(h->value);
		return no_mem(p);
	}
	m->n_headers++;
	return 0;
}

/* ---- framing ------------------------------------------------------------ */

static int read_content_length(struct http_parser *p, long long *cl)
{
	const struct http_message *m = &p->cur->msg;
	size_t i;

	*cl = -1;
	for (i = 0; i < m->n_headers; i++) {
		const char *v = m->headers[i].value;
		long long val = 0;

		if (strcmp(m->headers[i].name, "content-length") != 0)
			continue;
		if (!*v)
			return bad_msg(p, "bad_content_length");
		for (; *v; v++) {
			if (*v < '0' || *v > '9' || val > (LLONG_MAX - 9) / 10)
				return bad_msg(p, "bad_content_length");
			val = val * 10 + (*v - '0');
		}
		if (*cl >= 0 && val != *cl)
			return bad_msg(p, "duplicate_content_length");
		*cl = val;
	}
	return 0;
}

/*
 * A response may stack codings; chunked must come last and only once
 * (RFC 9112 6.1), else the body runs to the close. Parameters and empty
 * list elements are refused rather than interpreted.
 */
static int response_transfer_coding(struct http_parser *p, bool *chunked)
{
	const struct http_message *m = &p->cur->msg;
	bool last_chunked = false;
	size_t i;

	for (i = 0; i < m->n_headers; i++) {
		const char *v = m->headers[i].value, *tok;

		if (strcmp(m->headers[i].name, "transfer-encoding") != 0)
			continue;
		for (;;) {
			while (is_ws(*v))
				v++;
			for (tok = v; is_tchar(*v); v++)
				;
			if (v == tok || last_chunked)
				return bad_msg(p, "bad_transfer_encoding");
			last_chunked = v - tok == 7 && strncasecmp(tok, "chunked", 7) == 0;
			while (is_ws(*v))
				v++;
			if (!*v)
				break;
			if (*v++ != ',')
				return bad_msg(p, "bad_transfer_encoding");
		}
	}
	*chunked = last_chunked;
	return 0;
}

static int request_framing(struct http_parser *p, long long cl, size_t n_te)
{
	struct http_message *m = &p->cur->msg;
	const char *te = http_message__header(m, "transfer-encoding");

	if (n_te) {
		if (n_te != 1 || strcasecmp(te, "chunked") != 0 || m->version_minor == 0)
			return bad_msg(p, "bad_transfer_encoding");
		m->chunked = true;
		return 0;
	}
	if (cl < 0)
		return 0;
	if ((unsigned long long)cl > p->limits.max_body_bytes)
		return too_big(p, "body_too_large");
	m->content_length = cl;
	p->left = cl;
	return 0;
}

static int response_framing(struct http_parser *p, long long cl, size_t n_te)
{
	struct http_message *m = &p->cur->msg;
	enum expect_kind req = EXPECT_NONE;
	int err;

	m->content_length = cl;
	if (m->status >= 200 || m->status == 101)
		req = expect_pop(p);
	if (m->status == 101 || (req == EXPECT_CONNECT && m->status / 100 == 2)) {
		p->switch_after = true;
		return 0;
	}
	if (m->status < 200 || m->status == 204 || m->status == 304 ||
	    req == EXPECT_HEAD)
		return 0;
	if (n_te) {
		if (m->version_minor == 0)
			return bad_msg(p, "bad_transfer_encoding");
		err = response_transfer_coding(p, &m->chunked);
		if (err)
			return err;
		if (!m->chunked)
			p->state = ST_BODY_CLOSE;
		return 0;
	}
	if (cl < 0)
		p->state = ST_BODY_CLOSE;
	else
		p->left = cl;
	return 0;
}

static int msg_done(struct http_parser *p, uint64_t end);

static int head_done(struct http_parser *p)
{
	struct http_message *m = &p->cur->msg;
	size_t n_te = http_message__header_count(m, "transfer-encoding");
	long long cl;
	int err;

	m->head_end = p->offset + 1;
	err = read_content_length(p, &cl);
	if (err)
		return err;
	if (cl >= 0 && n_te)
		return bad_msg(p, "te_with_content_length");
	p->left = 0;
	p->state = ST_BODY_LENGTH;
	if (p->kind == HTTP_REQUEST)
		err = request_framing(p, cl, n_te);
	else
		err = response_framing(p, cl, n_te);
	if (err)
		return err;
	if (!m->chunked && p->state == ST_BODY_LENGTH && !p->left)
		return msg_done(p, m->head_end);
	/* Only a head whose body is under way is shown by partial(). */
	p->head_done = true;
	if (m->chunked) {
		p->state = ST_CHUNK_SIZE;
		p->cs = CS_SIZE;
		p->chunk_digits = 0;
		m->content_length = -1;
	}
	return 0;
}

/* ---- completion --------------------------------------------------------- */

static int msg_done(struct http_parser *p, uint64_t end)
{
	struct msg_box *box = p->cur;
	struct http_message *m = &box->msg;

	if (p->n_pending >= p->limits.max_pending)
		return too_big(p, "too_many_pending");
	if (!m->body) {
		m->body = malloc(1);
		if (!m->body)
			return no_mem(p);
	}
	m->body[m->body_len] = '\0';
	m->end = end;
	box->next = NULL;
	if (p->q_tail)
		p->q_tail->next = box;
	else
		p->q_head = box;
	p->q_tail = box;
	p->n_pending++;

	p->cur = NULL;
	p->head_done = false;
	p->headers_cap = 0;
	p->body_cap = 0;
	p->section_bytes = 0;
	p->ext_bytes = 0;
	p->msg_start = end;
	p->state = p->switch_after ? ST_SWITCHED : ST_START_LINE;
	return 0;
}

/* ---- lines -------------------------------------------------------------- */

static int line_done(struct http_parser *p)
{
	struct field f;
	int err = 0;

	switch (p->state) {
	case ST_START_LINE:
		err = start_line_done(p);
		break;
	case ST_HEADER_LINE:
		if (!p->line_len) {
			err = head_done(p);
			break;
		}
		err = parse_field_line(p, p->line, p->line_len, &f);
		if (!err)
			err = add_header(p, &f);
		break;
	case ST_TRAILER_LINE:
		/* Trailers are checked but not kept: a field the client sends
		 * after the body is not one the server routes or authorises on. */
		if (!p->line_len) {
			err = msg_done(p, p->offset + 1);
			break;
		}
		err = parse_field_line(p, p->line, p->line_len, &f);
		if (!err && ++p->trailer_fields > p->limits.max_headers)
			err = too_big(p, "too_many_headers");
		break;
	default:
		break;
	}
	p->line_len = 0;
	return err;
}

static int line_byte(struct http_parser *p, unsigned char c)
{
	if (p->section_bytes >= p->limits.max_header_bytes)
		return too_big(p, "header_too_large");
	if (p->cr) {
		if (c != '\n')
			return bad_msg(p, "bare_cr");
		p->cr = false;
		p->section_bytes++;
		return line_done(p);
	}
	if (c == '\n')
		return bad_msg(p, "bare_lf");
	p->section_bytes++;
	if (c == '\r') {
		p->cr = true;
		return 0;
	}
	/* line_len < section_bytes <= max_header_bytes bounds the buffer. */
	if (buf_reserve(&p->line, &p->line_cap, p->line_len + 1,
			p->limits.max_header_bytes))
		return no_mem(p);
	p->line[p->line_len++] = c;
	return 0;
}

/* ---- chunked ------------------------------------------------------------ */

static int chunk_line_done(struct http_parser *p)
{
	if (p->left) {
		p->state = ST_CHUNK_DATA;
		return 0;
	}
	p->state = ST_TRAILER_LINE;
	p->section_bytes = 0;
	p->trailer_fields = 0;
	p->line_len = 0;
	return 0;
}

static int chunk_size_digit(struct http_parser *p, int hex)
{
	const struct http_message *m = &p->cur->msg;

	if (++p->chunk_digits > 16)
		return bad_msg(p, "chunk_size_overflow");
	p->left = p->left << 4 | (unsigned int)hex;
	if (p->kind == HTTP_REQUEST &&
	    p->left > p->limits.max_body_bytes - m->body_len)
		return too_big(p, "body_too_large");
	return 0;
}

/* One byte of a chunk extension; the grammar is followed exactly so that
 * no quoting trick can hide a CRLF from us that a server would see. */
static int chunk_ext_byte(struct http_parser *p, unsigned char c)
{
	if (++p->ext_bytes > p->limits.max_header_bytes)
		return too_big(p, "chunk_ext_too_large");
	switch (p->cs) {
	case CS_SIZE:
	case CS_VALUE_END:
	case CS_WS_BEFORE_SEMI:
		if (c == ';')
			p->cs = CS_NAME_START;
		else if (is_ws(c))
			p->cs = CS_WS_BEFORE_SEMI;
		else
			return bad_msg(p, "bad_chunk");
		return 0;
	case CS_NAME_START:
	case CS_NAME:
	case CS_WS_AFTER_NAME:
		if (is_tchar(c) && p->cs != CS_WS_AFTER_NAME)
			p->cs = CS_NAME;
		else if (is_ws(c))
			p->cs = p->cs == CS_NAME_START ? CS_NAME_START : CS_WS_AFTER_NAME;
		else if (c == ';' && p->cs != CS_NAME_START)
			p->cs = CS_NAME_START;
		else if (c == '=' && p->cs != CS_NAME_START)
			p->cs = CS_VALUE_START;
		else
			return bad_msg(p, "bad_chunk");
		return 0;
	case CS_VALUE_START:
		if (is_tchar(c))
			p->cs = CS_VALUE_TOKEN;
		else if (c == '"')
			p->cs = CS_VALUE_QUOTED;
		else if (!is_ws(c))
			return bad_msg(p, "bad_chunk");
		return 0;
	case CS_VALUE_TOKEN:
		if (c == ';')
			p->cs = CS_NAME_START;
		else if (is_ws(c))
			p->cs = CS_WS_BEFORE_SEMI;
		else if (!is_tchar(c))
			return bad_msg(p, "bad_chunk");
		return 0;
	case CS_VALUE_QUOTED:
		if (c == '"')
			p->cs = CS_VALUE_END;
		else if (c == '\\')
			p->cs = CS_VALUE_ESCAPE;
		else if (!is_field_char(c))
			return bad_msg(p, "bad_chunk");
		return 0;
	case CS_VALUE_ESCAPE:
		if (!is_field_char(c))
			return bad_msg(p, "bad_chunk");
		p->cs = CS_VALUE_QUOTED;
		return 0;
	default:
		return bad_msg(p, "bad_chunk");
	}
}

static int chunk_size_byte(struct http_parser *p, unsigned char c)
{
	int hex = hex_value(c);

	if (p->cs == CS_LF) {
		if (c != '\n')
			return bad_msg(p, "bare_cr");
		return chunk_line_done(p);
	}
	if (c == '\n')
		return bad_msg(p, "bare_lf");
	if (p->cs == CS_SIZE && hex >= 0)
		return chunk_size_digit(p, hex);
	if (p->cs == CS_SIZE && !p->chunk_digits)
		return bad_msg(p, "bad_chunk");
	if (c == '\r') {
		switch (p->cs) {
		case CS_SIZE:
		case CS_NAME:
		case CS_VALUE_TOKEN:
		case CS_VALUE_END:
			p->cs = CS_LF;
			return 0;
		default:
			return bad_msg(p, "bad_chunk");
		}
	}
	return chunk_ext_byte(p, c);
}

/* ---- feeding ------------------------------------------------------------ */

static int parse_byte(struct http_parser *p, unsigned char c)
{
	switch (p->state) {
	case ST_START_LINE:
	case ST_HEADER_LINE:
	case ST_TRAILER_LINE:
		return line_byte(p, c);
	case ST_CHUNK_SIZE:
		return chunk_size_byte(p, c);
	case ST_CHUNK_DATA_CR:
		if (c != '\r')
			return bad_msg(p, "bad_chunk");
		p->state = ST_CHUNK_DATA_LF;
		return 0;
	case ST_CHUNK_DATA_LF:
		if (c != '\n')
			return bad_msg(p, "bare_cr");
		p->state = ST_CHUNK_SIZE;
		p->cs = CS_SIZE;
		p->chunk_digits = 0;
		return 0;
	case ST_SWITCHED:
		return bad_msg(p, "protocol_switched");
	default:
		return bad_msg(p, "bad_start_line");
	}
}

/* Keeps up to max_body_bytes; a request never gets here with more (its
 * length was checked up front), a response is cut and flagged. */
static int body_append(struct http_parser *p, const unsigned char *s, size_t n)
{
	struct http_message *m = &p->cur->msg;
	size_t room = p->limits.max_body_bytes - m->body_len;
	size_t keep = n < room ? n : room;

	if (keep < n)
		m->body_truncated = true;
	if (!keep)
		return 0;
	if (buf_reserve(&m->body, &p->body_cap, m->body_len + keep + 1,
			p->body_cap_max))
		return no_mem(p);
	memcpy(m->body + m->body_len, s, keep);
	m->body_len += keep;
	return 0;
}

static int body_run(struct http_parser *p, const unsigned char *s, size_t n,
		    size_t *used)
{
	size_t take = n;
	int err;

	*used = 0;
	if (p->state != ST_BODY_CLOSE && p->left < take)
		take = p->left;
	err = body_append(p, s, take);
	if (err)
		return err;
	*used = take;
	if (p->state == ST_BODY_CLOSE)
		return 0;
	p->left -= take;
	if (p->left)
		return 0;
	if (p->state == ST_CHUNK_DATA) {
		p->state = ST_CHUNK_DATA_CR;
		return 0;
	}
	err = msg_done(p, p->offset + take);
	if (err)
		*used = take - 1;	/* the completing byte was not taken */
	return err;
}

int http_parser__feed(struct http_parser *p, const void *data, size_t len)
{
	const unsigned char *s = data;
	size_t i = 0, used;
	int err = 0;

	if (p->err)
		return p->err;
	if (!len)
		return 0;
	if (p->finished)
		return bad_msg(p, "after_finish");
	while (i < len && !err) {
		switch (p->state) {
		case ST_BODY_LENGTH:
		case ST_BODY_CLOSE:
		case ST_CHUNK_DATA:
			err = body_run(p, s + i, len - i, &used);
			break;
		default:
			err = parse_byte(p, s[i]);
			used = !err;
			break;
		}
		p->offset += used;
		i += used;
	}
	return err;
}

int http_parser__finish(struct http_parser *p)
{
	if (p->err)
		return p->err;
	if (p->finished)
		return 0;
	p->finished = true;
	switch (p->state) {
	case ST_START_LINE:
		return p->section_bytes ? bad_msg(p, "truncated") : 0;
	case ST_SWITCHED:
		return 0;
	case ST_BODY_CLOSE:
		return msg_done(p, p->offset);
	default:
		return bad_msg(p, "truncated");
	}
}

struct http_message *http_parser__next(struct http_parser *p)
{
	struct msg_box *box = p->q_head;

	if (!box)
		return NULL;
	p->q_head = box->next;
	if (!p->q_head)
		p->q_tail = NULL;
	p->n_pending--;
	box->next = NULL;
	return &box->msg;
}

const struct http_message *http_parser__partial(const struct http_parser *p)
{
	return p->cur && p->head_done ? &p->cur->msg : NULL;
}

const char *http_parser__error(const struct http_parser *p)
{
	return p->err ? p->reason : NULL;
}

uint64_t http_parser__offset(const struct http_parser *p)
{
	return p->offset;
}

const char *http_message__header(const struct http_message *m, const char *lname)
{
	size_t i;

	/* The first letter before the call: most names differ there. */
	for (i = 0; m && i < m->n_headers; i++)
		if (m->headers[i].name[0] == lname[0] && strcmp(m->headers[i].name, lname) == 0)
			return m->headers[i].value;
	return NULL;
}

size_t http_message__header_count(const struct http_message *m, const char *lname)
{
	size_t i, n = 0;

	for (i = 0; m && i < m->n_headers; i++)
		if (m->headers[i].name[0] == lname[0] && strcmp(m->headers[i].name, lname) == 0)
			n++;
	return n;
}

bool http__content_length_digits(const char *head, size_t len, size_t *off, size_t *digits)
{
	size_t i, n;

	for (i = 0; i + 15 < len; i++) {
		if ((i == 0 || head[i - 1] == '\n') && strncasecmp(head + i, "content-length:", 15) == 0)
			break;
	}
	if (i + 15 >= len)
		return false;
	for (i += 15; i < len && (head[i] == ' ' || head[i] == '\t'); i++)
		;
	for (n = 0; i + n < len && head[i + n] >= '0' && head[i + n] <= '9'; n++)
		;
	if (n == 0 || n > 10)
		return false;
	*off = i;
	*digits = n;
	return true;
}
