/* map.h - the one hash map: u64 keys to u32 values, open addressing with
 * linear probing, key and value in one 16-byte slot so that a lookup costs
 * one cache miss (the stack registry outgrows the caches and is probed for
 * every ingested row), and a prefetch for lookup loops. Keys are any u64
 * (IDs that are already hashes, or small integers: the slot is found
 * through a 64-bit mix). Values are indices into the caller's arrays;
 * BASE_MAP_NONE cannot be stored. */
#ifndef SMOLDER_BASE_MAP_H
#define SMOLDER_BASE_MAP_H

#include <stddef.h>
#include <stdint.h>

#define BASE_MAP_NONE UINT32_MAX   /* get's answer for a missing key */

typedef struct base_map_slot {
	uint64_t key;
	uint32_t val;    /* BASE_MAP_NONE marks an empty slot */
	uint32_t pad;
} base_map_slot;

/* A zeroed base_map is a valid empty map. */
typedef struct base_map {
	base_map_slot *slots;
	size_t cap;      /* a power of two, or 0 */
	size_t len;
} base_map;

/* Sizes m for about hint keys. Returns 0 or -ENOMEM. */
int base_map_init(base_map *m, size_t hint);
void base_map_free(base_map *m);
/* Empties the map, keeping its capacity. */
void base_map_clear(base_map *m);
/* key's value, or BASE_MAP_NONE. */
uint32_t base_map_get(const base_map *m, uint64_t key);
/* Sets key to val (val != BASE_MAP_NONE), growing at 3/4 full. Returns 0
 * or -ENOMEM (m unchanged). */
int base_map_put(base_map *m, uint64_t key, uint32_t val);

/* Removes key (when present), in place: the keys after it move back
 * (no tombstones), so a map that keys come and go from stays as fast. */
void base_map_del(base_map *m, uint64_t key);

/* Objects by a u64 key (a process by its PID): the objects in one dense
 * array, for walks that visit them all, and a base_map from key to
 * position, for lookups. The table holds pointers; the objects are the
 * caller's. A zeroed base_tab is a valid empty table. */
typedef struct base_tab {
	void **obj;      /* obj[0..n): the objects, in no particular order */
	uint64_t *key;   /* key[i]: obj[i]'s key */
	size_t n, cap;
	base_map idx;    /* key -> i */
} base_tab;

/* key's object, or NULL. */
void *base_tab_get(const base_tab *t, uint64_t key);
/* Adds obj under key, which the table must not hold yet. Returns 0, or
 * -ENOMEM with the table unchanged. */
int base_tab_add(base_tab *t, uint64_t key, void *obj);
/* Removes obj[i] and returns it; obj[n - 1] moves into i. So a walk that
 * may remove goes down from n - 1: what moves in was visited already.
 * Cannot fail. */
void *base_tab_take(base_tab *t, size_t i);
/* Removes key's object and returns it (NULL when absent), as
 * base_tab_take. */
void *base_tab_del(base_tab *t, uint64_t key);
/* Frees the table's memory, not the objects. */
void base_tab_free(base_tab *t);

/* The 64-bit finalizer of MurmurHash3: spreads IDs and small integers
 * alike over the slots. */
static inline uint64_t base_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Starts loading key's slot into the cache: a lookup loop prefetching a few
 * keys ahead hides the miss that a map larger than the cache costs. */
static inline void base_map_prefetch(const base_map *m, uint64_t key)
{
	if (m->cap)
		__builtin_prefetch(&m->slots[base_mix64(key) & (m->cap - 1)]);
}

#endif
