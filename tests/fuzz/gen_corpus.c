/* gen_corpus.c - regenerates the named seeds of tests/fuzz/corpus/{block,wal}/
 * from real stores (blocks, roll-up files, WAL segments), so the fuzzers
 * start from inputs that pass every
 * checksum and reach the decoders. Not part of the build; from the repo root:
 *
 *   make build/libstorage.a build/libbase.a && cc -std=gnu11 -g -O1 -Wall -Wextra \
 *     -Werror -D_GNU_SOURCE -I. tests/fuzz/gen_corpus.c build/libstorage.a build/libbase.a \
 *     -llz4 -lxxhash -lsqlite3 -lpcre2-8 -lisal -lpthread -lm -o /tmp/gen_corpus \
 *   && /tmp/gen_corpus tests/fuzz/corpus
 *
 * Output is deterministic (fixed PRNG seed and timestamps). Only the files
 * named here are (over)written; inputs the fuzzers found stay. The stores are
 * built with the public API in a temporary directory that is removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/st_int.h"
#include "tests/fuzz/fixcrc.h"

#define NSEC 1000000000LL
/* 2023-11-14T22:00:00Z: on an hour boundary, so partitions are predictable */
#define T0 (1700000000LL / 3600 * 3600 * NSEC)

static const char *out_root;

static void die(const char *what, int rc, const base_err *err)
{
	fprintf(stderr, "gen_corpus: %s: %s%s%s\n", what, strerror(rc < 0 ? -rc : rc),
	        err && err->msg[0] ? ": " : "", err ? err->msg : "");
	exit(1);
}

static uint64_t rng_state = 0x5eed5eed12345678ULL;

static uint64_t rnd(void)
{
	/* xorshift64*: enough to vary the data, and the same on every machine */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* ---- the workload ---- */

enum { NOBJ = 3, NSTK = 14, NSER = 4, MAXF = 6 };

static uint8_t build_ids[NOBJ][20];
static st_object objects[NOBJ];
static st_frame frames[NSTK][MAXF];
static st_stack_def stacks[NSTK];

static const char *const knames[] = {
	"entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_futex",
	"futex_wait", "schedule", "__schedule", "finish_task_switch.isra.0",
};

static const st_label lab0[] = {{"service_name", "api"}, {"host", "web-1"}};
/* unsorted on purpose: storage sorts; the UTF-8 value exercises its check */
static const st_label lab1[] = {{"region", "z\xc3\xbcrich"}, {"host", "web-2"},
                                {"service_name", "api"}};
static const st_label lab2[] = {{"service_name", "db"}};
static const st_series_def series[NSER] = {
	{"process_cpu:samples:count:cpu:nanoseconds:delta", lab0, 2},
	{"process_cpu:samples:count:cpu:nanoseconds:delta", lab1, 3},
	{"memory:alloc_space:bytes:space:bytes", lab2, 1},
	{"process_cpu:samples:count:cpu:nanoseconds", NULL, 0},
};

static void build_model(void)
{
	static const char *const onames[NOBJ] = {"smolderd", "libc.so.6", "libpthread.so.0"};
	for (int i = 0; i < NOBJ; i++) {
		for (int j = 0; j < 20; j++)
			build_ids[i][j] = (uint8_t)rnd();
		objects[i] = (st_object){build_ids[i], 20, onames[i]};
	}
	for (int s = 0; s < NSTK; s++) {
		uint32_t n = 1 + (uint32_t)(rnd() % MAXF), k = 0;
		/* leaf first: a third of the stacks start in the kernel */
		if (s % 3 == 0)
			for (; k < n && k < 3; k++)
				frames[s][k] = (st_frame){.kind = ST_FRAME_KERNEL,
				                          .name = knames[(s + k) % 7]};
		for (; k < n; k++)
			frames[s][k] = (st_frame){.kind = ST_FRAME_USER,
			                          .object = (uint32_t)(rnd() % NOBJ),
			                          .offset = 0x1000 + rnd() % 0x100000};
		stacks[s] = (st_stack_def){st_stack_hash(objects, NOBJ, frames[s], n),
		                           frames[s], n};
	}
}

/* Appends one batch of nsamples rows from t. The first batch of a store
 * defines every object and stack (later ones lean on the stored stacks);
 * equal timestamps with several stacks exercise the block's rank gaps. */
static void append(st_db *db, bool define, int64_t t, uint32_t nsamples, bool extreme)
{
	st_sample sm[256];
	base_err err = {0};
	if (nsamples > 256)
		nsamples = 256;
	for (uint32_t i = 0; i < nsamples; i++) {
		/* 10 ms apart, but every 4th row repeats the series and time of
		 * the one before with another stack */
		bool same = i % 4 == 3;
		if (!same)
			t += 10 * 1000 * 1000;
		sm[i] = (st_sample){t, same ? sm[i - 1].series : (uint32_t)(rnd() % NSER),
		                    stacks[rnd() % NSTK].id, (int64_t)(rnd() % 20000000)};
		if (i % 5 == 4)
			sm[i].value = -sm[i].value;  /* delta profiles can go negative */
	}
	if (extreme && nsamples >= 4) {
		sm[0].ts_ns = 0;
		/* the extremes st_append accepts */
		sm[1].value = -ST_MAX_VALUE;
		sm[2].value = ST_MAX_VALUE;
		sm[3].ts_ns = ST_MAX_TS_NS - 1;
	}
	st_batch b = {series, NSER, define ? objects : NULL, define ? NOBJ : 0,
	              define ? stacks : NULL, define ? NSTK : 0, sm, nsamples};
	int rc = st_append(db, &b, &err);
	if (rc)
		die("st_append", rc, &err);
}

static st_db *open_store(const char *dir, uint32_t chunk_rows)
{
	st_options o;
	st_options_default(&o);
	o.chunk_rows = chunk_rows;
	o.wal_segment_bytes = 4096;  /* the minimum: several small segments */
	o.retention_ns = 0;
	o.max_future_ns = 0;         /* the seeds' times are fixed, some far ahead */
	st_db *db;
	base_err err = {0};
	int rc = st_open(dir, &o, &db, &err);
	if (rc)
		die(dir, rc, &err);
	return db;
}

/* ---- files ---- */

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *p;
	int rc = st__read_file(path, &p, len, 1 << 24);
	if (rc)
		die(path, rc, NULL);
	return p;
}

static void put(const char *kind, const char *name, const uint8_t *p, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", out_root, kind);
	int rc = st__mkdir_p(path);
	if (rc)
		die(path, rc, NULL);
	snprintf(path, sizeof(path), "%s/%s/%s", out_root, kind, name);
	if (len >= 64 * 1024) {
		fprintf(stderr, "gen_corpus: %s is %zu bytes, keep seeds under 64 KiB\n",
		        path, len);
		exit(1);
	}
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f))
		die(path, -errno, NULL);
	printf("%6zu %s\n", len, path);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in dir ending in suffix, sorted; the caller frees each and the array. */
static size_t list(const char *dir, const char *suffix, char ***out)
{
	DIR *d = opendir(dir);
	if (!d)
		die(dir, -errno, NULL);
	char **v = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name), sl = strlen(suffix);
		if (e->d_name[0] == '.' || l < sl || strcmp(e->d_name + l - sl, suffix))
			continue;
		v = realloc(v, (n + 1) * sizeof(*v));
		if (!v || !(v[n++] = strdup(e->d_name)))
			die("list", -ENOMEM, NULL);
	}
	closedir(d);
	qsort(v, n, sizeof(*v), cmp_str);
	*out = v;
	return n;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- seeds and their mutations ---- */



/* Copies every block of store dir as block/<prefix>-N; mutates the first. */
static void take_blocks(const char *dir, const char *prefix, bool mutate)
{
	char bdir[PATH_MAX], path[PATH_MAX + 300], name[128];
	char **v;
	snprintf(bdir, sizeof(bdir), "%s/blocks", dir);
	size_t n = list(bdir, "", &v);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		snprintf(path, sizeof(path), "%s/%s/data.smb", bdir, v[i]);
		uint8_t *img = slurp(path, &len);
		snprintf(name, sizeof(name), "%s-%zu", prefix, i);
		put("block", name, img, len);
		if (mutate && i == 0) {
			uint64_t ioff = st__get_u64(img + 72);
			uint32_t ilen = st__get_u32(img + 80);
			uint32_t nser = st__get_u32(img + 40), nstk = st__get_u32(img + 44);
			/* cut short: in the index, and inside the header */
			snprintf(name, sizeof(name), "%s-trunc-index", prefix);
			put("block", name, img, len - 7);
			snprintf(name, sizeof(name), "%s-trunc-header", prefix);
			put("block", name, img, 60);
			/* one flipped byte of the first chunk: the parse still
			 * succeeds, the chunk CRC check in the decoder must catch it */
			uint8_t *m = malloc(len);
			memcpy(m, img, len);
			m[ST__BLK_HDR + 5] ^= 0x40;
			snprintf(name, sizeof(name), "%s-flip-chunk", prefix);
			put("block", name, m, len);
			/* the same flip behind a valid CRC: lz4 and varints see it */
			fix_block_crcs(m, len);
			snprintf(name, sizeof(name), "%s-flip-chunk-crcok", prefix);
			put("block", name, m, len);
			/* a chunk directory entry's row count, behind valid CRCs */
			memcpy(m, img, len);
			m[ioff + (uint64_t)nser * ST__BLK_SERIES_ENT + (uint64_t)nstk * 8 + 8] ^= 0x01;
			fix_block_crcs(m, len);
			snprintf(name, sizeof(name), "%s-flip-chunkdir-crcok", prefix);
			put("block", name, m, len);
			/* a flipped series ID in the index, checksums left stale */
			memcpy(m, img, len);
			m[ioff + 3] ^= 0x10;
			snprintf(name, sizeof(name), "%s-flip-index", prefix);
			put("block", name, m, len);
			/* coverage count, behind valid CRCs */
			memcpy(m, img, len);
			uint64_t cov = ioff + ilen - 4 - 16 - 4;
			if (cov > ioff)
				m[cov] ^= 0x02;
			fix_block_crcs(m, len);
			snprintf(name, sizeof(name), "%s-flip-cover-crcok", prefix);
			put("block", name, m, len);
			free(m);
		}
		free(img);
	}
	free_list(v, n);
}

/* Copies the roll-up files of store dir (block format, a step in the
 * header) as block/rollup-<step>-N; mutates the first of each level: its
 * step changed to one its times are not multiples of, a flipped chunk
 * byte, and its group table's last word (a member or the group count)
 * changed, all behind valid CRCs. */
static void take_rollups(const char *dir)
{
	static const char *const steps[] = {"3600s", "86400s"};
	char rdir[PATH_MAX + 32], path[PATH_MAX + 400], name[128];
	for (size_t k = 0; k < 2; k++) {
		char **v;
		snprintf(rdir, sizeof(rdir), "%s/rollup/%s", dir, steps[k]);
		size_t n = list(rdir, ".smr", &v);
		for (size_t i = 0; i < n; i++) {
			size_t len;
			snprintf(path, sizeof(path), "%s/%s", rdir, v[i]);
			uint8_t *img = slurp(path, &len);
			snprintf(name, sizeof(name), "rollup-%s-%zu", steps[k], i);
			put("block", name, img, len);
			if (i == 0) {
				uint8_t *m = malloc(len);
				memcpy(m, img, len);
				st__put_u32(m + 12, 7);
				fix_block_crcs(m, len);
				snprintf(name, sizeof(name), "rollup-%s-step-crcok", steps[k]);
				put("block", name, m, len);
				memcpy(m, img, len);
				m[ST__BLK_HDR + 5] ^= 0x40;
				fix_block_crcs(m, len);
				snprintf(name, sizeof(name), "rollup-%s-flip-chunk-crcok", steps[k]);
				put("block", name, m, len);
				/* the group table ends the index, the index the file */
				uint64_t ioff = st__get_u64(img + 72);
				uint32_t ilen = st__get_u32(img + 80);
				if (st__get_u32(img + 8) == ST__BLK_VERSION_GROUPS && ilen >= 4 &&
				    ioff + ilen == len) {
					memcpy(m, img, len);
					st__put_u32(m + len - 4, st__get_u32(m + len - 4) + 1);
					fix_block_crcs(m, len);
					snprintf(name, sizeof(name), "rollup-%s-group-crcok", steps[k]);
					put("block", name, m, len);
				}
				free(m);
			}
			free(img);
		}
		if (!n)
			die("no roll-up files", -ENOENT, NULL);
		free_list(v, n);
	}
}

/* Copies every WAL segment of store dir as wal/<prefix>-N, and the record
 * payloads of the first one as wal/<prefix>-payload-N (fuzz_wal.c also
 * decodes its input as one payload). Mutates the first segment. */
static void take_wal(const char *dir, const char *prefix, bool mutate)
{
	char wdir[PATH_MAX], path[PATH_MAX + 300], name[128];
	char **v;
	snprintf(wdir, sizeof(wdir), "%s/wal", dir);
	size_t n = list(wdir, ".wal", &v);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		snprintf(path, sizeof(path), "%s/%s", wdir, v[i]);
		uint8_t *seg = slurp(path, &len);
		snprintf(name, sizeof(name), "%s-%zu", prefix, i);
		put("wal", name, seg, len);
		if (i == 0) {
			size_t off = ST__WAL_SEG_HDR;
			for (int r = 0; len - off >= ST__WAL_REC_HDR; r++) {
				uint32_t plen = st__get_u32(seg + off);
				snprintf(name, sizeof(name), "%s-payload-%d", prefix, r);
				put("wal", name, seg + off + ST__WAL_REC_HDR, plen);
				off += ST__WAL_REC_HDR + plen;
			}
		}
		if (mutate && i == 0 && len > ST__WAL_SEG_HDR + ST__WAL_REC_HDR + 8) {
			uint32_t plen = st__get_u32(seg + ST__WAL_SEG_HDR);
			size_t p0 = ST__WAL_SEG_HDR + ST__WAL_REC_HDR;
			/* a torn tail: the last record cut short, as after a crash */
			snprintf(name, sizeof(name), "%s-torn", prefix);
			put("wal", name, seg, len - 5);
			/* only the segment header: a fresh segment */
			snprintf(name, sizeof(name), "%s-header-only", prefix);
			put("wal", name, seg, ST__WAL_SEG_HDR);
			uint8_t *m = malloc(len);
			/* a flipped payload byte: the record CRC must catch it */
			memcpy(m, seg, len);
			m[p0 + plen / 2] ^= 0x08;
			snprintf(name, sizeof(name), "%s-flip-payload", prefix);
			put("wal", name, m, len);
			/* the same behind a valid CRC: the batch decoder must */
			fix_wal_crcs(m, len);
			snprintf(name, sizeof(name), "%s-flip-payload-crcok", prefix);
			put("wal", name, m, len);
			/* an unknown record type behind a valid CRC */
			memcpy(m, seg, len);
			m[ST__WAL_SEG_HDR + 16] = 2;
			fix_wal_crcs(m, len);
			snprintf(name, sizeof(name), "%s-bad-type", prefix);
			put("wal", name, m, len);
			/* a bad segment version */
			memcpy(m, seg, len);
			m[8] = 2;
			snprintf(name, sizeof(name), "%s-bad-version", prefix);
			put("wal", name, m, len);
			free(m);
		}
		free(seg);
	}
	free_list(v, n);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_ROOT (tests/fuzz/corpus)\n", argv[0]);
		return 2;
	}
	out_root = argv[1];
	char tmp[] = "/tmp/smolder-gen-corpus.XXXXXX", dir[PATH_MAX];
	if (!mkdtemp(tmp))
		die("mkdtemp", -errno, NULL);
	build_model();

	/* main: four series over two hourly partitions, 64-row chunks */
	snprintf(dir, sizeof(dir), "%s/main", tmp);
	st_db *db = open_store(dir, 64);
	for (int i = 0; i < 8; i++)
		append(db, i == 0, T0 + (i / 4) * 3600 * NSEC + (i % 4) * 60 * NSEC, 60, false);
	st_close(db);
	take_wal(dir, "main", true);
	db = open_store(dir, 64);          /* replays the WAL */
	int rc = st_cut(db, 0, 1);
	if (rc)
		die("st_cut", rc, NULL);
	take_blocks(dir, "main", true);    /* one block per partition */
	rc = st_compact(db);
	if (rc)
		die("st_compact", rc, NULL);
	take_blocks(dir, "compacted", false);  /* parents and two cover entries */
	rc = st_rollup(db, T0 + 3 * 24 * 3600 * NSEC);
	if (rc)
		die("st_rollup", rc, NULL);
	take_rollups(dir);                 /* the hour's and the day's sums */
	st_close(db);

	/* tiny: one row per series, a block of a single short chunk each */
	snprintf(dir, sizeof(dir), "%s/tiny", tmp);
	db = open_store(dir, 64);
	append(db, true, T0, 3, false);
	take_wal(dir, "tiny", false);      /* before the cut retires the segment */
	rc = st_cut(db, 0, 1);
	if (rc)
		die("st_cut", rc, NULL);
	take_blocks(dir, "tiny", false);
	st_close(db);

	/* edge: 3-row chunks, extreme timestamps and values, kernel-heavy */
	snprintf(dir, sizeof(dir), "%s/edge", tmp);
	db = open_store(dir, 3);
	append(db, true, T0, 24, true);
	append(db, false, T0 + 5 * NSEC, 10, false);
	st_close(db);
	take_wal(dir, "edge", false);
	db = open_store(dir, 3);
	rc = st_cut(db, 0, 1);
	if (rc)
		die("st_cut", rc, NULL);
	take_blocks(dir, "edge", false);
	st_close(db);

	st__rm_rf(tmp);
	return 0;
}
