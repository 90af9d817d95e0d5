/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Bearer token facts. A JWT's header and claims are decoded (base64url +
 * jsonlite); an opaque token is known only by its SHA-256. Nothing here
 * trusts the token: the facts are claims, and a malformed token is a fact
 * too (error names why). The raw token never leaves this module except as
 * its digest. Optional signature checking against configured keys
 * (RS256/384/512, PS256, ES256/384, EdDSA, HS256) uses OpenSSL libcrypto.
 */
#ifndef MCPW_JWT_H
#define MCPW_JWT_H

#include <stdbool.h>
#include <stddef.h>

/* Tokens longer than this are not decoded (error "too_large"); the digest
 * is still computed. */
#define JWT_MAX_TOKEN_BYTES 16384
/* An identity claim (iss, sub, client_id, azp, jti) longer than this is
 * left out (error "claim_too_large"). */
#define JWT_MAX_CLAIM_BYTES 1024

enum jwt_sig {
	JWT_SIG_UNCHECKED = 0,	/* no keys configured */
	JWT_SIG_VALID,
	JWT_SIG_INVALID,	/* a key for this token exists and it failed */
	JWT_SIG_NO_KEY,		/* keys configured, none applies (iss/kid/alg) */
	JWT_SIG_UNSUPPORTED,	/* alg "none" or unknown */
};

struct jwt_facts {
	bool present;		/* a token was given at all */
	bool is_jwt;		/* header and payload decoded as JSON objects */
	char sha256[65];	/* lower-case hex of the raw token bytes */
	char *alg, *kid, *typ;
	char *iss, *sub, *client_id, *azp, *jti, *scope;
	char *aud;		/* a string, or an array joined with "," */
	char *cnf;		/* compact JSON text of "cnf" */
	long long exp, iat, nbf;
	bool has_exp, has_iat, has_nbf;
	/* Kubernetes projected service-account token ("kubernetes.io"). */
	char *k8s_namespace, *k8s_pod_name, *k8s_pod_uid, *k8s_sa_name;
	/* NULL, or why the token is not a usable JWT: "too_large",
	 * "not_jwt" (not three dot-separated parts), "bad_base64",
	 * "bad_json", "bad_header", "bad_claims", "claim_too_large" (the
	 * claims too long are left out). Static string. */
	const char *error;
	enum jwt_sig sig;
	const char *sig_error;	/* static string when sig is not VALID */
};

/*
 * Finds the token in an Authorization header value ("Bearer <token>",
 * scheme case-insensitive, one space or more). Returns 0 and points into
 * value, or -ENOENT when the value is not a bearer credential.
 */
int jwt__bearer(const char *value, const char **token, size_t *len);

/* Fills out (zeroed first). Returns 0, or -ENOMEM; bad tokens are facts. */
int jwt__parse(const char *token, size_t len, struct jwt_facts *out);
void jwt_facts__release(struct jwt_facts *f);

/* Signature keys: PEM public keys or a JWKS document. */
struct jwt_keyset;

struct jwt_keyset *jwt_keyset__new(void);
void jwt_keyset__free(struct jwt_keyset *ks);
/*
 * Adds keys from a file: PEM (one public key, or an HMAC secret when
 * hmac is true) or a JWKS JSON document ({"keys":[...]}). A key applies to
 * tokens whose iss matches iss_glob (NULL: any). Returns 0 or -errno with
 * a message in err.
 */
int jwt_keyset__add_file(struct jwt_keyset *ks, const char *path, const char *iss_glob,
			 bool hmac, char *err, size_t errlen);
/* Checks f's token signature; sets f->sig and f->sig_error. */
void jwt__verify(const struct jwt_keyset *ks, const char *token, size_t len,
		 struct jwt_facts *f);

/*
 * Facts of recently seen tokens. A client sends the same token on every
 * request of a session: it is decoded, hashed and (with keys) verified
 * once, then its facts are reused while the exact same bytes keep coming.
 * Only what a token's bytes determine is kept; time (exp, nbf) is judged
 * by the caller on each use. Bounded: JWT_CACHE_SLOTS entries of at most
 * JWT_CACHE_MAX_TOKEN bytes each, the newest token replacing the one in
 * its slot.
 */
#define JWT_CACHE_SLOTS 64
#define JWT_CACHE_MAX_TOKEN 4096

struct jwt_cache;

struct jwt_cache *jwt_cache__new(void);
void jwt_cache__free(struct jwt_cache *c);
/* Forgets every entry (keys changed). */
void jwt_cache__clear(struct jwt_cache *c);
/*
 * Like jwt__parse() then jwt__verify() with keys (may be NULL), through
 * the cache. On a hit (*shared set) out is a shallow copy of the cached
 * facts: valid until the next jwt_cache__get() or clear, and not to be
 * released. Otherwise out is the caller's, as from jwt__parse(). c may be
 * NULL (no caching). Returns 0 or -ENOMEM.
 */
int jwt_cache__get(struct jwt_cache *c, const struct jwt_keyset *keys, const char *token,
		   size_t len, struct jwt_facts *out, bool *shared);
/* Hits and misses since creation. */
void jwt_cache__stats(const struct jwt_cache *c, unsigned long long *hits,
		      unsigned long long *misses);

/* The SHA-256 of data as 64 lowercase hex digits and a NUL; 0 or -ENOMEM. */
int jwt__sha256_hex(const void *data, size_t len, char hex[65]);

#endif
