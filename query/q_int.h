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

#endif
