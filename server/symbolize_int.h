/* symbolize_int.h - the symbolizer's own parts, for its files and tests
 * only (the server calls server/symbolize.h): frames from Go's symbol
 * table, .gopclntab (server/symbolize_go.c, on the reader in
 * wire/gopclntab.h that the agent shares).
 *
 * Go binaries keep .gopclntab when stripped (`-ldflags='-s -w'`, or
 * strip(1)): the runtime needs it for tracebacks. It names every function,
 * maps each PC to file and line, and records inlined calls. */
#ifndef SMOLDER_SRV_SYMBOLIZE_INT_H
#define SMOLDER_SRV_SYMBOLIZE_INT_H

#include <libelf.h>
#include <stddef.h>
#include <stdint.h>

#include "server/symbolize.h"
#include "wire/gopclntab.h"

/* Appends a frame to out[0..*n): takes fn (malloc'd; NULL names it "??"),
 * copies file (may be NULL). A full out drops the frame. Returns 0 or
 * -ENOMEM (fn is freed either way when not kept). */
int srv_sym__push(srv_sym_frame *out, size_t max, size_t *n, char *fn, const char *file,
                  int64_t line);

/* The frames at virtual address va, innermost first, as the Go runtime's
 * traceback names them: an inlined function's name with the file and line
 * at va, then each function it was inlined into at its call site, the
 * function that holds the code last. Fills out[0..*n) (strings malloc'd,
 * srv_sym_frames_free); *n = 0 when no function holds va. Returns 0 or
 * -ENOMEM. */
int srv_sym__go_lookup(const wire_gotab *t, uint64_t va, srv_sym_frame *out, size_t max,
                       size_t *n);

#endif
