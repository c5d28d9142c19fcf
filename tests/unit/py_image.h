/* py_image.h - builds the memory of a CPython code object for
 * test_python.c and tests/fuzz/gen_python_corpus.c: the object, its str
 * objects (any kind) and its bytes line table laid out by an
 * ag_py_layout, at a base address, with made-up type object addresses. */
#ifndef SMOLDER_TESTS_PY_IMAGE_H
#define SMOLDER_TESTS_PY_IMAGE_H

#include <stdint.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/python_layouts.h"

#define PYI_BASE 0x10000ULL
#define PYI_CODE_T 0x1000ULL
#define PYI_STR_T 0x2000ULL
#define PYI_BYTES_T 0x3000ULL
#define PYI_SIZE 65536
/* where the parts go, from the base */
#define PYI_FILE 1024
#define PYI_NAME 4096
#define PYI_QUAL 8192
#define PYI_TABLE 16384

static inline void pyi_u64(uint8_t *img, size_t off, uint64_t v) { memcpy(img + off, &v, 8); }
static inline void pyi_u32(uint8_t *img, size_t off, uint32_t v) { memcpy(img + off, &v, 4); }

/* A compact str of n code points of the given kind (1, 2, 4; ascii when
 * all are below 128 and kind is 1) at off. */
static inline void pyi_str(const ag_py_layout *L, uint8_t *img, size_t off, const uint32_t *cp,
                           size_t n, unsigned kind)
{
	int ascii = kind == 1;
	for (size_t i = 0; i < n; i++)
		ascii &= cp[i] < 128;
	pyi_u64(img, off + 8, PYI_STR_T);
	pyi_u64(img, off + 16, n);
	pyi_u32(img, off + L->str_state, (uint32_t)(kind << 2 | 1u << 5 | (unsigned)ascii << 6 |
	                                            1u << 7));
	size_t d = off + (ascii ? L->str_ascii_data : L->str_compact_data);
	for (size_t i = 0; i < n; i++) {
		if (kind == 1)
			img[d + i] = (uint8_t)cp[i];
		else if (kind == 2)
			memcpy(img + d + 2 * i, &(uint16_t){(uint16_t)cp[i]}, 2);
		else
			memcpy(img + d + 4 * i, &cp[i], 4);
	}
}

static inline void pyi_ascii(const ag_py_layout *L, uint8_t *img, size_t off, const char *s)
{
	uint32_t cp[512];
	size_t n = strlen(s);
	for (size_t i = 0; i < n && i < 512; i++)
		cp[i] = (uint8_t)s[i];
	pyi_str(L, img, off, cp, n < 512 ? n : 512, 1);
}

/* The code object at the base: ascii name, qualname and file, the line
 * table's bytes. img has PYI_SIZE bytes, zeroed by the caller. */
static inline void pyi_code(const ag_py_layout *L, uint8_t *img, const char *name,
                            const char *qual, const char *file, int32_t first,
                            const void *table, size_t ntable)
{
	pyi_u64(img, 8, PYI_CODE_T);
	pyi_u64(img, L->co_filename, PYI_BASE + PYI_FILE);
	pyi_u64(img, L->co_name, PYI_BASE + PYI_NAME);
	if (L->co_qualname)
		pyi_u64(img, L->co_qualname, PYI_BASE + PYI_QUAL);
	pyi_u32(img, L->co_firstlineno, (uint32_t)first);
	pyi_u64(img, L->co_linetable, PYI_BASE + PYI_TABLE);
	if (L->co_size)
		pyi_u64(img, L->co_size, 64);
	pyi_ascii(L, img, PYI_FILE, file);
	pyi_ascii(L, img, PYI_NAME, name);
	pyi_ascii(L, img, PYI_QUAL, qual);
	pyi_u64(img, PYI_TABLE + 8, PYI_BYTES_T);
	pyi_u64(img, PYI_TABLE + L->bytes_size, ntable);
	memcpy(img + PYI_TABLE + L->bytes_data, table, ntable);
}

#endif
