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
 *   drap SECS       main → run_drap → drap_work → spin, drap_work
 *                   realigning its stack with GCC's DRAP (CFA = *(rbp-8),
 *                   rbp saved at [rbp]: DWARF expressions)
 *   signal SECS     main → run_signal → interrupted → spin, and a SIGPROF
 *                   every 2 ms of CPU whose handler (on_signal →
 *                   handler_spin) runs about a third of the time: its
 *                   stacks go through the kernel's signal frame
 *                   (__restore_rt) into the interrupted code
 *
 * Runs for SECS of its own CPU time, not wall time: on a machine others
 * load, the profilers still get the samples the test counts on. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
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

__attribute__((noinline)) void drap_use(char *p, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (char)(p[i] + i);
	sink += (unsigned long)p[n / 2];
}

/* A variable-length array aligned beyond what the ABI gives and an
 * entry realigned by force_align_arg_pointer: GCC keeps the CFA in r10,
 * then saves it at rbp - 8 (a DWARF expression). */
__attribute__((noinline, force_align_arg_pointer)) void drap_work(int n)
{
	char buf[n] __attribute__((aligned(64)));
	memset(buf, 1, (size_t)n);
	drap_use(buf, n);
	spin(200000);
	sink++;
}

__attribute__((noinline)) void run_drap(void)
{
	drap_work(64);
	sink++;
}

__attribute__((noinline)) void handler_spin(void)
{
	spin(250000);
	sink++;
}

__attribute__((noinline)) void on_signal(int sig)
{
	(void)sig;
	handler_spin();
	sink++;
}

__attribute__((noinline)) void interrupted(void)
{
	spin(500000);
	sink++;
}

__attribute__((noinline)) void run_signal(void)
{
	interrupted();
	sink++;
}

static void start_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGPROF, &sa, NULL);
	struct itimerval it = {{0, 2000}, {0, 2000}};
	setitimer(ITIMER_PROF, &it, NULL);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s split|lib|deep|qsort|drap|signal SECS [N]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	double end = now() + atof(argv[2]);
	int n = argc > 3 ? atoi(argv[3]) : 150;
	if (!strcmp(mode, "signal"))
		start_signals();
	while (now() < end) {
		if (!strcmp(mode, "split")) {
			hot_a();
			hot_b();
		} else if (!strcmp(mode, "lib")) {
			run_lib();
		} else if (!strcmp(mode, "deep")) {
			deep(n);
		} else if (!strcmp(mode, "qsort")) {
			run_qsort();
		} else if (!strcmp(mode, "drap")) {
			run_drap();
		} else if (!strcmp(mode, "signal")) {
			run_signal();
		} else {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
	}
	return 0;
}
