// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup v2 facts for the workload table. Everything here is derived from
 * what the kernel says: the cgroup2 line of /proc/PID/cgroup, the mountinfo
 * of the agent, and the directory handle of a cgroup. Container and pod
 * identity come only from the shape of the cgroup path; nothing a container
 * controls (labels, env, runtime sockets) is consulted.
 *
 * Path parsing walks the components once, root to leaf. Each component is
 * matched against the container forms (cri-containerd-, docker-, crio-,
 * libpod- with or without ".scope", a bare 64-hex id, and the runc
 * "slice:prefix:id" form) and the pod forms (systemd
 * "...kubepods[-qos]-pod<uid>.slice", cgroupfs "kubepods/[qos/]pod<uid>").
 * The deepest match of each kind wins, which is what nested setups (kind,
 * docker-in-docker) need: the node container sits above the pod.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "cgroup.h"

#define CONTAINER_ID_LEN	64
#define POD_UID_LEN		36	/* 8-4-4-4-12 */
#define STATIC_POD_UID_LEN	32	/* kubelet's md5 of a static pod */

struct name_view {
	const char *s;
	size_t len;
};

struct runtime_prefix {
	const char *prefix;		/* before the id in a component */
	const char *runc_prefix;	/* the middle of "slice:prefix:id" */
	const char *runtime;
};

/*
 * "crio-conmon-<id>" and "libpod-conmon-<id>" hold the conmon monitor, not
 * the container; they need no entry of their own because "conmon-<id>" is
 * not a 64-hex id and so never matches "crio-" or "libpod-".
 */
static const struct runtime_prefix runtime_prefixes[] = {
	{ "cri-containerd-", "cri-containerd", "containerd" },
	{ "docker-", "docker", "docker" },
	{ "crio-", "crio", "crio" },
	{ "libpod-", "libpod", "podman" },
	{ "nerdctl-", "nerdctl", "containerd" },
};

static bool view_eq(struct name_view v, const char *lit)
{
	size_t n = strlen(lit);

	return v.len == n && memcmp(v.s, lit, n) == 0;
}

static bool view_has_prefix(struct name_view v, const char *lit)
{
	size_t n = strlen(lit);

	return v.len >= n && memcmp(v.s, lit, n) == 0;
}

static bool view_strip_suffix(struct name_view *v, const char *lit)
{
	size_t n = strlen(lit);

	if (v->len < n || memcmp(v->s + v->len - n, lit, n) != 0)
		return false;
	v->len -= n;
	return true;
}

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/*
 * Runtimes only ever print lower-case ids; an upper-case "id" is something
 * else, and refusing it keeps one container from having two spellings.
 */
static bool is_container_id(struct name_view v)
{
	size_t i;

	if (v.len != CONTAINER_ID_LEN)
		return false;
	for (i = 0; i < v.len; i++)
		if (!is_lower_hex(v.s[i]))
			return false;
	return true;
}

/*
 * A pod uid is a lower-case UUID whose dashes the systemd driver writes as
 * underscores ('-' separates slice levels there), or the 32-hex config hash
 * the kubelet gives static pods, which has no dashes to restore. sep is the
 * separator this layout uses; the other one is refused.
 */
static bool pod_uid_normalize(struct name_view v, char sep, char *out)
{
	size_t i;

	if (v.len == STATIC_POD_UID_LEN) {
		for (i = 0; i < v.len; i++)
			if (!is_lower_hex(v.s[i]))
				return false;
		memcpy(out, v.s, v.len);
		out[v.len] = '\0';
		return true;
	}
	if (v.len != POD_UID_LEN)
		return false;
	for (i = 0; i < v.len; i++) {
		bool dash_pos = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash_pos) {
			if (v.s[i] != sep)
				return false;
			out[i] = '-';
		} else {
			if (!is_lower_hex(v.s[i]))
				return false;
			out[i] = v.s[i];
		}
	}
	out[v.len] = '\0';
	return true;
}

static void set_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src);
}

static void set_container(struct cgroup_meta *meta, struct name_view id,
			  const char *runtime)
{
	memcpy(meta->container_id, id.s, id.len);
	meta->container_id[id.len] = '\0';
	set_str(meta->runtime, sizeof(meta->runtime), runtime);
}

/* The runc systemd form used as a literal directory name: "slice:prefix:id". */
static bool match_runc_triple(struct name_view comp, struct name_view *slice,
			      struct cgroup_meta *meta)
{
	const char *c1, *c2;
	struct name_view mid, id;
	size_t i;

	c1 = memchr(comp.s, ':', comp.len);
	if (!c1)
		return false;
	c2 = memchr(c1 + 1, ':', comp.len - (size_t)(c1 + 1 - comp.s));
	if (!c2)
		return false;
	mid.s = c1 + 1;
	mid.len = (size_t)(c2 - mid.s);
	id.s = c2 + 1;
	id.len = comp.len - (size_t)(id.s - comp.s);
	if (!is_container_id(id))
		return false;
	for (i = 0; i < sizeof(runtime_prefixes) / sizeof(runtime_prefixes[0]); i++) {
		if (view_eq(mid, runtime_prefixes[i].runc_prefix)) {
			set_container(meta, id, runtime_prefixes[i].runtime);
			slice->s = comp.s;
			slice->len = (size_t)(c1 - comp.s);
			return true;
		}
	}
	return false;
}

/* Fills meta's container fields when comp names a container. */
static bool match_container(struct name_view comp, struct name_view parent,
			    struct cgroup_meta *meta)
{
	struct name_view name = comp;
	size_t i;

	if (is_container_id(comp)) {
		/* cgroupfs drivers name the cgroup by the bare id; only
		 * plain docker's "/docker/<id>" says which runtime made it. */
		set_container(meta, comp, view_eq(parent, "docker") ? "docker" : "");
		return true;
	}
	/* systemd drivers add ".scope"; CRI-O and podman on cgroupfs do not */
	view_strip_suffix(&name, ".scope");
	for (i = 0; i < sizeof(runtime_prefixes) / sizeof(runtime_prefixes[0]); i++) {
		const char *prefix = runtime_prefixes[i].prefix;
		struct name_view id;

		if (!view_has_prefix(name, prefix))
			continue;
		id.s = name.s + strlen(prefix);
		id.len = name.len - strlen(prefix);
		if (is_container_id(id)) {
			set_container(meta, id, runtime_prefixes[i].runtime);
			return true;
		}
	}
	return false;
}

/*
 * QoS classes as the kubelet spells them in cgroup names; guaranteed pods
 * have no QoS level of their own and sit directly under kubepods.
 */
static const char *qos_of(struct name_view v)
{
	if (view_eq(v, "burstable"))
		return "burstable";
	if (view_eq(v, "besteffort"))
		return "besteffort";
	return NULL;
}

/*
 * systemd driver: "kubepods-pod<uid>.slice", "kubepods-<qos>-pod<uid>.slice",
 * possibly behind more slice levels ("kubelet-kubepods-..." in kind). A
 * slice name repeats its ancestry, so "kubepods-" is looked for at the
 * start or right after a '-'.
 */
static bool match_pod_slice(struct name_view comp, struct cgroup_meta *meta)
{
	static const char kp[] = "kubepods-";
	struct name_view name = comp, rest, uid;
	const char *qos = "guaranteed";
	size_t i, at = 0;
	bool found = false;
	char out[sizeof(meta->pod_uid)];

	if (!view_strip_suffix(&name, ".slice"))
		return false;
	for (i = 0; i + sizeof(kp) - 1 <= name.len; i++) {
		if ((i == 0 || name.s[i - 1] == '-') &&
		    memcmp(name.s + i, kp, sizeof(kp) - 1) == 0) {
			at = i;
			found = true;
		}
	}
	if (!found)
		return false;
	rest.s = name.s + at + sizeof(kp) - 1;
	rest.len = name.len - at - (sizeof(kp) - 1);
	if (view_has_prefix(rest, "burstable-")) {
		qos = "burstable";
		rest.s += strlen("burstable-");
		rest.len -= strlen("burstable-");
	} else if (view_has_prefix(rest, "besteffort-")) {
		qos = "besteffort";
		rest.s += strlen("besteffort-");
		rest.len -= strlen("besteffort-");
	}
	if (!view_has_prefix(rest, "pod"))
		return false;
	uid.s = rest.s + 3;
	uid.len = rest.len - 3;
	if (!pod_uid_normalize(uid, '_', out))
		return false;
	set_str(meta->pod_uid, sizeof(meta->pod_uid), out);
	set_str(meta->qos, sizeof(meta->qos), qos);
	return true;
}

/* cgroupfs driver: ".../kubepods/pod<uid>", ".../kubepods/<qos>/pod<uid>". */
static bool match_pod_dir(struct name_view comp, struct name_view parent,
			  struct name_view grandparent, struct cgroup_meta *meta)
{
	struct name_view uid;
	const char *qos;
	char out[sizeof(meta->pod_uid)];

	if (!view_has_prefix(comp, "pod"))
		return false;
	if (view_eq(parent, "kubepods"))
		qos = "guaranteed";
	else if (view_eq(grandparent, "kubepods"))
		qos = qos_of(parent);
	else
		qos = NULL;
	if (!qos)
		return false;
	uid.s = comp.s + 3;
	uid.len = comp.len - 3;
	if (!pod_uid_normalize(uid, '-', out))
		return false;
	set_str(meta->pod_uid, sizeof(meta->pod_uid), out);
	set_str(meta->qos, sizeof(meta->qos), qos);
	return true;
}

int cgroup__parse_path(const char *path, struct cgroup_meta *meta)
{
	struct name_view comp = { NULL, 0 }, parent = { "", 0 }, grandparent = { "", 0 };
	struct name_view slice;
	struct cgroup_meta found;
	size_t depth = 0, container_depth = 0, pod_depth = 0;
	const char *p;

	if (!path || !meta)
		return -EINVAL;
	memset(meta, 0, sizeof(*meta));
	memset(&found, 0, sizeof(found));

	for (p = path; *p; ) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		comp.s = p;
		comp.len = strcspn(p, "/");
		p += comp.len;
		depth++;

		if (match_runc_triple(comp, &slice, &found)) {
			container_depth = depth;
			if (match_pod_slice(slice, &found))
				pod_depth = depth;
		} else if (match_container(comp, parent, &found)) {
			container_depth = depth;
		} else if (match_pod_slice(comp, &found) ||
			   match_pod_dir(comp, parent, grandparent, &found)) {
			pod_depth = depth;
		}
		grandparent = parent;
		parent = comp;
	}

	/*
	 * A container above the pod is the node the kubelet runs in (kind,
	 * k3d), not one of the pod's containers: a process there belongs to
	 * the pod, and naming the node container would pin it to the wrong
	 * workload.
	 */
	if (container_depth && container_depth >= pod_depth) {
		memcpy(meta->container_id, found.container_id, sizeof(meta->container_id));
		memcpy(meta->runtime, found.runtime, sizeof(meta->runtime));
	}
	if (pod_depth) {
		memcpy(meta->pod_uid, found.pod_uid, sizeof(meta->pod_uid));
		memcpy(meta->qos, found.qos, sizeof(meta->qos));
	}
	return 0;
}

/* mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo (fs/proc_namespace.c). */
static int unescape_octal(const char *src, char *out, size_t len)
{
	size_t n = 0;

	while (*src) {
		char c = *src;

		if (c == '\\' && src[1] >= '0' && src[1] <= '3' &&
		    src[2] >= '0' && src[2] <= '7' && src[3] >= '0' && src[3] <= '7') {
			c = (char)((src[1] - '0') << 6 | (src[2] - '0') << 3 | (src[3] - '0'));
			src += 4;
			if (c == '\0')
				return -EINVAL;
		} else {
			src++;
		}
		if (n + 1 >= len)
			return -ENAMETOOLONG;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

/*
 * One mountinfo line: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...]
 * - FSTYPE SOURCE SUPEROPTS". Sets *root_is_slash and the raw mount point
 * when the line is a cgroup2 mount. The line is split in place.
 */
static bool mountinfo_cgroup2(char *line, const char **mnt, bool *root_is_slash)
{
	char *save = NULL, *tok, *root = NULL;
	int field = 0;
	bool after_sep = false;

	*mnt = NULL;
	for (tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		field++;
		if (after_sep) {
			/* the first field after " - " is the filesystem type */
			if (!root || !*mnt || strcmp(tok, "cgroup2") != 0)
				return false;
			*root_is_slash = strcmp(root, "/") == 0;
			return true;
		}
		if (field == 4)
			root = tok;
		else if (field == 5)
			*mnt = tok;
		else if (field > 6 && strcmp(tok, "-") == 0)
			after_sep = true;
	}
	return false;
}

int cgroup__find_mount(const char *mountinfo_path, char *out, size_t len)
{
	char decoded[4096];
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	bool have_any = false;
	int miss = -ENOENT;

	if (!mountinfo_path || !out || !len)
		return -EINVAL;
	f = fopen(mountinfo_path, "re");
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) >= 0) {
		const char *mnt;
		bool root_is_slash = false;

		if (!mountinfo_cgroup2(line, &mnt, &root_is_slash))
			continue;
		/*
		 * A cgroup2 mount whose root is not "/" shows only a subtree
		 * (a bind mount, or a container's view without a cgroup
		 * namespace); ids and paths are judged against the whole tree,
		 * so such a mount is only a last resort.
		 */
		if (have_any && !root_is_slash)
			continue;
		if (unescape_octal(mnt, decoded, sizeof(decoded)))
			continue;
		if (strlen(decoded) >= len) {
			miss = -ENAMETOOLONG;
			continue;
		}
		strcpy(out, decoded);
		have_any = true;
		if (root_is_slash)
			break;
	}
	free(line);
	fclose(f);
	if (!have_any) {
		out[0] = '\0';
		return miss;
	}
	return 0;
}

int cgroup__path_of_pid(const char *proc_root, pid_t pid, char *out, size_t len)
{
	static const char deleted[] = " (deleted)";
	char file[4096];
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int err = -ENOENT;
	bool seen = false;

	if (!out || !len || pid <= 0)
		return -EINVAL;
	if (!proc_root)
		proc_root = "/proc";
	if ((size_t)snprintf(file, sizeof(file), "%s/%d/cgroup", proc_root, (int)pid) >=
	    sizeof(file))
		return -ENAMETOOLONG;
	f = fopen(file, "re");
	if (!f)
		return -errno;
	while ((n = getline(&line, &cap, f)) >= 0) {
		size_t plen;
		char *cg;

		if (strncmp(line, "0::", 3) != 0)
			continue;
		/*
		 * The kernel refuses '\n' in cgroup names so the file stays
		 * one line per hierarchy; a second "0::" line means the file
		 * is not what the kernel wrote (or an old kernel let a name
		 * forge one), and no line of it can be trusted.
		 */
		if (seen) {
			err = -EINVAL;
			break;
		}
		seen = true;
		cg = line + 3;
		plen = (size_t)n - 3;
		if (plen && cg[plen - 1] == '\n')
			cg[--plen] = '\0';
		/* a removed cgroup that still has a zombie member */
		if (plen >= sizeof(deleted) - 1 &&
		    strcmp(cg + plen - (sizeof(deleted) - 1), deleted) == 0) {
			plen -= sizeof(deleted) - 1;
			cg[plen] = '\0';
		}
		if (plen == 0 || cg[0] != '/') {
			err = -EINVAL;
			break;
		}
		if (plen >= len) {
			err = -ENAMETOOLONG;
			break;
		}
		memcpy(out, cg, plen + 1);
		err = 0;
	}
	free(line);
	fclose(f);
	if (err)
		out[0] = '\0';
	return err;
}

int cgroup__id_of_dir(const char *dir, uint64_t *id)
{
	/* struct file_handle ends in a flexible array; room for a kernfs id */
	char buf[sizeof(struct file_handle) + sizeof(uint64_t)]
		__attribute__((aligned(8)));
	struct file_handle *fh = (struct file_handle *)buf;
	struct statfs sfs;
	struct stat st;
	int fd, mount_id, err = 0;

	if (!dir || !id)
		return -EINVAL;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* any other filesystem would hand back an inode that is no cgroup id */
	if (fstatfs(fd, &sfs) < 0) {
		err = -errno;
		goto close_fd;
	}
	if (sfs.f_type != CGROUP2_SUPER_MAGIC) {
		err = -EINVAL;
		goto close_fd;
	}

	fh->handle_bytes = sizeof(uint64_t);
	if (name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) == 0) {
		if (fh->handle_bytes != sizeof(uint64_t)) {
			err = -EINVAL;
			goto close_fd;
		}
		memcpy(id, fh->f_handle, sizeof(*id));
		goto close_fd;
	}
	err = -errno;
	if (err != -ENOSYS && err != -EOPNOTSUPP && err != -EPERM)
		goto close_fd;
	/*
	 * name_to_handle_at() can be missing (seccomp returning ENOSYS or
	 * EPERM, a kernel without export ops for kernfs). Since 5.5 kernfs
	 * makes the inode number the node id on 64-bit kernels, so st_ino is
	 * the same value there; on 32-bit kernels, and before 5.5 where the
	 * id carried a generation in its upper half, it is only the low 32
	 * bits, which is why the handle is asked first.
	 */
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto close_fd;
	}
	*id = (uint64_t)st.st_ino;
	err = 0;
close_fd:
	close(fd);
	return err;
}

bool cgroup__path_within(const char *path, const char *root)
{
	size_t rlen;
	const char *p;

	if (!path || !root || !*path)
		return false;
	rlen = strlen(root);
	while (rlen && root[rlen - 1] == '/')
		rlen--;
	if (strncmp(path, root, rlen) != 0)
		return false;
	if (path[rlen] != '\0' && path[rlen] != '/')
		return false;
	/*
	 * The kernel writes "/.." when a process is outside the reader's
	 * cgroup namespace; such a path is not below anything we can name,
	 * however its text begins.
	 */
	for (p = path; *p; ) {
		size_t n;

		while (*p == '/')
			p++;
		n = strcspn(p, "/");
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
	}
	return true;
}
