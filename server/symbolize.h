/* symbolize.h - central symbolization (srv_sym_ prefix): (build ID, file
 * offset) → function, file, line, with inlined frames, from the ELF files
 * kept in DATA_DIR/debuginfo/ (server/api_debuginfo.c), and a cache of the
 * answers in storage's SQLite symbols table, so an offset is symbolized
 * once for the whole fleet and never again, across restarts.
 *
 * Files by build ID (lowercase hex), in the debug-info directory:
 *   <hex>        the file as first uploaded (usually the binary itself)
 *   <hex>.debug  a separate debug file (DWARF, .gnu_debuglink target or
 *                /usr/lib/debug/.build-id/xx/yyyy.debug); preferred for
 *                DWARF and symbols when present
 * Either alone is enough: a debug file keeps the program headers that turn
 * file offsets into addresses.
 *
 * Thread-safe: queries call srv_sym_resolve() from pool threads. */
#ifndef SMOLDER_SRV_SYMBOLIZE_H
#define SMOLDER_SRV_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "query/query.h"
#include "server/debuginfod.h"
#include "storage/storage.h"

typedef struct srv_sym srv_sym;

typedef struct srv_sym_opts {
	const char *debuginfo_dir;   /* DATA_DIR/debuginfo */
	st_db *db;                   /* the cache lives in its symbols table;
	                              * NULL: no persistent cache (tests, bench) */
	size_t max_open;             /* files kept open and parsed; default 32 */
	srv_dbgd *dbgd;              /* debuginfod servers asked, from the
	                              * background pass only, for build IDs
	                              * without files; NULL: none */
} srv_sym_opts;

int srv_sym_new(const srv_sym_opts *opt, srv_sym **out);
void srv_sym_free(srv_sym *s);

/* One frame of an inline chain. */
typedef struct srv_sym_frame {
	char *function;   /* demangled (C++, Rust); never NULL */
	char *file;       /* NULL when unknown */
	int64_t line;     /* 0 when unknown */
} srv_sym_frame;

/* Symbolizes one offset from the files alone (no cache): fills out[0..*n),
 * innermost first (an address in inlined code gives the inlined function,
 * then each function it was inlined into, the outermost last, as pprof's
 * Line lists). *n = 0 when the file has no symbol there. Returns 0,
 * -ENOENT when no file for the build ID is present, -ENOEXEC when the
 * file is no usable ELF, -ENOMEM. The offset is where the agent put it:
 * the instruction for a leaf, the return address minus one for callers
 * (docs/protocol.md), so it falls inside the call. Free the strings with
 * srv_sym_frames_free(). */
int srv_sym_lookup(srv_sym *s, const uint8_t *build_id, size_t build_id_len, uint64_t offset,
                   srv_sym_frame *out, size_t max, size_t *n);
void srv_sym_frames_free(srv_sym_frame *f, size_t n);

/* Where the function holding an offset starts, when nothing names it:
 * the file offset of the start of the .eh_frame FDE that covers it (an
 * FDE is one function; the linker's .eh_frame_hdr lists their starts).
 * Returns 0 with *start, -ENOENT when no FDE covers the offset or no file
 * for the build ID is present. */
int srv_sym_func_start(srv_sym *s, const uint8_t *build_id, size_t build_id_len,
                       uint64_t offset, uint64_t *start);

/* The q_resolver callback (arg is the srv_sym): the cache first (memory,
 * then SQLite), then the files; what the files answer is stored in SQLite
 * for good. A location whose file has not arrived gives 0 (the engine
 * prints "[unknown] libfoo.so+0x1234") and is tried again next time. One
 * that nothing names but an FDE covers gives q_unknown_name of its
 * function's start ("[unknown] gzip+0x4320"), the same for every address
 * of the function, so they merge into one frame; in the symbols table it
 * is the "looked, nothing there" marker with line = start + 1. */
int srv_sym_resolve(void *arg, const st_frame_info *loc, q_sym *out, size_t max);

/* Background work (the server's maintenance timer): symbolizes up to
 * `limit` stored locations that have no cached symbols yet and whose debug
 * info is present; with debuginfod servers configured, first fetches the
 * files of a few build IDs that have none (never from a query: a fetch can
 * take seconds). *done (may be NULL) gets how many were symbolized. */
int srv_sym_pass(srv_sym *s, size_t limit, size_t *done);

/* A symbol name as the symbolizer shows it: C++ and Rust (legacy and v0)
 * demangled, C++ with parameters as c++filt prints them, Rust without the
 * hash and crate disambiguators (what would split one function per
 * build); anything else unchanged. malloc'd; NULL only without memory. */
char *srv_sym_demangle(const char *name);

/* A file for build_id arrived (server/api_debuginfo.c calls this after
 * storing one): reopen it next time, and forget what was cached from the
 * files before, which a separate debug file may improve on. */
int srv_sym_forget(srv_sym *s, const uint8_t *build_id, size_t build_id_len);

/* The q_resolver generation callback (arg is the srv_sym): moves on after
 * every srv_sym_forget, so the query engine's cache of names forgets the
 * answers debug info that arrived since may improve on. */
uint64_t srv_sym_generation(void *arg);

typedef struct srv_sym_stats {
	uint64_t lookups;        /* srv_sym_resolve calls */
	uint64_t memory_hits, cache_hits, symbolized, unknown;
	uint64_t files_opened;
	/* Go binaries without DWARF, named from .gopclntab: tables read, and
	 * tables left unread (their frames stay addresses) for a version this
	 * server does not know, or for being malformed; counted per file
	 * opened */
	uint64_t go_tables, go_unsupported, go_malformed;
} srv_sym_stats;
void srv_sym_get_stats(srv_sym *s, srv_sym_stats *out);

#endif
