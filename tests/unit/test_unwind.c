/* test_unwind.c - unit tests of agent/unwind_table.c: the unwind table of
 * real files (Debian's libc, libcrypto, libstdc++, libz, liblzma, xz,
 * gzip, and subjects the Makefile builds: one with .debug_frame beside
 * .eh_frame, one in C++, one with GCC's stack realignment) checked row by
 * row against an independent reading of the same CFI, binutils' `readelf
 * --debug-dump=frames-interp`, with the DWARF expressions it prints as
 * "exp" taken from `readelf --debug-dump=frames` (each FDE's instructions
 * replayed), looked up the way the BPF walker does (binary search); then
 * the expression recogniser on forms it must refuse, and the errors of
 * the contract. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <linux/types.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/clock.h"
#include "agent/agent.h"
#include "bpf/profile.h"

static char bindir[512];  /* where this binary is: the subjects are beside it */

/* ---- readelf's view ---- */

/* One row of readelf's table: the rule strings as printed ("rsp+8",
 * "exp", "c-16", "u"; "" when the register has no column). */
/* The DWARF expressions in effect for the three rules the table knows,
 * as readelf's raw dump prints them ("DW_OP_breg7 (rsp): 160;
 * DW_OP_deref"); "" where the rule is no expression, "val" for
 * DW_CFA_val_expression. */
typedef struct {
	char cfa[200], rbp[200], ra[200];
} xexpr;

typedef struct {
	uint64_t pc, end;     /* [pc, end): up to the next row or the FDE's end */
	char cfa[24], rbp[24], ra[24];
	xexpr e;              /* filled from the raw dump */
} xrow;

typedef struct {
	uint64_t start, end;
	int src;              /* 0 .eh_frame, 1 .debug_frame */
	bool signal;          /* its CIE's augmentation has 'S' */
	size_t row0, nrows;   /* into the rows array */
} xfde;

typedef struct {
	xrow *rows;
	size_t nrows, caprows;
	xfde *fdes;
	size_t nfdes, capfdes;
	struct { uint64_t start, end; } text[64], plt[8];
	size_t ntext, nplt;
} xcfi;

typedef struct {
	int src;
	unsigned long off;
	bool signal;
	xrow last;            /* the state a CIE leaves: an FDE without rows */
} xcie;

static void add_row(xcfi *x, const xrow *r)
{
	if (x->nrows == x->caprows) {
		x->caprows = x->caprows ? 2 * x->caprows : 1024;
		x->rows = realloc(x->rows, x->caprows * sizeof(*x->rows));
		assert_non_null(x->rows);
	}
	x->rows[x->nrows++] = *r;
}

static void add_fde(xcfi *x, const xfde *f)
{
	if (x->nfdes == x->capfdes) {
		x->capfdes = x->capfdes ? 2 * x->capfdes : 256;
		x->fdes = realloc(x->fdes, x->capfdes * sizeof(*x->fdes));
		assert_non_null(x->fdes);
	}
	x->fdes[x->nfdes++] = *f;
}

/* Executable and PLT sections, from the section headers (libelf). */
static void read_sections(const char *path, xcfi *x)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_not_equal(elf_version(EV_CURRENT), EV_NONE);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	assert_non_null(e);
	size_t shstrndx;
	assert_int_equal(elf_getshdrstrndx(e, &shstrndx), 0);
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn));) {
		GElf_Shdr sh;
		assert_non_null(gelf_getshdr(scn, &sh));
		const char *name = elf_strptr(e, shstrndx, sh.sh_name);
		if (!(sh.sh_flags & SHF_EXECINSTR) || !sh.sh_size)
			continue;
		if (x->ntext < 64) {
			x->text[x->ntext].start = sh.sh_addr;
			x->text[x->ntext++].end = sh.sh_addr + sh.sh_size;
		}
		if (name && !strncmp(name, ".plt", 4) && x->nplt < 8) {
			x->plt[x->nplt].start = sh.sh_addr;
			x->plt[x->nplt++].end = sh.sh_addr + sh.sh_size;
		}
	}
	elf_end(e);
	close(fd);
}

/* Parses `readelf --debug-dump=frames-interp` of path into x. */
static void read_readelf(const char *path, xcfi *x)
{
	char cmd[1200], line[4096];
	snprintf(cmd, sizeof(cmd),
	         "readelf --debug-dump=frames-interp,no-follow-links '%s' 2>/dev/null", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	int src = -1;
	char cols[32][16];
	size_t ncols = 0;
	xcie cies[64];
	size_t ncies = 0;
	xcie *cie = NULL;       /* the CIE being read */
	xfde fde;
	bool in_fde = false;
	xcie *fde_cie = NULL;
	memset(&fde, 0, sizeof(fde));

#define END_ENTRY()                                                         \
	do {                                                                \
		if (in_fde) {                                               \
			if (fde.nrows == 0 && fde_cie) {                    \
				xrow r = fde_cie->last;                     \
				r.pc = fde.start;                           \
				fde.row0 = x->nrows;                        \
				add_row(x, &r);                             \
				fde.nrows = 1;                              \
			}                                                   \
			for (size_t i_ = 0; i_ < fde.nrows; i_++)           \
				x->rows[fde.row0 + i_].end =                \
					i_ + 1 < fde.nrows ?                \
						x->rows[fde.row0 + i_ + 1].pc : \
						fde.end;                    \
			add_fde(x, &fde);                                   \
		}                                                           \
		in_fde = false;                                             \
		cie = NULL;                                                 \
		ncols = 0;                                                  \
	} while (0)

	while (fgets(line, sizeof(line), p)) {
		unsigned long off, cieoff;
		uint64_t s, e;
		char kind[8];
		if (strstr(line, "Contents of the .eh_frame section")) {
			END_ENTRY();
			src = 0;
			continue;
		}
		if (strstr(line, "Contents of the .debug_frame section")) {
			END_ENTRY();
			src = 1;
			continue;
		}
		if (src < 0)
			continue;
		if (sscanf(line, "%lx %*x %*x %7s", &off, kind) == 2 && !strcmp(kind, "CIE")) {
			END_ENTRY();
			assert_true(ncies < 64);
			cie = &cies[ncies++];
			memset(cie, 0, sizeof(*cie));
			cie->src = src;
			cie->off = off;
			const char *aug = strchr(line, '"');
			cie->signal = aug && strchr(aug + 1, '"') &&
			              memchr(aug + 1, 'S', (size_t)(strchr(aug + 1, '"') - aug - 1));
			continue;
		}
		if (sscanf(line, "%lx %*x %*x FDE cie=%lx pc=%" SCNx64 "..%" SCNx64, &off, &cieoff,
		           &s, &e) == 4) {
			END_ENTRY();
			in_fde = true;
			memset(&fde, 0, sizeof(fde));
			fde.start = s;
			fde.end = e;
			fde.src = src;
			fde.row0 = x->nrows;
			fde_cie = NULL;
			for (size_t i = 0; i < ncies; i++)
				if (cies[i].src == src && cies[i].off == cieoff)
					fde_cie = &cies[i];
			assert_non_null(fde_cie);
			fde.signal = fde_cie->signal;
			continue;
		}
		char *tok[32];
		size_t nt = 0;
		for (char *t = strtok(line, " \t\n"); t && nt < 32; t = strtok(NULL, " \t\n")) {
			if (t[0] == '(' && nt)
				continue;  /* "r10 (r10)": the name of the register before */
			tok[nt++] = t;
		}
		if (nt && !strcmp(tok[0], "LOC")) {
			ncols = 0;
			for (size_t i = 0; i < nt && i < 32; i++)
				snprintf(cols[ncols++], sizeof(cols[0]), "%s", tok[i]);
			continue;
		}
		if (nt < 2 || strlen(tok[0]) != 16 || !ncols || (!cie && !in_fde))
			continue;
		xrow r;
		memset(&r, 0, sizeof(r));
		r.pc = strtoull(tok[0], NULL, 16);
		for (size_t i = 1; i < nt && i < ncols; i++) {
			if (!strcmp(cols[i], "CFA"))
				snprintf(r.cfa, sizeof(r.cfa), "%s", tok[i]);
			else if (!strcmp(cols[i], "rbp"))
				snprintf(r.rbp, sizeof(r.rbp), "%s", tok[i]);
			else if (!strcmp(cols[i], "ra"))
				snprintf(r.ra, sizeof(r.ra), "%s", tok[i]);
		}
		if (cie) {
			cie->last = r;
		} else if (fde.nrows && x->rows[x->nrows - 1].pc == r.pc) {
			x->rows[x->nrows - 1] = r;  /* the later state at the same pc */
		} else {
			add_row(x, &r);
			fde.nrows++;
		}
	}
	END_ENTRY();
#undef END_ENTRY
	assert_int_equal(pclose(p), 0);
}


/* ---- readelf's raw dump: the expressions ---- */

typedef struct {
	uint64_t loc;
	xexpr e;
} xsnap;

/* Each FDE's rule expressions after each of its instructions, in file
 * order (the same order frames-interp lists the FDEs in). */
typedef struct {
	xsnap *snaps;
	size_t nsnaps, capsnaps;
	struct { uint64_t start, end; size_t snap0, nsnaps; } *fdes;
	size_t nfdes, capfdes;
} xraw;

/* "rN (name) ..." of a register instruction: N, or -1. */
static int insn_reg(const char *arg)
{
	int r;
	return sscanf(arg, " r%d", &r) == 1 ? r : -1;
}

/* The text between the first '(' after the register's "(name) " and its
 * matching ')': the expression. */
static void insn_expr(const char *arg, char *out, size_t cap)
{
	const char *p = strchr(arg, '(');
	if (p && strncmp(p, "(DW_OP", 6))
		p = strchr(p + 1, '(');  /* "r6 (rbp) (DW_OP...)": skip the name */
	out[0] = 0;
	if (!p)
		return;
	p++;
	int depth = 1;
	size_t n = 0;
	for (; *p && n + 1 < cap; p++) {
		if (*p == '(')
			depth++;
		if (*p == ')' && --depth == 0)
			break;
		out[n++] = *p;
	}
	out[n] = 0;
}

static void read_raw(const char *path, xraw *x)
{
	char cmd[1200], line[4096];
	snprintf(cmd, sizeof(cmd), "readelf --debug-dump=frames,no-follow-links '%s' 2>/dev/null",
	         path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	bool in_fde = false, started = false;
	uint64_t loc = 0;
	xexpr cur, stack[64];
	size_t depth = 0;
	memset(&cur, 0, sizeof(cur));
	while (fgets(line, sizeof(line), p)) {
		unsigned long off, cieoff;
		uint64_t s, e;
		char kind[8];
		if (strstr(line, "Contents of the .eh_frame section") ||
		    strstr(line, "Contents of the .debug_frame section")) {
			started = true;
			in_fde = false;
			continue;
		}
		if (!started)
			continue;
		if (sscanf(line, "%lx %*x %*x %7s", &off, kind) == 2 && !strcmp(kind, "CIE")) {
			in_fde = false;  /* x86_64 CIEs set no expressions */
			continue;
		}
		if (sscanf(line, "%lx %*x %*x FDE cie=%lx pc=%" SCNx64 "..%" SCNx64, &off, &cieoff,
		           &s, &e) == 4) {
			if (x->nfdes == x->capfdes) {
				x->capfdes = x->capfdes ? 2 * x->capfdes : 256;
				x->fdes = realloc(x->fdes, x->capfdes * sizeof(*x->fdes));
				assert_non_null(x->fdes);
			}
			x->fdes[x->nfdes].start = s;
			x->fdes[x->nfdes].end = e;
			x->fdes[x->nfdes].snap0 = x->nsnaps;
			x->fdes[x->nfdes].nsnaps = 0;
			x->nfdes++;
			in_fde = true;
			loc = s;
			depth = 0;
			memset(&cur, 0, sizeof(cur));
			continue;
		}
		const char *insn = strstr(line, "DW_CFA_");
		if (!in_fde || !insn)
			continue;
		const char *arg = strchr(insn, ':');
		arg = arg ? arg + 1 : insn + strlen(insn);
		const char *to = strstr(insn, " to ");
		if (!strncmp(insn, "DW_CFA_advance_loc", 18) && to) {
			loc = strtoull(to + 4, NULL, 16);
		} else if (!strncmp(insn, "DW_CFA_set_loc", 14)) {
			loc = strtoull(arg, NULL, 16);
		} else if (!strncmp(insn, "DW_CFA_def_cfa_expression", 25)) {
			insn_expr(insn, cur.cfa, sizeof(cur.cfa));
		} else if (!strncmp(insn, "DW_CFA_def_cfa", 14)) {
			/* def_cfa, _register, _offset, _sf: a register again (an
			 * offset alone after an expression is invalid, and libdw
			 * refuses it) */
			if (strncmp(insn, "DW_CFA_def_cfa_offset", 21) || !cur.cfa[0])
				cur.cfa[0] = 0;
			else
				snprintf(cur.cfa, sizeof(cur.cfa), "invalid");
		} else if (!strncmp(insn, "DW_CFA_remember_state", 21)) {
			assert_true(depth < 64);
			stack[depth++] = cur;
		} else if (!strncmp(insn, "DW_CFA_restore_state", 20)) {
			assert_true(depth > 0);
			cur = stack[--depth];
		} else if (insn_reg(arg) == 6 || insn_reg(arg) == 16) {
			char *rule = insn_reg(arg) == 6 ? cur.rbp : cur.ra;
			if (!strncmp(insn, "DW_CFA_expression", 17))
				insn_expr(arg, rule, sizeof(cur.rbp));
			else if (!strncmp(insn, "DW_CFA_val_expression", 21))
				snprintf(rule, sizeof(cur.rbp), "val");
			else
				rule[0] = 0;   /* offset, restore, register, undefined... */
		}
		if (x->nsnaps == x->capsnaps) {
			x->capsnaps = x->capsnaps ? 2 * x->capsnaps : 4096;
			x->snaps = realloc(x->snaps, x->capsnaps * sizeof(*x->snaps));
			assert_non_null(x->snaps);
		}
		x->snaps[x->nsnaps].loc = loc;
		x->snaps[x->nsnaps].e = cur;
		x->nsnaps++;
		x->fdes[x->nfdes - 1].nsnaps++;
	}
	assert_int_equal(pclose(p), 0);
}

/* Gives every row of x the expressions the raw dump has in effect at its
 * pc: the state after the last instruction at or before it. */
static void attach_exprs(xcfi *x, const xraw *raw)
{
	assert_int_equal(raw->nfdes, x->nfdes);
	for (size_t i = 0; i < x->nfdes; i++) {
		const xfde *f = &x->fdes[i];
		assert_true(raw->fdes[i].start == f->start && raw->fdes[i].end == f->end);
		for (size_t k = f->row0; k < f->row0 + f->nrows; k++) {
			xrow *r = &x->rows[k];
			memset(&r->e, 0, sizeof(r->e));
			for (size_t j = 0; j < raw->fdes[i].nsnaps; j++) {
				const xsnap *sn = &raw->snaps[raw->fdes[i].snap0 + j];
				if (sn->loc > r->pc)
					break;
				r->e = sn->e;
			}
		}
	}
}

/* The DWARF register number of one of readelf's x86_64 names, -1. */
static int reg_number(const char *name)
{
	static const char *const names[] = {"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
	                                    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
	for (int i = 0; i < 16; i++)
		if (!strcmp(name, names[i]))
			return i;
	return -1;
}

/* An expression's operations: "DW_OP_breg7 (rsp): 160; DW_OP_deref"
 * gives op[0] "DW_OP_breg7" num[0] 160, op[1] "DW_OP_deref". */
static size_t split_ops(const char *e, char op[][32], long long *num, size_t cap)
{
	size_t n = 0;
	while (*e && n < cap) {
		while (*e == ' ' || *e == ';')
			e++;
		if (!*e)
			break;
		size_t k = 0;
		while (*e && *e != ' ' && *e != ':' && *e != ';' && k < 31)
			op[n][k++] = *e++;
		op[n][k] = 0;
		num[n] = 0;
		while (*e && *e != ';' && *e != ':')
			e++;
		if (*e == ':')
			num[n] = strtoll(e + 1, NULL, 0);
		while (*e && *e != ';')
			e++;
		n++;
	}
	return n;
}

/* The CFA rule a raw expression stands for, by the contract in
 * bpf/profile.h (cfa_kind, cfa_off, aux); SM_CFA_UNSUPPORTED otherwise. */
static void expect_cfa_expr(const char *e, bool signal, struct sm_unw_row *w)
{
	char op[16][32];
	long long num[16];
	size_t n = split_ops(e, op, num, 16);
	w->cfa_kind = SM_CFA_UNSUPPORTED;
	bool sp = n >= 2 && !strcmp(op[0], "DW_OP_breg7"), fp = n >= 2 && !strcmp(op[0], "DW_OP_breg6");
	if (!(sp || fp) || strcmp(op[1], "DW_OP_deref") || n > 3)
		return;
	long long add = 0;
	if (n == 3) {
		if (strcmp(op[2], "DW_OP_plus_uconst") || num[2] < 0 || num[2] > 255)
			return;
		add = num[2];
	}
	if (signal && (!sp || add))
		return;
	w->cfa_kind = signal ? SM_CFA_SIGNAL : sp ? SM_CFA_DEREF_SP : SM_CFA_DEREF_FP;
	w->cfa_off = (int32_t)num[0];
	w->aux = (uint8_t)add;
}

/* A register's rule from its interp column and raw expression. */
static void expect_reg(const char *col, const char *e, uint8_t *kind, int16_t *off)
{
	int n;
	char op[4][32];
	long long num[4];
	*off = 0;
	*kind = SM_REG_UNSUPPORTED;
	if (sscanf(col, "c%d", &n) == 1) {
		*kind = SM_REG_CFA_OFF;
		*off = (int16_t)n;
	} else if (!strcmp(col, "exp") && split_ops(e, op, num, 4) == 1 &&
	           (!strcmp(op[0], "DW_OP_breg7") || !strcmp(op[0], "DW_OP_breg6"))) {
		*kind = op[0][10] == '7' ? SM_REG_SP_OFF : SM_REG_FP_OFF;
		*off = (int16_t)num[0];
	}
}

static bool in_ranges(uint64_t pc, const void *ranges, size_t n)
{
	const struct { uint64_t start, end; } *r = ranges;
	for (size_t i = 0; i < n; i++)
		if (pc >= r[i].start && pc < r[i].end)
			return true;
	return false;
}

/* The row readelf's strings mean, by the contract in bpf/profile.h.
 * cfa_off -1 for SM_CFA_PLT: which of binutils' two layouts is not
 * checked. */
static struct sm_unw_row expect(const xcfi *x, const xrow *r, uint64_t pc, bool signal)
{
	struct sm_unw_row w = {0};
	int n;
	char reg[16];
	if (!strcmp(r->ra, "u")) {
		w.cfa_kind = SM_CFA_END;
		return w;
	}
	if (sscanf(r->cfa, "%15[a-z0-9]%d", reg, &n) == 2 && reg_number(reg) >= 0) {
		int dw = reg_number(reg);
		w.cfa_kind = dw == 7 ? SM_CFA_SP : dw == 6 ? SM_CFA_FP : SM_CFA_REG;
		w.cfa_off = n;
		w.aux = w.cfa_kind == SM_CFA_REG ? (uint8_t)dw : 0;
		if (signal)
			w.cfa_kind = SM_CFA_UNSUPPORTED;
	} else if (!strcmp(r->cfa, "exp") && in_ranges(pc, x->plt, x->nplt) && !signal) {
		w.cfa_kind = SM_CFA_PLT;
		w.cfa_off = -1;
	} else if (!strcmp(r->cfa, "exp")) {
		expect_cfa_expr(r->e.cfa, signal, &w);
	} else {
		w.cfa_kind = SM_CFA_UNSUPPORTED;
	}
	if (w.cfa_kind != SM_CFA_UNSUPPORTED) {
		expect_reg(r->ra, r->e.ra, &w.ra_kind, &w.ra_off);
		if (w.ra_kind == SM_REG_UNSUPPORTED)
			w.cfa_kind = SM_CFA_UNSUPPORTED;
	}
	if (w.cfa_kind == SM_CFA_UNSUPPORTED) {
		memset(&w, 0, sizeof(w));
		w.cfa_kind = SM_CFA_UNSUPPORTED;
		return w;
	}
	/* readelf prints "u" both for an explicit DW_CFA_undefined and for a
	 * register the FDE mentions only later (unreferenced): the x86_64
	 * ABI makes the latter same-value, and GCC never emits the former
	 * for rbp */
	if (!r->rbp[0] || !strcmp(r->rbp, "u") || !strcmp(r->rbp, "s"))
		w.fp_kind = SM_REG_SAME;
	else
		expect_reg(r->rbp, r->e.rbp, &w.fp_kind, &w.fp_off);
	return w;
}

/* The row of pc, as the BPF walker finds it: the last with pc <= it, or
 * SM_CFA_NONE before the first. */
static struct sm_unw_row lookup(const struct sm_unw_row *rows, size_t n, uint64_t pc)
{
	struct sm_unw_row none = {.cfa_kind = SM_CFA_NONE};
	size_t lo = 0, hi = n;
	if (pc > UINT32_MAX)
		return n ? rows[n - 1] : none;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rows[mid].pc <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo ? rows[lo - 1] : none;
}

static bool same(const struct sm_unw_row *w, const struct sm_unw_row *g)
{
	if (w->cfa_kind != g->cfa_kind || w->fp_kind != g->fp_kind || w->ra_kind != g->ra_kind ||
	    w->fp_off != g->fp_off || w->ra_off != g->ra_off || w->aux != g->aux)
		return false;
	if (w->cfa_kind == SM_CFA_PLT && w->cfa_off == -1)
		return g->cfa_off == 10 || g->cfa_off == 11;  /* binutils' two layouts */
	return w->cfa_off == g->cfa_off;
}

static void print_row(const char *what, const struct sm_unw_row *r)
{
	print_message("  %s: cfa %u%+d aux %u fp %u%+d ra %u%+d\n", what, r->cfa_kind, r->cfa_off,
	              r->aux, r->fp_kind, r->fp_off, r->ra_kind, r->ra_off);
}

static int cmp_fde(const void *a, const void *b)
{
	const xfde *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Whether an .eh_frame FDE (sorted by start) covers pc. */
static bool eh_covers(const xfde *eh, size_t n, uint64_t pc)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (eh[mid].start <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo && pc < eh[lo - 1].end;
}

/* ---- one file against readelf ---- */

typedef struct {
	const char *name;     /* for messages */
	const char *path;     /* absolute, or relative to bindir when rel */
	bool rel;
	size_t min_rows;      /* readelf rows that must be compared */
	bool debug_frame;     /* .debug_frame must fill ranges */
	bool bench;           /* print rows and build time */
	unsigned need;        /* row kinds that must be among those compared */
} subject;

/* subject.need: 1 << kind for CFA kinds, 1 << (16 + kind) for the
 * register kinds of rbp and the return address */
#define NEED(k) (1u << (k))
#define NEED_REG(k) (1u << (16 + (k)))

static void test_file(void **state)
{
	const subject *sj = *state;
	char path[1024];
	if (sj->rel)
		snprintf(path, sizeof(path), "%s/%s", bindir, sj->path);
	else
		snprintf(path, sizeof(path), "%s", sj->path);
	int fd = open(path, O_RDONLY);
	if (fd < 0 && !sj->rel) {
		print_message("SKIP %s: %s not on this machine\n", sj->name, path);
		skip();
	}
	if (fd < 0)
		fail_msg("%s: %s (the Makefile builds it beside this test)", path, strerror(errno));

	struct sm_unw_row *rows = NULL;
	size_t n = 0;
	ag_unw_info info;
	int64_t t0 = base_monotonic_ns();
	assert_int_equal(ag_unw_build(fd, 1 << 22, &rows, &n, &info), 0);
	double ms = (double)(base_monotonic_ns() - t0) / 1e6;
	close(fd);
	if (sj->bench)
		print_message("bench %s: %zu rows from %zu FDEs (%zu unsupported) in %.1f ms\n",
		              sj->name, n, info.fdes, info.unsupported,
		              ms);
	assert_int_equal(info.from_debug_frame, sj->debug_frame);
	assert_true(n > 0);
	for (size_t i = 1; i < n; i++) {
		assert_true(rows[i - 1].pc < rows[i].pc);
		struct sm_unw_row a = rows[i - 1], b = rows[i];
		a.pc = b.pc = 0;
		assert_memory_not_equal(&a, &b, sizeof(a));  /* merged */
	}
	assert_int_equal(rows[n - 1].cfa_kind, SM_CFA_NONE);

	xcfi x;
	memset(&x, 0, sizeof(x));
	read_sections(path, &x);
	read_readelf(path, &x);
	assert_true(x.nfdes > 0);
	xraw raw;
	memset(&raw, 0, sizeof(raw));
	read_raw(path, &raw);
	attach_exprs(&x, &raw);
	free(raw.snaps);
	free(raw.fdes);

	/* .eh_frame first, .debug_frame where it says nothing */
	xfde *eh = calloc(x.nfdes, sizeof(*eh));
	assert_non_null(eh);
	size_t neh = 0;
	for (size_t i = 0; i < x.nfdes; i++)
		if (x.fdes[i].src == 0 && x.fdes[i].end > x.fdes[i].start)
			eh[neh++] = x.fdes[i];
	qsort(eh, neh, sizeof(*eh), cmp_fde);
	for (size_t i = 1; i < neh; i++)
		assert_true(eh[i - 1].end <= eh[i].start);  /* real files: no overlaps */

	size_t compared = 0, plt = 0, end = 0, fp = 0, debug = 0, bad = 0, expr = 0;
	unsigned seen = 0;
	for (size_t i = 0; i < x.nfdes; i++) {
		const xfde *f = &x.fdes[i];
		if (f->end <= f->start)
			continue;
		for (size_t k = f->row0; k < f->row0 + f->nrows; k++) {
			const xrow *r = &x.rows[k];
			uint64_t probe[2] = {r->pc, r->end - 1};
			for (int j = 0; j < 2; j++) {
				if (r->end <= r->pc || (f->src == 1 && eh_covers(eh, neh, probe[j])))
					continue;
				struct sm_unw_row w = expect(&x, r, r->pc, f->signal);
				struct sm_unw_row g = lookup(rows, n, probe[j]);
				if (!same(&w, &g)) {
					if (bad++ < 5) {
						print_message("%s: pc 0x%" PRIx64 " (FDE 0x%" PRIx64
						              "..0x%" PRIx64 ", %s): readelf %s %s %s\n",
						              sj->name, probe[j], f->start, f->end,
						              f->src ? ".debug_frame" : ".eh_frame", r->cfa,
						              r->rbp, r->ra);
						print_message("  expressions: cfa '%s' rbp '%s' ra '%s'\n",
						              r->e.cfa, r->e.rbp, r->e.ra);
						print_row("want", &w);
						print_row("got ", &g);
					}
					continue;
				}
				compared++;
				plt += g.cfa_kind == SM_CFA_PLT;
				end += g.cfa_kind == SM_CFA_END;
				fp += g.cfa_kind == SM_CFA_FP || g.fp_kind == SM_REG_CFA_OFF;
				debug += f->src == 1;
				expr += !strcmp(r->cfa, "exp") || !strcmp(r->rbp, "exp") ||
				        !strcmp(r->ra, "exp");
				seen |= NEED(g.cfa_kind) | NEED_REG(g.fp_kind) | NEED_REG(g.ra_kind);
			}
		}
	}

	/* between and around FDEs: nothing */
	xfde *all = calloc(x.nfdes, sizeof(*all));
	assert_non_null(all);
	size_t nall = 0;
	for (size_t i = 0; i < x.nfdes; i++)
		if (x.fdes[i].end > x.fdes[i].start)
			all[nall++] = x.fdes[i];
	qsort(all, nall, sizeof(*all), cmp_fde);
	size_t gaps = 0;
	uint64_t cover = 0;
	for (size_t i = 0; i < nall; i++) {
		if (all[i].start > cover) {
			uint64_t probe[2] = {cover, all[i].start - 1};
			for (int j = i ? 0 : 1; j < 2; j++) {
				struct sm_unw_row g = lookup(rows, n, probe[j]);
				if (g.cfa_kind != SM_CFA_NONE && bad++ < 5) {
					print_message("%s: pc 0x%" PRIx64 " is in no FDE\n", sj->name,
					              probe[j]);
					print_row("got ", &g);
				}
				gaps++;
			}
		}
		if (all[i].end > cover)
			cover = all[i].end;
	}
	bad += lookup(rows, n, cover).cfa_kind != SM_CFA_NONE;
	bad += lookup(rows, n, UINT32_MAX).cfa_kind != SM_CFA_NONE;

	print_message("%s: %zu readelf rows compared (%zu PLT, %zu END, %zu with rbp, %zu with "
	              "expressions, %zu from .debug_frame), %zu gaps, %zu mismatches; table %zu "
	              "rows, %zu unsupported\n", sj->name, compared, plt, end, fp, expr, debug, gaps,
	              bad, n, info.unsupported);
	free(all);
	free(eh);
	free(x.rows);
	free(x.fdes);
	free(rows);
	assert_int_equal(bad, 0);
	assert_true(compared >= sj->min_rows);
	if (sj->debug_frame)
		assert_true(debug > 0);
	if (!strcmp(sj->name, "libc")) {
		assert_true(plt > 0);  /* .plt's expression */
		assert_true(fp > 0);   /* rbp-based CFAs and saved rbp */
	}
	if ((seen & sj->need) != sj->need)
		fail_msg("%s: row kinds 0x%x were to be compared, only 0x%x were", sj->name,
		         sj->need, seen & sj->need);
}

static const subject subjects[] = {
	/* __restore_rt: a signal frame, its registers at sp-relative offsets */
	{"libc", "/lib/x86_64-linux-gnu/libc.so.6", false, 20000, false, true,
	 NEED(SM_CFA_SIGNAL) | NEED_REG(SM_REG_SP_OFF)},
	/* OpenSSL's perlasm: CFA = *(rsp + N) + 8 after realigning, and in
	 * a register (rax, rsi, r11...) before it is saved */
	{"libcrypto", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3", false, 20000, false, true,
	 NEED(SM_CFA_DEREF_SP) | NEED(SM_CFA_REG)},
	{"libstdc++", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", false, 20000, false, false, 0},
	{"libz", "/lib/x86_64-linux-gnu/libz.so.1", false, 1000, false, false},
	{"liblzma", "/lib/x86_64-linux-gnu/liblzma.so.5", false, 2000, false, false},
	{"xz", "/usr/bin/xz", false, 1000, false, true},
	{"gzip", "/usr/bin/gzip", false, 1000, false, false},
	/* tests/programs/fp_busy.c without asynchronous unwind tables: its
	 * functions in .debug_frame, crt's in .eh_frame, _start's END */
	{"unw_dframe", "unw_dframe", true, 20, true, false},
	/* C++: "zPLR" CIEs (personality, LSDA) before the 'R' */
	{"sym_cpp", "sym/sym_cpp", true, 20, false, false},
	/* GCC's stack realignment (drap_work): CFA in r10, then *(rbp - 8),
	 * the caller's rbp at [rbp] */
	{"unw_nofp", "unw/unw_nofp", true, 20, false, false,
	 NEED(SM_CFA_DEREF_FP) | NEED(SM_CFA_REG) | NEED_REG(SM_REG_FP_OFF)},
};

/* ---- Go: rows from .gopclntab against the toolchain's own view ----
 *
 * Go's linker writes no .eh_frame; the agent derives each function's rows
 * from the pcsp programs of .gopclntab. The oracle is the unstripped
 * twin's .debug_frame, which Go's linker writes from the same deltas
 * (readelf), for the CFA and the return address at every pc of every
 * function, and binutils' disassembly of the twin for rbp: saved at
 * CFA - 16 from just past the `mov %rbp,F-8(%rsp)` that follows the first
 * stack adjustment while the CFA is at least that frame's, the caller's
 * where the CFA is sp + 8 (and at that store itself), undefined anywhere
 * else. The table is built from the stripped file (-ldflags='-s -w': no
 * .debug_frame, no .symtab). */

typedef struct {
	uint64_t start, end;     /* the function, from objdump's symbols */
	char name[96];
	uint64_t store, store_end; /* its first `mov %rbp,X(%rsp)`, 0 none */
	long long x;             /* X */
} gofunc;

/* Functions and their first rbp store from `objdump -d` of path. */
static gofunc *go_objdump(const char *path, size_t *n)
{
	char cmd[1200], line[512];
	snprintf(cmd, sizeof(cmd), "objdump -d --no-show-raw-insn '%s' 2>/dev/null", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	gofunc *v = NULL;
	size_t cap = 0, k = 0;
	bool want_end = false; /* the store was the last instruction read */
	while (fgets(line, sizeof(line), p)) {
		unsigned long long a;
		char nm[96];
		if (sscanf(line, "%llx <%95[^>]>:", &a, nm) == 2) {
			if (k && !v[k - 1].end)
				v[k - 1].end = a;
			if (k == cap) {
				cap = cap ? 2 * cap : 1024;
				v = realloc(v, cap * sizeof(*v));
				assert_non_null(v);
			}
			memset(&v[k], 0, sizeof(v[k]));
			v[k].start = a;
			snprintf(v[k].name, sizeof(v[k].name), "%s", nm);
			k++;
			want_end = false;
			continue;
		}
		char ins[400];
		if (!k || sscanf(line, " %llx:\t%399[^\n]", &a, ins) != 2)
			continue;
		if (want_end) {
			v[k - 1].store_end = a;
			want_end = false;
		}
		const char *o = ins + 3;
		if (v[k - 1].store || strncmp(ins, "mov", 3) || (*o != ' ' && *o != '\t'))
			continue;
		while (*o == ' ' || *o == '\t')
			o++;
		if (strncmp(o, "%rbp,", 5))
			continue;
		o += 5;
		char *e = (char *)o;
		long long xv = *o == '(' ? 0 : strtoll(o, &e, 16);
		if (strncmp(e, "(%rsp)", 6) || (e[6] && e[6] != ' ' && e[6] != '\t'))
			continue;
		v[k - 1].store = a;
		v[k - 1].x = xv;
		want_end = true;
	}
	pclose(p);
	if (k && !v[k - 1].end)
		v[k - 1].end = UINT64_MAX;  /* the last function in .text */
	*n = k;
	return v;
}

static void test_go(void **state)
{
	(void)state;
	char twin[1024], stripped[1024];
	snprintf(twin, sizeof(twin), "%s/sym/go_busy", bindir);
	snprintf(stripped, sizeof(stripped), "%s/sym/go_busy_stripped", bindir);
	int fd = open(stripped, O_RDONLY);
	if (fd < 0)
		fail_msg("%s: %s (the Makefile builds it)", stripped, strerror(errno));
	struct sm_unw_row *rows = NULL;
	size_t n = 0;
	ag_unw_info info;
	assert_int_equal(ag_unw_build(fd, 1 << 22, &rows, &n, &info), 0);
	close(fd);
	assert_true(info.go_funcs > 1000);
	assert_false(info.from_debug_frame);
	for (size_t i = 1; i < n; i++)
		assert_true(rows[i - 1].pc < rows[i].pc);

	xcfi x;
	memset(&x, 0, sizeof(x));
	read_readelf(twin, &x);
	size_t nf = 0;
	gofunc *fn = go_objdump(twin, &nf);
	assert_true(nf > 1000);

	size_t pcs = 0, bad = 0, saved = 0, same_fp = 0, undef = 0, fdes = 0, ends = 0, nones = 0;
	size_t f = 0;
	for (size_t i = 0; i < x.nfdes; i++) {
		const xfde *d = &x.fdes[i];
		if (d->src != 1 || d->end <= d->start)
			continue;
		fdes++;
		while (f < nf && fn[f].end <= d->start)
			f++;
		const gofunc *g = f < nf && fn[f].start <= d->start ? &fn[f] : NULL;
		/* the first pc with a frame, from readelf */
		uint64_t first_frame = 0;
		for (size_t k = d->row0; k < d->row0 + d->nrows && !first_frame; k++)
			if (strcmp(x.rows[k].cfa, "rsp+8") && x.rows[k].end > x.rows[k].pc)
				first_frame = x.rows[k].pc;
		struct sm_unw_row r0 = lookup(rows, n, d->start);
		if (r0.cfa_kind == SM_CFA_END || r0.cfa_kind == SM_CFA_NONE) {
			/* the whole function so: a top frame (END), or one that
			 * writes SP itself (NONE), by the table's flags */
			for (uint64_t pc = d->start; pc < d->end; pc++) {
				struct sm_unw_row r = lookup(rows, n, pc);
				if (r.cfa_kind != r0.cfa_kind && bad++ < 5)
					print_message("go: %s pc 0x%" PRIx64 " kind %u in a function of %u\n",
					              g ? g->name : "?", pc, r.cfa_kind, r0.cfa_kind);
			}
			if (r0.cfa_kind == SM_CFA_END) {
				ends++;
				print_message("go: %s is a top frame\n", g ? g->name : "?");
			} else {
				nones++;
			}
			continue;
		}
		for (size_t k = d->row0; k < d->row0 + d->nrows; k++) {
			const xrow *xr = &x.rows[k];
			int cfa_off;
			assert_int_equal(sscanf(xr->cfa, "rsp+%d", &cfa_off), 1);
			assert_string_equal(xr->ra, "c-8");
			for (uint64_t pc = xr->pc; pc < xr->end; pc++) {
				struct sm_unw_row w = {.cfa_kind = SM_CFA_SP, .cfa_off = cfa_off,
				                       .ra_kind = SM_REG_CFA_OFF, .ra_off = -8};
				if (cfa_off == 8 || (g && g->store && pc >= g->store && pc < g->store_end))
					w.fp_kind = SM_REG_SAME;
				else if (g && g->store && g->store == first_frame && pc >= g->store_end &&
				         cfa_off >= g->x + 16) {
					w.fp_kind = SM_REG_CFA_OFF;
					w.fp_off = -16;
				} else {
					w.fp_kind = SM_REG_UNDEF;
				}
				struct sm_unw_row r = lookup(rows, n, pc);
				pcs++;
				if (!same(&w, &r)) {
					if (bad++ < 5) {
						print_message("go: %s pc 0x%" PRIx64 ": readelf %s %s, store "
						              "0x%" PRIx64 "\n", g ? g->name : "?", pc, xr->cfa,
						              xr->ra, g ? g->store : 0);
						print_row("want", &w);
						print_row("got ", &r);
					}
					continue;
				}
				saved += w.fp_kind == SM_REG_CFA_OFF;
				same_fp += w.fp_kind == SM_REG_SAME;
				undef += w.fp_kind == SM_REG_UNDEF;
			}
		}
	}
	print_message("go_busy: %zu functions in .gopclntab, %zu FDEs of the twin's .debug_frame; "
	              "%zu pcs compared (rbp saved at CFA-16 at %zu, the caller's at %zu, "
	              "undefined at %zu), %zu top frames, %zu functions that write SP left to "
	              "frame pointers, %zu mismatches; table %zu rows\n",
	              info.go_funcs, fdes, pcs, saved, same_fp, undef, ends, nones, bad, n);
	free(fn);
	free(x.rows);
	free(x.fdes);
	free(rows);
	assert_int_equal(bad, 0);
	assert_true(pcs > 100000);
	assert_true(saved > pcs / 2);
	assert_true(ends >= 2 && ends <= 8);
	assert_true(nones <= 40);
}

/* ---- the contract's errors ---- */

static int memfd_with(const void *p, size_t n)
{
	int fd = memfd_create("unw", 0);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	return fd;
}

static void *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*n = (size_t)ftell(f);
	rewind(f);
	void *p = malloc(*n);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, *n, f), *n);
	fclose(f);
	return p;
}

static void test_not_elf(void **state)
{
	(void)state;
	struct sm_unw_row *rows = (void *)1;
	size_t n = 7;
	ag_unw_info info;
	int fd = memfd_with("#!/bin/sh\necho hello\n", 21);
	assert_int_equal(ag_unw_build(fd, 1000, &rows, &n, &info), -ENOEXEC);
	assert_null(rows);
	assert_int_equal(n, 0);
	close(fd);
	fd = memfd_with("", 0);
	assert_int_equal(ag_unw_build(fd, 1000, &rows, &n, &info), -ENOEXEC);
	close(fd);
}

/* An arm64 file (the e_machine of an x86_64 one changed) is not this
 * table's: ENOEXEC, not a table of wrong registers. */
static void test_other_machine(void **state)
{
	(void)state;
	char path[1024];
	snprintf(path, sizeof(path), "%s/unw_dframe", bindir);
	size_t len;
	uint8_t *p = read_all(path, &len);
	Elf64_Ehdr *h = (Elf64_Ehdr *)p;
	h->e_machine = EM_AARCH64;
	int fd = memfd_with(p, len);
	struct sm_unw_row *rows;
	size_t n;
	ag_unw_info info;
	assert_int_equal(ag_unw_build(fd, 1000, &rows, &n, &info), -ENOEXEC);
	close(fd);
	free(p);
}

/* The file offset is not used, the descriptor stays open, and the same
 * file gives the same table. */
static void test_fd_untouched(void **state)
{
	(void)state;
	char path[1024];
	snprintf(path, sizeof(path), "%s/unw_dframe", bindir);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct sm_unw_row *a, *b;
	size_t na, nb;
	ag_unw_info info;
	assert_int_equal(ag_unw_build(fd, 1000, &a, &na, &info), 0);
	assert_int_equal(lseek(fd, 1234, SEEK_SET), 1234);
	assert_int_equal(ag_unw_build(fd, 1000, &b, &nb, &info), 0);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 1234);
	assert_int_equal(na, nb);
	assert_memory_equal(a, b, na * sizeof(*a));
	close(fd);
	free(a);
	free(b);
}

/* max_rows bounds the table: one row fewer than it needs is E2BIG. */
static void test_max_rows(void **state)
{
	(void)state;
	char path[1024];
	snprintf(path, sizeof(path), "%s/unw_dframe", bindir);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	struct sm_unw_row *rows;
	size_t n, n2;
	ag_unw_info info;
	assert_int_equal(ag_unw_build(fd, 100000, &rows, &n, &info), 0);
	free(rows);
	assert_int_equal(ag_unw_build(fd, n, &rows, &n2, &info), 0);
	assert_int_equal(n2, n);
	free(rows);
	assert_int_equal(ag_unw_build(fd, n - 1, &rows, &n2, &info), -E2BIG);
	assert_null(rows);
	assert_int_equal(n2, 0);
	close(fd);
}

int main(int argc, char **argv)
{
	(void)argc;
	snprintf(bindir, sizeof(bindir), "%s", argv[0]);
	char *slash = strrchr(bindir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(bindir, sizeof(bindir), ".");
	struct CMUnitTest tests[sizeof(subjects) / sizeof(subjects[0]) + 5];
	size_t nt = 0;
	for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++)
		tests[nt++] = (struct CMUnitTest){
			.name = subjects[i].name,
			.test_func = test_file,
			.initial_state = (void *)&subjects[i],
		};
	tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_go);
	tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_not_elf);
	tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_other_machine);
	tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_fd_untouched);
	tests[nt++] = (struct CMUnitTest)cmocka_unit_test(test_max_rows);
	return _cmocka_run_group_tests("unwind", tests, nt, NULL, NULL);
}
