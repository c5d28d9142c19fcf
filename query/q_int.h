/* q_int.h - helpers shared by the files of query/ and nothing else. */
#ifndef SMOLDER_Q_INT_H
#define SMOLDER_Q_INT_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

#include "base/map.h"

#define LMIN_BLOCK 32

#define Q__NONE BASE_MAP_NONE   /* no node, name or group; also what base_map_get answers */

/* Appends ,"saturated":true and ,"damaged_chunks":N where they apply. */
#include "query/query.h"
int q__json_warnings(base_buf *o, bool saturated, uint64_t damaged);

/* The distinct values of label `name` (label names when name is NULL,
 * __name__ left out) over the series side selects (its matchers and range,
 * by its deadline), sorted. The caller frees each string and *out with
 * free(). 0 or a negative errno (series.c). */
int q__label_values(st_db *db, const q_side *side, const char *name, char ***out, size_t *n,
                    base_err *err);

/* ---- the call tree (engine.c builds it; pprof.c renders it too) ---- */

#include <stdbool.h>
#include "query/query.h"

/* A node name. Native frames are one name per function and file (the
 * line is the first location's; the table is shared by every query, and
 * two programs' `main` are two names); frames the host named with a language, file
 * or line (interpreted code) are one name per (function, file, line,
 * language), so the line being executed shows, as py-spy shows it. func
 * groups the names of one function (same function, file, language and
 * kind) for the top table and pprof's Function. */
typedef struct qname {
	char *function;
	char *file;
	int64_t line;
	char *lang;             /* NULL for none */
	bool kernel;
	bool exact;             /* keyed with file, line and language */
	uint32_t func;          /* the first name of this function (<= its ID) */
	/* its JSON as a tree node carries it, rendered once when interned:
	 * "name":"..." (frag[0 .. frag_head)), then ,"kernel":true, ,"file":
	 * ..., ,"line":N, ,"lang":... where they apply (up to frag_len);
	 * then a NUL and the function, which `function` points at */
	char *frag;
	uint32_t frag_head, frag_len;
} qname;

/* A table of names, each distinct name (as qname says) once: shared by
 * the cache and the trees built from it, reference counted; entries never
 * move, so a tree reads them while another query adds more. */
typedef struct qnames qnames;
const qname *q__name(const qnames *ns, uint32_t id);

/* One distinct stack of a tree: its path of name IDs, root first (in the
 * name table's pages, which the tree holds), and its value on each side. */
typedef struct qstack {
	const uint32_t *path;
	uint32_t len;
	uint32_t rank;         /* its place in the cache's order of paths */
	int64_t v[2];
	int64_t trunc[2];      /* of v: samples whose stacks were cut short
	                        * (they ended with the ST_TRUNCATED_FRAME marker,
	                        * which is no part of the path) */
	uint64_t id;           /* a stack ID it holds (diff trees: leaf_map) */
} qstack;

/* A node of a diff tree laid out (signif.c needs every node's per-profile
 * totals): depth first, in the order of the sorted paths. */
typedef struct qnode {
	uint32_t name;
	uint32_t parent;
	int64_t self[2], total[2];
} qnode;

typedef struct q__sig q__sig;

/* A tree is its distinct paths in sorted order (by the bytes of their ID
 * arrays, so paths with a common prefix are neighbours; the cache keeps
 * that order, so a query sorts by an integer): a node is a run of paths
 * sharing a prefix, found when rendering, never stored. */
struct q_tree {
	bool diff;
	qnames *names;         /* a reference */
	uint32_t nnames;       /* IDs below this are valid in this tree */
	qstack *st;
	size_t n, st_cap;
	const uint32_t **paths;  /* st[i].path, packed */
	uint32_t *lmin;          /* lmin[k]: the least lcp[] of paths
	                          * [k * LMIN_BLOCK, (k + 1) * LMIN_BLOCK) */
	int64_t *psum[2];      /* psum[s][i]: the sum of st[0 .. i).v[s],
	                        * saturating (st_sum_add) */
	size_t sat_at[2];      /* the first i with psum[s][i] saturated, else
	                        * past the end: sums over paths before it are
	                        * differences of psum, later ones are added up */
	bool any_trunc;        /* some stack was cut short: tsum is there */
	int64_t *tsum[2];      /* tsum[s][i]: the sum of st[0 .. i).trunc[s],
	                        * saturating, read as psum is (tsat_at) */
	size_t tsat_at[2];
	size_t nnodes;
	int64_t total[2];
	int64_t trunc[2];      /* of total: samples whose stacks were cut short */
	bool saturated;        /* a sum in the tree hit st_sum_add's bounds */
	uint64_t damaged;      /* chunks the merges left out as damaged */
	uint32_t *lcp;         /* lcp[i]: the prefix path i shares with path
	                        * i - 1 (lcp[0] = 0) */
	/* diff trees only: the nodes laid out (nnodes of them), per distinct
	 * path the first node it adds (after its common prefix lcp), each
	 * stack's leaf node, the significance */
	qnode *nodes;
	uint32_t *first;
	base_map leaf_map;       /* stack ID -> node its path ends at */
	q__sig *sig;
};

/* ---- significance of a diff (signif.c), over the finished tree ---- */

/* Tests every node's total and every function's flat and cum of the diff
 * tree t (built from base and compare), reading each side's rows again
 * to split it into profiles; sets t->sig. */
int q__sig_compute(st_db *db, const q_side *base, const q_side *compare, q_tree *t,
                   base_err *err);
void q__sig_free(q__sig *s);
/* ,"significant":B,"p":P,"q":Q for one node (nothing before q__sig_compute). */
int q__sig_node_json(const q_tree *t, uint32_t node, base_buf *o);
/* ,"significance":{method, alpha, profiles, ...} for the root. */
int q__sig_root_json(const q_tree *t, base_buf *o);

#endif
