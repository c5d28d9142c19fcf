/* rollup.c - the roll-up levels' files (rollup.h): loading them, saying
 * which spans are due and what from, writing and installing them,
 * expiring them, and cutting a read's span of a level into files and the
 * parts only raw rows can answer. What a file holds and how it is named:
 * docs/format.md, section 7. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/rollup.h"

#define NSEC INT64_C(1000000000)
#define DAY_NS (86400 * NSEC)
#define FILE_EXT ".smr"
#define NAME_LEN (16 + 1 + 16 + 4)   /* START-END.smr, hex nanoseconds */

struct st__ru_file {
	char path[PATH_MAX];
	size_t level;
	int64_t start, end;      /* its span: every row of it lies within */
	void *map;
	size_t map_len;
	st__block b;
	bool parsed;
	atomic_int refs;
	bool stale;              /* a cut added rows to its span since (lock) */
	atomic_bool damaged;     /* did not parse, or a chunk failed its CRC */
	_Atomic(uint32_t *) gidx; /* read.c's registry indices of its stacks */
};

typedef struct rlevel {
	int64_t step;            /* of its rows */
	int64_t unit;            /* the span of a file written before its day ends */
	int64_t span;            /* the span of a file once its day has ended */
	char dir[PATH_MAX];
	st__ru_file **f;         /* by start; spans do not overlap */
	size_t n, cap;
	atomic_uint_fast64_t rows_read;
} rlevel;

struct st__ru {
	rlevel lv[ST_MAX_ROLLUPS];
	size_t nlv;
	int64_t partition_ns, grace_ns, raw_floor;
	uint32_t chunk_rows;
	st__ru_cover_fn covered;
	void *carg;
	atomic_uint_fast64_t damaged, fallbacks;
};

static int64_t floor_to(int64_t t, int64_t m)
{
	int64_t r = t % m;
	return r < 0 ? t - r - m : t - r;
}

static int64_t ceil_to(int64_t t, int64_t m)
{
	int64_t f = floor_to(t, m);
	return f == t ? t : f + m;
}

static int64_t gcd64(int64_t a, int64_t b)
{
	while (b) {
		int64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* ---- files ---- */

void st__ru_file_unref(st__ru_file *f)
{
	if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
		return;
	if (f->parsed)
		st__block_release(&f->b);
	free(atomic_load(&f->gidx));
	if (f->map)
		munmap(f->map, f->map_len);
	free(f);
}

const st__block *st__ru_file_block(const st__ru_file *f) { return &f->b; }
_Atomic(uint32_t *) *st__ru_file_gidx(st__ru_file *f) { return &f->gidx; }
const char *st__ru_file_path(const st__ru_file *f) { return f->path; }
size_t st__ru_file_level(const st__ru_file *f) { return f->level; }

/* Maps and parses the file at path; a damaged one comes back with
 * damaged set and the reason in err, so it can stand in its span until
 * it is rebuilt. -errno when it cannot be read at all. */
static int file_open(const st__ru *r, size_t level, const char *path, int64_t start,
                     int64_t end, st__ru_file **out, base_err *err)
{
	const rlevel *lv = &r->lv[level];
	st__ru_file *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	atomic_init(&f->refs, 1);
	snprintf(f->path, sizeof(f->path), "%s", path);
	f->level = level;
	f->start = start;
	f->end = end;
	int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		rc = base_fail(err, -errno, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(f);
		return rc;
	}
	f->map_len = (size_t)st.st_size;
	if (f->map_len) {
		f->map = mmap(NULL, f->map_len, PROT_READ, MAP_SHARED, fd, 0);
		if (f->map == MAP_FAILED) {
			rc = base_fail(err, -errno, "%s: mmap: %s", path, strerror(errno));
			close(fd);
			free(f);
			return rc;
		}
	}
	close(fd);
	rc = st__block_parse(f->map, f->map_len, &f->b, err);
	if (!rc) {
		f->parsed = true;
		if (f->b.step_s != lv->step / NSEC)
			rc = base_fail(err, -EBADMSG, "its step is %" PRIu32 " s, its level's %" PRId64
			              " s", f->b.step_s, lv->step / NSEC);
		else if (f->b.mint < start || f->b.maxt >= end)
			rc = base_fail(err, -EBADMSG, "it holds rows outside the span its name gives");
	}
	if (rc == -EBADMSG) {
		atomic_store(&f->damaged, true);
		rc = 0;
	} else if (rc) {
		st__ru_file_unref(f);
		return rc;
	}
	*out = f;
	return 0;
}

static uint64_t file_cover(const st__ru_file *f, int64_t part)
{
	if (!f->parsed)
		return 0;
	for (uint32_t i = 0; i < f->b.ncover; i++)
		if (f->b.cover[i].partition_start == part)
			return f->b.cover[i].wal_lsn;
	return 0;
}

/* Whether f holds every row that blocks hold for its span: its coverage
 * is the store's, partition by partition. */
static bool file_fresh(const st__ru *r, const st__ru_file *f)
{
	for (int64_t p = f->start; p < f->end; p += r->partition_ns)
		if (r->covered(r->carg, p) != file_cover(f, p))
			return false;
	return true;
}

/* A file a read may use: intact, and holding every row of its span, or
 * stale but the best there is, because raw rows of its span may be gone
 * (the rows cut late for it were then cut into blocks that retention
 * deletes in turn). */
static bool usable(const st__ru *r, const st__ru_file *f)
{
	return !atomic_load(&f->damaged) && (!f->stale || f->start < r->raw_floor);
}

static int level_push(rlevel *lv, st__ru_file *f)
{
	if (base_grow(&lv->f, &lv->cap, lv->n + 1, sizeof(*lv->f)))
		return -ENOMEM;
	size_t i = lv->n;
	while (i > 0 && lv->f[i - 1]->start > f->start) {
		lv->f[i] = lv->f[i - 1];
		i--;
	}
	lv->f[i] = f;
	lv->n++;
	return 0;
}

static int cmp_file(const void *a, const void *b)
{
	const st__ru_file *x = *(st__ru_file *const *)a, *y = *(st__ru_file *const *)b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->end > y->end ? -1 : x->end < y->end;   /* the bigger first */
}

/* Parses START-END.smr (hex nanoseconds). */
static bool parse_name(const char *n, int64_t *start, int64_t *end)
{
	if (strlen(n) != NAME_LEN || n[16] != '-' || strcmp(n + 33, FILE_EXT))
		return false;
	uint64_t v[2] = {0, 0};
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 16; i++) {
			char c = n[k * 17 + i];
			int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
			if (d < 0)
				return false;
			v[k] = v[k] << 4 | (uint64_t)d;
		}
	if (v[0] >= v[1] || v[1] > (uint64_t)ST_MAX_TS_NS + DAY_NS)
		return false;
	*start = (int64_t)v[0];
	*end = (int64_t)v[1];
	return true;
}

static void file_name(char *buf, size_t len, const rlevel *lv, int64_t start, int64_t end)
{
	snprintf(buf, len, "%s/%016" PRIx64 "-%016" PRIx64 FILE_EXT, lv->dir, (uint64_t)start,
	         (uint64_t)end);
}

static int load_level(st__ru *r, size_t li, base_err *err)
{
	rlevel *lv = &r->lv[li];
	DIR *d = opendir(lv->dir);
	if (!d)
		return base_fail(err, -errno, "%s: %s", lv->dir, strerror(errno));
	int rc = 0;
	bool removed = false;
	struct dirent *e;
	while (!rc && (e = readdir(d))) {
		const char *n = e->d_name;
		size_t len = strlen(n);
		char path[PATH_MAX + 64];
		snprintf(path, sizeof(path), "%s/%s", lv->dir, n);
		if (len > 4 && !strcmp(n + len - 4, ".tmp")) {
			unlink(path);   /* a write a crash cut short */
			removed = true;
			continue;
		}
		int64_t start, end;
		if (!parse_name(n, &start, &end))
			continue;
		if (start % lv->unit || end % lv->unit) {
			fprintf(stderr, "smolder storage: ignoring %s: its span is not whole "
			        "%" PRId64 " s units\n", path, lv->unit / NSEC);
			continue;
		}
		st__ru_file *f;
		base_err fe = {0};
		if ((rc = file_open(r, li, path, start, end, &f, &fe))) {
			base_fail(err, rc, "roll-up file %s", fe.msg);
			break;
		}
		if (atomic_load(&f->damaged)) {
			atomic_fetch_add(&r->damaged, 1);
			fprintf(stderr, "smolder storage: roll-up file %s is damaged (%s); reads use "
			        "finer data for its span until st_rollup rebuilds it\n", path, fe.msg);
		}
		rc = level_push(lv, f);
		if (rc)
			st__ru_file_unref(f);
	}
	closedir(d);
	if (rc)
		return rc;
	/* a bigger file replaced the smaller ones inside its span, and a crash
	 * came before they were deleted: the bigger one wins */
	if (lv->n)
		qsort(lv->f, lv->n, sizeof(*lv->f), cmp_file);
	size_t w = 0;
	int64_t last_end = INT64_MIN;
	for (size_t i = 0; i < lv->n; i++) {
		st__ru_file *f = lv->f[i];
		if (f->start < last_end) {
			unlink(f->path);
			removed = true;
			st__ru_file_unref(f);
			continue;
		}
		last_end = f->end;
		lv->f[w++] = f;
	}
	lv->n = w;
	if (removed)
		st__fsync_dir(lv->dir);
	return 0;
}

int st__ru_open(const st__ru_opts *o, st__ru **out, base_err *err)
{
	int rc = 0;
	if (o->nsteps > ST_MAX_ROLLUPS)
		return base_fail(err, -EINVAL, "at most %d roll-up levels", ST_MAX_ROLLUPS);
	st__ru *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->partition_ns = o->partition_ns;
	r->grace_ns = o->grace_ns;
	r->chunk_rows = o->chunk_rows;
	r->covered = o->covered;
	r->carg = o->carg;
	r->raw_floor = o->raw_floor;
	for (size_t i = 0; i < o->nsteps && !rc; i++) {
		int64_t s = o->steps[i];
		if (s <= 0 || s % NSEC || s / NSEC > UINT32_MAX ||
		    (i > 0 && s % o->steps[i - 1])) {
			rc = base_fail(err, -EINVAL, "roll-up steps must be whole seconds, each "
			              "dividing the next");
			break;
		}
		rlevel *lv = &r->lv[i];
		lv->step = s;
		/* a file holds whole partitions and whole steps: the smallest
		 * multiple of both, then whole units up to a day */
		int64_t lcm = s / gcd64(s, o->partition_ns) * o->partition_ns;
		lv->unit = lcm;
		lv->span = ceil_to(DAY_NS, lcm);
		snprintf(lv->dir, sizeof(lv->dir), "%s/%" PRId64 "s", o->dir, s / NSEC);
		if ((rc = st__mkdir_p(lv->dir))) {
			base_fail(err, rc, "creating %s: %s", lv->dir, strerror(-rc));
			break;
		}
		r->nlv = i + 1;
		rc = load_level(r, i, err);
	}
	if (rc) {
		st__ru_close(r);
		return rc;
	}
	for (size_t i = 0; i < r->nlv; i++)
		for (size_t j = 0; j < r->lv[i].n; j++)
			r->lv[i].f[j]->stale = !file_fresh(r, r->lv[i].f[j]);
	*out = r;
	return 0;
}

void st__ru_close(st__ru *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nlv; i++) {
		for (size_t j = 0; j < r->lv[i].n; j++)
			st__ru_file_unref(r->lv[i].f[j]);
		free(r->lv[i].f);
	}
	free(r);
}

size_t st__ru_nlevels(const st__ru *r) { return r ? r->nlv : 0; }
int64_t st__ru_step(const st__ru *r, size_t level) { return r->lv[level].step; }

int st__ru_level(const st__ru *r, int64_t step)
{
	for (size_t i = 0; r && i < r->nlv; i++)
		if (r->lv[i].step == step)
			return (int)i;
	return -1;
}

void st__ru_cut(st__ru *r, int64_t part)
{
	for (size_t i = 0; r && i < r->nlv; i++)
		for (size_t j = 0; j < r->lv[i].n; j++) {
			st__ru_file *f = r->lv[i].f[j];
			if (f->start <= part && part < f->end)
				f->stale = true;
		}
}

void st__ru_raw_floor(st__ru *r, int64_t floor)
{
	if (r && floor > r->raw_floor)
		r->raw_floor = floor;
}

int64_t st__ru_get_raw_floor(const st__ru *r) { return r ? r->raw_floor : 0; }

bool st__ru_file_damaged(st__ru *r, st__ru_file *f)
{
	if (!atomic_exchange(&f->damaged, true)) {
		atomic_fetch_add(&r->damaged, 1);
		fprintf(stderr, "smolder storage: roll-up file %s is damaged (a chunk failed its "
		        "checksum); reads use finer data for its span until st_rollup rebuilds "
		        "it\n", f->path);
	}
	return f->start >= r->raw_floor;
}

void st__ru_fallback(st__ru *r)
{
	atomic_fetch_add(&r->fallbacks, 1);
}

void st__ru_count(st__ru *r, size_t level, uint64_t rows)
{
	atomic_fetch_add_explicit(&r->lv[level].rows_read, rows, memory_order_relaxed);
}

/* ---- reading ---- */

static int part_add(st__ru_part **v, size_t *n, size_t *cap, st__ru_file *f, int64_t from,
                    int64_t to)
{
	if (from >= to)
		return 0;
	/* neighbouring raw parts become one */
	if (!f && *n && !(*v)[*n - 1].f && (*v)[*n - 1].to == from) {
		(*v)[*n - 1].to = to;
		return 0;
	}
	if (base_grow(v, cap, *n + 1, sizeof(**v)))
		return -ENOMEM;
	if (f)
		atomic_fetch_add(&f->refs, 1);
	(*v)[(*n)++] = (st__ru_part){f, from, to};
	return 0;
}

int st__ru_parts(st__ru *r, int64_t step, int64_t from, int64_t to, st__ru_part **out,
                 size_t *n)
{
	st__ru_part *v = NULL;
	size_t nv = 0, cap = 0;
	int rc = 0, li = st__ru_level(r, step);
	int64_t a = li < 0 ? to : ceil_to(from, step), b = li < 0 ? to : floor_to(to, step);
	if (a >= b) {
		rc = part_add(&v, &nv, &cap, NULL, from, to);
		goto out;
	}
	rc = part_add(&v, &nv, &cap, NULL, from, a);
	int64_t at = a;
	const rlevel *lv = &r->lv[li];
	for (size_t i = 0; i < lv->n && !rc && at < b; i++) {
		st__ru_file *f = lv->f[i];
		if (f->end <= at)
			continue;
		if (f->start >= b)
			break;
		int64_t s = f->start > at ? f->start : at, e = f->end < b ? f->end : b;
		rc = part_add(&v, &nv, &cap, NULL, at, s);
		rc = rc ? rc : part_add(&v, &nv, &cap, usable(r, f) ? f : NULL, s, e);
		at = e;
	}
	rc = rc ? rc : part_add(&v, &nv, &cap, NULL, at, b);
	rc = rc ? rc : part_add(&v, &nv, &cap, NULL, b, to);
out:
	if (rc) {
		for (size_t i = 0; i < nv; i++)
			st__ru_file_unref(v[i].f);
		free(v);
		return rc;
	}
	*out = v;
	*n = nv;
	return 0;
}

int st__ru_spans(st__ru *r, int64_t step, int64_t from, int64_t to, st_span **out, size_t *n)
{
	int li = st__ru_level(r, step);
	if (li < 0)
		return -EINVAL;
	st_span *v = NULL;
	size_t nv = 0, cap = 0;
	int64_t a = ceil_to(from, step), b = floor_to(to, step);
	const rlevel *lv = &r->lv[li];
	for (size_t i = 0; i < lv->n && a < b; i++) {
		const st__ru_file *f = lv->f[i];
		if (f->end <= a || f->start >= b || !usable(r, f))
			continue;
		int64_t s = f->start > a ? f->start : a, e = f->end < b ? f->end : b;
		if (nv && v[nv - 1].to_ns == s) {
			v[nv - 1].to_ns = e;
			continue;
		}
		if (base_grow(&v, &cap, nv + 1, sizeof(*v))) {
			free(v);
			return -ENOMEM;
		}
		v[nv++] = (st_span){step, s, e};
	}
	*out = v;
	*n = nv;
	return 0;
}

/* Whether usable files of the levels below `below` cover [from, to). */
static bool finer_cover(const st__ru *r, size_t below, int64_t from, int64_t to)
{
	for (size_t li = 0; li < below; li++) {
		int64_t at = from;
		const rlevel *lv = &r->lv[li];
		for (size_t i = 0; i < lv->n && at < to; i++)
			if (lv->f[i]->start <= at && at < lv->f[i]->end && usable(r, lv->f[i]))
				at = lv->f[i]->end;
		if (at >= to)
			return true;
	}
	return false;
}

const char *st__ru_lost(const st__ru *r, int64_t from, int64_t to)
{
	if (to > (r ? r->raw_floor : 0))
		to = r ? r->raw_floor : 0;
	for (size_t li = 0; r && li < r->nlv && from < to; li++)
		for (size_t i = 0; i < r->lv[li].n; i++) {
			const st__ru_file *f = r->lv[li].f[i];
			int64_t s = f->start > from ? f->start : from, e = f->end < to ? f->end : to;
			if (s < e && atomic_load(&f->damaged) && !finer_cover(r, li, s, e))
				return f->path;
		}
	return NULL;
}

/* ---- building ---- */

void st__ru_jobs_free(st__ru_job *j, size_t n)
{
	for (size_t i = 0; j && i < n; i++) {
		for (size_t k = 0; k < j[i].nsrc; k++)
			st__ru_file_unref(j[i].src[k]);
		free(j[i].src);
	}
	free(j);
}

/* The usable file of lv whose span is exactly [s, e), if any. */
static const st__ru_file *exact(const st__ru *r, const rlevel *lv, int64_t s, int64_t e)
{
	for (size_t i = 0; i < lv->n; i++)
		if (lv->f[i]->start == s && lv->f[i]->end == e)
			return usable(r, lv->f[i]) ? lv->f[i] : NULL;
	return NULL;
}

/* The usable files of lv that hold the covered partitions of [s, e)
 * between them (other than one spanning exactly [s, e) when not_exact:
 * a span is not rebuilt from itself); *ok false when one of those
 * partitions has none. */
static int sources(const st__ru *r, const rlevel *lv, int64_t s, int64_t e, bool not_exact,
                   const int64_t *parts, size_t nparts, st__ru_job *job, bool *ok)
{
	*ok = false;
	size_t cap = 0;
	for (size_t p = 0; p < nparts; p++) {
		if (parts[p] < s || parts[p] >= e)
			continue;
		st__ru_file *hit = NULL;
		for (size_t i = 0; i < lv->n && !hit; i++) {
			st__ru_file *f = lv->f[i];
			if (f->start <= parts[p] && parts[p] < f->end && usable(r, f) &&
			    !(not_exact && f->start == s && f->end == e))
				hit = f;
		}
		if (!hit)
			return 0;
		if (job->nsrc && job->src[job->nsrc - 1] == hit)
			continue;
		if (base_grow(&job->src, &cap, job->nsrc + 1, sizeof(*job->src)))
			return -ENOMEM;
		atomic_fetch_add(&hit->refs, 1);
		job->src[job->nsrc++] = hit;
	}
	*ok = job->nsrc > 0;
	return 0;
}

static int job_add(st__ru_job **v, size_t *n, size_t *cap, const st__ru_job *j)
{
	if (base_grow(v, cap, *n + 1, sizeof(**v)))
		return -ENOMEM;
	(*v)[(*n)++] = *j;
	return 0;
}

static void job_clear(st__ru_job *j)
{
	for (size_t k = 0; k < j->nsrc; k++)
		st__ru_file_unref(j->src[k]);
	free(j->src);
	j->src = NULL;
	j->nsrc = 0;
}

int st__ru_todo(st__ru *r, size_t li, const int64_t *parts, size_t nparts, int64_t now,
                int64_t keep_after, st__ru_job **out, size_t *n)
{
	st__ru_job *v = NULL;
	size_t nv = 0, cap = 0;
	int rc = 0;
	const rlevel *lv = &r->lv[li];
	int64_t last = INT64_MIN;
	for (size_t p = 0; p < nparts && !rc; p++) {
		/* each day-long span once; before its day is over, each unit */
		int64_t ds = floor_to(parts[p], lv->span), de = ds + lv->span;
		bool day_over = de <= now - r->grace_ns;
		int64_t s = day_over ? ds : floor_to(parts[p], lv->unit);
		int64_t e = day_over ? de : s + lv->unit;
		if (s == last)
			continue;
		last = s;
		if (e > now - r->grace_ns || e <= keep_after || exact(r, lv, s, e))
			continue;
		st__ru_job j = {li, s, e, NULL, 0};
		bool ok = false;
		/* the same level's smaller files (a day of hours), else the level
		 * below, else raw rows while they are all there */
		rc = sources(r, lv, s, e, true, parts, nparts, &j, &ok);
		if (!rc && !ok && li > 0) {
			job_clear(&j);
			rc = sources(r, &r->lv[li - 1], s, e, false, parts, nparts, &j, &ok);
		}
		if (!rc && !ok) {
			job_clear(&j);
			if (s < r->raw_floor)
				continue;  /* nothing complete to build it from */
		}
		if (!rc && !ok && day_over && lv->unit < lv->span) {
			/* a day from raw rows: its units' files first (their last
			 * one cannot exist before the day is over), and the day
			 * from them at the next pass. A file's groups are summed
			 * from raw rows in memory, which holds an hour of a big
			 * fleet's groups but not a day's; merged from files they
			 * are series like any other */
			int64_t lu = INT64_MIN;
			for (size_t q = 0; q < nparts && !rc; q++) {
				int64_t us = floor_to(parts[q], lv->unit);
				if (parts[q] < s || parts[q] >= e || us == lu)
					continue;
				lu = us;
				st__ru_job u = {li, us, us + lv->unit, NULL, 0};
				if (!exact(r, lv, us, us + lv->unit))
					rc = job_add(&v, &nv, &cap, &u);
			}
			continue;
		}
		rc = rc ? rc : job_add(&v, &nv, &cap, &j);
		if (rc)
			job_clear(&j);
	}
	if (rc) {
		st__ru_jobs_free(v, nv);
		return rc;
	}
	*out = v;
	*n = nv;
	return 0;
}

int st__ru_write(st__ru *r, const st__ru_job *job, const st__block *const *in, size_t nin,
                 const st__blk_cover *covers, size_t ncovers, const uint64_t *gsids,
                 const uint64_t (*gids)[ST__MAX_GROUPS], size_t ngsids, st__ru_file **out,
                 base_err *err)
{
	const rlevel *lv = &r->lv[job->level];
	char path[PATH_MAX + 64], tmp[PATH_MAX + 80];
	file_name(path, sizeof(path), lv, job->start, job->end);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return base_fail(err, -errno, "%s: %s", tmp, strerror(errno));
	st__block_spec spec = {.cover = covers, .ncover = (uint32_t)ncovers,
	                       .chunk_rows = r->chunk_rows, .window = true, .from = job->start,
	                       .to = job->end, .step_s = (uint32_t)(lv->step / NSEC),
	                       .gsids = gsids, .gids = gids, .ngsids = ngsids};
	rc = nin ? st__block_merge_fd(fd, in, nin, &spec) : -ENODATA;
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (!rc)
		rc = st__fsync_dir(lv->dir);
	if (rc) {
		unlink(tmp);
		if (rc != -ENODATA)
			base_fail(err, rc, "writing %s: %s", path, strerror(-rc));
		return rc;
	}
	st__ru_file *f;
	rc = file_open(r, job->level, path, job->start, job->end, &f, err);
	if (!rc && atomic_load(&f->damaged)) {
		st__ru_file_unref(f);
		return base_fail(err, -EIO, "%s reads back damaged", path);
	}
	if (!rc)
		*out = f;
	return rc;
}

void st__ru_install(st__ru *r, st__ru_file *f)
{
	rlevel *lv = &r->lv[f->level];
	size_t w = 0;
	for (size_t i = 0; i < lv->n; i++) {
		st__ru_file *o = lv->f[i];
		if (o->end <= f->start || o->start >= f->end) {
			lv->f[w++] = o;
			continue;
		}
		/* replaced: a file of the same span took its name by rename;
		 * smaller ones inside the new span go (a crash before this is
		 * resolved at open: the bigger file wins) */
		if (strcmp(o->path, f->path))
			unlink(o->path);
		st__ru_file_unref(o);
	}
	lv->n = w;
	f->stale = !file_fresh(r, f);
	if (level_push(lv, f)) {
		/* no room to list it: it stays on disk for the next open */
		st__ru_file_unref(f);
	}
}

int st__ru_expire(st__ru *r, int64_t limit, st__ru_file ***gone, size_t *n)
{
	size_t total = 0;
	*gone = NULL;
	*n = 0;
	for (size_t i = 0; r && i < r->nlv; i++)
		total += r->lv[i].n;
	if (!total)
		return 0;
	st__ru_file **g = malloc(total * sizeof(*g));
	if (!g)
		return -ENOMEM;
	size_t ng = 0;
	for (size_t i = 0; i < r->nlv; i++) {
		rlevel *lv = &r->lv[i];
		size_t w = 0;
		for (size_t j = 0; j < lv->n; j++) {
			if (lv->f[j]->end <= limit)
				g[ng++] = lv->f[j];
			else
				lv->f[w++] = lv->f[j];
		}
		lv->n = w;
	}
	*gone = g;
	*n = ng;
	return 0;
}

void st__ru_drop(st__ru *r, st__ru_file **gone, size_t n)
{
	bool synced[ST_MAX_ROLLUPS] = {false};
	for (size_t i = 0; i < n; i++) {
		fprintf(stderr, "smolder storage: roll-up retention deletes %s\n", gone[i]->path);
		unlink(gone[i]->path);
		synced[gone[i]->level] = true;
		st__ru_file_unref(gone[i]);
	}
	for (size_t i = 0; r && i < r->nlv; i++)
		if (synced[i])
			st__fsync_dir(r->lv[i].dir);
}

void st__ru_series(const st__ru *r, st__ru_series_fn fn, void *arg)
{
	for (size_t i = 0; r && i < r->nlv; i++)
		for (size_t j = 0; j < r->lv[i].n; j++) {
			const st__ru_file *f = r->lv[i].f[j];
			for (uint32_t s = 0; f->parsed && s < f->b.nseries; s++)
				fn(arg, f->b.series[s].id, f->b.series[s].mint,
				   f->b.series[s].maxt + r->lv[i].step - 1);
		}
}

void st__ru_stats(const st__ru *r, st_stats *o)
{
	o->nrollups = (uint32_t)st__ru_nlevels(r);
	o->rollup_damaged = r ? atomic_load(&r->damaged) : 0;
	o->rollup_fallbacks = r ? atomic_load(&r->fallbacks) : 0;
	for (size_t i = 0; r && i < r->nlv; i++) {
		const rlevel *lv = &r->lv[i];
		o->rollup_steps_ns[i] = lv->step;
		o->rows_read[1 + i] = atomic_load(&((rlevel *)lv)->rows_read);
		for (size_t j = 0; j < lv->n; j++) {
			o->rollup_files[i]++;
			o->rollup_bytes[i] += lv->f[j]->map_len;
			if (lv->f[j]->parsed)
				o->rollup_rows[i] += lv->f[j]->b.nrows;
		}
	}
}
