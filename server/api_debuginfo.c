/* api_debuginfo.c - HEAD and PUT /api/v1/debuginfo/{build_id}: the agent
 * asks whether the server has an ELF file's debug info and uploads the
 * file when it does not. Files live in data_dir/debuginfo/<build_id>; a
 * file is accepted only when it is ELF and carries that build ID (or, for
 * a file without a GNU build-id note, has that fallback ID: wire/wire.h).
 * Not here: reading the debug info (the symbolizer's job). */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/api.h"
#include "wire/wire.h"

/* Body limit of PUT. The route system reads bodies into memory, so this is
 * also how much one upload may hold in RAM (docs/api.md). */
#define DEBUGINFO_MAX_BODY (256ull << 20)

/* {build_id}: 2..128 lowercase hex digits, an even number (whole bytes).
 * Anything else is refused before it becomes a file name. */
static bool build_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n < 2 || n > 2 * WIRE_MAX_BUILD_ID || n % 2)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

/* The path of build ID id, or false with a 400 answered. */
static bool id_path(const srv_api *api, const srv_req *req, srv_resp *resp, char *path,
                    size_t size, const char **idp)
{
	const char *id = srv_req_param(req, "build_id");
	if (!id || !build_id_ok(id)) {
		srv_resp_error(resp, 400, "build ID must be 2..%d lowercase hex digits, an "
		               "even number", 2 * WIRE_MAX_BUILD_ID);
		return false;
	}
	snprintf(path, size, "%s/debuginfo/%s", api->data_dir, id);
	*idp = id;
	return true;
}

static int h_head(void *arg, const srv_req *req, srv_resp *resp)
{
	char path[4096];
	const char *id;
	struct stat st;
	if (!id_path(arg, req, resp, path, sizeof(path), &id))
		return 0;
	if (stat(path, &st) == 0) {
		srv_resp_set(resp, 200, NULL);
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	srv_resp_error(resp, 404, "no debug info for build ID %s", id);
	return 0;
}

static pthread_once_t elf_once = PTHREAD_ONCE_INIT;
static void elf_init(void)
{
	elf_version(EV_CURRENT);
}

/* Looks for an NT_GNU_BUILD_ID note named "GNU" in data. */
static bool note_build_id(Elf_Data *data, char *hex)
{
	size_t off = 0, next, name_off, desc_off;
	GElf_Nhdr nh;
	while (off < data->d_size &&
	       (next = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
		if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
		    !memcmp((const char *)data->d_buf + name_off, "GNU", 4) &&
		    nh.n_descsz >= 1 && nh.n_descsz <= WIRE_MAX_BUILD_ID) {
			wire_hex((const uint8_t *)data->d_buf + desc_off, nh.n_descsz, hex);
			return true;
		}
		off = next;
	}
	return false;
}

/* The GNU build ID of the ELF file fd as hex into hex (room for 129), ""
 * when it has none. Sections first (debug files from objcopy
 * --only-keep-debug keep .note.gnu.build-id), then PT_NOTE segments (a
 * stripped file may have no section headers). Returns 0, or -EINVAL with
 * why in msg when fd is not a readable ELF file. */
static int elf_build_id(int fd, char *hex, char *msg, size_t msglen)
{
	pthread_once(&elf_once, elf_init);
	hex[0] = 0;
	/* mmap, not read: a debug file may be hundreds of megabytes */
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	int rc = 0;
	if (!e || elf_kind(e) != ELF_K_ELF || gelf_getclass(e) == ELFCLASSNONE) {
		snprintf(msg, msglen, "not a valid ELF file: %s", elf_errmsg(-1));
		rc = -EINVAL;
		goto out;
	}
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		if (d && d->d_buf && note_build_id(d, hex))
			goto out;
	}
	size_t nph;
	if (elf_getphdrnum(e, &nph) == 0) {
		for (size_t i = 0; i < nph; i++) {
			GElf_Phdr ph;
			if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE)
				continue;
			Elf_Data *d = elf_getdata_rawchunk(e, (int64_t)ph.p_offset, ph.p_filesz,
			                                   ELF_T_NHDR);
			if (d && d->d_buf && note_build_id(d, hex))
				goto out;
		}
	}
out:
	elf_end(e);
	return rc;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static void put_ok(srv_resp *resp, int status, const char *id, size_t len)
{
	srv_json *j = srv_resp_json(resp, status);
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "build_id", id);
	srv_json_kv_uint(j, "bytes", len);
	srv_json_kv_bool(j, "created", status == 201);
	srv_json_obj_end(j);
}

static int h_put(void *arg, const srv_req *req, srv_resp *resp)
{
	srv_api *api = arg;
	static atomic_uint seq;
	char path[4096], tmp[4200], dir[4096], hex[2 * WIRE_MAX_BUILD_ID + 1], msg[300];
	const char *id;
	int fd = -1, rc = 0;
	bool unlink_tmp = false;
	if (!id_path(api, req, resp, path, sizeof(path), &id))
		return 0;
	size_t len;
	const uint8_t *body = srv_req_body(req, &len);
	if (len < 4 || memcmp(body, "\x7f" "ELF", 4)) {
		srv_resp_error(resp, 400, "not an ELF file (it does not start with \\x7fELF)");
		return 0;
	}
	/* Written to a temporary file first: libelf reads it from there, and
	 * once it is known good and durable a rename makes it appear whole. */
	snprintf(dir, sizeof(dir), "%s/debuginfo", api->data_dir);
	snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.%u.tmp", dir, id, (long)getpid(),
	         atomic_fetch_add(&seq, 1));
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	unlink_tmp = true;
	if ((rc = write_all(fd, body, len)))
		goto out;
	if (elf_build_id(fd, hex, msg, sizeof(msg))) {
		srv_resp_error(resp, 400, "%s", msg);
		goto out;
	}
	if (hex[0] && strcmp(hex, id)) {
		srv_resp_error(resp, 400, "the file's GNU build ID is %s, not %s", hex, id);
		goto out;
	}
	if (!hex[0]) {
		uint8_t fb[WIRE_FALLBACK_BUILD_ID_LEN];
		wire_fallback_build_id(body, len, fb);
		wire_hex(fb, sizeof(fb), hex);
		if (strcmp(hex, id)) {
			srv_resp_error(resp, 400, "the file has no GNU build ID note and its "
			               "fallback ID (XXH3-128 of its content) is %s, not %s", hex, id);
			goto out;
		}
	}
	struct stat st;
	if (stat(path, &st) == 0) {
		put_ok(resp, 200, id, len);   /* already there: idempotent */
		goto out;
	}
	if (fsync(fd)) {
		rc = -errno;
		goto out;
	}
	/* RENAME_NOREPLACE: of two concurrent uploads, the second finds the
	 * first's file and answers 200 like any repeat */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE)) {
		if (errno != EEXIST) {
			rc = -errno;
			goto out;
		}
		put_ok(resp, 200, id, len);
		goto out;
	}
	unlink_tmp = false;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd)) {
		rc = -errno;
		if (dfd >= 0)
			close(dfd);
		goto out;
	}
	close(dfd);
	put_ok(resp, 201, id, len);
out:
	if (fd >= 0)
		close(fd);
	if (unlink_tmp)
		unlink(tmp);
	return rc;
}

int srv_api_debuginfo_routes(srv_http *h, srv_api *api)
{
	const srv_route routes[] = {
		{.method = "HEAD", .path = "/api/v1/debuginfo/{build_id}", .fn = h_head,
		 .arg = api},
		{.method = "PUT", .path = "/api/v1/debuginfo/{build_id}", .fn = h_put,
		 .arg = api, .max_body_bytes = DEBUGINFO_MAX_BODY},
	};
	int rc = 0;
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes) && !rc; i++)
		rc = srv_http_route(h, &routes[i]);
	return rc;
}
