/* fuzz_gopclntab.c - the symbolizer's .gopclntab reader
 * (wire/gopclntab.c, through server/symbolize_go.c) on hostile tables: Go binaries are uploaded by
 * agents and users, and a table's header, offsets, pc-value programs,
 * names and inline trees are whatever the file says. The reader must
 * never crash, read outside the image or answer inconsistently.
 *
 * Input: a little-endian u32 n, then n bytes of table mapped at 0x10000000,
 * then the rest as a data segment at 0x20000000 (where a moduledata and
 * inline trees may be). The committed seeds are real Go 1.19 functions
 * written in the Go 1.16, 1.18 and 1.20 layouts by
 * tests/unit/test_gopclntab.c (SMOLDER_GO_SEEDS=DIR). Every function the
 * table lists is looked up at its entry and a few bytes in, and a few
 * fixed addresses too, with room for a whole chain and for one frame; its
 * SP-delta program is walked to its end and the agent's unwind rows for
 * the function (agent/unwind_table.c) are built from it and checked. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/types.h>

#include "agent/agent.h"
#include "bpf/profile.h"
#include "server/symbolize_int.h"

#define TAB 0x10000000u
#define DATA 0x20000000u
#define MAX_FUNCS 512
#define MAX_ROWS 4096

static void lookup(const wire_gotab *t, uint64_t va)
{
	srv_sym_frame f[ST_MAX_INLINE];
	size_t n = 12345;
	int rc = srv_sym__go_lookup(t, va, f, ST_MAX_INLINE, &n);
	if (rc != 0 && rc != -ENOMEM)
		abort();
	if (rc)
		return;
	if (n > ST_MAX_INLINE)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!f[i].function || f[i].line < 0)
			abort();
	/* cut to one frame: the same innermost frame */
	srv_sym_frame one[1];
	size_t n1 = 9;
	if (srv_sym__go_lookup(t, va, one, 1, &n1) == 0) {
		if (n1 != (n > 0) || (n1 && strcmp(one[0].function, f[0].function)))
			abort();
		srv_sym_frames_free(one, n1);
	}
	srv_sym_frames_free(f, n);
}

/* Function i's facts and its SP-delta program, as the agent's unwind
 * tables read them: ranges that follow each other from the entry, a
 * program that ends or fails within the table's bytes. */
static void pcsp(const wire_gotab *t, size_t i, size_t size)
{
	wire_go_fninfo fi;
	int rc = wire_go_fninfo_at(t, i, &fi);
	if (rc != 0 && rc != -EBADMSG)
		abort();
	if (rc)
		return;
	if (fi.end < fi.entry || (fi.name && strlen(fi.name) > size))
		abort();
	wire_go_pcv it;
	uint64_t s, e, pc = fi.entry;
	int32_t v;
	size_t steps = 0;
	wire_go_pcv_init(t, fi.pcsp, fi.entry, &it);
	while ((rc = wire_go_pcv_next(&it, &s, &e, &v)) > 0) {
		/* each step takes at least two bytes of the table */
		if (s != pc || ++steps > size / 2 + 1)
			abort();
		pc = e;
	}
	if (rc != 0 && rc != -EBADMSG)
		abort();
	/* the agent's rows for it: sorted, merged, inside the function and
	 * its last row SM_CFA_NONE, every kind one the walker knows */
	struct sm_unw_row *rows = (void *)1;
	size_t n = 12345;
	rc = ag_unw_go_rows(t, i, MAX_ROWS, &rows, &n);
	if (rc != 0 && rc != -E2BIG && rc != -ENOMEM)
		abort();
	if (rc) {
		if (rows || n)
			abort();
		return;
	}
	if (n > MAX_ROWS || (n && rows[n - 1].cfa_kind != SM_CFA_NONE))
		abort();
	for (size_t k = 0; k < n; k++) {
		const struct sm_unw_row *r = &rows[k];
		if (r->pc < fi.entry || r->pc > fi.end || (k && r->pc <= rows[k - 1].pc) ||
		    r->cfa_kind >= SM_CFA_KINDS || r->fp_kind >= SM_REG_KINDS ||
		    r->ra_kind >= SM_REG_KINDS)
			abort();
		if (k && !memcmp((const char *)r + 4, (const char *)&rows[k - 1] + 4, sizeof(*r) - 4))
			abort();  /* not merged */
		if (r->cfa_kind == SM_CFA_SP && (r->cfa_off < 8 || r->ra_kind != SM_REG_CFA_OFF ||
		                                 r->ra_off != -8))
			abort();
	}
	free(rows);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	size_t n = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 |
	           (size_t)data[3] << 24;
	data += 4;
	size -= 4;
	if (n > size)
		n = size;
	wire_go_seg segs[2] = {{TAB, data, n}, {DATA, data + n, size - n}};
	wire_go_image img = {segs, 2, TAB, n, 0x401000};
	wire_gotab *t;
	int rc = wire_go_open(&img, &t);
	if (rc) {
		if (rc != -EPROTONOSUPPORT && rc != -EBADMSG && rc != -ENOMEM)
			abort();
		return 0;
	}
	size_t nf = wire_go_nfuncs(t);
	for (size_t i = 0; i < nf && i < MAX_FUNCS; i++) {
		uint64_t entry;
		const char *name;
		rc = wire_go_func(t, i, &entry, &name);
		if (rc != 0 && rc != -EBADMSG)
			abort();
		if (rc)
			continue;
		if (!name || strlen(name) > size)
			abort();
		pcsp(t, i, size);
		lookup(t, entry);
		lookup(t, entry + 1);
		lookup(t, entry + 17);
	}
	static const uint64_t fixed[] = {0, 0x401000, 0x401001, TAB, DATA, UINT64_MAX,
	                                 UINT64_MAX / 2, 0x400fff};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		lookup(t, fixed[i]);
	if (wire_go_fninfo_at(t, nf, &(wire_go_fninfo){0}) != -ERANGE ||
	    wire_go_func(t, nf, &(uint64_t){0}, &(const char *){NULL}) != -ERANGE)
		abort();
	wire_go_free(t);
	return 0;
}
