/* map.c - the hash map of map.h, and the table of objects on it. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
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

void base_map_del(base_map *m, uint64_t key)
{
	if (!m->cap)
		return;
	size_t mask = m->cap - 1, i = base_mix64(key) & mask;
	for (;; i = (i + 1) & mask) {
		if (m->slots[i].val == BASE_MAP_NONE)
			return;
		if (m->slots[i].key == key)
			break;
	}
	/* backward shift (Knuth's algorithm R): every key after the hole, up
	 * to the next empty slot, whose home is not cyclically in (hole, j]
	 * moves into the hole, so no probe from its home meets an empty slot
	 * before it */
	for (size_t j = i;;) {
		j = (j + 1) & mask;
		if (m->slots[j].val == BASE_MAP_NONE)
			break;
		size_t home = base_mix64(m->slots[j].key) & mask;
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].val = BASE_MAP_NONE;
	m->len--;
}

void *base_tab_get(const base_tab *t, uint64_t key)
{
	uint32_t i = base_map_get(&t->idx, key);
	return i == BASE_MAP_NONE ? NULL : t->obj[i];
}

int base_tab_add(base_tab *t, uint64_t key, void *obj)
{
	assert(base_map_get(&t->idx, key) == BASE_MAP_NONE);
	if (t->n >= BASE_MAP_NONE)
		return -ENOMEM;
	size_t cap = t->cap;
	int rc = base_grow(&t->obj, &cap, t->n + 1, sizeof(*t->obj));
	if (!rc && cap != t->cap) {
		/* keys grow to the objects' capacity, which is then committed */
		uint64_t *k = realloc(t->key, cap * sizeof(*k));
		if (k) {
			t->key = k;
			t->cap = cap;
		} else {
			rc = -ENOMEM;
		}
	}
	rc = rc ? rc : base_map_put(&t->idx, key, (uint32_t)t->n);
	if (rc)
		return rc;
	t->obj[t->n] = obj;
	t->key[t->n++] = key;
	return 0;
}

void *base_tab_take(base_tab *t, size_t i)
{
	assert(i < t->n);
	void *obj = t->obj[i];
	base_map_del(&t->idx, t->key[i]);
	if (--t->n != i) {
		t->obj[i] = t->obj[t->n];
		t->key[i] = t->key[t->n];
		/* an update of a key present: it never grows, so never fails */
		int rc = base_map_put(&t->idx, t->key[i], (uint32_t)i);
		assert(!rc);
		(void)rc;
	}
	return obj;
}

void *base_tab_del(base_tab *t, uint64_t key)
{
	uint32_t i = base_map_get(&t->idx, key);
	return i == BASE_MAP_NONE ? NULL : base_tab_take(t, i);
}

void base_tab_free(base_tab *t)
{
	free(t->obj);
	free(t->key);
	base_map_free(&t->idx);
	memset(t, 0, sizeof(*t));
}
