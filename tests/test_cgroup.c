// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup module tests: container/pod recognition over a table of the
 * cgroup paths real runtimes create, mountinfo parsing on written samples
 * and on this host, /proc/PID/cgroup on a fake proc tree and on the real
 * one, and cgroup ids of real cgroup2 directories checked against their
 * inode numbers (a child cgroup is created, joined, left and removed).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "harness.h"
#include "cgroup.h"

#define CID_A	"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
#define CID_B	"3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
/* the kind/k3d node container, which must lose to the pod's container */
#define CID_N	"1b16b1df538ba12dc3f97edbb85caa7050d46c148134290feba80f8236c83db9"
#define CID_UPPER "CA978112CA1BBDCAFAC231B39A23DC4DA786EFF8147C4E72B9807785AFEE48BB"
#define CID_63	"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48b"
#define CID_65	CID_A "0"

#define POD	"1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9"
#define POD_SD	"1b2c3d4e_5f60_4718_8293_a4b5c6d7e8f9"	/* systemd driver */
#define POD_STATIC "03c7c0ace395d80182db07ae2c30f034"	/* static pod hash */

#define SD_BURST "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD_SD ".slice"
#define SD_BEST	"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD_SD ".slice"
#define SD_GUAR	"/kubepods.slice/kubepods-pod" POD_SD ".slice"
#define KIND_SD	"/kubelet.slice/kubelet-kubepods.slice"

struct path_case {
	const char *name;
	const char *path;
	const char *container_id;
	const char *pod_uid;
	const char *runtime;
	const char *qos;
};

static const struct path_case path_cases[] = {
	/* Kubernetes, systemd cgroup driver */
	{ "sd_burstable_containerd", SD_BURST "/cri-containerd-" CID_A ".scope",
	  CID_A, POD, "containerd", "burstable" },
	{ "sd_besteffort_containerd", SD_BEST "/cri-containerd-" CID_A ".scope",
	  CID_A, POD, "containerd", "besteffort" },
	{ "sd_guaranteed_containerd", SD_GUAR "/cri-containerd-" CID_A ".scope",
	  CID_A, POD, "containerd", "guaranteed" },
	{ "sd_burstable_crio", SD_BURST "/crio-" CID_A ".scope",
	  CID_A, POD, "crio", "burstable" },
	{ "sd_crio_crun_container", SD_GUAR "/crio-" CID_A ".scope/container",
	  CID_A, POD, "crio", "guaranteed" },
	{ "sd_crio_conmon", SD_BURST "/crio-conmon-" CID_A ".scope",
	  "", POD, "", "burstable" },
	{ "sd_dockershim", SD_BEST "/docker-" CID_A ".scope",
	  CID_A, POD, "docker", "besteffort" },
	{ "sd_pod_level", SD_BURST, "", POD, "", "burstable" },
	{ "sd_qos_level", "/kubepods.slice/kubepods-burstable.slice", "", "", "", "" },
	{ "sd_static_pod",
	  "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD_STATIC
	  ".slice/cri-containerd-" CID_A ".scope",
	  CID_A, POD_STATIC, "containerd", "burstable" },
	/* Kubernetes, cgroupfs driver */
	{ "fs_burstable", "/kubepods/burstable/pod" POD "/" CID_A,
	  CID_A, POD, "", "burstable" },
	{ "fs_guaranteed", "/kubepods/pod" POD "/" CID_A,
	  CID_A, POD, "", "guaranteed" },
	{ "fs_besteffort", "/kubepods/besteffort/pod" POD "/" CID_A,
	  CID_A, POD, "", "besteffort" },
	{ "fs_crio", "/kubepods/besteffort/pod" POD "/crio-" CID_A,
	  CID_A, POD, "crio", "besteffort" },
	{ "fs_crio_conmon", "/kubepods/besteffort/pod" POD "/crio-conmon-" CID_A,
	  "", POD, "", "besteffort" },
	{ "fs_static_pod", "/kubepods/burstable/pod" POD_STATIC "/" CID_A,
	  CID_A, POD_STATIC, "", "burstable" },
	/* docker */
	{ "docker_cgroupfs", "/docker/" CID_A, CID_A, "", "docker", "" },
	{ "docker_systemd", "/system.slice/docker-" CID_A ".scope",
	  CID_A, "", "docker", "" },
	{ "docker_systemd_in_ctr", "/system.slice/docker-" CID_A ".scope/init.scope",
	  CID_A, "", "docker", "" },
	{ "docker_in_docker", "/docker/" CID_A "/docker/" CID_B,
	  CID_B, "", "docker", "" },
	{ "docker_rootless",
	  "/user.slice/user-1000.slice/user@1000.service/user.slice/docker-" CID_A ".scope",
	  CID_A, "", "docker", "" },
	/* podman */
	{ "podman_rootful", "/machine.slice/libpod-" CID_A ".scope",
	  CID_A, "", "podman", "" },
	{ "podman_rootless",
	  "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" CID_A
	  ".scope/container",
	  CID_A, "", "podman", "" },
	{ "podman_conmon", "/machine.slice/libpod-conmon-" CID_A ".scope",
	  "", "", "", "" },
	{ "podman_cgroupfs", "/libpod_parent/libpod-" CID_A, CID_A, "", "podman", "" },
	/* kind, k3s, k3d: kubelets in containers, runc fallbacks */
	{ "kind_host_view",
	  "/system.slice/docker-" CID_N ".scope" KIND_SD
	  "/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" POD_SD
	  ".slice/cri-containerd-" CID_A ".scope",
	  CID_A, POD, "containerd", "besteffort" },
	{ "kind_node_view",
	  KIND_SD "/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod"
	  POD_SD ".slice/cri-containerd-" CID_A ".scope",
	  CID_A, POD, "containerd", "burstable" },
	{ "kind_guaranteed",
	  KIND_SD "/kubelet-kubepods-pod" POD_SD ".slice/cri-containerd-" CID_A ".scope",
	  CID_A, POD, "containerd", "guaranteed" },
	{ "kind_pod_level_drops_node",
	  "/system.slice/docker-" CID_N ".scope" KIND_SD "/kubelet-kubepods-pod" POD_SD
	  ".slice",
	  "", POD, "", "guaranteed" },
	{ "kind_cgroupfs", "/docker/" CID_N "/kubelet/kubepods/burstable/pod" POD "/" CID_A,
	  CID_A, POD, "", "burstable" },
	{ "k3d_cgroupfs", "/docker/" CID_N "/kubepods/besteffort/pod" POD "/" CID_A,
	  CID_A, POD, "", "besteffort" },
	{ "k3s_runc_triple",
	  "/system.slice/containerd.service/kubepods-besteffort-pod" POD_SD
	  ".slice:cri-containerd:" CID_A,
	  CID_A, POD, "containerd", "besteffort" },
	{ "runc_triple_at_root",
	  "/kubepods-burstable-pod" POD_SD ".slice:cri-containerd:" CID_A,
	  CID_A, POD, "containerd", "burstable" },
	{ "runc_triple_docker", "/system.slice:docker:" CID_A, CID_A, "", "docker", "" },
	/* containerd without Kubernetes, CI runners */
	{ "nerdctl_systemd", "/system.slice/nerdctl-" CID_A ".scope",
	  CID_A, "", "containerd", "" },
	{ "containerd_namespace", "/k8s.io/" CID_A, CID_A, "", "", "" },
	{ "actions_job", "/actions_job/" CID_A, CID_A, "", "", "" },
	/* no container */
	{ "session", "/user.slice/user-0.slice/session-1.scope", "", "", "", "" },
	{ "root", "/", "", "", "", "" },
	{ "empty", "", "", "", "", "" },
	{ "service", "/system.slice/nginx.service", "", "", "", "" },
	{ "crio_conmon_system", "/system.slice/crio-conmon-" CID_A ".scope",
	  "", "", "", "" },
	/* shapes that must not be taken for ids or pods */
	{ "id_upper_case", "/docker/" CID_UPPER, "", "", "", "" },
	{ "id_63", "/system.slice/docker-" CID_63 ".scope", "", "", "", "" },
	{ "id_65", "/system.slice/docker-" CID_65 ".scope", "", "", "", "" },
	{ "id_short_12", "/docker/ca978112ca1b", "", "", "", "" },
	{ "id_bare_scope", "/system.slice/" CID_A ".scope", "", "", "", "" },
	{ "triple_unknown_prefix", "/system.slice:foo:" CID_A, "", "", "", "" },
	{ "sd_pod_with_dashes", "/kubepods.slice/kubepods-pod" POD ".slice", "", "", "", "" },
	{ "fs_pod_with_underscores", "/kubepods/pod" POD_SD "/" CID_A,
	  CID_A, "", "", "" },
	{ "fs_pod_not_under_kubepods", "/foo/pod" POD "/" CID_A, CID_A, "", "", "" },
	{ "fs_unknown_qos", "/kubepods/silver/pod" POD "/" CID_A, CID_A, "", "", "" },
	{ "sd_pod_bad_uuid",
	  "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podzz2c3d4e_5f60_"
	  "4718_8293_a4b5c6d7e8f9.slice", "", "", "", "" },
	{ "sd_pod_empty_uid", "/kubepods.slice/kubepods-burstable-pod.slice", "", "", "", "" },
	{ "sd_not_kubepods", "/system.slice/notkubepods-pod" POD_SD ".slice", "", "", "", "" },
	{ "extra_slashes", "//kubepods//pod" POD "//" CID_A "/", CID_A, POD, "", "guaranteed" },
};

void test_cgroup_parse_path(void)
{
	struct cgroup_meta meta;
	size_t i;

	for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];

		if (!test__start_subtest(c->name))
			continue;
		/* stale content from an earlier call must not survive */
		memset(&meta, 'x', sizeof(meta));
		if (!ASSERT_OK(cgroup__parse_path(c->path, &meta), c->path))
			continue;
		ASSERT_STREQ(meta.container_id, c->container_id, c->path);
		ASSERT_STREQ(meta.pod_uid, c->pod_uid, c->path);
		ASSERT_STREQ(meta.runtime, c->runtime, c->path);
		ASSERT_STREQ(meta.qos, c->qos, c->path);
	}
	if (test__start_subtest("null_args")) {
		ASSERT_EQ(cgroup__parse_path(NULL, &meta), -EINVAL, "NULL path");
		ASSERT_EQ(cgroup__parse_path("/", NULL), -EINVAL, "NULL meta");
	}
	if (test__start_subtest("long_hostile_path")) {
		/* a deep path of near-matches must parse without overrunning */
		static char path[1 << 16];
		size_t off = 0;

		while (off + 200 < sizeof(path))
			off += (size_t)snprintf(path + off, sizeof(path) - off,
						"/kubepods-pod%s:cri-containerd:%s", POD_SD, CID_63);
		ASSERT_OK(cgroup__parse_path(path, &meta), "hostile path");
		ASSERT_STREQ(meta.container_id, "", "no id from near-matches");
	}
}

static char tmp_dir[PATH_MAX];

static int make_tmp_dir(void)
{
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/mcpw-cgroup-XXXXXX");
	return mkdtemp(tmp_dir) ? 0 : -errno;
}

/* Removes tmp_dir and what the tests put in it (two levels at most). */
static void remove_tmp_dir(void)
{
	char sub[PATH_MAX + 300];
	struct dirent *de;
	DIR *d;

	if (!tmp_dir[0])
		return;
	d = opendir(tmp_dir);
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s/cgroup", tmp_dir, de->d_name);
		unlink(sub);
		snprintf(sub, sizeof(sub), "%s/%s", tmp_dir, de->d_name);
		if (unlink(sub) < 0)
			rmdir(sub);
	}
	if (d)
		closedir(d);
	rmdir(tmp_dir);
	tmp_dir[0] = '\0';
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int err = 0;

	if (!f)
		return -errno;
	if (fputs(text, f) < 0)
		err = -EIO;
	if (fclose(f) != 0 && !err)
		err = -errno;
	return err;
}

struct mountinfo_case {
	const char *name;
	const char *text;
	int err;
	const char *mount;
};

static const struct mountinfo_case mountinfo_cases[] = {
	{ "hybrid",
	  "22 1 253:0 / / rw,relatime - ext4 /dev/vda rw\n"
	  "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
	  "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
	  "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
	  "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
	  0, "/sys/fs/cgroup/unified" },
	{ "pure_v2",
	  "24 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
	  "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - "
	  "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
	  0, "/sys/fs/cgroup" },
	{ "escaped_space",
	  "50 22 0:40 / /mnt/my\\040cgroup\\011tab\\134x rw master:3 shared:9 - "
	  "cgroup2 none rw\n",
	  0, "/mnt/my cgroup\ttab\\x" },
	{ "no_cgroup2",
	  "22 1 253:0 / / rw,relatime - ext4 /dev/vda rw\n"
	  "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n",
	  -ENOENT, "" },
	{ "empty", "", -ENOENT, "" },
	{ "cgroup2_as_source_or_dir_only",
	  "60 22 0:50 / /cgroup2 rw - tmpfs cgroup2 rw\n"
	  "61 22 0:51 /cgroup2 /x rw shared:1 - tmpfs tmpfs rw\n",
	  -ENOENT, "" },
	{ "prefers_root_slash",
	  "70 22 0:37 /kubepods.slice/x.scope /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
	  "71 22 0:37 / /host/sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
	  "72 22 0:37 / /later rw - cgroup2 cgroup2 rw\n",
	  0, "/host/sys/fs/cgroup" },
	{ "only_subtree_root",
	  "70 22 0:37 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n",
	  0, "/sys/fs/cgroup" },
	{ "truncated_line",
	  "80 22 0:37 / /sys/fs/cgroup rw\n", -ENOENT, "" },
};

void test_cgroup_find_mount(void)
{
	char file[PATH_MAX + 32], out[PATH_MAX];
	size_t i;

	if (!ASSERT_OK(make_tmp_dir(), "mkdtemp"))
		return;
	snprintf(file, sizeof(file), "%s/mountinfo", tmp_dir);
	for (i = 0; i < sizeof(mountinfo_cases) / sizeof(mountinfo_cases[0]); i++) {
		const struct mountinfo_case *c = &mountinfo_cases[i];

		if (!test__start_subtest(c->name))
			continue;
		if (!ASSERT_OK(write_file(file, c->text), "write mountinfo"))
			goto cleanup;
		ASSERT_EQ(cgroup__find_mount(file, out, sizeof(out)), c->err, c->name);
		if (!c->err)
			ASSERT_STREQ(out, c->mount, c->name);
	}
	if (test__start_subtest("small_buffer")) {
		if (!ASSERT_OK(write_file(file, mountinfo_cases[0].text), "write"))
			goto cleanup;
		ASSERT_EQ(cgroup__find_mount(file, out, 10), -ENAMETOOLONG, "10 bytes");
		ASSERT_EQ(cgroup__find_mount(file, out, sizeof("/sys/fs/cgroup/unified")),
			  0, "exact fit");
	}
	if (test__start_subtest("missing_file")) {
		snprintf(file, sizeof(file), "%s/nonexistent", tmp_dir);
		ASSERT_EQ(cgroup__find_mount(file, out, sizeof(out)), -ENOENT, "missing");
	}
	if (test__start_subtest("real_self")) {
		struct statfs sfs;

		if (!ASSERT_OK(cgroup__find_mount("/proc/self/mountinfo", out, sizeof(out)),
			       "find_mount(/proc/self/mountinfo)"))
			goto cleanup;
		test__log("cgroup2 mounted at %s", out);
		if (!ASSERT_OK(statfs(out, &sfs) ? -errno : 0, "statfs"))
			goto cleanup;
		ASSERT_EQ(sfs.f_type, CGROUP2_SUPER_MAGIC, "mount is cgroup2");
	}
cleanup:
	remove_tmp_dir();
}

/* Writes <tmp_dir>/<pid>/cgroup. */
static int fake_proc(pid_t pid, const char *text)
{
	char path[PATH_MAX + 32];

	snprintf(path, sizeof(path), "%s/%d", tmp_dir, (int)pid);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(path, sizeof(path), "%s/%d/cgroup", tmp_dir, (int)pid);
	return write_file(path, text);
}

/* The "0::" line of /proc/self/cgroup, read without the module. */
static int self_v2_path(char *out, size_t len)
{
	char line[PATH_MAX + 16];
	FILE *f = fopen("/proc/self/cgroup", "r");
	int err = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = '\0';
		if (strlen(line + 3) >= len) {
			err = -ENAMETOOLONG;
			break;
		}
		strcpy(out, line + 3);
		err = 0;
	}
	fclose(f);
	return err;
}

void test_cgroup_path_of_pid(void)
{
	char out[PATH_MAX], expect[PATH_MAX];

	if (!ASSERT_OK(make_tmp_dir(), "mkdtemp"))
		return;
	if (test__start_subtest("fake_hybrid")) {
		if (!ASSERT_OK(fake_proc(100, "9:name=systemd:/\n4:memory:/x/y\n"
					 "0::" SD_BURST "/cri-containerd-" CID_A ".scope\n"),
			       "fake proc"))
			goto cleanup;
		ASSERT_OK(cgroup__path_of_pid(tmp_dir, 100, out, sizeof(out)), "hybrid");
		ASSERT_STREQ(out, SD_BURST "/cri-containerd-" CID_A ".scope", "hybrid");
	}
	if (test__start_subtest("fake_v2_no_newline")) {
		if (!ASSERT_OK(fake_proc(101, "0::/system.slice/a b:c.service"), "fake proc"))
			goto cleanup;
		ASSERT_OK(cgroup__path_of_pid(tmp_dir, 101, out, sizeof(out)), "v2");
		ASSERT_STREQ(out, "/system.slice/a b:c.service", "colon and space kept");
	}
	if (test__start_subtest("fake_deleted")) {
		if (!ASSERT_OK(fake_proc(102, "0::/docker/" CID_A " (deleted)\n"), "fake proc"))
			goto cleanup;
		ASSERT_OK(cgroup__path_of_pid(tmp_dir, 102, out, sizeof(out)), "deleted");
		ASSERT_STREQ(out, "/docker/" CID_A, "suffix stripped");
	}
	if (test__start_subtest("fake_v1_only")) {
		if (!ASSERT_OK(fake_proc(103, "2:cpu:/a\n1:name=systemd:/b\n"), "fake proc"))
			goto cleanup;
		ASSERT_EQ(cgroup__path_of_pid(tmp_dir, 103, out, sizeof(out)), -ENOENT, "v1");
	}
	if (test__start_subtest("fake_forged_second_line")) {
		if (!ASSERT_OK(fake_proc(104, "0::/user.slice/x\n0::/kubepods/pod" POD "\n"),
			       "fake proc"))
			goto cleanup;
		ASSERT_EQ(cgroup__path_of_pid(tmp_dir, 104, out, sizeof(out)), -EINVAL,
			  "two 0:: lines");
	}
	if (test__start_subtest("fake_not_absolute")) {
		if (!ASSERT_OK(fake_proc(105, "0::\n"), "fake proc"))
			goto cleanup;
		ASSERT_EQ(cgroup__path_of_pid(tmp_dir, 105, out, sizeof(out)), -EINVAL, "empty");
	}
	if (test__start_subtest("fake_small_buffer")) {
		if (!ASSERT_OK(fake_proc(106, "0::/docker/" CID_A "\n"), "fake proc"))
			goto cleanup;
		ASSERT_EQ(cgroup__path_of_pid(tmp_dir, 106, out, 20), -ENAMETOOLONG, "20 bytes");
		ASSERT_OK(cgroup__path_of_pid(tmp_dir, 106, out, sizeof("/docker/" CID_A)),
			  "exact fit");
	}
	if (test__start_subtest("fake_missing_pid"))
		ASSERT_EQ(cgroup__path_of_pid(tmp_dir, 999999, out, sizeof(out)), -ENOENT,
			  "no such pid");
	if (test__start_subtest("bad_args")) {
		ASSERT_EQ(cgroup__path_of_pid(tmp_dir, 0, out, sizeof(out)), -EINVAL, "pid 0");
		ASSERT_EQ(cgroup__path_of_pid(tmp_dir, -1, out, sizeof(out)), -EINVAL, "pid -1");
		ASSERT_EQ(cgroup__path_of_pid(tmp_dir, 100, NULL, 1), -EINVAL, "NULL out");
	}
	if (test__start_subtest("real_self")) {
		if (!ASSERT_OK(self_v2_path(expect, sizeof(expect)), "read /proc/self/cgroup"))
			goto cleanup;
		ASSERT_OK(cgroup__path_of_pid("/proc", getpid(), out, sizeof(out)), "/proc");
		ASSERT_STREQ(out, expect, "matches /proc/self/cgroup");
		ASSERT_OK(cgroup__path_of_pid(NULL, getpid(), out, sizeof(out)), "NULL root");
		ASSERT_STREQ(out, expect, "NULL proc_root means /proc");
	}
cleanup:
	remove_tmp_dir();
}

static int write_pid(const char *procs_file, pid_t pid)
{
	char buf[32];
	int fd, n, err = 0;

	fd = open(procs_file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
	if (write(fd, buf, (size_t)n) != n)
		err = -errno;
	close(fd);
	return err;
}

static int ino_of(const char *path, uint64_t *ino)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	*ino = (uint64_t)st.st_ino;
	return 0;
}

void test_cgroup_id_of_dir(void)
{
	char mnt[PATH_MAX], self[PATH_MAX], dir[2 * PATH_MAX + 64];
	char child[PATH_MAX + 64], procs[2 * PATH_MAX + 64], now[PATH_MAX];
	uint64_t id = 0, ino = 0, root_id = 0;
	bool made_child = false, moved = false;

	if (!ASSERT_OK(cgroup__find_mount("/proc/self/mountinfo", mnt, sizeof(mnt)),
		       "find cgroup2 mount"))
		return;
	if (!ASSERT_OK(cgroup__path_of_pid("/proc", getpid(), self, sizeof(self)),
		       "own cgroup"))
		return;

	if (test__start_subtest("root_and_self")) {
		ASSERT_OK(cgroup__id_of_dir(mnt, &root_id), "id of mount root");
		if (ASSERT_OK(ino_of(mnt, &ino), "stat root"))
			ASSERT_EQ(root_id, ino, "root id is its inode");
		snprintf(dir, sizeof(dir), "%s%s", mnt, strcmp(self, "/") ? self : "");
		if (ASSERT_OK(cgroup__id_of_dir(dir, &id), dir) &&
		    ASSERT_OK(ino_of(dir, &ino), "stat own cgroup"))
			ASSERT_EQ(id, ino, "own cgroup id is its inode");
	}
	if (test__start_subtest("errors")) {
		ASSERT_EQ(cgroup__id_of_dir("/tmp", &id), -EINVAL, "not cgroup2");
		ASSERT_EQ(cgroup__id_of_dir("/nonexistent/mcpw", &id), -ENOENT, "missing");
		snprintf(dir, sizeof(dir), "%s/cgroup.procs", mnt);
		ASSERT_EQ(cgroup__id_of_dir(dir, &id), -ENOTDIR, "a file");
		ASSERT_EQ(cgroup__id_of_dir(NULL, &id), -EINVAL, "NULL dir");
	}
	if (!test__start_subtest("child_cgroup"))
		return;
	/*
	 * A cgroup of our own proves the id is not merely "1": it is created
	 * below the mount root, joined (so /proc sees the new path), left and
	 * removed again even when an assertion fails.
	 */
	snprintf(child, sizeof(child), "%s/mcpw-test-%d", mnt, (int)getpid());
	if (mkdir(child, 0755) < 0) {
		if (errno == EACCES || errno == EPERM || errno == EROFS) {
			test__log("cannot create a cgroup here (%s); skipped", strerror(errno));
			return;
		}
		ASSERT_OK(-errno, "mkdir child cgroup");
		return;
	}
	made_child = true;
	if (!ASSERT_OK(cgroup__id_of_dir(child, &id), "id of child") ||
	    !ASSERT_OK(ino_of(child, &ino), "stat child"))
		goto cleanup;
	ASSERT_EQ(id, ino, "child id is its inode");
	ASSERT_NEQ(id, root_id, "child id differs from root");

	snprintf(procs, sizeof(procs), "%s/cgroup.procs", child);
	if (!ASSERT_OK(write_pid(procs, getpid()), "join child"))
		goto cleanup;
	moved = true;
	if (!ASSERT_OK(cgroup__path_of_pid("/proc", getpid(), now, sizeof(now)), "path now"))
		goto cleanup;
	snprintf(dir, sizeof(dir), "%s%s", mnt, now);
	ASSERT_STREQ(dir, child, "path_of_pid follows the move");
	ASSERT_TRUE(cgroup__path_within(now, "/"), "within root");
cleanup:
	if (moved) {
		snprintf(procs, sizeof(procs), "%s%s/cgroup.procs", mnt,
			 strcmp(self, "/") ? self : "");
		ASSERT_OK(write_pid(procs, getpid()), "move back");
	}
	if (made_child)
		ASSERT_OK(rmdir(child) ? -errno : 0, "rmdir child cgroup");
}

struct within_case {
	const char *path;
	const char *root;
	bool within;
};

static const struct within_case within_cases[] = {
	{ "/a", "/a", true },
	{ "/a/b", "/a", true },
	{ "/ab", "/a", false },
	{ "/a", "/ab", false },
	{ "/a", "/a/b", false },
	{ "/", "/", true },
	{ "/x/y", "/", true },
	{ "/a/b", "/a/", true },
	{ "/a/", "/a", true },
	{ "/a/b", "", true },
	{ "/ci/job-1", "/ci", true },
	{ "/ci-2", "/ci", false },
	{ "/a/..b", "/a", true },
	{ "/../x", "/", false },
	{ "/a/../b", "/a", false },
	{ "/a/./b", "/a", false },
	{ "/a/..", "/a", false },
	{ "", "/", false },
	{ NULL, "/", false },
	{ "/a", NULL, false },
};

void test_cgroup_path_within(void)
{
	size_t i;

	for (i = 0; i < sizeof(within_cases) / sizeof(within_cases[0]); i++) {
		const struct within_case *c = &within_cases[i];
		char what[256];

		snprintf(what, sizeof(what), "\"%s\" within \"%s\"",
			 c->path ? c->path : "(null)", c->root ? c->root : "(null)");
		ASSERT_EQ(cgroup__path_within(c->path, c->root), c->within, what);
	}
}
