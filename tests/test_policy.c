// SPDX-License-Identifier: GPL-2.0
/*
 * Policy file tests: every class of error at its exact LINE:COL, good
 * policies checked field by field (the PRODUCT.md example, every key, the
 * defaults, the embedded default policy, examples/), the position-keeping
 * JSON reader on its own, and the matchers the decision code relies on.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "jsonpos.h"
#include "policy.h"

static int load(const char *json, struct policy **p, struct policy_error *err)
{
	return policy__load_buffer("t.json", json, strlen(json), p, err);
}

/* ---- errors ------------------------------------------------------------ */

struct bad_policy {
	const char *name;
	const char *json;
	const char *expect;	/* "LINE:COL: fragment of the message" */
};

/* Positions were counted on the bytes; each names the token to blame. */
static const struct bad_policy bad_policies[] = {
	{ "empty",
	  "",
	  "1:1: the file is empty" },
	{ "value_expected",
	  "{\"servers\": [}",
	  "1:14: expected a value, found '}'" },
	{ "trailing_comma_obj",
	  "{\"mode\": \"monitor\",}",
	  "1:20: trailing comma before '}'" },
	{ "trailing_comma_arr",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1},]}",
	  "1:35: trailing comma before ']'" },
	{ "single_quotes",
	  "{\"mode\": 'monitor'}",
	  "1:10: double quotes, not single quotes" },
	{ "unquoted",
	  "{\"mode\": monitor}",
	  "1:10: unquoted text \"monitor\"" },
	{ "missing_comma",
	  "{\n  \"mode\": \"monitor\"\n  \"servers\": []\n}",
	  "3:3: after a member, found" },
	{ "missing_colon",
	  "{\"mode\" \"x\"}",
	  "1:9: expected ':' after the key" },
	{ "unterminated",
	  "{\"mode\": \"monit",
	  "1:10: string is not closed" },
	{ "raw_newline",
	  "{\"mode\": \"mon\nitor\"}",
	  "1:14: byte 0x0a in string" },
	{ "bad_escape",
	  "{\"mode\": \"a\\qb\"}",
	  "1:12: invalid escape" },
	{ "lone_surrogate",
	  "{\"mode\": \"\\ud800x\"}",
	  "1:11: surrogate" },
	{ "lone_low_surrogate",
	  "{\"mode\": \"ab\\udc00\"}",
	  "1:13: surrogate" },
	{ "short_u",
	  "{\"mode\": \"\\u12\"}",
	  "1:11: four hex digits" },
	{ "bad_utf8",
	  "{\"mode\": \"\xc3(\"}",
	  "1:11: invalid UTF-8 (byte 0xc3)" },
	{ "overlong_utf8",
	  "{\"mode\": \"a\xc0\xaf\"}",
	  "1:12: invalid UTF-8 (byte 0xc0)" },
	{ "utf16_surrogate_utf8",
	  "{\"mode\": \"\xed\xa0\x80\"}",
	  "1:11: invalid UTF-8" },
	{ "leading_zero",
	  "{\"instance_window_seconds\": 010}",
	  "1:29: leading zeros" },
	{ "bare_minus",
	  "{\"instance_window_seconds\": -}",
	  "1:30: digit after '-'" },
	{ "bad_fraction",
	  "{\"instance_window_seconds\": 1.}",
	  "1:31: digit after '.'" },
	{ "comment",
	  "{// x\n}",
	  "1:2: comments are not allowed" },
	{ "garbage_after",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}]} x",
	  "1:37: 'x' after the end of the top-level value" },
	{ "bom",
	  "\xef\xbb\xbf{}",
	  "1:1: byte order mark" },
	{ "eof_in_object",
	  "{\n\"mode\": \"monitor\"",
	  "2:18: ends inside the object opened at 1:1" },
	{ "eof_in_array",
	  "{\"servers\": [1,\n  2",
	  "2:4: ends inside the array opened at 1:13" },
	{ "control_outside",
	  "{\x01}",
	  "1:2: byte 0x01" },
	{ "not_object",
	  "[1]",
	  "1:1: must be a JSON object, not an array" },
	{ "unknown_key_guess",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"mdoe\":\"monitor\"}",
	  "1:36: unknown key \"mdoe\" in the policy; did you mean \"mode\"?" },
	{ "unknown_key_list",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"bogus\":1}",
	  "1:36: known keys: mode, servers," },
	{ "unknown_key_server",
	  "{\"servers\":[{\"name\":\"s\",\"prot\":1}]}",
	  "1:25: in server; did you mean \"port\"" },
	{ "unknown_key_escaped",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"a\\nb\":1}",
	  "1:36: unknown key \"a\\x0ab\"" },
	{ "wrong_type_string",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"mode\":1}",
	  "1:43: \"mode\" must be a string, not a number" },
	{ "wrong_type_int",
	  "{\"servers\":[{\"name\":\"s\",\"port\":\"80\"}]}",
	  "1:32: \"port\" must be an integer, not a string" },
	{ "wrong_type_bool",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"tokens\":{\"require_signature\":\"yes\"}}",
	  "1:66: must be true or false, not a string" },
	{ "wrong_type_null",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":null}",
	  "1:46: \"clients\" must be an array, not null" },
	{ "wrong_type_object",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"tokens\":[]}",
	  "1:45: \"tokens\" must be an object, not an array" },
	{ "bad_mode",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"mode\": \"enforcing\"}",
	  "1:44: \"mode\" must be \"monitor\" or \"enforce\", not \"enforcing\"" },
	{ "bad_action",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"unknown_client\": \"block\"}",
	  "1:54: \"unknown_client\" must be \"deny\", \"alert\" or \"allow\", not \"block\"" },
	{ "bad_unattributed",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"unattributed\": \"Deny\"}",
	  "1:52: \"unattributed\" must be" },
	{ "bad_fail",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"fail\": \"half\"}",
	  "1:44: \"fail\" must be \"closed\" or \"open\", not \"half\"" },
	{ "missing_servers",
	  "{\"mode\":\"monitor\"}",
	  "1:1: the policy is missing \"servers\"" },
	{ "missing_server_name",
	  "{\"servers\":[{\"port\":1}]}",
	  "1:13: server is missing \"name\"" },
	{ "missing_claims",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\n  \"clients\":[{\"name\":\"c\",\"workloads\":[{\"uid\":1}]}]}",
	  "2:14: client \"c\" is missing \"claims\"" },
	{ "missing_workloads",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"sub\":\"x\"}}]}",
	  "1:47: client \"c\" is missing \"workloads\"" },
	{ "missing_client_name",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"claims\":{\"sub\":\"x\"},\"workloads\":[{\"uid\":1}]}]}",
	  "1:47: client is missing \"name\"" },
	{ "duplicate_key",
	  "{\"mode\":\"monitor\",\"mode\":\"enforce\"}",
	  "1:19: duplicate key \"mode\" (first at 1:2)" },
	{ "duplicate_key_server",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1,\"port\":2}]}",
	  "1:34: duplicate key \"port\" (first at 1:25)" },
	{ "duplicate_server",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1},\n {\"name\":\"s\",\"port\":2}]}",
	  "2:10: duplicate server name \"s\" (first at 1:21)" },
	{ "duplicate_client",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":1}]},\n {\"name\":\"c\",\"claims\":{\"sub\":\"y\"},\"workloads\":[{\"uid\":2}]}]}",
	  "2:10: duplicate client name \"c\" (first at 1:55)" },
	{ "unknown_client_server",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":1}],\"servers\":[\"s\",\"t\"]}]}",
	  "1:125: client \"c\" lists server \"t\", but no server has that name" },
	{ "port_zero",
	  "{\"servers\":[{\"name\":\"s\",\"port\":0}]}",
	  "1:32: \"port\" must be between 1 and 65535, not 0" },
	{ "port_big",
	  "{\"servers\":[{\"name\":\"s\",\"port\":65536}]}",
	  "1:32: between 1 and 65535, not 65536" },
	{ "port_negative",
	  "{\"servers\":[{\"name\":\"s\",\"port\":-80}]}",
	  "1:32: between 1 and 65535, not -80" },
	{ "port_fraction",
	  "{\"servers\":[{\"name\":\"s\",\"port\":80.5}]}",
	  "1:32: \"port\" must be a whole number, not 80.5" },
	{ "port_exponent",
	  "{\"servers\":[{\"name\":\"s\",\"port\":8e3}]}",
	  "1:32: whole number" },
	{ "port_huge",
	  "{\"servers\":[{\"name\":\"s\",\"port\":123456789012345678901234567890}]}",
	  "1:32: not 123456789012345678901234..." },
	{ "duplicate_port",
	  "{\"servers\":[{\"name\":\"s\",\"port\":80},{\"name\":\"t\",\"port\":80}]}",
	  "1:55: port 80 is already protected by server \"s\"" },
	{ "uid_negative",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":-1}]}]}",
	  "1:106: \"uid\" must be between 0 and 4294967294, not -1" },
	{ "uid_minus_one",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":4294967295}]}]}",
	  "1:106: not 4294967295" },
	{ "uid_string",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":\"root\"}]}]}",
	  "1:106: \"uid\" must be an integer, not a string" },
	{ "gid_fraction",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"gid\":1.5}]}]}",
	  "1:106: \"gid\" must be a whole number" },
	{ "max_instances_negative",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":1}],\"max_instances\":-1}]}",
	  "1:126: \"max_instances\" must be between 0 and" },
	{ "window_zero",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"instance_window_seconds\":0}",
	  "1:62: between 1 and 86400, not 0" },
	{ "window_big",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"instance_window_seconds\":86401}",
	  "1:62: between 1 and 86400, not 86401" },
	{ "empty_claims",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{},\"workloads\":[{\"uid\":1}]}]}",
	  "1:68: \"claims\" is empty" },
	{ "unknown_claim",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client\":\"x\"},\"workloads\":[{\"uid\":1}]}]}",
	  "1:69: in \"claims\"; did you mean \"client_id\"" },
	{ "claim_not_string",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"sub\":1},\"workloads\":[{\"uid\":1}]}]}",
	  "1:75: \"sub\" must be a string, not a number" },
	{ "claim_bad_glob",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"ci-[bot\"},\"workloads\":[{\"uid\":1}]}]}",
	  "1:81: \"client_id\" has a '[' with no closing ']'" },
	{ "claim_bad_token_sha",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"token_sha256\":\"abc*\"},\"workloads\":[{\"uid\":1}]}]}",
	  "1:84: 64 hex digits" },
	{ "exe_bad_glob",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"exe\":\"/usr/bin/[abc\"}]}]}",
	  "1:106: no closing ']' (at byte 10" },
	{ "exe_lone_backslash",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"exe\":\"/usr/bin/a\\\\\"}]}]}",
	  "1:106: ends in a lone" },
	{ "tools_bad_glob",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":1}],\"tools\":[\"a\",\"b[\"]}]}",
	  "1:123: \"tools\" has a '['" },
	{ "tools_not_string",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":1}],\"tools\":[7]}]}",
	  "1:119: each entry of \"tools\" must be a string, not a number" },
	{ "servers_entry_not_object",
	  "{\"servers\":[\"s\"]}",
	  "1:13: each entry of \"servers\" must be an object, not a string" },
	{ "exe_sha256_short",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"exe_sha256\":\"abc\"}]}]}",
	  "1:113: \"exe_sha256\" must be 64 hex digits (a SHA-256), not \"abc\"" },
	{ "exe_sha256_nonhex",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"exe_sha256\":\"gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg\"}]}]}",
	  "1:113: 64 hex digits" },
	{ "empty_selector",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"uid\":1},{}]}]}",
	  "1:109: empty workload selector {} would match every workload" },
	{ "empty_workloads",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"sub\":\"x\"},\"workloads\":[]}]}",
	  "1:92: \"workloads\" is empty" },
	{ "empty_servers",
	  "{\"servers\":[]}",
	  "1:12: \"servers\" is empty" },
	{ "port_and_stdio",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1,\"stdio\":{\"exe\":\"/x\"}}]}",
	  "1:34: server \"s\" has both \"port\" and \"stdio\"" },
	{ "stdio_and_port",
	  "{\"servers\":[{\"name\":\"s\",\"stdio\":{\"exe\":\"/x\"},\"port\":1}]}",
	  "1:46: has both" },
	{ "neither",
	  "{\"servers\":[{\"name\":\"s\"}]}",
	  "1:13: server \"s\" needs \"port\"" },
	{ "launchers_on_port",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1,\"launchers\":[{\"uid\":0}]}]}",
	  "1:34: \"launchers\" only applies to stdio servers" },
	{ "addr_on_stdio",
	  "{\"servers\":[{\"name\":\"s\",\"stdio\":{\"exe\":\"/x\"},\"addr\":\"::1\"}]}",
	  "1:46: \"addr\" only applies to network servers" },
	{ "bad_addr",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1,\"addr\":\"localhost\"}]}",
	  "1:41: \"addr\" must be an IPv4 or IPv6 address, not \"localhost\"" },
	{ "stdio_missing_exe",
	  "{\"servers\":[{\"name\":\"s\",\"stdio\":{\"args\":\"*\"}}]}",
	  "1:33: \"stdio\" is missing \"exe\"" },
	{ "stdio_bad_args",
	  "{\"servers\":[{\"name\":\"s\",\"stdio\":{\"exe\":\"/x\",\"args\":\"[x\"}}]}",
	  "1:52: \"args\" has a '['" },
	{ "empty_launchers",
	  "{\"servers\":[{\"name\":\"s\",\"stdio\":{\"exe\":\"/x\"},\"launchers\":[]}]}",
	  "1:58: \"launchers\" is empty" },
	{ "empty_launcher",
	  "{\"servers\":[{\"name\":\"s\",\"stdio\":{\"exe\":\"/x\"},\"launchers\":[{}]}]}",
	  "1:59: empty workload selector" },
	{ "require_sig_no_keys",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"tokens\":{\"require_signature\":true}}",
	  "1:66: \"require_signature\" needs at least one entry in \"keys\"" },
	{ "token_key_relative",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"tokens\":{\"keys\":[{\"file\":\"keys/a.pem\"}]}}",
	  "1:62: \"file\" must be an absolute path" },
	{ "token_key_missing_file",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"tokens\":{\"keys\":[{\"iss\":\"x\"}]}}",
	  "1:54: token key is missing \"file\"" },
	{ "token_key_unknown",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"tokens\":{\"keys\":[{\"file\":\"/k\",\"alg\":\"x\"}]}}",
	  "1:67: unknown key \"alg\" in token key" },
	{ "pod_unknown_key",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"pod\":{\"ns\":\"x\"}}]}]}",
	  "1:107: in pod" },
	{ "pod_label_not_string",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"pod\":{\"labels\":{\"app\":1}}}]}]}",
	  "1:123: label \"app\" must be a string, not a number" },
	{ "pod_label_dup",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"pod\":{\"labels\":{\"app\":\"a\",\"tier\":\"b\",\"app\":\"c\"}}}]}]}",
	  "1:138: duplicate label \"app\" (first at" },
	{ "pod_label_bad_name",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"pod\":{\"labels\":{\"a b\":\"x\"}}}]}]}",
	  "1:117: is not a Kubernetes label name" },
	{ "pod_label_bad_glob",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"pod\":{\"labels\":{\"app\":\"[x\"}}}]}]}",
	  "1:123: no closing" },
	{ "empty_string",
	  "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"clients\":[{\"name\":\"c\",\"claims\":{\"client_id\":\"x\"},\"workloads\":[{\"exe\":\"\"}]}]}",
	  "1:106: \"exe\" must not be empty" },
	{ "nul_in_string",
	  "{\"servers\":[{\"name\":\"a\\u0000b\",\"port\":1}]}",
	  "1:21: must not contain a NUL" },
	{ "empty_name",
	  "{\"servers\":[{\"name\":\"\",\"port\":1}]}",
	  "1:21: \"name\" must not be empty" },
};

static void check_bad(const struct bad_policy *b)
{
	struct policy *p = (struct policy *)1;
	struct policy_error err;
	char buf[512], prefix[64];
	int line = 0, col = 0, n = 0;
	int ret;

	ret = load(b->json, &p, &err);
	if (!ASSERT_EQ(ret, -EINVAL, b->name))
		goto cleanup;
	ASSERT_NULL(p, "no policy on error");
	if (!ASSERT_EQ(sscanf(b->expect, "%d:%d: %n", &line, &col, &n), 2, "table row"))
		goto cleanup;
	ASSERT_EQ(err.line, line, b->name);
	ASSERT_EQ(err.col, col, b->name);
	ASSERT_STRSTR(err.msg, b->expect + n, b->name);
	policy_error__format(&err, buf, sizeof(buf));
	snprintf(prefix, sizeof(prefix), "t.json:%d:%d: ", line, col);
	ASSERT_EQ(strncmp(buf, prefix, strlen(prefix)), 0, "formatted position");
	if (test__failed())
		test__log("got: %s", buf);
cleanup:
	if (p != (struct policy *)1)
		policy__free(p);
}

void test_policy_errors(void)
{
	size_t i;

	for (i = 0; i < sizeof(bad_policies) / sizeof(bad_policies[0]); i++) {
		if (!test__start_subtest(bad_policies[i].name))
			continue;
		check_bad(&bad_policies[i]);
	}
}

/* The message quoted in the brief and docs, at its position. */
void test_policy_error_mode_example(void)
{
	static const char json[] =
		"{\n"
		"  \"servers\": [\n"
		"    {\"name\": \"tickets\", \"port\": 8080}\n"
		"  ],\n"
		"  \"unknown_client\": \"deny\",\n"
		"  \"fail\": \"closed\",\n"
		"  \"mode\":        \"enforcing\"\n"
		"}\n";
	struct policy *p = NULL;
	struct policy_error err;
	char buf[512];

	ASSERT_EQ(load(json, &p, &err), -EINVAL, "load");
	policy_error__format(&err, buf, sizeof(buf));
	ASSERT_STREQ(buf, "t.json:7:18: \"mode\" must be \"monitor\" or \"enforce\", not \"enforcing\"",
		     "message");
	policy__free(p);
}

/* Keys and values are quoted into messages escaped and cut short. */
void test_policy_error_long_key(void)
{
	static const char head[] = "{\"servers\":[{\"name\":\"s\",\"port\":1}],\"";
	struct policy *p = NULL;
	struct policy_error err;
	char json[256], want[128];
	size_t off = 0;
	int i;

	off += (size_t)snprintf(json, sizeof(json), "%s", head);
	for (i = 0; i < 60; i++)
		json[off++] = 0x7f;
	snprintf(json + off, sizeof(json) - off, "\":1}");
	ASSERT_EQ(load(json, &p, &err), -EINVAL, "load");
	ASSERT_EQ(err.col, (int)strlen(head), "at the key");
	off = (size_t)snprintf(want, sizeof(want), "unknown key \"");
	for (i = 0; i < 10; i++)
		off += (size_t)snprintf(want + off, sizeof(want) - off, "\\x7f");
	snprintf(want + off, sizeof(want) - off, "...\" in the policy (known keys: mode,");
	ASSERT_STRSTR(err.msg, want, "escaped and cut");
	policy__free(p);
}

/* Nesting past JSONPOS_MAX_DEPTH stops at the first '[' too deep. */
void test_policy_error_depth(void)
{
	struct policy *p = NULL;
	struct policy_error err;
	char json[512];
	size_t off = 0;
	int i;

	off += (size_t)snprintf(json + off, sizeof(json) - off, "{\"servers\":");
	for (i = 0; i < JSONPOS_MAX_DEPTH + 5; i++)
		json[off++] = '[';
	json[off] = '\0';
	ASSERT_EQ(load(json, &p, &err), -EINVAL, "load");
	/* The root object is level 0, "servers" level 1: 11 bytes in. */
	ASSERT_EQ(err.line, 1, "line");
	ASSERT_EQ(err.col, 12 + JSONPOS_MAX_DEPTH - 1, "col");
	ASSERT_STRSTR(err.msg, "nested deeper than 64", "msg");
	policy__free(p);
}

void test_policy_error_too_large(void)
{
	size_t len = POLICY_MAX_BYTES + 1;
	char *big = malloc(len);
	struct policy *p = NULL;
	struct policy_error err;
	char buf[512];

	if (!ASSERT_OK_PTR(big, "malloc"))
		goto cleanup;
	memset(big, ' ', len);
	ASSERT_EQ(policy__load_buffer("big.json", big, len, &p, &err), -EINVAL, "load");
	ASSERT_NULL(p, "policy");
	policy_error__format(&err, buf, sizeof(buf));
	ASSERT_STREQ(buf, "big.json: the file is larger than 4 MiB", "message");
cleanup:
	free(big);
}

/*
 * A FIFO at the policy's path (or anything not a regular file) is refused
 * at once, by the load and by the watch's digest alike: opened blocking,
 * it held the agent's event loop (a reload, a file change) until a writer
 * came.
 */
void test_policy_error_fifo(void)
{
	char dir[] = "/tmp/mcpw-policy-XXXXXX", path[64], digest[65], buf[512];
	struct policy *p = NULL;
	struct policy_error err;

	if (!ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp"))
		return;
	snprintf(path, sizeof(path), "%s/policy.json", dir);
	if (ASSERT_OK(mkfifo(path, 0600), "mkfifo")) {
		ASSERT_EQ(policy__load_file(path, &p, &err), -EINVAL, "load");
		ASSERT_NULL(p, "policy");
		policy_error__format(&err, buf, sizeof(buf));
		ASSERT_STRSTR(buf, "not a regular file", "message");
		ASSERT_EQ(policy__file_digest(path, digest), -EINVAL, "digest");
		unlink(path);
	}
	rmdir(dir);
}

/* ---- good policies ----------------------------------------------------- */

static const char product_example[] =
	"{\n"
	"  \"mode\": \"enforce\",\n"
	"  \"servers\": [\n"
	"    {\"name\": \"tickets\", \"port\": 8080},\n"
	"    {\"name\": \"files\", \"stdio\": {\"exe\": \"/usr/bin/node\", \"args\": \"*server-filesystem*\"},\n"
	"     \"launchers\": [{\"exe\": \"/usr/local/bin/agent\"}]}\n"
	"  ],\n"
	"  \"unknown_client\": \"deny\",\n"
	"  \"unattributed\": \"deny\",\n"
	"  \"fail\": \"closed\",\n"
	"  \"clients\": [\n"
	"    {\n"
	"      \"name\": \"ci-bot\",\n"
	"      \"claims\": {\"client_id\": \"ci-bot\"},\n"
	"      \"workloads\": [\n"
	"        {\"cgroup\": \"/ci/*\", \"exe\": \"/usr/bin/node\", \"uid\": 1000}\n"
	"      ],\n"
	"      \"max_instances\": 1,\n"
	"      \"tools\": [\"search_tickets\", \"create_ticket\"],\n"
	"      \"servers\": [\"tickets\"]\n"
	"    }\n"
	"  ]\n"
	"}\n";

void test_policy_product_example(void)
{
	struct policy *p = NULL;
	struct policy_error err;
	const struct policy_server *s;
	const struct policy_client *c;
	const struct policy_workload *w;

	if (!ASSERT_OK(load(product_example, &p, &err), err.msg))
		return;
	ASSERT_EQ(p->mode, POLICY_MODE_ENFORCE, "mode");
	ASSERT_EQ(p->unknown_client, POLICY_DENY, "unknown_client");
	ASSERT_EQ(p->unattributed, POLICY_DENY, "unattributed");
	ASSERT_EQ(p->fail, POLICY_FAIL_CLOSED, "fail");
	ASSERT_EQ(p->instance_window_sec, 60, "instance window default");
	ASSERT_EQ(p->n_token_keys, 0, "token keys");
	ASSERT_FALSE(p->require_signature, "require_signature");
	if (!ASSERT_EQ(p->n_servers, 2, "servers"))
		goto cleanup;
	s = &p->servers[0];
	ASSERT_STREQ(s->name, "tickets", "server 0 name");
	ASSERT_FALSE(s->is_stdio, "server 0 network");
	ASSERT_EQ(s->port, 8080, "server 0 port");
	ASSERT_NULL(s->addr, "server 0 any address");
	ASSERT_EQ(s->n_launchers, 0, "server 0 launchers");
	s = &p->servers[1];
	ASSERT_STREQ(s->name, "files", "server 1 name");
	ASSERT_TRUE(s->is_stdio, "server 1 stdio");
	ASSERT_EQ(s->port, 0, "server 1 port");
	ASSERT_STREQ(s->stdio_exe, "/usr/bin/node", "stdio exe");
	ASSERT_STREQ(s->stdio_args, "*server-filesystem*", "stdio args");
	if (ASSERT_EQ(s->n_launchers, 1, "launchers"))
		ASSERT_STREQ(s->launchers[0].exe, "/usr/local/bin/agent", "launcher exe");
	ASSERT_TRUE(policy__server_by_port(p, 8080) == &p->servers[0], "by port 8080");
	ASSERT_NULL(policy__server_by_port(p, 0), "stdio server has no port");

	if (!ASSERT_EQ(p->n_clients, 1, "clients"))
		goto cleanup;
	c = &p->clients[0];
	ASSERT_STREQ(c->name, "ci-bot", "client name");
	ASSERT_STREQ(c->claims.client_id, "ci-bot", "client_id");
	ASSERT_NULL(c->claims.sub, "sub not given");
	ASSERT_NULL(c->claims.token_sha256, "token_sha256 not given");
	ASSERT_EQ(c->max_instances, 1, "max_instances");
	ASSERT_TRUE(c->has_tools, "has_tools");
	if (ASSERT_EQ(c->n_tools, 2, "tools")) {
		ASSERT_STREQ(c->tools[0], "search_tickets", "tool 0");
		ASSERT_STREQ(c->tools[1], "create_ticket", "tool 1");
	}
	ASSERT_TRUE(c->has_servers, "has_servers");
	if (ASSERT_EQ(c->n_servers, 1, "client servers"))
		ASSERT_STREQ(c->servers[0], "tickets", "client server 0");
	if (!ASSERT_EQ(c->n_workloads, 1, "workloads"))
		goto cleanup;
	w = &c->workloads[0];
	ASSERT_STREQ(w->cgroup, "/ci/*", "cgroup");
	ASSERT_STREQ(w->exe, "/usr/bin/node", "exe");
	ASSERT_TRUE(w->has_uid, "has_uid");
	ASSERT_EQ(w->uid, 1000, "uid");
	ASSERT_FALSE(w->has_gid, "has_gid");
	ASSERT_FALSE(w->has_pod, "has_pod");
	ASSERT_NULL(w->exe_sha256, "exe_sha256");
	ASSERT_FALSE(policy__needs_exe_sha256(p), "needs sha");
	ASSERT_EQ(strlen(p->digest), 64, "digest length");
	ASSERT_STREQ(p->source, "t.json", "source");
cleanup:
	policy__free(p);
}

#define SHA_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define SHA_A_UPPER "0123456789ABCDEF0123456789ABCDEF0123456789abcdef0123456789ABCDEF"
#define SHA_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* Every key, clients before the servers they name. */
static const char full_policy[] =
	"{\n"
	"  \"mode\": \"enforce\",\n"
	"  \"unknown_client\": \"alert\",\n"
	"  \"unattributed\": \"allow\",\n"
	"  \"fail\": \"open\",\n"
	"  \"instance_window_seconds\": 300,\n"
	"  \"tokens\": {\n"
	"    \"keys\": [{\"file\": \"/etc/mcpwarden/idp.pem\", \"iss\": \"https://idp.example/*\"},\n"
	"             {\"file\": \"/etc/mcpwarden/hmac.key\", \"hmac\": true}],\n"
	"    \"require_signature\": true\n"
	"  },\n"
	"  \"clients\": [\n"
	"    {\"name\": \"web\",\n"
	"     \"claims\": {\"client_id\": \"web-*\", \"sub\": \"svc:web\", \"iss\": \"https://idp.example/*\",\n"
	"                \"azp\": \"web\", \"client_info_name\": \"claude-code\", \"user_agent\": \"node/*\",\n"
	"                \"token_sha256\": \"" SHA_A_UPPER "\"},\n"
	"     \"workloads\": [\n"
	"       {\"cgroup\": \"/kubepods.slice/*\", \"exe\": \"/usr/bin/node\", \"exe_sha256\": \"" SHA_A_UPPER "\",\n"
	"        \"uid\": 0, \"gid\": 4294967294, \"container_id\": \"abc*\",\n"
	"        \"parent_exe\": \"/usr/bin/containerd-shim*\", \"node\": \"node-[0-9]*\",\n"
	"        \"pod\": {\"namespace\": \"prod\", \"name\": \"web-*\", \"uid\": \"1234-*\",\n"
	"                \"service_account\": \"web\",\n"
	"                \"labels\": {\"app\": \"web\", \"app.kubernetes.io/tier\": \"front*\"}}},\n"
	"       {\"pod\": {}}\n"
	"     ],\n"
	"     \"max_instances\": 4294967295, \"tools\": [], \"servers\": [\"tickets\", \"files\"]},\n"
	"    {\"name\": \"other\", \"claims\": {\"sub\": \"x\"}, \"workloads\": [{\"gid\": 0}], \"max_instances\": 0}\n"
	"  ],\n"
	"  \"servers\": [\n"
	"    {\"name\": \"tickets\", \"port\": 8080, \"addr\": \"127.0.0.1\"},\n"
	"    {\"name\": \"v6\", \"addr\": \"::1\", \"port\": 65535},\n"
	"    {\"name\": \"files\", \"stdio\": {\"exe\": \"/usr/bin/node\"},\n"
	"     \"launchers\": [{\"exe\": \"/usr/local/bin/agent\"}, {\"uid\": 1000, \"exe_sha256\": \"" SHA_A "\"}]}\n"
	"  ]\n"
	"}\n";

void test_policy_every_key(void)
{
	struct policy *p = NULL;
	struct policy_error err;
	const struct policy_client *c;
	const struct policy_workload *w;
	const struct policy_server *s;

	if (!ASSERT_OK(load(full_policy, &p, &err), err.msg))
		return;
	ASSERT_EQ(p->mode, POLICY_MODE_ENFORCE, "mode");
	ASSERT_EQ(p->unknown_client, POLICY_ALERT, "unknown_client");
	ASSERT_EQ(p->unattributed, POLICY_ALLOW, "unattributed");
	ASSERT_EQ(p->fail, POLICY_FAIL_OPEN, "fail");
	ASSERT_EQ(p->instance_window_sec, 300, "instance window");
	ASSERT_TRUE(p->require_signature, "require_signature");
	if (ASSERT_EQ(p->n_token_keys, 2, "token keys")) {
		ASSERT_STREQ(p->token_keys[0].file, "/etc/mcpwarden/idp.pem", "key 0 file");
		ASSERT_STREQ(p->token_keys[0].iss, "https://idp.example/*", "key 0 iss");
		ASSERT_FALSE(p->token_keys[0].hmac, "key 0 hmac");
		ASSERT_STREQ(p->token_keys[1].file, "/etc/mcpwarden/hmac.key", "key 1 file");
		ASSERT_NULL(p->token_keys[1].iss, "key 1 iss");
		ASSERT_TRUE(p->token_keys[1].hmac, "key 1 hmac");
	}

	if (!ASSERT_EQ(p->n_servers, 3, "servers"))
		goto cleanup;
	ASSERT_STREQ(p->servers[0].addr, "127.0.0.1", "addr v4");
	ASSERT_STREQ(p->servers[1].addr, "::1", "addr v6");
	ASSERT_EQ(p->servers[1].port, 65535, "port 65535");
	s = &p->servers[2];
	ASSERT_TRUE(s->is_stdio, "stdio");
	ASSERT_NULL(s->stdio_args, "no args glob");
	if (ASSERT_EQ(s->n_launchers, 2, "launchers")) {
		ASSERT_TRUE(s->launchers[1].has_uid, "launcher uid");
		ASSERT_EQ(s->launchers[1].uid, 1000, "launcher uid value");
		ASSERT_STREQ(s->launchers[1].exe_sha256, SHA_A, "launcher sha");
	}
	ASSERT_TRUE(policy__server_by_port(p, 65535) == &p->servers[1], "by port");
	ASSERT_NULL(policy__server_by_port(p, 9), "unknown port");
	ASSERT_TRUE(policy__needs_exe_sha256(p), "needs sha");

	if (!ASSERT_EQ(p->n_clients, 2, "clients"))
		goto cleanup;
	c = &p->clients[0];
	ASSERT_STREQ(c->claims.client_id, "web-*", "client_id");
	ASSERT_STREQ(c->claims.sub, "svc:web", "sub");
	ASSERT_STREQ(c->claims.iss, "https://idp.example/*", "iss");
	ASSERT_STREQ(c->claims.azp, "web", "azp");
	ASSERT_STREQ(c->claims.client_info_name, "claude-code", "client_info_name");
	ASSERT_STREQ(c->claims.user_agent, "node/*", "user_agent");
	ASSERT_STREQ(c->claims.token_sha256, SHA_A, "token_sha256 lower-cased");
	ASSERT_EQ(c->max_instances, 4294967295u, "max_instances");
	ASSERT_TRUE(c->has_tools, "has_tools");
	ASSERT_EQ(c->n_tools, 0, "no tools");
	ASSERT_FALSE(policy_client__tool_allowed(c, "anything"), "tools [] allows none");
	ASSERT_TRUE(policy_client__server_allowed(c, "files"), "server files");
	ASSERT_FALSE(policy_client__server_allowed(c, "v6"), "server v6");
	if (!ASSERT_EQ(c->n_workloads, 2, "workloads"))
		goto cleanup;
	w = &c->workloads[0];
	ASSERT_STREQ(w->cgroup, "/kubepods.slice/*", "cgroup");
	ASSERT_STREQ(w->exe_sha256, SHA_A, "exe_sha256 lower-cased");
	ASSERT_TRUE(w->has_uid, "uid 0 is given");
	ASSERT_EQ(w->uid, 0, "uid");
	ASSERT_TRUE(w->has_gid, "has_gid");
	ASSERT_EQ(w->gid, 4294967294u, "gid");
	ASSERT_STREQ(w->container_id, "abc*", "container_id");
	ASSERT_STREQ(w->parent_exe, "/usr/bin/containerd-shim*", "parent_exe");
	ASSERT_STREQ(w->node, "node-[0-9]*", "node");
	ASSERT_TRUE(w->has_pod, "has_pod");
	ASSERT_STREQ(w->pod.namespace_, "prod", "pod namespace");
	ASSERT_STREQ(w->pod.name, "web-*", "pod name");
	ASSERT_STREQ(w->pod.uid, "1234-*", "pod uid");
	ASSERT_STREQ(w->pod.service_account, "web", "pod sa");
	if (ASSERT_EQ(w->pod.n_labels, 2, "labels")) {
		ASSERT_STREQ(w->pod.labels[0].key, "app", "label 0 key");
		ASSERT_STREQ(w->pod.labels[0].value, "web", "label 0 value");
		ASSERT_STREQ(w->pod.labels[1].key, "app.kubernetes.io/tier", "label 1 key");
		ASSERT_STREQ(w->pod.labels[1].value, "front*", "label 1 value");
	}
	w = &c->workloads[1];
	ASSERT_TRUE(w->has_pod, "pod {} means: in some pod");
	ASSERT_EQ(w->pod.n_labels, 0, "no labels");
	ASSERT_FALSE(w->has_uid, "no uid");

	c = &p->clients[1];
	ASSERT_EQ(c->max_instances, 0, "unlimited");
	ASSERT_FALSE(c->has_tools, "tools absent");
	ASSERT_FALSE(c->has_servers, "servers absent");
	ASSERT_TRUE(policy_client__tool_allowed(c, "anything"), "absent tools allow all");
	ASSERT_TRUE(policy_client__server_allowed(c, "v6"), "absent servers allow all");
	ASSERT_TRUE(c->workloads[0].has_gid, "gid 0 is given");
cleanup:
	policy__free(p);
}

void test_policy_defaults(void)
{
	static const char json[] = "{\"servers\":[{\"name\":\"s\",\"port\":1}]}";
	struct policy *p = NULL;
	struct policy_error err;

	if (!ASSERT_OK(load(json, &p, &err), err.msg))
		return;
	ASSERT_EQ(p->mode, POLICY_MODE_MONITOR, "mode");
	ASSERT_EQ(p->unknown_client, POLICY_DENY, "unknown_client");
	ASSERT_EQ(p->unattributed, POLICY_DENY, "unattributed");
	ASSERT_EQ(p->fail, POLICY_FAIL_CLOSED, "fail");
	ASSERT_EQ(p->instance_window_sec, 60, "instance window");
	ASSERT_EQ(p->n_clients, 0, "clients");
	ASSERT_NULL(p->clients, "clients array");
	ASSERT_EQ(p->n_token_keys, 0, "token keys");
	ASSERT_FALSE(p->require_signature, "require_signature");
	ASSERT_STREQ(p->digest, "92dbb37d5ecdae18045af61554e19312f20a6ff913d5f72770f8d24ac255ea2b",
		     "digest is SHA-256 of the bytes");
	policy__free(p);
}

/* Escapes decode to the bytes they name; valid globs of every shape load. */
void test_policy_strings(void)
{
	static const char json[] =
		"{\"servers\":[{\"name\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\t\",\"port\":1},\r\n"
		"{\"name\":\"\xe2\x82\xac\",\"port\":2}],\r\n"
		"\"clients\":[{\"name\":\"c\",\"claims\":{\"sub\":\"a\\\\*\"},\"workloads\":[\r\n"
		"  {\"exe\":\"/bin/[[:alpha:]]*\"},{\"exe\":\"[]x]\"},{\"exe\":\"[!a]\"},{\"exe\":\"\\\\[\"},\r\n"
		"  {\"exe\":\"[a-z][^x]\"},{\"exe\":\"[[.-.]]\"}]}]}";
	struct policy *p = NULL;
	struct policy_error err;

	if (!ASSERT_OK(load(json, &p, &err), err.msg))
		return;
	ASSERT_STREQ(p->servers[0].name, "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ / \t", "decoded");
	ASSERT_STREQ(p->servers[1].name, "\xe2\x82\xac", "raw UTF-8");
	ASSERT_STREQ(p->clients[0].claims.sub, "a\\*", "escaped glob");
	ASSERT_EQ(p->clients[0].n_workloads, 6, "globs");
	policy__free(p);
}

void test_policy_default_json(void)
{
	struct policy *p = NULL;
	struct policy_error err;
	const struct policy_server *s;

	if (!ASSERT_OK(policy__load_buffer("(default)", policy_default_json,
					   strlen(policy_default_json), &p, &err), err.msg))
		return;
	ASSERT_EQ(p->mode, POLICY_MODE_MONITOR, "monitor");
	ASSERT_EQ(p->unknown_client, POLICY_ALERT, "unknown_client");
	ASSERT_EQ(p->unattributed, POLICY_ALERT, "unattributed");
	ASSERT_EQ(p->n_clients, 0, "no clients");
	s = policy__server_by_port(p, 8080);
	if (ASSERT_OK_PTR(s, "port 8080"))
		ASSERT_STREQ(s->name, "mcp", "name");
	ASSERT_STREQ(p->source, "(default)", "source");
	policy__free(p);
}

/* ---- files ------------------------------------------------------------- */

static int write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, data, len);
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

void test_policy_load_file(void)
{
	char dir[] = "/tmp/mcpw-policy-XXXXXX", path[128], buf[512];
	static const char good[] = "{\"servers\":[{\"name\":\"s\",\"port\":1}]}";
	struct policy *p = NULL;
	struct policy_error err;

	if (!ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp"))
		return;
	snprintf(path, sizeof(path), "%s/p.json", dir);

	if (test__start_subtest("good")) {
		ASSERT_OK(write_file(path, good, strlen(good)), "write");
		if (ASSERT_OK(policy__load_file(path, &p, &err), err.msg)) {
			ASSERT_STREQ(p->source, path, "source");
			ASSERT_STREQ(p->digest, "92dbb37d5ecdae18045af61554e19312f20a6ff913d5f72770f8d24ac255ea2b",
				     "digest");
		}
		policy__free(p);
		p = NULL;
	}
	if (test__start_subtest("bad_names_file")) {
		static const char bad[] = "{\n  \"servers\": [\n    {\"name\": \"s\", \"port\": 0}]}";
		char want[256];

		ASSERT_OK(write_file(path, bad, strlen(bad)), "write");
		ASSERT_EQ(policy__load_file(path, &p, &err), -EINVAL, "load");
		ASSERT_NULL(p, "policy");
		policy_error__format(&err, buf, sizeof(buf));
		snprintf(want, sizeof(want), "%s:3:27: \"port\" must be between 1 and 65535, not 0", path);
		ASSERT_STREQ(buf, want, "message");
	}
	if (test__start_subtest("missing")) {
		char want[256];

		snprintf(want, sizeof(want), "%s/nope.json", dir);
		ASSERT_EQ(policy__load_file(want, &p, &err), -ENOENT, "load");
		ASSERT_EQ(err.line, 0, "no position");
		policy_error__format(&err, buf, sizeof(buf));
		ASSERT_STRSTR(buf, "nope.json: cannot open: No such file", "message");
	}
	if (test__start_subtest("directory")) {
		ASSERT_EQ(policy__load_file(dir, &p, &err), -EINVAL, "load");
		ASSERT_STRSTR(err.msg, "not a regular file", "message");
	}
	if (test__start_subtest("too_large")) {
		size_t len = POLICY_MAX_BYTES + 1;
		char *big = malloc(len);

		if (ASSERT_OK_PTR(big, "malloc")) {
			memset(big, ' ', len);
			ASSERT_OK(write_file(path, big, len), "write");
			ASSERT_EQ(policy__load_file(path, &p, &err), -EINVAL, "load");
			ASSERT_STRSTR(err.msg, "larger than 4 MiB", "message");
		}
		free(big);
	}
	unlink(path);
	rmdir(dir);
}

/* Every shipped example must load: they are what users copy. */
void test_policy_examples(void)
{
	char pattern[512], *slash;
	glob_t g = { 0 };
	size_t i;

	snprintf(pattern, sizeof(pattern), "%s", __FILE__);
	slash = strrchr(pattern, '/');
	if (slash)
		snprintf(slash + 1, sizeof(pattern) - (size_t)(slash + 1 - pattern),
			 "../examples/*.json");
	else
		snprintf(pattern, sizeof(pattern), "../examples/*.json");
	if (!ASSERT_EQ(glob(pattern, 0, NULL, &g), 0, pattern))
		return;
	ASSERT_GE(g.gl_pathc, 2, "examples found");
	for (i = 0; i < g.gl_pathc; i++) {
		struct policy *p = NULL;
		struct policy_error err;
		char buf[512];
		int ret = policy__load_file(g.gl_pathv[i], &p, &err);

		policy_error__format(&err, buf, sizeof(buf));
		ASSERT_OK(ret, ret ? buf : g.gl_pathv[i]);
		policy__free(p);
	}
	globfree(&g);
}

/* ---- the JSON reader --------------------------------------------------- */

void test_policy_jsonpos(void)
{
	static const char doc[] =
		"{\n"
		"\t\"a\": [1, -0.5e+3, true],\r\n"
		"  \"b\" :{\"c\": null, \"c\": \"x\"}\n"
		"}";
	struct jsonpos_node *root = NULL;
	struct jsonpos_error err;
	const struct jsonpos_node *a, *b;
	char deep[JSONPOS_MAX_DEPTH * 2 + 2];
	int i;

	if (!ASSERT_OK(jsonpos__parse(doc, strlen(doc), &root, &err), err.msg))
		return;
	ASSERT_EQ(root->type, JSONPOS_OBJECT, "root");
	ASSERT_EQ(root->line, 1, "root line");
	ASSERT_EQ(root->col, 1, "root col");
	a = jsonpos__member(root, "a");
	if (!ASSERT_OK_PTR(a, "a"))
		goto cleanup;
	ASSERT_EQ(a->key_line, 2, "a key line");
	ASSERT_EQ(a->key_col, 2, "a key col (a tab is one byte)");
	ASSERT_EQ(a->line, 2, "a line");
	ASSERT_EQ(a->col, 7, "a col");
	if (ASSERT_EQ(a->n_kids, 3, "a kids")) {
		ASSERT_STREQ(a->kids[1].str, "-0.5e+3", "number text kept");
		ASSERT_EQ(a->kids[1].col, 11, "number col");
		ASSERT_EQ(a->kids[2].type, JSONPOS_BOOL, "bool");
		ASSERT_TRUE(a->kids[2].boolean, "true");
		ASSERT_STREQ(jsonpos__describe(&a->kids[2]), "true", "describe");
	}
	b = jsonpos__member(root, "b");
	if (ASSERT_OK_PTR(b, "b")) {
		ASSERT_EQ(b->key_line, 3, "b line after CRLF");
		ASSERT_EQ(b->key_col, 3, "b col");
		ASSERT_EQ(b->col, 8, "b value col");
		/* Duplicates are kept for the caller to report. */
		ASSERT_EQ(b->n_kids, 2, "both c");
		ASSERT_EQ(b->kids[1].key_col, 20, "second c");
	}
	jsonpos__free(root);
	root = NULL;

	/* Exactly JSONPOS_MAX_DEPTH levels load; one more does not. */
	for (i = 0; i < JSONPOS_MAX_DEPTH; i++) {
		deep[i] = '[';
		deep[JSONPOS_MAX_DEPTH + i] = ']';
	}
	ASSERT_OK(jsonpos__parse(deep, 2 * JSONPOS_MAX_DEPTH, &root, &err), "64 levels");
	jsonpos__free(root);
	root = NULL;
	memmove(deep + 1, deep, 2 * JSONPOS_MAX_DEPTH);
	deep[0] = '[';
	deep[2 * JSONPOS_MAX_DEPTH + 1] = ']';
	ASSERT_EQ(jsonpos__parse(deep, 2 * JSONPOS_MAX_DEPTH + 2, &root, &err), -EINVAL, "65 levels");
	ASSERT_EQ(err.col, JSONPOS_MAX_DEPTH + 1, "depth error col");

	/* Literals are whole words; strings are strict UTF-8 with 4-byte forms. */
	ASSERT_EQ(jsonpos__parse("truex", 5, &root, &err), -EINVAL, "truex");
	ASSERT_EQ(jsonpos__parse("\"\xf4\x90\x80\x80\"", 6, &root, &err), -EINVAL, "above U+10FFFF");
	ASSERT_OK(jsonpos__parse("\"\xf4\x8f\xbf\xbf\"", 6, &root, &err), "U+10FFFF");
	jsonpos__free(root);
	root = NULL;
	ASSERT_EQ(jsonpos__parse("\"\\u0000\"", 8, &root, &err), 0, "escaped NUL");
	if (root) {
		ASSERT_EQ(root->len, 1, "NUL kept with length");
		ASSERT_EQ(root->str[0], '\0', "NUL byte");
	}
	jsonpos__free(root);
	root = NULL;
	ASSERT_EQ(jsonpos__parse("  ", 2, &root, &err), -EINVAL, "only whitespace");
	ASSERT_EQ(err.col, 3, "at the end");
	ASSERT_STRSTR(err.msg, "ends where a value was expected", "message");
cleanup:
	jsonpos__free(root);
}

/* Enough values to pass JSONPOS_MAX_NODES: refused, not exhausted. */
void test_policy_jsonpos_node_limit(void)
{
	size_t n = JSONPOS_MAX_NODES + 1, len = 2 * n + 1, i;
	char *doc = malloc(len);
	struct jsonpos_node *root = NULL;
	struct jsonpos_error err;

	if (!ASSERT_OK_PTR(doc, "malloc"))
		goto cleanup;
	doc[0] = '[';
	for (i = 0; i < n; i++) {
		doc[1 + 2 * i] = '0';
		doc[2 + 2 * i] = ',';
	}
	doc[len - 1] = ']';
	ASSERT_EQ(jsonpos__parse(doc, len, &root, &err), -EINVAL, "too many values");
	ASSERT_STRSTR(err.msg, "more than", "message");
	ASSERT_NULL(root, "no tree");
cleanup:
	free(doc);
}

/* ---- matchers ---------------------------------------------------------- */

#define S(x) ((char *)(x))

struct claims_case {
	const char *name;
	struct policy_claims claims;
	struct claim_view view;
	bool match;
};

static const struct claims_case claims_cases[] = {
	{ "exact", { .client_id = S("ci-bot") }, { .client_id = "ci-bot" }, true },
	{ "exact_differs", { .client_id = S("ci-bot") }, { .client_id = "ci-bot2" }, false },
	{ "glob_star", { .client_id = S("ci-*") }, { .client_id = "ci-bot" }, true },
	{ "glob_question", { .client_id = S("ci-bo?") }, { .client_id = "ci-bot" }, true },
	{ "star_crosses_slash", { .iss = S("https://idp.example/*") },
	  { .iss = "https://idp.example/realms/prod" }, true },
	{ "escaped_star", { .sub = S("a\\*") }, { .sub = "a*" }, true },
	{ "escaped_star_literal", { .sub = S("a\\*") }, { .sub = "ab" }, false },
	{ "not_claimed", { .sub = S("*") }, { .client_id = "ci-bot" }, false },
	{ "all_keys_must_match", { .client_id = S("ci-bot"), .sub = S("svc") },
	  { .client_id = "ci-bot", .sub = "other" }, false },
	{ "all_keys_match", { .client_id = S("ci-bot"), .azp = S("web"), .user_agent = S("node/*") },
	  { .client_id = "ci-bot", .azp = "web", .user_agent = "node/22 (linux)" }, true },
	{ "empty_claims_never", { 0 },
	  { .client_id = "x", .sub = "x", .iss = "x", .azp = "x", .client_info_name = "x",
	    .user_agent = "x", .token_sha256 = "x" }, false },
	{ "client_info_name", { .client_info_name = S("claude-*") },
	  { .client_info_name = "claude-code" }, true },
	{ "token_sha256", { .token_sha256 = S(SHA_A) }, { .token_sha256 = SHA_A }, true },
	{ "case_sensitive", { .client_id = S("CI") }, { .client_id = "ci" }, false },
	{ "azp_differs", { .client_id = S("ci-bot"), .azp = S("web") },
	  { .client_id = "ci-bot", .azp = "mobile" }, false },
	{ "user_agent_differs", { .client_id = S("ci-bot"), .user_agent = S("node/*") },
	  { .client_id = "ci-bot", .user_agent = "curl/8.5" }, false },
	{ "user_agent_not_sent", { .client_id = S("ci-bot"), .user_agent = S("*") },
	  { .client_id = "ci-bot" }, false },
	{ "token_sha256_differs", { .token_sha256 = S(SHA_A) }, { .token_sha256 = SHA_B }, false },
};

void test_policy_claims_match(void)
{
	size_t i;

	for (i = 0; i < sizeof(claims_cases) / sizeof(claims_cases[0]); i++) {
		const struct claims_case *c = &claims_cases[i];

		if (!test__start_subtest(c->name))
			continue;
		ASSERT_EQ(policy_claims__match(&c->claims, &c->view), c->match, c->name);
	}
}

static const struct policy_label view_labels[] = {
	{ S("app"), S("web") },
	{ S("app.kubernetes.io/tier"), S("frontend") },
};

static const struct pod_view view_pod = {
	.namespace_ = "prod",
	.name = "web-7d9f-abcde",
	.uid = "1234-5678",
	.service_account = "web",
	.labels = view_labels,
	.n_labels = 2,
};

static const char *const view_ancestors[] = {
	"/usr/bin/bash", NULL, "/usr/bin/containerd-shim-runc-v2", "/sbin/init",
};

/* A containerised node process, its parents, its pod. */
static const struct workload_view view_pod_proc = {
	.cgroup = "/kubepods.slice/kubepods-pod1234.slice/cri-containerd-abc.scope",
	.exe = "/usr/bin/node",
	.exe_sha256 = SHA_A,
	.container_id = "abcdef012345",
	.node = "node-3",
	.uid = 1000,
	.gid = 0,
	.ancestor_exes = view_ancestors,
	.n_ancestors = 4,
	.pod = &view_pod,
};

/* A root process on the host: no pod, no container, no parents known. */
static const struct workload_view view_host_root = {
	.cgroup = "/system.slice/agent.service",
	.exe = "/usr/local/bin/agent",
	.uid = 0,
	.gid = 0,
};

struct workload_case {
	const char *name;
	struct policy_workload sel;
	const struct workload_view *view;
	bool match;
};

static const struct policy_label sel_labels_ok[] = {
	{ S("app"), S("web") }, { S("app.kubernetes.io/tier"), S("front*") },
};
static const struct policy_label sel_labels_missing[] = {
	{ S("app"), S("web") }, { S("team"), S("*") },
};
static const struct policy_label sel_labels_differ[] = {
	{ S("app"), S("api") },
};

static const struct workload_case workload_cases[] = {
	{ "cgroup_glob_crosses_slash", { .cgroup = S("/kubepods.slice/*") }, &view_pod_proc, true },
	{ "cgroup_differs", { .cgroup = S("/ci/*") }, &view_pod_proc, false },
	{ "exe", { .exe = S("/usr/bin/node") }, &view_pod_proc, true },
	{ "exe_and_uid_differs", { .exe = S("/usr/bin/node"), .has_uid = true, .uid = 0 },
	  &view_pod_proc, false },
	{ "uid_0_given_matches_root", { .has_uid = true, .uid = 0 }, &view_host_root, true },
	{ "uid_0_given_rejects_1000", { .has_uid = true, .uid = 0 }, &view_pod_proc, false },
	{ "uid_absent_is_no_constraint", { .exe = S("/usr/local/bin/*") }, &view_host_root, true },
	{ "gid", { .has_gid = true, .gid = 0 }, &view_pod_proc, true },
	{ "gid_differs", { .has_gid = true, .gid = 5 }, &view_pod_proc, false },
	{ "exe_sha256", { .exe_sha256 = S(SHA_A) }, &view_pod_proc, true },
	{ "exe_sha256_differs", { .exe_sha256 = S(SHA_B) }, &view_pod_proc, false },
	{ "exe_sha256_not_computed", { .exe_sha256 = S(SHA_A) }, &view_host_root, false },
	{ "container_id", { .container_id = S("abc*") }, &view_pod_proc, true },
	{ "container_id_unknown", { .container_id = S("*") }, &view_host_root, false },
	{ "node", { .node = S("node-[0-9]") }, &view_pod_proc, true },
	{ "node_differs", { .node = S("node-[4-9]") }, &view_pod_proc, false },
	{ "exe_differs", { .exe = S("/usr/bin/python*") }, &view_pod_proc, false },
	{ "parent_exe_grandparent", { .parent_exe = S("*containerd-shim*") }, &view_pod_proc, true },
	{ "parent_exe_any_ancestor", { .parent_exe = S("/sbin/init") }, &view_pod_proc, true },
	{ "parent_exe_not_self", { .parent_exe = S("/usr/bin/node") }, &view_pod_proc, false },
	{ "parent_exe_no_ancestors", { .parent_exe = S("*") }, &view_host_root, false },
	{ "pod_namespace", { .has_pod = true, .pod = { .namespace_ = S("prod") } },
	  &view_pod_proc, true },
	{ "pod_required", { .has_pod = true, .pod = { .namespace_ = S("*") } },
	  &view_host_root, false },
	{ "pod_empty_means_in_a_pod", { .has_pod = true }, &view_pod_proc, true },
	{ "pod_empty_not_in_a_pod", { .has_pod = true }, &view_host_root, false },
	{ "pod_all_keys", { .has_pod = true, .pod = { .namespace_ = S("prod"), .name = S("web-*"),
	  .uid = S("1234-*"), .service_account = S("web") } }, &view_pod_proc, true },
	{ "pod_name_differs", { .has_pod = true, .pod = { .name = S("api-*") } },
	  &view_pod_proc, false },
	{ "pod_uid_differs", { .has_pod = true, .pod = { .uid = S("9999-*") } },
	  &view_pod_proc, false },
	{ "pod_namespace_differs", { .has_pod = true, .pod = { .namespace_ = S("dev") } },
	  &view_pod_proc, false },
	{ "pod_service_account_differs", { .has_pod = true, .pod = { .service_account = S("api") } },
	  &view_pod_proc, false },
	{ "pod_labels_all_match", { .has_pod = true, .pod = { .labels = (struct policy_label *)sel_labels_ok,
	  .n_labels = 2 } }, &view_pod_proc, true },
	{ "pod_label_missing", { .has_pod = true, .pod = { .labels = (struct policy_label *)sel_labels_missing,
	  .n_labels = 2 } }, &view_pod_proc, false },
	{ "pod_label_differs", { .has_pod = true, .pod = { .labels = (struct policy_label *)sel_labels_differ,
	  .n_labels = 1 } }, &view_pod_proc, false },
	{ "every_key", { .cgroup = S("/kubepods*"), .exe = S("*/node"), .exe_sha256 = S(SHA_A_UPPER),
	  .container_id = S("abcdef012345"), .parent_exe = S("/usr/bin/bash"), .node = S("node-3"),
	  .has_uid = true, .uid = 1000, .has_gid = true, .gid = 0, .has_pod = true,
	  .pod = { .name = S("web-*") } }, &view_pod_proc, true },
	{ "empty_selector_never", { 0 }, &view_pod_proc, false },
};

void test_policy_workload_match(void)
{
	size_t i;

	for (i = 0; i < sizeof(workload_cases) / sizeof(workload_cases[0]); i++) {
		const struct workload_case *c = &workload_cases[i];

		if (!test__start_subtest(c->name))
			continue;
		ASSERT_EQ(policy_workload__match(&c->sel, c->view), c->match, c->name);
	}
}

void test_policy_workloads_match(void)
{
	struct policy_workload sels[2] = {
		{ .exe = S("/usr/bin/python*") },
		{ .has_uid = true, .uid = 0 },
	};

	ASSERT_TRUE(policy_workloads__match(sels, 2, &view_host_root), "second matches");
	ASSERT_FALSE(policy_workloads__match(sels, 2, &view_pod_proc), "none matches");
	ASSERT_FALSE(policy_workloads__match(sels, 0, &view_host_root), "no selectors");
}

void test_policy_tools_servers(void)
{
	char *tools[] = { S("search_*"), S("create_ticket"), S("files/*") };
	char *servers[] = { S("tickets") };
	struct policy_client c = {
		.has_tools = true, .tools = tools, .n_tools = 3,
		.has_servers = true, .servers = servers, .n_servers = 1,
	};
	struct policy_client open_client = { 0 };

	ASSERT_TRUE(policy_client__tool_allowed(&c, "search_tickets"), "glob");
	ASSERT_TRUE(policy_client__tool_allowed(&c, "create_ticket"), "exact");
	ASSERT_TRUE(policy_client__tool_allowed(&c, "files/read/all"), "star crosses slash");
	ASSERT_FALSE(policy_client__tool_allowed(&c, "delete_ticket"), "not listed");
	ASSERT_FALSE(policy_client__tool_allowed(&c, NULL), "no tool name");
	ASSERT_TRUE(policy_client__server_allowed(&c, "tickets"), "listed server");
	ASSERT_FALSE(policy_client__server_allowed(&c, "ticket*"), "names are exact");
	ASSERT_FALSE(policy_client__server_allowed(&c, NULL), "no server");
	ASSERT_TRUE(policy_client__tool_allowed(&open_client, "anything"), "absent tools");
	ASSERT_TRUE(policy_client__server_allowed(&open_client, "anything"), "absent servers");
}

void test_policy_names(void)
{
	struct policy_error e = { .file = "p.json", .line = 3, .col = 9, .msg = "bad" };
	char buf[64];

	ASSERT_STREQ(policy_mode__name(POLICY_MODE_MONITOR), "monitor", "monitor");
	ASSERT_STREQ(policy_mode__name(POLICY_MODE_ENFORCE), "enforce", "enforce");
	ASSERT_STREQ(policy_action__name(POLICY_DENY), "deny", "deny");
	ASSERT_STREQ(policy_action__name(POLICY_ALERT), "alert", "alert");
	ASSERT_STREQ(policy_action__name(POLICY_ALLOW), "allow", "allow");
	policy_error__format(&e, buf, sizeof(buf));
	ASSERT_STREQ(buf, "p.json:3:9: bad", "with position");
	e.line = 0;
	policy_error__format(&e, buf, sizeof(buf));
	ASSERT_STREQ(buf, "p.json: bad", "without position");
	policy_error__format(&e, buf, 5);
	ASSERT_STREQ(buf, "p.js", "truncated");
}
