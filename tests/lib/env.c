// SPDX-License-Identifier: GPL-2.0
/* End-to-end test environment (see env.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <dirent.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cgroup.h"
#include "env.h"
#include "harness.h"

static char root_dir[PATH_MAX];

static const char *top(void)
{
	/* Tests run from the repository root (scripts/test does that);
	 * MCPW_TOP overrides. */
	if (!root_dir[0]) {
		const char *t = getenv("MCPW_TOP");

		if (t)
			snprintf(root_dir, sizeof(root_dir), "%s", t);
		else if (!getcwd(root_dir, sizeof(root_dir)))
			snprintf(root_dir, sizeof(root_dir), ".");
	}
	return root_dir;
}

const char *env__top(void)
{
	return top();
}

const char *env__bin(void)
{
	static char p[PATH_MAX + 32];

	snprintf(p, sizeof(p), "%s/build/mcpwarden", top());
	return p;
}

const char *env__node_dir(void)
{
	static char p[PATH_MAX + 32];

	snprintf(p, sizeof(p), "%s/tests/e2e/node", top());
	return p;
}

const char *env__helper(const char *name)
{
	static char p[PATH_MAX + 64];

	snprintf(p, sizeof(p), "%s/build/tests/%s", top(), name);
	return p;
}

void env__sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int env__sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st < 0)
		return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void env_abort(void *e)
{
	env__cleanup(e);
}

int env__init(struct env *e)
{
	static int seq;
	char dir[768];

	memset(e, 0, sizeof(*e));
	/* Every test process would otherwise try the same "free" ports. */
	srand((unsigned int)(getpid() ^ time(NULL) ^ (seq << 16)));
	snprintf(e->name, sizeof(e->name), "mcpw-t%d-%d", getpid(), seq++);
	snprintf(e->tmp, sizeof(e->tmp), "/tmp/%s", e->name);
	if (mkdir(e->tmp, 0700) && errno != EEXIST)
		return -errno;
	if (cgroup__find_mount("/proc/self/mountinfo", e->cg_mount, sizeof(e->cg_mount)))
		return -ENOENT;
	snprintf(e->cg_root, sizeof(e->cg_root), "/%s", e->name);
	snprintf(dir, sizeof(dir), "%s%s", e->cg_mount, e->cg_root);
	if (mkdir(dir, 0755) && errno != EEXIST)
		return -errno;
	snprintf(e->cg_dirs[e->n_cg++], sizeof(e->cg_dirs[0]), "%s", dir);
	test__on_abort(env_abort, e);
	return 0;
}

int env__cgroup(struct env *e, const char *rel, char *out, size_t len)
{
	char dir[1024];
	const char *p = rel;

	if (e->n_cg >= ENV_MAX_CGROUPS)
		return -E2BIG;
	/* Create each level of a nested path. */
	while ((p = strchr(p, '/'))) {
		snprintf(dir, sizeof(dir), "%s%s/%.*s", e->cg_mount, e->cg_root, (int)(p - rel), rel);
		if (mkdir(dir, 0755) == 0 && e->n_cg < ENV_MAX_CGROUPS)
			snprintf(e->cg_dirs[e->n_cg++], sizeof(e->cg_dirs[0]), "%s", dir);
		p++;
	}
	snprintf(dir, sizeof(dir), "%s%s/%s", e->cg_mount, e->cg_root, rel);
	if (mkdir(dir, 0755) && errno != EEXIST)
		return -errno;
	snprintf(e->cg_dirs[e->n_cg++], sizeof(e->cg_dirs[0]), "%s", dir);
	if (out)
		snprintf(out, len, "%s/%s", e->cg_root, rel);
	return 0;
}

int env__netns(struct env *e, const char *suffix, char *out, size_t len)
{
	char name[64];

	if (e->n_netns >= ENV_MAX_NETNS)
		return -E2BIG;
	snprintf(name, sizeof(name), "%.40s-%s", e->name, suffix);
	if (env__sh("ip netns add %s", name))
		return -EIO;
	snprintf(e->netns[e->n_netns++], sizeof(e->netns[0]), "%s", name);
	env__sh("ip -n %s link set lo up", name);
	if (out)
		snprintf(out, len, "%s", name);
	return 0;
}

int env__veth(struct env *e, const char *ns_a, const char *ip_a, const char *ns_b,
	      const char *ip_b)
{
	static int seq;
	char va[16], vb[16];

	/* Interface names are at most 15 bytes. */
	snprintf(va, sizeof(va), "mwa%d%d", getpid() % 10000, seq);
	snprintf(vb, sizeof(vb), "mwb%d%d", getpid() % 10000, seq++);
	if (env__sh("ip link add %s type veth peer name %s", va, vb) ||
	    env__sh("ip link set %s netns %s", va, ns_a) ||
	    env__sh("ip link set %s netns %s", vb, ns_b) ||
	    env__sh("ip -n %s addr add %s/24 dev %s", ns_a, ip_a, va) ||
	    env__sh("ip -n %s addr add %s/24 dev %s", ns_b, ip_b, vb) ||
	    env__sh("ip -n %s link set %s up", ns_a, va) ||
	    env__sh("ip -n %s link set %s up", ns_b, vb))
		return -EIO;
	return 0;
}

static void join_cgroup(const struct env *e, const char *cgroup)
{
	char path[1024];
	char pid[32];
	int fd;

	snprintf(path, sizeof(path), "%s%s/cgroup.procs", e->cg_mount, cgroup);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		_exit(120);
	snprintf(pid, sizeof(pid), "%d", getpid());
	if (write(fd, pid, strlen(pid)) < 0)
		_exit(121);
	close(fd);
}

static void join_netns(const char *name)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0 || setns(fd, CLONE_NEWNET))
		_exit(122);
	close(fd);
}

pid_t env__spawn(struct env *e, const struct spawn_opts *o, char *const argv[])
{
	pid_t pid;

	if (e->n_procs >= ENV_MAX_PROCS)
		return -E2BIG;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd;

		/* Its own process group: cleanup kills the whole tree. */
		setpgid(0, 0);
		if (o && o->cgroup)
			join_cgroup(e, o->cgroup);
		if (o && o->netns)
			join_netns(o->netns);
		fd = open(o && o->stdout_path ? o->stdout_path : "/dev/null",
			  O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			close(fd);
		}
		if (o && o->stderr_path) {
			fd = open(o->stderr_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
			if (fd >= 0) {
				dup2(fd, STDERR_FILENO);
				close(fd);
			}
		} else {
			dup2(STDOUT_FILENO, STDERR_FILENO);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			close(fd);
		}
		if (o && o->cwd && chdir(o->cwd))
			_exit(123);
		if (o && o->uid && (setgid(o->uid) || setuid(o->uid)))
			_exit(124);
		if (o && o->envp)
			execvpe(argv[0], argv, o->envp);
		else
			execvp(argv[0], argv);
		_exit(127);
	}
	setpgid(pid, pid);
	e->procs[e->n_procs++] = pid;
	return pid;
}

static void forget(struct env *e, pid_t pid)
{
	int i;

	for (i = 0; i < e->n_procs; i++) {
		if (e->procs[i] == pid) {
			e->procs[i] = e->procs[--e->n_procs];
			return;
		}
	}
}

int env__maps_has(pid_t pid, const char *needle)
{
	char path[64], line[512];
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

int env__wait(struct env *e, pid_t pid, int timeout_ms)
{
	long long deadline = mono_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid) {
			forget(e, pid);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		if (r < 0)
			return -errno;
		if (mono_ms() > deadline)
			return -ETIMEDOUT;
		env__sleep_ms(10);
	}
}

void env__kill(struct env *e, pid_t pid)
{
	if (pid <= 0)
		return;
	kill(-pid, SIGTERM);
	kill(pid, SIGTERM);
	if (env__wait(e, pid, 3000) == -ETIMEDOUT) {
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		env__wait(e, pid, 3000);
	}
	forget(e, pid);
}

/* Kills what is still in one of our cgroups (only our processes go there). */
static void evacuate(const struct env *e, const char *dir)
{
	char path[1024], line[32];
	FILE *f;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		pid_t pid = atoi(line);

		if (pid > 0)
			kill(pid, SIGKILL);
	}
	fclose(f);
}

void env__cleanup(struct env *e)
{
	int i;

	test__on_abort(NULL, e);
	if (e->agent_running)
		env__agent_stop(e);
	while (e->n_procs)
		env__kill(e, e->procs[e->n_procs - 1]);
	for (i = e->n_cg - 1; i >= 0; i--) {
		int tries;

		evacuate(e, e->cg_dirs[i]);
		for (tries = 0; tries < 50 && rmdir(e->cg_dirs[i]) && errno == EBUSY; tries++)
			env__sleep_ms(20);
	}
	e->n_cg = 0;
	for (i = 0; i < e->n_netns; i++)
		env__sh("ip netns del %s 2>/dev/null", e->netns[i]);
	e->n_netns = 0;
	if (e->tmp[0] && !getenv("MCPW_KEEP_TMP"))
		env__sh("rm -rf '%s'", e->tmp);
}

const char *env__node_script(const char *name)
{
	static char p[4][PATH_MAX];
	static int slot;
	char *s = p[slot++ % 4];

	snprintf(s, PATH_MAX, "%s/%s", env__node_dir(), name);
	return s;
}

int env__json_server(struct env *e, const char *cg, int port, char *rec, size_t reclen)
{
	struct spawn_opts so = { .cgroup = cg };
	char port_s[16], out[PATH_MAX];

	snprintf(port_s, sizeof(port_s), "%d", port);
	snprintf(rec, reclen, "%s/srv-%d.rec", e->tmp, port);
	snprintf(out, sizeof(out), "%s/srv-%d.out", e->tmp, port);
	so.stdout_path = out;
	if (env__spawn(e, &so, (char *[]){ "node", (char *)env__node_script("server.mjs"),
					   "--stateless", "--json-response", "--port", port_s,
					   "--record", rec, NULL }) <= 0 ||
	    !env__wait_file(out, "\"ready\":true", 15000))
		return -1;
	return 0;
}

const char *env__node_exe(void)
{
	static char exe[PATH_MAX];
	char cand[PATH_MAX], *path, *save = NULL, *tok;
	const char *env = getenv("PATH");

	if (exe[0])
		return exe;
	path = strdup(env ? env : "/usr/bin:/bin");
	for (tok = path ? strtok_r(path, ":", &save) : NULL; tok; tok = strtok_r(NULL, ":", &save)) {
		snprintf(cand, sizeof(cand), "%s/node", tok);
		if (access(cand, X_OK) == 0 && realpath(cand, exe))
			break;
		exe[0] = '\0';
	}
	free(path);
	if (!exe[0])
		snprintf(exe, sizeof(exe), "/usr/bin/node");
	return exe;
}

void env__sha256_hex(const char *s, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0, i;

	EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[2 * n] = '\0';
}

/* ---- files ------------------------------------------------------------- */

char *env__slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f)
		return NULL;
	do {
		if (n + 4096 + 1 > cap) {
			char *nb;

			cap = cap ? cap * 2 : 8192;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, 4096, f);
		n += r;
	} while (r > 0);
	fclose(f);
	if (!buf)
		buf = calloc(1, 1);
	else
		buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int env__write(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "w");
	int err = 0;

	if (!f)
		return -errno;
	if (fwrite(data, 1, len, f) != len)
		err = -EIO;
	if (fclose(f))
		err = -errno;
	return err;
}

bool env__wait_file(const char *path, const char *needle, int timeout_ms)
{
	long long deadline = mono_ms() + timeout_ms;

	for (;;) {
		char *s = env__slurp(path, NULL);
		bool found = s && strstr(s, needle);

		free(s);
		if (found)
			return true;
		if (mono_ms() > deadline)
			return false;
		env__sleep_ms(20);
	}
}

int env__pin(pid_t pid, int cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN), i;

	CPU_ZERO(&set);
	if (cpu >= 0)
		CPU_SET(cpu, &set);
	for (i = 0; cpu < 0 && i < n && i < CPU_SETSIZE; i++)
		CPU_SET(i, &set);
	return sched_setaffinity(pid, sizeof(set), &set) ? -errno : 0;
}

int env__free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	/* Stay below the ephemeral range so the port is not handed out to
	 * some client meanwhile, and off Node's fetch "bad ports". */
	for (int tries = 0; fd >= 0 && tries < 200; tries++) {
		a.sin_port = htons((uint16_t)(20000 + rand() % 12000));
		a.sin_addr.s_addr = htonl(INADDR_ANY);
		if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			getsockname(fd, (struct sockaddr *)&a, &len);
			port = ntohs(a.sin_port);
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	return port;
}

/* ---- agent ------------------------------------------------------------- */

int env__agent_start(struct env *e, const char *policy_json, const char *const *extra)
{
	struct agent_proc *a = &e->agent;
	char *argv[40];
	char cgdir[600];
	int n = 0, i;
	struct spawn_opts so = {};
	json_t *ready;

	memset(a, 0, sizeof(*a));
	snprintf(a->policy_path, sizeof(a->policy_path), "%s/policy.json", e->tmp);
	snprintf(a->events_path, sizeof(a->events_path), "%s/events.jsonl", e->tmp);
	snprintf(a->state_dir, sizeof(a->state_dir), "%s/state", e->tmp);
	snprintf(a->log_path, sizeof(a->log_path), "%s/agent.log", e->tmp);
	snprintf(cgdir, sizeof(cgdir), "%s%s", e->cg_mount, e->cg_root);
	unlink(a->events_path);
	if (policy_json && env__write(a->policy_path, policy_json, strlen(policy_json)))
		return -EIO;
	argv[n++] = (char *)env__bin();
	argv[n++] = "run";
	if (policy_json) {
		argv[n++] = "--policy";
		argv[n++] = a->policy_path;
	}
	argv[n++] = "--events";
	argv[n++] = a->events_path;
	argv[n++] = "--cgroup-root";
	argv[n++] = cgdir;
	argv[n++] = "--state-dir";
	argv[n++] = a->state_dir;
	argv[n++] = "--node-name";
	argv[n++] = "test-node";
	{
		bool pin = false;

		for (i = 0; extra && extra[i] && n < 37; i++) {
			pin |= strcmp(extra[i], "--pin") == 0;
			argv[n++] = (char *)extra[i];
		}
		/* Tests that do not test pinning leave nothing behind. */
		if (!pin)
			argv[n++] = "--no-pin";
	}
	argv[n] = NULL;
	so.stdout_path = a->log_path;
	a->pid = env__spawn(e, &so, argv);
	if (a->pid < 0)
		return a->pid;
	e->agent_running = true;
	/* Wait for ready, but stop waiting when the agent has died. */
	for (i = 0; i < 300; i++) {
		ready = env__find_event(e, 200, "kind=ready", NULL);
		if (ready)
			break;
		if (waitpid(a->pid, &a->exit_status, WNOHANG) == a->pid) {
			forget(e, a->pid);
			e->agent_running = false;
			fprintf(stdout, "    the agent exited before it was ready (status 0x%x)\n",
				a->exit_status);
			break;
		}
	}
	if (!ready) {
		char *log = env__slurp(a->log_path, NULL);

		fprintf(stdout, "    agent did not become ready; its log:\n%s\n", log ? log : "");
		free(log);
		return -ETIMEDOUT;
	}
	json_decref(ready);
	return 0;
}

/*
 * Everything the agent wrote is JSON Lines: each line one JSON object, no
 * NUL bytes. A last line without its newline is tolerated only from an
 * agent that did not exit cleanly (killed mid-write).
 */
static void check_events_file(struct env *e, bool clean_exit)
{
	size_t len = 0, start = 0, i, lineno = 0;
	char *buf = env__slurp(e->agent.events_path, &len);

	if (!buf)
		return;
	for (i = 0; i <= len; i++) {
		json_error_t err;
		json_t *ev;

		if (i < len && buf[i] != '\n')
			continue;
		lineno++;
		if (i == len && (start == len || !clean_exit))
			break;	/* nothing after the last newline, or cut short */
		ev = json_loadb(buf + start, i - start, 0, &err);
		if (!ASSERT_TRUE(ev && json_is_object(ev), "every event line is a JSON object")) {
			fprintf(stdout, "    %s line %zu: %s: %.200s\n", e->agent.events_path, lineno,
				err.text, buf + start);
			json_decref(ev);
			break;
		}
		json_decref(ev);
		start = i + 1;
	}
	free(buf);
}

int env__agent_stop(struct env *e)
{
	int st;

	if (!e->agent_running)
		return e->agent.exit_status;
	kill(e->agent.pid, SIGTERM);
	st = env__wait(e, e->agent.pid, 10000);
	if (st == -ETIMEDOUT) {
		kill(e->agent.pid, SIGKILL);
		st = env__wait(e, e->agent.pid, 5000);
		st = st >= 0 ? 128 + SIGKILL : st;
	}
	e->agent_running = false;
	e->agent.exit_status = st;
	check_events_file(e, st == 0);
	return st;
}

/* ---- events ------------------------------------------------------------ */

json_t *env__get(json_t *ev, const char *path)
{
	char buf[256], *save = NULL, *tok;
	json_t *cur = ev;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save)) {
		if (json_is_array(cur)) {
			char *end;
			long idx = strtol(tok, &end, 10);

			cur = *end ? NULL : json_array_get(cur, (size_t)idx);
		} else {
			cur = json_object_get(cur, tok);
		}
	}
	return cur;
}

const char *env__str(json_t *ev, const char *path)
{
	return json_string_value(env__get(ev, path));
}

long long env__int(json_t *ev, const char *path)
{
	json_t *v = env__get(ev, path);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

long long env__status_int(struct env *e, const char *dotted)
{
	char path[600];
	long long v;
	json_t *st;

	snprintf(path, sizeof(path), "%s/status.json", e->tmp);
	env__sh("%s status --state-dir %s > %s", env__bin(), e->agent.state_dir, path);
	st = json_load_file(path, 0, NULL);
	v = json_integer_value(env__get(st, dotted));
	json_decref(st);
	return v;
}

static bool value_matches(json_t *v, const char *want)
{
	char buf[64];

	if (!*want)
		return v == NULL;
	if (!v)
		return false;
	if (json_is_string(v))
		return strcmp(json_string_value(v), want) == 0;
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		return strcmp(buf, want) == 0;
	}
	if (json_is_true(v))
		return strcmp(want, "true") == 0;
	if (json_is_false(v))
		return strcmp(want, "false") == 0;
	return false;
}

static bool matches(json_t *ev, va_list ap)
{
	const char *cond;

	while ((cond = va_arg(ap, const char *))) {
		const char *eq = strchr(cond, '=');
		char path[256];

		if (!eq)
			return false;
		snprintf(path, sizeof(path), "%.*s", (int)(eq - cond), cond);
		if (!value_matches(env__get(ev, path), eq + 1))
			return false;
	}
	return true;
}

/* Scans event lines from *pos; returns the first match (new ref). */
static json_t *scan(struct env *e, size_t *pos, bool consume, va_list ap0)
{
	char *buf = env__slurp(e->agent.events_path, NULL);
	char *line, *save = NULL;
	size_t idx = 0;
	json_t *found = NULL;

	if (!buf)
		return NULL;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save), idx++) {
		json_t *ev;
		va_list ap;

		if (idx < *pos)
			continue;
		ev = json_loads(line, 0, NULL);
		if (!ev)
			continue;	/* a line being written */
		va_copy(ap, ap0);
		if (matches(ev, ap)) {
			found = ev;
			va_end(ap);
			if (consume)
				*pos = idx + 1;
			break;
		}
		va_end(ap);
		json_decref(ev);
	}
	free(buf);
	return found;
}

json_t *env__wait_event(struct env *e, int timeout_ms, ...)
{
	long long deadline = mono_ms() + timeout_ms;
	json_t *ev;
	va_list ap;

	for (;;) {
		va_start(ap, timeout_ms);
		ev = scan(e, &e->agent.events_read, true, ap);
		va_end(ap);
		if (ev || mono_ms() > deadline)
			return ev;
		env__sleep_ms(20);
	}
}

json_t *env__find_event(struct env *e, int timeout_ms, ...)
{
	long long deadline = mono_ms() + timeout_ms;
	json_t *ev;
	va_list ap;
	size_t pos;

	for (;;) {
		pos = 0;
		va_start(ap, timeout_ms);
		ev = scan(e, &pos, false, ap);
		va_end(ap);
		if (ev || mono_ms() > deadline)
			return ev;
		env__sleep_ms(20);
	}
}

int env__count_events(struct env *e, ...)
{
	char *buf = env__slurp(e->agent.events_path, NULL);
	char *line, *save = NULL;
	int n = 0;
	va_list ap;

	if (!buf)
		return 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *ev = json_loads(line, 0, NULL);

		if (!ev)
			continue;
		va_start(ap, e);
		if (matches(ev, ap))
			n++;
		va_end(ap);
		json_decref(ev);
	}
	free(buf);
	return n;
}
