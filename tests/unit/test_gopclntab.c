/* test_gopclntab.c - the symbolizer's reader of Go's .gopclntab
 * (wire/gopclntab.c, through server/symbolize_go.c) against Go's own tools, on the subject the
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
	wire_gotab *t;
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
 * wire_go_open_elf's answer; the table is NULL unless 0). */
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
	*rc = wire_go_open_elf(g->elf, &g->t);
}

static void gfile_open(gfile *g, const char *path)
{
	size_t len;
	uint8_t *d = slurp(path, &len);
	int rc;
	gfile_open_mem(g, d, len, &rc);
	if (rc)
		fail_msg("%s: wire_go_open_elf: %s", path, strerror(-rc));
}

static void gfile_close(gfile *g)
{
	wire_go_free(g->t);
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
	size_t nf = wire_go_nfuncs(g.t);
	assert_true(nf > 1000);
	assert_int_equal(wire_go_nfuncs(s.t), nf);
	assert_int_equal(wire_go_version(g.t), WIRE_GO_118);  /* Debian 12's Go 1.19 */
	nmsym *tab = malloc(nf * sizeof(*tab));
	assert_non_null(tab);
	for (size_t i = 0; i < nf; i++) {
		const char *name, *sname;
		uint64_t e, se;
		assert_int_equal(wire_go_func(g.t, i, &e, &name), 0);
		assert_int_equal(wire_go_func(s.t, i, &se, &sname), 0);
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

/* ---- the whole symbolizer on the stripped file ---- */

static const uint8_t STRIP_BID[2] = {0x5a, 0x01};

/* Under a build ID in a debug-info directory, as the server keeps it:
 * srv_sym_lookup by file offset answers what the reader answers by
 * address, for every instruction of main.*, and main.mix shows inlined
 * into main.hashLoop. */
static void test_symbolizer_stripped(void **state)
{
	(void)state;
	gfile g;
	gfile_open(&g, stripped);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/strip", tmp_dir);
	srv_sym *s = open_sym("strip");
	install(dir, stripped, "5a01");
	size_t n, nfn, checked = 0, mix = 0;
	char **fns;
	insn *v = go_objdump(&n, &fns, &nfn);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(v[i].func, "main.", 5))
			continue;
		srv_sym_frame a[ST_MAX_INLINE], b[ST_MAX_INLINE];
		size_t an, bn;
		assert_int_equal(srv_sym__go_lookup(g.t, v[i].addr, a, ST_MAX_INLINE, &an), 0);
		assert_int_equal(srv_sym_lookup(s, STRIP_BID, sizeof(STRIP_BID), to_off(&g, v[i].addr), b,
		                                ST_MAX_INLINE, &bn), 0);
		assert_int_equal(an, bn);
		assert_true(an > 0);
		for (size_t k = 0; k < an; k++) {
			assert_string_equal(a[k].function, b[k].function);
			assert_string_equal(a[k].file, b[k].file);
			assert_int_equal(a[k].line, b[k].line);
		}
		/* (fmt.Println is inlined into main.main: only the function that
		 * holds the code is surely in go_busy.go) */
		assert_string_equal(base(b[bn - 1].file), "go_busy.go");
		mix += bn == 2 && !strcmp(b[0].function, "main.mix") &&
		       !strcmp(b[1].function, "main.hashLoop");
		checked++;
		srv_sym_frames_free(a, an);
		srv_sym_frames_free(b, bn);
	}
	assert_true(checked > 50);
	assert_true(mix > 3);
	srv_sym_stats st;
	srv_sym_get_stats(s, &st);
	assert_int_equal(st.go_tables, 1);
	assert_int_equal(st.go_unsupported + st.go_malformed, 0);
	for (size_t i = 0; i < nfn; i++)
		free(fns[i]);
	free(fns);
	free(v);
	srv_sym_free(s);
	gfile_close(&g);
}

/* ---- tables that cannot be read ---- */

/* A copy of the stripped file with the table's first bytes changed by
 * patch (at the table's offset in the file). */
typedef void (*patch_fn)(uint8_t *tab, size_t len);

static uint8_t *patched(const gfile *g, patch_fn patch, size_t *len)
{
	uint8_t *d = malloc(g->len);
	assert_non_null(d);
	memcpy(d, g->data, g->len);
	patch(d + g->tab_off, g->tab_size);
	*len = g->len;
	return d;
}

static void put32le(uint8_t *p, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		p[k] = (uint8_t)(v >> (8 * k));
}

static void put64le(uint8_t *p, uint64_t v)
{
	for (int k = 0; k < 8; k++)
		p[k] = (uint8_t)(v >> (8 * k));
}

static void magic_future(uint8_t *t, size_t n) { (void)n; put32le(t, 0xfffffff2); }
static void magic_go12(uint8_t *t, size_t n) { (void)n; put32le(t, 0xfffffffb); }
static void magic_bigendian(uint8_t *t, size_t n)
{
	(void)n;
	t[0] = t[1] = t[2] = 0xff;
	t[3] = 0xf0;
}
static void bad_pad(uint8_t *t, size_t n) { (void)n; t[4] = 1; }
static void bad_quantum(uint8_t *t, size_t n) { (void)n; t[6] = 3; }
static void bad_ptrsize(uint8_t *t, size_t n) { (void)n; t[7] = 2; }
static void huge_nfunc(uint8_t *t, size_t n) { (void)n; put64le(t + 8, UINT64_MAX / 2); }
static void pcln_past_end(uint8_t *t, size_t n) { put64le(t + 8 + 7 * 8, n + 8); }
static void names_in_header(uint8_t *t, size_t n) { (void)n; put64le(t + 8 + 3 * 8, 8); }
static void nfunc_past_end(uint8_t *t, size_t n) { put64le(t + 8, n / 8); }

/* Unknown versions: -EPROTONOSUPPORT from the reader, and through the
 * symbolizer no frame at any of main.*'s instructions (the query shows
 * [unknown] FILE+0xOFFSET), counted as unsupported; malformed headers:
 * -EBADMSG, counted as malformed. The intact file beside them is read. */
static void test_unreadable_tables(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		patch_fn patch;
		int rc;
	} cases[] = {
		{"a magic newer than Go 1.20's", magic_future, -EPROTONOSUPPORT},
		{"Go 1.2-1.15's magic", magic_go12, -EPROTONOSUPPORT},
		{"big-endian Go 1.18", magic_bigendian, -EPROTONOSUPPORT},
		{"non-zero pad", bad_pad, -EBADMSG},
		{"quantum 3", bad_quantum, -EBADMSG},
		{"pointer size 2", bad_ptrsize, -EBADMSG},
		{"2^63 functions", huge_nfunc, -EBADMSG},
		{"functab past the end", pcln_past_end, -EBADMSG},
		{"names inside the header", names_in_header, -EBADMSG},
		{"more functions than fit", nfunc_past_end, -EBADMSG},
	};
	const size_t nc = sizeof(cases) / sizeof(cases[0]);
	gfile g;
	gfile_open(&g, stripped);
	char dir[PATH_MAX], path[PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s/bad", tmp_dir);
	srv_sym *s = open_sym("bad");
	install(dir, stripped, "5a01");
	size_t nfn, n, unsupported = 0;
	char **fns;
	insn *v = go_objdump(&n, &fns, &nfn);
	for (size_t c = 0; c < nc; c++) {
		size_t len;
		uint8_t *d = patched(&g, cases[c].patch, &len);
		gfile b;
		int rc;
		gfile_open_mem(&b, d, len, &rc);
		if (rc != cases[c].rc)
			fail_msg("%s: wire_go_open_elf %d, want %d", cases[c].name, rc, cases[c].rc);
		unsupported += rc == -EPROTONOSUPPORT;
		snprintf(path, sizeof(path), "%s/6b%02zx", dir, c);
		write_file(path, d, len);
		gfile_close(&b);
		uint8_t bid[2] = {0x6b, (uint8_t)c};
		for (size_t i = 0; i < n; i++) {
			if (strncmp(v[i].func, "main.", 5))
				continue;
			srv_sym_frame f[ST_MAX_INLINE];
			size_t k = 9;
			assert_int_equal(srv_sym_lookup(s, bid, 2, to_off(&g, v[i].addr), f, ST_MAX_INLINE,
			                                &k), 0);
			if (k)
				fail_msg("%s: 0x%" PRIx64 " named %s", cases[c].name, v[i].addr, f[0].function);
		}
	}
	/* the intact file still reads */
	srv_sym_frame f[ST_MAX_INLINE];
	size_t k;
	assert_int_equal(srv_sym_lookup(s, STRIP_BID, sizeof(STRIP_BID), to_off(&g, v[n - 1].addr), f,
	                                ST_MAX_INLINE, &k), 0);
	assert_true(k > 0);
	srv_sym_frames_free(f, k);
	srv_sym_stats st;
	srv_sym_get_stats(s, &st);
	assert_int_equal(st.go_tables, 1);
	assert_int_equal(st.go_unsupported, unsupported);
	assert_int_equal(st.go_malformed, nc - unsupported);
	for (size_t i = 0; i < nfn; i++)
		free(fns[i]);
	free(fns);
	free(v);
	srv_sym_free(s);
	gfile_close(&g);
}

/* The file cut short at points inside and around the table: never a
 * crash or an error, and whatever is named is a function of the table. */
static void test_truncated(void **state)
{
	(void)state;
	gfile g;
	gfile_open(&g, stripped);
	size_t nf = wire_go_nfuncs(g.t);
	for (int c = 0; c < 12; c++) {
		size_t cut = (size_t)(g.tab_off + g.tab_size * (uint64_t)c / 10);
		if (cut > g.len)
			cut = g.len;
		uint8_t *d = malloc(cut ? cut : 1);
		assert_non_null(d);
		memcpy(d, g.data, cut);
		Elf *e = elf_memory((char *)d, cut);
		wire_gotab *t = NULL;
		int rc = e ? wire_go_open_elf(e, &t) : -ENOENT;
		if (rc != 0 && rc != -ENOENT && rc != -EBADMSG)
			fail_msg("cut at %zu: rc %d", cut, rc);
		for (size_t i = 0; t && i < nf; i += 3) {
			uint64_t entry;
			const char *name;
			assert_int_equal(wire_go_func(g.t, i, &entry, &name), 0);
			srv_sym_frame f[ST_MAX_INLINE];
			size_t k;
			assert_int_equal(srv_sym__go_lookup(t, entry + 1, f, ST_MAX_INLINE, &k), 0);
			for (size_t j = 0; j < k; j++)
				assert_non_null(f[j].function);
			srv_sym_frames_free(f, k);
		}
		wire_go_free(t);
		if (e)
			elf_end(e);
		free(d);
	}
	gfile_close(&g);
}

/* ---- other versions: the real table rewritten ----
 *
 * Debian 12 ships Go 1.19 alone, so Go 1.16's and 1.20's layouts are
 * checked on the real 1.19 table written again in each layout, with the
 * functions' names, pc-value programs and inline trees copied (1.20's
 * inline entries converted to its 16-byte form), the file tables as they
 * are, a moduledata that points at the new table, and its inline trees in
 * a data segment of their own. The rewritten table must name every
 * instruction exactly as the real one. The writer also makes the fuzz
 * target's seeds (SMOLDER_GO_SEEDS=DIR, a subset of the functions). */

typedef struct buf {
	uint8_t *p;
	size_t n, cap;
} buf;

static size_t buf_put(buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	if (p)
		memcpy(b->p + b->n, p, n);
	else
		memset(b->p + b->n, 0, n);
	b->n += n;
	return b->n - n;
}

static void buf_u32(buf *b, uint32_t v)
{
	uint8_t x[4];
	put32le(x, v);
	buf_put(b, x, 4);
}

static void buf_u64(buf *b, uint64_t v)
{
	uint8_t x[8];
	put64le(x, v);
	buf_put(b, x, 8);
}

static void buf_align(buf *b, uint64_t base_addr, unsigned a)
{
	while ((base_addr + b->n) % a)
		buf_put(b, NULL, 1);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint32_t varint(const uint8_t **p)
{
	uint32_t v = 0;
	for (unsigned s = 0;; s += 7) {
		uint8_t b = *(*p)++;
		v |= (uint32_t)(b & 0x7f) << s;
		if (!(b & 0x80))
			return v;
	}
}

/* The source table (Go 1.18 layout, 8-byte pointers) and where things are. */
typedef struct src {
	const uint8_t *tab;
	uint64_t nfunc, names, cutab, files, pctab, pcln, text, gofunc;
	const gfile *g;
} src;

/* A new table being written. */
typedef struct wr {
	int ver;
	const src *s;
	buf names, pctab, data;   /* data: moduledata, then inline trees */
	uint64_t tabaddr, dataaddr;
} wr;

static uint32_t copy_name(wr *w, uint32_t off)
{
	const char *nm = (const char *)w->s->tab + w->s->names + off;
	return (uint32_t)buf_put(&w->names, nm, strlen(nm) + 1);
}

/* Copies the program at old pctab offset off of a function at entry;
 * *max gets its largest value. 0 stays 0 (no program). */
static uint32_t copy_prog(wr *w, uint32_t off, uint64_t entry, int32_t *max)
{
	if (!off)
		return 0;
	const uint8_t *p0 = w->s->tab + w->s->pctab + off, *p = p0;
	uint64_t pc = entry;
	uint32_t val = UINT32_MAX;
	*max = -1;
	for (;;) {
		uint32_t uv = varint(&p);
		if (uv == 0 && pc != entry)
			break;
		val += (uv & 1) ? ~(uv >> 1) : uv >> 1;
		if ((int32_t)val > *max)
			*max = (int32_t)val;
		pc += varint(&p);
	}
	return (uint32_t)buf_put(&w->pctab, p0, (size_t)(p - p0));
}

/* Copies the inline tree at addr with entries 0..max into the data
 * segment in w->ver's form; returns its address. */
static uint64_t copy_tree(wr *w, uint64_t addr, int32_t max)
{
	buf_align(&w->data, w->dataaddr, 4);
	uint64_t at = w->dataaddr + w->data.n;
	for (int32_t i = 0; i <= max; i++) {
		const uint8_t *e = NULL;
		/* the source entry: 20 bytes in the file's rodata */
		size_t nph;
		assert_int_equal(elf_getphdrnum(w->s->g->elf, &nph), 0);
		for (size_t k = 0; k < nph && !e; k++) {
			GElf_Phdr ph;
			uint64_t va = addr + (uint64_t)i * 20;
			if (gelf_getphdr(w->s->g->elf, (int)k, &ph) && ph.p_type == PT_LOAD &&
			    va >= ph.p_vaddr && va + 20 <= ph.p_vaddr + ph.p_filesz)
				e = w->s->g->data + ph.p_offset + (va - ph.p_vaddr);
		}
		assert_non_null(e);
		uint32_t name = copy_name(w, rd32(e + 12));
		if (w->ver == WIRE_GO_120) {
			uint8_t x[16] = {e[2]};               /* funcID, pad */
			put32le(x + 4, name);
			memcpy(x + 8, e + 16, 4);             /* parentPc */
			put32le(x + 12, 0);                   /* startLine: not read */
			buf_put(&w->data, x, 16);
		} else {
			uint8_t x[20];
			memcpy(x, e, 20);
			put32le(x + 12, name);
			buf_put(&w->data, x, 20);
		}
	}
	return at;
}

/* Writes the functions idx[0..n) of s in version ver; out gets the
 * table (at tabaddr) and the data segment (at dataaddr). */
static void rewrite(const src *s, int ver, const size_t *idx, size_t n, uint64_t tabaddr,
                    uint64_t dataaddr, buf *tab, buf *data)
{
	wr w = {.ver = ver, .s = s, .tabaddr = tabaddr, .dataaddr = dataaddr};
	buf recs = {0};
	buf_put(&w.pctab, NULL, 1);  /* offset 0 is "no program" */
	buf_put(&w.data, NULL, 41 * 8);  /* moduledata, filled below */
	uint64_t gofunc = dataaddr + 41 * 8;
	uint64_t *entry = calloc(n + 1, sizeof(*entry)), *recoff = calloc(n, sizeof(*recoff));
	assert_non_null(entry);
	assert_non_null(recoff);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *ft = s->tab + s->pcln + idx[i] * 8;
		const uint8_t *r = s->tab + s->pcln + rd32(ft + 4);
		entry[i] = s->text + rd32(ft);
		uint32_t npc = rd32(r + 28), pcd[16];
		uint8_t nfd = r[39];
		assert_true(npc <= 16);
		int32_t maxix = -1, m;
		for (uint32_t j = 0; j < npc; j++) {
			pcd[j] = copy_prog(&w, rd32(r + 40 + 4 * j), entry[i], &m);
			if (j == 2)
				maxix = m;
		}
		uint64_t tree = 0;
		if (nfd > 3 && rd32(r + 40 + 4 * npc + 12) != UINT32_MAX && maxix >= 0)
			tree = copy_tree(&w, s->gofunc + rd32(r + 40 + 4 * npc + 12), maxix);
		buf_align(&recs, 0, 8);
		recoff[i] = recs.n;
		if (ver == WIRE_GO_116)
			buf_u64(&recs, entry[i]);
		else
			buf_u32(&recs, (uint32_t)(entry[i] - s->text));
		buf_u32(&recs, copy_name(&w, rd32(r + 4)));
		buf_put(&recs, r + 8, 8);  /* args, deferreturn */
		buf_u32(&recs, 0);         /* pcsp: not read */
		int32_t unused;
		buf_u32(&recs, copy_prog(&w, rd32(r + 20), entry[i], &unused));
		buf_u32(&recs, copy_prog(&w, rd32(r + 24), entry[i], &unused));
		buf_u32(&recs, npc);
		buf_put(&recs, r + 32, 4);  /* cuOffset */
		if (ver == WIRE_GO_120)
			buf_u32(&recs, 0);      /* startLine */
		buf_put(&recs, r + 36, 4);  /* funcID, flag, pad, nfuncdata */
		for (uint32_t j = 0; j < npc; j++)
			buf_u32(&recs, pcd[j]);
		if (ver == WIRE_GO_116) {
			/* pointers, aligned in the address space: records start
			 * 8-aligned in a table at an 8-aligned address */
			buf_align(&recs, 0, 8);
			for (uint32_t j = 0; j < nfd; j++)
				buf_u64(&recs, j == 3 ? tree : 0);
		} else {
			for (uint32_t j = 0; j < nfd; j++)
				buf_u32(&recs, j == 3 && tree ? (uint32_t)(tree - gofunc) : UINT32_MAX);
		}
	}
	const uint8_t *last = s->tab + s->pcln + idx[n - 1] * 8;
	entry[n] = s->text + rd32(last + 8);  /* the next entry, or the end */
	/* the table: header, names, cutab and files as they are, pctab, pcln */
	uint64_t nfiles = rd64(s->tab + 16);
	buf_put(tab, NULL, 72);
	uint64_t o_names = buf_put(tab, w.names.p, w.names.n);
	uint64_t o_cu = buf_put(tab, s->tab + s->cutab, s->files - s->cutab);
	uint64_t o_files = buf_put(tab, s->tab + s->files, s->pctab - s->files);
	uint64_t o_pctab = buf_put(tab, w.pctab.p, w.pctab.n);
	buf_align(tab, 0, 8);
	uint64_t o_pcln = tab->n;
	uint64_t fs = ver == WIRE_GO_116 ? 8 : 4;
	uint64_t ftsz = (2 * n + 1) * fs;
	ftsz = (ftsz + 7) & ~(uint64_t)7;
	buf_put(tab, NULL, ftsz);
	uint64_t o_recs = buf_put(tab, recs.p, recs.n);
	for (size_t i = 0; i <= n; i++) {
		uint8_t *f = tab->p + o_pcln + i * 2 * fs;
		if (ver == WIRE_GO_116) {
			put64le(f, entry[i]);
			if (i < n)
				put64le(f + 8, o_recs - o_pcln + recoff[i]);
		} else {
			put32le(f, (uint32_t)(entry[i] - s->text));
			if (i < n)
				put32le(f + 4, (uint32_t)(o_recs - o_pcln + recoff[i]));
		}
	}
	uint8_t *h = tab->p;
	put32le(h, ver == WIRE_GO_116 ? 0xfffffffa : ver == WIRE_GO_118 ? 0xfffffff0 : 0xfffffff1);
	h[6] = 1;
	h[7] = 8;
	uint64_t words[8], nw = 0;
	words[nw++] = n;
	words[nw++] = nfiles;
	if (ver != WIRE_GO_116)
		words[nw++] = s->text;
	words[nw++] = o_names;
	words[nw++] = o_cu;
	words[nw++] = o_files;
	words[nw++] = o_pctab;
	words[nw++] = o_pcln;
	for (uint64_t i = 0; i < nw; i++)
		put64le(h + 8 + 8 * i, words[i]);
	/* moduledata: the words the reader checks and uses */
	uint8_t *md = w.data.p;
	put64le(md, tabaddr);
	put64le(md + 1 * 8, tabaddr + o_names);
	put64le(md + 13 * 8, tabaddr + o_pcln);
	put64le(md + 22 * 8, s->text);
	put64le(md + (ver == WIRE_GO_118 ? 38 : 40) * 8, gofunc);
	*data = w.data;
	free(w.names.p);
	free(w.pctab.p);
	free(recs.p);
	free(entry);
	free(recoff);
}

/* The address of a symbol of the twin (any type), from go tool nm. */
static uint64_t nm_addr(const char *name)
{
	char cmd[PATH_MAX + 64], line[4096];
	snprintf(cmd, sizeof(cmd), "go tool nm '%s'", twin);
	FILE *f = run(cmd, "nm_all.txt");
	uint64_t a = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *end;
		uint64_t v = strtoull(line, &end, 16);
		if (end[0] == ' ' && end[1] && end[2] == ' ' && !strcmp(end + 3, name))
			a = v;
	}
	fclose(f);
	if (!a)
		fail_msg("go tool nm: no %s", name);
	return a;
}

#define NEW_TAB 0x10000000u   /* where the fuzz target maps them too */
#define NEW_DATA 0x20000000u

static wire_gotab *open_rewritten(const buf *tab, const buf *data, wire_go_seg *segs)
{
	segs[0] = (wire_go_seg){NEW_TAB, tab->p, tab->n};
	segs[1] = (wire_go_seg){NEW_DATA, data->p, data->n};
	wire_go_image img = {segs, 2, NEW_TAB, tab->n, 0};
	wire_gotab *t;
	assert_int_equal(wire_go_open(&img, &t), 0);
	return t;
}

static void test_other_versions(void **state)
{
	(void)state;
	gfile g;
	gfile_open(&g, twin);
	src s = {.tab = g.data + g.tab_off, .g = &g};
	s.nfunc = rd64(s.tab + 8);
	s.text = rd64(s.tab + 24);
	s.names = rd64(s.tab + 32);
	s.cutab = rd64(s.tab + 40);
	s.files = rd64(s.tab + 48);
	s.pctab = rd64(s.tab + 56);
	s.pcln = rd64(s.tab + 64);
	s.gofunc = nm_addr("go.func.*");
	assert_int_equal(s.text, nm_addr("runtime.text"));
	size_t *idx = calloc(s.nfunc, sizeof(*idx)), n, nfn;
	assert_non_null(idx);
	for (size_t i = 0; i < s.nfunc; i++)
		idx[i] = i;
	char **fns;
	insn *v = go_objdump(&n, &fns, &nfn);
	static const int vers[] = {WIRE_GO_116, WIRE_GO_118, WIRE_GO_120};
	for (size_t vi = 0; vi < 3; vi++) {
		buf tab = {0}, data = {0};
		wire_go_seg segs[2];
		rewrite(&s, vers[vi], idx, s.nfunc, NEW_TAB, NEW_DATA, &tab, &data);
		wire_gotab *t = open_rewritten(&tab, &data, segs);
		assert_int_equal(wire_go_version(t), vers[vi]);
		assert_true(wire_go_has_inline(t));
		assert_int_equal(wire_go_nfuncs(t), s.nfunc);
		size_t bad = 0, inl = 0;
		for (size_t i = 0; i < n; i++) {
			srv_sym_frame a[ST_MAX_INLINE], b[ST_MAX_INLINE];
			size_t an, bn;
			assert_int_equal(srv_sym__go_lookup(g.t, v[i].addr, a, ST_MAX_INLINE, &an), 0);
			assert_int_equal(srv_sym__go_lookup(t, v[i].addr, b, ST_MAX_INLINE, &bn), 0);
			int same = an == bn;
			for (size_t k = 0; k < an && same; k++)
				same = !strcmp(a[k].function, b[k].function) && a[k].line == b[k].line &&
				       (a[k].file ? b[k].file && !strcmp(a[k].file, b[k].file) : !b[k].file);
			if (!same && bad++ < 10)
				fprintf(stderr, "Go %d.%d layout: 0x%" PRIx64 ": %s %s:%" PRId64 " (%zu frames)"
				        ", the real table %s %s:%" PRId64 " (%zu)\n", vers[vi] / 100,
				        vers[vi] % 100, v[i].addr, bn ? b[0].function : "-",
				        bn && b[0].file ? b[0].file : "-", bn ? b[0].line : 0, bn,
				        an ? a[0].function : "-", an && a[0].file ? a[0].file : "-",
				        an ? a[0].line : 0, an);
			inl += bn > 1;
			srv_sym_frames_free(a, an);
			srv_sym_frames_free(b, bn);
		}
		print_message("Go %d.%d layout: %zu instructions (%zu in inlined code), %zu differ\n",
		              vers[vi] / 100, vers[vi] % 100, n, inl, bad);
		assert_int_equal(bad, 0);
		assert_true(inl > 10000);
		wire_go_free(t);
		free(tab.p);
		free(data.p);
	}
	/* SMOLDER_GO_SEEDS=DIR: the fuzz target's seeds, main.* and the
	 * runtime functions they sit under, in each layout:
	 * u32 table length, table, data segment */
	const char *seeds = getenv("SMOLDER_GO_SEEDS");
	for (size_t vi = 0; seeds && vi < 3; vi++) {
		size_t k = 0;
		for (size_t i = 0; i < s.nfunc; i++) {
			uint64_t e;
			const char *nm;
			assert_int_equal(wire_go_func(g.t, i, &e, &nm), 0);
			if (!strncmp(nm, "main.", 5) || !strcmp(nm, "runtime.main") ||
			    !strcmp(nm, "runtime.goexit") || !strcmp(nm, "runtime.printlock") ||
			    !strcmp(nm, "runtime.lockRank.String") || !strcmp(nm, "runtime.(*lockRank).String"))
				idx[k++] = i;
		}
		buf tab = {0}, data = {0}, out = {0};
		rewrite(&s, vers[vi], idx, k, NEW_TAB, NEW_DATA, &tab, &data);
		buf_u32(&out, (uint32_t)tab.n);
		buf_put(&out, tab.p, tab.n);
		buf_put(&out, data.p, data.n);
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/go1%d_%zu_functions", seeds, vers[vi] % 100, k);
		write_file(path, out.p, out.n);
		print_message("wrote %s (%zu bytes)\n", path, out.n);
		free(tab.p);
		free(data.p);
		free(out.p);
	}
	for (size_t i = 0; i < nfn; i++)
		free(fns[i]);
	free(fns);
	free(v);
	free(idx);
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
		cmocka_unit_test(test_symbolizer_stripped),
		cmocka_unit_test(test_unreadable_tables),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_other_versions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
