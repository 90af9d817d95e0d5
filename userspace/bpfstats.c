// SPDX-License-Identifier: GPL-2.0
/* BPF program run statistics, read through BPF_OBJ_GET_INFO_BY_FD. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "bpfstats.h"

bool bpfstats__enabled(void)
{
	char c = '0';
	int fd = open("/proc/sys/kernel/bpf_stats_enabled", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (read(fd, &c, 1) != 1)
		c = '0';
	close(fd);
	return c == '1';
}

int bpfstats__read(const int *prog_fds, size_t n, struct bpf_prog_stat *out)
{
	size_t i, got = 0;
	int err = 0, ret;

	for (i = 0; i < n; i++) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		struct bpf_prog_stat *st = &out[got];

		memset(&info, 0, sizeof(info));
		/* bpf_obj_get_info_by_fd, not bpf_prog_get_info_by_fd: the
		 * latter needs libbpf 1.2 and Debian 12 ships 1.1. */
		ret = prog_fds[i] < 0 ? -EBADF : bpf_obj_get_info_by_fd(prog_fds[i], &info, &len);
		if (ret < 0) {
			err = ret;
			continue;
		}
		memset(st, 0, sizeof(*st));
		st->id = info.id;
		st->type = info.type;
		memcpy(st->name, info.name, sizeof(st->name) - 1);
		st->run_cnt = info.run_cnt;
		st->run_time_ns = info.run_time_ns;
		st->recursion_misses = info.recursion_misses;
		got++;
	}
	return got ? (int)got : err;
}
