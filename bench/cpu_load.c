/* cpu_load.c - the workload bench/agent_overhead times: one thread per CPU,
 * each doing a fixed amount of work through a few levels of calls (so a
 * profiler has real stacks to walk), and the wall time it took, in ns, on
 * stdout. Fixed work, not fixed time: a slower run is the profiler's cost.
 * `cpu_load ITERS DEPTH` does the same work DEPTH calls deeper (a
 * recursion), for the cost of walking deep stacks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static unsigned long iters;
static unsigned depth;

__attribute__((noinline)) static unsigned long leaf(unsigned long x)
{
	for (int i = 0; i < 64; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	return x;
}

__attribute__((noinline)) static unsigned long mid(unsigned long x)
{
	return leaf(x) ^ leaf(x + 1);
}

static unsigned long work(unsigned long x)
{
	for (unsigned long i = 0; i < iters; i++)
		x = mid(x);
	return x;
}

/* d more frames, then the work; the addition after the call keeps it
 * from becoming a loop */
__attribute__((noinline)) static unsigned long down(unsigned d, unsigned long x)
{
	if (!d)
		return work(x);
	return down(d - 1, x) + d;
}

static void *worker(void *arg)
{
	return (void *)down(depth, (unsigned long)arg);
}

int main(int argc, char **argv)
{
	iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
	depth = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 0;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	pthread_t t[1024];
	if (n < 1 || n > 1024)
		n = 1;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	for (long i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
	return 0;
}
