/* clock.h - the one pair of clocks every module reads (base_ prefix):
 * wall time for what is stored or sent (sample times, retention,
 * "now" in a query) and monotonic time for what is scheduled or timed
 * (immune to clock steps). Both in nanoseconds as int64_t, which holds
 * wall time until 2262. */
#ifndef SMOLDER_BASE_CLOCK_H
#define SMOLDER_BASE_CLOCK_H

#include <stdint.h>

/* CLOCK_REALTIME: nanoseconds since the Unix epoch. */
int64_t base_realtime_ns(void);
/* CLOCK_MONOTONIC: nanoseconds since an unspecified start. */
int64_t base_monotonic_ns(void);

#endif
