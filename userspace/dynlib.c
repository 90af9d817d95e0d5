// SPDX-License-Identifier: GPL-2.0
/* Libraries opened when first needed (dynlib.h). */
#define CURL_DISABLE_TYPECHECK
#define MCPW_DL_CURL
#define MCPW_DL_NATS
#define MCPW_DL_NO_REDIRECT
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <curl/curl.h>
#include <nats/nats.h>

#include "dynlib.h"

#ifndef MCPW_CURL_SONAME
#define MCPW_CURL_SONAME "libcurl.so.4"
#endif
#ifndef MCPW_NATS_SONAME
#define MCPW_NATS_SONAME "libnats.so.3.4"
#endif

#define MCPW_DL_DEFINE(f) __typeof__(f) *mw_dl_##f;
MCPW_DL_CURL_FUNCS(MCPW_DL_DEFINE)
MCPW_DL_NATS_FUNCS(MCPW_DL_DEFINE)

struct dynlib {
	const char *soname, *package, *used_for;
	pthread_mutex_t lock;
	int state;		/* 0 not tried, 1 loaded, -1 failed */
	char err[256];
};

static struct dynlib curl_lib = { MCPW_CURL_SONAME, "libcurl4",
				  "pod metadata from the Kubernetes API",
				  PTHREAD_MUTEX_INITIALIZER, 0, "" };
static struct dynlib nats_lib = { MCPW_NATS_SONAME, "libnats3.4", "fleet mode (--cluster)",
				  PTHREAD_MUTEX_INITIALIZER, 0, "" };

/* Each function of the list, or the first one missing. */
#define MCPW_DL_LOAD(f)								\
	if (!missing && !(mw_dl_##f = (__typeof__(f) *)dlsym(h, #f)))		\
		missing = #f;

static int load(struct dynlib *l, void (*resolve)(void *h, const char **missing),
		char *err, size_t len)
{
	const char *missing = NULL;
	void *h;

	pthread_mutex_lock(&l->lock);
	if (!l->state) {
		/* RTLD_NODELETE: its threads may outlive any close. */
		h = dlopen(l->soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
		if (!h) {
			snprintf(l->err, sizeof(l->err), "%s (needed for %s) cannot be loaded: %s; "
				 "install package %s", l->soname, l->used_for, dlerror(),
				 l->package);
			l->state = -1;
		} else {
			resolve(h, &missing);
			if (missing) {
				snprintf(l->err, sizeof(l->err), "%s (needed for %s) lacks %s: "
					 "too old a version", l->soname, l->used_for, missing);
				l->state = -1;
			} else {
				l->state = 1;
			}
		}
	}
	if (l->state < 0 && err && len)
		snprintf(err, len, "%s", l->err);
	pthread_mutex_unlock(&l->lock);
	return l->state > 0 ? 0 : -1;
}

static void resolve_curl(void *h, const char **missing_out)
{
	const char *missing = NULL;

	MCPW_DL_CURL_FUNCS(MCPW_DL_LOAD)
	*missing_out = missing;
}

static void resolve_nats(void *h, const char **missing_out)
{
	const char *missing = NULL;

	MCPW_DL_NATS_FUNCS(MCPW_DL_LOAD)
	*missing_out = missing;
}

int dynlib__curl(char *err, size_t len)
{
	return load(&curl_lib, resolve_curl, err, len);
}

int dynlib__nats(char *err, size_t len)
{
	return load(&nats_lib, resolve_nats, err, len);
}
