/* unwind_table.c - an ELF object's call-frame information (.eh_frame; in
 * a Go binary, Go's own stack-pointer deltas from .gopclntab; and
 * .debug_frame where those say nothing) turned into the flat rows the BPF
 * walker binary-searches (bpf/profile.h). libdw evaluates the CFI and
 * wire/gopclntab.c reads Go's table; this file only decides which pcs to
 * ask about and translates the answers. It does not unwind anything, nor
 * know about processes or load addresses. */
#include <errno.h>
#include <gelf.h>
#include <linux/types.h>
#include <libelf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <elfutils/libdw.h>
#include <dwarf.h>

#include "agent/agent.h"
#include "bpf/profile.h"
#include "wire/gopclntab.h"

/* Everything that names a register or the machine, in one place, so that
 * arm64 can follow with a second instance (and its own CFA expressions). */
struct unw_arch {
	int machine;          /* e_machine */
	int elfclass;         /* ELFCLASS64: absptr is 8 bytes */
	unsigned sp, fp, ra;  /* DWARF register numbers */
};

static const struct unw_arch arch_x86_64 = {
	.machine = EM_X86_64,
	.elfclass = ELFCLASS64,
	.sp = 7,   /* rsp */
	.fp = 6,   /* rbp */
	.ra = 16,  /* return address column */
};

/* One FDE's address range, or the part of it this table takes. */
struct range {
	uint64_t start, end;
	size_t seq;           /* order read: first one wins an overlap */
	size_t cost;          /* bytes of CFI one lookup in it may execute */
	int src;              /* SRC_EH, SRC_DEBUG or SRC_GO */
	size_t fn;            /* SRC_GO: the function's index in .gopclntab */
};

enum { SRC_EH, SRC_DEBUG, SRC_GO };

struct vec {
	void *v;
	size_t n, cap, size;
};

static int vec_push(struct vec *a, const void *x)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		void *v = realloc(a->v, cap * a->size);
		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	memcpy((char *)a->v + a->n * a->size, x, a->size);
	a->n++;
	return 0;
}

/* ---- FDE ranges, read from the raw section ----
 *
 * libdw parses CIEs and FDEs (dwarf_next_cfi) but leaves an FDE's
 * initial location and range encoded as its CIE's 'R' augmentation says. */

struct sect {
	Elf_Data *data;
	uint64_t addr;        /* sh_addr: the base of pcrel pointers */
	bool eh;
};

/* Reads one encoded pointer at *p (within [*p, end)); pcrel is relative
 * to the field's own address. Returns 0, or -1 for an encoding this table
 * does not take (indirect, datarel, textrel, aligned...) or a short read. */
static int read_encoded(const struct sect *s, const uint8_t **p, const uint8_t *end,
                        uint8_t enc, int elfclass, bool apply, uint64_t *out)
{
	const uint8_t *q = *p;
	uint64_t v = 0;
	unsigned size = 0;
	bool sign = false;
	if (enc == DW_EH_PE_omit)
		return -1;
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr: size = elfclass == ELFCLASS64 ? 8 : 4; break;
	case DW_EH_PE_udata2: size = 2; break;
	case DW_EH_PE_udata4: size = 4; break;
	case DW_EH_PE_udata8: size = 8; break;
	case DW_EH_PE_sdata2: size = 2; sign = true; break;
	case DW_EH_PE_sdata4: size = 4; sign = true; break;
	case DW_EH_PE_sdata8: size = 8; sign = true; break;
	case DW_EH_PE_uleb128:
	case DW_EH_PE_sleb128: {
		unsigned shift = 0;
		uint8_t b;
		do {
			if (q >= end || shift >= 64)
				return -1;
			b = *q++;
			v |= (uint64_t)(b & 0x7f) << shift;
			shift += 7;
		} while (b & 0x80);
		if ((enc & 0x0f) == DW_EH_PE_sleb128 && shift < 64 && (b & 0x40))
			v |= ~(uint64_t)0 << shift;
		break;
	}
	default:
		return -1;
	}
	if (size) {
		if ((size_t)(end - q) < size)
			return -1;
		for (unsigned i = 0; i < size; i++)  /* little-endian only (arch check) */
			v |= (uint64_t)q[i] << (8 * i);
		if (sign && size < 8 && (v >> (8 * size - 1)) & 1)
			v |= ~(uint64_t)0 << (8 * size);
		q += size;
	}
	if (apply) {
		switch (enc & 0x70) {
		case DW_EH_PE_absptr:
			break;
		case DW_EH_PE_pcrel:
			v += s->addr + (uint64_t)(*p - (const uint8_t *)s->data->d_buf);
			break;
		default:
			return -1;
		}
		if (enc & DW_EH_PE_indirect)
			return -1;
	}
	*p = q;
	*out = v;
	return 0;
}

/* The FDE pointer encoding of a CIE: 'R' in a "z..." augmentation,
 * absptr without one. -1 when the augmentation is not understood. */
static int cie_encoding(const Dwarf_CIE *cie)
{
	const char *a = cie->augmentation;
	if (!a || !*a)
		return DW_EH_PE_absptr;
	if (a[0] != 'z')
		return -1;  /* "eh" and others: the layout is unknown */
	const uint8_t *d = cie->augmentation_data;
	const uint8_t *end = d ? d + cie->augmentation_data_size : NULL;
	for (a++; *a; a++) {
		switch (*a) {
		case 'R':
			return d && d < end ? *d : -1;
		case 'L':
			if (!d || d >= end)
				return -1;
			d++;
			break;
		case 'P': {
			if (!d || d >= end)
				return -1;
			uint8_t penc = *d++;
			uint64_t dummy;
			/* the personality pointer is skipped, never applied */
			struct sect none = {0};
			if (read_encoded(&none, &d, end, penc & 0x0f, ELFCLASS64, false, &dummy))
				return -1;
			break;
		}
		case 'S':  /* signal frame */
		case 'B':  /* arm64 BTI */
		case 'G':  /* arm64 MTE */
			break;
		default:
			return -1;
		}
	}
	return DW_EH_PE_absptr;
}

/* True when [start, end) lies inside one executable section: an FDE
 * elsewhere is the leftover of a discarded function (.debug_frame keeps
 * those at address 0) or hostile, and is left out. */
static bool in_text(const struct range *text, size_t ntext, uint64_t start, uint64_t end)
{
	for (size_t i = 0; i < ntext; i++)
		if (start >= text[i].start && end <= text[i].end)
			return true;
	return false;
}

/* Appends the ranges of the FDEs of section s to *out. */
static int read_fdes(Elf *e, const struct sect *s, int src, const struct range *text,
                     size_t ntext, struct vec *out, size_t *fdes)
{
	const unsigned char *ident = (const unsigned char *)elf_getident(e, NULL);
	Dwarf_Off off = 0, next, cie_off = (Dwarf_Off)-1;
	int enc = -1;
	Dwarf_CFI_Entry ent;
	if (!ident || !s->data || !s->data->d_buf)
		return 0;
	while (dwarf_next_cfi(ident, s->data, s->eh, off, &next, &ent) == 0) {
		if (next <= off)
			break;  /* no progress: never loop */
		Dwarf_Off here = off;
		off = next;
		if (ent.CIE_id == DW_CIE_ID_64)
			continue;
		(*fdes)++;
		if (ent.fde.CIE_pointer != cie_off) {
			/* most files have one or two CIEs: remember the last one */
			Dwarf_CFI_Entry c;
			Dwarf_Off cnext;
			cie_off = ent.fde.CIE_pointer;
			enc = -1;
			if (cie_off != here &&
			    dwarf_next_cfi(ident, s->data, s->eh, cie_off, &cnext, &c) == 0 &&
			    c.CIE_id == DW_CIE_ID_64)
				enc = cie_encoding(&c.cie);
		}
		if (enc < 0)
			continue;
		const uint8_t *p = ent.fde.start;
		uint64_t start, len;
		if (read_encoded(s, &p, ent.fde.end, (uint8_t)enc, arch_x86_64.elfclass, true,
		                 &start) ||
		    read_encoded(s, &p, ent.fde.end, (uint8_t)(enc & 0x0f), arch_x86_64.elfclass,
		                 false, &len))
			continue;
		if (len == 0 || start + len < start || !in_text(text, ntext, start, start + len))
			continue;
		struct range r = {
			.start = start,
			.end = start + len,
			.seq = out->n,
			.cost = (size_t)(ent.fde.end - ent.fde.start) + 64,
			.src = src,
		};
		int rc = vec_push(out, &r);
		if (rc)
			return rc;
	}
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts ranges and cuts each to what no earlier (lower start, then first
 * read) range covers, dropping those left empty. */
static void resolve_overlaps(struct vec *a)
{
	struct range *r = a->v;
	size_t k = 0;
	uint64_t cover = 0;
	if (!a->n)
		return;
	qsort(r, a->n, sizeof(*r), cmp_range);
	for (size_t i = 0; i < a->n; i++) {
		if (k && r[i].end <= cover)
			continue;
		if (k && r[i].start < cover)
			r[i].start = cover;
		r[k++] = r[i];
		cover = r[i].end;
	}
	a->n = k;
}

/* Appends to *out the parts of the ranges of dbg that no range of eh
 * (sorted, disjoint) covers. */
static int fill_gaps(const struct vec *eh, const struct vec *dbg, struct vec *out)
{
	const struct range *e = eh->v, *d = dbg->v;
	size_t j = 0;
	for (size_t i = 0; i < dbg->n; i++) {
		uint64_t s = d[i].start;
		while (j < eh->n && e[j].end <= s)
			j++;
		for (size_t k = j; s < d[i].end; k++) {
			uint64_t stop = k < eh->n && e[k].start < d[i].end ? e[k].start : d[i].end;
			if (s < stop) {
				struct range r = d[i];
				r.start = s;
				r.end = stop;
				int rc = vec_push(out, &r);
				if (rc)
					return rc;
			}
			if (k >= eh->n || e[k].start >= d[i].end)
				break;
			if (e[k].end > s)
				s = e[k].end;
		}
	}
	return 0;
}

/* ---- the expression recogniser ----
 *
 * libdw hands every rule over as a DWARF expression: def_cfa REG, OFF as
 * DW_OP_bregx; a register saved at CFA+N as DW_OP_call_frame_cfa (plus
 * N); DW_CFA_expression as DW_OP_call_frame_cfa followed by the FDE's own
 * expression (the CFA is pushed first, as DWARF says). The walker in BPF
 * has no interpreter: each form real code uses is recognised here, op by
 * op, and becomes a row kind whose computation is exact; anything else is
 * SM_CFA_UNSUPPORTED / SM_REG_UNSUPPORTED, where the walk stops and counts
 * instead of guessing. */

/* DW_OP_bregN / DW_OP_bregx: its register and (signed) offset. */
static bool breg(const ag_unw_op *o, unsigned *reg, int64_t *off)
{
	if (o->atom >= DW_OP_breg0 && o->atom <= DW_OP_breg31) {
		*reg = o->atom - DW_OP_breg0;
		*off = (int64_t)o->number;
		return true;
	}
	if (o->atom == DW_OP_bregx) {
		if (o->number > 0xffff)
			return false;
		*reg = (unsigned)o->number;
		*off = (int64_t)o->number2;
		return true;
	}
	return false;
}

/* GCC/binutils' CFA of x86_64 PLT entries: rsp+8 before the entry's push
 * (rip & 15 < K), rsp+16 after it. K is the offset of the jmp after the
 * push: 11 in .plt, 10 with IBT's endbr64 layout. */
static bool plt_expr(const ag_unw_op *o, size_t n, int32_t *k)
{
	if (n != 9 || o[0].atom != DW_OP_breg0 + arch_x86_64.sp || o[0].number != 8 ||
	    o[1].atom != DW_OP_breg0 + arch_x86_64.ra || o[1].number != 0 ||
	    o[2].atom != DW_OP_lit15 || o[3].atom != DW_OP_and || o[4].atom < DW_OP_lit0 ||
	    o[4].atom > DW_OP_lit31 || o[5].atom != DW_OP_ge || o[6].atom != DW_OP_lit3 ||
	    o[7].atom != DW_OP_shl || o[8].atom != DW_OP_plus)
		return false;
	*k = o[4].atom - DW_OP_lit0;
	return true;
}

void ag_unw_cfa_rule(const ag_unw_op *ops, size_t n, bool signal, struct sm_unw_row *r)
{
	unsigned reg;
	int64_t off;
	int32_t k;
	r->cfa_kind = SM_CFA_UNSUPPORTED;
	r->cfa_off = 0;
	r->aux = 0;
	if (!signal && plt_expr(ops, n, &k)) {
		r->cfa_kind = SM_CFA_PLT;
		r->cfa_off = k;
		return;
	}
	if (n == 0 || !breg(&ops[0], &reg, &off))
		return;
	if (off < INT32_MIN || off > INT32_MAX)
		return;
	if (n == 1) {
		/* def_cfa REG, OFF (or an expression of one DW_OP_bregN) */
		if (signal)
			return;  /* a trampoline's CFA is never a plain register */
		if (reg == arch_x86_64.sp)
			r->cfa_kind = SM_CFA_SP;
		else if (reg == arch_x86_64.fp)
			r->cfa_kind = SM_CFA_FP;
		else if (reg < arch_x86_64.ra) {
			/* a scratch register, in prologues and hand-written
			 * code: usable where the registers are known */
			r->cfa_kind = SM_CFA_REG;
			r->aux = (uint8_t)reg;
		} else
			return;
		r->cfa_off = (int32_t)off;
		return;
	}
	/* BREG N; DW_OP_deref [; DW_OP_plus_uconst M]: the CFA was saved in
	 * the frame (stack realignment) */
	if (ops[1].atom != DW_OP_deref || n > 3 ||
	    (reg != arch_x86_64.sp && reg != arch_x86_64.fp))
		return;
	uint64_t add = 0;
	if (n == 3) {
		if (ops[2].atom != DW_OP_plus_uconst || ops[2].number > UINT8_MAX)
			return;
		add = ops[2].number;
	}
	if (signal) {
		/* the kernel's rt_sigframe: the interrupted sp, as saved */
		if (reg != arch_x86_64.sp || add)
			return;
		r->cfa_kind = SM_CFA_SIGNAL;
	} else {
		r->cfa_kind = reg == arch_x86_64.sp ? SM_CFA_DEREF_SP : SM_CFA_DEREF_FP;
		r->aux = (uint8_t)add;
	}
	r->cfa_off = (int32_t)off;
}

void ag_unw_reg_rule(const ag_unw_op *ops, size_t n, bool undefined, uint8_t *kind,
                     int16_t *off)
{
	int64_t o = 0;
	unsigned reg;
	*off = 0;
	*kind = SM_REG_UNSUPPORTED;
	if (n == 0) {
		*kind = undefined ? SM_REG_UNDEF : SM_REG_SAME;
		return;
	}
	if (ops[0].atom != DW_OP_call_frame_cfa)
		return;
	if (n == 1) {
		*kind = SM_REG_CFA_OFF;                 /* DW_CFA_offset 0 */
	} else if (n == 2 && ops[1].atom == DW_OP_plus_uconst) {
		o = (int64_t)ops[1].number;             /* DW_CFA_offset N */
		*kind = SM_REG_CFA_OFF;
	} else if (n == 3 && ops[1].atom == DW_OP_consts && ops[2].atom == DW_OP_plus) {
		o = (int64_t)ops[1].number;             /* a negative N */
		*kind = SM_REG_CFA_OFF;
	} else if (n == 2 && breg(&ops[1], &reg, &o) &&
	           (reg == arch_x86_64.sp || reg == arch_x86_64.fp)) {
		/* DW_CFA_expression REG, (BREG N): saved at sp+N or fp+N
		 * (the CFA pushed first is not used) */
		*kind = reg == arch_x86_64.sp ? SM_REG_SP_OFF : SM_REG_FP_OFF;
	} else {
		return;
	}
	if (o < INT16_MIN || o > INT16_MAX) {
		*kind = SM_REG_UNSUPPORTED;
		return;
	}
	*off = (int16_t)o;
}

/* ---- one row from libdw's frame state ---- */

#define MAX_OPS 16  /* longer expressions are none the recogniser takes */

/* libdw's ops in the recogniser's form; false when there are too many. */
static bool copy_ops(const Dwarf_Op *ops, size_t n, ag_unw_op *out)
{
	if (n > MAX_OPS)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (ag_unw_op){ops[i].atom, ops[i].number, ops[i].number2};
	return true;
}

static void translate_cfa(Dwarf_Frame *f, bool signal, struct sm_unw_row *r)
{
	Dwarf_Op *ops;
	size_t nops;
	ag_unw_op o[MAX_OPS];
	r->cfa_kind = SM_CFA_UNSUPPORTED;
	if (dwarf_frame_cfa(f, &ops, &nops) != 0 || nops == 0 || !copy_ops(ops, nops, o))
		return;
	ag_unw_cfa_rule(o, nops, signal, r);
}

/* The rule of register reg: *kind an enum sm_reg_kind, *off for the
 * SM_REG_*_OFF kinds. */
static void translate_reg(Dwarf_Frame *f, unsigned reg, uint8_t *kind, int16_t *off)
{
	Dwarf_Op mem[3], *ops;
	size_t nops;
	ag_unw_op o[MAX_OPS];
	*off = 0;
	*kind = SM_REG_UNSUPPORTED;
	if (dwarf_frame_register(f, (int)reg, mem, &ops, &nops) != 0 || !copy_ops(ops, nops, o))
		return;
	/* libdw.h's convention: no ops and a NULL pointer is same-value,
	 * no ops and a pointer is undefined */
	ag_unw_reg_rule(o, nops, nops == 0 && ops, kind, off);
}

static void translate(Dwarf_Frame *f, bool signal, struct sm_unw_row *r)
{
	uint32_t pc = r->pc;
	memset(r, 0, sizeof(*r));
	r->pc = pc;
	uint8_t ra_kind;
	int16_t ra_off;
	translate_reg(f, arch_x86_64.ra, &ra_kind, &ra_off);
	if (ra_kind == SM_REG_UNDEF) {
		r->cfa_kind = SM_CFA_END;
		return;
	}
	translate_cfa(f, signal, r);
	if (ra_kind != SM_REG_CFA_OFF && ra_kind != SM_REG_SP_OFF && ra_kind != SM_REG_FP_OFF)
		r->cfa_kind = SM_CFA_UNSUPPORTED;
	if (r->cfa_kind == SM_CFA_UNSUPPORTED) {
		/* nothing else is usable without a CFA: one form, so such
		 * rows merge */
		r->cfa_off = 0;
		r->aux = 0;
		return;
	}
	r->ra_kind = ra_kind;
	r->ra_off = ra_off;
	uint8_t fp_kind;
	int16_t fp_off;
	translate_reg(f, arch_x86_64.fp, &fp_kind, &fp_off);
	r->fp_kind = fp_kind;
	r->fp_off = fp_off;
}

/* ---- the table ---- */

struct table {
	struct vec rows;      /* struct sm_unw_row, final */
	struct vec tmp;       /* one range's rows until it is known good */
	size_t max_rows;
	size_t work;          /* CFI bytes libdw may still execute */
};

static bool same_rule(const struct sm_unw_row *a, const struct sm_unw_row *b)
{
	return a->cfa_off == b->cfa_off && a->fp_off == b->fp_off && a->ra_off == b->ra_off &&
	       a->cfa_kind == b->cfa_kind && a->fp_kind == b->fp_kind && a->ra_kind == b->ra_kind &&
	       a->aux == b->aux;
}

/* Appends r unless it repeats the last row's rule. */
static int emit(struct table *t, const struct sm_unw_row *r)
{
	struct sm_unw_row *v = t->rows.v;
	if (t->rows.n && same_rule(&v[t->rows.n - 1], r))
		return 0;
	if (t->rows.n >= t->max_rows)
		return -E2BIG;
	return vec_push(&t->rows, r);
}

/* Walks [g->start, g->end) row by row into t->tmp. Returns 0, 1 when
 * libdw cannot describe the range (its rows are then not used), -E2BIG
 * when the file's work budget is spent. */
static int walk(struct table *t, Dwarf_CFI *cfi, const struct range *g)
{
	uint64_t pc = g->start;
	t->tmp.n = 0;
	while (pc < g->end) {
		Dwarf_Frame *f = NULL;
		Dwarf_Addr s, e;
		bool signal = false;
		/* each lookup runs the FDE's instructions from its start again:
		 * a hostile FDE of many rows is quadratic, so the work has a cap */
		if (t->work < g->cost)
			return -E2BIG;
		t->work -= g->cost;
		if (dwarf_cfi_addrframe(cfi, pc, &f) != 0 || !f ||
		    dwarf_frame_info(f, &s, &e, &signal) < 0 || e <= pc || s > pc) {
			free(f);
			return 1;
		}
		struct sm_unw_row r = {.pc = (uint32_t)pc};
		translate(f, signal, &r);
		free(f);
		int rc = vec_push(&t->tmp, &r);
		if (rc)
			return rc;
		pc = e < g->end ? e : g->end;
	}
	return 0;
}

/* ---- Go code, from .gopclntab ----
 *
 * Go's linker writes no .eh_frame, but every function's pcsp program in
 * .gopclntab gives, at each pc, how far SP is below its value at the
 * function's entry (where it points at the return address): the runtime's
 * own tracebacks unwind by it. So CFA = sp + delta + 8, the return address
 * at CFA - 8, at every pc, with or without a frame. rbp: Go's prologue
 * (cmd/internal/obj/x86, through Go 1.19 at least) is
 *
 *     SUBQ $F, SP            pcsp becomes F after it
 *     MOVQ BP, F-8(SP)       the caller's rbp at entry sp - 8 = CFA - 16
 *     LEAQ F-8(SP), BP
 *
 * and each epilogue MOVQ F-8(SP), BP; ADDQ $F, SP; RET, the slot left
 * intact. So where the delta is F, past the store, rbp is saved at CFA -
 * 16; where it is 0 (entry, after an epilogue, the stack-growth call at
 * the end) rbp is the caller's. The store is checked byte for byte; a
 * function whose first stack adjustment is not followed by it (hand-written
 * assembly, another toolchain's layout) gets rbp undefined wherever its
 * delta is not 0: never a wrong rbp for a caller to take as a frame
 * pointer. */

/* Length of `MOVQ BP, off(SP)` at p (n bytes readable), 0 when it is not
 * that instruction with that offset. */
static unsigned go_bp_store(const uint8_t *p, size_t n, int64_t off)
{
	if (n < 4 || p[0] != 0x48 || p[1] != 0x89)
		return 0;
	if (p[2] == 0x2c && p[3] == 0x24)  /* (SP): mod 00, SIB base rsp */
		return off == 0 ? 4 : 0;
	if (p[2] == 0x6c && p[3] == 0x24)  /* disp8(SP) */
		return n >= 5 && (int64_t)(int8_t)p[4] == off ? 5 : 0;
	if (p[2] == 0xac && p[3] == 0x24 && n >= 8) {  /* disp32(SP) */
		uint32_t d = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
		             (uint32_t)p[7] << 24;
		return (int64_t)(int32_t)d == off ? 8 : 0;
	}
	return 0;
}

/* Appends one row at pc for a Go frame whose SP is delta below its entry
 * value, rbp by fp_kind (SM_REG_SAME, _CFA_OFF or _UNDEF). */
static int go_row(struct table *t, uint64_t pc, int32_t delta, uint8_t fp_kind)
{
	struct sm_unw_row r = {.pc = (uint32_t)pc};
	if (delta < 0 || delta > INT32_MAX - 8) {
		r.cfa_kind = SM_CFA_UNSUPPORTED;  /* SP above the entry's: no frame this is */
	} else {
		r.cfa_kind = SM_CFA_SP;
		r.cfa_off = delta + 8;
		r.ra_kind = SM_REG_CFA_OFF;
		r.ra_off = -8;
		r.fp_kind = fp_kind;
		r.fp_off = fp_kind == SM_REG_CFA_OFF ? -16 : 0;
	}
	return vec_push(&t->tmp, &r);
}

/* Walks [g->start, g->end), part of Go function g->fn, into t->tmp from
 * its pcsp program. Returns 0, 1 when the table cannot describe it (its
 * rows are then not used: a malformed program, a function that writes SP
 * itself), -E2BIG when the work budget is spent. */
static int walk_go(struct table *t, const wire_gotab *go, const struct range *g)
{
	wire_go_fninfo fi;
	wire_go_pcv it;
	uint64_t s, e;
	int32_t v, frame = 0;
	int rc;
	t->tmp.n = 0;
	if (wire_go_fninfo_at(go, g->fn, &fi) || g->start < fi.entry || g->end > fi.end)
		return 1;
	if (fi.flag & WIRE_GO_TOPFRAME) {
		/* goexit, mstart, rt0_go: where Go's own tracebacks end */
		struct sm_unw_row r = {.pc = (uint32_t)g->start, .cfa_kind = SM_CFA_END};
		return vec_push(&t->tmp, &r);
	}
	if (fi.flag & WIRE_GO_SPWRITE)
		return 1;  /* systemstack, mcall, morestack...: SP is not the delta */
	/* the first stack adjustment and whether the BP store follows it */
	uint64_t saved_from = UINT64_MAX, store_at = 0;
	wire_go_pcv_init(go, fi.pcsp, fi.entry, &it);
	while ((rc = wire_go_pcv_next(&it, &s, &e, &v)) > 0) {
		if (t->work < 16)
			return -E2BIG;
		t->work -= 16;
		if (e < s || e > fi.end)
			return 1;  /* runs past its function: not a program the linker wrote */
		if (v != 0 && s < e) {
			frame = v;
			store_at = s;
			break;
		}
	}
	if (rc < 0)
		return 1;
	if (frame >= 8) {
		size_t avail = fi.end - store_at < 8 ? (size_t)(fi.end - store_at) : 8;
		const uint8_t *code = wire_go_bytes(go, store_at, avail);
		unsigned len = code ? go_bp_store(code, avail, (int64_t)frame - 8) : 0;
		if (len)
			saved_from = store_at + len;
	}
	wire_go_pcv_init(go, fi.pcsp, fi.entry, &it);
	uint64_t covered = g->start;
	while ((rc = wire_go_pcv_next(&it, &s, &e, &v)) > 0) {
		if (t->work < 16)
			return -E2BIG;
		t->work -= 16;
		if (e < s || e > fi.end)
			return 1;
		if (e <= g->start || s == e)
			continue;
		if (s >= g->end)
			break;
		uint64_t a = s < g->start ? g->start : s, b = e < g->end ? e : g->end;
		if (v == 0) {
			rc = go_row(t, a, v, SM_REG_SAME);
		} else if (v >= frame && frame > 0 && saved_from != UINT64_MAX) {
			/* the store itself: rbp not saved yet, and still the caller's */
			if (a < saved_from && (rc = go_row(t, a, v, SM_REG_SAME)))
				return rc;
			if (b > saved_from)
				rc = go_row(t, a > saved_from ? a : saved_from, v, SM_REG_CFA_OFF);
		} else {
			rc = go_row(t, a, v, SM_REG_UNDEF);
		}
		if (rc)
			return rc;
		covered = b;
	}
	if (rc < 0 || !t->tmp.n)
		return 1;
	if (covered < g->end) {
		/* the program ends before the function (its alignment padding) */
		struct sm_unw_row none = {.pc = (uint32_t)covered, .cfa_kind = SM_CFA_NONE};
		return vec_push(&t->tmp, &none);
	}
	return 0;
}

/* Walks every range (sorted, disjoint) into the table, with an
 * SM_CFA_NONE row wherever a range ends and the next does not start. */
static int build_rows(struct table *t, const struct vec *ranges, Dwarf_CFI *eh,
                      Dwarf_CFI *dbg, const wire_gotab *go, ag_unw_info *info)
{
	const struct range *g = ranges->v;
	uint64_t last_end = 0;
	bool any = false;
	for (size_t i = 0; i < ranges->n; i++) {
		if (g[i].end > UINT32_MAX)
			return -E2BIG;
		int rc = g[i].src == SRC_GO ? walk_go(t, go, &g[i]) :
		         walk(t, g[i].src == SRC_DEBUG ? dbg : eh, &g[i]);
		if (rc < 0)
			return rc;
		if (rc > 0)
			continue;  /* as if the FDE were not there */
		if (g[i].src == SRC_DEBUG)
			info->from_debug_frame = true;
		else if (g[i].src == SRC_GO)
			info->go_ranges++;
		if (any && last_end < g[i].start) {
			struct sm_unw_row none = {.pc = (uint32_t)last_end, .cfa_kind = SM_CFA_NONE};
			if ((rc = emit(t, &none)))
				return rc;
		}
		const struct sm_unw_row *r = t->tmp.v;
		for (size_t k = 0; k < t->tmp.n; k++)
			if ((rc = emit(t, &r[k])))
				return rc;
		last_end = g[i].end;
		any = true;
	}
	if (any) {
		struct sm_unw_row none = {.pc = (uint32_t)last_end, .cfa_kind = SM_CFA_NONE};
		return emit(t, &none);
	}
	return 0;
}

int ag_unw_go_rows(const struct wire_gotab *go, size_t i, size_t max_rows,
                   struct sm_unw_row **rows, size_t *n)
{
	struct table t = {
		.rows = {.size = sizeof(struct sm_unw_row)},
		.tmp = {.size = sizeof(struct sm_unw_row)},
		.max_rows = max_rows,
		.work = (size_t)1 << 30,
	};
	wire_go_fninfo fi;
	ag_unw_info info = {0};
	int rc = 0;
	*rows = NULL;
	*n = 0;
	if (wire_go_fninfo_at(go, i, &fi) || fi.end <= fi.entry)
		return 0;
	struct range r = {.start = fi.entry, .end = fi.end, .src = SRC_GO, .fn = i};
	struct vec one = {.v = &r, .n = 1, .cap = 1, .size = sizeof(r)};
	if ((rc = build_rows(&t, &one, NULL, NULL, go, &info)))
		goto out;
	*rows = t.rows.v;
	*n = t.rows.n;
	t.rows.v = NULL;
out:
	free(t.rows.v);
	free(t.tmp.v);
	return rc;
}

/* Finds the CFI sections and the executable sections' ranges. */
static int scan_sections(Elf *e, struct sect *eh, struct sect *dbg, struct vec *text)
{
	size_t shstrndx;
	if (elf_getshdrstrndx(e, &shstrndx) != 0)
		return 0;  /* no section headers: no CFI this file can enumerate */
	for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS)
			continue;
		const char *name = elf_strptr(e, shstrndx, sh.sh_name);
		if ((sh.sh_flags & (SHF_ALLOC | SHF_EXECINSTR)) == (SHF_ALLOC | SHF_EXECINSTR) &&
		    sh.sh_size && sh.sh_addr + sh.sh_size > sh.sh_addr) {
			struct range r = {.start = sh.sh_addr, .end = sh.sh_addr + sh.sh_size};
			int rc = vec_push(text, &r);
			if (rc)
				return rc;
		}
		if (!name)
			continue;
		struct sect *s = !strcmp(name, ".eh_frame") ? eh :
		                 !strcmp(name, ".debug_frame") ? dbg : NULL;
		if (!s || s->data)
			continue;
		/* libdw decompresses .debug_frame for itself; the raw walk
		 * needs the same bytes */
		if ((sh.sh_flags & SHF_COMPRESSED) && elf_compress(scn, 0, 0) < 0)
			continue;
		s->data = elf_getdata(scn, NULL);
		s->addr = sh.sh_addr;
		s->eh = s == eh;
	}
	return 0;
}

int ag_unw_build(int fd, size_t max_rows, struct sm_unw_row **rows, size_t *n,
                 ag_unw_info *info)
{
	int rc = 0;
	Elf *e = NULL;
	Dwarf *dw = NULL;
	Dwarf_CFI *eh_cfi = NULL, *dbg_cfi = NULL;
	struct vec text = {.size = sizeof(struct range)};
	struct vec ehr = {.size = sizeof(struct range)}, dbgr = {.size = sizeof(struct range)};
	struct vec all = {.size = sizeof(struct range)}, gor = {.size = sizeof(struct range)};
	struct vec extra = {.size = sizeof(struct range)};
	wire_gotab *go = NULL;
	struct table t = {
		.rows = {.size = sizeof(struct sm_unw_row)},
		.tmp = {.size = sizeof(struct sm_unw_row)},
		.max_rows = max_rows,
		/* CFI bytes executed: libc needs 3 MB, Debian's node (a
		 * 100 MB binary) 50 MB; a hostile file ends in seconds */
		.work = (size_t)1 << 30,
	};
	struct sect eh = {0}, dbg = {0};

	*rows = NULL;
	*n = 0;
	memset(info, 0, sizeof(*info));
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOTSUP;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	GElf_Ehdr eh_hdr;
	if (!e || elf_kind(e) != ELF_K_ELF || !gelf_getehdr(e, &eh_hdr) ||
	    eh_hdr.e_machine != arch_x86_64.machine ||
	    eh_hdr.e_ident[EI_CLASS] != arch_x86_64.elfclass ||
	    eh_hdr.e_ident[EI_DATA] != ELFDATA2LSB) {
		rc = -ENOEXEC;
		goto out;
	}
	if ((rc = scan_sections(e, &eh, &dbg, &text)))
		goto out;
	if (eh.data) {
		eh_cfi = dwarf_getcfi_elf(e);
		if (eh_cfi && (rc = read_fdes(e, &eh, SRC_EH, text.v, text.n, &ehr, &info->fdes)))
			goto out;
	}
	if (dbg.data) {
		dw = dwarf_begin_elf(e, DWARF_C_READ, NULL);
		dbg_cfi = dw ? dwarf_getcfi(dw) : NULL;
		if (dbg_cfi && (rc = read_fdes(e, &dbg, SRC_DEBUG, text.v, text.n, &dbgr, &info->fdes)))
			goto out;
	}
	/* a Go binary: its functions from .gopclntab (a table that is not
	 * there, or not one this reader takes, adds nothing) */
	if (wire_go_open_elf(e, &go) == 0) {
		size_t nf = wire_go_nfuncs(go);
		for (size_t i = 0; i < nf; i++) {
			wire_go_fninfo fi;
			if (wire_go_fninfo_at(go, i, &fi) || fi.end <= fi.entry ||
			    !in_text(text.v, text.n, fi.entry, fi.end))
				continue;
			struct range r = {.start = fi.entry, .end = fi.end, .seq = gor.n,
			                  .src = SRC_GO, .fn = i};
			if ((rc = vec_push(&gor, &r)))
				goto out;
		}
		info->go_funcs = gor.n;
	}
	resolve_overlaps(&ehr);
	resolve_overlaps(&gor);
	resolve_overlaps(&dbgr);
	/* .eh_frame first (a cgo binary's C code), then Go's own deltas
	 * (Go's .debug_frame has the same CFAs but says nothing of rbp), then
	 * .debug_frame in what is left */
	for (size_t i = 0; i < ehr.n; i++)
		if ((rc = vec_push(&all, (struct range *)ehr.v + i)))
			goto out;
	if ((rc = fill_gaps(&ehr, &gor, &all)))
		goto out;
	if (all.n)
		qsort(all.v, all.n, sizeof(struct range), cmp_range);
	if ((rc = fill_gaps(&all, &dbgr, &extra)))
		goto out;
	for (size_t i = 0; i < extra.n; i++)
		if ((rc = vec_push(&all, (struct range *)extra.v + i)))
			goto out;
	if (all.n)
		qsort(all.v, all.n, sizeof(struct range), cmp_range);
	if ((rc = build_rows(&t, &all, eh_cfi, dbg_cfi, go, info)))
		goto out;
	const struct sm_unw_row *r = t.rows.v;
	for (size_t i = 0; i < t.rows.n; i++)
		if (r[i].cfa_kind == SM_CFA_UNSUPPORTED || r[i].fp_kind == SM_REG_UNSUPPORTED)
			info->unsupported++;
		else if (r[i].cfa_kind == SM_CFA_REG)
			info->innermost_only++;
	*rows = t.rows.v;
	*n = t.rows.n;
	t.rows.v = NULL;
out:
	free(t.rows.v);
	free(t.tmp.v);
	free(text.v);
	free(ehr.v);
	free(dbgr.v);
	free(all.v);
	free(gor.v);
	free(extra.v);
	wire_go_free(go);
	if (eh_cfi)
		dwarf_cfi_end(eh_cfi);
	dwarf_end(dw);
	elf_end(e);
	return rc;
}
