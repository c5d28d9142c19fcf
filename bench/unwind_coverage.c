/* unwind_coverage.c - what bench/unwind_coverage runs: the agent's table
 * builder (agent/unwind_table.c, ag_unw_build) over ELF files named on
 * stdin, one line per file:
 *
 *   PATH ROWS FDES CODE_BYTES STOP_ROWS STOP_BYTES LEAF_ROWS LEAF_BYTES FPUNK_ROWS
 *
 * CODE_BYTES: addresses some row covers (gaps between functions left
 * out); STOP_*: rows whose CFA the walker cannot compute, where a walk
 * stops (SM_CFA_UNSUPPORTED) and the addresses they cover; LEAF_*: rows
 * usable only in the innermost frame (a CFA in a scratch register);
 * FPUNK_ROWS: rows after which the caller's rbp is unknown. Only
 * executables and shared objects (what a process maps) are read, each
 * inode once; files that are no ELF of this machine or have no CFI print
 * nothing. Only the builder's
 * public interface is used, so the same source builds against an older
 * revision of the builder (bench/unwind_coverage --before REV). */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "bpf/profile.h"

/* SM_CFA_REG's value where the builder has it; older builders never
 * produce kind 8 */
#define LEAF_KIND 8

/* Inodes read already (hard links): open addressing, grown as needed. */
static struct ino_set {
	uint64_t *v;
	size_t cap, n;
} seen;

static int seen_add(uint64_t key)
{
	key |= !key;
	if ((seen.n + 1) * 2 > seen.cap) {
		size_t cap = seen.cap ? 2 * seen.cap : 4096;
		uint64_t *v = calloc(cap, sizeof(*v));
		if (!v)
			exit(1);
		for (size_t i = 0; i < seen.cap; i++)
			if (seen.v[i]) {
				size_t j = seen.v[i] % cap;
				while (v[j])
					j = (j + 1) % cap;
				v[j] = seen.v[i];
			}
		free(seen.v);
		seen.v = v;
		seen.cap = cap;
	}
	size_t j = key % seen.cap;
	while (seen.v[j]) {
		if (seen.v[j] == key)
			return 0;
		j = (j + 1) % seen.cap;
	}
	seen.v[j] = key;
	seen.n++;
	return 1;
}

/* An x86_64 executable or shared object (ET_EXEC, ET_DYN). */
static int mappable(int fd)
{
	unsigned char h[20];
	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h, "\177ELF", 4) ||
	    h[4] != 2 || h[5] != 1)
		return 0;
	unsigned type = h[16] | h[17] << 8, machine = h[18] | h[19] << 8;
	return (type == 2 || type == 3) && machine == 62;
}

int main(void)
{
	char path[4096];
	while (fgets(path, sizeof(path), stdin)) {
		path[strcspn(path, "\n")] = 0;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct stat st;
		if (fstat(fd, &st) || !S_ISREG(st.st_mode) || !mappable(fd) ||
		    !seen_add((uint64_t)st.st_dev << 40 ^ (uint64_t)st.st_ino)) {
			close(fd);
			continue;
		}
		struct sm_unw_row *rows = NULL;
		size_t n = 0;
		ag_unw_info info;
		int rc = ag_unw_build(fd, (size_t)1 << 26, &rows, &n, &info);
		close(fd);
		if (rc || !n) {
			free(rows);
			continue;
		}
		uint64_t code = 0, stop = 0, stop_b = 0, leaf = 0, leaf_b = 0, fpunk = 0;
		for (size_t i = 0; i + 1 < n; i++) {
			uint64_t len = (uint64_t)rows[i + 1].pc - rows[i].pc;
			if (rows[i].cfa_kind == SM_CFA_NONE)
				continue;
			code += len;
			if (rows[i].cfa_kind == SM_CFA_UNSUPPORTED) {
				stop++;
				stop_b += len;
			} else if (rows[i].cfa_kind == LEAF_KIND) {
				leaf++;
				leaf_b += len;
			}
			fpunk += rows[i].fp_kind == SM_REG_UNSUPPORTED;
		}
		printf("%s %zu %zu %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
		       " %" PRIu64 "\n", path, n, info.fdes, code, stop, stop_b, leaf, leaf_b, fpunk);
		free(rows);
	}
	return 0;
}
