// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for the HTTP/1.1 parser (userspace/http.c).
 *
 * The input is one direction of a connection. It is parsed as requests and
 * as responses, under tight and default limits, fed whole, split at
 * points taken from the input's own bytes, and one byte at a time. Every
 * message must meet the framing invariants (contiguous offsets, start <=
 * head_end <= end, limits kept, Content-Length bodies exactly framed) and
 * the three feedings must give byte-identical outcomes: an answer that
 * depended on how the kernel split the segments would be exploitable. A
 * fourth feeding drains messages between feeds and checks invariants only.
 * Any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

enum feeding {
	FEED_WHOLE,
	FEED_SPLIT,
	FEED_BYTES,
	FEED_SPLIT_DRAIN,
};

static const struct http_limits tight_limits = {
	.max_header_bytes = 256,
	.max_headers = 8,
	.max_body_bytes = 64,
	.max_pending = 4,
};

struct outcome {
	unsigned char *buf;
	size_t len;
	size_t cap;
};

static void put(struct outcome *o, const void *data, size_t n)
{
	if (o->len + n > o->cap) {
		size_t ncap = o->cap ? o->cap : 4096;

		while (ncap < o->len + n)
			ncap *= 2;
		o->buf = realloc(o->buf, ncap);
		if (!o->buf)
			abort();
		o->cap = ncap;
	}
	memcpy(o->buf + o->len, data, n);
	o->len += n;
}

static void put_u64(struct outcome *o, uint64_t v)
{
	put(o, &v, sizeof(v));
}

static void put_str(struct outcome *o, const char *s, size_t n)
{
	put_u64(o, n);
	put(o, s, n);
}

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

static void check_header(const struct http_header *h)
{
	size_t i, n;

	if (!h->name || !h->value || !h->name[0])
		abort();
	for (i = 0; h->name[i]; i++)
		if (!is_tchar((unsigned char)h->name[i]))
			abort();	/* also catches upper case */
	n = strlen(h->value);
	if (n && (h->value[0] == ' ' || h->value[0] == '\t' ||
		  h->value[n - 1] == ' ' || h->value[n - 1] == '\t'))
		abort();
	for (i = 0; i < n; i++) {
		unsigned char c = h->value[i];

		if ((c < ' ' && c != '\t') || c == 0x7f)
			abort();
	}
}

static void check_message(const struct http_message *m, enum http_kind kind,
			  const struct http_limits *lim, uint64_t *prev_end,
			  uint64_t offset)
{
	uint64_t framed;
	size_t i;

	if (m->start != *prev_end)
		abort();
	if (m->start >= m->head_end || m->head_end > m->end || m->end > offset)
		abort();
	if (m->head_end - m->start > lim->max_header_bytes)
		abort();
	if (m->n_headers > lim->max_headers || (m->n_headers && !m->headers))
		abort();
	for (i = 0; i < m->n_headers; i++)
		check_header(&m->headers[i]);
	if (!m->body || m->body_len > lim->max_body_bytes || m->body[m->body_len])
		abort();
	if (m->chunked && m->content_length != -1)
		abort();
	framed = m->end - m->head_end;
	if (kind == HTTP_REQUEST) {
		if (!m->target || !m->method[0] || m->body_truncated)
			abort();
		if (!m->chunked && framed != (uint64_t)(m->content_length < 0 ? 0 : m->content_length))
			abort();
		if (!m->chunked && m->body_len != framed)
			abort();
		if (m->chunked && framed < m->body_len + 5)	/* "0\r\n\r\n" */
			abort();
	} else {
		if (m->status < 100 || m->status > 999)
			abort();
		if (!m->chunked && !m->body_truncated && m->body_len != framed)
			abort();
		if (m->body_truncated && m->body_len != lim->max_body_bytes)
			abort();
	}
	*prev_end = m->end;
}

static void record(struct outcome *o, const struct http_message *m)
{
	size_t i;

	put_str(o, m->method, strlen(m->method));
	put_str(o, m->target ? m->target : "", m->target ? strlen(m->target) : 0);
	put_u64(o, (uint64_t)m->status);
	put_u64(o, (uint64_t)m->version_minor);
	put_u64(o, m->n_headers);
	for (i = 0; i < m->n_headers; i++) {
		put_str(o, m->headers[i].name, strlen(m->headers[i].name));
		put_str(o, m->headers[i].value, strlen(m->headers[i].value));
	}
	put_str(o, m->body, m->body_len);
	put_u64(o, m->body_truncated);
	put_u64(o, m->chunked);
	put_u64(o, (uint64_t)m->content_length);
	put_u64(o, m->start);
	put_u64(o, m->head_end);
	put_u64(o, m->end);
}

static void drain(struct http_parser *p, enum http_kind kind,
		  const struct http_limits *lim, uint64_t *prev_end,
		  struct outcome *o)
{
	struct http_message *m;

	while ((m = http_parser__next(p))) {
		check_message(m, kind, lim, prev_end, http_parser__offset(p));
		if (o)
			record(o, m);
		http_message__free(m);
	}
}

static size_t piece_len(const uint8_t *data, size_t size, size_t pos,
			enum feeding how)
{
	size_t n;

	switch (how) {
	case FEED_WHOLE:
		return size - pos;
	case FEED_BYTES:
		return 1;
	default:
		/* Small and large pieces, chosen by the byte at the cut. */
		n = data[pos] & 0x80 ? (size_t)(data[pos] & 0x7f) * 7 + 1 :
				       (size_t)(data[pos] % 5) + 1;
		return n < size - pos ? n : size - pos;
	}
}

static void run(enum http_kind kind, const struct http_limits *lim,
		const uint8_t *data, size_t size, enum feeding how,
		struct outcome *o)
{
	struct http_parser *p = http_parser__new(kind, lim);
	const struct http_message *part;
	uint64_t prev_end = 0, before, after;
	size_t pos = 0, n, i;
	int err = 0;

	if (!p)
		abort();
	/* Responses: the first byte says which of three requests were HEAD
	 * or CONNECT, the same way for every feeding. */
	for (i = 0; kind == HTTP_RESPONSE && size && i < 3 && !err; i++) {
		unsigned int sel = (data[0] >> (2 * i)) & 3;

		err = http_parser__expect_response(p, sel == 1 ? "HEAD" :
						   sel == 2 ? "CONNECT" : "GET");
	}
	while (pos < size && !err) {
		n = piece_len(data, size, pos, how);
		before = http_parser__offset(p);
		err = http_parser__feed(p, data + pos, n);
		after = http_parser__offset(p);
		if (after < before || after > before + n || (!err && after != before + n))
			abort();
		if (!err != !http_parser__error(p))
			abort();
		part = http_parser__partial(p);
		if (part && (part->start < prev_end || part->start >= part->head_end ||
			     part->head_end > after))
			abort();
		if (how == FEED_SPLIT_DRAIN)
			drain(p, kind, lim, &prev_end, NULL);
		pos += n;
	}
	if (!err)
		err = http_parser__finish(p);
	drain(p, kind, lim, &prev_end, o);
	if (err) {
		/* Sticky: nothing more is consumed. */
		before = http_parser__offset(p);
		if (!http_parser__error(p) ||
		    http_parser__feed(p, "GET / HTTP/1.1\r\n\r\n", 18) != err ||
		    http_parser__offset(p) != before)
			abort();
		put_str(o, http_parser__error(p), strlen(http_parser__error(p)));
	}
	put_u64(o, (uint64_t)(int64_t)err);
	put_u64(o, http_parser__offset(p));
	http_parser__free(p);
}

static void check_feedings(enum http_kind kind, const struct http_limits *lim,
			   const uint8_t *data, size_t size)
{
	struct outcome whole = { 0 }, split = { 0 }, bytes = { 0 }, drained = { 0 };

	run(kind, lim, data, size, FEED_WHOLE, &whole);
	run(kind, lim, data, size, FEED_SPLIT, &split);
	run(kind, lim, data, size, FEED_BYTES, &bytes);
	run(kind, lim, data, size, FEED_SPLIT_DRAIN, &drained);
	if (whole.len != split.len || memcmp(whole.buf, split.buf, whole.len) ||
	    whole.len != bytes.len || memcmp(whole.buf, bytes.buf, whole.len))
		abort();
	free(whole.buf);
	free(split.buf);
	free(bytes.buf);
	free(drained.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_feedings(HTTP_REQUEST, &tight_limits, data, size);
	check_feedings(HTTP_RESPONSE, &tight_limits, data, size);
	check_feedings(HTTP_REQUEST, &http_default_limits, data, size);
	check_feedings(HTTP_RESPONSE, &http_default_limits, data, size);
	return 0;
}
