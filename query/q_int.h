/* q_int.h - helpers shared by the files of query/ and nothing else. */
#ifndef SMOLDER_Q_INT_H
#define SMOLDER_Q_INT_H

#include <stddef.h>
#include <stdint.h>

#define Q__NONE UINT32_MAX

/* u64 -> u32 hash map, key and value in one slot. */
typedef struct q__map_slot {
	uint64_t key;
	uint32_t val;
	uint32_t used;
} q__map_slot;

typedef struct q__map {
	q__map_slot *s;
	size_t cap, len;
} q__map;

uint32_t q__map_get(const q__map *m, uint64_t key);
int q__map_put(q__map *m, uint64_t key, uint32_t val);
void q__map_free(q__map *m);

/* Grows *arr to hold need items of elem bytes, doubling; -ENOMEM. */
int q__grow(void *arr, size_t *cap, size_t need, size_t elem);

/* ---- the call tree (engine.c builds it; pprof.c renders it too) ---- */

#include <stdbool.h>
#include "query/query.h"

/* A node name. Native frames are one name per function (file and line
 * are the first location's); frames the host named with a language, file
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
	uint32_t func;          /* the first name of this function */
} qname;

typedef struct q__sig q__sig;   /* signif.c: a diff's significance */

typedef struct qnode {
	uint32_t name;
	uint32_t parent;
	uint32_t child, next;   /* first child, next sibling */
	int64_t self[2], total[2];
} qnode;

struct q_tree {
	bool diff;
	qname *names;
	size_t nnames, names_cap;
	q__map name_map;       /* hash of (function, kernel) or of the exact
	                        * key -> name, probed */
	q__map func_map;       /* hash of (function, file, language) -> name */
	qnode *nodes;
	size_t n, cap;
	q__map child_map;      /* parent << 32 | name -> node */
	/* location cache for the query being built */
	q__map loc_map;        /* location id -> offset in chain */
	uint32_t *chain;     /* per location: count, then name ids, outermost first */
	size_t nchain, chain_cap;
	q__map leaf_map;       /* diff trees: stack id -> the node its path ends at */
	q__sig *sig;           /* diff trees: significance, once computed */
};

/* ---- significance of a diff (signif.c), over the finished tree ---- */

/* Tests every node's total and every function's flat and cum of the diff
 * tree t (built from base and compare), reading each side's rows again
 * to split it into profiles; sets t->sig. */
int q__sig_compute(st_db *db, const q_side *base, const q_side *compare, q_tree *t,
                   st_err *err);
void q__sig_free(q__sig *s);
/* ,"significant":B,"p":P,"q":Q for one node (nothing before q__sig_compute). */
int q__sig_node_json(const q_tree *t, uint32_t node, q_buf *o);
/* ,"significance":{method, alpha, profiles, ...} for the root. */
int q__sig_root_json(const q_tree *t, q_buf *o);

#endif
