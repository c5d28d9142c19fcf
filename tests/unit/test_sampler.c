/* test_sampler.c - the agent's sampler against the real kernel: the BPF
 * program loads and attaches to every online CPU, and a CPU that goes
 * offline while the agent starts (perf_event_open answers ENODEV, which
 * the test makes happen through ag_sampler_opts.perf_open) costs that CPU
 * only, not the whole start; the drain's batch take of a hash map. Needs
 * root and BTF; skips loudly otherwise. */
#include <errno.h>
#include <linux/perf_event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include <bpf/bpf.h>

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

/* ag_map_take's collector: every entry handed over, and how many calls. */
typedef struct took {
	uint64_t *val;      /* by key, UINT64_MAX for not seen */
	size_t n, calls, bad;
} took;

static int take_fn(void *arg, const void *keys, const void *vals, size_t n)
{
	took *t = arg;
	const uint64_t *k = keys, *v = vals;
	t->calls++;
	for (size_t i = 0; i < n; i++) {
		if (k[i] >= t->n || t->val[k[i]] != UINT64_MAX)
			t->bad++;      /* a key that was never put, or twice */
		else
			t->val[k[i]] = v[i];
	}
	return 0;
}

/* The batch drain on a real kernel hash map: an empty map (ENOENT at
 * once), a map of more entries than a batch (many calls, the last one
 * ending in ENOENT), and a batch of one, which the map's fuller buckets
 * outgrow (ENOSPC: retried with room for more). Every entry comes out
 * once with its value, and the map is empty after. */
static void test_map_take(void **state)
{
	(void)state;
	enum { N = 3000 };
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "take_test", sizeof(uint64_t),
	                        sizeof(uint64_t), 4096, NULL);
	if (fd < 0) {
		fprintf(stderr, "SKIP test_map_take: cannot create a BPF map (%s): needs root\n",
		        strerror(errno));
		skip();
	}
	ag_take_buf b = {0};
	took t = {.val = malloc(N * sizeof(uint64_t)), .n = N};
	assert_non_null(t.val);
	assert_int_equal(ag_map_take(fd, 8, 8, &b, 64, take_fn, &t), 0);
	assert_int_equal(t.calls, 0);
	static const size_t batches[] = {64, 1, 5000};
	for (size_t r = 0; r < sizeof(batches) / sizeof(batches[0]); r++) {
		for (uint64_t k = 0; k < N; k++) {
			uint64_t v = k * 7 + r;
			assert_int_equal(bpf_map_update_elem(fd, &k, &v, BPF_NOEXIST), 0);
			t.val[k] = UINT64_MAX;
		}
		t.calls = t.bad = 0;
		int rc = ag_map_take(fd, 8, 8, &b, batches[r], take_fn, &t);
		assert_int_equal(rc, 0);
		assert_int_equal(t.bad, 0);
		for (uint64_t k = 0; k < N; k++)
			assert_int_equal(t.val[k], k * 7 + r);
		if (batches[r] < N)
			assert_true(t.calls >= N / b.cap);
		uint64_t key;
		assert_int_not_equal(bpf_map_get_next_key(fd, NULL, &key), 0);
		ag_take_buf_free(&b);
	}
	free(t.val);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpu_offline_at_start),
		cmocka_unit_test(test_map_take),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
