/* debuginfod.h - fetching debug info the store lacks from debuginfod
 * servers (srv_dbgd_ prefix, elfutils' libdebuginfod), for
 * `smolder-server --debuginfod-url URL[,URL...]`; off unless given. What
 * is fetched is checked and kept exactly as an upload would be
 * (server/debuginfo.h), so the symbolizer then finds it in the store as
 * <hex>.debug or <hex>. Not here: deciding when to
 * fetch (the symbolizer, when a build ID it needs has no file). */
#ifndef SMOLDER_SRV_DEBUGINFOD_H
#define SMOLDER_SRV_DEBUGINFOD_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

typedef struct srv_dbgd srv_dbgd;

/* urls: one or more debuginfod base URLs, separated by commas (or
 * spaces); debuginfo_dir: a local directory (DATA_DIR/debuginfo) whose
 * .debuginfod-cache/ holds libdebuginfod's own cache (not $HOME).
 * Sets DEBUGINFOD_URLS, DEBUGINFOD_CACHE_PATH and DEBUGINFOD_MAXSIZE in
 * the environment, which libdebuginfod reads: call it before any thread
 * starts. Returns 0, -EINVAL for an empty list or a URL that is not
 * http(s)://, -ENOMEM. Free with srv_dbgd_free() (accepts NULL). */
int srv_dbgd_new(const char *urls, const char *debuginfo_dir, srv_dbgd **out);
void srv_dbgd_free(srv_dbgd *d);

/* Fetches build ID bid[0..len) (raw bytes, as in wire frames): the debug
 * file (debuginfod_find_debuginfo), or when the servers have none the
 * executable (debuginfod_find_executable), and keeps it in db.
 * At most one attempt per build ID per hour: the outcome is remembered in
 * memory and returned again, without asking the servers, until the hour
 * is over; -EAGAIN while another thread's attempt runs. Blocks up to the
 * client's timeouts (DEBUGINFOD_TIMEOUT, 90 s by default): a pool
 * thread's job. Thread-safe. Returns 0 when a file was kept (or the store
 * had what it would add), -ENOENT when the servers do not have it,
 * -EINVAL when what they sent is no ELF file of that build ID, -EFBIG
 * over 256 MiB, -EAGAIN when the store cannot be reached, other -errno
 * (-ECONNREFUSED, ...). */
int srv_dbgd_fetch(srv_dbgd *d, st_db *db, const uint8_t *bid, size_t len);

#endif
