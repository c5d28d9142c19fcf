/* unw_prog.c - the unwinder's test subject. Built twice: unw_nofp with
 * -O2 -fomit-frame-pointer (like most of Debian), unw_fp with frame
 * pointers. Every function that matters is noinline and does work after
 * its calls, so each keeps its frame; the CPU goes where the mode says:
 *
 *   split SECS      hot_a three times the work of hot_b, both under main
 *   lib SECS        main → run_lib → lib_walk x 5 (libunwlib.so, no frame
 *                   pointers) → cb_spin
 *   deep SECS N     main → deep x N → spin: N beyond the walker's 128
 *   qsort SECS      main → run_qsort → qsort (libc, no frame pointers)
 *                   → ... → cmp_slow: a frame-pointer program calling into
 *                   libc and back
 *
 * Runs until it has used SECS of its own CPU time, not SECS of wall time:
 * on a loaded machine (other builds on both cores) 14 s of wall time gave
 * unwind_test.sh 1,447 samples of the 5,000 it wants. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "unw_lib.h"

static volatile unsigned long sink;

__attribute__((noinline)) void spin(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink += i ^ (sink >> 3);
}

__attribute__((noinline)) void hot_a(void)
{
	spin(300000);
	sink++;
}

__attribute__((noinline)) void hot_b(void)
{
	spin(100000);
	sink++;
}

__attribute__((noinline)) void cb_spin(void)
{
	spin(200000);
	sink++;
}

__attribute__((noinline)) void run_lib(void)
{
	lib_walk(5, cb_spin);
	sink++;
}

__attribute__((noinline)) void deep(int n)
{
	if (n > 0)
		deep(n - 1);
	else
		spin(200000);
	sink++;
}

__attribute__((noinline)) int cmp_slow(const void *a, const void *b)
{
	spin(50);
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

__attribute__((noinline)) void run_qsort(void)
{
	static int v[2048];
	for (int i = 0; i < 2048; i++)
		v[i] = (int)((i * 2654435761u) >> 7);
	qsort(v, 2048, sizeof(v[0]), cmp_slow);
	sink++;
}

/* The CPU time this (single-threaded) process has used, in seconds. */
static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s split|lib|deep|qsort SECS [N]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	double end = cpu_now() + atof(argv[2]);
	int n = argc > 3 ? atoi(argv[3]) : 150;
	while (cpu_now() < end) {
		if (!strcmp(mode, "split")) {
			hot_a();
			hot_b();
		} else if (!strcmp(mode, "lib")) {
			run_lib();
		} else if (!strcmp(mode, "deep")) {
			deep(n);
		} else if (!strcmp(mode, "qsort")) {
			run_qsort();
		} else {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
	}
	return 0;
}
