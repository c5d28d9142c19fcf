/* gopclntab.h - Go's own symbol table, .gopclntab, read as the Go runtime
 * reads it for its tracebacks: the one reader of it that the server's
 * symbolizer (names, files, lines and inlined calls of a Go binary without
 * DWARF: server/symbolize_go.c) and the agent's unwind tables (each
 * function's stack-pointer deltas: agent/unwind_table.c) share. Go
 * binaries keep the table when stripped (`-ldflags='-s -w'`, or
 * strip(1)). Not a general Go object reader: only the header, the function
 * table, the pc-value programs and the inline trees.
 *
 * The reader sees the binary as its loadable segments' bytes; every
 * offset, count and string the table gives is checked against the table's
 * or the segment's end before it is used, whatever the table says. */
#ifndef SMOLDER_WIRE_GOPCLNTAB_H
#define SMOLDER_WIRE_GOPCLNTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libelf.h>

/* Bytes of a loaded segment: the file's contents at virtual address vaddr
 * (a segment's zero-filled tail, .bss, is not there). */
typedef struct wire_go_seg {
	uint64_t vaddr;
	const uint8_t *data;
	size_t size;
} wire_go_seg;

/* What the reader needs of a Go binary. The table itself is found at
 * pclntab_addr inside one of the segments. */
typedef struct wire_go_image {
	const wire_go_seg *segs;
	size_t nsegs;
	uint64_t pclntab_addr;   /* the .gopclntab section's address */
	uint64_t pclntab_size;   /* its size */
	uint64_t text_addr;      /* the .text section's address; 0 unknown */
} wire_go_image;

/* The pclntab versions read, by magic (little-endian tables only). */
enum {
	WIRE_GO_116 = 116,       /* 0xfffffffa: Go 1.16, 1.17 */
	WIRE_GO_118 = 118,       /* 0xfffffff0: Go 1.18, 1.19 */
	WIRE_GO_120 = 120,       /* 0xfffffff1: Go 1.20 and later */
};

typedef struct wire_gotab wire_gotab;

/* Reads the table's header and checks that every region it names lies
 * inside the table. The image's segments are referenced, not copied: they
 * must outlive *out. Returns 0; -EPROTONOSUPPORT when the magic is not one
 * of the versions above (Go 1.2-1.15's 0xfffffffb included) or the table is
 * big-endian; -EBADMSG when the header or its regions do not hold
 * together; -ENOMEM. */
int wire_go_open(const wire_go_image *img, wire_gotab **out);
void wire_go_free(wire_gotab *t);

/* wire_go_open on an ELF file: its loadable segments, .gopclntab (or
 * .data.rel.ro.gopclntab, in position-independent executables) and .text.
 * The file's memory (elf_rawfile) must outlive *out. -ENOENT when the file
 * has no such section; otherwise as wire_go_open. */
int wire_go_open_elf(Elf *e, wire_gotab **out);

/* The pclntab version (WIRE_GO_*). */
int wire_go_version(const wire_gotab *t);
/* Whether inlined calls can be expanded: the inline trees' base (Go 1.18
 * and later: moduledata.gofunc, found by scanning the segments for the
 * moduledata that points at the table) is known. */
int wire_go_has_inline(const wire_gotab *t);

/* The functions, in table order: entry address and name (inside the
 * table's memory). Returns 0, -ERANGE past the last, -EBADMSG when the
 * entry's record lies outside the table. */
size_t wire_go_nfuncs(const wire_gotab *t);
int wire_go_func(const wire_gotab *t, size_t i, uint64_t *entry, const char **name);

/* _func.flag bits (Go 1.17 and later; 0 in 1.16's tables) */
#define WIRE_GO_TOPFRAME 0x1     /* the outermost frame of a stack (goexit, mstart, rt0_go) */
#define WIRE_GO_SPWRITE 0x2      /* writes SP other than by constant adjustments */

/* n bytes of the image at virtual address va (a function's code), or
 * NULL when no segment holds them all. */
const uint8_t *wire_go_bytes(const wire_gotab *t, uint64_t va, size_t n);

/* What unwinding function i needs. */
typedef struct wire_go_fninfo {
	uint64_t entry, end;     /* its code: [entry, end), end the next one's entry */
	uint32_t pcsp;           /* its SP-delta program (wire_go_pcv_init), 0 none */
	uint8_t flag;            /* WIRE_GO_TOPFRAME | WIRE_GO_SPWRITE */
	const char *name;        /* NULL when the table does not hold it */
} wire_go_fninfo;

/* Fills *out for function i. Returns 0, -ERANGE past the last, -EBADMSG
 * when its record lies outside the table or it ends before it starts. */
int wire_go_fninfo_at(const wire_gotab *t, size_t i, wire_go_fninfo *out);

/* A pc-value program (pcsp, pcfile, pcln, pcdata), decoded step by step:
 * each step is a pc range and the program's value over it, from the
 * function's entry on. */
typedef struct wire_go_pcv {
	const uint8_t *p, *end;  /* the program's bytes left; p NULL: none */
	uint64_t pc;             /* where the next range starts */
	uint32_t val;            /* the value so far (int32 wrapping, as Go's) */
	unsigned quantum;
	bool first;
} wire_go_pcv;

/* Starts program off (an offset into the table's pctab) of a function
 * entered at entry. */
void wire_go_pcv_init(const wire_gotab *t, uint32_t off, uint64_t entry, wire_go_pcv *it);
/* The next range [*start, *end) and its value. Returns 1, 0 at the
 * program's end, -EBADMSG when it is cut short or malformed (or there is
 * no program). */
int wire_go_pcv_next(wire_go_pcv *it, uint64_t *start, uint64_t *end, int32_t *val);

/* One frame at an address: strings inside the table, NULL when it does
 * not hold them; line 0 unknown. */
typedef struct wire_go_frame {
	const char *function, *file;
	int64_t line;
} wire_go_frame;

/* The frames at virtual address va, innermost first, as the Go runtime's
 * traceback names them: an inlined function's name with the file and line
 * at va, then each function it was inlined into at its call site, the
 * function that holds the code last. Fills out[0..n) and returns n (at
 * most max); 0 when no function holds va. */
size_t wire_go_frames(const wire_gotab *t, uint64_t va, wire_go_frame *out, size_t max);

#endif
