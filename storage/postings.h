/* postings.h - the label postings, internal to storage/: for every
 * (label name, value) the registry indices of the series that carry it,
 * ascending, in memory, so that a selection is an intersection of sorted
 * lists and not a test of every series. SQLite's label table stays the
 * durable copy: st_open reads the series back from it and adds each one
 * here. Series are never removed from the registry, so a list only
 * grows, at its end. Guarded by the store's rw lock (db_int.h). */
#ifndef SMOLDER_POSTINGS_H
#define SMOLDER_POSTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "base/map.h"
#include "storage/storage.h"

/* The series with one (name, value). */
typedef struct st__plist {
	const char *name, *value;   /* the first such series' strings (they
	                             * live as long as the registry) */
	uint32_t *ids;              /* registry indices, ascending */
	size_t n, cap;
} st__plist;

/* One label name: the lists of its values. */
typedef struct st__pname {
	const char *name;
	uint32_t *lists;            /* indices into st__postings.lists */
	size_t n, cap;
} st__pname;

/* A zeroed st__postings is a valid empty one. */
typedef struct st__postings {
	st__plist *lists;
	size_t nlists, lists_cap;
	base_map by_pair;           /* hash of (name, value) -> list; a second
	                             * pair of one hash probes on with a
	                             * derived key (nothing is removed, so
	                             * probing stays exact) */
	st__pname *names;
	size_t nnames, names_cap;
	base_map by_name;           /* hash of name -> names, likewise */
} st__postings;

/* Adds series (a registry index above every index added before) under
 * each of its n labels. 0, or -ENOMEM with no list holding series (empty
 * lists may stay: they select nothing). */
int st__post_add(st__postings *p, uint32_t series, const st_label *l, uint32_t n);
/* The list of (name, value), or NULL when no series has it. */
const st__plist *st__post_list(const st__postings *p, const char *name, const char *value);
/* The values of label name, or NULL when no series has it. */
const st__pname *st__post_name(const st__postings *p, const char *name);
void st__post_free(st__postings *p);

#endif
