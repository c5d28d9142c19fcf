// SPDX-License-Identifier: GPL-2.0
/* offcpu.bpf.h - off-CPU time: where threads wait. Included at the end of
 * profile.bpf.c, whose map sets, stack reading and table walker it uses,
 * so an off-CPU stack is as whole as a CPU one and the agent drains both
 * from the same maps (keys of kind SM_KIND_OFFCPU count nanoseconds).
 *
 * A thread that leaves the CPU blocked (sched_switch, not preempted) gets
 * its start time in its own task storage: per thread, not per CPU, so a
 * thread that wakes on another CPU is counted once, from its own start.
 * When it runs again (sched_exit_tp, the end of __schedule in the thread
 * that now runs) the time it was off is added to (process, user stack,
 * kernel stack) if it is at least cfg_offcpu_min_ns. The stacks are read
 * there, in the thread's own context: its user registers and memory are
 * the ones it blocked with, and only blocks long enough cost a stack walk
 * or a map entry. A flood of short blocks costs two small programs per
 * switch and nothing stored.
 *
 * Not here: time a thread waits runnable (preempted) - that is CPU
 * contention, not waiting - and kernel threads, idle ones above all. */

#define PF_KTHREAD 0x00200000   /* include/linux/sched.h */
#define OFF_TASK_DEAD 0x0080    /* TASK_DEAD: the last switch of a thread */

/* Set by the agent before load. */
const volatile __u64 cfg_offcpu_min_ns = 1000000;
/* a block's start is kept when bpf_get_prandom_u32() <= this: p * 2^32 - 1
 * (0xffffffff: every block) */
const volatile __u32 cfg_offcpu_sample = 0xffffffff;

struct offcpu_thread {
	__u64 start_ns;         /* when it blocked (bpf_ktime_get_ns), 0: not blocked
	                         * or not sampled */
};

/* Freed with the thread. Created where no scheduler lock is held (fork,
 * the end of __schedule), never in sched_switch, which runs under the
 * runqueue lock where an allocation may not wait. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct offcpu_thread);
} offcpu_threads SEC(".maps");

struct task_struct___pre514 {
	long state;
} __attribute__((preserve_access_index));

/* The task's state word (__state since Linux 5.14). */
static __always_inline long task_state(struct task_struct *t)
{
	if (bpf_core_field_exists(t->__state))
		return BPF_CORE_READ(t, __state);
	return BPF_CORE_READ((struct task_struct___pre514 *)t, state);
}

/* A user thread the agent wants (the idle tasks are kernel threads). */
static __always_inline bool offcpu_wanted(struct task_struct *t)
{
	if (t->flags & PF_KTHREAD || !t->pid)
		return false;
	return !cfg_filter_tgid || t->tgid == cfg_filter_tgid;
}

#if defined(__TARGET_ARCH_x86)
/* The walker's copies for the off-CPU programs, the walk (slot 0) and its
 * mapping lookup (slot 1): a tail call stays within one program type and,
 * for tracing programs, one attach point. The agent fills the slots after
 * load (never attached themselves). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} offcpu_unw_progs SEC(".maps");

SEC("tp_btf/sched_exit_tp")
int sm_offcpu_unwind(void *ctx)
{
	return unw_continue(ctx, SLOT_OFFCPU, &offcpu_unw_progs, false);
}

SEC("tp_btf/sched_exit_tp")
int sm_offcpu_unw_find(void *ctx)
{
	return unw_find(ctx, SLOT_OFFCPU, &offcpu_unw_progs);
}

/* Hands the user stack to the table walker (tables where the agent or the
 * walker has them, frame pointers elsewhere, as for CPU samples); returns
 * only when it did not (then the kernel's frame-pointer walk). */
static __always_inline void offcpu_walk(void *ctx, struct sm_key *key, __u32 set, __u64 ns)
{
	if (!cfg_unwind)
		return;
	__u32 slot = SLOT_OFFCPU;
	struct unw_state *s = bpf_map_lookup_elem(&unw_state, &slot);
	if (s && unw_user_regs(s))
		unw_begin(ctx, s, key, set, ns, &offcpu_unw_progs);
}
#else
static __always_inline void offcpu_walk(void *ctx, struct sm_key *key, __u32 set, __u64 ns)
{
}
#endif

/* Adds ns to the current thread's (process, user stack, kernel stack) in
 * the set being filled. */
static __always_inline void offcpu_record(void *ctx, __u32 tgid, __u64 ns)
{
	struct sm_key key = {.tgid = tgid, .kind = SM_KIND_OFFCPU};
	if (*(volatile __u32 *)&sm_active) {
		if (cfg_kernel_stacks)
			key.kernel_stack = stack_id(ctx, &stacks1, 0, SM_STAT_KSTACK_ERR, SLOT_OFFCPU);
		offcpu_walk(ctx, &key, 1, ns);
		key.user_stack = stack_id(ctx, &stacks1, BPF_F_USER_STACK, SM_STAT_USTACK_ERR,
		                          SLOT_OFFCPU);
		count(&counts1, &key, ns);
	} else {
		if (cfg_kernel_stacks)
			key.kernel_stack = stack_id(ctx, &stacks0, 0, SM_STAT_KSTACK_ERR, SLOT_OFFCPU);
		offcpu_walk(ctx, &key, 0, ns);
		key.user_stack = stack_id(ctx, &stacks0, BPF_F_USER_STACK, SM_STAT_USTACK_ERR,
		                          SLOT_OFFCPU);
		count(&counts0, &key, ns);
	}
}

/* A thread leaves the CPU: keep when, if it blocks. Runs on every switch
 * of the host, so it does the least it can: no allocation, no map of
 * ours touched for a thread that does not block. */
SEC("tp_btf/sched_switch")
int BPF_PROG(sm_offcpu_switch, bool preempt, struct task_struct *prev)
{
	if (preempt)
		return 0;       /* preempted: still runnable, not waiting */
	long state = task_state(prev);
	if (!state || (state & OFF_TASK_DEAD))
		return 0;       /* yielded, or exiting: it will not come back */
	if (!offcpu_wanted(prev))
		return 0;
	/* Not sampled: nothing to keep. Its start is 0 already (the wake-up
	 * of its last block cleared it), so neither storage nor clock is
	 * touched, which is what makes p < 1 cheaper per switch. */
	if (cfg_offcpu_sample != 0xffffffff && bpf_get_prandom_u32() > cfg_offcpu_sample) {
		stat_inc(SM_STAT_OFF_UNSAMPLED);
		return 0;
	}
	/* no storage yet: a thread already running when the agent started
	 * (it gets storage when it next runs) */
	struct offcpu_thread *th = bpf_task_storage_get(&offcpu_threads, prev, 0, 0);
	if (!th)
		return 0;
	th->start_ns = bpf_ktime_get_ns();
	return 0;
}

/* The thread that now runs: count the time it was off. Also where threads
 * that existed before the agent started get their storage (the first
 * time they run). */
SEC("tp_btf/sched_exit_tp")
int sm_offcpu_wake(void *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	if (!offcpu_wanted(t))
		return 0;
	struct offcpu_thread *th = bpf_task_storage_get(&offcpu_threads, t, 0,
	                                                BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!th) {
		stat_inc(SM_STAT_OFF_NO_STORAGE);
		return 0;
	}
	__u64 start = th->start_ns;
	if (!start)
		return 0;
	th->start_ns = 0;
	__u64 ns = bpf_ktime_get_ns() - start;
	if (ns < cfg_offcpu_min_ns) {
		stat_inc(SM_STAT_OFF_SHORT);
		return 0;
	}
	stat_inc(SM_STAT_OFF_BLOCKS);
	__u32 tgid = t->tgid;
	announce(tgid);
	offcpu_record(ctx, tgid, ns);
	return 0;
}

/* A new thread has not run through __schedule yet: give it storage now,
 * so its first block counts too. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(sm_offcpu_fork, struct task_struct *parent, struct task_struct *child)
{
	if (offcpu_wanted(child) &&
	    !bpf_task_storage_get(&offcpu_threads, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
		stat_inc(SM_STAT_OFF_NO_STORAGE);
	return 0;
}
