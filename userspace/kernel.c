// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel side lifecycle (libbpf-bootstrap shape): probe, open, set the
 * configuration, load, attach, and one cleanup path in reverse order.
 *
 * Tracepoints come in two flavours (tp_btf preferred, classic as the
 * fallback); exactly one flavour is loaded. Everything that attaches to a
 * cgroup attaches to --cgroup-root through a bpf_link, so closing the
 * daemon (or its death) detaches it. The SOCKHASH programs are attached to
 * maps this process owns, so they go away with it too.
 *
 * Re-injection: a few loopback TCP socket pairs owned by the daemon; one
 * end of each is in the `inj` SOCKHASH, whose sk_msg program redirects
 * every frame written to it into the named server socket's receive queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sched.h>
#include <stdarg.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/capability.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "kernel.h"
#include "log.h"
#include "mcpwarden.skel.h"

#define N_INJ		4
#define MAX_BPF_LINKS	24
#define INJ_FRAME_MAX	(60u << 10)

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif
#ifndef TRACEFS_MAGIC
#define TRACEFS_MAGIC 0x74726163
#endif

struct kernel {
	struct mcpwarden_bpf *skel;
	struct bpf_link *links[MAX_BPF_LINKS];
	size_t n_links;
	struct bpf_link *seed_link;
	struct bpf_link *destroy_link;
	struct bpf_link *stdin_links[2];
	int cgroup_fd;
	int own_netns_fd;
	int inj_fd[N_INJ];
	int inj_peer_fd[N_INJ];
	unsigned int inj_next;
	int ncpus;
	bool btf_flavour;
	bool sk_skb_attached, over_attached, inj_msg_attached;
	uint32_t max_conns;		/* the connection tables' size */
	bool no_diag_destroy;		/* sock_diag cannot end sockets here */
	int diag_fd;			/* sock_diag socket in our namespace, -1 */
	uint32_t diag_seq;
	bool verdict_by_seq;		/* srv_verdict, else srv_verdict_sum */
	char *pin_dir;
	bool adopted;
	bool egress_gen_read;		/* egress_gen holds the map's value */
	__u32 egress_gen;
	struct mcpw_loop_state *loop_state;	/* mapped, or NULL */
};

/*
 * Makes srv_egress look at every connection's verdict again (see
 * MCPW_ATTR_EGRESS_DONE): called after anything that may open a response
 * window, before the bytes it concerns are released. The value is read
 * from the map the first time, so a daemon that reuses a previous one's
 * pinned maps never repeats a generation the sockets still carry.
 */
static int bump_egress_gen(struct kernel *k)
{
	int fd = bpf_map__fd(k->skel->maps.egress_gen);
	__u32 key = 0, gen;

	if (!k->egress_gen_read) {
		if (bpf_map_lookup_elem(fd, &key, &k->egress_gen))
			return -errno;
		k->egress_gen_read = true;
	}
	gen = k->egress_gen + 1;
	if (bpf_map_update_elem(fd, &key, &gen, BPF_ANY))
		return -errno;
	k->egress_gen = gen;
	return 0;
}

static void set_err(struct kernel_error *err, bool missing, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(struct kernel_error *err, bool missing, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	err->missing_feature = missing;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

/* ---- probes ----------------------------------------------------------- */

static const struct {
	int cap;
	const char *name;
} needed_caps[] = {
	{ 39, "CAP_BPF" },
	{ 38, "CAP_PERFMON" },
	{ 12, "CAP_NET_ADMIN" },
	{ 21, "CAP_SYS_ADMIN" },
	{ 19, "CAP_SYS_PTRACE" },
};

static int check_caps(struct kernel_error *err)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = {};
	char missing[256] = "";
	size_t i;

	if (syscall(SYS_capget, &hdr, data))
		return 0;	/* cannot tell: let loading say */
	for (i = 0; i < sizeof(needed_caps) / sizeof(needed_caps[0]); i++) {
		int c = needed_caps[i].cap;

		if (!(data[c / 32].effective & (1u << (c % 32)))) {
			if (missing[0])
				strncat(missing, ", ", sizeof(missing) - strlen(missing) - 1);
			strncat(missing, needed_caps[i].name, sizeof(missing) - strlen(missing) - 1);
		}
	}
	if (missing[0]) {
		set_err(err, true, "missing privileges: %s. Run mcpwarden as root, or grant "
			"these capabilities (a Kubernetes DaemonSet: securityContext.privileged "
			"or capabilities.add)", missing);
		return -EPERM;
	}
	return 0;
}

static bool fs_is(const char *path, long magic)
{
	struct statfs st;

	return statfs(path, &st) == 0 && (long)st.f_type == magic;
}

int kernel__probe(struct kernel_error *err)
{
	int ret;

	ret = check_caps(err);
	if (ret)
		return ret;
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		set_err(err, true, "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): "
			"mcpwarden needs a kernel built with CONFIG_DEBUG_INFO_BTF=y");
		return -ENOTSUP;
	}
	/* tracefs: only the classic tracepoint fallback needs it. */
	if (!fs_is("/sys/kernel/tracing", TRACEFS_MAGIC)) {
		if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL))
			pr_debug("tracefs is not mounted at /sys/kernel/tracing and mounting it "
				 "failed (%s); only tp_btf tracepoints can be used", strerror(errno));
		else
			pr_info("mounted tracefs at /sys/kernel/tracing");
	}
	/* bpffs: pinned state for restarts without a gap. */
	if (!fs_is("/sys/fs/bpf", BPF_FS_MAGIC)) {
		if (mount("bpf", "/sys/fs/bpf", "bpf", 0, NULL))
			pr_debug("bpffs is not mounted at /sys/fs/bpf and mounting it failed (%s)",
				 strerror(errno));
		else
			pr_info("mounted bpffs at /sys/fs/bpf");
	}
	return 0;
}

/* ---- maps ------------------------------------------------------------- */

int kernel__set_config(struct kernel *k, const struct mcpw_config *cfg)
{
	__u32 key = 0;

	if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.mcpw_cfg), &key, cfg, BPF_ANY))
		return -errno;
	return bump_egress_gen(k);
}

/*
 * Makes a set-like map (key -> 1) hold exactly keys: the new keys are added
 * first, then the others removed, so a key that stays is never briefly
 * absent (a protected port never unprotected during a reload).
 */
static int sync_set(int fd, const void *keys, size_t n, size_t key_size)
{
	unsigned char key[32], next[32];
	__u32 one = 1;
	size_t i;
	bool more;

	if (key_size > sizeof(key))
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (bpf_map_update_elem(fd, (const char *)keys + i * key_size, &one, BPF_ANY))
			return -errno;
	more = bpf_map_get_next_key(fd, NULL, key) == 0;
	while (more) {
		bool keep = false;

		more = bpf_map_get_next_key(fd, key, next) == 0;
		for (i = 0; i < n && !keep; i++)
			keep = memcmp((const char *)keys + i * key_size, key, key_size) == 0;
		if (!keep)
			bpf_map_delete_elem(fd, key);
		memcpy(key, next, key_size);
	}
	return 0;
}

/* Empties a map (keys of at most 32 bytes). */
static void clear_map(int fd)
{
	unsigned char key[32];

	while (bpf_map_get_next_key(fd, NULL, key) == 0)
		if (bpf_map_delete_elem(fd, key))
			break;
}

/* The ports as the bitmap every program asks (port_bits): every word
 * written, so that a reload (or an adopted map) keeps no stale bit. */
int kernel__set_ports(struct kernel *k, const uint16_t *ports, size_t n)
{
	static __u32 keys[MCPW_PORT_WORDS];
	__u64 words[MCPW_PORT_WORDS] = {};
	__u32 count = MCPW_PORT_WORDS, i;

	for (i = 0; i < MCPW_PORT_WORDS; i++)
		keys[i] = i;
	for (i = 0; i < n; i++)
		words[ports[i] >> 6] |= 1ull << (ports[i] & 63);
	if (bpf_map_update_batch(bpf_map__fd(k->skel->maps.port_bits), keys, words, &count, NULL))
		return -errno;
	return 0;
}

int kernel__heartbeat(struct kernel *k)
{
	struct timespec ts;
	__u32 key = 0;
	__u64 now;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
	if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.heartbeat), &key, &now, BPF_ANY))
		return -errno;
	return 0;
}

int kernel__set_verdict(struct kernel *k, uint64_t cookie, const struct mcpw_conn_verdict *v)
{
	if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.conn_verdict), &cookie, v, BPF_ANY))
		return -errno;
	return v->egress_copy_until ? bump_egress_gen(k) : 0;
}

int kernel__get_verdict(struct kernel *k, uint64_t cookie, struct mcpw_conn_verdict *v)
{
	if (bpf_map_lookup_elem(bpf_map__fd(k->skel->maps.conn_verdict), &cookie, v))
		return -errno;
	return 0;
}

int kernel__del_verdict(struct kernel *k, uint64_t cookie)
{
	if (bpf_map_delete_elem(bpf_map__fd(k->skel->maps.conn_verdict), &cookie)) {
		if (errno != ENOENT)
			return -errno;
		return 0;
	}
	return bump_egress_gen(k);	/* back to the default window */
}

int kernel__get_state(struct kernel *k, uint64_t cookie, struct mcpw_conn_state *st)
{
	if (bpf_map_lookup_elem(bpf_map__fd(k->skel->maps.conn_state), &cookie, st))
		return -errno;
	return 0;
}

#define STATE_BATCH 256

int kernel__each_state(struct kernel *k, kernel_state_fn fn, void *ctx)
{
	int fd = bpf_map__fd(k->skel->maps.conn_state);
	struct mcpw_conn_state *vals = malloc(STATE_BATCH * sizeof(*vals));
	uint64_t *keys = malloc(STATE_BATCH * sizeof(*keys));
	/* A hash map's batch token is a bucket index. */
	uint64_t token = 0;
	bool first = true;
	int err = 0;
	__u32 i;

	while (keys && vals) {
		__u32 n = STATE_BATCH;
		bool done;

		if (bpf_map_lookup_batch(fd, first ? NULL : &token, &token, keys, vals, &n, NULL)) {
			if (errno != ENOENT) {
				err = -errno;
				break;
			}
			done = true;	/* the last batch, n entries in it */
		} else {
			done = false;
		}
		for (i = 0; i < n && i < STATE_BATCH; i++)
			fn(ctx, keys[i], &vals[i]);
		if (done)
			break;
		first = false;
	}
	if (!keys || !vals)
		err = -ENOMEM;
	free(keys);
	free(vals);
	return err;
}

int kernel__set_fast(struct kernel *k, uint64_t cookie, const struct mcpw_fast_tmpl *t)
{
	if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.fast_tmpl), &cookie, t, BPF_ANY))
		return -errno;
	return 0;
}

int kernel__del_fast(struct kernel *k, uint64_t cookie)
{
	if (bpf_map_delete_elem(bpf_map__fd(k->skel->maps.fast_tmpl), &cookie) && errno != ENOENT)
		return -errno;
	return 0;
}

void kernel__clear_fast(struct kernel *k)
{
	clear_map(bpf_map__fd(k->skel->maps.fast_tmpl));
}

/* Entries of a hash map (keys of at most 32 bytes, as clear_map and
 * sync_set take), walked key by key. A key deleted under the walk sends
 * it back to the first one: at most max steps, so that churn can make the
 * count approximate but never endless. */
static size_t count_keys(const struct bpf_map *map)
{
	unsigned char key[32], next[32];
	size_t n = 0, max = bpf_map__max_entries(map);
	int fd = bpf_map__fd(map);
	void *prev = NULL;

	while (n < max && bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, sizeof(key));
		prev = key;
		n++;
	}
	return n;
}

void kernel__count_templates(struct kernel *k, size_t *conns, size_t *procs)
{
	/* count_keys' buffers hold both maps' keys. */
	_Static_assert(sizeof(__u64) <= 32 && sizeof(struct mcpw_inst_key) <= 32,
		       "a template map's key outgrew count_keys");

	*conns = count_keys(k->skel->maps.fast_tmpl);
	*procs = count_keys(k->skel->maps.inst_tmpl);
}

int kernel__set_inst(struct kernel *k, const struct mcpw_inst_key *key,
		     const struct mcpw_fast_tmpl *t)
{
	if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.inst_tmpl), key, t, BPF_ANY))
		return -errno;
	return 0;
}

void kernel__del_inst(struct kernel *k, const struct mcpw_inst_key *key)
{
	bpf_map_delete_elem(bpf_map__fd(k->skel->maps.inst_tmpl), key);
}

void kernel__clear_inst(struct kernel *k)
{
	clear_map(bpf_map__fd(k->skel->maps.inst_tmpl));
}

/* The highest u32 at byte `at` of a map's values, walked as count_keys
 * walks (at most max steps); val holds one value. */
static uint32_t max_field(const struct bpf_map *map, void *val, size_t at)
{
	unsigned char key[32], next[32];
	size_t n = 0, max = bpf_map__max_entries(map);
	int fd = bpf_map__fd(map);
	void *prev = NULL;
	uint32_t v, top = 0;

	while (n++ < max && bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, sizeof(key));
		prev = key;
		if (bpf_map_lookup_elem(fd, key, val) == 0) {
			memcpy(&v, (char *)val + at, sizeof(v));
			if (v > top)
				top = v;
		}
	}
	return top;
}

static void max_state_gen(void *ctx, uint64_t cookie, const struct mcpw_conn_state *st)
{
	uint32_t *top = ctx;

	(void)cookie;
	if (st->fast_gen > *top)
		*top = st->fast_gen;
}

uint32_t kernel__max_template_gen(struct kernel *k)
{
	struct mcpw_fast_tmpl *t = malloc(sizeof(*t));
	uint32_t g[3] = {};

	_Static_assert(sizeof(__u64) <= 32 && sizeof(struct mcpw_inst_key) <= 32,
		       "a template map's key outgrew max_field");
	if (!t)
		return UINT32_MAX / 2;	/* far from any a restart meets */
	g[0] = max_field(k->skel->maps.fast_tmpl, t, offsetof(struct mcpw_fast_tmpl, gen));
	g[1] = max_field(k->skel->maps.inst_tmpl, t, offsetof(struct mcpw_fast_tmpl, gen));
	free(t);
	/* Connections' states in batches: there may be tens of thousands. */
	if (kernel__each_state(k, max_state_gen, &g[2]))
		return UINT32_MAX / 2;
	return g[0] > g[1] ? (g[0] > g[2] ? g[0] : g[2]) : (g[1] > g[2] ? g[1] : g[2]);
}

int kernel__set_stdio_exes(struct kernel *k, const struct mcpw_file_key *keys, size_t n)
{
	return sync_set(bpf_map__fd(k->skel->maps.stdio_exes), keys, n, sizeof(*keys));
}

int kernel__stdin_attach(struct kernel *k, bool on)
{
	int i;

	if (!on) {
		for (i = 0; i < 2; i++) {
			bpf_link__destroy(k->stdin_links[i]);
			k->stdin_links[i] = NULL;
		}
		return 0;
	}
	if (k->stdin_links[0])
		return 0;
	k->stdin_links[0] = bpf_program__attach(k->skel->progs.stdin_enter);
	k->stdin_links[1] = k->stdin_links[0] ? bpf_program__attach(k->skel->progs.stdin_exit) : NULL;
	if (!k->stdin_links[1]) {
		int err = -errno;

		kernel__stdin_attach(k, false);
		return err ? err : -EINVAL;
	}
	return 0;
}

int kernel__stdin_watch(struct kernel *k, uint32_t tgid, uint32_t budget)
{
	if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.stdio_watch), &tgid, &budget, BPF_ANY))
		return -errno;
	return 0;
}

void kernel__stdin_unwatch(struct kernel *k, uint32_t tgid)
{
	bpf_map_delete_elem(bpf_map__fd(k->skel->maps.stdio_watch), &tgid);
}

size_t kernel__stdio_stopped(struct kernel *k, uint32_t *tgids, uint64_t *starts, size_t max)
{
	int fd = bpf_map__fd(k->skel->maps.stdio_stopped);
	__u32 key, next;
	size_t n = 0;
	bool more = bpf_map_get_next_key(fd, NULL, &key) == 0;

	while (more && n < max) {
		more = bpf_map_get_next_key(fd, &key, &next) == 0;
		if (bpf_map_lookup_elem(fd, &key, &starts[n]) == 0)
			tgids[n++] = key;
		key = next;
	}
	return n;
}

void kernel__stdio_done(struct kernel *k, uint32_t tgid)
{
	bpf_map_delete_elem(bpf_map__fd(k->skel->maps.stdio_stopped), &tgid);
}

int kernel__lookup_tuple(struct kernel *k, const struct mcpw_tuple_key *key,
			 struct mcpw_sock_attr *out)
{
	if (bpf_map_lookup_elem(bpf_map__fd(k->skel->maps.tuple_attr), key, out))
		return -errno;
	return 0;
}

size_t kernel__prog_fds(struct kernel *k, int *fds, size_t max)
{
	struct bpf_program *prog;
	size_t n = 0;

	bpf_object__for_each_program(prog, k->skel->obj) {
		int fd = bpf_program__fd(prog);

		if (fd >= 0 && n < max)
			fds[n++] = fd;
	}
	return n;
}

int kernel__counters(struct kernel *k, uint64_t *out)
{
	int fd = bpf_map__fd(k->skel->maps.counters);
	__u64 *vals;
	__u32 key;
	int cpu;

	vals = calloc((size_t)k->ncpus, sizeof(*vals));
	if (!vals)
		return -ENOMEM;
	for (key = 0; key < MCPW_CNT__MAX; key++) {
		out[key] = 0;
		if (bpf_map_lookup_elem(fd, &key, vals))
			continue;
		for (cpu = 0; cpu < k->ncpus; cpu++)
			out[key] += vals[cpu];
	}
	free(vals);
	return 0;
}

int kernel__wakers_fd(const struct kernel *k)
{
	return bpf_map__fd(k->skel->maps.wakers);
}

struct mcpw_loop_state *kernel__loop_state(struct kernel *k)
{
	void *p;

	if (k->loop_state)
		return k->loop_state;
	p = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE, MAP_SHARED,
		 bpf_map__fd(k->skel->maps.loop_state), 0);
	if (p == MAP_FAILED)
		return NULL;
	k->loop_state = p;
	return p;
}

struct rings *kernel__rings(struct kernel *k, ring_fn on_event, ring_fn on_data, void *ctx)
{
	struct rings *r = rings__new();
	int err;

	if (!r)
		return NULL;
	err = rings__add(r, bpf_map__fd(k->skel->maps.events), on_event, ctx);
	if (!err)
		err = rings__add(r, bpf_map__fd(k->skel->maps.data), on_data, ctx);
	if (err) {
		rings__free(r);
		errno = -err;
		return NULL;
	}
	return r;
}

/* ---- re-injection ----------------------------------------------------- */

static int make_inj_pair(int *client_fd, int *peer_fd)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	struct timeval tv = { .tv_sec = 1 };
	int lfd, cfd = -1, pfd = -1, one = 1, err;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen))
		goto fail;
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&addr, sizeof(addr)))
		goto fail;
	pfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (pfd < 0)
		goto fail;
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Never wait forever on a stuck target. */
	setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	close(lfd);
	*client_fd = cfd;
	*peer_fd = pfd;
	return 0;
fail:
	err = -errno;
	if (cfd >= 0)
		close(cfd);
	if (pfd >= 0)
		close(pfd);
	close(lfd);
	return err ? err : -EIO;
}

int kernel__inject(struct kernel *k, uint64_t cookie, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		size_t n = len > INJ_FRAME_MAX ? INJ_FRAME_MAX : len;
		struct mcpw_inject_hdr h = { .cookie = cookie, .len = (__u32)n,
					     .magic = MCPW_INJECT_MAGIC };
		struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, n } };
		int fd = k->inj_fd[k->inj_next++ % N_INJ];
		size_t want = sizeof(h) + n, done = 0;

		/* A frame must be finished on the socket it was started on:
		 * the kernel applies its verdict to the rest of it. */
		while (done < want) {
			ssize_t w = writev(fd, iov, 2);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EACCES)
					return -ENOTCONN;	/* target socket gone */
				return done ? -EIO : -errno;
			}
			done += (size_t)w;
			while (w > 0) {
				size_t take = (size_t)w < iov[0].iov_len ? (size_t)w : iov[0].iov_len;

				iov[0].iov_base = (char *)iov[0].iov_base + take;
				iov[0].iov_len -= take;
				w -= (ssize_t)take;
				if (!iov[0].iov_len) {
					iov[0] = iov[1];
					iov[1].iov_len = 0;
				}
			}
		}
		p += n;
		len -= n;
	}
	return 0;
}

/* ---- iterators -------------------------------------------------------- */

static int enter_netns(struct kernel *k, int netns_fd)
{
	if (netns_fd < 0)
		return 0;
	if (setns(netns_fd, CLONE_NEWNET))
		return -errno;
	return 1;
}

static void leave_netns(struct kernel *k, int entered)
{
	if (entered > 0 && setns(k->own_netns_fd, CLONE_NEWNET))
		pr_err("cannot return to the daemon's network namespace: %s", strerror(errno));
}

int kernel__seed(struct kernel *k, int netns_fd, kernel_seed_fn fn, void *ctx)
{
	struct mcpw_conn_event e;
	int entered, iter_fd, err = 0;
	ssize_t n;

	entered = enter_netns(k, netns_fd);
	if (entered < 0)
		return entered;
	iter_fd = bpf_iter_create(bpf_link__fd(k->seed_link));
	leave_netns(k, entered);
	if (iter_fd < 0)
		return -errno;
	for (;;) {
		n = read(iter_fd, &e, sizeof(e));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		if (n == 0)
			break;
		if ((size_t)n != sizeof(e)) {
			err = -EIO;
			break;
		}
		fn(ctx, &e);
	}
	close(iter_fd);
	return err;
}

int kernel__destroy(struct kernel *k, const uint64_t *cookies, size_t n, int netns_fd)
{
	int map_fd = bpf_map__fd(k->skel->maps.to_destroy);
	int entered, iter_fd, err = 0;
	char buf[64];
	__u32 one = 1;
	size_t i;

	if (!k->destroy_link)
		return -ENOTSUP;
	for (i = 0; i < n; i++)
		if (bpf_map_update_elem(map_fd, &cookies[i], &one, BPF_ANY))
			err = -errno;
	entered = enter_netns(k, netns_fd);
	if (entered < 0)
		return entered;
	iter_fd = bpf_iter_create(bpf_link__fd(k->destroy_link));
	leave_netns(k, entered);
	if (iter_fd < 0)
		return -errno;
	while (read(iter_fd, buf, sizeof(buf)) > 0)
		;
	close(iter_fd);
	/* Whatever was not found there stays for no one: clean up. */
	for (i = 0; i < n; i++)
		bpf_map_delete_elem(map_fd, &cookies[i]);
	return err;
}

/*
 * Ending one socket by its tuple: sock_diag's SOCK_DESTROY, a hash lookup
 * (checked against the cookie) where the iterator walks every bucket of
 * the namespace's TCP table. Both end the socket with the same tcp_abort.
 * Needs CONFIG_INET_DIAG_DESTROY: without it (-EOPNOTSUPP) the kernel
 * says so once and the walk does it all.
 */
static int diag_destroy_one(struct kernel *k, int fd, const struct mcpw_tuple *t, uint64_t cookie)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 r;
	} req = {
		.nlh = {
			.nlmsg_len = sizeof(req), .nlmsg_type = SOCK_DESTROY,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK, .nlmsg_seq = ++k->diag_seq,
		},
		.r = {
			.sdiag_family = (__u8)t->family, .sdiag_protocol = IPPROTO_TCP,
			.idiag_states = ~0u,
			.id = {
				.idiag_sport = htons(t->sport), .idiag_dport = htons(t->dport),
				.idiag_cookie = { (__u32)cookie, (__u32)(cookie >> 32) },
			},
		},
	};
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	union {
		struct nlmsghdr h;
		char buf[256];
	} ack;
	struct nlmsgerr *e;
	ssize_t n;

	if (t->family == AF_INET) {
		memcpy(req.r.id.idiag_src, t->saddr + 12, 4);
		memcpy(req.r.id.idiag_dst, t->daddr + 12, 4);
	} else if (t->family == AF_INET6) {
		memcpy(req.r.id.idiag_src, t->saddr, 16);
		memcpy(req.r.id.idiag_dst, t->daddr, 16);
	} else {
		return -EAFNOSUPPORT;
	}
	if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&nl, sizeof(nl)) < 0)
		return -errno;
	for (;;) {
		n = recv(fd, &ack, sizeof(ack), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if ((size_t)n < sizeof(ack.h) + sizeof(*e) || ack.h.nlmsg_type != NLMSG_ERROR)
			return -EIO;
		if (ack.h.nlmsg_seq != req.nlh.nlmsg_seq)
			continue;	/* a stale answer */
		e = NLMSG_DATA(&ack.h);
		return e->error;
	}
}

/* A NETLINK_SOCK_DIAG socket in the current namespace, answers bounded. */
static int diag_socket(void)
{
	struct timeval tv = { .tv_sec = 1 };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

int kernel__end_socket(struct kernel *k, uint64_t cookie, const struct mcpw_tuple *t,
		       int netns_fd)
{
	int entered, fd, err;

	if (k->no_diag_destroy)
		return -EOPNOTSUPP;
	if (netns_fd < 0) {
		/* Ours: one socket kept for every refusal. */
		if (k->diag_fd < 0)
			k->diag_fd = diag_socket();
		fd = k->diag_fd;
		if (fd < 0)
			return -errno;
	} else {
		entered = enter_netns(k, netns_fd);
		if (entered < 0)
			return entered;
		fd = diag_socket();
		err = -errno;
		leave_netns(k, entered);
		if (fd < 0)
			return err;
	}
	err = diag_destroy_one(k, fd, t, cookie);
	if (fd != k->diag_fd)
		close(fd);
	if (err == -EOPNOTSUPP) {
		pr_info("this kernel cannot end a socket by its address "
			"(CONFIG_INET_DIAG_DESTROY): denied connections are ended by walking "
			"their namespace's sockets");
		k->no_diag_destroy = true;
	}
	return err;
}

/* ---- open / close ----------------------------------------------------- */

static void choose_flavour(struct mcpwarden_bpf *skel, bool btf)
{
	bpf_program__set_autoload(skel->progs.exec_btf, btf);
	bpf_program__set_autoload(skel->progs.fork_btf, btf);
	bpf_program__set_autoload(skel->progs.exit_btf, btf);
	bpf_program__set_autoload(skel->progs.state_btf, btf);
	bpf_program__set_autoload(skel->progs.exec_tp, !btf);
	bpf_program__set_autoload(skel->progs.fork_tp, !btf);
	bpf_program__set_autoload(skel->progs.exit_tp, !btf);
	bpf_program__set_autoload(skel->progs.state_tp, !btf);
}

/* ---- pinning ----------------------------------------------------------- */

/*
 * Pinned layout: PIN_DIR/map_NAME for every map (libbpf reuses a pinned map
 * of the same shape at load, so a restarted daemon continues with the same
 * rings, verdicts and SOCKHASH: held bytes still in the ring are judged by
 * the new daemon) and PIN_DIR/link_NAME for every link (cgroup links are
 * adopted with an atomic program update; tracepoint links are replaced
 * attach-first, so nothing is ever unattached).
 */
static int pin_maps(struct kernel *k)
{
	struct bpf_map *map;
	char path[PATH_MAX];
	int err;

	bpf_object__for_each_map(map, k->skel->obj) {
		const char *name = bpf_map__name(map);

		if (name[0] == '.' || strchr(name, '.'))
			continue;	/* internal (.rodata, .bss) */
		snprintf(path, sizeof(path), "%s/map_%s", k->pin_dir, name);
		if (access(path, F_OK) == 0)
			k->adopted = true;
		err = bpf_map__set_pin_path(map, path);
		if (err)
			return err;
	}
	return 0;
}

static int mkdir_p(const char *dir)
{
	char buf[PATH_MAX], *p;

	snprintf(buf, sizeof(buf), "%s", dir);
	for (p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

static void link_pin_path(const struct kernel *k, const struct bpf_program *prog, char *buf,
			  size_t len)
{
	snprintf(buf, len, "%s/link_%s", k->pin_dir, bpf_program__name(prog));
}

/*
 * Attaches prog through `attach` unless a previous daemon's pinned link can
 * be adopted. Returns the link (owned by k) or NULL with errno set.
 */
static struct bpf_link *attach_pinned(struct kernel *k, struct bpf_program *prog,
				      struct bpf_link *(*attach)(struct kernel *, struct bpf_program *),
				      bool updatable)
{
	struct bpf_link *old = NULL, *link;
	char path[PATH_MAX];

	if (!k->pin_dir)
		return attach(k, prog);
	link_pin_path(k, prog, path, sizeof(path));
	if (access(path, F_OK) == 0)
		old = bpf_link__open(path);
	if (old && updatable && bpf_link__update_program(old, prog) == 0) {
		k->adopted = true;
		return old;	/* same attachment, new program, no gap */
	}
	/* Attach the new one before letting the old one go. */
	link = attach(k, prog);
	if (!link) {
		int e = errno;

		if (old) {
			bpf_link__disconnect(old);
			bpf_link__destroy(old);
		}
		errno = e;
		return NULL;
	}
	if (old) {
		unlink(path);
		bpf_link__destroy(old);	/* detaches the old attachment */
		k->adopted = true;
	}
	if (bpf_link__pin(link, path))
		pr_warn("cannot pin %s: %s (enforcement will stop with the daemon)", path,
			strerror(errno));
	return link;
}

static struct bpf_link *attach_tp(struct kernel *k, struct bpf_program *prog)
{
	return bpf_program__attach(prog);
}

static struct bpf_link *attach_cg(struct kernel *k, struct bpf_program *prog)
{
	return bpf_program__attach_cgroup(prog, k->cgroup_fd);
}

bool kernel__adopted(const struct kernel *k)
{
	return k->adopted;
}

int kernel__cleanup_pins(const char *pin_dir)
{
	struct dirent *de;
	DIR *d = opendir(pin_dir);
	int err = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	/* Links first: destroying an opened pinned link detaches it. */
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		struct bpf_link *link;

		if (strncmp(de->d_name, "link_", 5) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", pin_dir, de->d_name);
		link = bpf_link__open(path);
		if (link) {
			bpf_link_detach(bpf_link__fd(link));
			bpf_link__destroy(link);
		}
		if (unlink(path))
			err = -errno;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		char path[PATH_MAX];

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", pin_dir, de->d_name);
		if (unlink(path) && errno != ENOENT)
			err = -errno;
	}
	closedir(d);
	if (rmdir(pin_dir) && errno != ENOENT) {
		err = -errno;
	} else {
		/* The directory of every agent's pins goes with the last. */
		char parent[PATH_MAX], *slash;

		snprintf(parent, sizeof(parent), "%s", pin_dir);
		slash = strrchr(parent, '/');
		if (slash && slash != parent) {
			*slash = '\0';
			rmdir(parent);	/* ENOTEMPTY: another agent's are there */
		}
	}
	return err;
}

/* Whether the running kernel has both kfuncs (its BTF names them). */
static bool kernel_has_kfuncs(const char *a, const char *b)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	bool has;

	if (!vmlinux)
		return false;
	has = btf__find_by_name_kind(vmlinux, a, BTF_KIND_FUNC) >= 0 &&
	      btf__find_by_name_kind(vmlinux, b, BTF_KIND_FUNC) >= 0;
	btf__free(vmlinux);
	return has;
}

/* The stream verdict program this kernel runs (see payload.bpf.c). */
static struct bpf_program *verdict_prog(const struct kernel *k)
{
	return k->verdict_by_seq ? k->skel->progs.srv_verdict : k->skel->progs.srv_verdict_sum;
}

/* The tables a protected connection takes an entry of: --max-connections. */
static int size_conn_tables(struct kernel *k)
{
	struct bpf_map *maps[] = {
		k->skel->maps.srv, k->skel->maps.conn_state, k->skel->maps.conn_verdict,
		k->skel->maps.fast_tmpl,
	};
	size_t i;
	int err;

	for (i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		err = bpf_map__set_max_entries(maps[i], k->max_conns);
		if (err)
			return err;
	}
	/* Over capacity: as much room again, up to MCPW_MAX_OVERFLOW. */
	return bpf_map__set_max_entries(k->skel->maps.srv_over,
					k->max_conns < MCPW_MAX_OVERFLOW ? k->max_conns :
					MCPW_MAX_OVERFLOW);
}

/*
 * A slot for each possible CPU's waker ring (waker.h). A ring is a page,
 * whatever the page size: the map is made for rings like this one (fd,
 * closed after the load) rather than for the object's 4 KiB template.
 */
static int size_wakers(struct kernel *k, int *tmpl_fd)
{
	int err = bpf_map__set_max_entries(k->skel->maps.wakers, (__u32)k->ncpus);

	if (err)
		return err;
	*tmpl_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "mcpw_wake", 0, 0,
				  (__u32)sysconf(_SC_PAGESIZE), NULL);
	if (*tmpl_fd < 0)
		return -errno;
	return bpf_map__set_inner_map_fd(k->skel->maps.wakers, *tmpl_fd);
}

static int open_and_load(struct kernel *k, bool btf, bool with_destroy)
{
	int err, wake_tmpl = -1;

	k->skel = mcpwarden_bpf__open();
	if (!k->skel)
		return -errno ? -errno : -EINVAL;
	choose_flavour(k->skel, btf);
	bpf_program__set_autoload(k->skel->progs.destroy_conns, with_destroy);
	bpf_program__set_autoload(k->skel->progs.srv_verdict, k->verdict_by_seq);
	bpf_program__set_autoload(k->skel->progs.srv_verdict_sum, !k->verdict_by_seq);
	err = size_conn_tables(k);
	if (!err)
		err = size_wakers(k, &wake_tmpl);
	if (!err && k->pin_dir)
		err = pin_maps(k);
	if (!err)
		err = mcpwarden_bpf__load(k->skel);
	if (wake_tmpl >= 0)
		close(wake_tmpl);
	if (err) {
		mcpwarden_bpf__destroy(k->skel);
		k->skel = NULL;
	}
	k->btf_flavour = btf;
	return err;
}

static int add_link(struct kernel *k, struct bpf_link *link, const char *what,
		    struct kernel_error *err)
{
	if (!link) {
		int e = -errno;

		set_err(err, false, "cannot attach %s: %s", what, strerror(-e));
		return e ? e : -EINVAL;
	}
	if (k->n_links == MAX_BPF_LINKS) {
		bpf_link__destroy(link);
		set_err(err, false, "too many links");
		return -E2BIG;
	}
	k->links[k->n_links++] = link;
	return 0;
}

static int attach_all(struct kernel *k, struct kernel_error *err)
{
	struct mcpwarden_bpf *s = k->skel;
	struct bpf_program *tps[4];
	struct bpf_program *cg[] = {
		s->progs.connect4, s->progs.connect6, s->progs.bind4, s->progs.bind6,
		s->progs.on_sockops, s->progs.srv_egress,
	};
	size_t i;
	int ret;

	if (k->btf_flavour) {
		tps[0] = s->progs.exec_btf;
		tps[1] = s->progs.fork_btf;
		tps[2] = s->progs.exit_btf;
		tps[3] = s->progs.state_btf;
	} else {
		tps[0] = s->progs.exec_tp;
		tps[1] = s->progs.fork_tp;
		tps[2] = s->progs.exit_tp;
		tps[3] = s->progs.state_tp;
	}
	/* Payload programs first: a socket joins `srv` with its programs,
	 * so they must be in place before sockops can add one. */
	if (bpf_prog_attach(bpf_program__fd(verdict_prog(k)), bpf_map__fd(s->maps.srv),
			    BPF_SK_SKB_STREAM_VERDICT, 0)) {
		set_err(err, true, "cannot attach the sk_skb stream verdict program to a "
			"SOCKHASH (%s): the kernel needs CONFIG_BPF_STREAM_PARSER", strerror(errno));
		return -errno;
	}
	k->sk_skb_attached = true;
	if (bpf_prog_attach(bpf_program__fd(s->progs.over_verdict), bpf_map__fd(s->maps.srv_over),
			    BPF_SK_SKB_STREAM_VERDICT, 0)) {
		set_err(err, true, "cannot attach the over-capacity stream verdict program: %s",
			strerror(errno));
		return -errno;
	}
	k->over_attached = true;
	if (bpf_prog_attach(bpf_program__fd(s->progs.inj_msg), bpf_map__fd(s->maps.inj),
			    BPF_SK_MSG_VERDICT, 0)) {
		set_err(err, true, "cannot attach the re-injection sk_msg program: %s",
			strerror(errno));
		return -errno;
	}
	k->inj_msg_attached = true;

	for (i = 0; i < 4; i++) {
		ret = add_link(k, attach_pinned(k, tps[i], attach_tp, false),
			       bpf_program__name(tps[i]), err);
		if (ret)
			return ret;
	}
	for (i = 0; i < sizeof(cg) / sizeof(cg[0]); i++) {
		ret = add_link(k, attach_pinned(k, cg[i], attach_cg, true),
			       bpf_program__name(cg[i]), err);
		if (ret) {
			err->missing_feature = true;
			return ret;
		}
	}
	k->seed_link = bpf_program__attach_iter(s->progs.seed_conns, NULL);
	if (!k->seed_link) {
		set_err(err, true, "cannot attach the TCP socket iterator: %s", strerror(errno));
		return -errno;
	}
	if (bpf_program__autoload(s->progs.destroy_conns)) {
		k->destroy_link = bpf_program__attach_iter(s->progs.destroy_conns, NULL);
		if (!k->destroy_link)
			pr_warn("cannot attach the socket destroyer (%s): denied connections "
				"will be starved, not reset", strerror(errno));
	}
	return 0;
}

static int setup_inj(struct kernel *k, struct kernel_error *err)
{
	int map_fd = bpf_map__fd(k->skel->maps.inj);
	__u32 key;
	int ret;

	for (key = 0; key < N_INJ; key++) {
		__u64 fd;

		ret = make_inj_pair(&k->inj_fd[key], &k->inj_peer_fd[key]);
		if (ret) {
			set_err(err, false, "cannot create the re-injection sockets: %s",
				strerror(-ret));
			return ret;
		}
		fd = (__u64)k->inj_fd[key];	/* SOCKHASH values are 8 bytes */
		if (bpf_map_update_elem(map_fd, &key, &fd, BPF_ANY)) {
			ret = -errno;
			set_err(err, false, "cannot add a re-injection socket to its SOCKHASH: %s",
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int kernel__open(const struct kernel_opts *opts, struct kernel **out, struct kernel_error *err)
{
	struct kernel *k;
	int ret, i;

	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->cgroup_fd = -1;
	k->own_netns_fd = -1;
	k->diag_fd = -1;
	k->max_conns = opts->max_conns ? opts->max_conns : MCPW_MAX_CONNS;
	/* Tests: the iterator alone, as on a kernel without it. */
	k->no_diag_destroy = getenv("MCPW_TEST_NO_DIAG_DESTROY") != NULL;
	for (i = 0; i < N_INJ; i++)
		k->inj_fd[i] = k->inj_peer_fd[i] = -1;
	if (opts->pin_dir) {
		k->pin_dir = strdup(opts->pin_dir);
		ret = k->pin_dir ? mkdir_p(opts->pin_dir) : -ENOMEM;
		if (ret) {
			set_err(err, true, "cannot create %s for pinned state (%s): is bpffs "
				"mounted at /sys/fs/bpf?", opts->pin_dir, strerror(-ret));
			goto fail;
		}
	}
	k->ncpus = libbpf_num_possible_cpus();
	if (k->ncpus <= 0) {
		set_err(err, false, "cannot count CPUs");
		ret = -EINVAL;
		goto fail;
	}

	k->cgroup_fd = open(opts->cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (k->cgroup_fd < 0) {
		ret = -errno;
		set_err(err, false, "cannot open the cgroup root %s: %s", opts->cgroup_dir,
			strerror(errno));
		goto fail;
	}
	k->own_netns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (k->own_netns_fd < 0) {
		ret = -errno;
		set_err(err, false, "cannot open /proc/self/ns/net: %s", strerror(errno));
		goto fail;
	}

	/* Held segments are copied, and re-shown bytes cut, in bpf_loop()
	 * steps (5.17+): said plainly here rather than as a verifier error. */
	if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_SK_SKB, BPF_FUNC_loop, NULL) == 0) {
		ret = -EOPNOTSUPP;
		set_err(err, true, "this kernel has no bpf_loop helper, which mcpwarden's "
			"request-byte programs use (Linux 5.17 or later)");
		goto fail;
	}
	/* Segments are placed by TCP's own count where the kernel lets a
	 * program read it (bpf_cast_to_kern_ctx, bpf_rdonly_cast: 6.2+). */
	k->verdict_by_seq = kernel_has_kfuncs("bpf_cast_to_kern_ctx", "bpf_rdonly_cast");
	/* tp_btf first; classic tracepoints when it does not load. The socket
	 * destroyer needs the bpf_sock_destroy kfunc (6.5+): optional. */
	ret = open_and_load(k, true, true);
	if (ret)
		ret = open_and_load(k, true, false);
	if (ret) {
		pr_info("tp_btf programs did not load (%s); using classic tracepoints",
			strerror(-ret));
		ret = open_and_load(k, false, true);
		if (ret)
			ret = open_and_load(k, false, false);
	}
	if (ret) {
		set_err(err, true, "the BPF programs do not load on this kernel (%s). mcpwarden "
			"needs BTF, tracepoints, cgroup-bpf, sockops, SOCKHASH with sk_msg and "
			"sk_skb, ring buffers and bpf_loop (Linux 5.17 or later); run with --log-level debug "
			"for the verifier's words", strerror(-ret));
		goto fail;
	}

	ret = kernel__set_config(k, &opts->config);
	if (!ret)
		ret = kernel__set_ports(k, opts->ports, opts->n_ports);
	if (!ret) {
		__u32 key = 0, fd = (__u32)k->cgroup_fd;

		if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.scope_cgroup), &key, &fd, BPF_ANY))
			ret = -errno;
	}
	if (!ret)
		ret = kernel__heartbeat(k);
	if (ret) {
		set_err(err, false, "cannot write the kernel configuration: %s", strerror(-ret));
		goto fail;
	}
	ret = attach_all(k, err);
	if (ret)
		goto fail;
	ret = setup_inj(k, err);
	if (ret)
		goto fail;
	*out = k;
	return 0;
fail:
	kernel__close(k);
	return ret;
}

const char *kernel__tracepoint_flavour(const struct kernel *k)
{
	return k->btf_flavour ? "tp_btf" : "tracepoint";
}

const char *kernel__stream_offsets(const struct kernel *k)
{
	return k->verdict_by_seq ? "tcp" : "summed";
}

size_t kernel__n_links(const struct kernel *k)
{
	return k->n_links + (k->seed_link ? 1 : 0) + (k->destroy_link ? 1 : 0) +
	       k->sk_skb_attached + k->over_attached + k->inj_msg_attached;
}

void kernel__close(struct kernel *k)
{
	size_t i;

	if (!k)
		return;
	if (k->loop_state)
		munmap(k->loop_state, (size_t)sysconf(_SC_PAGESIZE));
	for (i = 0; i < N_INJ; i++) {
		if (k->inj_fd[i] >= 0)
			close(k->inj_fd[i]);
		if (k->inj_peer_fd[i] >= 0)
			close(k->inj_peer_fd[i]);
	}
	bpf_link__destroy(k->stdin_links[0]);
	bpf_link__destroy(k->stdin_links[1]);
	bpf_link__destroy(k->destroy_link);
	bpf_link__destroy(k->seed_link);
	while (k->n_links) {
		struct bpf_link *link = k->links[--k->n_links];

		/* A pinned link keeps enforcing after we are gone. */
		if (k->pin_dir && bpf_link__pin_path(link))
			bpf_link__disconnect(link);
		bpf_link__destroy(link);
	}
	if (k->skel && !k->pin_dir) {
		if (k->inj_msg_attached)
			bpf_prog_detach2(bpf_program__fd(k->skel->progs.inj_msg),
					 bpf_map__fd(k->skel->maps.inj), BPF_SK_MSG_VERDICT);
		if (k->sk_skb_attached)
			bpf_prog_detach2(bpf_program__fd(verdict_prog(k)),
					 bpf_map__fd(k->skel->maps.srv), BPF_SK_SKB_STREAM_VERDICT);
		if (k->over_attached)
			bpf_prog_detach2(bpf_program__fd(k->skel->progs.over_verdict),
					 bpf_map__fd(k->skel->maps.srv_over),
					 BPF_SK_SKB_STREAM_VERDICT);
		mcpwarden_bpf__destroy(k->skel);
	}
	if (k->skel && k->pin_dir)
		mcpwarden_bpf__destroy(k->skel);	/* pinned maps and links stay */
	if (k->own_netns_fd >= 0)
		close(k->own_netns_fd);
	if (k->diag_fd >= 0)
		close(k->diag_fd);
	if (k->cgroup_fd >= 0)
		close(k->cgroup_fd);
	free(k->pin_dir);
	free(k);
}
