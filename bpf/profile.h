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

/* A stack as the program read it, innermost address first. */
struct sm_stack {
	__u32 len;
	__u32 pad;
	__u64 ips[SM_MAX_STACK_DEPTH];
};

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
	SM_CFA_UNSUPPORTED = 5, /* a rule the table cannot express (DWARF expression) */
};

enum sm_reg_kind {
	SM_REG_SAME = 0,        /* the register keeps its value in the caller */
	SM_REG_CFA_OFF = 1,     /* saved at CFA + off */
	SM_REG_UNDEF = 2,       /* unknown in the caller */
	SM_REG_LR = 3,          /* arm64 return address: still in the link register */
	SM_REG_UNSUPPORTED = 4, /* saved some other way (another register, expression) */
};

struct sm_unw_row {
	__u32 pc;
	__s32 cfa_off;
	__s16 fp_off;           /* for fp_kind SM_REG_CFA_OFF */
	__s16 ra_off;           /* for ra_kind SM_REG_CFA_OFF */
	__u8 cfa_kind;          /* enum sm_cfa_kind */
	__u8 fp_kind;           /* enum sm_reg_kind */
	__u8 ra_kind;           /* enum sm_reg_kind */
	__u8 pad;
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
	__u32 pad;
};

struct sm_unw_proc {
	__u32 n;
	__u32 pad;
	struct sm_unw_map maps[SM_UNW_MAX_MAPS];
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
	SM_STAT_UNW_NO_FDE,    /* a pc inside an object with a table but no FDE */
	SM_STAT_UNW_UNSUPPORTED, /* a rule the table marks unsupported */
	SM_STAT_UNW_READ_ERR,  /* user memory unreadable (paged out, bad CFA) */
	SM_STAT_UNW_FP_STOP,   /* a frame without table whose frame pointer
	                        * does not look like one */
	SM_STAT_UNW_TAIL_FAIL, /* the tail call to the walker failed */
	/* off-CPU time (bpf/offcpu.bpf.h) */
	SM_STAT_OFF_BLOCKS,    /* blocks of at least cfg_offcpu_min_ns, counted */
	SM_STAT_OFF_SHORT,     /* blocks shorter: nothing stored */
	SM_STAT_OFF_UNSAMPLED, /* blocks not sampled (--off-cpu-sample) */
	SM_STAT_OFF_COUNT_FULL, /* counts map full: a block's time dropped */
	SM_STAT_OFF_NO_STORAGE, /* a thread's start could not be kept */
	SM_STAT_N,
};

#endif
