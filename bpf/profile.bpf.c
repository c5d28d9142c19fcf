// SPDX-License-Identifier: GPL-2.0
/* profile.bpf.c - Smolder's sampler. One perf_event (cpu-clock) per online
 * CPU runs sm_sample at the agent's frequency; it reads the user and kernel
 * stacks by frame pointers (bpf_get_stack) and counts identical
 * (process, user stack, kernel stack) triples in a hash map, so a busy host
 * hands the agent a few hundred counters per interval instead of every
 * sample.
 *
 * Draining must not race with counting, so there are two sets of maps
 * (counts + stack traces). sm_active, in .bss and written by the agent
 * through the skeleton's mmap, names the set being filled; the agent flips
 * it, waits for programs that read the old value to finish (they run with
 * preemption off, for microseconds), then drains and clears the old set at
 * leisure.
 *
 * Configuration is read-only data the agent sets before loading (CO-RE:
 * the object is compiled once, with no templating and no compiler on the
 * host). */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "profile.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the agent before load. */
const volatile __u32 cfg_kernel_stacks = 1;  /* read kernel stacks too */
const volatile __u32 cfg_filter_tgid = 0;    /* profile only this process (0: all) */

/* Written by the agent at every drain: which set of maps to fill. */
__u32 sm_active = 0;

/* Sizes are set by the agent before load (bpf_map__set_max_entries);
 * these are placeholders. */
struct counts_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct sm_key);
	__type(value, __u64);
};

/* Not a STACK_TRACE map: that one is a table of hash buckets without
 * chaining, so two different stacks that share a bucket lose the second
 * (-EEXIST), a few percent of samples at realistic sizes. A hash map
 * keyed by a 64-bit hash of the addresses only loses stacks when full,
 * and then it says so. */
struct stacks_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct sm_stack);
};

struct counts_map counts0 SEC(".maps"), counts1 SEC(".maps");
struct stacks_map stacks0 SEC(".maps"), stacks1 SEC(".maps");

/* Processes already announced to the agent. LRU: a forgotten entry only
 * means one more announcement, which the agent tolerates. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, __u8);
} known SEC(".maps");

/* New, exec'd and exited processes: the agent reads /proc/PID/maps at once,
 * so a process that exits before the drain still has its mappings. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Scratch space for reading a stack: 1 KiB is too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sm_stack);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SM_STAT_N);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_inc(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &i);
	if (v)
		(*v)++;
}

static __always_inline void emit(__u32 kind, __u32 tgid)
{
	struct sm_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(SM_STAT_EVENTS_LOST);
		return;
	}
	e->kind = kind;
	e->tgid = tgid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void count(void *counts, struct sm_key *key)
{
	__u64 one = 1, *v = bpf_map_lookup_elem(counts, key);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	long err = bpf_map_update_elem(counts, key, &one, BPF_NOEXIST);
	if (err == -17 /* EEXIST: another CPU inserted it first */) {
		v = bpf_map_lookup_elem(counts, key);
		if (v)
			__sync_fetch_and_add(v, 1);
	} else if (err) {
		stat_inc(SM_STAT_COUNT_FULL);
	}
}

/* Reads one stack (user or kernel, by flags), stores it in the set's
 * stacks map unless it is there, and returns its hash; 0 when there is no
 * stack to read. */
static __always_inline __u64 stack_id(void *ctx, void *stacks, __u64 flags, __u32 err_stat)
{
	__u32 zero = 0;
	struct sm_stack *st = bpf_map_lookup_elem(&scratch, &zero);
	if (!st)
		return 0;
	long n = bpf_get_stack(ctx, st->ips, sizeof(st->ips), flags);
	if (n <= 0) {
		if (n < 0 && n != -14 /* EFAULT: no stack of this kind here */)
			stat_inc(err_stat);
		return 0;
	}
	__u32 len = (__u32)n / sizeof(__u64);
	st->len = len;
	/* a multiply-xorshift mix per address: cheap, and 64 bits make two
	 * different stacks with one hash vanishingly unlikely */
	__u64 h = 0x9e3779b97f4a7c15ULL ^ len;
	for (__u32 i = 0; i < SM_MAX_STACK_DEPTH; i++) {
		if (i >= len)
			break;
		h = (h ^ st->ips[i]) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	h |= !h;  /* 0 means "no stack" */
	if (!bpf_map_lookup_elem(stacks, &h)) {
		long err = bpf_map_update_elem(stacks, &h, st, BPF_NOEXIST);
		if (err && err != -17 /* EEXIST: another CPU stored it first */) {
			stat_inc(SM_STAT_STACK_FULL);
			return 0;
		}
	}
	return h;
}

SEC("perf_event")
int sm_sample(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	/* the idle task: not CPU time anyone spent */
	if (tgid == 0)
		return 0;
	if (cfg_filter_tgid && tgid != cfg_filter_tgid)
		return 0;
	stat_inc(SM_STAT_SAMPLES);

	/* Look before inserting: an LRU update takes a free node (and may
	 * shrink the lists for it) even when the key exists. */
	__u8 one = 1;
	if (!bpf_map_lookup_elem(&known, &tgid) &&
	    bpf_map_update_elem(&known, &tgid, &one, BPF_NOEXIST) == 0)
		emit(SM_EV_NEW, tgid);

	struct sm_key key = {.tgid = tgid};
	if (*(volatile __u32 *)&sm_active) {
		key.user_stack = stack_id(ctx, &stacks1, BPF_F_USER_STACK, SM_STAT_USTACK_ERR);
		if (cfg_kernel_stacks)
			key.kernel_stack = stack_id(ctx, &stacks1, 0, SM_STAT_KSTACK_ERR);
		count(&counts1, &key);
	} else {
		key.user_stack = stack_id(ctx, &stacks0, BPF_F_USER_STACK, SM_STAT_USTACK_ERR);
		if (cfg_kernel_stacks)
			key.kernel_stack = stack_id(ctx, &stacks0, 0, SM_STAT_KSTACK_ERR);
		count(&counts0, &key);
	}
	return 0;
}

/* An exec replaces every mapping: forget the process so its next sample
 * announces it again and the agent rereads /proc/PID/maps. BTF-typed
 * tracepoints (raw, Linux 5.5+) attach without tracefs, which containers
 * and minimal hosts often lack. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sm_exec, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	if (bpf_map_delete_elem(&known, &tgid) == 0)
		emit(SM_EV_EXEC, tgid);
	return 0;
}

/* Only processes that were sampled are reported, and only when the last
 * thread leaves (signal->live has dropped to zero by now). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sm_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	__u32 tgid = BPF_CORE_READ(p, tgid);
	if (bpf_map_delete_elem(&known, &tgid) == 0)
		emit(SM_EV_EXIT, tgid);
	return 0;
}
