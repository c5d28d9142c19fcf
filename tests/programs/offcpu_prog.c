/* offcpu_prog.c - the off-CPU test's subject (tests/integration/offcpu_test.sh):
 * blocks in known functions and measures itself, so the agent's off-CPU
 * totals can be checked against the program's own clock.
 *
 *   offcpu_prog split N        0.3 s of CPU in busy_fn, then
 *                              N rounds of sleep_fn (nanosleep 3 ms) then
 *                              pipe_fn (a read() a child answers after
 *                              5 ms); prints "sleep_ns S pipe_ns P"
 *   offcpu_prog migrate N      N blocks of migrate_fn (nanosleep 10 ms) on
 *                              one CPU while another thread moves it to the
 *                              other (sched_setaffinity): it wakes there;
 *                              prints "migrate_ns M migrated K of N"
 *   offcpu_prog busy S         burns S seconds of its own CPU time in
 *                              busy_fn; prints "cpu_ns C"
 *   offcpu_prog flood N [GO]   N pipe round trips with a child (blocks of
 *                              microseconds); prints "round_trips N"; with
 *                              GO, starts once that file exists (so the
 *                              agent can be told its PID first)
 *   offcpu_prog stacks N       N blocks of 1 ms by 4 threads, each from
 *                              another stack (16 entry functions x 120
 *                              recursion depths); prints "stacks N"
 *   offcpu_prog sleeps T N     T threads each sleeping N times 2 ms in
 *                              nap_fn; prints "nap_ns S blocks T*N"
 *
 * All but busy, flood and stacks first wait 1.5 s (warm_up) for the agent to
 * have the process' unwind tables. Blocked times are CLOCK_MONOTONIC
 * around the blocking call. Built with
 * frame pointers and no sanitizer: it is a subject, not code under test. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void nap(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* noinline and a store after the call: each function keeps its own frame */
static volatile int64_t sink;

__attribute__((noinline)) int64_t sleep_fn(void)
{
	int64_t t = mono_ns();
	nap(3);
	t = mono_ns() - t;
	sink += t;
	return t;
}

__attribute__((noinline)) int64_t pipe_fn(int req, int resp)
{
	char c = 'x';
	if (write(req, &c, 1) != 1)
		die("write");
	int64_t t = mono_ns();
	if (read(resp, &c, 1) != 1)
		die("read");
	t = mono_ns() - t;
	sink += t;
	return t;
}

/* The child of split: answers each request after 5 ms. */
static void answer(int req, int resp, long delay_ms)
{
	char c;
	while (read(req, &c, 1) == 1) {
		if (delay_ms)
			nap(delay_ms);
		if (write(resp, &c, 1) != 1)
			break;
	}
	_exit(0);
}

/* A child answering on a pair of pipes; *req and *resp are the parent's
 * ends. */
static pid_t start_child(int *req, int *resp, long delay_ms)
{
	int a[2], b[2];
	if (pipe(a) || pipe(b))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(a[1]);
		close(b[0]);
		answer(a[0], b[1], delay_ms);
	}
	close(a[0]);
	close(b[1]);
	*req = a[1];
	*resp = b[0];
	return pid;
}

static void stop_child(pid_t pid, int req, int resp)
{
	close(req);
	close(resp);
	waitpid(pid, NULL, 0);
}

__attribute__((noinline)) void busy_fn(int64_t cpu_ns);

static int split(long n)
{
	/* some CPU time too, so the process has a CPU profile to compare
	 * labels with */
	busy_fn(300000000);
	int req, resp;
	pid_t child = start_child(&req, &resp, 5);
	int64_t s = 0, p = 0;
	for (long i = 0; i < n; i++) {
		s += sleep_fn();
		p += pipe_fn(req, resp);
	}
	stop_child(child, req, resp);
	printf("sleep_ns %lld pipe_ns %lld\n", (long long)s, (long long)p);
	return 0;
}

/* ---- migrate ---- */

static pid_t mover_target;
static volatile int mover_cpu = -1;   /* the CPU to move the target to, -1: none */
static volatile int mover_stop;

static void pin(pid_t tid, int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(tid, sizeof(set), &set))
		die("sched_setaffinity");
}

/* Moves the target to mover_cpu 3 ms after being asked, while it sleeps. */
static void *mover(void *arg)
{
	(void)arg;
	while (!mover_stop) {
		int cpu = mover_cpu;
		if (cpu < 0) {
			nap(1);
			continue;
		}
		nap(3);
		pin(mover_target, cpu);
		mover_cpu = -1;
	}
	return NULL;
}

__attribute__((noinline)) int64_t migrate_fn(void)
{
	int64_t t = mono_ns();
	nap(10);
	t = mono_ns() - t;
	sink += t;
	return t;
}

static int migrate(long n)
{
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		fprintf(stderr, "migrate needs two CPUs\n");
		return 2;
	}
	mover_target = gettid();
	pthread_t th;
	if (pthread_create(&th, NULL, mover, NULL))
		die("pthread_create");
	int64_t m = 0;
	long moved = 0;
	for (long i = 0; i < n; i++) {
		int from = (int)(i & 1), to = !from;
		pin(0, from);
		if (sched_getcpu() != from)
			sched_yield();
		int before = sched_getcpu();
		mover_cpu = to;
		m += migrate_fn();
		while (mover_cpu >= 0)   /* the move must be done before the next pin */
			nap(1);
		if (before == from && sched_getcpu() == to)
			moved++;
	}
	mover_stop = 1;
	pthread_join(th, NULL);
	printf("migrate_ns %lld migrated %ld of %ld\n", (long long)m, moved, n);
	return 0;
}

/* ---- busy, flood, sleeps ---- */

__attribute__((noinline)) void busy_fn(int64_t cpu_ns)
{
	int64_t end = thread_cpu_ns() + cpu_ns;
	uint64_t x = 1;
	while (thread_cpu_ns() < end)
		for (int i = 0; i < 100000; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink += (int64_t)x;
}

static int busy(double s)
{
	int64_t t = thread_cpu_ns();
	busy_fn((int64_t)(s * 1e9));
	printf("cpu_ns %lld\n", (long long)(thread_cpu_ns() - t));
	return 0;
}

__attribute__((noinline)) void flood_fn(int req, int resp, long n)
{
	char c = 'x';
	for (long i = 0; i < n; i++)
		if (write(req, &c, 1) != 1 || read(resp, &c, 1) != 1)
			die("flood");
}

static int flood(long n, const char *go)
{
	for (int i = 0; go && access(go, F_OK); i++) {
		if (i > 6000) {
			fprintf(stderr, "flood: %s did not appear within 60 s\n", go);
			return 1;
		}
		nap(10);
	}
	int req, resp;
	pid_t child = start_child(&req, &resp, 0);
	flood_fn(req, resp, n);
	stop_child(child, req, resp);
	printf("round_trips %ld\n", n);
	return 0;
}

/* Blocks at recursion depth d: every depth is another stack. */
__attribute__((noinline)) void deep(int d)
{
	if (d > 0)
		deep(d - 1);
	else
		nap(1);
	sink++;
}

#define ENTRY(n) \
	__attribute__((noinline)) void entry##n(int d) { deep(d); sink++; }
ENTRY(0) ENTRY(1) ENTRY(2) ENTRY(3) ENTRY(4) ENTRY(5) ENTRY(6) ENTRY(7)
ENTRY(8) ENTRY(9) ENTRY(10) ENTRY(11) ENTRY(12) ENTRY(13) ENTRY(14) ENTRY(15)
static void (*const entries[16])(int) = {
	entry0, entry1, entry2, entry3, entry4, entry5, entry6, entry7,
	entry8, entry9, entry10, entry11, entry12, entry13, entry14, entry15,
};

static long stacks_n;

static void *stacks_thread(void *arg)
{
	long t = (long)arg;
	for (long i = t; i < stacks_n; i += 4)
		entries[(i / 120) % 16]((int)(i % 120));
	return NULL;
}

static int stacks(long n)
{
	pthread_t th[4];
	stacks_n = n;
	for (long i = 0; i < 4; i++)
		if (pthread_create(&th[i], NULL, stacks_thread, (void *)i))
			die("pthread_create");
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	printf("stacks %ld\n", n);
	return 0;
}

static long naps_each;
static int64_t nap_total;
static pthread_mutex_t nap_mu = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) int64_t nap_fn(void)
{
	int64_t t = mono_ns();
	nap(2);
	t = mono_ns() - t;
	sink += t;
	return t;
}

static void *napper(void *arg)
{
	(void)arg;
	int64_t s = 0;
	for (long i = 0; i < naps_each; i++)
		s += nap_fn();
	pthread_mutex_lock(&nap_mu);
	nap_total += s;
	pthread_mutex_unlock(&nap_mu);
	return NULL;
}

static int sleeps(long threads, long n)
{
	pthread_t th[64];
	if (threads < 1 || threads > 64)
		return 2;
	naps_each = n;
	for (long i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, napper, NULL))
			die("pthread_create");
	for (long i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	printf("nap_ns %lld blocks %ld\n", (long long)nap_total, threads * n);
	return 0;
}

/* The agent reads a process' mappings and builds its unwind tables after
 * its first recorded block: until then its stacks are walked by frame
 * pointers, which Debian's libc lacks. One block to be seen, then time
 * for the tables, before anything is measured. */
__attribute__((noinline)) void warm_up(void)
{
	nap(50);
	nap(1500);
	sink++;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && strcmp(argv[1], "busy") && strcmp(argv[1], "flood") &&
	    strcmp(argv[1], "stacks"))
		warm_up();
	if (argc == 3 && !strcmp(argv[1], "split"))
		return split(atol(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "migrate"))
		return migrate(atol(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "busy"))
		return busy(atof(argv[2]));
	if ((argc == 3 || argc == 4) && !strcmp(argv[1], "flood"))
		return flood(atol(argv[2]), argc == 4 ? argv[3] : NULL);
	if (argc == 3 && !strcmp(argv[1], "stacks"))
		return stacks(atol(argv[2]));
	if (argc == 4 && !strcmp(argv[1], "sleeps"))
		return sleeps(atol(argv[2]), atol(argv[3]));
	fprintf(stderr, "usage: offcpu_prog split N | migrate N | busy SECONDS | flood N [GO] | "
	        "stacks N | sleeps THREADS N\n");
	return 2;
}
