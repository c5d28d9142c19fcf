/* map.c - the hash map of map.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/map.h"

int base_map_init(base_map *m, size_t hint)
{
	size_t cap = 16;
	while (cap < hint * 2)
		cap *= 2;
	m->slots = malloc(cap * sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		m->slots[i].val = BASE_MAP_NONE;
	m->cap = cap;
	m->len = 0;
	return 0;
}

void base_map_free(base_map *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

void base_map_clear(base_map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		m->slots[i].val = BASE_MAP_NONE;
	m->len = 0;
}

uint32_t base_map_get(const base_map *m, uint64_t key)
{
	if (!m->cap)
		return BASE_MAP_NONE;
	size_t mask = m->cap - 1;
	for (size_t i = base_mix64(key) & mask;; i = (i + 1) & mask) {
		const base_map_slot *s = &m->slots[i];
		if (s->val == BASE_MAP_NONE)
			return BASE_MAP_NONE;
		if (s->key == key)
			return s->val;
	}
}

static int map_grow(base_map *m)
{
	base_map n;
	int rc = base_map_init(&n, m->cap);
	if (rc)
		return rc;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].val != BASE_MAP_NONE)
			base_map_put(&n, m->slots[i].key, m->slots[i].val);
	base_map_free(m);
	*m = n;
	return 0;
}

int base_map_put(base_map *m, uint64_t key, uint32_t val)
{
	if (!m->cap || (m->len + 1) * 4 > m->cap * 3) {
		int rc = m->cap ? map_grow(m) : base_map_init(m, 16);
		if (rc)
			return rc;
	}
	size_t mask = m->cap - 1;
	for (size_t i = base_mix64(key) & mask;; i = (i + 1) & mask) {
		base_map_slot *s = &m->slots[i];
		if (s->val == BASE_MAP_NONE) {
			s->key = key;
			s->val = val;
			m->len++;
			return 0;
		}
		if (s->key == key) {
			s->val = val;
			return 0;
		}
	}
}
