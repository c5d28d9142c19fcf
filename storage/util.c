/* util.c - small helpers for storage/: CRC32C, encodings into a buffer, the
 * dense ID set and careful file operations. No policy lives here. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "storage/st_int.h"

int (*st__fault_hook)(int point);

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

int st__enc_varint(base_buf *b, uint64_t v)
{
	int rc = base_buf_reserve(b, 10);
	if (rc)
		return rc;
	b->len += st__put_varint((uint8_t *)b->data + b->len, v);
	return 0;
}

int st__enc_u32(base_buf *b, uint32_t v)
{
	uint8_t t[4];
	st__put_u32(t, v);
	return base_buf_put(b, t, 4);
}

int st__enc_u64(base_buf *b, uint64_t v)
{
	uint8_t t[8];
	st__put_u64(t, v);
	return base_buf_put(b, t, 8);
}

int st__enc_str(base_buf *b, const char *s, size_t n)
{
	int rc = st__enc_varint(b, n);
	return rc ? rc : base_buf_put(b, s, n);
}

int st__ids_index(st__ids *s, uint64_t id, uint32_t *out)
{
	uint32_t x = base_map_get(&s->map, id);
	if (x == BASE_MAP_NONE) {
		if (s->n >= BASE_MAP_NONE)
			return -ENOSPC;
		int rc = base_grow(&s->ids, &s->cap, s->n + 1, sizeof(*s->ids));
		if (!rc)
			rc = base_map_put(&s->map, id, (uint32_t)s->n);
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
	base_map_free(&s->map);
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
