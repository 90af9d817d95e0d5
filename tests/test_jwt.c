// SPDX-License-Identifier: GPL-2.0
/*
 * Bearer token facts and signature checks. Keys are generated at test time
 * with libcrypto and written to a scratch directory as PEM, JWKS and HMAC
 * secret files; tokens are built and signed here, so every case knows
 * exactly which bytes it feeds jwt__parse() and jwt__verify().
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "harness.h"
#include "jwt.h"

static char *b64url(const void *data, size_t len)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *in = data;
	char *out = malloc(len / 3 * 4 + 5), *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		unsigned int n = (unsigned int)in[i] << 16 | (unsigned int)in[i + 1] << 8 | in[i + 2];

		*o++ = abc[n >> 18];
		*o++ = abc[(n >> 12) & 63];
		*o++ = abc[(n >> 6) & 63];
		*o++ = abc[n & 63];
	}
	if (len - i == 1) {
		*o++ = abc[in[i] >> 2];
		*o++ = abc[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		*o++ = abc[in[i] >> 2];
		*o++ = abc[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*o++ = abc[(in[i + 1] & 15) << 2];
	}
	*o = '\0';
	return out;
}

/* "b64(header).b64(claims)" (no signature yet). */
static char *signing_input(const char *header, const char *claims)
{
	char *h = b64url(header, strlen(header)), *c = b64url(claims, strlen(claims));
	char *s = NULL;

	if (h && c && asprintf(&s, "%s.%s", h, c) < 0)
		s = NULL;
	free(h);
	free(c);
	return s;
}

static char *join_sig(char *input, const unsigned char *sig, size_t siglen)
{
	char *s = b64url(sig, siglen), *t = NULL;

	if (s && asprintf(&t, "%s.%s", input, s) < 0)
		t = NULL;
	free(s);
	free(input);
	return t;
}

/* Signs with alg; returns the compact token or NULL. */
static char *sign_token(const char *alg, EVP_PKEY *pkey, const char *secret,
			const char *header, const char *claims)
{
	char *input = signing_input(header, claims);
	unsigned char sig[1024], *der = NULL;
	const EVP_MD *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	EVP_MD_CTX *ctx = NULL;
	size_t siglen = sizeof(sig);
	unsigned int maclen = 0;
	char *token = NULL;

	if (!input)
		return NULL;
	if (strstr(alg, "256"))
		md = EVP_sha256();
	else if (strstr(alg, "384"))
		md = EVP_sha384();
	if (alg[0] == 'H') {
		if (!HMAC(md, secret, (int)strlen(secret), (unsigned char *)input, strlen(input),
			  sig, &maclen))
			goto out;
		return join_sig(input, sig, maclen);
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestSignInit(ctx, &pctx, md, NULL, pkey) != 1)
		goto out;
	if (alg[0] == 'P' && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
			      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
		goto out;
	if (EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)input, strlen(input)) != 1)
		goto out;
	if (alg[0] == 'E' && alg[1] == 'S') {
		/* DER to JOSE r||s. */
		const unsigned char *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)siglen);
		unsigned char raw[96];
		int size = strcmp(alg, "ES384") == 0 ? 48 : 32;

		if (!es)
			goto out;
		BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, size);
		BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + size, size);
		ECDSA_SIG_free(es);
		memcpy(sig, raw, 2 * (size_t)size);
		siglen = 2 * (size_t)size;
	}
	token = join_sig(input, sig, siglen);
	input = NULL;
out:
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	free(input);
	return token;
}

static void verify(const struct jwt_keyset *ks, const char *token, struct jwt_facts *f)
{
	jwt__parse(token, strlen(token), f);
	jwt__verify(ks, token, strlen(token), f);
}

/* Scratch directory for key files. */
static char dir[] = "/tmp/mcpw-test-jwt-XXXXXX";

static const char *path_of(const char *name)
{
	static char buf[4][128];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

static bool write_text(const char *name, const char *text)
{
	FILE *fp = fopen(path_of(name), "w");
	bool ok;

	if (!fp)
		return false;
	ok = fputs(text, fp) >= 0;
	return fclose(fp) == 0 && ok;
}

static bool write_pubkey(const char *name, EVP_PKEY *pkey)
{
	FILE *fp = fopen(path_of(name), "w");
	bool ok;

	if (!fp)
		return false;
	ok = PEM_write_PUBKEY(fp, pkey) == 1;
	return fclose(fp) == 0 && ok;
}

static void remove_dir(void)
{
	static const char *const files[] = {
		"rsa.pem", "ec.pem", "ed.pem", "hmac.key", "jwks.json", "bad.json",
		"short.key", "priv.pem",
	};
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(path_of(files[i]));
	rmdir(dir);
}

/* {"kty":"RSA","n":...,"e":...} and friends, from a generated key. */
static char *jwk_of(EVP_PKEY *pkey, const char *kid)
{
	char *out = NULL, *a = NULL, *b = NULL;

	if (EVP_PKEY_is_a(pkey, "RSA")) {
		BIGNUM *n = NULL, *e = NULL;
		unsigned char nb[1024], eb[16];
		int nl, el;

		if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
		    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) == 1) {
			nl = BN_bn2bin(n, nb);
			el = BN_bn2bin(e, eb);
			a = b64url(nb, (size_t)nl);
			b = b64url(eb, (size_t)el);
			if (a && b && asprintf(&out, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"alg\":\"RS256\","
					       "\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}",
					       kid, a, b) < 0)
				out = NULL;
		}
		BN_free(n);
		BN_free(e);
	} else if (EVP_PKEY_is_a(pkey, "EC")) {
		unsigned char pt[133];
		size_t len = 0;

		if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
						    pt, sizeof(pt), &len) == 1 && len == 65) {
			a = b64url(pt + 1, 32);
			b = b64url(pt + 33, 32);
			if (a && b && asprintf(&out, "{\"kty\":\"EC\",\"kid\":\"%s\",\"crv\":\"P-256\","
					       "\"x\":\"%s\",\"y\":\"%s\"}", kid, a, b) < 0)
				out = NULL;
		}
	} else {
		unsigned char raw[32];
		size_t len = sizeof(raw);

		if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) == 1) {
			a = b64url(raw, len);
			if (a && asprintf(&out, "{\"kty\":\"OKP\",\"kid\":\"%s\",\"crv\":\"Ed25519\","
					  "\"x\":\"%s\"}", kid, a) < 0)
				out = NULL;
		}
	}
	free(a);
	free(b);
	return out;
}

void test_jwt_bearer(void)
{
	const char *tok = NULL;
	size_t len = 0;

	if (ASSERT_OK(jwt__bearer("Bearer abc.def.ghi", &tok, &len), "plain"))
		ASSERT_TRUE(tok && len == 11 && memcmp(tok, "abc.def.ghi", 11) == 0, "token");
	if (ASSERT_OK(jwt__bearer("bEaReR    xyz  ", &tok, &len), "case and spaces"))
		ASSERT_TRUE(tok && len == 3 && memcmp(tok, "xyz", 3) == 0, "token trimmed");
	ASSERT_EQ(jwt__bearer("Basic dXNlcjpwYXNz", &tok, &len), -ENOENT, "basic");
	ASSERT_EQ(jwt__bearer("Bearer", &tok, &len), -ENOENT, "no token");
	ASSERT_EQ(jwt__bearer("Bearer   ", &tok, &len), -ENOENT, "blank token");
	ASSERT_EQ(jwt__bearer("Bearerabc", &tok, &len), -ENOENT, "no separator");
	ASSERT_EQ(jwt__bearer("", &tok, &len), -ENOENT, "empty");
	ASSERT_EQ(jwt__bearer(NULL, &tok, &len), -ENOENT, "NULL");
}

static const char *const hdr_none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";

/* An unsigned token "h.c." for parse-only tests. */
static char *unsigned_token(const char *header, const char *claims)
{
	char *in = signing_input(header, claims), *t = NULL;

	if (in && asprintf(&t, "%s.", in) < 0)
		t = NULL;
	free(in);
	return t;
}

static void expect_error(const char *token, const char *error, const char *what)
{
	struct jwt_facts f = {};

	if (!ASSERT_OK(jwt__parse(token, strlen(token), &f), what))
		return;
	ASSERT_STREQ(f.error, error, what);
	ASSERT_TRUE(f.present, "present");
	ASSERT_EQ(strlen(f.sha256), 64, "digest computed");
	jwt_facts__release(&f);
}

void test_jwt_parse(void)
{
	struct jwt_facts f = {};
	char *tok = NULL, *big = NULL;

	/* Identity claims are kept with sessions: one past 1 KiB is left out
	 * and said; the others stay. */
	if (test__start_subtest("claim_too_large")) {
		char claims_text[1400], sub[1100];

		memset(sub, 's', 1025);
		sub[1025] = '\0';
		snprintf(claims_text, sizeof(claims_text), "{\"client_id\":\"ci\",\"sub\":\"%s\"}",
			 sub);
		tok = unsigned_token(hdr_none, claims_text);
		if (ASSERT_OK_PTR(tok, "token") &&
		    ASSERT_OK(jwt__parse(tok, strlen(tok), &f), "parse")) {
			ASSERT_STREQ(f.error, "claim_too_large", "error");
			ASSERT_NULL(f.sub, "the long sub left out");
			ASSERT_STREQ(f.client_id, "ci", "client_id kept");
		}
		jwt_facts__release(&f);
		memset(&f, 0, sizeof(f));
		free(tok);
		tok = NULL;
	}

	if (test__start_subtest("claims")) {
		tok = unsigned_token("{\"alg\":\"RS256\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}",
				     "{\"iss\":\"https://idp.example\",\"sub\":\"user-1\","
				     "\"aud\":\"tickets\",\"client_id\":\"ci-bot\",\"azp\":\"ci-azp\","
				     "\"jti\":\"j-42\",\"scope\":\"read write\",\"exp\":1900000000,"
				     "\"iat\":1700000000,\"nbf\":1700000000.75,"
				     "\"cnf\":{\"jkt\":\"abc\", \"x5t#S256\":\"def\"}}");
		if (!ASSERT_OK_PTR(tok, "token") ||
		    !ASSERT_OK(jwt__parse(tok, strlen(tok), &f), "parse"))
			goto cleanup;
		ASSERT_NULL(f.error, "error");
		ASSERT_TRUE(f.present && f.is_jwt, "present, is_jwt");
		ASSERT_STREQ(f.alg, "RS256", "alg");
		ASSERT_STREQ(f.kid, "k1", "kid");
		ASSERT_STREQ(f.typ, "at+jwt", "typ");
		ASSERT_STREQ(f.iss, "https://idp.example", "iss");
		ASSERT_STREQ(f.sub, "user-1", "sub");
		ASSERT_STREQ(f.aud, "tickets", "aud");
		ASSERT_STREQ(f.client_id, "ci-bot", "client_id");
		ASSERT_STREQ(f.azp, "ci-azp", "azp");
		ASSERT_STREQ(f.jti, "j-42", "jti");
		ASSERT_STREQ(f.scope, "read write", "scope");
		ASSERT_STREQ(f.cnf, "{\"jkt\":\"abc\",\"x5t#S256\":\"def\"}", "cnf compact");
		ASSERT_TRUE(f.has_exp && f.exp == 1900000000LL, "exp");
		ASSERT_TRUE(f.has_iat && f.iat == 1700000000LL, "iat");
		ASSERT_TRUE(f.has_nbf && f.nbf == 1700000000LL, "fractional nbf");
		ASSERT_EQ(f.sig, JWT_SIG_UNCHECKED, "sig not checked by parse");
		jwt_facts__release(&f);
		free(tok);
		tok = NULL;
	}
	if (test__start_subtest("aud_array")) {
		tok = unsigned_token(hdr_none, "{\"aud\":[\"tickets\",\"files\"],\"sub\":\"x\"}");
		if (!ASSERT_OK_PTR(tok, "token") ||
		    !ASSERT_OK(jwt__parse(tok, strlen(tok), &f), "parse"))
			goto cleanup;
		ASSERT_NULL(f.error, "error");
		ASSERT_STREQ(f.aud, "tickets,files", "aud joined");
		ASSERT_FALSE(f.has_exp, "no exp");
		jwt_facts__release(&f);
		free(tok);
		tok = NULL;
	}
	if (test__start_subtest("bad_base64")) {
		/* "{}" padded, standard alphabet, stray bits, junk. */
		expect_error("e30=.e30.", "bad_base64", "padding");
		expect_error("eyJhbGciOiJub25lIn0.e3+.", "bad_base64", "'+'");
		expect_error("eyJhbGciOiJub25lIn0.e31.", "bad_base64", "non-zero trailing bits");
		expect_error("eyJhbGciOiJub25lIn0.e30.a", "bad_base64", "one char signature");
		expect_error("eyJhbGciOiJub25lIn0.e3 0.", "bad_base64", "space");
	}
	if (test__start_subtest("bad_json")) {
		/* header "{" ; header {"alg":"a","alg":"b"} ; claims "[1]". */
		expect_error("ew.e30.", "bad_json", "truncated header");
		tok = unsigned_token("{\"alg\":\"none\",\"alg\":\"RS256\"}", "{}");
		if (ASSERT_OK_PTR(tok, "token"))
			expect_error(tok, "bad_json", "duplicate alg");
		free(tok);
		tok = unsigned_token(hdr_none, "{\"sub\":\"a\\u0000b\"}");
		if (ASSERT_OK_PTR(tok, "token"))
			expect_error(tok, "bad_json", "NUL in claim");
		free(tok);
		tok = unsigned_token(hdr_none, "[1]");
		if (ASSERT_OK_PTR(tok, "token"))
			expect_error(tok, "bad_claims", "claims not an object");
		free(tok);
		tok = unsigned_token("{\"typ\":\"JWT\"}", "{}");
		if (ASSERT_OK_PTR(tok, "token"))
			expect_error(tok, "bad_header", "no alg");
		free(tok);
		tok = unsigned_token(hdr_none, "{\"exp\":\"tomorrow\",\"sub\":\"kept\"}");
		if (ASSERT_OK_PTR(tok, "token") &&
		    ASSERT_OK(jwt__parse(tok, strlen(tok), &f), "parse")) {
			ASSERT_STREQ(f.error, "bad_claims", "string exp");
			ASSERT_FALSE(f.has_exp, "exp not taken");
			ASSERT_STREQ(f.sub, "kept", "well-typed claims kept as evidence");
		}
		jwt_facts__release(&f);
		free(tok);
		tok = NULL;
	}
	/* The header and claims are read with jsonlite; what counts as JSON
	 * is what jansson accepted (JSON_REJECT_DUPLICATES, no DECODE_ANY):
	 * only an object or array at the top, integers within 64 bits. A
	 * NULL error: a JWT. */
	if (test__start_subtest("json_as_jansson_read_it")) {
		static const struct {
			const char *header, *claims, *error;
		} cases[] = {
			{ NULL, "\"sub\"", "bad_json" },			/* a string at the top */
			{ NULL, "42", "bad_json" },
			{ NULL, "null", "bad_json" },
			{ "\"none\"", "{}", "bad_json" },			/* ... of the header too */
			{ NULL, "{\"sub\":\"a\",\"n\":123456789012345678901}", "bad_json" },
			{ NULL, "{\"exp\":-9223372036854775809}", "bad_json" },
			{ NULL, "{\"x\":[1,{\"y\":99999999999999999999}]}", "bad_json" },
			{ NULL, "{\"exp\":9223372036854775807}", NULL },
			{ NULL, "{\"exp\":1e400}", "bad_json" },		/* overflows a double */
			{ NULL, "{\"exp\":1e300}", "bad_claims" },		/* a number, too late */
			{ NULL, "{\"sub\":\"a\"} x", "bad_json" },
			{ NULL, " \t{\"sub\":\"a\"}\r\n", NULL },
			{ NULL, "{\"sub\":\"a\tb\"}", "bad_json" },	/* raw control byte */
			{ NULL, "{\"sub\":\"\xc3\x28\"}", "bad_json" },	/* not UTF-8 */
			{ NULL, "{\"sub\":\"\\ud800\"}", "bad_json" },	/* lone surrogate */
			{ NULL, "{\"a\":{\"b\":1,\"b\":2}}", "bad_json" },	/* nested repeat */
			{ NULL, "{\"sub\":\"\xc3\xa9\\u00e9\",\"exp\":1.5e9}", NULL },
		};
		size_t i;

		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			char what[64];

			snprintf(what, sizeof(what), "case %zu", i);
			tok = unsigned_token(cases[i].header ? cases[i].header : hdr_none,
					     cases[i].claims);
			if (ASSERT_OK_PTR(tok, what) &&
			    ASSERT_OK(jwt__parse(tok, strlen(tok), &f), what)) {
				ASSERT_STREQ(f.error, cases[i].error, what);
				ASSERT_EQ(f.is_jwt, !cases[i].error ||
					  strcmp(cases[i].error, "bad_claims") == 0, what);
			}
			jwt_facts__release(&f);
			memset(&f, 0, sizeof(f));
			free(tok);
			tok = NULL;
		}
		/* Read as written: the last case's claims. */
		tok = unsigned_token(hdr_none, "{\"sub\":\"\xc3\xa9\\u00e9\",\"exp\":1.5e9}");
		if (ASSERT_OK_PTR(tok, "token") && ASSERT_OK(jwt__parse(tok, strlen(tok), &f), "parse")) {
			ASSERT_STREQ(f.sub, "\xc3\xa9\xc3\xa9", "escaped and raw UTF-8 alike");
			ASSERT_TRUE(f.has_exp && f.exp == 1500000000LL, "exp");
		}
		jwt_facts__release(&f);
		memset(&f, 0, sizeof(f));
		free(tok);
		tok = NULL;
	}
	if (test__start_subtest("not_three_parts")) {
		expect_error("abc.def", "not_jwt", "two parts");
		expect_error("a.b.c.d", "not_jwt", "four parts");
		expect_error("a.b.c.d.e", "not_jwt", "JWE");
		expect_error(".e30.", "not_jwt", "empty header");
		expect_error("opaque", "not_jwt", "no dot");
	}
	if (test__start_subtest("huge")) {
		big = malloc(JWT_MAX_TOKEN_BYTES + 2);
		if (!ASSERT_OK_PTR(big, "malloc"))
			goto cleanup;
		memset(big, 'A', JWT_MAX_TOKEN_BYTES + 1);
		big[10] = '.';
		big[20] = '.';
		big[JWT_MAX_TOKEN_BYTES + 1] = '\0';
		expect_error(big, "too_large", "one byte over");
		big[JWT_MAX_TOKEN_BYTES] = '\0';
		/* At the limit it is decoded (and fails later, on JSON). */
		if (ASSERT_OK(jwt__parse(big, strlen(big), &f), "at limit"))
			ASSERT_STREQ(f.error, "bad_json", "at limit");
		jwt_facts__release(&f);
	}
	if (test__start_subtest("opaque_digest")) {
		static const char opaque[] = "mcpw_opaque_0123456789abcdef";

		if (!ASSERT_OK(jwt__parse(opaque, strlen(opaque), &f), "parse"))
			goto cleanup;
		ASSERT_TRUE(f.present, "present");
		ASSERT_FALSE(f.is_jwt, "is_jwt");
		ASSERT_STREQ(f.sha256,
			     "bfe01add91c7c7bdf30217c847c0874eae266d32a2283b6128d68d38595e2b45",
			     "sha256");
		jwt_facts__release(&f);
		if (ASSERT_OK(jwt__parse("abc", 3, &f), "parse abc"))
			ASSERT_STREQ(f.sha256,
				     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
				     "sha256(abc)");
		jwt_facts__release(&f);
		if (ASSERT_OK(jwt__parse(NULL, 0, &f), "no token"))
			ASSERT_FALSE(f.present, "absent");
		jwt_facts__release(&f);
	}
	if (test__start_subtest("k8s_service_account")) {
		tok = unsigned_token("{\"alg\":\"RS256\",\"kid\":\"abc\"}",
				     "{\"aud\":[\"https://kubernetes.default.svc\"],"
				     "\"exp\":1731000000,\"iat\":1730996400,"
				     "\"iss\":\"https://kubernetes.default.svc\","
				     "\"jti\":\"5c0e1d2a\","
				     "\"kubernetes.io\":{\"namespace\":\"ci\","
				     "\"node\":{\"name\":\"n1\",\"uid\":\"n-uid\"},"
				     "\"pod\":{\"name\":\"runner-7\",\"uid\":\"0d2c-pod\"},"
				     "\"serviceaccount\":{\"name\":\"runner\",\"uid\":\"sa-uid\"}},"
				     "\"nbf\":1730996400,"
				     "\"sub\":\"system:serviceaccount:ci:runner\"}");
		if (!ASSERT_OK_PTR(tok, "token") ||
		    !ASSERT_OK(jwt__parse(tok, strlen(tok), &f), "parse"))
			goto cleanup;
		ASSERT_NULL(f.error, "error");
		ASSERT_STREQ(f.k8s_namespace, "ci", "namespace");
		ASSERT_STREQ(f.k8s_pod_name, "runner-7", "pod name");
		ASSERT_STREQ(f.k8s_pod_uid, "0d2c-pod", "pod uid");
		ASSERT_STREQ(f.k8s_sa_name, "runner", "service account");
		ASSERT_STREQ(f.sub, "system:serviceaccount:ci:runner", "sub");
		jwt_facts__release(&f);
		free(tok);
		tok = unsigned_token(hdr_none, "{\"kubernetes.io\":{\"pod\":\"x\"}}");
		if (ASSERT_OK_PTR(tok, "token"))
			expect_error(tok, "bad_claims", "pod not an object");
		free(tok);
		tok = NULL;
	}
	if (test__start_subtest("token_not_stored")) {
		/* Nothing in the facts points into or copies the token. */
		tok = unsigned_token(hdr_none, "{\"sub\":\"s\"}");
		if (!ASSERT_OK_PTR(tok, "token") ||
		    !ASSERT_OK(jwt__parse(tok, strlen(tok), &f), "parse"))
			goto cleanup;
		ASSERT_FALSE(memmem(&f, sizeof(f), tok, 8), "no token bytes in the struct");
		ASSERT_FALSE(f.sub && strstr(f.sub, tok), "no token in claims");
		jwt_facts__release(&f);
	}
cleanup:
	jwt_facts__release(&f);
	free(big);
	free(tok);
}

struct keys {
	EVP_PKEY *rsa, *ec, *ed, *rsa2;
	struct jwt_keyset *ks;
};

static const char *const claims = "{\"iss\":\"https://idp.example/tenant-a\",\"sub\":\"ci\"}";
static const char *const secret = "0123456789abcdef0123456789abcdef-hmac";

static void keys_free(struct keys *k)
{
	EVP_PKEY_free(k->rsa);
	EVP_PKEY_free(k->rsa2);
	EVP_PKEY_free(k->ec);
	EVP_PKEY_free(k->ed);
	jwt_keyset__free(k->ks);
	memset(k, 0, sizeof(*k));
}

static bool keys_gen(struct keys *k)
{
	k->rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k->rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	k->ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	k->ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	return ASSERT_OK_PTR(k->rsa, "RSA keygen") && ASSERT_OK_PTR(k->rsa2, "RSA keygen") &&
	       ASSERT_OK_PTR(k->ec, "EC keygen") && ASSERT_OK_PTR(k->ed, "Ed25519 keygen");
}

/* Signs claims with alg and key, checks the verdict against ks. */
static void expect_sig(const struct jwt_keyset *ks, const char *alg, EVP_PKEY *pkey,
		       const char *kid, enum jwt_sig want, const char *what)
{
	struct jwt_facts f = {};
	char header[128], *tok;

	if (kid)
		snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg, kid);
	else
		snprintf(header, sizeof(header), "{\"alg\":\"%s\"}", alg);
	tok = sign_token(alg, pkey, secret, header, claims);
	if (!ASSERT_OK_PTR(tok, what))
		return;
	verify(ks, tok, &f);
	if (!ASSERT_EQ(f.sig, want, what))
		test__log("sig_error: %s", f.sig_error ? f.sig_error : "(none)");
	if (want != JWT_SIG_VALID)
		ASSERT_OK_PTR(f.sig_error, "sig_error");
	jwt_facts__release(&f);
	free(tok);
}

/* A valid token with one signature byte flipped. */
static void expect_tampered(const struct jwt_keyset *ks, const char *alg, EVP_PKEY *pkey,
			    const char *what)
{
	struct jwt_facts f = {};
	char header[64], *tok, *last;

	snprintf(header, sizeof(header), "{\"alg\":\"%s\"}", alg);
	tok = sign_token(alg, pkey, secret, header, claims);
	if (!ASSERT_OK_PTR(tok, what))
		return;
	last = strrchr(tok, '.') + 5;
	*last = *last == 'A' ? 'B' : 'A';
	verify(ks, tok, &f);
	ASSERT_EQ(f.sig, JWT_SIG_INVALID, what);
	jwt_facts__release(&f);
	free(tok);
}

void test_jwt_verify(void)
{
	struct keys k = {};
	struct jwt_facts f = {};
	char err[256] = "", *tok = NULL;

	test__set_timeout(120);
	if (!ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp") || !keys_gen(&k))
		goto cleanup;
	if (!ASSERT_TRUE(write_pubkey("rsa.pem", k.rsa) && write_pubkey("ec.pem", k.ec) &&
			 write_pubkey("ed.pem", k.ed), "write PEM files"))
		goto cleanup;

	if (test__start_subtest("unchecked")) {
		tok = sign_token("RS256", k.rsa, NULL, "{\"alg\":\"RS256\"}", claims);
		if (ASSERT_OK_PTR(tok, "token")) {
			verify(NULL, tok, &f);
			ASSERT_EQ(f.sig, JWT_SIG_UNCHECKED, "no keyset");
		}
		jwt_facts__release(&f);
		free(tok);
		tok = NULL;
	}
	if (test__start_subtest("rs256")) {
		k.ks = jwt_keyset__new();
		if (!ASSERT_OK_PTR(k.ks, "keyset") ||
		    !ASSERT_OK(jwt_keyset__add_file(k.ks, path_of("rsa.pem"), NULL, false,
						    err, sizeof(err)), err))
			goto cleanup;
		expect_sig(k.ks, "RS256", k.rsa, NULL, JWT_SIG_VALID, "RS256 valid");
		expect_sig(k.ks, "RS256", k.rsa, "any-kid", JWT_SIG_VALID, "PEM key for any kid");
		expect_sig(k.ks, "PS256", k.rsa, NULL, JWT_SIG_VALID, "PS256 valid");
		expect_sig(k.ks, "RS256", k.rsa2, NULL, JWT_SIG_INVALID, "RS256 other key");
		expect_tampered(k.ks, "RS256", k.rsa, "RS256 tampered");
		expect_sig(k.ks, "ES256", k.ec, NULL, JWT_SIG_NO_KEY, "ES256 with only RSA");
		/* Algorithm confusion: the RSA PEM bytes as an HMAC secret. */
		expect_sig(k.ks, "HS256", NULL, NULL, JWT_SIG_NO_KEY, "HS256 with only RSA");
		tok = unsigned_token("{\"alg\":\"none\"}", claims);
		if (ASSERT_OK_PTR(tok, "none token")) {
			verify(k.ks, tok, &f);
			ASSERT_EQ(f.sig, JWT_SIG_UNSUPPORTED, "alg none");
		}
		jwt_facts__release(&f);
		free(tok);
		tok = unsigned_token("{\"alg\":\"XS999\"}", claims);
		if (ASSERT_OK_PTR(tok, "unknown alg token")) {
			verify(k.ks, tok, &f);
			ASSERT_EQ(f.sig, JWT_SIG_UNSUPPORTED, "unknown alg");
		}
		jwt_facts__release(&f);
		free(tok);
		tok = NULL;
		verify(k.ks, "mcpw_opaque", &f);
		ASSERT_EQ(f.sig, JWT_SIG_INVALID, "opaque token");
		jwt_facts__release(&f);
		jwt_keyset__free(k.ks);
		k.ks = NULL;
	}
	if (test__start_subtest("es256")) {
		k.ks = jwt_keyset__new();
		if (!ASSERT_OK_PTR(k.ks, "keyset") ||
		    !ASSERT_OK(jwt_keyset__add_file(k.ks, path_of("ec.pem"), NULL, false,
						    err, sizeof(err)), err) ||
		    !ASSERT_OK(jwt_keyset__add_file(k.ks, path_of("ed.pem"), NULL, false,
						    err, sizeof(err)), err))
			goto cleanup;
		expect_sig(k.ks, "ES256", k.ec, NULL, JWT_SIG_VALID, "ES256 valid");
		expect_tampered(k.ks, "ES256", k.ec, "ES256 tampered");
		expect_sig(k.ks, "EdDSA", k.ed, NULL, JWT_SIG_VALID, "EdDSA valid");
		expect_tampered(k.ks, "EdDSA", k.ed, "EdDSA tampered");
		expect_sig(k.ks, "RS256", k.rsa, NULL, JWT_SIG_NO_KEY, "RS256 with no RSA key");
		jwt_keyset__free(k.ks);
		k.ks = NULL;
	}
	if (test__start_subtest("hs256")) {
		k.ks = jwt_keyset__new();
		if (!ASSERT_OK_PTR(k.ks, "keyset") ||
		    !ASSERT_TRUE(write_text("hmac.key", secret) && write_text("short.key", "short\n"),
				 "write secrets") ||
		    !ASSERT_OK(jwt_keyset__add_file(k.ks, path_of("hmac.key"), NULL, true,
						    err, sizeof(err)), err))
			goto cleanup;
		ASSERT_ERR(jwt_keyset__add_file(k.ks, path_of("short.key"), NULL, true,
						err, sizeof(err)), "short secret refused");
		ASSERT_STRSTR(err, "32 bytes", "error names the rule");
		expect_sig(k.ks, "HS256", NULL, NULL, JWT_SIG_VALID, "HS256 valid");
		expect_tampered(k.ks, "HS256", NULL, "HS256 tampered");
		expect_sig(k.ks, "RS256", k.rsa, NULL, JWT_SIG_NO_KEY, "RS256 with only HMAC");
		jwt_keyset__free(k.ks);
		k.ks = NULL;
	}
	if (test__start_subtest("jwks")) {
		char *rsa_jwk = jwk_of(k.rsa, "rsa-1"), *ec_jwk = jwk_of(k.ec, "ec-1");
		char *ed_jwk = jwk_of(k.ed, "ed-1"), *doc = NULL;
		bool ok = rsa_jwk && ec_jwk && ed_jwk &&
			  asprintf(&doc, "{\"keys\":[%s,%s,{\"kty\":\"RSA\",\"use\":\"enc\"},"
				   "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"},"
				   "{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\"},"
				   "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"},%s]}",
				   rsa_jwk, ec_jwk, ed_jwk) > 0;

		free(rsa_jwk);
		free(ec_jwk);
		free(ed_jwk);
		if (!ASSERT_TRUE(ok && write_text("jwks.json", doc), "write JWKS")) {
			free(doc);
			goto cleanup;
		}
		free(doc);
		k.ks = jwt_keyset__new();
		if (!ASSERT_OK_PTR(k.ks, "keyset") ||
		    !ASSERT_OK(jwt_keyset__add_file(k.ks, path_of("jwks.json"),
						    "https://idp.example/*", false,
						    err, sizeof(err)), err))
			goto cleanup;
		expect_sig(k.ks, "RS256", k.rsa, "rsa-1", JWT_SIG_VALID, "JWKS RS256 by kid");
		expect_sig(k.ks, "RS256", k.rsa, NULL, JWT_SIG_VALID, "JWKS RS256 no kid");
		expect_sig(k.ks, "ES256", k.ec, "ec-1", JWT_SIG_VALID, "JWKS ES256");
		expect_sig(k.ks, "EdDSA", k.ed, "ed-1", JWT_SIG_VALID, "JWKS EdDSA");
		expect_sig(k.ks, "RS256", k.rsa2, "rsa-1", JWT_SIG_INVALID, "JWKS wrong RSA key");
		expect_sig(k.ks, "RS256", k.rsa, "rsa-9", JWT_SIG_NO_KEY, "JWKS unknown kid");
		/* The JWK says alg RS256: PS256 with the same key is refused. */
		expect_sig(k.ks, "PS256", k.rsa, "rsa-1", JWT_SIG_NO_KEY, "JWK alg pins RS256");
		/* The keys only vouch for the configured issuer. */
		tok = sign_token("RS256", k.rsa, NULL, "{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}",
				 "{\"iss\":\"https://evil.example/\",\"sub\":\"ci\"}");
		if (ASSERT_OK_PTR(tok, "token")) {
			verify(k.ks, tok, &f);
			ASSERT_EQ(f.sig, JWT_SIG_NO_KEY, "issuer outside the glob");
		}
		jwt_facts__release(&f);
		free(tok);
		tok = NULL;
	}
	if (test__start_subtest("bad_key_files")) {
		struct jwt_keyset *ks = jwt_keyset__new();
		FILE *fp;

		if (!ASSERT_OK_PTR(ks, "keyset"))
			goto cleanup;
		ASSERT_ERR(jwt_keyset__add_file(ks, path_of("missing.pem"), NULL, false,
						err, sizeof(err)), "missing file");
		ASSERT_TRUE(write_text("bad.json", "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
					"\"x\":\"AAAA\",\"y\":\"AAAA\"}]}"), "write");
		ASSERT_ERR(jwt_keyset__add_file(ks, path_of("bad.json"), NULL, false,
						err, sizeof(err)), "short EC point");
		ASSERT_STRSTR(err, "key 1", "error names the key");
		fp = fopen(path_of("priv.pem"), "w");
		if (ASSERT_OK_PTR(fp, "fopen")) {
			PEM_write_PrivateKey(fp, k.ec, NULL, NULL, 0, NULL, NULL);
			fclose(fp);
		}
		ASSERT_ERR(jwt_keyset__add_file(ks, path_of("priv.pem"), NULL, false,
						err, sizeof(err)), "private key refused");
		jwt_keyset__free(ks);
	}
cleanup:
	jwt_facts__release(&f);
	free(tok);
	keys_free(&k);
	remove_dir();
}

/* Facts through jwt_cache: parsed once per distinct token bytes and keyset. */
void test_jwt_cache(void)
{
	char cdir[] = "/tmp/mcpw-test-jwtc-XXXXXX", key[64] = "", err[256] = "";
	char *a = NULL, *b = NULL, *big = NULL, *tampered = NULL;
	struct jwt_keyset *ks = NULL;
	struct jwt_cache *c = jwt_cache__new();
	unsigned long long hits, misses;
	struct jwt_facts f = {};
	bool shared = false;
	FILE *fp;

	if (!ASSERT_OK_PTR(c, "cache") || !ASSERT_OK_PTR(mkdtemp(cdir), "mkdtemp"))
		goto cleanup;
	snprintf(key, sizeof(key), "%s/hmac.key", cdir);
	fp = fopen(key, "w");
	if (!ASSERT_OK_PTR(fp, "key file"))
		goto cleanup;
	fputs(secret, fp);
	fclose(fp);
	ks = jwt_keyset__new();
	if (!ASSERT_OK_PTR(ks, "keyset") ||
	    !ASSERT_OK(jwt_keyset__add_file(ks, key, NULL, true, err, sizeof(err)), err))
		goto cleanup;
	a = sign_token("HS256", NULL, secret, "{\"alg\":\"HS256\"}",
		       "{\"iss\":\"https://idp.example/\",\"client_id\":\"ci-a\",\"jti\":\"a\"}");
	b = sign_token("HS256", NULL, secret, "{\"alg\":\"HS256\"}",
		       "{\"iss\":\"https://idp.example/\",\"client_id\":\"ci-b\",\"jti\":\"b\"}");
	if (!ASSERT_OK_PTR(a, "token a") || !ASSERT_OK_PTR(b, "token b"))
		goto cleanup;

	if (test__start_subtest("hit")) {
		ASSERT_OK(jwt_cache__get(c, ks, a, strlen(a), &f, &shared), "first");
		ASSERT_TRUE(shared, "kept by the cache");
		ASSERT_EQ(f.sig, JWT_SIG_VALID, "verified on the miss");
		ASSERT_OK(jwt_cache__get(c, ks, a, strlen(a), &f, &shared), "again");
		ASSERT_TRUE(shared, "shared");
		ASSERT_STREQ(f.client_id, "ci-a", "same facts");
		ASSERT_EQ(f.sig, JWT_SIG_VALID, "same signature verdict");
		jwt_cache__stats(c, &hits, &misses);
		ASSERT_EQ(hits, 1, "one hit");
		ASSERT_EQ(misses, 1, "one miss");
	}
	if (test__start_subtest("different_bytes_miss")) {
		ASSERT_OK(jwt_cache__get(c, ks, b, strlen(b), &f, &shared), "b");
		ASSERT_STREQ(f.client_id, "ci-b", "b's facts, not a's");
		/* Same header and claims, another signature: never a's verdict. */
		tampered = strdup(a);
		if (ASSERT_OK_PTR(tampered, "copy")) {
			char *last = strrchr(tampered, '.') + 3;

			*last = *last == 'A' ? 'B' : 'A';
			ASSERT_OK(jwt_cache__get(c, ks, tampered, strlen(tampered), &f, &shared),
				  "tampered");
			ASSERT_STREQ(f.client_id, "ci-a", "its claims");
			ASSERT_EQ(f.sig, JWT_SIG_INVALID, "its own signature verdict");
			ASSERT_OK(jwt_cache__get(c, ks, tampered, strlen(tampered), &f, &shared),
				  "tampered again");
			ASSERT_EQ(f.sig, JWT_SIG_INVALID, "still invalid from the cache");
		}
	}
	if (test__start_subtest("keys_matter")) {
		jwt_cache__stats(c, &hits, &misses);
		ASSERT_OK(jwt_cache__get(c, NULL, b, strlen(b), &f, &shared), "b, no keys");
		ASSERT_EQ(f.sig, JWT_SIG_UNCHECKED, "not the verdict made with keys");
		ASSERT_OK(jwt_cache__get(c, ks, b, strlen(b), &f, &shared), "b, keys");
		ASSERT_EQ(f.sig, JWT_SIG_VALID, "checked again with keys");
		jwt_cache__clear(c);
		ASSERT_OK(jwt_cache__get(c, ks, b, strlen(b), &f, &shared), "b after clear");
		ASSERT_EQ(f.sig, JWT_SIG_VALID, "parsed again");
		{
			unsigned long long h2, m2;

			jwt_cache__stats(c, &h2, &m2);
			ASSERT_EQ(h2 - hits, 0, "no hits across keysets or a clear");
			ASSERT_EQ(m2 - misses, 3, "three misses");
		}
	}
	if (test__start_subtest("large_not_kept")) {
		big = malloc(JWT_CACHE_MAX_TOKEN + 2);
		if (ASSERT_OK_PTR(big, "big")) {
			memset(big, 'A', JWT_CACHE_MAX_TOKEN + 1);
			big[JWT_CACHE_MAX_TOKEN + 1] = '\0';
			ASSERT_OK(jwt_cache__get(c, ks, big, strlen(big), &f, &shared), "big");
			ASSERT_FALSE(shared, "the caller's to release");
			ASSERT_STREQ(f.error, "not_jwt", "facts still read");
			jwt_facts__release(&f);
		}
	}
	if (test__start_subtest("no_cache")) {
		ASSERT_OK(jwt_cache__get(NULL, ks, a, strlen(a), &f, &shared), "uncached");
		ASSERT_FALSE(shared, "caller owns");
		ASSERT_EQ(f.sig, JWT_SIG_VALID, "verified");
		jwt_facts__release(&f);
	}
cleanup:
	jwt_cache__free(c);
	jwt_keyset__free(ks);
	free(a);
	free(b);
	free(big);
	free(tampered);
	if (key[0]) {
		unlink(key);
		rmdir(cdir);
	}
}
