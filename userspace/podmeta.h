/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kubernetes pod metadata by pod uid, for `pod` selectors and evidence.
 * Sources: a file in the API server's PodList (or watch-event lines)
 * format, and (see k8s.c) a node-scoped watch of the API server. A pod
 * whose uid is known from its cgroup but whose metadata has not arrived is
 * `pending`: selectors that need pod facts do not match it.
 * Entries are reference counted: a workload keeps its pod's facts as they
 * were when it was resolved.
 */
#ifndef MCPW_PODMETA_H
#define MCPW_PODMETA_H

#include <stddef.h>
#include <jansson.h>

struct pod_info;
struct podmeta;

struct podmeta *podmeta__new(void);
void podmeta__free(struct podmeta *pm);

/* A reference to the pod's facts (pending when unknown), or NULL on ENOMEM. */
struct pod_info *podmeta__lookup(struct podmeta *pm, const char *uid);
struct pod_info *podmeta__get(struct pod_info *p);
void podmeta__put(struct pod_info *p);

/* Adds or replaces one pod from a Kubernetes Pod object. 0 or -EINVAL. */
int podmeta__upsert_json(struct podmeta *pm, json_t *pod);
int podmeta__delete(struct podmeta *pm, const char *uid);
/* Loads a PodList document, or one watch event / Pod per line. */
int podmeta__load_file(struct podmeta *pm, const char *path, char *err, size_t errlen);
size_t podmeta__size(const struct podmeta *pm);

#endif
