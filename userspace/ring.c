// SPDX-License-Identifier: GPL-2.0
/* BPF ring buffer consumer with a single mapping of each ring (ring.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <bpf/bpf.h>

#include "ring.h"

struct ring {
	ring_fn fn;
	void *ctx;
	uint64_t *consumer_pos;		/* our page, read-write */
	void *ro;			/* producer page + data, read-only */
	const uint64_t *producer_pos;
	const char *data;
	size_t size;			/* data bytes, a power of two */
	char *wrapped;			/* a record that wraps, copied whole */
	size_t wrapped_cap;
};

struct rings {
	struct ring *ring;
	size_t n;
	int epfd;
	size_t page;
	bool stalled;		/* the last pass stopped at a record being written */
};

struct rings *rings__new(void)
{
	struct rings *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->page = (size_t)sysconf(_SC_PAGESIZE);
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0) {
		free(r);
		return NULL;
	}
	return r;
}

static void ring_unmap(const struct rings *r, struct ring *rg)
{
	if (rg->consumer_pos)
		munmap(rg->consumer_pos, r->page);
	if (rg->ro)
		munmap(rg->ro, r->page + rg->size);
	free(rg->wrapped);
}

int rings__add(struct rings *r, int map_fd, ring_fn fn, void *ctx)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	struct epoll_event ev = { .events = EPOLLIN };
	struct ring *grown, rg = { .fn = fn, .ctx = ctx };
	void *p;
	int err;

	if (bpf_obj_get_info_by_fd(map_fd, &info, &len))
		return -errno;
	if (info.type != BPF_MAP_TYPE_RINGBUF || !info.max_entries ||
	    (info.max_entries & (info.max_entries - 1)) || info.max_entries % r->page)
		return -EINVAL;
	rg.size = info.max_entries;
	p = mmap(NULL, r->page, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	rg.consumer_pos = p;
	/* The kernel maps the data twice so that a wrapping record reads in
	 * one piece; mapping only the first copy is allowed and halves what
	 * it makes resident. */
	p = mmap(NULL, r->page + rg.size, PROT_READ, MAP_SHARED, map_fd, (off_t)r->page);
	if (p == MAP_FAILED) {
		err = -errno;
		ring_unmap(r, &rg);
		return err;
	}
	rg.ro = p;
	rg.producer_pos = p;
	rg.data = (const char *)p + r->page;
	ev.data.u32 = (__u32)r->n;
	if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, map_fd, &ev)) {
		err = -errno;
		ring_unmap(r, &rg);
		return err;
	}
	grown = realloc(r->ring, (r->n + 1) * sizeof(*grown));
	if (!grown) {
		epoll_ctl(r->epfd, EPOLL_CTL_DEL, map_fd, NULL);
		ring_unmap(r, &rg);
		return -ENOMEM;
	}
	r->ring = grown;
	r->ring[r->n++] = rg;
	return 0;
}

int rings__epoll_fd(const struct rings *r)
{
	return r->epfd;
}

/* The record of len bytes at data offset off, in one piece. */
static void *record_at(struct ring *rg, size_t off, size_t len)
{
	size_t first;

	if (off + len <= rg->size)
		return (void *)(rg->data + off);
	if (len > rg->wrapped_cap) {
		char *n = realloc(rg->wrapped, len);

		if (!n)
			return NULL;
		rg->wrapped = n;
		rg->wrapped_cap = len;
	}
	first = rg->size - off;
	memcpy(rg->wrapped, rg->data + off, first);
	memcpy(rg->wrapped + first, rg->data, len - first);
	return rg->wrapped;
}

/*
 * The records committed when the pass began, no more: a producer that
 * never pauses cannot keep the loop here, away from the other ring, its
 * timers and signals (the ring's fd stays readable for the next pass).
 * 1 when it stopped at a record still being written, else 0 or -errno.
 */
static int consume_ring(struct ring *rg, int *count)
{
	uint64_t cons = __atomic_load_n(rg->consumer_pos, __ATOMIC_ACQUIRE);
	uint64_t prod = __atomic_load_n(rg->producer_pos, __ATOMIC_ACQUIRE);
	size_t mask = rg->size - 1;
	int err;

	while (cons < prod) {
		const __u32 *hdr = (const __u32 *)(rg->data + (cons & mask));
		__u32 word = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
		__u32 len = word & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
		uint64_t rec = cons;
		void *sample;

		/* Reserved, not committed yet: it and everything after it
		 * wait for the next pass. */
		if (word & BPF_RINGBUF_BUSY_BIT)
			return 1;
		cons += (len + BPF_RINGBUF_HDR_SZ + 7) & ~(uint64_t)7;
		if (!(word & BPF_RINGBUF_DISCARD_BIT)) {
			sample = record_at(rg, (size_t)((rec + BPF_RINGBUF_HDR_SZ) & mask), len);
			if (!sample)
				return -ENOMEM;	/* not handed out: read next time */
			err = rg->fn(rg->ctx, sample, len);
			if (err < 0) {
				/* Handed out: as libbpf, not again. */
				__atomic_store_n(rg->consumer_pos, cons, __ATOMIC_RELEASE);
				return err;
			}
			(*count)++;
		}
		__atomic_store_n(rg->consumer_pos, cons, __ATOMIC_RELEASE);
	}
	return 0;
}

int rings__consume(struct rings *r)
{
	int count = 0, err;
	size_t i;

	r->stalled = false;
	for (i = 0; i < r->n; i++) {
		err = consume_ring(&r->ring[i], &count);
		if (err < 0)
			return err;
		if (err > 0)
			r->stalled = true;
	}
	return count;
}

bool rings__stalled(const struct rings *r)
{
	return r->stalled;
}

size_t rings__mapped_bytes(const struct rings *r)
{
	size_t i, n = 0;

	for (i = 0; i < r->n; i++)
		n += 2 * r->page + r->ring[i].size;
	return n;
}

void rings__free(struct rings *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->n; i++)
		ring_unmap(r, &r->ring[i]);
	free(r->ring);
	close(r->epfd);
	free(r);
}
