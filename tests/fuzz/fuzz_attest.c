// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for the attestation API's two parsers. The input is a
 * request line for attest__parse_request(), the agent's side, which reads
 * whatever a local caller sends; then an answer line for the client
 * library's own small JSON reader, mcpw_attest_parse().
 *
 * Request invariants: an error is -EINVAL with a reason that can go into
 * the answer's JSON string as it is (the server prints it unescaped); a
 * parsed request has ports, a consistent family, and survives being
 * written back out and parsed again unchanged.
 * Answer invariants: 0 or -EPROTO; every string field NUL-terminated
 * inside its array; a refused answer leaves the result zeroed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "attest.h"
/* The fuzz build archives only userspace/: take the library's source. */
#include "../../lib/attest/mcpwarden_attest.c"

static void check_reason(const char *why)
{
	const char *p;

	if (!why || !*why || strlen(why) > 100)
		__builtin_trap();
	for (p = why; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			__builtin_trap();
}

static void check_addr(const struct attest_addr *a)
{
	static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };
	bool mapped = memcmp(a->addr, v4mapped, sizeof(v4mapped)) == 0;

	if (!a->port || a->family != (mapped ? AF_INET : AF_INET6))
		__builtin_trap();
}

static void check_request(const uint8_t *data, size_t size)
{
	struct attest_request req, again;
	static const struct attest_request zero;
	char src[64], dst[64], line[256];
	const char *why = NULL;
	int ret;

	ret = attest__parse_request((const char *)data, size, &req, &why);
	if (ret) {
		if (ret != -EINVAL || memcmp(&req, &zero, sizeof(req)))
			__builtin_trap();
		check_reason(why);
		return;
	}
	if (req.op == ATTEST_OP_WHO_FD) {
		if (memcmp(&req.src, &zero.src, sizeof(req.src)) ||
		    memcmp(&req.dst, &zero.dst, sizeof(req.dst)))
			__builtin_trap();
		return;
	}
	if (req.op != ATTEST_OP_WHO)
		__builtin_trap();
	check_addr(&req.src);
	check_addr(&req.dst);
	if (req.src.family != req.dst.family)
		__builtin_trap();
	if (attest__format_addr(&req.src, src, sizeof(src)) ||
	    attest__format_addr(&req.dst, dst, sizeof(dst)))
		__builtin_trap();
	snprintf(line, sizeof(line), "{\"op\":\"who\",\"src\":\"%s\",\"dst\":\"%s\"}", src, dst);
	if (attest__parse_request(line, strlen(line), &again, &why) ||
	    memcmp(&req, &again, sizeof(req)))
		__builtin_trap();
}

#define CHECK_STR(f) do {					\
	if (strnlen((f), sizeof(f)) == sizeof(f))		\
		__builtin_trap();				\
} while (0)

static void check_answer(const uint8_t *data, size_t size)
{
	static const struct mcpw_attest_result zero;
	struct mcpw_attest_result r;
	char *text = malloc(size + 1);
	int ret;

	if (!text)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	ret = mcpw_attest_parse(text, &r);
	free(text);
	if (ret == -EPROTO) {
		if (memcmp(&r, &zero, sizeof(r)))
			__builtin_trap();
		return;
	}
	if (ret != 0)
		__builtin_trap();
	CHECK_STR(r.error);
	CHECK_STR(r.source);
	CHECK_STR(r.exe);
	CHECK_STR(r.cgroup);
	CHECK_STR(r.container_id);
	CHECK_STR(r.pod_namespace);
	CHECK_STR(r.pod_name);
	CHECK_STR(r.pod_uid);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_request(data, size);
	check_answer(data, size);
	return 0;
}
