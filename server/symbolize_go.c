/* symbolize_go.c - names from Go's own symbol table, .gopclntab, for Go
 * binaries without .symtab and DWARF (built with -ldflags='-s -w', or
 * stripped): the frames wire/gopclntab.c reads at an address (function,
 * file and line, inlined calls as their own frames), as the symbolizer's
 * frames (symbolize_int.h). The table itself is read by wire/gopclntab.c,
 * which the agent's unwind tables share. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/symbolize_int.h"

int srv_sym__go_lookup(const wire_gotab *t, uint64_t va, srv_sym_frame *out, size_t max,
                       size_t *n)
{
	wire_go_frame fr[ST_MAX_INLINE];
	size_t k = wire_go_frames(t, va, fr, max < ST_MAX_INLINE ? max : ST_MAX_INLINE);
	int rc = 0;
	*n = 0;
	for (size_t i = 0; i < k && !rc; i++) {
		const char *name = fr[i].function;
		rc = srv_sym__push(out, max, n, name ? strdup(name) : NULL, fr[i].file, fr[i].line);
	}
	if (rc) {
		srv_sym_frames_free(out, *n);
		*n = 0;
	}
	return rc;
}
