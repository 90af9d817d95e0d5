// SPDX-License-Identifier: GPL-2.0
/*
 * Bearer token facts and optional JWS signature checking.
 *
 * jwt__parse() hashes the raw token (the one fact every token has), then,
 * if it is a compact JWS of bounded size, decodes header and claims with
 * strict base64url and jsonlite (duplicate keys and NUL bytes refused, as
 * two parsers must not read two different identities out of one token).
 * Claims are copied into jwt_facts; the token text never is.
 *
 * jwt__verify() re-splits the same token and checks its signature with
 * libcrypto against keys loaded by jwt_keyset__add_file(): PEM public keys
 * or certificates, JWKS documents (built with EVP_PKEY_fromdata), or HMAC
 * secrets. A key is only ever used with the algorithm family of its own
 * type, so an RSA public key can never be used as an HMAC secret.
 */
/* SHA256_Init() and friends: deprecated in OpenSSL 3, kept (see
 * sha256_raw()). */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "hmap.h"
#include "jsonlite.h"
#include "jwt.h"

/* Key files are small; a larger one is a mistake, not a key set. */
#define KEY_FILE_MAX		(1024 * 1024)
#define RSA_MIN_BITS		2048
/* RFC 7518 3.2: an HMAC key at least as long as the hash output. */
#define HMAC_MIN_BYTES		32

/* ---- token facts --------------------------------------------------------- */

int jwt__bearer(const char *value, const char **token, size_t *len)
{
	const char *p = value, *end;

	if (!value)
		return -ENOENT;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "bearer", 6) != 0)
		return -ENOENT;
	p += 6;
	/* RFC 7235 wants one or more SP; a tab is taken too, so a token a
	 * lenient server would accept is never invisible here. */
	if (*p != ' ' && *p != '\t')
		return -ENOENT;
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strlen(p);
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end == p)
		return -ENOENT;
	*token = p;
	*len = (size_t)(end - p);
	return 0;
}

static int b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Strict unpadded base64url (RFC 7515 2): no '=', no whitespace, no
 * standard-alphabet characters, and unused trailing bits zero, so each
 * value has exactly one spelling. Decodes into buf (room for
 * B64URL_ROOM(len) bytes), NUL-terminated for convenience, or only checks
 * when buf is NULL. Returns 0 or -EINVAL.
 */
#define B64URL_ROOM(len) ((len) / 4 * 3 + 3)

static int b64url_decode_into(const char *in, size_t len, unsigned char *buf, size_t *outlen)
{
	unsigned int acc = 0;
	size_t i, o = 0;
	int bits = 0;

	if (len % 4 == 1)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		int v = b64url_val((unsigned char)in[i]);

		if (v < 0)
			return -EINVAL;
		acc = (acc << 6 | (unsigned int)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (buf)
				buf[o] = (unsigned char)(acc >> bits);
			o++;
		}
	}
	if (acc & ((1u << bits) - 1))
		return -EINVAL;
	if (buf)
		buf[o] = '\0';
	if (outlen)
		*outlen = o;
	return 0;
}

/* b64url_decode_into() into a buffer of its own. Returns 0, -EINVAL or
 * -ENOMEM. */
static int b64url_decode(const char *in, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	int err;

	if (len % 4 == 1)
		return -EINVAL;
	buf = malloc(B64URL_ROOM(len));
	if (!buf)
		return -ENOMEM;
	err = b64url_decode_into(in, len, buf, outlen);
	if (err) {
		free(buf);
		return err;
	}
	*out = buf;
	return 0;
}

#ifndef OPENSSL_NO_DEPRECATED_3_0
/*
 * A token's digest through libcrypto's low-level SHA-256, not EVP: the
 * same code hashes the bytes, but EVP's provider dispatch around it is
 * many times the code, and at a first sight none of it is in the caches:
 * ~25 µs a token through EVP against ~5 µs here (P2's client, p50,
 * measured in the daemon). Where a libcrypto is built without the
 * deprecated interfaces, EVP.
 */
static int sha256_raw(const void *data, size_t len, unsigned char md[32])
{
	SHA256_CTX ctx;

	return SHA256_Init(&ctx) && SHA256_Update(&ctx, data, len) && SHA256_Final(md, &ctx) ?
	       0 : -ENOMEM;
}
#else
static EVP_MD *sha256_fetched;

static void fetch_sha256(void)
{
	sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256 fetched once: EVP_sha256() is looked up in the provider on
 * every digest, a cost comparable to hashing a token. */
static int sha256_raw(const void *data, size_t len, unsigned char md[32])
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	unsigned int mdlen = 0;

	pthread_once(&once, fetch_sha256);
	if (EVP_Digest(data, len, md, &mdlen, sha256_fetched ? sha256_fetched : EVP_sha256(),
		       NULL) != 1 || mdlen != 32) {
		ERR_clear_error();
		return -ENOMEM;
	}
	return 0;
}
#endif

int jwt__sha256_hex(const void *data, size_t len, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[32];
	int i;

	if (sha256_raw(data, len, md))
		return -ENOMEM;
	for (i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
	return 0;
}

/* The three parts of a compact JWS; false when it does not have three. */
struct jws_parts {
	const char *header, *payload, *sig;
	size_t header_len, payload_len, sig_len;
	size_t signing_len;	/* header "." payload */
};

static bool jws_split(const char *token, size_t len, struct jws_parts *p)
{
	const char *d1, *d2;

	d1 = memchr(token, '.', len);
	if (!d1)
		return false;
	d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
	if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return false;
	p->header = token;
	p->header_len = (size_t)(d1 - token);
	p->payload = d1 + 1;
	p->payload_len = (size_t)(d2 - p->payload);
	p->sig = d2 + 1;
	p->sig_len = len - (size_t)(p->sig - token);
	p->signing_len = (size_t)(d2 - token);
	return p->header_len && p->payload_len;
}

static int dup_str(char **dst, const char *src)
{
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

/* Copies obj[key] if it is a string; a present non-string sets *bad. */
static int opt_str(const struct jl *obj, const char *key, char **dst, bool *bad)
{
	const struct jl *v = jl__get(obj, key);

	if (!v)
		return 0;
	if (v->type != JL_STRING) {
		*bad = true;
		return 0;
	}
	return dup_str(dst, v->v.s);
}

/* A string, or an array of strings joined with sep. */
static int str_or_list(const struct jl *obj, const char *key, const char *sep, char **dst,
		       bool *bad)
{
	const struct jl *v = jl__get(obj, key);
	size_t i, total = 1, seplen = strlen(sep);
	char *buf, *o;

	if (!v || v->type == JL_STRING)
		return opt_str(obj, key, dst, bad);
	if (v->type != JL_ARRAY) {
		*bad = true;
		return 0;
	}
	for (i = 0; i < v->n; i++) {
		if (v->v.kids[i].type != JL_STRING) {
			*bad = true;
			return 0;
		}
		total += v->v.kids[i].n + seplen;
	}
	buf = malloc(total);
	if (!buf)
		return -ENOMEM;
	o = buf;
	for (i = 0; i < v->n; i++) {
		if (i) {
			memcpy(o, sep, seplen);
			o += seplen;
		}
		memcpy(o, v->v.kids[i].v.s, v->v.kids[i].n);
		o += v->v.kids[i].n;
	}
	*o = '\0';
	*dst = buf;
	return 0;
}

/*
 * NumericDate (RFC 7519 2) is any JSON number, fractions allowed; it is
 * kept as whole seconds (rounded down). Anything else, or a number beyond
 * the range of long long, is a bad claim.
 */
static void numeric_date(const struct jl *obj, const char *key, long long *dst, bool *has,
			 bool *bad)
{
	const struct jl *v = jl__get(obj, key);
	double r;

	if (!v)
		return;
	if (v->type == JL_INTEGER) {
		*dst = v->v.i;
		*has = true;
		return;
	}
	if (v->type != JL_REAL) {
		*bad = true;
		return;
	}
	r = v->v.r;
	if (!(r > -9.2e18 && r < 9.2e18)) {
		*bad = true;
		return;
	}
	*dst = (long long)r;
	if ((double)*dst > r)
		(*dst)--;
	*has = true;
}

/* "kubernetes.io" of a projected service-account token. */
static int read_k8s(const struct jl *claims, struct jwt_facts *f, bool *bad)
{
	const struct jl *k8s = jl__get(claims, "kubernetes.io"), *pod, *sa;
	int err;

	if (!k8s) {
		/* Legacy secret-based tokens: flat claims, no pod. */
		err = opt_str(claims, "kubernetes.io/serviceaccount/namespace",
			      &f->k8s_namespace, bad);
		if (!err)
			err = opt_str(claims, "kubernetes.io/serviceaccount/service-account.name",
				      &f->k8s_sa_name, bad);
		return err;
	}
	if (k8s->type != JL_OBJECT) {
		*bad = true;
		return 0;
	}
	err = opt_str(k8s, "namespace", &f->k8s_namespace, bad);
	if (err)
		return err;
	pod = jl__get(k8s, "pod");
	if (pod && pod->type != JL_OBJECT)
		*bad = true;
	if (jl__is(pod, JL_OBJECT)) {
		err = opt_str(pod, "name", &f->k8s_pod_name, bad);
		if (!err)
			err = opt_str(pod, "uid", &f->k8s_pod_uid, bad);
		if (err)
			return err;
	}
	sa = jl__get(k8s, "serviceaccount");
	if (sa && sa->type != JL_OBJECT)
		*bad = true;
	if (jl__is(sa, JL_OBJECT))
		return opt_str(sa, "name", &f->k8s_sa_name, bad);
	return 0;
}

/*
 * "cnf" (RFC 7800) as compact JSON text: rare (proof-of-possession
 * tokens), so the payload is decoded again and read with jansson, whose
 * text the claim's JSON is built from.
 */
static int read_cnf(const struct jws_parts *p, struct jwt_facts *f)
{
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	json_t *claims;
	int err;

	err = b64url_decode(p->payload, p->payload_len, &raw, &rawlen);
	if (err)
		return err;
	claims = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	f->cnf = claims ? json_dumps(json_object_get(claims, "cnf"), JSON_COMPACT) : NULL;
	json_decref(claims);
	return f->cnf ? 0 : -ENOMEM;
}

/*
 * Copies the claims we judge on. A claim of the wrong type is left out and
 * the token marked bad_claims; the well-typed ones stay, as evidence.
 */
static int read_claims(const struct jl *claims, const struct jws_parts *p, struct jwt_facts *f)
{
	static const struct {
		const char *key;
		size_t off;
	} strs[] = {
		{ "iss", offsetof(struct jwt_facts, iss) },
		{ "sub", offsetof(struct jwt_facts, sub) },
		{ "client_id", offsetof(struct jwt_facts, client_id) },
		{ "azp", offsetof(struct jwt_facts, azp) },
		{ "jti", offsetof(struct jwt_facts, jti) },
	};
	const struct jl *cnf;
	bool bad = false, too_large = false;
	size_t i;
	int err;

	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		char **v = (char **)((char *)f + strs[i].off);

		err = opt_str(claims, strs[i].key, v, &bad);
		if (err)
			return err;
		/* Kept (and bound with sessions) for as long as they live:
		 * bounded, or any client could fill the daemon's memory. */
		if (*v && strlen(*v) > JWT_MAX_CLAIM_BYTES) {
			free(*v);
			*v = NULL;
			too_large = true;
		}
	}
	err = str_or_list(claims, "aud", ",", &f->aud, &bad);
	if (!err)
		/* RFC 8693 scope is one space-separated string; some issuers
		 * send a list. */
		err = str_or_list(claims, "scope", " ", &f->scope, &bad);
	if (err)
		return err;
	numeric_date(claims, "exp", &f->exp, &f->has_exp, &bad);
	numeric_date(claims, "iat", &f->iat, &f->has_iat, &bad);
	numeric_date(claims, "nbf", &f->nbf, &f->has_nbf, &bad);

	cnf = jl__get(claims, "cnf");
	if (cnf && cnf->type != JL_OBJECT)
		bad = true;
	if (jl__is(cnf, JL_OBJECT)) {
		err = read_cnf(p, f);
		if (err)
			return err;
	}
	err = read_k8s(claims, f, &bad);
	if (err)
		return err;
	if (bad)
		f->error = "bad_claims";
	else if (too_large)
		f->error = "claim_too_large";
	return 0;
}

static int read_header(const struct jl *hdr, struct jwt_facts *f)
{
	bool bad = false;
	int err;

	err = opt_str(hdr, "alg", &f->alg, &bad);
	if (!err)
		err = opt_str(hdr, "kid", &f->kid, &bad);
	if (!err)
		err = opt_str(hdr, "typ", &f->typ, &bad);
	if (err)
		return err;
	if (bad || !f->alg)
		f->error = "bad_header";
	return 0;
}

/*
 * Decodes one part to a JSON document; sets f->error when it cannot. Read
 * with jsonlite, into one arena, and decoded on the stack: through
 * jansson (a malloc a value, a hash table an object) jwt__parse() took
 * 35-38 µs a token at a first sight here, 21-22 µs now (P2's client, p50,
 * cold caches). What is accepted is what jansson accepted with
 * JSON_REJECT_DUPLICATES (test `jwt_parse/json_as_jansson_read_it`): an
 * object or array at the top, no repeated key, no NUL, integers within 64
 * bits.
 */
static int decode_part(const char *part, size_t len, struct jwt_facts *f, struct jl_doc **out)
{
	unsigned char small[2048], *raw = small;
	const struct jl *root;
	struct jl_error jerr;
	size_t rawlen = 0;
	int err = 0;

	*out = NULL;
	if (B64URL_ROOM(len) > sizeof(small)) {
		raw = malloc(B64URL_ROOM(len));
		if (!raw)
			return -ENOMEM;
	}
	if (b64url_decode_into(part, len, raw, &rawlen)) {
		f->error = "bad_base64";
		goto out;
	}
	*out = jl__parse((const char *)raw, rawlen, &jerr);
	if (!*out && jerr.code == JL_NOMEM) {
		err = -ENOMEM;
		goto out;
	}
	root = *out ? jl__root(*out) : NULL;
	if (!root || jl__big_integers(*out) || (root->type != JL_OBJECT && root->type != JL_ARRAY)) {
		jl__free(*out);
		*out = NULL;
		f->error = "bad_json";
	}
out:
	if (raw != small)
		free(raw);
	return err;
}

static int parse_jws(const char *token, size_t len, struct jwt_facts *f)
{
	struct jl_doc *hdr = NULL, *claims = NULL;
	struct jws_parts p;
	int err;

	if (!jws_split(token, len, &p)) {
		f->error = "not_jwt";
		return 0;
	}
	/* The signature is only checked by jwt__verify(), but a token whose
	 * signature part is not base64url is not a JWS at all. */
	if (b64url_decode_into(p.sig, p.sig_len, NULL, NULL)) {
		f->error = "bad_base64";
		return 0;
	}
	err = decode_part(p.header, p.header_len, f, &hdr);
	if (!err && !f->error)
		err = decode_part(p.payload, p.payload_len, f, &claims);
	if (err || f->error)
		goto out;
	if (jl__root(hdr)->type != JL_OBJECT) {
		f->error = "bad_header";
		goto out;
	}
	if (jl__root(claims)->type != JL_OBJECT) {
		f->error = "bad_claims";
		goto out;
	}
	f->is_jwt = true;
	err = read_header(jl__root(hdr), f);
	if (!err) {
		const char *hdr_error = f->error;

		err = read_claims(jl__root(claims), &p, f);
		/* A bad header explains more than a bad claim. */
		if (hdr_error)
			f->error = hdr_error;
	}
out:
	jl__free(hdr);
	jl__free(claims);
	return err;
}

int jwt__parse(const char *token, size_t len, struct jwt_facts *out)
{
	int err;

	memset(out, 0, sizeof(*out));
	if (!token)
		return 0;
	out->present = true;
	err = jwt__sha256_hex(token, len, out->sha256);
	if (err)
		return err;
	if (len > JWT_MAX_TOKEN_BYTES) {
		out->error = "too_large";
		return 0;
	}
	err = parse_jws(token, len, out);
	if (err)
		jwt_facts__release(out);
	return err;
}

void jwt_facts__release(struct jwt_facts *f)
{
	if (!f)
		return;
	free(f->alg);
	free(f->kid);
	free(f->typ);
	free(f->iss);
	free(f->sub);
	free(f->client_id);
	free(f->azp);
	free(f->jti);
	free(f->scope);
	free(f->aud);
	free(f->cnf);
	free(f->k8s_namespace);
	free(f->k8s_pod_name);
	free(f->k8s_pod_uid);
	free(f->k8s_sa_name);
	memset(f, 0, sizeof(*f));
}

/* ---- cache --------------------------------------------------------------- */

struct jwt_cache_slot {
	char *token;		/* NULL: empty */
	size_t len;
	const struct jwt_keyset *keys;	/* what sig was checked against */
	struct jwt_facts facts;
};

struct jwt_cache {
	struct jwt_cache_slot slot[JWT_CACHE_SLOTS];
	unsigned long long hits, misses;
};

struct jwt_cache *jwt_cache__new(void)
{
	return calloc(1, sizeof(struct jwt_cache));
}

static void slot_clear(struct jwt_cache_slot *s)
{
	free(s->token);
	jwt_facts__release(&s->facts);
	memset(s, 0, sizeof(*s));
}

void jwt_cache__clear(struct jwt_cache *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < JWT_CACHE_SLOTS; i++)
		slot_clear(&c->slot[i]);
}

void jwt_cache__free(struct jwt_cache *c)
{
	jwt_cache__clear(c);
	free(c);
}

void jwt_cache__stats(const struct jwt_cache *c, unsigned long long *hits,
		      unsigned long long *misses)
{
	*hits = c ? c->hits : 0;
	*misses = c ? c->misses : 0;
}

/* From the token's last bytes (its signature: where tokens differ). */
static size_t slot_of(const char *token, size_t len)
{
	size_t tail = len > 64 ? 64 : len;

	return (size_t)(hmap__hash_bytes(token + len - tail, tail) ^ len) % JWT_CACHE_SLOTS;
}

int jwt_cache__get(struct jwt_cache *c, const struct jwt_keyset *keys, const char *token,
		   size_t len, struct jwt_facts *out, bool *shared)
{
	struct jwt_cache_slot *s;
	int err;

	*shared = false;
	if (c && token && len <= JWT_CACHE_MAX_TOKEN) {
		s = &c->slot[slot_of(token, len)];
		if (s->token && s->len == len && s->keys == keys &&
		    memcmp(s->token, token, len) == 0) {
			c->hits++;
			*out = s->facts;
			*shared = true;
			return 0;
		}
	}
	err = jwt__parse(token, len, out);
	if (err)
		return err;
	if (keys && out->is_jwt)
		jwt__verify(keys, token, len, out);
	if (!c || !token || len > JWT_CACHE_MAX_TOKEN)
		return 0;
	c->misses++;
	s = &c->slot[slot_of(token, len)];
	slot_clear(s);
	s->token = malloc(len);
	if (!s->token)
		return 0;	/* not cached; the caller's facts are whole */
	memcpy(s->token, token, len);
	s->len = len;
	s->keys = keys;
	s->facts = *out;	/* the cache owns them now */
	*shared = true;
	return 0;
}

/* ---- keys ---------------------------------------------------------------- */

enum key_kind {
	KEY_RSA,
	KEY_EC_P256,
	KEY_EC_P384,
	KEY_ED25519,
	KEY_ED448,
	KEY_HMAC,
};

struct jwt_key {
	enum key_kind kind;
	EVP_PKEY *pkey;			/* all but KEY_HMAC */
	unsigned char *secret;		/* KEY_HMAC */
	size_t secret_len;
	char *kid, *alg;		/* from a JWKS; NULL: any */
	char *iss_glob;			/* NULL: any issuer */
};

struct jwt_keyset {
	struct jwt_key *keys;
	size_t n, cap;
};

struct jwt_keyset *jwt_keyset__new(void)
{
	return calloc(1, sizeof(struct jwt_keyset));
}

static void key__release(struct jwt_key *k)
{
	EVP_PKEY_free(k->pkey);
	if (k->secret)
		OPENSSL_cleanse(k->secret, k->secret_len);
	free(k->secret);
	free(k->kid);
	free(k->alg);
	free(k->iss_glob);
	memset(k, 0, sizeof(*k));
}

void jwt_keyset__free(struct jwt_keyset *ks)
{
	size_t i;

	if (!ks)
		return;
	for (i = 0; i < ks->n; i++)
		key__release(&ks->keys[i]);
	free(ks->keys);
	free(ks);
}

/* Takes ownership of *k's contents, also on failure. */
static int keyset_push(struct jwt_keyset *ks, struct jwt_key *k, const char *iss_glob)
{
	if (iss_glob && !(k->iss_glob = strdup(iss_glob))) {
		key__release(k);
		return -ENOMEM;
	}
	if (ks->n == ks->cap) {
		size_t cap = ks->cap ? ks->cap * 2 : 4;
		struct jwt_key *keys = realloc(ks->keys, cap * sizeof(*keys));

		if (!keys) {
			key__release(k);
			return -ENOMEM;
		}
		ks->keys = keys;
		ks->cap = cap;
	}
	ks->keys[ks->n++] = *k;
	memset(k, 0, sizeof(*k));
	return 0;
}

static int ec_nid(const EVP_PKEY *pkey)
{
	char name[64];
	int nid;

	if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name,
					   sizeof(name), NULL) != 1)
		return NID_undef;
	nid = OBJ_sn2nid(name);
	if (nid == NID_undef)
		nid = EC_curve_nist2nid(name);
	return nid;
}

/* Which kind of JWS key pkey is; -EINVAL with a reason otherwise. */
static int classify(const EVP_PKEY *pkey, enum key_kind *kind, const char **why)
{
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
			*why = "RSA key shorter than 2048 bits";
			return -EINVAL;
		}
		*kind = KEY_RSA;
		return 0;
	case EVP_PKEY_EC:
		switch (ec_nid(pkey)) {
		case NID_X9_62_prime256v1:
			*kind = KEY_EC_P256;
			return 0;
		case NID_secp384r1:
			*kind = KEY_EC_P384;
			return 0;
		}
		*why = "EC key on a curve other than P-256 or P-384";
		return -EINVAL;
	case EVP_PKEY_ED25519:
		*kind = KEY_ED25519;
		return 0;
	case EVP_PKEY_ED448:
		*kind = KEY_ED448;
		return 0;
	}
	*why = "unsupported public key type";
	return -EINVAL;
}

static int read_file(const char *path, unsigned char **data, size_t *len)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	FILE *fp;
	int err = 0;

	fp = fopen(path, "rb");
	if (!fp)
		return -errno;
	buf = malloc(KEY_FILE_MAX + 1);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	n = fread(buf, 1, KEY_FILE_MAX + 1, fp);
	if (ferror(fp))
		err = -EIO;
	else if (n > KEY_FILE_MAX)
		err = -EFBIG;
	buf[n < KEY_FILE_MAX ? n : KEY_FILE_MAX] = '\0';
out:
	fclose(fp);
	if (err) {
		free(buf);
		return err;
	}
	*data = buf;
	*len = n;
	return 0;
}

static int add_hmac(struct jwt_keyset *ks, unsigned char *data, size_t len,
		    const char *iss_glob, const char **why)
{
	struct jwt_key k = { .kind = KEY_HMAC };

	/* Editors end files with a newline nobody means as key material. */
	while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	if (len < HMAC_MIN_BYTES) {
		*why = "HMAC secret shorter than 32 bytes";
		return -EINVAL;
	}
	k.secret = malloc(len);
	if (!k.secret)
		return -ENOMEM;
	memcpy(k.secret, data, len);
	k.secret_len = len;
	return keyset_push(ks, &k, iss_glob);
}

static int add_pem(struct jwt_keyset *ks, const unsigned char *data, size_t len,
		   const char *iss_glob, const char **why)
{
	struct jwt_key k = {};
	EVP_PKEY *pkey = NULL;
	BIO *bio;
	int err;

	bio = BIO_new_mem_buf(data, (int)len);
	if (!bio)
		return -ENOMEM;
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!pkey) {
		X509 *cert;

		bio = BIO_new_mem_buf(data, (int)len);
		if (!bio)
			return -ENOMEM;
		cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		BIO_free(bio);
		if (cert)
			pkey = X509_get_pubkey(cert);
		X509_free(cert);
	}
	ERR_clear_error();
	if (!pkey) {
		*why = "no PEM public key or certificate found";
		return -EINVAL;
	}
	err = classify(pkey, &k.kind, why);
	if (err) {
		EVP_PKEY_free(pkey);
		return err;
	}
	k.pkey = pkey;
	return keyset_push(ks, &k, iss_glob);
}

/* A base64url JWK member, of exactly want bytes when want is not 0. */
static int jwk_bytes(const json_t *jwk, const char *key, size_t want, unsigned char **out,
		     size_t *len)
{
	const json_t *v = json_object_get(jwk, key);
	int err;

	if (!json_is_string(v))
		return -EINVAL;
	err = b64url_decode(json_string_value(v), json_string_length(v), out, len);
	if (err)
		return err;
	if ((want && *len != want) || *len == 0) {
		free(*out);
		*out = NULL;
		return -EINVAL;
	}
	return 0;
}

static int pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **pkey)
{
	EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM *params = NULL;
	int err = -EINVAL;

	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (!params || !ctx) {
		err = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	err = 0;
out:
	OSSL_PARAM_free(params);
	EVP_PKEY_CTX_free(ctx);
	return err;
}

static int jwk_rsa(const json_t *jwk, OSSL_PARAM_BLD *bld, EVP_PKEY **pkey)
{
	unsigned char *n = NULL, *e = NULL;
	size_t nlen, elen;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	int err;

	err = jwk_bytes(jwk, "n", 0, &n, &nlen);
	if (!err)
		err = jwk_bytes(jwk, "e", 0, &e, &elen);
	if (err)
		goto out;
	bn_n = BN_bin2bn(n, (int)nlen, NULL);
	bn_e = BN_bin2bn(e, (int)elen, NULL);
	if (!bn_n || !bn_e ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)) {
		err = -ENOMEM;
		goto out;
	}
	err = pkey_fromdata("RSA", bld, pkey);
out:
	BN_free(bn_n);
	BN_free(bn_e);
	free(n);
	free(e);
	return err;
}

static int jwk_ec(const json_t *jwk, OSSL_PARAM_BLD *bld, EVP_PKEY **pkey)
{
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	unsigned char *x = NULL, *y = NULL, pub[1 + 2 * 48];
	const char *group;
	size_t xlen, ylen, size;
	EVP_PKEY_CTX *check = NULL;
	int err;

	if (crv && strcmp(crv, "P-256") == 0) {
		group = SN_X9_62_prime256v1;
		size = 32;
	} else if (crv && strcmp(crv, "P-384") == 0) {
		group = SN_secp384r1;
		size = 48;
	} else {
		return -EINVAL;
	}
	err = jwk_bytes(jwk, "x", size, &x, &xlen);
	if (!err)
		err = jwk_bytes(jwk, "y", size, &y, &ylen);
	if (err)
		goto out;
	pub[0] = POINT_CONVERSION_UNCOMPRESSED;
	memcpy(pub + 1, x, size);
	memcpy(pub + 1 + size, y, size);
	if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * size)) {
		err = -ENOMEM;
		goto out;
	}
	err = pkey_fromdata("EC", bld, pkey);
	if (err)
		goto out;
	/* fromdata does not insist the point is on the curve. */
	check = EVP_PKEY_CTX_new_from_pkey(NULL, *pkey, NULL);
	if (!check || EVP_PKEY_public_check(check) != 1) {
		EVP_PKEY_free(*pkey);
		*pkey = NULL;
		err = check ? -EINVAL : -ENOMEM;
	}
out:
	EVP_PKEY_CTX_free(check);
	free(x);
	free(y);
	return err;
}

static int jwk_okp(const json_t *jwk, OSSL_PARAM_BLD *bld, EVP_PKEY **pkey)
{
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	unsigned char *x = NULL;
	const char *type;
	size_t xlen, size;
	int err;

	if (crv && strcmp(crv, "Ed25519") == 0) {
		type = "ED25519";
		size = 32;
	} else if (crv && strcmp(crv, "Ed448") == 0) {
		type = "ED448";
		size = 57;
	} else {
		return -EINVAL;
	}
	err = jwk_bytes(jwk, "x", size, &x, &xlen);
	if (err)
		return err;
	if (!OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, x, xlen))
		err = -ENOMEM;
	else
		err = pkey_fromdata(type, bld, pkey);
	free(x);
	return err;
}

/* Copies a key's obj[key] if it is a string; a present non-string sets
 * *bad. */
static int jwk_str(const json_t *obj, const char *key, char **dst, bool *bad)
{
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_string(v)) {
		*bad = true;
		return 0;
	}
	return dup_str(dst, json_string_value(v));
}

/*
 * One JWK. Returns 0 with *k filled, 1 when the key is not for us
 * (encryption use, symmetric or unknown type), or -errno.
 */
static int jwk_key(const json_t *jwk, struct jwt_key *k, const char **why)
{
	const char *kty, *use, *crv;
	OSSL_PARAM_BLD *bld;
	EVP_PKEY *pkey = NULL;
	bool bad = false;
	int err;

	if (!json_is_object(jwk)) {
		*why = "a key is not a JSON object";
		return -EINVAL;
	}
	kty = json_string_value(json_object_get(jwk, "kty"));
	use = json_string_value(json_object_get(jwk, "use"));
	if (!kty) {
		*why = "a key has no \"kty\"";
		return -EINVAL;
	}
	if (use && strcmp(use, "sig") != 0)
		return 1;
	if (strcmp(kty, "RSA") && strcmp(kty, "EC") && strcmp(kty, "OKP"))
		return 1;
	/* Curves we cannot check (P-521, X25519...) are skipped, not an
	 * error: an issuer's JWKS may well hold one beside ours. */
	crv = json_string_value(json_object_get(jwk, "crv"));
	if (strcmp(kty, "EC") == 0 && !(crv && (strcmp(crv, "P-256") == 0 ||
						  strcmp(crv, "P-384") == 0)))
		return 1;
	if (strcmp(kty, "OKP") == 0 && !(crv && (strcmp(crv, "Ed25519") == 0 ||
						   strcmp(crv, "Ed448") == 0)))
		return 1;

	bld = OSSL_PARAM_BLD_new();
	if (!bld)
		return -ENOMEM;
	if (strcmp(kty, "RSA") == 0)
		err = jwk_rsa(jwk, bld, &pkey);
	else if (strcmp(kty, "EC") == 0)
		err = jwk_ec(jwk, bld, &pkey);
	else
		err = jwk_okp(jwk, bld, &pkey);
	OSSL_PARAM_BLD_free(bld);
	ERR_clear_error();
	if (err) {
		if (err == -EINVAL)
			*why = "a key has missing or malformed parameters";
		return err;
	}
	err = classify(pkey, &k->kind, why);
	if (err) {
		EVP_PKEY_free(pkey);
		return err;
	}
	k->pkey = pkey;
	err = jwk_str(jwk, "kid", &k->kid, &bad);
	if (!err)
		err = jwk_str(jwk, "alg", &k->alg, &bad);
	if (!err && bad) {
		*why = "a key has a non-string \"kid\" or \"alg\"";
		err = -EINVAL;
	}
	if (err)
		key__release(k);
	return err;
}

static int add_jwks(struct jwt_keyset *ks, const unsigned char *data, size_t len,
		    const char *iss_glob, const char **why, size_t *bad_index)
{
	json_t *root, *keys, *jwk;
	json_error_t jerr;
	size_t i, added = 0;
	int err = 0;

	root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
	keys = json_object_get(root, "keys");
	if (!json_is_array(keys)) {
		*why = "not a JWKS document ({\"keys\": [...]})";
		err = -EINVAL;
		goto out;
	}
	json_array_foreach(keys, i, jwk) {
		struct jwt_key k = {};

		err = jwk_key(jwk, &k, why);
		if (err == 1) {
			err = 0;
			continue;
		}
		if (!err)
			err = keyset_push(ks, &k, iss_glob);
		if (err) {
			*bad_index = i + 1;
			goto out;
		}
		added++;
	}
	if (!added) {
		*why = "no signature key of a supported type";
		err = -ENOENT;
	}
out:
	json_decref(root);
	return err;
}

int jwt_keyset__add_file(struct jwt_keyset *ks, const char *path, const char *iss_glob,
			 bool hmac, char *err_buf, size_t errlen)
{
	unsigned char *data = NULL;
	const char *why = NULL;
	size_t len = 0, bad_index = 0, i;
	size_t before = ks->n;
	int err;

	err = read_file(path, &data, &len);
	if (err) {
		snprintf(err_buf, errlen, "%s: %s", path,
			 err == -EFBIG ? "key file larger than 1 MiB" : strerror(-err));
		return err;
	}
	for (i = 0; i < len && strchr(" \t\r\n", data[i]); i++)
		;
	if (hmac)
		err = add_hmac(ks, data, len, iss_glob, &why);
	else if (i < len && data[i] == '{')
		err = add_jwks(ks, data, len, iss_glob, &why, &bad_index);
	else
		err = add_pem(ks, data, len, iss_glob, &why);
	OPENSSL_cleanse(data, len);
	free(data);
	if (!err)
		return 0;
	/* All or nothing: a half-loaded JWKS would verify some tokens only. */
	while (ks->n > before)
		key__release(&ks->keys[--ks->n]);
	if (err == -ENOMEM)
		why = "out of memory";
	if (bad_index)
		snprintf(err_buf, errlen, "%s: key %zu: %s", path, bad_index,
			 why ? why : strerror(-err));
	else
		snprintf(err_buf, errlen, "%s: %s", path, why ? why : strerror(-err));
	return err;
}

/* ---- verification -------------------------------------------------------- */

struct alg_def {
	const char *name;
	const EVP_MD *(*md)(void);	/* NULL for EdDSA */
	enum key_kind kind;
	bool pss;
	bool any_edwards;		/* "EdDSA": Ed25519 or Ed448 */
	size_t ec_size;			/* ES*: bytes of r and of s */
};

static const struct alg_def algs[] = {
	{ .name = "RS256", .md = EVP_sha256, .kind = KEY_RSA },
	{ .name = "RS384", .md = EVP_sha384, .kind = KEY_RSA },
	{ .name = "RS512", .md = EVP_sha512, .kind = KEY_RSA },
	{ .name = "PS256", .md = EVP_sha256, .kind = KEY_RSA, .pss = true },
	{ .name = "PS384", .md = EVP_sha384, .kind = KEY_RSA, .pss = true },
	{ .name = "PS512", .md = EVP_sha512, .kind = KEY_RSA, .pss = true },
	{ .name = "ES256", .md = EVP_sha256, .kind = KEY_EC_P256, .ec_size = 32 },
	{ .name = "ES384", .md = EVP_sha384, .kind = KEY_EC_P384, .ec_size = 48 },
	{ .name = "EdDSA", .md = NULL, .kind = KEY_ED25519, .any_edwards = true },
	{ .name = "Ed25519", .md = NULL, .kind = KEY_ED25519 },
	{ .name = "HS256", .md = EVP_sha256, .kind = KEY_HMAC },
	{ .name = "HS384", .md = EVP_sha384, .kind = KEY_HMAC },
	{ .name = "HS512", .md = EVP_sha512, .kind = KEY_HMAC },
};

static const struct alg_def *alg_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (strcmp(algs[i].name, name) == 0)
			return &algs[i];
	return NULL;
}

static bool key_applies(const struct jwt_key *k, const struct alg_def *a,
			const struct jwt_facts *f)
{
	if (k->kind != a->kind && !(a->any_edwards && k->kind == KEY_ED448))
		return false;
	if (k->alg && strcmp(k->alg, a->name) != 0)
		return false;
	/* A PEM key has no kid and is tried for any kid. */
	if (f->kid && k->kid && strcmp(f->kid, k->kid) != 0)
		return false;
	if (k->iss_glob && (!f->iss || fnmatch(k->iss_glob, f->iss, 0) != 0))
		return false;
	return true;
}

/* JOSE r||s to the DER SEQUENCE EVP expects. */
static int ecdsa_der(const unsigned char *sig, size_t size, unsigned char **der, int *derlen)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r, *s;

	if (!es)
		return -ENOMEM;
	r = BN_bin2bn(sig, (int)size, NULL);
	s = BN_bin2bn(sig + size, (int)size, NULL);
	if (!r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return -ENOMEM;
	}
	*der = NULL;
	*derlen = i2d_ECDSA_SIG(es, der);
	ECDSA_SIG_free(es);
	return *derlen > 0 ? 0 : -ENOMEM;
}

/* 1 verified, 0 not, -ENOMEM. */
static int verify_pkey(const struct alg_def *a, EVP_PKEY *pkey, const unsigned char *msg,
		       size_t msglen, const unsigned char *sig, size_t siglen)
{
	const EVP_MD *md = a->md ? a->md() : NULL;
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char *der = NULL;
	EVP_MD_CTX *ctx;
	int derlen, ret = 0;

	if (a->ec_size) {
		if (siglen != 2 * a->ec_size)
			return 0;
		if (ecdsa_der(sig, a->ec_size, &der, &derlen))
			return -ENOMEM;
		sig = der;
		siglen = (size_t)derlen;
	} else if (a->kind == KEY_RSA && siglen != (size_t)EVP_PKEY_get_size(pkey)) {
		return 0;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx) {
		ret = -ENOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) != 1)
		goto out;
	/* RFC 7518 3.5: MGF1 with the same hash, salt as long as the hash. */
	if (a->pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
		       EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1 ||
		       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
		goto out;
	ret = EVP_DigestVerify(ctx, sig, siglen, msg, msglen) == 1;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	return ret;
}

static int verify_hmac(const struct alg_def *a, const struct jwt_key *k,
		       const unsigned char *msg, size_t msglen, const unsigned char *sig,
		       size_t siglen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (!HMAC(a->md(), k->secret, (int)k->secret_len, msg, msglen, mac, &maclen)) {
		ERR_clear_error();
		return -ENOMEM;
	}
	return siglen == maclen && CRYPTO_memcmp(mac, sig, maclen) == 0;
}

void jwt__verify(const struct jwt_keyset *ks, const char *token, size_t len,
		 struct jwt_facts *f)
{
	const struct alg_def *a;
	unsigned char *sig = NULL;
	struct jws_parts p;
	char digest[65];
	size_t siglen, i, tried = 0;
	int ret;

	f->sig = JWT_SIG_INVALID;
	if (!ks || ks->n == 0) {
		f->sig = JWT_SIG_UNCHECKED;
		f->sig_error = "no signature keys configured";
		return;
	}
	if (!token || !f->present) {
		f->sig_error = "no token";
		return;
	}
	if (!f->is_jwt || !f->alg || len > JWT_MAX_TOKEN_BYTES || !jws_split(token, len, &p)) {
		f->sig_error = "token is not a signed JWT";
		return;
	}
	if (jwt__sha256_hex(token, len, digest) || strcmp(digest, f->sha256) != 0) {
		f->sig_error = "token does not match its parsed facts";
		return;
	}
	if (strcmp(f->alg, "none") == 0) {
		f->sig = JWT_SIG_UNSUPPORTED;
		f->sig_error = "alg none: the token is not signed";
		return;
	}
	a = alg_find(f->alg);
	if (!a) {
		f->sig = JWT_SIG_UNSUPPORTED;
		f->sig_error = "unsupported signature algorithm";
		return;
	}
	if (b64url_decode(p.sig, p.sig_len, &sig, &siglen)) {
		f->sig_error = "signature is not base64url";
		return;
	}
	for (i = 0; i < ks->n; i++) {
		const struct jwt_key *k = &ks->keys[i];

		if (!key_applies(k, a, f))
			continue;
		tried++;
		if (k->kind == KEY_HMAC)
			ret = verify_hmac(a, k, (const unsigned char *)token, p.signing_len,
					  sig, siglen);
		else
			ret = verify_pkey(a, k->pkey, (const unsigned char *)token,
					  p.signing_len, sig, siglen);
		if (ret < 0) {
			f->sig_error = "out of memory while checking the signature";
			goto out;
		}
		if (ret == 1) {
			f->sig = JWT_SIG_VALID;
			f->sig_error = NULL;
			goto out;
		}
	}
	if (!tried) {
		f->sig = JWT_SIG_NO_KEY;
		f->sig_error = "no configured key applies to this token (iss, kid or alg)";
	} else {
		f->sig_error = "signature does not verify";
	}
out:
	free(sig);
}
