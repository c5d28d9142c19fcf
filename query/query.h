/* query.h - the query engine: merge, diff and top over the store, as call
 * trees and tables, rendered as JSON or folded stacks. It aggregates on
 * stack IDs first and names only the locations it returns; naming goes
 * through a resolver the caller hands in (the symbolizer, in the server),
 * so this module depends on storage/ alone. */
#ifndef SMOLDER_QUERY_H
#define SMOLDER_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "storage/storage.h"

/* A diff warns when its sides' shares of samples with incomplete stacks
 * differ by more than this many percentage points (the UI uses the same
 * figure). */
#define Q_TRUNCATED_WARN_POINTS 3.0
#define Q_MAX_NODES_UI 4000          /* what the UI asks for (ui/app.js) */
/* The largest answer the server asks for: it sets its output buffers'
 * max (base/buf.h) to this, and a renderer that would write past it
 * fails with -ENOMEM. Every renderer below appends to a base_buf. */
#define Q_MAX_OUTPUT_BYTES (256u << 20)

/* One frame of a location's inline chain, innermost first. Strings need to
 * stay valid only during the call that returned them: the engine copies. */
typedef struct q_sym {
	const char *function;
	const char *file;     /* NULL when unknown */
	int64_t line;         /* 0 when unknown */
} q_sym;

/* The name of code nothing names: "[unknown] FILE+0xOFFSET", FILE the
 * base name of object_name (NULL: "?"), OFFSET in the object's file: the
 * location's own, or the start of the function that holds it when that is
 * known (the unwind info's FDE). Into buf; returns buf. */
#define Q_UNKNOWN_NAME_MAX (ST_MAX_OBJECT_NAME_LEN + 32)
char *q_unknown_name(char *buf, size_t cap, const char *object_name, uint64_t offset);

/* What turns stacks into paths of function names, kept across queries:
 * stack -> its locations -> each location's names, by integer IDs, so a
 * query that finds its stacks here reads no SQLite and names nothing.
 * Bounded: once over max_bytes (0: no bound) it starts over at the next
 * query. Thread-safe; one per store. */
typedef struct q_cache q_cache;
q_cache *q_cache_new(size_t max_bytes);
void q_cache_free(q_cache *c);
void q_cache_stats(q_cache *c, uint64_t *hits, uint64_t *misses, uint64_t *resets,
                   size_t *bytes);

/* Names a location. Returns how many frames it filled (1..max), 0 when it
 * knows nothing (the engine then prints q_unknown_name of the location's
 * offset), or a negative errno. Called once per distinct location the
 * cache lacks, from the querying thread; resolve NULL names every frame
 * that way.
 * generation (may be NULL) returns a number that changes whenever resolve
 * may answer a location differently than before (debug info arrived): the
 * cache then forgets what it named. cache may be NULL: each query then
 * names its locations afresh. */
typedef struct q_resolver {
	int (*resolve)(void *arg, const st_frame_info *loc, q_sym *out, size_t max);
	void *arg;
	uint64_t (*generation)(void *arg);
	q_cache *cache;
} q_resolver;

/* What one side of a query reads: series matching the matchers with rows
 * in [from_ns, to_ns). */
typedef struct q_side {
	const st_matcher *m;
	size_t nm;
	int64_t from_ns, to_ns;
	bool raw;     /* read raw rows only, never a roll-up: the same answer,
	               * slower; for checking the roll-ups against the rows */
	int64_t deadline_ns;   /* base_monotonic_ns() past which the query stops with
	                        * -ETIMEDOUT; 0: none */
} q_side;

typedef struct q_tree q_tree;

/* The read plan of [from_ns, to_ns) (plan.c): spans in time order, each
 * read from the coarsest roll-up level that holds every row of it, else
 * from raw rows; with divides > 0 (a timeline's step) only levels whose
 * step divides it; with raw, raw rows only. The caller frees *out. */
int q_plan(st_db *db, int64_t from_ns, int64_t to_ns, int64_t divides, bool raw,
           st_span **out, size_t *n);

/* Sums the samples of side per stack and builds the call tree, root
 * "total". resolver may be NULL. Free with q_tree_free(). */
int q_merge(st_db *db, const q_side *side, const q_resolver *resolver,
            q_tree **out, base_err *err);

/* Two merges in one tree: every node carries base and compare values, and
 * whether its change is significant (below). */
int q_diff(st_db *db, const q_side *base, const q_side *compare,
           const q_resolver *resolver, q_tree **out, base_err *err);

void q_tree_free(q_tree *t);

/* Totals of the root: [0] base (or the merge), [1] compare. */
int64_t q_tree_total(const q_tree *t, int side);
size_t q_tree_nodes(const q_tree *t);
/* Whether a sum in the tree saturated (st_sum_add): its values are
 * bounds, not sums. The JSON renderings say so themselves ("saturated");
 * folded and pprof output cannot, so their callers should. */
bool q_tree_saturated(const q_tree *t);
/* Damaged chunks the tree's reads left out (st_selection_damaged): the
 * values lack their rows. JSON says so as "damaged_chunks". */
uint64_t q_tree_damaged(const q_tree *t);

/* JSON: {"name","self","total","children":[...]} per node, plus "kernel":
 * true, "file", "line" and "lang" where known; a diff tree carries
 * {"base":{self,total},"compare":{self,total}} instead of self/total. The
 * root also carries "saturated": true and "damaged_chunks": N when they
 * apply (q_tree_saturated, q_tree_damaged). With max_nodes > 0 only the
 * heaviest max_nodes nodes are kept (grown from the root, heaviest
 * first), and a kept node whose children are not all kept gets one
 * "other" child holding the rest. Appends to out. */
int q_tree_json(const q_tree *t, size_t max_nodes, base_buf *out);

/* Brendan Gregg's collapsed stacks, root first ("a;b;c 42"), one line per
 * distinct path that has self value. For a diff tree, two values per line
 * (base, compare), as difffolded.pl writes. */
int q_tree_folded(const q_tree *t, base_buf *out);

/* What a pprof says besides the tree. */
typedef struct q_pprof_opts {
	const char *type;           /* the profile type: name:sample_type:
	                             * sample_unit:period_type:period_unit[:delta] */
	const char *main_file;      /* the main executable (mapping 1), NULL:
	                             * none (q_main_executable) */
	const char *main_build_id;  /* its build ID in hex, or NULL */
	int64_t time_ns, duration_ns; /* the range merged; 0: unknown */
} q_pprof_opts;

/* A gzip'd pprof profile.proto of a merge tree: sample type and period
 * type from the profile type, one Location per distinct frame, one
 * Function per function (shared by an interpreted function's lines), one
 * Sample per distinct stack; mapping 1 the main executable (no file when
 * there is none), mapping 2 the kernel's. -EINVAL for a malformed type. */
int q_tree_pprof(const q_tree *t, const q_pprof_opts *o, base_buf *out);

/* The main executable of side's series: their `exe` label when all that
 * have one agree, and `build_id` likewise (else NULL). The caller frees
 * both with free(). 0 or a negative errno. */
int q_main_executable(st_db *db, const q_side *side, char **exe, char **build_id,
                      base_err *err);

/* Functions by flat (self) and cumulative value, sorted by flat then cum,
 * at most limit rows (0: all); the lines of one interpreted function are
 * one row. JSON: {"total":N,"rows":[{"name","file","line","flat",
 * "flat_pct","cum","cum_pct","kernel","lang"}]} ("line" only for a native
 * function's row), with "saturated" and "damaged_chunks" as in
 * q_tree_json. */
int q_top_json(const q_tree *t, size_t limit, base_buf *out);

/* ---- significance of a diff (query/signif.c) ----
 * Every node of a diff tree and every function of its top table is tested
 * for a change of share between base and compare, with the false discovery
 * rate held at Q_SIG_ALPHA by Benjamini-Hochberg over the nodes, and over
 * the functions. Method and assumptions: docs/query-language.md. */
#define Q_SIG_ALPHA 0.05
/* A unit with fewer samples expected on either side under "no change" is
 * not tested (never significant). */
#define Q_SIG_MIN_EXPECTED 5.0
/* For values that are not counts: non-zero in at least this many profile
 * groups, both sides together. */
#define Q_SIG_MIN_NONZERO_GROUPS 3
/* Profiles per side are kept apart up to this many groups ... */
#define Q_SIG_MAX_GROUPS 64
/* ... and fewer for big trees: nodes x groups at most this (8 bytes each). */
#define Q_SIG_GROUP_BUDGET (8u << 20)

/* The diff's top table: per function both sides' flat and cum (values and
 * percent of their side's total), delta (compare flat % - base flat %, in
 * points), cum_delta, and the tests: significant, p, q (flat) and
 * cum_significant, cum_p, cum_q; p and q are null for a function with too
 * few samples to tell. "What changed" is the rows with listed: true, first
 * and counted in listed_rows: a significant change of the function's own
 * share (ranked by |delta|), or of its share with callees (by |cum_delta|)
 * when the listed own-share changes beneath it explain less than half of
 * it. The other rows follow by |delta|. At most limit rows (0: all).
 * -EINVAL for a tree that is not a diff. */
int q_diff_top_json(const q_tree *t, size_t limit, base_buf *out);

/* ---- discovery and the timeline (query/series.c) ---- */

#define Q_MAX_RANGE_POINTS 11000   /* per series, as Prometheus */
#define Q_MAX_RANGE_SERIES 10000

/* Profile types of the series that match side (its matchers in its
 * range): JSON array of strings, sorted. */
int q_types_json(st_db *db, const q_side *side, base_buf *out, base_err *err);

/* Label names (name == NULL) or the values of one label, over the series
 * that match side; JSON array of strings, sorted, without __name__ in the
 * names. */
int q_labels_json(st_db *db, const q_side *side, const char *name, base_buf *out, base_err *err);

/* The timeline: the sum of values per step per series, or per distinct
 * value of the `by` labels when nby > 0. JSON as Prometheus' matrix:
 * {"series":[{"labels":{...},"values":[[unix_seconds, value],...]}]} with
 * a point for every step that has samples, lines sorted by labels. With
 * limit > 0 and more lines than that, the `limit` heaviest lines over the
 * range come first, heaviest first, then one more with "labels":{} and
 * "other": the number of lines summed into it. Then "saturated": true when
 * a sum saturated and "damaged_chunks": N when damaged chunks were left
 * out. A label named twice in by counts once. Steps of a roll-up level
 * that tiles step_ns are read from it. -EINVAL (with err) for a step that
 * would make more than Q_MAX_RANGE_POINTS points or an open range. */
int q_range_json(st_db *db, const q_side *side, int64_t step_ns,
                 const char *const *by, size_t nby, size_t limit, base_buf *out, base_err *err);

/* A timeline's step when the request names none (the UI names none): the
 * first round step (10 s, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6,
 * 12 h, 1 d) that gives at most about 240 points over span_ns; past 240
 * days, whole days. Round steps tile the roll-up levels' steps, so a long
 * range reads those instead of raw rows. */
int64_t q_range_default_step(int64_t span_ns);

/* ---- an empty selection explained (query/suggest.c) ---- */

#define Q_SUGGEST_MAX 3    /* closest names listed per matcher */

/* Whether side selects any series in its range, and when it selects none,
 * why, so that a typo does not look like an empty profile. Returns 0 when
 * series match (json and msg untouched), a negative errno, or 1 when none
 * do: msg then holds one sentence for people ("no series match
 * {comm="pyhton3"}; comm="pyhton3" matches no series; did you mean
 * comm="python3"? (closest comm values: python3, ...)") and json one
 * object: {"selector", "from", "to" (ns, both included), "empty_range"
 * (nothing at all in the range), "outside_range" (the selector matches
 * series outside it), "matchers": [{"label", "op", "value",
 * "matches_alone" (with the type), "label_exists", "closest": [up to
 * Q_SUGGEST_MAX values by edit distance, or label names when the label
 * does not exist], "did_you_mean": a close one or null}]}, type first.
 * selector is the text shown in msg and json. */
int q_no_match(st_db *db, const q_side *side, const char *selector, base_buf *json, base_buf *msg,
               base_err *err);

#endif
