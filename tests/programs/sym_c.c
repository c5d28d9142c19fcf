/* sym_c.c - the symbolizer's C test subject, built at -O2 both as a PIE
 * and as a non-PIE executable, linked against libsymlib.so (sym_lib.c).
 * Known functions that never inline or get cloned (noipa), and one
 * always_inline function, mix_step, inside hot_loop's loop, so the
 * hottest addresses of the program are inlined code: its samples
 * symbolize as mix_step inside hot_loop inside caller_inline inside main.
 * Stacks (every call site followed by a barrier so none is a tail call):
 *   leaf_spin     <- caller_plain   <- main
 *   mix_step (inlined) hot_loop <- caller_inline <- main
 *   symlib_hash   <- symlib_work    <- caller_lib <- main
 * Runs for argv[1] seconds of wall time (default 5). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sym_lib.h"

static volatile unsigned long sink;

static inline __attribute__((always_inline)) unsigned long mix_step(unsigned long x,
                                                                     unsigned long i)
{
	x ^= x >> 13;
	x *= 0xff51afd7ed558ccdul;
	x += i;
	return x ^ (x >> 29);
}

__attribute__((noipa)) void hot_loop(unsigned long n)
{
	KEEP_FRAME();
	unsigned long x = sink;
	for (unsigned long i = 0; i < n; i++)
		x = mix_step(x, i);
	sink = x;
}

__attribute__((noipa)) void leaf_spin(unsigned long n)
{
	KEEP_FRAME();
	for (unsigned long i = 0; i < n; i++)
		sink += i ^ (sink >> 3);
}

__attribute__((noipa)) void caller_plain(void)
{
	leaf_spin(200000);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noipa)) void caller_inline(void)
{
	hot_loop(600000);
	__asm__ volatile("" ::: "memory");
}

__attribute__((noipa)) void caller_lib(void)
{
	sink += symlib_work(300000);
	__asm__ volatile("" ::: "memory");
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 5, end = now() + secs;
	while (now() < end) {
		caller_plain();
		caller_inline();
		caller_lib();
	}
	printf("%lu\n", sink);
	return 0;
}
