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
	st_err err;
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
	st_err err;
	assert_int_equal(q_merge(f->db, &side, r, &t, &err), 0);
	return t;
}

static void test_merge_json(void **state)
{
	fx *f = *state;
	q_tree *t = merge(f, m_all, 1, NULL);
	assert_int_equal(q_tree_total(t, 0), 10);
	assert_int_equal(q_tree_nodes(t), 6);
	q_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_string_equal(o.p,
		"{\"name\":\"total\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x20\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x30\",\"self\":5,\"total\":5,\"children\":[]},"
		"{\"name\":\"[unknown] libc.so.6+0x99\",\"self\":3,\"total\":5,\"children\":["
		"{\"name\":\"do_sys\",\"self\":2,\"total\":2,\"kernel\":true,\"children\":[]}]}]}]}]}");
	q_buf_free(&o);
	/* folded: root first, sums to the merge total, kernel frames marked */
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_string_equal(o.p,
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] app+0x30 5\n"
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] libc.so.6+0x99 3\n"
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] libc.so.6+0x99;do_sys_[k] 2\n");
	q_buf_free(&o);
	q_tree_free(t);

	/* a matcher and a time range narrow it */
	t = merge(f, m_db, 2, NULL);
	assert_int_equal(q_tree_total(t, 0), 2);
	q_tree_free(t);
	q_side late = {m_all, 1, T0 + 1, INT64_MAX};
	st_err err;
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
	q_buf o = {0};
	assert_int_equal(q_tree_json(t, 3, &o), 0);
	assert_string_equal(o.p,
		"{\"name\":\"total\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"[unknown] app+0x20\",\"self\":0,\"total\":10,\"children\":["
		"{\"name\":\"other\",\"self\":10,\"total\":10,\"children\":[]}]}]}]}");
	q_buf_free(&o);
	q_tree_free(t);
}

static void test_top(void **state)
{
	fx *f = *state;
	q_tree *t = merge(f, m_all, 1, NULL);
	q_buf o = {0};
	assert_int_equal(q_top_json(t, 3, &o), 0);
	assert_string_equal(o.p,
		"{\"total\":10,\"rows\":["
		"{\"name\":\"[unknown] app+0x30\",\"flat\":5,\"flat_pct\":50.0000,\"cum\":5,\"cum_pct\":50.0000},"
		"{\"name\":\"[unknown] libc.so.6+0x99\",\"flat\":3,\"flat_pct\":30.0000,\"cum\":5,\"cum_pct\":50.0000},"
		"{\"name\":\"do_sys\",\"flat\":2,\"flat_pct\":20.0000,\"cum\":2,\"cum_pct\":20.0000,\"kernel\":true}]}");
	q_buf_free(&o);
	q_tree_free(t);
}

static void test_diff(void **state)
{
	fx *f = *state;
	q_side base = {m_api, 2, 0, INT64_MAX}, cmp = {m_db, 2, 0, INT64_MAX};
	q_tree *t;
	st_err err;
	assert_int_equal(q_diff(f->db, &base, &cmp, NULL, &t, &err), 0);
	assert_int_equal(q_tree_total(t, 0), 8);
	assert_int_equal(q_tree_total(t, 1), 2);
	q_buf o = {0};
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_string_equal(o.p,
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] app+0x30 5 0\n"
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] libc.so.6+0x99 3 0\n"
		"[unknown] app+0x10;[unknown] app+0x20;[unknown] libc.so.6+0x99;do_sys_[k] 0 2\n");
	q_buf_free(&o);
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_non_null(strstr(o.p, "{\"name\":\"total\",\"base\":{\"self\":0,\"total\":8},"
	                            "\"compare\":{\"self\":0,\"total\":2}"));
	/* two samples against none: too few to tell, never significant */
	assert_non_null(strstr(o.p, "{\"name\":\"do_sys\",\"base\":{\"self\":0,\"total\":0},"
	                            "\"compare\":{\"self\":2,\"total\":2},\"significant\":false,"
	                            "\"p\":null,\"q\":null,\"kernel\":true"));
	q_buf_free(&o);
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

static void test_resolver_inline(void **state)
{
	fx *f = *state;
	int calls = 0;
	q_resolver r = {resolve, &calls};
	q_tree *t = merge(f, m_all, 1, &r);
	/* each distinct location named once: 4 user + 1 kernel */
	assert_int_equal(calls, 5);
	q_buf o = {0};
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_string_equal(o.p,
		"_start;main;helper;spin 8\n"
		"_start;main;helper;spin;do_sys_[k] 2\n");
	q_buf_free(&o);
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_non_null(strstr(o.p, "{\"name\":\"main\",\"self\":0,\"total\":10,"
	                            "\"file\":\"app.c\",\"line\":30,\"children\""));
	q_buf_free(&o);
	/* spin under spin is counted once in cum */
	assert_int_equal(q_top_json(t, 1, &o), 0);
	assert_string_equal(o.p,
		"{\"total\":10,\"rows\":[{\"name\":\"spin\",\"file\":\"spin.c\",\"line\":3,"
		"\"flat\":8,\"flat_pct\":80.0000,\"cum\":10,\"cum_pct\":100.0000}]}");
	q_buf_free(&o);
	q_tree_free(t);
}

static void test_discovery(void **state)
{
	fx *f = *state;
	q_buf o = {0};
	st_err err;
	assert_int_equal(q_types_json(f->db, 0, INT64_MAX, &o, &err), 0);
	assert_string_equal(o.p, "[\"" TYPE "\"]");
	q_buf_free(&o);
	assert_int_equal(q_labels_json(f->db, NULL, 0, 0, INT64_MAX, NULL, &o, &err), 0);
	assert_string_equal(o.p, "[\"service\"]");
	q_buf_free(&o);
	assert_int_equal(q_labels_json(f->db, NULL, 0, 0, INT64_MAX, "service", &o, &err), 0);
	assert_string_equal(o.p, "[\"api\",\"db\"]");
	q_buf_free(&o);
	/* restricted by selector and by time */
	assert_int_equal(q_labels_json(f->db, m_db, 2, 0, INT64_MAX, "service", &o, &err), 0);
	assert_string_equal(o.p, "[\"db\"]");
	q_buf_free(&o);
	assert_int_equal(q_labels_json(f->db, NULL, 0, T0, T0 + 1, "service", &o, &err), 0);
	assert_string_equal(o.p, "[\"api\"]");
	q_buf_free(&o);
}

static void test_range(void **state)
{
	fx *f = *state;
	q_buf o = {0};
	st_err err;
	/* per series, 1 s steps over [T0, T0 + 3 s) */
	q_side side = {m_all, 1, T0, T0 + 3 * SEC};
	assert_int_equal(q_range_json(f->db, &side, SEC, NULL, 0, &o, &err), 0);
	assert_string_equal(o.p,
		"{\"series\":["
		"{\"labels\":{\"__name__\":\"" TYPE "\",\"service\":\"api\"},"
		"\"values\":[[1767225600,8]]},"
		"{\"labels\":{\"__name__\":\"" TYPE "\",\"service\":\"db\"},"
		"\"values\":[[1767225601,2]]}]}");
	q_buf_free(&o);
	/* grouped by a label nobody has: one line with everything */
	const char *by[] = {"zone"};
	assert_int_equal(q_range_json(f->db, &side, 2 * SEC, by, 1, &o, &err), 0);
	assert_string_equal(o.p, "{\"series\":[{\"labels\":{},\"values\":[[1767225600,10]]}]}");
	q_buf_free(&o);
	/* too many points is an error that says so */
	assert_int_equal(q_range_json(f->db, &side, 1, NULL, 0, &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "at most"));
	q_buf_free(&o);
}

/* The pprof output unpacks to the same stacks and totals as the tree. */
static void test_pprof(void **state)
{
	fx *f = *state;
	q_tree *t = merge(f, m_all, 1, NULL);
	q_buf o = {0};
	assert_int_equal(q_tree_pprof(t, TYPE, &o), 0);
	assert_true(o.len > 18 && (uint8_t)o.p[0] == 0x1f && (uint8_t)o.p[1] == 0x8b);
	uint8_t *raw = malloc(1 << 20);
	uLongf rawlen = 1 << 20;
	z_stream z = {0};
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)o.p;
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
	free(raw);
	q_buf_free(&o);
	assert_int_equal(q_tree_pprof(t, "not-a-type", &o), -EINVAL);
	q_buf_free(&o);
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
	st_err err;
	assert_int_equal(st_append(f->db, &b, &err), 0);
	static const st_matcher m_py[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                                  {"service", ST_MATCH_EQ, "py"}};
	q_tree *t = merge(f, m_py, 2, NULL);
	q_buf o = {0};
	assert_int_equal(q_tree_json(t, 0, &o), 0);
	assert_string_equal(o.p,
		"{\"name\":\"total\",\"self\":0,\"total\":7,\"children\":["
		"{\"name\":\"[unknown] app+0x10\",\"self\":0,\"total\":7,\"children\":["
		"{\"name\":\"main\",\"self\":0,\"total\":7,\"file\":\"/srv/app.py\",\"line\":20,"
		"\"lang\":\"python\",\"children\":["
		"{\"name\":\"Work.leaf\",\"self\":4,\"total\":4,\"file\":\"/srv/app.py\",\"line\":10,"
		"\"lang\":\"python\",\"children\":[]},"
		"{\"name\":\"Work.leaf\",\"self\":2,\"total\":2,\"file\":\"/srv/app.py\",\"line\":11,"
		"\"lang\":\"python\",\"children\":[]},"
		"{\"name\":\"Work.leaf\",\"self\":1,\"total\":1,\"file\":\"/srv/other.py\",\"line\":10,"
		"\"lang\":\"python\",\"children\":[]}]}]}]}");
	q_buf_free(&o);
	/* top: one row per function, its lines summed */
	assert_int_equal(q_top_json(t, 0, &o), 0);
	assert_non_null(strstr(o.p, "{\"name\":\"Work.leaf\",\"file\":\"/srv/app.py\","
	                             "\"flat\":6,"));
	assert_non_null(strstr(o.p, "{\"name\":\"Work.leaf\",\"file\":\"/srv/other.py\","
	                             "\"flat\":1,"));
	assert_non_null(strstr(o.p, "\"flat\":0,\"flat_pct\":0.0000,\"cum\":7,\"cum_pct\":100.0000,"
	                             "\"lang\":\"python\"}"));
	q_buf_free(&o);
	/* folded: the function names, as for any frame */
	assert_int_equal(q_tree_folded(t, &o), 0);
	assert_string_equal(o.p, "[unknown] app+0x10;main;Work.leaf 4\n"
	                         "[unknown] app+0x10;main;Work.leaf 2\n"
	                         "[unknown] app+0x10;main;Work.leaf 1\n");
	q_buf_free(&o);
	/* pprof: Work.leaf of app.py is one Function, its Locations at lines 10 and 11 */
	assert_int_equal(q_tree_pprof(t, TYPE, &o), 0);
	uint8_t *raw = malloc(1 << 20);
	z_stream z = {0};
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)o.p;
	z.avail_in = (uInt)o.len;
	z.next_out = raw;
	z.avail_out = 1 << 20;
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	inflateEnd(&z);
	Perftools__Profiles__Profile *p = perftools__profiles__profile__unpack(NULL, z.total_out,
	                                                                      raw);
	assert_non_null(p);
	assert_int_equal(p->n_function, 5);   /* total, app+0x10, main, 2 x Work.leaf */
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
	q_buf_free(&o);
	q_tree_free(t);
}

static void test_json_escaping(void **state)
{
	(void)state;
	q_buf o = {0};
	assert_int_equal(q_buf_json_str(&o, "a\"b\\c\n\x01"), 0);
	assert_string_equal(o.p, "\"a\\\"b\\\\c\\u000a\\u0001\"");
	q_buf_free(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_merge_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_nodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_top, setup, teardown),
		cmocka_unit_test_setup_teardown(test_diff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resolver_inline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pprof, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_frames, setup, teardown),
		cmocka_unit_test(test_json_escaping),
	};
	return cmocka_run_group_tests_name("query", tests, NULL, NULL);
}
