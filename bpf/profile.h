/* profile.h - what bpf/profile.bpf.c and the agent share: map keys, the
 * events the program sends, and the indices of its counters. Plain fixed
 * width types only: this header is compiled both for the BPF target
 * (vmlinux.h types) and for the host. */
#ifndef SMOLDER_BPF_PROFILE_H
#define SMOLDER_BPF_PROFILE_H

/* Frames bpf_get_stackid() keeps per stack: the kernel's own ceiling
 * (PERF_MAX_STACK_DEPTH). */
#define SM_MAX_STACK_DEPTH 127

/* One counting slot per (process, user stack, kernel stack). Stacks are
 * named by a 64-bit hash of their addresses, the key of the stacks map of
 * the same set; 0 means the stack could not be read (a kernel thread has
 * no user stack, a sample in user mode no kernel one). */
struct sm_key {
	__u32 tgid;
	__u32 pad;
	__u64 user_stack;
	__u64 kernel_stack;
};

/* A stack as the program read it, innermost address first. */
struct sm_stack {
	__u32 len;
	__u32 pad;
	__u64 ips[SM_MAX_STACK_DEPTH];
};

enum sm_event_kind {
	SM_EV_NEW = 1,   /* first sample of a process since it started or exec'd */
	SM_EV_EXEC = 2,  /* the process replaced its image */
	SM_EV_EXIT = 3,  /* the whole process ended */
};

struct sm_event {
	__u32 kind;
	__u32 tgid;
	char comm[16];
};

/* Per-CPU counters the agent sums and reports with every batch. */
enum sm_stat {
	SM_STAT_SAMPLES,       /* samples taken (idle excluded) */
	SM_STAT_COUNT_FULL,    /* counts map full: sample dropped */
	SM_STAT_STACK_FULL,    /* stacks map full: frames lost */
	SM_STAT_USTACK_ERR,    /* user stack unreadable (besides kernel threads) */
	SM_STAT_KSTACK_ERR,
	SM_STAT_EVENTS_LOST,   /* ring buffer full: a process event lost */
	SM_STAT_N,
};

#endif
