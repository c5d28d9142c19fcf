/* py_fake.c - spins in its library (py_fake_lib.c, linked under a
 * libpython name) for argv[1] seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "py_fake.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double end = now() + (argc > 1 ? atof(argv[1]) : 1);
	volatile uint64_t sink = 0;
	while (now() < end)
		sink += fake_work(100000);
	printf("%llu\n", (unsigned long long)sink);
	return 0;
}
