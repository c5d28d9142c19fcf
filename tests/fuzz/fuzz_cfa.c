/* fuzz_cfa.c - the unwind tables' expression recogniser
 * (ag_unw_cfa_rule, ag_unw_reg_rule in agent/unwind_table.c) on any
 * sequence of DWARF operations. The walker in BPF trusts the row kinds it
 * gets, so a recognised form must compute exactly what the expression
 * computes: every input is also run through a small DWARF stack machine
 * here, with registers and memory made up from the input, and whenever
 * the recogniser accepts, the row's computation (as bpf/profile.bpf.c
 * does it) must give the same address. An expression it cannot express
 * must come back unsupported, never as an approximation.
 *
 * Input: byte 0 flags (bit 0: the FDE is a signal frame; bit 1: a
 * register rule rather than the CFA; bit 2: with no ops, the register is
 * undefined rather than same-value), bytes 1-8 a seed for the registers
 * and memory, then operations: atom, then number and number2 each as a
 * length byte (0-8) and that many little-endian bytes, sign-extended.
 * The corpus (tests/fuzz/corpus/cfa) holds the forms real code uses. */
#include <linux/types.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <dwarf.h>

#include "agent/agent.h"
#include "bpf/profile.h"

#define MAX_OPS 20

typedef struct {
	uint64_t seed;
	uint64_t regs[17];      /* DWARF numbers: rax..r15, then rip */
	uint64_t cfa;           /* for register rules: the CFA pushed first */
} machine;

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Memory: the same word for the same address, different ones elsewhere. */
static uint64_t mem(const machine *m, uint64_t addr)
{
	return mix(addr ^ m->seed);
}

/* The reference: evaluates ops, true with the top of the stack when every
 * operation is one it knows and the stack never underflows. */
static bool eval(const machine *m, const ag_unw_op *ops, size_t n, uint64_t *out)
{
	uint64_t st[64];
	size_t sp = 0;
	for (size_t i = 0; i < n; i++) {
		const ag_unw_op *o = &ops[i];
		uint64_t a, b;
		if (sp >= 62)
			return false;
		if (o->atom >= DW_OP_lit0 && o->atom <= DW_OP_lit31) {
			st[sp++] = o->atom - DW_OP_lit0;
			continue;
		}
		if (o->atom >= DW_OP_breg0 && o->atom <= DW_OP_breg31) {
			unsigned r = o->atom - DW_OP_breg0;
			if (r > 16)
				return false;
			st[sp++] = m->regs[r] + o->number;
			continue;
		}
		switch (o->atom) {
		case DW_OP_bregx:
			if (o->number > 16)
				return false;
			st[sp++] = m->regs[o->number] + o->number2;
			continue;
		case DW_OP_const1u: case DW_OP_const1s: case DW_OP_const2u: case DW_OP_const2s:
		case DW_OP_const4u: case DW_OP_const4s: case DW_OP_const8u: case DW_OP_const8s:
		case DW_OP_constu: case DW_OP_consts:
			st[sp++] = o->number;
			continue;
		case DW_OP_call_frame_cfa:
			st[sp++] = m->cfa;
			continue;
		case DW_OP_dup:
			if (!sp)
				return false;
			st[sp] = st[sp - 1];
			sp++;
			continue;
		case DW_OP_deref:
			if (!sp)
				return false;
			st[sp - 1] = mem(m, st[sp - 1]);
			continue;
		case DW_OP_plus_uconst:
			if (!sp)
				return false;
			st[sp - 1] += o->number;
			continue;
		case DW_OP_neg:
			if (!sp)
				return false;
			st[sp - 1] = -st[sp - 1];
			continue;
		case DW_OP_drop:
			if (!sp)
				return false;
			sp--;
			continue;
		case DW_OP_swap:
			if (sp < 2)
				return false;
			a = st[sp - 1];
			st[sp - 1] = st[sp - 2];
			st[sp - 2] = a;
			continue;
		}
		if (sp < 2)
			return false;
		b = st[--sp];
		a = st[sp - 1];
		switch (o->atom) {
		case DW_OP_plus: a += b; break;
		case DW_OP_minus: a -= b; break;
		case DW_OP_mul: a *= b; break;
		case DW_OP_and: a &= b; break;
		case DW_OP_or: a |= b; break;
		case DW_OP_xor: a ^= b; break;
		case DW_OP_shl: a = b >= 64 ? 0 : a << b; break;
		case DW_OP_shr: a = b >= 64 ? 0 : a >> b; break;
		case DW_OP_ge: a = (int64_t)a >= (int64_t)b; break;
		case DW_OP_gt: a = (int64_t)a > (int64_t)b; break;
		case DW_OP_le: a = (int64_t)a <= (int64_t)b; break;
		case DW_OP_lt: a = (int64_t)a < (int64_t)b; break;
		case DW_OP_eq: a = a == b; break;
		case DW_OP_ne: a = a != b; break;
		default:
			return false;
		}
		st[sp - 1] = a;
	}
	if (!sp)
		return false;
	*out = st[sp - 1];
	return true;
}

/* What the BPF walker computes for a row's CFA; false where it stops
 * (SM_CFA_REG is computed as in the innermost frame, where it is used). */
static bool walker_cfa(const machine *m, const struct sm_unw_row *r, uint64_t *cfa)
{
	uint64_t sp = m->regs[7], fp = m->regs[6], pc = m->regs[16];
	switch (r->cfa_kind) {
	case SM_CFA_SP: *cfa = sp + (int64_t)r->cfa_off; return true;
	case SM_CFA_FP: *cfa = fp + (int64_t)r->cfa_off; return true;
	case SM_CFA_PLT: *cfa = sp + 8 + (((pc & 15) >= (uint64_t)r->cfa_off) ? 8 : 0); return true;
	case SM_CFA_DEREF_SP:
	case SM_CFA_SIGNAL: *cfa = mem(m, sp + (int64_t)r->cfa_off) + r->aux; return true;
	case SM_CFA_DEREF_FP: *cfa = mem(m, fp + (int64_t)r->cfa_off) + r->aux; return true;
	case SM_CFA_REG:
		if (r->aux >= 16)
			abort();   /* the walker only has rax..r15 */
		*cfa = m->regs[r->aux] + (int64_t)r->cfa_off;
		return true;
	default:
		return false;
	}
}

static uint64_t take(const uint8_t **p, const uint8_t *end)
{
	if (*p >= end)
		return 0;
	unsigned len = **p % 9;
	(*p)++;
	uint64_t v = 0;
	unsigned i;
	for (i = 0; i < len && *p < end; i++, (*p)++)
		v |= (uint64_t)**p << (8 * i);
	if (i && i < 8 && (v >> (8 * i - 1)) & 1)
		v |= ~(uint64_t)0 << (8 * i);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9)
		return 0;
	const uint8_t *p = data + 9, *end = data + size;
	bool signal = data[0] & 1, reg_rule = data[0] & 2, undefined = data[0] & 4;
	machine m;
	memcpy(&m.seed, data + 1, 8);
	for (int i = 0; i < 17; i++)
		m.regs[i] = mix(m.seed + (uint64_t)i);
	m.cfa = mix(m.seed ^ 0xc0ffee);
	ag_unw_op ops[MAX_OPS];
	size_t n = 0;
	while (p < end && n < MAX_OPS) {
		ops[n].atom = *p++;
		ops[n].number = take(&p, end);
		ops[n].number2 = take(&p, end);
		n++;
	}
	uint64_t want, got;
	if (!reg_rule) {
		struct sm_unw_row r;
		memset(&r, 0xa5, sizeof(r));
		ag_unw_cfa_rule(ops, n, signal, &r);
		if (r.cfa_kind >= SM_CFA_KINDS || r.cfa_kind == SM_CFA_NONE || r.cfa_kind == SM_CFA_END)
			abort();
		if (signal && r.cfa_kind != SM_CFA_SIGNAL && r.cfa_kind != SM_CFA_UNSUPPORTED)
			abort();   /* a trampoline's CFA is the saved sp or nothing */
		if (r.cfa_kind == SM_CFA_UNSUPPORTED) {
			if (r.cfa_off || r.aux)
				abort();
			return 0;
		}
		if (!walker_cfa(&m, &r, &got) || !eval(&m, ops, n, &want) || got != want)
			abort();
		return 0;
	}
	uint8_t kind = 0xff;
	int16_t off = 0x5a5a;
	ag_unw_reg_rule(ops, n, undefined, &kind, &off);
	if (kind >= SM_REG_KINDS || kind == SM_REG_LR)
		abort();
	if (n == 0) {
		if (kind != (undefined ? SM_REG_UNDEF : SM_REG_SAME) || off)
			abort();
		return 0;
	}
	if (kind == SM_REG_UNSUPPORTED) {
		if (off)
			abort();
		return 0;
	}
	/* the register's value is at an address: the top of the stack
	 * after the CFA was pushed (dwarf_frame_register's form) */
	uint64_t base = kind == SM_REG_CFA_OFF ? m.cfa : kind == SM_REG_SP_OFF ? m.regs[7] :
	                kind == SM_REG_FP_OFF ? m.regs[6] : 0;
	if (kind != SM_REG_CFA_OFF && kind != SM_REG_SP_OFF && kind != SM_REG_FP_OFF)
		abort();
	got = base + (int64_t)off;
	if (ops[0].atom != DW_OP_call_frame_cfa || !eval(&m, ops, n, &want) || got != want)
		abort();
	return 0;
}
