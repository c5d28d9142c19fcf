/* postings.c - the label postings of postings.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/buf.h"
#include "storage/postings.h"

static uint64_t name_hash(const char *name)
{
	return XXH3_64bits(name, strlen(name));
}

static uint64_t pair_hash(const char *name, const char *value)
{
	return XXH3_64bits_withSeed(value, strlen(value), name_hash(name));
}

/* The slot key of (name, value) in by_pair: its hash, or the first
 * derived key that is free or holds the pair. *list is its list, or
 * BASE_MAP_NONE. */
static uint64_t pair_key(const st__postings *p, const char *name, const char *value,
                         uint32_t *list)
{
	uint64_t h = pair_hash(name, value);
	for (;; h = base_mix64(h + 1)) {
		uint32_t i = base_map_get(&p->by_pair, h);
		if (i == BASE_MAP_NONE || (!strcmp(p->lists[i].name, name) &&
		                           !strcmp(p->lists[i].value, value))) {
			*list = i;
			return h;
		}
	}
}

static uint64_t name_key(const st__postings *p, const char *name, uint32_t *idx)
{
	uint64_t h = name_hash(name);
	for (;; h = base_mix64(h + 1)) {
		uint32_t i = base_map_get(&p->by_name, h);
		if (i == BASE_MAP_NONE || !strcmp(p->names[i].name, name)) {
			*idx = i;
			return h;
		}
	}
}

const st__plist *st__post_list(const st__postings *p, const char *name, const char *value)
{
	uint32_t i;
	pair_key(p, name, value, &i);
	return i == BASE_MAP_NONE ? NULL : &p->lists[i];
}

const st__pname *st__post_name(const st__postings *p, const char *name)
{
	uint32_t i;
	name_key(p, name, &i);
	return i == BASE_MAP_NONE ? NULL : &p->names[i];
}

/* The list of (name, value), made (empty) when new. */
static int list_of(st__postings *p, const char *name, const char *value, uint32_t *out)
{
	uint32_t li, ni;
	uint64_t pk = pair_key(p, name, value, &li);
	if (li != BASE_MAP_NONE) {
		*out = li;
		return 0;
	}
	if (p->nlists >= BASE_MAP_NONE ||
	    base_grow(&p->lists, &p->lists_cap, p->nlists + 1, sizeof(*p->lists)))
		return -ENOMEM;
	uint64_t nk = name_key(p, name, &ni);
	if (ni == BASE_MAP_NONE) {
		if (base_grow(&p->names, &p->names_cap, p->nnames + 1, sizeof(*p->names)) ||
		    base_map_put(&p->by_name, nk, (uint32_t)p->nnames))
			return -ENOMEM;
		ni = (uint32_t)p->nnames++;
		p->names[ni] = (st__pname){.name = name};
	}
	st__pname *pn = &p->names[ni];
	if (base_grow(&pn->lists, &pn->cap, pn->n + 1, sizeof(*pn->lists)) ||
	    base_map_put(&p->by_pair, pk, (uint32_t)p->nlists))
		return -ENOMEM;
	li = (uint32_t)p->nlists++;
	p->lists[li] = (st__plist){.name = name, .value = value};
	pn->lists[pn->n++] = li;
	*out = li;
	return 0;
}

int st__post_add(st__postings *p, uint32_t series, const st_label *l, uint32_t n)
{
	uint32_t li[ST_MAX_LABELS + 1];
	if (n > ST_MAX_LABELS + 1)
		return -EINVAL;
	/* room first, so that the series goes into all its lists or none */
	for (uint32_t i = 0; i < n; i++) {
		if (list_of(p, l[i].name, l[i].value, &li[i]))
			return -ENOMEM;
		st__plist *pl = &p->lists[li[i]];
		if (base_grow(&pl->ids, &pl->cap, pl->n + 1, sizeof(*pl->ids)))
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		st__plist *pl = &p->lists[li[i]];
		pl->ids[pl->n++] = series;
	}
	return 0;
}

void st__post_free(st__postings *p)
{
	for (size_t i = 0; i < p->nlists; i++)
		free(p->lists[i].ids);
	for (size_t i = 0; i < p->nnames; i++)
		free(p->names[i].lists);
	free(p->lists);
	free(p->names);
	base_map_free(&p->by_pair);
	base_map_free(&p->by_name);
	memset(p, 0, sizeof(*p));
}
