/* objects.c - ELF files the agent's processes map, each known once per
 * (device, inode, mtime, size) however many processes map it, with its
 * build ID by the rule of wire/buildid.h. The file descriptor is kept
 * until the server has the file: a container's files or a deleted binary can only be
 * read through a descriptor opened while the process ran. */
#include <errno.h>
#include <fcntl.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include "agent/agent.h"
#include "wire/buildid.h"

/* Open descriptors kept for uploads at most; beyond, the least recently
 * used are closed and reopened when a process maps the file again. */
#define MAX_OPEN_FDS 256

struct ag_objs {
	ag_obj **v;
	size_t n, cap;
	uint64_t clock;
	size_t open_fds;
};

int ag_objs_new(ag_objs **out)
{
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOTSUP;
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

static void obj_close(ag_objs *o, ag_obj *ob)
{
	if (ob->fd >= 0) {
		close(ob->fd);
		ob->fd = -1;
		o->open_fds--;
	}
}

void ag_objs_free(ag_objs *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->n; i++) {
		obj_close(o, o->v[i]);
		free(o->v[i]->name);
		free(o->v[i]);
	}
	free(o->v);
	free(o);
}

int ag_elf_build_id(int fd, uint8_t id[WIRE_MAX_BUILD_ID])
{
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOTSUP;
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	int rc = wire_elf_build_id(e, id);
	elf_end(e);
	return rc;
}

/* A file without a build ID gets one from its content, the rule in
 * wire/wire.h, so that every host names the same file the same way. */
static int content_id(int fd, uint8_t *id)
{
	uint8_t buf[1 << 16];
	XXH3_state_t h;
	off_t off = 0;
	ssize_t n;
	XXH3_128bits_reset(&h);
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		XXH3_128bits_update(&h, buf, (size_t)n);
		off += n;
	}
	if (n < 0)
		return -errno;
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&h));
	memcpy(id, c.digest, WIRE_FALLBACK_BUILD_ID_LEN);
	return WIRE_FALLBACK_BUILD_ID_LEN;
}

ag_obj *ag_objs_get(ag_objs *o, int fd, const char *name)
{
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return NULL;
	}
	int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	o->clock++;
	for (size_t i = 0; i < o->n; i++) {
		ag_obj *ob = o->v[i];
		if (ob->dev == st.st_dev && ob->ino == st.st_ino && ob->mtime_ns == mt &&
		    ob->size == (uint64_t)st.st_size) {
			if (ob->fd < 0 && !ob->uploaded && !ob->upload_failed &&
			    o->open_fds < MAX_OPEN_FDS) {
				ob->fd = fd;
				o->open_fds++;
			} else {
				close(fd);
			}
			return ob;
		}
	}
	ag_obj *ob = calloc(1, sizeof(*ob));
	if (!ob)
		goto fail;
	int n = ag_elf_build_id(fd, ob->build_id);
	if (n < 0)
		goto fail;
	if (n == 0) {
		n = content_id(fd, ob->build_id);
		if (n <= 0)
			goto fail;
	}
	ob->build_id_len = (uint32_t)n;
	ob->name = strdup(name);
	if (!ob->name)
		goto fail;
	ob->dev = st.st_dev;
	ob->ino = st.st_ino;
	ob->mtime_ns = mt;
	ob->size = (uint64_t)st.st_size;
	if (o->n == o->cap) {
		size_t nc = o->cap ? 2 * o->cap : 64;
		ag_obj **nv = realloc(o->v, nc * sizeof(*nv));
		if (!nv)
			goto fail;
		o->v = nv;
		o->cap = nc;
	}
	ob->fd = -1;
	if (o->open_fds < MAX_OPEN_FDS) {
		ob->fd = fd;
		o->open_fds++;
	} else {
		close(fd);
	}
	o->v[o->n++] = ob;
	return ob;
fail:
	if (ob)
		free(ob->name);
	free(ob);
	close(fd);
	return NULL;
}

void ag_objs_expire(ag_objs *o, uint64_t before)
{
	for (size_t i = 0; i < o->n; i++)
		if (o->v[i]->last_used < before || o->v[i]->uploaded || o->v[i]->upload_failed)
			obj_close(o, o->v[i]);
}

size_t ag_objs_count(const ag_objs *o) { return o->n; }
ag_obj *ag_objs_at(ag_objs *o, size_t i) { return i < o->n ? o->v[i] : NULL; }
