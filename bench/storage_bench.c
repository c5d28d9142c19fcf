/* storage_bench.c - the storage benchmark that bench/storage runs.
 *
 * It builds a synthetic fleet (hosts running processes of a few services,
 * each sampled at 19 Hz per CPU and pushed every 10 s), ingests it through
 * storage.h only, and prints four numbers on stdout:
 *
 *   ingest_rows_per_s       durable st_append() throughput, one thread
 *   bytes_per_row           every file of the data dir, after the cut
 *   pprof_gz_bytes_per_row  the same rows as one gzip'd pprof per host per
 *                           10 s, what a pprof-based store would keep
 *   merge_rows_per_s        st_select() + st_merge() over everything
 *
 * Everything that is not storage (drawing samples, building batches and the
 * pprof comparison) happens outside the timed regions. docs/bench-storage.md
 * describes the model; the comments here explain the choices behind it. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "profile.pb-c.h"
#include "storage/storage.h"

#define NSEC          1000000000LL
#define SAMPLE_HZ     19
#define INTERVAL_NS   (10 * NSEC)
/* 2026-01-01T00:00:00Z: aligned to every partition size a store may use. */
#define FLEET_EPOCH_NS (1767225600LL * NSEC)
/* The server calls st_cut() on a timer; every 10 simulated minutes keeps the
 * head bounded the way it would be in production. */
#define CUT_EVERY_NS  (600 * NSEC)
#define PROFILE_TYPE  "process_cpu:samples:count:cpu:nanoseconds:delta"
#define PERIOD_NS     (NSEC / SAMPLE_HZ)

#define ZIPF_S        1.1
#define BUILD_ID_LEN  20
#define NLIBS         180    /* with >= 20 executables, ~200 objects */
#define MIN_SERVICES  20
#define NLEAF         4      /* distinct sampled IPs per leaf function */
#define MIN_DEPTH     10
#define MAX_DEPTH     60
#define KERNEL_SHARE  0.2    /* stacks that end in the kernel */
#define NLABELS       5      /* hostname, comm, exe, service, version */
#define MERGE_RUNS    3
#define KERNEL_OBJ    UINT32_MAX
/* Pushes in flight at once, as a server's thread pool would hand them to
 * storage; all on one CPU, so "one core" stays true and group commit can
 * share an fsync among them. */
#define APPENDERS     16

/* ---- deterministic randomness ------------------------------------------ */

/* xoshiro256** seeded by splitmix64: fast, and the same fleet for the same
 * --seed on every machine, so numbers from two runs are comparable. */
typedef struct rng {
	uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A stateless hash of two words, for things that must not depend on the
 * order they are asked in (the call graph, ASLR bases). */
static uint64_t hash2(uint64_t a, uint64_t b)
{
	uint64_t x = a ^ (b * 0xd6e8feb86659fd93ULL);

	return splitmix64(&x);
}

static void rng_seed(rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

static inline double rng_unit(rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n); the multiply-shift bias is far below what matters. */
static inline uint32_t rng_below(rng *r, uint32_t n)
{
	return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

static double unit_of(uint64_t h)
{
	return (double)(h >> 11) * 0x1.0p-53;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* Grows *p to hold at least need elements of size elem. */
static int grow(void *pp, size_t *cap, size_t need, size_t elem)
{
	void **p = pp;
	size_t n = *cap ? *cap : 64;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

#define GROW(arr, cap, need) grow(&(arr), &(cap), (need), sizeof(*(arr)))

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

/* ---- configuration ----------------------------------------------------- */

struct config {
	const char *mode;
	uint32_t hosts;
	uint32_t procs;          /* per host, each of a different service */
	uint32_t nstacks;        /* distinct stacks in the fleet's pool */
	int64_t duration_ns;
	uint32_t pprof_target;   /* about how many pprofs to build and gzip */
	bool maintain;           /* compact and roll up every simulated hour */
	uint64_t seed;
	const char *dir;
};

/* ---- the synthetic program model --------------------------------------- */

struct object {
	uint8_t build_id[BUILD_ID_LEN];
	char build_id_hex[2 * BUILD_ID_LEN + 1];
	char name[64];
	uint32_t func0, nfuncs;
	uint64_t text_size;
};

/* A function owns ncallees call-site locations (the return addresses of
 * its calls, one per callee) followed by NLEAF sampled-IP locations. */
struct func {
	uint32_t obj;
	uint32_t ncallees;
	uint32_t loc0;
};

/* A distinct frame: (object, file offset) or a kernel symbol. */
struct loc {
	uint32_t obj;            /* KERNEL_OBJ for kernel frames */
	uint32_t kfn;            /* kernel: index into knames */
	uint64_t offset;
};

struct service {
	char name[32];
	char comm[16];           /* TASK_COMM_LEN */
	char exe[64];
	uint32_t offset;         /* the stack of its Zipf rank 0 */
	int64_t deploy_every_ns; /* a new version label every so often */
	int64_t deploy_phase_ns;
};

struct proc {
	uint32_t svc;
	double cpu;              /* mean share of one CPU */
};

struct host {
	char name[32];
	double phase;            /* of the diurnal load curve, in days */
	uint64_t aslr;
};

struct zipf {
	uint32_t n;
	double *prob;
	uint32_t *alias;
};

struct model {
	uint32_t nexes, nobjects;
	struct object *objs;
	st_object *st_objs;
	struct func *funcs;
	uint32_t nfuncs;
	struct loc *locs;
	uint32_t nlocs;
	uint64_t graph_seed;

	const char **knames;
	char *kname_buf;
	uint32_t nknames, nkgeneric, kgeneric0, nsyscalls, ksyscall0;
	uint32_t kloc0;          /* kernel name k is location kloc0 + k */

	uint32_t nstacks;
	uint64_t *stack_id;
	uint32_t *stack_off;     /* into frames */
	uint8_t *stack_len;
	uint32_t *frames;        /* location indices, leaf first */
	uint64_t nframes_total;

	struct service *svcs;
	uint32_t nsvcs;
	struct host *hosts;
	struct proc *procs;      /* hosts x procs */
	struct zipf zipf;
};

static const char *const real_libs[] = {
	"libc.so.6", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1",
	"ld-linux-x86-64.so.2", "libssl.so.3", "libcrypto.so.3", "libz.so.1",
	"libprotobuf.so.32", "libgrpc.so.29", "libjemalloc.so.2",
	"libzstd.so.1", "liblz4.so.1", "libsqlite3.so.0", "libcurl.so.4",
	"libpcre2-8.so.0", "libabsl_base.so.2206", "libyaml-0.so.2",
};

static const char *const svc_names[] = {
	"checkout", "search", "ingest", "auth", "billing", "catalog",
	"payments", "gateway", "render", "feed", "notify", "indexer", "media",
	"ledger", "profile", "session", "shipping", "pricing", "reco", "audit",
};

static const char *const kernel_head[] = {
	"entry_SYSCALL_64_after_hwframe", "do_syscall_64",
	"asm_exc_page_fault", "exc_page_fault", "do_user_addr_fault",
	"handle_mm_fault",
};

static const char *const syscalls[] = {
	"read", "write", "futex", "epoll_wait", "sendto", "recvfrom", "openat",
	"close", "mmap", "munmap", "nanosleep", "clock_nanosleep", "poll",
	"writev", "readv", "accept4", "connect", "newfstatat", "ioctl",
	"getdents64", "madvise", "brk", "sched_yield", "sendmsg", "recvmsg",
	"pread64", "pwrite64", "io_uring_enter", "fsync", "epoll_ctl",
};

static const char *const kpre[] = {
	"tcp", "udp", "ext4", "vfs", "sock", "page", "mem", "sched", "futex",
	"ep", "irq", "blk", "nvme", "skb", "ip", "inet", "mm", "xfs",
};

static const char *const ksuf[] = {
	"_sendmsg", "_recvmsg", "_read_iter", "_write_iter", "_poll", "_wait",
	"_alloc", "_free", "_lookup", "_fault", "_queue_rq", "_submit",
	"_wake_up", "_lock", "_unlock",
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int build_kernel_names(struct model *m)
{
	size_t cap = 0, len = 0;
	uint32_t n = 0;
	char tmp[64];

	m->nsyscalls = ARRAY_LEN(syscalls);
	m->nkgeneric = ARRAY_LEN(kpre) * ARRAY_LEN(ksuf);
	m->ksyscall0 = ARRAY_LEN(kernel_head);
	m->kgeneric0 = m->ksyscall0 + m->nsyscalls;
	m->nknames = m->kgeneric0 + m->nkgeneric;
	m->knames = calloc(m->nknames, sizeof(*m->knames));
	if (!m->knames)
		return -ENOMEM;
	/* Names go into one buffer; offsets become pointers once it is final. */
	size_t *off = calloc(m->nknames, sizeof(*off));
	if (!off)
		return -ENOMEM;
	for (uint32_t k = 0; k < m->nknames; k++) {
		if (k < m->ksyscall0)
			snprintf(tmp, sizeof(tmp), "%s", kernel_head[k]);
		else if (k < m->kgeneric0)
			snprintf(tmp, sizeof(tmp), "__x64_sys_%s",
			         syscalls[k - m->ksyscall0]);
		else {
			uint32_t g = k - m->kgeneric0;

			snprintf(tmp, sizeof(tmp), "%s%s",
			         kpre[g / ARRAY_LEN(ksuf)],
			         ksuf[g % ARRAY_LEN(ksuf)]);
		}
		size_t l = strlen(tmp) + 1;
		if (GROW(m->kname_buf, cap, len + l)) {
			free(off);
			return -ENOMEM;
		}
		memcpy(m->kname_buf + len, tmp, l);
		off[k] = len;
		len += l;
		n++;
	}
	for (uint32_t k = 0; k < n; k++)
		m->knames[k] = m->kname_buf + off[k];
	free(off);
	return 0;
}

static int build_objects(struct model *m, rng *r)
{
	uint32_t nfuncs = 0;

	m->nexes = m->nsvcs;
	m->nobjects = m->nexes + NLIBS;
	m->objs = calloc(m->nobjects, sizeof(*m->objs));
	m->st_objs = calloc(m->nobjects, sizeof(*m->st_objs));
	if (!m->objs || !m->st_objs)
		return -ENOMEM;
	for (uint32_t o = 0; o < m->nobjects; o++) {
		struct object *ob = &m->objs[o];

		for (int i = 0; i < BUILD_ID_LEN; i++) {
			ob->build_id[i] = (uint8_t)rng_next(r);
			sprintf(ob->build_id_hex + 2 * i, "%02x",
			        ob->build_id[i]);
		}
		if (o < m->nexes) {
			snprintf(ob->name, sizeof(ob->name), "%s",
			         m->svcs[o].name);
			ob->nfuncs = 1500 + rng_below(r, 1000);
		} else {
			uint32_t l = o - m->nexes;

			if (l < ARRAY_LEN(real_libs))
				snprintf(ob->name, sizeof(ob->name), "%s",
				         real_libs[l]);
			else
				snprintf(ob->name, sizeof(ob->name),
				         "lib%s%u.so", kpre[l % ARRAY_LEN(kpre)],
				         100 + l);
			/* libc and libstdc++ are big; most libraries small. */
			ob->nfuncs = l < 2 ? 2500 : 20 + rng_below(r, 600);
		}
		ob->func0 = nfuncs;
		nfuncs += ob->nfuncs;
		m->st_objs[o] = (st_object){
			.build_id = ob->build_id,
			.build_id_len = BUILD_ID_LEN,
			.name = ob->name,
		};
	}
	m->nfuncs = nfuncs;
	return 0;
}

/* Lays out every function's text and its locations. */
static int build_functions(struct model *m, rng *r)
{
	uint32_t nlocs = 0;

	m->funcs = calloc(m->nfuncs, sizeof(*m->funcs));
	if (!m->funcs)
		return -ENOMEM;
	for (uint32_t f = 0; f < m->nfuncs; f++) {
		m->funcs[f].ncallees = 1 + rng_below(r, 6);
		m->funcs[f].loc0 = nlocs;
		nlocs += m->funcs[f].ncallees + NLEAF;
	}
	m->kloc0 = nlocs;
	m->nlocs = nlocs + m->nknames;
	m->locs = calloc(m->nlocs, sizeof(*m->locs));
	if (!m->locs)
		return -ENOMEM;
	for (uint32_t o = 0; o < m->nobjects; o++) {
		struct object *ob = &m->objs[o];
		uint64_t pc = 0x1000;

		for (uint32_t i = 0; i < ob->nfuncs; i++) {
			struct func *fn = &m->funcs[ob->func0 + i];
			/* Sizes skewed small, as real code is. */
			double u = rng_unit(r);
			uint32_t size = 32 + (uint32_t)(4000 * u * u * u);
			uint32_t n = fn->ncallees + NLEAF;

			fn->obj = o;
			for (uint32_t k = 0; k < n; k++) {
				struct loc *l = &m->locs[fn->loc0 + k];

				l->obj = o;
				l->offset = pc + 1 + rng_below(r, size - 1);
			}
			pc += size + (rng_below(r, 4) << 4);
		}
		ob->text_size = pc;
	}
	for (uint32_t k = 0; k < m->nknames; k++)
		m->locs[m->kloc0 + k] = (struct loc){
			.obj = KERNEL_OBJ, .kfn = k,
		};
	return 0;
}

/* The c-th callee of function f: a fixed call graph, so stacks share
 * paths (and locations) the way real programs do. Executables call into
 * themselves or any library, favouring libc; a library calls itself or a
 * more basic one; libc only itself. */
static uint32_t callee(const struct model *m, uint32_t f, uint32_t c)
{
	uint64_t h1 = hash2(m->graph_seed, ((uint64_t)f << 8) | c);
	uint64_t h2 = hash2(h1, 1), h3 = hash2(h1, 2);
	uint32_t o = m->funcs[f].obj, to = o;
	double u = unit_of(h2);

	if (o < m->nexes) {
		if (unit_of(h1) >= 0.6)
			to = m->nexes + (uint32_t)(NLIBS * u * u * u);
	} else {
		uint32_t l = o - m->nexes;

		if (l > 0 && unit_of(h1) >= 0.7)
			to = m->nexes + (uint32_t)(l * u * u);
	}
	return m->objs[to].func0 + (uint32_t)(h3 % m->objs[to].nfuncs);
}

static uint32_t libc_func(const struct model *m, uint32_t i)
{
	return m->objs[m->nexes].func0 + i;
}

/* One stack, root first into path; returns its depth. */
static uint32_t gen_path(const struct model *m, rng *r, uint32_t exe,
                         uint32_t *path)
{
	uint32_t depth = MIN_DEPTH + rng_below(r, MAX_DEPTH - MIN_DEPTH + 1);
	uint32_t nk = 0, n = 0, cur;
	const struct object *ob = &m->objs[exe];

	if (rng_unit(r) < KERNEL_SHARE) {
		nk = 3 + rng_below(r, 7);
		if (nk > depth - 5)
			nk = depth - 5;
	}
	if (rng_below(r, 2)) {
		/* _start -> __libc_start_main -> main */
		path[n++] = m->funcs[ob->func0].loc0;
		path[n++] = m->funcs[libc_func(m, 0)].loc0;
		cur = ob->func0 + 1;
	} else {
		/* clone3 -> start_thread -> a worker loop */
		path[n++] = m->funcs[libc_func(m, 1)].loc0;
		path[n++] = m->funcs[libc_func(m, 2)].loc0;
		cur = ob->func0 + 2 + rng_below(r, 16);
	}
	while (n < depth - nk - 1) {
		uint32_t c = rng_below(r, m->funcs[cur].ncallees);

		path[n++] = m->funcs[cur].loc0 + c;
		cur = callee(m, cur, c);
	}
	path[n++] = m->funcs[cur].loc0 + m->funcs[cur].ncallees +
	            rng_below(r, NLEAF);
	if (nk) {
		uint32_t k;

		if (rng_unit(r) < 0.75) {
			path[n++] = m->kloc0 + 0;
			path[n++] = m->kloc0 + 1;
			k = m->ksyscall0 + rng_below(r, m->nsyscalls);
		} else {
			path[n++] = m->kloc0 + 2;
			path[n++] = m->kloc0 + 3;
			k = 4;
		}
		path[n++] = m->kloc0 + k;
		for (uint32_t i = 3; i < nk; i++) {
			/* Kernel code calls along a fixed graph too. */
			uint64_t h = hash2(m->graph_seed ^ 0x6b,
			                   ((uint64_t)k << 8) | rng_below(r, 3));

			k = m->kgeneric0 + (uint32_t)(h % m->nkgeneric);
			path[n++] = m->kloc0 + k;
		}
	}
	return n;
}

static void to_st_frames(const struct model *m, const uint32_t *path,
                         uint32_t n, st_frame *out, const uint32_t *objmap)
{
	for (uint32_t i = 0; i < n; i++) {
		const struct loc *l = &m->locs[path[i]];

		if (l->obj == KERNEL_OBJ)
			out[i] = (st_frame){
				.kind = ST_FRAME_KERNEL,
				.name = m->knames[l->kfn],
			};
		else
			out[i] = (st_frame){
				.kind = ST_FRAME_USER,
				.object = objmap ? objmap[l->obj] : l->obj,
				.offset = l->offset,
			};
	}
}

/* The stack pool: nstacks distinct stacks, their IDs from st_stack_hash().
 * Stack i belongs to the executable of service i * nsvcs / nstacks, the
 * service whose Zipf head it is (see gen_batch()). */
static int build_stacks(struct model *m, rng *r)
{
	uint32_t n = m->nstacks, path[MAX_DEPTH], rev[MAX_DEPTH];
	size_t setcap = 1;
	uint64_t *set = NULL, dups = 0;
	st_frame fr[MAX_DEPTH];
	int rc = -ENOMEM;

	while (setcap < 2 * (size_t)n)
		setcap *= 2;
	set = calloc(setcap, sizeof(*set));
	m->stack_id = calloc(n, sizeof(*m->stack_id));
	m->stack_off = calloc(n, sizeof(*m->stack_off));
	m->stack_len = calloc(n, sizeof(*m->stack_len));
	m->frames = calloc((size_t)n * MAX_DEPTH, sizeof(*m->frames));
	if (!set || !m->stack_id || !m->stack_off || !m->stack_len ||
	    !m->frames)
		goto out;
	for (uint32_t i = 0; i < n;) {
		uint32_t exe = (uint32_t)((uint64_t)i * m->nsvcs / n);
		uint32_t d = gen_path(m, r, exe, path);
		uint64_t id;
		size_t slot;

		for (uint32_t j = 0; j < d; j++)
			rev[j] = path[d - 1 - j];
		to_st_frames(m, rev, d, fr, NULL);
		id = st_stack_hash(m->st_objs, m->nobjects, fr, d);
		for (slot = id & (setcap - 1); set[slot] && set[slot] != id;
		     slot = (slot + 1) & (setcap - 1))
			;
		if (id == 0 || set[slot]) {
			/* The graph may run out of distinct paths for a tiny
			 * pool; never loop forever. */
			if (++dups > 100 * (uint64_t)n + 1000) {
				fprintf(stderr, "bench: cannot draw %u distinct "
				        "stacks\n", n);
				rc = -EDOM;
				goto out;
			}
			continue;
		}
		set[slot] = id;
		m->stack_id[i] = id;
		m->stack_off[i] = (uint32_t)m->nframes_total;
		m->stack_len[i] = (uint8_t)d;
		memcpy(m->frames + m->nframes_total, rev, d * sizeof(*rev));
		m->nframes_total += d;
		i++;
	}
	/* Shrinking cannot fail in practice; keep the big block if it does. */
	uint32_t *fr2 = realloc(m->frames, m->nframes_total * sizeof(*fr2));
	if (fr2)
		m->frames = fr2;
	rc = 0;
out:
	free(set);
	return rc;
}

/* Walker's alias method: O(1) per draw, which matters at ~10^9 draws. */
static int zipf_init(struct zipf *z, uint32_t n, double s)
{
	double *p = malloc(n * sizeof(*p)), sum = 0;
	uint32_t *small = malloc(n * sizeof(*small));
	uint32_t *large = malloc(n * sizeof(*large));
	uint32_t ns = 0, nl = 0;
	int rc = -ENOMEM;

	z->n = n;
	z->prob = malloc(n * sizeof(*z->prob));
	z->alias = malloc(n * sizeof(*z->alias));
	if (!p || !small || !large || !z->prob || !z->alias)
		goto out;
	for (uint32_t i = 0; i < n; i++)
		sum += p[i] = pow(i + 1.0, -s);
	for (uint32_t i = 0; i < n; i++) {
		p[i] = p[i] * n / sum;
		if (p[i] < 1)
			small[ns++] = i;
		else
			large[nl++] = i;
	}
	while (ns && nl) {
		uint32_t a = small[--ns], b = large[--nl];

		z->prob[a] = p[a];
		z->alias[a] = b;
		p[b] -= 1 - p[a];
		if (p[b] < 1)
			small[ns++] = b;
		else
			large[nl++] = b;
	}
	while (nl) {
		uint32_t b = large[--nl];

		z->prob[b] = 1;
		z->alias[b] = b;
	}
	while (ns) {
		uint32_t a = small[--ns];

		z->prob[a] = 1;
		z->alias[a] = a;
	}
	rc = 0;
out:
	free(p);
	free(small);
	free(large);
	return rc;
}

static inline uint32_t zipf_draw(const struct zipf *z, rng *r)
{
	uint64_t x = rng_next(r);
	uint32_t i = (uint32_t)(((x >> 32) * z->n) >> 32);

	return (double)(uint32_t)x * 0x1.0p-32 < z->prob[i] ? i : z->alias[i];
}

static int build_fleet(struct model *m, const struct config *cfg, rng *r)
{
	m->nsvcs = cfg->procs > MIN_SERVICES ? cfg->procs : MIN_SERVICES;
	m->svcs = calloc(m->nsvcs, sizeof(*m->svcs));
	m->hosts = calloc(cfg->hosts, sizeof(*m->hosts));
	m->procs = calloc((size_t)cfg->hosts * cfg->procs, sizeof(*m->procs));
	if (!m->svcs || !m->hosts || !m->procs)
		return -ENOMEM;
	for (uint32_t s = 0; s < m->nsvcs; s++) {
		struct service *sv = &m->svcs[s];

		if (s < ARRAY_LEN(svc_names))
			snprintf(sv->name, sizeof(sv->name), "%s-server",
			         svc_names[s]);
		else
			snprintf(sv->name, sizeof(sv->name), "svc%03u-server",
			         s);
		/* The kernel keeps 15 bytes of a task's name. */
		snprintf(sv->comm, sizeof(sv->comm), "%.15s", sv->name);
		snprintf(sv->exe, sizeof(sv->exe), "/usr/local/bin/%s",
		         sv->name);
		/* Services differ in their hot stacks (their own
		 * executable's share of the pool) but their Zipf tails run
		 * into their neighbours', so they overlap too. */
		sv->offset = (uint32_t)((uint64_t)s * m->nstacks / m->nsvcs);
		sv->deploy_every_ns = (6 + s % 7) * 3600 * NSEC;
		sv->deploy_phase_ns = (int64_t)(rng_unit(r) *
		                                (double)sv->deploy_every_ns);
	}
	for (uint32_t h = 0; h < cfg->hosts; h++) {
		struct host *ho = &m->hosts[h];

		snprintf(ho->name, sizeof(ho->name), "node-%04u.prod", h);
		ho->phase = rng_unit(r) * 0.2;
		ho->aslr = rng_next(r);
		for (uint32_t j = 0; j < cfg->procs; j++) {
			struct proc *p = &m->procs[(size_t)h * cfg->procs + j];
			double u = rng_unit(r);

			/* Distinct services on a host keep series distinct. */
			p->svc = (h * 7 + j) % m->nsvcs;
			p->cpu = 0.05 + 0.95 * u * u;
		}
	}
	return 0;
}

static void model_free(struct model *m)
{
	free(m->objs);
	free(m->st_objs);
	free(m->funcs);
	free(m->locs);
	free(m->knames);
	free(m->kname_buf);
	free(m->stack_id);
	free(m->stack_off);
	free(m->stack_len);
	free(m->frames);
	free(m->svcs);
	free(m->hosts);
	free(m->procs);
	free(m->zipf.prob);
	free(m->zipf.alias);
}

/* ---- batches: what one agent push holds -------------------------------- */

struct batch {
	st_batch b;
	uint32_t nprocs;
	st_series_def *series;
	uint32_t *series_svc;
	st_label *labels;
	char (*version)[32];

	st_sample *samples;
	uint32_t *sample_stack;  /* pool index of each sample's stack */
	size_t samples_cap, sample_stack_cap;
	st_stack_def *stacks;
	size_t stacks_cap;
	st_frame *frames;
	size_t frames_cap;
	st_object *objects;
	uint32_t *obj_gen, *obj_idx, gen;

	uint32_t *count, *touched; /* per-interval aggregation, as in BPF */
	uint32_t *sent;          /* interval (+1) in which a stack first went */
	uint32_t *in_batch;      /* gen of the batch that already carries it */
	uint32_t epoch;          /* current interval + 1 */
	int64_t *expected;       /* per stack, what st_merge must return */
	uint64_t rows, samples_total, stacks_sent;
};

static int batch_init(struct batch *bt, const struct model *m, uint32_t procs)
{
	bt->nprocs = procs;
	bt->series = calloc(procs, sizeof(*bt->series));
	bt->series_svc = calloc(procs, sizeof(*bt->series_svc));
	bt->labels = calloc((size_t)procs * NLABELS, sizeof(*bt->labels));
	bt->version = calloc(procs, sizeof(*bt->version));
	bt->objects = calloc(m->nobjects, sizeof(*bt->objects));
	bt->obj_gen = calloc(m->nobjects, sizeof(*bt->obj_gen));
	bt->obj_idx = calloc(m->nobjects, sizeof(*bt->obj_idx));
	bt->count = calloc(m->nstacks, sizeof(*bt->count));
	bt->touched = calloc(SAMPLE_HZ * 10 + 1, sizeof(*bt->touched));
	bt->sent = calloc(m->nstacks, sizeof(*bt->sent));
	bt->in_batch = calloc(m->nstacks, sizeof(*bt->in_batch));
	bt->expected = calloc(m->nstacks, sizeof(*bt->expected));
	if (!bt->series || !bt->series_svc || !bt->labels || !bt->version ||
	    !bt->objects || !bt->obj_gen || !bt->obj_idx || !bt->count ||
	    !bt->touched || !bt->sent || !bt->in_batch || !bt->expected)
		return -ENOMEM;
	return 0;
}

static void batch_free(struct batch *bt)
{
	free(bt->series);
	free(bt->series_svc);
	free(bt->labels);
	free(bt->version);
	free(bt->samples);
	free(bt->sample_stack);
	free(bt->stacks);
	free(bt->frames);
	free(bt->objects);
	free(bt->obj_gen);
	free(bt->obj_idx);
	free(bt->count);
	free(bt->touched);
	free(bt->sent);
	free(bt->in_batch);
	free(bt->expected);
}

/* Load over the day: hosts are busier in their afternoon. */
static double diurnal(const struct host *ho, int64_t t_ns)
{
	double day = (double)(t_ns - FLEET_EPOCH_NS) / (86400.0 * NSEC);

	return 0.75 + 0.25 * sin(2 * M_PI * (day + ho->phase));
}

/* The push of host h for the interval ending at ts: every process' samples,
 * identical stacks aggregated into one row, and the frames of stacks the
 * store has not been given yet. */
static int gen_batch(struct batch *bt, const struct model *m, rng *r,
                     uint32_t h, int64_t ts)
{
	const struct host *ho = &m->hosts[h];
	uint32_t nseries = 0, nobj = 0, nst = 0;
	size_t ns = 0, nfr = 0;
	int rc;

	bt->gen++;
	if ((rc = GROW(bt->samples, bt->samples_cap,
	               (size_t)bt->nprocs * (SAMPLE_HZ * 10 + 1))) ||
	    (rc = GROW(bt->sample_stack, bt->sample_stack_cap,
	               (size_t)bt->nprocs * (SAMPLE_HZ * 10 + 1))))
		return rc;

	for (uint32_t j = 0; j < bt->nprocs; j++) {
		const struct proc *p = &m->procs[(size_t)h * bt->nprocs + j];
		const struct service *sv = &m->svcs[p->svc];
		double frac = p->cpu * diurnal(ho, ts) *
		              (0.85 + 0.3 * rng_unit(r));
		uint32_t n, nt = 0;

		if (frac > 1)
			frac = 1;
		n = (uint32_t)(SAMPLE_HZ * 10 * frac + rng_unit(r));
		if (!n)
			continue;
		for (uint32_t k = 0; k < n; k++) {
			uint32_t idx = sv->offset + zipf_draw(&m->zipf, r);

			if (idx >= m->nstacks)
				idx -= m->nstacks;
			if (bt->count[idx]++ == 0)
				bt->touched[nt++] = idx;
		}

		st_label *lb = &bt->labels[(size_t)nseries * NLABELS];
		int64_t deploy = (ts + sv->deploy_phase_ns) /
		                 sv->deploy_every_ns;

		snprintf(bt->version[nseries], sizeof(bt->version[nseries]),
		         "%u.%u.%" PRId64, 1 + p->svc % 3, p->svc,
		         deploy % 1000);
		lb[0] = (st_label){"hostname", ho->name};
		lb[1] = (st_label){"comm", sv->comm};
		lb[2] = (st_label){"exe", sv->exe};
		lb[3] = (st_label){"service", sv->name};
		lb[4] = (st_label){"version", bt->version[nseries]};
		bt->series[nseries] = (st_series_def){
			.type = PROFILE_TYPE, .labels = lb, .nlabels = NLABELS,
		};
		bt->series_svc[nseries] = p->svc;
		for (uint32_t k = 0; k < nt; k++) {
			uint32_t idx = bt->touched[k];

			bt->samples[ns] = (st_sample){
				.ts_ns = ts, .series = nseries,
				.stack_id = m->stack_id[idx],
				.value = bt->count[idx],
			};
			bt->sample_stack[ns++] = idx;
			bt->expected[idx] += bt->count[idx];
			bt->samples_total += bt->count[idx];
			bt->count[idx] = 0;
		}
		nseries++;
	}

	/* Frames go along only for stacks new to the store, as the server
	 * would after asking which it has; objects only as they are used. The
	 * pushes of one interval are stored concurrently, so a stack new in
	 * this interval goes with every push of the interval that uses it. */
	for (size_t i = 0; i < ns; i++) {
		uint32_t idx = bt->sample_stack[i];

		if ((bt->sent[idx] && bt->sent[idx] != bt->epoch) ||
		    bt->in_batch[idx] == bt->gen)
			continue;
		bt->sent[idx] = bt->epoch;
		bt->in_batch[idx] = bt->gen;
		rc = GROW(bt->stacks, bt->stacks_cap, (size_t)nst + 1);
		if (!rc)
			rc = GROW(bt->frames, bt->frames_cap,
			          nfr + m->stack_len[idx]);
		if (rc)
			return rc;
		const uint32_t *path = m->frames + m->stack_off[idx];
		for (uint32_t k = 0; k < m->stack_len[idx]; k++) {
			uint32_t o = m->locs[path[k]].obj;

			if (o == KERNEL_OBJ || bt->obj_gen[o] == bt->gen)
				continue;
			bt->obj_gen[o] = bt->gen;
			bt->obj_idx[o] = nobj;
			bt->objects[nobj++] = m->st_objs[o];
		}
		to_st_frames(m, path, m->stack_len[idx], bt->frames + nfr,
		             bt->obj_idx);
		bt->stacks[nst++] = (st_stack_def){
			.id = m->stack_id[idx],
			.nframes = m->stack_len[idx],
		};
		nfr += m->stack_len[idx];
	}
	/* Pointers only now: the frames array may have moved while growing. */
	for (uint32_t i = 0, off = 0; i < nst; i++) {
		bt->stacks[i].frames = bt->frames + off;
		off += bt->stacks[i].nframes;
	}
	bt->stacks_sent += nst;
	bt->rows += ns;
	bt->b = (st_batch){
		.series = bt->series, .nseries = nseries,
		.objects = bt->objects, .nobjects = nobj,
		.stacks = bt->stacks, .nstacks = nst,
		.samples = bt->samples, .nsamples = (uint32_t)ns,
	};
	return 0;
}

/* ---- the pprof comparison ---------------------------------------------- */

#define KERNEL_BASE 0xffffffff81000000ULL

struct pprof {
	z_stream zs;
	bool zs_live;
	uint32_t gen;
	uint32_t *loc_gen, *loc_id;  /* by model location */
	uint32_t *map_gen, *map_id;  /* by object; [nobjects] is the kernel */
	uint32_t *fn_gen, *fn_id;    /* by kernel name */
	uint32_t *svc_gen, *svc_str; /* by service: string index */

	char **str;
	size_t str_cap, nstr;
	Perftools__Profiles__Mapping *map, **mapp;
	size_t map_cap, map_cap2, nmap;
	Perftools__Profiles__Location *loc, **locp;
	Perftools__Profiles__Line *line, **linep;
	size_t loc_cap, loc_cap2, line_cap, line_cap2, nloc;
	Perftools__Profiles__Function *fn, **fnp;
	size_t fn_cap, fn_cap2, nfn;
	Perftools__Profiles__Sample *smp, **smpp;
	Perftools__Profiles__Label *lbl, **lblp;
	int64_t *val;
	size_t smp_cap, smp_cap2, lbl_cap, lbl_cap2, val_cap;
	uint64_t *locids;
	size_t locids_cap;
	uint8_t *pack, *gz;
	size_t pack_cap, gz_cap;

	uint64_t profiles, rows, raw_bytes, gz_bytes;
	double seconds;
};

static int pprof_init(struct pprof *pp, const struct model *m)
{
	pp->loc_gen = calloc(m->nlocs, sizeof(uint32_t));
	pp->loc_id = calloc(m->nlocs, sizeof(uint32_t));
	pp->map_gen = calloc(m->nobjects + 1, sizeof(uint32_t));
	pp->map_id = calloc(m->nobjects + 1, sizeof(uint32_t));
	pp->fn_gen = calloc(m->nknames, sizeof(uint32_t));
	pp->fn_id = calloc(m->nknames, sizeof(uint32_t));
	pp->svc_gen = calloc(m->nsvcs, sizeof(uint32_t));
	pp->svc_str = calloc(m->nsvcs, sizeof(uint32_t));
	if (!pp->loc_gen || !pp->loc_id || !pp->map_gen || !pp->map_id ||
	    !pp->fn_gen || !pp->fn_id || !pp->svc_gen || !pp->svc_str)
		return -ENOMEM;
	/* windowBits 15 + 16: a gzip header, as pprof files have. */
	if (deflateInit2(&pp->zs, 6, Z_DEFLATED, 15 + 16, 8,
	                 Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	pp->zs_live = true;
	return 0;
}

static void pprof_free(struct pprof *pp)
{
	if (pp->zs_live)
		deflateEnd(&pp->zs);
	free(pp->loc_gen);
	free(pp->loc_id);
	free(pp->map_gen);
	free(pp->map_id);
	free(pp->fn_gen);
	free(pp->fn_id);
	free(pp->svc_gen);
	free(pp->svc_str);
	free(pp->str);
	free(pp->map);
	free(pp->mapp);
	free(pp->loc);
	free(pp->locp);
	free(pp->line);
	free(pp->linep);
	free(pp->fn);
	free(pp->fnp);
	free(pp->smp);
	free(pp->smpp);
	free(pp->lbl);
	free(pp->lblp);
	free(pp->val);
	free(pp->locids);
	free(pp->pack);
	free(pp->gz);
}

static uint32_t pp_str(struct pprof *pp, const char *s)
{
	pp->str[pp->nstr] = (char *)s;
	return (uint32_t)pp->nstr++;
}

static uint32_t pp_mapping(struct pprof *pp, const struct model *m,
                           uint32_t o, uint64_t aslr, uint64_t *base)
{
	uint64_t start;

	if (o == KERNEL_OBJ) {
		o = m->nobjects;
		start = KERNEL_BASE;
	} else {
		/* Executables low, libraries high, page-aligned per host. */
		uint64_t h = hash2(aslr, o) & 0xfffffff;

		start = (o < m->nexes ? 0x550000000000ULL : 0x7f0000000000ULL) +
		        (h << 12);
	}
	*base = start;
	if (pp->map_gen[o] == pp->gen)
		return pp->map_id[o];
	Perftools__Profiles__Mapping *mp = &pp->map[pp->nmap];

	perftools__profiles__mapping__init(mp);
	mp->id = pp->nmap + 1;
	mp->memory_start = start;
	if (o == m->nobjects) {
		mp->memory_limit = start + 0x2000000;
		mp->filename = pp_str(pp, "[kernel.kallsyms]");
		mp->has_functions = 1;
	} else {
		mp->memory_limit = start + ((m->objs[o].text_size + 4095) &
		                            ~4095ULL);
		mp->filename = pp_str(pp, m->objs[o].name);
		mp->build_id = pp_str(pp, m->objs[o].build_id_hex);
	}
	pp->mapp[pp->nmap++] = mp;
	pp->map_gen[o] = pp->gen;
	pp->map_id[o] = (uint32_t)mp->id;
	return pp->map_id[o];
}

static uint64_t pp_location(struct pprof *pp, const struct model *m,
                            uint32_t li, uint64_t aslr)
{
	const struct loc *l = &m->locs[li];
	Perftools__Profiles__Location *lo;
	uint64_t base;

	if (pp->loc_gen[li] == pp->gen)
		return pp->loc_id[li];
	lo = &pp->loc[pp->nloc];
	perftools__profiles__location__init(lo);
	lo->id = pp->nloc + 1;
	lo->mapping_id = pp_mapping(pp, m, l->obj, aslr, &base);
	if (l->obj == KERNEL_OBJ) {
		/* Kernel frames arrive symbolized: a Function and a Line. */
		Perftools__Profiles__Line *ln = &pp->line[pp->nloc];

		if (pp->fn_gen[l->kfn] != pp->gen) {
			Perftools__Profiles__Function *f = &pp->fn[pp->nfn];

			perftools__profiles__function__init(f);
			f->id = pp->nfn + 1;
			f->name = f->system_name =
				pp_str(pp, m->knames[l->kfn]);
			pp->fnp[pp->nfn++] = f;
			pp->fn_gen[l->kfn] = pp->gen;
			pp->fn_id[l->kfn] = (uint32_t)f->id;
		}
		perftools__profiles__line__init(ln);
		ln->function_id = pp->fn_id[l->kfn];
		pp->linep[pp->nloc] = ln;
		lo->address = base + 0x100 * (uint64_t)l->kfn + 0x10;
		lo->n_line = 1;
		lo->line = &pp->linep[pp->nloc];
	} else {
		lo->address = base + l->offset;
	}
	pp->locp[pp->nloc++] = lo;
	pp->loc_gen[li] = pp->gen;
	pp->loc_id[li] = (uint32_t)lo->id;
	return lo->id;
}

/* The batch as the pprof a host would upload for those 10 s: one Sample
 * per row, with a "service" label so it says as much as the rows do. */
static int pprof_add(struct pprof *pp, const struct model *m,
                     const struct batch *bt, uint32_t h, int64_t ts)
{
	const st_batch *b = &bt->b;
	size_t nframes = 0, nstr, nl;
	uint64_t aslr = m->hosts[h].aslr;
	double t0 = now_s();
	int rc;

	for (uint32_t i = 0; i < b->nsamples; i++)
		nframes += m->stack_len[bt->sample_stack[i]];
	nstr = 8 + 2 * ((size_t)m->nobjects + 1) + m->nknames + m->nsvcs;
	nl = nframes < m->nlocs ? nframes : m->nlocs;
	/* Capacity first, so no pointer into these arrays moves later. */
	if ((rc = GROW(pp->str, pp->str_cap, nstr)) ||
	    (rc = GROW(pp->map, pp->map_cap, m->nobjects + 1)) ||
	    (rc = GROW(pp->mapp, pp->map_cap2, m->nobjects + 1)) ||
	    (rc = GROW(pp->loc, pp->loc_cap, nl)) ||
	    (rc = GROW(pp->locp, pp->loc_cap2, nl)) ||
	    (rc = GROW(pp->line, pp->line_cap, nl)) ||
	    (rc = GROW(pp->linep, pp->line_cap2, nl)) ||
	    (rc = GROW(pp->fn, pp->fn_cap, m->nknames)) ||
	    (rc = GROW(pp->fnp, pp->fn_cap2, m->nknames)) ||
	    (rc = GROW(pp->smp, pp->smp_cap, b->nsamples)) ||
	    (rc = GROW(pp->smpp, pp->smp_cap2, b->nsamples)) ||
	    (rc = GROW(pp->lbl, pp->lbl_cap, b->nsamples)) ||
	    (rc = GROW(pp->lblp, pp->lbl_cap2, b->nsamples)) ||
	    (rc = GROW(pp->val, pp->val_cap, 2 * (size_t)b->nsamples)) ||
	    (rc = GROW(pp->locids, pp->locids_cap, nframes)))
		return rc;

	pp->gen++;
	pp->nstr = pp->nmap = pp->nloc = pp->nfn = 0;
	pp_str(pp, "");
	Perftools__Profiles__ValueType vt[2] = {
		PERFTOOLS__PROFILES__VALUE_TYPE__INIT,
		PERFTOOLS__PROFILES__VALUE_TYPE__INIT,
	}, *vtp[2] = {&vt[0], &vt[1]};
	vt[0].type = pp_str(pp, "samples");
	vt[0].unit = pp_str(pp, "count");
	vt[1].type = pp_str(pp, "cpu");
	vt[1].unit = pp_str(pp, "nanoseconds");
	uint32_t key_service = pp_str(pp, "service");

	size_t off = 0;
	for (uint32_t i = 0; i < b->nsamples; i++) {
		const st_sample *s = &b->samples[i];
		uint32_t idx = bt->sample_stack[i];
		uint32_t svc = bt->series_svc[s->series];
		const uint32_t *path = m->frames + m->stack_off[idx];
		Perftools__Profiles__Sample *sm = &pp->smp[i];
		Perftools__Profiles__Label *lb = &pp->lbl[i];

		perftools__profiles__sample__init(sm);
		sm->location_id = pp->locids + off;
		sm->n_location_id = m->stack_len[idx];
		for (uint32_t k = 0; k < m->stack_len[idx]; k++)
			pp->locids[off++] = pp_location(pp, m, path[k], aslr);
		pp->val[2 * i] = s->value;
		pp->val[2 * i + 1] = s->value * PERIOD_NS;
		sm->value = &pp->val[2 * i];
		sm->n_value = 2;
		if (pp->svc_gen[svc] != pp->gen) {
			pp->svc_gen[svc] = pp->gen;
			pp->svc_str[svc] = pp_str(pp, m->svcs[svc].name);
		}
		perftools__profiles__label__init(lb);
		lb->key = key_service;
		lb->str = pp->svc_str[svc];
		pp->lblp[i] = lb;
		sm->label = &pp->lblp[i];
		sm->n_label = 1;
		pp->smpp[i] = sm;
	}

	Perftools__Profiles__Profile prof = PERFTOOLS__PROFILES__PROFILE__INIT;
	prof.sample_type = vtp;
	prof.n_sample_type = 2;
	prof.sample = pp->smpp;
	prof.n_sample = b->nsamples;
	prof.mapping = pp->mapp;
	prof.n_mapping = pp->nmap;
	prof.location = pp->locp;
	prof.n_location = pp->nloc;
	prof.function = pp->fnp;
	prof.n_function = pp->nfn;
	prof.string_table = pp->str;
	prof.n_string_table = pp->nstr;
	prof.time_nanos = ts - INTERVAL_NS;
	prof.duration_nanos = INTERVAL_NS;
	prof.period_type = &vt[1];
	prof.period = PERIOD_NS;

	size_t raw = perftools__profiles__profile__get_packed_size(&prof);
	if ((rc = GROW(pp->pack, pp->pack_cap, raw)))
		return rc;
	perftools__profiles__profile__pack(&prof, pp->pack);
	if (deflateReset(&pp->zs) != Z_OK)
		return -EIO;
	size_t bound = deflateBound(&pp->zs, raw);
	if ((rc = GROW(pp->gz, pp->gz_cap, bound)))
		return rc;
	pp->zs.next_in = pp->pack;
	pp->zs.avail_in = (uInt)raw;
	pp->zs.next_out = pp->gz;
	pp->zs.avail_out = (uInt)pp->gz_cap;
	if (deflate(&pp->zs, Z_FINISH) != Z_STREAM_END)
		return -EIO;
	pp->profiles++;
	pp->rows += b->nsamples;
	pp->raw_bytes += raw;
	pp->gz_bytes += pp->zs.total_out;
	pp->seconds += now_s() - t0;
	return 0;
}

/* ---- the data dir ------------------------------------------------------ */

struct du {
	uint64_t total, wal, blocks, meta, other, files;
};

static struct du g_du;
static const char *g_du_root;

static int du_one(const char *path, const struct stat *st, int type,
                  struct FTW *ftw)
{
	const char *rel = path + strlen(g_du_root);
	const char *base = path + ftw->base;

	if (type != FTW_F)
		return 0;
	g_du.total += (uint64_t)st->st_size;
	g_du.files++;
	if (!strncmp(rel, "/wal/", 5))
		g_du.wal += (uint64_t)st->st_size;
	else if (!strncmp(rel, "/blocks/", 8))
		g_du.blocks += (uint64_t)st->st_size;
	else if (!strncmp(base, "meta.db", 7))
		g_du.meta += (uint64_t)st->st_size;
	else
		g_du.other += (uint64_t)st->st_size;
	return 0;
}

static int dir_usage(const char *dir, struct du *out)
{
	memset(&g_du, 0, sizeof(g_du));
	g_du_root = dir;
	if (nftw(dir, du_one, 32, FTW_PHYS) < 0)
		return -errno;
	*out = g_du;
	return 0;
}

static void print_du(const char *when, const struct du *d, uint64_t rows)
{
	fprintf(stderr,
	        "bench: data dir %s: %.1f MiB in %" PRIu64 " files "
	        "(%.2f B/row): wal %.1f MiB, blocks %.1f MiB, meta.db* "
	        "%.1f MiB, other %.1f MiB\n",
	        when, d->total / 1048576.0, d->files,
	        rows ? (double)d->total / (double)rows : 0.0,
	        d->wal / 1048576.0, d->blocks / 1048576.0, d->meta / 1048576.0,
	        d->other / 1048576.0);
}

static int rm_one(const char *path, const struct stat *st, int type,
                  struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		fprintf(stderr, "bench: cannot remove %s: %s\n", path,
		        strerror(errno));
	return 0;
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

/* A store opened on a dir that already holds data would skew every number
 * and fail the merge check, so --dir must be new or empty. */
static int prepare_dir(const char *dir)
{
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			rc = -ENOTEMPTY;
			break;
		}
	closedir(d);
	return rc;
}

/* Median latency of a 4 KiB append + fdatasync in dir. A single-threaded
 * durable append can go no faster, and virtual disks vary (and throttle)
 * a lot, so ingest numbers are only comparable next to this. */
static double fsync_probe_ms(const char *dir)
{
	char path[4096], buf[4096];
	double ms[31];
	int fd, n = 0;

	snprintf(path, sizeof(path), "%s/.bench-fsync-probe", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	memset(buf, 0x5a, sizeof(buf));
	for (; n < (int)ARRAY_LEN(ms); n++) {
		double t = now_s();

		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
		    fdatasync(fd) < 0)
			break;
		ms[n] = 1e3 * (now_s() - t);
	}
	close(fd);
	unlink(path);
	if (n < (int)ARRAY_LEN(ms))
		return -1;
	/* Insertion sort: 31 values. */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && ms[j - 1] > ms[j]; j--) {
			double t = ms[j];

			ms[j] = ms[j - 1];
			ms[j - 1] = t;
		}
	return ms[n / 2];
}

/* ---- merge ------------------------------------------------------------- */

static int cmp_sum(const void *a, const void *b)
{
	uint64_t x = ((const st_stack_sum *)a)->stack_id;
	uint64_t y = ((const st_stack_sum *)b)->stack_id;

	return x < y ? -1 : x > y;
}

/* What st_merge must return: every stack that got samples, by ID. */
static st_stack_sum *expected_sums(const struct model *m,
                                   const struct batch *bt, size_t *n)
{
	st_stack_sum *e = malloc((m->nstacks + 1) * sizeof(*e));
	size_t k = 0;

	if (!e)
		return NULL;
	for (uint32_t i = 0; i < m->nstacks; i++)
		if (bt->expected[i])
			e[k++] = (st_stack_sum){m->stack_id[i],
			                        bt->expected[i]};
	qsort(e, k, sizeof(*e), cmp_sum);
	*n = k;
	return e;
}

static int check_merge(const st_stack_sum *got, size_t ngot,
                       const st_stack_sum *want, size_t nwant,
                       uint64_t samples)
{
	int64_t total = 0;

	for (size_t i = 0; i < ngot; i++)
		total += got[i].value;
	if ((uint64_t)total != samples) {
		fprintf(stderr, "bench: FAIL: merge total %" PRId64 " != %" PRIu64
		        " samples ingested\n", total, samples);
		return -1;
	}
	if (ngot != nwant) {
		fprintf(stderr, "bench: FAIL: merge returned %zu stacks, "
		        "%zu were ingested\n", ngot, nwant);
		return -1;
	}
	for (size_t i = 0; i < ngot; i++)
		if (got[i].stack_id != want[i].stack_id ||
		    got[i].value != want[i].value) {
			fprintf(stderr, "bench: FAIL: merge row %zu is stack "
			        "%016" PRIx64 " = %" PRId64 ", want %016" PRIx64
			        " = %" PRId64 "\n", i, got[i].stack_id,
			        got[i].value, want[i].stack_id, want[i].value);
			return -1;
		}
	return 0;
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bench/storage [--quick|--smoke] [--dir PATH] [--seed N]\n"
	        "                     [--hosts N] [--procs N] [--minutes N] "
	        "[--stacks N]\n"
	        "                     [--maintain] [--pprof-profiles N]\n"
	        "Ingests a synthetic fleet through storage.h and prints\n"
	        "ingest_rows_per_s, bytes_per_row, pprof_gz_bytes_per_row and\n"
	        "merge_rows_per_s. See docs/bench-storage.md.\n");
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return -EINVAL;
	*out = v;
	return 0;
}

/* A deep copy of a generated push, so the pushes of one interval can be
 * stored concurrently. Strings that live in the model are shared; the
 * version labels live in the batch generator and are copied. One free(). */
static st_batch *batch_clone(const st_batch *b)
{
	size_t nl = 0, nf = 0, strb = 0;

	for (uint32_t i = 0; i < b->nseries; i++) {
		nl += b->series[i].nlabels;
		for (uint32_t j = 0; j < b->series[i].nlabels; j++)
			strb += strlen(b->series[i].labels[j].value) + 1;
	}
	for (uint32_t i = 0; i < b->nstacks; i++)
		nf += b->stacks[i].nframes;
	size_t sz = sizeof(st_batch) + b->nseries * sizeof(st_series_def) +
	            nl * sizeof(st_label) + b->nobjects * sizeof(st_object) +
	            b->nstacks * sizeof(st_stack_def) + nf * sizeof(st_frame) +
	            b->nsamples * sizeof(st_sample) + strb;
	char *mem = malloc(sz), *p = mem;

	if (!mem)
		return NULL;
	st_batch *c = (st_batch *)p;
	p += sizeof(*c);
	*c = *b;
	st_series_def *sd = (st_series_def *)p;
	p += b->nseries * sizeof(*sd);
	st_label *lb = (st_label *)p;
	p += nl * sizeof(*lb);
	st_object *ob = (st_object *)p;
	p += b->nobjects * sizeof(*ob);
	st_stack_def *sk = (st_stack_def *)p;
	p += b->nstacks * sizeof(*sk);
	st_frame *fr = (st_frame *)p;
	p += nf * sizeof(*fr);
	st_sample *sm = (st_sample *)p;
	p += b->nsamples * sizeof(*sm);
	for (uint32_t i = 0; i < b->nseries; i++) {
		sd[i] = b->series[i];
		sd[i].labels = lb;
		for (uint32_t j = 0; j < b->series[i].nlabels; j++) {
			size_t n = strlen(b->series[i].labels[j].value) + 1;

			lb[j].name = b->series[i].labels[j].name;
			lb[j].value = memcpy(p, b->series[i].labels[j].value, n);
			p += n;
		}
		lb += b->series[i].nlabels;
	}
	memcpy(ob, b->objects, b->nobjects * sizeof(*ob));
	for (uint32_t i = 0; i < b->nstacks; i++) {
		sk[i] = b->stacks[i];
		memcpy(fr, b->stacks[i].frames, b->stacks[i].nframes * sizeof(*fr));
		sk[i].frames = fr;
		fr += b->stacks[i].nframes;
	}
	memcpy(sm, b->samples, b->nsamples * sizeof(*sm));
	c->series = sd;
	c->objects = ob;
	c->stacks = sk;
	c->samples = sm;
	return c;
}

struct appenders {
	st_db *db;
	st_batch **push;
	uint32_t n;
	atomic_uint next;
	atomic_int rc;
	st_err err;
};

static void *appender(void *arg)
{
	struct appenders *a = arg;
	st_err err;

	for (;;) {
		uint32_t i = atomic_fetch_add(&a->next, 1);

		if (i >= a->n || atomic_load(&a->rc))
			return NULL;
		int rc = st_append(a->db, a->push[i], &err);

		if (rc) {
			int zero = 0;

			if (atomic_compare_exchange_strong(&a->rc, &zero, rc))
				a->err = err;
			return NULL;
		}
	}
}

/* Stores the pushes of one interval with APPENDERS threads. */
static int append_all(struct appenders *a)
{
	pthread_t th[APPENDERS];
	uint32_t nt = a->n < APPENDERS ? a->n : APPENDERS;

	atomic_store(&a->next, 0);
	atomic_store(&a->rc, 0);
	for (uint32_t t = 0; t < nt; t++)
		if (pthread_create(&th[t], NULL, appender, a)) {
			nt = t;
			atomic_store(&a->rc, -EAGAIN);
			break;
		}
	for (uint32_t t = 0; t < nt; t++)
		pthread_join(th[t], NULL);
	return atomic_load(&a->rc);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"quick", no_argument, NULL, 'q'},
		{"smoke", no_argument, NULL, 's'},
		{"dir", required_argument, NULL, 'd'},
		{"seed", required_argument, NULL, 'S'},
		{"hosts", required_argument, NULL, 'H'},
		{"procs", required_argument, NULL, 'P'},
		{"minutes", required_argument, NULL, 'M'},
		{"stacks", required_argument, NULL, 'N'},
		{"maintain", no_argument, NULL, 'm'},
		{"pprof-profiles", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	/* The full fleet: 100 hosts for a day. procs is what keeps it to
	 * 10-15 minutes on a 2-core machine; see docs/bench-storage.md. */
	struct config cfg = {
		.mode = "full", .hosts = 100, .procs = 6, .nstacks = 100000,
		.duration_ns = 24 * 3600 * NSEC, .pprof_target = 3000,
		.seed = 1,
	};
	uint64_t hosts = 0, procs = 0, minutes = 0, nstacks = 0, pprofs = 0;
	struct model m = {0};
	struct batch bt = {0};
	struct pprof pp = {0};
	struct appenders ap = {0};
	st_db *db = NULL;
	st_err err = {{0}};
	st_stack_sum *want = NULL;
	char tmpdir[] = "/tmp/smolder-bench-XXXXXX";
	const char *dir = NULL;
	bool made_dir = false, merge_failed = false;
	int rc = 0, c, status = 1;
	rng r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			cfg.mode = "quick";
			break;
		case 's':
			cfg.mode = "smoke";
			break;
		case 'd':
			cfg.dir = optarg;
			break;
		case 'S':
			if (parse_u64(optarg, UINT64_MAX, &cfg.seed))
				goto bad_arg;
			break;
		case 'H':
			if (parse_u64(optarg, 100000, &hosts) || !hosts)
				goto bad_arg;
			break;
		case 'P':
			if (parse_u64(optarg, 1000, &procs) || !procs)
				goto bad_arg;
			break;
		case 'M':
			if (parse_u64(optarg, 60 * 24 * 366, &minutes) ||
			    !minutes)
				goto bad_arg;
			break;
		case 'N':
			if (parse_u64(optarg, 10000000, &nstacks) ||
			    nstacks < 100)
				goto bad_arg;
			break;
		case 'm':
			cfg.maintain = true;
			break;
		case 'p':
			if (parse_u64(optarg, 100000, &pprofs) || !pprofs)
				goto bad_arg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
	bad_arg:
		usage(stderr);
		return 2;
	}
	if (!strcmp(cfg.mode, "quick")) {
		cfg.hosts = 10;
		cfg.procs = 8;
		cfg.nstacks = 20000;
		cfg.duration_ns = 3 * 3600 * NSEC;
		cfg.pprof_target = 400;
	} else if (!strcmp(cfg.mode, "smoke")) {
		/* Past one partition boundary, so the periodic cut does cut. */
		cfg.hosts = 2;
		cfg.procs = 3;
		cfg.nstacks = 2000;
		cfg.duration_ns = 75 * 60 * NSEC;
		cfg.pprof_target = 50;
	}
	if (hosts)
		cfg.hosts = (uint32_t)hosts;
	if (procs)
		cfg.procs = (uint32_t)procs;
	if (minutes)
		cfg.duration_ns = (int64_t)minutes * 60 * NSEC;
	if (nstacks)
		cfg.nstacks = (uint32_t)nstacks;
	if (pprofs)
		cfg.pprof_target = (uint32_t)pprofs;

	/* SA_RESTART: a signal must not turn the store's write() into an
	 * I/O error; we stop at the next push instead. */
	struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	if (cfg.dir) {
		dir = cfg.dir;
		rc = prepare_dir(dir);
		if (rc) {
			fprintf(stderr, "bench: --dir %s: %s\n", dir,
			        rc == -ENOTEMPTY ? "not empty" : strerror(-rc));
			return 2;
		}
	} else {
		if (!mkdtemp(tmpdir)) {
			fprintf(stderr, "bench: mkdtemp: %s\n", strerror(errno));
			return 1;
		}
		dir = tmpdir;
		made_dir = true;
	}
	struct statfs sfs;
	if (!statfs(dir, &sfs) && sfs.f_type == TMPFS_MAGIC)
		fprintf(stderr, "bench: warning: %s is on tmpfs, fsync is free "
		        "there and ingest numbers mean little\n", dir);

	/* ---- the fleet ---- */
	double t0 = now_s();
	uint32_t nintervals = (uint32_t)(cfg.duration_ns / INTERVAL_NS);
	uint64_t nappends = (uint64_t)nintervals * cfg.hosts;
	uint64_t stride = nappends / cfg.pprof_target;

	if (stride < 1)
		stride = 1;
	/* Pushes go host after host, so a stride sharing a factor with the
	 * host count would sample only some hosts. */
	while (stride > 1 && gcd64(stride, cfg.hosts) != 1)
		stride++;
	rng_seed(&r, cfg.seed);
	m.nstacks = cfg.nstacks;
	m.graph_seed = rng_next(&r);
	if ((rc = build_fleet(&m, &cfg, &r)) ||
	    (rc = build_kernel_names(&m)) ||
	    (rc = build_objects(&m, &r)) ||
	    (rc = build_functions(&m, &r)) ||
	    (rc = build_stacks(&m, &r)) ||
	    (rc = zipf_init(&m.zipf, m.nstacks, ZIPF_S)) ||
	    (rc = batch_init(&bt, &m, cfg.procs)) ||
	    (rc = pprof_init(&pp, &m)))
		goto out;
	fprintf(stderr,
	        "bench: %s fleet: %u hosts x %u processes (%u services), "
	        "%.1f h in %u 10-s intervals = %" PRIu64 " appends; %u "
	        "stacks of depth %d-%d (%.1f frames avg), %u objects, %u "
	        "locations, Zipf s=%.1f; seed %" PRIu64 "; dir %s; model "
	        "built in %.1f s\n",
	        cfg.mode, cfg.hosts, cfg.procs, m.nsvcs,
	        (double)cfg.duration_ns / (3600.0 * NSEC), nintervals,
	        nappends, m.nstacks, MIN_DEPTH, MAX_DEPTH,
	        (double)m.nframes_total / m.nstacks, m.nobjects, m.nlocs,
	        ZIPF_S, cfg.seed, dir, now_s() - t0);
	if (stride > 1)
		fprintf(stderr, "bench: pprof comparison from every %" PRIu64
		        "th push (~%" PRIu64 " of %" PRIu64 "), extrapolated "
		        "per row\n", stride, (nappends + stride - 1) / stride,
		        nappends);

	/* ---- ingest ---- */
	double probe_before = fsync_probe_ms(dir);

	rc = st_open(dir, NULL, &db, &err);
	if (rc) {
		fprintf(stderr, "bench: st_open %s: %s (%s)\n", dir,
		        strerror(-rc), err.msg);
		goto out;
	}
	double t_append = 0, t_cut = 0, t_maint = 0, t_wall = now_s(), c_start = cpu_s();
	double t_report = t_wall;
	uint32_t cut_every = (uint32_t)(CUT_EVERY_NS / INTERVAL_NS);
	uint64_t napp = 0, ncuts = 0;
	int64_t ts = FLEET_EPOCH_NS;

	/* "one core": storage's work for ingest runs on CPU 0 only */
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		fprintf(stderr, "bench: cannot pin to one CPU: %s\n", strerror(errno));
	ap.db = db;
	ap.push = calloc(cfg.hosts, sizeof(*ap.push));
	if (!ap.push) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < nintervals && !g_stop; i++) {
		ts = FLEET_EPOCH_NS + (int64_t)(i + 1) * INTERVAL_NS;
		bt.epoch = i + 1;
		for (uint32_t h = 0; h < cfg.hosts && !g_stop; h++) {
			if ((rc = gen_batch(&bt, &m, &r, h, ts)))
				goto out;
			if (napp % stride == 0 &&
			    (rc = pprof_add(&pp, &m, &bt, h, ts)))
				goto out;
			napp++;
			ap.push[h] = batch_clone(&bt.b);
			if (!ap.push[h]) {
				rc = -ENOMEM;
				goto out;
			}
		}
		ap.n = cfg.hosts;
		double t = now_s();
		rc = append_all(&ap);
		t_append += now_s() - t;
		for (uint32_t h = 0; h < cfg.hosts; h++) {
			free(ap.push[h]);
			ap.push[h] = NULL;
		}
		if (rc) {
			fprintf(stderr, "bench: st_append: %s (%s)\n",
			        strerror(-rc), ap.err.msg);
			goto out;
		}
		if ((i + 1) % cut_every == 0) {
			double tc = now_s();

			rc = st_cut(db, ts, 0);
			t_cut += now_s() - tc;
			ncuts++;
			if (rc) {
				fprintf(stderr, "bench: st_cut: %s\n",
				        strerror(-rc));
				goto out;
			}
		}
		/* what the server's maintenance pass does besides cutting,
		 * at simulated time; outside the ingest figure */
		if (cfg.maintain && (i + 1) % (3600 / (INTERVAL_NS / NSEC)) == 0) {
			double tm = now_s();

			rc = st_rollup(db, ts);
			if (!rc)
				rc = st_compact(db);
			t_maint += now_s() - tm;
			if (rc) {
				fprintf(stderr, "bench: maintenance: %s\n", strerror(-rc));
				goto out;
			}
		}
		if (now_s() - t_report >= 30) {
			double el;

			t_report = now_s();
			el = t_report - t_wall;
			fprintf(stderr, "bench: ... %.1f of %.1f h, %" PRIu64
			        " rows, %.0f rows/s so far, %.0f s, ingest done "
			        "in ~%.0f s more\n",
			        (double)(ts - FLEET_EPOCH_NS) / (3600.0 * NSEC),
			        (double)cfg.duration_ns / (3600.0 * NSEC),
			        bt.rows, bt.rows / (t_append + t_cut), el,
			        el * (nintervals - i - 1) / (i + 1));
		}
	}
	if (g_stop) {
		rc = -EINTR;
		goto out;
	}
	double ingest_s = t_append + t_cut;
	double ingest_rate = bt.rows / ingest_s;
	double probe_after = fsync_probe_ms(dir);

	fprintf(stderr, "bench: disk: 4 KiB append + fdatasync in the data "
	        "dir took %.3f ms before ingest and %.3f ms after (median of "
	        "31)\n", probe_before, probe_after);
	fprintf(stderr,
	        "bench: ingested %" PRIu64 " rows (%" PRIu64 " samples, %.1f "
	        "rows/push, %" PRIu64 " stacks defined) in %" PRIu64
	        " appends: st_append %.2f s (%.3f ms each), %" PRIu64
	        " periodic st_cut %.2f s; process CPU %.1f s over %.1f s "
	        "wall including data generation\n",
	        bt.rows, bt.samples_total, (double)bt.rows / napp,
	        bt.stacks_sent, napp, t_append, 1e3 * t_append / napp, ncuts,
	        t_cut, cpu_s() - c_start, now_s() - t_wall);

	/* ---- size on disk ---- */
	struct du du;
	st_stats stats;
	double a = now_s();

	rc = st_cut(db, ts + 24 * 3600 * NSEC, 1);
	if (rc) {
		fprintf(stderr, "bench: final st_cut: %s\n", strerror(-rc));
		goto out;
	}
	fprintf(stderr, "bench: final st_cut(force) %.2f s\n", now_s() - a);
	if ((rc = dir_usage(dir, &du)))
		goto out;
	print_du("after cut", &du, bt.rows);
	a = now_s();
	rc = st_compact(db);
	if (rc) {
		fprintf(stderr, "bench: st_compact: %s\n", strerror(-rc));
		goto out;
	}
	fprintf(stderr, "bench: st_compact %.2f s\n", now_s() - a);
	if (cfg.maintain) {
		/* roll-ups as the server would have them when the last push
		 * arrived: the last hour is not over yet */
		a = now_s();
		rc = st_rollup(db, ts);
		if (rc) {
			fprintf(stderr, "bench: st_rollup: %s\n", strerror(-rc));
			goto out;
		}
		fprintf(stderr, "bench: hourly compaction and roll-ups %.2f s, final st_rollup "
		        "%.2f s\n", t_maint, now_s() - a);
	}
	if ((rc = dir_usage(dir, &du)))
		goto out;
	print_du("after compact", &du, bt.rows);
	st_get_stats(db, &stats);
	fprintf(stderr,
	        "bench: stats: head %" PRIu64 " rows in %" PRIu64
	        " partitions, %" PRIu64 " blocks of %" PRIu64 " rows (%.1f "
	        "MiB), %" PRIu64 " WAL segments (%.1f MiB), %" PRIu64
	        " series, %" PRIu64 " stacks\n",
	        stats.head_rows, stats.head_partitions, stats.blocks,
	        stats.block_rows, stats.block_bytes / 1048576.0,
	        stats.wal_segments, stats.wal_bytes / 1048576.0, stats.series,
	        stats.stacks);
	fprintf(stderr, "bench: group commit: %" PRIu64 " WAL records in %" PRIu64
	        " fdatasyncs (%.1f records each), %.3f ms per fdatasync, %.1f s in all\n",
	        stats.wal_records, stats.wal_syncs,
	        stats.wal_syncs ? (double)stats.wal_records / stats.wal_syncs : 0.0,
	        stats.wal_syncs ? stats.wal_sync_ns / 1e6 / stats.wal_syncs : 0.0,
	        stats.wal_sync_ns / 1e9);
	if (stats.head_rows || stats.block_rows != bt.rows)
		fprintf(stderr, "bench: warning: after a forced cut the "
		        "blocks hold %" PRIu64 " rows and the head %" PRIu64
		        ", %" PRIu64 " were ingested\n", stats.block_rows,
		        stats.head_rows, bt.rows);
	double bytes_per_row = (double)du.total / bt.rows;
	double pprof_per_row = (double)pp.gz_bytes / pp.rows;
	fprintf(stderr,
	        "bench: pprof: %" PRIu64 " profiles of %.0f rows avg, %.1f KiB "
	        "raw and %.1f KiB gzip'd each (%.2f raw B/row), built in "
	        "%.1f s\n",
	        pp.profiles, (double)pp.rows / pp.profiles,
	        pp.raw_bytes / 1024.0 / pp.profiles,
	        pp.gz_bytes / 1024.0 / pp.profiles,
	        (double)pp.raw_bytes / pp.rows, pp.seconds);

	/* ---- merge ---- */
	st_matcher mt = {ST_TYPE_LABEL, ST_MATCH_EQ, PROFILE_TYPE};
	int64_t from = FLEET_EPOCH_NS, to = ts + 1;
	size_t nwant;
	double best = 0;

	want = expected_sums(&m, &bt, &nwant);
	if (!want) {
		rc = -ENOMEM;
		goto out;
	}
	for (int run = 0; run < MERGE_RUNS && !g_stop; run++) {
		st_selection *sel = NULL;
		st_stack_sum *got = NULL;
		size_t ngot = 0;
		double dt;

		a = now_s();
		rc = st_select(db, &mt, 1, from, to, &sel, &err);
		if (rc) {
			fprintf(stderr, "bench: st_select: %s (%s)\n",
			        strerror(-rc), err.msg);
			goto out;
		}
		rc = st_merge(db, sel, from, to, &got, &ngot);
		dt = now_s() - a;
		if (rc) {
			fprintf(stderr, "bench: st_merge: %s\n", strerror(-rc));
			st_selection_free(sel);
			goto out;
		}
		fprintf(stderr, "bench: merge %d: %zu series, %zu stacks, "
		        "%.3f s\n", run + 1, st_selection_count(sel), ngot, dt);
		st_selection_free(sel);
		if (check_merge(got, ngot, want, nwant, bt.samples_total)) {
			free(got);
			merge_failed = true;
			goto out;
		}
		free(got);
		if (run == 0 || dt < best)
			best = dt;
	}
	if (g_stop) {
		rc = -EINTR;
		goto out;
	}
	fprintf(stderr, "bench: merge total %" PRIu64 " samples over %zu "
	        "stacks: matches what was ingested\n", bt.samples_total, nwant);

	printf("ingest_rows_per_s: %.0f\n", ingest_rate);
	printf("bytes_per_row: %.2f\n", bytes_per_row);
	printf("pprof_gz_bytes_per_row: %.2f\n", pprof_per_row);
	printf("merge_rows_per_s: %.0f\n", bt.rows / best);
	fflush(stdout);
	st_close(db);
	db = NULL;
	if (!dir_usage(dir, &du))
		print_du("after st_close", &du, bt.rows);
	status = 0;
out:
	if (rc == -EINTR)
		fprintf(stderr, "bench: interrupted\n");
	else if (rc)
		fprintf(stderr, "bench: failed: %s\n", strerror(-rc));
	st_close(db);
	if (made_dir)
		rm_rf(dir);
	free(want);
	if (ap.push)
		for (uint32_t h = 0; h < cfg.hosts; h++)
			free(ap.push[h]);
	free(ap.push);
	pprof_free(&pp);
	batch_free(&bt);
	model_free(&m);
	if (rc == -EINTR)
		return 130;
	return merge_failed ? 1 : status;
}
