// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for bearer tokens: the input is both a token for
 * jwt__parse() + jwt__verify() (against an HMAC secret and an Ed25519 key
 * made at start-up) and an Authorization header value for jwt__bearer().
 * Mutated base64url seldom decodes to JSON, so the input is also read as
 * "header JSON \n claims JSON \n signature bytes" and encoded into a
 * token, which takes the fuzzer straight to the claim readers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "jwt.h"

static struct jwt_keyset *keys;

static void add_key_file(const char *text, EVP_PKEY *pkey, const char *iss_glob, bool hmac)
{
	char path[] = "/tmp/fuzz-jwt-key-XXXXXX", err[256];
	int fd = mkstemp(path);
	FILE *fp;

	if (fd < 0)
		abort();
	fp = fdopen(fd, "w");
	if (!fp)
		abort();
	if (text)
		fputs(text, fp);
	else
		PEM_write_PUBKEY(fp, pkey);
	fclose(fp);
	if (jwt_keyset__add_file(keys, path, iss_glob, hmac, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

	keys = jwt_keyset__new();
	if (!keys || !ed)
		abort();
	add_key_file("fuzzing-secret-fuzzing-secret-0123456789", NULL, "*", true);
	add_key_file(NULL, ed, NULL, false);
	EVP_PKEY_free(ed);
	return 0;
}

static void check(const struct jwt_facts *f)
{
	/* Invariants the policy code relies on. */
	if (!f->present || strlen(f->sha256) != 64)
		__builtin_trap();
	if (f->is_jwt && f->error && strcmp(f->error, "bad_claims") &&
	    strcmp(f->error, "bad_header"))
		__builtin_trap();
	if (f->sig != JWT_SIG_VALID && !f->sig_error)
		__builtin_trap();
}

static char *b64url(char *o, const uint8_t *in, size_t len)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i;

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
	return o;
}

static void structured(const uint8_t *data, size_t size)
{
	const uint8_t *nl1, *nl2, *end = data + size;
	struct jwt_facts f;
	char *tok, *o;

	nl1 = memchr(data, '\n', size);
	if (!nl1)
		return;
	nl2 = memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1));
	if (!nl2)
		nl2 = end;
	tok = malloc(size / 3 * 4 + 16);
	if (!tok)
		return;
	o = b64url(tok, data, (size_t)(nl1 - data));
	*o++ = '.';
	o = b64url(o, nl1 + 1, (size_t)(nl2 - nl1 - 1));
	*o++ = '.';
	if (nl2 < end)
		o = b64url(o, nl2 + 1, (size_t)(end - nl2 - 1));
	if (jwt__parse(tok, (size_t)(o - tok), &f) == 0) {
		jwt__verify(keys, tok, (size_t)(o - tok), &f);
		check(&f);
		jwt_facts__release(&f);
	}
	free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jwt_facts f;
	const char *tok;
	size_t len;
	char *value;

	if (jwt__parse((const char *)data, size, &f) == 0) {
		jwt__verify(keys, (const char *)data, size, &f);
		check(&f);
		jwt_facts__release(&f);
	}

	value = malloc(size + 1);
	if (!value)
		return 0;
	memcpy(value, data, size);
	value[size] = '\0';
	if (jwt__bearer(value, &tok, &len) == 0) {
		if (len == 0 || tok < value || tok + len > value + size)
			__builtin_trap();
		if (jwt__parse(tok, len, &f) == 0) {
			jwt__verify(keys, tok, len, &f);
			jwt_facts__release(&f);
		}
	}
	free(value);
	structured(data, size);
	return 0;
}
