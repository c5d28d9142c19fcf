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
 * User stacks of processes the agent has unwind tables for (built from
 * .eh_frame, see agent/unwind_table.c) are walked here by those tables
 * instead (sm_unwind), so code without frame pointers (most of Debian:
 * libc, liblzma, python3) unwinds to its outermost frame; frames of
 * objects without a table fall back to frame pointers.
 *
 * With --off-cpu, the programs of offcpu.bpf.h (included at the end) count
 * nanoseconds threads spent blocked into the same maps, keys of kind
 * SM_KIND_OFFCPU, their user stacks walked by the same code.
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
const volatile __u32 cfg_unwind = 1;         /* walk user stacks with unwind tables */

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

/* Per-CPU scratch of the programs that read stacks, one slot each: the
 * sampler runs in an interrupt and may interrupt the off-CPU programs
 * (bpf/offcpu.bpf.h) on their CPU, so they must not share one. */
enum { SLOT_SAMPLER = 0, SLOT_OFFCPU = 1, SLOTS = 2 };

/* Scratch space for reading a stack: 1 KiB is too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct sm_stack);
} scratch SEC(".maps");

/* ---- the table walker's maps ---- */

/* Every object's rows, one after another; the agent writes them through
 * mmap (sizes set before load) and hands out ranges. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct sm_unw_row);
} unw_rows SEC(".maps");

/* Per process: its executable mappings and their row ranges. Allocated as
 * processes get tables (4 KiB each), not up front. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct sm_unw_proc);
} unw_procs SEC(".maps");

/* A walk in progress: sm_sample starts it, sm_unwind continues it across
 * tail calls (each program may walk UNW_FRAMES frames: the verifier
 * checks every path of a bounded loop, and a program that walked all 128
 * frames with two binary searches each would be too big for it). */
struct unw_state {
	__u64 pc, sp, bp;
	__u32 tails;
	__u32 set;              /* which map set this sample counts into */
	__u32 last_map;         /* the previous frame's mapping */
	__u32 pad;
	__u64 value;            /* what the walk's stack counts: 1 sample, or
	                         * the nanoseconds of an off-CPU block */
	struct sm_key key;
	struct sm_stack stack;
};

/* one walk in progress per CPU and slot (SLOT_*) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct unw_state);
} unw_state SEC(".maps");

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
	e->ktime_ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, 0);
}

/* Tells the agent about a process the first time it is counted, so it
 * reads the process' mappings while it lives. Looks before inserting: an
 * LRU update takes a free node (and may shrink the lists for it) even
 * when the key exists. */
static __always_inline void announce(__u32 tgid)
{
	__u8 one = 1;
	if (!bpf_map_lookup_elem(&known, &tgid) &&
	    bpf_map_update_elem(&known, &tgid, &one, BPF_NOEXIST) == 0)
		emit(SM_EV_NEW, tgid);
}

/* Adds value to key's slot: a sample (1) or an off-CPU block's
 * nanoseconds. */
static __always_inline void count(void *counts, struct sm_key *key, __u64 value)
{
	__u64 *v = bpf_map_lookup_elem(counts, key);
	if (v) {
		__sync_fetch_and_add(v, value);
		return;
	}
	long err = bpf_map_update_elem(counts, key, &value, BPF_NOEXIST);
	if (err == -17 /* EEXIST: another CPU inserted it first */) {
		v = bpf_map_lookup_elem(counts, key);
		if (v)
			__sync_fetch_and_add(v, value);
	} else if (err) {
		stat_inc(key->kind == SM_KIND_OFFCPU ? SM_STAT_OFF_COUNT_FULL : SM_STAT_COUNT_FULL);
	}
}

/* Stores st (len set) in the set's stacks map unless it is there, and
 * returns its hash; 0 when it is empty or could not be stored. */
static __always_inline __u64 store_stack(void *stacks, struct sm_stack *st)
{
	__u32 len = st->len;
	if (!len)
		return 0;
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

/* Reads one stack by frame pointers (user or kernel, by flags) into the
 * scratch of slot and stores it; returns its hash, 0 when there is no
 * stack to read. */
static __always_inline __u64 stack_id(void *ctx, void *stacks, __u64 flags, __u32 err_stat,
                                      __u32 slot)
{
	struct sm_stack *st = bpf_map_lookup_elem(&scratch, &slot);
	if (!st)
		return 0;
	long n = bpf_get_stack(ctx, st->ips, sizeof(st->ips), flags);
	if (n <= 0) {
		if (n < 0 && n != -14 /* EFAULT: no stack of this kind here */)
			stat_inc(err_stat);
		return 0;
	}
	st->len = (__u32)n / sizeof(__u64);
	return store_stack(stacks, st);
}

/* ---- the table walker (x86_64) ---- */

#if defined(__TARGET_ARCH_x86)
#define UNW_FRAMES 8            /* frames per program run */
#define UNW_MAX_TAILS 20        /* 8 x (1 + 20) > SM_MAX_STACK_DEPTH */
#define UNW_ROW_STEPS 23        /* binary search steps: up to 4 Mi rows */
#define UNW_MAP_STEPS 8         /* log2(SM_UNW_MAX_MAPS) + 1 */

enum { UNW_NEXT, UNW_DONE, UNW_FAIL };

/* the walker tail-calls itself; libbpf fills the slot at load. The
 * off-CPU programs have a copy of their own type (a program array holds
 * programs of one type). */
int sm_unwind(struct bpf_perf_event_data *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	/* sizes, not BTF types: the kernel refuses a BTF key type on a
	 * program array (libbpf would retry without BTF, noisily) */
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} unw_progs SEC(".maps") = {
	.values = {[0] = (void *)&sm_unwind},
};

static __always_inline int read_u64(__u64 *out, __u64 addr)
{
	if (bpf_probe_read_user(out, sizeof(*out), (const void *)addr)) {
		stat_inc(SM_STAT_UNW_READ_ERR);
		return -1;
	}
	return 0;
}

static __always_inline int read_pair(__u64 *out, __u64 addr)
{
	if (bpf_probe_read_user(out, 2 * sizeof(*out), (const void *)addr)) {
		stat_inc(SM_STAT_UNW_READ_ERR);
		return -1;
	}
	return 0;
}

/* The mapping of proc holding pc, NULL when none. */
static __always_inline struct sm_unw_map *find_map(struct sm_unw_proc *p, __u64 pc)
{
	__u32 lo = 0, hi = p->n;
	if (hi > SM_UNW_MAX_MAPS)
		hi = SM_UNW_MAX_MAPS;
	for (int i = 0; i < UNW_MAP_STEPS; i++) {
		if (lo >= hi)
			break;
		__u32 mid = ((lo + hi) / 2) & (SM_UNW_MAX_MAPS - 1);
		struct sm_unw_map *m = &p->maps[mid];
		if (pc < m->start)
			hi = mid;
		else if (pc >= m->end)
			lo = mid + 1;
		else
			return m;
	}
	return NULL;
}

/* The u32 entry b of the bucket index beginning at row slot idx. */
static __always_inline int idx_entry(__u32 idx, __u32 b, __u32 *out)
{
	__u32 slot = idx + (b >> 2);
	__u32 *e = bpf_map_lookup_elem(&unw_rows, &slot);
	if (!e)
		return -1;
	*out = e[b & 3];
	return 0;
}

/* The row of m's table covering vaddr (the last with pc <= vaddr), NULL
 * when none: the bucket index narrows the search to one bucket's rows. */
static __always_inline struct sm_unw_row *find_row(struct sm_unw_map *m, __u32 vaddr)
{
	__u32 b = (vaddr >> SM_UNW_BUCKET_SHIFT) - m->idx_base;
	if ((vaddr >> SM_UNW_BUCKET_SHIFT) < m->idx_base || b >= m->idx_len)
		return NULL;
	__u32 lo, hi = m->rows_len;
	if (idx_entry(m->idx_start, b, &lo))
		return NULL;
	if (b + 1 < m->idx_len) {
		if (idx_entry(m->idx_start, b + 1, &hi))
			return NULL;
		hi++;                   /* the row covering the next bucket's start too */
	}
	if (hi > m->rows_len || lo >= hi)
		return NULL;
	__u32 start = m->rows_start, base = start + lo;
	lo = base;
	hi += start;
	for (int i = 0; i < UNW_ROW_STEPS; i++) {
		if (lo >= hi)
			break;
		__u32 mid = lo + (hi - lo) / 2;
		struct sm_unw_row *r = bpf_map_lookup_elem(&unw_rows, &mid);
		if (!r)
			return NULL;
		if (r->pc <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == base)
		return NULL;
	lo--;
	return bpf_map_lookup_elem(&unw_rows, &lo);
}

/* One frame: s->pc is recorded by the caller; computes the caller's pc,
 * sp and bp. */
static __always_inline int unw_step(struct unw_state *s, struct sm_unw_proc *p)
{
	/* a return address points after the call, which may be the first
	 * byte of the next function (calls to noreturn functions) */
	__u64 look = s->stack.len > 1 ? s->pc - 1 : s->pc;
	/* callers are mostly in the object of their callee: try the last
	 * frame's mapping before searching */
	struct sm_unw_map *m = NULL;
	if (p) {
		m = &p->maps[s->last_map & (SM_UNW_MAX_MAPS - 1)];
		if (look < m->start || look >= m->end) {
			m = find_map(p, look);
			if (m)
				s->last_map = (__u32)(m - p->maps);
		}
	}
	__u64 cfa, ra;
	__u64 pair[2];              /* a saved frame pointer and the return
	                             * address above it: one read for both */
	if (m && m->rows_len) {
		__u64 va = look - m->bias;
		if (va >> 32) {
			stat_inc(SM_STAT_UNW_NO_FDE);
			return UNW_FAIL;
		}
		struct sm_unw_row *r = find_row(m, (__u32)va);
		if (!r) {
			stat_inc(SM_STAT_UNW_NO_FDE);
			return UNW_FAIL;
		}
		switch (r->cfa_kind) {
		case SM_CFA_SP:
			cfa = s->sp + (__s64)r->cfa_off;
			break;
		case SM_CFA_FP:
			cfa = s->bp + (__s64)r->cfa_off;
			break;
		case SM_CFA_PLT:
			cfa = s->sp + 8 + (((s->pc & 15) >= (__u64)r->cfa_off) ? 8 : 0);
			break;
		case SM_CFA_END:
			stat_inc(SM_STAT_UNW_COMPLETE);
			return UNW_DONE;
		case SM_CFA_NONE:
			stat_inc(SM_STAT_UNW_NO_FDE);
			return UNW_FAIL;
		default:
			stat_inc(SM_STAT_UNW_UNSUPPORTED);
			return UNW_FAIL;
		}
		if (r->ra_kind != SM_REG_CFA_OFF) {
			stat_inc(SM_STAT_UNW_UNSUPPORTED);
			return UNW_FAIL;
		}
		/* the caller's frame is above this one; anything else is a
		 * corrupt stack or a wrong rule, and could loop */
		if (cfa <= s->sp) {
			stat_inc(SM_STAT_UNW_READ_ERR);
			return UNW_FAIL;
		}
		if (r->fp_kind == SM_REG_CFA_OFF && r->fp_off + 8 == r->ra_off) {
			/* push rbp right after the call: the common frame */
			if (read_pair(pair, cfa + (__s64)r->fp_off))
				return UNW_FAIL;
			s->bp = pair[0];
			ra = pair[1];
		} else {
			if (read_u64(&ra, cfa + (__s64)r->ra_off))
				return UNW_FAIL;
			if (r->fp_kind == SM_REG_CFA_OFF) {
				if (read_u64(&s->bp, cfa + (__s64)r->fp_off))
					return UNW_FAIL;
			} else if (r->fp_kind != SM_REG_SAME) {
				/* undefined, or saved where the table cannot say
				 * (another register): unknown from here on, which
				 * only a caller whose CFA is rbp-based needs; that
				 * one then stops (its CFA does not move up) */
				s->bp = 0;
			}
		}
	} else {
		/* no table (JIT code, an object without one, or not loaded
		 * yet): frame pointers, when bp looks like one */
		__u64 bp = s->bp;
		if (!bp || bp < s->sp || (bp & 7)) {
			stat_inc(SM_STAT_UNW_FP_STOP);
			return UNW_FAIL;
		}
		if (read_pair(pair, bp))
			return UNW_FAIL;
		s->bp = pair[0];
		ra = pair[1];
		cfa = bp + 16;
	}
	if (!ra) {
		stat_inc(SM_STAT_UNW_COMPLETE);
		return UNW_DONE;
	}
	s->pc = ra;
	s->sp = cfa;
	return UNW_NEXT;
}

/* Stores the walked stack and counts the sample. */
static __always_inline void unw_finish(struct unw_state *s)
{
	if (s->set) {
		s->key.user_stack = store_stack(&stacks1, &s->stack);
		count(&counts1, &s->key, s->value);
	} else {
		s->key.user_stack = store_stack(&stacks0, &s->stack);
		count(&counts0, &s->key, s->value);
	}
}

/* The walk of slot's state, UNW_FRAMES frames per run; tail-calls the
 * walker of progs to go on. Every program type that walks has a program
 * running this (sm_unwind for the sampler). */
static __always_inline int unw_continue(void *ctx, __u32 slot, void *progs)
{
	struct unw_state *s = bpf_map_lookup_elem(&unw_state, &slot);
	if (!s)
		return 0;
	struct sm_unw_proc *p = bpf_map_lookup_elem(&unw_procs, &s->key.tgid);
	for (int i = 0; i < UNW_FRAMES; i++) {
		__u32 n = s->stack.len;
		if (n >= SM_MAX_STACK_DEPTH) {
			stat_inc(SM_STAT_UNW_TRUNCATED);
			unw_finish(s);
			return 0;
		}
		s->stack.ips[n & (SM_MAX_STACK_DEPTH - 1)] = s->pc;
		s->stack.len = n + 1;
		if (unw_step(s, p) != UNW_NEXT) {
			unw_finish(s);
			return 0;
		}
	}
	if (s->tails < UNW_MAX_TAILS) {
		s->tails++;
		bpf_tail_call(ctx, progs, 0);
		stat_inc(SM_STAT_UNW_TAIL_FAIL);
	} else {
		stat_inc(SM_STAT_UNW_TRUNCATED);
	}
	unw_finish(s);
	return 0;
}

SEC("perf_event")
int sm_unwind(struct bpf_perf_event_data *ctx)
{
	return unw_continue(ctx, SLOT_SAMPLER, &unw_progs);
}

/* The user registers the current task saved when it entered the kernel,
 * into s; false for a kernel thread or where the kernel lacks the helper
 * (Linux 5.15's; there CO-RE makes this dead code, which the verifier
 * does not check, and such stacks are read by frame pointers). */
static __always_inline bool unw_user_regs(struct unw_state *s)
{
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		return false;
	struct task_struct *t = bpf_get_current_task_btf();
	if (!t->mm)
		return false;   /* a kernel thread: no user stack */
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(t);
	s->pc = BPF_CORE_READ(r, ip);
	s->sp = BPF_CORE_READ(r, sp);
	s->bp = BPF_CORE_READ(r, bp);
	return true;
}

/* Hands s (registers set) to the walker of progs, which counts value for
 * key in map set `set`. Returns only when the tail call failed. */
static __always_inline void unw_begin(void *ctx, struct unw_state *s, struct sm_key *key,
                                      __u32 set, __u64 value, void *progs)
{
	s->tails = 0;
	s->last_map = 0;
	s->set = set;
	s->value = value;
	s->key = *key;
	s->stack.len = 0;
	stat_inc(SM_STAT_UNW_SAMPLES);
	bpf_tail_call(ctx, progs, 0);
	stat_inc(SM_STAT_UNW_TAIL_FAIL);
}

/* Starts the table walk of the current task's user stack when the agent
 * has tables for its process. Returns true when the walk took over the
 * sample (it counts it), false to count it with frame pointers. */
static __always_inline bool unw_start(struct bpf_perf_event_data *ctx, struct sm_key *key,
                                      __u32 set)
{
	if (!cfg_unwind || !bpf_map_lookup_elem(&unw_procs, &key->tgid))
		return false;
	__u32 slot = SLOT_SAMPLER;
	struct unw_state *s = bpf_map_lookup_elem(&unw_state, &slot);
	if (!s)
		return false;
	/* user mode: the sampled ip is a user address (the kernel's half of
	 * the address space has the top bit set). The context only allows
	 * full-width loads, which cs (a u16) is not. */
	if ((__s64)ctx->regs.ip >= 0) {
		s->pc = ctx->regs.ip;
		s->sp = ctx->regs.sp;
		s->bp = ctx->regs.bp;
	} else if (!unw_user_regs(s)) {
		/* in the kernel: the user registers saved at kernel entry */
		return false;
	}
	unw_begin(ctx, s, key, set, 1, &unw_progs);
	return false;
}
#else
static __always_inline bool unw_start(void *ctx, struct sm_key *key, __u32 set)
{
	return false;
}
#endif

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
	announce(tgid);

	struct sm_key key = {.tgid = tgid, .kind = SM_KIND_CPU};
	if (*(volatile __u32 *)&sm_active) {
		if (cfg_kernel_stacks)
			key.kernel_stack = stack_id(ctx, &stacks1, 0, SM_STAT_KSTACK_ERR,
			                            SLOT_SAMPLER);
		if (unw_start(ctx, &key, 1))
			return 0;
		key.user_stack = stack_id(ctx, &stacks1, BPF_F_USER_STACK, SM_STAT_USTACK_ERR,
		                          SLOT_SAMPLER);
		count(&counts1, &key, 1);
	} else {
		if (cfg_kernel_stacks)
			key.kernel_stack = stack_id(ctx, &stacks0, 0, SM_STAT_KSTACK_ERR,
			                            SLOT_SAMPLER);
		if (unw_start(ctx, &key, 0))
			return 0;
		key.user_stack = stack_id(ctx, &stacks0, BPF_F_USER_STACK, SM_STAT_USTACK_ERR,
		                          SLOT_SAMPLER);
		count(&counts0, &key, 1);
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
	/* the old image's unwind entry would walk the new one with the wrong
	 * tables: frame pointers until the agent has read the new mappings */
	bpf_map_delete_elem(&unw_procs, &tgid);
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

/* Off-CPU time: its programs use the maps and the walker above. */
#include "offcpu.bpf.h"
