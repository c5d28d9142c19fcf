/* storage.c - storage.h's functions that reach a store: each checks what
 * every backend would check and calls through the handle's operations
 * table (backend.h). The stores themselves are db.c (embedded) and
 * clickhouse.c; nothing here knows either. Beside them, st_symbols_pack:
 * the one copy of a symbol chain that ClickHouse's cache and the server's
 * symbolizer keep in memory. */
#include <stdlib.h>
#include <string.h>

#include "storage/backend.h"

const char *st_backend_name(st_db *db)
{
	return st__backend_of(db)->name;
}

void st_close(st_db *db)
{
	if (db)
		st__backend_of(db)->close(db);
}

int st_append(st_db *db, const st_batch *batch, base_err *err)
{
	if (err)
		err->msg[0] = 0;
	return st__backend_of(db)->append(db, batch, err);
}

int st_cut(st_db *db, int64_t now_ns, int force)
{
	return st__backend_of(db)->cut(db, now_ns, force);
}

bool st_head_full(st_db *db)
{
	return st__backend_of(db)->head_full(db);
}

int st_retention(st_db *db, int64_t now_ns)
{
	return st__backend_of(db)->retention(db, now_ns);
}

int st_compact(st_db *db)
{
	return st__backend_of(db)->compact(db);
}

int st_select(st_db *db, const st_matcher *m, size_t nm, int64_t from_ns, int64_t to_ns,
              st_selection **out, base_err *err)
{
	return st_select_until(db, m, nm, from_ns, to_ns, 0, out, err);
}

int st_select_until(st_db *db, const st_matcher *m, size_t nm, int64_t from_ns,
                    int64_t to_ns, int64_t deadline_ns, st_selection **out, base_err *err)
{
	if (err)
		err->msg[0] = 0;
	return st__backend_of(db)->select(db, m, nm, from_ns, to_ns, deadline_ns, out, err);
}

int st_series_labels(st_db *db, uint64_t series_id, st_label **out, size_t *n)
{
	return st__backend_of(db)->series_labels(db, series_id, out, n);
}

int st_rows(st_db *db, const st_selection *sel, int64_t from_ns, int64_t to_ns, st_row_fn fn,
            void *arg)
{
	return st__backend_of(db)->rows(db, sel, from_ns, to_ns, fn, arg);
}

int st_series_steps_spans(st_db *db, const st_selection *sel, const st_span *spans,
                          size_t nspans, int64_t origin_ns, int64_t step_ns, size_t nsteps,
                          const uint32_t *group, int64_t *sums, uint8_t *has, base_err *err)
{
	if (err)
		err->msg[0] = 0;
	if (step_ns <= 0)
		return -EINVAL;
	return st__backend_of(db)->series_steps_spans(db, sel, spans, nspans, origin_ns, step_ns,
	                                              nsteps, group, sums, has, err);
}

int st_series_steps(st_db *db, const st_selection *sel, int64_t from_ns, int64_t to_ns,
                    int64_t origin_ns, int64_t step_ns, size_t nsteps, const uint32_t *group,
                    int64_t *sums, uint8_t *has)
{
	st_span raw = {0, from_ns < origin_ns ? origin_ns : from_ns, to_ns};
	return st_series_steps_spans(db, sel, &raw, 1, origin_ns, step_ns, nsteps, group, sums,
	                             has, NULL);
}

int st_merge_spans(st_db *db, const st_selection *sel, const st_span *spans, size_t nspans,
                   st_stack_sum **out, size_t *n, base_err *err)
{
	if (err)
		err->msg[0] = 0;
	return st__backend_of(db)->merge_spans(db, sel, spans, nspans, out, n, err);
}

int st__cmp_stack_sum(const void *a, const void *b)
{
	const st_stack_sum *x = a, *y = b;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

int st_merge(st_db *db, const st_selection *sel, int64_t from_ns, int64_t to_ns,
             st_stack_sum **out, size_t *n)
{
	st_span raw = {0, from_ns, to_ns};
	int rc = st_merge_spans(db, sel, &raw, 1, out, n, NULL);
	if (!rc && *n)
		qsort(*out, *n, sizeof(**out), st__cmp_stack_sum);
	return rc;
}

size_t st_rollup_steps(st_db *db, int64_t *steps, size_t max)
{
	return st__backend_of(db)->rollup_steps(db, steps, max);
}

int st_rollup_spans(st_db *db, int64_t step_ns, int64_t from_ns, int64_t to_ns, st_span **out,
                    size_t *n)
{
	return st__backend_of(db)->rollup_spans(db, step_ns, from_ns, to_ns, out, n);
}

int st_rollup(st_db *db, int64_t now_ns)
{
	return st__backend_of(db)->rollup(db, now_ns);
}

int st_stack_frames(st_db *db, uint64_t stack_id, st_frame_info **out, size_t *n)
{
	return st__backend_of(db)->stack_frames(db, stack_id, out, n);
}

int st_stacks_locations(st_db *db, const uint64_t *ids, size_t n, int64_t **locs,
                        uint32_t **offs)
{
	return st__backend_of(db)->stacks_locations(db, ids, n, locs, offs);
}

int st_locations(st_db *db, const int64_t *ids, size_t n, st_frame_info **out)
{
	return st__backend_of(db)->locations(db, ids, n, out);
}

int st_symbols_get(st_db *db, const int64_t *ids, size_t n, st_symbols_fn fn, void *arg)
{
	return st__backend_of(db)->symbols_get(db, ids, n, fn, arg);
}

void *st_symbols_pack(size_t head, const st_symbol *syms, size_t n)
{
	size_t bytes = head + n * sizeof(st_symbol);
	for (size_t i = 0; i < n; i++)
		bytes += strlen(syms[i].function) + 1 + (syms[i].file ? strlen(syms[i].file) + 1 : 0);
	char *block = malloc(bytes);
	if (!block)
		return NULL;
	st_symbol *c = (st_symbol *)(block + head);
	char *p = (char *)(c + n);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(syms[i].function) + 1;
		c[i] = (st_symbol){memcpy(p, syms[i].function, l), NULL, syms[i].line};
		p += l;
		if (syms[i].file) {
			l = strlen(syms[i].file) + 1;
			c[i].file = memcpy(p, syms[i].file, l);
			p += l;
		}
	}
	return block;
}

int st_symbols_put(st_db *db, int64_t location_id, const st_symbol *syms, size_t n)
{
	if (n == 0 || n > ST_MAX_INLINE || !syms)
		return -EINVAL;
	return st__backend_of(db)->symbols_put(db, location_id, syms, n);
}

int st_symbols_forget(st_db *db, const uint8_t *build_id, uint32_t build_id_len)
{
	if (!build_id || !build_id_len || build_id_len > ST_MAX_BUILD_ID_LEN)
		return -EINVAL;
	return st__backend_of(db)->symbols_forget(db, build_id, build_id_len);
}

int st_symbols_missing(st_db *db, int64_t after_id, size_t limit, st_unsymbolized_fn fn,
                       void *arg)
{
	return st__backend_of(db)->symbols_missing(db, after_id, limit, fn, arg);
}

const char *st_file_dir(st_db *db)
{
	return st__backend_of(db)->file_dir(db);
}

int st_file_keep(st_db *db, const char *name, const char *path, base_err *err)
{
	if (err)
		err->msg[0] = 0;
	if (!st__file_name_ok(name))
		return base_fail(err, -EINVAL, "not a file name the store takes");
	return st__backend_of(db)->file_keep(db, name, path, err);
}

int st_file_exists(st_db *db, const char *name)
{
	if (!st__file_name_ok(name))
		return -EINVAL;
	return st__backend_of(db)->file_exists(db, name);
}

int st_file_path(st_db *db, const char *name, char *path, size_t size)
{
	if (!st__file_name_ok(name))
		return -EINVAL;
	return st__backend_of(db)->file_path(db, name, path, size);
}

int st_file_changes(st_db *db, int64_t *cursor, st_file_fn fn, void *arg)
{
	return st__backend_of(db)->file_changes(db, cursor, fn, arg);
}

void st_get_stats(st_db *db, st_stats *out)
{
	st__backend_of(db)->get_stats(db, out);
}

/* ---- selections ---- */

void st_selection_free(st_selection *s)
{
	if (!s)
		return;
	free(s->ids);
	free(s->gbits);
	base_map_free(&s->map);
	free(s);
}

size_t st_selection_count(const st_selection *s) { return s->n; }
uint64_t st_selection_id(const st_selection *s, size_t i) { return s->ids[i]; }
uint64_t st_selection_damaged(const st_selection *s)
{
	return atomic_load(&((st_selection *)s)->damaged);
}

int st__cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int st__selection_index(st_selection *sel, uint64_t *ids, size_t n)
{
	sel->ids = ids;
	sel->n = n;
	if (n)
		qsort(ids, n, sizeof(*ids), st__cmp_u64);
	int rc = base_map_init(&sel->map, n);
	for (size_t i = 0; i < n && !rc; i++)
		rc = base_map_put(&sel->map, ids[i], (uint32_t)i);
	return rc;
}

int st__selection_new(uint64_t *ids, size_t n, st_selection **out)
{
	st_selection *sel = calloc(1, sizeof(*sel));
	if (!sel) {
		free(ids);
		return -ENOMEM;
	}
	int rc = st__selection_index(sel, ids, n);
	if (rc) {
		st_selection_free(sel);
		return rc;
	}
	*out = sel;
	return 0;
}
