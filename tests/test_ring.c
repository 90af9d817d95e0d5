// SPDX-License-Identifier: GPL-2.0
/*
 * The ring consumer (ring.h) against a real BPF ring buffer: a one-page
 * ring, filled by a small socket-filter program run with BPF_PROG_TEST_RUN,
 * so records wrap around its end again and again. Every record arrives
 * once, in order, whole (including the ones split by the end of the ring),
 * and the ring is mapped once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>

#include "harness.h"
#include "ring.h"

#define REC_BIG 200
#define REC_SMALL 24

/* bpf_skb_load_bytes(ctx, 0, fp-256, len); bpf_ringbuf_output(map, fp-256, len, 0) */
static int load_producer(int map_fd, int len)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_6, .src_reg = BPF_REG_1 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_2, .imm = 0 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_3, .src_reg = BPF_REG_10 },
		{ .code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = BPF_REG_3, .imm = -256 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_4, .imm = len },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_skb_load_bytes },
		{ .code = BPF_JMP | BPF_JNE | BPF_K, .dst_reg = BPF_REG_0, .off = 8, .imm = 0 },
		{ .code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = BPF_REG_1,
		  .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd },
		{},
		{ .code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_10 },
		{ .code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = BPF_REG_2, .imm = -256 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_3, .imm = len },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_4, .imm = 0 },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_ringbuf_output },
		{ .code = BPF_JMP | BPF_JA, .off = 0 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};

	return bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, "ring_test", "GPL", insns,
			     sizeof(insns) / sizeof(insns[0]), NULL);
}

/* One record of len bytes, every byte the sequence number's. */
static int produce(int prog_fd, unsigned seq)
{
	unsigned char pkt[256];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt));

	memset(pkt, (int)(seq % 251), sizeof(pkt));
	return bpf_prog_test_run_opts(prog_fd, &opts);
}

struct got {
	unsigned next;		/* sequence number expected next */
	int bad;
	const unsigned *lens;	/* the length of each record sent */
};

static int on_record(void *ctx, void *data, size_t size)
{
	struct got *g = ctx;
	const unsigned char *p = data;
	size_t i;

	if (size != g->lens[g->next])
		g->bad++;
	for (i = 0; i < size; i++)
		if (p[i] != g->next % 251) {
			g->bad++;
			break;
		}
	g->next++;
	return 0;
}

void test_ring_wraps_whole_in_order(void)
{
	enum { N = 2000 };
	unsigned *lens = calloc(N, sizeof(*lens)), sent = 0, split = 0;
	int map_fd, big = -1, small = -1, round, n, total = 0;
	long page = sysconf(_SC_PAGESIZE);
	struct got g = { .lens = lens };
	struct rings *r = NULL;
	uint64_t pos = 0;

	if (!ASSERT_OK_PTR(lens, "lens"))
		return;
	map_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "ring_test", 0, 0, (__u32)page, NULL);
	if (!ASSERT_GE(map_fd, 0, "ring map"))
		goto out;
	big = load_producer(map_fd, REC_BIG);
	small = load_producer(map_fd, REC_SMALL);
	if (!ASSERT_GE(big, 0, "producer program") || !ASSERT_GE(small, 0, "producer program"))
		goto out;
	r = rings__new();
	if (!ASSERT_OK_PTR(r, "rings") ||
	    !ASSERT_OK(rings__add(r, map_fd, on_record, &g), "add the ring"))
		goto out;
	ASSERT_EQ(rings__mapped_bytes(r), (size_t)(3 * page), "data mapped once");
	srand(7);
	for (round = 0; sent < N && !g.bad; round++) {
		int burst = 1 + rand() % 12;	/* at most ~2.5 KiB: fits the page */

		while (burst-- && sent < N) {
			unsigned len = rand() % 3 ? REC_BIG : REC_SMALL;

			lens[sent] = len;
			if ((pos + 8) % (uint64_t)page + len > (uint64_t)page)
				split++;
			pos += (len + 8 + 7) & ~7u;
			if (!ASSERT_OK(produce(len == REC_BIG ? big : small, sent), "produce"))
				goto out;
			sent++;
		}
		n = rings__consume(r);
		if (!ASSERT_GE(n, 0, "consume"))
			goto out;
		total += n;
		ASSERT_EQ(g.next, sent, "everything produced so far consumed");
	}
	ASSERT_EQ(g.bad, 0, "every record whole and in order");
	ASSERT_EQ(total, N, "counted");
	ASSERT_EQ(rings__consume(r), 0, "nothing left");
	test__log("%u records, %u split by the end of the ring, %d rounds", sent, split, round);
	ASSERT_GE(split, 20, "records wrapped around the end");
out:
	rings__free(r);
	if (big >= 0)
		close(big);
	if (small >= 0)
		close(small);
	if (map_fd >= 0)
		close(map_fd);
	free(lens);
}

void test_ring_rejects_other_maps(void)
{
	struct rings *r = rings__new();
	int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "not_a_ring", 4, 8, 1, NULL);

	if (ASSERT_OK_PTR(r, "rings") && ASSERT_GE(fd, 0, "array map"))
		ASSERT_EQ(rings__add(r, fd, on_record, NULL), -EINVAL, "an array is not a ring");
	if (fd >= 0)
		close(fd);
	rings__free(r);
}

struct refill {
	int prog;
	unsigned seen;
};

/* Each record consumed makes the producer commit another one. */
static int on_record_refill(void *ctx, void *data, size_t size)
{
	struct refill *r = ctx;

	(void)data;
	(void)size;
	r->seen++;
	if (r->seen < 1000)
		produce(r->prog, r->seen);
	return 0;
}

/* A producer that never pauses does not keep a pass going: one pass
 * takes what was committed when it began, the rest waits for the next. */
void test_ring_pass_is_bounded(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct refill rf = { .prog = -1 };
	struct rings *r = NULL;
	int map_fd, i;

	map_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "ring_test", 0, 0, (__u32)page, NULL);
	if (!ASSERT_GE(map_fd, 0, "ring map"))
		return;
	rf.prog = load_producer(map_fd, REC_SMALL);
	r = rings__new();
	if (!ASSERT_GE(rf.prog, 0, "producer program") || !ASSERT_OK_PTR(r, "rings") ||
	    !ASSERT_OK(rings__add(r, map_fd, on_record_refill, &rf), "add the ring"))
		goto out;
	for (i = 0; i < 3; i++)
		produce(rf.prog, (unsigned)i);
	ASSERT_EQ(rings__consume(r), 3, "the three committed before the pass, no more");
	ASSERT_EQ(rings__consume(r), 3, "the three committed meanwhile, in the next");
out:
	rings__free(r);
	if (rf.prog >= 0)
		close(rf.prog);
	close(map_fd);
}
