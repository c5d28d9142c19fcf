/* test_python.c - unit tests of the agent's CPython part (agent/python.c):
 * the version table against what the walk needs and against Debian's own
 * python3.11 and this process' glibc, the line-table decoders against
 * what CPython 3.8 to 3.13 themselves say (py_lines.h), and the code
 * object reader on built memory: every kind of str, limits, wrong types,
 * unreadable and changing memory. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <linux/types.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/agent.h"
#include "agent/python_layouts.h"
#include "bpf/profile.h"
#include "tests/unit/py_image.h"
#include "tests/unit/py_lines.h"

/* ---- the version table ---- */

static void test_layouts(void **state)
{
	(void)state;
	for (unsigned minor = 8; minor <= 13; minor++) {
		const ag_py_layout *L = ag_py_layout_find(3, minor);
		assert_non_null(L);
		assert_int_equal(L->minor, minor);
		/* every offset BPF reads lies in its buffers, 8 bytes to spare */
		const uint16_t off[] = {L->ts_thread_id, L->ts_frame, L->ts_cframe, L->cf_frame,
		                        L->cf_previous, L->fr_code, L->fr_back, L->fr_lasti,
		                        L->fr_instr, L->fr_is_entry, L->fr_owner, L->co_filename,
		                        L->co_name, L->co_qualname, L->co_firstlineno,
		                        L->co_linetable, L->co_size};
		for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++)
			assert_true(off[i] + 8 <= SM_PY_READ_MAX);
		/* pointers 8-aligned, ints 4-aligned: BPF loads them so */
		assert_int_equal(L->co_filename % 8, 0);
		assert_int_equal(L->co_name % 8, 0);
		assert_int_equal(L->fr_code % 8, 0);
		assert_int_equal(L->fr_back % 8, 0);
		assert_int_equal(L->co_firstlineno % 4, 0);
		assert_int_equal(L->ts_thread_id % 8, 0);
		/* the walk's shape follows the version (bpf/profile.h) */
		assert_int_equal(L->walk, minor >= 10 && minor <= 12 ? SM_PY_WALK_CFRAME : SM_PY_WALK_PC);
		assert_int_equal(L->end, minor <= 10 ? SM_PY_END_ONE :
		                         minor == 11 ? SM_PY_END_ENTRY : SM_PY_END_CSTACK);
		assert_int_equal(L->lasti, minor <= 10 ? SM_PY_LASTI_INT : SM_PY_LASTI_PTR);
		assert_int_equal(L->lines, minor <= 9 ? AG_PY_LINES_LNOTAB :
		                           minor == 10 ? AG_PY_LINES_310 : AG_PY_LINES_311);
		assert_true(minor < 11 || L->co_qualname);
		assert_true(L->tss_key == L->tss_init + 4);
	}
	assert_null(ag_py_layout_find(3, 7));
	assert_null(ag_py_layout_find(3, 99));
	assert_null(ag_py_layout_find(2, 7));
}

/* A file's symbol and the bytes at it. */
static int elf_sym(const char *path, const char *name, uint64_t *value, uint64_t *size,
                   uint8_t *bytes, size_t n)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	int rc = -ENOENT;
	for (Elf_Scn *s = NULL; e && rc && (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(s, &sh) || sh.sh_type != SHT_DYNSYM)
			continue;
		Elf_Data *d = elf_getdata(s, NULL);
		for (size_t i = 0; d && i < d->d_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *nm;
			if (!gelf_getsym(d, (int)i, &sym) || !sym.st_value ||
			    !(nm = elf_strptr(e, sh.sh_link, sym.st_name)) || strcmp(nm, name))
				continue;
			*value = sym.st_value;
			*size = sym.st_size;
			rc = 0;
			break;
		}
	}
	/* the bytes: through the loaded segment holding the symbol */
	size_t nph = 0;
	for (size_t i = 0; !rc && bytes && e && !elf_getphdrnum(e, &nph) && i < nph; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && *value >= ph.p_vaddr &&
		    *value + n <= ph.p_vaddr + ph.p_filesz) {
			rc = pread(fd, bytes, n, (off_t)(ph.p_offset + *value - ph.p_vaddr)) == (ssize_t)n
			     ? 0 : -EIO;
			bytes = NULL;
		}
	}
	elf_end(e);
	close(fd);
	return rc;
}

/* Debian's python3.11: its version and its thread-state key where the
 * table says, found by decoding PyGILState_GetThisThreadState. */
static void test_debian_python(void **state)
{
	(void)state;
	const char *py = "/usr/bin/python3.11";
	if (access(py, R_OK)) {
		printf("SKIP %s is not installed (make deps installs python3.11)\n", py);
		skip();
	}
	uint64_t rt, rts, fn, fns, ver, vs;
	uint8_t code[32], v[8];
	assert_int_equal(elf_sym(py, "_PyRuntime", &rt, &rts, NULL, 0), 0);
	assert_int_equal(elf_sym(py, "PyGILState_GetThisThreadState", &fn, &fns, code,
	                         sizeof(code)), 0);
	assert_int_equal(elf_sym(py, "Py_Version", &ver, &vs, v, sizeof(v)), 0);
	uint64_t hex;
	memcpy(&hex, v, 8);
	assert_int_equal((hex >> 24) & 0xff, 3);
	assert_int_equal((hex >> 16) & 0xff, 11);
	const ag_py_layout *L = ag_py_layout_find(3, 11);
	uint64_t key;
	assert_int_equal(ag_py_decode_tss(code, sizeof(code), fn, &key), 0);
	assert_true(key == rt + L->tss_key);
}

static void test_decode_tss(void **state)
{
	(void)state;
	/* cmpq $0, d(%rip); je; mov d(%rip), %edi; jmp */
	static const uint8_t inlined[] = {0x48, 0x83, 0x3d, 0x10, 0x91, 0x58, 0x00, 0x00, 0x74, 0x0b,
	                                  0x8b, 0x3d, 0x14, 0x91, 0x58, 0x00, 0xe9, 0, 0, 0, 0};
	uint64_t key;
	assert_int_equal(ag_py_decode_tss(inlined, sizeof(inlined), 0x4cd350, &key), 0);
	assert_true(key == 0x4cd350 + 16 + 0x589114);
	/* lea d(%rip), %rdi: the Py_tss_t, its key 4 further */
	static const uint8_t lea[] = {0x55, 0x48, 0x8d, 0x3d, 0xf0, 0xff, 0xff, 0xff, 0xe8};
	assert_int_equal(ag_py_decode_tss(lea, sizeof(lea), 0x1000, &key), 0);
	assert_true(key == 0x1000 + 8 - 16 + 4);
	static const uint8_t none[] = {0x31, 0xc0, 0xc3, 0x90, 0x90, 0x90, 0x90};
	assert_int_equal(ag_py_decode_tss(none, sizeof(none), 0, &key), -ENOENT);
	assert_int_equal(ag_py_decode_tss(inlined, 5, 0, &key), -ENOENT);
}

/* This process' glibc: the offsets decoded from its pthread_getspecific
 * find this thread's values from the thread pointer, as BPF does. */
static void test_glibc_getspecific(void **state)
{
	(void)state;
	char path[512] = "", line[1024];
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '/');
		if (p && strstr(p, "/libc.so")) {
			p[strcspn(p, "\n")] = 0;
			snprintf(path, sizeof(path), "%s", p);
			break;
		}
	}
	fclose(f);
	assert_true(path[0]);
	uint64_t fn, fns;
	uint8_t code[128];
	assert_int_equal(elf_sym(path, "pthread_getspecific", &fn, &fns, code, sizeof(code)), 0);
	uint16_t first, second;
	assert_int_equal(ag_py_decode_getspecific(code, fns < sizeof(code) ? fns : sizeof(code),
	                                          &first, &second), 0);
	uintptr_t tp = (uintptr_t)pthread_self();   /* glibc: the thread pointer */
	pthread_key_t keys[40];
	int marks[40];
	for (int i = 0; i < 40; i++) {
		assert_int_equal(pthread_key_create(&keys[i], NULL), 0);
		assert_int_equal(pthread_setspecific(keys[i], &marks[i]), 0);
	}
	int low = 0, high = 0;
	for (int i = 0; i < 40; i++) {
		unsigned k = keys[i];
		void *got;
		if (k < 32) {
			memcpy(&got, (void *)(tp + first + 16 * k), sizeof(got));
			low++;
		} else {
			uintptr_t l2;
			memcpy(&l2, (void *)(tp + second + 8 * (k / 32)), sizeof(l2));
			memcpy(&got, (void *)(l2 + 16 * (k % 32) + 8), sizeof(got));
			high++;
		}
		assert_ptr_equal(got, &marks[i]);
	}
	assert_true(low > 0 && high > 0);
	for (int i = 0; i < 40; i++)
		pthread_key_delete(keys[i]);
	/* not glibc's code */
	static const uint8_t musl[] = {0x64, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0x48, 0x8b};
	assert_int_equal(ag_py_decode_getspecific(musl, sizeof(musl), &first, &second), -ENOENT);
}

/* ---- line tables ---- */

static void test_line_vectors(void **state)
{
	(void)state;
	size_t n = sizeof(py_lines) / sizeof(py_lines[0]);
	unsigned seen = 0;
	for (size_t i = 0; i < n; i++) {
		const py_lines_vec *v = &py_lines[i];
		const ag_py_layout *L = ag_py_layout_find(v->major, v->minor);
		assert_non_null(L);
		seen |= 1u << v->minor;
		/* lasti as each version counts it: bytes in 3.8, 3.9 */
		int unit = L->lines == AG_PY_LINES_LNOTAB ? 2 : 1;
		for (uint32_t k = 0; k < v->nunits; k++) {
			int32_t got = ag_py_addr2line(L, (const uint8_t *)v->table, v->ntable,
			                              v->firstlineno, (int64_t)k * unit);
			if (got != v->lines[k])
				fail_msg("%u.%u %s: code unit %u at line %d, CPython says %d", v->major,
				         v->minor, v->func, k, got, v->lines[k]);
		}
		assert_int_equal(ag_py_addr2line(L, (const uint8_t *)v->table, v->ntable,
		                                 v->firstlineno, -1), v->firstlineno);
	}
	assert_int_equal(seen, 0x3f00);   /* 3.8 to 3.13 */
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Any bytes: a line or 0, never a crash or an overflow (UBSan). */
static void test_line_hostile(void **state)
{
	(void)state;
	uint8_t t[600];
	for (size_t li = 0; li < AG_PY_NLAYOUTS; li++) {
		const ag_py_layout *L = &ag_py_layouts[li];
		for (int iter = 0; iter < 3000; iter++) {
			size_t n = rnd() % sizeof(t);
			for (size_t i = 0; i < n; i++)
				t[i] = (uint8_t)rnd();
			if (iter % 3 == 0)
				memset(t, iter % 2 ? 0xff : 0xf7, n);   /* runaway deltas */
			int32_t first = (int32_t)(rnd() % 3 ? rnd() % 10000 : rnd());
			int64_t lasti = (int64_t)(rnd() % 2000) - 1;
			if (iter % 7 == 0)
				lasti = INT32_MAX;
			assert_true(ag_py_addr2line(L, t, n, first, lasti) >= 0);
		}
		assert_int_equal(ag_py_addr2line(L, NULL, 0, 5, 0), L->lines == AG_PY_LINES_LNOTAB ? 5 : 0);
	}
}

/* ---- reading code objects ---- */

typedef struct image {
	uint8_t *img;
	size_t len;
	int reads;
	int change_after;      /* >= 0: flip the name pointer after this many reads */
	const ag_py_layout *L;
} image;

static int img_read(void *arg, uint64_t addr, void *buf, size_t n)
{
	image *m = arg;
	if (m->change_after >= 0 && m->reads++ == m->change_after)
		pyi_u64(m->img, m->L->co_name, PYI_BASE + PYI_FILE);
	if (addr < PYI_BASE || addr - PYI_BASE > m->len || n > m->len - (addr - PYI_BASE))
		return -EFAULT;
	memcpy(buf, m->img + (addr - PYI_BASE), n);
	return 0;
}

static const ag_py_types types = {PYI_CODE_T, PYI_STR_T, PYI_BYTES_T};

static void test_read_code(void **state)
{
	(void)state;
	uint8_t *img = calloc(1, PYI_SIZE);
	/* 3.11 table: line + 0 for 4 units, then + 3 for 2 */
	static const uint8_t t311[] = {0x80 | (10 << 3) | 3, 0, 0, 0x80 | (13 << 3) | 1, 6};
	for (size_t li = 0; li < AG_PY_NLAYOUTS; li++) {
		const ag_py_layout *L = &ag_py_layouts[li];
		memset(img, 0, PYI_SIZE);
		pyi_code(L, img, "leaf", "Work.leaf", "/srv/app.py", 40, t311, sizeof(t311));
		image m = {img, PYI_SIZE, 0, -1, L};
		ag_py_code c;
		assert_int_equal(ag_py_read_code(L, &types, img_read, &m, PYI_BASE, &c), 0);
		assert_string_equal(c.name, L->co_qualname ? "Work.leaf" : "leaf");
		assert_string_equal(c.file, "/srv/app.py");
		assert_int_equal(c.firstlineno, 40);
		assert_int_equal(c.nlines, sizeof(t311));
		assert_int_equal(c.fingerprint, sm_py_fingerprint(PYI_BASE + PYI_FILE,
		                                                   PYI_BASE + PYI_NAME, 40));
		if (L->lines == AG_PY_LINES_311) {
			assert_int_equal(ag_py_addr2line(L, c.lines, c.nlines, 40, 3), 40);
			assert_int_equal(ag_py_addr2line(L, c.lines, c.nlines, 40, 4), 43);
			assert_int_equal(ag_py_addr2line(L, c.lines, c.nlines, 40, 6), 0);
		}
		ag_py_code_free(&c);

		/* not a code object; a name that is no str; a table that is
		 * no bytes; unreadable; a name changed between the reads */
		struct {
			size_t off;
			uint64_t val;
			int rc;
		} bad[] = {
			{8, PYI_STR_T, -EBADMSG},
			{PYI_NAME + 8, PYI_BYTES_T, -EBADMSG},
			{PYI_QUAL + 8, PYI_BYTES_T, -EBADMSG},
			{PYI_TABLE + 8, PYI_STR_T, -EBADMSG},
			{L->co_filename, 0x7000000, -EFAULT},
			{L->co_linetable, 0, -EFAULT},
			{PYI_TABLE + L->bytes_size, (256u << 10) + 1, -EBADMSG},
			{PYI_FILE + 16, 4097, -EBADMSG},          /* 4097 characters */
			{PYI_FILE + 16, (uint64_t)-1, -EBADMSG},
		};
		for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			/* the name read is co_qualname's from 3.11 on, co_name's before */
			if ((bad[k].off == PYI_QUAL + 8 && !L->co_qualname) ||
			    (bad[k].off == PYI_NAME + 8 && L->co_qualname))
				continue;
			memset(img, 0, PYI_SIZE);
			pyi_code(L, img, "leaf", "Work.leaf", "/srv/app.py", 40, t311, sizeof(t311));
			pyi_u64(img, bad[k].off, bad[k].val);
			m = (image){img, PYI_SIZE, 0, -1, L};
			int rc = ag_py_read_code(L, &types, img_read, &m, PYI_BASE, &c);
			if (rc != bad[k].rc)
				fail_msg("%u.%u case %zu: %d, want %d", L->major, L->minor, k, rc, bad[k].rc);
			assert_null(c.name);
		}
		memset(img, 0, PYI_SIZE);
		pyi_code(L, img, "leaf", "Work.leaf", "/srv/app.py", 40, t311, sizeof(t311));
		m = (image){img, PYI_SIZE, 0, 4, L};   /* after the strings and table */
		assert_int_equal(ag_py_read_code(L, &types, img_read, &m, PYI_BASE, &c), -EBADMSG);
		m = (image){img, PYI_SIZE, 0, -1, L};
		assert_int_equal(ag_py_read_code(L, &types, img_read, &m, PYI_BASE + 8, &c), -EBADMSG);
		assert_int_equal(ag_py_read_code(L, &types, img_read, &m, 0, &c), -EFAULT);
	}
	free(img);
}

/* Strings of every kind become UTF-8; NUL, lone surrogates and values
 * past U+10FFFF do not pass through; long ones are cut at a character. */
static void test_read_strings(void **state)
{
	(void)state;
	const ag_py_layout *L = ag_py_layout_find(3, 11);
	uint8_t *img = calloc(1, PYI_SIZE);
	static const uint8_t t[] = {0x80};
	struct {
		uint32_t cp[8];
		size_t n;
		unsigned kind;
		const char *want;
	} cases[] = {
		{{'a', 0xe4, 'b'}, 3, 1, "a\xc3\xa4" "b"},           /* latin-1 */
		{{'x', 0x3bb, 0xd800, 'y'}, 4, 2, "x\xce\xbb\xef\xbf\xbdy"},
		{{0x1f40d, 0x110000, 0}, 3, 4, "\xf0\x9f\x90\x8d\xef\xbf\xbd?"},
		{{'a', 0, 'b'}, 3, 1, "a?b"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		memset(img, 0, PYI_SIZE);
		pyi_code(L, img, "n", "q", "f.py", 1, t, sizeof(t));
		pyi_str(L, img, PYI_QUAL, cases[k].cp, cases[k].n, cases[k].kind);
		image m = {img, PYI_SIZE, 0, -1, L};
		ag_py_code c;
		assert_int_equal(ag_py_read_code(L, &types, img_read, &m, PYI_BASE, &c), 0);
		assert_string_equal(c.name, cases[k].want);
		ag_py_code_free(&c);
	}
	/* an "ASCII" str with a byte over 127 was not written as one */
	memset(img, 0, PYI_SIZE);
	pyi_code(L, img, "n", "q", "f.py", 1, t, sizeof(t));
	img[PYI_QUAL + L->str_ascii_data] = 0xc3;
	image m = {img, PYI_SIZE, 0, -1, L};
	ag_py_code c;
	assert_int_equal(ag_py_read_code(L, &types, img_read, &m, PYI_BASE, &c), -EBADMSG);
	/* 2000 two-byte characters: cut to 1024 bytes, whole characters */
	uint32_t *cp = malloc(2000 * sizeof(*cp));
	for (int i = 0; i < 2000; i++)
		cp[i] = 0xe4;
	memset(img, 0, PYI_SIZE);
	pyi_code(L, img, "n", "q", "f.py", 1, t, sizeof(t));
	pyi_str(L, img, PYI_QUAL, cp, 2000, 1);
	m = (image){img, PYI_SIZE, 0, -1, L};
	assert_int_equal(ag_py_read_code(L, &types, img_read, &m, PYI_BASE, &c), 0);
	assert_int_equal(strlen(c.name), 1024);
	ag_py_code_free(&c);
	free(cp);
	free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layouts),
		cmocka_unit_test(test_debian_python),
		cmocka_unit_test(test_decode_tss),
		cmocka_unit_test(test_glibc_getspecific),
		cmocka_unit_test(test_line_vectors),
		cmocka_unit_test(test_line_hostile),
		cmocka_unit_test(test_read_code),
		cmocka_unit_test(test_read_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
