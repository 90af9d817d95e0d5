/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Incremental HTTP/1.1 parser for one direction of one connection.
 *
 * Bytes are fed as the kernel hands them over, split anywhere (down to one
 * byte per call). Complete messages come out in order with their stream
 * offsets, so the caller can map a message back to the held bytes that
 * carried it. Everything a peer can grow is bounded by struct http_limits;
 * crossing a limit, or anything that is not strict HTTP/1.1, puts the parser
 * in a sticky error state with a short reason code. Strictness is a security
 * property here: whatever this parser accepts must be framed exactly as the
 * server will frame it (no request smuggling), so ambiguous framing
 * (Content-Length with Transfer-Encoding, differing Content-Length values,
 * obs-fold, bare LF, whitespace before the colon) is rejected.
 */
#ifndef MCPW_HTTP_H
#define MCPW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_kind {
	HTTP_REQUEST,
	HTTP_RESPONSE,
};

struct http_limits {
	size_t max_header_bytes;	/* start line + header block */
	size_t max_headers;		/* header fields per message */
	size_t max_body_bytes;		/* de-chunked body bytes kept */
	size_t max_pending;		/* complete messages not yet taken */
};

/* Defaults: 16 KiB header block, 100 fields, 1 MiB body, 64 pending. */
extern const struct http_limits http_default_limits;

struct http_header {
	char *name;	/* lower-cased, NUL-terminated */
	char *value;	/* leading/trailing OWS trimmed, NUL-terminated */
};

struct http_message {
	/* Request line (HTTP_REQUEST). */
	char method[24];
	char *target;
	/* Status line (HTTP_RESPONSE). */
	int status;
	int version_minor;		/* HTTP/1.<minor> */

	struct http_header *headers;
	size_t n_headers;

	/* De-chunked body, NUL-terminated (the NUL is not counted). For a
	 * response whose body exceeds max_body_bytes the kept prefix is
	 * body_len bytes and body_truncated is set; for a request that is an
	 * error ("body_too_large"). */
	char *body;
	size_t body_len;
	bool body_truncated;
	bool chunked;
	long long content_length;	/* -1 when absent */

	/* Offsets in the direction's byte stream (first byte fed is 0). */
	uint64_t start;			/* first byte of the start line */
	uint64_t head_end;		/* just past the blank line */
	uint64_t end;			/* just past the last byte, framing included */
};

struct http_parser;

struct http_parser *http_parser__new(enum http_kind kind, const struct http_limits *limits);
void http_parser__free(struct http_parser *p);

/*
 * Feeds bytes. Returns 0, -EBADMSG when the stream is not valid HTTP/1.1,
 * -E2BIG when a limit was crossed, -ENOMEM. After an error the parser keeps
 * returning it and consumes nothing; http_parser__error() names the reason.
 */
int http_parser__feed(struct http_parser *p, const void *data, size_t len);

/*
 * Marks the end of the stream (peer closed). Completes a response whose body
 * is delimited by the close; a request cut short is an error ("truncated").
 */
int http_parser__finish(struct http_parser *p);

/*
 * Response parsers only, optional: the method of the next request on the
 * connection, called once per request in order. A response to HEAD has no
 * body whatever its headers say, and a 2xx to CONNECT starts a tunnel; without
 * this the parser assumes neither and a HEAD would desynchronise it. Returns
 * 0, -EINVAL (request parser), or the sticky -E2BIG ("too_many_pending":
 * more than max_pending HEAD/CONNECT requests unanswered) / -ENOMEM.
 */
int http_parser__expect_response(struct http_parser *p, const char *method);

/* Next complete message, oldest first; the caller frees it. NULL if none. */
struct http_message *http_parser__next(struct http_parser *p);

/*
 * The message being parsed, once its head is complete but its body is not
 * (headers, content_length and chunked are valid; body is not). NULL when no
 * head is complete. Owned by the parser; valid until the next feed.
 */
const struct http_message *http_parser__partial(const struct http_parser *p);

/* Short reason code of the sticky error, NULL when none (see http.c). */
const char *http_parser__error(const struct http_parser *p);

/* Bytes consumed so far (the stream offset of the next byte). */
uint64_t http_parser__offset(const struct http_parser *p);

void http_message__free(struct http_message *m);

/* First value of a header (name lower-case), NULL when absent. */
const char *http_message__header(const struct http_message *m, const char *lname);
/* Number of fields with that name. */
size_t http_message__header_count(const struct http_message *m, const char *lname);

/*
 * In a raw header block of len bytes: where the value of its first
 * Content-Length field starts (*off) and how many digits it has (*digits,
 * 1 to 10). false when there is no such field or its value is not 1 to 10
 * digits.
 */
bool http__content_length_digits(const char *head, size_t len, size_t *off, size_t *digits);

#endif
