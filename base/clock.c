/* clock.c - the clocks of clock.h. */
#include <time.h>

#include "base/clock.h"

static int64_t read_ns(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int64_t base_realtime_ns(void)
{
	return read_ns(CLOCK_REALTIME);
}

int64_t base_monotonic_ns(void)
{
	return read_ns(CLOCK_MONOTONIC);
}
