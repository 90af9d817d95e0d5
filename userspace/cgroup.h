/* SPDX-License-Identifier: GPL-2.0 */
/*
 * cgroup v2 facts: where cgroup2 is mounted, a process's cgroup path (from
 * /proc/PID/cgroup, the source of truth), a cgroup id's path, and what a
 * path says about containers and pods in the layouts users run:
 *   systemd:  /kubepods.slice/kubepods-burstable.slice/
 *             kubepods-burstable-pod<uid_with_underscores>.slice/
 *             cri-containerd-<id>.scope   (also docker-<id>.scope,
 *             crio-<id>.scope, libpod-<id>.scope)
 *   cgroupfs: /kubepods/burstable/pod<uid>/<id>, /kubepods/pod<uid>/<id>
 *   docker:   /docker/<id>, /system.slice/docker-<id>.scope
 *   podman:   /machine.slice/libpod-<id>.scope,
 *             /user.slice/.../libpod-<id>.scope[/container]
 *   CRI-O:    .../crio-<id>.scope, crio-conmon-<id>.scope (not a container)
 * mountinfo is used only to find the cgroup2 mount point.
 */
#ifndef MCPW_CGROUP_H
#define MCPW_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cgroup_meta {
	char container_id[65];	/* lower-case hex, "" when none */
	char pod_uid[37];	/* dashed form, "" when none */
	char runtime[16];	/* "containerd", "docker", "crio", "podman", "" */
	char qos[16];		/* "guaranteed", "burstable", "besteffort", "" */
};

/* Returns 0 and fills meta (empty fields when nothing is recognised). */
int cgroup__parse_path(const char *path, struct cgroup_meta *meta);

/* Finds the cgroup2 mount point in a mountinfo file. 0 or -ENOENT. */
int cgroup__find_mount(const char *mountinfo_path, char *out, size_t len);

/* The cgroup v2 path of pid ("0::" line of /proc/PID/cgroup). 0 or -errno. */
int cgroup__path_of_pid(const char *proc_root, pid_t pid, char *out, size_t len);

/* The cgroup id (kernfs inode) of a cgroup directory. 0 or -errno. */
int cgroup__id_of_dir(const char *dir, uint64_t *id);

/* True when path equals root or lies below it ("/a" is below "/"). */
bool cgroup__path_within(const char *path, const char *root);

#endif
