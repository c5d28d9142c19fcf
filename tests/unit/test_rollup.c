/* test_rollup.c - unit tests of the roll-up levels (storage/rollup.c) and
 * the query planner that reads them (query/plan.c), over a week of data
 * whose sums are known: roll-ups answer exactly what raw rows answer, at
 * any range, through retention, crashes and damage. Every test builds its
 * own store in a temporary directory, removed even when it fails. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "query/query.h"
#include "storage/st_int.h"
#include "tests/fuzz/fixcrc.h"

#define TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"
#define SEC 1000000000LL
#define MIN (60 * SEC)
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)
#define T0 (1767225600LL * SEC) /* 2026-01-01T00:00:00Z */
#define NSER 6
#define NSTK 30
#define EVERY (5 * MIN)         /* one row per (series, stack) this often */
#define DAYS 7

/* ---- fixtures ---- */

typedef struct fx {
	char dir[1024];
} fx;

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	const char *base = getenv("SMOLDER_TEST_TMP");
	snprintf(f->dir, sizeof(f->dir), "%s/ru.XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(f->dir))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	st__rm_rf(f->dir);
	free(f);
	return 0;
}

static const uint8_t bid[20] = {0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
static const st_object obj = {bid, 20, "/usr/bin/app"};

/* Stack k: app+0x1000+k (leaf), app+0x200+k%4, app+0x40 (root). */
typedef struct tstack {
	st_frame fr[3];
	st_stack_def def;
} tstack;

static tstack stacks[NSTK];
static char hosts[NSER][16];
static st_label labels[NSER][2];
static st_series_def series[NSER];

static void model_init(void)
{
	for (uint32_t k = 0; k < NSTK; k++) {
		tstack *s = &stacks[k];
		s->fr[0] = (st_frame){ST_FRAME_USER, 0, 0x1000 + k, NULL};
		s->fr[1] = (st_frame){ST_FRAME_USER, 0, 0x200 + k % 4, NULL};
		s->fr[2] = (st_frame){ST_FRAME_USER, 0, 0x40, NULL};
		s->def = (st_stack_def){st_stack_hash(&obj, 1, s->fr, 3), s->fr, 3};
	}
	for (uint32_t i = 0; i < NSER; i++) {
		snprintf(hosts[i], sizeof(hosts[i]), "host%u", i);
		labels[i][0] = (st_label){"hostname", hosts[i]};
		labels[i][1] = (st_label){"service", i % 2 ? "db" : "api"};
		series[i] = (st_series_def){TYPE, labels[i], 2};
	}
}

/* The value of (series i, stack k) at interval t: 0 means no row. Not
 * every stack every time, so steps differ in what they hold. */
static int64_t value_at(uint32_t i, uint32_t k, int64_t t)
{
	if ((t + k + i) % 3 == 0)
		return 0;
	return 1 + (t * 7 + k * 3 + i) % 5 + (k == 0 ? 40 : 0);
}

/* Appends the intervals whose time is in [from, to) as one batch and
 * adds each value to want (by stack) when want is not NULL. */
static int append_range(st_db *db, int64_t from, int64_t to, bool with_stacks, int64_t *want,
                        base_err *err)
{
	size_t cap = (size_t)((to - from) / EVERY + 1) * NSER * NSTK, n = 0;
	st_sample *sm = calloc(cap, sizeof(*sm));
	st_stack_def kd[NSTK];
	for (uint32_t k = 0; k < NSTK; k++)
		kd[k] = stacks[k].def;
	for (int64_t ts = from; ts < to; ts += EVERY) {
		int64_t t = (ts - T0) / EVERY;
		for (uint32_t i = 0; i < NSER; i++)
			for (uint32_t k = 0; k < NSTK; k++) {
				int64_t v = value_at(i, k, t);
				if (!v)
					continue;
				sm[n++] = (st_sample){ts, i, stacks[k].def.id, v};
				if (want)
					want[k] += v;
			}
	}
	st_batch b = {series, NSER, &obj, 1, with_stacks ? kd : NULL, with_stacks ? NSTK : 0, sm,
	              (uint32_t)n};
	int rc = st_append(db, &b, err);
	free(sm);
	return rc;
}

static st_options opts(void)
{
	st_options o;
	st_options_default(&o);
	o.chunk_rows = 500;      /* several chunks per block */
	o.cut_grace_ns = 0;
	o.retention_ns = 0;      /* the tests say when data goes */
	o.rollup_retention_ns = 0;
	return o;
}

/* A week from T0, an hour per batch, cut, compacted and rolled up as the
 * server's maintenance would a day after the week. want[k]: the week's sum
 * of stack k. */
static st_db *week(const char *dir, const st_options *o, int64_t *want)
{
	st_db *db;
	base_err err;
	if (st_open(dir, o, &db, &err))
		fail_msg("open: %s", err.msg);
	for (int64_t h = 0; h < DAYS * 24; h++) {
		if (append_range(db, T0 + h * HOUR, T0 + (h + 1) * HOUR, h == 0, want, &err))
			fail_msg("append: %s", err.msg);
		if (h % 6 == 5)
			assert_int_equal(st_cut(db, T0 + (h + 1) * HOUR, 0), 0);
	}
	assert_int_equal(st_cut(db, T0 + DAYS * DAY + HOUR, 1), 0);
	assert_int_equal(st_compact(db), 0);
	assert_int_equal(st_rollup(db, T0 + (DAYS + 1) * DAY), 0);
	return db;
}

static const st_matcher all[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}};
static const st_matcher api[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
                                 {"service", ST_MATCH_EQ, "api"}};

static int64_t total(st_db *db, const st_matcher *m, size_t nm, int64_t from, int64_t to,
                     bool raw)
{
	q_side s = {m, nm, from, to, raw};
	q_tree *t;
	base_err err = {0};
	if (q_merge(db, &s, NULL, &t, &err))
		fail_msg("merge: %s", err.msg);
	int64_t v = q_tree_total(t, 0);
	q_tree_free(t);
	return v;
}

/* Folded stacks of a merge: every stack's sum, comparable as text. */
static char *folded(st_db *db, const st_matcher *m, size_t nm, int64_t from, int64_t to,
                    bool raw)
{
	q_side s = {m, nm, from, to, raw};
	q_tree *t;
	base_buf b = {0};
	base_err err = {0};
	if (q_merge(db, &s, NULL, &t, &err))
		fail_msg("merge: %s", err.msg);
	assert_int_equal(q_tree_folded(t, &b), 0);
	q_tree_free(t);
	return b.data ? b.data : strdup("");
}

static uint64_t rows_read(st_db *db, uint64_t *raw)
{
	st_stats s;
	st_get_stats(db, &s);
	uint64_t n = 0;
	for (uint32_t i = 0; i < s.nrollups; i++)
		n += s.rows_read[1 + i];
	*raw = s.rows_read[0];
	return n;
}

/* ---- tests ---- */

/* The week's total equals what was ingested, the sum of the seven daily
 * totals, and a merge over raw rows only, stack by stack; and the roll-ups
 * were read, not the rows. */
static void test_week_totals(void **state)
{
	fx *f = *state;
	int64_t want[NSTK] = {0}, ingested = 0;
	st_options o = opts();
	st_db *db = week(f->dir, &o, want);
	for (int k = 0; k < NSTK; k++)
		ingested += want[k];

	st_stats s0;
	st_get_stats(db, &s0);
	assert_int_equal(s0.nrollups, 3);
	assert_true(s0.rollup_files[0] >= DAYS && s0.rollup_files[1] >= DAYS &&
	            s0.rollup_files[2] == DAYS);

	uint64_t raw0, lv0 = rows_read(db, &raw0);
	int64_t w = total(db, all, 1, T0, T0 + DAYS * DAY, false);
	uint64_t raw1, lv1 = rows_read(db, &raw1);
	assert_int_equal(w, ingested);
	/* whole days: the daily level alone, no raw row read */
	assert_int_equal(raw1 - raw0, 0);
	assert_true(lv1 - lv0 > 0);
	assert_true(lv1 - lv0 < s0.block_rows / 10);

	int64_t days = 0;
	for (int d = 0; d < DAYS; d++)
		days += total(db, all, 1, T0 + d * DAY, T0 + (d + 1) * DAY, false);
	assert_int_equal(days, ingested);
	assert_int_equal(total(db, all, 1, T0, T0 + DAYS * DAY, true), ingested);
	uint64_t raw2;
	rows_read(db, &raw2);
	assert_int_equal(raw2 - raw1, s0.block_rows);  /* the switch read every row */

	char *a = folded(db, all, 1, T0, T0 + DAYS * DAY, false);
	char *b = folded(db, all, 1, T0, T0 + DAYS * DAY, true);
	assert_string_equal(a, b);
	free(a);
	free(b);
	st_close(db);
}

/* Top rows, order and values, agree between roll-ups and raw rows. */
static void test_top_agrees(void **state)
{
	fx *f = *state;
	st_options o = opts();
	st_db *db = week(f->dir, &o, NULL);
	const int64_t from = T0 + 2 * DAY + 3 * HOUR, to = T0 + 6 * DAY + 20 * HOUR;
	char *out[2];
	for (int raw = 0; raw < 2; raw++) {
		q_side s = {api, 2, from, to, raw};
		q_tree *t;
		base_buf b = {0};
		base_err err = {0};
		assert_int_equal(q_merge(db, &s, NULL, &t, &err), 0);
		assert_int_equal(q_top_json(t, 10, &b), 0);
		q_tree_free(t);
		out[raw] = b.data;
	}
	assert_string_equal(out[0], out[1]);
	assert_non_null(strstr(out[0], "\"rows\":[{\"name\":\"[unknown] app+0x1000\""));
	free(out[0]);
	free(out[1]);
	st_close(db);
}

/* Ranges that start and end inside steps of every level: the ragged
 * edges come from finer data, and the flame graph and the timeline equal
 * raw rows'. */
static void test_mid_step_ranges(void **state)
{
	fx *f = *state;
	st_options o = opts();
	st_db *db = week(f->dir, &o, NULL);
	const struct {
		int64_t from, to;
	} r[] = {
		{T0 + 17 * MIN + 23 * SEC, T0 + 5 * DAY + 13 * HOUR + 42 * MIN + 11 * SEC},
		{T0 + DAY - 1, T0 + 2 * DAY + 1},
		{T0 + 3 * DAY + 30 * MIN, T0 + 3 * DAY + 90 * MIN},
		{T0 + HOUR + 1, T0 + HOUR + 2},
		{T0 - DAY, T0 + 9 * DAY},
	};
	for (size_t i = 0; i < sizeof(r) / sizeof(*r); i++) {
		char *a = folded(db, all, 1, r[i].from, r[i].to, false);
		char *b = folded(db, all, 1, r[i].from, r[i].to, true);
		if (strcmp(a, b))
			fail_msg("range %zu: roll-ups and raw rows differ", i);
		free(a);
		free(b);
		/* the timeline at steps each level tiles, and at one none does */
		const int64_t steps[] = {HOUR, 3 * HOUR, DAY, 7 * MIN};
		for (size_t k = 0; k < 4; k++) {
			if ((r[i].to - r[i].from) / steps[k] >= Q_MAX_RANGE_POINTS)
				continue;
			base_buf ja = {0}, jb = {0};
			base_err err = {0};
			q_side sa = {api, 2, r[i].from, r[i].to, false};
			q_side sb = {api, 2, r[i].from, r[i].to, true};
			assert_int_equal(q_range_json(db, &sa, steps[k], NULL, 0, 0, &ja, &err), 0);
			assert_int_equal(q_range_json(db, &sb, steps[k], NULL, 0, 0, &jb, &err), 0);
			if (strcmp(ja.data, jb.data))
				fail_msg("range %zu step %" PRId64 ": timelines differ:\n%s\n%s", i,
				         steps[k] / SEC, ja.data, jb.data);
			base_buf_free(&ja);
			base_buf_free(&jb);
		}
	}
	/* an unaligned range reads roll-ups in its middle, raw rows only at
	 * its edges: a small share of what raw rows alone take */
	uint64_t raw0, lv0 = rows_read(db, &raw0);
	total(db, all, 1, r[0].from, r[0].to, false);
	uint64_t raw1, lv1 = rows_read(db, &raw1);
	total(db, all, 1, r[0].from, r[0].to, true);
	uint64_t raw2;
	rows_read(db, &raw2);
	assert_true(lv1 > lv0);
	assert_true((raw1 - raw0) * 10 < raw2 - raw1);
	st_close(db);
}

/* Roll-ups outlive raw rows by their own retention, answer for the days
 * raw rows are gone, and go in their turn. */
static void test_retention(void **state)
{
	fx *f = *state;
	int64_t want[NSTK] = {0};
	st_options o = opts();
	o.retention_ns = 2 * DAY;
	o.rollup_retention_ns = 5 * DAY;
	st_db *db = week(f->dir, &o, want);
	/* the day 4 .. 5 totals before anything goes */
	int64_t d4 = total(db, all, 1, T0 + 4 * DAY, T0 + 5 * DAY, true);
	int64_t d45 = total(db, api, 2, T0 + 4 * DAY + 7 * HOUR, T0 + 5 * DAY + 3 * HOUR, false);
	const int64_t now = T0 + (DAYS + 1) * DAY;  /* raw rows before day 6, roll-ups before 3 */
	assert_int_equal(st_retention(db, now), 0);
	st_stats s;
	st_get_stats(db, &s);
	assert_true(s.blocks > 0);
	/* raw rows of day 4 are gone; the roll-ups still answer the day, and a
	 * range within the hours of days 4 and 5 */
	assert_int_equal(total(db, all, 1, T0 + 4 * DAY, T0 + 5 * DAY, true), 0);
	assert_int_equal(total(db, all, 1, T0 + 4 * DAY, T0 + 5 * DAY, false), d4);
	assert_int_equal(total(db, api, 2, T0 + 4 * DAY + 7 * HOUR, T0 + 5 * DAY + 3 * HOUR, false),
	                 d45);
	/* days before the roll-up retention are gone */
	assert_int_equal(total(db, all, 1, T0, T0 + 3 * DAY, false), 0);
	for (uint32_t i = 0; i < s.nrollups; i++)
		assert_true(s.rollup_files[i] > 0);
	/* and all of that survives a restart */
	st_close(db);
	assert_int_equal(st_open(f->dir, &o, &db, NULL), 0);
	assert_int_equal(total(db, all, 1, T0 + 4 * DAY, T0 + 5 * DAY, false), d4);
	assert_int_equal(total(db, all, 1, T0, T0 + 3 * DAY, false), 0);
	/* a rebuild does not replace a roll-up with what is left of raw rows */
	assert_int_equal(st_rollup(db, now), 0);
	assert_int_equal(total(db, all, 1, T0 + 4 * DAY, T0 + 5 * DAY, false), d4);
	st_close(db);
}

/* Late rows for a day already rolled up: the roll-up is out of date at
 * once (reads take raw rows there) and rebuilt by the next pass. */
static void test_late_rows(void **state)
{
	fx *f = *state;
	int64_t want[NSTK] = {0};
	st_options o = opts();
	st_db *db = week(f->dir, &o, want);
	base_err err;
	int64_t before = total(db, all, 1, T0, T0 + DAYS * DAY, false);
	/* the same hour of day 2 again: twice its rows */
	int64_t extra[NSTK] = {0}, add = 0;
	assert_int_equal(append_range(db, T0 + 2 * DAY + 5 * HOUR, T0 + 2 * DAY + 6 * HOUR, false,
	                              extra, &err), 0);
	for (int k = 0; k < NSTK; k++)
		add += extra[k];
	/* in the head */
	assert_int_equal(total(db, all, 1, T0, T0 + DAYS * DAY, false), before + add);
	/* cut into a block: the day's roll-ups no longer hold every row */
	assert_int_equal(st_cut(db, T0 + 9 * DAY, 1), 0);
	assert_int_equal(total(db, all, 1, T0, T0 + DAYS * DAY, false), before + add);
	char *a = folded(db, all, 1, T0 + 2 * DAY, T0 + 3 * DAY, false);
	char *b = folded(db, all, 1, T0 + 2 * DAY, T0 + 3 * DAY, true);
	assert_string_equal(a, b);
	free(a);
	free(b);
	assert_int_equal(st_rollup(db, T0 + 9 * DAY), 0);
	uint64_t raw0, lv0 = rows_read(db, &raw0);
	assert_int_equal(total(db, all, 1, T0 + 2 * DAY, T0 + 3 * DAY, false),
	                 total(db, all, 1, T0 + 2 * DAY, T0 + 3 * DAY, true));
	uint64_t raw1, lv1 = rows_read(db, &raw1);
	assert_true(lv1 > lv0);
	st_close(db);
}

/* ---- damage ---- */

/* The path of level `step_s`'s file spanning [start, end). */
static void ru_path(char *buf, size_t len, const char *dir, int64_t step_s, int64_t start,
                    int64_t end)
{
	snprintf(buf, len, "%s/rollup/%" PRId64 "s/%016" PRIx64 "-%016" PRIx64 ".smr", dir, step_s,
	         (uint64_t)start, (uint64_t)end);
}

static void flip(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

/* Runs fn with stderr going to a file, returns what was written there. */
static char *stderr_of(void (*fn)(void *), void *arg)
{
	char path[] = "/tmp/ru-stderr.XXXXXX";
	int fd = mkstemp(path), saved = dup(2);
	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	off_t len = lseek(fd, 0, SEEK_END);
	char *text = calloc((size_t)len + 1, 1);
	assert_int_equal(pread(fd, text, (size_t)len, 0), len);
	close(fd);
	unlink(path);
	return text;
}

/* The file offset of the first chunk of roll-up file path's group of
 * the whole type, which a merge of every series reads. */
static long type_chunk(const char *path)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	off_t len = lseek(fd, 0, SEEK_END);
	uint8_t *img = malloc((size_t)len);
	assert_int_equal(pread(fd, img, (size_t)len, 0), len);
	close(fd);
	st__block b;
	base_err err;
	assert_int_equal(st__block_parse(img, (size_t)len, &b, &err), 0);
	assert_true(b.ngroups > 0);
	long off = -1;
	for (uint32_t c = 0; c < b.nchunks && off < 0; c++)
		if (b.chunks[c].first_series == b.groups[0].series)
			off = (long)b.chunks[c].off;
	assert_true(off > 0);
	st__block_release(&b);
	free(img);
	return off;
}

typedef struct dmg {
	const char *dir;
	st_options o;
	st_db *db;
} dmg;

static void dmg_open(void *arg)
{
	dmg *d = arg;
	assert_int_equal(st_open(d->dir, &d->o, &d->db, NULL), 0);
}

static void dmg_day3(void *arg)
{
	dmg *d = arg;
	assert_int_equal(total(d->db, all, 1, T0 + 3 * DAY, T0 + 4 * DAY, false),
	                 total(d->db, all, 1, T0 + 3 * DAY, T0 + 4 * DAY, true));
}

/* A damaged roll-up file is named and kept out of reads: one that does
 * not parse at open, one whose chunk fails its checksum when a query reads
 * it (counted as a fallback to raw rows); both rebuilt by the next pass.
 * Where raw rows are gone too, the query fails naming the file. */
static void test_damaged(void **state)
{
	fx *f = *state;
	dmg d = {f->dir, opts(), NULL};
	st_db *db = week(f->dir, &d.o, NULL);
	int64_t d2 = total(db, all, 1, T0 + 2 * DAY, T0 + 3 * DAY, false);
	int64_t h4 = total(db, all, 1, T0 + 4 * DAY + 3 * HOUR, T0 + 4 * DAY + 9 * HOUR, true);
	st_close(db);
	char day3[1200], hours4[1200], day2[1200];
	ru_path(day3, sizeof(day3), f->dir, 86400, T0 + 3 * DAY, T0 + 4 * DAY);
	ru_path(hours4, sizeof(hours4), f->dir, 3600, T0 + 4 * DAY, T0 + 5 * DAY);
	ru_path(day2, sizeof(day2), f->dir, 86400, T0 + 2 * DAY, T0 + 3 * DAY);
	flip(day3, type_chunk(day3) + 3); /* inside a chunk the merges read */
	flip(hours4, 20);                 /* its header */

	char *log = stderr_of(dmg_open, &d);
	if (!strstr(log, hours4) || !strstr(log, "damaged"))
		fail_msg("the open did not name %s: %s", hours4, log);
	free(log);
	st_stats s;
	st_get_stats(d.db, &s);
	assert_int_equal(s.rollup_damaged, 1);
	assert_int_equal(s.rollup_fallbacks, 0);
	/* the hours of day 4 come from raw rows, and say the same */
	assert_int_equal(total(d.db, all, 1, T0 + 4 * DAY + 3 * HOUR, T0 + 4 * DAY + 9 * HOUR, false),
	                 h4);
	/* day 3's daily file fails when read: raw rows answer, and it is said */
	log = stderr_of(dmg_day3, &d);
	if (!strstr(log, day3))
		fail_msg("the query did not name %s: %s", day3, log);
	free(log);
	st_get_stats(d.db, &s);
	assert_int_equal(s.rollup_damaged, 2);
	assert_int_equal(s.rollup_fallbacks, 1);
	/* no further query plans on it */
	dmg_day3(&d);
	st_get_stats(d.db, &s);
	assert_int_equal(s.rollup_fallbacks, 1);

	/* the next pass writes both again, and reads use them */
	assert_int_equal(st_rollup(d.db, T0 + (DAYS + 1) * DAY), 0);
	uint64_t raw0, lv0 = rows_read(d.db, &raw0);
	assert_int_equal(total(d.db, all, 1, T0 + 3 * DAY, T0 + 4 * DAY, false),
	                 total(d.db, all, 1, T0 + 3 * DAY, T0 + 4 * DAY, true));
	uint64_t raw1, lv1 = rows_read(d.db, &raw1);
	assert_true(lv1 > lv0);
	assert_int_equal(total(d.db, all, 1, T0 + 4 * DAY + 3 * HOUR, T0 + 4 * DAY + 9 * HOUR, false),
	                 h4);
	st_close(d.db);

	/* raw rows gone: a damaged file is an error that names it, and the
	 * next query reads the hourly level instead */
	d.o.retention_ns = DAY;
	assert_int_equal(st_open(f->dir, &d.o, &db, NULL), 0);
	assert_int_equal(st_retention(db, T0 + 8 * DAY), 0);
	st_close(db);
	flip(day2, type_chunk(day2) + 3);
	assert_int_equal(st_open(f->dir, &d.o, &db, NULL), 0);
	q_side side = {all, 1, T0 + 2 * DAY, T0 + 3 * DAY, false};
	q_tree *t = NULL;
	base_err err = {0};
	assert_int_equal(q_merge(db, &side, NULL, &t, &err), -EBADMSG);
	if (!strstr(err.msg, day2))
		fail_msg("the error does not name %s: %s", day2, err.msg);
	assert_int_equal(total(db, all, 1, T0 + 2 * DAY, T0 + 3 * DAY, false), d2);
	st_close(db);
}

/* The blocks directory's b* entries, as one string of names. */
static void block_names(const char *dir, char *out, size_t len)
{
	char path[1100];
	snprintf(path, sizeof(path), "%s/blocks", dir);
	DIR *d = opendir(path);
	assert_non_null(d);
	out[0] = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] == 'b' && strlen(out) + strlen(e->d_name) + 2 < len) {
			strcat(out, e->d_name);
			strcat(out, " ");
		}
	closedir(d);
}

static void dmg_rollup(void *arg)
{
	dmg *d = arg;
	assert_int_equal(st_rollup(d->db, T0 + 4 * DAY), 0);
}

/* A raw block with a damaged chunk: its span gets no roll-up (a roll-up
 * would hide the loss), queries of it read raw rows and count the damaged
 * chunk, and every other span is rolled up as usual. */
static void test_damaged_block(void **state)
{
	fx *f = *state;
	dmg d = {f->dir, opts(), NULL};
	base_err err;
	char first[4096] = "", path[1200];
	assert_int_equal(st_open(f->dir, &d.o, &d.db, &err), 0);
	for (int64_t h = 0; h < 3 * 24; h++) {
		assert_int_equal(append_range(d.db, T0 + h * HOUR, T0 + (h + 1) * HOUR, h == 0, NULL,
		                              &err), 0);
		if (h % 6 == 5)
			assert_int_equal(st_cut(d.db, T0 + (h + 1) * HOUR, 0), 0);
		if (h == 5)
			block_names(f->dir, first, sizeof(first));   /* hours 0-5 */
	}
	assert_int_equal(st_cut(d.db, T0 + 3 * DAY + HOUR, 1), 0);
	st_close(d.db);
	assert_true(first[0] == 'b' && strchr(first, ' '));
	*strchr(first, ' ') = 0;
	snprintf(path, sizeof(path), "%s/blocks/%s/data.smb", f->dir, first);
	flip(path, ST__BLK_HDR + 3);     /* inside its first chunk */
	assert_int_equal(st_open(f->dir, &d.o, &d.db, &err), 0);

	char *log = stderr_of(dmg_rollup, &d);
	if (!strstr(log, first) || !strstr(log, "damaged"))
		fail_msg("the roll-up pass did not name block %s: %s", first, log);
	free(log);
	/* days 1 and 2 rolled up; day 0 not, nor the hours of the block */
	char day[1200];
	ru_path(day, sizeof(day), f->dir, 86400, T0 + DAY, T0 + 2 * DAY);
	assert_int_equal(access(day, F_OK), 0);
	ru_path(day, sizeof(day), f->dir, 86400, T0 + 2 * DAY, T0 + 3 * DAY);
	assert_int_equal(access(day, F_OK), 0);
	ru_path(day, sizeof(day), f->dir, 86400, T0, T0 + DAY);
	assert_int_equal(access(day, F_OK), -1);
	/* a second pass does not try the span again: nothing to say */
	log = stderr_of(dmg_rollup, &d);
	assert_string_equal(log, "");
	free(log);
	/* day 0 reads its raw rows without the damaged chunk, and says so */
	for (int raw = 0; raw < 2; raw++) {
		q_side side = {all, 1, T0, T0 + DAY, raw};
		q_tree *t = NULL;
		assert_int_equal(q_merge(d.db, &side, NULL, &t, &err), 0);
		assert_true(q_tree_damaged(t) > 0);
		q_tree_free(t);
	}
	assert_int_equal(total(d.db, all, 1, T0 + DAY, T0 + 3 * DAY, false),
	                 total(d.db, all, 1, T0 + DAY, T0 + 3 * DAY, true));
	st_close(d.db);
}

/* ---- crash safety ---- */

/* The child: late rows for changing hours, cut, rolled up again, in a
 * loop until killed; each acknowledged late batch goes to the pipe. */
static void crash_child(const char *dir, int fd)
{
	st_options o = opts();
	st_db *db;
	base_err err;
	if (st_open(dir, &o, &db, &err))
		_exit(3);
	for (uint32_t i = 0;; i++) {
		int64_t h = (int64_t)(i * 37 % (DAYS * 24));
		if (append_range(db, T0 + h * HOUR, T0 + h * HOUR + 10 * MIN, false, NULL, &err))
			_exit(4);
		if (write(fd, &i, sizeof(i)) != sizeof(i))
			_exit(5);
		if (st_cut(db, T0 + 9 * DAY, 1) || st_rollup(db, T0 + 9 * DAY))
			_exit(6);
	}
}

/* The sum of late batch i of crash_child. */
static int64_t late_total(uint32_t i)
{
	int64_t h = (int64_t)(i * 37 % (DAYS * 24)), sum = 0;
	for (int64_t ts = T0 + h * HOUR; ts < T0 + h * HOUR + 10 * MIN; ts += EVERY)
		for (uint32_t s = 0; s < NSER; s++)
			for (uint32_t k = 0; k < NSTK; k++)
				sum += value_at(s, k, (ts - T0) / EVERY);
	return sum;
}

/* kill -9 while roll-ups are written: reopened, the store's raw rows hold
 * every acknowledged batch once, and its roll-ups answer exactly what the
 * raw rows do, stack by stack, before and after the next pass. */
static void test_crash_kill9(void **state)
{
	fx *f = *state;
	int64_t want[NSTK] = {0}, expect = 0;
	st_options o = opts();
	st_db *db = week(f->dir, &o, want);
	for (int k = 0; k < NSTK; k++)
		expect += want[k];
	st_close(db);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	int rebuilt = 0;
	for (int round = 0; round < 6; round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(p[0]);
			crash_child(f->dir, p[1]);
		}
		close(p[1]);
		/* once the child has a batch acknowledged (it then cuts and
		 * writes roll-ups), kill it at a random moment of its loop,
		 * however fast or slow this machine is today */
		uint32_t k;
		int got = -1;
		if (read(p[0], &k, sizeof(k)) == sizeof(k)) {
			assert_int_equal((int)k, 0);
			got = 0;
			expect += late_total(0);
		}
		struct timespec ts = {0, (rand() % 150) * 1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		while (read(p[0], &k, sizeof(k)) == sizeof(k)) {
			assert_int_equal((int)k, got + 1);
			got = (int)k;
			expect += late_total(k);
		}
		close(p[0]);
		int status;
		waitpid(pid, &status, 0);
		assert_true(WIFSIGNALED(status));
		rebuilt += got + 1;

		assert_int_equal(st_open(f->dir, &o, &db, NULL), 0);
		/* the batch in flight may have reached the WAL unacknowledged */
		int64_t raw = total(db, all, 1, T0, T0 + DAYS * DAY, true);
		if (raw != expect && raw != expect + late_total((uint32_t)(got + 1)))
			fail_msg("round %d: raw rows hold %" PRId64 ", %" PRId64 " were acknowledged",
			         round, raw, expect);
		expect = raw;
		assert_int_equal(total(db, all, 1, T0, T0 + DAYS * DAY, false), raw);
		char *a = folded(db, all, 1, T0 + DAY / 2, T0 + 6 * DAY + 1, false);
		char *b = folded(db, all, 1, T0 + DAY / 2, T0 + 6 * DAY + 1, true);
		assert_string_equal(a, b);
		free(a);
		free(b);
		assert_int_equal(st_rollup(db, T0 + 9 * DAY), 0);
		assert_int_equal(total(db, all, 1, T0, T0 + DAYS * DAY, false), raw);
		st_close(db);
	}
	/* every round got a late batch in, so each kill came while the
	 * child cut, wrote roll-ups or appended again */
	assert_true(rebuilt >= 6);
}

/* ---- groups ---- */

/* The roll-up file at path, read and parsed into b (its image in *img,
 * which the caller frees after st__block_release). */
static void parse_file(const char *path, st__block *b, uint8_t **img, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	*len = (size_t)ftell(fp);
	fseek(fp, 0, SEEK_SET);
	*img = malloc(*len);
	assert_int_equal(fread(*img, 1, *len, fp), *len);
	fclose(fp);
	base_err err = {0};
	if (st__block_parse(*img, *len, b, &err))
		fail_msg("%s: %s", path, err.msg);
}

/* Where b's group table starts in its image: after the parent list. */
static size_t group_table_off(const st__block *b, const uint8_t *img)
{
	size_t off = (size_t)st__get_u64(img + 72) + (size_t)b->nseries * ST__BLK_SERIES_ENT +
	             (size_t)b->nstacks * 8 + (size_t)b->nchunks * ST__BLK_CHUNK_DIR + 4 +
	             (size_t)b->ncover * 16 + 4;
	for (uint32_t i = 0; i < b->nparents; i++)
		off += 2 + strlen(b->parents[i]);
	return off;
}

static void rm_dir_files(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	char p[1700];
	while ((e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			assert_int_equal(unlink(p), 0);
		}
	closedir(d);
}

/* Each roll-up holds sums over groups of series: per type, and per type
 * and service. A merge whose selection holds a whole group reads the
 * group's rows in place of its members' (a coarser group first), any
 * selection answers what raw rows answer, and a file built again from
 * inputs grouped otherwise keeps only the groups they agree on. */
static void test_groups(void **state)
{
	fx *f = *state;
	st_options o = opts();
	o.chunk_rows = 30;   /* a chunk per series and step: reads show */
	st_db *db = week(f->dir, &o, NULL);
	char path[1400];
	ru_path(path, sizeof(path), f->dir, 86400, T0 + 2 * DAY, T0 + 3 * DAY);
	st__block b;
	uint8_t *img;
	size_t len;
	parse_file(path, &b, &img, &len);
	assert_int_equal(st__get_u32(img + 8), ST__BLK_VERSION_GROUPS);
	assert_int_equal(b.ngroups, 3);
	assert_int_equal(b.series[b.groups[0].series].id, st__group_id(TYPE, NULL, NULL));
	assert_int_equal(b.groups[0].nmembers, NSER);
	for (uint32_t g = 1; g < 3; g++) {
		uint64_t id = b.series[b.groups[g].series].id;
		assert_true(id == st__group_id(TYPE, "service", "api") ||
		            id == st__group_id(TYPE, "service", "db"));
		assert_int_equal(b.groups[g].nmembers, NSER / 2);
	}

	/* the group table checked: a member out of range, out of order, a
	 * group's own series as a member, a table in a version 1 file */
	size_t gt = group_table_off(&b, img);
	uint32_t m0 = b.groups[0].members[0], gs1 = b.groups[1].series;
	const struct {
		size_t off;
		uint32_t v;
	} bad[] = {
		{gt + 12, b.nseries}, {gt + 16, m0}, {gt + 12, gs1}, {8, ST__BLK_VERSION},
		{gt, 0}, {gt + 8, 0},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		uint8_t *m = malloc(len);
		memcpy(m, img, len);
		st__put_u32(m + bad[i].off, bad[i].v);
		fix_block_crcs(m, len);
		st__block x;
		base_err err = {0};
		assert_int_equal(st__block_parse(m, len, &x, &err), -EBADMSG);
		assert_non_null(strstr(err.msg, "group") ? err.msg : strstr(err.msg, "trailing"));
		free(m);
	}
	st__block_release(&b);
	free(img);

	static const st_matcher not5[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                  {"hostname", ST_MATCH_NE, "host5"}};
	static const st_matcher host0[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                   {"hostname", ST_MATCH_EQ, "host0"}};
	const struct {
		const st_matcher *m;
		size_t nm;
	} sel[] = {{all, 1}, {api, 2}, {not5, 2}, {host0, 2}};
	uint64_t rows[4];
	for (size_t i = 0; i < 4; i++) {
		/* whole days and an unaligned range */
		for (int r = 0; r < 2; r++) {
			int64_t from = r ? T0 + DAY + 7 * HOUR + 5 * MIN : T0 + DAY;
			int64_t to = r ? T0 + 5 * DAY + 3 * HOUR + 30 * MIN : T0 + 5 * DAY;
			uint64_t raw0, lv0 = rows_read(db, &raw0);
			char *a = folded(db, sel[i].m, sel[i].nm, from, to, false);
			uint64_t raw1, lv1 = rows_read(db, &raw1);
			char *c = folded(db, sel[i].m, sel[i].nm, from, to, true);
			if (strcmp(a, c))
				fail_msg("selection %zu range %d: roll-ups and raw rows differ", i, r);
			free(a);
			free(c);
			if (!r)
				rows[i] = lv1 - lv0;
		}
	}
	/* the type's group; a service's; a service's and two series; one */
	assert_true(rows[0] > 0);
	assert_int_equal(rows[1], rows[0]);
	assert_int_equal(rows[2], 3 * rows[0]);
	assert_int_equal(rows[3], rows[0]);
	st_close(db);

	/* grouped by type only now: a daily file built again from the hourly
	 * files (grouped by service too) keeps the type's group alone */
	char dir[1400];
	snprintf(dir, sizeof(dir), "%s/rollup/86400s", f->dir);
	rm_dir_files(dir);
	o.rollup_group_label = NULL;
	base_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(st_rollup(db, T0 + (DAYS + 1) * DAY), 0);
	parse_file(path, &b, &img, &len);
	assert_int_equal(b.ngroups, 1);
	assert_int_equal(b.series[b.groups[0].series].id, st__group_id(TYPE, NULL, NULL));
	st__block_release(&b);
	free(img);
	for (size_t i = 0; i < 4; i++) {
		char *a = folded(db, sel[i].m, sel[i].nm, T0 + DAY, T0 + 5 * DAY, false);
		char *c = folded(db, sel[i].m, sel[i].nm, T0 + DAY, T0 + 5 * DAY, true);
		if (strcmp(a, c))
			fail_msg("selection %zu, grouped by type: roll-ups and raw rows differ", i);
		free(a);
		free(c);
	}
	st_close(db);
}

/* A day's hourly roll-ups written half without service groups (the label
 * set at the day's noon; its last hour has no rows, so the day-long file
 * is built from the hours' files): the day-long file groups by service
 * nowhere, as half its inputs hold no such sums, and a service's merge
 * over the day reads its series and equals raw rows. */
static void test_groups_mixed(void **state)
{
	fx *f = *state;
	st_options o = opts();
	o.rollup_group_label = NULL;
	st_db *db;
	base_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int64_t h = 0; h < 12; h++)
		assert_int_equal(append_range(db, T0 + h * HOUR, T0 + (h + 1) * HOUR, h == 0, NULL,
		                              &err), 0);
	assert_int_equal(st_cut(db, T0 + 12 * HOUR, 1), 0);
	assert_int_equal(st_rollup(db, T0 + 12 * HOUR), 0);
	st_close(db);
	o.rollup_group_label = "service";
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int64_t h = 12; h < 23; h++)
		assert_int_equal(append_range(db, T0 + h * HOUR, T0 + (h + 1) * HOUR, false, NULL,
		                              &err), 0);
	assert_int_equal(st_cut(db, T0 + 23 * HOUR, 1), 0);
	assert_int_equal(st_rollup(db, T0 + 23 * HOUR), 0);
	for (int64_t h = 24; h < 48; h++)
		assert_int_equal(append_range(db, T0 + h * HOUR, T0 + (h + 1) * HOUR, false, NULL,
		                              &err), 0);
	assert_int_equal(st_cut(db, T0 + 3 * DAY, 1), 0);
	assert_int_equal(st_rollup(db, T0 + 3 * DAY), 0);
	char path[1400];
	ru_path(path, sizeof(path), f->dir, 3600, T0, T0 + DAY);
	st__block b;
	uint8_t *img;
	size_t len;
	parse_file(path, &b, &img, &len);
	assert_int_equal(b.ngroups, 1);
	assert_int_equal(b.series[b.groups[0].series].id, st__group_id(TYPE, NULL, NULL));
	st__block_release(&b);
	free(img);
	/* the next day's, all from rows grouped by service, has them */
	ru_path(path, sizeof(path), f->dir, 3600, T0 + DAY, T0 + 2 * DAY);
	parse_file(path, &b, &img, &len);
	assert_int_equal(b.ngroups, 3);
	st__block_release(&b);
	free(img);
	for (int k = 0; k < 2; k++) {
		const st_matcher *m = k ? api : all;
		char *a = folded(db, m, k ? 2 : 1, T0 + 3 * HOUR, T0 + 2 * DAY, false);
		char *c = folded(db, m, k ? 2 : 1, T0 + 3 * HOUR, T0 + 2 * DAY, true);
		assert_string_equal(a, c);
		free(a);
		free(c);
	}
	st_close(db);
}

int main(void)
{
	model_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_week_totals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_top_agrees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mid_step_ranges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_late_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_kill9, setup, teardown),
		cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_groups_mixed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
