/* symbolize_int.h - the symbolizer's own parts, for its files and tests
 * only (the server calls server/symbolize.h): the reader of Go's symbol
 * table, .gopclntab (server/symbolize_go.c).
 *
 * Go binaries keep .gopclntab when stripped (`-ldflags='-s -w'`, or
 * strip(1)): the runtime needs it for tracebacks. It names every function,
 * maps each PC to file and line, and records inlined calls. The reader sees
 * the binary as its loadable segments' bytes; it never reads outside them,
 * whatever the table says. */
#ifndef SMOLDER_SRV_SYMBOLIZE_INT_H
#define SMOLDER_SRV_SYMBOLIZE_INT_H

#include <libelf.h>
#include <stddef.h>
#include <stdint.h>

#include "server/symbolize.h"

/* Appends a frame to out[0..*n): takes fn (malloc'd; NULL names it "??"),
 * copies file (may be NULL). A full out drops the frame. Returns 0 or
 * -ENOMEM (fn is freed either way when not kept). */
int srv_sym__push(srv_sym_frame *out, size_t max, size_t *n, char *fn, const char *file,
                  int64_t line);

/* Bytes of a loaded segment: the file's contents at virtual address vaddr
 * (a segment's zero-filled tail, .bss, is not there). */
typedef struct srv_go_seg {
	uint64_t vaddr;
	const uint8_t *data;
	size_t size;
} srv_go_seg;

/* What the reader needs of a Go binary. The table itself is found at
 * pclntab_addr inside one of the segments. */
typedef struct srv_go_image {
	const srv_go_seg *segs;
	size_t nsegs;
	uint64_t pclntab_addr;   /* the .gopclntab section's address */
	uint64_t pclntab_size;   /* its size */
	uint64_t text_addr;      /* the .text section's address; 0 unknown */
} srv_go_image;

/* The pclntab versions read, by magic (little-endian tables only). */
enum {
	SRV_GO_116 = 116,        /* 0xfffffffa: Go 1.16, 1.17 */
	SRV_GO_118 = 118,        /* 0xfffffff0: Go 1.18, 1.19 */
	SRV_GO_120 = 120,        /* 0xfffffff1: Go 1.20 and later */
};

typedef struct srv_gotab srv_gotab;

/* Reads the table's header and checks that every region it names lies
 * inside the table. The image's segments are referenced, not copied: they
 * must outlive *out. Returns 0; -EPROTONOSUPPORT when the magic is not one
 * of the versions above (Go 1.2-1.15's 0xfffffffb included) or the table is
 * big-endian; -EBADMSG when the header or its regions do not hold
 * together; -ENOMEM. */
int srv_sym__go_open(const srv_go_image *img, srv_gotab **out);
void srv_sym__go_free(srv_gotab *t);

/* The pclntab version (SRV_GO_*). */
int srv_sym__go_version(const srv_gotab *t);
/* Whether inlined calls can be expanded: the inline trees' base (Go 1.18
 * and later: moduledata.gofunc, found by scanning the segments for the
 * moduledata that points at the table) is known. */
int srv_sym__go_has_inline(const srv_gotab *t);

/* The functions, in table order: entry address and name (inside the
 * table's memory). Returns 0, -ERANGE past the last, -EBADMSG when the
 * entry's record lies outside the table. */
size_t srv_sym__go_nfuncs(const srv_gotab *t);
int srv_sym__go_func(const srv_gotab *t, size_t i, uint64_t *entry, const char **name);

/* The frames at virtual address va, innermost first, as the Go runtime's
 * traceback names them: an inlined function's name with the file and line
 * at va, then each function it was inlined into at its call site, the
 * function that holds the code last. Fills out[0..*n) (strings malloc'd,
 * srv_sym_frames_free); *n = 0 when no function holds va. Returns 0 or
 * -ENOMEM. */
int srv_sym__go_lookup(const srv_gotab *t, uint64_t va, srv_sym_frame *out, size_t max,
                       size_t *n);

/* srv_sym__go_open on an ELF file: its loadable segments, .gopclntab (or
 * .data.rel.ro.gopclntab, in position-independent executables) and .text.
 * The file's memory (elf_rawfile) must outlive *out. -ENOENT when the file
 * has no such section; otherwise as srv_sym__go_open. */
int srv_sym__go_open_elf(Elf *e, srv_gotab **out);

#endif
