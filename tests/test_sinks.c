// SPDX-License-Identifier: GPL-2.0
/*
 * Event sink tests (userspace/sinks.c). Events built as the agent builds
 * them go through output__emit into real sinks: files read back (rotated
 * ones gunzipped with zlib), stdout redirected to a file, and syslog
 * frames read from a real TCP listener and parsed field by field. A peer
 * that never reads and one that refuses show that the caller never waits
 * and every dropped line is counted.
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>
#include <jansson.h>

#include "harness.h"
#include "metrics.h"
#include "output.h"
#include "sinks.h"

#define NODE "node-a"

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* An alert as agent.c emit_decision() builds it (before output stamps it). */
static json_t *sample_alert(const char *verdict, const char *action, int seq)
{
	return json_pack(
		"{s:s,s:s,s:s,s:s,s:s,s:s,s:i,"
		"s:{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s},s:s,s:s},"
		"s:{s:b,s:i,s:i,s:i,s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:i,s:s,s:s,"
		"s:{s:s,s:s,s:s,s:s},s:[{s:i,s:s}],s:s},"
		"s:{s:s,s:s,s:I,s:i,s:b},"
		"s:{s:s,s:s,s:s,s:s,s:i,s:s},s:i}",
		"server", "tickets", "verdict", verdict, "action", action, "client", "ci-bot",
		"reason", "identity ci-bot is live in 2 workload instances, max_instances is 1",
		"mode", "enforce", "verdict_latency_us", 180,
		"claim", "iss", "https://auth.example.com", "sub", "ci-bot", "client_id", "ci-bot",
		"jti", "j-1", "token_sha256", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"token_type", "jwt", "client_info", "name", "ci-bot", "version", "1.4.2",
		"session_id", "3f2b9c1e", "user_agent", "node",
		"workload", "attributed", 1, "pid", 4242, "tid", 4242, "ppid", 4200,
		"comm", "node", "exe", "/usr/bin/node",
		"exe_sha256", "ab12", "cmdline", "node /srv/agent.js --fast", "uid", 1000, "gid", 1000,
		"cgroup", "/kubepods.slice/pod-1/cri-containerd-abc.scope", "cgroup_id", 777,
		"container_id", "abc123def456", "container_runtime", "containerd",
		"pod", "uid", "5d1e-pod-uid", "namespace", "ci", "name", "runner-7", "service_account", "runner",
		"ancestors", "pid", 4200, "exe", "/usr/bin/bash",
		"node", NODE,
		"connection", "src", "10.0.0.5:43512", "dst", "10.0.0.9:8080", "netns", (json_int_t)4026531840LL,
		"cookie", 99, "preexisting", 0,
		"request", "http_method", "POST", "path", "/mcp", "method", "tools/call",
		"tool", "search_tickets", "id", 7, "era", "session",
		"seq", seq);
}

static json_t *sample_request(int seq)
{
	json_t *ev = sample_alert("allow", "alerted", seq);

	json_object_del(ev, "action");
	json_object_del(ev, "reason");
	return ev;
}

static char *make_dir(void)
{
	char tmpl[] = "/tmp/mcpw-sinks-XXXXXX";
	char *d = mkdtemp(tmpl);

	return d ? strdup(d) : NULL;
}

static void remove_dir(const char *dir)
{
	char path[512];
	struct dirent *de;
	DIR *d;

	if (!dir)
		return;
	d = opendir(dir);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static char *slurp(const char *path, size_t *len)
{
	char *buf = NULL;
	size_t cap = 0, n = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static char *gunzip(const char *path, size_t *len)
{
	gzFile gz = gzopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;
	int r;

	if (!gz)
		return NULL;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
		}
		r = gzread(gz, buf + n, (unsigned int)(cap - n - 1));
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	if (gzclose(gz) != Z_OK || r < 0) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* The sink's counters once the writer has caught up (or after ms). */
static struct sink_stats settle(const struct sink *list, size_t idx, uint64_t want, int ms)
{
	struct sink_stats st[8];
	uint64_t until = ms_now() + (uint64_t)ms;

	for (;;) {
		sinks__stats(list, st, 8);
		if (st[idx].written + st[idx].dropped >= want || ms_now() > until)
			return st[idx];
		usleep(2000);
	}
}

static int count_lines(const char *text)
{
	int n = 0;

	for (; text && *text; text++)
		n += *text == '\n';
	return n;
}

void test_sinks_spec(void)
{
	static const char *const bad[] = {
		"", "nope:-", "jsonl", "jsonl:", "falco:?keep=1", "jsonl:-?max_bytes=1",
		"jsonl:/tmp/x?keep=101", "jsonl:/tmp/x?bogus=1", "jsonl:/tmp/x?keep",
		"jsonl:/tmp/x?max_bytes=12q", "jsonl:/tmp/x?queue=0", "jsonl:/tmp/x?queue_bytes=10",
		"syslog:udp://127.0.0.1:514", "syslog:tcp://127.0.0.1", "syslog:tcp://127.0.0.1:0",
		"syslog:tcp://127.0.0.1:70000", "syslog:tcp://[::1:514", "syslog:tcp://::1:514",
		"syslog:tcp://:514", "syslog:tcp://h:514?format=xml", "syslog:tcp://h:514?facility=local8",
		"syslog:tcp://h:514?app=a b", "syslog:tcp://h:514?app=0123456789012345678901234567890123456789012345678",
		"falco:-?kinds=alert,bogus", "ocsf:-?format=falco", "syslog:tcp://h:514?keep=2",
	};
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st[10];
	char err[512], *dir = make_dir(), spec[600];
	size_t i;
	int ret;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ret = sinks__add(o, bad[i], &list, err, sizeof(err));
		if (!ASSERT_EQ(ret, -EINVAL, bad[i]))
			continue;
		ASSERT_STRSTR(err, "--output", "message names the flag");
		ASSERT_NULL(list, "nothing added");
	}
	ret = sinks__add(o, "jsonl:/nonexistent-mcpw-dir/events.jsonl", &list, err, sizeof(err));
	ASSERT_EQ(ret, -ENOENT, "missing directory");
	ASSERT_STRSTR(err, "cannot open /nonexistent-mcpw-dir/events.jsonl", "message");

	ASSERT_OK(sinks__add(o, "jsonl:-", &list, err, sizeof(err)), "jsonl:-");
	ASSERT_OK(sinks__add(o, "falco:-?kinds=alert,lost&queue=16&queue_bytes=64k", &list, err,
			     sizeof(err)), "falco:- with options");
	snprintf(spec, sizeof(spec), "ocsf:%s/f.ocsf?max_bytes=1m&keep=0", dir);
	ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), "ocsf file");
	ASSERT_OK(sinks__add(o, "syslog:tcp://127.0.0.1:9?format=ocsf&app=mcpw&facility=authpriv",
			     &list, err, sizeof(err)), "syslog");
	ASSERT_OK(sinks__add(o, "syslog:tcp://[::1]:6514", &list, err, sizeof(err)), "syslog v6");
	ASSERT_OK(sinks__add(o, "syslog:tcp://syslog.invalid:6514?format=falco", &list, err,
			     sizeof(err)), "syslog by name");
	ASSERT_EQ(sinks__stats(list, st, 10), 6, "six sinks");
	ASSERT_STREQ(st[0].name, "jsonl:-", "name");
	ASSERT_STREQ(st[0].target, "stdout", "target");
	ASSERT_STREQ(st[1].name, "falco:-", "name without options");
	ASSERT_STREQ(st[1].format, "falco", "format");
	ASSERT_STREQ(st[2].target, "file", "file target");
	ASSERT_STREQ(st[2].format, "ocsf", "ocsf format");
	ASSERT_STREQ(st[3].format, "ocsf", "syslog format option");
	ASSERT_STREQ(st[4].format, "native", "syslog default format");
	ASSERT_STREQ(st[5].name, "syslog:tcp://syslog.invalid:6514", "syslog name");

	/* output.c holds 8 sinks; the ninth is refused and nothing leaks. */
	ASSERT_OK(sinks__add(o, "jsonl:-", &list, err, sizeof(err)), "7th");
	ASSERT_OK(sinks__add(o, "jsonl:-", &list, err, sizeof(err)), "8th");
	ret = sinks__add(o, "jsonl:-", &list, err, sizeof(err));
	ASSERT_EQ(ret, -E2BIG, "9th sink");
	ASSERT_STRSTR(err, "too many", "message");
	ASSERT_EQ(sinks__stats(list, st, 10), 8, "eight sinks");
cleanup:
	sinks__free_all(list, 500);
	output__free(o);
	remove_dir(dir);
	free(dir);
}

/* The native sink writes exactly what output.c's own JSON Lines writer
 * writes, line for line; stdout works through the same writer. */
void test_sinks_native(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	char err[512], spec[600], a[512], b[512], c[512];
	char *dir = make_dir(), *ta = NULL, *tb = NULL, *tc = NULL;
	int saved = -1, fd;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	snprintf(a, sizeof(a), "%s/native.jsonl", dir);
	snprintf(b, sizeof(b), "%s/reference.jsonl", dir);
	snprintf(c, sizeof(c), "%s/stdout.jsonl", dir);
	snprintf(spec, sizeof(spec), "jsonl:%s", a);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	ASSERT_OK(output__add_jsonl(o, b, err, sizeof(err)), "reference writer");
	fd = open(c, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	saved = dup(STDOUT_FILENO);
	fflush(stdout);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	ASSERT_OK(sinks__add(o, "jsonl:-", &list, err, sizeof(err)), "stdout");

	output__emit(o, "alert", sample_alert("clone", "blocked", 1));
	output__emit(o, "request", sample_request(2));
	output__emit(o, "lost", json_pack("{s:s,s:i}", "source", "ring", "count", 3));
	st = settle(list, 0, 3, 3000);
	ASSERT_EQ(st.written, 3, "written");
	ASSERT_EQ(st.dropped, 0, "dropped");
	ASSERT_EQ(st.queued, 0, "queued");
	sinks__free_all(list, 2000);
	list = NULL;
	output__flush(o);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);

	ta = slurp(a, NULL);
	tb = slurp(b, NULL);
	tc = slurp(c, NULL);
	ASSERT_EQ(count_lines(ta), 3, "three lines");
	ASSERT_STREQ(ta, tb, "same bytes as output__add_jsonl");
	ASSERT_STREQ(tc, tb, "stdout: same bytes");
	ASSERT_STRSTR(ta, "{\"time\":\"", "time first");
	ASSERT_STRSTR(ta, "\"kind\":\"alert\",\"node\":\"" NODE "\"", "kind, node");
cleanup:
	if (saved >= 0)
		close(saved);
	sinks__free_all(list, 500);
	output__free(o);
	free(ta);
	free(tb);
	free(tc);
	remove_dir(dir);
	free(dir);
}

void test_sinks_falco(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	char err[512], spec[600], path[512], *dir = make_dir(), *text = NULL, *line;
	json_t *doc = NULL, *of, *tags, *req = NULL, *lost = NULL;
	const char *out;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	snprintf(path, sizeof(path), "%s/falco.jsonl", dir);
	snprintf(spec, sizeof(spec), "falco:%s", path);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	output__emit(o, "alert", sample_alert("clone", "blocked", 1));
	output__emit(o, "request", sample_request(2));
	output__emit(o, "lost", json_pack("{s:s,s:i,s:s}", "source", "ring", "count", 3,
					  "detail", "ring buffer full"));
	sinks__free_all(list, 2000);
	list = NULL;

	text = slurp(path, NULL);
	if (!ASSERT_EQ(count_lines(text), 3, "three lines"))
		goto cleanup;
	doc = json_loads(text, JSON_DISABLE_EOF_CHECK, NULL);
	line = strchr(text, '\n') + 1;
	req = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
	lost = json_loads(strchr(line, '\n') + 1, JSON_DISABLE_EOF_CHECK, NULL);
	if (!ASSERT_OK_PTR(doc, "alert parses") || !ASSERT_OK_PTR(req, "request parses") ||
	    !ASSERT_OK_PTR(lost, "lost parses"))
		goto cleanup;

	/* Falcosidekick's FalcoPayload: output, priority, rule, time,
	 * output_fields; and Falco's source, tags, hostname. */
	ASSERT_STREQ(json_string_value(json_object_get(doc, "rule")), "MCP clone", "rule");
	ASSERT_STREQ(json_string_value(json_object_get(doc, "priority")), "Critical", "priority");
	ASSERT_STREQ(json_string_value(json_object_get(doc, "source")), "mcpwarden", "source");
	ASSERT_STREQ(json_string_value(json_object_get(doc, "hostname")), NODE, "hostname");
	ASSERT_TRUE(strlen(json_string_value(json_object_get(doc, "time")) ?: "") == 27 &&
		    json_string_value(json_object_get(doc, "time"))[26] == 'Z', "RFC 3339 time");
	tags = json_object_get(doc, "tags");
	ASSERT_EQ(json_array_size(tags), 4, "tags");
	ASSERT_STREQ(json_string_value(json_array_get(tags, 0)), "mcp", "tag mcp");
	ASSERT_STREQ(json_string_value(json_array_get(tags, 2)), "clone", "tag verdict");
	ASSERT_STREQ(json_string_value(json_array_get(tags, 3)), "blocked", "tag action");
	out = json_string_value(json_object_get(doc, "output"));
	ASSERT_STRSTR(out, ": Critical MCP clone action=blocked (client=ci-bot server=tickets "
		      "method=tools/call tool=search_tickets pid=4242 exe=/usr/bin/node uid=1000 "
		      "cgroup=/kubepods.slice/pod-1/cri-containerd-abc.scope "
		      "container=abc123def456 pod=ci/runner-7 src=10.0.0.5:43512 "
		      "dst=10.0.0.9:8080 reason=identity ci-bot is live", "output line");
	ASSERT_TRUE(out && strncmp(out, json_string_value(json_object_get(doc, "time")), 27) == 0,
		    "output starts with the time");
	of = json_object_get(doc, "output_fields");
	ASSERT_STREQ(json_string_value(json_object_get(of, "mcp.verdict")), "clone", "mcp.verdict");
	ASSERT_STREQ(json_string_value(json_object_get(of, "mcp.action")), "blocked", "mcp.action");
	ASSERT_STREQ(json_string_value(json_object_get(of, "mcp.client")), "ci-bot", "mcp.client");
	ASSERT_STREQ(json_string_value(json_object_get(of, "mcp.server")), "tickets", "mcp.server");
	ASSERT_STREQ(json_string_value(json_object_get(of, "mcp.method")), "tools/call", "method");
	ASSERT_STREQ(json_string_value(json_object_get(of, "mcp.tool")), "search_tickets", "tool");
	ASSERT_STREQ(json_string_value(json_object_get(of, "mcp.session_id")), "3f2b9c1e", "sid");
	ASSERT_STREQ(json_string_value(json_object_get(of, "mcp.claim.client_id")), "ci-bot", "cid");
	ASSERT_EQ(json_integer_value(json_object_get(of, "proc.pid")), 4242, "proc.pid");
	ASSERT_STREQ(json_string_value(json_object_get(of, "proc.exepath")), "/usr/bin/node", "exe");
	ASSERT_STREQ(json_string_value(json_object_get(of, "proc.cmdline")),
		     "node /srv/agent.js --fast", "cmdline");
	ASSERT_EQ(json_integer_value(json_object_get(of, "user.uid")), 1000, "user.uid");
	ASSERT_STREQ(json_string_value(json_object_get(of, "container.id")), "abc123def456", "cid");
	ASSERT_STREQ(json_string_value(json_object_get(of, "k8s.pod.name")), "runner-7", "pod");
	ASSERT_STREQ(json_string_value(json_object_get(of, "k8s.ns.name")), "ci", "ns");
	ASSERT_STREQ(json_string_value(json_object_get(of, "fd.cip")), "10.0.0.5", "fd.cip");
	ASSERT_EQ(json_integer_value(json_object_get(of, "fd.cport")), 43512, "fd.cport");
	ASSERT_STREQ(json_string_value(json_object_get(of, "fd.sip")), "10.0.0.9", "fd.sip");
	ASSERT_EQ(json_integer_value(json_object_get(of, "fd.sport")), 8080, "fd.sport");
	/* Every key is dotted and every value a scalar or null. */
	{
		const char *key;
		json_t *v;

		json_object_foreach(of, key, v) {
			ASSERT_TRUE(strchr(key, '.') != NULL, key);
			ASSERT_TRUE(json_is_string(v) || json_is_integer(v) || json_is_null(v), key);
		}
	}

	ASSERT_STREQ(json_string_value(json_object_get(req, "rule")), "MCP allow", "request rule");
	ASSERT_STREQ(json_string_value(json_object_get(req, "priority")), "Informational", "prio");
	of = json_object_get(req, "output_fields");
	ASSERT_TRUE(json_is_null(json_object_get(of, "mcp.action")), "absent field is null");
	ASSERT_STREQ(json_string_value(json_object_get(lost, "rule")), "MCP events lost", "lost");
	ASSERT_STREQ(json_string_value(json_object_get(lost, "priority")), "Error", "lost prio");
	of = json_object_get(lost, "output_fields");
	ASSERT_EQ(json_integer_value(json_object_get(of, "mcp.count")), 3, "mcp.count");
	ASSERT_STRSTR(json_string_value(json_object_get(lost, "output")),
		      "Error MCP events lost (source=ring count=3 detail=ring buffer full)", "lost");
cleanup:
	json_decref(doc);
	json_decref(req);
	json_decref(lost);
	sinks__free_all(list, 500);
	output__free(o);
	free(text);
	remove_dir(dir);
	free(dir);
}

void test_sinks_ocsf(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	char err[512], spec[600], path[512], *dir = make_dir(), *text = NULL;
	json_t *doc = NULL, *fi, *e, *p, *md;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	snprintf(path, sizeof(path), "%s/findings.ocsf.jsonl", dir);
	snprintf(spec, sizeof(spec), "ocsf:%s", path);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	output__emit(o, "request", sample_request(1));
	output__emit(o, "alert", sample_alert("token_replay", "blocked", 2));
	output__emit(o, "alert", sample_alert("tool_denied", "alerted", 3));
	output__emit(o, "ready", json_pack("{s:s}", "version", "1"));
	st = settle(list, 0, 2, 3000);
	ASSERT_EQ(st.written, 2, "alerts written");
	ASSERT_EQ(st.skipped, 2, "request and ready skipped");
	sinks__free_all(list, 2000);
	list = NULL;

	text = slurp(path, NULL);
	if (!ASSERT_EQ(count_lines(text), 2, "two findings"))
		goto cleanup;
	doc = json_loads(text, JSON_DISABLE_EOF_CHECK, NULL);
	if (!ASSERT_OK_PTR(doc, "finding parses"))
		goto cleanup;
	ASSERT_EQ(json_integer_value(json_object_get(doc, "class_uid")), 2004, "class_uid");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "category_uid")), 2, "category_uid");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "activity_id")), 1, "activity_id");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "type_uid")), 200401, "type_uid");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "severity_id")), 4, "severity High");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "action_id")), 2, "Denied");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "disposition_id")), 2, "Blocked");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "status_id")), 1, "New");
	ASSERT_TRUE(json_is_true(json_object_get(doc, "is_alert")), "is_alert");
	ASSERT_TRUE(json_integer_value(json_object_get(doc, "time")) > 1600000000000LL &&
		    json_integer_value(json_object_get(doc, "time")) < 4102444800000LL,
		    "time in ms since the epoch");
	md = json_object_get(doc, "metadata");
	ASSERT_STREQ(json_string_value(json_object_get(md, "version")), "1.1.0", "schema version");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(md, "product"), "name")),
		     "mcpwarden", "product");
	ASSERT_OK_PTR(json_object_get(json_object_get(md, "product"), "vendor_name"), "vendor");
	fi = json_object_get(doc, "finding_info");
	ASSERT_TRUE(json_string_length(json_object_get(fi, "uid")) > 0, "finding uid");
	ASSERT_STREQ(json_string_value(json_object_get(fi, "title")), "MCP token_replay", "title");
	ASSERT_STRSTR(json_string_value(json_object_get(fi, "desc")), "identity ci-bot", "desc");
	ASSERT_STREQ(json_string_value(json_array_get(json_object_get(fi, "types"), 1)),
		     "token_replay", "types");
	e = json_array_get(json_object_get(doc, "evidences"), 0);
	p = json_object_get(e, "process");
	ASSERT_EQ(json_integer_value(json_object_get(p, "pid")), 4242, "process.pid");
	ASSERT_STREQ(json_string_value(json_object_get(p, "cmd_line")),
		     "node /srv/agent.js --fast", "cmd_line");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(p, "file"), "path")),
		     "/usr/bin/node", "file.path");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(p, "user"), "uid")),
		     "1000", "user.uid is a string");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(p, "container"), "uid")),
		     "abc123def456", "container.uid");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(e, "src_endpoint"), "ip")),
		     "10.0.0.5", "src_endpoint.ip");
	ASSERT_EQ(json_integer_value(json_object_get(json_object_get(e, "dst_endpoint"), "port")),
		  8080, "dst_endpoint.port");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(e, "api"), "operation")),
		     "tools/call", "api.operation");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(json_object_get(e, "data"),
								     "claim"), "client_id")),
		     "ci-bot", "claim in evidence data");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(json_object_get(doc,
		     "unmapped"), "mcp"), "verdict")), "token_replay", "unmapped.mcp.verdict");
	json_decref(doc);

	/* The alerted, non-identity finding. */
	doc = json_loads(strchr(text, '\n') + 1, JSON_DISABLE_EOF_CHECK, NULL);
	ASSERT_EQ(json_integer_value(json_object_get(doc, "action_id")), 1, "Allowed");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "disposition_id")), 15, "Detected");
	ASSERT_EQ(json_integer_value(json_object_get(doc, "severity_id")), 3, "Medium");
cleanup:
	json_decref(doc);
	sinks__free_all(list, 500);
	output__free(o);
	free(text);
	remove_dir(dir);
	free(dir);
}

void test_sinks_kinds(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	char err[512], spec[600], path[512], *dir = make_dir(), *text = NULL;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	snprintf(path, sizeof(path), "%s/alerts.jsonl", dir);
	snprintf(spec, sizeof(spec), "jsonl:%s?kinds=alert,lost", path);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	output__emit(o, "request", sample_request(1));
	output__emit(o, "alert", sample_alert("mismatch", "alerted", 2));
	output__emit(o, "connection", json_pack("{s:s}", "server", "tickets"));
	output__emit(o, "lost", json_pack("{s:i}", "count", 1));
	st = settle(list, 0, 2, 3000);
	ASSERT_EQ(st.written, 2, "alert and lost");
	ASSERT_EQ(st.skipped, 2, "request and connection skipped");
	sinks__free_all(list, 2000);
	list = NULL;
	text = slurp(path, NULL);
	ASSERT_EQ(count_lines(text), 2, "two lines");
	ASSERT_STRSTR(text, "\"kind\":\"alert\"", "alert kept");
	ASSERT_FALSE(strstr(text ?: "", "\"kind\":\"request\""), "request left out");
cleanup:
	sinks__free_all(list, 500);
	output__free(o);
	free(text);
	remove_dir(dir);
	free(dir);
}

/* Checks FILE.k.gz for k in 1..keep; returns the seq values in order,
 * oldest first, of all retained lines (rotated then current). */
static int collect_seqs(const char *path, unsigned int keep, int *seqs, int max,
			size_t max_bytes)
{
	char name[600], *text, *p;
	int n = 0;
	size_t len;
	unsigned int k;

	for (k = keep; k >= 1; k--) {
		snprintf(name, sizeof(name), "%s.%u.gz", path, k);
		text = gunzip(name, &len);
		if (!ASSERT_OK_PTR(text, name))
			return -1;
		ASSERT_TRUE(len <= max_bytes, "rotated at the size bound");
		for (p = text; *p; p = strchr(p, '\n') + 1) {
			json_t *j = json_loads(p, JSON_DISABLE_EOF_CHECK, NULL);

			if (!ASSERT_OK_PTR(j, "rotated line parses"))
				break;
			if (n < max)
				seqs[n++] = (int)json_integer_value(json_object_get(j, "seq"));
			json_decref(j);
		}
		free(text);
	}
	text = slurp(path, &len);
	ASSERT_TRUE(len <= max_bytes, "current file within the bound");
	for (p = text; p && *p; p = strchr(p, '\n') + 1) {
		json_t *j = json_loads(p, JSON_DISABLE_EOF_CHECK, NULL);

		if (n < max && j)
			seqs[n++] = (int)json_integer_value(json_object_get(j, "seq"));
		json_decref(j);
	}
	free(text);
	return n;
}

void test_sinks_rotation(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	char err[512], spec[700], path[512], name[600], *dir = make_dir();
	int seqs[256], n, i, total = 60;
	struct stat sb;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	snprintf(path, sizeof(path), "%s/events.jsonl", dir);
	snprintf(spec, sizeof(spec), "jsonl:%s?max_bytes=8k&keep=3", path);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	for (i = 1; i <= total; i++)
		output__emit(o, "alert", sample_alert("clone", "blocked", i));
	st = settle(list, 0, (uint64_t)total, 5000);
	ASSERT_EQ(st.written, total, "all written");
	ASSERT_EQ(st.dropped, 0, "none dropped");
	ASSERT_GE(st.rotations, 4, "rotated more often than keep");
	ASSERT_EQ(st.errors, 0, "no errors");

	/* Retention: exactly .1.gz to .3.gz, nothing older, no leftovers. */
	for (i = 1; i <= 3; i++) {
		snprintf(name, sizeof(name), "%s.%d.gz", path, i);
		ASSERT_OK(stat(name, &sb), name);
	}
	snprintf(name, sizeof(name), "%s.4.gz", path);
	ASSERT_ERR(stat(name, &sb), "no fourth rotated file");
	snprintf(name, sizeof(name), "%s.rotating", path);
	ASSERT_ERR(stat(name, &sb), "no rotation left half done");
	snprintf(name, sizeof(name), "%s.1.gz.tmp", path);
	ASSERT_ERR(stat(name, &sb), "no temporary file");

	/* What is kept is the newest events, in order, none lost. */
	n = collect_seqs(path, 3, seqs, 256, 8192);
	if (!ASSERT_GE(n, 4, "lines retained"))
		goto cleanup;
	ASSERT_EQ(seqs[n - 1], total, "newest last");
	for (i = 1; i < n; i++)
		if (!ASSERT_EQ(seqs[i], seqs[i - 1] + 1, "consecutive"))
			break;
cleanup:
	sinks__free_all(list, 500);
	output__free(o);
	remove_dir(dir);
	free(dir);
}

/* keep=0 deletes on rotation; a rotation a crash left half done is
 * finished at the next start; rotated files past keep from an earlier
 * run with a bigger keep are deleted. */
void test_sinks_retention(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	char err[512], spec[700], path[512], name[600], *dir = make_dir(), *text = NULL;
	size_t len;
	int fd, i;
	struct stat sb;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	snprintf(path, sizeof(path), "%s/ev.jsonl", dir);
	snprintf(spec, sizeof(spec), "jsonl:%s?max_bytes=4k&keep=0", path);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	for (i = 1; i <= 20; i++)
		output__emit(o, "alert", sample_alert("clone", "blocked", i));
	st = settle(list, 0, 20, 5000);
	ASSERT_GE(st.rotations, 2, "rotated");
	sinks__free_all(list, 2000);
	list = NULL;
	snprintf(name, sizeof(name), "%s.1.gz", path);
	ASSERT_ERR(stat(name, &sb), "keep=0 keeps nothing");
	ASSERT_OK(stat(path, &sb), "current file");
	ASSERT_TRUE(sb.st_size <= 4096, "current file bounded");

	/* A crash mid-rotation, and a .9.gz from a run with keep=9. */
	snprintf(name, sizeof(name), "%s.rotating", path);
	fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ASSERT_EQ(write(fd, "{\"left\":\"over\"}\n", 16), 16, "write leftover");
	close(fd);
	snprintf(name, sizeof(name), "%s.9.gz", path);
	close(open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600));
	snprintf(spec, sizeof(spec), "jsonl:%s?max_bytes=4k&keep=2", path);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	sinks__free_all(list, 2000);	/* the writer finishes the rotation first */
	list = NULL;
	snprintf(name, sizeof(name), "%s.1.gz", path);
	text = gunzip(name, &len);
	ASSERT_STREQ(text, "{\"left\":\"over\"}\n", "leftover compressed to .1.gz");
	snprintf(name, sizeof(name), "%s.rotating", path);
	ASSERT_ERR(stat(name, &sb), "leftover gone");
	snprintf(name, sizeof(name), "%s.9.gz", path);
	ASSERT_ERR(stat(name, &sb), "file past keep deleted");
cleanup:
	sinks__free_all(list, 500);
	output__free(o);
	free(text);
	remove_dir(dir);
	free(dir);
}

static int listen_local(int *port, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 4) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static int accept_within(int lfd, int ms)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

struct reader {
	int fd;
	char buf[1 << 16];
	size_t len;
};

/* Reads one octet-counted frame (RFC 6587: LEN SP MSG) into msg. */
static int read_frame(struct reader *r, char *msg, size_t max, int ms)
{
	uint64_t until = ms_now() + (uint64_t)ms;
	size_t digits, n;
	ssize_t got;
	struct pollfd p = { .fd = r->fd, .events = POLLIN };

	for (;;) {
		for (digits = 0; digits < r->len && r->buf[digits] >= '0' && r->buf[digits] <= '9';
		     digits++)
			;
		if (digits < r->len) {
			if (!digits || r->buf[digits] != ' ' || r->buf[0] == '0')
				return -EPROTO;
			n = strtoul(r->buf, NULL, 10);
			if (n >= max)
				return -E2BIG;
			if (r->len >= digits + 1 + n) {
				memcpy(msg, r->buf + digits + 1, n);
				msg[n] = '\0';
				r->len -= digits + 1 + n;
				memmove(r->buf, r->buf + digits + 1 + n, r->len);
				return (int)n;
			}
		}
		if (ms_now() > until || poll(&p, 1, 50) < 0)
			return -ETIMEDOUT;
		if (!(p.revents & POLLIN))
			continue;
		got = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
		if (got <= 0)
			return -EPIPE;
		r->len += (size_t)got;
	}
}

/* Checks the RFC 5424 header; returns where MSG starts. */
static const char *check_header(const char *msg, int pri, const char *app, const char *msgid)
{
	char want[128], ts[64];
	const char *p;
	int n;

	n = snprintf(want, sizeof(want), "<%d>1 ", pri);
	if (!ASSERT_TRUE(strncmp(msg, want, (size_t)n) == 0, "PRI and VERSION"))
		return NULL;
	p = msg + n;
	/* TIMESTAMP: full-date "T" full-time with microseconds, UTC. */
	if (!ASSERT_TRUE(sscanf(p, "%63s", ts) == 1 && strlen(ts) == 27 && ts[10] == 'T' &&
			 ts[19] == '.' && ts[26] == 'Z', "TIMESTAMP"))
		return NULL;
	p += 28;
	snprintf(want, sizeof(want), "%s %s %d %s - ", NODE, app, (int)getpid(), msgid);
	if (!ASSERT_TRUE(strncmp(p, want, strlen(want)) == 0, "HOSTNAME APP-NAME PROCID MSGID SD"))
		return NULL;
	return p + strlen(want);
}

void test_sinks_syslog(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	struct reader *r = calloc(1, sizeof(*r));
	char err[512], spec[256], msg[65536];
	const char *body;
	json_t *j = NULL, *ev;
	int lfd, port, n;
	size_t i;

	r->fd = -1;
	lfd = listen_local(&port, 0);
	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_GE(lfd, 0, "listener"))
		goto cleanup;
	snprintf(spec, sizeof(spec),
		 "syslog:tcp://127.0.0.1:%d?format=falco&app=mcpw-test&facility=local3", port);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	ev = sample_alert("session_hijack", "blocked", 1);
	/* Non-ASCII in a value: MSG stays ASCII (escaped), so it needs no BOM. */
	json_object_set_new(ev, "reason", json_string("session issued to caf\xc3\xa9-7"));
	output__emit(o, "alert", ev);
	output__emit(o, "request", sample_request(2));

	r->fd = accept_within(lfd, 3000);
	if (!ASSERT_GE(r->fd, 0, "sink connected"))
		goto cleanup;
	n = read_frame(r, msg, sizeof(msg), 3000);
	if (!ASSERT_GE(n, 1, "first frame"))
		goto cleanup;
	/* local3 (19) * 8 + err (3): a blocked alert. */
	body = check_header(msg, 19 * 8 + 3, "mcpw-test", "alert");
	if (!body)
		goto cleanup;
	for (i = 0; i < (size_t)n; i++)
		if (!ASSERT_TRUE((unsigned char)msg[i] < 0x80, "ASCII only"))
			break;
	j = json_loads(body, 0, NULL);
	if (!ASSERT_OK_PTR(j, "MSG is one JSON document"))
		goto cleanup;
	ASSERT_STREQ(json_string_value(json_object_get(j, "rule")), "MCP session_hijack", "rule");
	ASSERT_STRSTR(json_string_value(json_object_get(j, "output")), "caf\xc3\xa9-7", "UTF-8 kept");
	json_decref(j);
	j = NULL;

	n = read_frame(r, msg, sizeof(msg), 3000);
	if (!ASSERT_GE(n, 1, "second frame"))
		goto cleanup;
	/* info (6) for a request. */
	ASSERT_OK_PTR(check_header(msg, 19 * 8 + 6, "mcpw-test", "request"), "request header");

	/* The peer goes away: the next line goes to a new connection. */
	close(r->fd);
	r->fd = -1;
	r->len = 0;
	usleep(50000);
	output__emit(o, "lost", json_pack("{s:s,s:i}", "source", "ring", "count", 9));
	r->fd = accept_within(lfd, 5000);
	if (!ASSERT_GE(r->fd, 0, "reconnected"))
		goto cleanup;
	n = read_frame(r, msg, sizeof(msg), 5000);
	if (!ASSERT_GE(n, 1, "frame after reconnect"))
		goto cleanup;
	ASSERT_OK_PTR(check_header(msg, 19 * 8 + 3, "mcpw-test", "lost"), "lost header");
	st = settle(list, 0, 3, 3000);
	ASSERT_EQ(st.written, 3, "three written");
	ASSERT_EQ(st.dropped, 0, "none dropped");
	ASSERT_EQ(st.connects, 2, "two connections");
	ASSERT_TRUE(st.connected, "connected");
cleanup:
	json_decref(j);
	sinks__free_all(list, 500);
	output__free(o);
	if (r->fd >= 0)
		close(r->fd);
	if (lfd >= 0)
		close(lfd);
	free(r);
}

/* The native format over syslog, default facility local0 and app. */
void test_sinks_syslog_native(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct reader *r = calloc(1, sizeof(*r));
	char err[512], spec[256], msg[65536];
	const char *body;
	json_t *j = NULL;
	int lfd, port;

	r->fd = -1;
	lfd = listen_local(&port, 0);
	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_GE(lfd, 0, "listener"))
		goto cleanup;
	snprintf(spec, sizeof(spec), "syslog:tcp://127.0.0.1:%d", port);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	output__emit(o, "alert", sample_alert("tool_denied", "alerted", 1));
	r->fd = accept_within(lfd, 3000);
	if (!ASSERT_GE(r->fd, 0, "connected") || !ASSERT_GE(read_frame(r, msg, sizeof(msg), 3000),
							    1, "frame"))
		goto cleanup;
	/* local0 (16) * 8 + warning (4): an alert that was let through. */
	body = check_header(msg, 16 * 8 + 4, "mcpwarden", "alert");
	j = body ? json_loads(body, 0, NULL) : NULL;
	ASSERT_STREQ(json_string_value(json_object_get(j, "kind")), "alert", "native event");
	ASSERT_STREQ(json_string_value(json_object_get(j, "verdict")), "tool_denied", "verdict");
cleanup:
	json_decref(j);
	sinks__free_all(list, 500);
	output__free(o);
	if (r->fd >= 0)
		close(r->fd);
	if (lfd >= 0)
		close(lfd);
	free(r);
}

/* A peer that accepts but never reads: the caller never waits, the queue
 * takes the overflow and every line is accounted for. */
void test_sinks_overflow(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	char err[512], spec[256], *pad = malloc(4097);
	uint64_t t0, emit_ms, close_ms;
	int lfd, port, i, total = 2000;

	lfd = listen_local(&port, 4096);
	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_GE(lfd, 0, "listener"))
		goto cleanup;
	memset(pad, 'x', 4096);
	pad[4096] = '\0';
	snprintf(spec, sizeof(spec), "syslog:tcp://127.0.0.1:%d?queue=16", port);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	t0 = ms_now();
	for (i = 0; i < total; i++)
		output__emit(o, "lost", json_pack("{s:i,s:s}", "seq", i, "pad", pad));
	/* Had the caller waited on the peer, it would still be waiting. */
	emit_ms = ms_now() - t0;
	usleep(200000);
	st = settle(list, 0, (uint64_t)total, 200);
	test__log("written %llu dropped %llu queued %llu in %llu ms",
		  (unsigned long long)st.written, (unsigned long long)st.dropped,
		  (unsigned long long)st.queued, (unsigned long long)emit_ms);
	ASSERT_GE(st.dropped, 1, "drops counted");
	ASSERT_TRUE(st.written < (uint64_t)total, "the peer took only part");
	ASSERT_TRUE(st.queued <= 16, "queue bound kept");
	/* Each line is written, dropped, queued or in the writer's batch. */
	ASSERT_TRUE(st.written + st.dropped + st.queued <= (uint64_t)total &&
		    st.written + st.dropped + st.queued + 64 >= (uint64_t)total, "accounting");
	ASSERT_TRUE(st.connected, "connected all along");

	t0 = ms_now();
	sinks__free_all(list, 300);
	list = NULL;
	close_ms = ms_now() - t0;
	ASSERT_TRUE(close_ms < 3000, "close waits a bounded time");
cleanup:
	sinks__free_all(list, 300);
	output__free(o);
	if (lfd >= 0)
		close(lfd);
	free(pad);
}

/* Nobody listens: lines wait up to the bound, then drop; reconnects back off. */
void test_sinks_unreachable(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	char err[512], spec[256];
	int lfd, port, i;
	uint64_t t0;

	lfd = listen_local(&port, 0);
	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_GE(lfd, 0, "port"))
		goto cleanup;
	close(lfd);	/* now refused */
	lfd = -1;
	snprintf(spec, sizeof(spec), "syslog:tcp://127.0.0.1:%d?queue=8&format=ocsf", port);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	for (i = 0; i < 100; i++)
		output__emit(o, "alert", sample_alert("clone", "blocked", i));
	usleep(400000);
	sinks__stats(list, &st, 1);
	ASSERT_EQ(st.written, 0, "nothing written");
	ASSERT_FALSE(st.connected, "not connected");
	ASSERT_GE(st.errors, 2, "connection attempts failed and were retried");
	ASSERT_TRUE(st.errors < 10, "with backoff");
	ASSERT_TRUE(st.queued <= 8, "queue bound");
	ASSERT_GE(st.dropped, 100 - 8 - 64, "overflow dropped and counted");
	t0 = ms_now();
	sinks__free_all(list, 200);
	list = NULL;
	ASSERT_TRUE(ms_now() - t0 < 3000, "close waits a bounded time");
cleanup:
	sinks__free_all(list, 200);
	output__free(o);
}

/* The counters as Prometheus exposes them. */
void test_sinks_collect(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct prom_buf *b = prom__new();
	char err[512], spec[600], *dir = make_dir();
	const char *body;
	size_t len;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	snprintf(spec, sizeof(spec), "falco:%s/f.jsonl", dir);
	ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err);
	ASSERT_OK(sinks__add(o, "syslog:tcp://127.0.0.1:9", &list, err, sizeof(err)), err);
	output__emit(o, "alert", sample_alert("clone", "blocked", 1));
	settle(list, 0, 1, 3000);
	sinks__collect(list, b);
	body = prom__body(b, &len);
	ASSERT_EQ(prom__errors(b), 0, "no builder errors");
	ASSERT_STRSTR(body, "mcpwarden_sink_lines_written_total{sink=\"falco:", "written");
	ASSERT_STRSTR(body, "\",format=\"falco\"} 1\n", "one line written");
	ASSERT_STRSTR(body, "mcpwarden_sink_connected{sink=\"syslog:tcp://127.0.0.1:9\","
		      "format=\"native\"} 0\n", "syslog connected gauge");
	ASSERT_STRSTR(body, "# TYPE mcpwarden_sink_rotations_total counter\n", "rotations");
cleanup:
	prom__free(b);
	sinks__free_all(list, 300);
	output__free(o);
	remove_dir(dir);
	free(dir);
}

/* stdout is a pipe nobody reads: the writer blocks in write(2), the
 * caller does not, and closing gives up on it after the bounded wait. */
void test_sinks_stuck_stdout(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	struct sink_stats st;
	char err[512];
	int pipefd[2] = { -1, -1 }, saved = -1, i;
	uint64_t t0;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK(pipe(pipefd), "pipe"))
		goto cleanup;
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	dup2(pipefd[1], STDOUT_FILENO);
	if (!ASSERT_OK(sinks__add(o, "jsonl:-?queue=32", &list, err, sizeof(err)), err))
		goto cleanup;
	for (i = 0; i < 500; i++)
		output__emit(o, "alert", sample_alert("clone", "blocked", i));
	usleep(100000);
	sinks__stats(list, &st, 1);
	ASSERT_TRUE(st.written < 500, "the pipe filled up");
	ASSERT_GE(st.dropped, 1, "overflow counted");
	t0 = ms_now();
	sinks__free_all(list, 200);
	list = NULL;
	ASSERT_TRUE(ms_now() - t0 < 3000, "close gave up on the blocked write");
cleanup:
	sinks__free_all(list, 200);
	if (saved >= 0) {
		dup2(saved, STDOUT_FILENO);
		close(saved);
	}
	if (pipefd[0] >= 0) {
		close(pipefd[0]);
		close(pipefd[1]);
	}
	output__free(o);
}

/* Interoperability with a real receiver: rsyslog's imtcp takes the
 * octet-counted frames and its RFC 5424 parser gives back each header
 * field. Runs when rsyslogd is installed (Debian package rsyslog). */
void test_sinks_rsyslog(void)
{
	struct output *o = output__new(NODE);
	struct sink *list = NULL;
	char err[512], spec[256], conf[700], out[600], *dir = make_dir(), *text = NULL, *p;
	char *fields[8], *save = NULL;
	pid_t pid = -1;
	int port, fd, i, lines = 0;
	uint64_t until;
	FILE *f;
	json_t *j = NULL;

	if (access("/usr/sbin/rsyslogd", X_OK)) {
		test__log("rsyslogd not installed: socket reader tests only");
		goto cleanup;
	}
	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	fd = listen_local(&port, 0);
	if (!ASSERT_GE(fd, 0, "free port"))
		goto cleanup;
	close(fd);
	snprintf(conf, sizeof(conf), "%s/rsyslog.conf", dir);
	snprintf(out, sizeof(out), "%s/out.log", dir);
	f = fopen(conf, "w");
	fprintf(f, "global(workDirectory=\"%s\")\n"
		"module(load=\"imtcp\")\n"
		"input(type=\"imtcp\" port=\"%d\" address=\"127.0.0.1\")\n"
		"template(name=\"t\" type=\"string\" string=\"%%pri%%|%%timereported:::date-rfc3339%%|"
		"%%hostname%%|%%app-name%%|%%procid%%|%%msgid%%|%%structured-data%%|%%msg%%\\n\")\n"
		"*.* action(type=\"omfile\" file=\"%s\" template=\"t\")\n", dir, port, out);
	fclose(f);
	pid = fork();
	if (pid == 0) {
		char pidfile[600];

		/* Gone with the test, however the test ends. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		snprintf(pidfile, sizeof(pidfile), "%s/rsyslogd.pid", dir);
		execl("/usr/sbin/rsyslogd", "rsyslogd", "-n", "-f", conf, "-i", pidfile,
		      (char *)NULL);
		_exit(127);
	}
	until = ms_now() + 5000;
	for (fd = -1; fd < 0 && ms_now() < until; usleep(20000)) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			close(fd);
			fd = -1;
		}
	}
	if (!ASSERT_GE(fd, 0, "rsyslogd listening"))
		goto cleanup;
	close(fd);

	snprintf(spec, sizeof(spec), "syslog:tcp://127.0.0.1:%d?format=falco&facility=local3&app=mcpw",
		 port);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	output__emit(o, "alert", sample_alert("clone", "blocked", 1));
	output__emit(o, "request", sample_request(2));
	output__emit(o, "alert", sample_alert("tool_denied", "alerted", 3));
	for (until = ms_now() + 5000; ms_now() < until && lines < 3; usleep(20000)) {
		free(text);
		text = slurp(out, NULL);
		lines = count_lines(text);
	}
	if (!ASSERT_EQ(lines, 3, "rsyslog wrote three messages"))
		goto cleanup;
	for (p = strtok_r(text, "\n", &save), i = 0; p; p = strtok_r(NULL, "\n", &save), i++) {
		static const int pri[] = { 19 * 8 + 3, 19 * 8 + 6, 19 * 8 + 4 };
		char pid_s[16];
		size_t k;

		for (k = 0; k < 7; k++) {
			fields[k] = p;
			p = strchr(p, '|');
			if (!ASSERT_OK_PTR(p, "eight fields"))
				goto cleanup;
			*p++ = '\0';
		}
		fields[7] = p;
		snprintf(pid_s, sizeof(pid_s), "%d", (int)getpid());
		ASSERT_EQ(atoi(fields[0]), pri[i], "PRI");
		ASSERT_TRUE(strlen(fields[1]) == 27 && fields[1][26] == 'Z', "timestamp kept to the us");
		ASSERT_STREQ(fields[2], NODE, "HOSTNAME");
		ASSERT_STREQ(fields[3], "mcpw", "APP-NAME");
		ASSERT_STREQ(fields[4], pid_s, "PROCID");
		ASSERT_STREQ(fields[5], i == 1 ? "request" : "alert", "MSGID");
		ASSERT_STREQ(fields[6], "-", "no structured data");
		j = json_loads(fields[7], 0, NULL);
		if (!ASSERT_OK_PTR(j, "MSG is the Falco JSON"))
			goto cleanup;
		ASSERT_STREQ(json_string_value(json_object_get(j, "time")), fields[1], "same time");
		ASSERT_STREQ(json_string_value(json_object_get(j, "rule")),
			     i == 0 ? "MCP clone" : i == 1 ? "MCP allow" : "MCP tool_denied", "rule");
		json_decref(j);
		j = NULL;
	}
cleanup:
	json_decref(j);
	sinks__free_all(list, 500);
	output__free(o);
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
	free(text);
	remove_dir(dir);
	free(dir);
}

/*
 * A file sink whose write fails inside a line (here a file-size limit; a
 * disk that fills mid-line alike) ends that line before the next one: the
 * cut line is lost (counted dropped), the next event is a line of its own
 * rather than glued to the cut one.
 */
void test_sinks_cut_line(void)
{
	struct output *o = output__new("n");
	struct sink *list = NULL;
	struct rlimit old, lim;
	struct sink_stats st;
	struct stat sb;
	char err[512], spec[600], path[512], *dir = make_dir(), *text = NULL, *l2, *l3;

	if (!ASSERT_OK_PTR(o, "output__new") || !ASSERT_OK_PTR(dir, "mkdtemp"))
		goto cleanup;
	signal(SIGXFSZ, SIG_IGN);
	snprintf(path, sizeof(path), "%s/cut.jsonl", dir);
	snprintf(spec, sizeof(spec), "jsonl:%s", path);
	if (!ASSERT_OK(sinks__add(o, spec, &list, err, sizeof(err)), err))
		goto cleanup;
	output__emit(o, "request", sample_request(1));
	settle(list, 0, 1, 3000);
	ASSERT_OK(stat(path, &sb), "stat");
	ASSERT_OK(getrlimit(RLIMIT_FSIZE, &old), "getrlimit");
	lim = old;
	lim.rlim_cur = (rlim_t)sb.st_size + 20;
	ASSERT_OK(setrlimit(RLIMIT_FSIZE, &lim), "file size limit");
	output__emit(o, "request", sample_request(2));	/* 20 bytes of it fit */
	st = settle(list, 0, 2, 3000);
	ASSERT_EQ(st.dropped, 1, "the cut event dropped");
	ASSERT_OK(setrlimit(RLIMIT_FSIZE, &old), "limit lifted");
	output__emit(o, "request", sample_request(3));
	st = settle(list, 0, 3, 3000);
	ASSERT_EQ(st.written, 2, "the next one written");
	sinks__free_all(list, 2000);
	list = NULL;

	text = slurp(path, NULL);
	ASSERT_EQ(count_lines(text), 3, "three lines");
	l2 = text ? strchr(text, '\n') : NULL;
	l3 = l2 ? strchr(l2 + 1, '\n') : NULL;
	if (ASSERT_OK_PTR(l3, "lines")) {
		json_t *ev = json_loads(l3 + 1, 0, NULL);

		ASSERT_EQ(l3 - l2 - 1, 20, "the cut line is what fitted");
		ASSERT_OK_PTR(ev, "the next event a line of its own");
		json_decref(ev);
	}
cleanup:
	sinks__free_all(list, 2000);
	free(text);
	if (dir)
		remove_dir(dir);
	free(dir);
	output__free(o);
}
