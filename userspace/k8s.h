/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Pod metadata from the Kubernetes API server: a node-scoped LIST then
 * WATCH of pods (`fieldSelector=spec.nodeName=NODE`), run by libcurl in a
 * thread of its own. The thread never touches the pod store: it queues
 * trimmed pods on a bounded queue and signals an eventfd; the daemon's
 * loop polls k8s__fd() and calls k8s__drain() to apply them to podmeta.
 * Until the first full LIST has been applied (k8s__synced()), a pod the
 * agent cannot find is merely not known yet, not absent.
 */
#ifndef MCPW_K8S_H
#define MCPW_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct k8s;
struct podmeta;

#define K8S_TOKEN_FILE	"/var/run/secrets/kubernetes.io/serviceaccount/token"
#define K8S_CA_FILE	"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

struct k8s_opts {
	/* "https://HOST:PORT[/prefix]"; NULL: from KUBERNETES_SERVICE_HOST and
	 * KUBERNETES_SERVICE_PORT. Plain http:// only to a loopback address
	 * (kubectl proxy, tests): the token is never sent in clear text over
	 * a network. */
	const char *api_server;
	const char *token_file;		/* NULL: K8S_TOKEN_FILE; "": no token */
	const char *ca_file;		/* NULL: K8S_CA_FILE; "": system CAs */
	const char *node_name;		/* required */
	/* Tunables, 0 for the default (tests make them small). */
	unsigned int backoff_min_ms;	/* 1000 */
	unsigned int backoff_max_ms;	/* 30000 */
	unsigned int queue_max;		/* 4096 queued events or LIST pages */
	size_t line_max;		/* 4 MiB: one watch event */
	size_t body_max;		/* 64 MiB: one LIST response */
	unsigned int watch_timeout_s;	/* 300: the server ends each watch */
};

struct k8s_stats {
	bool connected;			/* a watch is streaming now */
	bool synced;			/* a full LIST has been applied */
	uint64_t applied;		/* pods upserted or deleted in podmeta */
	uint64_t rejected;		/* pods podmeta refused (full, no uid) */
	uint64_t lists;			/* full LISTs applied */
	uint64_t relists;		/* LISTs forced by 410, a lost or bad event */
	uint64_t reconnects;		/* watches or LISTs retried */
	uint64_t dropped;		/* events lost to a full queue */
	char last_error[256];		/* "" until something failed */
};

/*
 * Validates the options and starts the watcher thread. 0, or -errno with
 * an operator message in err (no API server given or known, a CA or token
 * file that cannot be read, a clear-text URL to a remote host).
 */
int k8s__start(const struct k8s_opts *o, struct k8s **out, char *err, size_t errlen);
/* Stops and joins the watcher (bounded), frees everything. NULL is fine. */
void k8s__stop(struct k8s *w);

/* Readable (EPOLLIN) when k8s__drain() has work. */
int k8s__fd(const struct k8s *w);
/* Applies every queued event to pm. Returns how many pods changed. */
int k8s__drain(struct k8s *w, struct podmeta *pm);
bool k8s__synced(const struct k8s *w);
void k8s__stats(struct k8s *w, struct k8s_stats *st);

#endif
