// SPDX-License-Identifier: GPL-2.0
/*
 * Keeps N live processes for the memory benchmark (`make bench`, M): starts
 * N children that only pause(), prints one JSON line once all of them
 * exist, then waits until stdin closes or SIGTERM/SIGINT arrives, kills and
 * reaps its children and exits. Children also die with the parent
 * (PR_SET_PDEATHSIG), so a killed parent leaves nothing behind.
 *
 *   many_procs N
 *   {"procs":N,"failed":F,"seconds":S}
 *
 * Each child is a process of its own (own pid, SIGCHLD to the parent) that
 * shares the parent's memory (clone with CLONE_VM), as vfork does: on a
 * paravirtualised host a plain fork() copies page tables and takes COW
 * faults for milliseconds each, and 10k of them would take minutes. What
 * the agent sees is the same: a fork event and a live process per child.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define STACK_BYTES (16u << 10)

static volatile sig_atomic_t stop;
static pid_t parent;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs on a stack of its own in the parent's memory: raw system calls
 * only, nothing that touches libc state (errno, stdio, the heap). */
static int child(void *arg)
{
	(void)arg;
	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	/* The parent may have died before prctl(). */
	if (syscall(SYS_getppid) != parent)
		syscall(SYS_exit, 0);
	for (;;)
		syscall(SYS_pause);
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	long want, made = 0, failed = 0, i;
	double t0 = now_s();
	pid_t *kids;
	char *stacks;

	if (argc < 2 || (want = strtol(argv[1], NULL, 10)) <= 0) {
		fprintf(stderr, "usage: many_procs N\n");
		return 2;
	}
	parent = getpid();
	kids = calloc((size_t)want, sizeof(*kids));
	stacks = mmap(NULL, (size_t)want * STACK_BYTES, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!kids || stacks == MAP_FAILED) {
		fprintf(stderr, "many_procs: out of memory\n");
		return 1;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (i = 0; i < want && !stop; i++) {
		pid_t pid = clone(child, stacks + (size_t)(i + 1) * STACK_BYTES, CLONE_VM | SIGCHLD, NULL);

		if (pid < 0) {
			failed++;
			if (errno == EAGAIN && failed < 100) {
				usleep(10000);
				i--;
				continue;
			}
			break;
		}
		kids[made++] = pid;
	}
	printf("{\"procs\":%ld,\"failed\":%ld,\"seconds\":%.3f}\n", made, failed, now_s() - t0);
	fflush(stdout);

	while (!stop) {
		struct pollfd p = { .fd = 0, .events = POLLIN };
		char buf[64];

		if (poll(&p, 1, 1000) > 0 && read(0, buf, sizeof(buf)) <= 0)
			break;
	}
	for (i = 0; i < made; i++)
		kill(kids[i], SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	free(kids);
	return 0;
}
