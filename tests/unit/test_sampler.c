/* test_sampler.c - the agent's sampler against the real kernel: the BPF
 * program loads and attaches to every online CPU, and a CPU that goes
 * offline while the agent starts (perf_event_open answers ENODEV, which
 * the test makes happen through ag_sampler_opts.perf_open) costs that CPU
 * only, not the whole start. Needs root and BTF; skips loudly otherwise. */
#include <errno.h>
#include <linux/perf_event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/agent.h"

static int g_offline = -1;   /* the CPU the hook takes offline; -2: all */

static int perf_open(struct perf_event_attr *a, int cpu)
{
	if (g_offline == -2 || cpu == g_offline) {
		errno = ENODEV;
		return -1;
	}
	return (int)syscall(__NR_perf_event_open, a, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
}

static int online(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static bool can_load(void)
{
	if (geteuid() == 0 && access("/sys/kernel/btf/vmlinux", R_OK) == 0)
		return true;
	print_message("SKIP test_sampler: loading the BPF program needs root and "
	              "/sys/kernel/btf/vmlinux\n");
	return false;
}

static void test_cpu_offline_at_start(void **state)
{
	(void)state;
	if (!can_load()) {
		skip();
		return;
	}
	ag_sampler_opts o = {.frequency = 19, .interval_s = 1, .kernel_stacks = true,
	                     .perf_open = perf_open};
	ag_sampler *s = NULL;
	int n = online();

	g_offline = -1;
	assert_int_equal(ag_sampler_open(&o, &s), 0);
	assert_int_equal(ag_sampler_ncpus(s), n);
	ag_sampler_close(s);

	/* the last CPU goes offline: every other one still samples */
	g_offline = n - 1;
	s = NULL;
	if (n > 1) {
		assert_int_equal(ag_sampler_open(&o, &s), 0);
		assert_int_equal(ag_sampler_ncpus(s), n - 1);
		ag_sampler_close(s);
	}

	/* all of them: nothing to sample, and it says so */
	g_offline = -2;
	s = NULL;
	assert_int_equal(ag_sampler_open(&o, &s), -ENODEV);
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpu_offline_at_start),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
