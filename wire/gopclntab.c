/* gopclntab.c - the reader of Go's .gopclntab (gopclntab.h), for the
 * server's symbolizer and the agent's unwind tables alike.
 *
 * The table (runtime.pcHeader, then its regions, at offsets the header
 * gives from its own start):
 *
 *   header    magic u32 | 0 0 | minLC u8 | ptrSize u8 | nfunc | nfiles |
 *             [textStart, Go 1.18+] | funcname | cu | filetab | pctab | pcln
 *             (words of ptrSize; the last five are offsets)
 *   funcname  NUL-terminated function names
 *   cu        u32 per (compilation unit, file): offset into filetab
 *   filetab   NUL-terminated file names
 *   pctab     pc-value programs: (zigzag varint value delta, varint pc
 *             delta x minLC) pairs from the function's entry, value -1 first
 *   pcln      functab: nfunc (entry, funcoff) pairs, then the end PC;
 *             entries are addresses (1.16, ptrSize each) or u32 offsets
 *             from textStart (1.18+); then the _func records, at funcoff
 *             from pcln
 *
 * _func: entry (1.16: ptrSize; 1.18+: u32 offset), then u32 nameOff,
 * args, deferreturn, pcsp, pcfile, pcln, npcdata, cuOffset, [startLine,
 * 1.20+], u8 funcID, flag (1.17+; padding in 1.16), pad, nfuncdata; then
 * npcdata u32 pctab offsets (table 2 gives the inline tree index at a PC)
 * and nfuncdata funcdata (1.16: pointer-aligned addresses; 1.18+: u32
 * offsets from moduledata.gofunc, ~0 for none; number 3 is the inline
 * tree). pcsp gives, at each PC, how far SP is below its value at the
 * function's entry.
 *
 * Inline tree entries: 1.16-1.19, 20 bytes {parent i16, funcID u8, pad,
 * file i32, line i32, nameOff i32, parentPc i32}; 1.20+, 16 bytes
 * {funcID u8, pad[3], nameOff i32, parentPc i32, startLine i32}. The name
 * offsets are into funcname. parentPc is an instruction, from the entry,
 * whose position is the call site: the caller's frame is read there.
 *
 * Every offset, count and string is checked against the table's or the
 * segment's end before it is used. */
#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "wire/gopclntab.h"

#define MAGIC_116 0xfffffffau
#define MAGIC_118 0xfffffff0u
#define MAGIC_120 0xfffffff1u
#define MAGIC_12 0xfffffffbu      /* Go 1.2-1.15: not read */

#define PCDATA_INLTREE 2
#define FUNCDATA_INLTREE 3
/* moduledata's words: pcHeader, then six slices (pointer, len, cap):
 * funcnametab at 1, pclntable at 13; findfunctab, minpc, maxpc, then text
 * at 22; gofunc at 38 (1.18, 1.19) or 40 (1.20+: covctrs and ecovctrs
 * came before it). */
#define MD_FUNCNAMETAB 1
#define MD_PCLNTABLE 13
#define MD_TEXT 22
#define MD_GOFUNC_118 38
#define MD_GOFUNC_120 40
#define MD_WORDS 41
/* inlined calls followed from one PC at most (the chain is bounded by the
 * caller's max anyway; this bounds a table whose parents loop) */
#define MAX_INLINE 64

struct wire_gotab {
	int ver;
	unsigned quantum, ptrsize;
	const uint8_t *tab;        /* the table, len bytes, at tabaddr */
	uint64_t len, tabaddr;
	uint64_t nfunc;
	uint64_t text;             /* functab offsets are from here (1.18+) */
	/* the regions, as offsets into tab; each runs to the table's end */
	uint64_t names, cutab, files, pctab, pcln;
	uint64_t gofunc;           /* inline trees' base (1.18+); 0 unknown */
	bool inl;                  /* inlined calls can be expanded */
	wire_go_seg *segs;
	size_t nsegs;
};

/* ---- bounded reads ---- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static uint64_t word(unsigned ptrsize, const uint8_t *p)
{
	return ptrsize == 8 ? le64(p) : le32(p);
}

/* tab[off, off+n) or NULL */
static const uint8_t *at(const wire_gotab *t, uint64_t off, uint64_t n)
{
	return off <= t->len && n <= t->len - off ? t->tab + off : NULL;
}

static bool u32_at(const wire_gotab *t, uint64_t off, uint32_t *v)
{
	const uint8_t *p = at(t, off, 4);
	if (p)
		*v = le32(p);
	return p != NULL;
}

/* A NUL-terminated string at tab[off], NULL when it does not end inside
 * the table. */
static const char *str_at(const wire_gotab *t, uint64_t off)
{
	if (off >= t->len)
		return NULL;
	const uint8_t *p = t->tab + off;
	return memchr(p, 0, t->len - off) ? (const char *)p : NULL;
}

/* n bytes of the image at virtual address va, or NULL */
static const uint8_t *img_at(const wire_go_seg *segs, size_t nsegs, uint64_t va, uint64_t n)
{
	for (size_t i = 0; i < nsegs; i++) {
		const wire_go_seg *s = &segs[i];
		if (va >= s->vaddr && va - s->vaddr <= s->size && n <= s->size - (va - s->vaddr))
			return s->data + (va - s->vaddr);
	}
	return NULL;
}

/* ---- opening ---- */

/* The moduledata that points at the table: its first word is the table's
 * address, its funcnametab and pclntable slices start where the header
 * says. Gives gofunc (0 if it is in no segment) and text. */
static bool find_moduledata(const wire_gotab *t, uint64_t funcname, uint64_t pcln,
                            uint64_t *gofunc, uint64_t *text)
{
	unsigned ps = t->ptrsize;
	uint64_t need = (uint64_t)MD_WORDS * ps;
	for (size_t i = 0; i < t->nsegs; i++) {
		const wire_go_seg *s = &t->segs[i];
		if (s->size < need)
			continue;
		/* moduledata is pointer-aligned in the address space */
		uint64_t first = (ps - (s->vaddr & (ps - 1))) & (ps - 1);
		for (uint64_t o = first; o <= s->size - need; o += ps) {
			const uint8_t *w = s->data + o;
			if (word(ps, w) != t->tabaddr ||
			    word(ps, w + MD_FUNCNAMETAB * ps) != t->tabaddr + funcname ||
			    word(ps, w + MD_PCLNTABLE * ps) != t->tabaddr + pcln)
				continue;
			uint64_t g = word(ps, w + (t->ver == WIRE_GO_118 ? MD_GOFUNC_118 : MD_GOFUNC_120) * ps);
			*gofunc = img_at(t->segs, t->nsegs, g, 1) ? g : 0;
			*text = word(ps, w + MD_TEXT * ps);
			return true;
		}
	}
	return false;
}

int wire_go_open(const wire_go_image *img, wire_gotab **out)
{
	*out = NULL;
	wire_gotab *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	int rc = -EBADMSG;
	t->tabaddr = img->pclntab_addr;
	/* the table's bytes: the section, cut at the end of its segment */
	for (size_t i = 0; i < img->nsegs && !t->tab; i++) {
		const wire_go_seg *s = &img->segs[i];
		if (t->tabaddr >= s->vaddr && t->tabaddr - s->vaddr < s->size) {
			t->tab = s->data + (t->tabaddr - s->vaddr);
			t->len = s->size - (t->tabaddr - s->vaddr);
			if (img->pclntab_size && img->pclntab_size < t->len)
				t->len = img->pclntab_size;
		}
	}
	if (!t->tab || t->len < 8)
		goto out;
	uint32_t magic = le32(t->tab);
	if (magic == MAGIC_116)
		t->ver = WIRE_GO_116;
	else if (magic == MAGIC_118)
		t->ver = WIRE_GO_118;
	else if (magic == MAGIC_120)
		t->ver = WIRE_GO_120;
	else {
		rc = -EPROTONOSUPPORT;  /* Go 1.2-1.15, big-endian, or newer than us */
		goto out;
	}
	t->quantum = t->tab[6];
	t->ptrsize = t->tab[7];
	if (t->tab[4] || t->tab[5] || (t->quantum != 1 && t->quantum != 2 && t->quantum != 4) ||
	    (t->ptrsize != 4 && t->ptrsize != 8))
		goto out;
	unsigned nw = t->ver == WIRE_GO_116 ? 7 : 8, ps = t->ptrsize;
	if (t->len < 8 + (uint64_t)nw * ps)
		goto out;
	uint64_t w[8];
	for (unsigned i = 0; i < nw; i++)
		w[i] = word(ps, t->tab + 8 + i * ps);
	unsigned k = t->ver == WIRE_GO_116 ? 2 : 3;  /* the first offset */
	t->nfunc = w[0];
	t->names = w[k];
	t->cutab = w[k + 1];
	t->files = w[k + 2];
	t->pctab = w[k + 3];
	t->pcln = w[k + 4];
	for (unsigned i = k; i < nw; i++)
		if (w[i] < 8 + (uint64_t)nw * ps || w[i] >= t->len)
			goto out;
	/* the functab: nfunc pairs and the end */
	uint64_t fs = t->ver == WIRE_GO_116 ? ps : 4;
	if (!t->nfunc || t->nfunc > (t->len - t->pcln) / fs / 2 ||
	    (2 * t->nfunc + 1) * fs > t->len - t->pcln)
		goto out;
	t->nsegs = img->nsegs;
	t->segs = calloc(img->nsegs ? img->nsegs : 1, sizeof(*t->segs));
	if (!t->segs) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(t->segs, img->segs, img->nsegs * sizeof(*t->segs));
	if (t->ver == WIRE_GO_116) {
		t->inl = true;  /* funcdata are addresses: nothing to find */
	} else {
		uint64_t mtext = 0;
		t->inl = find_moduledata(t, t->names, t->pcln, &t->gofunc, &mtext) && t->gofunc;
		/* textStart is moduledata.text; newer linkers leave it 0 */
		t->text = w[2] ? w[2] : mtext ? mtext : img->text_addr;
		if (!t->text)
			goto out;
	}
	rc = 0;
out:
	if (rc) {
		wire_go_free(t);
		t = NULL;
	}
	*out = t;
	return rc;
}

void wire_go_free(wire_gotab *t)
{
	if (!t)
		return;
	free(t->segs);
	free(t);
}

int wire_go_version(const wire_gotab *t) { return t->ver; }
int wire_go_has_inline(const wire_gotab *t) { return t->inl; }
size_t wire_go_nfuncs(const wire_gotab *t) { return (size_t)t->nfunc; }

/* ---- functions ---- */

/* functab entry i (i == nfunc: the end): an address */
static uint64_t ft_pc(const wire_gotab *t, uint64_t i)
{
	if (t->ver == WIRE_GO_116)
		return word(t->ptrsize, t->tab + t->pcln + i * 2 * t->ptrsize);
	return t->text + le32(t->tab + t->pcln + i * 8);
}

static uint64_t ft_off(const wire_gotab *t, uint64_t i)
{
	if (t->ver == WIRE_GO_116)
		return word(t->ptrsize, t->tab + t->pcln + i * 2 * t->ptrsize + t->ptrsize);
	return le32(t->tab + t->pcln + i * 8 + 4);
}

/* One _func record, its fields read once. */
typedef struct gofn {
	uint64_t entry, rec;       /* rec: the record's offset in tab */
	uint32_t nameoff, pcsp, pcfile, pcln, npcdata, cuoff;
	uint8_t flag, nfuncdata;
	uint64_t pcdata;           /* offset of the pcdata array in tab */
} gofn;

static int fn_read(const wire_gotab *t, uint64_t i, gofn *f)
{
	unsigned h = t->ver == WIRE_GO_116 ? t->ptrsize : 4;
	unsigned tail = t->ver == WIRE_GO_120 ? 40 : 36;  /* through nfuncdata */
	f->entry = ft_pc(t, i);
	uint64_t off = ft_off(t, i);
	if (off > t->len - t->pcln)
		return -EBADMSG;
	f->rec = t->pcln + off;
	const uint8_t *p = at(t, f->rec, h + tail);
	if (!p)
		return -EBADMSG;
	f->nameoff = le32(p + h);
	f->pcsp = le32(p + h + 12);
	f->pcfile = le32(p + h + 16);
	f->pcln = le32(p + h + 20);
	f->npcdata = le32(p + h + 24);
	f->cuoff = le32(p + h + 28);
	f->flag = p[h + tail - 3];
	f->nfuncdata = p[h + tail - 1];
	f->pcdata = f->rec + h + tail;
	return 0;
}

static const char *fn_name(const wire_gotab *t, uint32_t nameoff)
{
	return str_at(t, t->names + nameoff);
}

int wire_go_func(const wire_gotab *t, size_t i, uint64_t *entry, const char **name)
{
	gofn f;
	if (i >= t->nfunc)
		return -ERANGE;
	int rc = fn_read(t, i, &f);
	if (rc)
		return rc;
	*entry = f.entry;
	*name = fn_name(t, f.nameoff);
	return *name ? 0 : -EBADMSG;
}

/* The function holding va: the last entry at or below it, if va is below
 * the next one (the last function ends at the table's end PC). */
static bool fn_find(const wire_gotab *t, uint64_t va, uint64_t *idx)
{
	if (t->ver != WIRE_GO_116 && (va < t->text || va - t->text > UINT32_MAX))
		return false;
	uint64_t lo = 0, hi = t->nfunc;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (ft_pc(t, mid) <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || va >= ft_pc(t, lo))  /* lo - 1 is the candidate, lo its end */
		return false;
	*idx = lo - 1;
	return true;
}

/* ---- pc-value programs ---- */

static bool uvarint(const uint8_t **pp, const uint8_t *end, uint32_t *v)
{
	const uint8_t *p = *pp;
	uint32_t x = 0;
	for (unsigned shift = 0; shift < 35; shift += 7) {
		if (p == end)
			return false;
		uint8_t b = *p++;
		x |= (uint32_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*pp = p;
			*v = x;
			return true;
		}
	}
	return false;  /* longer than a u32 needs */
}

void wire_go_pcv_init(const wire_gotab *t, uint32_t off, uint64_t entry, wire_go_pcv *it)
{
	memset(it, 0, sizeof(*it));
	if (!off || off >= t->len - t->pctab)
		return;  /* no program (0), or one outside the table */
	it->p = t->tab + t->pctab + off;
	it->end = t->tab + t->len;
	it->pc = entry;
	it->val = UINT32_MAX;  /* -1 */
	it->quantum = t->quantum;
	it->first = true;
}

int wire_go_pcv_next(wire_go_pcv *it, uint64_t *start, uint64_t *end, int32_t *val)
{
	uint32_t uv, pd;
	if (!it->p)
		return -EBADMSG;
	if (!uvarint(&it->p, it->end, &uv))
		return -EBADMSG;
	if (uv == 0 && !it->first)
		return 0;  /* the program's end */
	it->first = false;
	it->val += (uv & 1) ? ~(uv >> 1) : uv >> 1;  /* zigzag, wrapping as Go's int32 */
	if (!uvarint(&it->p, it->end, &pd))
		return -EBADMSG;
	*start = it->pc;
	it->pc += (uint64_t)pd * it->quantum;
	*end = it->pc;
	*val = (int32_t)it->val;
	return 1;
}

/* The value program at pctab+off gives at target, as the runtime's
 * pcvalue: false when there is no program or it ends before target. */
static bool pcvalue(const wire_gotab *t, uint32_t off, uint64_t entry, uint64_t target,
                    int32_t *out)
{
	wire_go_pcv it;
	uint64_t s, e;
	int32_t v;
	wire_go_pcv_init(t, off, entry, &it);
	while (wire_go_pcv_next(&it, &s, &e, &v) > 0)
		if (target < e) {
			*out = v;
			return true;
		}
	return false;
}

/* File and line at pc in f; NULL and 0 when the tables do not say. */
static void fn_line(const wire_gotab *t, const gofn *f, uint64_t pc, const char **file,
                    int64_t *line)
{
	int32_t fno, ln;
	uint32_t foff;
	*file = NULL;
	*line = 0;
	if (!pcvalue(t, f->pcfile, f->entry, pc, &fno) || !pcvalue(t, f->pcln, f->entry, pc, &ln) ||
	    fno < 0)
		return;
	if (ln > 0)
		*line = ln;
	if (u32_at(t, t->cutab + ((uint64_t)f->cuoff + (uint32_t)fno) * 4, &foff) &&
	    foff != UINT32_MAX)
		*file = str_at(t, t->files + foff);
}

/* The inline tree's index at pc: -1 in the function's own code. */
static int32_t fn_inl_index(const wire_gotab *t, const gofn *f, uint64_t pc)
{
	uint32_t off;
	int32_t ix;
	if (!t->inl || f->npcdata <= PCDATA_INLTREE ||
	    !u32_at(t, f->pcdata + PCDATA_INLTREE * 4, &off) || !pcvalue(t, off, f->entry, pc, &ix))
		return -1;
	return ix;
}

/* The address of f's inline tree, 0 if none. */
static uint64_t fn_inl_tree(const wire_gotab *t, const gofn *f)
{
	if (!t->inl || f->nfuncdata <= FUNCDATA_INLTREE)
		return 0;
	uint64_t p = f->pcdata + (uint64_t)f->npcdata * 4;
	if (t->ver != WIRE_GO_116) {
		uint32_t off;
		if (!u32_at(t, p + FUNCDATA_INLTREE * 4, &off) || off == UINT32_MAX)
			return 0;
		return t->gofunc + off;
	}
	/* 1.16: pointers, aligned in the address space */
	if (t->ptrsize == 8 && ((t->tabaddr + p) & 4))
		p += 4;
	const uint8_t *w = at(t, p + FUNCDATA_INLTREE * (uint64_t)t->ptrsize, t->ptrsize);
	return w ? word(t->ptrsize, w) : 0;
}

size_t wire_go_frames(const wire_gotab *t, uint64_t va, wire_go_frame *out, size_t max)
{
	uint64_t i;
	gofn f;
	size_t n = 0;
	if (!fn_find(t, va, &i) || fn_read(t, i, &f))
		return 0;
	uint64_t tree = fn_inl_tree(t, &f), pc = va;
	unsigned esz = t->ver == WIRE_GO_120 ? 16 : 20;
	unsigned name_at = t->ver == WIRE_GO_120 ? 4 : 12, parent_at = t->ver == WIRE_GO_120 ? 8 : 16;
	for (int depth = 0; n < max; depth++) {
		const uint8_t *e = NULL;
		int32_t ix = tree && depth < MAX_INLINE ? fn_inl_index(t, &f, pc) : -1;
		if (ix >= 0)
			e = img_at(t->segs, t->nsegs, tree + (uint64_t)ix * esz, esz);
		wire_go_frame *fr = &out[n++];
		fn_line(t, &f, pc, &fr->file, &fr->line);
		fr->function = e ? fn_name(t, le32(e + name_at)) : fn_name(t, f.nameoff);
		if (!e)
			break;  /* the function that holds the code: the outermost */
		/* the caller: an instruction of its at the call site */
		pc = f.entry + (uint64_t)(int64_t)(int32_t)le32(e + parent_at);
	}
	return n;
}

const uint8_t *wire_go_bytes(const wire_gotab *t, uint64_t va, size_t n)
{
	return img_at(t->segs, t->nsegs, va, n);
}

int wire_go_fninfo_at(const wire_gotab *t, size_t i, wire_go_fninfo *out)
{
	gofn f;
	memset(out, 0, sizeof(*out));
	if (i >= t->nfunc)
		return -ERANGE;
	int rc = fn_read(t, i, &f);
	if (rc)
		return rc;
	out->entry = f.entry;
	out->end = ft_pc(t, i + 1);
	if (out->end < out->entry)
		return -EBADMSG;
	out->pcsp = f.pcsp;
	/* 1.16's records have padding there, which the linker zeroes */
	out->flag = t->ver == WIRE_GO_116 ? f.flag & (WIRE_GO_TOPFRAME | WIRE_GO_SPWRITE) : f.flag;
	out->name = fn_name(t, f.nameoff);
	return 0;
}

/* ---- from an ELF file ---- */

int wire_go_open_elf(Elf *e, wire_gotab **out)
{
	*out = NULL;
	size_t shstr, fsize, nph;
	const uint8_t *raw = (const uint8_t *)elf_rawfile(e, &fsize);
	if (!raw || elf_getshdrstrndx(e, &shstr))
		return -ENOENT;
	wire_go_image img = {0};
	for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		const char *nm;
		if (!gelf_getshdr(s, &sh) || !(nm = elf_strptr(e, shstr, sh.sh_name)))
			continue;
		/* .data.rel.ro.gopclntab in position-independent executables */
		if ((!strcmp(nm, ".gopclntab") || !strcmp(nm, ".data.rel.ro.gopclntab")) &&
		    sh.sh_type == SHT_PROGBITS) {
			img.pclntab_addr = sh.sh_addr;
			img.pclntab_size = sh.sh_size;
		} else if (!strcmp(nm, ".text")) {
			img.text_addr = sh.sh_addr;
		}
	}
	if (!img.pclntab_addr || elf_getphdrnum(e, &nph))
		return -ENOENT;
	wire_go_seg *segs = calloc(nph ? nph : 1, sizeof(*segs));
	if (!segs)
		return -ENOMEM;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD || ph.p_offset >= fsize)
			continue;
		uint64_t sz = ph.p_filesz < fsize - ph.p_offset ? ph.p_filesz : fsize - ph.p_offset;
		segs[img.nsegs++] = (wire_go_seg){ph.p_vaddr, raw + ph.p_offset, (size_t)sz};
	}
	img.segs = segs;
	int rc = wire_go_open(&img, out);
	free(segs);
	return rc;
}
