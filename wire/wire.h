/* wire.h - Smolder's native ingest format: what smolder-agent pushes to
 * POST /api/v1/ingest. Shared by the agent (encoder) and the server
 * (decoder); depends on nothing of storage/ or server/, so the agent links
 * only this. Byte layout: docs/protocol.md.
 *
 * A batch is one agent's drain of one interval: a header, the processes
 * (each becomes one series: the profile type plus its labels), the objects
 * (ELF files by build ID) its user frames point into, the stacks the
 * server may not have yet, and rows (process, stack ID, sample count).
 * Everything is little-endian, lengths are LEB128 varints and every one of
 * them is bounded by the limits below before it is used. */
#ifndef SMOLDER_WIRE_H
#define SMOLDER_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <xxhash.h>

#define WIRE_MAGIC          "SMOLDERB"  /* 8 bytes */
/* Version 2 added named frames with a language, file and line (frame
 * kind byte 3). The encoder writes 1 when a batch has none, so servers
 * that read only 1 still take it; the decoder reads both. */
#define WIRE_VERSION        2
#define WIRE_VERSION_MIN    1
#define WIRE_CONTENT_TYPE   "application/x-smolder-batch"
/* magic, u16 version, u16 flags, u32 raw length, u32 compressed length */
#define WIRE_HEADER_LEN     24

/* Limits; the decoder rejects anything past them with a message. */
#define WIRE_MAX_BODY       (16u << 20) /* bytes of one batch as sent,
                                         * header included */
#define WIRE_MAX_RAW        (64u << 20) /* decompressed payload bytes */
#define WIRE_MAX_STR        4096        /* bytes of one string */
#define WIRE_MAX_PROCESSES  65536
#define WIRE_MAX_LABELS     64          /* per process */
#define WIRE_MAX_OBJECTS    65536
#define WIRE_MAX_BUILD_ID   64          /* bytes */
#define WIRE_MAX_STACKS     (1u << 20)
#define WIRE_MAX_FRAMES     512         /* per stack */
#define WIRE_MAX_ROWS       (1u << 22)
#define WIRE_MAX_COUNTERS   256         /* smolder-agent sends ~70 */
#define WIRE_MAX_BATCH_FRAMES (1u << 23) /* frames of all stacks together:
                                          * bounds the decoder's memory */
#define WIRE_MAX_COUNT      (UINT64_C(1) << 48) /* samples in one row (1..) */
#define WIRE_MAX_LANG       32          /* bytes of a frame's language tag */
#define WIRE_MAX_LINE       INT32_MAX   /* a frame's line number */

/* Same numbering as storage's ST_FRAME_*. */
enum { WIRE_FRAME_USER = 0, WIRE_FRAME_KERNEL = 1, WIRE_FRAME_NAMED = 2 };

/* The named frame that ends, outermost, a stack whose walk stopped short
 * of its root (storage's ST_TRUNCATED_FRAME: queries count such stacks as
 * truncated and leave the frame out). */
#define WIRE_TRUNCATED_FRAME "[truncated]"

typedef struct wire_label {
	const char *name;
	const char *value;
} wire_label;

/* A process as the agent saw it; the labels (hostname, comm, exe, ...)
 * make its series. Two processes with equal labels are one series. */
typedef struct wire_process {
	uint32_t pid;
	const wire_label *labels;
	uint32_t nlabels;
} wire_process;

typedef struct wire_object {
	const uint8_t *build_id;
	uint32_t build_id_len;
	const char *name;        /* path as the host saw it */
} wire_object;

/* user: (object, offset in the object's file); for the innermost user
 * frame the offset of the instruction, for every caller the offset of its
 * return address minus one, so it falls inside the call instruction and
 * the symbolizer names the call's line. kernel/named: name.
 *
 * A named frame may also say where it is, for code the host names itself
 * because its names live only in the process (interpreted and JIT code):
 * a language tag, the source file and the line being executed. The tag
 * names the runtime the frame belongs to: "python", and by the same
 * rule "js", "java", "dotnet", ... (1..WIRE_MAX_LANG bytes of [a-z0-9_.+-]);
 * storage checks it. Any of the three may be absent; a frame without all
 * three is the plain named frame of version 1. */
typedef struct wire_frame {
	uint32_t kind;
	uint32_t object;         /* user: index into wire_batch.objects */
	uint64_t offset;
	const char *name;
	const char *file;        /* named: source file; NULL or "" when unknown */
	uint32_t line;           /* named: line; 0 when unknown */
	const char *lang;        /* named: language tag; NULL or "" for none */
} wire_frame;

/* Whether a named frame carries a language, file or line. */
static inline int wire_frame_has_source(const wire_frame *f)
{
	return (f->lang && f->lang[0]) || (f->file && f->file[0]) || f->line;
}

/* Leaf first. id must be wire_stack_id() of the frames. */
typedef struct wire_stack {
	uint64_t id;
	const wire_frame *frames;
	uint32_t nframes;
} wire_stack;

typedef struct wire_row {
	int64_t ts_ns;           /* absolute; encoded relative to start_ns */
	uint32_t process;        /* index into wire_batch.processes */
	uint64_t stack_id;       /* in this batch's stacks or sent before */
	uint64_t count;          /* samples */
} wire_row;

/* A named counter the agent reports with each batch (totals since the
 * agent started: samples, drops, stacks without mappings, ...). */
typedef struct wire_counter {
	const char *name;
	uint64_t value;
} wire_counter;

typedef struct wire_batch {
	const char *agent_id;     /* stable per host (machine-id) */
	const char *hostname;
	uint64_t seq;             /* per agent run, +1 per batch */
	int64_t start_ns, end_ns; /* the interval drained, unix ns */
	uint64_t period_ns;       /* one sample stands for this much CPU */
	const char *profile_type; /* "process_cpu:samples:count:cpu:nanoseconds:delta" */
	const wire_counter *counters;
	uint32_t ncounters;
	const wire_process *processes;
	uint32_t nprocesses;
	const wire_object *objects;
	uint32_t nobjects;
	const wire_stack *stacks;
	uint32_t nstacks;
	const wire_row *rows;
	uint32_t nrows;
} wire_batch;

typedef struct wire_err {
	char msg[256];
} wire_err;

/* Encodes b (header, then the lz4-compressed payload) into a malloc'd
 * buffer. Returns 0 or -EINVAL (with err) when b breaks a limit, -ENOMEM. */
int wire_encode(const wire_batch *b, uint8_t **out, size_t *outlen, wire_err *err);

/* A decoded batch: every pointer in batch points into memory owned by it. */
typedef struct wire_decoded wire_decoded;

/* Decodes a body. Trusts nothing: every length and index is checked.
 * Returns 0, -EBADMSG with err naming what is wrong, -EMSGSIZE when a
 * limit is exceeded, or -ENOMEM. */
int wire_decode(const uint8_t *p, size_t n, wire_decoded **out, wire_err *err);
const wire_batch *wire_decoded_batch(const wire_decoded *d);
void wire_decoded_free(wire_decoded *d);

/* The stack ID, computed the same way storage's st_stack_hash() does (the
 * normalized form in docs/format.md), incrementally so that both can share
 * it without sharing types: reset, then one call per frame, leaf first. */
static inline void wire_stack_hash_str(XXH3_state_t *h, const char *s, size_t n)
{
	uint8_t t[10];
	size_t k = 0;
	uint64_t v = n;
	do {
		t[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		v >>= 7;
	} while (v);
	XXH3_64bits_update(h, t, k);
	XXH3_64bits_update(h, s, n);
}

static inline void wire_stack_hash_user(XXH3_state_t *h, const uint8_t *build_id,
                                        uint32_t build_id_len, uint64_t offset)
{
	uint8_t t[8] = {'U', (uint8_t)build_id_len};
	XXH3_64bits_update(h, t, 2);
	if (build_id_len)
		XXH3_64bits_update(h, build_id, build_id_len);
	for (int i = 0; i < 8; i++)
		t[i] = (uint8_t)(offset >> (8 * i));
	XXH3_64bits_update(h, t, 8);
}

/* kind: WIRE_FRAME_KERNEL or WIRE_FRAME_NAMED. */
static inline void wire_stack_hash_name(XXH3_state_t *h, uint32_t kind, const char *name,
                                        size_t len)
{
	uint8_t t = kind == WIRE_FRAME_KERNEL ? 'K' : 'N';
	XXH3_64bits_update(h, &t, 1);
	wire_stack_hash_str(h, name, len);
}

/* After wire_stack_hash_name() for a named frame that carries a language,
 * file or line (absent ones as "" and 0): 'L' str(lang) str(file)
 * varint(line). A frame without any of them adds nothing, so its ID is
 * the one version 1 gave it. */
static inline void wire_stack_hash_source(XXH3_state_t *h, const char *lang, size_t lang_len,
                                          const char *file, size_t file_len, uint32_t line)
{
	uint8_t t[5] = {'L'};
	size_t k = 0;
	XXH3_64bits_update(h, t, 1);
	wire_stack_hash_str(h, lang, lang_len);
	wire_stack_hash_str(h, file, file_len);
	uint32_t v = line;
	do {
		t[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		v >>= 7;
	} while (v);
	XXH3_64bits_update(h, t, k);
}

/* The ID of a stack of wire frames over objects. */
uint64_t wire_stack_id(const wire_object *objects, uint32_t nobjects,
                       const wire_frame *frames, uint32_t nframes);

/* The build ID of an ELF file that has no GNU build-id note (the agent
 * sends it in wire_object.build_id, the server checks a debug-info upload
 * against it): XXH3-128 (seed 0) of the whole file content, as the 16
 * bytes of XXH128_canonical_t (high 64 bits first, big-endian). An agent
 * reading the file in pieces gets the same bytes from XXH3_128bits_reset /
 * _update / _digest. In URLs it is written as 32 lowercase hex digits.
 * Stable across hosts and versions (xxHash fixes XXH3's output), so two
 * hosts with the same file agree on its ID. */
#define WIRE_FALLBACK_BUILD_ID_LEN 16
static inline void wire_fallback_build_id(const void *data, size_t len,
                                          uint8_t out[WIRE_FALLBACK_BUILD_ID_LEN])
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
	memcpy(out, c.digest, WIRE_FALLBACK_BUILD_ID_LEN);
}

/* Code point cp (below 0x110000) as UTF-8 into o (room for 4 bytes);
 * returns the bytes written. Surrogates are the caller's to refuse. */
static inline size_t wire_utf8_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* id[0..len) as lowercase hex into out, which has room for 2 * len + 1. */
static inline void wire_hex(const uint8_t *id, size_t len, char *out)
{
	static const char dig[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = dig[id[i] >> 4];
		out[2 * i + 1] = dig[id[i] & 15];
	}
	out[2 * len] = 0;
}

#endif
