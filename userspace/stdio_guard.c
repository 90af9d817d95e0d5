// SPDX-License-Identifier: GPL-2.0
/*
 * stdio server launch control (see stdio.h). A stopped process is signalled
 * through a pidfd after checking its start time, so a reused pid is never
 * signalled by mistake.
 */
#include <errno.h>
#include <fnmatch.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <jansson.h>

#include "hmap.h"
#include "kernel.h"
#include "mcp.h"
#include "output.h"
#include "policy.h"
#include "proctab.h"
#include "stdio_guard.h"
#include "workload.h"

#define MAX_STDIO_FILES 1024
#define STDIN_BUDGET	(16u << 10)	/* bytes read from a server's stdin */
#define MAX_WATCHED	1024

struct stdio_watch {
	const struct policy_server *srv;	/* valid until the next sync */
	char *server_name;
	struct workload server;
	struct workload launcher;
	uint64_t start_ns;
	char line[STDIN_BUDGET + 1];
	size_t len;
};

static void watch_free(struct stdio_watch *w)
{
	if (!w)
		return;
	free(w->server_name);
	workload__release(&w->server);
	workload__release(&w->launcher);
	free(w);
}

static int add_file(struct mcpw_file_key *keys, size_t *n, const char *path)
{
	struct stat st;

	if (*n >= MAX_STDIO_FILES || stat(path, &st) || !S_ISREG(st.st_mode))
		return 0;
	/* The kernel's own dev_t encoding, as sb->s_dev holds it. */
	keys[*n].dev = ((__u64)major(st.st_dev) << 20) | minor(st.st_dev);
	keys[*n].ino = st.st_ino;
	(*n)++;
	return 1;
}

int stdio__sync(struct stdio_ctx *s)
{
	struct mcpw_file_key *keys = calloc(MAX_STDIO_FILES, sizeof(*keys));
	size_t i, n = 0;
	int err;

	if (!keys)
		return -ENOMEM;
	for (i = 0; i < s->policy->n_servers; i++) {
		const struct policy_server *srv = &s->policy->servers[i];
		glob_t g;
		size_t j;

		if (!srv->is_stdio)
			continue;
		/* The exe glob names files: expand it on this node's
		 * filesystem (re-done at every reload). */
		if (glob(srv->stdio_exe, GLOB_NOSORT, NULL, &g) == 0) {
			for (j = 0; j < g.gl_pathc; j++)
				add_file(keys, &n, g.gl_pathv[j]);
			globfree(&g);
		}
	}
	err = kernel__set_stdio_exes(s->kernel, keys, n);
	free(keys);
	if (!s->watched)
		s->watched = hmap__new(false);
	/* Read stdin only while there are stdio servers to protect. */
	s->stdin_ok = kernel__stdin_attach(s->kernel, n > 0) == 0 && n > 0;
	return err ? err : (int)n;
}

/* argv[1..] joined by spaces, from the kernel's NUL-separated argv. */
static void args_of(const struct mcpw_exec_event *e, char *buf, size_t len)
{
	size_t alen = e->args_len <= sizeof(e->args) ? e->args_len : 0, i, o = 0;
	const char *first_end = memchr(e->args, '\0', alen);

	buf[0] = '\0';
	if (!first_end)
		return;
	for (i = (size_t)(first_end - e->args) + 1; i < alen && o + 1 < len; i++)
		buf[o++] = e->args[i] ? e->args[i] : ' ';
	while (o && buf[o - 1] == ' ')
		o--;
	buf[o] = '\0';
}

static const struct policy_server *match_server(const struct policy *p, const char *exe,
						const char *args)
{
	size_t i;

	for (i = 0; i < p->n_servers; i++) {
		const struct policy_server *srv = &p->servers[i];

		if (!srv->is_stdio || !exe || fnmatch(srv->stdio_exe, exe, 0))
			continue;
		if (srv->stdio_args && fnmatch(srv->stdio_args, args, 0))
			continue;
		return srv;
	}
	return NULL;
}

static void task_of(const struct proc *p, struct mcpw_task *t)
{
	memset(t, 0, sizeof(*t));
	t->tgid = t->pid = p->tgid;
	t->ppid = p->ppid;
	t->uid = p->uid;
	t->gid = p->gid;
	t->start_ns = p->start_ns;
	/* A live process may have moved since it was recorded (a shell that
	 * joins a cgroup and then launches): 0 makes the resolver read its
	 * cgroup now, from /proc/PID/cgroup. */
	t->cgroup_id = p->exited ? p->cgroup_id : 0;
	memcpy(t->comm, p->comm, sizeof(t->comm));
}

/* The first ancestor (parent first) any launcher selector matches, into
 * launcher; false when none does. */
static bool find_launcher(struct stdio_ctx *s, const struct policy_server *srv, uint32_t ppid,
			  struct workload *launcher)
{
	uint32_t pid = ppid;
	int depth;

	for (depth = 0; pid > 1 && depth < WORKLOAD_MAX_ANCESTORS; depth++) {
		struct proc *p = proctab__get(s->procs, pid, 0);
		const char *anc[WORKLOAD_MAX_ANCESTORS];
		struct workload_view v;
		struct pod_view pv;
		struct mcpw_task t;
		struct workload w;

		if (!p)
			break;
		task_of(p, &t);
		resolver__resolve(s->resolver, &t, &w);
		workload__view(&w, &v, &pv, anc);
		if (w.attributed && policy_workloads__match(srv->launchers, srv->n_launchers, &v)) {
			*launcher = w;
			return true;
		}
		if (depth == 0)
			*launcher = w;	/* report the parent when none matches */
		else
			workload__release(&w);
		pid = p->ppid;
	}
	return false;
}

static int signal_process(uint32_t tgid, uint64_t start_ns, int sig)
{
	int fd, err = 0;

	fd = (int)syscall(SYS_pidfd_open, (pid_t)tgid, 0);
	if (fd < 0)
		return -errno;
	/* Same process as the one the kernel stopped? */
	{
		char path[64], buf[1024], *s;
		unsigned long long st = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%u/stat", tgid);
		f = fopen(path, "r");
		if (f && fgets(buf, sizeof(buf), f) && (s = strrchr(buf, ')')) &&
		    sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
			   "%*d %*d %*d %*d %llu", &st) == 1 &&
		    !proc__same_start(st * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK)), start_ns))
			err = -ESRCH;
		if (f)
			fclose(f);
	}
	if (!err && syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0))
		err = -errno;
	close(fd);
	return err;
}

static void emit(struct stdio_ctx *s, const struct policy_server *srv, struct workload *server,
		 struct workload *launcher, bool allowed, bool blocked, const char *reason)
{
	json_t *ev = json_object();

	json_object_set_new(ev, "server", json_string(srv->name));
	json_object_set_new(ev, "transport", json_string("stdio"));
	if (!allowed) {
		json_object_set_new(ev, "verdict", json_string("stdio_parent"));
		json_object_set_new(ev, "action", json_string(blocked ? "blocked" : "alerted"));
		json_object_set_new(ev, "reason", json_string(reason));
		json_object_set_new(ev, "mode", json_string(s->enforce ? "enforce" : "monitor"));
		json_object_set_new(ev, "claim", json_object());
	}
	/* The launcher is the client end; the server process is the server end. */
	json_object_set_new(ev, "workload", workload__json(launcher));
	json_object_set_new(ev, "server_workload", workload__json(server));
	json_object_set_new(ev, "request", json_pack("{s:s}", "method", "stdio launch"));
	output__emit(s->out, allowed ? "connection" : "alert", ev);
}

/* Watch what the server reads, before it may run (so nothing is missed). */
static void start_watch(struct stdio_ctx *s, const struct policy_server *srv,
			const struct mcpw_task *task, const struct workload *server,
			const struct workload *launcher)
{
	struct stdio_watch *w;

	if (!s->stdin_ok || !s->watched || hmap__size(s->watched) >= MAX_WATCHED)
		return;
	w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->srv = srv;
	w->server_name = strdup(srv->name);
	w->start_ns = task->start_ns;
	workload__copy(&w->server, server);
	workload__copy(&w->launcher, launcher);
	if (kernel__stdin_watch(s->kernel, task->tgid, STDIN_BUDGET) ||
	    hmap__put(s->watched, task->tgid, w)) {
		kernel__stdin_unwatch(s->kernel, task->tgid);
		watch_free(w);
		return;
	}
}

static void stop_watch(struct stdio_ctx *s, uint32_t tgid)
{
	kernel__stdin_unwatch(s->kernel, tgid);
	watch_free(hmap__del(s->watched, tgid));
}

/* The clientInfo a launcher sent: does it name a client whose workloads
 * include the launcher? */
static void judge_client_info(struct stdio_ctx *s, uint32_t tgid, struct stdio_watch *w,
			      const char *name, const char *version)
{
	const struct policy *p = s->policy;
	const struct policy_client *claimed = NULL, *client = NULL;
	const char *anc[WORKLOAD_MAX_ANCESTORS];
	struct claim_view cv = { .client_info_name = name };
	struct workload_view v;
	struct pod_view pv;
	enum policy_action action = POLICY_DENY;
	const char *verdict = NULL;
	char reason[512];
	json_t *ev;
	size_t i;

	workload__view(&w->launcher, &v, &pv, anc);
	for (i = 0; i < p->n_clients; i++) {
		if (!policy_claims__match(&p->clients[i].claims, &cv))
			continue;
		if (!claimed)
			claimed = &p->clients[i];
		if (policy_workloads__match(p->clients[i].workloads, p->clients[i].n_workloads, &v)) {
			client = &p->clients[i];
			break;
		}
	}
	if (!claimed) {
		action = p->unknown_client;
		if (action != POLICY_ALLOW) {
			verdict = "unknown_client";
			snprintf(reason, sizeof(reason), "The launcher of stdio server \"%s\" (pid %u, "
				 "%s) claims clientInfo \"%s\", which no policy client has.",
				 w->server_name, w->launcher.pid, w->launcher.exe ? w->launcher.exe : "?",
				 name);
		}
	} else if (!client) {
		verdict = "mismatch";
		snprintf(reason, sizeof(reason), "The launcher of stdio server \"%s\" claims to be "
			 "client \"%s\" (clientInfo \"%s\"), but it is pid %u (%s) in cgroup %s, "
			 "which none of that client's workloads allows.", w->server_name,
			 claimed->name, name, w->launcher.pid, w->launcher.exe ? w->launcher.exe : "?",
			 w->launcher.cgroup ? w->launcher.cgroup : "?");
	}
	ev = json_object();
	json_object_set_new(ev, "server", json_string(w->server_name));
	json_object_set_new(ev, "transport", json_string("stdio"));
	if (verdict) {
		bool blocked = s->enforce && action == POLICY_DENY;

		json_object_set_new(ev, "verdict", json_string(verdict));
		json_object_set_new(ev, "action", json_string(blocked ? "blocked" : "alerted"));
		json_object_set_new(ev, "reason", json_string(reason));
		if (claimed)
			json_object_set_new(ev, "client", json_string(claimed->name));
		if (blocked) {
			signal_process(tgid, w->start_ns, SIGKILL);
			s->killed++;
		}
	} else {
		json_object_set_new(ev, "verdict", json_string("allow"));
		if (client)
			json_object_set_new(ev, "client", json_string(client->name));
	}
	json_object_set_new(ev, "mode", json_string(s->enforce ? "enforce" : "monitor"));
	json_object_set_new(ev, "claim", json_pack("{s:{s:s,s:s?}}", "client_info", "name", name,
						   "version", version));
	json_object_set_new(ev, "workload", workload__json(&w->launcher));
	json_object_set_new(ev, "server_workload", workload__json(&w->server));
	json_object_set_new(ev, "request", json_pack("{s:s}", "method", "initialize"));
	output__emit(s->out, verdict ? "alert" : "request", ev);
}

void stdio__on_stdin(struct stdio_ctx *s, const struct mcpw_data_event *e)
{
	uint32_t tgid = (uint32_t)e->cookie;
	struct stdio_watch *w = s->watched ? hmap__get(s->watched, tgid) : NULL;
	char *nl;

	if (!w)
		return;
	if (w->len + e->len > STDIN_BUDGET) {
		stop_watch(s, tgid);	/* no clientInfo within the budget */
		return;
	}
	memcpy(w->line + w->len, e->data, e->len);
	w->len += e->len;
	w->line[w->len] = '\0';
	/* stdio transport: one JSON-RPC message per line. */
	while ((nl = memchr(w->line, '\n', w->len))) {
		struct mcp_body body;
		size_t i, llen = (size_t)(nl - w->line);

		if (mcp__parse(w->line, llen, NULL, &body) == 0) {
			for (i = 0; i < body.n_msgs; i++) {
				if (!body.msgs[i].client_name)
					continue;
				judge_client_info(s, tgid, w, body.msgs[i].client_name,
						  body.msgs[i].client_version);
				mcp_body__release(&body);
				stop_watch(s, tgid);
				return;
			}
			mcp_body__release(&body);
		}
		memmove(w->line, nl + 1, w->len - llen - 1);
		w->len -= llen + 1;
		w->line[w->len] = '\0';
	}
}

void stdio__free(struct stdio_ctx *s)
{
	struct hmap_iter it;
	void *val;

	if (!s->watched)
		return;
	hmap__iter_init(s->watched, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val))
		watch_free(val);
	hmap__free(s->watched);
	s->watched = NULL;
}

static void judge(struct stdio_ctx *s, const struct mcpw_task *task, const char *args)
{
	const struct policy_server *srv;
	struct workload server, launcher = {};
	char reason[512];
	bool allowed;

	resolver__resolve(s->resolver, task, &server);
	srv = match_server(s->policy, server.exe, args);
	if (!srv) {
		/* The executable is a server's, these arguments are not. */
		signal_process(task->tgid, task->start_ns, SIGCONT);
		workload__release(&server);
		return;
	}
	allowed = !srv->n_launchers || find_launcher(s, srv, server.ppid, &launcher);
	if (!launcher.pid && server.ppid) {
		struct mcpw_task pt = { .tgid = server.ppid, .pid = server.ppid };

		resolver__resolve(s->resolver, &pt, &launcher);
	}
	if (allowed || !s->enforce)
		start_watch(s, srv, task, &server, &launcher);
	if (allowed) {
		signal_process(task->tgid, task->start_ns, SIGCONT);
		s->allowed++;
		emit(s, srv, &server, &launcher, true, false, NULL);
	} else {
		snprintf(reason, sizeof(reason), "stdio server \"%s\" (%s) was started by pid %u "
			 "(%s) in cgroup %s, and no ancestor of it is one of the server's launchers.",
			 srv->name, server.exe ? server.exe : "?", launcher.pid,
			 launcher.exe ? launcher.exe : "?", launcher.cgroup ? launcher.cgroup : "?");
		if (s->enforce) {
			signal_process(task->tgid, task->start_ns, SIGKILL);
			s->killed++;
		} else {
			signal_process(task->tgid, task->start_ns, SIGCONT);
			s->alerted++;
		}
		emit(s, srv, &server, &launcher, false, s->enforce, reason);
	}
	kernel__stdio_done(s->kernel, task->tgid);
	workload__release(&server);
	workload__release(&launcher);
}

void stdio__on_exec(struct stdio_ctx *s, const struct mcpw_exec_event *e)
{
	char args[MCPW_ARGS_LEN + 1];

	if (!(e->flags & MCPW_EXEC_STOPPED))
		return;
	args_of(e, args, sizeof(args));
	judge(s, &e->task, args);
}

void stdio__sweep(struct stdio_ctx *s)
{
	uint32_t tgids[64];
	uint64_t starts[64];
	size_t n, i;

	struct timespec ts;
	uint64_t now;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (s->watched) {
		struct hmap_iter it;
		uint64_t tgid;

		hmap__iter_init(s->watched, &it);
		while (hmap__iter_next(&it, &tgid, NULL, NULL))
			if (!proctab__lookup(s->procs, (uint32_t)tgid, 0) ||
			    proctab__lookup(s->procs, (uint32_t)tgid, 0)->exited)
				stop_watch(s, (uint32_t)tgid);
	}
	n = kernel__stdio_stopped(s->kernel, tgids, starts, 64);
	for (i = 0; i < n; i++) {
		struct proc *p = proctab__get(s->procs, tgids[i], starts[i]);
		char args[MCPW_ARGS_LEN + 1] = "";
		struct mcpw_task t;
		const char *sp;

		/* Young ones are still on their way through the ring. */
		if (now - starts[i] < 1000000000ull)
			continue;
		if (!p) {
			kernel__stdio_done(s->kernel, tgids[i]);	/* gone */
			continue;
		}
		task_of(p, &t);
		sp = p->cmdline ? strchr(p->cmdline, ' ') : NULL;
		if (sp)
			snprintf(args, sizeof(args), "%s", sp + 1);
		judge(s, &t, args);
	}
}
