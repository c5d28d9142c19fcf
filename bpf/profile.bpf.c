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

/* Scratch space for reading a stack: 1 KiB is too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
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
	__u32 pad;
	struct sm_key key;
	struct sm_stack stack;
	struct py_walk py;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
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

/* Reads one stack by frame pointers (user or kernel, by flags) and stores
 * it; returns its hash, 0 when there is no stack to read. */
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

/* the walker tail-calls itself; libbpf fills the slot at load */
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
 * Python frames replace it, from the next step on. */
static __always_inline void py_native(struct unw_state *s, struct sm_py_proc *py, __u64 look,
                                      __u64 sp)
{
	if (s->py.state != PY_WAIT || !py)
		return;
	bool hit;
	if (py->walk == SM_PY_WALK_CFRAME) {
		if (s->py.marker < sp) {
			/* an evaluation below this frame that no native frame
			 * held: the two walks no longer agree */
			stat_inc(SM_STAT_PY_LOST);
			s->py.state = PY_OFF;
			return;
		}
		hit = s->py.marker < s->sp;
	} else {
		hit = look >= py->eval_lo && look < py->eval_hi;
	}
	if (!hit)
		return;
	s->py.state = PY_EMIT;
	s->py.slot = s->stack.len - 1;
	s->py.in_eval = 0;
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
 * stack, over the evaluation's native frame for its first). */
static __always_inline void py_step(struct unw_state *s, struct sm_py_proc *py)
{
	__u64 fr = s->py.frame;
	if (!py || py_read(s->py.buf, py->fr_read, fr)) {
		s->py.state = PY_OFF;
		return;
	}
	if (py->end == SM_PY_END_CSTACK && s->py.buf[py->fr_end & (SM_PY_READ_MAX - 1)] == 3) {
		/* the evaluation's entry frame, on the C stack: not Python code */
		s->py.frame = py_u64(s->py.buf, py->fr_back);
		py_eval_done(s, py);
		return;
	}
	__u64 code = py_u64(s->py.buf, py->fr_code);
	if (py_read(s->py.cbuf, py->co_read, code)) {
		s->py.state = PY_OFF;
		return;
	}
	if (py_u64(s->py.cbuf, 8) != py->code_type) {
		/* a frame being torn down, or not a frame at all */
		stat_inc(SM_STAT_PY_BAD_CODE);
		s->py.state = PY_OFF;
		return;
	}
	if (s->py.n >= SM_PY_MAX_FRAMES) {
		stat_inc(SM_STAT_PY_TRUNCATED);
		s->py.state = PY_OFF;
		return;
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
		return;
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
}

/* Stores the walked stack and counts the sample. */
static __always_inline void unw_finish(struct unw_state *s)
{
	if (s->py.state != PY_OFF && s->py.frame)
		stat_inc(SM_STAT_PY_LOST);
	if (s->set) {
		s->key.user_stack = store_stack(&stacks1, &s->stack);
		count(&counts1, &s->key);
	} else {
		s->key.user_stack = store_stack(&stacks0, &s->stack);
		count(&counts0, &s->key);
	}
}

SEC("perf_event")
int sm_unwind(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0;
	struct unw_state *s = bpf_map_lookup_elem(&unw_state, &zero);
	if (!s)
		return 0;
	struct sm_unw_proc *p = bpf_map_lookup_elem(&unw_procs, &s->key.tgid);
	struct sm_py_proc *py = s->py.state != PY_OFF ?
		bpf_map_lookup_elem(&py_procs, &s->key.tgid) : NULL;
	for (int i = 0; i < UNW_FRAMES; i++) {
		__u32 n = s->stack.len;
		if (n >= SM_MAX_STACK_DEPTH) {
			stat_inc(SM_STAT_UNW_TRUNCATED);
			unw_finish(s);
			return 0;
		}
		if (s->py.state == PY_EMIT) {
			py_step(s, py);
			continue;
		}
		s->stack.ips[n & (SM_MAX_STACK_DEPTH - 1)] = s->pc;
		s->stack.len = n + 1;
		__u64 look = n ? s->pc - 1 : s->pc, sp = s->sp;
		if (unw_step(s, p) != UNW_NEXT) {
			unw_finish(s);
			return 0;
		}
		py_native(s, py, look, sp);
	}
	if (s->tails < UNW_MAX_TAILS) {
		s->tails++;
		bpf_tail_call(ctx, &unw_progs, 0);
		stat_inc(SM_STAT_UNW_TAIL_FAIL);
	} else {
		stat_inc(SM_STAT_UNW_TRUNCATED);
	}
	unw_finish(s);
	return 0;
}

/* Starts the table walk of the current task's user stack when the agent
 * has tables for its process. Returns true when the walk took over the
 * sample (it counts it), false to count it with frame pointers. */
static __always_inline bool unw_start(struct bpf_perf_event_data *ctx, struct sm_key *key,
                                      __u32 set)
{
	if (!cfg_unwind || !bpf_map_lookup_elem(&unw_procs, &key->tgid))
		return false;
	__u32 zero = 0;
	struct unw_state *s = bpf_map_lookup_elem(&unw_state, &zero);
	if (!s)
		return false;
	/* user mode: the sampled ip is a user address (the kernel's half of
	 * the address space has the top bit set). The context only allows
	 * full-width loads, which cs (a u16) is not. */
	if ((__s64)ctx->regs.ip >= 0) {
		s->pc = ctx->regs.ip;
		s->sp = ctx->regs.sp;
		s->bp = ctx->regs.bp;
	} else {
		/* in the kernel: the user registers saved at kernel entry. The
		 * helper is Linux 5.15's; where the kernel lacks it, CO-RE makes
		 * this branch dead code, which the verifier does not check, and
		 * such samples keep frame-pointer user stacks. */
		if (!bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
			return false;
		struct task_struct *t = bpf_get_current_task_btf();
		if (!t->mm)
			return false;   /* a kernel thread: no user stack */
		struct pt_regs *r = (struct pt_regs *)bpf_task_pt_regs(t);
		s->pc = BPF_CORE_READ(r, ip);
		s->sp = BPF_CORE_READ(r, sp);
		s->bp = BPF_CORE_READ(r, bp);
	}
	s->tails = 0;
	s->last_map = 0;
	s->set = set;
	s->key = *key;
	s->stack.len = 0;
	py_start(s);
	stat_inc(SM_STAT_UNW_SAMPLES);
	bpf_tail_call(ctx, &unw_progs, 0);
	stat_inc(SM_STAT_UNW_TAIL_FAIL);
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

	/* Look before inserting: an LRU update takes a free node (and may
	 * shrink the lists for it) even when the key exists. */
	__u8 one = 1;
	if (!bpf_map_lookup_elem(&known, &tgid) &&
	    bpf_map_update_elem(&known, &tgid, &one, BPF_NOEXIST) == 0)
		emit(SM_EV_NEW, tgid);

	struct sm_key key = {.tgid = tgid};
	if (*(volatile __u32 *)&sm_active) {
		if (cfg_kernel_stacks)
			key.kernel_stack = stack_id(ctx, &stacks1, 0, SM_STAT_KSTACK_ERR);
		if (unw_start(ctx, &key, 1))
			return 0;
		key.user_stack = stack_id(ctx, &stacks1, BPF_F_USER_STACK, SM_STAT_USTACK_ERR);
		count(&counts1, &key);
	} else {
		if (cfg_kernel_stacks)
			key.kernel_stack = stack_id(ctx, &stacks0, 0, SM_STAT_KSTACK_ERR);
		if (unw_start(ctx, &key, 0))
			return 0;
		key.user_stack = stack_id(ctx, &stacks0, BPF_F_USER_STACK, SM_STAT_USTACK_ERR);
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
	/* the old image's unwind entry would walk the new one with the wrong
	 * tables: frame pointers until the agent has read the new mappings */
	bpf_map_delete_elem(&unw_procs, &tgid);
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
