/* symbolize.c - (build ID, file offset) → inline chain of (function, file,
 * line), from the ELF files in the debug-info directory (symbolize.h).
 *
 *   offset ─► address: the PT_LOAD segment holding the offset (PIE, non-PIE
 *             and shared libraries alike: the file's own virtual addresses)
 *   address ─► DWARF (libdw): the CU, its scopes innermost first; every
 *             inlined subroutine is a frame whose caller's line is its
 *             DW_AT_call_file/line, the innermost line from the line table
 *           ─► else the symbol table (.symtab of the debug file, of the
 *             binary, then .dynsym): the function alone
 *           ─► else the start of the function that holds it, from the
 *             unwind info (.eh_frame_hdr's table of FDE starts): named
 *             "[unknown] FILE+0xSTART" by the query, one name per function
 *   names  ─► demangled by libiberty (C++ and Rust, legacy and v0), the
 *             same text as `addr2line -C` and c++filt print
 *
 * Parsed files stay open (at most max_open, least recently used closed),
 * under one mutex: libdw's handles are not safe for concurrent lookups. The
 * answers go to a memory cache and, for good, to SQLite (storage's symbols
 * table), so each location is worked out once. */
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libiberty/demangle.h>

#include "base/buf.h"
#include "base/map.h"
#include "base/text.h"
#include "server/symbolize.h"
#include "server/symbolize_int.h"
#include "wire/wire.h"

#define MAX_CHAIN ST_MAX_INLINE
/* memory cache entries at most; past it the cache starts over (SQLite
 * still has everything) */
#define MEM_MAX (1u << 20)
/* build IDs a background pass asks debuginfod for at most */
#define DBGD_PER_PASS 8

typedef struct load {
	uint64_t off, size, vaddr;
} load;

typedef struct func {
	uint64_t addr, size;
	const char *name;   /* in the ELF's string table (mmapped) */
} func;

typedef struct mod {
	uint8_t bid[WIRE_MAX_BUILD_ID];
	size_t bidlen;
	int fd[2];          /* [0] binary, [1] separate debug file; -1 if absent */
	Elf *elf[2];
	Dwarf *dw;
	load *loads;
	size_t nloads;
	func *funcs;
	size_t nfuncs;
	wire_gotab *go;      /* Go's .gopclntab, read when there is no DWARF */
	struct frange *fr;  /* DWARF function ranges, built on first use */
	size_t nfr;
	bool fr_built;
	uint64_t *fde;      /* FDE start addresses, sorted, built on first use */
	size_t nfde;
	bool fde_built;
	Dwarf_CFI *cfi;     /* .eh_frame, for whether an FDE covers an address */
	uint64_t used;
} mod;

/* One address range of a function (DW_TAG_subprogram with code). */
typedef struct frange {
	uint64_t lo, hi;
	Dwarf_Off off;
} frange;

typedef struct mentry {
	int64_t loc;
	uint32_t n;
	st_symbol f[];      /* strings after the array: st_symbols_pack */
} mentry;

struct srv_sym {
	char dir[4096];
	st_db *db;
	size_t max_open;
	pthread_mutex_t mu;  /* modules and libdw */
	mod **mods;
	size_t nmods;
	uint64_t clock;
	pthread_rwlock_t cmu; /* the memory cache */
	base_map mem_idx;     /* location ID -> index in mem */
	mentry **mem;         /* the cached entries */
	size_t count, mem_cap;
	int64_t pass_after;   /* the background pass' cursor */
	int64_t files_cursor; /* st_file_changes' */
	srv_dbgd *dbgd;
	atomic_uint_fast64_t st_lookups, st_mem, st_cache, st_sym, st_unknown, st_opened;
	atomic_uint_fast64_t st_go, st_go_unsupported, st_go_malformed;
	atomic_uint_fast64_t generation;  /* +1 after each forget (srv_sym_generation) */
};

/* ---- names ---- */

char *srv_sym_demangle(const char *name)
{
	/* DMGL_AUTO: Rust (v0 "_R", legacy "_ZN...17h<hash>E") first, then the
	 * C++ ABI; DMGL_PARAMS as c++filt: overloads stay apart */
	char *d = cplus_demangle(name, DMGL_AUTO | DMGL_PARAMS | DMGL_ANSI);
	return d ? d : strdup(name);
}

static const char *attr_str(Dwarf_Die *d, unsigned name)
{
	Dwarf_Attribute a;
	return dwarf_formstring(dwarf_attr_integrate(d, name, &a));
}

/* A function DIE's name: the linkage name demangled (it carries namespaces
 * and template arguments), else DW_AT_name; through abstract_origin and
 * specification. */
static const func *find_func(const mod *m, uint64_t va);

static char *die_name(const mod *m, Dwarf_Die *d)
{
	const char *ln = attr_str(d, DW_AT_linkage_name);
	if (!ln)
		ln = attr_str(d, DW_AT_MIPS_linkage_name);
	if (ln)
		return srv_sym_demangle(ln);
	/* No linkage name (a static C++ function, GCC omits it): the symbol
	 * at the function's entry has the mangled name, with its parameters,
	 * as addr2line shows it. */
	Dwarf_Addr lo;
	if (dwarf_tag(d) == DW_TAG_subprogram && dwarf_lowpc(d, &lo) == 0) {
		const func *f = find_func(m, lo);
		if (f && f->addr == lo && f->name[0] == '_' && f->name[1] == 'Z')
			return srv_sym_demangle(f->name);
	}
	const char *n = attr_str(d, DW_AT_name);
	return n ? strdup(n) : NULL;
}

/* ---- modules ---- */

static void mod_free(mod *m)
{
	if (!m)
		return;
	if (m->dw)
		dwarf_end(m->dw);
	if (m->cfi)
		dwarf_cfi_end(m->cfi);
	free(m->fde);
	for (int i = 0; i < 2; i++) {
		if (m->elf[i])
			elf_end(m->elf[i]);
		if (m->fd[i] >= 0)
			close(m->fd[i]);
	}
	wire_go_free(m->go);
	free(m->loads);
	free(m->funcs);
	free(m->fr);
	free(m);
}

static int cmp_func(const void *a, const void *b)
{
	const func *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	return x->size > y->size ? -1 : x->size < y->size;  /* sized first */
}

/* Function symbols of one symbol table section type; 0 when it has none. */
static int read_funcs(mod *m, Elf *e, Elf64_Word type)
{
	for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(s, &sh) || sh.sh_type != type || !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(s, NULL);
		if (!d)
			continue;
		size_t n = sh.sh_size / sh.sh_entsize;
		func *v = malloc((n + 1) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(d, (int)i, &sym))
				break;
			int t = GELF_ST_TYPE(sym.st_info);
			if ((t != STT_FUNC && t != STT_GNU_IFUNC) || !sym.st_value ||
			    sym.st_shndx == SHN_UNDEF)
				continue;
			const char *nm = elf_strptr(e, sh.sh_link, sym.st_name);
			if (!nm || !*nm)
				continue;
			uint64_t size = sym.st_size;
			if (!size) {
				/* an unsized symbol (_init, _fini, hand-written asm) covers
				 * at most the rest of its section, never data beyond */
				GElf_Shdr ss;
				Elf_Scn *sec = sym.st_shndx < SHN_LORESERVE ? elf_getscn(e, sym.st_shndx) : NULL;
				if (!sec || !gelf_getshdr(sec, &ss) || sym.st_value < ss.sh_addr ||
				    sym.st_value >= ss.sh_addr + ss.sh_size)
					continue;
				size = ss.sh_addr + ss.sh_size - sym.st_value;
			}
			v[k++] = (func){sym.st_value, size, nm};
		}
		if (!k) {
			free(v);
			continue;
		}
		qsort(v, k, sizeof(*v), cmp_func);
		free(m->funcs);
		m->funcs = v;
		m->nfuncs = k;
		return 1;
	}
	return 0;
}

/* The loadable segments: file offset → virtual address. A separate debug
 * file made by `objcopy --only-keep-debug` (what /usr/lib/debug and
 * debuginfod hold) keeps the segments' addresses and sizes but empties
 * them, zeroing p_offset and p_filesz. There the offsets are rebuilt the
 * way the linker laid them out: each segment starts at the first offset
 * after the previous one that is congruent to its address modulo its
 * alignment (the loader's requirement for mmap), the first at 0. */
static int read_loads(mod *m, Elf *e, bool rebuild)
{
	size_t nph;
	free(m->loads);
	m->loads = NULL;
	m->nloads = 0;
	if (elf_getphdrnum(e, &nph) || !nph)
		return 0;
	m->loads = calloc(nph, sizeof(*m->loads));
	if (!m->loads)
		return -ENOMEM;
	uint64_t next = 0;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (!rebuild) {
			if (ph.p_filesz)
				m->loads[m->nloads++] = (load){ph.p_offset, ph.p_filesz, ph.p_vaddr};
			continue;
		}
		if (!ph.p_memsz)
			continue;
		uint64_t align = ph.p_align > 1 && !(ph.p_align & (ph.p_align - 1)) ? ph.p_align : 1;
		uint64_t off = next;
		if (m->nloads) {
			off = (next & ~(align - 1)) | (ph.p_vaddr & (align - 1));
			if (off < next)
				off += align;
		} else {
			off = ph.p_vaddr & (align - 1);  /* 0 for every usual layout */
		}
		m->loads[m->nloads++] = (load){off, ph.p_memsz, ph.p_vaddr};
		next = off + ph.p_memsz;
	}
	return 0;
}

/* Whether a file's loadable segments were emptied (a debug-only file). */
static bool loads_emptied(Elf *e)
{
	size_t nph;
	if (elf_getphdrnum(e, &nph))
		return false;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && ph.p_flags & PF_X)
			return ph.p_filesz == 0 && ph.p_memsz > 0;
	}
	return false;
}

static int open_one(srv_sym *s, mod *m, int i, const char *suffix)
{
	char hex[2 * WIRE_MAX_BUILD_ID + 1], name[sizeof(hex) + 8];
	char path[sizeof(s->dir) + sizeof(name)];
	base_hex(m->bid, m->bidlen, hex);
	snprintf(name, sizeof(name), "%s%s", hex, suffix);
	if (s->db) {
		/* the store's copy: with ClickHouse, fetched to this machine once */
		int rc = st_file_path(s->db, name, path, sizeof(path));
		if (rc)
			return rc == -ENOENT ? 0 : rc;
	} else {
		snprintf(path, sizeof(path), "%s/%s", s->dir, name);
	}
	m->fd[i] = open(path, O_RDONLY | O_CLOEXEC);
	if (m->fd[i] < 0)
		return errno == ENOENT ? 0 : -errno;
	m->elf[i] = elf_begin(m->fd[i], ELF_C_READ_MMAP, NULL);
	if (!m->elf[i] || elf_kind(m->elf[i]) != ELF_K_ELF) {
		if (m->elf[i])
			elf_end(m->elf[i]);
		m->elf[i] = NULL;
		close(m->fd[i]);
		m->fd[i] = -1;
		return -ENOEXEC;
	}
	return 1;
}

/* A Go binary without DWARF: its .gopclntab names functions, files and
 * lines, and inlined calls, where .symtab (gone with -s) would name the
 * function alone. A table this server cannot read leaves the frames as
 * addresses, counted and said once per file opened. Returns 0 or -ENOMEM. */
static int go_open(srv_sym *s, mod *m)
{
	for (int i = 0; i < 2; i++) {
		if (!m->elf[i])
			continue;
		int rc = wire_go_open_elf(m->elf[i], &m->go);
		if (rc == -ENOENT)
			continue;
		if (rc == 0) {
			atomic_fetch_add(&s->st_go, 1);
			return 0;
		}
		if (rc == -ENOMEM)
			return rc;
		char hex[2 * WIRE_MAX_BUILD_ID + 1];
		base_hex(m->bid, m->bidlen, hex);
		if (rc == -EPROTONOSUPPORT)
			atomic_fetch_add(&s->st_go_unsupported, 1);
		else
			atomic_fetch_add(&s->st_go_malformed, 1);
		fprintf(stderr, "smolder-server: symbolizer: %s: %s; its Go frames stay addresses\n",
		        hex, rc == -EPROTONOSUPPORT
		                 ? ".gopclntab has a magic of no Go version this server reads "
		                   "(Go 1.16 and later are read)"
		                 : ".gopclntab is malformed");
		return 0;
	}
	return 0;
}

/* Opens and indexes a build ID's files. Caller holds s->mu. */
static int mod_open(srv_sym *s, const uint8_t *bid, size_t bl, mod **out)
{
	int rc;
	mod *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->fd[0] = m->fd[1] = -1;
	memcpy(m->bid, bid, bl);
	m->bidlen = bl;
	int rb = open_one(s, m, 0, ""), rd = open_one(s, m, 1, ".debug");
	if (rb <= 0 && rd <= 0) {
		rc = rb < 0 ? rb : rd < 0 ? rd : -ENOENT;
		goto out;
	}
	/* DWARF and symbols from the debug file first; addresses from the
	 * binary's program headers (a debug file has the same ones) */
	for (int i = 1; i >= 0 && !m->dw; i--)
		if (m->elf[i])
			m->dw = dwarf_begin_elf(m->elf[i], DWARF_C_READ, NULL);
	if (m->elf[0] && !loads_emptied(m->elf[0]))
		rc = read_loads(m, m->elf[0], false);
	else
		rc = read_loads(m, m->elf[1] ? m->elf[1] : m->elf[0], true);
	for (int i = 1; i >= 0 && !rc && !m->nfuncs; i--)
		if (m->elf[i])
			rc = read_funcs(m, m->elf[i], SHT_SYMTAB);
	for (int i = 0; i < 2 && !rc && !m->nfuncs; i++)
		if (m->elf[i])
			rc = read_funcs(m, m->elf[i], SHT_DYNSYM);
	if (rc < 0)
		goto out;
	if (!m->dw)
		rc = go_open(s, m);
	if (rc < 0)
		goto out;
	rc = 0;
	atomic_fetch_add(&s->st_opened, 1);
out:
	if (rc) {
		mod_free(m);
		m = NULL;
	}
	*out = m;
	return rc;
}

/* The module of a build ID, opened on first use. Caller holds s->mu. */
static int mod_get(srv_sym *s, const uint8_t *bid, size_t bl, mod **out)
{
	for (size_t i = 0; i < s->nmods; i++)
		if (s->mods[i]->bidlen == bl && !memcmp(s->mods[i]->bid, bid, bl)) {
			s->mods[i]->used = ++s->clock;
			*out = s->mods[i];
			return 0;
		}
	mod *m;
	int rc = mod_open(s, bid, bl, &m);
	if (rc)
		return rc;
	if (s->nmods == s->max_open) {
		size_t old = 0;
		for (size_t i = 1; i < s->nmods; i++)
			if (s->mods[i]->used < s->mods[old]->used)
				old = i;
		mod_free(s->mods[old]);
		s->mods[old] = s->mods[--s->nmods];
	}
	m->used = ++s->clock;
	s->mods[s->nmods++] = m;
	*out = m;
	return 0;
}

/* ---- lookup ---- */

static bool to_vaddr(const mod *m, uint64_t off, uint64_t *va)
{
	for (size_t i = 0; i < m->nloads; i++)
		if (off >= m->loads[i].off && off - m->loads[i].off < m->loads[i].size) {
			*va = off - m->loads[i].off + m->loads[i].vaddr;
			return true;
		}
	return false;
}

static const func *find_func(const mod *m, uint64_t va)
{
	size_t lo = 0, hi = m->nfuncs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->funcs[mid].addr <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* the last symbol at or below va that covers it (an unsized one
	 * covers up to the next symbol) */
	for (size_t i = lo; i-- > 0;) {
		const func *f = &m->funcs[i];
		/* the closest symbol at or below va comes first: an unsized one
		 * (bounded by its section) never reaches past a later symbol */
		if (va - f->addr < f->size)
			return f;
		if (va - f->addr > (1u << 24))
			break;  /* nothing that far back is this function */
	}
	return NULL;
}

int srv_sym__push(srv_sym_frame *out, size_t max, size_t *n, char *fn, const char *file,
                  int64_t line)
{
	if (!fn)
		fn = strdup("??");
	if (*n == max || !fn) {
		free(fn);
		return fn ? 0 : -ENOMEM;
	}
	char *f = file ? strdup(file) : NULL;
	if (file && !f) {
		free(fn);
		return -ENOMEM;
	}
	out[(*n)++] = (srv_sym_frame){fn, f, line};
	return 0;
}

/* A file name from the line table or the file table, with the CU's
 * compilation directory in front when it is relative, as addr2line and
 * the compiler's diagnostics print it. */
static const char *full_path(Dwarf_Die *cu, const char *f, char *buf, size_t cap)
{
	if (!f || f[0] == '/')
		return f;
	const char *dir = attr_str(cu, DW_AT_comp_dir);
	if (!dir || !*dir)
		return f;
	snprintf(buf, cap, "%s/%s", dir, f);
	return buf;
}

static const char *call_file(Dwarf_Die *cu, Dwarf_Die *inl, char *buf, size_t cap)
{
	Dwarf_Attribute a;
	Dwarf_Word idx;
	Dwarf_Files *files;
	size_t nfiles;
	if (dwarf_formudata(dwarf_attr(inl, DW_AT_call_file, &a), &idx) ||
	    dwarf_getsrcfiles(cu, &files, &nfiles) || idx >= nfiles)
		return NULL;
	return full_path(cu, dwarf_filesrc(files, idx, NULL, NULL), buf, cap);
}

static int64_t call_line(Dwarf_Die *inl)
{
	Dwarf_Attribute a;
	Dwarf_Word v;
	if (dwarf_formudata(dwarf_attr(inl, DW_AT_call_line, &a), &v) || v > INT32_MAX)
		return 0;
	return (int64_t)v;
}

static bool is_func(int tag)
{
	return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine ||
	       tag == DW_TAG_entry_point;
}

/* ---- the function index ----
 * dwarf_getscopes() walks a compile unit's DIE tree from its root for
 * every address: ~100 µs a lookup in a big CU (bench/symbolize). Instead
 * each file's functions are listed once, sorted by address, so a lookup is
 * a binary search and then a walk down one function's own scopes. */

static int fr_push(mod *m, size_t *cap, uint64_t lo, uint64_t hi, Dwarf_Off off)
{
	if (base_grow(&m->fr, cap, m->nfr + 1, sizeof(*m->fr)))
		return -ENOMEM;
	m->fr[m->nfr++] = (frange){lo, hi, off};
	return 0;
}

/* Functions with code under die: namespaces, classes and structures are
 * looked into (C++ definitions may sit there), functions are not (what
 * they contain is their own scopes; nested functions fall back to the
 * slow path). depth bounds hostile nesting. */
static int fr_collect(mod *m, Dwarf_Die *die, size_t *cap, int depth)
{
	Dwarf_Die c;
	if (depth > 32 || dwarf_child(die, &c) != 0)
		return 0;
	int rc = 0;
	do {
		int tag = dwarf_tag(&c);
		if (tag == DW_TAG_subprogram) {
			Dwarf_Addr base, lo, hi;
			ptrdiff_t off = 0;
			while (!rc && (off = dwarf_ranges(&c, off, &base, &lo, &hi)) > 0)
				if (hi > lo)
					rc = fr_push(m, cap, lo, hi, dwarf_dieoffset(&c));
		} else if (tag == DW_TAG_namespace || tag == DW_TAG_class_type ||
		           tag == DW_TAG_structure_type || tag == DW_TAG_union_type ||
		           tag == DW_TAG_module) {
			rc = fr_collect(m, &c, cap, depth + 1);
		}
	} while (!rc && dwarf_siblingof(&c, &c) == 0);
	return rc;
}

static int cmp_fr(const void *a, const void *b)
{
	const frange *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void fr_build(mod *m)
{
	size_t cap = 0;
	Dwarf_CU *cu = NULL;
	Dwarf_Die cudie;
	uint8_t ut;
	m->fr_built = true;
	while (dwarf_get_units(m->dw, cu, &cu, NULL, &ut, &cudie, NULL) == 0)
		if ((ut == DW_UT_compile || ut == DW_UT_partial) && fr_collect(m, &cudie, &cap, 0)) {
			free(m->fr);  /* out of memory: the slow path still works */
			m->fr = NULL;
			m->nfr = 0;
			return;
		}
	if (m->nfr)
		qsort(m->fr, m->nfr, sizeof(*m->fr), cmp_fr);
}

/* The function whose code holds va, by the index. */
static bool fr_find(mod *m, uint64_t va, Dwarf_Die *out)
{
	if (!m->fr_built)
		fr_build(m);
	size_t lo = 0, hi = m->nfr;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->fr[mid].lo <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* ranges of distinct functions do not overlap; a few steps back cover
	 * odd ones that do */
	for (size_t i = lo, k = 0; i-- > 0 && k < 8; k++)
		if (va < m->fr[i].hi)
			return dwarf_offdie(m->dw, m->fr[i].off, out) != NULL;
	return false;
}

#define MAX_SCOPES 64

/* The scopes from a function down to va, outermost first: at each level
 * the child block or inlined call whose ranges hold va. */
static int scope_path(Dwarf_Die *fn, uint64_t va, Dwarf_Die *path)
{
	int np = 0;
	path[np++] = *fn;
	while (np < MAX_SCOPES) {
		Dwarf_Die c;
		bool found = false;
		if (dwarf_child(&path[np - 1], &c) != 0)
			break;
		do {
			int tag = dwarf_tag(&c);
			if ((tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block ||
			     tag == DW_TAG_try_block || tag == DW_TAG_catch_block) &&
			    dwarf_haspc(&c, va) > 0) {
				path[np++] = c;
				found = true;
				break;
			}
		} while (dwarf_siblingof(&c, &c) == 0);
		if (!found)
			break;
	}
	return np;
}

/* The fast path: the index finds the function, its own scopes give the
 * inline chain, innermost first, each caller at the call site recorded on
 * the frame inside it. 0 frames when the index has no function there. */
static int lookup_indexed(mod *m, uint64_t va, srv_sym_frame *out, size_t max, size_t *n)
{
	Dwarf_Die fn, cu, path[MAX_SCOPES];
	char pbuf[4096], cbuf[4096];
	if (!fr_find(m, va, &fn) || !dwarf_diecu(&fn, &cu, NULL, NULL))
		return 0;
	const char *file = NULL;
	int64_t line = 0;
	Dwarf_Line *ln = dwarf_getsrc_die(&cu, va);
	if (ln) {
		int l;
		file = full_path(&cu, dwarf_linesrc(ln, NULL, NULL), pbuf, sizeof(pbuf));
		if (!dwarf_lineno(ln, &l) && l > 0)
			line = l;  /* hostile DWARF can say -36 */
	}
	int np = scope_path(&fn, va, path), rc = 0;
	Dwarf_Die *inner = NULL;
	for (int i = np - 1; i >= 0 && !rc; i--) {
		if (!is_func(dwarf_tag(&path[i])))
			continue;
		if (inner) {
			file = call_file(&cu, inner, cbuf, sizeof(cbuf));
			line = call_line(inner);
		}
		rc = srv_sym__push(out, max, n, die_name(m, &path[i]), file, line);
		inner = &path[i];
	}
	return rc;
}

/* DWARF's answer; *n stays 0 when the address is in no CU or no function.
 * The innermost function scope at the address comes from the CU's scopes;
 * when it is inlined code, the functions it sits in come from the scopes
 * of that inline instance's DIE (dwarf_getscopes_die), each frame's line
 * being the call site recorded on the frame inside it: what addr2line -i
 * does. */
static int lookup_dwarf(mod *m, uint64_t va, srv_sym_frame *out, size_t max, size_t *n)
{
	Dwarf_Die cu, *scopes = NULL, *chain = NULL;
	char pbuf[4096];
	if (!m->dw || !dwarf_addrdie(m->dw, va, &cu))
		return 0;
	const char *file = NULL;
	int64_t line = 0;
	Dwarf_Line *ln = dwarf_getsrc_die(&cu, va);
	if (ln) {
		int l;
		file = full_path(&cu, dwarf_linesrc(ln, NULL, NULL), pbuf, sizeof(pbuf));
		if (!dwarf_lineno(ln, &l) && l > 0)
			line = l;  /* hostile DWARF can say -36 */
	}
	int rc = 0, ns = dwarf_getscopes(&cu, va, &scopes);
	int first = -1;
	for (int i = 0; i < ns && first < 0; i++)
		if (is_func(dwarf_tag(&scopes[i])))
			first = i;
	if (first >= 0) {
		Dwarf_Die *die = &scopes[first];
		rc = srv_sym__push(out, max, n, die_name(m, die), file, line);
		if (!rc && dwarf_tag(die) == DW_TAG_inlined_subroutine) {
			int nc = dwarf_getscopes_die(die, &chain);
			Dwarf_Die *inner = die;
			for (int i = 1; i < nc && !rc; i++) {
				int tag = dwarf_tag(&chain[i]);
				if (!is_func(tag))
					continue;
				char cbuf[4096];
				rc = srv_sym__push(out, max, n, die_name(m, &chain[i]),
				                   call_file(&cu, inner, cbuf, sizeof(cbuf)),
				                   call_line(inner));
				if (tag != DW_TAG_inlined_subroutine)
					break;  /* the real function: nothing encloses it */
				inner = &chain[i];
			}
		}
	}
	free(scopes);
	free(chain);
	if (!rc && *n == 0 && file) {
		/* a CU that covers the address without a function DIE for it:
		 * the line table still knows where; the symbol table says what */
		const func *f = find_func(m, va);
		if (f)
			rc = srv_sym__push(out, max, n, srv_sym_demangle(f->name), file, line);
	}
	return rc;
}

int srv_sym_lookup(srv_sym *s, const uint8_t *bid, size_t bl, uint64_t offset,
                   srv_sym_frame *out, size_t max, size_t *n)
{
	*n = 0;
	if (!bl || bl > WIRE_MAX_BUILD_ID || !max)
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	mod *m;
	int rc = mod_get(s, bid, bl, &m);
	if (rc)
		goto out;
	uint64_t va = offset;
	if (m->nloads && !to_vaddr(m, offset, &va))
		goto out;  /* not in any loaded segment: nothing to say */
	if (m->dw)
		rc = lookup_indexed(m, va, out, max, n);
	if (!rc && *n == 0)
		rc = lookup_dwarf(m, va, out, max, n);
	if (!rc && *n == 0 && m->go)
		rc = srv_sym__go_lookup(m->go, va, out, max, n);
	if (!rc && *n == 0) {
		const func *f = find_func(m, va);
		if (f)
			rc = srv_sym__push(out, max, n, srv_sym_demangle(f->name), NULL, 0);
	}
	if (rc) {
		srv_sym_frames_free(out, *n);
		*n = 0;
	}
out:
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ---- functions without symbols: the unwind info's FDEs ----
 *
 * An FDE describes one function, so where neither DWARF nor a symbol names
 * an address, the start of the FDE that covers it names its function. The
 * linker's .eh_frame_hdr (PT_GNU_EH_FRAME) holds every FDE's start,
 * sorted, for binary search; the greatest start at or below the address
 * is its FDE's when an FDE covers the address at all (libdw's CFI says),
 * as FDEs do not overlap. */

/* Reads the starts from the binary's (else the debug file's) header
 * table. Only the encodings linkers write are read (GNU ld, gold, lld:
 * the table as datarel sdata4 pairs); anything else leaves none. */
static void fde_build(mod *m)
{
	m->fde_built = true;
	Elf *e = m->elf[0] ? m->elf[0] : m->elf[1];
	size_t nph;
	if (!e || elf_getphdrnum(e, &nph))
		return;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_GNU_EH_FRAME || ph.p_filesz < 12)
			continue;
		Elf_Data *d = elf_getdata_rawchunk(e, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_BYTE);
		const uint8_t *h = d ? d->d_buf : NULL;
		/* version 1; eh_frame_ptr as pcrel or datarel sdata4 (skipped);
		 * fde_count udata4; the table datarel sdata4 */
		if (!h || d->d_size < 12 || h[0] != 1 || (h[1] & 0x0f) != DW_EH_PE_sdata4 ||
		    h[2] != DW_EH_PE_udata4 || h[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4))
			return;
		uint32_t count;
		memcpy(&count, h + 8, 4);
		if (count > (d->d_size - 12) / 8)
			return;   /* more entries than bytes: hostile or cut */
		m->fde = malloc((count + 1) * sizeof(*m->fde));
		if (!m->fde)
			return;
		for (uint32_t k = 0; k < count; k++) {
			int32_t loc;
			memcpy(&loc, h + 12 + 8 * (size_t)k, 4);
			m->fde[k] = ph.p_vaddr + (uint64_t)(int64_t)loc;
			if (k && m->fde[k] < m->fde[k - 1])
				return;   /* unsorted: not a table to search; none */
		}
		m->nfde = count;
		m->cfi = dwarf_getcfi_elf(e);
		return;
	}
}

/* The file offset where the function holding va starts, from its FDE;
 * false when no FDE covers va. Caller holds s->mu. */
static bool fde_start(mod *m, uint64_t va, uint64_t *off)
{
	if (!m->fde_built)
		fde_build(m);
	if (!m->nfde || !m->cfi)
		return false;
	size_t lo = 0, hi = m->nfde;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->fde[mid] <= va)
			lo = mid + 1;
		else
			hi = mid;
	}
	Dwarf_Frame *f = NULL;
	if (!lo || dwarf_cfi_addrframe(m->cfi, va, &f) != 0) {
		free(f);
		return false;
	}
	free(f);
	uint64_t start = m->fde[lo - 1];
	for (size_t i = 0; i < m->nloads; i++)
		if (start >= m->loads[i].vaddr && start - m->loads[i].vaddr < m->loads[i].size) {
			*off = start - m->loads[i].vaddr + m->loads[i].off;
			return true;
		}
	return false;
}

int srv_sym_func_start(srv_sym *s, const uint8_t *bid, size_t bl, uint64_t offset,
                       uint64_t *start)
{
	if (!bl || bl > WIRE_MAX_BUILD_ID)
		return -EINVAL;
	pthread_mutex_lock(&s->mu);
	mod *m;
	int rc = mod_get(s, bid, bl, &m);
	uint64_t va = offset;
	if (!rc && (!m->nloads || !to_vaddr(m, offset, &va) || !fde_start(m, va, start)))
		rc = -ENOENT;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void srv_sym_frames_free(srv_sym_frame *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(f[i].function);
		free(f[i].file);
	}
}

/* ---- the caches ---- */

/* Caller holds cmu (read or write). */
static mentry *mem_get(const srv_sym *s, int64_t loc)
{
	uint32_t i = base_map_get(&s->mem_idx, (uint64_t)loc);
	return i == BASE_MAP_NONE ? NULL : s->mem[i];
}

static void mem_clear(srv_sym *s)
{
	for (size_t i = 0; i < s->count; i++)
		free(s->mem[i]);
	free(s->mem);
	s->mem = NULL;
	s->count = s->mem_cap = 0;
	base_map_free(&s->mem_idx);
}

static void mem_put(srv_sym *s, int64_t loc, const st_symbol *syms, size_t n)
{
	mentry *e = st_symbols_pack(offsetof(mentry, f), syms, n);
	if (!e)
		return;  /* a cache; SQLite still has it */
	e->loc = loc;
	e->n = (uint32_t)n;
	pthread_rwlock_wrlock(&s->cmu);
	if (mem_get(s, loc)) {
		free(e);
		goto out;
	}
	if (s->count >= MEM_MAX)
		mem_clear(s);
	if (base_grow(&s->mem, &s->mem_cap, s->count + 1, sizeof(*s->mem)) ||
	    base_map_put(&s->mem_idx, (uint64_t)loc, (uint32_t)s->count)) {
		free(e);
		goto out;
	}
	s->mem[s->count++] = e;
out:
	pthread_rwlock_unlock(&s->cmu);
}

/* What the engine gets: copies in thread-local memory, valid until this
 * thread's next call, so a cache cleared meanwhile frees nothing it reads. */
static _Thread_local char tls_buf[16384];

/* object_name: the location's, for a function known only by its start */
static int fill_out(const st_symbol *syms, size_t n, q_sym *out, size_t max,
                    const char *object_name)
{
	size_t used = 0, k = 0;
	/* a "looked, nothing there" marker; its line, when not 0, is one
	 * past the offset where the function holding it starts */
	if (n == 1 && !syms[0].function[0]) {
		if (syms[0].line <= 0 || !max)
			return 0;
		out[0].function = q_unknown_name(tls_buf, sizeof(tls_buf), object_name,
		                                 (uint64_t)syms[0].line - 1);
		out[0].file = NULL;
		out[0].line = 0;
		return 1;
	}
	for (size_t i = 0; i < n && k < max; i++) {
		size_t fl = strlen(syms[i].function) + 1, il = syms[i].file ? strlen(syms[i].file) + 1 : 0;
		if (used + fl + il > sizeof(tls_buf))
			break;
		out[k].function = memcpy(tls_buf + used, syms[i].function, fl);
		used += fl;
		out[k].file = il ? memcpy(tls_buf + used, syms[i].file, il) : NULL;
		used += il;
		out[k].line = syms[i].line;
		k++;
	}
	return (int)k;
}

typedef struct got {
	srv_sym *s;
	q_sym *out;
	size_t max;
	const char *object_name;
	int n;
} got;

static int on_cached(void *arg, int64_t loc, const st_symbol *syms, size_t n)
{
	got *g = arg;
	mem_put(g->s, loc, syms, n);
	g->n = fill_out(syms, n, g->out, g->max, g->object_name);
	return 0;
}

/* Symbolizes from the files and stores the answer (SQLite and memory).
 * Returns the number of frames, 0 with *absent set when the build ID's
 * files are not there (nothing stored: the file may still come). */
static int symbolize_store(srv_sym *s, int64_t loc, const uint8_t *bid, size_t bl,
                           uint64_t off, q_sym *out, size_t max, const char *object_name,
                           bool *absent)
{
	srv_sym_frame f[MAX_CHAIN];
	st_symbol syms[MAX_CHAIN];
	size_t n, nf;
	*absent = false;
	int rc = srv_sym_lookup(s, bid, bl, off, f, MAX_CHAIN, &n);
	if (rc == -ENOENT) {
		*absent = true;
		return 0;
	}
	if (rc == -ENOEXEC)
		n = 0;  /* an unusable file is an answer too: nothing there */
	else if (rc)
		return rc;
	nf = n;
	for (size_t i = 0; i < n; i++)
		syms[i] = (st_symbol){f[i].function, f[i].file, f[i].line};
	if (n == 0) {
		/* nothing names it: remember where its function starts */
		uint64_t start;
		bool known = rc != -ENOEXEC && srv_sym_func_start(s, bid, bl, off, &start) == 0 &&
		             start < (uint64_t)INT64_MAX;
		syms[0] = (st_symbol){"", NULL, known ? (int64_t)start + 1 : 0};
		n = 1;
		rc = 0;
	}
	if (s->db)
		rc = st_symbols_put(s->db, loc, syms, n);
	mem_put(s, loc, syms, n);
	int k = out ? fill_out(syms, n, out, max, object_name) : 0;
	srv_sym_frames_free(f, nf);
	atomic_fetch_add(&s->st_sym, 1);
	return rc ? rc : k;
}

int srv_sym_resolve(void *arg, const st_frame_info *loc, q_sym *out, size_t max)
{
	srv_sym *s = arg;
	if (loc->kind != ST_FRAME_USER || !loc->build_id_len)
		return 0;  /* kernel and named frames carry their names */
	atomic_fetch_add(&s->st_lookups, 1);
	pthread_rwlock_rdlock(&s->cmu);
	mentry *e = mem_get(s, loc->location_id);
	int n = -1;
	if (e) {
		n = fill_out(e->f, e->n < MAX_CHAIN ? e->n : MAX_CHAIN, out, max, loc->object_name);
	}
	pthread_rwlock_unlock(&s->cmu);
	if (n >= 0) {
		atomic_fetch_add(&s->st_mem, 1);
		return n;
	}
	if (s->db) {
		got g = {s, out, max, loc->object_name, -1};
		int rc = st_symbols_get(s->db, &loc->location_id, 1, on_cached, &g);
		if (rc)
			return rc;
		if (g.n >= 0) {
			atomic_fetch_add(&s->st_cache, 1);
			return g.n;
		}
	}
	bool absent;
	n = symbolize_store(s, loc->location_id, loc->build_id, loc->build_id_len, loc->offset,
	                    out, max, loc->object_name, &absent);
	if (absent)
		atomic_fetch_add(&s->st_unknown, 1);
	return n;
}

/* Closes build ID bid's files and empties the memory cache. */
static void forget_here(srv_sym *s, const uint8_t *bid, size_t bl)
{
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nmods; i++)
		if (s->mods[i]->bidlen == bl && !memcmp(s->mods[i]->bid, bid, bl)) {
			mod_free(s->mods[i]);
			s->mods[i] = s->mods[--s->nmods];
			break;
		}
	pthread_mutex_unlock(&s->mu);
	/* the memory cache is keyed by location, not build ID: start it over
	 * (uploads are rare; SQLite answers meanwhile) */
	pthread_rwlock_wrlock(&s->cmu);
	mem_clear(s);
	pthread_rwlock_unlock(&s->cmu);
}

int srv_sym_forget(srv_sym *s, const uint8_t *bid, size_t bl)
{
	if (!bl || bl > WIRE_MAX_BUILD_ID)
		return -EINVAL;
	forget_here(s, bid, bl);
	int rc = s->db ? st_symbols_forget(s->db, bid, (uint32_t)bl) : 0;
	/* after the caches are empty: a query that looks later names anew */
	atomic_fetch_add(&s->generation, 1);
	return rc;
}

uint64_t srv_sym_generation(void *arg)
{
	return atomic_load(&((srv_sym *)arg)->generation);
}

/* A file another server kept (st_file_changes): "<hex>" or "<hex>.debug".
 * That server forgot the stored answers; this one forgets what it has
 * open and in memory. */
static int on_file_changed(void *arg, const char *name)
{
	srv_sym *s = arg;
	uint8_t bid[WIRE_MAX_BUILD_ID];
	size_t n = strcspn(name, "."), bl = n / 2;
	if (n % 2 || !bl || bl > WIRE_MAX_BUILD_ID)
		return 0;
	for (size_t i = 0; i < bl; i++)
		if (sscanf(name + 2 * i, "%2hhx", &bid[i]) != 1)
			return 0;
	forget_here(s, bid, bl);
	/* that server forgot the stored answers first */
	atomic_fetch_add(&s->generation, 1);
	return 0;
}

/* ---- background ---- */

typedef struct todo {
	int64_t loc;
	uint8_t bid[WIRE_MAX_BUILD_ID];
	uint32_t bl;
	uint64_t off;
} todo;

typedef struct todos {
	todo *v;
	size_t n, cap;
} todos;

static int on_missing(void *arg, int64_t loc, const uint8_t *bid, uint32_t bl, uint64_t off)
{
	todos *t = arg;
	if (t->n == t->cap || bl == 0 || bl > WIRE_MAX_BUILD_ID)
		return 0;
	todo *d = &t->v[t->n++];
	d->loc = loc;
	memcpy(d->bid, bid, bl);
	d->bl = bl;
	d->off = off;
	return 0;
}

int srv_sym_pass(srv_sym *s, size_t limit, size_t *done)
{
	size_t did = 0;
	int rc = 0;
	if (done)
		*done = 0;
	if (!s->db || !limit)
		return 0;
	/* look at up to 8x the limit of candidates: most may lack files */
	/* files other servers sharing the store kept since the last pass */
	if ((rc = st_file_changes(s->db, &s->files_cursor, on_file_changed, s)))
		return rc;
	todos t = {calloc(limit * 8, sizeof(todo)), 0, limit * 8};
	if (!t.v)
		return -ENOMEM;
	rc = st_symbols_missing(s->db, s->pass_after, t.cap, on_missing, &t);
	size_t fetches = 0;
	for (size_t i = 0; i < t.n && !rc && did < limit; i++) {
		bool absent;
		int k = symbolize_store(s, t.v[i].loc, t.v[i].bid, t.v[i].bl, t.v[i].off, NULL, 0,
		                        NULL, &absent);
		/* srv_dbgd_fetch remembers each build ID's outcome for an hour, so
		 * asking again for the next location of the same object is free */
		if (k == 0 && absent && s->dbgd && fetches < DBGD_PER_PASS) {
			bool seen = i > 0 && t.v[i - 1].bl == t.v[i].bl &&
			            !memcmp(t.v[i - 1].bid, t.v[i].bid, t.v[i].bl);
			fetches += !seen;
			if (srv_dbgd_fetch(s->dbgd, s->db, t.v[i].bid, t.v[i].bl) == 0) {
				srv_sym_forget(s, t.v[i].bid, t.v[i].bl);
				k = symbolize_store(s, t.v[i].loc, t.v[i].bid, t.v[i].bl, t.v[i].off, NULL,
				                    0, NULL, &absent);
			}
		}
		if (k < 0)
			rc = k;
		else if (!absent)
			did++;
		s->pass_after = t.v[i].loc;
	}
	/* at the end of the list, start over: files may have arrived for
	 * locations passed over */
	if (!rc && t.n < t.cap)
		s->pass_after = 0;
	free(t.v);
	if (done)
		*done = did;
	return rc;
}

/* ---- life ---- */

int srv_sym_new(const srv_sym_opts *opt, srv_sym **out)
{
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOTSUP;
	srv_sym *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	snprintf(s->dir, sizeof(s->dir), "%s", opt->debuginfo_dir);
	s->db = opt->db;
	s->max_open = opt->max_open ? opt->max_open : 32;
	s->dbgd = opt->dbgd;
	s->mods = calloc(s->max_open, sizeof(*s->mods));
	if (!s->mods) {
		free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_rwlock_init(&s->cmu, NULL);
	*out = s;
	return 0;
}

void srv_sym_free(srv_sym *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nmods; i++)
		mod_free(s->mods[i]);
	free(s->mods);
	mem_clear(s);
	pthread_mutex_destroy(&s->mu);
	pthread_rwlock_destroy(&s->cmu);
	free(s);
}

void srv_sym_get_stats(srv_sym *s, srv_sym_stats *out)
{
	out->lookups = atomic_load(&s->st_lookups);
	out->memory_hits = atomic_load(&s->st_mem);
	out->cache_hits = atomic_load(&s->st_cache);
	out->symbolized = atomic_load(&s->st_sym);
	out->unknown = atomic_load(&s->st_unknown);
	out->files_opened = atomic_load(&s->st_opened);
	out->go_tables = atomic_load(&s->st_go);
	out->go_unsupported = atomic_load(&s->st_go_unsupported);
	out->go_malformed = atomic_load(&s->st_go_malformed);
}
