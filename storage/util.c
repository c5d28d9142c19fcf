/* util.c - small helpers for storage/: errors, CRC32C, buffers, a u64 hash
 * map and careful file operations. No policy lives here. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "storage/st_int.h"

int st__fail(st_err *err, int rc, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

int (*st__fault_hook)(int point);

static int64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t st_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t st__real_ns(void) { return clock_ns(CLOCK_REALTIME); }

/* ISA-L's crc32_iscsi is CRC32C without the final inversion and with the
 * seed passed raw; this wraps it into the usual convention (check value of
 * "123456789" is 0xe3069283) and allows chaining: crc(crc(0,a),b). Its
 * length is an int, so long buffers go in pieces. */
uint32_t st__crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;
	while (len > 0) {
		int n = len > (1u << 30) ? (1 << 30) : (int)len;
		c = crc32_iscsi((unsigned char *)p, n, c);
		p += n;
		len -= (size_t)n;
	}
	return ~c;
}

int st__buf_reserve(st__buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra) {
		if (cap > SIZE_MAX / 2)
			return -ENOMEM;
		cap *= 2;
	}
	uint8_t *d = realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

int st__buf_put(st__buf *b, const void *p, size_t n)
{
	int rc = st__buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

int st__buf_varint(st__buf *b, uint64_t v)
{
	int rc = st__buf_reserve(b, 10);
	if (rc)
		return rc;
	b->len += st__put_varint(b->data + b->len, v);
	return 0;
}

int st__buf_u32(st__buf *b, uint32_t v)
{
	uint8_t t[4];
	st__put_u32(t, v);
	return st__buf_put(b, t, 4);
}

int st__buf_u64(st__buf *b, uint64_t v)
{
	uint8_t t[8];
	st__put_u64(t, v);
	return st__buf_put(b, t, 8);
}

int st__buf_str(st__buf *b, const char *s, size_t n)
{
	int rc = st__buf_varint(b, n);
	return rc ? rc : st__buf_put(b, s, n);
}

void st__buf_free(st__buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int st__map_init(st__map *m, size_t hint)
{
	size_t cap = 16;
	while (cap < hint * 2)
		cap *= 2;
	m->slots = malloc(cap * sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		m->slots[i].val = ST__MAP_NONE;
	m->cap = cap;
	m->len = 0;
	return 0;
}

void st__map_free(st__map *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

void st__map_clear(st__map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		m->slots[i].val = ST__MAP_NONE;
	m->len = 0;
}

uint32_t st__map_get(const st__map *m, uint64_t key)
{
	if (!m->cap)
		return ST__MAP_NONE;
	size_t mask = m->cap - 1;
	for (size_t i = st__mix64(key) & mask;; i = (i + 1) & mask) {
		const st__map_slot *s = &m->slots[i];
		if (s->val == ST__MAP_NONE)
			return ST__MAP_NONE;
		if (s->key == key)
			return s->val;
	}
}

static int map_grow(st__map *m)
{
	st__map n;
	int rc = st__map_init(&n, m->cap);
	if (rc)
		return rc;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].val != ST__MAP_NONE)
			st__map_put(&n, m->slots[i].key, m->slots[i].val);
	st__map_free(m);
	*m = n;
	return 0;
}

int st__map_put(st__map *m, uint64_t key, uint32_t val)
{
	if (!m->cap || (m->len + 1) * 4 > m->cap * 3) {
		int rc = m->cap ? map_grow(m) : st__map_init(m, 16);
		if (rc)
			return rc;
	}
	size_t mask = m->cap - 1;
	for (size_t i = st__mix64(key) & mask;; i = (i + 1) & mask) {
		st__map_slot *s = &m->slots[i];
		if (s->val == ST__MAP_NONE) {
			s->key = key;
			s->val = val;
			m->len++;
			return 0;
		}
		if (s->key == key) {
			s->val = val;
			return 0;
		}
	}
}

int st__grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	void **a = arr;
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 16;
	while (c < need) {
		if (c > SIZE_MAX / 2 / elem)
			return -ENOMEM;
		c *= 2;
	}
	void *t = realloc(*a, c * elem);
	if (!t)
		return -ENOMEM;
	*a = t;
	*cap = c;
	return 0;
}

int st__ids_index(st__ids *s, uint64_t id, uint32_t *out)
{
	uint32_t x = st__map_get(&s->map, id);
	if (x == ST__MAP_NONE) {
		if (s->n >= ST__MAP_NONE)
			return -ENOSPC;
		int rc = st__grow(&s->ids, &s->cap, s->n + 1, sizeof(*s->ids));
		if (!rc)
			rc = st__map_put(&s->map, id, (uint32_t)s->n);
		if (rc)
			return rc;
		s->ids[s->n] = id;
		x = (uint32_t)s->n++;
	}
	*out = x;
	return 0;
}

void st__ids_free(st__ids *s)
{
	st__map_free(&s->map);
	free(s->ids);
	memset(s, 0, sizeof(*s));
}

int st__fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

int st__mkdir_p(const char *path)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

int st__rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) ? -errno : 0;
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char sub[4096];
		if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >= (int)sizeof(sub)) {
			rc = -ENAMETOOLONG;
			break;
		}
		rc = st__rm_rf(sub);
		if (rc)
			break;
	}
	closedir(d);
	if (!rc && rmdir(path))
		rc = -errno;
	return rc;
}

int st__write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int st__read_file(const char *path, uint8_t **out, size_t *len, size_t max)
{
	int rc = 0;
	uint8_t *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		rc = -EFBIG;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)r;
	}
	*out = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}
