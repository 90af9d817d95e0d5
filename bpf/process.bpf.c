// SPDX-License-Identifier: GPL-2.0
/*
 * Process lifecycle: exec, fork and exit from the scheduler's stable
 * tracepoints, so every way into a new image (execve, execveat, fexecve,
 * binfmt_misc) is seen. The tp_btf flavour is preferred; the classic
 * tracepoint flavour is the fallback the daemon selects when tp_btf does
 * not load (only one of each pair is ever loaded).
 *
 * Records go to the `events` ring; a full ring is counted in
 * MCPW_CNT_EVENTS_LOST and reported by the daemon as a `lost` event.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline __u64 task_cgroup_id(struct task_struct *task)
{
	return BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
}

static __always_inline void read_args(struct mcpw_exec_event *e, struct task_struct *task)
{
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	unsigned long len = end - start;

	e->args_truncated = 0;
	if (end <= start) {
		e->args_len = 0;
		return;
	}
	if (len > MCPW_ARGS_LEN) {
		len = MCPW_ARGS_LEN;
		e->args_truncated = 1;
	}
	/* Just written by the kernel onto the new stack, so present. */
	if (bpf_probe_read_user(e->args, len, (void *)start) < 0)
		len = 0;
	e->args_len = len;
}

#define SIGSTOP_NUM 19

/*
 * A stdio MCP server candidate (its executable file is in stdio_exes) is
 * stopped before it runs a single instruction of its own; the daemon then
 * checks who launched it and sends SIGCONT or SIGKILL. With the daemon
 * away, `fail` decides: open lets it run, closed keeps it stopped for the
 * daemon to judge when it is back.
 */
static __always_inline bool stop_stdio_candidate(struct task_struct *task, struct file *file)
{
	struct mcpw_config *cfg = get_config();
	struct mcpw_file_key key = {};
	struct inode *inode;
	__u64 start;
	__u32 tgid;
	dev_t dev;

	if (!file || !cfg)
		return false;
	inode = BPF_CORE_READ(file, f_inode);
	dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key.dev = dev;
	key.ino = BPF_CORE_READ(inode, i_ino);
	if (!bpf_map_lookup_elem(&stdio_exes, &key))
		return false;
	/* Only inside the agent's scope (this tracepoint sees the node). */
	if (bpf_current_task_under_cgroup(&scope_cgroup, 0) != 1)
		return false;
	if (!daemon_alive(cfg) && cfg->fail_open)
		return false;
	tgid = BPF_CORE_READ(task, tgid);
	start = BPF_CORE_READ(task, group_leader, start_boottime);
	bpf_map_update_elem(&stdio_stopped, &tgid, &start, BPF_ANY);
	bpf_send_signal(SIGSTOP_NUM);
	return true;
}

static __always_inline int emit_exec(struct task_struct *task, const char *filename,
				     struct file *file)
{
	struct mcpw_exec_event *e;
	bool stopped;
	long n;

	stopped = stop_stdio_candidate(task, file);
	{
		/* A new image is a new workload: its connections are judged
		 * afresh, before it can open one. */
		struct mcpw_inst_key ik = {
			.tgid = BPF_CORE_READ(task, tgid),
			.start_ns = BPF_CORE_READ(task, group_leader, start_boottime),
		};

		bpf_map_delete_elem(&inst_tmpl, &ik);
	}

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		/* A stopped candidate is still found through stdio_stopped. */
		count(MCPW_CNT_EVENTS_LOST, 1);
		return 0;
	}
	fill_hdr(&e->hdr, MCPW_EV_EXEC, sizeof(*e));
	fill_task(&e->task, task);
	e->task.cgroup_id = bpf_get_current_cgroup_id();
	e->flags = stopped ? MCPW_EXEC_STOPPED : 0;
	n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
	e->filename_len = n > 0 ? n - 1 : 0;
	read_args(e, task);
	bpf_ringbuf_submit(e, stopped ? RB_NOW : RB_EVENTS_BATCH);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return emit_exec(p, BPF_CORE_READ(bprm, filename), BPF_CORE_READ(bprm, file));
}

SEC("tp/sched/sched_process_exec")
int exec_tp(struct trace_event_raw_sched_process_exec *ctx)
{
	unsigned int off = ctx->__data_loc_filename & 0xFFFF;

	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return emit_exec(task, (const char *)ctx + off, BPF_CORE_READ(task, mm, exe_file));
}

static __always_inline int emit_fork(struct task_struct *child)
{
	struct mcpw_fork_event *e;

	/* New threads are not new processes. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(MCPW_CNT_EVENTS_LOST, 1);
		return 0;
	}
	fill_hdr(&e->hdr, MCPW_EV_FORK, sizeof(*e));
	fill_task(&e->child, child);
	/* clone3(CLONE_INTO_CGROUP) may place the child elsewhere. */
	e->child.cgroup_id = task_cgroup_id(child);
	bpf_ringbuf_submit(e, RB_EVENTS_BATCH);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(fork_btf, struct task_struct *parent, struct task_struct *child)
{
	return emit_fork(child);
}

SEC("tp/sched/sched_process_fork")
int fork_tp(struct trace_event_raw_sched_process_fork *ctx)
{
	struct mcpw_fork_event *e;

	/* The classic record names the child by pid only, without saying
	 * whether it is a thread: report the parent's facts with the child's
	 * pid, and the daemon completes (or discards) it from /proc. */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(MCPW_CNT_EVENTS_LOST, 1);
		return 0;
	}
	fill_hdr(&e->hdr, MCPW_EV_FORK, sizeof(*e));
	fill_current_task(&e->child);
	e->child.ppid = e->child.tgid;
	e->child.tgid = ctx->child_pid;
	e->child.pid = ctx->child_pid;
	e->child.start_ns = 0;
	bpf_ringbuf_submit(e, RB_EVENTS_BATCH);
	return 0;
}

static __always_inline int emit_exit(struct task_struct *task)
{
	struct mcpw_exit_event *e;

	/* Only when the whole thread group is gone. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(MCPW_CNT_EVENTS_LOST, 1);
		return 0;
	}
	fill_hdr(&e->hdr, MCPW_EV_EXIT, sizeof(*e));
	e->tgid = BPF_CORE_READ(task, tgid);
	e->exit_code = BPF_CORE_READ(task, exit_code);
	e->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	bpf_ringbuf_submit(e, RB_EVENTS_BATCH);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(exit_btf, struct task_struct *p)
{
	return emit_exit(p);
}

SEC("tp/sched/sched_process_exit")
int exit_tp(void *ctx)
{
	return emit_exit((struct task_struct *)bpf_get_current_task());
}
