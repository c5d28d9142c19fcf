/* map.h - the one hash map: u64 keys to u32 values, open addressing with
 * linear probing, key and value in one 16-byte slot so that a lookup costs
 * one cache miss (the stack registry outgrows the caches and is probed for
 * every ingested row), and a prefetch for lookup loops. Keys are any u64
 * (IDs that are already hashes, or small integers: the slot is found
 * through a 64-bit mix). Values are indices into the caller's arrays;
 * BASE_MAP_NONE cannot be stored. No removal of single keys: the maps this
 * serves only grow, or are cleared as a whole. */
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
