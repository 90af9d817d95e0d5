/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A listening socket in a level-triggered epoll set whose accept() fails
 * for want of descriptors or memory stays readable: watched on, it would
 * spin the agent's loop at full CPU until one frees. It is taken out of
 * its set instead, and put back at the next tick (the control socket, the
 * metrics endpoint and the attestation socket alike).
 */
#ifndef MCPW_LISTENER_H
#define MCPW_LISTENER_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct listener_pause {
	bool paused;
};

/* After accept() failed with err: pauses the listener when err is a
 * shortage. True when it did. */
static inline bool listener__starved(struct listener_pause *p, int epfd, int lfd, int err)
{
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return false;
	if (epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL) == 0 || errno == ENOENT)
		p->paused = true;
	return true;
}

/* At a tick: watches a paused listener again (data: its epoll data). */
static inline void listener__resume(struct listener_pause *p, int epfd, int lfd,
				    epoll_data_t data)
{
	struct epoll_event ev = { .events = EPOLLIN, .data = data };

	if (p->paused && (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) == 0 || errno == EEXIST))
		p->paused = false;
}

#endif
