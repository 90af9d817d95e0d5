// SPDX-License-Identifier: GPL-2.0
/*
 * Events written as text (output.h: output__begin ... output__end): the
 * line is valid JSON, strings are escaped exactly as jansson escapes them
 * (so a request event reads the same as when it was built as an object),
 * invalid UTF-8 becomes U+FFFD instead of a broken line, and sinks that
 * read objects get the same event.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "output.h"

struct seen {
	json_t *obj;
	char *line;
};

static void object_sink(void *ctx, const char *kind, json_t *ev, const char *line, size_t len)
{
	struct seen *s = ctx;

	(void)kind;
	json_decref(s->obj);
	free(s->line);
	s->obj = json_incref(ev);
	s->line = strndup(line, len);
}

/* The last line written to path, without its newline. */
static char *last_line(const char *path)
{
	char *line = NULL, *last = NULL;
	size_t cap = 0;
	FILE *f = fopen(path, "r");

	while (f && getline(&line, &cap, f) > 0) {
		free(last);
		last = strdup(line);
	}
	if (f)
		fclose(f);
	free(line);
	if (last && strchr(last, '\n'))
		*strchr(last, '\n') = '\0';
	return last;
}

void test_output_line_escapes_like_jansson(void)
{
	static const char *const valid[] = {
		"plain", "quote \" and backslash \\", "tab\tnew\nline\rcr", "\b\f\x01\x1f\x7f",
		"slash / stays", "caf\xc3\xa9", "\xe2\x82\xac euro", "clef \xf0\x9d\x84\x9e", "",
	};
	char path[] = "/tmp/mcpw-output-XXXXXX", err[128];
	struct output *o = output__new("node-\"1\"");
	struct output_line *l;
	size_t i;
	int fd = mkstemp(path);

	if (!ASSERT_OK_PTR(o, "output") || !ASSERT_GE(fd, 0, "mkstemp"))
		return;
	close(fd);
	ASSERT_OK(output__add_jsonl(o, path, err, sizeof(err)), "events file");
	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		json_t *s = json_string(valid[i]);
		char *want = json_dumps(s, JSON_ENCODE_ANY), *line, *got;

		l = output__begin(o, "request");
		oline__str(l, "v", valid[i]);
		output__end(o, l);
		output__flush(o);
		line = last_line(path);
		got = line ? strstr(line, ",\"v\":") : NULL;
		if (ASSERT_OK_PTR(got, "member written")) {
			got += 5;
			got[strlen(got) - 1] = '\0';	/* the closing brace */
			ASSERT_STREQ(got, want, valid[i]);
		}
		free(line);
		free(want);
		json_decref(s);
	}
	output__free(o);
	unlink(path);
}

void test_output_line_invalid_utf8(void)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "a\xff" "b", "a\xef\xbf\xbd" "b" },			/* never a lead byte */
		{ "\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd" },		/* overlong NUL */
		{ "\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },	/* surrogate */
		{ "cut \xe2\x82", "cut \xef\xbf\xbd\xef\xbf\xbd" },	/* truncated */
		{ "\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
		{ "ok \xc3\xa9 \x80", "ok \xc3\xa9 \xef\xbf\xbd" },
	};
	struct seen seen = {};
	struct output *o = output__new("n");
	struct output_line *l;
	size_t i;

	if (!ASSERT_OK_PTR(o, "output"))
		return;
	ASSERT_OK(output__add_sink(o, object_sink, &seen), "object sink");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		l = output__begin(o, "alert");
		oline__str(l, "v", cases[i].in);
		output__end(o, l);
		if (ASSERT_OK_PTR(seen.obj, "the line parses as JSON"))
			ASSERT_STREQ(json_string_value(json_object_get(seen.obj, "v")), cases[i].out,
				     "invalid bytes replaced, valid ones kept");
	}
	json_decref(seen.obj);
	free(seen.line);
	output__free(o);
}

/* YYYY-MM-DDTHH:MM:SS.uuuuuuZ */
static bool time_ok(const char *t)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	size_t i;

	if (!t || strlen(t) != sizeof(shape) - 1)
		return false;
	for (i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != shape[i])
			return false;
	return true;
}

/* Members of every kind, nested, in order; a sink reading objects gets
 * the same event as the line. */
void test_output_line_members(void)
{
	struct seen seen = {};
	struct output *o = output__new("node-a");
	struct output_line *l;
	json_t *want;
	const char *p;

	if (!ASSERT_OK_PTR(o, "output"))
		return;
	ASSERT_OK(output__add_sink(o, object_sink, &seen), "object sink");
	l = output__begin(o, "request");
	oline__str(l, "server", "tickets");
	oline__str(l, "absent", NULL);
	oline__int(l, "n", -42);
	oline__int(l, "zero", 0);
	oline__int(l, "min", LLONG_MIN);
	oline__bool(l, "fast_path", true);
	oline__open(l, "request");
	oline__str(l, "method", "tools/call");
	oline__raw(l, "id", "\"a\"", 3);
	oline__open_array(l, "batch");
	oline__open(l, NULL);
	oline__str(l, "method", "ping");
	oline__close(l);
	oline__open(l, NULL);
	oline__close(l);
	oline__close_array(l);
	oline__open_array(l, "empty");
	oline__close_array(l);
	oline__close(l);
	oline__json(l, "related", json_pack("{s:i}", "pid", 7));
	oline__json(l, "none", NULL);
	output__end(o, l);
	if (!ASSERT_OK_PTR(seen.obj, "the line parses as JSON"))
		goto out;
	p = seen.line;
	ASSERT_TRUE(strncmp(p, "{\"time\":\"", 9) == 0, "time first");
	ASSERT_TRUE(time_ok(json_string_value(json_object_get(seen.obj, "time"))),
		    "time is RFC 3339 UTC with microseconds");
	ASSERT_STRSTR(p, "\",\"kind\":\"request\",\"node\":\"node-a\",\"server\":\"tickets\","
		      "\"n\":-42,\"zero\":0,\"min\":-9223372036854775808,\"fast_path\":true,\"request\":{\"method\":\"tools/call\","
		      "\"id\":\"a\",\"batch\":[{\"method\":\"ping\"},{}],\"empty\":[]},"
		      "\"related\":{\"pid\":7}}", "members in order");
	want = json_pack("{s:s,s:s,s:s,s:i,s:i,s:I,s:b,s:{s:s,s:s,s:[{s:s},{}],s:[]},s:{s:i}}",
			 "kind", "request", "node", "node-a", "server", "tickets", "n", -42,
			 "zero", 0, "min", (json_int_t)LLONG_MIN,
			 "fast_path", 1, "request", "method", "tools/call", "id", "a", "batch",
			 "method", "ping", "empty", "related", "pid", 7);
	json_object_set(want, "time", json_object_get(seen.obj, "time"));
	ASSERT_TRUE(json_equal(want, seen.obj), "the object sink's event is the line's");
	json_decref(want);
out:
	json_decref(seen.obj);
	free(seen.line);
	output__free(o);
}

/* output__emit: an object's members follow the stamp in order; a member
 * named like a stamp field (a relayed event's own node) replaces it, once. */
void test_output_emit_object(void)
{
	struct seen seen = {};
	struct output *o = output__new("here");

	if (!ASSERT_OK_PTR(o, "output"))
		return;
	ASSERT_OK(output__add_sink(o, object_sink, &seen), "object sink");
	output__emit(o, "lost", json_pack("{s:s,s:i,s:[i,i]}", "source", "ring", "count", 3,
					  "ids", 1, 2));
	if (ASSERT_OK_PTR(seen.line, "written"))
		ASSERT_STRSTR(seen.line, "\",\"kind\":\"lost\",\"node\":\"here\",\"source\":\"ring\","
			      "\"count\":3,\"ids\":[1,2]}", "stamp, then the members in order");
	output__emit(o, "alert", json_pack("{s:s,s:s}", "node", "there", "verdict", "clone"));
	if (ASSERT_OK_PTR(seen.line, "written")) {
		ASSERT_STRSTR(seen.line, "\",\"kind\":\"alert\",\"node\":\"there\",\"verdict\":\"clone\"}",
			      "the event's own node, in the stamp's place");
		ASSERT_TRUE(strstr(seen.line, "\"here\"") == NULL, "not twice");
	}
	json_decref(seen.obj);
	free(seen.line);
	output__free(o);
}

static bool alerts_only(void *ctx, const char *kind)
{
	(void)ctx;
	return strcmp(kind, "alert") == 0;
}

/* A sink that reads the objects of some kinds only gets the line of the
 * others and no object (the line is not parsed back for it), while a sink
 * that reads every object still gets one; nothing counts as dropped. */
void test_output_object_only_where_needed(void)
{
	struct seen picky = {}, every = {};
	struct output *o = output__new("n");
	struct output_stats st;
	struct output_line *l;

	if (!ASSERT_OK_PTR(o, "output"))
		return;
	ASSERT_OK(output__add_sink_needs(o, object_sink, alerts_only, &picky), "picky sink");
	l = output__begin(o, "request");
	oline__str(l, "verdict", "allow");
	output__end(o, l);
	ASSERT_NULL(picky.obj, "no object for a kind the sink does not read");
	ASSERT_STRSTR(picky.line ?: "", "\"kind\":\"request\"", "its line all the same");
	l = output__begin(o, "alert");
	oline__str(l, "verdict", "clone");
	output__end(o, l);
	if (ASSERT_OK_PTR(picky.obj, "the object of a kind it reads"))
		ASSERT_STREQ(json_string_value(json_object_get(picky.obj, "verdict")), "clone",
			     "parsed from the line");

	ASSERT_OK(output__add_sink(o, object_sink, &every), "a sink of every object");
	l = output__begin(o, "request");
	oline__str(l, "verdict", "allow");
	output__end(o, l);
	ASSERT_NULL(picky.obj, "still none for the picky sink");
	ASSERT_OK_PTR(every.obj, "the other sink gets the object");
	output__stats(o, &st);
	ASSERT_EQ(st.dropped, 0, "nothing dropped");
	json_decref(picky.obj);
	json_decref(every.obj);
	free(picky.line);
	free(every.line);
	output__free(o);
}

/*
 * Events reach the file a batch at a time: forty 1 KiB events stay in the
 * stream's buffer until output__flush() (glibc's own buffer, 4 KiB, wrote
 * every few events: a write(2) each), then arrive whole and in order.
 */
void test_output_written_in_batches(void)
{
	char path[] = "/tmp/mcpw-output-XXXXXX", err[128], pad[1024];
	struct output *o = output__new("node");
	struct output_line *l;
	struct stat st;
	char *line;
	int i, fd = mkstemp(path);

	if (!ASSERT_OK_PTR(o, "output") || !ASSERT_GE(fd, 0, "mkstemp"))
		return;
	close(fd);
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	ASSERT_OK(output__add_jsonl(o, path, err, sizeof(err)), "events file");
	for (i = 0; i < 40; i++) {
		l = output__begin(o, "request");
		oline__int(l, "n", i);
		oline__str(l, "pad", pad);
		output__end(o, l);
	}
	ASSERT_OK(stat(path, &st), "stat");
	ASSERT_EQ(st.st_size, 0, "nothing written before the batch ends");
	output__flush(o);
	ASSERT_OK(stat(path, &st), "stat");
	ASSERT_GE(st.st_size, 40 * 1024, "the whole batch after the flush");
	line = last_line(path);
	ASSERT_STRSTR(line ?: "", "\"n\":39,", "the last event last");
	free(line);
	output__free(o);
	unlink(path);
}

/*
 * A write the events file refuses (a full disk) is counted, event by
 * event, with its error: the stream's buffer is never dropped silently.
 */
void test_output_write_failure_counted(void)
{
	struct output *o = output__new("node");
	struct output_stats st;
	struct output_line *l;
	char err[128];
	int i;

	if (!ASSERT_OK_PTR(o, "output"))
		return;
	if (!ASSERT_OK(output__add_jsonl(o, "/dev/full", err, sizeof(err)), "/dev/full")) {
		output__free(o);
		return;
	}
	for (i = 0; i < 3; i++) {
		l = output__begin(o, "request");
		oline__int(l, "n", i);
		output__end(o, l);
	}
	output__flush(o);
	output__stats(o, &st);
	ASSERT_EQ(st.events, 3, "events made");
	ASSERT_EQ(st.write_lost, 3, "every line of the failed write counted");
	ASSERT_EQ(st.dropped, 3, "and dropped");
	ASSERT_EQ(st.write_errno, ENOSPC, "its error");
	ASSERT_STREQ(st.write_failed_on ?: "", "/dev/full", "the stream named");
	output__free(o);
}

static char *slurp_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f)
		return NULL;
	n = getdelim(&buf, &cap, '\0', f);
	fclose(f);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void emit_n(struct output *o, int n, const char *pad)
{
	struct output_line *l = output__begin(o, "request");

	oline__int(l, "n", n);
	oline__str(l, "pad", pad);
	output__end(o, l);
	output__flush(o);
}

/*
 * A write cut short inside a line (here a file-size limit; a disk that
 * fills mid-write alike) leaves that line broken in the file: it is ended
 * before the next write, so the next event is a line of its own, not glued
 * to the broken one. Lines not wholly written are the ones counted lost.
 */
void test_output_cut_line_ended(void)
{
	char path[] = "/tmp/mcpw-output-XXXXXX", err[128], pad[200];
	struct output *o = output__new("node");
	struct rlimit old, lim;
	struct output_stats st;
	struct stat sb;
	char *text = NULL, *p, *lines[8];
	size_t n = 0;
	int fd = mkstemp(path);

	if (!ASSERT_OK_PTR(o, "output") || !ASSERT_GE(fd, 0, "mkstemp"))
		return;
	close(fd);
	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	signal(SIGXFSZ, SIG_IGN);
	ASSERT_OK(getrlimit(RLIMIT_FSIZE, &old), "getrlimit");
	ASSERT_OK(output__add_jsonl(o, path, err, sizeof(err)), "events file");
	emit_n(o, 0, pad);
	ASSERT_OK(stat(path, &sb), "stat");
	lim = old;
	lim.rlim_cur = (rlim_t)sb.st_size + 20;
	ASSERT_OK(setrlimit(RLIMIT_FSIZE, &lim), "file size limit");
	emit_n(o, 1, pad);		/* 20 bytes of it fit */
	emit_n(o, 2, pad);		/* none of it: the file is at its limit */
	output__stats(o, &st);
	ASSERT_EQ(st.write_lost, 2, "the cut line and the next counted lost");
	ASSERT_EQ(st.write_errno, EFBIG, "the error");
	ASSERT_OK(setrlimit(RLIMIT_FSIZE, &old), "limit lifted");
	emit_n(o, 3, pad);
	output__stats(o, &st);
	ASSERT_EQ(st.write_lost, 2, "written again");
	output__free(o);

	text = slurp_file(path);
	for (p = text ? strtok(text, "\n") : NULL; p && n < 8; p = strtok(NULL, "\n"))
		lines[n++] = p;
	if (ASSERT_EQ(n, 3, "three lines: the first, the cut one, the last")) {
		json_t *a = json_loads(lines[0], 0, NULL), *c = json_loads(lines[2], 0, NULL);

		ASSERT_OK_PTR(json_object_get(a, "n"), "the first intact");
		ASSERT_OK_PTR(json_object_get(c, "n"), "the last intact");
		ASSERT_EQ(strlen(lines[1]), 20, "the cut line is what fitted");
		ASSERT_EQ(json_integer_value(json_object_get(c, "n")), 3,
			  "the next event a line of its own");
		json_decref(a);
		json_decref(c);
	}
	free(text);
	unlink(path);
}

/*
 * A pipe whose reader stops is never waited on (a blocking write would
 * stop the agent's loop, its verdicts and its heartbeat): what the pipe
 * does not take waits in the buffer, lines that find the buffer full are
 * counted lost (EAGAIN), none is cut, and once the reader reads again the
 * next events arrive.
 */
void test_output_pipe_never_blocks(void)
{
	char dir[] = "/tmp/mcpw-output-XXXXXX", path[64], err[128], pad[1024], buf[65536];
	struct output *o = output__new("node");
	struct output_stats st;
	struct output_line *l;
	size_t got = 0, lines = 0, bad = 0, start = 0, i;
	char *all = NULL;
	ssize_t n;
	int rd = -1, k;

	test__set_timeout(30);	/* a write that blocks would hang here */
	if (!ASSERT_OK_PTR(o, "output") || !ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp"))
		goto out;
	snprintf(path, sizeof(path), "%s/fifo", dir);
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	if (!ASSERT_OK(mkfifo(path, 0600), "mkfifo"))
		goto out;
	rd = open(path, O_RDONLY | O_NONBLOCK);
	if (!ASSERT_GE(rd, 0, "reader") ||
	    !ASSERT_OK(output__add_jsonl(o, path, err, sizeof(err)), "the fifo"))
		goto out;
	/* ~1 MB with nobody reading: the pipe takes 64 KiB, the buffer 64. */
	for (k = 0; k < 1000; k++) {
		l = output__begin(o, "request");
		oline__int(l, "n", k);
		oline__str(l, "pad", pad);
		output__end(o, l);
		if (k % 10 == 9)
			output__flush(o);
	}
	output__stats(o, &st);
	ASSERT_GE(st.write_lost, 800, "what found no room counted lost");
	ASSERT_EQ(st.write_errno, EAGAIN, "as the reader not keeping up");
	/* The reader reads again: everything that was not counted lost
	 * arrives, whole lines only, then the next event. */
	all = malloc(4 << 20);
	if (!ASSERT_OK_PTR(all, "buffer"))
		goto out;
	for (i = 0; i < 200; i++) {
		while ((n = read(rd, buf, sizeof(buf))) > 0 && got + (size_t)n <= (4u << 20)) {
			memcpy(all + got, buf, (size_t)n);
			got += (size_t)n;
		}
		output__flush(o);
		if (i == 100) {
			l = output__begin(o, "request");
			oline__int(l, "n", 1000);
			output__end(o, l);
			output__flush(o);
		}
		usleep(1000);
	}
	for (i = 0; i < got; i++) {
		if (all[i] != '\n')
			continue;
		json_t *ev = json_loadb(all + start, i - start, 0, NULL);

		lines++;
		bad += !ev;
		json_decref(ev);
		start = i + 1;
	}
	output__stats(o, &st);
	ASSERT_EQ(bad, 0, "no line cut");
	ASSERT_EQ(lines + st.write_lost, 1001, "every event arrived or was counted lost");
	ASSERT_TRUE(got > 10 && memmem(all, got, "\"n\":1000}", 9), "the next event arrived");
out:
	free(all);
	if (rd >= 0)
		close(rd);
	output__free(o);
	unlink(path);
	rmdir(dir);
}

/*
 * An events file rotated away (logrotate's create mode: renamed, or
 * removed) is opened again at its path: the lines before the rotation are
 * in the old file, the next ones in the new, none lost. One still in
 * place is left alone.
 */
void test_output_reopen_moved(void)
{
	char dir[] = "/tmp/mcpw-output-XXXXXX", path[64], moved[80], err[128];
	struct output *o = output__new("node");
	struct output_stats st;
	struct output_line *l;
	char *a = NULL, *b = NULL, *c = NULL;

	if (!ASSERT_OK_PTR(o, "output") || !ASSERT_OK_PTR(mkdtemp(dir), "mkdtemp"))
		goto out;
	snprintf(path, sizeof(path), "%s/events.jsonl", dir);
	snprintf(moved, sizeof(moved), "%s/events.jsonl.1", dir);
	if (!ASSERT_OK(output__add_jsonl(o, path, err, sizeof(err)), "events file"))
		goto out;
	l = output__begin(o, "request");
	oline__int(l, "n", 1);
	output__end(o, l);
	ASSERT_EQ(output__reopen_moved(o), 0, "in place: left alone");
	l = output__begin(o, "request");
	oline__int(l, "n", 2);
	output__end(o, l);		/* waits in the buffer across the rename */
	ASSERT_OK(rename(path, moved), "rotate: rename");
	ASSERT_EQ(output__reopen_moved(o), 1, "moved: opened again");
	l = output__begin(o, "request");
	oline__int(l, "n", 3);
	output__end(o, l);
	output__flush(o);
	b = slurp_file(path);
	ASSERT_TRUE(b && strstr(b, "\"n\":3}") && !strstr(b, "\"n\":2}"),
		    "the new file has the next line only");
	ASSERT_OK(unlink(path), "rotate: remove");
	ASSERT_EQ(output__reopen_moved(o), 1, "removed: opened again");
	l = output__begin(o, "request");
	oline__int(l, "n", 4);
	output__end(o, l);
	output__flush(o);
	output__stats(o, &st);
	ASSERT_EQ(st.reopened, 2, "counted");
	a = slurp_file(moved);
	ASSERT_STRSTR(a ?: "", "\"n\":1}", "the old file has the first lines");
	ASSERT_STRSTR(a ?: "", "\"n\":2}", "and what waited in the buffer");
	ASSERT_TRUE(a && !strstr(a, "\"n\":3}"), "not the later ones");
	ASSERT_EQ(output__reopen_moved(o), 0, "the new file stays");
out:
	output__free(o);
	c = slurp_file(path);
	ASSERT_STRSTR(c ?: "", "\"n\":4}", "the newest file has the newest line");
	free(a);
	free(b);
	free(c);
	unlink(path);
	unlink(moved);
	rmdir(dir);
}
