// SPDX-License-Identifier: GPL-2.0
/*
 * Process table: a hash on tgid with an LRU list (exits move an entry to
 * the cold end). Seeded from /proc, then kept by kernel records:
 *   fork  -> new entry inheriting the parent's exe, cmdline and ids
 *   exec  -> exe (from /proc/PID/exe while the process lives, else the
 *            kernel's filename) and cmdline (the argv the kernel copied)
 *   exit  -> marked exited, reaped after a grace period
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/evp.h>

#include "proctab.h"

struct proctab {
	struct proc **buckets;
	size_t n_buckets;
	size_t size;
	size_t max;
	struct proc *lru_head;	/* most recently touched */
	struct proc *lru_tail;
	char *proc_root;
	uint64_t evicted_live;
	uint64_t proc_errors;
	uint64_t tick_ns;
};

static uint64_t tick_ns(void)
{
	long hz = sysconf(_SC_CLK_TCK);

	return hz > 0 ? 1000000000ull / (uint64_t)hz : 10000000ull;
}

bool proc__same_start(uint64_t a, uint64_t b)
{
	/* /proc reports start times in clock ticks: equal at that grain. */
	static uint64_t tick;

	if (!a || !b)
		return true;
	if (!tick)
		tick = tick_ns();
	return a / tick == b / tick;
}

struct proctab *proctab__new(size_t max, const char *proc_root)
{
	struct proctab *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->max = max ? max : 65536;
	t->n_buckets = 1;
	while (t->n_buckets < t->max / 2)
		t->n_buckets <<= 1;
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
	t->proc_root = strdup(proc_root ? proc_root : "/proc");
	t->tick_ns = tick_ns();
	if (!t->buckets || !t->proc_root) {
		proctab__free(t);
		return NULL;
	}
	return t;
}

static void proc_free(struct proc *p)
{
	if (!p)
		return;
	free(p->exe);
	free(p->cmdline);
	free(p);
}

void proctab__free(struct proctab *t)
{
	struct proc *p, *n;

	if (!t)
		return;
	for (p = t->lru_head; p; p = n) {
		n = p->lnext;
		proc_free(p);
	}
	free(t->buckets);
	free(t->proc_root);
	free(t);
}

static size_t bucket_of(const struct proctab *t, uint32_t tgid)
{
	return (tgid * 2654435761u) & (t->n_buckets - 1);
}

static void lru_unlink(struct proctab *t, struct proc *p)
{
	if (p->lprev)
		p->lprev->lnext = p->lnext;
	else
		t->lru_head = p->lnext;
	if (p->lnext)
		p->lnext->lprev = p->lprev;
	else
		t->lru_tail = p->lprev;
	p->lprev = p->lnext = NULL;
}

static void lru_push_head(struct proctab *t, struct proc *p)
{
	p->lnext = t->lru_head;
	p->lprev = NULL;
	if (t->lru_head)
		t->lru_head->lprev = p;
	t->lru_head = p;
	if (!t->lru_tail)
		t->lru_tail = p;
}

static void lru_push_tail(struct proctab *t, struct proc *p)
{
	p->lprev = t->lru_tail;
	p->lnext = NULL;
	if (t->lru_tail)
		t->lru_tail->lnext = p;
	t->lru_tail = p;
	if (!t->lru_head)
		t->lru_head = p;
}

static void remove_entry(struct proctab *t, struct proc *p)
{
	struct proc **pp = &t->buckets[bucket_of(t, p->tgid)];

	while (*pp && *pp != p)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = p->hnext;
	lru_unlink(t, p);
	t->size--;
	proc_free(p);
}

static struct proc *find(struct proctab *t, uint32_t tgid)
{
	struct proc *p;

	for (p = t->buckets[bucket_of(t, tgid)]; p; p = p->hnext)
		if (p->tgid == tgid)
			return p;
	return NULL;
}

/* A fresh entry for tgid, replacing any older process with that tgid. */
static struct proc *insert(struct proctab *t, uint32_t tgid)
{
	struct proc *p = find(t, tgid);
	size_t b;

	if (p)
		remove_entry(t, p);
	if (t->size >= t->max && t->lru_tail) {
		/* The tail is the least recently touched; exited ones sit
		 * there first (on_exit moves them). */
		if (!t->lru_tail->exited)
			t->evicted_live++;
		remove_entry(t, t->lru_tail);
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->tgid = tgid;
	b = bucket_of(t, tgid);
	p->hnext = t->buckets[b];
	t->buckets[b] = p;
	lru_push_head(t, p);
	t->size++;
	return p;
}

struct proc *proctab__lookup(struct proctab *t, uint32_t tgid, uint64_t start_ns)
{
	struct proc *p = find(t, tgid);

	if (!p || !proc__same_start(p->start_ns, start_ns))
		return NULL;
	return p;
}

/* ---- /proc ------------------------------------------------------------ */

static ssize_t read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;

	if (fd < 0)
		return -errno;
	while ((size_t)total < len - 1) {
		n = read(fd, buf + total, len - 1 - (size_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	close(fd);
	buf[total] = '\0';
	return total;
}

static char *join_args(const char *args, size_t len)
{
	char *s;
	size_t i;

	while (len && args[len - 1] == '\0')
		len--;
	s = malloc(len + 1);
	if (!s)
		return NULL;
	for (i = 0; i < len; i++)
		s[i] = args[i] ? args[i] : ' ';
	s[len] = '\0';
	return s;
}

static char *read_exe(const char *proc_root, uint32_t tgid)
{
	char path[64 + PATH_MAX], target[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%u/exe", proc_root, tgid);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return NULL;
	target[n] = '\0';
	/* An unlinked executable reads "/path (deleted)": keep the path. */
	if (n > 10 && strcmp(target + n - 10, " (deleted)") == 0)
		target[n - 10] = '\0';
	return strdup(target);
}

/* Fills p from /proc/TGID. 0, or -errno (-ENOENT: gone). */
static int load_from_proc(struct proctab *t, struct proc *p)
{
	char path[64 + PATH_MAX], buf[4096], *s;
	unsigned long long start_ticks = 0;
	unsigned int ppid = 0;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%u/stat", t->proc_root, p->tgid);
	n = read_file(path, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	/* comm may hold anything, spaces and ')' included: parse after the
	 * last ')'. */
	s = strrchr(buf, ')');
	if (!s)
		return -EINVAL;
	{
		char *open_paren = strchr(buf, '(');
		size_t clen;

		if (open_paren && open_paren < s) {
			clen = (size_t)(s - open_paren - 1);
			if (clen >= sizeof(p->comm))
				clen = sizeof(p->comm) - 1;
			memcpy(p->comm, open_paren + 1, clen);
			p->comm[clen] = '\0';
		}
	}
	/* fields after comm: state(3) ppid(4) ... starttime(22) */
	if (sscanf(s + 2, "%*c %u %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
		   "%*d %*d %llu", &ppid, &start_ticks) != 2)
		return -EINVAL;
	p->ppid = ppid;
	p->start_ns = start_ticks * t->tick_ns;

	snprintf(path, sizeof(path), "%s/%u/status", t->proc_root, p->tgid);
	if (read_file(path, buf, sizeof(buf)) > 0) {
		char *u = strstr(buf, "\nUid:");
		char *g = strstr(buf, "\nGid:");
		unsigned int r, e;

		/* Effective ids, as the kernel records them. */
		if (u && sscanf(u + 5, "%u %u", &r, &e) == 2)
			p->uid = e;
		if (g && sscanf(g + 5, "%u %u", &r, &e) == 2)
			p->gid = e;
	}
	free(p->exe);
	p->exe = read_exe(t->proc_root, p->tgid);
	snprintf(path, sizeof(path), "%s/%u/cmdline", t->proc_root, p->tgid);
	n = read_file(path, buf, sizeof(buf));
	free(p->cmdline);
	p->cmdline = n > 0 ? join_args(buf, (size_t)n) : strdup("");
	return 0;
}

int proctab__seed(struct proctab *t)
{
	DIR *d = opendir(t->proc_root);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		unsigned long tgid = strtoul(de->d_name, &end, 10);
		struct proc *p;

		if (*end || !tgid || tgid > UINT32_MAX)
			continue;
		p = insert(t, (uint32_t)tgid);
		if (!p)
			break;
		if (load_from_proc(t, p)) {
			remove_entry(t, p);	/* raced with its exit */
			continue;
		}
		n++;
	}
	closedir(d);
	return n;
}

struct proc *proctab__get(struct proctab *t, uint32_t tgid, uint64_t start_ns)
{
	struct proc *p = proctab__lookup(t, tgid, start_ns);

	if (p || !tgid)
		return p;
	p = insert(t, tgid);
	if (!p)
		return NULL;
	if (load_from_proc(t, p) || !proc__same_start(p->start_ns, start_ns)) {
		remove_entry(t, p);
		return NULL;
	}
	return p;
}

/* ---- kernel records ------------------------------------------------------ */

static void copy_task(struct proc *p, const struct mcpw_task *task)
{
	p->ppid = task->ppid;
	p->uid = task->uid;
	p->gid = task->gid;
	if (task->start_ns)
		p->start_ns = task->start_ns;
	p->cgroup_id = task->cgroup_id;
	memcpy(p->comm, task->comm, sizeof(p->comm));
	p->comm[sizeof(p->comm) - 1] = '\0';
}

void proctab__on_exec(struct proctab *t, const struct mcpw_exec_event *e)
{
	struct proc *p = find(t, e->task.tgid);
	size_t flen = e->filename_len < sizeof(e->filename) ? e->filename_len : 0;
	size_t alen = e->args_len <= sizeof(e->args) ? e->args_len : 0;
	char *exe;

	if (!p || !proc__same_start(p->start_ns, e->task.start_ns)) {
		p = insert(t, e->task.tgid);
		if (!p)
			return;
	}
	copy_task(p, &e->task);
	p->exited = false;
	p->sha_done = false;
	/* The real executable (an interpreter for scripts) while it lives;
	 * the name the kernel was given otherwise. */
	exe = read_exe(t->proc_root, p->tgid);
	if (!exe && flen)
		exe = strndup(e->filename, flen);
	free(p->exe);
	p->exe = exe;
	free(p->cmdline);
	p->cmdline = join_args(e->args, alen);
	lru_unlink(t, p);
	lru_push_head(t, p);
}

void proctab__on_fork(struct proctab *t, const struct mcpw_fork_event *e)
{
	struct proc *parent = find(t, e->child.ppid);
	struct proc *p;

	if (!e->child.start_ns) {
		/* Classic tracepoint: the child might be a thread. */
		char path[64];
		char buf[512];
		char *tg;

		snprintf(path, sizeof(path), "%s/%u/status", t->proc_root, e->child.tgid);
		if (read_file(path, buf, sizeof(buf)) > 0 && (tg = strstr(buf, "\nTgid:")) &&
		    (uint32_t)strtoul(tg + 6, NULL, 10) != e->child.tgid)
			return;
	}
	p = insert(t, e->child.tgid);
	if (!p)
		return;
	copy_task(p, &e->child);
	if (parent) {
		p->exe = parent->exe ? strdup(parent->exe) : NULL;
		p->cmdline = parent->cmdline ? strdup(parent->cmdline) : NULL;
		if (!p->cgroup_id)
			p->cgroup_id = parent->cgroup_id;
	}
	if (!p->start_ns || !p->exe)
		load_from_proc(t, p);
}

void proctab__on_exit(struct proctab *t, const struct mcpw_exit_event *e, uint64_t now_ns)
{
	struct proc *p = proctab__lookup(t, e->tgid, e->start_ns);

	if (!p)
		return;
	p->exited = true;
	p->exit_ns = now_ns;
	lru_unlink(t, p);
	lru_push_tail(t, p);
}

void proctab__reap(struct proctab *t, uint64_t now_ns, uint64_t grace_ns)
{
	struct proc *p = t->lru_tail, *prev;

	/* Exited entries collect at the tail in exit order. */
	while (p && p->exited) {
		prev = p->lprev;
		if (now_ns - p->exit_ns >= grace_ns)
			remove_entry(t, p);
		p = prev;
	}
}

void proctab__stats(const struct proctab *t, struct proctab_stats *out)
{
	out->size = t->size;
	out->max = t->max;
	out->evicted_live = t->evicted_live;
	out->proc_errors = t->proc_errors;
}

const char *proctab__exe_sha256(struct proctab *t, struct proc *p)
{
	unsigned char md[32], buf[65536];
	char path[64 + PATH_MAX];
	EVP_MD_CTX *ctx;
	unsigned int mdlen = 0;
	ssize_t n;
	int fd, i;

	if (p->sha_done)
		return p->exe_sha256[0] ? p->exe_sha256 : NULL;
	p->sha_done = true;
	p->exe_sha256[0] = '\0';
	/* /proc/PID/exe opens the very file that was executed, even if the
	 * path was replaced since; fall back to the path. */
	snprintf(path, sizeof(path), "%s/%u/exe", t->proc_root, p->tgid);
	fd = p->exited ? -1 : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && p->exe)
		fd = open(p->exe, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	if (n == 0 && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32) {
		for (i = 0; i < 32; i++)
			snprintf(p->exe_sha256 + 2 * i, 3, "%02x", md[i]);
	}
out:
	EVP_MD_CTX_free(ctx);
	close(fd);
	return p->exe_sha256[0] ? p->exe_sha256 : NULL;
}
