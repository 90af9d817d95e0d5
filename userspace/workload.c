// SPDX-License-Identifier: GPL-2.0
/*
 * Turns a kernel task record into workload evidence.
 *
 * cgroup id -> path: the kernel's id at the moment of the event is the
 * truth about *which* cgroup; its path comes from /proc/PID/cgroup while the
 * process lives (checked against the id), else from a walk of the cgroup2
 * tree under the scope root (cached, refreshed on a miss, rate-limited).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "hmap.h"
#include "intern.h"
#include "proctab.h"
#include "workload.h"
#include "podmeta.h"

#define CGCACHE_MAX		65536
#define CGWALK_MAX_DIRS		100000
#define CGWALK_MIN_INTERVAL_NS	(200ull * 1000000)

struct resolver {
	struct proctab *procs;
	char *mount;
	char *root;		/* scope root as a cgroup path */
	char *node;
	char *proc_root;
	bool want_sha;
	struct hmap *cg_paths;	/* cgroup id -> char * path */
	uint64_t last_walk_ns;
	struct podmeta *pods;
	uint64_t resolved, cgroup_failures;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct resolver *resolver__new(const struct resolver_opts *o, struct proctab *procs)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->procs = procs;
	r->mount = strdup(o->cgroup_mount);
	r->root = strdup(o->cgroup_root ? o->cgroup_root : "/");
	r->node = strdup(o->node ? o->node : "");
	r->proc_root = strdup(o->proc_root ? o->proc_root : "/proc");
	r->want_sha = o->want_exe_sha256;
	r->cg_paths = hmap__new(false);
	if (!r->mount || !r->root || !r->node || !r->proc_root || !r->cg_paths) {
		resolver__free(r);
		return NULL;
	}
	return r;
}

static void clear_cg_cache(struct resolver *r)
{
	struct hmap_iter it;
	void *val;

	hmap__iter_init(r->cg_paths, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val))
		free(val);
	hmap__free(r->cg_paths);
	r->cg_paths = hmap__new(false);
}

void resolver__free(struct resolver *r)
{
	if (!r)
		return;
	if (r->cg_paths)
		clear_cg_cache(r);
	hmap__free(r->cg_paths);
	free(r->mount);
	free(r->root);
	free(r->node);
	free(r->proc_root);
	free(r);
}

void resolver__set_want_sha256(struct resolver *r, bool want)
{
	r->want_sha = want;
}

void resolver__set_podmeta(struct resolver *r, struct podmeta *pm)
{
	r->pods = pm;
}

static void cache_path(struct resolver *r, uint64_t id, const char *path)
{
	char *old, *copy;

	if (hmap__size(r->cg_paths) >= CGCACHE_MAX)
		clear_cg_cache(r);	/* rebuilt on demand */
	copy = strdup(path);
	if (!copy)
		return;
	old = hmap__get(r->cg_paths, id);
	if (hmap__put(r->cg_paths, id, copy)) {
		free(copy);
		return;
	}
	free(old);
}

/* Depth-first walk of the scope root, caching every directory's id. */
static void walk(struct resolver *r, const char *rel, size_t *budget)
{
	char dir[PATH_MAX];
	struct dirent *de;
	uint64_t id;
	DIR *d;

	if (!*budget)
		return;
	(*budget)--;
	snprintf(dir, sizeof(dir), "%s%s", r->mount, strcmp(rel, "/") ? rel : "");
	if (cgroup__id_of_dir(dir, &id) == 0)
		cache_path(r, id, rel);
	d = opendir(dir);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char child[PATH_MAX];

		if (de->d_type != DT_DIR || de->d_name[0] == '.')
			continue;
		if (snprintf(child, sizeof(child), "%s/%s", strcmp(rel, "/") ? rel : "",
			     de->d_name) >= (int)sizeof(child))
			continue;
		walk(r, child, budget);
	}
	closedir(d);
}

const char *resolver__cgroup_path(struct resolver *r, uint64_t id, uint32_t pid)
{
	const char *path = hmap__get(r->cg_paths, id);
	char buf[PATH_MAX], dir[PATH_MAX];
	uint64_t got;
	size_t budget;

	if (path || !id)
		return path;
	if (pid && cgroup__path_of_pid(r->proc_root, (pid_t)pid, buf, sizeof(buf)) == 0) {
		snprintf(dir, sizeof(dir), "%s%s", r->mount, strcmp(buf, "/") ? buf : "");
		if (cgroup__id_of_dir(dir, &got) == 0 && got == id) {
			cache_path(r, id, buf);
			return hmap__get(r->cg_paths, id);
		}
	}
	if (now_ns() - r->last_walk_ns < CGWALK_MIN_INTERVAL_NS)
		return NULL;
	r->last_walk_ns = now_ns();
	budget = CGWALK_MAX_DIRS;
	walk(r, r->root, &budget);
	return hmap__get(r->cg_paths, id);
}

static void fill_ancestors(struct resolver *r, struct workload *w, uint32_t ppid)
{
	uint32_t pid = ppid;

	while (pid > 0 && w->n_ancestors < WORKLOAD_MAX_ANCESTORS) {
		struct proc *p = proctab__get(r->procs, pid, 0);
		struct workload_ancestor *a = &w->ancestors[w->n_ancestors];

		a->pid = pid;
		a->exe = p ? intern__get(p->exe) : NULL;
		w->n_ancestors++;
		if (!p || p->ppid == pid)
			break;
		pid = p->ppid;
	}
}

void resolver__resolve(struct resolver *r, const struct mcpw_task *task, struct workload *w)
{
	struct proc *p;
	const char *path;

	memset(w, 0, sizeof(*w));
	w->node = r->node;
	if (!task || !task->tgid) {
		w->why_unattributed = "no process was seen opening this connection";
		return;
	}
	w->pid = task->tgid;
	w->tid = task->pid;
	w->ppid = task->ppid;
	w->uid = task->uid;
	w->gid = task->gid;
	w->start_ns = task->start_ns;
	w->cgroup_id = task->cgroup_id;
	w->netns = task->netns;
	memcpy(w->comm, task->comm, sizeof(w->comm));
	w->comm[sizeof(w->comm) - 1] = '\0';

	p = proctab__get(r->procs, task->tgid, task->start_ns);
	if (p) {
		w->exe = intern__get(p->exe);
		w->cmdline = intern__get(p->cmdline);
		if (!w->ppid)
			w->ppid = p->ppid;
		if (r->want_sha) {
			const char *sha = proctab__exe_sha256(r->procs, p);

			w->exe_sha256 = intern__get(sha);
		}
	}
	if (!w->cgroup_id) {
		/* Seeded from /proc: the id from the path the process shows. */
		char buf[PATH_MAX], dir[PATH_MAX];
		uint64_t id;

		if (cgroup__path_of_pid(r->proc_root, (pid_t)task->tgid, buf, sizeof(buf)) == 0) {
			snprintf(dir, sizeof(dir), "%s%s", r->mount, strcmp(buf, "/") ? buf : "");
			if (cgroup__id_of_dir(dir, &id) == 0) {
				w->cgroup_id = id;
				cache_path(r, id, buf);
			}
		}
		if (!w->cgroup_id && p)
			w->cgroup_id = p->cgroup_id;	/* gone: as last recorded */
	}
	path = resolver__cgroup_path(r, w->cgroup_id, task->tgid);
	if (path) {
		w->cgroup = intern__get(path);
		cgroup__parse_path(path, &w->meta);
	}
	w->instance = w->cgroup_id;
	fill_ancestors(r, w, w->ppid);
	if (w->meta.pod_uid[0] && r->pods)
		w->pod = podmeta__lookup(r->pods, w->meta.pod_uid);

	r->resolved++;
	if (!w->cgroup) {
		r->cgroup_failures++;
		w->why_unattributed = "the sender's cgroup is not known";
		return;
	}
	if (!cgroup__path_within(w->cgroup, r->root)) {
		w->why_unattributed = "the sender is outside the agent's --cgroup-root";
		return;
	}
	w->attributed = true;
}

static int sock_owner_in(struct resolver *r, const char *pid_name, const char *want)
{
	char dir[PATH_MAX], link[PATH_MAX], target[64];
	struct dirent *de;
	DIR *d;
	int found = 0;

	snprintf(dir, sizeof(dir), "%s/%s/fd", r->proc_root, pid_name);
	d = opendir(dir);
	if (!d)
		return 0;
	while (!found && (de = readdir(d))) {
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		found = strcmp(target, want) == 0;
	}
	closedir(d);
	return found;
}

int resolver__find_socket_owner(struct resolver *r, uint64_t ino, struct mcpw_task *task)
{
	char want[64];
	struct dirent *de;
	DIR *d;

	snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)ino);
	d = opendir(r->proc_root);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		unsigned long pid = strtoul(de->d_name, &end, 10);
		struct proc *p;

		if (*end || !pid)
			continue;
		if (!sock_owner_in(r, de->d_name, want))
			continue;
		p = proctab__get(r->procs, (uint32_t)pid, 0);
		memset(task, 0, sizeof(*task));
		task->tgid = task->pid = (uint32_t)pid;
		if (p) {
			char buf[PATH_MAX], dir[PATH_MAX];
			uint64_t id;

			task->ppid = p->ppid;
			task->uid = p->uid;
			task->gid = p->gid;
			task->start_ns = p->start_ns;
			memcpy(task->comm, p->comm, sizeof(task->comm));
			if (cgroup__path_of_pid(r->proc_root, (pid_t)pid, buf, sizeof(buf)) == 0) {
				snprintf(dir, sizeof(dir), "%s%s", r->mount, strcmp(buf, "/") ? buf : "");
				if (cgroup__id_of_dir(dir, &id) == 0)
					task->cgroup_id = id;
			}
		}
		closedir(d);
		return 0;
	}
	closedir(d);
	return -ENOENT;
}

void resolver__stats(const struct resolver *r, uint64_t *resolved, uint64_t *cgroup_failures)
{
	*resolved = r->resolved;
	*cgroup_failures = r->cgroup_failures;
}

void workload__release(struct workload *w)
{
	size_t i;

	if (!w)
		return;
	intern__put(w->exe);
	intern__put(w->exe_sha256);
	intern__put(w->cmdline);
	intern__put(w->cgroup);
	for (i = 0; i < w->n_ancestors; i++)
		intern__put(w->ancestors[i].exe);
	podmeta__put(w->pod);
	intern__put(w->node_buf);
	memset(w, 0, sizeof(*w));
}

int workload__copy(struct workload *dst, const struct workload *src)
{
	size_t i;

	*dst = *src;
	dst->exe = intern__ref(src->exe);
	dst->exe_sha256 = intern__ref(src->exe_sha256);
	dst->cmdline = intern__ref(src->cmdline);
	dst->cgroup = intern__ref(src->cgroup);
	for (i = 0; i < src->n_ancestors; i++)
		dst->ancestors[i].exe = intern__ref(src->ancestors[i].exe);
	dst->pod = podmeta__get(src->pod);
	if (src->node_buf) {
		dst->node_buf = intern__ref(src->node_buf);
		dst->node = dst->node_buf;
	}
	return 0;
}

/* ---- shared workloads ------------------------------------------------- */

struct shared_wl {
	unsigned int refs;
	uint64_t id;		/* never reused (workload__id) */
	struct workload w;	/* also its key in sw_map */
};

const struct workload workload__none;
static struct hmap *sw_map;
static uint64_t sw_last_id = 1;	/* 1: workload__none */

static struct shared_wl *sw_of(const struct workload *w)
{
	return (struct shared_wl *)((char *)w - offsetof(struct shared_wl, w));
}

const struct workload *workload__share(struct workload *w)
{
	struct shared_wl *e;

	if (!sw_map)
		sw_map = hmap__new_fixed(sizeof(*w));
	if (!sw_map) {
		workload__release(w);
		return NULL;
	}
	e = hmap__bget(sw_map, w);
	if (e) {
		workload__release(w);
		e->refs++;
		return &e->w;
	}
	e = malloc(sizeof(*e));
	if (!e) {
		workload__release(w);
		return NULL;
	}
	e->refs = 1;
	e->id = ++sw_last_id;
	e->w = *w;	/* its references move with it */
	memset(w, 0, sizeof(*w));
	if (hmap__bput(sw_map, &e->w, e)) {
		workload__release(&e->w);
		free(e);
		return NULL;
	}
	return &e->w;
}

uint64_t workload__id(const struct workload *shared)
{
	if (!shared)
		return 0;
	return shared == &workload__none ? 1 : sw_of(shared)->id;
}

void workload__unshare(const struct workload *shared)
{
	struct shared_wl *e;

	if (!shared || shared == &workload__none)
		return;
	e = sw_of(shared);
	if (--e->refs)
		return;
	hmap__bdel(sw_map, &e->w);
	workload__release(&e->w);
	free(e);
}

size_t workload__shared_count(void)
{
	return sw_map ? hmap__size(sw_map) : 0;
}

static const char *jdup(json_t *o, const char *key)
{
	return intern__get(json_string_value(json_object_get(o, key)));
}

int workload__from_json(json_t *o, struct workload *w)
{
	const char *node = json_string_value(json_object_get(o, "node"));
	json_t *anc, *a;
	uint64_t h = 1469598103934665603ull;
	const char *p;
	size_t i;

	memset(w, 0, sizeof(*w));
	if (!json_is_object(o) || !node || !json_is_true(json_object_get(o, "attributed")))
		return -EINVAL;
	w->attributed = true;
	w->remote = true;
	w->node_buf = intern__get(node);
	w->node = w->node_buf;
	w->pid = (uint32_t)json_integer_value(json_object_get(o, "pid"));
	w->tid = (uint32_t)json_integer_value(json_object_get(o, "tid"));
	w->ppid = (uint32_t)json_integer_value(json_object_get(o, "ppid"));
	w->uid = (uint32_t)json_integer_value(json_object_get(o, "uid"));
	w->gid = (uint32_t)json_integer_value(json_object_get(o, "gid"));
	w->start_ns = (uint64_t)json_integer_value(json_object_get(o, "start_time_ns"));
	w->cgroup_id = (uint64_t)json_integer_value(json_object_get(o, "cgroup_id"));
	w->netns = (uint32_t)json_integer_value(json_object_get(o, "netns"));
	snprintf(w->comm, sizeof(w->comm), "%s", json_string_value(json_object_get(o, "comm")) ?: "");
	w->exe = jdup(o, "exe");
	w->exe_sha256 = jdup(o, "exe_sha256");
	/* Already redacted by the agent that attested it. */
	w->cmdline = jdup(o, "cmdline");
	w->cgroup = jdup(o, "cgroup");
	snprintf(w->meta.container_id, sizeof(w->meta.container_id), "%s",
		 json_string_value(json_object_get(o, "container_id")) ?: "");
	snprintf(w->meta.pod_uid, sizeof(w->meta.pod_uid), "%s",
		 json_string_value(json_object_get(json_object_get(o, "pod"), "uid")) ?: "");
	anc = json_object_get(o, "ancestors");
	json_array_foreach(anc, i, a) {
		if (w->n_ancestors == WORKLOAD_MAX_ANCESTORS)
			break;
		w->ancestors[w->n_ancestors].pid = (uint32_t)json_integer_value(json_object_get(a, "pid"));
		w->ancestors[w->n_ancestors].exe = jdup(a, "exe");
		w->n_ancestors++;
	}
	/* Instances are cgroups; another node's ids are its own. */
	for (p = node; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ull;
	}
	w->instance = (h ^ w->cgroup_id) | (1ull << 63);
	return 0;
}

void workload__view(const struct workload *w, struct workload_view *v, struct pod_view *pv,
		    const char **anc_exes)
{
	size_t i;

	memset(v, 0, sizeof(*v));
	v->cgroup = w->cgroup;
	v->exe = w->exe;
	v->exe_sha256 = w->exe_sha256;
	v->container_id = w->meta.container_id[0] ? w->meta.container_id : NULL;
	v->node = w->node;
	v->uid = w->uid;
	v->gid = w->gid;
	for (i = 0; i < w->n_ancestors; i++)
		anc_exes[i] = w->ancestors[i].exe;
	v->ancestor_exes = anc_exes;
	v->n_ancestors = w->n_ancestors;
	if (w->pod && !w->pod->pending) {
		memset(pv, 0, sizeof(*pv));
		pv->namespace_ = w->pod->namespace_;
		pv->name = w->pod->name;
		pv->uid = w->pod->uid;
		pv->service_account = w->pod->service_account;
		pv->labels = w->pod->labels;
		pv->n_labels = w->pod->n_labels;
		v->pod = pv;
	}
}

static void set_str(json_t *o, const char *key, const char *val)
{
	if (val)
		json_object_set_new(o, key, json_string(val));
}

static bool secret_flag(const char *w, size_t n)
{
	static const char *const flags[] = {
		"--token", "--password", "--passwd", "--secret", "--api-key", "--apikey",
		"--access-token", "--bearer", "--auth", "--client-secret", "Bearer",
	};
	size_t i;

	for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (strlen(flags[i]) == n && strncasecmp(w, flags[i], n) == 0)
			return true;
	return false;
}

/* A JWT anywhere in a word: eyJ... . ... . ... */
static bool looks_like_jwt(const char *w, size_t n)
{
	const char *p = memmem(w, n, "eyJ", 3);
	size_t dots = 0;

	for (; p && p < w + n; p++)
		dots += *p == '.';
	return p && dots >= 2;
}

/*
 * Command lines are evidence, but tokens and passwords in them are not for
 * the event stream: the value after a secret-looking flag (or inside
 * --flag=value), and anything shaped like a JWT, become "[redacted]".
 */
char *workload__redact_cmdline(const char *in)
{
	size_t len = strlen(in), o = 0;
	char *out = malloc(len * 2 + 16);
	const char *p = in;
	bool next_secret = false;

	if (!out)
		return NULL;
	while (*p) {
		const char *w = p, *eq;
		size_t n;

		while (*p && *p != ' ')
			p++;
		n = (size_t)(p - w);
		eq = memchr(w, '=', n);
		if (next_secret || looks_like_jwt(w, n)) {
			o += (size_t)sprintf(out + o, "[redacted]");
			next_secret = false;
		} else if (eq && secret_flag(w, (size_t)(eq - w))) {
			memcpy(out + o, w, (size_t)(eq - w) + 1);
			o += (size_t)(eq - w) + 1;
			o += (size_t)sprintf(out + o, "[redacted]");
		} else {
			memcpy(out + o, w, n);
			o += n;
			next_secret = secret_flag(w, n);
		}
		while (*p == ' ')
			out[o++] = *p++;
	}
	out[o] = '\0';
	return out;
}

json_t *workload__json(const struct workload *w)
{
	json_t *o = json_object(), *anc;
	size_t i;

	if (!o)
		return NULL;
	json_object_set_new(o, "attributed", json_boolean(w->attributed));
	if (!w->attributed && w->why_unattributed)
		set_str(o, "unattributed_reason", w->why_unattributed);
	json_object_set_new(o, "pid", json_integer(w->pid));
	if (w->pid) {
		json_object_set_new(o, "tid", json_integer(w->tid));
		json_object_set_new(o, "ppid", json_integer(w->ppid));
		json_object_set_new(o, "start_time_ns", json_integer((json_int_t)w->start_ns));
		set_str(o, "comm", w->comm);
		set_str(o, "exe", w->exe);
		set_str(o, "exe_sha256", w->exe_sha256);
		if (w->cmdline) {
			char *red = workload__redact_cmdline(w->cmdline);

			set_str(o, "cmdline", red ? red : "[redacted]");
			free(red);
		}
		json_object_set_new(o, "uid", json_integer(w->uid));
		json_object_set_new(o, "gid", json_integer(w->gid));
		set_str(o, "cgroup", w->cgroup);
		json_object_set_new(o, "cgroup_id", json_integer((json_int_t)w->cgroup_id));
		json_object_set_new(o, "netns", json_integer(w->netns));
	}
	if (w->meta.container_id[0])
		set_str(o, "container_id", w->meta.container_id);
	if (w->meta.runtime[0])
		set_str(o, "container_runtime", w->meta.runtime);
	if (w->meta.pod_uid[0]) {
		json_t *pod = json_object();

		set_str(pod, "uid", w->meta.pod_uid);
		if (w->pod) {
			set_str(pod, "namespace", w->pod->namespace_);
			set_str(pod, "name", w->pod->name);
			set_str(pod, "service_account", w->pod->service_account);
			set_str(pod, "image", w->pod->image);
			if (w->pod->pending)
				json_object_set_new(pod, "pending", json_true());
			if (w->pod->n_labels) {
				json_t *labels = json_object();

				for (i = 0; i < w->pod->n_labels; i++)
					set_str(labels, w->pod->labels[i].key, w->pod->labels[i].value);
				json_object_set_new(pod, "labels", labels);
			}
		}
		json_object_set_new(o, "pod", pod);
	}
	anc = json_array();
	for (i = 0; i < w->n_ancestors; i++) {
		json_t *a = json_object();

		json_object_set_new(a, "pid", json_integer(w->ancestors[i].pid));
		set_str(a, "exe", w->ancestors[i].exe);
		json_array_append_new(anc, a);
	}
	json_object_set_new(o, "ancestors", anc);
	set_str(o, "node", w->node);
	return o;
}
