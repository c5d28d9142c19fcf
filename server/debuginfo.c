/* debuginfo.c - the debug-info store's rule: per build ID the file as
 * first uploaded (<hex>) and, when that lacks DWARF, a file with DWARF
 * (<hex>.debug), each checked with libelf (ELF, the build ID matches) and
 * kept durably. Uploads (api_debuginfo.c) and debuginfod fetches
 * (debuginfod.c) both go through srv_debuginfo_keep(). Not here: HTTP,
 * and reading the debug info (the symbolizer). */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/text.h"
#include "server/debuginfo.h"
#include "wire/buildid.h"
#include "wire/wire.h"

static pthread_once_t elf_once = PTHREAD_ONCE_INIT;
static void elf_init(void)
{
	elf_version(EV_CURRENT);
}

/* What the debug-info store needs to know of an ELF file. */
typedef struct elf_info {
	char hex[2 * WIRE_MAX_BUILD_ID + 1];  /* build ID, "" when none */
	bool dwarf;   /* a .debug_info (or .zdebug_info) section with content */
	bool code;    /* a .text section with content (SHT_NOBITS in a file
	               * from objcopy --only-keep-debug) */
} elf_info;

/* Reads the ELF file fd into *info: its build ID (wire/buildid.h's rule,
 * as the agent names the file) and whether it carries DWARF and code.
 * Returns 0, or -EINVAL with why in err when fd is not a readable ELF
 * file. */
static int elf_inspect(int fd, elf_info *info, base_err *err)
{
	pthread_once(&elf_once, elf_init);
	memset(info, 0, sizeof(*info));
	/* mmap, not read: a debug file may be hundreds of megabytes */
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	int rc = 0;
	if (!e || elf_kind(e) != ELF_K_ELF || gelf_getclass(e) == ELFCLASSNONE) {
		rc = base_fail(err, -EINVAL, "not a valid ELF file: %s", elf_errmsg(-1));
		goto out;
	}
	size_t shstrndx;
	bool names = elf_getshdrstrndx(e, &shstrndx) == 0;
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh))
			continue;
		const char *name = names ? elf_strptr(e, shstrndx, sh.sh_name) : NULL;
		bool content = sh.sh_type != SHT_NOBITS && sh.sh_size > 0;
		if (name && content && (!strcmp(name, ".debug_info") || !strcmp(name, ".zdebug_info")))
			info->dwarf = true;
		if (name && content && !strcmp(name, ".text"))
			info->code = true;
	}
	uint8_t id[WIRE_MAX_BUILD_ID];
	int n = wire_elf_build_id(e, id);
	if (n > 0)
		base_hex(id, (size_t)n, info->hex);
out:
	elf_end(e);
	return rc;
}

/* Whether the stored file path carries DWARF; false when it is missing
 * or unreadable (then a debug file is welcome). */
static bool stored_has_dwarf(const char *path)
{
	elf_info info;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool dwarf = elf_inspect(fd, &info, NULL) == 0 && info.dwarf;
	close(fd);
	return dwarf;
}

/* Which of a build ID's two files exist. */
typedef struct stored {
	char bin[4096], dbg[4104];   /* their paths */
	bool has_bin, has_dbg;
} stored;

/* Fills *s for the build ID whose binary path is path. Returns 0 or -errno
 * (a stat failure other than ENOENT). */
static int stored_look(const char *path, stored *s)
{
	struct stat st;
	snprintf(s->bin, sizeof(s->bin), "%s", path);
	snprintf(s->dbg, sizeof(s->dbg), "%s.debug", path);
	s->has_bin = stat(s->bin, &st) == 0;
	if (!s->has_bin && errno != ENOENT)
		return -errno;
	s->has_dbg = stat(s->dbg, &st) == 0;
	if (!s->has_dbg && errno != ENOENT)
		return -errno;
	return 0;
}

/* Where an upload goes (docs/protocol.md section 4): NULL when the store
 * has what it would add, else s->bin or s->dbg.
 *   - a separate debug file (DWARF, no code) goes to <hex>.debug;
 *   - any other file goes to <hex> when that does not exist yet;
 *   - a file with DWARF goes to <hex>.debug when <hex> lacks DWARF;
 * and .debug is never written when it exists or <hex> has DWARF already. */
static const char *put_target(const elf_info *in, const stored *s)
{
	bool debug_only = in->dwarf && !in->code;
	if (!debug_only && !s->has_bin)
		return s->bin;
	if (!in->dwarf || s->has_dbg || stored_has_dwarf(s->bin))
		return NULL;
	return s->dbg;
}

int srv_debuginfo_keep(const char *dir, const char *hex, int fd, const char *tmp,
                       const void *data, size_t len, srv_debuginfo_result *res)
{
	char path[4096];
	elf_info in;
	stored s;
	int rc = 0;
	bool unlink_tmp = true;
	*res = (srv_debuginfo_result){.status = 400};
	snprintf(path, sizeof(path), "%s/%s", dir, hex);
	if (elf_inspect(fd, &in, &res->err))
		goto out;
	if (in.hex[0] && strcmp(in.hex, hex)) {
		base_fail(&res->err, 0, "the file's GNU build ID is %s, not %s", in.hex, hex);
		goto out;
	}
	if (!in.hex[0]) {
		uint8_t fb[WIRE_FALLBACK_BUILD_ID_LEN];
		if (!data) {
			base_fail(&res->err, 0, "the file has no GNU build ID note");
			goto out;
		}
		wire_fallback_build_id(data, len, fb);
		base_hex(fb, sizeof(fb), in.hex);
		if (strcmp(in.hex, hex)) {
			base_fail(&res->err, 0, "the file has no GNU build ID note and its fallback ID "
			          "(XXH3-128 of its content) is %s, not %s", in.hex, hex);
			goto out;
		}
	}
	res->status = 200;
	if ((rc = stored_look(path, &s)))
		goto out;
	const char *target = put_target(&in, &s);
	if (!target)
		goto out;   /* nothing to add: idempotent */
	if (fsync(fd)) {
		rc = -errno;
		goto out;
	}
	/* RENAME_NOREPLACE: of two concurrent uploads to the same name, the
	 * second finds the first's file; it then asks the rule again, since a
	 * binary with DWARF that lost the race for <hex> to a stripped one
	 * belongs in <hex>.debug. */
	for (int attempt = 0;; attempt++) {
		if (!renameat2(AT_FDCWD, tmp, AT_FDCWD, target, RENAME_NOREPLACE))
			break;
		if (errno != EEXIST) {
			rc = -errno;
			goto out;
		}
		if (attempt == 1 || (rc = stored_look(path, &s)) || !(target = put_target(&in, &s)))
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
	res->status = 201;
	res->stored_as = target == s.dbg ? "debug" : "binary";
out:
	if (unlink_tmp)
		unlink(tmp);
	return rc;
}

int srv_debuginfo_look(const char *dir, const char *hex, srv_debuginfo_state *out)
{
	char path[4096];
	stored s;
	int rc;
	snprintf(path, sizeof(path), "%s/%s", dir, hex);
	*out = (srv_debuginfo_state){0};
	if ((rc = stored_look(path, &s)))
		return rc;
	out->binary = s.has_bin;
	out->debug = s.has_dbg;
	out->dwarf = s.has_dbg || (s.has_bin && stored_has_dwarf(s.bin));
	return 0;
}
