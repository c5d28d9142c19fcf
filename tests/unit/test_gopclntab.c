/* test_gopclntab.c - the symbolizer's reader of Go's .gopclntab
 * (server/symbolize_go.c) against Go's own tools, on the subject the
 * Makefile builds from tests/programs/go_busy.go with Debian's golang-go
 * into $SMOLDER_SYM_DIR twice: go_busy_stripped with -ldflags='-s -w' (no
 * .symtab, no DWARF) and go_busy, its unstripped twin.
 *
 * The oracles: `go tool nm` of the twin (every function's start and name),
 * `go tool objdump` of the twin (file and line of every instruction, from
 * Go's debug/gosym, and the function that holds it), and the twin's DWARF
 * read by the symbolizer's libdw path (the inline chains: names and call
 * lines). Then the whole symbolizer on the stripped file under a build ID,
 * a table with an unknown magic (addresses, counted) and malformed ones.
 * Go 1.16 and 1.20+ tables are checked by rewriting the real 1.19 table
 * in those layouts (Debian 12 ships no other Go toolchain). */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/symbolize_int.h"

static char sym_dir[1024];   /* $SMOLDER_SYM_DIR */
static char tmp_dir[1024];   /* $SMOLDER_TEST_TMP */
static char twin[PATH_MAX], stripped[PATH_MAX];

/* ---- a file read whole, and its Go table ---- */

typedef struct gfile {
	uint8_t *data;
	size_t len;
	Elf *elf;
	srv_gotab *t;
	uint64_t tab_off, tab_addr, tab_size;   /* .gopclntab */
} gfile;

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("%s: %s (is SMOLDER_SYM_DIR right?)", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	assert_true(n > 0);
	uint8_t *p = malloc((size_t)n);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return p;
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	if (n)
		assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* The file's bytes, its ELF handle over them and its table (*rc gets
 * srv_sym__go_open_elf's answer; the table is NULL unless 0). */
static void gfile_open_mem(gfile *g, uint8_t *data, size_t len, int *rc)
{
	memset(g, 0, sizeof(*g));
	g->data = data;
	g->len = len;
	g->elf = elf_memory((char *)data, len);
	assert_non_null(g->elf);
	size_t shstr;
	assert_int_equal(elf_getshdrstrndx(g->elf, &shstr), 0);
	for (Elf_Scn *s = NULL; (s = elf_nextscn(g->elf, s));) {
		GElf_Shdr sh;
		assert_non_null(gelf_getshdr(s, &sh));
		const char *nm = elf_strptr(g->elf, shstr, sh.sh_name);
		if (nm && !strcmp(nm, ".gopclntab")) {
			g->tab_off = sh.sh_offset;
			g->tab_addr = sh.sh_addr;
			g->tab_size = sh.sh_size;
		}
	}
	assert_true(g->tab_size > 0);
	*rc = srv_sym__go_open_elf(g->elf, &g->t);
}

static void gfile_open(gfile *g, const char *path)
{
	size_t len;
	uint8_t *d = slurp(path, &len);
	int rc;
	gfile_open_mem(g, d, len, &rc);
	if (rc)
		fail_msg("%s: srv_sym__go_open_elf: %s", path, strerror(-rc));
}

static void gfile_close(gfile *g)
{
	srv_sym__go_free(g->t);
	if (g->elf)
		elf_end(g->elf);
	free(g->data);
	memset(g, 0, sizeof(*g));
}

/* ---- Go's tools ---- */

/* Runs cmd with its output in a file under tmp_dir; returns it open. */
static FILE *run(const char *cmd, const char *name)
{
	char out[PATH_MAX], line[3 * PATH_MAX];
	snprintf(out, sizeof(out), "%s/%s", tmp_dir, name);
	snprintf(line, sizeof(line), "%s >'%s'", cmd, out);
	if (system(line) != 0)
		fail_msg("`%s` failed (is golang-go installed?)", cmd);
	FILE *f = fopen(out, "r");
	assert_non_null(f);
	return f;
}

/* A symbol's name as the linker writes it into the table: without the
 * ".abi0" of assembly functions' ELF symbols, and with everything between
 * the first '[' and the last ']' written "[...]" (Go 1.18+ shortens
 * generic instantiations and array types that way). malloc'd. */
static char *table_name(const char *sym)
{
	size_t n = strlen(sym);
	if (n > 5 && !strcmp(sym + n - 5, ".abi0"))
		n -= 5;
	char *out = malloc(n + 6);
	assert_non_null(out);
	const char *o = memchr(sym, '[', n), *c = NULL;
	for (size_t j = n; o && j-- > (size_t)(o - sym);)
		if (sym[j] == ']') {
			c = sym + j;
			break;
		}
	if (o && c && c > o)
		snprintf(out, n + 6, "%.*s[...]%.*s", (int)(o - sym), sym, (int)(sym + n - c - 1), c + 1);
	else
		snprintf(out, n + 6, "%.*s", (int)n, sym);
	return out;
}

typedef struct nmsym {
	uint64_t addr;
	char *name;
} nmsym;

static int cmp_nm(const void *a, const void *b)
{
	const nmsym *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* `go tool nm` of the twin: its text symbols (T, t), sorted. */
static nmsym *go_nm(size_t *n)
{
	char cmd[PATH_MAX + 64], line[4096];
	snprintf(cmd, sizeof(cmd), "go tool nm '%s'", twin);
	FILE *f = run(cmd, "nm.txt");
	size_t cap = 4096;
	nmsym *v = malloc(cap * sizeof(*v));
	assert_non_null(v);
	*n = 0;
	while (fgets(line, sizeof(line), f)) {
		/* "%8x %c %s\n": the name is the rest of the line, spaces and all */
		char *end, *p = line;
		line[strcspn(line, "\n")] = 0;
		uint64_t a = strtoull(p, &end, 16);
		if (end == p || end[0] != ' ' || (end[1] != 'T' && end[1] != 't') || end[2] != ' ')
			continue;
		if (*n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof(*v));
			assert_non_null(v);
		}
		v[(*n)++] = (nmsym){a, table_name(end + 3)};
	}
	fclose(f);
	qsort(v, *n, sizeof(*v), cmp_nm);
	return v;
}

static void nm_free(nmsym *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* One instruction of `go tool objdump`. */
typedef struct insn {
	uint64_t addr;
	char *func;          /* the TEXT symbol it is under (shared) */
	char file[128];      /* objdump prints the base name */
	int64_t line;
} insn;

/* Every instruction of the twin, as objdump reads it. */
static insn *go_objdump(size_t *n, char ***funcs, size_t *nfuncs)
{
	char cmd[PATH_MAX + 64], line[8192];
	snprintf(cmd, sizeof(cmd), "go tool objdump '%s'", twin);
	FILE *f = run(cmd, "objdump.txt");
	size_t cap = 1 << 16, fcap = 4096;
	insn *v = malloc(cap * sizeof(*v));
	char **fv = malloc(fcap * sizeof(*fv));
	assert_non_null(v);
	assert_non_null(fv);
	*n = *nfuncs = 0;
	char *cur = NULL;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "TEXT ", 5)) {
			/* "TEXT name(SB) file": names may hold spaces, "(SB) " ends them */
			char *e = strstr(line, "(SB)");
			assert_non_null(e);
			*e = 0;
			if (*nfuncs == fcap) {
				fcap *= 2;
				fv = realloc(fv, fcap * sizeof(*fv));
				assert_non_null(fv);
			}
			cur = fv[(*nfuncs)++] = table_name(line + 5);
			continue;
		}
		/* "  file:line\t0xaddr\t...", one or more tabs apart */
		char *tab = strchr(line, '\t'), *p = line, *hex = tab;
		while (hex && *hex == '\t')
			hex++;
		if (!cur || !tab || strncmp(hex, "0x", 2))
			continue;
		while (*p == ' ')
			p++;
		*tab = 0;
		char *colon = strrchr(p, ':');
		assert_non_null(colon);
		*colon = 0;
		if (*n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof(*v));
			assert_non_null(v);
		}
		insn *in = &v[(*n)++];
		in->addr = strtoull(hex, NULL, 16);
		in->func = cur;
		snprintf(in->file, sizeof(in->file), "%.127s", p);
		in->line = strtoll(colon + 1, NULL, 10);
	}
	fclose(f);
	*funcs = fv;
	return v;
}

static const char *base(const char *p)
{
	const char *s = p ? strrchr(p, '/') : NULL;
	return s ? s + 1 : p;
}

/* ---- the tests ---- */

/* Every function of the table is a text symbol of the twin at the same
 * address, and every text symbol of the twin in the table's range is a
 * function of the table, the linker's own markers aside; the stripped
 * file's table lists the same functions at the same addresses. */
static void test_functions_vs_nm(void **state)
{
	(void)state;
	gfile g, s;
	gfile_open(&g, twin);
	gfile_open(&s, stripped);
	size_t nn;
	nmsym *nm = go_nm(&nn);
	size_t nf = srv_sym__go_nfuncs(g.t);
	assert_true(nf > 1000);
	assert_int_equal(srv_sym__go_nfuncs(s.t), nf);
	assert_int_equal(srv_sym__go_version(g.t), SRV_GO_118);  /* Debian 12's Go 1.19 */
	nmsym *tab = malloc(nf * sizeof(*tab));
	assert_non_null(tab);
	for (size_t i = 0; i < nf; i++) {
		const char *name, *sname;
		uint64_t e, se;
		assert_int_equal(srv_sym__go_func(g.t, i, &e, &name), 0);
		assert_int_equal(srv_sym__go_func(s.t, i, &se, &sname), 0);
		if (e != se || strcmp(name, sname))
			fail_msg("function %zu: %s at 0x%" PRIx64 " in the twin, %s at 0x%" PRIx64
			         " stripped", i, name, e, sname, se);
		tab[i] = (nmsym){e, (char *)name};
		nmsym key = {e, (char *)name};
		if (!bsearch(&key, nm, nn, sizeof(*nm), cmp_nm))
			fail_msg("%s at 0x%" PRIx64 " is not a text symbol of go tool nm", name, e);
	}
	/* the other way: nm's text symbols between the first entry and the
	 * last function's end */
	uint64_t lo = tab[0].addr, hi = tab[nf - 1].addr;
	qsort(tab, nf, sizeof(*tab), cmp_nm);
	size_t missing = 0;
	for (size_t i = 0; i < nn; i++) {
		if (nm[i].addr < lo || nm[i].addr > hi)
			continue;
		if (!strcmp(nm[i].name, "runtime.text") || !strcmp(nm[i].name, "runtime.etext"))
			continue;  /* markers, not functions */
		if (!bsearch(&nm[i], tab, nf, sizeof(*tab), cmp_nm)) {
			fprintf(stderr, "nm has %s at 0x%" PRIx64 ", the table not\n", nm[i].name,
			        nm[i].addr);
			missing++;
		}
	}
	assert_int_equal(missing, 0);
	print_message("%zu functions, all at nm's addresses with nm's names\n", nf);
	free(tab);
	nm_free(nm, nn);
	gfile_close(&g);
	gfile_close(&s);
}

/* objdump's file and line for every instruction are the innermost frame's,
 * and the function objdump lists it under is the outermost frame: on the
 * twin's table and on the stripped file's. */
static void check_objdump(const gfile *g, const char *what)
{
	size_t n, nfn;
	char **fns;
	insn *v = go_objdump(&n, &fns, &nfn);
	assert_true(n > 10000);
	size_t bad = 0, main_insns = 0;
	for (size_t i = 0; i < n; i++) {
		srv_sym_frame f[ST_MAX_INLINE];
		size_t k;
		assert_int_equal(srv_sym__go_lookup(g->t, v[i].addr, f, ST_MAX_INLINE, &k), 0);
		const char *why = NULL;
		if (k == 0)
			why = "no frame";
		else if (strcmp(f[k - 1].function, v[i].func))
			why = "outermost function";
		else if (!f[0].file || strcmp(base(f[0].file), v[i].file) || f[0].line != v[i].line)
			why = "innermost file:line";
		if (why && bad++ < 20)
			fprintf(stderr, "%s: 0x%" PRIx64 ": %s differs: objdump %s %s:%" PRId64
			        ", we %s %s:%" PRId64 "\n", what, v[i].addr, why, v[i].func, v[i].file,
			        v[i].line, k ? f[k - 1].function : "-", k && f[0].file ? f[0].file : "-",
			        k ? f[0].line : 0);
		main_insns += !strncmp(v[i].func, "main.", 5);
		srv_sym_frames_free(f, k);
	}
	print_message("%s: %zu instructions of %zu functions (%zu in main.*), %zu differ\n", what,
	              n, nfn, main_insns, bad);
	assert_int_equal(bad, 0);
	assert_true(main_insns > 50);
	for (size_t i = 0; i < nfn; i++)
		free(fns[i]);
	free(fns);
	free(v);
}

static void test_lines_vs_objdump(void **state)
{
	(void)state;
	gfile g, s;
	gfile_open(&g, twin);
	gfile_open(&s, stripped);
	check_objdump(&g, "twin");
	check_objdump(&s, "stripped");
	gfile_close(&g);
	gfile_close(&s);
}

/* A file offset of va through the file's PT_LOADs; ~0 if none. */
static uint64_t to_off(const gfile *g, uint64_t va)
{
	size_t nph;
	assert_int_equal(elf_getphdrnum(g->elf, &nph), 0);
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(g->elf, (int)i, &ph) && ph.p_type == PT_LOAD && va >= ph.p_vaddr &&
		    va - ph.p_vaddr < ph.p_filesz)
			return va - ph.p_vaddr + ph.p_offset;
	}
	return ~(uint64_t)0;
}

/* A debug-info directory with path as the file of build ID bid. */
static void install(const char *dir, const char *path, const char *hex)
{
	char to[PATH_MAX + 200];
	size_t len;
	uint8_t *d = slurp(path, &len);
	snprintf(to, sizeof(to), "%s/%s", dir, hex);
	write_file(to, d, len);
	free(d);
}

static srv_sym *open_sym(const char *sub)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s", tmp_dir, sub);
	if (mkdir(dir, 0755) && errno != EEXIST)
		fail_msg("mkdir %s: %s", dir, strerror(errno));
	srv_sym_opts o = {.debuginfo_dir = dir};
	srv_sym *s;
	assert_int_equal(srv_sym_new(&o, &s), 0);
	return s;
}

/* Go writes "<autogenerated>" for generated code in both tables; the
 * symbolizer puts DWARF's compilation directory before a relative name */
static int same_file(const char *go, const char *dwarf)
{
	if (go[0] == '<')
		return !strcmp(go, base(dwarf));
	return !strcmp(go, dwarf);
}

static const uint8_t TWIN_BID[2] = {0x7a, 0x01};

/* The inline chains of the stripped file's table are those of the twin's
 * DWARF, which the symbolizer reads with libdw: at every instruction, the
 * same functions innermost first, each caller at the file and line of its
 * call (the innermost frame's file and line are objdump's business above:
 * at a handful of instructions DWARF's line program and the table differ,
 * and objdump agrees with the table). One known difference: Go's DWARF
 * has no inlined-subroutine entry for a method inlined into its
 * autogenerated pointer wrapper, and names the code after the wrapper
 * alone, where the table, as the runtime's tracebacks, has the method
 * inlined into the wrapper; those are counted and their outer frames
 * checked. */
static void test_inline_vs_dwarf(void **state)
{
	(void)state;
	gfile g;
	gfile_open(&g, stripped);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/dwarf", tmp_dir);
	srv_sym *s = open_sym("dwarf");
	install(dir, twin, "7a01");
	size_t n, nfn, bad = 0, inl = 0, main_inl = 0, wrappers = 0;
	char **fns;
	insn *v = go_objdump(&n, &fns, &nfn);
	for (size_t i = 0; i < n; i++) {
		srv_sym_frame gf[ST_MAX_INLINE], df[ST_MAX_INLINE];
		size_t gn, dn;
		assert_int_equal(srv_sym__go_lookup(g.t, v[i].addr, gf, ST_MAX_INLINE, &gn), 0);
		assert_int_equal(srv_sym_lookup(s, TWIN_BID, sizeof(TWIN_BID), to_off(&g, v[i].addr), df,
		                                ST_MAX_INLINE, &dn), 0);
		const char *why = NULL;
		size_t skip = 0;  /* 1: DWARF lacks our innermost frame */
		if (gn == dn + 1 && gf[gn - 1].file && !strcmp(gf[gn - 1].file, "<autogenerated>") &&
		    !strcmp(gf[gn - 1].function, df[dn - 1].function)) {
			wrappers++;
			skip = 1;
		} else if (gn != dn) {
			why = "depth";
		}
		/* (the wrapper's frame, DWARF's last, was matched by name) */
		for (size_t k = 0; k + skip < dn && !why; k++) {
			const srv_sym_frame *a = &gf[k], *b = &df[k];
			char *dname = table_name(b->function);
			if (strcmp(a->function, dname))
				why = "function";
			else if (k > 0 && (!a->file || !b->file || !same_file(a->file, b->file)))
				why = "caller's file";
			else if (k > 0 && a->line != b->line)
				why = "caller's line";
			free(dname);
		}
		if (why && bad++ < 20) {
			fprintf(stderr, "0x%" PRIx64 ": %s differs\n", v[i].addr, why);
			for (size_t k = 0; k < gn || k < dn; k++)
				fprintf(stderr, "  %-40s %s:%" PRId64 " | %s %s:%" PRId64 "\n",
				        k < gn ? gf[k].function : "", k < gn && gf[k].file ? base(gf[k].file) : "",
				        k < gn ? gf[k].line : 0, k < dn ? df[k].function : "",
				        k < dn && df[k].file ? base(df[k].file) : "", k < dn ? df[k].line : 0);
		}
		inl += gn > 1;
		main_inl += gn > 1 && !strcmp(gf[0].function, "main.mix");
		srv_sym_frames_free(gf, gn);
		srv_sym_frames_free(df, dn);
	}
	print_message("%zu instructions, %zu in inlined code (%zu in main.mix), %zu in methods "
	              "inlined into their pointer wrappers, %zu differ\n", n, inl, main_inl, wrappers,
	              bad);
	assert_int_equal(bad, 0);
	assert_true(main_inl > 3);
	for (size_t i = 0; i < nfn; i++)
		free(fns[i]);
	free(fns);
	free(v);
	srv_sym_free(s);
	gfile_close(&g);
}

int main(void)
{
	const char *d = getenv("SMOLDER_SYM_DIR");
	const char *t = getenv("SMOLDER_TEST_TMP");
	snprintf(sym_dir, sizeof(sym_dir), "%s", d ? d : "build/tests/sym");
	snprintf(tmp_dir, sizeof(tmp_dir), "%s", t ? t : "/tmp");
	snprintf(twin, sizeof(twin), "%s/go_busy", sym_dir);
	snprintf(stripped, sizeof(stripped), "%s/go_busy_stripped", sym_dir);
	if (elf_version(EV_CURRENT) == EV_NONE)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_functions_vs_nm),
		cmocka_unit_test(test_lines_vs_objdump),
		cmocka_unit_test(test_inline_vs_dwarf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
