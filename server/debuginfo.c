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
#include "storage/storage.h"
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

/* Whether the stored file name carries DWARF; false when it is missing
 * or unreadable (then a debug file is welcome). */
static bool stored_has_dwarf(st_db *db, const char *name)
{
	char path[4096];
	elf_info info;
	if (st_file_path(db, name, path, sizeof(path)))
		return false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool dwarf = elf_inspect(fd, &info, NULL) == 0 && info.dwarf;
	close(fd);
	return dwarf;
}

/* Which of a build ID's two files the store has. */
typedef struct stored {
	char bin[2 * WIRE_MAX_BUILD_ID + 1], dbg[2 * WIRE_MAX_BUILD_ID + 8];  /* their names */
	bool has_bin, has_dbg;
} stored;

/* Fills *s for build ID hex. Returns 0 or -errno (the store failed). */
static int stored_look(st_db *db, const char *hex, stored *s)
{
	snprintf(s->bin, sizeof(s->bin), "%s", hex);
	snprintf(s->dbg, sizeof(s->dbg), "%s.debug", hex);
	int b = st_file_exists(db, s->bin), d = b < 0 ? b : st_file_exists(db, s->dbg);
	if (b < 0 || d < 0)
		return b < 0 ? b : d;
	s->has_bin = b;
	s->has_dbg = d;
	return 0;
}

/* Where an upload goes (docs/protocol.md section 4): NULL when the store
 * has what it would add, else s->bin or s->dbg.
 *   - a separate debug file (DWARF, no code) goes to <hex>.debug;
 *   - any other file goes to <hex> when that does not exist yet;
 *   - a file with DWARF goes to <hex>.debug when <hex> lacks DWARF;
 * and .debug is never written when it exists or <hex> has DWARF already. */
static const char *put_target(st_db *db, const elf_info *in, const stored *s)
{
	bool debug_only = in->dwarf && !in->code;
	if (!debug_only && !s->has_bin)
		return s->bin;
	if (!in->dwarf || s->has_dbg || stored_has_dwarf(db, s->bin))
		return NULL;
	return s->dbg;
}

int srv_debuginfo_keep(st_db *db, const char *hex, int fd, const char *tmp, const void *data,
                       size_t len, srv_debuginfo_result *res)
{
	elf_info in;
	stored s;
	base_err err = {0};
	int rc = 0;
	bool unlink_tmp = true;
	*res = (srv_debuginfo_result){.status = 400};
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
	if ((rc = stored_look(db, hex, &s)))
		goto unavailable;
	const char *target = put_target(db, &in, &s);
	if (!target)
		goto out;   /* nothing to add: idempotent */
	/* kept without replacing anything: of two concurrent uploads to the
	 * same name, the second finds the first's file; it then asks the rule
	 * again, since a binary with DWARF that lost the race for <hex> to a
	 * stripped one belongs in <hex>.debug */
	for (int attempt = 0;; attempt++) {
		if (!(rc = st_file_keep(db, target, tmp, &err)))
			break;
		if (rc != -EEXIST)
			goto unavailable;
		rc = 0;
		if (attempt == 1)
			goto out;
		if ((rc = stored_look(db, hex, &s)))
			goto unavailable;
		if (!(target = put_target(db, &in, &s)))
			goto out;
	}
	unlink_tmp = false;
	res->status = 201;
	res->stored_as = target == s.dbg ? "debug" : "binary";
	goto out;
unavailable:
	if (rc == -EAGAIN) {
		/* the store cannot be reached: the client should come back */
		res->status = 503;
		base_fail(&res->err, 0, "%s", err.msg[0] ? err.msg :
		          "the store cannot be reached; try again");
		rc = 0;
	}
out:
	if (unlink_tmp)
		unlink(tmp);
	return rc;
}

int srv_debuginfo_look(st_db *db, const char *hex, srv_debuginfo_state *out)
{
	stored s;
	int rc;
	*out = (srv_debuginfo_state){0};
	if ((rc = stored_look(db, hex, &s)))
		return rc;
	out->binary = s.has_bin;
	out->debug = s.has_dbg;
	out->dwarf = s.has_dbg || (s.has_bin && stored_has_dwarf(db, s.bin));
	return 0;
}
