/* fp_busy.c - a CPU-bound test subject with known functions, built with
 * frame pointers and without inlining so every sample's stack is
 * leaf → hot_a or hot_b → main. hot_a gets three times the work of
 * hot_b, or argv[2] thousand rounds to hot_b's 100 thousand (two
 * "versions" of one executable that differ in where time goes). Runs until
 * it has used argv[1] seconds of its own CPU time (so a loaded machine
 * gives it as many samples as an idle one, only later; at most 20 times
 * that in wall time) and prints the CPU time it used (ns), which is what
 * the profiler should have seen: frequency × CPU seconds samples. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static volatile unsigned long sink;

__attribute__((noinline)) void spin(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink += i ^ (sink >> 3);
}

static unsigned long a_work = 300000;

__attribute__((noinline)) void hot_a(void)
{
	spin(a_work);
	__asm__ volatile("" ::: "memory");  /* keep the call from being a tail call */
}

__attribute__((noinline)) void hot_b(void)
{
	spin(100000);
	__asm__ volatile("" ::: "memory");
}

static double now(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 5;
	double end = now(CLOCK_PROCESS_CPUTIME_ID) + secs;
	double wall_end = now(CLOCK_MONOTONIC) + 20 * secs;
	if (argc > 2)
		a_work = strtoul(argv[2], NULL, 10) * 1000;
	while (now(CLOCK_PROCESS_CPUTIME_ID) < end && now(CLOCK_MONOTONIC) < wall_end) {
		hot_a();
		hot_b();
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	long long ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	               (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
	printf("%lld\n", ns);
	return 0;
}
