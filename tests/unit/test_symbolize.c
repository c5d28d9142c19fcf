/* test_symbolize.c - the symbolizer (server/symbolize.h) against binutils'
 * addr2line as the oracle, on the test subjects the Makefile builds from
 * tests/programs/sym_* into $SMOLDER_SYM_DIR: a PIE and a non-PIE C
 * program at -O2 with an always_inline function in a hot loop, their
 * shared library, a C++ program with namespaced and templated functions,
 * and the library stripped with its DWARF in a separate debug file.
 *
 * Each file goes into a debug-info directory under its build ID, as the
 * server keeps them; every byte of every function in the file's symbol
 * table is looked up by file offset and must give what `addr2line -a -f -i
 * -C` gives for the address: the same inline chain, innermost first, with
 * the same function names, file paths and lines. No SQLite (db = NULL):
 * this is the file-reading half; the cache is the query tests' business. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/symbolize.h"

#define MAXF 16         /* frames of an oracle chain (the subjects nest 3 deep) */
#define MAXLOADS 16

typedef struct ofr {
	char *function;
	char *file;          /* NULL: addr2line said ?? */
	int64_t line;        /* 0: addr2line said 0 or ? */
} ofr;

/* addr2line's answer for one address */
typedef struct oans {
	uint64_t addr;
	size_t n;            /* 0: "??" */
	ofr f[MAXF];
} oans;

typedef struct load {
	uint64_t vaddr, off, filesz;
} load;

typedef struct fsym {
	char *name;
	uint64_t addr, size;
} fsym;

/* One ELF file the tests read. */
typedef struct subj {
	char path[PATH_MAX];
	uint8_t bid[64];
	size_t bidlen;
	char hex[129];
	load loads[MAXLOADS];
	size_t nloads;
	fsym *syms;          /* function symbols, .symtab else .dynsym */
	size_t nsyms;
} subj;

static char sym_dir[1024];   /* $SMOLDER_SYM_DIR */
static char tmp_dir[1024];   /* $SMOLDER_TEST_TMP */
static int ndirs;

/* ---- ELF facts, read with libelf: build ID, PT_LOADs, function symbols ---- */

static void subj_free(subj *s)
{
	for (size_t i = 0; i < s->nsyms; i++)
		free(s->syms[i].name);
	free(s->syms);
	s->syms = NULL;
	s->nsyms = 0;
}

static int read_syms(Elf *e, Elf64_Word type, subj *s)
{
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != type || !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		size_t n = sh.sh_size / sh.sh_entsize;
		s->syms = calloc(n + 1, sizeof(*s->syms));
		assert_non_null(s->syms);
		for (size_t i = 0; d && i < n; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(d, (int)i, &sym))
				break;
			if (GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF ||
			    !sym.st_value)
				continue;
			const char *nm = elf_strptr(e, sh.sh_link, sym.st_name);
			s->syms[s->nsyms++] = (fsym){strdup(nm ? nm : ""), sym.st_value, sym.st_size};
		}
		return 1;
	}
	return 0;
}

/* Fills s from the file at path: fails the test if it is not a readable
 * ELF with a GNU build ID. */
static void subj_read(subj *s, const char *path)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->path, sizeof(s->path), "%s", path);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		fail_msg("%s: %s (is SMOLDER_SYM_DIR right?)", path, strerror(errno));
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	assert_non_null(e);
	size_t nph = 0;
	assert_int_equal(elf_getphdrnum(e, &nph), 0);
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && ph.p_filesz &&
		    s->nloads < MAXLOADS)
			s->loads[s->nloads++] = (load){ph.p_vaddr, ph.p_offset, ph.p_filesz};
	}
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn)) && !s->bidlen;) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		GElf_Nhdr nh;
		size_t off = 0, no, dof;
		while (d && (off = gelf_getnote(d, off, &nh, &no, &dof)) > 0)
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    !memcmp((char *)d->d_buf + no, "GNU", 4) && nh.n_descsz <= sizeof(s->bid)) {
				memcpy(s->bid, (char *)d->d_buf + dof, nh.n_descsz);
				s->bidlen = nh.n_descsz;
				break;
			}
	}
	if (!s->bidlen)
		fail_msg("%s has no build ID", path);
	for (size_t i = 0; i < s->bidlen; i++)
		sprintf(s->hex + 2 * i, "%02x", s->bid[i]);
	if (!read_syms(e, SHT_SYMTAB, s))
		read_syms(e, SHT_DYNSYM, s);
	elf_end(e);
	close(fd);
}

/* The file offset of a virtual address, through the PT_LOADs; ~0 if none. */
static uint64_t to_off(const subj *s, uint64_t va)
{
	for (size_t i = 0; i < s->nloads; i++)
		if (va >= s->loads[i].vaddr && va - s->loads[i].vaddr < s->loads[i].filesz)
			return va - s->loads[i].vaddr + s->loads[i].off;
	return ~(uint64_t)0;
}

static const fsym *sym_named(const subj *s, const char *name)
{
	for (size_t i = 0; i < s->nsyms; i++)
		if (!strcmp(s->syms[i].name, name))
			return &s->syms[i];
	fail_msg("%s: no function %s", s->path, name);
	return NULL;
}

/* ---- addresses ---- */

typedef struct addrs {
	uint64_t *v;
	size_t n, cap;
} addrs;

static void addrs_add(addrs *a, uint64_t va)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 1024;
		a->v = realloc(a->v, a->cap * sizeof(*a->v));
		assert_non_null(a->v);
	}
	a->v[a->n++] = va;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static void addrs_uniq(addrs *a)
{
	qsort(a->v, a->n, sizeof(*a->v), cmp_u64);
	size_t k = 0;
	for (size_t i = 0; i < a->n; i++)
		if (!k || a->v[k - 1] != a->v[i])
			a->v[k++] = a->v[i];
	a->n = k;
}

/* Every byte of every function symbol of s that has a file offset. */
static addrs every_function_byte(const subj *s)
{
	addrs a = {0};
	for (size_t i = 0; i < s->nsyms; i++)
		for (uint64_t b = 0; b < (s->syms[i].size ? s->syms[i].size : 1); b++)
			if (to_off(s, s->syms[i].addr + b) != ~(uint64_t)0)
				addrs_add(&a, s->syms[i].addr + b);
	addrs_uniq(&a);
	return a;
}

/* ---- the oracle: addr2line ---- */

static void oans_free(oans *o, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < o[i].n; j++) {
			free(o[i].f[j].function);
			free(o[i].f[j].file);
		}
	free(o);
}

static void chomp(char *l)
{
	size_t n = strlen(l);
	while (n && (l[n - 1] == '\n' || l[n - 1] == '\r'))
		l[--n] = 0;
}

/* "FILE:LINE" or "FILE:LINE (discriminator N)"; "??:0", "??:?" unknown */
static void parse_loc(char *l, ofr *f)
{
	char *d = strstr(l, " (discriminator ");
	if (d)
		*d = 0;
	char *c = strrchr(l, ':');
	assert_non_null(c);
	*c = 0;
	f->line = strcmp(c + 1, "?") ? strtoll(c + 1, NULL, 10) : 0;
	/* a file without a line ("crtstuff.c:0", ":0") is BFD naming the
	 * STT_FILE symbol before a function without DWARF: not debug info */
	f->file = strcmp(l, "??") && f->line ? strdup(l) : NULL;
}

/* addr2line -a -f -i -C on file for a.v[0..a.n): one answer per address,
 * in order. Any address with "??" as its only function has n = 0. */
static oans *oracle(const char *file, const addrs *a)
{
	char in[PATH_MAX], out[PATH_MAX], cmd[3 * PATH_MAX + 64];
	snprintf(in, sizeof(in), "%s/a2l.in", tmp_dir);
	snprintf(out, sizeof(out), "%s/a2l.out", tmp_dir);
	FILE *f = fopen(in, "w");
	assert_non_null(f);
	for (size_t i = 0; i < a->n; i++)
		fprintf(f, "0x%" PRIx64 "\n", a->v[i]);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "addr2line -a -f -i -C -e '%s' <'%s' >'%s'", file, in, out);
	if (system(cmd) != 0)
		fail_msg("%s failed", cmd);
	oans *o = calloc(a->n ? a->n : 1, sizeof(*o));
	assert_non_null(o);
	f = fopen(out, "r");
	assert_non_null(f);
	char *l1 = NULL, *l2 = NULL;
	size_t c1 = 0, c2 = 0;
	ssize_t k = -1;
	while (getline(&l1, &c1, f) > 0) {
		chomp(l1);
		if (!strncmp(l1, "0x", 2) && strlen(l1) == 18) {
			k++;
			assert_true((size_t)k < a->n);
			o[k].addr = strtoull(l1, NULL, 16);
			assert_true(o[k].addr == a->v[k]);
			continue;
		}
		assert_true(k >= 0);
		assert_true(getline(&l2, &c2, f) > 0);
		chomp(l2);
		assert_true(o[k].n < MAXF);
		ofr *fr = &o[k].f[o[k].n++];
		fr->function = strdup(l1);
		parse_loc(l2, fr);
	}
	free(l1);
	free(l2);
	fclose(f);
	assert_int_equal((size_t)(k + 1), a->n);
	for (size_t i = 0; i < a->n; i++)
		if (o[i].n == 1 && !strcmp(o[i].f[0].function, "??")) {
			free(o[i].f[0].function);
			free(o[i].f[0].file);
			o[i].n = 0;
		}
	return o;
}

/* ---- debug-info directories ---- */

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	assert_non_null(in);
	assert_non_null(out);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	if (n)
		assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* A new empty debug-info directory under the test's temporary dir. */
static void new_dir(char *out, size_t cap)
{
	snprintf(out, cap, "%s/debuginfo.%d", tmp_dir, ++ndirs);
	assert_int_equal(mkdir(out, 0700), 0);
}

/* Copies the subject file name (in $SMOLDER_SYM_DIR) into dir as
 * <build-id-hex><suffix>; fills s from the installed copy. */
static void install(const char *dir, const char *name, const char *suffix, subj *s)
{
	char from[PATH_MAX], to[PATH_MAX + 200];
	snprintf(from, sizeof(from), "%s/%s", sym_dir, name);
	subj_read(s, from);
	snprintf(to, sizeof(to), "%s/%s%s", dir, s->hex, suffix);
	copy_file(from, to);
}

static srv_sym *open_sym(const char *dir, size_t max_open)
{
	srv_sym_opts o = {.debuginfo_dir = dir, .db = NULL, .max_open = max_open};
	srv_sym *s = NULL;
	assert_int_equal(srv_sym_new(&o, &s), 0);
	assert_non_null(s);
	return s;
}

/* ---- comparing ---- */

static size_t max_shown = 8;   /* mismatches printed per comparison */

static int streq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* f[0..n) against addr2line's answer. One allowance for a bug of BFD's
 * (binutils 2.40): a C++ function without a linkage name (static, or
 * glibc's inline atof) gets the name of the symbol-table function around
 * the address, so an inlined one takes its caller's name ("main" for atof
 * inlined into main). There any name passes; file and line still count. */

static int frames_equal(const srv_sym_frame *f, size_t n, const oans *o)
{
	if (n != o->n)
		return 0;
	for (size_t j = 0; j < n; j++) {
		int bfd_renamed = j + 1 < n && !strcmp(o->f[j].function, o->f[j + 1].function);
		if (!(bfd_renamed || streq(f[j].function, o->f[j].function)) ||
		    !streq(f[j].file, o->f[j].file) || f[j].line != o->f[j].line)
			return 0;
	}
	return 1;
}

static void show_chain(char *buf, size_t cap, const char *who, size_t n, const char *const *fn,
                       const char *const *file, const int64_t *line)
{
	size_t u = (size_t)snprintf(buf, cap, "  %s (%zu):", who, n);
	for (size_t i = 0; i < n && u < cap; i++)
		u += (size_t)snprintf(buf + u, cap - u, " [%s %s:%" PRId64 "]", fn[i],
		                      file[i] ? file[i] : "(null)", line[i]);
}

/* Looks up every address of a in s (by file offset in `offs_of`, the
 * file whose program headers map them) under build ID bid and compares
 * with want; returns the number of mismatches, printing the first few. */
static size_t compare(srv_sym *s, const subj *offs_of, const uint8_t *bid, size_t bidlen,
                      const addrs *a, const oans *want, const char *what)
{
	size_t bad = 0;
	for (size_t i = 0; i < a->n; i++) {
		srv_sym_frame f[ST_MAX_INLINE];
		size_t n = 99;
		uint64_t off = to_off(offs_of, a->v[i]);
		assert_true(off != ~(uint64_t)0);
		int rc = srv_sym_lookup(s, bid, bidlen, off, f, ST_MAX_INLINE, &n);
		int same = rc == 0 && frames_equal(f, n, &want[i]);
		if (!same && bad++ < max_shown) {
			const char *fn[MAXF], *fl[MAXF];
			int64_t ln[MAXF];
			char got[2048], exp[2048];
			size_t m = rc ? 0 : n < MAXF ? n : MAXF;
			for (size_t j = 0; j < m; j++)
				fn[j] = f[j].function, fl[j] = f[j].file, ln[j] = f[j].line;
			show_chain(got, sizeof(got), "srv_sym_lookup", m, fn, fl, ln);
			for (size_t j = 0; j < want[i].n; j++)
				fn[j] = want[i].f[j].function, fl[j] = want[i].f[j].file,
				ln[j] = want[i].f[j].line;
			show_chain(exp, sizeof(exp), "addr2line", want[i].n, fn, fl, ln);
			print_message("%s: address 0x%" PRIx64 " (offset 0x%" PRIx64 "): rc %d\n%s\n%s\n",
			              what, a->v[i], off, rc, got, exp);
		}
		if (rc == 0)
			srv_sym_frames_free(f, n);
	}
	if (bad)
		print_message("%s: %zu of %zu addresses differ from addr2line\n", what, bad, a->n);
	return bad;
}

/* ---- fixtures: one directory with every subject, the oracle per subject ---- */

enum { PIE, NOPIE, LIB, CPP, NSUBJ };
static const char *const subj_file[NSUBJ] = {"sym_c_pie", "sym_c_nopie", "libsymlib.so", "sym_cpp"};

static char all_dir[PATH_MAX];
static subj subjects[NSUBJ];
static addrs subj_addrs[NSUBJ];
static oans *subj_want[NSUBJ];

static int group_setup(void **state)
{
	(void)state;
	const char *d = getenv("SMOLDER_SYM_DIR"), *t = getenv("SMOLDER_TEST_TMP"),
		   *v = getenv("SMOLDER_SYM_SHOW");
	if (v)
		max_shown = strtoul(v, NULL, 10);
	if (!d || !t) {
		fprintf(stderr, "test_symbolize: set SMOLDER_SYM_DIR (the built test subjects, "
		                "build/asan/tests/sym) and SMOLDER_TEST_TMP (`make test-unit` does)\n");
		return -1;
	}
	snprintf(sym_dir, sizeof(sym_dir), "%s", d);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s", t);
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -1;
	new_dir(all_dir, sizeof(all_dir));
	for (int i = 0; i < NSUBJ; i++) {
		install(all_dir, subj_file[i], "", &subjects[i]);
		subj_addrs[i] = every_function_byte(&subjects[i]);
		subj_want[i] = oracle(subjects[i].path, &subj_addrs[i]);
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NSUBJ; i++) {
		oans_free(subj_want[i], subj_addrs[i].n);
		free(subj_addrs[i].v);
		subj_free(&subjects[i]);
	}
	return 0;
}

/* The oracle's answer for address va of subject k. */
static const oans *want_at(int k, uint64_t va)
{
	for (size_t i = 0; i < subj_addrs[k].n; i++)
		if (subj_addrs[k].v[i] == va)
			return &subj_want[k][i];
	fail_msg("0x%" PRIx64 " not among the addresses", va);
	return NULL;
}

static void check_subject(int k)
{
	srv_sym *s = open_sym(all_dir, 0);
	const subj *sj = &subjects[k];
	assert_true(subj_addrs[k].n > 100);
	assert_int_equal(compare(s, sj, sj->bid, sj->bidlen, &subj_addrs[k], subj_want[k],
	                         subj_file[k]), 0);
	srv_sym_free(s);
}

/* The oracle must itself see what the subject was built to show, or the
 * comparison proves little. */
static void expect_function(int k, const char *sym, const char *function, const char *file)
{
	const fsym *f = sym_named(&subjects[k], sym);
	const oans *o = want_at(k, f->addr);
	assert_true(o->n >= 1);
	assert_string_equal(o->f[o->n - 1].function, function);
	assert_non_null(o->f[o->n - 1].file);
	const char *b = strrchr(o->f[o->n - 1].file, '/');
	assert_string_equal(b ? b + 1 : o->f[o->n - 1].file, file);
}

static void test_pie(void **state)
{
	(void)state;
	expect_function(PIE, "leaf_spin", "leaf_spin", "sym_c.c");
	expect_function(PIE, "caller_lib", "caller_lib", "sym_c.c");
	check_subject(PIE);
}

static void test_nopie(void **state)
{
	(void)state;
	expect_function(NOPIE, "hot_loop", "hot_loop", "sym_c.c");
	assert_true(subjects[NOPIE].loads[0].vaddr >= 0x400000);  /* not at 0: really non-PIE */
	check_subject(NOPIE);
}

static void test_shared_library(void **state)
{
	(void)state;
	expect_function(LIB, "symlib_hash", "symlib_hash", "sym_lib.c");
	expect_function(LIB, "symlib_round", "symlib_round", "sym_lib.c");
	check_subject(LIB);
}

/* Static C++ functions: named as addr2line and c++filt name them. */
static void test_cpp_static_names(void **state)
{
	(void)state;
	check_subject(CPP);
}

static void test_cpp_demangled(void **state)
{
	(void)state;
	expect_function(CPP, "_ZN2ns6WorkerIiE3runEm", "ns::Worker<int>::run(unsigned long)",
	                "sym_cpp.cpp");
	expect_function(CPP, "_ZN2ns6WorkerIlE3runEm", "ns::Worker<long>::run(unsigned long)",
	                "sym_cpp.cpp");
	expect_function(CPP, "_ZN2ns6detail5churnEm", "ns::detail::churn(unsigned long)",
	                "sym_cpp.cpp");
	check_subject(CPP);
}

/* Every byte of hot_loop: most are mix_step inlined into it (a chain of
 * two, mix_step's line inside it, then hot_loop at the call site). */
static void test_inline_chain(void **state)
{
	(void)state;
	for (int k = PIE; k <= NOPIE; k++) {
		const subj *sj = &subjects[k];
		const fsym *h = sym_named(sj, "hot_loop");
		addrs a = {0};
		size_t inlined = 0;
		for (uint64_t b = 0; b < h->size; b++) {
			addrs_add(&a, h->addr + b);
			const oans *o = want_at(k, h->addr + b);
			if (o->n == 2 && !strcmp(o->f[0].function, "mix_step") &&
			    !strcmp(o->f[1].function, "hot_loop"))
				inlined++;
		}
		/* the subject does what it is for: the loop body is inlined code */
		assert_true(inlined >= 16);
		oans *w = oracle(sj->path, &a);
		srv_sym *s = open_sym(all_dir, 0);
		assert_int_equal(compare(s, sj, sj->bid, sj->bidlen, &a, w, "hot_loop"), 0);
		/* and one by hand, in case addr2line and we agree on nonsense */
		for (size_t i = 0; i < a.n; i++) {
			if (w[i].n != 2)
				continue;
			srv_sym_frame f[ST_MAX_INLINE];
			size_t n;
			assert_int_equal(srv_sym_lookup(s, sj->bid, sj->bidlen, to_off(sj, a.v[i]), f,
			                                ST_MAX_INLINE, &n), 0);
			assert_int_equal(n, 2);
			assert_string_equal(f[0].function, "mix_step");
			assert_string_equal(f[1].function, "hot_loop");
			assert_non_null(strstr(f[0].file, "tests/programs/sym_c.c"));
			assert_non_null(strstr(f[1].file, "tests/programs/sym_c.c"));
			assert_true(f[0].line > 0 && f[1].line > f[0].line);  /* mix_step is above */
			srv_sym_frames_free(f, n);
			break;
		}
		srv_sym_free(s);
		oans_free(w, a.n);
		free(a.v);
	}
}

static void test_unknown_build_id(void **state)
{
	(void)state;
	srv_sym *s = open_sym(all_dir, 0);
	uint8_t bid[20];
	memset(bid, 0xab, sizeof(bid));
	srv_sym_frame f[4];
	size_t n = 7;
	assert_int_equal(srv_sym_lookup(s, bid, sizeof(bid), 0x1000, f, 4, &n), -ENOENT);
	assert_int_equal(n, 0);
	/* a build ID that is a prefix of a present one is another build ID */
	assert_int_equal(srv_sym_lookup(s, subjects[PIE].bid, subjects[PIE].bidlen - 1, 0x1000, f,
	                                4, &n), -ENOENT);
	srv_sym_free(s);
}

/* Files that are no usable ELF under a build ID: -ENOEXEC, every time
 * (nothing cached wrongly), and the good file next to them still works. */
static void test_not_elf(void **state)
{
	(void)state;
	char dir[PATH_MAX], path[PATH_MAX + 64];
	new_dir(dir, sizeof(dir));
	static const struct {
		const char *name;
		const char *data;
		size_t len;
	} bad[] = {
		{"0101", "hello, world\n", 13},
		{"0202", "", 0},
		{"0303", "\177ELF", 4},
		{"0404", "\177ELF\2\1\1\0\0\0\0\0\0\0\0\0\3\0>\0", 20},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, bad[i].name);
		write_file(path, bad[i].data, bad[i].len);
	}
	subj lib;
	install(dir, "libsymlib.so", "", &lib);
	srv_sym *s = open_sym(dir, 2);
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			uint8_t bid[2] = {(uint8_t)(i + 1), (uint8_t)(i + 1)};
			srv_sym_frame f[4];
			size_t n = 7;
			int rc = srv_sym_lookup(s, bid, 2, 0x1000, f, 4, &n);
			if (rc != -ENOEXEC)
				fail_msg("%s (%zu bytes): rc %d, want -ENOEXEC", bad[i].name, bad[i].len, rc);
			assert_int_equal(n, 0);
		}
	const fsym *h = sym_named(&lib, "symlib_hash");
	srv_sym_frame f[ST_MAX_INLINE];
	size_t n;
	assert_int_equal(srv_sym_lookup(s, lib.bid, lib.bidlen, to_off(&lib, h->addr + 8), f,
	                                ST_MAX_INLINE, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(f[0].function, "symlib_hash");
	srv_sym_frames_free(f, n);
	srv_sym_free(s);
	subj_free(&lib);
}

/* A truncated copy of a real binary: whatever it answers, no crash, no
 * error other than -ENOEXEC, and functions where it answers. */
static void test_truncated(void **state)
{
	(void)state;
	char dir[PATH_MAX], from[PATH_MAX], to[PATH_MAX + 200];
	const subj *sj = &subjects[PIE];
	snprintf(from, sizeof(from), "%s/sym_c_pie", sym_dir);
	FILE *f = fopen(from, "rb");
	assert_non_null(f);
	static char buf[1 << 20];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_true(len > 4096 && len < sizeof(buf));
	static const size_t cuts[] = {64, 100, 1000, 4096, 8000, 12000, 16000, 18000};
	for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		if (cuts[c] >= len)
			continue;
		new_dir(dir, sizeof(dir));
		snprintf(to, sizeof(to), "%s/%s", dir, sj->hex);
		write_file(to, buf, cuts[c]);
		srv_sym *s = open_sym(dir, 0);
		for (size_t i = 0; i < subj_addrs[PIE].n; i += 7) {
			srv_sym_frame fr[ST_MAX_INLINE];
			size_t n = 0;
			int rc = srv_sym_lookup(s, sj->bid, sj->bidlen, to_off(sj, subj_addrs[PIE].v[i]),
			                        fr, ST_MAX_INLINE, &n);
			if (rc != 0 && rc != -ENOEXEC)
				fail_msg("cut at %zu bytes: rc %d", cuts[c], rc);
			for (size_t j = 0; j < n; j++)
				assert_non_null(fr[j].function);
			if (rc == 0)
				srv_sym_frames_free(fr, n);
		}
		srv_sym_free(s);
	}
}

/* The separate debug file alone (no binary): objcopy --only-keep-debug
 * keeps the program headers but zeroes p_offset and p_filesz of the
 * segments it empties, so file offsets must be mapped some other way. */
static void test_debug_file_alone(void **state)
{
	(void)state;
	const subj *full = &subjects[LIB];
	subj dbg;
	char dir[PATH_MAX];
	new_dir(dir, sizeof(dir));
	install(dir, "libsymlib.debug", ".debug", &dbg);
	srv_sym *s = open_sym(dir, 0);
	assert_int_equal(compare(s, full, dbg.bid, dbg.bidlen, &subj_addrs[LIB], subj_want[LIB],
	                         "debug file alone"), 0);
	srv_sym_free(s);
	subj_free(&dbg);
}

/* The stripped library with its separate debug file: both together give
 * what addr2line gives for the unstripped library; the stripped file
 * alone names the exported functions from .dynsym and says nothing of
 * files or lines. */
static void test_separate_debug_file(void **state)
{
	(void)state;
	const subj *full = &subjects[LIB];
	const addrs *a = &subj_addrs[LIB];
	subj dbg, str;
	char dir[PATH_MAX];

	new_dir(dir, sizeof(dir));
	install(dir, "libsymlib.debug", ".debug", &dbg);
	assert_memory_equal(dbg.bid, full->bid, full->bidlen);
	size_t bad = 0;
	srv_sym *s;
	install(dir, "libsymlib_stripped.so", "", &str);
	assert_memory_equal(str.bid, full->bid, full->bidlen);
	s = open_sym(dir, 0);
	bad += compare(s, full, str.bid, str.bidlen, a, subj_want[LIB],
	               "stripped file and debug file");
	srv_sym_free(s);

	/* the stripped file alone, in a directory without the debug file: the
	 * oracle is addr2line on that very copy, which has only .dynsym */
	subj_free(&str);
	new_dir(dir, sizeof(dir));
	install(dir, "libsymlib_stripped.so", "", &str);
	char copy[PATH_MAX + 200];
	snprintf(copy, sizeof(copy), "%s/%s", dir, str.hex);
	oans *w = oracle(copy, a);
	s = open_sym(dir, 0);
	bad += compare(s, full, str.bid, str.bidlen, a, w, "stripped file alone");
	assert_int_equal(bad, 0);
	static const char *const exported[] = {"symlib_hash", "symlib_work"};
	for (size_t e = 0; e < 2; e++) {
		const fsym *fs = sym_named(full, exported[e]);
		for (uint64_t b = 0; b < fs->size; b++) {
			srv_sym_frame f[ST_MAX_INLINE];
			size_t n;
			assert_int_equal(srv_sym_lookup(s, str.bid, str.bidlen, to_off(full, fs->addr + b),
			                                f, ST_MAX_INLINE, &n), 0);
			assert_int_equal(n, 1);
			assert_string_equal(f[0].function, exported[e]);
			assert_null(f[0].file);
			assert_int_equal(f[0].line, 0);
			srv_sym_frames_free(f, n);
		}
	}
	srv_sym_free(s);
	oans_free(w, a->n);
	subj_free(&dbg);
	subj_free(&str);
}

/* A stripped library alone: symlib_round is static (in no symbol table
 * left), so nothing names it; the function start comes from the unwind
 * info. Every FDE that readelf --debug-dump=frames lists must give its own
 * start for each of its addresses, an address no FDE covers nothing, and
 * the resolver names all of a function's addresses alike:
 * "[unknown] FILE+0xSTART". */
static void test_func_start(void **state)
{
	(void)state;
	const subj *full = &subjects[LIB];
	subj str;
	char dir[PATH_MAX], cmd[PATH_MAX + 300], line[512];
	new_dir(dir, sizeof(dir));
	install(dir, "libsymlib_stripped.so", "", &str);
	srv_sym *s = open_sym(dir, 0);
	snprintf(cmd, sizeof(cmd), "readelf --debug-dump=frames '%s/%s'", dir, str.hex);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t fdes = 0, covered = 0;
	uint64_t lo_all = ~(uint64_t)0, hi_all = 0;
	while (fgets(line, sizeof(line), p)) {
		uint64_t a, b;
		if (sscanf(line, "%*x %*x %*x FDE cie=%*x pc=%" SCNx64 "..%" SCNx64, &a, &b) != 2 ||
		    b <= a)
			continue;
		fdes++;
		lo_all = a < lo_all ? a : lo_all;
		hi_all = b > hi_all ? b : hi_all;
		for (uint64_t va = a; va < b; va++) {
			uint64_t start = 0;
			assert_int_equal(srv_sym_func_start(s, str.bid, str.bidlen, to_off(full, va),
			                                    &start), 0);
			assert_int_equal(start, to_off(full, a));
			covered++;
		}
	}
	assert_int_equal(pclose(p), 0);
	assert_true(fdes >= 5);
	uint64_t start;
	assert_int_equal(srv_sym_func_start(s, str.bid, str.bidlen, 0, &start), -ENOENT);
	assert_int_equal(srv_sym_func_start(s, str.bid, str.bidlen, to_off(full, hi_all) + 0x10000,
	                                    &start), -ENOENT);

	/* through the resolver: the static function, at its entry and deep
	 * inside, is one name */
	const fsym *fs = sym_named(full, "symlib_round");
	assert_non_null(fs);
	char want[256];
	assert_int_equal(srv_sym_func_start(s, str.bid, str.bidlen, to_off(full, fs->addr + 3),
	                                    &start), 0);
	snprintf(want, sizeof(want), "[unknown] libsymlib.so+0x%" PRIx64, start);
	for (uint64_t b = 0; b < fs->size; b += fs->size / 4 + 1) {
		st_frame_info fi = {.kind = ST_FRAME_USER, .location_id = (int64_t)(1000 + b),
		                    .build_id = str.bid, .build_id_len = (uint32_t)str.bidlen,
		                    .object_name = "/usr/lib/libsymlib.so",
		                    .offset = to_off(full, fs->addr + b)};
		q_sym q[4];
		assert_int_equal(srv_sym_resolve(s, &fi, q, 4), 1);
		assert_string_equal(q[0].function, want);
		assert_null(q[0].file);
		/* the memory cache answers the same */
		assert_int_equal(srv_sym_resolve(s, &fi, q, 4), 1);
		assert_string_equal(q[0].function, want);
	}
	print_message("func_start: %zu FDEs, %zu addresses checked\n", fdes, covered);
	srv_sym_free(s);
	subj_free(&str);
}

/* Offsets in segments without code (ELF header, read-only data, data):
 * no function is there, whatever symbol comes before. */
static void test_outside_code(void **state)
{
	(void)state;
	srv_sym *s = open_sym(all_dir, 0);
	size_t bad = 0;
	for (int k = 0; k < NSUBJ; k++) {
		const subj *sj = &subjects[k];
		for (size_t i = 0; i < sj->nloads; i++) {
			const load *l = &sj->loads[i];
			int code = 0;
			for (size_t j = 0; j < sj->nsyms; j++)
				code |= sj->syms[j].addr - l->vaddr < l->filesz;
			if (code)
				continue;
			const uint64_t offs[] = {l->off, l->off + l->filesz / 2, l->off + l->filesz - 1};
			for (size_t j = 0; j < 3; j++) {
				srv_sym_frame f[ST_MAX_INLINE];
				size_t n = 9;
				int rc = srv_sym_lookup(s, sj->bid, sj->bidlen, offs[j], f, ST_MAX_INLINE, &n);
				if (rc == 0 && n == 0)
					continue;
				bad++;
				print_message("%s: offset 0x%" PRIx64 " (no code): rc %d, %zu frames, "
				              "first %s\n", subj_file[k], offs[j], rc, rc ? 0 : n,
				              rc == 0 && n ? f[0].function : "-");
				if (rc == 0)
					srv_sym_frames_free(f, n);
			}
		}
	}
	assert_int_equal(bad, 0);
	srv_sym_free(s);
}

/* Several threads on one srv_sym that may keep one file open at a time:
 * every lookup reopens, evicts what another thread uses, and must still
 * give the oracle's answer. */
typedef struct worker {
	srv_sym *s;
	int first;
	size_t bad;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	for (int r = 0; r < NSUBJ; r++) {
		int k = (w->first + r) % NSUBJ;
		const subj *sj = &subjects[k];
		/* a slice of the addresses, so files alternate often */
		for (size_t i = (size_t)w->first; i < subj_addrs[k].n; i += 13) {
			srv_sym_frame f[ST_MAX_INLINE];
			size_t n;
			const oans *o = &subj_want[k][i];
			int rc = srv_sym_lookup(w->s, sj->bid, sj->bidlen, to_off(sj, subj_addrs[k].v[i]),
			                        f, ST_MAX_INLINE, &n);
			w->bad += !(rc == 0 && frames_equal(f, n, o));
			if (rc == 0)
				srv_sym_frames_free(f, n);
		}
	}
	return NULL;
}

static void test_threads_and_eviction(void **state)
{
	(void)state;
	srv_sym *s = open_sym(all_dir, 1);
	pthread_t t[4];
	worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (worker){s, i, 0};
		assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	size_t bad = 0;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		bad += w[i].bad;
	}
	srv_sym_stats st;
	srv_sym_get_stats(s, &st);
	assert_int_equal(bad, 0);
	assert_true(st.files_opened > NSUBJ);  /* it did evict and reopen */
	srv_sym_free(s);
}

/* A chain longer than the room given: the innermost frames, never more
 * than max. */
static void test_small_out(void **state)
{
	(void)state;
	const subj *sj = &subjects[PIE];
	const fsym *h = sym_named(sj, "hot_loop");
	srv_sym *s = open_sym(all_dir, 0);
	size_t checked = 0;
	for (uint64_t b = 0; b < h->size; b++) {
		const oans *o = want_at(PIE, h->addr + b);
		if (o->n != 2)
			continue;
		srv_sym_frame f[1];
		size_t n = 9;
		assert_int_equal(srv_sym_lookup(s, sj->bid, sj->bidlen, to_off(sj, h->addr + b), f, 1,
		                                &n), 0);
		assert_int_equal(n, 1);
		assert_string_equal(f[0].function, o->f[0].function);
		srv_sym_frames_free(f, n);
		checked++;
	}
	assert_true(checked > 0);
	srv_sym_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pie),
		cmocka_unit_test(test_nopie),
		cmocka_unit_test(test_shared_library),
		cmocka_unit_test(test_cpp_demangled),
		cmocka_unit_test(test_cpp_static_names),
		cmocka_unit_test(test_inline_chain),
		cmocka_unit_test(test_unknown_build_id),
		cmocka_unit_test(test_not_elf),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_separate_debug_file),
		cmocka_unit_test(test_debug_file_alone),
		cmocka_unit_test(test_outside_code),
		cmocka_unit_test(test_func_start),
		cmocka_unit_test(test_threads_and_eviction),
		cmocka_unit_test(test_small_out),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
