/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Interned strings: one reference-counted copy of each distinct string
 * (executable paths, command lines, cgroup paths, node names repeat across
 * thousands of connections and their ancestors). Not thread-safe: the
 * daemon's loop thread only.
 */
#ifndef MCPW_INTERN_H
#define MCPW_INTERN_H

#include <stddef.h>

/* A shared copy of s (NULL for NULL, or on ENOMEM). */
const char *intern__get(const char *s);
/* Another reference to an interned string. */
const char *intern__ref(const char *interned);
void intern__put(const char *interned);
size_t intern__size(void);

#endif
