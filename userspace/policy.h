/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The policy file (PRODUCT.md "Policy file"): parsing with exact error
 * positions (FILE:LINE:COL), validation of every key, and the two matchers
 * the decision code needs: does a request's claim match a client's
 * `claims`, and does a workload match a `workloads`/`launchers` selector.
 *
 * Keys are declared in tables that fill the structs below (OpenSSH
 * servconf.c keyword-table style); an unknown key, a wrong type or a bad
 * value is an error at the position of the offending key or value.
 * Globs are fnmatch(3) without FNM_PATHNAME: `*` also matches `/`.
 */
#ifndef MCPW_POLICY_H
#define MCPW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Policy files larger than this are refused. */
#define POLICY_MAX_BYTES (4u << 20)

enum policy_mode {
	POLICY_MODE_MONITOR = 0,
	POLICY_MODE_ENFORCE,
};

enum policy_action {
	POLICY_DENY = 0,
	POLICY_ALERT,
	POLICY_ALLOW,
};

enum policy_fail {
	POLICY_FAIL_CLOSED = 0,
	POLICY_FAIL_OPEN,
};

struct policy_label {
	char *key;
	char *value;		/* glob */
};

struct policy_pod {
	char *namespace_;	/* globs; NULL = not constrained */
	char *name;
	char *uid;
	char *service_account;
	struct policy_label *labels;	/* all must match */
	size_t n_labels;
};

/* One workload selector: every key given must match. */
struct policy_workload {
	char *cgroup;		/* glob on the cgroup v2 path */
	char *exe;		/* glob */
	char *exe_sha256;	/* exact, lower-case hex */
	char *container_id;	/* glob */
	char *parent_exe;	/* glob, any ancestor */
	char *node;		/* glob */
	bool has_uid, has_gid, has_pod;
	uint32_t uid, gid;
	struct policy_pod pod;
};

/* Claim keys: exact strings or globs; all given must match. */
struct policy_claims {
	char *client_id;
	char *sub;
	char *iss;
	char *azp;
	char *client_info_name;
	char *user_agent;
	char *token_sha256;
};

struct policy_client {
	char *name;
	struct policy_claims claims;
	struct policy_workload *workloads;
	size_t n_workloads;
	unsigned int max_instances;	/* 0 = unlimited */
	bool has_tools;			/* absent = all tools */
	char **tools;			/* globs */
	size_t n_tools;
	bool has_servers;		/* absent = all servers */
	char **servers;			/* server names */
	size_t n_servers;
};

struct policy_server {
	char *name;
	bool is_stdio;
	/* Network server. */
	uint16_t port;
	char *addr;			/* NULL = any local address */
	/* stdio server. */
	char *stdio_exe;		/* glob */
	char *stdio_args;		/* glob on the space-joined argv[1..] */
	struct policy_workload *launchers;
	size_t n_launchers;
};

/* Optional signature checking of bearer JWTs ("tokens" key). */
struct policy_token_key {
	char *file;		/* PEM public key, HMAC secret or JWKS */
	char *iss;		/* glob; NULL = any issuer */
	bool hmac;
};

struct policy {
	enum policy_mode mode;
	enum policy_action unknown_client;
	enum policy_action unattributed;
	enum policy_fail fail;
	struct policy_server *servers;
	size_t n_servers;
	struct policy_client *clients;
	size_t n_clients;
	struct policy_token_key *token_keys;
	size_t n_token_keys;
	bool require_signature;		/* tokens.require_signature */
	/* How long a workload instance stays "live" for an identity after
	 * its last request when it holds no open connection (clone window). */
	unsigned int instance_window_sec;	/* default 60 */
	char *source;			/* file name, for messages */
	char digest[65];		/* SHA-256 of the file bytes, hex */
};

struct policy_error {
	char file[256];
	int line;		/* 1-based; 0 when not about a position */
	int col;		/* 1-based, in bytes */
	char msg[256];
};

/* Formats "FILE:LINE:COL: msg" (or "FILE: msg"). */
void policy_error__format(const struct policy_error *e, char *buf, size_t len);

/* Return 0, -EINVAL with *err filled, or -errno for I/O. */
int policy__load_file(const char *path, struct policy **out, struct policy_error *err);
/* The SHA-256 (hex) of the file's bytes, as a loaded policy's digest is
 * computed: 0 or -errno. */
int policy__file_digest(const char *path, char out[65]);
int policy__load_buffer(const char *name, const char *buf, size_t len,
			struct policy **out, struct policy_error *err);
void policy__free(struct policy *p);

/* The policy `mcpwarden run` uses when no --policy is given. */
extern const char policy_default_json[];

/* What a request claims, as matchers see it (NULL: not claimed). */
struct claim_view {
	const char *client_id;
	const char *sub;
	const char *iss;
	const char *azp;
	const char *client_info_name;
	const char *user_agent;
	const char *token_sha256;
};

struct pod_view {
	const char *namespace_;
	const char *name;
	const char *uid;
	const char *service_account;
	const struct policy_label *labels;	/* exact values */
	size_t n_labels;
};

/* The attested workload, as matchers see it. */
struct workload_view {
	const char *cgroup;
	const char *exe;
	const char *exe_sha256;		/* NULL when not computed */
	const char *container_id;
	const char *node;
	uint32_t uid, gid;
	const char *const *ancestor_exes;	/* parent first */
	size_t n_ancestors;
	const struct pod_view *pod;		/* NULL when unknown */
};

/* A client whose claims object has no keys never matches. */
bool policy_claims__match(const struct policy_claims *c, const struct claim_view *v);
bool policy_workload__match(const struct policy_workload *w, const struct workload_view *v);
/* True when any selector matches. */
bool policy_workloads__match(const struct policy_workload *w, size_t n,
			     const struct workload_view *v);
bool policy_client__tool_allowed(const struct policy_client *c, const char *tool);
bool policy_client__server_allowed(const struct policy_client *c, const char *server);
/* Whether any selector needs exe_sha256 (so it is computed only then). */
bool policy__needs_exe_sha256(const struct policy *p);
const struct policy_server *policy__server_by_port(const struct policy *p, uint16_t port);

const char *policy_mode__name(enum policy_mode m);
const char *policy_action__name(enum policy_action a);

#endif
