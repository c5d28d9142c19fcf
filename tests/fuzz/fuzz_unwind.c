/* fuzz_unwind.c - the unwind table builder (agent/unwind_table.c) on
 * hostile files: the agent reads whatever ELF a process maps, and the
 * table goes into the kernel. The input is the whole file, handed over as
 * a memfd. It must never crash, leak, loop or hand back a table that
 * breaks the contract (sorted, merged, bounded, ending in SM_CFA_NONE).
 *
 * The corpus (tests/fuzz/corpus/unwind) holds small real programs: C with
 * .eh_frame, C with .debug_frame beside it, C++ with "zPLR" CIEs, C with
 * GCC's stack realignment (CFA expressions). */
#include <errno.h>
#include <linux/types.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent/agent.h"
#include "bpf/profile.h"

#define MAX_ROWS 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz_unwind", 0);
	if (fd < 0)
		abort();
	if (size && write(fd, data, size) != (ssize_t)size)
		abort();
	struct sm_unw_row *rows = (void *)1;
	size_t n = 12345;
	ag_unw_info info;
	int rc = ag_unw_build(fd, MAX_ROWS, &rows, &n, &info);
	close(fd);
	if (rc != 0) {
		if (rows || n || (rc != -ENOEXEC && rc != -E2BIG && rc != -ENOMEM))
			abort();
		return 0;
	}
	if (n > MAX_ROWS || (n && !rows) || info.unsupported + info.innermost_only > n)
		abort();
	for (size_t i = 0; i < n; i++) {
		const struct sm_unw_row *r = &rows[i];
		if (r->cfa_kind >= SM_CFA_KINDS || r->fp_kind >= SM_REG_KINDS ||
		    r->ra_kind >= SM_REG_KINDS)
			abort();
		/* aux only where the kind has one; a register the walker has */
		if (r->aux && r->cfa_kind != SM_CFA_DEREF_SP && r->cfa_kind != SM_CFA_DEREF_FP &&
		    r->cfa_kind != SM_CFA_REG)
			abort();
		if (r->cfa_kind == SM_CFA_REG && (r->aux >= 16 || r->aux == 6 || r->aux == 7))
			abort();
		if (i && rows[i - 1].pc >= r->pc)
			abort();
		struct sm_unw_row a = i ? rows[i - 1] : *r, b = *r;
		a.pc = b.pc = 0;
		if (i && !memcmp(&a, &b, sizeof(a)))
			abort();  /* equal neighbours are merged */
	}
	if (n && rows[n - 1].cfa_kind != SM_CFA_NONE)
		abort();
	free(rows);
	return 0;
}
