/* fuzz_python.c - the agent's reader of CPython code objects
 * (agent/python.c) on hostile process memory: a code object whose fields
 * point anywhere, strings of any kind and length, torn or absent line
 * tables, line tables of any bytes, and the machine-code decoders on any
 * bytes. Input: byte 0 picks the layout, bytes 1..4 are lasti, the rest is
 * the memory at PYI_BASE (the code object at its start); everything
 * outside it is unreadable. Seeds: tests/fuzz/gen_python_corpus.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/types.h>

#include "agent/agent.h"
#include "agent/python_layouts.h"
#include "tests/unit/py_image.h"

typedef struct mem {
	const uint8_t *p;
	size_t n;
} mem;

static int rd(void *arg, uint64_t addr, void *buf, size_t n)
{
	const mem *m = arg;
	if (addr < PYI_BASE || addr - PYI_BASE > m->n || n > m->n - (addr - PYI_BASE))
		return -14;
	memcpy(buf, m->p + (addr - PYI_BASE), n);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	const ag_py_layout *L = &ag_py_layouts[data[0] % AG_PY_NLAYOUTS];
	int32_t lasti;
	memcpy(&lasti, data + 1, 4);
	mem m = {data + 5, size - 5};
	static const ag_py_types ty = {PYI_CODE_T, PYI_STR_T, PYI_BYTES_T};
	ag_py_code c;
	if (ag_py_read_code(L, &ty, rd, &m, PYI_BASE, &c) == 0) {
		/* what the reader hands on is bounded and a C string */
		if (!c.name || !c.file || strlen(c.name) > 1024 || strlen(c.file) > 4096 ||
		    c.nlines > (256u << 10))
			abort();
		if (ag_py_addr2line(L, c.lines, c.nlines, c.firstlineno, lasti) < 0)
			abort();
		ag_py_code_free(&c);
	}
	if (ag_py_addr2line(L, m.p, m.n, lasti, lasti) < 0)
		abort();
	uint64_t key;
	uint16_t a, b;
	ag_py_decode_tss(m.p, m.n, 0x400000, &key);
	ag_py_decode_getspecific(m.p, m.n, &a, &b);
	return 0;
}
