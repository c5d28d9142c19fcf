/* symbolize_bench.c - the symbolizer benchmark that bench/symbolize runs.
 *
 * Symbolizes locations of real ELF files with DWARF (by default
 * bin/smolder-server, built with -g, and the symbolizer's test subjects)
 * through server/symbolize.h, and prints on stdout:
 *
 *   locations_per_s_cold    srv_sym_lookup() with a new srv_sym: every file
 *                           opened and its DWARF parsed during the pass
 *   locations_per_s_warm    the same srv_sym again: files parsed, no SQLite
 *                           (db = NULL), so every location is worked out
 *                           from DWARF again
 *   locations_per_s_cached  srv_sym_resolve() with a new srv_sym on a store
 *                           whose SQLite symbols table a first pass filled:
 *                           what a restarted server pays per location
 *   locations_per_s_memory  the same srv_sym again: its memory cache
 *
 * The locations are every `--stride`-th byte (default 4, about one per
 * instruction) of every function in each file's symbol table, as file
 * offsets; the files go into a temporary debug-info directory under their
 * build IDs, the way the server keeps them. Each figure is the best of
 * `--runs` passes (default 3) for the two file-reading ones; one pass for
 * the cached ones (a new srv_sym each run). docs/bench-symbolize.md. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <gelf.h>
#include <getopt.h>
#include <inttypes.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/text.h"
#include "base/clock.h"
#include "server/symbolize.h"
#include "wire/buildid.h"
#include "storage/storage.h"

#define PROFILE_TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"

typedef struct file {
	const char *path;
	uint8_t bid[64];
	size_t bidlen;
	char hex[129];
	uint64_t *offs;   /* the locations, file offsets */
	size_t n;
} file;

static char tmp[64];

static void die(const char *what, int rc)
{
	fprintf(stderr, "symbolize_bench: %s: %s\n", what, rc < 0 ? strerror(-rc) : "failed");
	exit(1);
}

static double now_s(void)
{
	return (double)base_monotonic_ns() / 1e9;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

static void cleanup(void)
{
	if (tmp[0])
		nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void add(file *f, size_t *cap, uint64_t off)
{
	if (f->n == *cap) {
		*cap = *cap ? *cap * 2 : 4096;
		f->offs = realloc(f->offs, *cap * sizeof(*f->offs));
		if (!f->offs)
			die("realloc", -ENOMEM);
	}
	f->offs[f->n++] = off;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* Build ID and locations of f->path: every stride-th byte of each function
 * symbol (.symtab, else .dynsym) that lies in a PT_LOAD. */
static void read_file(file *f, unsigned stride)
{
	int fd = open(f->path, O_RDONLY);
	if (fd < 0)
		die(f->path, -errno);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	size_t nph;
	if (!e || elf_getphdrnum(e, &nph))
		die(f->path, -ENOEXEC);
	GElf_Phdr ph[32];
	size_t np = 0;
	for (size_t i = 0; i < nph && np < 32; i++)
		if (gelf_getphdr(e, (int)i, &ph[np]) && ph[np].p_type == PT_LOAD)
			np++;
	Elf_Scn *symtab = NULL, *dynsym = NULL;
	for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(s, &sh))
			continue;
		if (sh.sh_type == SHT_SYMTAB)
			symtab = s;
		if (sh.sh_type == SHT_DYNSYM)
			dynsym = s;
	}
	int n = wire_elf_build_id(e, f->bid);  /* as agent and server name it */
	f->bidlen = n > 0 ? (size_t)n : 0;
	if (!f->bidlen)
		die("no build ID in the file", -ENOEXEC);
	base_hex(f->bid, f->bidlen, f->hex);
	Elf_Scn *s = symtab ? symtab : dynsym;
	GElf_Shdr sh;
	size_t cap = 0;
	if (s && gelf_getshdr(s, &sh) && sh.sh_entsize) {
		Elf_Data *d = elf_getdata(s, NULL);
		for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(d, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
			    sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			for (uint64_t b = 0; b < (sym.st_size ? sym.st_size : 1); b += stride) {
				uint64_t va = sym.st_value + b;
				for (size_t k = 0; k < np; k++)
					if (va >= ph[k].p_vaddr && va - ph[k].p_vaddr < ph[k].p_filesz) {
						add(f, &cap, va - ph[k].p_vaddr + ph[k].p_offset);
						break;
					}
			}
		}
	}
	elf_end(e);
	close(fd);
	/* aliases (several names for one function) give the same offsets */
	qsort(f->offs, f->n, sizeof(*f->offs), cmp_u64);
	size_t k = 0;
	for (size_t i = 0; i < f->n; i++)
		if (!k || f->offs[k - 1] != f->offs[i])
			f->offs[k++] = f->offs[i];
	f->n = k;
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	if (!in || !out)
		die(to, -errno);
	char buf[1 << 16];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			die(to, -EIO);
	fclose(in);
	if (fclose(out))
		die(to, -errno);
}

/* One pass of srv_sym_lookup() over every location; returns its seconds
 * and adds the frames found to *frames. */
static double lookup_pass(srv_sym *s, const file *files, size_t nf, uint64_t *frames,
                          uint64_t *empty)
{
	double t0 = now_s();
	for (size_t i = 0; i < nf; i++)
		for (size_t j = 0; j < files[i].n; j++) {
			srv_sym_frame f[ST_MAX_INLINE];
			size_t n;
			int rc = srv_sym_lookup(s, files[i].bid, files[i].bidlen, files[i].offs[j], f,
			                        ST_MAX_INLINE, &n);
			if (rc)
				die("srv_sym_lookup", rc);
			*frames += n;
			*empty += n == 0;
			srv_sym_frames_free(f, n);
		}
	return now_s() - t0;
}

/* Stores every location as frames of stacks (up to ST_MAX_FRAMES each) so
 * that they get location IDs, and reads them back as st_frame_info. */
static st_frame_info *store_locations(st_db *db, const file *files, size_t nf, size_t *nloc,
                                      void ***keep, size_t *nkeep)
{
	size_t total = 0;
	for (size_t i = 0; i < nf; i++)
		total += files[i].n;
	st_frame_info *loc = calloc(total, sizeof(*loc));
	*keep = calloc(total / ST_MAX_FRAMES + nf + 1, sizeof(void *));
	st_object *obj = calloc(nf, sizeof(*obj));
	if (!loc || !*keep || !obj)
		die("calloc", -ENOMEM);
	for (size_t i = 0; i < nf; i++) {
		const char *b = strrchr(files[i].path, '/');
		obj[i] = (st_object){files[i].bid, (uint32_t)files[i].bidlen, b ? b + 1 : files[i].path};
	}
	st_label lab = {"service", "bench"};
	st_series_def ser = {PROFILE_TYPE, &lab, 1};
	*nloc = 0;
	*nkeep = 0;
	st_frame fr[ST_MAX_FRAMES];
	for (size_t i = 0; i < nf; i++)
		for (size_t j = 0; j < files[i].n; j += ST_MAX_FRAMES) {
			uint32_t n = 0;
			for (size_t k = j; k < files[i].n && n < ST_MAX_FRAMES; k++)
				fr[n++] = (st_frame){ST_FRAME_USER, (uint32_t)i, files[i].offs[k], NULL};
			st_stack_def sd = {st_stack_hash(obj, (uint32_t)nf, fr, n), fr, n};
			st_sample sm = {1767225600LL * 1000000000LL + (int64_t)*nkeep, 0, sd.id, 1};
			st_batch b = {&ser, 1, obj, (uint32_t)nf, &sd, 1, &sm, 1};
			base_err err = {0};
			int rc = st_append(db, &b, &err);
			if (rc) {
				fprintf(stderr, "st_append: %s\n", err.msg);
				die("st_append", rc);
			}
			st_frame_info *got;
			size_t ng;
			rc = st_stack_frames(db, sd.id, &got, &ng);
			if (rc)
				die("st_stack_frames", rc);
			/* the strings and build IDs point into got: keep it */
			(*keep)[(*nkeep)++] = got;
			for (size_t k = 0; k < ng; k++)
				loc[(*nloc)++] = got[k];
		}
	free(obj);
	return loc;
}

static double resolve_pass(srv_sym *s, const st_frame_info *loc, size_t n, uint64_t *frames)
{
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		q_sym out[ST_MAX_INLINE];
		int k = srv_sym_resolve(s, &loc[i], out, ST_MAX_INLINE);
		if (k < 0)
			die("srv_sym_resolve", k);
		*frames += (uint64_t)k;
	}
	return now_s() - t0;
}

static void usage(void)
{
	fprintf(stderr, "usage: symbolize_bench [--stride N] [--runs N] [--smoke] FILE...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"stride", required_argument, NULL, 's'},
	                                   {"runs", required_argument, NULL, 'r'},
	                                   {"smoke", no_argument, NULL, 'k'},
	                                   {NULL, 0, NULL, 0}};
	unsigned stride = 4, runs = 3;
	int smoke = 0, c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 's')
			stride = (unsigned)strtoul(optarg, NULL, 10);
		else if (c == 'r')
			runs = (unsigned)strtoul(optarg, NULL, 10);
		else if (c == 'k')
			smoke = 1;
		else
			usage();
	}
	if (optind == argc || !stride || !runs)
		usage();
	if (smoke) {
		stride = stride < 64 ? 64 : stride;
		runs = 1;
	}
	if (elf_version(EV_CURRENT) == EV_NONE)
		die("libelf", -ENOTSUP);
	snprintf(tmp, sizeof(tmp), "/tmp/smolder-symbench.XXXXXX");
	if (!mkdtemp(tmp))
		die("mkdtemp", -errno);
	atexit(cleanup);
	char dir[128], path[512];
	/* the store's own file directory (DIR/debuginfo): with a store, the
	 * symbolizer reads files through it (st_file_path), as the server */
	snprintf(path, sizeof(path), "%s/data", tmp);
	snprintf(dir, sizeof(dir), "%s/data/debuginfo", tmp);
	if (mkdir(path, 0700) || mkdir(dir, 0700))
		die(dir, -errno);

	size_t nf = (size_t)(argc - optind), total = 0;
	file *files = calloc(nf, sizeof(*files));
	if (!files)
		die("calloc", -ENOMEM);
	for (size_t i = 0; i < nf; i++) {
		files[i].path = argv[optind + (int)i];
		read_file(&files[i], stride);
		snprintf(path, sizeof(path), "%s/%s", dir, files[i].hex);
		copy_file(files[i].path, path);
		total += files[i].n;
		struct stat st;
		stat(files[i].path, &st);
		fprintf(stderr, "%s: %zu locations, %lld bytes, build ID %s\n", files[i].path,
		        files[i].n, (long long)st.st_size, files[i].hex);
	}
	fprintf(stderr, "%zu locations in %zu files, every %u bytes of each function\n", total, nf,
	        stride);

	/* cold and warm, from the files */
	double cold = 1e30, warm = 1e30;
	uint64_t frames = 0, empty = 0;
	for (unsigned r = 0; r < runs; r++) {
		srv_sym_opts o = {.debuginfo_dir = dir, .db = NULL, .max_open = 0};
		srv_sym *s;
		int rc = srv_sym_new(&o, &s);
		if (rc)
			die("srv_sym_new", rc);
		frames = empty = 0;
		double t = lookup_pass(s, files, nf, &frames, &empty);
		cold = t < cold ? t : cold;
		t = lookup_pass(s, files, nf, &frames, &empty);
		warm = t < warm ? t : warm;
		srv_sym_free(s);
	}
	fprintf(stderr, "cold %.3f s, warm %.3f s per pass; %.2f frames per location, %" PRIu64
	        " locations without a symbol\n", cold, warm, frames / 2.0 / (double)total,
	        empty / 2);

	/* cached: a store whose symbols table a first pass filled */
	snprintf(path, sizeof(path), "%s/data", tmp);
	st_db *db;
	base_err err = {0};
	int rc = st_open(path, NULL, &db, &err);
	if (rc) {
		fprintf(stderr, "st_open: %s\n", err.msg);
		die("st_open", rc);
	}
	void **keep;
	size_t nloc, nkeep;
	st_frame_info *loc = store_locations(db, files, nf, &nloc, &keep, &nkeep);
	srv_sym_opts o = {.debuginfo_dir = dir, .db = db, .max_open = 0};
	srv_sym *s;
	if ((rc = srv_sym_new(&o, &s)))
		die("srv_sym_new", rc);
	uint64_t f1 = 0, f2 = 0, f3 = 0;
	double fill = resolve_pass(s, loc, nloc, &f1);
	srv_sym_free(s);
	if ((rc = srv_sym_new(&o, &s)))
		die("srv_sym_new", rc);
	double cached = resolve_pass(s, loc, nloc, &f2);
	double memory = resolve_pass(s, loc, nloc, &f3);
	srv_sym_stats st;
	srv_sym_get_stats(s, &st);
	srv_sym_free(s);
	fprintf(stderr, "%zu stored locations: first pass (files, then into SQLite) %.3f s; "
	        "SQLite %.3f s; memory %.3f s; stats: %" PRIu64 " lookups, %" PRIu64
	        " cache hits, %" PRIu64 " memory hits, %" PRIu64 " files opened\n", nloc, fill,
	        cached, memory, st.lookups, st.cache_hits, st.memory_hits, st.files_opened);
	if (f1 != f2 || f2 != f3) {
		fprintf(stderr, "symbolize_bench: frames differ between passes: %" PRIu64 " %" PRIu64
		        " %" PRIu64 "\n", f1, f2, f3);
		return 1;
	}
	if (st.files_opened != 0 || st.cache_hits != nloc) {
		fprintf(stderr, "symbolize_bench: the cached pass did not come from SQLite alone\n");
		return 1;
	}
	st_close(db);
	for (size_t i = 0; i < nkeep; i++)
		free(keep[i]);
	free(keep);
	free(loc);

	printf("locations_per_s_cold: %.0f\n", (double)total / cold);
	printf("locations_per_s_warm: %.0f\n", (double)total / warm);
	printf("locations_per_s_cached: %.0f\n", (double)nloc / cached);
	printf("locations_per_s_memory: %.0f\n", (double)nloc / memory);
	for (size_t i = 0; i < nf; i++)
		free(files[i].offs);
	free(files);
	return 0;
}
