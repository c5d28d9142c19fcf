/* wal.c - the write-ahead log: numbered records in segment files, each with
 * a CRC32C, made durable by group commit (one fdatasync for every writer
 * waiting at that moment). It knows nothing of what a record means. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "storage/st_int.h"
#include "storage/wal.h"

struct st__wal {
	char dir[PATH_MAX];
	uint64_t seg_bytes;
	int fd;                  /* current segment, open for appending */
	uint64_t seg_size;       /* bytes of records (and header) in the segment */
	uint64_t alloc_end;      /* file size: zeros written ahead of seg_size */
	uint64_t *segs;          /* first LSN of each segment, ascending */
	size_t nsegs, segs_cap;
	uint64_t next_lsn;       /* the LSN the next record gets */

	pthread_mutex_t sync_mu; /* guards what follows */
	pthread_cond_t sync_cv;
	uint64_t written_lsn;    /* last LSN written to the file */
	uint64_t durable_lsn;    /* last LSN known to be on stable storage */
	bool syncing;            /* a leader is in fdatasync */
	uint64_t records, syncs, sync_ns;  /* counters for st_stats */
	int failed;              /* sticky negative errno once a sync failed */
};

int st__wal_scan(const uint8_t *buf, size_t len, st__wal_fn fn, void *arg,
                 size_t *valid_len)
{
	*valid_len = 0;
	if (len < ST__WAL_SEG_HDR || memcmp(buf, ST__WAL_MAGIC, 8) ||
	    st__get_u32(buf + 8) != ST__WAL_VERSION)
		return -EBADMSG;
	size_t off = ST__WAL_SEG_HDR;
	*valid_len = off;
	while (len - off >= ST__WAL_REC_HDR) {
		const uint8_t *h = buf + off;
		uint32_t plen = st__get_u32(h);
		uint32_t crc = st__get_u32(h + 4);
		if (plen > ST__WAL_MAX_RECORD || plen > len - off - ST__WAL_REC_HDR)
			break;
		uint32_t c = st__crc32c(0, h + 8, ST__WAL_REC_HDR - 8);
		c = st__crc32c(c, h + ST__WAL_REC_HDR, plen);
		if (c != crc)
			break;
		if (st__get_u32(h + 16) != ST__WAL_REC_BATCH)
			return -EBADMSG;
		int rc = fn(arg, st__get_u64(h + 8), h + ST__WAL_REC_HDR, plen);
		if (rc)
			return rc;
		off += ST__WAL_REC_HDR + plen;
		*valid_len = off;
	}
	return 0;
}

static void seg_path(const st__wal *w, uint64_t first, char *out, size_t n)
{
	snprintf(out, n, "%s/%016" PRIx64 ".wal", w->dir, first);
}

static int segs_push(st__wal *w, uint64_t first)
{
	if (st__grow(&w->segs, &w->segs_cap, w->nsegs + 1, sizeof(*w->segs)))
		return -ENOMEM;
	w->segs[w->nsegs++] = first;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Creates segment `first` with its header and makes the directory entry
 * durable, so a record acknowledged in it can always be found. */
static int seg_create(st__wal *w, uint64_t first)
{
	char path[PATH_MAX + 32];
	seg_path(w, first, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	uint8_t hdr[ST__WAL_SEG_HDR] = {0};
	memcpy(hdr, ST__WAL_MAGIC, 8);
	st__put_u32(hdr + 8, ST__WAL_VERSION);
	int rc = st__write_all(fd, hdr, sizeof(hdr));
	if (!rc && fdatasync(fd))
		rc = -errno;
	if (!rc)
		rc = st__fsync_dir(w->dir);
	if (rc) {
		close(fd);
		return rc;
	}
	if (w->fd >= 0)
		close(w->fd);
	w->fd = fd;
	w->seg_size = w->alloc_end = ST__WAL_SEG_HDR;
	if (!w->nsegs || w->segs[w->nsegs - 1] != first)
		return segs_push(w, first);
	return 0;
}

int st__wal_open(const char *dir, uint64_t seg_bytes, st__wal **out)
{
	st__wal *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = -1;
	w->seg_bytes = seg_bytes;
	pthread_mutex_init(&w->sync_mu, NULL);
	pthread_cond_init(&w->sync_cv, NULL);
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	int rc = st__mkdir_p(dir);
	if (rc)
		goto out;
	DIR *d = opendir(dir);
	if (!d) {
		rc = -errno;
		goto out;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		size_t n = strlen(e->d_name);
		if (n != 20 || strcmp(e->d_name + 16, ".wal"))
			continue;
		uint64_t first = strtoull(e->d_name, &end, 16);
		if (end != e->d_name + 16)
			continue;
		rc = segs_push(w, first);
		if (rc)
			break;
	}
	closedir(d);
	if (rc)
		goto out;
	if (w->nsegs)
		qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_u64);
	*out = w;
	return 0;
out:
	st__wal_close(w);
	return rc;
}

void st__wal_close(st__wal *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	pthread_mutex_destroy(&w->sync_mu);
	pthread_cond_destroy(&w->sync_cv);
	free(w->segs);
	free(w);
}

typedef struct replay_ctx {
	st__wal_fn fn;
	void *arg;
	uint64_t expect;   /* LSN the next record must carry; 0 = any */
	uint64_t last;
	uint64_t n;
} replay_ctx;

static int replay_rec(void *arg, uint64_t lsn, const uint8_t *p, size_t len)
{
	replay_ctx *c = arg;
	if (c->expect && lsn != c->expect)
		return -ERANGE;
	c->expect = lsn + 1;
	c->last = lsn;
	c->n++;
	return c->fn(c->arg, lsn, p, len);
}

int st__wal_replay(st__wal *w, uint64_t min_next_lsn, st__wal_fn fn, void *arg,
                   st__wal_replay_info *info, st_err *err)
{
	int rc = 0;
	uint8_t *buf = NULL;
	replay_ctx c = {.fn = fn, .arg = arg};
	memset(info, 0, sizeof(*info));
	for (size_t i = 0; i < w->nsegs; i++) {
		char path[PATH_MAX + 32];
		size_t len = 0, valid = 0;
		bool last = i + 1 == w->nsegs;
		seg_path(w, w->segs[i], path, sizeof(path));
		rc = st__read_file(path, &buf, &len, (uint64_t)1 << 40);
		if (rc) {
			st__fail(err, rc, "reading WAL segment %s: %s", path, strerror(-rc));
			goto out;
		}
		/* segments follow each other without a gap, except over LSNs
		 * the blocks already hold (the WAL was lost and restarted past
		 * them): a missing segment in the middle is damage */
		if (i > 0 && w->segs[i] != c.expect && w->segs[i] > min_next_lsn) {
			rc = st__fail(err, -EBADMSG, "WAL segment %s starts at record %" PRIu64
			              " but the previous one ends before %" PRIu64 ": a segment "
			              "is missing", path, w->segs[i], c.expect);
			goto out;
		}
		c.expect = w->segs[i];
		rc = st__wal_scan(buf, len, replay_rec, &c, &valid);
		if (rc == -ERANGE) {
			rc = st__fail(err, -EBADMSG, "WAL segment %s: record %" PRIu64
			              " is out of sequence", path, c.expect);
			goto out;
		}
		if (rc == -EBADMSG && last && len < ST__WAL_SEG_HDR) {
			/* created but its header never reached the disk */
			valid = 0;
			rc = 0;
		} else if (rc == -EBADMSG && valid == 0) {
			rc = st__fail(err, -EBADMSG, "WAL segment %s: bad header", path);
			goto out;
		} else if (rc) {
			st__fail(err, rc, "WAL segment %s: %s", path, err && err->msg[0] ?
			         err->msg : strerror(-rc));
			goto out;
		}
		/* zeros after the last record were written ahead on purpose
		 * (see extend()); anything else there is a torn or damaged tail */
		bool zero_tail = true;
		for (size_t z = valid; z < len && zero_tail; z++)
			zero_tail = buf[z] == 0;
		if (valid < len && !last && !zero_tail) {
			rc = st__fail(err, -EBADMSG, "WAL segment %s is corrupt at byte %zu "
			              "of %zu and later segments exist", path, valid, len);
			goto out;
		}
		free(buf);
		buf = NULL;
		if (last) {
			if (valid < len && !zero_tail)
				info->torn_bytes = len - valid;
			if (valid < ST__WAL_SEG_HDR) {
				/* rewrite an unusable header; the segment holds nothing */
				uint64_t first = w->segs[i];
				w->nsegs--;
				rc = seg_create(w, first);
				if (rc)
					goto out;
				valid = ST__WAL_SEG_HDR;
			} else {
				int fd = open(path, O_WRONLY | O_CLOEXEC);
				if (fd < 0) {
					rc = -errno;
					goto out;
				}
				/* drop the torn tail so new records follow intact ones */
				bool torn = valid < len && !zero_tail;
				if (torn && (ftruncate(fd, (off_t)valid) || fsync(fd))) {
					rc = -errno;
					close(fd);
					goto out;
				}
				if (lseek(fd, (off_t)valid, SEEK_SET) < 0) {
					rc = -errno;
					close(fd);
					goto out;
				}
				w->fd = fd;
				w->seg_size = valid;
				w->alloc_end = torn ? valid : len;
			}
		}
	}
	w->next_lsn = c.n ? c.last + 1 : (w->nsegs ? w->segs[w->nsegs - 1] : 1);
	if (w->next_lsn < min_next_lsn) {
		/* the WAL is behind the blocks (lost or wiped): never reuse an LSN
		 * a block claims to cover, or its rows would be skipped at replay */
		w->next_lsn = min_next_lsn;
		rc = seg_create(w, w->next_lsn);
		if (rc)
			goto out;
	}
	if (w->fd < 0) {
		rc = seg_create(w, w->next_lsn);
		if (rc)
			goto out;
	}
	w->written_lsn = w->durable_lsn = w->next_lsn - 1;
	info->records = c.n;
	info->next_lsn = w->next_lsn;
out:
	free(buf);
	return rc;
}

/* Makes the current segment durable and starts a new one. Waits for a
 * concurrent group-commit leader first: it may be in fdatasync on the fd
 * this closes. */
static int rotate(st__wal *w)
{
	int rc = 0;
	pthread_mutex_lock(&w->sync_mu);
	while (w->syncing)
		pthread_cond_wait(&w->sync_cv, &w->sync_mu);
	if (w->failed) {
		rc = w->failed;
		goto out;
	}
	if (fdatasync(w->fd)) {
		rc = w->failed = -errno;
		goto out;
	}
	w->durable_lsn = w->written_lsn;
	rc = seg_create(w, w->next_lsn);
	if (rc)
		w->failed = rc;
out:
	pthread_cond_broadcast(&w->sync_cv);
	pthread_mutex_unlock(&w->sync_mu);
	return rc;
}

/* Writes zeros ahead of the records, a megabyte at a time. fdatasync of a
 * write that grows the file must also commit the new size and extents
 * through the filesystem journal; overwriting blocks that already exist
 * does not, which on ext4 makes the group commit's fdatasync about twice as
 * fast (bench/fsync measures it). The zeros cost one more write of the
 * WAL's size; recovery tells them from a torn record. */
static int extend(st__wal *w, uint64_t need)
{
	static const uint8_t zeros[65536];
	const uint64_t step = 1u << 20;
	uint64_t end = (need + step - 1) / step * step;
	uint64_t cap = need > w->seg_bytes ? need : w->seg_bytes;
	if (end > cap)
		end = cap;  /* not past where the segment will rotate */
	while (w->alloc_end < end) {
		size_t n = end - w->alloc_end < sizeof(zeros) ? (size_t)(end - w->alloc_end) : sizeof(zeros);
		ssize_t r = pwrite(w->fd, zeros, n, (off_t)w->alloc_end);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		w->alloc_end += (uint64_t)r;
	}
	return 0;
}

int st__wal_reserve(st__wal *w, size_t len)
{
	int rc;
	if (len > ST__WAL_MAX_RECORD)
		return -EMSGSIZE;
	pthread_mutex_lock(&w->sync_mu);
	rc = w->failed;
	pthread_mutex_unlock(&w->sync_mu);
	if (rc)
		return rc;
	if (w->seg_size > ST__WAL_SEG_HDR && w->seg_size + ST__WAL_REC_HDR + len > w->seg_bytes) {
		rc = rotate(w);
		if (rc)
			return rc;
	}
	size_t want = ST__WAL_REC_HDR + len;
	if (w->seg_size + want > w->alloc_end && (rc = extend(w, w->seg_size + want)))
		return rc;  /* nothing of the record was written: a full disk is not fatal */
	return 0;
}

int st__wal_append(st__wal *w, const uint8_t *payload, size_t len, uint64_t *lsn)
{
	/* a no-op after st__wal_reserve for the same record */
	int rc = st__wal_reserve(w, len);
	if (rc)
		return rc;
	size_t want = ST__WAL_REC_HDR + len, done = 0;
	uint8_t h[ST__WAL_REC_HDR] = {0};
	st__put_u32(h, (uint32_t)len);
	st__put_u64(h + 8, w->next_lsn);
	st__put_u32(h + 16, ST__WAL_REC_BATCH);
	uint32_t c = st__crc32c(0, h + 8, ST__WAL_REC_HDR - 8);
	st__put_u32(h + 4, st__crc32c(c, payload, len));
	struct iovec iov[2] = {{h, sizeof(h)}, {(void *)payload, len}};
	while (done < want) {
		ssize_t n = writev(w->fd, iov, 2);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			/* take the partial record back so the next one follows an
			 * intact log; if even that fails, stop accepting writes */
			w->alloc_end = w->seg_size;
			if (ftruncate(w->fd, (off_t)w->seg_size) ||
			    lseek(w->fd, (off_t)w->seg_size, SEEK_SET) < 0) {
				pthread_mutex_lock(&w->sync_mu);
				w->failed = -EIO;
				pthread_mutex_unlock(&w->sync_mu);
			}
			return rc;
		}
		done += (size_t)n;
		for (int i = 0; i < 2; i++) {
			size_t t = (size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len;
			iov[i].iov_base = (uint8_t *)iov[i].iov_base + t;
			iov[i].iov_len -= t;
			n -= (ssize_t)t;
		}
	}
	w->seg_size += want;
	*lsn = w->next_lsn++;
	pthread_mutex_lock(&w->sync_mu);
	w->written_lsn = *lsn;
	w->records++;
	pthread_mutex_unlock(&w->sync_mu);
	return 0;
}

int st__wal_sync(st__wal *w, uint64_t lsn)
{
	int rc = 0;
	pthread_mutex_lock(&w->sync_mu);
	while (w->durable_lsn < lsn && !w->failed) {
		if (w->syncing) {
			pthread_cond_wait(&w->sync_cv, &w->sync_mu);
			continue;
		}
		/* become the leader: one fdatasync covers everyone written so far */
		w->syncing = true;
		uint64_t target = w->written_lsn;
		int fd = w->fd;
		pthread_mutex_unlock(&w->sync_mu);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		int r = fdatasync(fd) ? -errno : 0;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		pthread_mutex_lock(&w->sync_mu);
		w->syncing = false;
		w->syncs++;
		w->sync_ns += (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL +
		                         (t1.tv_nsec - t0.tv_nsec));
		if (r)
			w->failed = r; /* after a failed fsync the page cache lies */
		else if (target > w->durable_lsn)
			w->durable_lsn = target;
		pthread_cond_broadcast(&w->sync_cv);
	}
	if (w->durable_lsn < lsn)
		rc = w->failed ? w->failed : -EIO;
	pthread_mutex_unlock(&w->sync_mu);
	return rc;
}

uint64_t st__wal_last_lsn(const st__wal *w)
{
	return w->next_lsn - 1;
}

int st__wal_remove_before(st__wal *w, uint64_t lsn)
{
	size_t keep = 0;
	int rc = 0;
	/* when even the current segment holds only records below lsn, start a
	 * new one so the old can go: the newest segment always stays, its name
	 * carries the LSN sequence across restarts */
	if (w->nsegs && w->next_lsn <= lsn && w->seg_size > ST__WAL_SEG_HDR &&
	    (rc = rotate(w)))
		return rc;
	/* segment i holds [segs[i], segs[i+1]) */
	while (keep + 1 < w->nsegs && w->segs[keep + 1] <= lsn)
		keep++;
	for (size_t i = 0; i < keep; i++) {
		char path[PATH_MAX + 32];
		seg_path(w, w->segs[i], path, sizeof(path));
		if (unlink(path) && errno != ENOENT)
			rc = -errno;
	}
	memmove(w->segs, w->segs + keep, (w->nsegs - keep) * sizeof(*w->segs));
	w->nsegs -= keep;
	if (keep && !rc)
		rc = st__fsync_dir(w->dir);
	return rc;
}

void st__wal_counters(st__wal *w, uint64_t *records, uint64_t *syncs, uint64_t *sync_ns)
{
	pthread_mutex_lock(&w->sync_mu);
	*records = w->records;
	*syncs = w->syncs;
	*sync_ns = w->sync_ns;
	pthread_mutex_unlock(&w->sync_mu);
}

void st__wal_usage(st__wal *w, uint64_t *segments, uint64_t *bytes)
{
	*segments = w->nsegs;
	*bytes = 0;
	for (size_t i = 0; i < w->nsegs; i++) {
		char path[PATH_MAX + 32];
		struct stat st;
		seg_path(w, w->segs[i], path, sizeof(path));
		if (!stat(path, &st))
			*bytes += (uint64_t)st.st_size;
	}
}
