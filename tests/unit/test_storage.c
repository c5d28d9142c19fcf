/* test_storage.c - unit tests of storage/: encoders, batches, WAL recovery,
 * blocks, reads, retention, compaction and crash safety. Every test works in
 * its own temporary directory, removed in teardown even when it fails. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "storage/st_int.h"
#include "storage/meta.h"
#include "storage/storage.h"
#include "storage/wal.h"

#define TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"
#define SEC 1000000000LL
#define HOUR (3600 * SEC)
#define T0 (1767225600LL * SEC) /* 2026-01-01T00:00:00Z, partition aligned */

/* ---- fixtures ---- */

typedef struct fx {
	char dir[1024];
} fx;

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	const char *base = getenv("SMOLDER_TEST_TMP");
	snprintf(f->dir, sizeof(f->dir), "%s/st.XXXXXX", base ? base : "/tmp");
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

static const uint8_t bid_a[20] = {0xaa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
static const uint8_t bid_b[20] = {0xbb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
static const st_object objs[2] = {
	{bid_a, 20, "/usr/bin/app"},
	{bid_b, 20, "/usr/lib/x86_64-linux-gnu/libc.so.6"},
};

/* A family of stacks: stack k has frames app+0x1000+k (leaf), libc+0x20,
 * app+0x400 and, for odd k, a kernel frame at the root. */
typedef struct tstack {
	st_frame fr[4];
	st_stack_def def;
} tstack;

static void mk_stack(tstack *s, uint32_t k)
{
	uint32_t n = 0;
	s->fr[n++] = (st_frame){ST_FRAME_USER, 0, 0x1000 + k, NULL};
	s->fr[n++] = (st_frame){ST_FRAME_USER, 1, 0x20, NULL};
	s->fr[n++] = (st_frame){ST_FRAME_USER, 0, 0x400, NULL};
	if (k & 1)
		s->fr[n++] = (st_frame){ST_FRAME_KERNEL, 0, 0, "do_syscall_64"};
	s->def.frames = s->fr;
	s->def.nframes = n;
	s->def.id = st_stack_hash(objs, 2, s->fr, n);
}

/* Series h (host) with labels hostname=hostH, service=api|db (h even/odd). */
typedef struct tseries {
	char host[32];
	st_label l[2];
	st_series_def def;
} tseries;

static void mk_series(tseries *s, uint32_t h)
{
	snprintf(s->host, sizeof(s->host), "host%u", h);
	s->l[0] = (st_label){"service", h % 2 ? "db" : "api"};
	s->l[1] = (st_label){"hostname", s->host}; /* unsorted on purpose */
	s->def = (st_series_def){TYPE, s->l, 2};
}

/* Appends one batch: for each of nseries series, nstacks samples at ts with
 * value (stack + 1) * mul. All stacks are defined in the batch. */
static int append_batch(st_db *db, uint32_t nser, uint32_t nstk, int64_t ts,
                        int64_t mul, st_err *err)
{
	tseries *se = calloc(nser, sizeof(*se));
	st_series_def *sd = calloc(nser, sizeof(*sd));
	tstack *sk = calloc(nstk, sizeof(*sk));
	st_stack_def *kd = calloc(nstk, sizeof(*kd));
	st_sample *sm = calloc((size_t)nser * nstk, sizeof(*sm));
	for (uint32_t i = 0; i < nser; i++) {
		mk_series(&se[i], i);
		sd[i] = se[i].def;
	}
	for (uint32_t k = 0; k < nstk; k++) {
		mk_stack(&sk[k], k);
		kd[k] = sk[k].def;
	}
	size_t n = 0;
	for (uint32_t i = 0; i < nser; i++)
		for (uint32_t k = 0; k < nstk; k++)
			sm[n++] = (st_sample){ts, i, sk[k].def.id, (int64_t)(k + 1) * mul};
	st_batch b = {sd, nser, objs, 2, kd, nstk, sm, (uint32_t)n};
	int rc = st_append(db, &b, err);
	free(se);
	free(sd);
	free(sk);
	free(kd);
	free(sm);
	return rc;
}

static st_options small_opts(void)
{
	st_options o;
	st_options_default(&o);
	o.chunk_rows = 7;          /* many chunks, so skipping is exercised */
	o.wal_segment_bytes = 8192;
	o.cut_grace_ns = 0;
	return o;
}

/* Sum of all merged values for matchers over [from, to). */
static int64_t merged_total(st_db *db, const st_matcher *m, size_t nm, int64_t from,
                            int64_t to, size_t *nstacks, size_t *nseries)
{
	st_selection *sel = NULL;
	st_stack_sum *v = NULL;
	size_t n = 0;
	st_err err;
	assert_int_equal(st_select(db, m, nm, from, to, &sel, &err), 0);
	if (nseries)
		*nseries = st_selection_count(sel);
	assert_int_equal(st_merge(db, sel, from, to, &v, &n), 0);
	int64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		total += v[i].value;
		if (i)
			assert_true(v[i - 1].stack_id < v[i].stack_id);
	}
	if (nstacks)
		*nstacks = n;
	free(v);
	st_selection_free(sel);
	return total;
}

static const st_matcher all_cpu[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}};

/* ---- encoders ---- */

static void test_crc32c(void **state)
{
	(void)state;
	assert_int_equal(st__crc32c(0, "123456789", 9), 0xe3069283u);
	/* chaining equals one pass */
	assert_int_equal(st__crc32c(st__crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
	assert_int_equal(st__crc32c(0, "", 0), 0);
}

static void test_varint_roundtrip(void **state)
{
	(void)state;
	static const uint64_t cases[] = {0, 1, 127, 128, 255, 300, 16383, 16384,
	                                 (1ULL << 32) - 1, 1ULL << 32, (1ULL << 63),
	                                 UINT64_MAX};
	static const size_t lens[] = {1, 1, 1, 2, 2, 2, 2, 3, 5, 5, 10, 10};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t b[10];
		size_t n = st__put_varint(b, cases[i]);
		assert_int_equal(n, lens[i]);
		const uint8_t *p = b;
		uint64_t v;
		assert_int_equal(st__get_varint(&p, b + n, &v), 0);
		assert_true(v == cases[i]);
		assert_ptr_equal(p, b + n);
		/* every truncation is an error, never a read past the end */
		for (size_t cut = 0; cut < n; cut++) {
			p = b;
			assert_int_equal(st__get_varint(&p, b + cut, &v), -EBADMSG);
		}
	}
	static const int64_t zz[] = {0, -1, 1, -2, INT64_MAX, INT64_MIN, 123456789, -987654321};
	for (size_t i = 0; i < sizeof(zz) / sizeof(zz[0]); i++)
		assert_true(st__unzigzag(st__zigzag(zz[i])) == zz[i]);
	assert_true(st__zigzag(-1) == 1 && st__zigzag(1) == 2);
	/* 11 continuation bytes are never a varint */
	uint8_t bad[11];
	memset(bad, 0x80, sizeof(bad));
	const uint8_t *p = bad;
	uint64_t v;
	assert_int_equal(st__get_varint(&p, bad + 11, &v), -EBADMSG);
}

static void test_map(void **state)
{
	(void)state;
	st__map m;
	assert_int_equal(st__map_init(&m, 4), 0);
	for (uint64_t i = 0; i < 100000; i++)
		assert_int_equal(st__map_put(&m, i * 0x9e3779b97f4a7c15ULL, (uint32_t)i), 0);
	for (uint64_t i = 0; i < 100000; i++)
		assert_int_equal(st__map_get(&m, i * 0x9e3779b97f4a7c15ULL), (uint32_t)i);
	assert_int_equal(st__map_get(&m, 12345), ST__MAP_NONE);
	assert_int_equal(m.len, 100000);
	st__map_free(&m);
}

/* ---- batches ---- */

static void test_batch_roundtrip(void **state)
{
	(void)state;
	tseries se[3];
	st_series_def sd[3];
	tstack sk[4];
	st_stack_def kd[4];
	for (int i = 0; i < 3; i++) {
		mk_series(&se[i], (uint32_t)i);
		sd[i] = se[i].def;
	}
	for (int k = 0; k < 4; k++) {
		mk_stack(&sk[k], (uint32_t)k);
		kd[k] = sk[k].def;
	}
	st_sample sm[5] = {{T0, 0, kd[0].id, 5}, {T0 + 7, 2, kd[3].id, -3},
	                   {T0 - 100, 1, kd[1].id, ST_MAX_VALUE}, {0, 0, kd[2].id, 0},
	                   {ST_MAX_TS_NS - 1, 1, kd[0].id, -ST_MAX_VALUE}};
	st_batch b = {sd, 3, objs, 2, kd, 4, sm, 5};
	uint64_t ids[3];
	st_err err;
	assert_int_equal(st__batch_validate(&b, ids, &err), 0);
	st__buf buf = {0};
	assert_int_equal(st__batch_encode(&b, ids, &buf), 0);
	st__dbatch d;
	assert_int_equal(st__batch_decode(buf.data, buf.len, &d, &err), 0);
	assert_int_equal(d.b.nseries, 3);
	assert_int_equal(d.b.nstacks, 4);
	assert_int_equal(d.b.nsamples, 5);
	for (int i = 0; i < 3; i++) {
		assert_true(d.series_ids[i] == ids[i]);
		/* decoded labels are in canonical (sorted) order */
		assert_string_equal(d.b.series[i].labels[0].name, "hostname");
		assert_string_equal(d.b.series[i].labels[1].name, "service");
	}
	for (int k = 0; k < 4; k++) {
		assert_true(d.b.stacks[k].id == kd[k].id);
		assert_int_equal(d.b.stacks[k].nframes, kd[k].nframes);
	}
	assert_string_equal(d.b.stacks[1].frames[3].name, "do_syscall_64");
	assert_memory_equal(d.b.objects[1].build_id, bid_b, 20);
	assert_string_equal(d.b.objects[1].name, objs[1].name);
	for (int i = 0; i < 5; i++) {
		assert_true(d.b.samples[i].ts_ns == sm[i].ts_ns);
		assert_true(d.b.samples[i].value == sm[i].value);
		assert_true(d.b.samples[i].stack_id == sm[i].stack_id);
		assert_int_equal(d.b.samples[i].series, sm[i].series);
	}
	st__dbatch_free(&d);
	/* every strict prefix is malformed, reported without a crash */
	for (size_t cut = 0; cut < buf.len; cut++)
		assert_int_equal(st__batch_decode(buf.data, cut, &d, &err), -EBADMSG);
	/* series IDs do not depend on label order; stack IDs on frame order do */
	st_label l2[2] = {se[0].l[1], se[0].l[0]};
	st_series_def s2 = {TYPE, l2, 2};
	uint64_t id2;
	assert_int_equal(st_series_id(&s2, &id2, &err), 0);
	assert_true(id2 == ids[0]);
	st_frame rev[3] = {sk[0].fr[2], sk[0].fr[1], sk[0].fr[0]};
	assert_true(st_stack_hash(objs, 2, rev, 3) != kd[0].id);
	st__buf_free(&buf);
}

/* Table of bad batches: name, how to break a good one, the error's words. */
typedef struct bad_case {
	const char *name;
	void (*breakit)(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
	                st_frame *fr, st_sample *sm);
	const char *msg;
} bad_case;

static void bk_label_name(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                          st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)kd; (void)fr; (void)sm; l[0].name = "9lives"; }
static void bk_reserved(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                        st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)kd; (void)fr; (void)sm; l[0].name = "__secret"; }
static void bk_dup(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                   st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)kd; (void)fr; (void)sm; l[1].name = l[0].name; }
static void bk_empty_value(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                           st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)kd; (void)fr; (void)sm; l[1].value = ""; }
static char long_value[ST_MAX_LABEL_VALUE_LEN + 2];
static void bk_long_value(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                          st_frame *fr, st_sample *sm)
{
	(void)b; (void)sd; (void)kd; (void)fr; (void)sm;
	memset(long_value, 'x', sizeof(long_value) - 1);
	l[1].value = long_value;
}
static void bk_bad_utf8(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                        st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)kd; (void)fr; (void)sm; l[1].value = "caf\xc3"; }
static void bk_too_many(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                        st_frame *fr, st_sample *sm)
{ (void)b; (void)l; (void)kd; (void)fr; (void)sm; sd[0].nlabels = ST_MAX_LABELS + 1; }
static void bk_type(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                    st_frame *fr, st_sample *sm)
{ (void)b; (void)l; (void)kd; (void)fr; (void)sm; sd[0].type = "cpu:samples"; }
static void bk_stack_id(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                        st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)l; (void)fr; (void)sm; kd[0].id ^= 1; }
static void bk_frames(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                      st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)l; (void)fr; (void)sm; kd[0].nframes = ST_MAX_FRAMES + 1; }
static void bk_object(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                      st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)l; (void)kd; (void)sm; fr[0].object = 7; }
static void bk_series_ref(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                          st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)l; (void)kd; (void)fr; sm[0].series = 3; }
static void bk_negative_ts(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                           st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)l; (void)kd; (void)fr; sm[0].ts_ns = -5; }

static void bk_late_ts(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                       st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)l; (void)kd; (void)fr; sm[0].ts_ns = INT64_MAX - 10; }
static void bk_big_value(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                         st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)l; (void)kd; (void)fr; sm[0].value = -(ST_MAX_VALUE + 1); }
static void bk_source_on_user(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                              st_frame *fr, st_sample *sm)
{ (void)b; (void)sd; (void)l; (void)kd; (void)sm; fr[0].line = 3; }
static void bk_lang(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                    st_frame *fr, st_sample *sm)
{
	(void)b; (void)sd; (void)l; (void)kd; (void)sm;
	fr[0] = (st_frame){ST_FRAME_NAMED, 0, 0, "f", "a.py", 1, "Python"};
}
static void bk_lang_long(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                         st_frame *fr, st_sample *sm)
{
	(void)b; (void)sd; (void)l; (void)kd; (void)sm;
	fr[0] = (st_frame){ST_FRAME_NAMED, 0, 0, "f", NULL, 0, "abcdefghijklmnopqrstuvwxyz0123456"};
}
static void bk_line(st_batch *b, st_series_def *sd, st_label *l, st_stack_def *kd,
                    st_frame *fr, st_sample *sm)
{
	(void)b; (void)sd; (void)l; (void)kd; (void)sm;
	fr[0] = (st_frame){ST_FRAME_NAMED, 0, 0, "f", NULL, (uint32_t)INT32_MAX + 1, "js"};
}

static void test_batch_rejects(void **state)
{
	fx *f = *state;
	static const bad_case cases[] = {
		{"label name syntax", bk_label_name, "must match"},
		{"reserved label name", bk_reserved, "reserved"},
		{"duplicate label", bk_dup, "appears twice"},
		{"empty label value", bk_empty_value, "empty value"},
		{"label value too long", bk_long_value, "the limit is 1024"},
		{"label value not UTF-8", bk_bad_utf8, "not UTF-8"},
		{"too many labels", bk_too_many, "the limit is 64"},
		{"bad profile type", bk_type, "must be name:sample_type"},
		{"stack ID mismatch", bk_stack_id, "does not match its frames"},
		{"too many frames", bk_frames, "must be 1..512"},
		{"unknown object", bk_object, "object 7 does not exist"},
		{"unknown series", bk_series_ref, "series 3 does not exist"},
		{"negative timestamp", bk_negative_ts, "is negative"},
		{"timestamp too late", bk_late_ts, "after the year 2116"},
		{"value too large", bk_big_value, "over 2^48"},
		{"line on a user frame", bk_source_on_user, "only named frames carry"},
		{"language tag syntax", bk_lang, "language tag must be 1..32 bytes of [a-z0-9_.+-]"},
		{"language tag too long", bk_lang_long, "language tag must be"},
		{"line too large", bk_line, "is over 2^31-1"},
	};
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		st_label l[2] = {{"service", "api"}, {"hostname", "h1"}};
		st_series_def sd[1] = {{TYPE, l, 2}};
		tstack sk;
		mk_stack(&sk, 0);
		st_frame fr[ST_MAX_FRAMES + 1];
		memset(fr, 0, sizeof(fr));
		memcpy(fr, sk.fr, sizeof(sk.fr));
		st_stack_def kd[1] = {{sk.def.id, fr, sk.def.nframes}};
		st_sample sm[1] = {{T0, 0, sk.def.id, 1}};
		st_batch b = {sd, 1, objs, 2, kd, 1, sm, 1};
		cases[c].breakit(&b, sd, l, kd, fr, sm);
		memset(&err, 0, sizeof(err));
		int rc = st_append(db, &b, &err);
		if (rc != -EINVAL || !strstr(err.msg, cases[c].msg))
			fail_msg("case \"%s\": rc %d, message \"%s\", want \"%s\"", cases[c].name,
			         rc, err.msg, cases[c].msg);
	}
	/* a sample naming a stack the store lacks: -ENOENT (the server's 409) */
	{
		st_label l[2] = {{"service", "api"}, {"hostname", "h1"}};
		st_series_def sd[1] = {{TYPE, l, 2}};
		tstack sk;
		mk_stack(&sk, 0);
		st_sample sm[1] = {{T0, 0, sk.def.id, 1}};
		st_batch b = {sd, 1, objs, 2, NULL, 0, sm, 1};
		memset(&err, 0, sizeof(err));
		int rc = st_append(db, &b, &err);
		if (rc != -ENOENT || !strstr(err.msg, "is unknown"))
			fail_msg("unknown stack: rc %d, message \"%s\"", rc, err.msg);
	}
	/* nothing of the rejected batches was stored */
	st_stats s;
	st_get_stats(db, &s);
	assert_int_equal(s.head_rows, 0);
	assert_int_equal(s.series, 0);
	st_close(db);
}

/* ---- the store ---- */

static void test_append_merge_cut_reopen(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	/* two partitions: 3 series x 5 stacks, 10 s apart */
	for (int i = 0; i < 12; i++)
		assert_int_equal(append_batch(db, 3, 5, T0 + (int64_t)i * 600 * SEC, 1, &err), 0);
	/* per batch: 3 series x (1+2+3+4+5) = 45 */
	int64_t want = 12 * 45;
	size_t nst, nse;
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, &nst, &nse), want);
	assert_int_equal(nst, 5);
	assert_int_equal(nse, 3);
	/* only the first hour */
	assert_int_equal(merged_total(db, all_cpu, 1, T0, T0 + HOUR, NULL, NULL), 6 * 45);

	/* cut the closed first hour; the second stays in the head */
	assert_int_equal(st_cut(db, T0 + HOUR + 1, 0), 0);
	st_stats s;
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 1);
	assert_int_equal(s.block_rows, 6 * 15);
	assert_int_equal(s.head_rows, 6 * 15);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
	assert_int_equal(merged_total(db, all_cpu, 1, T0, T0 + HOUR, NULL, NULL), 6 * 45);
	assert_int_equal(merged_total(db, all_cpu, 1, T0 + 600 * SEC, T0 + 1200 * SEC, NULL, NULL), 45);
	st_close(db);

	/* reopen: the block plus the replayed WAL give the same answers, and
	 * rows already in the block are not counted twice */
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 1);
	assert_int_equal(s.head_rows, 6 * 15);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
	assert_int_equal(st_cut(db, T0 + 10 * HOUR, 0), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 2);
	assert_int_equal(s.head_rows, 0);
	st_close(db);
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.head_rows, 0);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
	/* the series remember their time range across the restart */
	assert_int_equal(merged_total(db, all_cpu, 1, T0 + 2 * HOUR, INT64_MAX, NULL, &nse), 0);
	assert_int_equal(nse, 0);
	st_close(db);
}

typedef struct rowsum {
	size_t n;
	int64_t total;
	int64_t mint, maxt;
} rowsum;

static int sum_row(void *arg, const st_row *r)
{
	rowsum *s = arg;
	s->n++;
	s->total += r->value;
	if (r->ts_ns < s->mint)
		s->mint = r->ts_ns;
	if (r->ts_ns > s->maxt)
		s->maxt = r->ts_ns;
	return 0;
}

static void test_rows_and_frames(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(append_batch(db, 2, 4, T0 + i * 1800 * SEC, 2, &err), 0);
	assert_int_equal(st_cut(db, T0 + HOUR + 1, 0), 0); /* first 2 batches in a block */
	st_selection *sel;
	assert_int_equal(st_select(db, all_cpu, 1, T0, T0 + 2 * HOUR, &sel, &err), 0);
	rowsum rs = {0, 0, INT64_MAX, INT64_MIN};
	assert_int_equal(st_rows(db, sel, T0 + 1800 * SEC, T0 + 5400 * SEC + 1, sum_row, &rs), 0);
	assert_int_equal(rs.n, 3 * 8);
	assert_int_equal(rs.total, 3 * 2 * (2 + 4 + 6 + 8));
	assert_true(rs.mint == T0 + 1800 * SEC && rs.maxt == T0 + 5400 * SEC);
	st_selection_free(sel);

	/* frames come back leaf first, with build IDs, names and kernel marks */
	tstack sk;
	mk_stack(&sk, 1);
	st_frame_info *fi;
	size_t n;
	assert_int_equal(st_stack_frames(db, sk.def.id, &fi, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(fi[0].kind, ST_FRAME_USER);
	assert_true(fi[0].offset == 0x1001);
	assert_string_equal(fi[0].object_name, "/usr/bin/app");
	assert_memory_equal(fi[0].build_id, bid_a, 20);
	assert_int_equal(fi[1].build_id_len, 20);
	assert_memory_equal(fi[1].build_id, bid_b, 20);
	assert_int_equal(fi[3].kind, ST_FRAME_KERNEL);
	assert_string_equal(fi[3].name, "do_syscall_64");
	/* one location per distinct (object, offset): shared frames share IDs */
	tstack sk2;
	mk_stack(&sk2, 3);
	st_frame_info *fi2;
	size_t n2;
	assert_int_equal(st_stack_frames(db, sk2.def.id, &fi2, &n2), 0);
	assert_true(fi2[1].location_id == fi[1].location_id);
	assert_true(fi2[0].location_id != fi[0].location_id);
	assert_true(fi2[3].location_id == fi[3].location_id);
	free(fi);
	free(fi2);
	assert_int_equal(st_stack_frames(db, 42, &fi, &n), -ENOENT);

	st_label *l;
	assert_int_equal(st_series_labels(db, 12345, &l, &n), -ENOENT);
	st_close(db);
}

/* Named frames with a language, file and line: stored, read back after a
 * reopen (WAL replay and SQLite), one location per (function, file, line,
 * language), and a schema 1 meta.db moved to schema 2 with its location
 * IDs kept. */
static void test_named_source(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	st_db *db;
	st_err err;
	st_frame fr[2][3] = {
		{{ST_FRAME_NAMED, 0, 0, "Handler.run", "/srv/app.py", 12, "python"},
		 {ST_FRAME_NAMED, 0, 0, "main", "/srv/app.py", 30, "python"},
		 {ST_FRAME_USER, 0, 0x400, NULL, NULL, 0, NULL}},
		{{ST_FRAME_NAMED, 0, 0, "Handler.run", "/srv/app.py", 13, "python"},
		 {ST_FRAME_NAMED, 0, 0, "main", NULL, 0, NULL},
		 {ST_FRAME_KERNEL, 0, 0, "main", NULL, 0, NULL}},
	};
	st_stack_def kd[2];
	for (int i = 0; i < 2; i++)
		kd[i] = (st_stack_def){st_stack_hash(objs, 2, fr[i], 3), fr[i], 3};
	assert_true(kd[0].id != kd[1].id);
	tseries se;
	mk_series(&se, 0);
	st_sample sm[2] = {{T0, 0, kd[0].id, 3}, {T0, 0, kd[1].id, 4}};
	st_batch b = {&se.def, 1, objs, 2, kd, 2, sm, 2};
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	if (st_append(db, &b, &err))
		fail_msg("append: %s", err.msg);
	st_close(db);
	/* the meta.db written, and replay from the WAL: both give it back */
	int64_t ids[2][3];
	for (int round = 0; round < 2; round++) {
		assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
		for (int i = 0; i < 2; i++) {
			st_frame_info *fi;
			size_t n;
			assert_int_equal(st_stack_frames(db, kd[i].id, &fi, &n), 0);
			assert_int_equal(n, 3);
			for (int k = 0; k < 2; k++) {
				assert_int_equal(fi[k].kind, ST_FRAME_NAMED);
				assert_string_equal(fi[k].name, fr[i][k].name);
				if (fr[i][k].file) {
					assert_string_equal(fi[k].file, fr[i][k].file);
					assert_string_equal(fi[k].lang, fr[i][k].lang);
				} else {
					assert_null(fi[k].file);
					assert_null(fi[k].lang);
				}
				assert_int_equal(fi[k].line, fr[i][k].line);
			}
			assert_int_equal(fi[2].kind, i ? ST_FRAME_KERNEL : ST_FRAME_USER);
			assert_null(fi[2].file);
			for (int k = 0; k < 3; k++) {
				if (round)
					assert_true(ids[i][k] == fi[k].location_id);
				ids[i][k] = fi[k].location_id;
			}
			free(fi);
		}
		/* two lines of one function are two locations, as are a
		 * function with and without its source */
		assert_true(ids[0][0] != ids[1][0]);
		assert_true(ids[0][1] != ids[1][1]);
		assert_true(ids[1][1] != ids[1][2]);
		st_close(db);
	}

	/* schema 1: a store of native stacks only, its locations table and
	 * version put back as schema 1 wrote them */
	char dir1[1100], path[1200];
	snprintf(dir1, sizeof(dir1), "%s/v1", f->dir);
	snprintf(path, sizeof(path), "%s/meta.db", dir1);
	assert_int_equal(st_open(dir1, &o, &db, &err), 0);
	assert_int_equal(append_batch(db, 1, 4, T0, 1, &err), 0);
	st_close(db);
	sqlite3 *s3;
	assert_int_equal(sqlite3_open(path, &s3), SQLITE_OK);
	assert_int_equal(sqlite3_exec(s3,
		"CREATE TABLE l1(id INTEGER PRIMARY KEY, object_id INTEGER NOT NULL,"
		" offset INTEGER NOT NULL, kernel_name TEXT NOT NULL,"
		" UNIQUE(object_id, offset, kernel_name));"
		"INSERT INTO l1 SELECT id, object_id, offset, kernel_name FROM locations;"
		"DROP TABLE locations; ALTER TABLE l1 RENAME TO locations;"
		"UPDATE meta SET value = '1' WHERE key = 'schema';", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(s3);
	tstack sk;
	mk_stack(&sk, 1);
	st_frame_info *before, *fi;
	size_t n;
	assert_int_equal(st_open(dir1, &o, &db, &err), 0);
	/* read back, same location IDs as schema 1 gave them */
	assert_int_equal(st_stack_frames(db, sk.def.id, &before, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(before[3].name, "do_syscall_64");
	assert_null(before[3].file);
	st_close(db);
	assert_int_equal(sqlite3_open(path, &s3), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(s3, "SELECT id FROM locations WHERE kernel_name ="
	                                    " 'do_syscall_64'", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_true(sqlite3_column_int64(st, 0) == before[3].location_id);
	sqlite3_finalize(st);
	sqlite3_close(s3);
	/* and the moved store takes source frames */
	assert_int_equal(st_open(dir1, &o, &db, &err), 0);
	if (st_append(db, &b, &err))
		fail_msg("append after the move: %s", err.msg);
	assert_int_equal(st_stack_frames(db, kd[0].id, &fi, &n), 0);
	assert_string_equal(fi[0].lang, "python");
	assert_int_equal(fi[0].line, 12);
	free(fi);
	assert_int_equal(st_stack_frames(db, sk.def.id, &fi, &n), 0);
	for (size_t k = 0; k < n; k++)
		assert_true(fi[k].location_id == before[k].location_id);
	free(fi);
	free(before);
	st_close(db);
	assert_int_equal(sqlite3_open(path, &s3), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(s3, "SELECT value FROM meta WHERE key = 'schema'",
	                                    -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "2");
	sqlite3_finalize(st);
	sqlite3_close(s3);
}

/* The symbol cache: chains stored once and read back in order, the first
 * answer kept, missing user locations listed (kernel ones never), and a
 * build ID's answers forgotten when better debug info arrives; all across
 * a reopen. */
typedef struct symgot {
	int calls;
	int64_t loc;
	size_t n;
	char fn[3][64], file[3][64];
	int64_t line[3];
} symgot;

static int on_syms(void *arg, int64_t loc, const st_symbol *syms, size_t n)
{
	symgot *g = arg;
	g->calls++;
	g->loc = loc;
	g->n = n;
	for (size_t i = 0; i < n && i < 3; i++) {
		snprintf(g->fn[i], sizeof(g->fn[i]), "%s", syms[i].function);
		snprintf(g->file[i], sizeof(g->file[i]), "%s", syms[i].file ? syms[i].file : "-");
		g->line[i] = syms[i].line;
	}
	return 0;
}

typedef struct missing {
	size_t n;
	int64_t ids[64];
	uint64_t offs[64];
	uint8_t first_bid0[64];
} missing;

static int on_missing(void *arg, int64_t loc, const uint8_t *bid, uint32_t bl, uint64_t off)
{
	missing *m = arg;
	assert_int_equal(bl, 20);
	if (m->n < 64) {
		m->first_bid0[m->n] = bid[0];
		m->offs[m->n] = off;
		m->ids[m->n++] = loc;
	}
	return 0;
}

static void test_symbols(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(append_batch(db, 1, 2, T0, 1, &err), 0);
	tstack sk;
	mk_stack(&sk, 1);
	st_frame_info *fi;
	size_t n;
	assert_int_equal(st_stack_frames(db, sk.def.id, &fi, &n), 0);
	int64_t leaf = fi[0].location_id, kern = fi[3].location_id;

	missing m = {0};
	assert_int_equal(st_symbols_missing(db, 0, 100, on_missing, &m), 0);
	size_t user_locs = m.n;
	assert_true(user_locs >= 3);
	for (size_t i = 0; i < m.n; i++)
		assert_true(m.ids[i] != kern);
	for (size_t i = 1; i < m.n; i++)
		assert_true(m.ids[i] > m.ids[i - 1]);
	missing m2 = {0};  /* the cursor and the limit */
	assert_int_equal(st_symbols_missing(db, m.ids[0], 1, on_missing, &m2), 0);
	assert_int_equal(m2.n, 1);
	assert_true(m2.ids[0] == m.ids[1]);

	const st_symbol chain[] = {{"inl_step", "/src/a.c", 12}, {"hot_outer", "/src/a.c", 40},
	                           {"main", NULL, 0}};
	assert_int_equal(st_symbols_put(db, leaf, chain, 3), 0);
	const st_symbol other[] = {{"something_else", "x.c", 1}};
	assert_int_equal(st_symbols_put(db, leaf, other, 1), 0);  /* the first stays */
	assert_int_equal(st_symbols_put(db, leaf, other, 0), -EINVAL);
	const st_symbol none[] = {{"", NULL, 0}};
	assert_int_equal(st_symbols_put(db, fi[1].location_id, none, 1), 0);

	missing m3 = {0};
	assert_int_equal(st_symbols_missing(db, 0, 100, on_missing, &m3), 0);
	assert_int_equal(m3.n, user_locs - 2);
	st_close(db);

	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	symgot g = {0};
	int64_t ids[] = {leaf, kern, fi[1].location_id, 999999};
	assert_int_equal(st_symbols_get(db, ids, 4, on_syms, &g), 0);
	assert_int_equal(g.calls, 2);  /* leaf and the "nothing there" marker */
	symgot g1 = {0};
	assert_int_equal(st_symbols_get(db, &leaf, 1, on_syms, &g1), 0);
	assert_int_equal(g1.n, 3);
	assert_string_equal(g1.fn[0], "inl_step");
	assert_string_equal(g1.file[0], "/src/a.c");
	assert_int_equal(g1.line[0], 12);
	assert_string_equal(g1.fn[1], "hot_outer");
	assert_int_equal(g1.line[1], 40);
	assert_string_equal(g1.fn[2], "main");
	assert_string_equal(g1.file[2], "-");

	/* forgetting bid_a's answers: the leaf (in /usr/bin/app) is missing
	 * again, bid_b's marker stays */
	assert_int_equal(st_symbols_forget(db, bid_a, 20), 0);
	symgot g2 = {0};
	assert_int_equal(st_symbols_get(db, &leaf, 1, on_syms, &g2), 0);
	assert_int_equal(g2.calls, 0);
	missing m4 = {0};
	assert_int_equal(st_symbols_missing(db, 0, 100, on_missing, &m4), 0);
	assert_int_equal(m4.n, user_locs - 1);
	assert_int_equal(st_symbols_forget(db, bid_a, 0), -EINVAL);
	free(fi);
	st_close(db);
}

static void test_matchers(void **state)
{
	fx *f = *state;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	/* host0..host5; service api for even hosts, db for odd */
	assert_int_equal(append_batch(db, 6, 2, T0, 1, &err), 0);
	/* one more series without the service label, another profile type */
	tstack sk;
	mk_stack(&sk, 0);
	st_label l1[1] = {{"hostname", "lonely"}};
	st_series_def sd[2] = {{TYPE, l1, 1},
	                       {"memory:alloc_space:bytes:space:bytes", l1, 1}};
	st_sample sm[2] = {{T0, 0, sk.def.id, 100}, {T0, 1, sk.def.id, 1000}};
	st_batch b = {sd, 2, objs, 2, NULL, 0, sm, 2};
	assert_int_equal(st_append(db, &b, &err), 0);

	typedef struct {
		const char *name;
		st_matcher m[3];
		size_t nm;
		size_t want;
	} mcase;
	const mcase cases[] = {
		{"type only", {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}}, 1, 7},
		{"eq", {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"service", ST_MATCH_EQ, "api"}}, 2, 3},
		{"ne keeps series without the label",
		 {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"service", ST_MATCH_NE, "api"}}, 2, 4},
		{"re anchored", {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"hostname", ST_MATCH_RE, "host[12]"}}, 2, 2},
		{"re is anchored at both ends",
		 {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"hostname", ST_MATCH_RE, "ost1"}}, 2, 0},
		{"nre", {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"hostname", ST_MATCH_NRE, "host.*"}}, 2, 1},
		{"eq empty selects missing label",
		 {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"service", ST_MATCH_EQ, ""}}, 2, 1},
		{"re matching empty keeps missing",
		 {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"service", ST_MATCH_RE, "db|"}}, 2, 4},
		{"two positive matchers intersect",
		 {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"service", ST_MATCH_EQ, "db"},
		  {"hostname", ST_MATCH_RE, "host[0-3]"}}, 3, 2},
		{"other type", {{ST_TYPE_LABEL, ST_MATCH_RE, "memory:.*"}}, 1, 1},
		{"no matchers: every series", {{0}}, 0, 8},
		{"unknown value", {{"service", ST_MATCH_EQ, "nope"}}, 1, 0},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		st_selection *sel;
		assert_int_equal(st_select(db, cases[c].m, cases[c].nm, 0, INT64_MAX, &sel, &err), 0);
		if (st_selection_count(sel) != cases[c].want)
			fail_msg("case \"%s\": %zu series, want %zu", cases[c].name,
			         st_selection_count(sel), cases[c].want);
		for (size_t i = 1; i < st_selection_count(sel); i++)
			assert_true(st_selection_id(sel, i - 1) < st_selection_id(sel, i));
		st_selection_free(sel);
	}
	/* labels of a selected series: type first, then sorted */
	st_selection *sel;
	const st_matcher m1[] = {{"hostname", ST_MATCH_EQ, "host3"}};
	assert_int_equal(st_select(db, m1, 1, 0, INT64_MAX, &sel, &err), 0);
	assert_int_equal(st_selection_count(sel), 1);
	st_label *l;
	size_t n;
	assert_int_equal(st_series_labels(db, st_selection_id(sel, 0), &l, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(l[0].name, ST_TYPE_LABEL);
	assert_string_equal(l[0].value, TYPE);
	assert_string_equal(l[1].name, "hostname");
	assert_string_equal(l[1].value, "host3");
	assert_string_equal(l[2].name, "service");
	assert_string_equal(l[2].value, "db");
	free(l);
	st_selection_free(sel);
	/* a time range without rows selects nothing */
	assert_int_equal(st_select(db, all_cpu, 1, T0 + 1, T0 + HOUR, &sel, &err), 0);
	assert_int_equal(st_selection_count(sel), 0);
	st_selection_free(sel);
	/* a bad regex is an error that says where */
	const st_matcher bad[] = {{"hostname", ST_MATCH_RE, "host(["}};
	assert_int_equal(st_select(db, bad, 1, 0, INT64_MAX, &sel, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bad regex"));
	assert_non_null(strstr(err.msg, "offset"));
	st_close(db);
}

/* A series may have no labels at all, and build IDs are binary (zero bytes
 * included): both survive the store and a replay. */
static void test_no_labels_binary_build_id(void **state)
{
	fx *f = *state;
	st_db *db;
	st_err err;
	static const uint8_t zid[4] = {0, 0, 7, 0};
	const st_object o[1] = {{zid, 4, "/bin/zero"}};
	st_frame fr[1] = {{ST_FRAME_USER, 0, 0x99, NULL}};
	st_stack_def sd = {st_stack_hash(o, 1, fr, 1), fr, 1};
	st_series_def se = {TYPE, NULL, 0};
	st_sample sm = {T0, 0, sd.id, 5};
	st_batch b = {&se, 1, o, 1, &sd, 1, &sm, 1};
	for (int round = 0; round < 2; round++) {
		assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
		if (round == 0)
			assert_int_equal(st_append(db, &b, &err), 0);
		assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), 5);
		st_frame_info *fi;
		size_t n;
		assert_int_equal(st_stack_frames(db, sd.id, &fi, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(fi[0].build_id_len, 4);
		assert_memory_equal(fi[0].build_id, zid, 4);
		free(fi);
		st_close(db);
	}
}

/* Replay and coverage are keyed by partition start: a store refuses to be
 * opened with another partition size than it was created with. */
static void test_partition_size_kept(void **state)
{
	fx *f = *state;
	st_options o;
	st_options_default(&o);
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(append_batch(db, 1, 2, T0, 1, &err), 0);
	st_close(db);
	o.partition_ns = 2 * HOUR;
	memset(&err, 0, sizeof(err));
	assert_int_equal(st_open(f->dir, &o, &db, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "created with 3600 s partitions"));
	o.partition_ns = HOUR;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), 3);
	st_close(db);
}

static void test_locked(void **state)
{
	fx *f = *state;
	st_db *a, *b;
	st_err err;
	assert_int_equal(st_open(f->dir, NULL, &a, &err), 0);
	pid_t pid = fork();
	if (pid == 0) {
		/* flock is per open file: another process must be refused */
		int rc = st_open(f->dir, NULL, &b, &err);
		_exit(rc == -EBUSY && strstr(err.msg, "in use") ? 0 : 1);
	}
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	st_close(a);
}

/* ---- WAL recovery ---- */

static void wal_file(const char *dir, char *out, size_t n)
{
	char wd[PATH_MAX + 8];
	snprintf(wd, sizeof(wd), "%s/wal", dir);
	DIR *d = opendir(wd);
	struct dirent *e;
	out[0] = 0;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".wal"))
			snprintf(out, n, "%s/%.64s", wd, e->d_name);
	closedir(d);
}

static int copy_file(const char *from, const char *to, size_t len)
{
	uint8_t *buf;
	size_t n;
	int rc = st__read_file(from, &buf, &n, 1 << 30);
	if (rc)
		return rc;
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	rc = st__write_all(fd, buf, len < n ? len : n);
	close(fd);
	free(buf);
	return rc;
}

static int rec_off_cb(void *arg, uint64_t lsn, const uint8_t *p, size_t len)
{
	(void)lsn;
	(void)p;
	size_t *offs = arg;
	offs[offs[0] + 1] = len;
	offs[0]++;
	return 0;
}

/* The WAL cut at every record boundary and in the middle of every record:
 * reopening keeps exactly the records that were whole. */
static void test_wal_torn_tail(void **state)
{
	fx *f = *state;
	char src[PATH_MAX], dst[PATH_MAX], wal[PATH_MAX + 80];
	snprintf(src, sizeof(src), "%s/src", f->dir);
	st_db *db;
	st_err err;
	assert_int_equal(st_open(src, NULL, &db, &err), 0);
	const int N = 6;
	for (int i = 0; i < N; i++)
		assert_int_equal(append_batch(db, 1 + i % 2, 2, T0 + i * SEC, 1, &err), 0);
	st_close(db);
	wal_file(src, wal, sizeof(wal));
	uint8_t *img;
	size_t len;
	assert_int_equal(st__read_file(wal, &img, &len, 1 << 30), 0);
	size_t offs[64] = {0}, valid;
	assert_int_equal(st__wal_scan(img, len, rec_off_cb, offs, &valid), 0);
	assert_int_equal(offs[0], N);
	/* boundaries: header, then header + sum of records */
	size_t bound[16];
	bound[0] = ST__WAL_SEG_HDR;
	for (int i = 0; i < N; i++)
		bound[i + 1] = bound[i] + ST__WAL_REC_HDR + offs[i + 1];
	/* after the records, only the zeros the WAL writes ahead */
	assert_int_equal(valid, bound[N]);
	for (size_t z = bound[N]; z < len; z++)
		assert_int_equal(img[z], 0);
	/* batch i holds (1 + i%2) series x (1 + 2) */
	int64_t cum[16] = {0};
	for (int i = 0; i < N; i++)
		cum[i + 1] = cum[i] + (1 + i % 2) * 3;
	for (int r = 0; r <= N; r++) {
		size_t cuts[3] = {bound[r], bound[r] + 1, r < N ? bound[r] + ST__WAL_REC_HDR + offs[r + 1] / 2 : len};
		for (int c = 0; c < (r < N ? 3 : 1); c++) {
			snprintf(dst, sizeof(dst), "%s/cut%d_%d", f->dir, r, c);
			char wd[PATH_MAX + 8], wf[PATH_MAX + 80];
			snprintf(wd, sizeof(wd), "%s/wal", dst);
			assert_int_equal(st__mkdir_p(wd), 0);
			snprintf(wf, sizeof(wf), "%s/%s", wd, strrchr(wal, '/') + 1);
			assert_int_equal(copy_file(wal, wf, cuts[c]), 0);
			/* metadata lost too: the WAL alone must rebuild everything */
			assert_int_equal(st_open(dst, NULL, &db, &err), 0);
			int64_t got = merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL);
			if (got != cum[r])
				fail_msg("cut at %zu (record %d, variant %d): total %" PRId64
				         ", want %" PRId64, cuts[c], r, c, got, cum[r]);
			st_stats s;
			st_get_stats(db, &s);
			assert_int_equal(s.replayed_records, r);
			/* a cut after the last record leaves only zeros: not torn */
			assert_int_equal(s.torn_bytes, r == N ? 0 : cuts[c] - bound[r]);
			/* the store keeps working after dropping the tail */
			assert_int_equal(append_batch(db, 1, 2, T0 + 100 * SEC, 1, &err), 0);
			st_close(db);
			assert_int_equal(st_open(dst, NULL, &db, &err), 0);
			assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), cum[r] + 3);
			st_close(db);
			st__rm_rf(dst);
		}
	}
	/* damage inside a record that is not the tail of the last segment */
	free(img);
}

static void test_wal_corrupt_middle_segment(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	o.wal_segment_bytes = 4096; /* several segments */
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(append_batch(db, 2, 4, T0 + i * SEC, 1, &err), 0);
	st_stats s;
	st_get_stats(db, &s);
	assert_true(s.wal_segments >= 3);
	st_close(db);
	/* flip a byte in the first segment's first record */
	char wd[PATH_MAX + 8], first[PATH_MAX + 80] = "";
	snprintf(wd, sizeof(wd), "%s/wal", f->dir);
	DIR *d = opendir(wd);
	struct dirent *e;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".wal") && (!first[0] || strcmp(e->d_name, strrchr(first, '/') + 1) < 0))
			snprintf(first, sizeof(first), "%s/%.64s", wd, e->d_name);
	closedir(d);
	int fd = open(first, O_RDWR);
	uint8_t byte;
	assert_int_equal(pread(fd, &byte, 1, ST__WAL_SEG_HDR + ST__WAL_REC_HDR + 3), 1);
	byte ^= 0x40;
	assert_int_equal(pwrite(fd, &byte, 1, ST__WAL_SEG_HDR + ST__WAL_REC_HDR + 3), 1);
	close(fd);
	memset(&err, 0, sizeof(err));
	assert_int_equal(st_open(f->dir, &o, &db, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "corrupt"));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Losing a whole segment in the middle is damage, not a torn tail. */
static void test_wal_missing_segment(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	o.wal_segment_bytes = 4096;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(append_batch(db, 2, 4, T0 + i * SEC, 1, &err), 0);
	st_close(db);
	char wd[PATH_MAX + 8], path[PATH_MAX + 80];
	char *names[256];
	size_t n = 0;
	snprintf(wd, sizeof(wd), "%s/wal", f->dir);
	DIR *d = opendir(wd);
	struct dirent *e;
	while ((e = readdir(d)) && n < 256)
		if (strstr(e->d_name, ".wal"))
			names[n++] = strdup(e->d_name);
	closedir(d);
	assert_true(n >= 3);
	qsort(names, n, sizeof(*names), cmp_str);
	snprintf(path, sizeof(path), "%s/%.64s", wd, names[1]);
	assert_int_equal(unlink(path), 0);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	memset(&err, 0, sizeof(err));
	assert_int_equal(st_open(f->dir, &o, &db, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "missing"));
}

/* ---- blocks ---- */

static uint64_t rnd_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Rows with IDs, as the tests compare them. */
typedef struct idrow {
	int64_t ts;
	uint64_t series;
	uint64_t stack;
	int64_t value;
} idrow;

static int cmp_wrow(const void *a, const void *b)
{
	const idrow *x = a, *y = b;
	if (x->series != y->series)
		return x->series < y->series ? -1 : 1;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	if (x->stack != y->stack)
		return x->stack < y->stack ? -1 : 1;
	return x->value < y->value ? -1 : x->value > y->value;
}

/* Writes idrows as a block, building the universes the writer indexes. */
static int write_block_file(const char *path, const idrow *rows, size_t n, uint32_t chunk_rows)
{
	st__wrow *w = malloc(n * sizeof(*w));
	uint64_t *sids = malloc(n * sizeof(*sids)), *kids = malloc(n * sizeof(*kids));
	st__map sm, km;
	uint32_t ns = 0, nk = 0;
	st__map_init(&sm, n);
	st__map_init(&km, n);
	for (size_t i = 0; i < n; i++) {
		uint32_t s = st__map_get(&sm, rows[i].series), k = st__map_get(&km, rows[i].stack);
		if (s == ST__MAP_NONE) {
			sids[ns] = rows[i].series;
			st__map_put(&sm, rows[i].series, s = ns++);
		}
		if (k == ST__MAP_NONE) {
			kids[nk] = rows[i].stack;
			st__map_put(&km, rows[i].stack, k = nk++);
		}
		w[i] = (st__wrow){rows[i].ts, s, k, rows[i].value};
	}
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	st__blk_cover cov = {T0, 77};
	const char *parents[] = {"b0000000000000001"};
	st__block_spec spec = {&cov, 1, chunk_rows, parents, 1, sids, ns, kids, nk};
	int rc = st__block_write_fd(fd, w, n, &spec);
	close(fd);
	st__map_free(&sm);
	st__map_free(&km);
	free(w);
	free(sids);
	free(kids);
	return rc;
}

static void test_block_roundtrip(void **state)
{
	fx *f = *state;
	const size_t N = 20000;
	idrow *rows = malloc(N * sizeof(*rows));
	idrow *copy = malloc(N * sizeof(*rows));
	idrow *back = malloc(N * sizeof(*rows));
	/* ragged series, times going backwards at random, extreme values */
	for (size_t i = 0; i < N; i++) {
		rows[i].series = rnd() % 37 * 0x1000000000ULL + 5;
		rows[i].ts = T0 + (int64_t)(rnd() % 360) * 10 * SEC;
		rows[i].stack = (rnd() % 5 == 0) ? rnd() : rnd() % 50;
		rows[i].value = i % 1000 == 0 ? (i % 2000 ? ST_MAX_VALUE : -ST_MAX_VALUE) :
		                (int64_t)(rnd() % 9) - 1;
	}
	memcpy(copy, rows, N * sizeof(*rows));
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/blk", f->dir);
	assert_int_equal(write_block_file(path, rows, N, 1000), 0);
	uint8_t *img;
	size_t len;
	assert_int_equal(st__read_file(path, &img, &len, 1 << 30), 0);
	st__block b;
	st_err err;
	assert_int_equal(st__block_parse(img, len, &b, &err), 0);
	assert_int_equal(b.nrows, N);
	assert_int_equal(b.nchunks, 20);
	assert_int_equal(b.nseries, 37);
	assert_int_equal(b.ncover, 1);
	assert_true(b.cover[0].wal_lsn == 77);
	assert_int_equal(b.nparents, 1);
	assert_string_equal(b.parents[0], "b0000000000000001");
	st__chunk_rows cr = {0};
	size_t n = 0;
	int64_t prev_t = INT64_MIN;
	uint32_t prev_s = 0;
	for (uint32_t c = 0; c < b.nchunks; c++) {
		assert_int_equal(st__chunk_decode(&b, c, &cr), 0);
		for (uint32_t i = 0; i < cr.n; i++) {
			/* rows come sorted by (series, time) */
			if (n && cr.series[i] == prev_s)
				assert_true(cr.ts[i] >= prev_t);
			else if (n)
				assert_true(cr.series[i] > prev_s);
			prev_s = cr.series[i];
			prev_t = cr.ts[i];
			back[n++] = (idrow){cr.ts[i], b.series[cr.series[i]].id,
			                    b.stacks[cr.stack[i]], cr.value[i]};
		}
	}
	assert_int_equal(n, N);
	qsort(copy, N, sizeof(*copy), cmp_wrow);
	qsort(back, N, sizeof(*back), cmp_wrow);
	assert_memory_equal(copy, back, N * sizeof(*copy));
	/* the dictionary is ordered by frequency: the rare random IDs last */
	assert_true(b.stacks[0] < 50);
	st__chunk_rows_free(&cr);
	st__block_release(&b);
	free(img);
	free(rows);
	free(copy);
	free(back);
}

/* st_series_steps against the same sums worked out from st_rows, over
 * blocks and the head together, with a range and an origin that cut steps
 * and partitions in the middle and one series left out. */
typedef struct steps_ref {
	const st_selection *sel;
	const uint32_t *group;
	int64_t from, origin, step;
	size_t nsteps;
	int64_t *sum;
	uint8_t *has;
} steps_ref;

static int steps_ref_row(void *arg, const st_row *r)
{
	steps_ref *a = arg;
	size_t pos = 0;
	while (st_selection_id(a->sel, pos) != r->series_id)
		pos++;
	size_t k = (size_t)((r->ts_ns - a->origin) / a->step);
	if (a->group[pos] == UINT32_MAX || k >= a->nsteps)
		return 0;
	a->sum[a->group[pos] * a->nsteps + k] += r->value;
	a->has[a->group[pos] * a->nsteps + k] = 1;
	return 0;
}

static void test_series_steps(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int i = 0; i < 40; i++) {
		assert_int_equal(append_batch(db, 5, 4, T0 + i * 200 * SEC, i + 1, &err), 0);
		if (i == 25)   /* the first 26 batches in blocks, the rest in the head */
			assert_int_equal(st_cut(db, T0 + 3 * HOUR, 1), 0);
	}
	st_stats stats;
	st_get_stats(db, &stats);
	assert_true(stats.blocks > 0 && stats.head_rows > 0);
	st_selection *sel;
	int64_t from = T0 + 1000 * SEC + 1, to = T0 + 7000 * SEC;
	assert_int_equal(st_select(db, all_cpu, 1, from, to, &sel, &err), 0);
	size_t ns = st_selection_count(sel);
	assert_int_equal(ns, 5);
	uint32_t group[5] = {0, 1, 0, UINT32_MAX, 1};
	enum { NSTEPS = 9 };
	int64_t origin = T0 + 700 * SEC, step = 700 * SEC;
	int64_t sum[2 * NSTEPS] = {0}, want[2 * NSTEPS] = {0};
	uint8_t has[2 * NSTEPS] = {0}, want_has[2 * NSTEPS] = {0};
	assert_int_equal(st_series_steps(db, sel, from, to, origin, step, NSTEPS, group,
	                                 sum, has), 0);
	steps_ref ref = {sel, group, from, origin, step, NSTEPS, want, want_has};
	assert_int_equal(st_rows(db, sel, from, to, steps_ref_row, &ref), 0);
	assert_memory_equal(sum, want, sizeof(sum));
	assert_memory_equal(has, want_has, sizeof(has));
	int64_t total = 0;
	for (int i = 0; i < 2 * NSTEPS; i++)
		total += sum[i];
	assert_true(total > 0);
	st_selection_free(sel);
	st_close(db);
}

/* Compaction's merge reads its inputs a chunk at a time: the block it
 * writes must hold exactly the rows of its inputs, sorted as the in-memory
 * writer sorts them, with one dictionary ordered by the combined counts,
 * whatever the inputs share (series, times, stacks). */
static void test_block_merge(void **state)
{
	fx *f = *state;
	enum { NIN = 3, N = 30000 };
	idrow *rows = malloc(N * sizeof(*rows));
	idrow *back = malloc(N * sizeof(*rows));
	size_t nin[NIN] = {0};
	idrow *in[NIN];
	for (int j = 0; j < NIN; j++)
		in[j] = malloc(N * sizeof(*rows));
	for (size_t i = 0; i < N; i++) {
		rows[i].series = rnd() % 41 * 0x1000000000ULL + 3;
		/* few distinct times, so (series, time) groups span inputs */
		rows[i].ts = T0 + (int64_t)(rnd() % 50) * SEC;
		rows[i].stack = (rnd() % 7 == 0) ? rnd() : rnd() % 60;
		rows[i].value = (int64_t)(rnd() % 5) + 1;
		/* one input holds the first rows only: ranges that do not overlap */
		int j = i < 2000 ? 0 : (int)(rnd() % NIN);
		in[j][nin[j]++] = rows[i];
	}
	st__block b[NIN + 1];
	uint8_t *img[NIN + 1];
	size_t len;
	st_err err;
	char path[PATH_MAX + 16];
	for (int j = 0; j < NIN; j++) {
		snprintf(path, sizeof(path), "%s/in%d", f->dir, j);
		assert_int_equal(write_block_file(path, in[j], nin[j], 997), 0);
		assert_int_equal(st__read_file(path, &img[j], &len, 1 << 30), 0);
		assert_int_equal(st__block_parse(img[j], len, &b[j], &err), 0);
	}
	const st__block *ins[NIN] = {&b[0], &b[1], &b[2]};
	st__blk_cover cov = {T0, 99};
	const char *parents[] = {"in0", "in1", "in2"};
	st__block_spec spec = {.cover = &cov, .ncover = 1, .chunk_rows = 1000,
	                       .parents = parents, .nparents = NIN};
	snprintf(path, sizeof(path), "%s/out", f->dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(st__block_merge_fd(fd, ins, NIN, &spec), 0);
	close(fd);
	assert_int_equal(st__read_file(path, &img[NIN], &len, 1 << 30), 0);
	st__block *o = &b[NIN];
	assert_int_equal(st__block_parse(img[NIN], len, o, &err), 0);
	assert_int_equal(o->nrows, N);
	assert_int_equal(o->nchunks, N / 1000);
	assert_int_equal(o->nseries, 41);
	assert_int_equal(o->nparents, NIN);
	assert_true(o->cover[0].wal_lsn == 99);
	st__chunk_rows cr = {0};
	size_t n = 0;
	int64_t pt = 0;
	uint32_t ps = 0, pk = 0;
	for (uint32_t c = 0; c < o->nchunks; c++) {
		assert_int_equal(st__chunk_decode(o, c, &cr), 0);
		for (uint32_t i = 0; i < cr.n; i++) {
			/* (series, time, rank) order, across chunk boundaries too */
			if (n) {
				assert_true(cr.series[i] >= ps);
				if (cr.series[i] == ps)
					assert_true(cr.ts[i] > pt || (cr.ts[i] == pt && cr.stack[i] >= pk));
			}
			ps = cr.series[i];
			pt = cr.ts[i];
			pk = cr.stack[i];
			back[n++] = (idrow){cr.ts[i], o->series[cr.series[i]].id,
			                    o->stacks[cr.stack[i]], cr.value[i]};
		}
	}
	assert_int_equal(n, N);
	qsort(rows, N, sizeof(*rows), cmp_wrow);
	qsort(back, N, sizeof(*back), cmp_wrow);
	assert_memory_equal(rows, back, N * sizeof(*rows));
	/* the common stacks rank first over all inputs, the random IDs last */
	for (uint32_t k = 0; k < 60 && k < o->nstacks; k++)
		assert_true(o->stacks[k] < 60);
	/* a merge of nothing is refused */
	fd = open(path, O_RDWR | O_TRUNC);
	assert_int_equal(st__block_merge_fd(fd, ins, 0, &spec), -EINVAL);
	close(fd);
	st__chunk_rows_free(&cr);
	for (int j = 0; j <= NIN; j++) {
		st__block_release(&b[j]);
		free(img[j]);
	}
	for (int j = 0; j < NIN; j++)
		free(in[j]);
	free(rows);
	free(back);
}

/* Every truncation and every single-byte change of a block is either
 * rejected by parse/decode or, where a CRC cannot see it (none should
 * exist), at least never crashes. */
static void test_block_rejects_damage(void **state)
{
	fx *f = *state;
	const size_t N = 300;
	idrow rows[300];
	for (size_t i = 0; i < N; i++)
		rows[i] = (idrow){T0 + (int64_t)(i % 30) * SEC, i % 4, i % 11, (int64_t)i};
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/blk", f->dir);
	assert_int_equal(write_block_file(path, rows, N, 64), 0);
	uint8_t *img;
	size_t len;
	assert_int_equal(st__read_file(path, &img, &len, 1 << 30), 0);
	st__block b;
	st_err err;
	st__chunk_rows cr = {0};
	for (size_t cut = 0; cut < len; cut++) {
		uint8_t *t = malloc(cut ? cut : 1);
		memcpy(t, img, cut);
		assert_int_equal(st__block_parse(t, cut, &b, &err), -EBADMSG);
		free(t);
	}
	size_t undetected = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t *t = malloc(len);
		memcpy(t, img, len);
		t[i] ^= 0x10;
		int rc = st__block_parse(t, len, &b, &err);
		if (rc == 0) {
			int bad = 0;
			for (uint32_t c = 0; c < b.nchunks; c++)
				bad |= st__chunk_decode(&b, c, &cr) != 0;
			undetected += !bad;
			st__block_release(&b);
		}
		free(t);
	}
	/* bytes 12..15 (flags) and 88..91 (reserved) are covered by the header
	 * CRC too, so every flip is caught */
	assert_int_equal(undetected, 0);
	st__chunk_rows_free(&cr);
	free(img);
}

/* A damaged block in the data dir stops the store from opening, with a
 * message naming it, rather than serving wrong answers. */
static void test_open_rejects_damaged_block(void **state)
{
	fx *f = *state;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	assert_int_equal(append_batch(db, 2, 2, T0, 1, &err), 0);
	assert_int_equal(st_cut(db, T0, 1), 0);
	st_close(db);
	char bd[PATH_MAX + 8], file[PATH_MAX + 120] = "";
	snprintf(bd, sizeof(bd), "%s/blocks", f->dir);
	DIR *d = opendir(bd);
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] == 'b')
			snprintf(file, sizeof(file), "%s/%.32s/data.smb", bd, e->d_name);
	closedir(d);
	assert_int_equal(truncate(file, 50), 0);
	memset(&err, 0, sizeof(err));
	assert_int_equal(st_open(f->dir, NULL, &db, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "damaged"));
}

/* ---- retention and compaction ---- */

static size_t count_block_dirs(const char *dir)
{
	char bd[PATH_MAX + 8];
	snprintf(bd, sizeof(bd), "%s/blocks", dir);
	DIR *d = opendir(bd);
	struct dirent *e;
	size_t n = 0;
	while ((e = readdir(d)))
		n += e->d_name[0] == 'b';
	closedir(d);
	return n;
}

static void test_retention(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	o.retention_ns = 24 * HOUR;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int h = 0; h < 5; h++)
		assert_int_equal(append_batch(db, 1, 2, T0 + h * HOUR, 1, &err), 0);
	assert_int_equal(st_cut(db, T0 + 6 * HOUR, 0), 0);
	assert_int_equal(count_block_dirs(f->dir), 5);
	/* one day after hour 2 ends: hours 0..2 go, 3 and 4 stay */
	assert_int_equal(st_retention(db, T0 + 2 * HOUR + 24 * HOUR + 1), 0);
	st_stats s;
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 2);
	assert_int_equal(count_block_dirs(f->dir), 2);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), 2 * 3);
	st_close(db);
	/* and they stay gone: the WAL does not bring them back */
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), 2 * 3);
	st_close(db);
}

/* --max-disk: the oldest blocks go first until the rest fit; the head
 * (rows not cut yet) is never deleted for it. */
static void test_retention_bytes(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	o.retention_ns = 0;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int h = 0; h < 5; h++)
		assert_int_equal(append_batch(db, 1, 2, T0 + h * HOUR, 1, &err), 0);
	assert_int_equal(st_cut(db, T0 + 6 * HOUR, 0), 0);
	int64_t per_hour = merged_total(db, all_cpu, 1, T0, T0 + HOUR, NULL, NULL);
	assert_true(per_hour > 0);
	st_stats s;
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 5);
	uint64_t all = s.block_bytes;
	/* under the limit (and no limit at all): nothing goes */
	assert_int_equal(st_retention(db, T0 + 100 * HOUR), 0);
	st_close(db);
	o.max_block_bytes = all;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(st_retention(db, T0 + 100 * HOUR), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 5);
	st_close(db);

	/* one byte over: exactly the oldest block (hour 0) goes */
	o.max_block_bytes = all - 1;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(append_batch(db, 1, 2, T0 + 7 * HOUR, 1, &err), 0);  /* head only */
	assert_int_equal(st_retention(db, T0 + 100 * HOUR), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 4);
	assert_true(s.block_bytes <= all - 1);
	assert_int_equal(count_block_dirs(f->dir), 4);
	assert_int_equal(merged_total(db, all_cpu, 1, T0, T0 + HOUR, NULL, NULL), 0);
	assert_int_equal(merged_total(db, all_cpu, 1, T0 + HOUR, T0 + 5 * HOUR, NULL, NULL),
	                 4 * per_hour);
	st_close(db);

	/* a limit below any block: every block goes, oldest first, and the
	 * head's hour 7 stays (from the WAL across the reopen too) */
	o.max_block_bytes = 1;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(st_retention(db, T0 + 100 * HOUR), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 0);
	assert_int_equal(count_block_dirs(f->dir), 0);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), per_hour);
	st_close(db);
	/* and what went stays gone */
	o.max_block_bytes = 0;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), per_hour);
	st_close(db);
}

static void test_compaction(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	o.compact_max_span_ns = 3 * HOUR;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	/* hour 0 cut twice (late data), hours 1..5 once each */
	assert_int_equal(append_batch(db, 2, 3, T0, 1, &err), 0);
	assert_int_equal(st_cut(db, T0, 1), 0);
	assert_int_equal(append_batch(db, 2, 3, T0 + 60 * SEC, 1, &err), 0);
	for (int h = 1; h < 6; h++)
		assert_int_equal(append_batch(db, 2, 3, T0 + h * HOUR, 1, &err), 0);
	assert_int_equal(st_cut(db, T0 + 7 * HOUR, 0), 0);
	st_stats s;
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 7);
	int64_t want = 7 * 2 * 6;
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
	assert_int_equal(st_compact(db), 0);
	st_get_stats(db, &s);
	/* spans of at most 3 h: [0,2h] and [3h,5h] */
	assert_int_equal(s.blocks, 2);
	assert_int_equal(count_block_dirs(f->dir), 2);
	assert_int_equal(s.block_rows, 7 * 6);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
	assert_int_equal(merged_total(db, all_cpu, 1, T0 + HOUR, T0 + 4 * HOUR, NULL, NULL), 3 * 12);
	/* compacting again changes nothing */
	assert_int_equal(st_compact(db), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 2);
	st_close(db);
	/* replay after compaction: the coverage survived, nothing is doubled */
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
	st_close(db);
}

/* A compaction that crashed after writing its output but before deleting
 * its inputs: at open, the output wins and the inputs go. */
static void test_compaction_parents_removed(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	for (int h = 0; h < 2; h++)
		assert_int_equal(append_batch(db, 1, 2, T0 + h * HOUR, 1, &err), 0);
	assert_int_equal(st_cut(db, T0 + 3 * HOUR, 0), 0);
	st_close(db);
	/* copy both blocks aside, compact, then put the inputs back */
	char bd[PATH_MAX + 8], save[PATH_MAX + 8], cmd[3 * PATH_MAX];
	snprintf(bd, sizeof(bd), "%s/blocks", f->dir);
	snprintf(save, sizeof(save), "%s/save", f->dir);
	snprintf(cmd, sizeof(cmd), "cp -a %s %s", bd, save);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(st_compact(db), 0);
	st_close(db);
	assert_int_equal(count_block_dirs(f->dir), 1);
	snprintf(cmd, sizeof(cmd), "cp -a %s/. %s/", save, bd);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(count_block_dirs(f->dir), 3);
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	st_stats s;
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 1);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), 2 * 3);
	st_close(db);
	assert_int_equal(count_block_dirs(f->dir), 1);
}

/* ---- concurrency and crashes ---- */

typedef struct thr {
	st_db *db;
	int id;
	int rc;
} thr;

static void *append_thread(void *arg)
{
	thr *t = arg;
	st_err err;
	for (int i = 0; i < 50 && !t->rc; i++)
		t->rc = append_batch(t->db, 1 + t->id % 3, 4, T0 + (t->id * 1000 + i) * SEC, 1, &err);
	return NULL;
}

static void test_concurrent_appends(void **state)
{
	fx *f = *state;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	pthread_t th[6];
	thr t[6];
	for (int i = 0; i < 6; i++) {
		t[i] = (thr){db, i, 0};
		pthread_create(&th[i], NULL, append_thread, &t[i]);
	}
	/* a cut in the middle must not lose or double anything */
	assert_int_equal(st_cut(db, T0 + 10000 * SEC, 1), 0);
	int64_t want = 0;
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].rc, 0);
		want += 50 * (1 + i % 3) * 10;
	}
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
	st_close(db);
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
	st_close(db);
}

/* The child appends batch after batch, cutting blocks and compacting now
 * and then, and reports each acknowledged batch number on a pipe. The
 * parent kills it with SIGKILL at a random moment, reopens the store and
 * checks that every acknowledged batch is there exactly once. Batch k has
 * one sample of value k at time T0 + k * 97 s, so the set of stored batches
 * is readable from the rows. */
static void crash_child(const char *dir, int wfd, int start)
{
	st_options o = small_opts();
	o.wal_segment_bytes = 16384;
	st_db *db;
	st_err err;
	if (st_open(dir, &o, &db, &err))
		_exit(3);
	tstack sk;
	mk_stack(&sk, 0);
	tseries se;
	mk_series(&se, 0);
	for (int k = start;; k++) {
		st_sample sm = {T0 + (int64_t)k * 97 * SEC, 0, sk.def.id, k};
		st_batch b = {&se.def, 1, objs, 2, &sk.def, 1, &sm, 1};
		if (st_append(db, &b, &err))
			_exit(4);
		if (write(wfd, &k, sizeof(k)) != sizeof(k))
			_exit(5);
		if (k % 29 == 0 && st_cut(db, sm.ts_ns, 0))
			_exit(6);
		if (k % 101 == 0 && st_compact(db))
			_exit(7);
	}
}

static int collect_row(void *arg, const st_row *r)
{
	uint8_t *seen = arg;
	int64_t k = r->value;
	if (k < 0 || k >= 1 << 20 || r->ts_ns != T0 + k * 97 * SEC)
		return -EBADMSG;
	if (seen[k])
		return -EEXIST; /* stored twice */
	seen[k] = 1;
	return 0;
}

static void test_crash_kill9(void **state)
{
	fx *f = *state;
	int acked = -1; /* highest acknowledged batch */
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	/* 12 rounds, more while fewer than a dozen batches were acknowledged:
	 * on a loaded machine a child may manage none before its kill, and
	 * the check needs acknowledged batches to mean anything */
	for (int round = 0; round < 12 || (acked <= 10 && round < 200); round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(p[0]);
			crash_child(f->dir, p[1], acked + 1);
		}
		close(p[1]);
		/* let it run 0..300 ms: early kills land inside st_open */
		struct timespec ts = {0, (rand() % 300) * 1000000L};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int k;
		while (read(p[0], &k, sizeof(k)) == sizeof(k))
			if (k > acked)
				acked = k;
		close(p[0]);
		int status;
		waitpid(pid, &status, 0);
		assert_true(WIFSIGNALED(status)); /* it died by our hand, not an error */

		st_db *db;
		st_err err;
		st_options o = small_opts();
		o.wal_segment_bytes = 16384;
		if (st_open(f->dir, &o, &db, &err))
			fail_msg("round %d: reopen failed: %s", round, err.msg);
		uint8_t *seen = calloc(1 << 20, 1);
		st_selection *sel;
		assert_int_equal(st_select(db, NULL, 0, 0, INT64_MAX, &sel, &err), 0);
		assert_int_equal(st_rows(db, sel, 0, INT64_MAX, collect_row, seen), 0);
		st_selection_free(sel);
		/* every acknowledged batch is there; a batch written but killed
		 * before its acknowledgement may be there too, nothing else */
		int stored = -1;
		for (int i = 0; i < 1 << 20; i++)
			if (seen[i]) {
				stored = i;
				assert_true(i <= acked + 1);
			}
		for (int i = 0; i <= acked; i++)
			if (!seen[i])
				fail_msg("round %d: acknowledged batch %d is missing (acked up to %d)",
				         round, i, acked);
		if (stored > acked)
			acked = stored;
		free(seen);
		st_close(db);
	}
	assert_true(acked > 10);
}

/* A metadata transaction that rolls back takes its object and location IDs
 * with it: the writer's caches must forget them, or the next insert reuses
 * the rowid and a stack names another object's frame. */
static void test_meta_rollback_forgets_ids(void **state)
{
	fx *f = *state;
	char path[1100];
	snprintf(path, sizeof(path), "%s/meta.db", f->dir);
	st__meta *m = NULL;
	st_err err;
	assert_int_equal(st__meta_open(path, &m, &err), 0);
	st_frame fa = {ST_FRAME_USER, 0, 0x10, NULL}, fb = {ST_FRAME_USER, 1, 0x10, NULL};
	st_stack_def sa = {0xa1, &fa, 1}, sb = {0xb1, &fb, 1}, sa2 = {0xa2, &fa, 1};
	st_batch b = {.objects = objs, .nobjects = 2};

	assert_int_equal(st__meta_begin(m), 0);
	assert_int_equal(st__meta_put_stack(m, &b, &sa), 0);
	st__meta_rollback(m);
	assert_int_equal(st__meta_begin(m), 0);
	assert_int_equal(st__meta_put_stack(m, &b, &sb), 0);
	assert_int_equal(st__meta_commit(m), 0);
	assert_int_equal(st__meta_begin(m), 0);
	assert_int_equal(st__meta_put_stack(m, &b, &sa2), 0);
	assert_int_equal(st__meta_commit(m), 0);

	const struct { uint64_t id; const uint8_t *bid; } want[] = {{0xb1, bid_b}, {0xa2, bid_a}};
	for (size_t i = 0; i < 2; i++) {
		st_frame_info *fi = NULL;
		size_t n = 0;
		assert_int_equal(st__meta_stack_frames(m, want[i].id, &fi, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(fi[0].build_id_len, 20);
		assert_memory_equal(fi[0].build_id, want[i].bid, 20);
		assert_int_equal(fi[0].offset, 0x10);
		free(fi);
	}
	/* the rolled-back stack is not there */
	st_frame_info *fi = NULL;
	size_t n = 0;
	assert_int_equal(st__meta_stack_frames(m, 0xa1, &fi, &n), -ENOENT);
	free(fi);
	st__meta_close(m);
}


/* ---- reliability: failure paths, limits, damage ---- */

/* The fault hook: fails the (skip+1)-th pass through `point` with -EIO. */
static int g_fault_point = -1, g_fault_skip, g_fault_hits;

static int fault_hook(int point)
{
	if (point != g_fault_point)
		return 0;
	return g_fault_hits++ == g_fault_skip ? -EIO : 0;
}

static void fault_at(int point, int skip)
{
	g_fault_point = point;
	g_fault_skip = skip;
	g_fault_hits = 0;
	st__fault_hook = fault_hook;
}

static void fault_off(void)
{
	st__fault_hook = NULL;
	g_fault_point = -1;
}

/* A cut that fails while opening the block it wrote, while recording it in
 * memory, or while writing its coverage to SQLite, for the first or the
 * second of two partitions, must leave every row exactly once: in memory
 * at once, after a retry, and after a restart with or without the retry.
 * (A block left under its live name doubled the rows at the retry's
 * restart; coverage written for a block then deleted lost them.) */
static void test_cut_faults(void **state)
{
	fx *f = *state;
	static const int points[] = {ST__FAULT_CUT_OPEN, ST__FAULT_CUT_MEMORY,
	                             ST__FAULT_CUT_COVER};
	st_options o = small_opts();
	for (size_t p = 0; p < 3; p++)
		for (int skip = 0; skip < 2; skip++)
			for (int retry = 0; retry < 2; retry++) {
				char dir[1100];
				snprintf(dir, sizeof(dir), "%s/p%zu.%d.%d", f->dir, p, skip, retry);
				st_db *db;
				st_err err;
				assert_int_equal(st_open(dir, &o, &db, &err), 0);
				assert_int_equal(append_batch(db, 2, 10, T0 + SEC, 1, &err), 0);
				assert_int_equal(append_batch(db, 2, 10, T0 + HOUR + SEC, 3, &err), 0);
				int64_t want = merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL);
				assert_true(want > 0);
				fault_at(points[p], skip);
				assert_int_equal(st_cut(db, T0 + 3 * HOUR, 0), -EIO);
				fault_off();
				assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
				if (retry) {
					assert_int_equal(st_cut(db, T0 + 3 * HOUR, 0), 0);
					assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL),
					                 want);
					st_stats s;
					st_get_stats(db, &s);
					assert_int_equal(s.head_rows, 0);
					assert_int_equal(s.blocks, 2);
				}
				st_close(db);
				assert_int_equal(st_open(dir, &o, &db, &err), 0);
				assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
				/* and once more after a clean cut of whatever is left */
				assert_int_equal(st_cut(db, T0 + 3 * HOUR, 1), 0);
				st_close(db);
				assert_int_equal(st_open(dir, &o, &db, &err), 0);
				assert_int_equal(merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL), want);
				st_close(db);
			}
}

/* A batch the WAL refuses (a full disk) leaves no series and no stack in
 * SQLite: they used to be committed first and came back at restart. */
static void test_refused_batch_leaves_nothing(void **state)
{
	fx *f = *state;
	st_db *db;
	st_err err;
	st_stats s;
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	fault_at(ST__FAULT_APPEND_WAL, 0);
	assert_int_equal(append_batch(db, 3, 4, T0, 1, &err), -ENOSPC);
	fault_off();
	assert_non_null(strstr(err.msg, "/wal"));
	st_get_stats(db, &s);
	assert_int_equal(s.series, 0);
	st_close(db);
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.series, 0);
	assert_int_equal(s.stacks, 0);
	/* the same batch later, with room: stored whole */
	assert_int_equal(append_batch(db, 3, 4, T0, 1, &err), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.series, 3);
	st_close(db);
}

/* Sums saturate at INT64_MAX, in the head and in blocks, for the merge
 * and the timeline alike: 40,000 rows of 2^48 passed int64 and came back
 * negative. A small sum beside it stays exact. */
static void test_sums_saturate(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	o.chunk_rows = 16384;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	enum { N = 40000 };
	tseries se;
	mk_series(&se, 0);
	tstack sk[2];
	mk_stack(&sk[0], 0);
	mk_stack(&sk[1], 1);
	st_stack_def kd[2] = {sk[0].def, sk[1].def};
	st_sample *sm = calloc(N + 1, sizeof(*sm));
	for (int i = 0; i < N; i++)
		sm[i] = (st_sample){T0 + i, 0, sk[0].def.id, ST_MAX_VALUE};
	sm[N] = (st_sample){T0, 0, sk[1].def.id, 5};
	st_batch b = {&se.def, 1, objs, 2, kd, 2, sm, N + 1};
	assert_int_equal(st_append(db, &b, &err), 0);
	free(sm);
	for (int pass = 0; pass < 2; pass++) {   /* the head, then a block */
		st_selection *sel;
		st_stack_sum *v;
		size_t n;
		assert_int_equal(st_select(db, all_cpu, 1, 0, INT64_MAX, &sel, &err), 0);
		assert_int_equal(st_merge(db, sel, 0, INT64_MAX, &v, &n), 0);
		assert_int_equal(n, 2);
		for (size_t i = 0; i < n; i++)
			assert_true(v[i].value == (v[i].stack_id == sk[0].def.id ? INT64_MAX : 5));
		free(v);
		int64_t sum[1] = {0};
		uint8_t has[1] = {0};
		uint32_t group[1] = {0};
		assert_int_equal(st_series_steps(db, sel, 0, INT64_MAX, T0, HOUR, 1, group, sum,
		                                 has), 0);
		assert_true(sum[0] == INT64_MAX && has[0]);
		assert_true(st_sum_saturated(sum[0]));
		st_selection_free(sel);
		assert_int_equal(st_cut(db, T0 + 3 * HOUR, 1), 0);
	}
	st_close(db);
	/* the rule itself: sticky at either end, exact below */
	assert_true(st_sum_add(INT64_MAX - 1, 1) == INT64_MAX);
	assert_true(st_sum_add(INT64_MAX - 1, 2) == INT64_MAX);
	assert_true(st_sum_add(INT64_MAX, -5) == INT64_MAX);
	assert_true(st_sum_add(-5, INT64_MAX) == INT64_MAX);
	assert_true(st_sum_add(INT64_MIN + 1, -2) == INT64_MIN);
	assert_true(st_sum_add(40, 2) == 42);
}

/* A row dated more than max_future_ns ahead of the clock is refused with a
 * message naming the limit, and nothing of its batch is stored. */
static void test_future_rows_refused(void **state)
{
	fx *f = *state;
	st_db *db;
	st_err err;
	st_stats s;
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
	assert_int_equal(append_batch(db, 1, 1, now + 11 * 60 * SEC, 1, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "ahead of this server's clock"));
	assert_int_equal(append_batch(db, 1, 1, 4102444800LL * SEC /* 2100-01-01 */, 1, &err),
	                 -EINVAL);
	st_get_stats(db, &s);
	assert_int_equal(s.series, 0);
	assert_int_equal(s.head_rows, 0);
	/* within the limit: fine */
	assert_int_equal(append_batch(db, 1, 1, now + 60 * SEC, 1, &err), 0);
	st_close(db);
}

/* Past max_series a batch adding a series is refused (-EUSERS, naming the
 * limit); batches of known series still pass. */
static void test_series_limit(void **state)
{
	fx *f = *state;
	st_options o;
	st_options_default(&o);
	o.max_series = 3;
	st_db *db;
	st_err err;
	st_stats s;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(append_batch(db, 3, 2, T0, 1, &err), 0);
	assert_int_equal(append_batch(db, 4, 2, T0 + SEC, 1, &err), -EUSERS);
	assert_non_null(strstr(err.msg, "--max-series"));
	assert_int_equal(append_batch(db, 2, 2, T0 + 2 * SEC, 1, &err), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.series, 3);
	st_close(db);
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	st_get_stats(db, &s);
	assert_int_equal(s.series, 3);
	st_close(db);
}

/* A regex that exhausts PCRE2's match budget on a stored value is an error
 * naming the regex, for =~ (through the index) and !~ (per series) alike:
 * it was taken for "no match", and for "match" under !~. A deadline that
 * has passed stops the selection. */
static void test_regex_budget_and_deadline(void **state)
{
	fx *f = *state;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	char val[80];
	memset(val, 'a', 60);
	strcpy(val + 60, "!");
	st_label l[1] = {{"service", val}};
	st_series_def sd = {TYPE, l, 1};
	tstack sk;
	mk_stack(&sk, 0);
	st_sample sm = {T0, 0, sk.def.id, 1};
	st_batch b = {&sd, 1, objs, 2, &sk.def, 1, &sm, 1};
	assert_int_equal(st_append(db, &b, &err), 0);
	static const st_matcher re[] = {{"service", ST_MATCH_RE, "(a|a)+"}};
	static const st_matcher nre[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                 {"service", ST_MATCH_NRE, "(a|a)+"}};
	st_selection *sel = NULL;
	memset(&err, 0, sizeof(err));
	assert_int_equal(st_select(db, re, 1, 0, INT64_MAX, &sel, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "(a|a)+"));
	assert_non_null(strstr(err.msg, "service"));
	assert_null(sel);
	memset(&err, 0, sizeof(err));
	assert_int_equal(st_select(db, nre, 2, 0, INT64_MAX, &sel, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "(a|a)+"));
	/* a cheap regex over the same value still answers */
	static const st_matcher ok[] = {{"service", ST_MATCH_RE, "a+!"}};
	assert_int_equal(st_select(db, ok, 1, 0, INT64_MAX, &sel, &err), 0);
	assert_int_equal(st_selection_count(sel), 1);
	st_selection_free(sel);
	/* past the deadline: the selection, and reads over a selection */
	assert_int_equal(st_select_until(db, ok, 1, 0, INT64_MAX, st_mono_ns() - 1, &sel, &err),
	                 -ETIMEDOUT);
	assert_int_equal(st_cut(db, T0 + 3 * HOUR, 1), 0);
	assert_int_equal(st_select_until(db, ok, 1, 0, INT64_MAX, st_mono_ns() + 200000000,
	                                 &sel, &err), 0);
	struct timespec d = {0, 300000000};
	nanosleep(&d, NULL);
	st_stack_sum *v = NULL;
	size_t n;
	assert_int_equal(st_merge(db, sel, 0, INT64_MAX, &v, &n), -ETIMEDOUT);
	free(v);
	st_selection_free(sel);
	st_close(db);
}

/* A damaged chunk costs its own rows, not the query: reads skip it, count
 * it on the selection (the answer says so) and go on; compaction leaves
 * the block alone instead of failing every pass. */
static void test_damaged_chunk_skipped(void **state)
{
	fx *f = *state;
	st_options o = small_opts();
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, &o, &db, &err), 0);
	assert_int_equal(append_batch(db, 2, 10, T0 + SEC, 1, &err), 0);
	assert_int_equal(st_cut(db, T0 + 3 * HOUR, 1), 0);
	int64_t full = merged_total(db, all_cpu, 1, 0, INT64_MAX, NULL, NULL);
	/* chunk 0 starts at byte 96 (docs/format.md): flip one of its bytes in
	 * the file the store has mapped */
	char bd[PATH_MAX + 8], file[PATH_MAX + 120] = "";
	snprintf(bd, sizeof(bd), "%s/blocks", f->dir);
	DIR *d = opendir(bd);
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] == 'b')
			snprintf(file, sizeof(file), "%s/%.32s/data.smb", bd, e->d_name);
	closedir(d);
	int fd = open(file, O_RDWR);
	assert_true(fd >= 0);
	uint8_t byte;
	assert_int_equal(pread(fd, &byte, 1, 100), 1);
	byte ^= 0xff;
	assert_int_equal(pwrite(fd, &byte, 1, 100), 1);
	close(fd);
	st_selection *sel;
	st_stack_sum *v;
	size_t n;
	assert_int_equal(st_select(db, all_cpu, 1, 0, INT64_MAX, &sel, &err), 0);
	assert_int_equal(st_merge(db, sel, 0, INT64_MAX, &v, &n), 0);
	assert_int_equal(st_selection_damaged(sel), 1);
	int64_t part = 0;
	for (size_t i = 0; i < n; i++)
		part += v[i].value;
	assert_true(part > 0 && part < full);
	free(v);
	st_selection_free(sel);
	/* a second block beside it: compaction merges nothing with the
	 * damaged one and does not fail */
	assert_int_equal(append_batch(db, 2, 10, T0 + 2 * SEC, 1, &err), 0);
	assert_int_equal(st_cut(db, T0 + 3 * HOUR, 1), 0);
	assert_int_equal(st_compact(db), 0);
	st_stats s;
	st_get_stats(db, &s);
	assert_int_equal(s.blocks, 2);
	st_close(db);
}

/* A damaged meta.db stops the open with a message that names the file and
 * how to recover it, not "loading metadata: Bad message". */
static void test_meta_damaged_message(void **state)
{
	fx *f = *state;
	st_db *db;
	st_err err;
	assert_int_equal(st_open(f->dir, NULL, &db, &err), 0);
	assert_int_equal(append_batch(db, 50, 50, T0, 1, &err), 0);
	assert_int_equal(st_cut(db, T0 + 3 * HOUR, 1), 0);   /* checkpoints meta.db */
	st_close(db);
	char path[1100];
	snprintf(path, sizeof(path), "%s/meta.db", f->dir);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	/* garbage over every page after the first (the schema stays readable) */
	char junk[4096];
	memset(junk, 0x5a, sizeof(junk));
	for (off_t off = 4096; off < st.st_size; off += sizeof(junk))
		assert_int_equal(pwrite(fd, junk, sizeof(junk), off), (ssize_t)sizeof(junk));
	close(fd);
	memset(&err, 0, sizeof(err));
	assert_int_equal(st_open(f->dir, NULL, &db, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "damaged"));
	assert_non_null(strstr(err.msg, ".recover"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_varint_roundtrip),
		cmocka_unit_test(test_map),
		cmocka_unit_test_setup_teardown(test_meta_rollback_forgets_ids, setup, teardown),
		cmocka_unit_test(test_batch_roundtrip),
		cmocka_unit_test_setup_teardown(test_named_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_rejects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_merge_cut_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rows_and_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symbols, setup, teardown),
		cmocka_unit_test_setup_teardown(test_matchers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_labels_binary_build_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_size_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_corrupt_middle_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_missing_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_series_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_rejects_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_rejects_damaged_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_parents_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_appends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_kill9, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cut_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_batch_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sums_saturate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_future_rows_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_series_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_regex_budget_and_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_chunk_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_damaged_message, setup, teardown),
	};
	/* SMOLDER_TEST_FILTER=test_crash* runs a subset, e.g. to loop one */
	if (getenv("SMOLDER_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SMOLDER_TEST_FILTER"));
	return cmocka_run_group_tests_name("storage", tests, NULL, NULL);
}
