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

#include "kernel.h"
#include "output.h"
#include "policy.h"
#include "proctab.h"
#include "stdio_guard.h"
#include "workload.h"

#define MAX_STDIO_FILES 1024

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
