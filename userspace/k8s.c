// SPDX-License-Identifier: GPL-2.0
/*
 * Pod metadata from the Kubernetes API server, as client-go's reflector
 * keeps a cache: LIST the pods bound to this node, then WATCH from the
 * list's resourceVersion; resume a dropped watch from the last version
 * seen (events and bookmarks move it); LIST again when the server says the
 * version is gone (410) or when this side lost an event (a full queue, a
 * line over the limit, a line that is not JSON).
 *
 * Data flow: the watcher thread (libcurl multi, one easy handle) parses
 * each LIST page and each watch event, trims the pod to what podmeta reads
 * and pushes it on a bounded queue, then bumps an eventfd. The daemon's
 * loop calls k8s__drain(), which alone touches podmeta and the sets of
 * uids this source put there, so a LIST can remove the pods it no longer
 * names. Nothing is shared but the queue, the stop flag and the stats,
 * all under one mutex.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define CURL_DISABLE_TYPECHECK	/* calls go through dynlib.h's pointers */
#include <curl/curl.h>
#include <jansson.h>

#define MCPW_DL_CURL
#include "dynlib.h"
#include "hmap.h"
#include "k8s.h"
#include "podmeta.h"

#ifndef MCPWARDEN_VERSION
#define MCPWARDEN_VERSION "0"
#endif

#define K8S_BACKOFF_MIN_MS	1000
#define K8S_BACKOFF_MAX_MS	30000
#define K8S_QUEUE_MAX		4096
#define K8S_LINE_MAX		(4u << 20)
#define K8S_BODY_MAX		(64u << 20)
#define K8S_WATCH_TIMEOUT_S	300
#define K8S_CONNECT_TIMEOUT_S	10
#define K8S_LIST_TIMEOUT_S	60
#define K8S_PAGE_LIMIT		500
/* podmeta holds at most 65536 pods: more pages than that needs is a loop. */
#define K8S_PAGES_MAX		(65536 / K8S_PAGE_LIMIT + 8)
#define K8S_TOKEN_MAX		16384
#define K8S_ERROR_BODY_MAX	65536
#define K8S_RV_MAX		128
/* How long a watch event waits for queue space before it is dropped (and
 * the cache relisted): long enough for a busy loop, short enough that a
 * stuck one does not stall the API server's stream for minutes. */
#define K8S_QUEUE_WAIT_MS	1000
#define K8S_JOIN_WAIT_S		10

enum item_kind {
	ITEM_UPSERT,		/* doc: a trimmed Pod */
	ITEM_DELETE,		/* doc: a trimmed Pod */
	ITEM_PAGE,		/* doc: an array of trimmed Pods */
};

struct item {
	struct item *next;
	enum item_kind kind;
	bool list_first;	/* ITEM_PAGE: a new LIST starts here */
	bool list_last;		/* ITEM_PAGE: the LIST is complete */
	json_t *doc;
};

struct k8s {
	/* Fixed at start. */
	char *base;		/* API server URL, no trailing '/' */
	char *token_file;	/* "" = none */
	char *ca_file;		/* "" = system CAs */
	char *selector;		/* URL-escaped spec.nodeName=NODE */
	bool https;
	bool loopback;		/* never through a proxy */
	unsigned int backoff_min_ms, backoff_max_ms, queue_max, watch_timeout_s;
	size_t line_max, body_max;
	int efd;
	pthread_t thread;
	bool thread_started;
	CURLM *multi;		/* curl_multi_wakeup() from k8s__stop() */

	/* Shared, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* queue space, stop */
	struct item *head, **tailp;
	unsigned int n_queued;
	bool stop;
	bool connected;
	uint64_t relists, reconnects, dropped;
	char last_error[256];

	/* The watcher thread's own. */
	CURL *easy;
	char curl_err[CURL_ERROR_SIZE];
	char rv[K8S_RV_MAX];	/* resume point; "" before the first LIST */
	bool listed_once;
	unsigned int seed;

	/* The draining thread's own. */
	struct hmap *known;	/* uid -> (void *)1: pods this source put in podmeta */
	struct hmap *seen;	/* uids of the LIST being applied */
	bool list_partial;	/* seen lacks some (out of memory) */
	bool synced;
	uint64_t applied, rejected, lists;
};

/* One HTTP exchange: a LIST page (whole body) or a watch (line by line). */
struct xfer {
	struct k8s *w;
	const char *what;	/* "list pods", "watch pods": for messages */
	bool watch;
	long status;
	char *buf;
	size_t len, cap, max;
	int why;		/* set when the body callback ended the transfer */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void watcher__error(struct k8s *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void watcher__error(struct k8s *w, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&w->lock);
	va_start(ap, fmt);
	vsnprintf(w->last_error, sizeof(w->last_error), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&w->lock);
}

static bool watcher__stopping(struct k8s *w)
{
	bool stop;

	pthread_mutex_lock(&w->lock);
	stop = w->stop;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

static void watcher__set_connected(struct k8s *w, bool connected)
{
	pthread_mutex_lock(&w->lock);
	w->connected = connected;
	pthread_mutex_unlock(&w->lock);
}

static void deadline_after(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Sleeps up to ms; true when told to stop meanwhile. */
static bool watcher__sleep(struct k8s *w, long ms)
{
	struct timespec deadline;
	bool stop;

	deadline_after(&deadline, ms);
	pthread_mutex_lock(&w->lock);
	while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &deadline) != ETIMEDOUT)
		;
	stop = w->stop;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

static void item_free(struct item *it)
{
	if (!it)
		return;
	json_decref(it->doc);
	free(it);
}

/*
 * Queues it (taking it on success). wait_ms < 0 waits for room until
 * stopped: a LIST page is worth waiting for. -ENOBUFS when still full,
 * -ECANCELED when stopping.
 */
static int queue__push(struct k8s *w, struct item *it, long wait_ms)
{
	struct timespec deadline;
	uint64_t one = 1;
	int err = 0;

	deadline_after(&deadline, wait_ms < 0 ? 0 : wait_ms);
	pthread_mutex_lock(&w->lock);
	while (!w->stop && w->n_queued >= w->queue_max) {
		if (wait_ms < 0)
			pthread_cond_wait(&w->cond, &w->lock);
		else if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) == ETIMEDOUT)
			break;
	}
	if (w->stop) {
		err = -ECANCELED;
	} else if (w->n_queued >= w->queue_max) {
		w->dropped++;
		err = -ENOBUFS;
	} else {
		*w->tailp = it;
		w->tailp = &it->next;
		w->n_queued++;
	}
	pthread_mutex_unlock(&w->lock);
	if (!err && write(w->efd, &one, sizeof(one)) < 0) {
		/* Cannot saturate (one per queued item): the fd is readable. */
	}
	return err;
}

static void copy_string(json_t *dst, json_t *src, const char *key)
{
	json_t *v = json_object_get(src, key);

	if (json_is_string(v))
		json_object_set_new(dst, key, json_string(json_string_value(v)));
}

/*
 * Keeps what podmeta reads (extend both together): metadata uid, name,
 * namespace, labels; spec serviceAccountName and the first container's
 * image. A full Pod is kilobytes of status and spec nobody here reads.
 * Everything is copied so the draining thread shares no jansson value
 * with this one. NULL when the pod has no uid or memory ran out.
 */
static json_t *pod_trim(json_t *pod)
{
	json_t *meta = json_object_get(pod, "metadata");
	json_t *spec = json_object_get(pod, "spec");
	json_t *labels = json_object_get(meta, "labels");
	json_t *image = json_object_get(json_array_get(json_object_get(spec, "containers"), 0),
					"image");
	json_t *out, *m, *s;

	if (!json_is_string(json_object_get(meta, "uid")))
		return NULL;
	out = json_object();
	m = json_object();
	s = json_object();
	if (!out || !m || !s || json_object_set_new(out, "metadata", m) ||
	    json_object_set_new(out, "spec", s)) {
		json_decref(out);
		return NULL;
	}
	copy_string(m, meta, "uid");
	copy_string(m, meta, "namespace");
	copy_string(m, meta, "name");
	if (json_is_object(labels))
		json_object_set_new(m, "labels", json_deep_copy(labels));
	copy_string(s, spec, "serviceAccountName");
	if (json_is_string(image))
		json_object_set_new(s, "containers",
				    json_pack("[{s:s}]", "image", json_string_value(image)));
	return out;
}

static void watcher__set_rv(struct k8s *w, json_t *obj)
{
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
							   "resourceVersion"));

	/* Opaque to clients; one longer than any server issues is ignored
	 * rather than cut (a cut version would resume from the wrong place). */
	if (rv && rv[0] && strlen(rv) < sizeof(w->rv))
		snprintf(w->rv, sizeof(w->rv), "%s", rv);
}

/* ---- HTTP ----------------------------------------------------------- */

/*
 * Reads the token now: projected service-account tokens are rotated in
 * place (about hourly), so each connection presents the current one.
 * Fills hdr with the whole header line, or "" without a token file.
 */
static int watcher__auth_header(struct k8s *w, char *hdr, size_t hdrlen)
{
	char tok[K8S_TOKEN_MAX + 1];
	ssize_t n;
	size_t len = 0, i;
	int fd, err = 0;

	hdr[0] = '\0';
	if (!w->token_file[0])
		return 0;
	fd = open(w->token_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		watcher__error(w, "cannot read token file %s: %s", w->token_file, strerror(-err));
		return err;
	}
	while (len < sizeof(tok) && (n = read(fd, tok + len, sizeof(tok) - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	if (!err && len > K8S_TOKEN_MAX)
		err = -EFBIG;
	while (!err && len && (tok[len - 1] == '\n' || tok[len - 1] == '\r' ||
			       tok[len - 1] == ' ' || tok[len - 1] == '\t'))
		len--;
	/* Anything but visible ASCII could end the header line early and
	 * smuggle another one in. */
	for (i = 0; !err && i < len; i++)
		if (tok[i] < 0x21 || tok[i] > 0x7e)
			err = -EINVAL;
	if (!err && !len)
		err = -ENODATA;
	if (!err && (size_t)snprintf(hdr, hdrlen, "Authorization: Bearer %.*s", (int)len, tok) >= hdrlen)
		err = -EFBIG;
	explicit_bzero(tok, sizeof(tok));
	if (err) {
		explicit_bzero(hdr, hdrlen);
		watcher__error(w, "token file %s: %s", w->token_file,
			       err == -EFBIG ? "larger than a bearer token can be" :
			       err == -ENODATA ? "empty" :
			       err == -EINVAL ? "holds characters a bearer token cannot" :
			       strerror(-err));
	}
	return err;
}

static int xfer__append(struct xfer *x, const char *data, size_t n)
{
	size_t cap;
	char *p;

	if (n > x->max - x->len)
		return -E2BIG;
	if (x->len + n + 1 > x->cap) {
		cap = x->cap ? x->cap : 4096;
		while (cap < x->len + n + 1)
			cap *= 2;
		if (cap > x->max + 1)
			cap = x->max + 1;
		p = realloc(x->buf, cap);
		if (!p)
			return -ENOMEM;
		x->buf = p;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, data, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return 0;
}

static void xfer__check_status(struct xfer *x)
{
	long code = 0;

	if (x->status)
		return;
	if (curl_easy_getinfo(x->w->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code)
		x->status = code;
	if (x->watch && x->status == 200)
		watcher__set_connected(x->w, true);
}

/* One complete watch line: 0 to go on, or why the watch must end. */
static int watcher__event(struct k8s *w, const char *line, size_t len)
{
	const char *type;
	json_error_t jerr;
	struct item *it;
	json_t *ev, *obj;
	int err = 0;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return 0;
	ev = json_loadb(line, len, 0, &jerr);
	if (!ev) {
		watcher__error(w, "watch pods: event is not JSON: %s", jerr.text);
		return -ESTALE;
	}
	type = json_string_value(json_object_get(ev, "type"));
	obj = json_object_get(ev, "object");
	if (!type || !json_is_object(obj)) {
		watcher__error(w, "watch pods: event without type or object");
		err = -ESTALE;
	} else if (strcmp(type, "ERROR") == 0) {
		/* A Status: 410 Expired means our version left the server's
		 * history window; anything else, retry from where we are. */
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		const char *msg = json_string_value(json_object_get(obj, "message"));

		watcher__error(w, "watch pods: server error %lld: %s", (long long)code,
			       msg ? msg : "(no message)");
		err = code == 410 ? -ESTALE : -EPROTO;
	} else if (strcmp(type, "BOOKMARK") == 0) {
		watcher__set_rv(w, obj);
	} else if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0 ||
		   strcmp(type, "DELETED") == 0) {
		it = calloc(1, sizeof(*it));
		if (it) {
			it->kind = type[0] == 'D' ? ITEM_DELETE : ITEM_UPSERT;
			it->doc = pod_trim(obj);
		}
		if (!it || !it->doc) {
			/* No uid: nothing podmeta could key it by. */
			item_free(it);
			if (!it)
				err = -ENOMEM;
		} else {
			err = queue__push(w, it, K8S_QUEUE_WAIT_MS);
			if (err)
				item_free(it);
			if (err == -ENOBUFS) {
				watcher__error(w, "pod event queue full (%u): events lost, listing again",
					       w->queue_max);
				err = -ESTALE;
			}
		}
		if (!err)
			watcher__set_rv(w, obj);
	}
	/* Other types are from a newer server: nothing to apply. */
	json_decref(ev);
	return err;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct xfer *x = ctx;
	size_t n = size * nmemb, done = 0;
	const char *nl;
	size_t take;
	int err;

	xfer__check_status(x);
	if (x->status != 200) {
		/* A Status object: keep enough of it to explain. */
		if (x->len < K8S_ERROR_BODY_MAX)
			xfer__append(x, data, n < K8S_ERROR_BODY_MAX - x->len ?
					      n : K8S_ERROR_BODY_MAX - x->len);
		return n;
	}
	if (!x->watch) {
		err = xfer__append(x, data, n);
		if (err == -E2BIG)
			watcher__error(x->w, "%s: response larger than %zu bytes", x->what, x->max);
		x->why = err;
		return err ? 0 : n;
	}
	while (done < n) {
		nl = memchr(data + done, '\n', n - done);
		take = nl ? (size_t)(nl - (data + done)) : n - done;
		err = xfer__append(x, data + done, take);
		if (err == -E2BIG) {
			/* An event we cannot read is an event we lost. */
			watcher__error(x->w, "watch pods: event longer than %zu bytes, listing again",
				       x->max);
			err = -ESTALE;
		}
		if (!err && nl) {
			err = watcher__event(x->w, x->buf, x->len);
			x->len = 0;
		}
		if (err) {
			x->why = err;
			return 0;
		}
		done += take + (nl ? 1 : 0);
	}
	return n;
}

/* Why a non-200 response failed, from its Status body when there is one. */
static int xfer__status_error(struct xfer *x)
{
	json_t *st = x->len ? json_loadb(x->buf, x->len, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(st, "message"));
	int err;

	if (x->status == 410)
		err = -ESTALE;
	else if (x->status == 401 || x->status == 403)
		err = -EACCES;
	else
		err = -EIO;
	watcher__error(x->w, "%s: HTTP %ld: %s%s", x->what, x->status,
		       msg ? msg : "no explanation",
		       err == -EACCES ? " (check the service-account token and the "
					"ClusterRole: pods get, list, watch)" : "");
	json_decref(st);
	return err;
}

static void slist_free_secret(struct curl_slist *l)
{
	struct curl_slist *h;

	for (h = l; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(l);
}

static int watcher__transfer(struct k8s *w, const char *url, struct xfer *x)
{
	char auth[K8S_TOKEN_MAX + 64];
	struct curl_slist *hdrs = NULL, *h;
	CURLcode res = CURLE_OK;
	int running = 1, left, err;
	CURLMsg *msg;

	err = watcher__auth_header(w, auth, sizeof(auth));
	if (err)
		return err;
	h = curl_slist_append(NULL, "Accept: application/json");
	if (h && auth[0]) {
		hdrs = curl_slist_append(h, auth);
		if (!hdrs)
			slist_free_secret(h);
	} else {
		hdrs = h;
	}
	explicit_bzero(auth, sizeof(auth));
	if (!hdrs)
		return -ENOMEM;

	curl_easy_reset(w->easy);
	w->curl_err[0] = '\0';
	curl_easy_setopt(w->easy, CURLOPT_URL, url);
	curl_easy_setopt(w->easy, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(w->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(w->easy, CURLOPT_ERRORBUFFER, w->curl_err);
	curl_easy_setopt(w->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(w->easy, CURLOPT_USERAGENT, "mcpwarden/" MCPWARDEN_VERSION);
	/* The one protocol the tests speak; h2 buys nothing for one stream. */
	curl_easy_setopt(w->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(w->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	/* Never follow a redirect: it would carry the token elsewhere. */
	curl_easy_setopt(w->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(w->easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(w->easy, CURLOPT_CONNECTTIMEOUT, (long)K8S_CONNECT_TIMEOUT_S);
	curl_easy_setopt(w->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(w->easy, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(w->easy, CURLOPT_TCP_KEEPINTVL, 15L);
	/* The server ends a watch after timeoutSeconds; one that goes quiet
	 * for much longer is a dead connection. */
	curl_easy_setopt(w->easy, CURLOPT_TIMEOUT,
			 (long)(x->watch ? w->watch_timeout_s + 60 : K8S_LIST_TIMEOUT_S));
	if (w->https && w->ca_file[0])
		curl_easy_setopt(w->easy, CURLOPT_CAINFO, w->ca_file);
	/* A remote API server may sit behind the environment's proxy, as
	 * client-go allows; kubectl proxy or a test server on this host not. */
	if (w->loopback)
		curl_easy_setopt(w->easy, CURLOPT_NOPROXY, "*");

	if (curl_multi_add_handle(w->multi, w->easy) != CURLM_OK) {
		slist_free_secret(hdrs);
		watcher__error(w, "%s: cannot start a transfer", x->what);
		return -ENOMEM;
	}
	while (running && !watcher__stopping(w)) {
		if (curl_multi_perform(w->multi, &running) != CURLM_OK)
			break;
		xfer__check_status(x);
		if (running)
			curl_multi_poll(w->multi, NULL, 0, 1000, NULL);
	}
	while ((msg = curl_multi_info_read(w->multi, &left)))
		if (msg->msg == CURLMSG_DONE)
			res = msg->data.result;
	curl_multi_remove_handle(w->multi, w->easy);
	curl_easy_setopt(w->easy, CURLOPT_HTTPHEADER, NULL);
	slist_free_secret(hdrs);
	watcher__set_connected(w, false);
	xfer__check_status(x);

	if (watcher__stopping(w))
		return -ECANCELED;
	if (x->why)
		return x->why;
	if (running) {
		watcher__error(w, "%s: transfer failed", x->what);
		return -EIO;
	}
	if (res != CURLE_OK) {
		watcher__error(w, "%s: %s", x->what,
			       w->curl_err[0] ? w->curl_err : curl_easy_strerror(res));
		return res == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
	}
	if (x->status != 200)
		return xfer__status_error(x);
	return 0;
}

/* ---- LIST and WATCH ------------------------------------------------- */

/* One page's pods onto the queue; *cont is the next page's token or NULL. */
static int watcher__list_page(struct k8s *w, struct xfer *x, bool first, char **cont)
{
	json_t *doc, *items, *pod, *meta, *trimmed, *page;
	const char *next;
	struct item *it;
	json_error_t jerr;
	size_t i;
	int err;

	free(*cont);
	*cont = NULL;
	doc = json_loadb(x->buf ? x->buf : "", x->len, 0, &jerr);
	items = json_object_get(doc, "items");
	meta = json_object_get(doc, "metadata");
	if (!doc || !json_is_array(items) || !json_is_object(meta)) {
		watcher__error(w, "list pods: not a PodList%s%s", doc ? "" : ": ",
			       doc ? "" : jerr.text);
		json_decref(doc);
		return -EPROTO;
	}
	next = json_string_value(json_object_get(meta, "continue"));
	if (next && next[0]) {
		*cont = strdup(next);
		if (!*cont) {
			json_decref(doc);
			return -ENOMEM;
		}
	} else if (!json_string_value(json_object_get(meta, "resourceVersion"))) {
		watcher__error(w, "list pods: PodList without a resourceVersion");
		json_decref(doc);
		return -EPROTO;
	}
	page = json_array();
	it = calloc(1, sizeof(*it));
	if (!page || !it) {
		json_decref(page);
		free(it);
		json_decref(doc);
		return -ENOMEM;
	}
	json_array_foreach(items, i, pod) {
		trimmed = pod_trim(pod);
		if (trimmed)
			json_array_append_new(page, trimmed);
	}
	if (!*cont)
		watcher__set_rv(w, doc);
	json_decref(doc);
	it->kind = ITEM_PAGE;
	it->list_first = first;
	it->list_last = !*cont;
	it->doc = page;
	err = queue__push(w, it, -1);
	if (err)
		item_free(it);
	return err;
}

static int watcher__list(struct k8s *w)
{
	char *cont = NULL, *esc, *url;
	int err = 0, pages;

	for (pages = 0; pages < K8S_PAGES_MAX; pages++) {
		struct xfer x = { .w = w, .what = "list pods", .max = w->body_max };

		esc = cont ? curl_easy_escape(w->easy, cont, 0) : NULL;
		if (cont && !esc) {
			err = -ENOMEM;
			break;
		}
		/* The first LIST may come from the server's watch cache
		 * (resourceVersion=0): a DaemonSet rolling out on every node at
		 * once should not make each read etcd. Later ones follow an
		 * expiry, so they ask for the current state. */
		if (asprintf(&url, "%s/api/v1/pods?fieldSelector=%s&limit=%u%s%s%s", w->base,
			     w->selector, K8S_PAGE_LIMIT,
			     !cont && !w->listed_once ? "&resourceVersion=0" : "",
			     esc ? "&continue=" : "", esc ? esc : "") < 0)
			url = NULL;
		curl_free(esc);
		if (!url) {
			err = -ENOMEM;
			break;
		}
		err = watcher__transfer(w, url, &x);
		free(url);
		if (!err)
			err = watcher__list_page(w, &x, pages == 0, &cont);
		free(x.buf);
		if (err || !cont)
			break;
	}
	if (!err && cont) {
		watcher__error(w, "list pods: more than %d pages", K8S_PAGES_MAX);
		err = -EPROTO;
	}
	free(cont);
	if (!err)
		w->listed_once = true;
	return err;
}

/* One watch until the server ends it; *streamed when it was accepted. */
static int watcher__watch(struct k8s *w, bool *streamed)
{
	struct xfer x = { .w = w, .what = "watch pods", .watch = true, .max = w->line_max };
	char *esc, *url;
	int err;

	esc = curl_easy_escape(w->easy, w->rv, 0);
	if (!esc || asprintf(&url, "%s/api/v1/pods?fieldSelector=%s&watch=1&resourceVersion=%s"
			     "&allowWatchBookmarks=true&timeoutSeconds=%u", w->base, w->selector,
			     esc, w->watch_timeout_s) < 0)
		url = NULL;
	curl_free(esc);
	if (!url)
		return -ENOMEM;
	err = watcher__transfer(w, url, &x);
	free(url);
	free(x.buf);
	/* A server that accepts the watch and then reports an error in it
	 * has not made progress: keep backing off. */
	*streamed = x.status == 200 && err != -EPROTO;
	return err;
}

static void *watcher__main(void *arg)
{
	struct k8s *w = arg;
	bool need_list = true, progress, streamed;
	long delay = 0;
	int err;

	while (!watcher__stopping(w)) {
		progress = false;
		err = 0;
		if (need_list) {
			err = watcher__list(w);
			if (!err)
				need_list = false;
			progress = !err;
		}
		if (!err) {
			err = watcher__watch(w, &streamed);
			progress = progress || streamed;
			if (err == -ESTALE) {
				need_list = true;
				pthread_mutex_lock(&w->lock);
				w->relists++;
				pthread_mutex_unlock(&w->lock);
			}
		}
		if (err == -ECANCELED)
			break;
		/* Exponential backoff, reset by any answer that worked, with
		 * jitter so a restarted API server is not hit by every node
		 * in the same instant. */
		if (progress || !delay)
			delay = w->backoff_min_ms;
		else
			delay = delay * 2 > w->backoff_max_ms ? w->backoff_max_ms : delay * 2;
		if (watcher__sleep(w, delay - (long)(rand_r(&w->seed) % (unsigned long)(delay / 4 + 1))))
			break;
		pthread_mutex_lock(&w->lock);
		w->reconnects++;
		pthread_mutex_unlock(&w->lock);
	}
	watcher__set_connected(w, false);
	return NULL;
}

/* ---- start, stop ---------------------------------------------------- */

static bool host_is_loopback(const char *authority, size_t len)
{
	char host[256];
	struct in_addr a4;
	const char *end;

	if (len && authority[0] == '[') {
		end = memchr(authority, ']', len);
		return end && (size_t)(end - authority) == 4 && memcmp(authority, "[::1]", 5) == 0;
	}
	end = memchr(authority, ':', len);
	if (end)
		len = (size_t)(end - authority);
	if (len >= sizeof(host))
		return false;
	memcpy(host, authority, len);
	host[len] = '\0';
	if (strcmp(host, "localhost") == 0)
		return true;
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

static int k8s__parse_server(struct k8s *w, const char *url, char *err, size_t errlen)
{
	const char *authority;
	size_t alen, len;

	if (strncmp(url, "https://", 8) == 0) {
		w->https = true;
		authority = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		authority = url + 7;
	} else {
		snprintf(err, errlen, "API server %s: not an http:// or https:// URL", url);
		return -EINVAL;
	}
	alen = strcspn(authority, "/");
	if (!alen || memchr(authority, '@', alen) || strpbrk(authority, "?#")) {
		snprintf(err, errlen, "API server %s: want scheme://host[:port][/prefix]", url);
		return -EINVAL;
	}
	w->loopback = host_is_loopback(authority, alen);
	if (!w->https && !w->loopback) {
		snprintf(err, errlen, "API server %s: plain http only to a loopback address; "
			 "the token would cross the network in clear text", url);
		return -EINVAL;
	}
	w->base = strdup(url);
	if (!w->base)
		return -ENOMEM;
	len = strlen(w->base);
	while (len && w->base[len - 1] == '/')
		w->base[--len] = '\0';
	return 0;
}

static int k8s__init(struct k8s *w, const struct k8s_opts *o, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char url[512], sel[300], hdr[K8S_TOKEN_MAX + 64], *esc;
	int ret;

	if (!o->node_name || !o->node_name[0] || strlen(o->node_name) > 253) {
		snprintf(err, errlen, "the pod watch needs this node's name (--node-name)");
		return -EINVAL;
	}
	if (o->api_server) {
		ret = k8s__parse_server(w, o->api_server, err, errlen);
	} else if (host && host[0]) {
		snprintf(url, sizeof(url), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s",
			 host, port && port[0] ? port : "443");
		ret = k8s__parse_server(w, url, err, errlen);
	} else {
		snprintf(err, errlen, "no API server: KUBERNETES_SERVICE_HOST is not set "
			 "(not in a pod?); give the API server's URL");
		ret = -EINVAL;
	}
	if (ret)
		return ret;
	w->token_file = strdup(o->token_file ? o->token_file : K8S_TOKEN_FILE);
	w->ca_file = strdup(o->ca_file ? o->ca_file : K8S_CA_FILE);
	snprintf(sel, sizeof(sel), "spec.nodeName=%s", o->node_name);
	esc = curl_easy_escape(NULL, sel, 0);
	w->selector = esc ? strdup(esc) : NULL;
	curl_free(esc);
	if (!w->token_file || !w->ca_file || !w->selector)
		return -ENOMEM;
	if (w->https && w->ca_file[0] && access(w->ca_file, R_OK)) {
		ret = -errno;
		snprintf(err, errlen, "cannot read the API server's CA file %s: %s", w->ca_file,
			 strerror(-ret));
		return ret;
	}
	/* A missing token is an operator's mistake worth failing on now;
	 * later it is re-read per connection. */
	ret = watcher__auth_header(w, hdr, sizeof(hdr));
	explicit_bzero(hdr, sizeof(hdr));
	if (ret) {
		snprintf(err, errlen, "%s", w->last_error);
		w->last_error[0] = '\0';
		return ret;
	}
	w->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : K8S_BACKOFF_MIN_MS;
	w->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : K8S_BACKOFF_MAX_MS;
	if (w->backoff_max_ms < w->backoff_min_ms)
		w->backoff_max_ms = w->backoff_min_ms;
	w->queue_max = o->queue_max ? o->queue_max : K8S_QUEUE_MAX;
	w->line_max = o->line_max ? o->line_max : K8S_LINE_MAX;
	w->body_max = o->body_max ? o->body_max : K8S_BODY_MAX;
	w->watch_timeout_s = o->watch_timeout_s ? o->watch_timeout_s : K8S_WATCH_TIMEOUT_S;
	w->seed = (unsigned int)time(NULL) ^ (unsigned int)getpid();
	return 0;
}

static void k8s__free(struct k8s *w)
{
	struct item *it, *next;

	for (it = w->head; it; it = next) {
		next = it->next;
		item_free(it);
	}
	if (w->easy)
		curl_easy_cleanup(w->easy);
	if (w->multi)
		curl_multi_cleanup(w->multi);
	if (w->efd >= 0)
		close(w->efd);
	hmap__free(w->known);
	hmap__free(w->seen);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w->base);
	free(w->token_file);
	free(w->ca_file);
	free(w->selector);
	free(w);
}

int k8s__start(const struct k8s_opts *o, struct k8s **out, char *err, size_t errlen)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	struct k8s *w;
	int ret;

	*out = NULL;
	err[0] = '\0';
	if (dynlib__curl(err, errlen))
		return -ELIBACC;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(curl_init_rc));
		return -ENOMEM;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	w->efd = -1;
	w->tailp = &w->head;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);

	ret = k8s__init(w, o, err, errlen);
	if (ret)
		goto fail;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		ret = -errno;
		goto fail;
	}
	w->multi = curl_multi_init();
	w->easy = curl_easy_init();
	w->known = hmap__new(true);
	w->seen = hmap__new(true);
	if (!w->multi || !w->easy || !w->known || !w->seen) {
		ret = -ENOMEM;
		goto fail;
	}
	/* The daemon takes its signals through a signalfd; a thread with
	 * them unblocked would have them delivered to it instead. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&w->thread, NULL, watcher__main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		goto fail;
	w->thread_started = true;
	*out = w;
	return 0;
fail:
	if (!err[0])
		snprintf(err, errlen, "cannot start the pod watch: %s", strerror(-ret));
	k8s__free(w);
	return ret;
}

void k8s__stop(struct k8s *w)
{
	struct timespec deadline;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (w->thread_started) {
		curl_multi_wakeup(w->multi);
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += K8S_JOIN_WAIT_S;
		if (pthread_timedjoin_np(w->thread, NULL, &deadline)) {
			/* Stuck in a resolver or a TLS library: leave it its
			 * memory rather than free what it still uses. */
			pthread_detach(w->thread);
			return;
		}
	}
	k8s__free(w);
}

/* ---- the draining side ---------------------------------------------- */

int k8s__fd(const struct k8s *w)
{
	return w->efd;
}

bool k8s__synced(const struct k8s *w)
{
	return w->synced;
}

static const char *pod_uid(json_t *pod)
{
	return json_string_value(json_object_get(json_object_get(pod, "metadata"), "uid"));
}

static int drain__upsert(struct k8s *w, struct podmeta *pm, json_t *pod, bool listing)
{
	const char *uid = pod_uid(pod);

	/* Seen even when podmeta refuses it: the pod exists, and older facts
	 * about it must not be removed for that. */
	if (listing && (!w->seen || hmap__sput(w->seen, uid, (void *)1)))
		w->list_partial = true;
	if (podmeta__upsert_json(pm, pod)) {
		w->rejected++;
		return 0;
	}
	/* Out of memory here only means a LIST may later miss removing it. */
	hmap__sput(w->known, uid, (void *)1);
	w->applied++;
	return 1;
}

/* The LIST is the whole truth for this node: what it does not name is gone. */
static int drain__list_done(struct k8s *w, struct podmeta *pm)
{
	struct hmap_iter it;
	const char *uid;
	int n = 0;

	/* Without the full set of names, removing is guessing: keep all. */
	if (!w->seen)
		w->list_partial = true;
	hmap__iter_init(w->known, &it);
	while (!w->list_partial && hmap__iter_next(&it, NULL, &uid, NULL)) {
		if (hmap__sget(w->seen, uid))
			continue;
		if (podmeta__delete(pm, uid) == 0) {
			w->applied++;
			n++;
		}
		hmap__sdel(w->known, uid);
	}
	hmap__free(w->seen);
	w->seen = NULL;
	w->synced = true;
	w->lists++;
	return n;
}

static int drain__apply(struct k8s *w, struct podmeta *pm, struct item *it)
{
	const char *uid;
	json_t *pod;
	size_t i;
	int n = 0;

	switch (it->kind) {
	case ITEM_UPSERT:
		return drain__upsert(w, pm, it->doc, false);
	case ITEM_DELETE:
		uid = pod_uid(it->doc);
		hmap__sdel(w->known, uid);
		if (podmeta__delete(pm, uid))
			return 0;
		w->applied++;
		return 1;
	case ITEM_PAGE:
		if (it->list_first) {
			/* A LIST cut short leaves a half-filled set behind. */
			hmap__free(w->seen);
			w->seen = hmap__new(true);
			w->list_partial = false;
		}
		json_array_foreach(it->doc, i, pod)
			n += drain__upsert(w, pm, pod, true);
		if (it->list_last)
			n += drain__list_done(w, pm);
		return n;
	}
	return 0;
}

int k8s__drain(struct k8s *w, struct podmeta *pm)
{
	struct item *head, *next;
	uint64_t count;
	int n = 0;

	if (read(w->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return -errno;
	pthread_mutex_lock(&w->lock);
	head = w->head;
	w->head = NULL;
	w->tailp = &w->head;
	w->n_queued = 0;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (; head; head = next) {
		next = head->next;
		n += drain__apply(w, pm, head);
		item_free(head);
	}
	return n;
}

void k8s__stats(struct k8s *w, struct k8s_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&w->lock);
	st->connected = w->connected;
	st->relists = w->relists;
	st->reconnects = w->reconnects;
	st->dropped = w->dropped;
	snprintf(st->last_error, sizeof(st->last_error), "%s", w->last_error);
	pthread_mutex_unlock(&w->lock);
	st->synced = w->synced;
	st->applied = w->applied;
	st->rejected = w->rejected;
	st->lists = w->lists;
}
