/* debuginfo.h - the debug-info store's rule (srv_debuginfo_ prefix): which
 * of a build ID's two files, <hex> and <hex>.debug (kept by storage's
 * st_file_* functions), an ELF file becomes (docs/protocol.md section 4). Shared by uploads
 * (server/api_debuginfo.c) and debuginfod fetches (server/debuginfod.c) so
 * both check and keep files the same way. Not here: reading them
 * (server/symbolize.h). */
#ifndef SMOLDER_SRV_DEBUGINFO_H
#define SMOLDER_SRV_DEBUGINFO_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "storage/storage.h"

/* Largest file kept: PUT's body limit, and what a fetch may bring. */
#define SRV_DEBUGINFO_MAX_BYTES (256ull << 20)

typedef struct srv_debuginfo_result {
	int status;              /* 201 kept, 200 nothing to add (the store has
	                          * what it would bring), 400 refused, 503 the
	                          * store cannot be reached now */
	const char *stored_as;   /* 201: "binary" (<hex>) or "debug" (<hex>.debug) */
	base_err err;            /* 400, 503: why, for the client (err.msg) */
} srv_debuginfo_result;

/* Checks the file open as fd, written at tmp (a temporary name inside
 * st_file_dir(db)), and keeps it in db under build ID hex (lowercase,
 * already validated as a file name) by the store's rule, without
 * replacing anything. It must be ELF and carry build ID hex in a GNU
 * build-id note, or, without one, have hex as its fallback ID, computed
 * from data[0..len) (data NULL: such a file is refused). tmp is unlinked
 * unless it was kept; fd stays the caller's. Returns 0 with *res filled,
 * or -errno (I/O). */
int srv_debuginfo_keep(st_db *db, const char *hex, int fd, const char *tmp, const void *data,
                       size_t len, srv_debuginfo_result *res);

/* What the store has for build ID hex. */
typedef struct srv_debuginfo_state {
	bool binary;   /* <hex> exists */
	bool debug;    /* <hex>.debug exists */
	bool dwarf;    /* either holds DWARF */
} srv_debuginfo_state;
/* Returns 0 with *out filled, or -errno (-EAGAIN: the store cannot be
 * reached). */
int srv_debuginfo_look(st_db *db, const char *hex, srv_debuginfo_state *out);

#endif
