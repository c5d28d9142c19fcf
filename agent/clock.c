/* clock.c - the agent's two clocks: wall time for what goes on the wire,
 * monotonic time for what it schedules (immune to clock steps). */
#include <time.h>

#include "agent/agent.h"

int64_t ag_now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int64_t ag_mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
