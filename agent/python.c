/* python.c - CPython processes: recognises the interpreter in a process'
 * mappings, fills its BPF entry (bpf/profile.h's sm_py_proc) so the walk in
 * the kernel replaces evaluation frames by Python frames, and names those
 * frames from the process' memory: qualified name, file and the line being
 * executed. Python code has no build ID and no debug file; its names exist
 * only in the process, so they are read here, on the host, and sent as
 * named frames (docs/architecture.md). Not here: the walk itself (bpf/),
 * other runtimes.
 *
 * Everything read from the process is hostile: sizes are bounded, types
 * are checked against the interpreter's own type objects, and a code
 * object is read twice around its strings so that one freed meanwhile
 * gives no name rather than a wrong one. */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "agent/agent.h"
#include "agent/python_layouts.h"
#include "bpf/profile.h"

/* What storage takes (storage.h: ST_MAX_SYMBOL_LEN, ST_MAX_FILE_LEN); a
 * longer name is cut at a character, so that the batch is not refused. */
#define MAX_NAME_BYTES 1024
#define MAX_FILE_BYTES 4096
#define MAX_STR_CHARS 4096          /* characters read of a name or file */
#define MAX_LINETABLE (256u << 10)  /* bytes of a line table */
#define MAX_CODES 16384             /* code objects cached per process */
#define PENDING_TRIES 30            /* drains a half-started interpreter is retried */
#define CODE_TRIES 4                /* reads of a code object after its first */

/* ---- layouts ---- */

const ag_py_layout *ag_py_layout_find(unsigned major, unsigned minor)
{
	for (size_t i = 0; i < AG_PY_NLAYOUTS; i++)
		if (ag_py_layouts[i].major == major && ag_py_layouts[i].minor == minor)
			return &ag_py_layouts[i];
	return NULL;
}

/* The bytes of a code object the walk and the reader need: every field
 * they use lies below this. */
static uint16_t code_need(const ag_py_layout *L)
{
	uint16_t m = L->co_filename;
	const uint16_t f[] = {L->co_name, L->co_qualname, L->co_firstlineno, L->co_linetable,
	                      L->co_size, 8 /* ob_type */};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (f[i] > m)
			m = f[i];
	return (uint16_t)(m + 8);
}

/* ---- line tables ---- */

static uint32_t rd_varint6(const uint8_t *t, size_t n, size_t *i)
{
	uint32_t v = 0;
	unsigned shift = 0;
	while (*i < n && shift < 32) {
		uint8_t b = t[(*i)++];
		v |= (uint32_t)(b & 63) << shift;
		shift += 6;
		if (!(b & 64))
			break;
	}
	return v;
}

int32_t ag_py_addr2line(const ag_py_layout *L, const uint8_t *t, size_t n, int32_t first,
                        int64_t lasti)
{
	if (lasti < 0)          /* not started: CPython says the first line too */
		return first > 0 ? first : 0;
	/* offsets in bytes; lasti counts bytes only in 3.8 and 3.9 */
	int64_t addr = L->lines == AG_PY_LINES_LNOTAB ? lasti : 2 * lasti;
	int64_t line = first, start, end = 0;
	switch (L->lines) {
	case AG_PY_LINES_LNOTAB:
		/* (address delta, signed line delta) pairs */
		for (size_t i = 0; i + 1 < n; i += 2) {
			end += t[i];
			if (end > addr)
				break;
			line += (int8_t)t[i + 1];
		}
		return line > 0 && line <= INT32_MAX ? (int32_t)line : 0;
	case AG_PY_LINES_310:
		/* (address delta, line delta) pairs; line delta -128: no line */
		for (size_t i = 0; i + 1 < n; i += 2) {
			int8_t ld = (int8_t)t[i + 1];
			start = end;
			end += t[i];
			if (ld != -128)
				line += ld;
			if (start <= addr && addr < end)
				return ld != -128 && line > 0 && line <= INT32_MAX ? (int32_t)line : 0;
		}
		return 0;
	default:
		/* the location table (Objects/locations.md): an entry starts
		 * with a byte of bit 7 set, code in bits 3-6, length - 1 in
		 * code units in bits 0-2; codes 13 and 14 carry a signed
		 * varint line delta, 10-12 a delta of 0-2, 15 means no line */
		for (size_t i = 0; i < n;) {
			uint8_t b = t[i++];
			if (!(b & 0x80))
				continue;          /* inside an entry: find the next one */
			unsigned code = (b >> 3) & 15;
			int64_t delta = 0;
			if (code == 13 || code == 14) {
				size_t k = i;
				uint32_t u = rd_varint6(t, n, &k);
				delta = u & 1 ? -(int64_t)(u >> 1) : (int64_t)(u >> 1);
			} else if (code >= 10 && code <= 12) {
				delta = code - 10;
			}
			line += delta;
			start = end;
			end += 2 * ((b & 7) + 1);
			if (start <= addr && addr < end)
				return code != 15 && line > 0 && line <= INT32_MAX ? (int32_t)line : 0;
			if (line < INT32_MIN || line > INT32_MAX)
				return 0;          /* hostile deltas: stop before overflow */
		}
		return 0;
	}
}

/* ---- reading objects ---- */

static uint64_t get64(const uint8_t *b, uint16_t off)
{
	uint64_t v;
	memcpy(&v, b + off, 8);
	return v;
}

static uint32_t get32(const uint8_t *b, uint16_t off)
{
	uint32_t v;
	memcpy(&v, b + off, 4);
	return v;
}

/* Code point c as UTF-8: U+FFFD for surrogates and past U+10FFFF, '?'
 * for NUL (names travel as C strings). */
static size_t put_utf8(char *o, uint32_t c)
{
	if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		c = 0xfffd;
	return wire_utf8_put(o, c ? c : '?');
}

/* A str object as UTF-8, at most max bytes (cut at a character). The
 * caller frees *out. -EFAULT unreadable, -EBADMSG not a compact str. */
static int read_str(const ag_py_layout *L, const ag_py_types *ty, ag_py_read_fn rd, void *arg,
                    uint64_t addr, size_t max, char **out)
{
	uint8_t h[128];
	*out = NULL;
	if (!addr || L->str_compact_data > sizeof(h) || rd(arg, addr, h, L->str_compact_data))
		return -EFAULT;
	if (get64(h, 8) != ty->str)
		return -EBADMSG;
	uint32_t state = get32(h, L->str_state);
	unsigned kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
	int64_t len = (int64_t)get64(h, 16);
	if (!compact || (kind != 1 && kind != 2 && kind != 4) || (ascii && kind != 1) ||
	    len < 0 || len > MAX_STR_CHARS)
		return -EBADMSG;
	size_t nb = (size_t)len * kind;
	uint8_t *raw = malloc(nb + 1);
	char *s = malloc(4 * (size_t)len + 1);
	int rc = 0;
	if (!raw || !s) {
		rc = -ENOMEM;
		goto out;
	}
	if (nb && rd(arg, addr + (ascii ? L->str_ascii_data : L->str_compact_data), raw, nb)) {
		rc = -EFAULT;
		goto out;
	}
	size_t o = 0;
	for (size_t i = 0; i < (size_t)len; i++) {
		uint32_t c = kind == 1 ? raw[i] :
		             kind == 2 ? (uint32_t)raw[2 * i] | (uint32_t)raw[2 * i + 1] << 8 :
		             get32(raw + 4 * i, 0);
		if (ascii && c >= 0x80) {
			rc = -EBADMSG;  /* an ASCII string that is not: torn */
			goto out;
		}
		char u[4];
		size_t k = put_utf8(u, c);
		if (o + k > max)
			break;
		memcpy(s + o, u, k);
		o += k;
	}
	s[o] = 0;
	*out = s;
	s = NULL;
out:
	free(raw);
	free(s);
	return rc;
}

void ag_py_code_free(ag_py_code *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->file);
	free(c->lines);
	memset(c, 0, sizeof(*c));
}

int ag_py_read_code(const ag_py_layout *L, const ag_py_types *ty, ag_py_read_fn rd, void *arg,
                    uint64_t addr, ag_py_code *out)
{
	uint8_t h[SM_PY_READ_MAX], h2[SM_PY_READ_MAX];
	uint16_t need = code_need(L);
	int rc;
	memset(out, 0, sizeof(*out));
	if (!addr || need > sizeof(h) || rd(arg, addr, h, need))
		return -EFAULT;
	if (get64(h, 8) != ty->code)
		return -EBADMSG;
	uint64_t pfile = get64(h, L->co_filename), pname = get64(h, L->co_name);
	uint64_t pqual = L->co_qualname ? get64(h, L->co_qualname) : pname;
	uint64_t ptab = get64(h, L->co_linetable);
	int32_t first = (int32_t)get32(h, L->co_firstlineno);
	out->fingerprint = sm_py_fingerprint(pfile, pname, (uint32_t)first);
	out->firstlineno = first > 0 ? first : 0;
	if (L->co_size) {
		int64_t units = (int64_t)get64(h, L->co_size);
		if (units < 0 || units > INT32_MAX)
			return -EBADMSG;
		out->ncode = (uint32_t)units;
	}
	if ((rc = read_str(L, ty, rd, arg, pqual, MAX_NAME_BYTES, &out->name)) ||
	    (rc = read_str(L, ty, rd, arg, pfile, MAX_FILE_BYTES, &out->file)))
		goto out;
	/* the line table: a bytes object */
	uint8_t bh[64];
	if (L->bytes_data > sizeof(bh) || !ptab || rd(arg, ptab, bh, L->bytes_data)) {
		rc = -EFAULT;
		goto out;
	}
	int64_t tn = (int64_t)get64(bh, L->bytes_size);
	if (get64(bh, 8) != ty->bytes || tn < 0 || tn > MAX_LINETABLE) {
		rc = -EBADMSG;
		goto out;
	}
	out->lines = malloc((size_t)tn + 1);
	if (!out->lines) {
		rc = -ENOMEM;
		goto out;
	}
	out->nlines = (size_t)tn;
	if (tn && rd(arg, ptab + L->bytes_data, out->lines, (size_t)tn)) {
		rc = -EFAULT;
		goto out;
	}
	/* still the same object: freed and reused meanwhile, it would have
	 * other strings or another table */
	if (rd(arg, addr, h2, need)) {
		rc = -EFAULT;
		goto out;
	}
	if (memcmp(h, h2, need) && (get64(h2, 8) != ty->code || get64(h2, L->co_filename) != pfile ||
	                            get64(h2, L->co_name) != pname ||
	                            get64(h2, L->co_linetable) != ptab ||
	                            (L->co_qualname && get64(h2, L->co_qualname) != pqual) ||
	                            get32(h2, L->co_firstlineno) != (uint32_t)first))
		rc = -EBADMSG;
out:
	if (rc)
		ag_py_code_free(out);
	return rc;
}

/* ---- machine code the interpreter and libc are read from ---- */

int ag_py_decode_tss(const uint8_t *c, size_t n, uint64_t fn_addr, uint64_t *key_addr)
{
	/* PyGILState_GetThisThreadState loads the key for pthread_getspecific
	 * into edi: "mov edi, [rip + d]" (8b 3d d32) when the call was
	 * inlined, or passes the Py_tss_t: "lea rdi, [rip + d]" (48 8d 3d
	 * d32), whose key is its second int */
	for (size_t i = 0; i + 6 <= n; i++) {
		size_t len = 0, plus = 0;
		if (c[i] == 0x8b && c[i + 1] == 0x3d)
			len = 6;
		else if (i + 7 <= n && c[i] == 0x48 && c[i + 1] == 0x8d && c[i + 2] == 0x3d)
			len = 7, plus = 4;
		if (!len)
			continue;
		int32_t d;
		memcpy(&d, c + i + len - 4, 4);
		*key_addr = fn_addr + i + len + (uint64_t)(int64_t)d + plus;
		return 0;
	}
	return -ENOENT;
}

int ag_py_decode_getspecific(const uint8_t *c, size_t n, uint16_t *first, uint16_t *second)
{
	/* glibc x86_64: key < 32: "add rax, imm8; shl rax, 4; add rax, fs:0x10"
	 * (specific_1stblock[key] at (imm + key) * 16 from the thread, its
	 * data 8 further); else "mov rax, fs:[disp32 + rax * 8]" (specific[]) */
	int got = 0;
	for (size_t i = 0; i + 9 <= n; i++) {
		if (!(got & 1) && c[i] == 0x48 && c[i + 1] == 0x83 && c[i + 2] == 0xc0 &&
		    c[i + 4] == 0x48 && c[i + 5] == 0xc1 && c[i + 6] == 0xe0 && c[i + 7] == 0x04) {
			*first = (uint16_t)(c[i + 3] * 16 + 8);
			got |= 1;
		}
		if (!(got & 2) && c[i] == 0x64 && c[i + 1] == 0x48 && c[i + 2] == 0x8b &&
		    c[i + 3] == 0x04 && c[i + 4] == 0xc5) {
			uint32_t d;
			memcpy(&d, c + i + 5, 4);
			if (d < 0x10000) {
				*second = (uint16_t)d;
				got |= 2;
			}
		}
	}
	return got == 3 ? 0 : -ENOENT;
}

/* ---- ELF files ---- */

typedef struct elfsym {
	const char *name;
	uint64_t value, size;
	bool found;
} elfsym;

/* Looks up syms in the file's dynamic symbols (and its full table when it
 * has one); returns 0 when the file is ELF. *exec: ET_EXEC. */
static int elf_syms(Elf *e, elfsym *syms, size_t n)
{
	for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(s, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB) ||
		    !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(s, NULL);
		size_t count = d ? d->d_size / sh.sh_entsize : 0;
		for (size_t i = 0; i < count; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(d, (int)i, &sym) || sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			const char *nm = elf_strptr(e, sh.sh_link, sym.st_name);
			if (!nm)
				continue;
			for (size_t k = 0; k < n; k++)
				if (!syms[k].found && !strcmp(nm, syms[k].name)) {
					syms[k].value = sym.st_value;
					syms[k].size = sym.st_size;
					syms[k].found = true;
				}
		}
	}
	return 0;
}

/* n bytes of the file at virtual address va (a loaded segment's). */
static int elf_read_va(Elf *e, int fd, uint64_t va, void *buf, size_t n)
{
	size_t nph = 0;
	if (elf_getphdrnum(e, &nph))
		return -ENOEXEC;
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD || va < ph.p_vaddr ||
		    va + n > ph.p_vaddr + ph.p_filesz)
			continue;
		ssize_t got = pread(fd, buf, n, (off_t)(ph.p_offset + (va - ph.p_vaddr)));
		return got == (ssize_t)n ? 0 : -EIO;
	}
	return -ENOENT;
}

/* What one interpreter file says, kept per object: many processes run
 * one python3.X. */
enum { OBJ_NOT_PYTHON, OBJ_CPYTHON, OBJ_UNKNOWN_VERSION, OBJ_LIBC, OBJ_NOT_LIBC };

typedef struct pyobj {
	ag_obj *obj;
	int status;
	unsigned major, minor;
	const ag_py_layout *L;
	uint64_t eval, eval_size, code_type, str_type, bytes_type, key_va;
	uint16_t tls_first, tls_second;   /* libc */
	uint64_t phdr_vaddr, phdr_offset; /* the executable segment, for the bias */
	bool exec;                        /* ET_EXEC: no bias */
} pyobj;

/* "python3.11", "libpython3.8.so.1.0", "python3.12d": the minor version
 * in a file name, -1 when the name is no interpreter's. */
static int name_minor(const char *name, bool *candidate)
{
	const char *b = ag_base_name(name);
	*candidate = false;
	if (!strncmp(b, "lib", 3))
		b += 3;
	if (strncmp(b, "python", 6))
		return -1;
	*candidate = true;
	b += 6;
	if (strncmp(b, "3.", 2))
		return -1;
	char *end;
	long v = strtol(b + 2, &end, 10);
	return end > b + 2 && v >= 0 && v < 100 ? (int)v : -1;
}

static void analyze_python(pyobj *po, Elf *e, int fd, const char *name)
{
	elfsym s[] = {{"_PyRuntime"}, {"PyGILState_GetThisThreadState"},
	              {"_PyEval_EvalFrameDefault"}, {"PyCode_Type"}, {"PyUnicode_Type"},
	              {"PyBytes_Type"}, {"Py_Version"}};
	enum { RUNTIME, GILSTATE, EVAL, CODE, STR, BYTES, VERSION, NS };
	elf_syms(e, s, NS);
	po->status = OBJ_NOT_PYTHON;
	for (int i = 0; i < VERSION; i++)
		if (!s[i].found)
			return;
	bool cand;
	int minor = name_minor(name, &cand);
	po->major = 3;
	po->minor = minor < 0 ? 0 : (unsigned)minor;
	if (s[VERSION].found) {
		/* 3.11+: PY_VERSION_HEX in the file, 0x030b02f0 for 3.11.2 */
		uint64_t v = 0;
		if (elf_read_va(e, fd, s[VERSION].value, &v, 4))
			return;
		po->major = (unsigned)(v >> 24) & 0xff;
		po->minor = (unsigned)(v >> 16) & 0xff;
	} else if (minor < 0) {
		return;
	}
	po->eval = s[EVAL].value;
	po->eval_size = s[EVAL].size ? s[EVAL].size : 1;
	po->code_type = s[CODE].value;
	po->str_type = s[STR].value;
	po->bytes_type = s[BYTES].value;
	po->L = ag_py_layout_find(po->major, po->minor);
	if (!po->L) {
		po->status = OBJ_UNKNOWN_VERSION;
		return;
	}
	uint8_t code[32];
	if (elf_read_va(e, fd, s[GILSTATE].value, code, sizeof(code)) ||
	    ag_py_decode_tss(code, sizeof(code), s[GILSTATE].value, &po->key_va) ||
	    po->key_va < s[RUNTIME].value || po->key_va >= s[RUNTIME].value + s[RUNTIME].size)
		/* not the instruction expected: the layout's offset */
		po->key_va = s[RUNTIME].value + po->L->tss_key;
	po->status = OBJ_CPYTHON;
}

static void analyze_libc(pyobj *po, Elf *e, int fd)
{
	elfsym s[] = {{"pthread_getspecific"}};
	elf_syms(e, s, 1);
	po->status = OBJ_NOT_LIBC;
	uint8_t code[128];
	size_t n = s[0].size && s[0].size < sizeof(code) ? s[0].size : sizeof(code);
	if (!s[0].found || elf_read_va(e, fd, s[0].value, code, n) ||
	    ag_py_decode_getspecific(code, n, &po->tls_first, &po->tls_second))
		return;
	po->status = OBJ_LIBC;
}

/* ---- processes ---- */

enum { P_NONE, P_PENDING, P_ACTIVE, P_FAILED, P_NO_LIBC, P_UNKNOWN_VERSION, P_NOT_CPYTHON };

typedef struct code_ent {
	uint64_t addr;          /* 0: free */
	ag_py_code c;
	bool bad;               /* read and found unnamable */
	uint8_t tries;          /* reads again (CODE_TRIES at most) */
} code_ent;

typedef struct pyproc {
	pid_t pid;
	int status;
	int tries;
	pyobj *interp, *libc;
	uint64_t bias;
	ag_py_types ty;
	struct sm_py_proc e;
	ag_obj *counted;        /* the file counted as unknown or not CPython */
	code_ent *codes;        /* open addressing, MAX_CODES slots when used */
	size_t ncodes;
	struct pyproc *next;
} pyproc;

#define NBUCKETS 1024

struct ag_py {
	ag_py_opts o;
	pyobj **objs;
	size_t nobjs;
	pyproc *b[NBUCKETS];
	ag_py_stats st;
};

int ag_py_new(const ag_py_opts *o, ag_py **out)
{
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOTSUP;
	ag_py *py = calloc(1, sizeof(*py));
	if (!py)
		return -ENOMEM;
	py->o = *o;
	if (!py->o.proc_root)
		py->o.proc_root = "/proc";
	*out = py;
	return 0;
}

static void codes_clear(pyproc *p)
{
	if (p->codes)
		for (size_t i = 0; i < MAX_CODES; i++)
			ag_py_code_free(&p->codes[i].c);
	free(p->codes);
	p->codes = NULL;
	p->ncodes = 0;
}

void ag_py_free(ag_py *py)
{
	if (!py)
		return;
	for (size_t i = 0; i < NBUCKETS; i++)
		for (pyproc *p = py->b[i], *nx; p; p = nx) {
			nx = p->next;
			codes_clear(p);
			free(p);
		}
	for (size_t i = 0; i < py->nobjs; i++)
		free(py->objs[i]);
	free(py->objs);
	free(py);
}

static pyproc **find_proc(ag_py *py, pid_t pid)
{
	pyproc **pp = &py->b[(uint32_t)pid % NBUCKETS];
	while (*pp && (*pp)->pid != pid)
		pp = &(*pp)->next;
	return pp;
}

/* The analysis of the object behind mapping m (opened through the
 * process), done once per object. libc: look at it as a C library. */
static pyobj *get_obj(ag_py *py, pid_t pid, const ag_mapping *m, bool libc)
{
	for (size_t i = 0; i < py->nobjs; i++)
		if (py->objs[i]->obj == m->obj &&
		    (py->objs[i]->status == OBJ_LIBC || py->objs[i]->status == OBJ_NOT_LIBC) == libc)
			return py->objs[i];
	int fd = ag_mapping_open(py->o.proc_root, pid, m);
	if (fd < 0)
		return NULL;     /* tried again at the next reread */
	pyobj *po = calloc(1, sizeof(*po));
	pyobj **nv = realloc(py->objs, (py->nobjs + 1) * sizeof(*nv));
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!po || !nv || !e || elf_kind(e) != ELF_K_ELF) {
		if (nv)
			py->objs = nv;
		free(po);
		elf_end(e);
		close(fd);
		return NULL;
	}
	py->objs = nv;
	py->objs[py->nobjs++] = po;
	po->obj = m->obj;
	GElf_Ehdr eh;
	po->exec = gelf_getehdr(e, &eh) && eh.e_type == ET_EXEC;
	if (libc)
		analyze_libc(po, e, fd);
	else
		analyze_python(po, e, fd, m->obj->name);
	/* the segment the executable mapping maps, for the load bias */
	size_t nph = 0;
	if (!elf_getphdrnum(e, &nph))
		for (size_t i = 0; i < nph; i++) {
			GElf_Phdr ph;
			if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) {
				po->phdr_vaddr = ph.p_vaddr;
				po->phdr_offset = ph.p_offset;
				break;
			}
		}
	if (po->status == OBJ_UNKNOWN_VERSION)
		fprintf(stderr, "smolder-agent: %s is CPython %u.%u, whose structures this agent "
		        "does not know: its processes are profiled as native code\n",
		        m->obj->name, po->major, po->minor);
	elf_end(e);
	close(fd);
	return po;
}

/* Moves p to status st, keeping the gauges of processes per status. */
static void set_status(ag_py *py, pyproc *p, int st)
{
	if (p->status == P_ACTIVE)
		py->st.processes--;
	else if (p->status == P_FAILED || p->status == P_NO_LIBC)
		py->st.setup_failed--;
	p->status = st;
	if (st == P_ACTIVE)
		py->st.processes++;
	else if (st == P_FAILED || st == P_NO_LIBC)
		py->st.setup_failed++;
}

typedef struct memrd {
	pid_t pid;
} memrd;

/* Reads n bytes of the process' memory at addr, all or nothing. */
static int read_mem(void *arg, uint64_t addr, void *buf, size_t n)
{
	const memrd *m = arg;
	struct iovec l = {buf, n}, r = {(void *)(uintptr_t)addr, n};
	ssize_t got = process_vm_readv(m->pid, &l, 1, &r, 1, 0);
	return got == (ssize_t)n ? 0 : -EFAULT;
}

/* Fills and writes p's BPF entry once its interpreter has a thread key. */
static void activate(ag_py *py, pyproc *p)
{
	const ag_py_layout *L = p->interp->L;
	uint32_t tss[2];
	memrd m = {p->pid};
	if (read_mem(&m, p->interp->key_va + p->bias - 4, tss, sizeof(tss)) || tss[0] != 1 ||
	    tss[1] >= 1024) {
		/* not initialized yet (the interpreter is starting), or not
		 * readable now: again at the next drain, for a while */
		if (++p->tries > PENDING_TRIES)
			set_status(py, p, P_FAILED);
		return;
	}
	struct sm_py_proc *e = &p->e;
	memset(e, 0, sizeof(*e));
	e->eval_lo = p->interp->eval + p->bias;
	e->eval_hi = e->eval_lo + p->interp->eval_size;
	e->code_type = p->ty.code;
	e->tls_key = tss[1];
	e->tls_first = p->libc->tls_first;
	e->tls_second = p->libc->tls_second;
	e->ts_thread_id = L->ts_thread_id;
	e->ts_frame = L->ts_frame;
	e->ts_cframe = L->ts_cframe;
	e->cf_frame = L->cf_frame;
	e->cf_previous = L->cf_previous;
	e->has_cf_frame = L->walk == SM_PY_WALK_CFRAME && L->lasti == SM_PY_LASTI_PTR;
	e->fr_code = L->fr_code;
	e->fr_back = L->fr_back;
	e->fr_lasti = L->lasti == SM_PY_LASTI_PTR ? L->fr_instr : L->fr_lasti;
	e->fr_end = L->end == SM_PY_END_ENTRY ? L->fr_is_entry : L->fr_owner;
	e->co_filename = L->co_filename;
	e->co_name = L->co_name;
	e->co_firstlineno = L->co_firstlineno;
	e->co_code = L->co_code;
	e->walk = L->walk;
	e->end = L->end;
	e->lasti = L->lasti;
	uint16_t ts = L->ts_thread_id, fr = L->fr_code;
	const uint16_t tf[] = {L->ts_frame, L->ts_cframe}, ff[] = {L->fr_back, e->fr_lasti,
	                                                            e->fr_end};
	for (size_t i = 0; i < 2; i++)
		ts = tf[i] > ts ? tf[i] : ts;
	for (size_t i = 0; i < 3; i++)
		fr = ff[i] > fr ? ff[i] : fr;
	e->ts_read = (uint16_t)(ts + 8);
	e->fr_read = (uint16_t)(fr + 8);
	e->co_read = code_need(L);
	if (py->o.procs_fd >= 0 &&
	    bpf_map_update_elem(py->o.procs_fd, &p->pid, e, BPF_ANY)) {
		set_status(py, p, P_FAILED);
		return;
	}
	set_status(py, p, P_ACTIVE);
	if (py->o.verbose)
		fprintf(stderr, "smolder-agent: pid %d runs CPython %u.%u (%s): Python frames on\n",
		        p->pid, p->interp->major, p->interp->minor, p->interp->obj->name);
}

static void deactivate(ag_py *py, pyproc *p)
{
	if (p->status == P_ACTIVE && py->o.procs_fd >= 0)
		bpf_map_delete_elem(py->o.procs_fd, &p->pid);
	set_status(py, p, P_NONE);
	codes_clear(p);
}

void ag_py_proc(ag_py *py, const ag_proc *pr)
{
	pyobj *interp = NULL, *libc = NULL;
	const ag_mapping *im = NULL;
	bool candidate = false, unknown = false;
	ag_obj *cobj = NULL;     /* the first file named like an interpreter's */
	for (size_t i = 0; i < pr->nmaps; i++) {
		const ag_mapping *m = &pr->maps[i];
		if (m->kind != AG_MAP_FILE || !m->obj || !m->obj->name)
			continue;
		bool cand;
		name_minor(m->obj->name, &cand);
		const char *b = ag_base_name(m->obj->name);
		if (cand && !interp) {
			candidate = true;
			cobj = cobj ? cobj : m->obj;
			pyobj *po = get_obj(py, pr->pid, m, false);
			if (po && po->status == OBJ_CPYTHON) {
				interp = po;
				im = m;
			}
			unknown |= po && po->status == OBJ_UNKNOWN_VERSION;
		} else if (!libc && (!strncmp(b, "libc.so", 7) || !strncmp(b, "libc-", 5) ||
		                     !strncmp(b, "libpthread", 10))) {
			pyobj *po = get_obj(py, pr->pid, m, true);
			if (po && po->status == OBJ_LIBC)
				libc = po;
		}
	}
	pyproc **pp = find_proc(py, pr->pid), *p = *pp;
	if (!candidate && !p)
		return;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return;
		p->pid = pr->pid;
		*pp = p;
	}
	if (!interp) {
		/* counted once per process */
		if (candidate && p->status == P_NONE && p->counted != cobj) {
			/* the same image seen again after its exec was announced
			 * late (its first mappings read were already the new
			 * image's) is not counted twice */
			p->counted = cobj;
			set_status(py, p, unknown ? P_UNKNOWN_VERSION : P_NOT_CPYTHON);
			if (unknown)
				py->st.unknown_version++;
			else
				py->st.not_cpython++;
		}
		return;
	}
	uint64_t bias = interp->exec ? 0 :
	                im->start - im->pgoff - interp->phdr_vaddr + interp->phdr_offset;
	if (p->interp == interp && p->bias == bias &&
	    (p->status == P_ACTIVE || p->status == P_PENDING || p->status == P_FAILED ||
	     (p->status == P_NO_LIBC && !libc)))
		return;         /* the same interpreter, a reread of the mappings */
	deactivate(py, p);
	p->interp = interp;
	p->bias = bias;
	p->tries = 0;
	p->ty = (ag_py_types){interp->code_type + bias, interp->str_type + bias,
	                      interp->bytes_type + bias};
	if (!libc) {
		/* none mapped yet (the first sample may come while the loader
		 * maps libraries: the rereads of the mappings try again), or
		 * one whose thread data this agent cannot read (not glibc) */
		if (py->o.verbose)
			fprintf(stderr, "smolder-agent: pid %d runs CPython but maps no glibc the "
			        "agent can read thread data of (yet): no Python frames\n", pr->pid);
		set_status(py, p, P_NO_LIBC);
		return;
	}
	p->libc = libc;
	set_status(py, p, P_PENDING);
	activate(py, p);
}

void ag_py_tick(ag_py *py)
{
	for (size_t i = 0; i < NBUCKETS; i++)
		for (pyproc *p = py->b[i]; p; p = p->next)
			if (p->status == P_PENDING)
				activate(py, p);
}

void ag_py_proc_gone(ag_py *py, pid_t pid, bool exec)
{
	pyproc **pp = find_proc(py, pid), *p = *pp;
	if (!p)
		return;
	deactivate(py, p);
	if (exec) {
		/* a new image: nothing of the old one stays but what was counted */
		ag_obj *counted = p->counted;
		pyproc *next = p->next;
		memset(p, 0, sizeof(*p));
		p->pid = pid;
		p->counted = counted;
		p->next = next;
		return;
	}
	*pp = p->next;
	free(p);
}

/* The cached code object at addr in p, read when unknown. */
static code_ent *code_get(ag_py *py, pyproc *p, uint64_t addr)
{
	if (!p->codes) {
		p->codes = calloc(MAX_CODES, sizeof(*p->codes));
		if (!p->codes)
			return NULL;
	}
	size_t i = (size_t)((addr >> 4) * 0x9e3779b97f4a7c15ULL >> 50) & (MAX_CODES - 1);
	while (p->codes[i].addr && p->codes[i].addr != addr)
		i = (i + 1) & (MAX_CODES - 1);
	code_ent *c = &p->codes[i];
	if (c->addr)
		return c;
	if (p->ncodes * 4 >= MAX_CODES * 3) {
		/* full: start over (a process this rich in code objects is
		 * rare; the live ones come back as they are sampled) */
		codes_clear(p);
		return code_get(py, p, addr);
	}
	memrd m = {p->pid};
	c->addr = addr;
	p->ncodes++;
	c->bad = ag_py_read_code(p->interp->L, &p->ty, read_mem, &m, addr, &c->c) != 0;
	if (!c->bad)
		py->st.codes_read++;
	return c;
}

/* The code object at addr of process pid as it was with fingerprint fp:
 * the cached one, read again when the cache holds another (or none could
 * be read before: memory may have been paged out). NULL when unnamable. */
static code_ent *code_named(ag_py *py, pid_t pid, uint64_t addr, uint32_t fp)
{
	pyproc *p = *find_proc(py, pid);
	code_ent *c = p && p->interp ? code_get(py, p, addr) : NULL;
	if (c && (c->bad || c->c.fingerprint != fp) && c->tries < CODE_TRIES) {
		/* another object at that address now, or an error before */
		ag_py_code_free(&c->c);
		memrd m = {p->pid};
		c->tries++;
		c->bad = ag_py_read_code(p->interp->L, &p->ty, read_mem, &m, addr, &c->c) != 0;
		if (!c->bad)
			py->st.codes_read++;
	}
	return c;
}

void ag_py_code_seen(ag_py *py, pid_t pid, uint64_t code, uint32_t fingerprint)
{
	code_named(py, pid, code & ~SM_PY_MARK_MASK, fingerprint);
}

int ag_py_frame(ag_py *py, pid_t pid, uint64_t w0, uint64_t w1, ag_py_name *out)
{
	uint64_t addr = w0 & ~SM_PY_MARK_MASK;
	uint32_t fp = (uint32_t)(w1 >> 32);
	int32_t lasti = (int32_t)(uint32_t)w1;
	code_ent *c = code_named(py, pid, addr, fp);
	if (!c || c->bad) {
		py->st.unnamed++;
		return -ENOENT;
	}
	if (c->c.fingerprint != fp) {
		py->st.stale++;
		return -ESTALE;
	}
	pyproc *p = *find_proc(py, pid);
	out->name = c->c.name;
	out->file = c->c.file;
	out->line = (uint32_t)ag_py_addr2line(p->interp->L, c->c.lines, c->c.nlines,
	                                      c->c.firstlineno, lasti);
	return 0;
}

void ag_py_get_stats(const ag_py *py, ag_py_stats *out) { *out = py->st; }
