/* debuginfod.c - the debug info the store lacks, fetched from debuginfod
 * servers with libdebuginfod and kept through the store's own rule
 * (server/debuginfo.h), so a fetched file is checked like an upload. Each
 * build ID is tried at most once an hour (remembered in memory), so a
 * fleet's unknown binaries do not turn into a stream of requests. Not
 * here: when to fetch (the symbolizer decides). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <elfutils/debuginfod.h>

#include "base/text.h"
#include "base/clock.h"
#include "server/debuginfo.h"
#include "server/debuginfod.h"
#include "wire/wire.h"

#define RETRY_AFTER_S 3600
/* Build IDs remembered at most; when full, those older than an hour go,
 * and if none is, the oldest half (trying again early costs a request). */
#define MAX_TRIED 16384

typedef struct tried {
	char hex[2 * WIRE_MAX_BUILD_ID + 1];
	int64_t at_s;     /* CLOCK_MONOTONIC seconds of the attempt */
	int rc;           /* its outcome; 1 while it runs */
} tried;

struct srv_dbgd {
	char *dir;        /* its .debuginfod-cache/: libdebuginfod's cache */
	int null_fd;      /* /dev/null, libdebuginfod's verbose output */
	pthread_mutex_t mu;
	tried *t;         /* guarded by mu */
	size_t n;
};

int srv_dbgd_new(const char *urls, const char *debuginfo_dir, srv_dbgd **out)
{
	char *list = NULL, cache[4200], max[32];
	int rc = 0;
	srv_dbgd *d = NULL;
	*out = NULL;
	/* libdebuginfod wants spaces between URLs; our flag takes commas */
	if (!(list = strdup(urls)))
		return -ENOMEM;
	for (char *p = list; *p; p++)
		if (*p == ',')
			*p = ' ';
	size_t nurls = 0;
	for (char *save = NULL, *tok = strtok_r(list, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		if (strncmp(tok, "http://", 7) && strncmp(tok, "https://", 8)) {
			rc = -EINVAL;
			goto out;
		}
		nurls++;
	}
	if (!nurls) {
		rc = -EINVAL;
		goto out;
	}
	strcpy(list, urls);   /* strtok_r cut it; same length */
	for (char *p = list; *p; p++)
		if (*p == ',')
			*p = ' ';
	d = calloc(1, sizeof(*d));
	if (d)
		d->null_fd = -1;
	if (!d || !(d->dir = strdup(debuginfo_dir))) {
		rc = -ENOMEM;
		goto out;
	}
	d->null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (d->null_fd < 0) {
		rc = -errno;
		goto out;
	}
	pthread_mutex_init(&d->mu, NULL);
	/* The client's cache under the data dir, not $HOME (a service user may
	 * have none); we move files out of it once kept, so it stays small. */
	snprintf(cache, sizeof(cache), "%s/.debuginfod-cache", debuginfo_dir);
	snprintf(max, sizeof(max), "%llu", (unsigned long long)SRV_DEBUGINFO_MAX_BYTES);
	if (setenv(DEBUGINFOD_URLS_ENV_VAR, list, 1) ||
	    setenv(DEBUGINFOD_CACHE_PATH_ENV_VAR, cache, 1) ||
	    setenv(DEBUGINFOD_MAXSIZE_ENV_VAR, max, 1)) {
		rc = -errno;
		goto out;
	}
	*out = d;
	d = NULL;
out:
	free(list);
	srv_dbgd_free(d);
	return rc;
}

void srv_dbgd_free(srv_dbgd *d)
{
	if (!d)
		return;
	if (d->dir)
		pthread_mutex_destroy(&d->mu);
	if (d->null_fd >= 0)
		close(d->null_fd);
	free(d->t);
	free(d->dir);
	free(d);
}

/* Claims an attempt at hex. Returns 0 when this caller may fetch, else the
 * remembered outcome of this hour's attempt (-EAGAIN while it runs). */
static int claim(srv_dbgd *d, const char *hex)
{
	int64_t now = (base_monotonic_ns() / 1000000000);
	int rc = 0;
	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < d->n; i++) {
		if (strcmp(d->t[i].hex, hex))
			continue;
		if (now - d->t[i].at_s < RETRY_AFTER_S) {
			rc = d->t[i].rc == 1 ? -EAGAIN : d->t[i].rc;
			goto out;
		}
		d->t[i] = d->t[--d->n];
		break;
	}
	if (d->n == MAX_TRIED) {
		size_t k = 0;
		for (size_t i = 0; i < d->n; i++)
			if (now - d->t[i].at_s < RETRY_AFTER_S || d->t[i].rc == 1)
				d->t[k++] = d->t[i];
		if (k == d->n) {   /* all recent: forget the older half */
			k = d->n / 2;
			memmove(d->t, d->t + k, (d->n - k) * sizeof(*d->t));
			k = d->n - k;
		}
		d->n = k;
	}
	if (!d->t) {
		d->t = calloc(MAX_TRIED, sizeof(*d->t));
		if (!d->t) {
			rc = -ENOMEM;
			goto out;
		}
	}
	tried *t = &d->t[d->n++];
	snprintf(t->hex, sizeof(t->hex), "%s", hex);
	t->at_s = now;
	t->rc = 1;
out:
	pthread_mutex_unlock(&d->mu);
	return rc;
}

static void settle(srv_dbgd *d, const char *hex, int rc)
{
	pthread_mutex_lock(&d->mu);
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->t[i].hex, hex)) {
			d->t[i].rc = rc;
			break;
		}
	pthread_mutex_unlock(&d->mu);
}

/* Copies src (size bytes) into a new temporary file in the store's file
 * directory and keeps it in db. */
static int keep(st_db *db, const char *hex, int src, uint64_t size)
{
	static atomic_uint seq;
	char tmp[4300];
	srv_debuginfo_result res;
	int rc = 0;
	snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.d%u.tmp", st_file_dir(db), hex, (long)getpid(),
	         atomic_fetch_add(&seq, 1));
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	loff_t in = 0;
	while ((uint64_t)in < size) {
		ssize_t k = copy_file_range(src, &in, fd, NULL, size - (uint64_t)in, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			rc = k < 0 ? -errno : -EIO;
			unlink(tmp);
			goto out;
		}
	}
	/* no fallback ID: the servers found it by a build-id note it must have */
	if ((rc = srv_debuginfo_keep(db, hex, fd, tmp, NULL, 0, &res)))
		goto out;
	if (res.status == 503) {
		rc = -EAGAIN;
	} else if (res.status == 400) {
		fprintf(stderr, "smolder-server: debuginfod sent an unusable file for %s: %s\n", hex,
		        res.err.msg);
		rc = -EINVAL;
	} else if (res.status == 201) {
		fprintf(stderr, "smolder-server: debuginfod: kept %s as its %s file\n", hex,
		        res.stored_as);
	}
out:
	close(fd);
	return rc;
}

int srv_dbgd_fetch(srv_dbgd *d, st_db *db, const uint8_t *bid, size_t len)
{
	char hex[2 * WIRE_MAX_BUILD_ID + 1];
	char *path = NULL;
	int fd = -1, rc;
	debuginfod_client *c = NULL;
	if (!len || len > WIRE_MAX_BUILD_ID)
		return -EINVAL;
	base_hex(bid, len, hex);
	if ((rc = claim(d, hex)))
		return rc;
	/* a client per call: libdebuginfod clients are not shared across threads */
	if (!(c = debuginfod_begin())) {
		rc = -ENOMEM;
		goto out;
	}
	/* libdebuginfod dprintf()s its progress to the verbose fd, -1 by
	 * default, and glibc 2.36's dprintf to a bad fd leaks its 8 KiB
	 * buffer (LeakSanitizer finds it): /dev/null costs nothing */
	debuginfod_set_verbose_fd(c, d->null_fd);
	/* the debug file first (DWARF, symbols); the executable when the
	 * servers only have that (its .symtab may still name functions) */
	fd = debuginfod_find_debuginfo(c, bid, (int)len, &path);
	if (fd < 0) {
		free(path);
		path = NULL;
		fd = debuginfod_find_executable(c, bid, (int)len, &path);
	}
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	if ((uint64_t)st.st_size > SRV_DEBUGINFO_MAX_BYTES) {
		rc = -EFBIG;
		goto out;
	}
	rc = keep(db, hex, fd, (uint64_t)st.st_size);
out:
	if (fd >= 0)
		close(fd);
	if (path) {
		/* kept or refused, the cached copy is not needed again: the store
		 * holds what is usable, and the hour's memory stops refetches */
		unlink(path);
		rmdir(dirname(path));
	}
	free(path);
	debuginfod_end(c);
	if (rc == -EAGAIN)   /* a server's "try later" must not read as "running" */
		rc = -EIO;
	settle(d, hex, rc);
	return rc;
}
