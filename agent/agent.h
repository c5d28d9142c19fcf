/* agent.h - smolder-agent's parts (ag_ prefix). main.c wires them:
 *
 *   sampler.c   loads bpf/profile.bpf.c (skeleton), one perf event per CPU,
 *               process events from the ring buffer, drains a map set
 *   procs.c     per-process state: labels, /proc/PID/maps, addr → (object, offset)
 *   labels.c    a process' own labels: environment, systemd unit, container
 *   relabel.c   the --config file (YAML) and its relabel rules
 *   objects.c   ELF objects by (dev, inode, mtime, size): build IDs by
 *               wire/buildid.h
 *   unwind_table.c  .eh_frame/.gopclntab/.debug_frame → unwind rows
 *   unwind.c    the BPF unwinder's tables: which rows each object has, which
 *               objects each process maps; tables built on a builder thread
 *   python.c    CPython processes: their BPF entries, Python frames named
 *               from process memory (python_layouts.h: offsets per version)
 *   ksyms.c     kernel addresses → names from /proc/kallsyms
 *   perfmap.c   JIT code → names from the runtime's /tmp/perf-PID.map
 *   batch.c     one interval's counts → a wire batch (wire/wire.h)
 *   push.c      the send queue: in-order delivery, retry, backlog, stack
 *               cache, debug-info uploads (libcurl)
 *
 * Everything runs on the main thread and nothing here is thread-safe,
 * except unwind.c's builder thread, which only reads files and computes
 * rows and hands them back under its own lock (unwind.c). */
#ifndef SMOLDER_AGENT_H
#define SMOLDER_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/err.h"
#include "wire/wire.h"

/* ---- objects.c ---- */

typedef struct ag_obj {
	uint8_t build_id[WIRE_MAX_BUILD_ID];
	uint32_t build_id_len;
	char *name;           /* path in the process' view, for display */
	int fd;               /* kept open until uploaded (or known to the server) */
	uint64_t size;
	bool uploaded;        /* the server has it (HEAD 200 or PUT done) */
	bool upload_failed;   /* too big or rejected: not retried */
	bool upload_deferred; /* waited for the daily bound (counted once) */
	uint64_t last_used;   /* drain number */
	uint32_t batch_idx;   /* scratch for batch.c */
	uint64_t batch_gen;
	dev_t dev;
	ino_t ino;
	int64_t mtime_ns;
} ag_obj;

typedef struct ag_objs ag_objs;

int ag_objs_new(ag_objs **out);
void ag_objs_free(ag_objs *o);
/* The object behind an open file descriptor (taken over: closed by the
 * cache when it is not needed). Returns NULL when fd is no ELF file. */
ag_obj *ag_objs_get(ag_objs *o, int fd, const char *name);
/* Closes files of objects unused since drain number `before`. */
void ag_objs_expire(ag_objs *o, uint64_t before);
/* Iteration for uploads. */
size_t ag_objs_count(const ag_objs *o);
ag_obj *ag_objs_at(ag_objs *o, size_t i);

/* Reads the build ID of the ELF file fd by the rule of wire/buildid.h
 * (wire_elf_build_id) into id. Returns its length, 0 when the file has
 * none (the caller names it by its content), or a negative errno when it
 * is no ELF file. */
int ag_elf_build_id(int fd, uint8_t id[WIRE_MAX_BUILD_ID]);

/* ---- unwind_table.c: .eh_frame / .debug_frame → BPF unwind rows ---- */

struct sm_unw_row;

typedef struct ag_unw_info {
	size_t fdes;          /* FDEs read */
	size_t unsupported;   /* rows marked SM_CFA_UNSUPPORTED or SM_REG_UNSUPPORTED */
	size_t innermost_only; /* SM_CFA_REG rows: usable in the innermost frame only */
	bool from_debug_frame; /* .debug_frame filled ranges .eh_frame lacks */
	size_t go_funcs;      /* functions .gopclntab lists (a Go binary) */
	size_t go_ranges;     /* of their code ranges no FDE covers, those given
	                       * rows from Go's SP deltas */
} ag_unw_info;

/* Builds the unwind table of the ELF file open at fd (not closed, the
 * file offset not used) from its .eh_frame, then, in a Go binary, Go's
 * own SP deltas (.gopclntab) where no FDE of .eh_frame is, then
 * .debug_frame where neither is: rows sorted by strictly increasing pc, adjacent
 * rows with equal rules merged, an SM_CFA_NONE row where one FDE's range
 * ends and no other starts. *rows is malloc'd (free()); *n may be 0 for a
 * file without CFI. Returns 0, -ENOEXEC when fd is no ELF file of this
 * machine, -E2BIG when its addresses do not fit 32 bits or the table
 * would pass max_rows, or another negative errno. */
int ag_unw_build(int fd, size_t max_rows, struct sm_unw_row **rows, size_t *n,
                 ag_unw_info *info);

/* The rows ag_unw_build gives Go function i of the .gopclntab go
 * (wire/gopclntab.h) when no FDE covers it, for tests and fuzzing: as
 * ag_unw_build's, *n 0 when the table cannot describe the function. */
struct wire_gotab;
int ag_unw_go_rows(const struct wire_gotab *go, size_t i, size_t max_rows,
                   struct sm_unw_row **rows, size_t *n);

/* One DWARF expression operation, as libdw's Dwarf_Op gives it. */
typedef struct ag_unw_op {
	uint8_t atom;
	uint64_t number, number2;
} ag_unw_op;

/* The expression recogniser (unwind_table.c): the BPF walker runs no DWARF
 * interpreter, so each expression form real code uses is matched here and
 * becomes a row kind the walker computes exactly.
 *
 * ag_unw_cfa_rule sets r's cfa_kind, cfa_off and aux from the CFA rule
 * ops[0..n) in dwarf_frame_cfa's form (def_cfa as DW_OP_bregx, or the
 * expression of DW_CFA_def_cfa_expression); signal: the FDE's CIE has the
 * 'S' augmentation. Anything it does not take exactly is
 * SM_CFA_UNSUPPORTED, never an approximation.
 *
 * ag_unw_reg_rule gives a register's rule from dwarf_frame_register's
 * expression (n == 0: same value, or undefined when `undefined`) as an
 * enum sm_reg_kind and its offset; SM_REG_UNSUPPORTED when not taken. */
void ag_unw_cfa_rule(const ag_unw_op *ops, size_t n, bool signal, struct sm_unw_row *r);
void ag_unw_reg_rule(const ag_unw_op *ops, size_t n, bool undefined, uint8_t *kind,
                     int16_t *off);

/* ---- unwind.c: tables in the kernel, per-process entries ---- */

typedef struct ag_unw ag_unw;
typedef struct ag_proc ag_proc;
typedef struct ag_mapping ag_mapping;

typedef struct ag_unw_opts {
	int rows_fd;                /* the BPF rows array (BPF_F_MMAPABLE): each
	                             * table's range is mapped while it is
	                             * written, so the agent's resident memory
	                             * holds none of it */
	uint32_t rows_cap;
	int procs_fd;               /* the BPF unw_procs map */
	int files_fd;               /* unw_files: tables by the file mapped */
	int found_fd;               /* unw_found: mappings the walker found */
	const char *proc_root;      /* "/proc" */
	bool verbose;
} ag_unw_opts;

typedef struct ag_unw_stats {
	uint64_t tables;            /* objects known (with or without rows) */
	uint64_t built, build_failed, evicted, no_space, maps_over;
	uint64_t expired;           /* tables freed after no process mapped them */
	uint64_t rows_used, rows_cap;
	uint64_t procs;             /* processes with an entry */
	uint64_t build_ns, build_ns_max;
	/* from a process' first sample (its NEW or EXEC event) to its entry */
	uint64_t ready, ready_ns, ready_ns_max;
} ag_unw_stats;

int ag_unw_new(const ag_unw_opts *o, ag_unw **out);
void ag_unw_free(ag_unw *u);
/* Loads the tables of pr's executable mappings (building those not
 * loaded yet) and writes its entry; a process none of whose mappings has
 * a table gets no entry (frame pointers, as before). */
int ag_unw_proc(ag_unw *u, const ag_proc *pr);
/* The process whose event is being handled and when it was sampled
 * (CLOCK_MONOTONIC ns): its entry's latency is counted in ready*. */
void ag_unw_event(ag_unw *u, pid_t pid, int64_t mono_ns);
/* Installs the tables the builder thread finished and completes the
 * entries that waited for them. Returns how many builds are still
 * queued or running (the caller polls sooner while there are some). */
int ag_unw_tick(ag_unw *u);
/* Whether every queued build has finished, waiting for ag_unw_tick to
 * install it (tests: several builds installed by one tick). */
bool ag_unw_builds_finished(ag_unw *u);
void ag_unw_proc_gone(ag_unw *u, pid_t pid);
/* Frees the tables no process has mapped for AG_UNW_KEEP_NS (their rows
 * and the agent's memory for them; short-lived processes of the same
 * binaries within that time reuse them), and forgets objects whose table
 * failed after AG_UNW_KEEP_FAILED_NS. now_ns: CLOCK_MONOTONIC. */
#define AG_UNW_KEEP_NS ((int64_t)120 * 1000000000)
#define AG_UNW_KEEP_FAILED_NS ((int64_t)600 * 1000000000)
void ag_unw_expire(ag_unw *u, int64_t now_ns);
void ag_unw_get_stats(const ag_unw *u, ag_unw_stats *out);

/* ---- ksyms.c ---- */

typedef struct ag_ksyms ag_ksyms;

int ag_ksyms_load(const char *path, ag_ksyms **out);
void ag_ksyms_free(ag_ksyms *k);
/* The function containing addr, NULL when none. */
const char *ag_ksyms_find(const ag_ksyms *k, uint64_t addr);
size_t ag_ksyms_count(const ag_ksyms *k);

/* ---- perfmap.c: JIT code named by the runtime's /tmp/perf-PID.map ---- */

#define AG_STR_(x) #x
#define AG_STR(x) AG_STR_(x)
#define AG_PMAP_MAX_LINE 8192          /* longer lines are skipped, counted */
#define AG_PMAP_MAX_NAME 1024          /* names are cut to this (storage's
                                        * ST_MAX_SYMBOL_LEN) */
#define AG_PMAP_DEFAULT_MAX (16u << 20) /* bytes of entries per process */

typedef struct ag_pmaps ag_pmaps;   /* every process' map: the bound, counters */
typedef struct ag_pmap ag_pmap;     /* one process' map */

typedef struct ag_pmaps_opts {
	const char *proc_root;          /* "/proc" */
	size_t max_bytes;               /* per process; 0: AG_PMAP_DEFAULT_MAX */
} ag_pmaps_opts;

typedef struct ag_pmaps_stats {
	uint64_t files;                 /* maps open (gauge) */
	uint64_t entries, bytes;        /* held by all of them (gauges) */
	uint64_t bad_lines;             /* lines that are not "START SIZE NAME" */
	uint64_t huge_lines;            /* lines over AG_PMAP_MAX_LINE bytes */
	uint64_t truncated;             /* maps whose process left an unfinished
	                                 * last line */
	uint64_t over_limit;            /* maps that needed more than the bound */
	uint64_t refused;               /* not a regular file, foreign owner, a
	                                 * symlink, older than its process */
	uint64_t rewrites;              /* maps written again from the start */
} ag_pmaps_stats;

int ag_pmaps_new(const ag_pmaps_opts *o, ag_pmaps **out);
/* Frees the shared part; every process' ag_pmap must be freed first. */
void ag_pmaps_free(ag_pmaps *ps);
void ag_pmaps_get_stats(const ag_pmaps *ps, ag_pmaps_stats *out);
/* The name process pid's perf map gives addr, NULL when none. *pm is the
 * process' state (NULL the first time: allocated here, the caller frees
 * it with ag_pmap_free). The map is opened when it appears and read
 * (what was appended since) at most once per drain number. The name
 * stays valid until the next call for the same process with another
 * drain number. */
const char *ag_pmap_lookup(ag_pmaps *ps, ag_pmap **pm, pid_t pid, uint64_t addr,
                           uint64_t drain);
/* Opens process pid's map when it exists and is not open yet, reading
 * nothing: a process that exits before the next drain keeps a map the
 * agent can read (its /proc/PID/root goes with it). *pm as above. */
void ag_pmap_open(ag_pmaps *ps, ag_pmap **pm, pid_t pid);
/* Entries held for one process (0 for NULL). */
size_t ag_pmap_entries(const ag_pmap *pm);
/* Drops a process' map (its exit or exec); accepts NULL. */
void ag_pmap_free(ag_pmaps *ps, ag_pmap *pm);
/* One line of a map (l[0..n), no newline): 1 with its fields, 0 for a line
 * that names nothing (empty, size 0), -1 when malformed. The name is the
 * rest of the line after SIZE and its blanks, not NUL-terminated. */
int ag_pmap_parse_line(const char *l, size_t n, uint64_t *start, uint64_t *size,
                       const char **name, size_t *name_len);

/* ---- procs.c ---- */

enum { AG_MAP_FILE, AG_MAP_VDSO, AG_MAP_ANON };

typedef struct ag_mapping {
	uint64_t start, end, pgoff;
	uint64_t ino;
	uint32_t dev;         /* as /proc/PID/maps shows it: the kernel's
	                       * encoding, major << 20 | minor */
	int kind;
	ag_obj *obj;          /* AG_MAP_FILE */
} ag_mapping;

struct ag_plabels;

typedef struct ag_proc {
	pid_t pid;
	char comm[17];
	char *exe;
	char *cgroup;
	char *container;
	char build_id_hex[2 * WIRE_MAX_BUILD_ID + 1]; /* main executable's */
	ag_mapping *maps;
	size_t nmaps;
	int64_t maps_read_ns;
	uint64_t maps_read_drain;
	bool exited;          /* freed two drains later (ag_procs_sweep) */
	uint64_t exit_drain;  /* the first sweep that saw it exited */
	bool gone;            /* /proc/PID had vanished when we looked */
	ag_pmap *pmap;        /* its perf map, once a frame was in JIT code */
	const char *jit_lang; /* its JIT frames' language tag ("js", "java",
	                       * "dotnet"; static), NULL when not known */
	uint32_t batch_idx;   /* UINT32_MAX: a relabel rule dropped it */
	uint64_t batch_gen;
	struct ag_plabels *labels;  /* labels.c: its own labels, NULL before read */
} ag_proc;

typedef struct ag_procs ag_procs;

typedef struct ag_procs_opts {
	const char *proc_root;  /* "/proc" */
	ag_objs *objs;
	ag_pmaps *pmaps;        /* frees processes' perf maps; may be NULL */
	/* called after a process' mappings were read (a new process, an
	 * exec) or reread and found changed, and when it is forgotten (the
	 * unwinder's entries follow them); may be NULL */
	void (*on_maps)(void *arg, const ag_proc *pr);
	void (*on_forget)(void *arg, pid_t pid);
	void *hook_arg;
} ag_procs_opts;

int ag_procs_new(const ag_procs_opts *opt, ag_procs **out);
void ag_procs_free(ag_procs *p);
/* The process, created (and /proc read) when unknown. comm may be NULL. */
ag_proc *ag_procs_get(ag_procs *p, pid_t pid, const char *comm);
/* A process event: new/exec reread its mappings now; exit marks it. */
void ag_procs_event(ag_procs *p, int kind, pid_t pid, const char *comm);
/* Rereads /proc/PID/maps (at most once per drain). Returns 0, or -ESRCH
 * when the process is gone. */
int ag_procs_refresh(ag_procs *p, ag_proc *pr, uint64_t drain);
/* A process is announced at its first sample, often while the dynamic
 * loader still maps its libraries; if it exits before the drain its
 * mappings can no longer be read. So /proc/PID/maps is read again shortly
 * after each announcement (AG_REREAD_NS). Runs the rereads that are due
 * and returns when the next one is (0: none waits). */
int64_t ag_procs_tick(ag_procs *p, int64_t now_mono_ns);
/* The mapping holding addr, NULL if none. */
const ag_mapping *ag_proc_find(const ag_proc *pr, uint64_t addr);
/* A descriptor of m's file (AG_MAP_FILE) as process pid maps it: its
 * object's own descriptor duplicated while open, else the mapping's file
 * under proc_root/PID/map_files. The caller closes it; -1 when neither. */
int ag_mapping_open(const char *proc_root, pid_t pid, const ag_mapping *m);
/* Replaces in place each byte of s[0..n) that is not part of a strict
 * UTF-8 sequence (overlong forms, surrogates, past U+10FFFF) and each
 * control character below 0x20 with '?', as the store wants labels. */
void ag_mend_utf8(char *s, size_t n);
/* Reads a small file (/proc/PID/status, ...) into buf, NUL-terminated;
 * returns the bytes read or a negative errno. */
ssize_t ag_read_small(const char *path, char *buf, size_t cap);
/* The file name of path: what follows its last '/' (all of it if none). */
const char *ag_base_name(const char *path);
/* Frees processes that exited before this drain, and those unsampled for
 * a while whose /proc entry has vanished (an exit event lost). */
void ag_procs_sweep(ag_procs *p, uint64_t drain);
size_t ag_procs_count(const ag_procs *p);

/* ---- relabel.c: the config file's relabel rules ---- */

#define AG_ENV_PREFIX "SMOLDER_LABEL_"
#define AG_ENV_MAX_BYTES (64 << 10)   /* of /proc/PID/environ read at most */
#define AG_LABEL_VALUE_MAX 256        /* bytes of a label value; longer ones are cut */
#define AG_MAX_PROC_LABELS 32         /* labels from one process' environment */
#define AG_MAX_CONTAINER_LABELS 64    /* labels from one container's file */
#define AG_CONTAINER_FILE_MAX (1 << 20)
#define AG_MAX_LABEL_VALUES 100       /* distinct values in use per label name */
#define AG_CONFIG_MAX_BYTES (1 << 20)
#define AG_RELABEL_MAX_RULES 256
#define AG_RELABEL_MAX_SOURCES 16
#define AG_RELABEL_STR_MAX 1024       /* bytes of a regex, separator, replacement */
#define AG_REGEX_MATCH_LIMIT 100000   /* PCRE2 steps per match */

/* A list of labels; each string its own allocation. */
typedef struct ag_kv {
	char *name, *value;
} ag_kv;
typedef struct ag_kvs {
	ag_kv *v;
	size_t n, cap;
} ag_kvs;

/* Sets name to value (copied), replacing; -ENOMEM. */
int ag_kvs_set(ag_kvs *l, const char *name, const char *value);
/* Deletes entry i; the last entry moves into its place. */
void ag_kvs_del(ag_kvs *l, size_t i);
void ag_kvs_free(ag_kvs *l);

typedef struct ag_relabel ag_relabel;

/* Parses the agent's config (YAML: relabel_configs, max_label_values).
 * Returns 0, -EINVAL with "LINE:COL: message" in err, or -ENOMEM. A regex
 * that takes more than AG_REGEX_MATCH_LIMIT steps on a hostile value is
 * refused. Free with ag_relabel_free(). */
int ag_relabel_parse(const char *text, size_t len, ag_relabel **out, base_err *err);
/* The same from a file; err is "PATH:LINE:COL: message". */
int ag_relabel_load(const char *path, ag_relabel **out, base_err *err);
void ag_relabel_free(ag_relabel *r);
/* Runs the rules (r may be NULL: none) over l, then removes the "__"
 * labels. Returns 1 to keep the process, 0 when a keep/drop rule dropped
 * it, or -ENOMEM. Matches stopped by the step limit count in *regex_limit
 * and do not match. */
int ag_relabel_apply(ag_relabel *r, ag_kvs *l, uint64_t *regex_limit);
/* max_label_values of the config, else AG_MAX_LABEL_VALUES. */
uint32_t ag_relabel_max_values(const ag_relabel *r);

/* ---- labels.c: a process' own labels ---- */

typedef struct ag_plabels ag_plabels;
typedef struct ag_labeler ag_labeler;

typedef struct ag_label_stats {
	uint64_t env_values_cut;       /* values longer than AG_LABEL_VALUE_MAX, cut */
	uint64_t env_truncated;        /* environments longer than AG_ENV_MAX_BYTES */
	uint64_t labels_invalid;       /* SMOLDER_LABEL_ names that are no label names */
	uint64_t labels_over_limit;    /* past AG_MAX_PROC_LABELS / _CONTAINER_LABELS */
	uint64_t labels_dropped_cardinality; /* past max_label_values, left off */
	uint64_t processes_dropped;    /* by keep and drop rules */
	uint64_t samples_dropped;      /* of those processes */
	uint64_t regex_limit;          /* matches stopped by AG_REGEX_MATCH_LIMIT */
} ag_label_stats;

/* Reads pr's environment (SMOLDER_LABEL_*), the systemd unit of its
 * cgroup and its container's labels under proc_root; replaces what
 * pr->labels held (a new image: exec). procs.c calls it when it reads a
 * process' labels. */
void ag_labels_read(const char *proc_root, ag_proc *pr);
void ag_plabels_free(ag_plabels *pl);
/* The parsers on their own, for tests and fuzzing: an environment block
 * (NUL-separated, truncated: cut by the read bound), a container file of
 * runtime "docker" (config.v2.json) or another (OCI config.json). */
int ag_env_labels(const char *env, size_t n, bool truncated, ag_plabels *pl);
int ag_container_json(const char *text, size_t n, const char *runtime, ag_plabels *pl);

/* Takes rules over (may be NULL). Free after every process is freed. */
int ag_labeler_new(ag_relabel *rules, ag_labeler **out);
void ag_labeler_free(ag_labeler *lb);
/* pr's labels: builtins (hostname, comm, exe, ...) and its own, through
 * the rules and the values limit, worked out once per process image.
 * NULL when a rule dropped the process. Valid until pr's labels are read
 * again or pr is freed. */
const ag_kvs *ag_labeler_labels(ag_labeler *lb, ag_proc *pr, const ag_kvs *builtins);
void ag_labeler_drop_samples(ag_labeler *lb, uint64_t n);
void ag_labeler_stats(const ag_labeler *lb, ag_label_stats *out);
/* ---- python.c: CPython frames ---- */

struct ag_py_layout;
typedef struct ag_py_layout ag_py_layout;

/* The row of agent/python_layouts.h for CPython major.minor; NULL for a
 * version without one. */
const ag_py_layout *ag_py_layout_find(unsigned major, unsigned minor);

/* The line being executed at lasti (counted as the layout's version
 * counts it: bytes in 3.8 and 3.9, code units after; < 0 before the first
 * instruction, which is firstlineno) in a code object's line table of n
 * bytes (co_lnotab, co_linetable). 0 when the table has no line there.
 * Any bytes are safe. */
int32_t ag_py_addr2line(const ag_py_layout *L, const uint8_t *table, size_t n,
                        int32_t firstlineno, int64_t lasti);

/* Reads n bytes of a process' memory at addr: 0, or a negative errno
 * when any of them cannot be read. */
typedef int (*ag_py_read_fn)(void *arg, uint64_t addr, void *buf, size_t n);

/* The interpreter's type objects in the process, to tell its objects. */
typedef struct ag_py_types {
	uint64_t code, str, bytes;  /* &PyCode_Type, &PyUnicode_Type, &PyBytes_Type */
} ag_py_types;

/* A code object as read: malloc'd UTF-8 strings (NUL bytes as '?',
 * invalid characters as U+FFFD, the name cut to 1024 bytes and the file
 * to 4096, storage's limits), the line table's bytes. */
typedef struct ag_py_code {
	char *name;             /* co_qualname (3.11+), co_name before */
	char *file;             /* co_filename */
	int32_t firstlineno;
	uint8_t *lines;         /* the line table */
	size_t nlines;
	uint32_t ncode;         /* code units (3.11+; 0 before) */
	uint32_t fingerprint;   /* sm_py_fingerprint of what was read */
} ag_py_code;

/* Reads the code object at addr through rd. Returns 0; -EFAULT when
 * memory cannot be read; -EBADMSG when it is not a code object with str
 * names and a bytes line table of bounded size, or changed while it was
 * read; -ENOMEM. Free *out with ag_py_code_free(). */
int ag_py_read_code(const ag_py_layout *L, const ag_py_types *types, ag_py_read_fn rd,
                    void *arg, uint64_t addr, ag_py_code *out);
void ag_py_code_free(ag_py_code *c);

/* Machine code read from files (x86_64). The address of the thread-state
 * key PyGILState_GetThisThreadState() (at fn_addr, its first n bytes in
 * code) hands pthread_getspecific; and where glibc's pthread_getspecific
 * finds a key's value (sm_py_proc.tls_first, tls_second). -ENOENT when
 * the code is not as expected. */
int ag_py_decode_tss(const uint8_t *code, size_t n, uint64_t fn_addr, uint64_t *key_addr);
int ag_py_decode_getspecific(const uint8_t *code, size_t n, uint16_t *first,
                             uint16_t *second);

typedef struct ag_py ag_py;

typedef struct ag_py_opts {
	int procs_fd;           /* the BPF py_procs map; -1: none (tests) */
	const char *proc_root;  /* "/proc" */
	bool verbose;
} ag_py_opts;

typedef struct ag_py_stats {
	uint64_t processes;       /* CPython processes walked (gauge) */
	uint64_t unknown_version; /* processes of a CPython without a layout here */
	uint64_t not_cpython;     /* processes mapping a python-named file that is
	                           * no CPython interpreter */
	uint64_t setup_failed;    /* CPython processes whose thread data cannot be
	                           * read (gauge) */
	uint64_t codes_read;      /* code objects named */
	uint64_t unnamed;         /* Python frames left unnamed: memory unreadable, not
	                           * a code object, or changed while read */
	uint64_t stale;           /* Python frames whose code object is no longer the
	                           * one that ran */
} ag_py_stats;

/* A Python frame's name; the strings stay valid until the next call. */
typedef struct ag_py_name {
	const char *name, *file;
	uint32_t line;          /* 0: unknown */
} ag_py_name;

int ag_py_new(const ag_py_opts *o, ag_py **out);
void ag_py_free(ag_py *py);
/* After pr's mappings were (re)read: recognises CPython (the python3.X
 * executable or libpython3.X.so exporting the interpreter's symbols) and
 * writes its BPF entry; an unknown version is logged once per file. */
void ag_py_proc(ag_py *py, const ag_proc *pr);
/* Retries interpreters that were still starting (no thread key yet). */
void ag_py_tick(ag_py *py);
/* A code object of pid ran for the first time (the BPF walk's
 * announcement): its names are read now, while the process lives. */
void ag_py_code_seen(ag_py *py, pid_t pid, uint64_t code, uint32_t fingerprint);
/* The process exited (exec false) or exec'd: its entry and names go. */
void ag_py_proc_gone(ag_py *py, pid_t pid, bool exec);
/* Names the Python frame of process pid the BPF walk sent as words w0,
 * w1 (bpf/profile.h). 0, or -ENOENT (unreadable, not a code object) or
 * -ESTALE (another code object is at that address now): the caller shows
 * the frame unnamed. */
int ag_py_frame(ag_py *py, pid_t pid, uint64_t w0, uint64_t w1, ag_py_name *out);
void ag_py_get_stats(const ag_py *py, ag_py_stats *out);

/* ---- sampler.c ---- */

typedef struct ag_sampler ag_sampler;

struct perf_event_attr;

typedef struct ag_sampler_opts {
	unsigned frequency;     /* Hz per CPU */
	unsigned interval_s;    /* for sizing the maps */
	bool kernel_stacks;
	bool unwind;            /* walk user stacks with unwind tables */
	bool python;            /* replace CPython's evaluation frames (needs unwind) */
	uint32_t unwind_rows;   /* size of the rows array (16 bytes each) */
	pid_t filter_pid;       /* 0: every process */
	bool verbose;
	/* off-CPU time (bpf/offcpu.bpf.h): blocks of at least offcpu_min_ns,
	 * each sampled with probability offcpu_sample (values scaled back by
	 * 1 / offcpu_sample); room for offcpu_entries more counters and twice
	 * as many stacks per interval */
	bool offcpu;
	uint64_t offcpu_min_ns;
	double offcpu_sample;
	uint32_t offcpu_entries;
	/* process events, called from ag_sampler_poll() */
	void (*on_event)(void *arg, int kind, pid_t pid, const char *comm, int64_t mono_ns);
	/* a code object ran for the first time (bpf/profile.h's
	 * sm_py_event), also from ag_sampler_poll(); may be NULL */
	void (*on_py_code)(void *arg, pid_t pid, uint64_t code, uint32_t fingerprint);
	void *arg;
	/* opens CPU cpu's perf event (a descriptor, or -1 with errno); NULL:
	 * perf_event_open(2). Tests set it to take a CPU offline mid-start,
	 * which the kernel answers with ENODEV. */
	int (*perf_open)(struct perf_event_attr *attr, int cpu);
} ag_sampler_opts;

/* What a counter counts (SM_KIND_* of bpf/profile.h). */
enum { AG_KIND_CPU = 0, AG_KIND_OFFCPU = 1 };

/* One drained (process, kind, user stack, kernel stack) counter. Frames
 * point into the drain's own memory, valid until the next drain. */
typedef struct ag_count {
	pid_t pid;
	const uint64_t *ustack;
	uint32_t nustack;
	const uint64_t *kstack;
	uint32_t nkstack;
	uint64_t count;         /* samples, or off-CPU nanoseconds scaled by
	                         * 1 / offcpu_sample, at most WIRE_MAX_COUNT */
	int kind;               /* AG_KIND_* */
	bool utruncated;        /* the table walk stopped short of the root */
} ag_count;

enum {
	AG_STAT_SAMPLES, AG_STAT_COUNT_FULL, AG_STAT_STACK_FULL, AG_STAT_USTACK_ERR,
	AG_STAT_KSTACK_ERR, AG_STAT_EVENTS_LOST,
	AG_STAT_UNW_SAMPLES, AG_STAT_UNW_COMPLETE, AG_STAT_UNW_TRUNCATED, AG_STAT_UNW_NO_FDE,
	AG_STAT_UNW_UNSUPPORTED, AG_STAT_UNW_READ_ERR, AG_STAT_UNW_FP_STOP,
	AG_STAT_UNW_TAIL_FAIL,
	AG_STAT_PY_SAMPLES, AG_STAT_PY_FRAMES, AG_STAT_PY_NO_THREAD, AG_STAT_PY_BAD_THREAD,
	AG_STAT_PY_READ_ERR, AG_STAT_PY_BAD_CODE, AG_STAT_PY_TRUNCATED, AG_STAT_PY_LOST,
	AG_STAT_UNW_FP_JIT, AG_STAT_UNW_FP_NO_FDE, AG_STAT_UNW_FP_NO_TABLE, AG_STAT_UNW_FOUND,
	AG_STAT_OFF_BLOCKS, AG_STAT_OFF_SHORT, AG_STAT_OFF_UNSAMPLED, AG_STAT_OFF_COUNT_FULL,
	AG_STAT_OFF_NO_STORAGE,
	AG_STAT_N
};

/* Loads and attaches. On failure says why on stderr (missing BTF,
 * privileges, perf_event_paranoid, a kernel without what off-CPU time
 * needs, ...) and returns a negative errno. */
int ag_sampler_open(const ag_sampler_opts *opt, ag_sampler **out);
/* Detaches everything and frees. Accepts NULL. */
void ag_sampler_close(ag_sampler *s);
/* Waits up to timeout_ms for process events and handles them. */
int ag_sampler_poll(ag_sampler *s, int timeout_ms);
/* Scratch for ag_map_take: one batch of keys and values, kept from one
 * drain to the next (freeing large arrays costs the TLB flushes of
 * munmap). A zeroed ag_take_buf is valid. */
typedef struct ag_take_buf {
	void *keys, *vals;
	size_t cap;             /* entries */
} ag_take_buf;

/* Takes every entry out of the BPF hash map fd (key_size and val_size
 * bytes an entry) with BPF_MAP_LOOKUP_AND_DELETE_BATCH, about batch
 * entries a call, and hands each batch to fn. Returns 0, -EOPNOTSUPP when
 * the kernel refuses batch operations on this map (before Linux 5.6:
 * nothing was taken), fn's error, or a negative errno. */
int ag_map_take(int fd, size_t key_size, size_t val_size, ag_take_buf *b, size_t batch,
                int (*fn)(void *arg, const void *keys, const void *vals, size_t n), void *arg);
void ag_take_buf_free(ag_take_buf *b);

/* Switches map sets and returns the counters of the set that was filled.
 * *counts stays valid until the next call. */
int ag_sampler_drain(ag_sampler *s, const ag_count **counts, size_t *n);
/* Totals since load, summed over CPUs (AG_STAT_*). */
void ag_sampler_stats(ag_sampler *s, uint64_t out[AG_STAT_N]);
/* Off-CPU values clamped to WIRE_MAX_COUNT since load. */
uint64_t ag_sampler_offcpu_clamped(const ag_sampler *s);
/* CPUs being sampled (online ones whose perf event opened). */
int ag_sampler_ncpus(const ag_sampler *s);
/* The unwinder's maps: the rows array and its size in rows, the
 * per-process, per-file and found-mapping maps. Returns -ENOENT when
 * unwinding is off. */
int ag_sampler_unw_maps(ag_sampler *s, int *rows_fd, uint32_t *cap, int *procs_fd,
                        int *files_fd, int *found_fd);
/* The CPython walk's per-process map; -ENOENT when the walk is off. */
int ag_sampler_py_map(ag_sampler *s, int *fd);

/* ---- batch.c ---- */

/* One interval's data, owning every byte its wire_batch points to. */
typedef struct ag_batch ag_batch;

typedef struct ag_batch_ctx {
	const char *agent_id;
	const char *hostname;
	const char *profile_type;
	uint64_t period_ns;
	int kind;                        /* only counters of this AG_KIND_* */
	const wire_label *extra_labels;  /* --label key=value */
	uint32_t nextra;
	bool pid_label;
	bool verbose;                    /* say which samples lack mappings */
	ag_labeler *labeler;             /* processes' own labels and the rules */
	ag_procs *procs;
	ag_ksyms *ksyms;
	ag_py *py;                       /* names Python frames; NULL: none sent */
	ag_pmaps *pmaps;                 /* names of JIT code; NULL: none */
	uint64_t drain;                  /* drain number */
	/* totals the agent reports, updated by ag_batch_build (CPU samples
	 * only: an off-CPU value is a time) */
	uint64_t samples_no_mapping;     /* samples with a user frame outside every mapping */
	uint64_t samples_no_process;     /* samples of processes gone before we read /proc */
	uint64_t kernel_unknown;         /* kernel frames without a symbol */
	uint64_t jit_frames;             /* frames in anonymous executable memory,
	                                  * times their samples */
	uint64_t jit_frames_named;       /* of those, named by a perf map */
} ag_batch_ctx;

int ag_batch_build(ag_batch_ctx *ctx, const ag_count *counts, size_t n, uint64_t seq,
                   int64_t start_ns, int64_t end_ns, ag_batch **out);
void ag_batch_free(ag_batch *b);
/* The batch as the wire sees it (every stack included). */
const wire_batch *ag_batch_wire(const ag_batch *b);
/* Bytes held, for the backlog budget. */
size_t ag_batch_bytes(const ag_batch *b);
/* Objects referenced by the batch. */
ag_obj *const *ag_batch_objects(const ag_batch *b, size_t *n);
/* Replaces the counters reported with the batch (copied). */
int ag_batch_set_counters(ag_batch *b, const wire_counter *c, uint32_t n);

/* ---- push.c ---- */

typedef struct ag_push ag_push;

typedef struct ag_push_opts {
	const char *server;          /* "http://127.0.0.1:7070" */
	size_t buffer_bytes;         /* backlog budget */
	bool upload;                 /* debug-info uploads on */
	uint64_t upload_max_bytes;   /* files bigger are not uploaded */
	uint64_t upload_budget;      /* bytes uploaded per flush at most */
	uint64_t upload_max_day_bytes; /* bytes uploaded in any 24 h at most;
	                              * 0: no daily bound */
	const char *token;           /* sent as "Authorization: Bearer TOKEN" on
	                              * every request; NULL: none */
	const char *debug_dir;       /* separate debug files by build ID under
	                              * DIR/.build-id/xx/yyyy.debug; NULL:
	                              * "/usr/lib/debug" */
	bool verbose;
} ag_push_opts;

typedef struct ag_push_stats {
	uint64_t batches_sent, batches_dropped, batches_rejected, retries;
	uint64_t stacks_resent;      /* after the server said it lacked some */
	uint64_t uploads, upload_bytes;
	/* files not uploaded, by why: over --upload-max-mb (or over the whole
	 * daily bound), refused by the server (4xx), fetched by the server
	 * from debuginfod instead, already on the server; objects that waited
	 * for the daily bound */
	uint64_t upload_too_big, upload_refused, upload_debuginfod, upload_on_server;
	uint64_t upload_deferred_daily;
	size_t queued, queued_bytes;
} ag_push_stats;

int ag_push_new(const ag_push_opts *opt, ag_push **out);
/* Stops the sender (ag_push_stop with no time left) and frees. */
void ag_push_free(ag_push *p);
/* Starts the sender thread, which from then on delivers queued batches
 * (oldest first, backing off while the server fails) and uploads what
 * ag_push_offer hands it. -errno when the thread cannot start. */
int ag_push_start(ag_push *p);
/* Queues a batch (taken over) and wakes the sender; drops the oldest when
 * over budget. Never waits for the network. */
void ag_push_enqueue(ag_push *p, ag_batch *b);
/* The loop's side of debug-info uploads, after each drain: takes back what
 * the sender settled (marking objs' objects uploaded or upload_failed) and
 * hands it the objects still to upload, copied (their own descriptors), for
 * one flush's budget. Never waits for the network. */
void ag_push_offer(ag_push *p, ag_objs *objs);
/* Delivers what is queued, ignoring the backoff, until the queue is empty
 * or timeout_ns has passed (a transfer still running then is abandoned),
 * and stops the sender. Returns the batches left undelivered. */
size_t ag_push_stop(ag_push *p, int64_t timeout_ns);
/* Uploads debug info for objects the server lacks, within the budget: the
 * object itself, and the host's separate debug file for its build ID when
 * the server has no DWARF for it (docs/protocol.md section 4). On the
 * caller's thread, without the sender (tests). */
void ag_push_upload(ag_push *p, ag_objs *objs);
/* Counters; any thread. */
void ag_push_get_stats(const ag_push *p, ag_push_stats *out);

#endif
