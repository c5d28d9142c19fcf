/* fuzz_elf.c - the symbolizer's ELF and DWARF reading (server/symbolize.c)
 * on hostile files: debug info is uploaded by agents and users, and the
 * server opens whatever arrived under a build ID. The input becomes the
 * files of one fixed fake build ID in a temporary debug-info directory,
 * then srv_sym_lookup() and srv_sym_func_start() (the FDE starts of
 * .eh_frame_hdr) run at offsets spread over the file and at the usual text
 * addresses. It must never crash, leak or answer inconsistently.
 *
 * Input: byte 0 picks the files: 0 the binary (<hex>), 1 the separate
 * debug file (<hex>.debug), 2 both, split where the little-endian u32 in
 * bytes 1..4 says (modulo the rest's length); the rest is the content. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/symbolize.h"

#define HEX "f00dfacef00dfacef00dfacef00dfacef00dface"

static const uint8_t bid[20] = {0xf0, 0x0d, 0xfa, 0xce, 0xf0, 0x0d, 0xfa, 0xce, 0xf0, 0x0d,
                                0xfa, 0xce, 0xf0, 0x0d, 0xfa, 0xce, 0xf0, 0x0d, 0xfa, 0xce};
static char dir[64];

/* elfutils 0.188's dwarf_getscopes() drops the array it has begun when
 * the walk then fails (it stores it only when result > 0): a leak inside
 * libdw on malformed DWARF that no caller can free. Only that one is
 * suppressed; every other leak still fails the run. libdw has no frame
 * pointers, so the suppression needs the slow unwinder to see the
 * function's name in the allocation's stack. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:dwarf_getscopes\n";
}
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "fast_unwind_on_malloc=0";
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

/* libFuzzer leaves through exit(): the temporary directory goes with it */
static void cleanup(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void init(void)
{
	char tmpl[] = "/tmp/fuzz_elf.XXXXXX";
	if (!mkdtemp(tmpl))
		abort();
	snprintf(dir, sizeof(dir), "%s", tmpl);
	atexit(cleanup);
}

/* Writes p[0..n) to dir/HEX<suffix>, or removes it when p is NULL. */
static void put(const char *suffix, const uint8_t *p, size_t n)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s%s", dir, HEX, suffix);
	if (!p) {
		unlink(path);
		return;
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	if (n && fwrite(p, 1, n, f) != n)
		abort();
	if (fclose(f))
		abort();
}

static void lookup(srv_sym *s, uint64_t off)
{
	srv_sym_frame f[ST_MAX_INLINE];
	size_t n = 12345;
	int rc = srv_sym_lookup(s, bid, sizeof(bid), off, f, ST_MAX_INLINE, &n);
	if (rc != 0 && rc != -ENOEXEC && rc != -ENOMEM)
		abort();  /* both files are there: never -ENOENT */
	if (rc != 0 && n != 0)
		abort();
	if (rc == 0) {
		if (n > ST_MAX_INLINE)
			abort();
		for (size_t i = 0; i < n; i++)
			if (!f[i].function || f[i].line < 0) {
				fprintf(stderr, "offset 0x%llx: frame %zu of %zu: function %s, line %lld\n",
				        (unsigned long long)off, i, n, f[i].function ? f[i].function : "NULL",
				        (long long)f[i].line);
				abort();
			}
		srv_sym_frames_free(f, n);
	}
	/* a chain cut short to one frame: still its innermost frame */
	srv_sym_frame one[1];
	size_t n1 = 9;
	int rc1 = srv_sym_lookup(s, bid, sizeof(bid), off, one, 1, &n1);
	if (rc1 != rc && rc1 != -ENOMEM && rc != -ENOMEM)
		abort();
	if (rc1 == 0) {
		if (n1 > 1 || (rc == 0 && n1 != (n > 0)))
			abort();
		srv_sym_frames_free(one, n1);
	}
	/* the function start from the unwind info (.eh_frame_hdr's table,
	 * libdw's CFI): at or below the offset when there is one */
	uint64_t start = ~0ULL;
	int rs = srv_sym_func_start(s, bid, sizeof(bid), off, &start);
	if (rs != 0 && rs != -ENOENT && rs != -ENOEXEC && rs != -ENOMEM)
		abort();
	if (rs == 0 && start == ~0ULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0])
		init();
	if (size < 1)
		return 0;
	int mode = data[0] % 3;
	const uint8_t *p = data + 1;
	size_t n = size - 1, cut = n;
	if (mode == 2) {
		if (n < 4)
			return 0;
		uint32_t c = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		             (uint32_t)p[3] << 24;
		p += 4;
		n -= 4;
		cut = n ? c % (n + 1) : 0;
	}
	put("", mode == 1 ? NULL : p, mode == 2 ? cut : n);
	put(".debug", mode == 0 ? NULL : mode == 1 ? p : p + cut, mode == 1 ? n : n - cut);

	/* a new symbolizer each time: the last one's parsed file is gone */
	srv_sym_opts o = {.debuginfo_dir = dir, .db = NULL, .max_open = 1};
	srv_sym *s;
	if (srv_sym_new(&o, &s))
		abort();
	static const uint64_t fixed[] = {0, 0x40, 0x1000, 0x1040, 0x1130, 0x1234, 0x2000,
	                                 0x401000, UINT64_MAX, UINT64_MAX / 2};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		lookup(s, fixed[i]);
	for (size_t i = 1; i < 8; i++)
		lookup(s, (uint64_t)n * i / 8);
	srv_sym_free(s);
	return 0;
}
