// SPDX-License-Identifier: GPL-2.0
/* Pod metadata store: uid -> refcounted pod facts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "podmeta.h"
#include "workload.h"

#define PODMETA_MAX 65536

struct pod_entry {
	struct pod_info info;	/* first: pod_info pointers are entries */
	int refs;
};

struct podmeta {
	struct hmap *by_uid;	/* uid -> struct pod_entry * (one ref) */
};

static void entry_free(struct pod_entry *e)
{
	size_t i;

	free(e->info.namespace_);
	free(e->info.name);
	free(e->info.uid);
	free(e->info.service_account);
	free(e->info.image);
	for (i = 0; i < e->info.n_labels; i++) {
		free(e->info.labels[i].key);
		free(e->info.labels[i].value);
	}
	free(e->info.labels);
	free(e);
}

struct pod_info *podmeta__get(struct pod_info *p)
{
	if (p)
		((struct pod_entry *)p)->refs++;
	return p;
}

void podmeta__put(struct pod_info *p)
{
	struct pod_entry *e = (struct pod_entry *)p;

	if (e && --e->refs == 0)
		entry_free(e);
}

struct podmeta *podmeta__new(void)
{
	struct podmeta *pm = calloc(1, sizeof(*pm));

	if (!pm)
		return NULL;
	pm->by_uid = hmap__new(true);
	if (!pm->by_uid) {
		free(pm);
		return NULL;
	}
	return pm;
}

void podmeta__free(struct podmeta *pm)
{
	struct hmap_iter it;
	void *val;

	if (!pm)
		return;
	hmap__iter_init(pm->by_uid, &it);
	while (hmap__iter_next(&it, NULL, NULL, &val))
		podmeta__put(val);
	hmap__free(pm->by_uid);
	free(pm);
}

size_t podmeta__size(const struct podmeta *pm)
{
	return hmap__size(pm->by_uid);
}

struct pod_info *podmeta__lookup(struct podmeta *pm, const char *uid)
{
	struct pod_entry *e = hmap__sget(pm->by_uid, uid);

	if (e)
		return podmeta__get(&e->info);
	/* Not known (yet): a pending placeholder that is not stored, so the
	 * real facts replace nothing when they arrive. */
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->info.uid = strdup(uid);
	e->info.pending = true;
	e->refs = 1;
	return &e->info;
}

static char *jstr(json_t *o, const char *path1, const char *path2)
{
	json_t *v = json_object_get(o, path1);

	if (path2)
		v = json_object_get(v, path2);
	return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

int podmeta__upsert_json(struct podmeta *pm, json_t *pod)
{
	json_t *meta = json_object_get(pod, "metadata");
	json_t *spec = json_object_get(pod, "spec");
	json_t *labels = json_object_get(meta, "labels");
	json_t *containers = json_object_get(spec, "containers");
	struct pod_entry *e, *old;
	const char *k;
	json_t *v;

	if (!json_is_object(meta) || !json_is_string(json_object_get(meta, "uid")))
		return -EINVAL;
	if (hmap__size(pm->by_uid) >= PODMETA_MAX &&
	    !hmap__sget(pm->by_uid, json_string_value(json_object_get(meta, "uid"))))
		return -ENOSPC;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->refs = 1;
	e->info.uid = jstr(meta, "uid", NULL);
	e->info.namespace_ = jstr(meta, "namespace", NULL);
	e->info.name = jstr(meta, "name", NULL);
	e->info.service_account = jstr(spec, "serviceAccountName", NULL);
	if (json_is_array(containers) && json_array_size(containers))
		e->info.image = jstr(json_array_get(containers, 0), "image", NULL);
	if (json_is_object(labels) && json_object_size(labels)) {
		e->info.labels = calloc(json_object_size(labels), sizeof(*e->info.labels));
		json_object_foreach(labels, k, v) {
			if (!e->info.labels || !json_is_string(v))
				continue;
			e->info.labels[e->info.n_labels].key = strdup(k);
			e->info.labels[e->info.n_labels].value = strdup(json_string_value(v));
			e->info.n_labels++;
		}
	}
	old = hmap__sget(pm->by_uid, e->info.uid);
	if (hmap__sput(pm->by_uid, e->info.uid, e)) {
		entry_free(e);
		return -ENOMEM;
	}
	if (old)
		podmeta__put(&old->info);
	return 0;
}

int podmeta__delete(struct podmeta *pm, const char *uid)
{
	struct pod_entry *e = hmap__sdel(pm->by_uid, uid);

	if (!e)
		return -ENOENT;
	podmeta__put(&e->info);
	return 0;
}

static int apply_doc(struct podmeta *pm, json_t *doc)
{
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	const char *type = json_string_value(json_object_get(doc, "type"));
	json_t *items, *item;
	size_t i;

	if (type) {	/* a watch event: {"type": "ADDED", "object": {...}} */
		json_t *obj = json_object_get(doc, "object");

		if (strcmp(type, "DELETED") == 0)
			return podmeta__delete(pm, json_string_value(json_object_get(
					json_object_get(obj, "metadata"), "uid")) ?: "");
		return podmeta__upsert_json(pm, obj);
	}
	if (kind && strcmp(kind, "PodList") == 0) {
		items = json_object_get(doc, "items");
		json_array_foreach(items, i, item)
			podmeta__upsert_json(pm, item);
		return 0;
	}
	return podmeta__upsert_json(pm, doc);
}

int podmeta__load_file(struct podmeta *pm, const char *path, char *err, size_t errlen)
{
	json_error_t jerr;
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0, ret = 0;
	json_t *doc;
	FILE *f;

	/* One document (a Pod or PodList, any layout)... */
	doc = json_load_file(path, 0, &jerr);
	if (doc) {
		ret = apply_doc(pm, doc);
		json_decref(doc);
		if (ret && ret != -ENOENT)
			snprintf(err, errlen, "%s: not a Pod, PodList or watch event", path);
		return ret == -ENOENT ? 0 : ret;
	}
	/* ...or one watch event per line, as the API server streams them. */
	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		if (line[strspn(line, " \t\r\n")] == '\0')
			continue;
		doc = json_loads(line, 0, &jerr);
		if (!doc) {
			snprintf(err, errlen, "%s:%d:%d: %s", path, lineno, jerr.column, jerr.text);
			ret = -EINVAL;
			break;
		}
		apply_doc(pm, doc);
		json_decref(doc);
	}
	free(line);
	fclose(f);
	return ret;
}
