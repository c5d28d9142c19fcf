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
const volatile __u32 cfg_python = 1;         /* replace CPython's evaluation frames
                                              * by the Python frames they run */

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

/* Tables by the file they describe (struct sm_unw_file_key), for pcs no
 * process entry covers yet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sm_unw_file_key);
	__type(value, struct sm_unw_file);
} unw_files SEC(".maps");

/* Per process: mappings the walker looked up itself. LRU: only processes
 * in their first moments or with fresh mappings need one. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct sm_unw_found);
} unw_found SEC(".maps");

/* A zeroed entry to create unw_found's from (too big for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sm_unw_found);
} unw_found_zero SEC(".maps");

/* Per CPython process: where its interpreter is and how its version lays
 * out its structures (agent/python.c). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct sm_py_proc);
} py_procs SEC(".maps");

/* Code objects announced to the agent (SM_EV_PY_CODE), by process,
 * address and fingerprint. LRU: a forgotten one is announced again,
 * which the agent's cache absorbs. */
struct py_seen_key {
	__u32 tgid;
	__u32 fingerprint;
	__u64 code;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct py_seen_key);
	__type(value, __u8);
} py_seen SEC(".maps");

/* The Python side of a walk (py_*): the next interpreter frame to emit,
 * and how far the native walk has come in matching evaluations. */
enum { PY_OFF, PY_WAIT, PY_EMIT };
struct py_walk {
	__u64 frame;            /* next interpreter frame; 0 when none */
	__u64 marker;           /* SM_PY_WALK_CFRAME: the current _PyCFrame */
	__u32 state;            /* PY_OFF: no Python walk; PY_WAIT: waiting for the
	                         * native frame of the next evaluation; PY_EMIT:
	                         * emitting its frames, one per walker step */
	__u32 n;                /* Python frames emitted */
	__u32 slot;             /* where the evaluation's native frame sits */
	__u32 in_eval;          /* frames emitted of the current evaluation */
	__u8 buf[SM_PY_READ_MAX];   /* a frame or thread state read */
	__u8 cbuf[SM_PY_READ_MAX];  /* a code object read */
};

/* A walk in progress: sm_sample starts it, sm_unwind continues it across
 * tail calls (each program may walk UNW_FRAMES frames: the verifier
 * checks every path of a bounded loop, and a program that walked all 128
 * frames with two binary searches each would be too big for it). */
struct unw_state {
	__u64 pc, sp, bp;
	__u32 tails;
	__u32 set;              /* which map set this sample counts into */
	__u32 last_map;         /* the previous frame's mapping */
	__u8 exact;             /* pc was interrupted (a signal frame's
	                         * caller), not a return address */
	__u8 fp_chain;          /* the last frame was walked by frame pointers */
	__u8 find_tried;        /* bpf_find_vma was asked once this walk */
	__u8 pad;
	__u64 find_pc;          /* the address the find program looks up */
	/* the last row found, by the address looked up: a recursion's
	 * frames all return to one place */
	__u64 row_look;
	__u32 row_idx;
	__u32 pad2;
	__u64 value;            /* what the walk's stack counts: 1 sample, or
	                         * the nanoseconds of an off-CPU block */
	struct sm_key key;
	struct sm_stack stack;
	struct py_walk py;
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
	__u64 h = 0x9e3779b97f4a7c15ULL ^ len ^ ((__u64)st->flags << 32);
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
	st->flags = 0;
	return store_stack(stacks, st);
}

/* ---- the table walker (x86_64) ---- */

#if defined(__TARGET_ARCH_x86)
#define UNW_FRAMES 8            /* frames per program run */
#define UNW_MAX_TAILS 20        /* 8 x (1 + 20) > SM_MAX_STACK_DEPTH */
#define UNW_ROW_STEPS 23        /* binary search steps: up to 4 Mi rows */
#define UNW_MAP_STEPS 8         /* log2(SM_UNW_MAX_MAPS) + 1 */

/* UNW_FIND: the frame's pc is in no mapping the walker knows; look it up
 * (sm_unw_find) and walk the frame again */
enum { UNW_NEXT, UNW_DONE, UNW_FAIL, UNW_FIND };

/* the walker tail-calls itself (slot 0) and its mapping lookup (slot 1);
 * libbpf fills the slots at load. The off-CPU programs have copies of
 * both of their own type (a program array holds programs of one type). */
int sm_unwind(struct bpf_perf_event_data *ctx);
int sm_unw_find(struct bpf_perf_event_data *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	/* sizes, not BTF types: the kernel refuses a BTF key type on a
	 * program array (libbpf would retry without BTF, noisily) */
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} unw_progs SEC(".maps") = {
	.values = {[0] = (void *)&sm_unwind, [1] = (void *)&sm_unw_find},
};

/* n (1 or 2) words of the user stack at addr (one read for both). A
 * global function, like find_row: the verifier checks it once, not at
 * every use in every frame of the walk's loop. */
struct words {
	__u64 w[2];
};

__noinline int read_words(struct words *out, __u64 addr, int n)
{
	if (!out)
		return -1;
	if (bpf_probe_read_user(out->w, n == 2 ? 16 : 8, (const void *)addr)) {
		stat_inc(SM_STAT_UNW_READ_ERR);
		return -1;
	}
	return 0;
}

static __always_inline int read_u64(struct unw_state *s, __u64 *out, __u64 addr)
{
	struct words w;
	if (read_words(&w, addr, 1))
		return -1;
	*out = w.w[0];
	return 0;
}

static __always_inline int read_pair(struct unw_state *s, __u64 *out, __u64 addr)
{
	struct words w;
	if (read_words(&w, addr, 2))
		return -1;
	out[0] = w.w[0];
	out[1] = w.w[1];
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

/* The index in the rows array of the row of m's table covering vaddr (the
 * last with pc <= vaddr), ~0 when none: the bucket index narrows the
 * search to one bucket's rows. */
__noinline __u32 find_row(struct sm_unw_map *m, __u32 vaddr)
{
	if (!m)
		return ~0U;
	__u32 b = (vaddr >> SM_UNW_BUCKET_SHIFT) - m->idx_base;
	if ((vaddr >> SM_UNW_BUCKET_SHIFT) < m->idx_base || b >= m->idx_len)
		return ~0U;
	__u32 lo, hi = m->rows_len;
	if (idx_entry(m->idx_start, b, &lo))
		return ~0U;
	if (b + 1 < m->idx_len) {
		if (idx_entry(m->idx_start, b + 1, &hi))
			return ~0U;
		hi++;                   /* the row covering the next bucket's start too */
	}
	if (hi > m->rows_len || lo >= hi)
		return ~0U;
	__u32 start = m->rows_start, base = start + lo;
	lo = base;
	hi += start;
	for (int i = 0; i < UNW_ROW_STEPS; i++) {
		if (lo >= hi)
			break;
		__u32 mid = lo + (hi - lo) / 2;
		struct sm_unw_row *r = bpf_map_lookup_elem(&unw_rows, &mid);
		if (!r)
			return ~0U;
		if (r->pc <= vaddr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == base)
		return ~0U;
	return lo - 1;
}

/* Register reg (DWARF number: rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp,
 * r8..r15) of the innermost frame, for SM_CFA_REG rows: the sampled
 * registers of a perf event (perf: ctx is a struct bpf_perf_event_data;
 * a constant at every call, so the other programs' copies have no such
 * access), or in the kernel the user registers saved at entry (a sample
 * taken there, an off-CPU walk). Only the walk's first program run has
 * them (ctx is the sample's). */
static __always_inline int leaf_reg(void *ctx, bool perf, __u32 reg, __u64 *out)
{
	struct bpf_perf_event_data *pe = ctx;
	if (perf && (__s64)pe->regs.ip >= 0) {
		switch (reg) {
		case 0: *out = pe->regs.ax; return 0;
		case 1: *out = pe->regs.dx; return 0;
		case 2: *out = pe->regs.cx; return 0;
		case 3: *out = pe->regs.bx; return 0;
		case 4: *out = pe->regs.si; return 0;
		case 5: *out = pe->regs.di; return 0;
		case 8: *out = pe->regs.r8; return 0;
		case 9: *out = pe->regs.r9; return 0;
		case 10: *out = pe->regs.r10; return 0;
		case 11: *out = pe->regs.r11; return 0;
		case 12: *out = pe->regs.r12; return 0;
		case 13: *out = pe->regs.r13; return 0;
		case 14: *out = pe->regs.r14; return 0;
		case 15: *out = pe->regs.r15; return 0;
		default: return -1;
		}
	}
	if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		return -1;
	struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	switch (reg) {
	case 0: *out = BPF_CORE_READ(r, ax); return 0;
	case 1: *out = BPF_CORE_READ(r, dx); return 0;
	case 2: *out = BPF_CORE_READ(r, cx); return 0;
	case 3: *out = BPF_CORE_READ(r, bx); return 0;
	case 4: *out = BPF_CORE_READ(r, si); return 0;
	case 5: *out = BPF_CORE_READ(r, di); return 0;
	case 8: *out = BPF_CORE_READ(r, r8); return 0;
	case 9: *out = BPF_CORE_READ(r, r9); return 0;
	case 10: *out = BPF_CORE_READ(r, r10); return 0;
	case 11: *out = BPF_CORE_READ(r, r11); return 0;
	case 12: *out = BPF_CORE_READ(r, r12); return 0;
	case 13: *out = BPF_CORE_READ(r, r13); return 0;
	case 14: *out = BPF_CORE_READ(r, r14); return 0;
	case 15: *out = BPF_CORE_READ(r, r15); return 0;
	default: return -1;
	}
}

/* Where a register is saved by rule (kind, off) of a row, given the
 * frame's CFA, sp and fp. */
static __always_inline __u64 saved_at(__u8 kind, __s16 off, __u64 cfa, struct unw_state *s)
{
	__u64 base = kind == SM_REG_CFA_OFF ? cfa : kind == SM_REG_SP_OFF ? s->sp : s->bp;
	return base + (__s64)off;
}

static __always_inline bool saved_in_memory(__u8 kind)
{
	return kind == SM_REG_CFA_OFF || kind == SM_REG_SP_OFF || kind == SM_REG_FP_OFF;
}

/* One frame by its frame pointer, for code the tables do not describe:
 * JIT code (V8 and HotSpot with -XX:+PreserveFramePointer keep rbp as a
 * frame pointer in what they generate), code in an object no FDE covers
 * (V8's embedded builtins in node's text, hand-written assembly) and
 * objects without a table. Only when bp looks like a frame pointer (above
 * sp, aligned); each fallback is counted under why. Sets the caller's
 * return address and CFA (bp + 16: above the saved rbp and the return
 * address) and returns UNW_NEXT; UNW_DONE where the chain ends (a zero bp
 * after frames walked this way: _start and Go clear it), UNW_FAIL where
 * the walk stops short. */
static __always_inline int unw_fp(struct unw_state *s, __u32 why, __u64 *cfa, __u64 *ra)
{
	__u64 bp = s->bp, pair[2];
	if (!bp && s->fp_chain) {
		stat_inc(SM_STAT_UNW_COMPLETE);
		return UNW_DONE;
	}
	if (!bp || bp < s->sp || (bp & 7)) {
		stat_inc(SM_STAT_UNW_FP_STOP);
		return UNW_FAIL;
	}
	if (read_pair(s, pair, bp))
		return UNW_FAIL;
	stat_inc(why);
	s->bp = pair[0];
	*ra = pair[1];
	*cfa = bp + 16;
	s->fp_chain = 1;
	return UNW_NEXT;
}

/* Copies the mapping of process tgid's found list holding pc into *out;
 * returns 1, or 0 when none does. A global function: the verifier checks
 * it once, not once per frame of the walk's loop. */
__noinline int find_found(__u32 tgid, __u64 pc, struct sm_unw_map *out)
{
	struct sm_unw_found *f = bpf_map_lookup_elem(&unw_found, &tgid);
	if (!f || !out)
		return 0;
	for (int i = 0; i < SM_UNW_FOUND; i++) {
		if (i >= f->n)
			break;
		struct sm_unw_map *m = &f->maps[i];
		if (pc >= m->start && pc < m->end) {
			*out = *m;
			return 1;
		}
	}
	return 0;
}

/* One frame: s->pc is recorded by the caller; computes the caller's pc,
 * sp and bp. Returns UNW_NEXT, UNW_FIND, or UNW_DONE / UNW_FAIL with
 * *truncated saying whether the stack lacks callers. */
static __always_inline int unw_step(void *ctx, bool perf, struct unw_state *s,
                                    struct sm_unw_proc *p, bool *truncated)
{
	/* a return address points after the call, which may be the first
	 * byte of the next function (calls to noreturn functions); an
	 * interrupted pc is the instruction itself */
	__u64 look = s->stack.len > 1 && !s->exact ? s->pc - 1 : s->pc;
	bool signal = false;
	*truncated = true;
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
	struct sm_unw_map fm;           /* one the walker found itself */
	if (!m) {
		/* a mapping the agent has not told us of: the process' first
		 * moments, or mapped since; look it up (once per sample) */
		if (find_found(s->key.tgid, look, &fm))
			m = &fm;
		else if (!s->find_tried &&
		    bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_find_vma)) {
			s->find_pc = look;
			return UNW_FIND;
		}
	}
	__u64 cfa, ra;
	__u64 pair[2];              /* a saved frame pointer and the return
	                             * address above it: one read for both */
	__u32 why;
	int rc;
	if (m && m->rows_len) {
		__u64 va = look - m->bias;
		if (va >> 32) {
			stat_inc(SM_STAT_UNW_NO_FDE);
			why = SM_STAT_UNW_FP_NO_FDE;
			goto fp;
		}
		__u32 ri = s->row_idx;
		if (look != s->row_look) {
			ri = find_row(m, (__u32)va);
			s->row_look = look;
			s->row_idx = ri;
		}
		struct sm_unw_row *r = bpf_map_lookup_elem(&unw_rows, &ri);
		if (!r || r->cfa_kind == SM_CFA_NONE) {
			/* inside the object but no FDE covers it: V8's
			 * builtins, hand-written assembly */
			stat_inc(SM_STAT_UNW_NO_FDE);
			why = SM_STAT_UNW_FP_NO_FDE;
			goto fp;
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
		case SM_CFA_DEREF_SP:
		case SM_CFA_SIGNAL:
			if (read_u64(s, &cfa, s->sp + (__s64)r->cfa_off))
				return UNW_FAIL;
			cfa += r->aux;
			signal = r->cfa_kind == SM_CFA_SIGNAL;
			break;
		case SM_CFA_DEREF_FP:
			if (read_u64(s, &cfa, s->bp + (__s64)r->cfa_off))
				return UNW_FAIL;
			cfa += r->aux;
			break;
		case SM_CFA_REG:
			/* only the innermost frame's registers are known */
			if (s->stack.len > 1 || leaf_reg(ctx, perf, r->aux, &cfa)) {
				stat_inc(SM_STAT_UNW_UNSUPPORTED);
				return UNW_FAIL;
			}
			cfa += (__s64)r->cfa_off;
			break;
		case SM_CFA_END:
			stat_inc(SM_STAT_UNW_COMPLETE);
			*truncated = false;
			return UNW_DONE;
		default:
			stat_inc(SM_STAT_UNW_UNSUPPORTED);
			return UNW_FAIL;
		}
		if (!saved_in_memory(r->ra_kind)) {
			stat_inc(SM_STAT_UNW_UNSUPPORTED);
			return UNW_FAIL;
		}
		/* the caller's frame is above this one; anything else is a
		 * corrupt stack or a wrong rule, and could loop. A signal
		 * frame may come from another stack (sigaltstack). */
		if (cfa <= s->sp && !signal) {
			stat_inc(SM_STAT_UNW_READ_ERR);
			return UNW_FAIL;
		}
		if (r->fp_kind == SM_REG_CFA_OFF && r->ra_kind == SM_REG_CFA_OFF &&
		    r->fp_off + 8 == r->ra_off) {
			/* push rbp right after the call: the common frame */
			if (read_pair(s, pair, cfa + (__s64)r->fp_off))
				return UNW_FAIL;
			s->bp = pair[0];
			ra = pair[1];
		} else {
			if (read_u64(s, &ra, saved_at(r->ra_kind, r->ra_off, cfa, s)))
				return UNW_FAIL;
			if (saved_in_memory(r->fp_kind)) {
				if (read_u64(s, &s->bp, saved_at(r->fp_kind, r->fp_off, cfa, s)))
					return UNW_FAIL;
			} else if (r->fp_kind != SM_REG_SAME) {
				/* undefined, or saved where the table cannot say
				 * (another register): unknown from here on, which
				 * only a caller whose CFA is rbp-based needs; that
				 * one then stops (its CFA does not move up) */
				s->bp = 0;
			}
		}
		s->fp_chain = 0;
	} else {
		/* in no mapping the entry lists or the walker found (JIT
		 * code), anonymous memory the walker found, or an object
		 * without a table (none, or not loaded yet) */
		why = m && !(m->flags & SM_UNW_MAP_ANON) ? SM_STAT_UNW_FP_NO_TABLE :
		                                            SM_STAT_UNW_FP_JIT;
fp:
		rc = unw_fp(s, why, &cfa, &ra);
		if (rc != UNW_NEXT) {
			*truncated = rc == UNW_FAIL;
			return rc;
		}
	}
	if (!ra) {
		stat_inc(SM_STAT_UNW_COMPLETE);
		*truncated = false;
		return UNW_DONE;
	}
	s->pc = ra;
	s->sp = cfa;
	s->exact = signal;
	return UNW_NEXT;
}

/* ---- the CPython walk (x86_64) ----
 * Interleaved with the table walk: py_start finds the sampled thread's
 * Python thread state; after each native step py_native() asks whether
 * that native frame was an evaluation of _PyEval_EvalFrameDefault, and if
 * so the next steps are py_step()s, each emitting one Python frame of that
 * evaluation over the evaluation's native frame. Every read is checked:
 * memory changing under the walk ends the Python part (counted), never
 * the sample. */

/* A field of a buffer read from the interpreter, at an offset the agent
 * gave: pointers are 8-aligned and ints 4-aligned in every layout, and
 * the agent keeps every offset below SM_PY_READ_MAX - 8 (the masks, of a
 * power of two, bound them for the verifier). */
static __always_inline __u64 py_u64(const __u8 *buf, __u16 off)
{
	return *(const __u64 *)(buf + (off & (SM_PY_READ_MAX - 8)));
}

static __always_inline __u32 py_u32(const __u8 *buf, __u16 off)
{
	return *(const __u32 *)(buf + (off & (SM_PY_READ_MAX - 4)));
}

static __always_inline int py_read(__u8 *buf, __u16 size, __u64 addr)
{
	__u32 n = size;
	if (n > SM_PY_READ_MAX)
		n = SM_PY_READ_MAX;
	if (!addr || bpf_probe_read_user(buf, n, (const void *)addr)) {
		stat_inc(SM_STAT_PY_READ_ERR);
		return -1;
	}
	return 0;
}

/* The thread state of the current thread, through libc's thread-specific
 * data as PyGILState_GetThisThreadState() finds it; checked against the
 * thread (its thread_id is pthread_self(), the fs base). Sets up s->py. */
static __always_inline void py_start(struct unw_state *s)
{
	s->py.state = PY_OFF;
	if (!cfg_python)
		return;
	struct sm_py_proc *py = bpf_map_lookup_elem(&py_procs, &s->key.tgid);
	if (!py)
		return;
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 tp = BPF_CORE_READ(t, thread.fsbase), slot, ts;
	__u32 key = py->tls_key;
	if (!tp)
		return;
	if (key < 32) {
		slot = tp + py->tls_first + 16 * (__u64)key;
	} else {
		__u64 l2;
		if (key >= 1024 || bpf_probe_read_user(&l2, 8, (const void *)(tp + py->tls_second +
		                                                                8 * (__u64)(key / 32))) ||
		    !l2)
			return;
		slot = l2 + 16 * (__u64)(key % 32) + 8;
	}
	if (bpf_probe_read_user(&ts, 8, (const void *)slot) || !ts) {
		stat_inc(SM_STAT_PY_NO_THREAD);
		return;
	}
	if (py_read(s->py.buf, py->ts_read, ts))
		return;
	if (py_u64(s->py.buf, py->ts_thread_id) != tp) {
		stat_inc(SM_STAT_PY_BAD_THREAD);
		return;
	}
	s->py.frame = py_u64(s->py.buf, py->ts_frame);
	s->py.marker = 0;
	if (py->walk == SM_PY_WALK_CFRAME) {
		s->py.marker = py_u64(s->py.buf, py->ts_cframe);
		if (py->has_cf_frame) {
			/* 3.11, 3.12: the frame is the current _PyCFrame's */
			if (py_read(s->py.buf, 16, s->py.marker + py->cf_frame))
				return;
			s->py.frame = py_u64(s->py.buf, 0);
		}
	}
	s->py.n = 0;
	s->py.state = PY_WAIT;
	stat_inc(SM_STAT_PY_SAMPLES);
}

/* One evaluation's frames are done: wait for the next one's native frame. */
static __always_inline void py_eval_done(struct unw_state *s, struct sm_py_proc *py)
{
	s->py.state = PY_WAIT;
	if (py->walk == SM_PY_WALK_CFRAME) {
		__u64 prev;
		if (bpf_probe_read_user(&prev, 8, (const void *)(s->py.marker + py->cf_previous))) {
			stat_inc(SM_STAT_PY_READ_ERR);
			s->py.state = PY_OFF;
			return;
		}
		s->py.marker = prev;
	}
	if (!s->py.frame)
		s->py.state = PY_OFF;
}

/* After the native step of the frame at pc (look: pc adjusted into its
 * call) that spanned [sp, s->sp): if it was the next evaluation, its
 * Python frames replace it, from the next step on. A global function,
 * like py_step: the verifier checks it once, not in every frame of the
 * walk's loop, whose paths would otherwise multiply past its limit. */
__noinline int py_native(struct unw_state *s, struct sm_py_proc *py, __u64 look, __u64 sp)
{
	if (!s || !py || s->py.state != PY_WAIT)
		return 0;
	bool hit;
	if (py->walk == SM_PY_WALK_CFRAME) {
		if (s->py.marker < sp) {
			/* an evaluation below this frame that no native frame
			 * held: the two walks no longer agree */
			stat_inc(SM_STAT_PY_LOST);
			s->py.state = PY_OFF;
			return 0;
		}
		hit = s->py.marker < s->sp;
	} else {
		hit = look >= py->eval_lo && look < py->eval_hi;
	}
	if (!hit)
		return 0;
	s->py.state = PY_EMIT;
	s->py.slot = s->stack.len - 1;
	s->py.in_eval = 0;
	return 0;
}

/* Tells the agent about a code object the first time it is seen. */
static __always_inline void py_announce(__u32 tgid, __u64 code, __u32 fp)
{
	struct py_seen_key k = {.tgid = tgid, .fingerprint = fp, .code = code};
	__u8 one = 1;
	if (bpf_map_lookup_elem(&py_seen, &k) ||
	    bpf_map_update_elem(&py_seen, &k, &one, BPF_NOEXIST))
		return;
	struct sm_py_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(SM_STAT_EVENTS_LOST);
		return;
	}
	e->kind = SM_EV_PY_CODE;
	e->tgid = tgid;
	e->code = code;
	e->fingerprint = fp;
	e->pad = 0;
	bpf_ringbuf_submit(e, 0);
}

/* Emits the next Python frame of the current evaluation (two words of the
 * stack, over the evaluation's native frame for its first). A global
 * function (see py_native). */
__noinline int py_step(struct unw_state *s, struct sm_py_proc *py)
{
	if (!s)
		return 0;
	if (!py || py_read(s->py.buf, py->fr_read, s->py.frame)) {
		s->py.state = PY_OFF;
		return 0;
	}
	if (py->end == SM_PY_END_CSTACK && s->py.buf[py->fr_end & (SM_PY_READ_MAX - 1)] == 3) {
		/* the evaluation's entry frame, on the C stack: not Python code */
		s->py.frame = py_u64(s->py.buf, py->fr_back);
		py_eval_done(s, py);
		return 0;
	}
	__u64 code = py_u64(s->py.buf, py->fr_code);
	if (py_read(s->py.cbuf, py->co_read, code)) {
		s->py.state = PY_OFF;
		return 0;
	}
	if (py_u64(s->py.cbuf, 8) != py->code_type) {
		/* a frame being torn down, or not a frame at all */
		stat_inc(SM_STAT_PY_BAD_CODE);
		s->py.state = PY_OFF;
		return 0;
	}
	if (s->py.n >= SM_PY_MAX_FRAMES) {
		stat_inc(SM_STAT_PY_TRUNCATED);
		s->py.state = PY_OFF;
		return 0;
	}
	__s64 lasti;
	if (py->lasti == SM_PY_LASTI_INT)
		lasti = (__s32)py_u32(s->py.buf, py->fr_lasti);
	else
		lasti = ((__s64)py_u64(s->py.buf, py->fr_lasti) - (__s64)(code + py->co_code)) >> 1;
	__u32 fp = sm_py_fingerprint(py_u64(s->py.cbuf, py->co_filename),
	                             py_u64(s->py.cbuf, py->co_name),
	                             py_u32(s->py.cbuf, py->co_firstlineno));
	py_announce(s->key.tgid, code, fp);
	__u32 n = s->py.in_eval ? s->stack.len : s->py.slot;
	if (n + 2 > SM_MAX_STACK_DEPTH) {
		stat_inc(SM_STAT_PY_TRUNCATED);
		s->py.state = PY_OFF;
		return 0;
	}
	s->stack.ips[n & (SM_MAX_STACK_DEPTH - 1)] = SM_PY_MARK | (code & ~SM_PY_MARK_MASK);
	s->stack.ips[(n + 1) & (SM_MAX_STACK_DEPTH - 1)] = (__u64)fp << 32 | (__u32)lasti;
	s->stack.len = n + 2;
	s->py.n++;
	s->py.in_eval++;
	stat_inc(SM_STAT_PY_FRAMES);
	s->py.frame = py_u64(s->py.buf, py->fr_back);
	if (py->end == SM_PY_END_ONE ||
	    (py->end == SM_PY_END_ENTRY && s->py.buf[py->fr_end & (SM_PY_READ_MAX - 1)]))
		py_eval_done(s, py);
	else if (!s->py.frame)
		s->py.state = PY_OFF;
	return 0;
}

/* Stores the walked stack and counts the sample. */
static __always_inline void unw_finish(struct unw_state *s, bool truncated)
{
	if (s->py.state != PY_OFF && s->py.frame)
		stat_inc(SM_STAT_PY_LOST);
	s->stack.flags = truncated ? SM_STACK_TRUNCATED : 0;
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
static __always_inline int unw_continue(void *ctx, __u32 slot, void *progs, bool perf)
{
	bool truncated;
	struct unw_state *s = bpf_map_lookup_elem(&unw_state, &slot);
	if (!s)
		return 0;
	struct sm_unw_proc *p = bpf_map_lookup_elem(&unw_procs, &s->key.tgid);
	struct sm_py_proc *py = s->py.state != PY_OFF ?
		bpf_map_lookup_elem(&py_procs, &s->key.tgid) : NULL;
	for (int i = 0; i < UNW_FRAMES; i++) {
		__u32 n = s->stack.len;
		if (n >= SM_MAX_STACK_DEPTH) {
			stat_inc(SM_STAT_UNW_TRUNCATED);
			unw_finish(s, true);
			return 0;
		}
		if (s->py.state == PY_EMIT) {
			py_step(s, py);
			continue;
		}
		/* see struct sm_stack: an interrupted pc is stored plus one */
		s->stack.ips[n & (SM_MAX_STACK_DEPTH - 1)] = s->pc + s->exact;
		s->stack.len = n + 1;
		__u64 look = n && !s->exact ? s->pc - 1 : s->pc, sp = s->sp;
		int rc = unw_step(ctx, perf, s, p, &truncated);
		if (rc == UNW_FIND) {
			/* the frame is walked again once its mapping is known */
			s->stack.len = n;
			if (s->tails < UNW_MAX_TAILS) {
				s->tails++;
				bpf_tail_call(ctx, progs, 1);
			}
			stat_inc(SM_STAT_UNW_TAIL_FAIL);
			unw_finish(s, true);
			return 0;
		}
		if (rc != UNW_NEXT) {
			unw_finish(s, truncated);
			return 0;
		}
		py_native(s, py, look, sp);
	}
	if (s->tails < UNW_MAX_TAILS) {
		s->tails++;
		bpf_tail_call(ctx, progs, 0);
		stat_inc(SM_STAT_UNW_TAIL_FAIL);
	} else {
		stat_inc(SM_STAT_UNW_TRUNCATED);
	}
	unw_finish(s, true);
	return 0;
}

/* What bpf_find_vma's callback reads of the mapping. */
struct find_ctx {
	__u64 start, end, pgoff;
	struct sm_unw_file_key key;
	bool file;
};

static long find_cb(struct task_struct *task, struct vm_area_struct *vma, struct find_ctx *c)
{
	c->start = vma->vm_start;
	c->end = vma->vm_end;
	c->pgoff = vma->vm_pgoff;
	struct file *f = vma->vm_file;
	if (!f)
		return 0;
	struct inode *in = f->f_inode;
	if (!in)
		return 0;
	c->key.dev = in->i_sb->s_dev;
	c->key.ino = in->i_ino;
	c->key.size = in->i_size;
	c->file = true;
	return 0;
}

/* Looks up the mapping of s->find_pc in the kernel's own list (the mmap
 * lock is only tried, never waited for) and the table of its file, keeps
 * it in the process' found list, and goes back to the walker of progs.
 * In a perf-event program the lock is released through irq_work after
 * the program (interrupts are off), so a second lookup in the same
 * sample would find it busy: one per walk. */
static __always_inline int unw_find(void *ctx, __u32 slot, void *progs)
{
	__u32 zero = 0;
	struct unw_state *s = bpf_map_lookup_elem(&unw_state, &slot);
	if (!s)
		return 0;
	s->find_tried = 1;
	struct find_ctx c = {};
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_find_vma) &&
	    bpf_find_vma(bpf_get_current_task_btf(), s->find_pc, find_cb, &c, 0) == 0 &&
	    c.end > c.start) {
		struct sm_unw_map m = {.start = c.start, .end = c.end,
		                       .flags = c.file ? 0 : SM_UNW_MAP_ANON};
		struct sm_unw_file *f = c.file ? bpf_map_lookup_elem(&unw_files, &c.key) : NULL;
		__u64 off = c.pgoff << 12;
		if (f) {
			for (int i = 0; i < SM_UNW_FILE_LOADS; i++) {
				if (i >= f->nloads)
					break;
				__u64 lo = f->loads[i].off & ~4095ULL;
				if (off >= lo && off < f->loads[i].off + f->loads[i].filesz) {
					m.bias = c.start - off + f->loads[i].off - f->loads[i].vaddr;
					m.rows_start = f->rows_start;
					m.rows_len = f->rows_len;
					m.idx_start = f->idx_start;
					m.idx_len = f->idx_len;
					m.idx_base = f->idx_base;
					break;
				}
			}
		}
		struct sm_unw_found *fl = bpf_map_lookup_elem(&unw_found, &s->key.tgid);
		if (!fl) {
			struct sm_unw_found *z = bpf_map_lookup_elem(&unw_found_zero, &zero);
			if (z)
				bpf_map_update_elem(&unw_found, &s->key.tgid, z, BPF_NOEXIST);
			fl = bpf_map_lookup_elem(&unw_found, &s->key.tgid);
		}
		if (fl) {
			__u32 k = fl->next & (SM_UNW_FOUND - 1);
			fl->maps[k] = m;
			fl->next = k + 1;
			if (fl->n < SM_UNW_FOUND)
				fl->n++;
			stat_inc(SM_STAT_UNW_FOUND);
		}
	}
	bpf_tail_call(ctx, progs, 0);
	stat_inc(SM_STAT_UNW_TAIL_FAIL);
	return 0;
}

SEC("perf_event")
int sm_unwind(struct bpf_perf_event_data *ctx)
{
	return unw_continue(ctx, SLOT_SAMPLER, &unw_progs, true);
}

SEC("perf_event")
int sm_unw_find(struct bpf_perf_event_data *ctx)
{
	return unw_find(ctx, SLOT_SAMPLER, &unw_progs);
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
	s->exact = 0;
	s->fp_chain = 0;
	s->find_tried = 0;
	s->row_look = 0;
	s->set = set;
	s->value = value;
	s->key = *key;
	s->stack.len = 0;
	py_start(s);
	stat_inc(SM_STAT_UNW_SAMPLES);
	bpf_tail_call(ctx, progs, 0);
	stat_inc(SM_STAT_UNW_TAIL_FAIL);
}

/* Starts the table walk of the current task's user stack (the agent's
 * tables, those of mappings the walker finds itself, frame pointers where
 * no table covers a frame). Returns true when the walk took over the
 * sample (it counts it), false to count it with frame pointers. */
static __always_inline bool unw_start(struct bpf_perf_event_data *ctx, struct sm_key *key,
                                      __u32 set)
{
	if (!cfg_unwind)
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
/* The sample interrupted the kernel: the kernel's half of the address
 * space has the top bit set. */
static __always_inline bool in_kernel(struct bpf_perf_event_data *ctx)
{
	return (__s64)ctx->regs.ip < 0;
}
#else
static __always_inline bool unw_start(void *ctx, struct sm_key *key, __u32 set)
{
	return false;
}

static __always_inline bool in_kernel(void *ctx)
{
	return true;  /* bpf_get_stack says "none" for a user-mode sample */
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

	/* A process with an unwind entry is known to the agent already: one
	 * lookup fewer for most samples. */
	if (!(cfg_unwind && bpf_map_lookup_elem(&unw_procs, &tgid)))
		announce(tgid);

	/* a sample in user mode has no kernel stack: no helper call (it
	 * would clear the whole buffer to say so) */
	bool kstack = cfg_kernel_stacks && in_kernel(ctx);
	struct sm_key key = {.tgid = tgid, .kind = SM_KIND_CPU};
	if (*(volatile __u32 *)&sm_active) {
		if (kstack)
			key.kernel_stack = stack_id(ctx, &stacks1, 0, SM_STAT_KSTACK_ERR,
			                            SLOT_SAMPLER);
		if (unw_start(ctx, &key, 1))
			return 0;
		key.user_stack = stack_id(ctx, &stacks1, BPF_F_USER_STACK, SM_STAT_USTACK_ERR,
		                          SLOT_SAMPLER);
		count(&counts1, &key, 1);
	} else {
		if (kstack)
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
	 * tables: the new mappings are looked up until the agent has read them */
	bpf_map_delete_elem(&unw_procs, &tgid);
	bpf_map_delete_elem(&unw_found, &tgid);
	bpf_map_delete_elem(&py_procs, &tgid);
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
