/* profile.h - what bpf/profile.bpf.c and the agent share: map keys, the
 * events the program sends, and the indices of its counters. Plain fixed
 * width types only: this header is compiled both for the BPF target
 * (vmlinux.h types) and for the host. */
#ifndef SMOLDER_BPF_PROFILE_H
#define SMOLDER_BPF_PROFILE_H

/* Frames kept per stack: the table walker's ceiling. bpf_get_stack()
 * (frame pointers, kernel stacks) stops at the kernel's own, 127
 * (perf_event_max_stack). */
#define SM_MAX_STACK_DEPTH 128

/* What a counting slot counts: CPU samples (+1 each), or nanoseconds a
 * thread spent blocked (bpf/offcpu.bpf.h), in the same maps. */
enum sm_kind {
	SM_KIND_CPU = 0,
	SM_KIND_OFFCPU = 1,
};

/* One counting slot per (process, kind, user stack, kernel stack). Stacks
 * are named by a 64-bit hash of their addresses, the key of the stacks map
 * of the same set; 0 means the stack could not be read (a kernel thread
 * has no user stack, a sample in user mode no kernel one). */
struct sm_key {
	__u32 tgid;
	__u32 kind;             /* enum sm_kind */
	__u64 user_stack;
	__u64 kernel_stack;
};

/* A stack as the program read it, innermost address first. Every entry
 * after the first is taken for a return address (the agent names the
 * byte before it); a pc that was interrupted by a signal is stored plus
 * one, so that byte is the instruction itself. */
struct sm_stack {
	__u32 len;
	__u32 flags;            /* SM_STACK_* */
	__u64 ips[SM_MAX_STACK_DEPTH];
};

/* The walk stopped before the outermost frame (no FDE, a rule the table
 * cannot express, unreadable memory, the depth limit): the stack lacks
 * its callers. Only the table walker knows; stacks the kernel read by
 * frame pointers (bpf_get_stack) never carry it. */
#define SM_STACK_TRUNCATED 1u

/* ---- Unwind tables (issue 7) ----
 *
 * The agent turns each object's .eh_frame (or .debug_frame) into a sorted
 * array of rows; the BPF program finds the row of a pc by binary search
 * and computes the caller's registers from it. A row applies from its pc
 * up to the next row's pc. pcs are the object's ELF virtual addresses
 * (the same numbering as its FDEs), 32 bits: objects spanning more than
 * 4 GiB of addresses get no table and are walked by frame pointers.
 *
 * x86_64 uses CFA rules on rsp/rbp, the frame pointer rule for rbp, and
 * the return-address rule (always CFA-8 there). The same 16 bytes carry
 * arm64 (CFA on sp/x29, fp = x29, return address in x30 or at CFA+off). */
enum sm_cfa_kind {
	SM_CFA_NONE = 0,        /* no FDE covers this pc (a gap after a function) */
	SM_CFA_SP = 1,          /* CFA = sp + cfa_off */
	SM_CFA_FP = 2,          /* CFA = fp (rbp / x29) + cfa_off */
	SM_CFA_PLT = 3,         /* x86_64 PLT entries: CFA = rsp + 8, plus 8 when
	                         * (rip & 15) >= cfa_off (GCC/binutils' expression) */
	SM_CFA_END = 4,         /* the return address is undefined: outermost frame */
	SM_CFA_UNSUPPORTED = 5, /* a rule the table cannot express */
	/* DWARF expressions recognised when the table is built (the walker
	 * runs no DWARF interpreter): */
	SM_CFA_DEREF_SP = 6,    /* CFA = *(sp + cfa_off) + aux: a stack realigned
	                         * with the old sp saved in the frame (OpenSSL's
	                         * perlasm: DW_OP_breg7 N; deref; plus_uconst M) */
	SM_CFA_DEREF_FP = 7,    /* CFA = *(fp + cfa_off) + aux: GCC's dynamic
	                         * realignment (DRAP: DW_OP_breg6 -N; deref) */
	SM_CFA_REG = 8,         /* CFA = register aux (DWARF number) + cfa_off;
	                         * only the innermost frame has the registers, so
	                         * in a caller this stops the walk */
	SM_CFA_SIGNAL = 9,      /* a signal trampoline (__restore_rt, CIE 'S'):
	                         * CFA = *(sp + cfa_off), the interrupted registers
	                         * saved at sp-relative offsets (SM_REG_SP_OFF), and
	                         * the caller's pc is the interrupted instruction
	                         * itself, not a return address */
	SM_CFA_KINDS
};

enum sm_reg_kind {
	SM_REG_SAME = 0,        /* the register keeps its value in the caller */
	SM_REG_CFA_OFF = 1,     /* saved at CFA + off */
	SM_REG_UNDEF = 2,       /* unknown in the caller */
	SM_REG_LR = 3,          /* arm64 return address: still in the link register */
	SM_REG_UNSUPPORTED = 4, /* saved some other way (another register, expression) */
	SM_REG_SP_OFF = 5,      /* saved at sp + off (this frame's sp: signal frames) */
	SM_REG_FP_OFF = 6,      /* saved at fp + off (DRAP: rbp at [rbp]) */
	SM_REG_KINDS
};

struct sm_unw_row {
	__u32 pc;
	__s32 cfa_off;
	__s16 fp_off;           /* for fp_kind SM_REG_*_OFF */
	__s16 ra_off;           /* for ra_kind SM_REG_*_OFF */
	__u8 cfa_kind;          /* enum sm_cfa_kind */
	__u8 fp_kind;           /* enum sm_reg_kind */
	__u8 ra_kind;           /* enum sm_reg_kind */
	__u8 aux;               /* SM_CFA_DEREF_*: the addend (bytes);
	                         * SM_CFA_REG: the register; else 0 */
};

/* Where one process' executable mappings are and which rows describe
 * them; the agent writes one per process it has tables for, sorted by
 * start. vaddr = pc - bias. rows_len 0: no table (walked by frame
 * pointers). */
#define SM_UNW_MAX_MAPS 128

/* Each table is followed in the rows array by its bucket index: for every
 * SM_UNW_BUCKET bytes of the object's addresses from idx_base on, the
 * (table-relative) row covering the bucket's first byte, four u32 to a
 * row slot. A lookup reads one index entry and binary-searches the few
 * rows of one bucket instead of the whole table: two or three cache lines
 * rather than a dozen cold ones. */
#define SM_UNW_BUCKET_SHIFT 8

struct sm_unw_map {
	__u64 start;
	__u64 end;
	__u64 bias;
	__u32 rows_start;       /* index into the rows array */
	__u32 rows_len;
	__u32 idx_start;        /* row slot where the bucket index begins */
	__u32 idx_len;          /* buckets */
	__u32 idx_base;         /* first bucket: first row's pc >> SM_UNW_BUCKET_SHIFT */
	__u32 flags;            /* SM_UNW_MAP_*; 0 in the agent's entries */
};

/* A mapping the walker found itself (struct sm_unw_found) in anonymous
 * memory: JIT code, walked by frame pointers and counted as such. */
#define SM_UNW_MAP_ANON 1u

struct sm_unw_proc {
	__u32 n;
	__u32 pad;
	struct sm_unw_map maps[SM_UNW_MAX_MAPS];
};

/* An object's table by the file the kernel maps it from, so the walker
 * can use it in a process whose entry lacks the mapping (its first moments,
 * before the agent has read /proc/PID/maps, or a library mapped since):
 * the kernel's vm_file inode (i_sb->s_dev in the kernel's encoding, i_ino,
 * i_size). The agent writes one per file that has a table. */
struct sm_unw_file_key {
	__u32 dev;              /* MKDEV(major, minor): major << 20 | minor */
	__u32 pad;
	__u64 ino;
	__u64 size;
};

#define SM_UNW_FILE_LOADS 2

struct sm_unw_file {
	__u32 rows_start, rows_len;
	__u32 idx_start, idx_len, idx_base;
	__u32 nloads;
	struct {
		__u64 off, vaddr, filesz;   /* executable PT_LOAD segments */
	} loads[SM_UNW_FILE_LOADS];
};

/* Mappings the walker found itself (bpf_find_vma) for pcs outside the
 * process' entry, per process, replaced in turn. */
#define SM_UNW_FOUND 8

struct sm_unw_found {
	__u32 n;
	__u32 next;             /* the slot replaced next */
	struct sm_unw_map maps[SM_UNW_FOUND];
};
/* ---- CPython frames ----
 *
 * In a CPython process a native frame of _PyEval_EvalFrameDefault is
 * replaced by the Python frames that evaluation runs (bpf: py_*). The
 * agent fills one sm_py_proc per such process from the interpreter's
 * exported symbols and the layout of its version (agent/python_layouts.h);
 * BPF reads the frames and sends, per Python frame, two words of the user
 * stack instead of one address:
 *
 *   word 0: SM_PY_MARK | address of the code object (48 bits)
 *   word 1: fingerprint << 32 | (u32) lasti
 *
 * lasti is the frame's last instruction as its version counts it (bytes
 * in 3.8 and 3.9, code units from 3.10 on; -1 before the first). The
 * fingerprint (sm_py_fingerprint, of fields of the code object read with
 * the frame) lets the agent, which reads the code object later, tell that
 * the object at that address is still the one that ran. User addresses
 * are below 2^47, so no native frame carries the mark. */
#define SM_PY_MARK      0x5059000000000000ULL   /* "PY" in the top 16 bits */
#define SM_PY_MARK_MASK 0xffff000000000000ULL
#define SM_PY_MAX_FRAMES 64       /* Python frames per sample; deeper: truncated */
#define SM_PY_READ_MAX 256        /* bytes of a frame, thread state or code
                                   * object read at once: every offset the
                                   * walk uses is below this */

/* How an evaluation's native frame is found. */
enum sm_py_walk {
	SM_PY_WALK_PC = 0,      /* a native frame whose pc is in [eval_lo, eval_hi) */
	SM_PY_WALK_CFRAME = 1,  /* the native frame whose stack holds the thread's
	                         * current _PyCFrame (3.10 to 3.12: every
	                         * evaluation keeps one on the C stack), so the
	                         * function's .cold part counts too */
};

/* Where one evaluation's Python frames end. */
enum sm_py_end {
	SM_PY_END_ONE = 0,      /* one frame per evaluation (3.8 to 3.10) */
	SM_PY_END_ENTRY = 1,    /* after the frame whose is_entry byte is set (3.11) */
	SM_PY_END_CSTACK = 2,   /* at the frame owned by the C stack (owner 3; 3.12+) */
};

enum sm_py_lasti {
	SM_PY_LASTI_INT = 0,    /* an int field of the frame (f_lasti, 3.8 to 3.10) */
	SM_PY_LASTI_PTR = 1,    /* (instruction pointer - co_code) / 2 (3.11+) */
};

struct sm_py_proc {
	__u64 eval_lo, eval_hi;  /* _PyEval_EvalFrameDefault in the process */
	__u64 code_type;         /* &PyCode_Type */
	__u32 tls_key;           /* the pthread key of the thread state (autoTSSkey) */
	/* libc: where pthread_getspecific finds a key's value, from the thread
	 * pointer (fs base): keys < 32 at tp + tls_first + 16 * key; others
	 * through the pointer at tp + tls_second + 8 * (key / 32), then
	 * + 16 * (key % 32) + 8 */
	__u16 tls_first, tls_second;
	/* offsets, from agent/python_layouts.h */
	__u16 ts_thread_id;      /* PyThreadState.thread_id: pthread_self() */
	__u16 ts_frame;          /* frame (3.8-3.10), current_frame (3.13) */
	__u16 ts_cframe;         /* cframe (3.10-3.12) */
	__u16 cf_frame;          /* _PyCFrame.current_frame (3.11, 3.12) */
	__u16 cf_previous;       /* _PyCFrame.previous */
	__u16 fr_code, fr_back, fr_lasti, fr_end;  /* fr_end: is_entry or owner */
	__u16 co_filename, co_name, co_firstlineno, co_code;
	__u16 ts_read, fr_read, co_read;           /* bytes to read of each */
	__u8 walk, end, lasti, has_cf_frame;        /* enum sm_py_walk, sm_py_end, sm_py_lasti */
	__u32 pad;
};

/* The fingerprint of a code object: its filename and name pointers and
 * first line, as BPF read them with the frame and the agent reads them
 * again. */
static inline __u32 sm_py_fingerprint(__u64 filename, __u64 name, __u32 firstlineno)
{
	__u64 h = (filename * 0x9e3779b97f4a7c15ULL) ^ (name + firstlineno);
	h *= 0xff51afd7ed558ccdULL;
	return (__u32)((h ^ (h >> 29)) >> 32);
}

enum sm_event_kind {
	SM_EV_NEW = 1,   /* first sample of a process since it started or exec'd */
	SM_EV_EXEC = 2,  /* the process replaced its image */
	SM_EV_EXIT = 3,  /* the whole process ended */
	SM_EV_PY_CODE = 4, /* a code object (or a new one at an address) ran:
	                    * struct sm_py_event */
};

/* The agent reads a code object's names when it first runs, while the
 * process surely lives, rather than at the next drain: a short-lived
 * process' names would be gone by then. */
struct sm_py_event {
	__u32 kind;             /* SM_EV_PY_CODE */
	__u32 tgid;
	__u64 code;             /* the code object */
	__u32 fingerprint;      /* as in the stack's second word */
	__u32 pad;
};

struct sm_event {
	__u32 kind;
	__u32 tgid;
	char comm[16];
	__u64 ktime_ns;         /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
};

/* Per-CPU counters the agent sums and reports with every batch. */
enum sm_stat {
	SM_STAT_SAMPLES,       /* samples taken (idle excluded) */
	SM_STAT_COUNT_FULL,    /* counts map full: sample dropped */
	SM_STAT_STACK_FULL,    /* stacks map full: frames lost */
	SM_STAT_USTACK_ERR,    /* user stack unreadable (besides kernel threads) */
	SM_STAT_KSTACK_ERR,
	SM_STAT_EVENTS_LOST,   /* ring buffer full: a process event lost */
	/* the table walker (user stacks of processes with tables) */
	SM_STAT_UNW_SAMPLES,   /* stacks walked with tables */
	SM_STAT_UNW_COMPLETE,  /* reached the outermost frame (undefined return
	                        * address, or a zero one under frame pointers) */
	SM_STAT_UNW_TRUNCATED, /* SM_MAX_STACK_DEPTH frames and more to go */
	SM_STAT_UNW_NO_FDE,    /* a pc inside an object with a table but no FDE
	                        * (the walk tries its frame pointer) */
	SM_STAT_UNW_UNSUPPORTED, /* a rule the table marks unsupported */
	SM_STAT_UNW_READ_ERR,  /* user memory unreadable (paged out, bad CFA) */
	SM_STAT_UNW_FP_STOP,   /* a frame without table whose frame pointer
	                        * does not look like one */
	SM_STAT_UNW_TAIL_FAIL, /* the tail call to the walker failed */
	/* the CPython walk */
	SM_STAT_PY_SAMPLES,    /* samples of a thread with a Python thread state */
	SM_STAT_PY_FRAMES,     /* Python frames put in stacks */
	SM_STAT_PY_NO_THREAD,  /* samples of a CPython process' threads without one
	                        * (not an error: threads that never ran Python) */
	SM_STAT_PY_BAD_THREAD, /* the thread state's thread is not this one */
	SM_STAT_PY_READ_ERR,   /* interpreter memory unreadable mid-walk */
	SM_STAT_PY_BAD_CODE,   /* a frame whose code is not a code object */
	SM_STAT_PY_TRUNCATED,  /* SM_PY_MAX_FRAMES or a full stack, more to go */
	SM_STAT_PY_LOST,       /* evaluations the native walk never reached */
	/* frames walked by frame pointer where the tables could not help */
	SM_STAT_UNW_FP_JIT,    /* pc in no mapping of the entry: anonymous
	                        * executable memory (JIT code) */
	SM_STAT_UNW_FP_NO_FDE, /* pc in an object's table range, no FDE */
	SM_STAT_UNW_FP_NO_TABLE, /* pc in an object without a table */
	SM_STAT_UNW_FOUND,     /* mappings the walker looked up itself */
	/* off-CPU time (bpf/offcpu.bpf.h) */
	SM_STAT_OFF_BLOCKS,    /* blocks of at least cfg_offcpu_min_ns, counted */
	SM_STAT_OFF_SHORT,     /* blocks shorter: nothing stored */
	SM_STAT_OFF_UNSAMPLED, /* blocks not sampled (--off-cpu-sample) */
	SM_STAT_OFF_COUNT_FULL, /* counts map full: a block's time dropped */
	SM_STAT_OFF_NO_STORAGE, /* a thread's start could not be kept */
	SM_STAT_N,
};

#endif
