/* test_query.c - unit tests of the query engine (query/query.h) against a
 * real store in a temporary directory: merge trees, diff, top, folded and
 * JSON output, resolvers with inline chains, and node folding. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <zlib.h>

#include "base/text.h"
#include "query/query.h"
#include "wire/profile.pb-c.h"
#include "storage/storage.h"

#define TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"
#define SEC 1000000000LL
#define T0 (1767225600LL * SEC)

static const uint8_t bid_app[4] = {0xa, 0xb, 0xc, 0xd};
static const uint8_t bid_libc[4] = {1, 2, 3, 4};
static const st_object objs[2] = {{bid_app, 4, "/usr/bin/app"},
                                  {bid_libc, 4, "/lib/libc.so.6"}};

typedef struct fx {
	char dir[1024];
	st_db *db;
} fx;

/* Three stacks, leaf first:
 *   S1 app+0x30 <- app+0x20 <- app+0x10                 5 (service=api)
 *   S2 libc+0x99 <- app+0x20 <- app+0x10                3 (service=api)
 *   S3 do_sys [k] <- libc+0x99 <- app+0x20 <- app+0x10  2 (service=db)  */
static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	const char *base = getenv("SMOLDER_TEST_TMP");
	snprintf(f->dir, sizeof(f->dir), "%s/q.XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(f->dir))
		return -1;
	base_err err;
	if (st_open(f->dir, NULL, &f->db, &err))
		return -1;
	static st_frame s1[3] = {{ST_FRAME_USER, 0, 0x30, NULL}, {ST_FRAME_USER, 0, 0x20, NULL},
	                         {ST_FRAME_USER, 0, 0x10, NULL}};
	static st_frame s2[3] = {{ST_FRAME_USER, 1, 0x99, NULL}, {ST_FRAME_USER, 0, 0x20, NULL},
	                         {ST_FRAME_USER, 0, 0x10, NULL}};
	static st_frame s3[4] = {{ST_FRAME_KERNEL, 0, 0, "do_sys"}, {ST_FRAME_USER, 1, 0x99, NULL},
	                         {ST_FRAME_USER, 0, 0x20, NULL}, {ST_FRAME_USER, 0, 0x10, NULL}};
	st_stack_def sd[3] = {{st_stack_hash(objs, 2, s1, 3), s1, 3},
	                      {st_stack_hash(objs, 2, s2, 3), s2, 3},
	                      {st_stack_hash(objs, 2, s3, 4), s3, 4}};
	st_label la[1] = {{"service", "api"}}, lb[1] = {{"service", "db"}};
	st_series_def se[2] = {{TYPE, la, 1}, {TYPE, lb, 1}};
	st_sample sm[3] = {{T0, 0, sd[0].id, 5}, {T0, 0, sd[1].id, 3}, {T0 + SEC, 1, sd[2].id, 2}};
	st_batch b = {se, 2, objs, 2, sd, 3, sm, 3};
	if (st_append(f->db, &b, &err))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	st_close(f->db);
	char cmd[1100];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd)) {
	}
	free(f);
	return 0;
}

static const st_matcher m_all[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}};
static const st_matcher m_api[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"service", ST_MATCH_EQ, "api"}};
static const st_matcher m_db[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"service", ST_MATCH_EQ, "db"}};

static q_tree *merge(fx *f, const st_matcher *m, size_t nm, const q_resolver *r)
{
	q_side side = {m, nm, 0, INT64_MAX};
	q_tree *t = NULL;
	base_err err;
	assert_int_equal(q_merge(f->db, &side, r, &t, &err), 0);
	return t;
}

static void test_merge_json(void **state)
{
	fx *f = *state;
	q_tree *t = merge(f, m_all, 1, NULL);
	assert_int_equal(q_tree_total(t, 0), 10);
	assert_int_equal(q_tree_nodes(t), 6);
	base_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_string_equal(o.data,
		"{\"name\":\"total\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x20\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x30\",\"self\":5,\"total\":5,\"children\":[]},"
		"{\"name\":\"[unknown] libc.so.6+0x99\",\"self\":3,\"total\":5,\"children\":["
		"{\"name\":\"do_sys\",\"self\":2,\"total\":2,\"kernel\":true,\"children\":[]}]}]}]}]}");
	base_buf_free(&o);
	/* folded: root first, sums to the merge total, kernel frames marked */
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_string_equal(o.data,
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] app+0x30 5\n"
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] libc.so.6+0x99 3\n"
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] libc.so.6+0x99;do_sys_[k] 2\n");
	base_buf_free(&o);
	q_tree_free(t);

	/* a matcher and a time range narrow it */
	t = merge(f, m_db, 2, NULL);
	assert_int_equal(q_tree_total(t, 0), 2);
	q_tree_free(t);
	q_side late = {m_all, 1, T0 + 1, INT64_MAX};
	base_err err;
	assert_int_equal(q_merge(f->db, &late, NULL, &t, &err), 0);
	assert_int_equal(q_tree_total(t, 0), 2);
	q_tree_free(t);
	/* nothing matches: an empty tree, not an error */
	const st_matcher none[] = {{"service", ST_MATCH_EQ, "nope"}};
	t = merge(f, none, 1, NULL);
	assert_int_equal(q_tree_total(t, 0), 0);
	assert_int_equal(q_tree_nodes(t), 1);
	q_tree_free(t);
}

static void test_max_nodes(void **state)
{
	fx *f = *state;
	q_tree *t = merge(f, m_all, 1, NULL);
	base_buf o = {0};
	assert_int_equal(q_tree_json(t, 3, &o), 0);
	assert_string_equal(o.data,
		"{\"name\":\"total\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x20\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"other\",\"self\":10,\"total\":10,\"children\":[]}]}]}]}");
	base_buf_free(&o);
	q_tree_free(t);
}

static void test_top(void **state)
{
	fx *f = *state;
	q_tree *t = merge(f, m_all, 1, NULL);
	base_buf o = {0};
	assert_int_equal(q_top_json(t, 3, &o), 0);
	assert_string_equal(o.data,
		"{\"total\":10,\"rows\":["
		"{\"name\":\"[unknown] app+0x30\",\"flat\":5,\"flat_pct\":50.0000,\"cum\":5,\"cum_pct\":50.0000},"
		"{\"name\":\"[unknown] libc.so.6+0x99\",\"flat\":3,\"flat_pct\":30.0000,\"cum\":5,\"cum_pct\":50.0000},"
		"{\"name\":\"do_sys\",\"flat\":2,\"flat_pct\":20.0000,\"cum\":2,\"cum_pct\":20.0000,\"kernel\":true}]}");
	base_buf_free(&o);
	q_tree_free(t);
}

/* A walk cut short: the stack ends with the ST_TRUNCATED_FRAME marker.
 * It is no frame of the tree, folded output or top; its samples are
 * counted as truncated on every node of its path, the root too, and in
 * the top rows of its functions; a complete stack counts nothing. */
static void test_truncated(void **state)
{
	fx *f = *state;
	static st_frame s4[3] = {{ST_FRAME_USER, 0, 0x30, NULL}, {ST_FRAME_USER, 0, 0x20, NULL},
	                         {ST_FRAME_NAMED, 0, 0, ST_TRUNCATED_FRAME}};
	st_stack_def sd = {st_stack_hash(objs, 2, s4, 3), s4, 3};
	st_label l[1] = {{"service", "cut"}};
	st_series_def se = {TYPE, l, 1};
	st_sample sm = {T0, 0, sd.id, 4};
	st_batch b = {&se, 1, objs, 2, &sd, 1, &sm, 1};
	base_err err;
	assert_int_equal(st_append(f->db, &b, &err), 0);

	q_tree *t = merge(f, m_all, 1, NULL);
	base_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_string_equal(o.data,
		"{\"name\":\"total\",\"self\":0,\"total\":14,\"truncated\":4,\"children\":["
		"{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x20\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x30\",\"self\":5,\"total\":5,\"children\":[]},"
		"{\"name\":\"[unknown] libc.so.6+0x99\",\"self\":3,\"total\":5,\"children\":["
		"{\"name\":\"do_sys\",\"self\":2,\"total\":2,\"kernel\":true,\"children\":[]}]}]}]},"
		"{\"name\":\"[unknown] app+0x20\",\"self\":0,\"total\":4,\"truncated\":4,\"children\":["
		"{\"name\":\"[unknown] app+0x30\",\"self\":4,\"total\":4,\"truncated\":4,"
		"\"children\":[]}]}]}");
	base_buf_free(&o);
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_null(strstr(o.data, ST_TRUNCATED_FRAME));
	assert_non_null(strstr(o.data, "\n[unknown] app+0x20;[unknown] app+0x30 4\n"));
	base_buf_free(&o);
	assert_int_equal(q_top_json(t, 0, &o), 0);
	assert_string_equal(o.data,
		"{\"total\":14,\"truncated\":4,\"rows\":["
		"{\"name\":\"[unknown] app+0x30\",\"flat\":9,\"flat_pct\":64.2857,\"cum\":9,"
		"\"cum_pct\":64.2857,\"truncated\":4},"
		"{\"name\":\"[unknown] libc.so.6+0x99\",\"flat\":3,\"flat_pct\":21.4286,\"cum\":5,"
		"\"cum_pct\":35.7143},"
		"{\"name\":\"do_sys\",\"flat\":2,\"flat_pct\":14.2857,\"cum\":2,\"cum_pct\":14.2857,"
		"\"kernel\":true},"
		"{\"name\":\"[unknown] app+0x20\",\"flat\":0,\"flat_pct\":0.0000,\"cum\":14,"
		"\"cum_pct\":100.0000,\"truncated\":4},"
		"{\"name\":\"[unknown] app+0x10\",\"flat\":0,\"flat_pct\":0.0000,\"cum\":10,"
		"\"cum_pct\":71.4286}]}");
	base_buf_free(&o);
	/* folded into "other": the fold keeps the truncated samples it holds */
	assert_int_equal(q_tree_json(t, 2, &o), 0);
	assert_string_equal(o.data,
		"{\"name\":\"total\",\"self\":0,\"total\":14,\"truncated\":4,\"children\":["
		"{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"other\",\"self\":10,\"total\":10,\"children\":[]}]},"
		"{\"name\":\"other\",\"self\":4,\"total\":4,\"truncated\":4,\"children\":[]}]}");
	base_buf_free(&o);
	base_buf want = {0};
	assert_int_equal(q_tree_json(t, 0, &want), 0);
	q_tree_free(t);
	/* through a cache kept across queries, as the server's: the second
	 * query takes the stack's truncation from the cache */
	q_cache *c = q_cache_new(0);
	q_resolver cr = {NULL, NULL, NULL, c};
	for (int pass = 0; pass < 2; pass++) {
		t = merge(f, m_all, 1, &cr);
		assert_int_equal(q_tree_json(t, 0, &o), 0);
		assert_string_equal(o.data, want.data);
		base_buf_free(&o);
		q_tree_free(t);
	}
	uint64_t hits, misses, resets;
	size_t bytes;
	q_cache_stats(c, &hits, &misses, &resets, &bytes);
	assert_int_equal(misses, 4);
	assert_int_equal(hits, 4);
	q_cache_free(c);
	base_buf_free(&want);

	/* a diff carries each side's */
	static const st_matcher m_cut[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                   {"service", ST_MATCH_EQ, "cut"}};
	q_side base = {m_api, 2, 0, INT64_MAX}, cmp = {m_cut, 2, 0, INT64_MAX};
	assert_int_equal(q_diff(f->db, &base, &cmp, NULL, &t, &err), 0);
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "{\"name\":\"total\",\"base\":{\"self\":0,\"total\":8},"
	                            "\"compare\":{\"self\":0,\"total\":4,\"truncated\":4}"));
	base_buf_free(&o);
	/* the diff's table warns: 0 % against 100 % incomplete */
	assert_int_equal(q_diff_top_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "\"base_truncated\":0,\"compare_truncated\":4"));
	assert_non_null(strstr(o.data, "\"warnings\":[\"the sides differ in completeness: 0.0 % of "
	                            "the base's samples and 100.0 % of the compare side's"));
	base_buf_free(&o);
	q_tree_free(t);
	/* two complete sides: no warning */
	q_side cmp2 = {m_db, 2, 0, INT64_MAX};
	assert_int_equal(q_diff(f->db, &base, &cmp2, NULL, &t, &err), 0);
	assert_int_equal(q_diff_top_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "\"warnings\":[]"));
	assert_null(strstr(o.data, "truncated"));
	base_buf_free(&o);
	q_tree_free(t);
}

static void test_diff(void **state)
{
	fx *f = *state;
	q_side base = {m_api, 2, 0, INT64_MAX}, cmp = {m_db, 2, 0, INT64_MAX};
	q_tree *t;
	base_err err;
	assert_int_equal(q_diff(f->db, &base, &cmp, NULL, &t, &err), 0);
	assert_int_equal(q_tree_total(t, 0), 8);
	assert_int_equal(q_tree_total(t, 1), 2);
	base_buf o = {0};
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_string_equal(o.data,
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] app+0x30 5 0\n"
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] libc.so.6+0x99 3 0\n"
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] libc.so.6+0x99;do_sys_[k] 0 2\n");
	base_buf_free(&o);
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "{\"name\":\"total\",\"base\":{\"self\":0,\"total\":8},"
	                            "\"compare\":{\"self\":0,\"total\":2}"));
	/* two samples against none: too few to tell, never significant */
	assert_non_null(strstr(o.data, "{\"name\":\"do_sys\",\"base\":{\"self\":0,\"total\":0},"
	                            "\"compare\":{\"self\":2,\"total\":2},\"significant\":false,"
	                            "\"p\":null,\"q\":null,\"kernel\":true"));
	base_buf_free(&o);
	q_tree_free(t);
}

/* A resolver that knows the app: 0x20 is main with an inlined helper,
 * 0x10 is _start, 0x30 and libc's 0x99 are both "spin" (recursion for top's
 * cumulative count). */
static int resolve(void *arg, const st_frame_info *loc, q_sym *out, size_t max)
{
	int *calls = arg;
	(*calls)++;
	assert_true(max >= 2);
	if (loc->kind != ST_FRAME_USER)
		return 0;
	if (loc->build_id_len == 4 && loc->build_id[0] == 0xa) {
		switch (loc->offset) {
		case 0x10:
			out[0] = (q_sym){"_start", NULL, 0};
			return 1;
		case 0x20:
			out[0] = (q_sym){"helper", "app.c", 7};   /* innermost */
			out[1] = (q_sym){"main", "app.c", 30};
			return 2;
		case 0x30:
			out[0] = (q_sym){"spin", "spin.c", 3};
			return 1;
		}
	}
	if (loc->offset == 0x99) {
		out[0] = (q_sym){"spin", "spin.c", 3};
		return 1;
	}
	return 0;
}

/* Names that are not UTF-8, as a symbolizer may find them in a binary:
 * 0x20 is "bad\xff" in "f\xe9.c", every other user location "ok\xc3"
 * (a sequence cut short). */
static int resolve_bad_utf8(void *arg, const st_frame_info *loc, q_sym *out, size_t max)
{
	(void)arg;
	(void)max;
	if (loc->kind != ST_FRAME_USER)
		return 0;
	out[0] = loc->offset == 0x20 ? (q_sym){"bad\xff", "f\xe9.c", 7} : (q_sym){"ok\xc3", NULL, 0};
	return 1;
}

/* Every JSON answer is valid UTF-8 whatever the names: a byte that starts
 * no valid sequence is written as \ufffd, as the server's own JSON does. */
static void test_json_invalid_utf8(void **state)
{
	fx *f = *state;
	q_resolver r = {resolve_bad_utf8, NULL};
	q_tree *t = merge(f, m_all, 1, &r);
	base_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "\"name\":\"bad\\ufffd\""));
	assert_non_null(strstr(o.data, "\"file\":\"f\\ufffd.c\""));
	assert_non_null(strstr(o.data, "\"name\":\"ok\\ufffd\""));
	base_buf_free(&o);
	assert_int_equal(q_top_json(t, 10, &o), 0);
	assert_non_null(strstr(o.data, "\"name\":\"bad\\ufffd\",\"file\":\"f\\ufffd.c\""));
	for (size_t i = 0; i < o.len; i++)
		assert_true((unsigned char)o.data[i] < 0x80);  /* these names: ASCII out */
	base_buf_free(&o);
	q_tree_free(t);
}

static void test_resolver_inline(void **state)
{
	fx *f = *state;
	int calls = 0;
	q_resolver r = {resolve, &calls};
	q_tree *t = merge(f, m_all, 1, &r);
	/* each distinct location named once: 4 user + 1 kernel */
	assert_int_equal(calls, 5);
	base_buf o = {0};
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_string_equal(o.data,
		"_start;main;helper;spin 8\n"
		"_start;main;helper;spin;do_sys_[k] 2\n");
	base_buf_free(&o);
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "{\"name\":\"main\",\"self\":0,\"total\":10,"
	                            "\"file\":\"app.c\",\"line\":30,\"children\""));
	base_buf_free(&o);
	/* spin under spin is counted once in cum */
	assert_int_equal(q_top_json(t, 1, &o), 0);
	assert_string_equal(o.data,
		"{\"total\":10,\"rows\":[{\"name\":\"spin\",\"file\":\"spin.c\",\"line\":3,"
		"\"flat\":8,\"flat_pct\":80.0000,\"cum\":10,\"cum_pct\":100.0000}]}");
	base_buf_free(&o);
	q_tree_free(t);
}

/* Two programs' functions of one name: app+0x30 is main of a.c, libc's
 * 0x99 main of b.c. */
static int resolve_mains(void *arg, const st_frame_info *loc, q_sym *out, size_t max)
{
	(void)arg;
	(void)max;
	if (loc->kind != ST_FRAME_USER)
		return 0;
	if (loc->offset == 0x30) {
		out[0] = (q_sym){"main", "a.c", 1};
		return 1;
	}
	if (loc->offset == 0x99) {
		out[0] = (q_sym){"main", "b.c", 2};
		return 1;
	}
	return 0;
}

/* A cache kept across queries holds every program's names: a function
 * named like another program's keeps its own file and line. */
static void test_same_name_other_file(void **state)
{
	fx *f = *state;
	q_cache *c = q_cache_new(0);
	q_resolver r = {resolve_mains, NULL, NULL, c};
	q_tree *t = merge(f, m_db, 2, &r);   /* b.c's main first */
	q_tree_free(t);
	t = merge(f, m_api, 2, &r);
	base_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "{\"name\":\"main\",\"self\":5,\"total\":5,\"file\":\"a.c\","
	                            "\"line\":1,\"children\":[]}"));
	assert_non_null(strstr(o.data, "{\"name\":\"main\",\"self\":3,\"total\":3,\"file\":\"b.c\","
	                            "\"line\":2,\"children\":[]}"));
	base_buf_free(&o);
	q_tree_free(t);
	q_cache_free(c);
}

static void test_discovery(void **state)
{
	fx *f = *state;
	base_buf o = {0};
	base_err err;
	const q_side all = {NULL, 0, 0, INT64_MAX, 0}, dbs = {m_db, 2, 0, INT64_MAX, 0},
	             first = {NULL, 0, T0, T0 + 1, 0};
	assert_int_equal(q_types_json(f->db, &all, &o, &err), 0);
	assert_string_equal(o.data, "[\"" TYPE "\"]");
	base_buf_free(&o);
	assert_int_equal(q_labels_json(f->db, &all, NULL, &o, &err), 0);
	assert_string_equal(o.data, "[\"service\"]");
	base_buf_free(&o);
	assert_int_equal(q_labels_json(f->db, &all, "service", &o, &err), 0);
	assert_string_equal(o.data, "[\"api\",\"db\"]");
	base_buf_free(&o);
	/* restricted by selector and by time */
	assert_int_equal(q_labels_json(f->db, &dbs, "service", &o, &err), 0);
	assert_string_equal(o.data, "[\"db\"]");
	base_buf_free(&o);
	assert_int_equal(q_labels_json(f->db, &first, "service", &o, &err), 0);
	assert_string_equal(o.data, "[\"api\"]");
	base_buf_free(&o);
}

static void test_range(void **state)
{
	fx *f = *state;
	base_buf o = {0};
	base_err err;
	/* per series, 1 s steps over [T0, T0 + 3 s) */
	q_side side = {m_all, 1, T0, T0 + 3 * SEC};
	assert_int_equal(q_range_json(f->db, &side, SEC, NULL, 0, 0, &o, &err), 0);
	assert_string_equal(o.data,
		"{\"series\":["
		"{\"labels\":{\"__name__\":\"" TYPE "\",\"service\":\"api\"},"
		"\"values\":[[1767225600,8]]},"
		"{\"labels\":{\"__name__\":\"" TYPE "\",\"service\":\"db\"},"
		"\"values\":[[1767225601,2]]}]}");
	base_buf_free(&o);
	/* grouped by a label nobody has: one line with everything */
	const char *by[] = {"zone"};
	assert_int_equal(q_range_json(f->db, &side, 2 * SEC, by, 1, 0, &o, &err), 0);
	assert_string_equal(o.data, "{\"series\":[{\"labels\":{},\"values\":[[1767225600,10]]}]}");
	base_buf_free(&o);
	/* one line and "other" for the rest, saying how many it holds */
	assert_int_equal(q_range_json(f->db, &side, SEC, NULL, 0, 1, &o, &err), 0);
	assert_string_equal(o.data,
		"{\"series\":["
		"{\"labels\":{\"__name__\":\"" TYPE "\",\"service\":\"api\"},"
		"\"values\":[[1767225600,8]]},"
		"{\"labels\":{},\"other\":1,\"values\":[[1767225601,2]]}]}");
	base_buf_free(&o);
	/* too many points is an error that says so */
	assert_int_equal(q_range_json(f->db, &side, 1, NULL, 0, 0, &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "at most"));
	base_buf_free(&o);
}

/* The pprof output unpacks to the same stacks and totals as the tree. */
static void test_pprof(void **state)
{
	fx *f = *state;
	q_tree *t = merge(f, m_all, 1, NULL);
	base_buf o = {0};
	q_pprof_opts po = {.type = TYPE};
	assert_int_equal(q_tree_pprof(t, &po, &o), 0);
	assert_true(o.len > 18 && (uint8_t)o.data[0] == 0x1f && (uint8_t)o.data[1] == 0x8b);
	uint8_t *raw = malloc(1 << 20);
	uLongf rawlen = 1 << 20;
	z_stream z = {0};
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)o.data;
	z.avail_in = (uInt)o.len;
	z.next_out = raw;
	z.avail_out = (uInt)rawlen;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	rawlen = z.total_out;
	inflateEnd(&z);
	Perftools__Profiles__Profile *p = perftools__profiles__profile__unpack(NULL, rawlen, raw);
	assert_non_null(p);
	assert_int_equal(p->n_sample_type, 1);
	assert_string_equal(p->string_table[p->sample_type[0]->type], "samples");
	assert_string_equal(p->string_table[p->sample_type[0]->unit], "count");
	assert_string_equal(p->string_table[p->period_type->type], "cpu");
	assert_int_equal(p->n_sample, 3);
	int64_t sum = 0;
	char folded[3][256];
	for (size_t i = 0; i < p->n_sample; i++) {
		const Perftools__Profiles__Sample *s = p->sample[i];
		sum += s->value[0];
		/* rebuild root-first names through location -> line -> function */
		folded[i][0] = 0;
		for (size_t k = s->n_location_id; k-- > 0;) {
			const Perftools__Profiles__Location *l = p->location[s->location_id[k] - 1];
			assert_int_equal(l->id, s->location_id[k]);
			const Perftools__Profiles__Function *fn = p->function[l->line[0]->function_id - 1];
			strcat(folded[i], p->string_table[fn->name]);
			strcat(folded[i], k ? ";" : "");
		}
	}
	assert_int_equal(sum, 10);
	bool found = false;
	for (size_t i = 0; i < 3; i++)
		found |= !strcmp(folded[i], "[unknown] app+0x10;[unknown] app+0x20;"
		                            "[unknown] libc.so.6+0x99;do_sys");
	assert_true(found);
	perftools__profiles__profile__free_unpacked(p, NULL);
	base_buf_free(&o);
	/* the main mapping first, the kernel's second; the range as time */
	po = (q_pprof_opts){.type = TYPE, .main_file = "/usr/bin/app", .main_build_id = "0a0b0c0d",
	                    .time_ns = T0, .duration_ns = 60 * SEC};
	assert_int_equal(q_tree_pprof(t, &po, &o), 0);
	z = (z_stream){0};
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)o.data;
	z.avail_in = (uInt)o.len;
	z.next_out = raw;
	z.avail_out = 1 << 20;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	rawlen = z.total_out;
	inflateEnd(&z);
	p = perftools__profiles__profile__unpack(NULL, rawlen, raw);
	assert_non_null(p);
	assert_int_equal(p->n_mapping, 2);
	assert_int_equal(p->mapping[0]->id, 1);
	assert_string_equal(p->string_table[p->mapping[0]->filename], "/usr/bin/app");
	assert_string_equal(p->string_table[p->mapping[0]->build_id], "0a0b0c0d");
	assert_string_equal(p->string_table[p->mapping[1]->filename], "[kernel.kallsyms]");
	for (size_t i = 0; i < p->n_location; i++) {
		const Perftools__Profiles__Function *fn =
			p->function[p->location[i]->line[0]->function_id - 1];
		bool k = !strcmp(p->string_table[fn->name], "do_sys");
		assert_int_equal(p->location[i]->mapping_id, k ? 2 : 0);
	}
	assert_int_equal(p->time_nanos, T0);
	assert_int_equal(p->duration_nanos, 60 * SEC);
	perftools__profiles__profile__free_unpacked(p, NULL);
	base_buf_free(&o);
	free(raw);
	po.type = "not-a-type";
	assert_int_equal(q_tree_pprof(t, &po, &o), -EINVAL);
	base_buf_free(&o);
	q_tree_free(t);
}

/* Frames the host named with a language, file and line (interpreted
 * code): one node per line being executed, "lang", "file" and "line" in
 * the JSON, one top row per function, one pprof Function per function
 * with the lines on its Locations. */
static void test_source_frames(void **state)
{
	fx *f = *state;
	static st_frame s1[3] = {{ST_FRAME_NAMED, 0, 0, "Work.leaf", "/srv/app.py", 10, "python"},
	                         {ST_FRAME_NAMED, 0, 0, "main", "/srv/app.py", 20, "python"},
	                         {ST_FRAME_USER, 0, 0x10, NULL, NULL, 0, NULL}};
	static st_frame s2[3] = {{ST_FRAME_NAMED, 0, 0, "Work.leaf", "/srv/app.py", 11, "python"},
	                         {ST_FRAME_NAMED, 0, 0, "main", "/srv/app.py", 20, "python"},
	                         {ST_FRAME_USER, 0, 0x10, NULL, NULL, 0, NULL}};
	/* the same name in another file is another function */
	static st_frame s3[3] = {{ST_FRAME_NAMED, 0, 0, "Work.leaf", "/srv/other.py", 10, "python"},
	                         {ST_FRAME_NAMED, 0, 0, "main", "/srv/app.py", 20, "python"},
	                         {ST_FRAME_USER, 0, 0x10, NULL, NULL, 0, NULL}};
	st_stack_def sd[3] = {{st_stack_hash(objs, 2, s1, 3), s1, 3},
	                      {st_stack_hash(objs, 2, s2, 3), s2, 3},
	                      {st_stack_hash(objs, 2, s3, 3), s3, 3}};
	st_label la[1] = {{"service", "py"}};
	st_series_def se[1] = {{TYPE, la, 1}};
	st_sample sm[3] = {{T0, 0, sd[0].id, 4}, {T0, 0, sd[1].id, 2}, {T0, 0, sd[2].id, 1}};
	st_batch b = {se, 1, objs, 2, sd, 3, sm, 3};
	base_err err;
	assert_int_equal(st_append(f->db, &b, &err), 0);
	static const st_matcher m_py[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                  {"service", ST_MATCH_EQ, "py"}};
	static const char want[] =
		"{\"name\":\"total\",\"self\":0,\"total\":7,\"children\":["
		"{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":7,\"children\":["
		"{\"name\":\"main\",\"self\":0,\"total\":7,\"file\":\"/srv/app.py\",\"line\":20,"
		"\"lang\":\"python\",\"children\":["
		"{\"name\":\"Work.leaf\",\"self\":4,\"total\":4,\"file\":\"/srv/app.py\",\"line\":10,"
		"\"lang\":\"python\",\"children\":[]},"
		"{\"name\":\"Work.leaf\",\"self\":2,\"total\":2,\"file\":\"/srv/app.py\",\"line\":11,"
		"\"lang\":\"python\",\"children\":[]},"
		"{\"name\":\"Work.leaf\",\"self\":1,\"total\":1,\"file\":\"/srv/other.py\",\"line\":10,"
		"\"lang\":\"python\",\"children\":[]}]}]}]}";
	q_tree *t = merge(f, m_py, 2, NULL);
	base_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_string_equal(o.data, want);
	base_buf_free(&o);
	/* through a cache kept across queries, as the server's: the second
	 * query finds every stack's path of IDs there, names nothing, and
	 * still gives language, file and line */
	q_cache *c = q_cache_new(0);
	q_resolver cr = {NULL, NULL, NULL, c};
	for (int pass = 0; pass < 2; pass++) {
		q_tree *ct = merge(f, m_py, 2, &cr);
		assert_int_equal(q_tree_json(ct, 0, &o), 0);
		assert_string_equal(o.data, want);
		base_buf_free(&o);
		q_tree_free(ct);
	}
	uint64_t hits, misses, resets;
	size_t bytes;
	q_cache_stats(c, &hits, &misses, &resets, &bytes);
	assert_int_equal(misses, 3);
	assert_int_equal(hits, 3);
	q_cache_free(c);
	/* top: one row per function, its lines summed */
	assert_int_equal(q_top_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "{\"name\":\"Work.leaf\",\"file\":\"/srv/app.py\","
	                             "\"flat\":6,"));
	assert_non_null(strstr(o.data, "{\"name\":\"Work.leaf\",\"file\":\"/srv/other.py\","
	                             "\"flat\":1,"));
	assert_non_null(strstr(o.data, "\"flat\":0,\"flat_pct\":0.0000,\"cum\":7,\"cum_pct\":100.0000,"
	                             "\"lang\":\"python\"}"));
	base_buf_free(&o);
	/* folded: the function names, as for any frame */
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_string_equal(o.data, "[unknown] app+0x10;main;Work.leaf 4\n"
	                         "[unknown] app+0x10;main;Work.leaf 2\n"
	                         "[unknown] app+0x10;main;Work.leaf 1\n");
	base_buf_free(&o);
	/* pprof: Work.leaf of app.py is one Function, its Locations at lines 10 and 11 */
	q_pprof_opts po = {.type = TYPE};
	assert_int_equal(q_tree_pprof(t, &po, &o), 0);
	uint8_t *raw = malloc(1 << 20);
	z_stream z = {0};
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)o.data;
	z.avail_in = (uInt)o.len;
	z.next_out = raw;
	z.avail_out = 1 << 20;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	inflateEnd(&z);
	Perftools__Profiles__Profile *p = perftools__profiles__profile__unpack(NULL, z.total_out,
	                                                                      raw);
	assert_non_null(p);
	assert_int_equal(p->n_function, 4);   /* app+0x10, main, 2 x Work.leaf */
	uint64_t leaf_fn = 0;
	int lines_seen = 0;
	for (size_t i = 0; i < p->n_location; i++) {
		const Perftools__Profiles__Line *ln = p->location[i]->line[0];
		const Perftools__Profiles__Function *fn = NULL;
		for (size_t k = 0; k < p->n_function; k++)
			if (p->function[k]->id == ln->function_id)
				fn = p->function[k];
		assert_non_null(fn);
		if (strcmp(p->string_table[fn->name], "Work.leaf") ||
		    strcmp(p->string_table[fn->filename], "/srv/app.py"))
			continue;
		assert_true(!leaf_fn || leaf_fn == fn->id);
		leaf_fn = fn->id;
		lines_seen |= ln->line == 10 ? 1 : ln->line == 11 ? 2 : 4;
	}
	assert_int_equal(lines_seen, 3);
	perftools__profiles__profile__free_unpacked(p, NULL);
	free(raw);
	base_buf_free(&o);
	q_tree_free(t);
}

/* q_no_match over the fixture (service=api, service=db): each row a
 * selector's matchers after the type, and what the sentence must say. */
static void test_no_match(void **state)
{
	fx *f = *state;
	static const struct {
		const char *name;
		st_matcher m[2];
		size_t nm;            /* matchers after the type */
		const char *type;
		int64_t from, to;
		int want;             /* 0: series match, 1: none */
		const char *says;     /* in the sentence */
	} cases[] = {
		{"match", {{"service", ST_MATCH_EQ, "api"}}, 1, TYPE, 0, INT64_MAX, 0, NULL},
		{"value typo", {{"service", ST_MATCH_EQ, "aip"}}, 1, TYPE, 0, INT64_MAX, 1,
		 "service=\"aip\" matches no series; did you mean service=\"api\"? "
		 "(closest service values: api, db)"},
		{"far value", {{"service", ST_MATCH_EQ, "checkout"}}, 1, TYPE, 0, INT64_MAX, 1,
		 "matches no series (closest service values:"},
		{"label typo", {{"srvice", ST_MATCH_EQ, "api"}}, 1, TYPE, 0, INT64_MAX, 1,
		 "no series has a label srvice; did you mean service?"},
		{"type typo", {{0}}, 0, "process_cpu:sample:count:cpu:nanoseconds:delta", 0, INT64_MAX,
		 1, "did you mean " TYPE "?"},
		{"exclusive", {{"service", ST_MATCH_EQ, "api"}, {"service", ST_MATCH_EQ, "db"}}, 2, TYPE,
		 0, INT64_MAX, 1, "no series matches them all"},
		{"outside", {{"service", ST_MATCH_EQ, "api"}}, 1, TYPE, T0 + 10 * SEC, T0 + 20 * SEC, 1,
		 "but the selector matches data outside that range"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		st_matcher m[3] = {{ST_TYPE_LABEL, ST_MATCH_EQ, cases[i].type}};
		for (size_t k = 0; k < cases[i].nm; k++)
			m[1 + k] = cases[i].m[k];
		q_side side = {m, 1 + cases[i].nm, cases[i].from, cases[i].to};
		base_buf json = {0}, msg = {0};
		base_err err;
		int rc = q_no_match(f->db, &side, "SEL", &json, &msg, &err);
		if (rc != cases[i].want)
			fail_msg("%s: %d, want %d", cases[i].name, rc, cases[i].want);
		if (rc == 1 && (!msg.data || strncmp(msg.data, "no series match SEL", 19) ||
		                !strstr(msg.data, cases[i].says) || !json.data || json.data[0] != '{'))
			fail_msg("%s: %s", cases[i].name, msg.data ? msg.data : "(no message)");
		if (rc == 0 && (msg.len || json.len))
			fail_msg("%s: a message for a match", cases[i].name);
		base_buf_free(&json);
		base_buf_free(&msg);
	}
}

static void test_json_escaping(void **state)
{
	(void)state;
	base_buf o = {0};
	/* the one JSON string writer (base/text.h) the engine renders with */
	assert_int_equal(base_json_str(&o, "a\"b\\c\n\x01", 7), 0);
	assert_string_equal(o.data, "\"a\\\"b\\\\c\\n\\u0001\"");
	base_buf_free(&o);
	/* UTF-8 passes; what is not UTF-8 (a stray byte, a cut sequence, an
	 * overlong form, a surrogate) becomes U+FFFD, one per bad byte */
	static const char bad[] = "\xc3\xa9\xe2\x9c\x93 \xff\xc3 \xc0\xaf \xed\xa0\x80!";
	assert_int_equal(base_json_str(&o, bad, sizeof(bad) - 1), 0);
	assert_string_equal(o.data, "\"\xc3\xa9\xe2\x9c\x93 \\ufffd\\ufffd \\ufffd\\ufffd "
	                         "\\ufffd\\ufffd\\ufffd!\"");
	base_buf_free(&o);
}

/* Stored names are not checked for UTF-8 (a kernel symbol or a profile's
 * function name may hold any bytes): every JSON answer is still valid
 * UTF-8, the bad bytes as U+FFFD. */
static void test_json_invalid_utf8_names(void **state)
{
	fx *f = *state;
	st_frame fr[2] = {{ST_FRAME_NAMED, 0, 0, "leaf\xff\xfe"}, {ST_FRAME_KERNEL, 0, 0, "k\xc3("}};
	st_stack_def sd = {st_stack_hash(objs, 2, fr, 2), fr, 2};
	st_label l[1] = {{"service", "utf"}};
	st_series_def se = {TYPE, l, 1};
	st_sample sm = {T0, 0, sd.id, 7};
	st_batch b = {&se, 1, objs, 2, &sd, 1, &sm, 1};
	base_err err;
	assert_int_equal(st_append(f->db, &b, &err), 0);
	static const st_matcher m[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}, {"service", ST_MATCH_EQ, "utf"}};
	q_tree *t = merge(f, m, 2, NULL);
	base_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_true(base_utf8_valid(o.data, o.len));
	assert_non_null(strstr(o.data, "\"leaf\\ufffd\\ufffd\""));
	assert_non_null(strstr(o.data, "\"k\\ufffd(\""));
	base_buf_free(&o);
	assert_int_equal(q_top_json(t, 0, &o), 0);
	assert_true(base_utf8_valid(o.data, o.len));
	base_buf_free(&o);
	q_tree_free(t);
}

/* A tree whose sums pass int64 saturates and says so, in the tree, top and
 * timeline JSON alike; one that does not says nothing. */
static void test_saturated(void **state)
{
	fx *f = *state;
	q_tree *t = merge(f, m_all, 1, NULL);
	assert_false(q_tree_saturated(t));
	base_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_null(strstr(o.data, "saturated"));
	base_buf_free(&o);
	q_tree_free(t);

	enum { N = 40000 };
	st_frame fr[1] = {{ST_FRAME_NAMED, 0, 0, "hot"}};
	st_stack_def sd = {st_stack_hash(objs, 2, fr, 1), fr, 1};
	st_label l[1] = {{"service", "big"}};
	st_series_def se = {TYPE, l, 1};
	st_sample *sm = calloc(N, sizeof(*sm));
	for (int i = 0; i < N; i++)
		sm[i] = (st_sample){T0 + 2 * SEC + i, 0, sd.id, ST_MAX_VALUE};
	st_batch b = {&se, 1, objs, 2, &sd, 1, sm, N};
	base_err err;
	assert_int_equal(st_append(f->db, &b, &err), 0);
	free(sm);
	t = merge(f, m_all, 1, NULL);
	assert_true(q_tree_saturated(t));
	assert_true(q_tree_total(t, 0) == INT64_MAX);
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "{\"name\":\"total\",\"self\":0,\"total\":9223372036854775807,"
	                            "\"saturated\":true,"));
	/* the paths beside the saturated one keep their exact sums */
	assert_non_null(strstr(o.data, "{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":10,"));
	assert_non_null(strstr(o.data, "{\"name\":\"hot\",\"self\":9223372036854775807,"));
	base_buf_free(&o);
	assert_int_equal(q_top_json(t, 0, &o), 0);
	assert_non_null(strstr(o.data, "{\"total\":9223372036854775807,\"saturated\":true,\"rows\":["));
	base_buf_free(&o);
	q_tree_free(t);
	q_side side = {m_all, 1, T0, T0 + 60 * SEC};
	assert_int_equal(q_range_json(f->db, &side, 60 * SEC, NULL, 0, 0, &o, &err), 0);
	assert_non_null(strstr(o.data, "]}],\"saturated\":true}"));
	assert_non_null(strstr(o.data, "9223372036854775807"));
	base_buf_free(&o);
}

/* by=service,service groups as by=service: one key, not two. */
static void test_range_by_twice(void **state)
{
	fx *f = *state;
	base_buf o = {0};
	base_err err;
	q_side side = {m_all, 1, T0, T0 + 3 * SEC};
	const char *by[] = {"service", "service"};
	assert_int_equal(q_range_json(f->db, &side, 3 * SEC, by, 2, 0, &o, &err), 0);
	assert_string_equal(o.data, "{\"series\":["
	                         "{\"labels\":{\"service\":\"api\"},\"values\":[[1767225600,8]]},"
	                         "{\"labels\":{\"service\":\"db\"},\"values\":[[1767225600,2]]}]}");
	base_buf_free(&o);
}

/* ---- the tree against a reference ----
 * A store of many random stacks, and a tree built here the plain way
 * (a node per distinct prefix of names, children sorted by total then
 * name) rendered as the engine documents it: JSON, folded to max_nodes
 * (the heaviest nodes, ties between a node and its only child to the
 * shallower), and folded stacks. Sums are of random 30-bit values, so no
 * two nodes but a node and its only child weigh the same and the answer
 * is one. The engine must give it byte for byte, whatever its cache
 * holds from earlier queries and whether it sorts the query's stacks,
 * scatters them by place, or starts over. */

typedef struct xnode {
	char name[64];
	bool kernel;
	int64_t self, total;
	uint32_t depth;
	uint32_t *kid;
	size_t nkid, kcap;
	bool kept;
} xnode;

typedef struct xtree {
	xnode *v;
	size_t n, cap;
} xtree;

static uint64_t xrand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint32_t xnode_new(xtree *t, const char *name, bool kernel, uint32_t depth)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 256;
		t->v = realloc(t->v, t->cap * sizeof(*t->v));
		assert_non_null(t->v);
	}
	xnode *x = &t->v[t->n];
	memset(x, 0, sizeof(*x));
	snprintf(x->name, sizeof(x->name), "%s", name);
	x->kernel = kernel;
	x->depth = depth;
	return (uint32_t)t->n++;
}

/* The merge of side the plain way: every stack's frames named as the
 * engine names them without a resolver, root first, into a tree. */
static void xtree_build(st_db *db, const q_side *side, xtree *t)
{
	st_selection *sel;
	st_stack_sum *v = NULL;
	size_t n = 0;
	base_err err;
	memset(t, 0, sizeof(*t));
	xnode_new(t, "total", false, 0);
	assert_int_equal(st_select(db, side->m, side->nm, side->from_ns, side->to_ns, &sel, &err), 0);
	assert_int_equal(st_merge(db, sel, side->from_ns, side->to_ns, &v, &n), 0);
	for (size_t i = 0; i < n; i++) {
		st_frame_info *fi;
		size_t nf;
		if (!v[i].value)
			continue;
		assert_int_equal(st_stack_frames(db, v[i].stack_id, &fi, &nf), 0);
		uint32_t at = 0;
		t->v[0].total += v[i].value;
		for (size_t k = nf; k-- > 0;) {
			char name[Q_UNKNOWN_NAME_MAX];
			bool kernel = fi[k].kind == ST_FRAME_KERNEL;
			if (kernel)
				snprintf(name, sizeof(name), "%s", fi[k].name);
			else
				q_unknown_name(name, sizeof(name), fi[k].object_name, fi[k].offset);
			uint32_t next = UINT32_MAX;
			for (size_t c = 0; c < t->v[at].nkid; c++) {
				const xnode *x = &t->v[t->v[at].kid[c]];
				if (x->kernel == kernel && !strcmp(x->name, name))
					next = t->v[at].kid[c];
			}
			if (next == UINT32_MAX) {
				next = xnode_new(t, name, kernel, t->v[at].depth + 1);
				xnode *p = &t->v[at];
				if (p->nkid == p->kcap) {
					p->kcap = p->kcap ? p->kcap * 2 : 4;
					p->kid = realloc(p->kid, p->kcap * sizeof(*p->kid));
					assert_non_null(p->kid);
				}
				p->kid[p->nkid++] = next;
			}
			at = next;
			t->v[at].total += v[i].value;
		}
		t->v[at].self += v[i].value;
		free(fi);
	}
	free(v);
	st_selection_free(sel);
}

static void xtree_free(xtree *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].kid);
	free(t->v);
}

static const xtree *xsort_tree;

static int xcmp_kid(const void *a, const void *b)
{
	const xnode *x = &xsort_tree->v[*(const uint32_t *)a], *y = &xsort_tree->v[*(const uint32_t *)b];
	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* heaviest first; between a node and its only child (the same weight),
 * the shallower */
static int xcmp_keep(const void *a, const void *b)
{
	const xnode *x = &xsort_tree->v[*(const uint32_t *)a], *y = &xsort_tree->v[*(const uint32_t *)b];
	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return (x->depth > y->depth) - (x->depth < y->depth);
}

static void xjson(const xtree *t, uint32_t i, bool folded, base_buf *o)
{
	const xnode *x = &t->v[i];
	base_buf_put(o, "{\"name\":", 8);
	base_json_str(o, x->name, strlen(x->name));
	base_buf_printf(o, ",\"self\":%lld,\"total\":%lld", (long long)x->self, (long long)x->total);
	if (x->kernel)
		base_buf_put(o, ",\"kernel\":true", 14);
	base_buf_put(o, ",\"children\":[", 13);
	int64_t other = x->total - x->self;
	size_t nk = 0;
	for (size_t c = 0; c < x->nkid; c++) {
		const xnode *k = &t->v[x->kid[c]];
		if (folded && !k->kept)
			continue;
		if (nk++)
			base_buf_put(o, ",", 1);
		xjson(t, x->kid[c], folded, o);
		other -= k->total;
	}
	if (nk < x->nkid)
		base_buf_printf(o, "%s{\"name\":\"other\",\"self\":%lld,\"total\":%lld,\"children\":[]}",
		             nk ? "," : "", (long long)other, (long long)other);
	base_buf_put(o, "]}", 2);
}

static void xfolded(const xtree *t, uint32_t i, char *path, size_t len, base_buf *o)
{
	const xnode *x = &t->v[i];
	if (x->depth) {
		len += (size_t)snprintf(path + len, 8192 - len, "%s%s%s", x->depth > 1 ? ";" : "",
		                        x->name, x->kernel ? "_[k]" : "");
		if (x->self)
			base_buf_printf(o, "%.*s %lld\n", (int)len, path, (long long)x->self);
	}
	for (size_t c = 0; c < x->nkid; c++)
		xfolded(t, x->kid[c], path, len, o);
}

/* What q_tree_json(max_nodes) must say of t. */
static void xrender(xtree *t, size_t max_nodes, base_buf *o)
{
	xsort_tree = t;
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].nkid > 1)
			qsort(t->v[i].kid, t->v[i].nkid, sizeof(uint32_t), xcmp_kid);
	bool folded = max_nodes && max_nodes < t->n;
	if (folded) {
		uint32_t *ord = malloc(t->n * sizeof(*ord));
		for (size_t i = 0; i < t->n; i++)
			ord[i] = (uint32_t)i;
		qsort(ord, t->n, sizeof(*ord), xcmp_keep);
		for (size_t i = 0; i < t->n; i++)
			t->v[ord[i]].kept = i < max_nodes;
		free(ord);
	}
	xjson(t, 0, folded, o);
}

static void test_tree_exact(void **state)
{
	fx *f = *state;
	enum { NSTACKS = 1500, NSVC = 3, NTS = 10, MAXD = 14 };
	static const uint8_t bids[3][4] = {{1, 1, 1, 1}, {2, 2, 2, 2}, {3, 3, 3, 3}};
	const st_object ob[3] = {{bids[0], 4, "/usr/bin/alpha"}, {bids[1], 4, "/lib/libbeta.so"},
	                         {bids[2], 4, "/lib/libgamma.so.1"}};
	static const char *const knames[] = {"k_read", "k_write", "k_poll", "k_futex", "k_mmap"};
	st_frame *fr = calloc((size_t)NSTACKS * MAXD, sizeof(*fr));
	st_stack_def *sd = calloc(NSTACKS, sizeof(*sd));
	st_sample *sm = calloc((size_t)NSTACKS * 3, sizeof(*sm));
	assert_true(fr && sd && sm);
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	size_t ns = 0, nsm = 0;
	while (ns < NSTACKS) {
		/* most under one chain of three callers (so stacks far apart in
		 * any order still share a prefix), then a small pool of callees */
		st_frame *s = fr + ns * MAXD;
		uint32_t d = 1 + (uint32_t)(xrand(&seed) % (MAXD - 1)), at = 0;
		uint64_t prev = xrand(&seed) % 3;
		bool chain = xrand(&seed) % 8 != 0;
		for (uint32_t k = 0; k < d; k++) {
			uint64_t r = xrand(&seed);
			prev = (prev * 7 + r % 5) % 23;
			s[d - 1 - k] = (st_frame){ST_FRAME_USER, (uint32_t)(prev % 3), 0x1000 + prev * 0x10,
			                          NULL, NULL, 0, NULL};
			if (chain && k < 3)
				s[d - 1 - k] = (st_frame){ST_FRAME_USER, 0, 0x10 * (k + 1), NULL, NULL, 0, NULL};
		}
		if (xrand(&seed) % 5 == 0)
			s[at] = (st_frame){ST_FRAME_KERNEL, 0, 0, knames[xrand(&seed) % 5], NULL, 0, NULL};
		uint64_t id = st_stack_hash(ob, 3, s, d);
		bool dup = false;
		for (size_t i = 0; i < ns && !dup; i++)
			dup = sd[i].id == id;
		if (dup)
			continue;
		sd[ns++] = (st_stack_def){id, s, d};
	}
	st_label lb[NSVC][1] = {{{"service", "one"}}, {{"service", "two"}}, {{"service", "three"}}};
	st_series_def se[NSVC] = {{TYPE, lb[0], 1}, {TYPE, lb[1], 1}, {TYPE, lb[2], 1}};
	for (size_t i = 0; i < ns; i++) {
		/* each stack in one to three services, at random times */
		uint32_t first = (uint32_t)(i % NSVC), n = 1 + (uint32_t)(xrand(&seed) % 3);
		for (uint32_t k = 0; k < n; k++)
			sm[nsm++] = (st_sample){T0 + 10 * SEC + (int64_t)(xrand(&seed) % NTS) * SEC,
			                        (first + k) % NSVC, sd[i].id,
			                        1 + (int64_t)(xrand(&seed) & 0x3fffffff)};
	}
	st_batch b = {se, NSVC, ob, 3, sd, ns, sm, nsm};
	base_err err;
	assert_int_equal(st_append(f->db, &b, &err), 0);

	static const st_matcher m_new[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                   {"service", ST_MATCH_NE, "api"},
	                                   {"service", ST_MATCH_NE, "db"}};
	static const st_matcher m_two[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                   {"service", ST_MATCH_EQ, "two"}};
	static const st_matcher m_one[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                   {"service", ST_MATCH_EQ, "one"}};
	/* many stacks (scattered by place), a third, a few (sorted) */
	const q_side sides[] = {
		{m_two, 2, T0 + 10 * SEC, T0 + 20 * SEC},
		{m_new, 3, T0 + 10 * SEC, T0 + 20 * SEC},
		{m_one, 2, T0 + 13 * SEC, T0 + 14 * SEC},
		{m_new, 3, T0 + 12 * SEC, T0 + 17 * SEC},
		{m_two, 2, T0 + 19 * SEC, T0 + 20 * SEC},
	};
	static const size_t maxn[] = {0, 1, 2, 5, 37, 400, 1000000};
	/* no cache (each query names afresh), one kept across the queries,
	 * and one so small it starts over at every query */
	q_cache *kept = q_cache_new(0), *tiny = q_cache_new(4096);
	const q_resolver rs[] = {{NULL, NULL, NULL, NULL}, {NULL, NULL, NULL, kept},
	                         {NULL, NULL, NULL, tiny}};
	for (size_t r = 0; r < 3; r++)
		for (size_t q = 0; q < sizeof(sides) / sizeof(*sides); q++) {
			xtree x;
			xtree_build(f->db, &sides[q], &x);
			q_tree *t = NULL;
			assert_int_equal(q_merge(f->db, &sides[q], &rs[r], &t, &err), 0);
			assert_int_equal(q_tree_nodes(t), x.n);
			assert_true(x.n > 20);
			for (size_t m = 0; m < sizeof(maxn) / sizeof(*maxn); m++) {
				base_buf want = {0}, got = {0};
				xrender(&x, maxn[m], &want);
				assert_int_equal(q_tree_json(t, maxn[m], &got), 0);
				assert_string_equal(got.data, want.data);
				base_buf_free(&want);
				base_buf_free(&got);
			}
			base_buf want = {0}, got = {0};
			char *path = malloc(8192);
			xfolded(&x, 0, path, 0, &want);
			free(path);
			assert_int_equal(q_tree_folded(t, &got), 0);
			assert_string_equal(got.data, want.data);
			base_buf_free(&want);
			base_buf_free(&got);
			q_tree_free(t);
			xtree_free(&x);
		}
	uint64_t hits, misses, resets;
	size_t bytes;
	q_cache_stats(kept, &hits, &misses, &resets, &bytes);
	assert_true(hits > 0 && resets == 0);
	q_cache_stats(tiny, &hits, &misses, &resets, &bytes);
	assert_true(resets > 0);
	q_cache_free(kept);
	q_cache_free(tiny);
	free(fr);
	free(sd);
	free(sm);
}

/* The timeline's default step: round steps, at most about 240 points,
 * and over long ranges a multiple of the roll-ups' hour, so a week's
 * timeline reads the hourly sums instead of raw rows. */
static void test_range_default_step(void **state)
{
	(void)state;
	const int64_t s = 1000000000LL, h = 3600 * s, d = 24 * h;
	assert_int_equal(q_range_default_step(60 * s), 10 * s);
	assert_int_equal(q_range_default_step(h), 30 * s);
	assert_int_equal(q_range_default_step(24 * h), 600 * s);
	assert_int_equal(q_range_default_step(7 * d), h);
	assert_int_equal(q_range_default_step(30 * d), 3 * h);
	assert_int_equal(q_range_default_step(240 * d), d);
	int64_t y = q_range_default_step(365 * d);
	assert_true(y % d == 0 && 365 * d / y <= 240);
	for (int64_t span = s; span < 400 * d; span = span * 3 / 2 + s) {
		int64_t st = q_range_default_step(span);
		assert_true(span / st <= 240);
		if (st >= h)
			assert_true(st % h == 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_merge_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_nodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_top, setup, teardown),
		cmocka_unit_test_setup_teardown(test_diff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolver_inline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_name_other_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pprof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_match, setup, teardown),
		cmocka_unit_test(test_json_escaping),
		cmocka_unit_test(test_range_default_step),
		cmocka_unit_test_setup_teardown(test_json_invalid_utf8_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_json_invalid_utf8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_saturated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range_by_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tree_exact, setup, teardown),
	};
	return cmocka_run_group_tests_name("query", tests, NULL, NULL);
}
