/* unwind.c - the BPF table walker's user-space half: which rows each
 * object has in the kernel's rows array (built once per build ID with
 * ag_unw_build, shared by every process mapping the object), and one
 * entry per process naming its executable mappings and their rows.
 *
 * The rows array is a BPF array the agent maps into its memory, so a
 * table is loaded with one memcpy; ranges of it are handed out first-fit
 * from a sorted free list. A table stays while any process maps its
 * object; afterwards it is kept (short-lived processes of the same binary
 * come back all the time: shells, compilers) until its space is needed,
 * least recently used first.
 *
 * Building a table takes from microseconds to seconds (a compiler's
 * million rows), so it runs on a builder thread: the agent's loop must
 * keep draining and pushing. A process' entry is written at once with the
 * tables that are ready, its other mappings walked by frame pointers, and
 * rewritten when each missing table arrives (ag_unw_tick). The builder
 * only reads files and computes rows; every structure here is the main
 * thread's. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "agent/agent.h"
#include "bpf/profile.h"

/* the bucket index packs four u32 entries into one row slot */
_Static_assert(sizeof(struct sm_unw_row) == 4 * sizeof(uint32_t), "an index slot is a row");

#define MAX_LOADS 16            /* PT_LOAD segments remembered per object */
#define NBUCKETS 1024
#define MAX_FILES 4             /* files (inodes) per table in unw_files */

typedef struct utab {
	uint8_t id[WIRE_MAX_BUILD_ID];
	uint32_t id_len;
	uint32_t start, len;        /* rows range; len 0: no table (walked by
	                             * frame pointers) */
	uint32_t alloc;             /* slots taken: the rows, then the index */
	uint32_t idx_len, idx_base; /* the bucket index (bpf/profile.h) */
	bool failed;                /* no CFI, not ELF, too big: not retried */
	bool building;              /* queued for or on the builder thread */
	bool fresh;                 /* installed by the running ag_unw_tick, whose
	                             * waiting processes have not taken it yet:
	                             * not evicted until they have */
	uint32_t refs;              /* processes whose entry names it */
	uint64_t last_used;
	int64_t used_ns;            /* when a process last mapped it (monotonic) */
	uint32_t nloads;
	struct { uint64_t off, vaddr, filesz; } loads[MAX_LOADS];
	/* the files processes map it from, as the kernel names them: its
	 * unw_files keys, written once the table has rows, deleted with it */
	struct sm_unw_file_key files[MAX_FILES];
	uint32_t nfiles;
	struct utab *next;
} utab;

/* A process' entry as last written, and the table and file offset of
 * each of its mappings, so the entry can be completed when a table
 * arrives; its references are released when it is replaced or removed. */
typedef struct umap {
	struct sm_unw_map m;        /* as in the kernel's entry */
	utab *t;                    /* its table, or NULL */
	uint64_t pgoff;             /* its file offset */
} umap;

typedef struct uproc {
	pid_t pid;
	uint32_t n, cap;            /* maps used, allocated: as many as the
	                             * process has, not SM_UNW_MAX_MAPS (most
	                             * have a few dozen, the entry 128) */
	umap *maps;
	bool pending;               /* some mapping waits for its table */
	int64_t event_ns;           /* its NEW/EXEC event, until it has a table */
	struct uproc *next;
} uproc;

/* A build for the builder thread, and its result. */
typedef struct job {
	utab *t;                    /* owned by the main thread: not touched there */
	int fd;
	uint64_t size;              /* of the file: smaller ones are built first */
	/* results */
	int rc;
	struct sm_unw_row *rows;
	size_t n;
	ag_unw_info info;
	uint32_t nloads;
	struct { uint64_t off, vaddr, filesz; } loads[MAX_LOADS];
	int64_t ns;
	struct job *next;
} job;

typedef struct extent {
	uint32_t start, len;
} extent;

struct ag_unw {
	ag_unw_opts o;
	utab *tabs[NBUCKETS];
	uproc *procs[NBUCKETS];
	extent *free_ext;
	size_t nfree, free_cap;
	uint64_t clock;
	utab *vdso;                 /* this kernel's vDSO, the same in every process */
	pid_t event_pid;            /* ag_unw_event */
	int64_t event_ns;
	ag_unw_stats st;
	struct sm_unw_proc entry;   /* scratch: a process' entry as written */
	/* the builder thread: todo in, done out, under mu */
	pthread_t thread;
	bool thread_started, quit;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	job *todo, *done;           /* todo sorted by file size */
	size_t inflight;
};

static uint32_t id_hash(const uint8_t *id, uint32_t n)
{
	uint32_t h = 2166136261u;
	for (uint32_t i = 0; i < n; i++)
		h = (h ^ id[i]) * 16777619u;
	return h % NBUCKETS;
}

/* ---- the rows allocator ---- */

static int ext_insert(ag_unw *u, uint32_t start, uint32_t len)
{
	size_t i = 0;
	while (i < u->nfree && u->free_ext[i].start < start)
		i++;
	/* coalesce with the neighbours */
	bool prev = i > 0 && u->free_ext[i - 1].start + u->free_ext[i - 1].len == start;
	bool next = i < u->nfree && start + len == u->free_ext[i].start;
	if (prev && next) {
		u->free_ext[i - 1].len += len + u->free_ext[i].len;
		memmove(&u->free_ext[i], &u->free_ext[i + 1], (u->nfree - i - 1) * sizeof(extent));
		u->nfree--;
		return 0;
	}
	if (prev) {
		u->free_ext[i - 1].len += len;
		return 0;
	}
	if (next) {
		u->free_ext[i].start = start;
		u->free_ext[i].len += len;
		return 0;
	}
	if (u->nfree == u->free_cap) {
		size_t c = u->free_cap ? 2 * u->free_cap : 64;
		extent *n = realloc(u->free_ext, c * sizeof(*n));
		if (!n)
			return -ENOMEM;
		u->free_ext = n;
		u->free_cap = c;
	}
	memmove(&u->free_ext[i + 1], &u->free_ext[i], (u->nfree - i) * sizeof(extent));
	u->free_ext[i] = (extent){start, len};
	u->nfree++;
	return 0;
}

static bool ext_alloc(ag_unw *u, uint32_t len, uint32_t *start)
{
	for (size_t i = 0; i < u->nfree; i++) {
		extent *e = &u->free_ext[i];
		if (e->len < len)
			continue;
		*start = e->start;
		e->start += len;
		e->len -= len;
		if (!e->len) {
			memmove(e, e + 1, (u->nfree - i - 1) * sizeof(extent));
			u->nfree--;
		}
		return true;
	}
	return false;
}

/* Frees t, unlinked by the caller: its rows and its unw_files keys. */
static void tab_free(ag_unw *u, utab *t)
{
	for (uint32_t i = 0; i < t->nfiles; i++)
		bpf_map_delete_elem(u->o.files_fd, &t->files[i]);
	if (t->len) {
		ext_insert(u, t->start, t->alloc);
		u->st.rows_used -= t->alloc;
	}
	u->st.tables--;
	free(t);
}

/* Frees the rows of the least recently used table no process maps.
 * Returns false when there is none. */
static bool evict_one(ag_unw *u)
{
	utab *best = NULL, **best_pp = NULL;
	for (size_t b = 0; b < NBUCKETS; b++)
		for (utab **pp = &u->tabs[b]; *pp; pp = &(*pp)->next) {
			utab *t = *pp;
			if (t->refs || t->fresh || t == u->vdso || !t->len)
				continue;
			if (!best || t->last_used < best->last_used) {
				best = t;
				best_pp = pp;
			}
		}
	if (!best)
		return false;
	*best_pp = best->next;
	tab_free(u, best);
	u->st.evicted++;
	return true;
}

void ag_unw_expire(ag_unw *u, int64_t now_ns)
{
	for (size_t b = 0; b < NBUCKETS; b++)
		for (utab **pp = &u->tabs[b]; *pp;) {
			utab *t = *pp;
			int64_t keep = t->len ? AG_UNW_KEEP_NS : AG_UNW_KEEP_FAILED_NS;
			if (t->refs || t->building || t == u->vdso || now_ns - t->used_ns < keep) {
				pp = &t->next;
				continue;
			}
			*pp = t->next;
			tab_free(u, t);
			u->st.expired++;
		}
}

/* ---- tables ---- */

static int read_loads(int fd, job *t)
{
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e)
		return -ENOEXEC;
	size_t n;
	int rc = 0;
	if (elf_getphdrnum(e, &n)) {
		rc = -ENOEXEC;
		goto out;
	}
	t->nloads = 0;
	for (size_t i = 0; i < n && t->nloads < MAX_LOADS; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD || !(ph.p_flags & PF_X))
			continue;
		t->loads[t->nloads].off = ph.p_offset;
		t->loads[t->nloads].vaddr = ph.p_vaddr;
		t->loads[t->nloads].filesz = ph.p_filesz;
		t->nloads++;
	}
out:
	elf_end(e);
	return rc;
}

/* The builder thread's work: reads fd, closes it. */
static void run_job(ag_unw *u, job *j)
{
	int64_t t0 = ag_mono_ns();
	j->rc = read_loads(j->fd, j);
	if (!j->rc)
		j->rc = ag_unw_build(j->fd, u->o.rows_cap, &j->rows, &j->n, &j->info);
	close(j->fd);
	j->fd = -1;
	j->ns = ag_mono_ns() - t0;
}

static void *builder(void *arg)
{
	ag_unw *u = arg;
	pthread_mutex_lock(&u->mu);
	for (;;) {
		while (!u->todo && !u->quit)
			pthread_cond_wait(&u->cv, &u->mu);
		if (u->quit)
			break;
		job *j = u->todo;
		u->todo = j->next;
		pthread_mutex_unlock(&u->mu);
		run_job(u, j);
		/* a big object's build leaves megabytes free in this thread's
		 * arena (libdw's caches, the grown rows array): give them back
		 * rather than keep the agent's footprint at its largest build */
		malloc_trim(0);
		pthread_mutex_lock(&u->mu);
		j->next = u->done;
		u->done = j;
	}
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

/* Queues t's build from fd (taken over). */
static void queue_build(ag_unw *u, utab *t, int fd)
{
	job *j = calloc(1, sizeof(*j));
	if (!j) {
		close(fd);
		return;
	}
	j->t = t;
	j->fd = fd;
	struct stat st;
	j->size = fstat(fd, &st) ? UINT64_MAX : (uint64_t)st.st_size;
	t->building = true;
	u->inflight++;
	/* Smallest file first: a compiler's or a browser's table takes
	 * seconds, and every small program queued behind it would be walked
	 * by frame pointers meanwhile. */
	pthread_mutex_lock(&u->mu);
	job **pp = &u->todo;
	while (*pp && (*pp)->size <= j->size)
		pp = &(*pp)->next;
	j->next = *pp;
	*pp = j;
	pthread_cond_signal(&u->cv);
	pthread_mutex_unlock(&u->mu);
}

/* Writes t's unw_files entry for key (t has rows). */
static void file_put(ag_unw *u, const utab *t, const struct sm_unw_file_key *key)
{
	struct sm_unw_file f = {.rows_start = t->start, .rows_len = t->len,
	                        .idx_start = t->start + t->len, .idx_len = t->idx_len,
	                        .idx_base = t->idx_base};
	for (uint32_t k = 0; k < t->nloads && f.nloads < SM_UNW_FILE_LOADS; k++, f.nloads++) {
		f.loads[f.nloads].off = t->loads[k].off;
		f.loads[f.nloads].vaddr = t->loads[k].vaddr;
		f.loads[f.nloads].filesz = t->loads[k].filesz;
	}
	bpf_map_update_elem(u->o.files_fd, key, &f, BPF_ANY);
}

/* Remembers that mapping m is t's file, so the walker can find t by the
 * mapping's inode where no process entry covers it yet; written to the
 * kernel now if t has rows, else when it gets them. The oldest of
 * MAX_FILES goes (copies of one binary at several paths). */
static void file_add(ag_unw *u, utab *t, const ag_mapping *m)
{
	if (!m->ino || !m->obj)
		return;
	struct sm_unw_file_key key = {.dev = m->dev, .ino = m->ino, .size = m->obj->size};
	for (uint32_t i = 0; i < t->nfiles; i++)
		if (!memcmp(&t->files[i], &key, sizeof(key)))
			return;
	if (t->nfiles == MAX_FILES) {
		bpf_map_delete_elem(u->o.files_fd, &t->files[0]);
		memmove(&t->files[0], &t->files[1], (MAX_FILES - 1) * sizeof(key));
		t->nfiles--;
	}
	t->files[t->nfiles++] = key;
	if (t->len)
		file_put(u, t, &key);
}

/* A finished build into the rows array. Returns true when t has rows. */
static bool install(ag_unw *u, job *j)
{
	utab *t = j->t;
	t->building = false;
	u->st.build_ns += (uint64_t)j->ns;
	if ((uint64_t)j->ns > u->st.build_ns_max)
		u->st.build_ns_max = (uint64_t)j->ns;
	if (j->rc || !j->n) {
		t->failed = true;
		u->st.build_failed++;
		return false;
	}
	t->nloads = j->nloads;
	memcpy(t->loads, j->loads, sizeof(t->loads));
	/* the rows, then one index entry per bucket, four to a slot */
	uint32_t first = j->rows[0].pc >> SM_UNW_BUCKET_SHIFT;
	uint32_t nb = (j->rows[j->n - 1].pc >> SM_UNW_BUCKET_SHIFT) - first + 1;
	uint64_t need = j->n + (nb + 3) / 4;
	if (need > u->o.rows_cap) {
		t->failed = true;
		u->st.build_failed++;
		return false;
	}
	/* the pages of the range, mapped for the copy only */
	uint32_t start;
	while (!ext_alloc(u, (uint32_t)need, &start)) {
		if (!evict_one(u)) {
			/* no room now: walked by frame pointers, tried again at the
			 * next reread of a process mapping it */
			u->st.no_space++;
			return false;
		}
	}
	uint64_t off = (uint64_t)start * sizeof(struct sm_unw_row);
	uint64_t page = off & ~(uint64_t)4095;
	size_t len = (size_t)(off + need * sizeof(struct sm_unw_row) - page);
	uint8_t *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, u->o.rows_fd,
	                    (off_t)page);
	if (map == MAP_FAILED) {
		ext_insert(u, start, (uint32_t)need);
		t->failed = true;
		u->st.build_failed++;
		return false;
	}
	struct sm_unw_row *dst = (struct sm_unw_row *)(map + (off - page));
	memcpy(dst, j->rows, j->n * sizeof(*j->rows));
	uint32_t *idx = (uint32_t *)(dst + j->n);
	for (uint32_t b = 0, r = 0; b < nb; b++) {
		uint64_t at = (uint64_t)(first + b) << SM_UNW_BUCKET_SHIFT;
		while (r + 1 < j->n && j->rows[r + 1].pc <= at)
			r++;
		idx[b] = r;
	}
	munmap(map, len);
	t->start = start;
	t->len = (uint32_t)j->n;
	t->alloc = (uint32_t)need;
	t->idx_len = nb;
	t->idx_base = first;
	u->st.rows_used += need;
	u->st.built++;
	t->fresh = true;
	for (uint32_t i = 0; i < t->nfiles; i++)
		file_put(u, t, &t->files[i]);
	if (u->o.verbose)
		fprintf(stderr, "smolder-agent: unwind table: %zu rows from %zu FDEs in %.1f ms\n",
		        j->n, j->info.fdes, (double)j->ns / 1e6);
	return true;
}

static utab *find_tab(ag_unw *u, const uint8_t *id, uint32_t len)
{
	for (utab *t = u->tabs[id_hash(id, len)]; t; t = t->next)
		if (t->id_len == len && !memcmp(t->id, id, len))
			return t;
	return NULL;
}

static utab *new_tab(ag_unw *u, const uint8_t *id, uint32_t len)
{
	utab *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	memcpy(t->id, id, len);
	t->id_len = len;
	uint32_t b = id_hash(id, len);
	t->next = u->tabs[b];
	u->tabs[b] = t;
	u->st.tables++;
	return t;
}

/* The vDSO is no file: its image is read from this process' memory
 * (every process of a kernel maps the same one) into a memfd. */
static void load_vdso(ag_unw *u)
{
	static const uint8_t vdso_id[] = "[vdso]";
	u->vdso = new_tab(u, vdso_id, sizeof(vdso_id) - 1);
	if (!u->vdso)
		return;
	const unsigned char *img = (const void *)getauxval(AT_SYSINFO_EHDR);
	FILE *f = fopen("/proc/self/maps", "re");
	uint64_t size = 0;
	char line[512];
	while (f && fgets(line, sizeof(line), f)) {
		uint64_t a, b;
		if (strstr(line, "[vdso]") && sscanf(line, "%" SCNx64 "-%" SCNx64, &a, &b) == 2 &&
		    a == (uint64_t)(uintptr_t)img)
			size = b - a;
	}
	if (f)
		fclose(f);
	int fd = img && size ? memfd_create("vdso", MFD_CLOEXEC) : -1;
	if (fd < 0 || write(fd, img, size) != (ssize_t)size) {
		u->vdso->failed = true;
		if (fd >= 0)
			close(fd);
		return;
	}
	job j = {.t = u->vdso, .fd = fd};
	run_job(u, &j);
	install(u, &j);
	free(j.rows);
}

int ag_unw_new(const ag_unw_opts *o, ag_unw **out)
{
	*out = NULL;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOSYS;
	ag_unw *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->o = *o;
	u->st.rows_cap = o->rows_cap;
	pthread_mutex_init(&u->mu, NULL);
	pthread_cond_init(&u->cv, NULL);
	int rc = ext_insert(u, 0, o->rows_cap);
	if (!rc) {
		rc = -pthread_create(&u->thread, NULL, builder, u);
		u->thread_started = !rc;
	}
	if (rc) {
		ag_unw_free(u);
		return rc;
	}
	load_vdso(u);
	*out = u;
	return 0;
}

static void free_jobs(job *j)
{
	while (j) {
		job *n = j->next;
		if (j->fd >= 0)
			close(j->fd);
		free(j->rows);
		free(j);
		j = n;
	}
}

void ag_unw_free(ag_unw *u)
{
	if (!u)
		return;
	if (u->thread_started) {
		pthread_mutex_lock(&u->mu);
		u->quit = true;
		pthread_cond_signal(&u->cv);
		pthread_mutex_unlock(&u->mu);
		pthread_join(u->thread, NULL);  /* after the build it is in, if any */
	}
	free_jobs(u->todo);
	free_jobs(u->done);
	pthread_mutex_destroy(&u->mu);
	pthread_cond_destroy(&u->cv);
	for (size_t b = 0; b < NBUCKETS; b++) {
		for (utab *t = u->tabs[b], *n; t; t = n) {
			n = t->next;
			free(t);
		}
		for (uproc *p = u->procs[b], *n; p; p = n) {
			n = p->next;
			free(p->maps);
			free(p);
		}
	}
	free(u->free_ext);
	free(u);
}

/* The table of mapping m of process pid, built when first needed. */
static utab *tab_for(ag_unw *u, pid_t pid, const ag_mapping *m)
{
	if (m->kind == AG_MAP_VDSO)
		return u->vdso;
	if (m->kind != AG_MAP_FILE || !m->obj)
		return NULL;
	utab *t = find_tab(u, m->obj->build_id, m->obj->build_id_len);
	if (!t) {
		t = new_tab(u, m->obj->build_id, m->obj->build_id_len);
		if (!t)
			return NULL;
	}
	if (!t->failed)
		file_add(u, t, m);
	if (t->len || t->failed || t->building)
		return t;
	/* the object's own descriptor when still open, else the mapping's
	 * file as the process sees it */
	int fd = ag_mapping_open(u->o.proc_root, pid, m);
	if (fd < 0)
		return t;               /* tried again at the next reread */
	queue_build(u, t, fd);
	return t;
}

static uproc **find_proc(ag_unw *u, pid_t pid)
{
	uproc **pp = &u->procs[(uint32_t)pid % NBUCKETS];
	while (*pp && (*pp)->pid != pid)
		pp = &(*pp)->next;
	return pp;
}

static void release(uproc *p)
{
	int64_t now = ag_mono_ns();
	for (uint32_t i = 0; i < p->n; i++)
		if (p->maps[i].t && p->maps[i].m.rows_len) {
			p->maps[i].t->refs--;
			p->maps[i].t->used_ns = now;
		}
}

/* Writes p's entry into the kernel. */
static int write_entry(ag_unw *u, const uproc *p)
{
	uint32_t key = (uint32_t)p->pid;
	/* all of it: the walker may look at a slot past n */
	memset(&u->entry, 0, sizeof(u->entry));
	u->entry.n = p->n;
	for (uint32_t i = 0; i < p->n; i++)
		u->entry.maps[i] = p->maps[i].m;
	return bpf_map_update_elem(u->o.procs_fd, &key, &u->entry, BPF_ANY) ? -errno : 0;
}

/* Fills the rows of p's mapping i from its table when that has rows
 * (taking a reference); returns true when it did. */
static bool fill(uproc *p, uint32_t i)
{
	utab *t = p->maps[i].t;
	struct sm_unw_map *em = &p->maps[i].m;
	uint64_t pgoff = p->maps[i].pgoff;
	if (!t || !t->len || em->rows_len)
		return false;
	/* the executable segment this mapping shows; vaddr = pc - bias */
	for (uint32_t k = 0; k < t->nloads; k++) {
		uint64_t lo = t->loads[k].off & ~(uint64_t)4095;
		if (pgoff >= lo && pgoff < t->loads[k].off + t->loads[k].filesz) {
			em->bias = em->start - pgoff + t->loads[k].off - t->loads[k].vaddr;
			em->rows_start = t->start;
			em->rows_len = t->len;
			em->idx_start = t->start + t->len;
			em->idx_len = t->idx_len;
			em->idx_base = t->idx_base;
			t->refs++;
			return true;
		}
	}
	return false;
}

/* Counts how long p waited from its first sample for a table. */
static void count_ready(ag_unw *u, uproc *p)
{
	if (!p->event_ns)
		return;
	int64_t dt = ag_mono_ns() - p->event_ns;
	if (dt >= 0) {
		u->st.ready++;
		u->st.ready_ns += (uint64_t)dt;
		if ((uint64_t)dt > u->st.ready_ns_max)
			u->st.ready_ns_max = (uint64_t)dt;
	}
	p->event_ns = 0;
}

int ag_unw_proc(ag_unw *u, const ag_proc *pr)
{
	uproc **pp = find_proc(u, pr->pid), *p = *pp;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		p->pid = pr->pid;
		p->next = *pp;
		*pp = p;
		u->st.procs++;
	}
	if (u->event_pid == pr->pid && u->event_ns) {
		p->event_ns = u->event_ns;
		u->event_ns = 0;
	}
	release(p);
	p->n = 0;
	p->pending = false;
	u->clock++;
	bool any = false;
	for (size_t i = 0; i < pr->nmaps; i++) {
		const ag_mapping *m = &pr->maps[i];
		if (m->kind == AG_MAP_ANON)
			continue;           /* JIT code: frame pointers */
		if (p->n == SM_UNW_MAX_MAPS) {
			u->st.maps_over++;
			break;
		}
		if (p->n == p->cap) {
			uint32_t cap = p->cap ? 2 * p->cap : 16;
			umap *v = realloc(p->maps, cap * sizeof(*v));
			if (!v)
				break;
			p->maps = v;
			p->cap = cap;
		}
		uint32_t k = p->n++;
		umap *um = &p->maps[k];
		memset(um, 0, sizeof(*um));
		um->m.start = m->start;
		um->m.end = m->end;
		um->pgoff = m->pgoff;
		utab *t = um->t = tab_for(u, pr->pid, m);
		if (!t)
			continue;
		t->last_used = u->clock;
		t->used_ns = ag_mono_ns();
		if (fill(p, k))
			any = true;
		else if (t->building)
			p->pending = true;
		else
			um->t = NULL;  /* kept only with a reference, or while
			                * building: else it may be evicted */
	}
	uint32_t key = (uint32_t)pr->pid;
	if (!any && !p->pending) {
		/* nothing a table helps with: frame pointers, as without us */
		ag_unw_proc_gone(u, pr->pid);
		return 0;
	}
	int rc = write_entry(u, p);
	if (rc)
		return rc;
	/* the entry names this process' mappings now: what the walker found
	 * for itself may be stale (a library unmapped since) */
	bpf_map_delete_elem(u->o.found_fd, &key);
	if (any)
		count_ready(u, p);
	return 0;
}

bool ag_unw_builds_finished(ag_unw *u)
{
	size_t n = 0;
	pthread_mutex_lock(&u->mu);
	for (const job *j = u->done; j; j = j->next)
		n++;
	pthread_mutex_unlock(&u->mu);
	return n == u->inflight;
}

int ag_unw_tick(ag_unw *u)
{
	pthread_mutex_lock(&u->mu);
	job *done = u->done;
	u->done = NULL;
	pthread_mutex_unlock(&u->mu);
	if (!done)
		return (int)u->inflight;
	bool installed = false;
	for (job *j = done; j; j = j->next) {
		u->inflight--;
		installed |= install(u, j);
	}
	if (!installed) {
		free_jobs(done);
		return (int)u->inflight;
	}
	/* complete the entries that waited */
	for (size_t b = 0; b < NBUCKETS; b++)
		for (uproc *p = u->procs[b]; p; p = p->next) {
			if (!p->pending)
				continue;
			bool changed = false, still = false;
			for (uint32_t i = 0; i < p->n; i++) {
				if (!p->maps[i].t || p->maps[i].m.rows_len)
					continue;
				if (fill(p, i))
					changed = true;
				else if (p->maps[i].t->building)
					still = true;
				else
					p->maps[i].t = NULL;
			}
			p->pending = still;
			if (changed && write_entry(u, p) == 0)
				count_ready(u, p);
		}
	/* taken by those that waited: evictable like any other from now on */
	for (job *j = done; j; j = j->next)
		j->t->fresh = false;
	free_jobs(done);
	return (int)u->inflight;
}

void ag_unw_event(ag_unw *u, pid_t pid, int64_t mono_ns)
{
	u->event_pid = pid;
	u->event_ns = mono_ns;
}

void ag_unw_proc_gone(ag_unw *u, pid_t pid)
{
	uproc **pp = find_proc(u, pid), *p = *pp;
	if (!p)
		return;
	uint32_t key = (uint32_t)pid;
	bpf_map_delete_elem(u->o.procs_fd, &key);
	release(p);
	*pp = p->next;
	free(p->maps);
	free(p);
	u->st.procs--;
}

void ag_unw_get_stats(const ag_unw *u, ag_unw_stats *out)
{
	*out = u->st;
}
