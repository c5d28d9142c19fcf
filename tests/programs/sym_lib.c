/* sym_lib.c - libsymlib.so, the shared library of the symbolizer's test
 * subjects (sym_c.c): two exported functions, so they are in .dynsym even
 * once the library is stripped, and one static one that only .symtab and
 * DWARF name. Built -O2 -fPIC -shared with frame pointers. */
#include "sym_lib.h"

static volatile unsigned long lib_sink;

/* static: in .symtab and DWARF, never in .dynsym */
__attribute__((noipa)) static unsigned long symlib_round(unsigned long x, unsigned long i)
{
	KEEP_FRAME();
	return (x * 0x9e3779b97f4a7c15ul) ^ (i >> 2);
}

__attribute__((noipa)) unsigned long symlib_hash(unsigned long n)
{
	KEEP_FRAME();
	unsigned long x = lib_sink;
	for (unsigned long i = 0; i < n; i++)
		x = (x ^ i) * 1099511628211ul + (x >> 7);
	lib_sink = x;
	return x;
}

__attribute__((noipa)) unsigned long symlib_work(unsigned long n)
{
	unsigned long x = symlib_hash(n);
	x = symlib_round(x, n);
	__asm__ volatile("" ::: "memory");  /* keep the call from being a tail call */
	return x;
}
