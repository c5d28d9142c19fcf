/* fsync_bench.c - why the WAL writes zeros ahead of its records: the cost
 * of append + fdatasync when the file grows with every write, against
 * overwriting blocks written beforehand, in the same run and directory.
 * Usage: bench/fsync [DIR] (default: the current directory; tmpfs makes it
 * meaningless). Prints the two latencies and their ratio. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

#define RECORD (24 * 1024)  /* a group commit of ~7 pushes of ~220 rows */
#define ROUNDS 1000

static double now_s(void)
{
	return (double)base_monotonic_ns() / 1e9;
}

/* Milliseconds per append + fdatasync; prefill writes the file's blocks
 * with zeros first, as the WAL's extend() does. */
static double run(const char *dir, int prefill)
{
	char path[4096];
	static char rec[RECORD], zeros[1 << 20];
	snprintf(path, sizeof(path), "%s/smolder-fsync-bench.%d", dir, (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		fprintf(stderr, "fsync_bench: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	memset(rec, 7, sizeof(rec));
	if (prefill) {
		for (size_t off = 0; off < (size_t)RECORD * ROUNDS; off += sizeof(zeros))
			if (write(fd, zeros, sizeof(zeros)) != (ssize_t)sizeof(zeros))
				exit(1);
		if (fsync(fd) || lseek(fd, 0, SEEK_SET))
			exit(1);
	}
	double t0 = now_s();
	for (int i = 0; i < ROUNDS; i++)
		if (write(fd, rec, sizeof(rec)) != (ssize_t)sizeof(rec) || fdatasync(fd))
			exit(1);
	double ms = (now_s() - t0) * 1e3 / ROUNDS;
	close(fd);
	unlink(path);
	return ms;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	/* alternate to spread the disk's moods over both */
	double grow = 0, pre = 0;
	for (int i = 0; i < 3; i++) {
		grow += run(dir, 0);
		pre += run(dir, 1);
	}
	printf("growing_file_ms: %.3f\n", grow / 3);
	printf("prefilled_file_ms: %.3f\n", pre / 3);
	printf("speedup: %.2f\n", grow / pre);
	return 0;
}
