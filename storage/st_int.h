/* st_int.h - storage's workshop: helpers and structures shared by the files
 * of storage/ and nothing else. Public API lives in storage.h. */
#ifndef SMOLDER_ST_INT_H
#define SMOLDER_ST_INT_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "base/map.h"
#include "storage/storage.h"

#define ST__LIKELY(x) __builtin_expect(!!(x), 1)
#define ST__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- fault injection ----
 * Points where a test makes storage fail the way a disk or the allocator
 * would, to check that no failure path loses or doubles a row. The hook is
 * NULL outside tests; set it before any thread uses the store. It returns
 * 0 to go on or a negative errno to fail at that point. */
enum {
	ST__FAULT_CUT_OPEN,      /* opening the block a cut just wrote */
	ST__FAULT_CUT_MEMORY,    /* the cut's in-memory record of the block */
	ST__FAULT_CUT_COVER,     /* the cut's coverage row in SQLite */
	ST__FAULT_APPEND_WAL,    /* an append's WAL write: -ENOSPC, a full disk */
};
extern int (*st__fault_hook)(int point);
static inline int st__fault(int point)
{
	return st__fault_hook ? st__fault_hook(point) : 0;
}

/* ---- CRC32C (Castagnoli), through ISA-L's hardware-accelerated crc32_iscsi ---- */
uint32_t st__crc32c(uint32_t crc, const void *buf, size_t len);

/* ---- little-endian fixed width ---- */
static inline void st__put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void st__put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t st__get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t st__get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ---- varints (LEB128) and zigzag ---- */
static inline uint64_t st__zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t st__unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

static inline size_t st__put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Decodes a varint from [*p, end). Returns 0, or -EBADMSG when the input
 * ends inside it or it is longer than 10 bytes. */
static inline int st__get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	const uint8_t *q = *p;
	if (ST__LIKELY(q < end && *q < 0x80)) {
		*out = *q;
		*p = q + 1;
		return 0;
	}
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 70; shift += 7) {
		if (q >= end)
			return -EBADMSG;
		uint8_t b = *q++;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			*p = q;
			return 0;
		}
	}
	return -EBADMSG;
}

/* ---- the encodings of a buffer's content (base/buf.h holds the buffer) ---- */
int st__enc_varint(base_buf *b, uint64_t v);
int st__enc_u32(base_buf *b, uint32_t v);
int st__enc_u64(base_buf *b, uint64_t v);
int st__enc_str(base_buf *b, const char *s, size_t n); /* varint length + bytes */

/* A set of 64-bit IDs with dense indices in insertion order: the stack
 * registry, and the merged dictionaries of a compaction. */
typedef struct st__ids {
	base_map map;     /* id -> index */
	uint64_t *ids;   /* index -> id */
	size_t n, cap;
} st__ids;

/* The index of id, adding it when new. */
int st__ids_index(st__ids *s, uint64_t id, uint32_t *out);
void st__ids_free(st__ids *s);

/* ---- files ---- */
int st__fsync_dir(const char *path);
int st__mkdir_p(const char *path);
int st__rm_rf(const char *path);
/* Writes all of buf at fd's position, retrying on EINTR / short writes. */
int st__write_all(int fd, const void *buf, size_t len);
int st__read_file(const char *path, uint8_t **out, size_t *len, size_t max);

/* ---- batches: validation, canonical form, WAL payload ---- */

/* A batch decoded from a WAL record: the st_batch views point into the
 * arena and the record buffer. */
typedef struct st__dbatch {
	st_batch b;
	uint64_t *series_ids;   /* one per b.series */
	char *arena;            /* NUL-terminated strings */
	st_label *labels;
	st_frame *frames;
} st__dbatch;

/* Checks every limit and cross-reference of a batch and computes the series
 * IDs (series_ids has b->nseries entries). Stack IDs are verified against
 * st_stack_hash(). */
int st__batch_validate(const st_batch *b, uint64_t *series_ids, base_err *err);

/* -EINVAL with err when a sample is dated more than max_future_ns (0: no
 * limit) past the clock. */
int st__batch_check_future(const st_batch *b, int64_t max_future_ns, base_err *err);

/* Appends the canonical encoding of b (labels sorted) to out. */
int st__batch_encode(const st_batch *b, const uint64_t *series_ids, base_buf *out);

/* Decodes and fully validates a payload made by st__batch_encode; *d must be
 * released with st__dbatch_free(). Fails with -EBADMSG on malformed input. */
int st__batch_decode(const uint8_t *p, size_t len, st__dbatch *d, base_err *err);
void st__dbatch_free(st__dbatch *d);

/* The frame kind byte of a named frame with a language, file or line in a
 * WAL batch payload (docs/format.md, section 3); st_frame.kind stays
 * ST_FRAME_NAMED. */
#define ST__KIND_NAMED_SOURCE 3

/* Whether a frame carries a language, file or line. */
static inline bool st__frame_has_source(const st_frame *f)
{
	return (f->lang && f->lang[0]) || (f->file && f->file[0]) || f->line;
}

/* Copies n (<= ST_MAX_LABELS) labels into out sorted by name: the
 * canonical order series are stored and hashed in. */
void st__labels_sorted(const st_label *in, uint32_t n, st_label *out);

/* Copies n separately allocated frame infos into one allocation (*out,
 * freed with free()): the array, then every frame's strings and build ID,
 * the shape st_locations() and st_stack_frames() return (meta.c). */
int st__frames_pack(st_frame_info *const *one, size_t n, st_frame_info **out);

/* ---- WAL ---- */

#define ST__WAL_MAGIC "SMOLWAL\0"
#define ST__WAL_VERSION 1
#define ST__WAL_SEG_HDR 16  /* magic[8], u32 version, u32 reserved */
#define ST__WAL_REC_HDR 24  /* u32 len, u32 crc, u64 lsn, u32 type, u32 reserved */
#define ST__WAL_REC_BATCH 1
#define ST__WAL_MAX_RECORD (256u << 20)

/* Scans the records of one segment image. For each intact record calls
 * fn(arg, lsn, payload, len); stops at the first record that is cut short
 * or fails its CRC and reports its offset in *valid_len. A non-zero return
 * from fn stops the scan and is returned. Returns -EBADMSG for a bad
 * segment header. */
typedef int (*st__wal_fn)(void *arg, uint64_t lsn, const uint8_t *p, size_t len);
int st__wal_scan(const uint8_t *buf, size_t len, st__wal_fn fn, void *arg,
                 size_t *valid_len);

/* ---- blocks ---- */

#define ST__BLK_MAGIC "SMOLBLK\0"
#define ST__BLK_VERSION 1
#define ST__BLK_VERSION_GROUPS 2 /* a roll-up file with a group table */
#define ST__MAX_GROUPS 2      /* groups a series of a roll-up belongs to */
#define ST__MAX_GROUP_ROWS (1u << 23) /* rows a roll-up from raw rows sums
                                       * into groups before it gives up
                                       * its groups (8 M, 200 MB) */
#define ST__BLK_HDR 96
#define ST__BLK_NCOL 4
#define ST__BLK_CHUNK_DIR 72  /* bytes per chunk directory entry */
#define ST__BLK_SERIES_ENT 36 /* bytes per series table entry */
#define ST__BLK_MAX_CHUNK_ROWS (1u << 20)

typedef struct st__blk_series {
	uint64_t id;
	uint64_t first_row;
	uint32_t nrows;
	int64_t mint, maxt;
} st__blk_series;

typedef struct st__blk_chunk {
	uint64_t off;            /* file offset of the first column */
	uint32_t nrows;
	uint32_t first_series, last_series;  /* block-local series indices */
	int64_t mint, maxt;
	uint32_t clen[ST__BLK_NCOL]; /* compressed bytes per column */
	uint32_t rlen[ST__BLK_NCOL]; /* raw bytes per column */
	uint32_t crc;            /* CRC32C of the chunk's compressed bytes */
} st__blk_chunk;

/* The ID of a roll-up group's series (docs/format.md, section 7): of all
 * series of type (label NULL), or of those whose label has value (""
 * for those without it). Never 0. */
uint64_t st__group_id(const char *type, const char *label, const char *value);

/* A group of a roll-up file (docs/format.md, section 7): a series of its
 * own whose rows are, per step and stack, the sums of its members' rows,
 * so a read whose selection holds every member reads the group's rows
 * instead of theirs. */
typedef struct st__blk_group {
	uint32_t series;         /* block-local index of the group's own series */
	uint32_t nmembers;       /* >= 1 */
	const uint32_t *members; /* block-local indices, ascending */
} st__blk_group;

/* Every row of partition `partition_start` whose WAL record has an LSN up
 * to wal_lsn is in this block or an older block: replay skips them. */
typedef struct st__blk_cover {
	int64_t partition_start;
	uint64_t wal_lsn;
} st__blk_cover;

/* A parsed block over a memory image (mmap'ed or, for the fuzzer, a plain
 * buffer). Every offset and count is validated by st__block_parse(). */
typedef struct st__block {
	const uint8_t *img;
	size_t len;
	uint32_t step_s;         /* 0: raw rows; else a roll-up whose rows are
	                          * sums per step of this many seconds, each at
	                          * its step's start (a multiple of the step) */
	int64_t mint, maxt;
	uint64_t nrows;
	uint64_t wal_lsn;
	int64_t partition_start;
	uint32_t nseries, nstacks, nchunks, chunk_rows;
	st__blk_series *series;
	uint64_t *stacks;        /* block dictionary: local index -> stack ID */
	st__blk_chunk *chunks;
	char **parents;          /* names of blocks this one replaced */
	uint32_t nparents;
	st__blk_cover *cover;    /* per partition: WAL records it holds */
	uint32_t ncover;
	st__blk_group *groups;   /* roll-ups: coarsest first; NULL: none */
	uint32_t ngroups;
	uint32_t *group_members; /* what the groups' members point into */
} st__block;

int st__block_parse(const uint8_t *img, size_t len, st__block *out, base_err *err);
void st__block_release(st__block *b);

/* Decoded columns of one chunk. Buffers are reused across chunks. */
typedef struct st__chunk_rows {
	uint32_t n;
	uint32_t *series;   /* block-local series index */
	int64_t *ts;
	uint32_t *stack;    /* block-local dictionary index */
	int64_t *value;
	uint8_t *raw;       /* decompression scratch */
	size_t raw_cap, cap;
} st__chunk_rows;

int st__chunk_decode(const st__block *b, uint32_t ci, st__chunk_rows *out);
/* Adds the value of every row of chunk ci whose block-local series is
 * wanted and whose time is in [from, to) (every row when all) into
 * acc[block-local stack] (st_sum_add), and sets the stack's bit in
 * touched, without storing rows. A damaged chunk is -EBADMSG, and acc may
 * then hold part of it. */
int st__chunk_merge(const st__block *b, uint32_t ci, const uint8_t *want, bool all,
                    int64_t from, int64_t to, int64_t *acc, uint64_t *touched,
                    st__chunk_rows *scratch);
void st__chunk_rows_free(st__chunk_rows *r);

/* What st__chunk_steps adds into: the timeline's sums per (group, step). */
typedef struct st__steps {
	const uint32_t *group;   /* block-local series -> group, UINT32_MAX: none */
	int64_t from, to;        /* rows outside are skipped; from >= origin */
	int64_t origin, step;    /* step k is [origin + k step, origin + (k+1) step) */
	size_t nsteps;
	int64_t *acc;            /* acc[group * nsteps + k] */
	uint8_t *has;            /* the same, set for a step with rows */
} st__steps;

/* Adds the value of every row of chunk ci into sp without decoding its
 * stack column. -EBADMSG for a damaged chunk (sp may hold part of it). */
int st__chunk_steps(const st__block *b, uint32_t ci, const st__steps *sp,
                    st__chunk_rows *scratch);

/* Rows handed to the block writer: series and stack are indices into the
 * spec's ID arrays (the head's registry, or a compaction's merged
 * dictionaries), so the writer needs no hashing. */
typedef struct st__wrow {
	int64_t ts;
	uint32_t series;
	uint32_t stack;
	int64_t value;
} st__wrow;

typedef struct st__block_spec {
	const st__blk_cover *cover;
	uint32_t ncover;
	uint32_t chunk_rows;
	const char *const *parents;
	uint32_t nparents;
	const uint64_t *series_ids;  /* universe: index -> series ID */
	uint32_t nseries_u;
	const uint64_t *stack_ids;   /* universe: index -> stack ID */
	uint32_t nstacks_u;
	/* st__block_merge_fd only: with window set, rows outside [from, to)
	 * are left out; with step_s > 0 the output is a roll-up: each row's
	 * time goes down to a multiple of step_s seconds and rows of the same
	 * (series, time, stack) are summed (a sum beyond ST_MAX_VALUE is kept
	 * as several rows, so nothing overflows and the total stays exact) */
	bool window;
	int64_t from, to;
	uint32_t step_s;
	/* st__block_merge_fd with step_s only: the groups of the series,
	 * written as a group table (docs/format.md, section 7): gsids[0 ..
	 * ngsids) ascending series IDs, gids[i] the IDs of the groups series
	 * gsids[i] belongs to, coarsest first, 0 for none. From raw rows the
	 * groups' rows are summed (up to ST__MAX_GROUP_ROWS of them); from
	 * roll-ups, a group is kept where every input has it with the very
	 * members these say. NULL: no groups. */
	const uint64_t *gsids;
	const uint64_t (*gids)[ST__MAX_GROUPS];
	size_t ngsids;
} st__block_spec;

/* Sorts rows and writes a complete block image to fd. -EINVAL for an index
 * outside the universes or a value beyond ST_MAX_VALUE. */
int st__block_write_fd(int fd, const st__wrow *rows, size_t n, const st__block_spec *spec);

/* Writes one block holding every row of the blocks in[0..nin) to fd,
 * reading them a chunk at a time: memory grows with the inputs'
 * dictionaries and the number of inputs, not with their rows. Uses spec's
 * cover, parents, chunk_rows, window and step_s; the universes are built
 * from the inputs. -EBADMSG when an input chunk is damaged, -ENODATA when
 * no row falls in the window (nothing is written then). */
int st__block_merge_fd(int fd, const st__block *const *in, size_t nin,
                       const st__block_spec *spec);

#endif
