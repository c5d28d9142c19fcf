/* test_wire.c - unit tests of wire/wire.c, the native batch format: a rich
 * round trip, every limit on both sides, truncation at every byte, bit
 * flips, hostile counts, and stack IDs equal to storage's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lz4.h>

#include "storage/storage.h"
#include "wire/auth.h"
#include "wire/wire.h"

#define TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"
#define T0 INT64_C(1767225600000000000)

/* ---- a rich batch ---- */

static const uint8_t bid0[20] = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3};
static const uint8_t bid1[1] = {0};
static const uint8_t bid2[64] = {0xff, [63] = 0x7f};

typedef struct rich {
	wire_batch b;
	wire_counter ctr[3];
	wire_label lab[5];
	wire_process pr[3];
	wire_object obj[3];
	wire_frame fr[8];
	wire_stack st[3];
	wire_row rows[6];
} rich;

static void mk_rich(rich *r)
{
	memset(r, 0, sizeof(*r));
	r->ctr[0] = (wire_counter){"samples", 123};
	r->ctr[1] = (wire_counter){"dropped", 0};
	r->ctr[2] = (wire_counter){"unmapped", UINT64_MAX};
	r->lab[0] = (wire_label){"hostname", "h1"};
	r->lab[1] = (wire_label){"comm", "bash"};
	r->lab[2] = (wire_label){"exe", "/usr/bin/b\xc3\xa4sh"};
	r->lab[3] = (wire_label){"hostname", "h1"};
	r->lab[4] = (wire_label){"comm", ""};
	r->pr[0] = (wire_process){1, &r->lab[0], 3};
	r->pr[1] = (wire_process){UINT32_MAX, &r->lab[3], 2};
	r->pr[2] = (wire_process){77, NULL, 0};
	r->obj[0] = (wire_object){bid0, sizeof(bid0), "/usr/bin/bash"};
	r->obj[1] = (wire_object){bid1, sizeof(bid1), ""};
	r->obj[2] = (wire_object){bid2, sizeof(bid2), "/lib/x86_64-linux-gnu/libc.so.6"};
	r->fr[0] = (wire_frame){WIRE_FRAME_USER, 0, 0x1234, NULL};
	r->fr[1] = (wire_frame){WIRE_FRAME_USER, 2, UINT64_MAX, NULL};
	r->fr[2] = (wire_frame){WIRE_FRAME_KERNEL, 0, 0, "do_syscall_64"};
	r->fr[3] = (wire_frame){WIRE_FRAME_NAMED, 0, 0, "main.(*T).Run"};
	r->fr[4] = (wire_frame){WIRE_FRAME_USER, 1, 0, NULL};
	r->fr[5] = (wire_frame){WIRE_FRAME_KERNEL, 0, 0, "entry_SYSCALL_64"};
	r->fr[6] = (wire_frame){WIRE_FRAME_USER, 0, 1, NULL};
	r->fr[7] = (wire_frame){WIRE_FRAME_USER, 0, 2, NULL};
	r->st[0] = (wire_stack){0, &r->fr[0], 4};
	r->st[1] = (wire_stack){0, &r->fr[4], 2};
	r->st[2] = (wire_stack){0, &r->fr[6], 2};
	for (int i = 0; i < 3; i++)
		r->st[i].id = wire_stack_id(r->obj, 3, r->st[i].frames, r->st[i].nframes);
	r->rows[0] = (wire_row){T0, 0, r->st[0].id, 1};
	r->rows[1] = (wire_row){T0 + 9999999999, 1, r->st[1].id, WIRE_MAX_COUNT};
	r->rows[2] = (wire_row){T0 - 5, 2, r->st[2].id, 3};   /* before start: allowed */
	r->rows[3] = (wire_row){0, 0, 0x1122334455667788ull, 2}; /* a stack sent before */
	r->rows[4] = (wire_row){T0 + 10000000000, 1, r->st[0].id, 1};
	r->rows[5] = (wire_row){T0, 0, r->st[0].id, 1};
	r->b = (wire_batch){"0123456789abcdef", "h1", 42, T0, T0 + 10000000000, 52631578,
	                    TYPE, r->ctr, 3, r->pr, 3, r->obj, 3, r->st, 3, r->rows, 6};
}

static const char *s0(const char *s) { return s ? s : ""; }

static void assert_batches_equal(const wire_batch *a, const wire_batch *b)
{
	assert_string_equal(a->agent_id, b->agent_id);
	assert_string_equal(a->hostname, b->hostname);
	assert_string_equal(a->profile_type, b->profile_type);
	assert_true(a->seq == b->seq && a->start_ns == b->start_ns && a->end_ns == b->end_ns &&
	            a->period_ns == b->period_ns);
	assert_int_equal(a->ncounters, b->ncounters);
	for (uint32_t i = 0; i < a->ncounters; i++) {
		assert_string_equal(a->counters[i].name, b->counters[i].name);
		assert_true(a->counters[i].value == b->counters[i].value);
	}
	assert_int_equal(a->nprocesses, b->nprocesses);
	for (uint32_t i = 0; i < a->nprocesses; i++) {
		assert_int_equal(a->processes[i].pid, b->processes[i].pid);
		assert_int_equal(a->processes[i].nlabels, b->processes[i].nlabels);
		for (uint32_t k = 0; k < a->processes[i].nlabels; k++) {
			assert_string_equal(a->processes[i].labels[k].name,
			                    b->processes[i].labels[k].name);
			assert_string_equal(a->processes[i].labels[k].value,
			                    b->processes[i].labels[k].value);
		}
	}
	assert_int_equal(a->nobjects, b->nobjects);
	for (uint32_t i = 0; i < a->nobjects; i++) {
		assert_int_equal(a->objects[i].build_id_len, b->objects[i].build_id_len);
		assert_memory_equal(a->objects[i].build_id, b->objects[i].build_id,
		                    a->objects[i].build_id_len);
		assert_string_equal(s0(a->objects[i].name), s0(b->objects[i].name));
	}
	assert_int_equal(a->nstacks, b->nstacks);
	for (uint32_t i = 0; i < a->nstacks; i++) {
		assert_true(a->stacks[i].id == b->stacks[i].id);
		assert_int_equal(a->stacks[i].nframes, b->stacks[i].nframes);
		for (uint32_t k = 0; k < a->stacks[i].nframes; k++) {
			const wire_frame *x = &a->stacks[i].frames[k], *y = &b->stacks[i].frames[k];
			assert_int_equal(x->kind, y->kind);
			if (x->kind == WIRE_FRAME_USER) {
				assert_int_equal(x->object, y->object);
				assert_true(x->offset == y->offset);
			} else {
				assert_string_equal(x->name, y->name);
				assert_string_equal(s0(x->file), s0(y->file));
				assert_string_equal(s0(x->lang), s0(y->lang));
				assert_int_equal(x->line, y->line);
			}
		}
	}
	assert_int_equal(a->nrows, b->nrows);
	for (uint32_t i = 0; i < a->nrows; i++) {
		assert_true(a->rows[i].ts_ns == b->rows[i].ts_ns);
		assert_int_equal(a->rows[i].process, b->rows[i].process);
		assert_true(a->rows[i].stack_id == b->rows[i].stack_id);
		assert_true(a->rows[i].count == b->rows[i].count);
	}
}

static void test_round_trip(void **state)
{
	(void)state;
	rich r;
	mk_rich(&r);
	uint8_t *buf;
	size_t len;
	wire_err err;
	assert_int_equal(wire_encode(&r.b, &buf, &len, &err), 0);
	assert_memory_equal(buf, WIRE_MAGIC, 8);
	/* nothing in it needs version 2: older servers read it */
	assert_int_equal(buf[8], 1);
	wire_decoded *d;
	if (wire_decode(buf, len, &d, &err))
		fail_msg("decode: %s", err.msg);
	assert_batches_equal(&r.b, wire_decoded_batch(d));
	/* the decoded batch encodes to the same bytes */
	uint8_t *buf2;
	size_t len2;
	assert_int_equal(wire_encode(wire_decoded_batch(d), &buf2, &len2, &err), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	wire_decoded_free(d);
	free(buf);
	free(buf2);

	/* the empty batch */
	wire_batch e = {.agent_id = "a", .hostname = "", .profile_type = TYPE};
	assert_int_equal(wire_encode(&e, &buf, &len, &err), 0);
	assert_int_equal(wire_decode(buf, len, &d, &err), 0);
	assert_batches_equal(&e, wire_decoded_batch(d));
	wire_decoded_free(d);
	free(buf);
}

/* ---- encoder limits: a table of ways to break the rich batch ---- */

static char long_str[WIRE_MAX_STR + 2];
static wire_frame many_frames[WIRE_MAX_FRAMES + 1];
static wire_label many_labels[WIRE_MAX_LABELS + 1];
static wire_counter many_counters[WIRE_MAX_COUNTERS + 1];

static void bk_agent(rich *r) { r->b.agent_id = ""; }
static void bk_type(rich *r) { r->b.profile_type = NULL; }
static void bk_long(rich *r) { r->lab[0].value = long_str; }
static void bk_label_name(rich *r) { r->lab[1].name = ""; }
static void bk_labels(rich *r) { r->pr[2].labels = many_labels; r->pr[2].nlabels = WIRE_MAX_LABELS + 1; }
static void bk_counters(rich *r) { r->b.counters = many_counters; r->b.ncounters = WIRE_MAX_COUNTERS + 1; }
static void bk_bid0(rich *r) { r->obj[1].build_id_len = 0; }
static void bk_bid65(rich *r) { r->obj[2].build_id_len = WIRE_MAX_BUILD_ID + 1; }
static void bk_frames(rich *r) { r->st[1].frames = many_frames; r->st[1].nframes = WIRE_MAX_FRAMES + 1; }
static void bk_noframes(rich *r) { r->st[1].nframes = 0; }
static void bk_object(rich *r) { r->fr[4].object = 3; }
static void bk_kind(rich *r) { r->fr[2].kind = 7; }
static void bk_empty_sym(rich *r) { r->fr[2].name = ""; }
static void bk_stack_id(rich *r) { r->st[2].id ^= 1; }
static void bk_process(rich *r) { r->rows[2].process = 3; }
static void bk_count0(rich *r) { r->rows[0].count = 0; }
static void bk_count_big(rich *r) { r->rows[0].count = WIRE_MAX_COUNT + 1; }
static void bk_interval(rich *r) { r->b.end_ns = r->b.start_ns - 1; }
static void bk_negative(rich *r) { r->rows[0].ts_ns = -1; }
static void bk_processes(rich *r) { r->b.nprocesses = WIRE_MAX_PROCESSES + 1; }
static void bk_rows(rich *r) { r->b.nrows = WIRE_MAX_ROWS + 1; }
static void bk_stacks(rich *r) { r->b.nstacks = WIRE_MAX_STACKS + 1; }
static void bk_objects(rich *r) { r->b.nobjects = WIRE_MAX_OBJECTS + 1; }

static void test_encode_rejects(void **state)
{
	(void)state;
	memset(long_str, 'x', sizeof(long_str) - 1);
	for (int i = 0; i <= WIRE_MAX_FRAMES; i++)
		many_frames[i] = (wire_frame){WIRE_FRAME_KERNEL, 0, 0, "f"};
	for (int i = 0; i <= WIRE_MAX_LABELS; i++)
		many_labels[i] = (wire_label){"n", "v"};
	for (int i = 0; i <= WIRE_MAX_COUNTERS; i++)
		many_counters[i] = (wire_counter){"c", 1};
	static const struct {
		const char *name;
		void (*breakit)(rich *);
		const char *msg;
	} cases[] = {
		{"empty agent_id", bk_agent, "header: agent_id is 0 bytes"},
		{"no profile type", bk_type, "header: profile_type is 0 bytes"},
		{"string over 4096", bk_long, "process 0: label 0: value is 4097 bytes, the limit is 4096"},
		{"empty label name", bk_label_name, "process 0: label 1: name is 0 bytes"},
		{"65 labels", bk_labels, "more than 64"},
		{"257 counters", bk_counters, "257 counters"},
		{"empty build ID", bk_bid0, "object 1: build ID is 0 bytes, must be 1..64"},
		{"65-byte build ID", bk_bid65, "object 2: build ID missing or over 64"},
		{"513 frames", bk_frames, "stack 1: frames missing or more than 512"},
		{"no frames", bk_noframes, "stack 1: no frames"},
		{"object out of range", bk_object,
		 "stack 1: frame 0: object index 3 out of range (3 objects)"},
		{"unknown kind", bk_kind, "stack 0: frame 2: unknown frame kind 7"},
		{"empty symbol", bk_empty_sym, "stack 0: frame 2: name is 0 bytes"},
		{"stack ID", bk_stack_id, "stack 2: ID"},
		{"process out of range", bk_process,
		 "row 2: process index 3 out of range (3 processes)"},
		{"zero count", bk_count0, "row 0: count 0"},
		{"count over 2^48", bk_count_big, "must be 1..2^48"},
		{"backward interval", bk_interval, "not a forward interval"},
		{"negative time", bk_negative, "row 0: timestamp"},
		{"too many processes", bk_processes, "count limit"},
		{"too many rows", bk_rows, "count limit"},
		{"too many stacks", bk_stacks, "count limit"},
		{"too many objects", bk_objects, "count limit"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
		rich r;
		mk_rich(&r);
		cases[c].breakit(&r);
		uint8_t *buf = (uint8_t *)1;
		size_t len = 1;
		wire_err err = {{0}};
		int rc = wire_encode(&r.b, &buf, &len, &err);
		if (rc != -EINVAL || !strstr(err.msg, cases[c].msg))
			fail_msg("case \"%s\": rc %d, message \"%s\", want \"%s\"", cases[c].name, rc,
			         err.msg, cases[c].msg);
		assert_null(buf);
		assert_int_equal(len, 0);
	}
}

/* ---- hand-built payloads, for what the encoder never writes ---- */

typedef struct pb {
	uint8_t *p;
	size_t len, cap;
} pb;

static void pb_put(pb *b, const void *s, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}
static void pb_varint(pb *b, uint64_t v)
{
	do {
		uint8_t c = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
		pb_put(b, &c, 1);
		v >>= 7;
	} while (v);
}
static void pb_u64(pb *b, uint64_t v)
{
	for (int k = 0; k < 8; k++) {
		uint8_t c = (uint8_t)(v >> (8 * k));
		pb_put(b, &c, 1);
	}
}
static void pb_str(pb *b, const char *s)
{
	pb_varint(b, strlen(s));
	pb_put(b, s, strlen(s));
}
/* header strings and times, then ncounters = 0 */
static void pb_head(pb *b)
{
	pb_str(b, "agent");
	pb_str(b, "host");
	pb_str(b, TYPE);
	pb_varint(b, 1);
	pb_u64(b, (uint64_t)T0);
	pb_u64(b, (uint64_t)T0 + 10);
	pb_varint(b, 100);
	pb_varint(b, 0);
}

/* The body of raw payload bytes: header + lz4 block. */
static uint8_t *wrap(const uint8_t *raw, size_t n, size_t *len)
{
	int bound = LZ4_compressBound((int)n);
	uint8_t *b = malloc(WIRE_HEADER_LEN + (size_t)bound);
	assert_non_null(b);
	int c = LZ4_compress_default((const char *)raw, (char *)b + WIRE_HEADER_LEN, (int)n,
	                             bound);
	assert_true(c > 0);
	memcpy(b, WIRE_MAGIC, 8);
	uint8_t h[16] = {WIRE_VERSION, 0, 0, 0};  /* a v2 reader reads v1 payloads too */
	for (int k = 0; k < 4; k++) {
		h[4 + k] = (uint8_t)(n >> (8 * k));
		h[8 + k] = (uint8_t)((uint32_t)c >> (8 * k));
	}
	memcpy(b + 8, h, 12);
	*len = WIRE_HEADER_LEN + (size_t)c;
	return b;
}

static int decode_raw(const pb *b, wire_err *err)
{
	size_t len;
	uint8_t *body = wrap(b->p, b->len, &len);
	wire_decoded *d = NULL;
	int rc = wire_decode(body, len, &d, err);
	wire_decoded_free(d);
	free(body);
	return rc;
}

static void expect(const pb *b, int want_rc, const char *want_msg)
{
	wire_err err = {{0}};
	int rc = decode_raw(b, &err);
	if (rc != want_rc || !strstr(err.msg, want_msg))
		fail_msg("rc %d, message \"%s\"; want %d, \"%s\"", rc, err.msg, want_rc, want_msg);
}

/* Every count past its limit is -EMSGSIZE; a count within it that the
 * bytes left cannot hold is -EBADMSG, before anything is allocated. */
static void test_decode_limits(void **state)
{
	(void)state;
	memset(long_str, 'x', sizeof(long_str) - 1);
	pb b = {0};
	/* counters */
	pb_head(&b);
	b.len--;
	pb_varint(&b, WIRE_MAX_COUNTERS + 1);
	expect(&b, -EMSGSIZE, "257 counters, the limit is 256");
	/* processes: the limit, then a count that cannot fit */
	b.len = 0;
	pb_head(&b);
	pb_varint(&b, WIRE_MAX_PROCESSES + 1);
	expect(&b, -EMSGSIZE, "65537 processes, the limit is 65536");
	b.len = 0;
	pb_head(&b);
	pb_varint(&b, WIRE_MAX_PROCESSES);
	expect(&b, -EBADMSG, "65536 processes cannot fit");
	/* labels */
	b.len = 0;
	pb_head(&b);
	pb_varint(&b, 1);
	pb_varint(&b, 9);
	pb_varint(&b, WIRE_MAX_LABELS + 1);
	expect(&b, -EMSGSIZE, "process 0: 65 labels, the limit is 64");
	/* a string over the limit, and one with a NUL */
	b.len = 0;
	pb_varint(&b, WIRE_MAX_STR + 1);
	expect(&b, -EMSGSIZE, "header: agent_id is 4097 bytes, the limit is 4096");
	b.len = 0;
	pb_put(&b, "\x03" "a\0b", 4);
	expect(&b, -EBADMSG, "header: agent_id contains a NUL byte");
	/* objects and build IDs */
	b.len = 0;
	pb_head(&b);
	pb_varint(&b, 0);
	pb_varint(&b, WIRE_MAX_OBJECTS + 1);
	expect(&b, -EMSGSIZE, "65537 objects");
	b.len = 0;
	pb_head(&b);
	pb_varint(&b, 0);
	pb_varint(&b, 1);
	pb_varint(&b, WIRE_MAX_BUILD_ID + 1);
	pb_put(&b, long_str, 80);
	expect(&b, -EBADMSG, "object 0: build ID is 65 bytes, must be 1..64");
	/* stacks, frames, object indices */
	b.len = 0;
	pb_head(&b);
	pb_varint(&b, 0);
	pb_varint(&b, 0);
	pb_varint(&b, WIRE_MAX_STACKS + 1);
	expect(&b, -EMSGSIZE, "1048577 stacks");
	b.len = 0;
	pb_head(&b);
	pb_varint(&b, 0);
	pb_varint(&b, 0);
	pb_varint(&b, 1);
	pb_u64(&b, 1);
	pb_varint(&b, WIRE_MAX_FRAMES + 1);
	pb_put(&b, long_str, 80);
	expect(&b, -EMSGSIZE, "stack 0: 513 frames, the limit is 512");
	/* the example of the brief: stack 3, frame 7, object 12 of 5 */
	b.len = 0;
	pb_head(&b);
	pb_varint(&b, 0);
	pb_varint(&b, 5);
	for (int i = 0; i < 5; i++) {
		pb_put(&b, "\x01\x07", 2);
		pb_str(&b, "obj");
	}
	pb_varint(&b, 4);
	for (int s = 0; s < 4; s++) {
		pb_u64(&b, 0);
		pb_varint(&b, 8);
		for (int f = 0; f < 8; f++) {
			pb_put(&b, "\x00", 1);
			pb_varint(&b, s == 3 && f == 7 ? 12 : 0);
			pb_varint(&b, 0x400000);
		}
	}
	pb_varint(&b, 0);
	expect(&b, -EBADMSG, "stack 3: frame 7: object index 12 out of range (5 objects)");
	/* rows */
	b.len = 0;
	pb_head(&b);
	pb_put(&b, "\0\0\0", 3);
	pb_varint(&b, WIRE_MAX_ROWS + 1);
	expect(&b, -EMSGSIZE, "4194305 rows, the limit is 4194304");
	b.len = 0;
	pb_head(&b);
	pb_put(&b, "\0\0\0", 3);
	pb_varint(&b, WIRE_MAX_ROWS);
	pb_put(&b, "0123456789", 10);
	expect(&b, -EBADMSG, "4194304 rows cannot fit in the 10 bytes left");
	/* a varint of 11 bytes; one whose 10th byte overflows */
	b.len = 0;
	pb_head(&b);
	b.len--;
	pb_put(&b, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 11);
	expect(&b, -EBADMSG, "counters: varint");
	/* trailing bytes */
	b.len = 0;
	pb_head(&b);
	pb_put(&b, "\0\0\0\0\0", 5);
	expect(&b, -EBADMSG, "header: 1 trailing bytes after the rows");
	b.len--;
	expect(&b, 0, "");
	free(b.p);
}

/* The total-frames limit needs a large payload: 2^23 frames / 512 per
 * stack = 16384 stacks of 512 kernel frames "x", 3 bytes each. */
static void test_total_frames_limit(void **state)
{
	(void)state;
	pb b = {0};
	pb_head(&b);
	pb_varint(&b, 0);
	pb_varint(&b, 0);
	uint32_t nst = WIRE_MAX_BATCH_FRAMES / WIRE_MAX_FRAMES + 1;
	pb_varint(&b, nst);
	for (uint32_t s = 0; s < nst; s++) {
		pb_u64(&b, 0);
		pb_varint(&b, WIRE_MAX_FRAMES);
		for (int f = 0; f < WIRE_MAX_FRAMES; f++)
			pb_put(&b, "\x01\x01x", 3);
	}
	pb_varint(&b, 0);
	expect(&b, -EMSGSIZE, "more than 8388608 frames in all");
	free(b.p);
}

/* Header fields: magic, version, flags, lengths. */
static void test_decode_header(void **state)
{
	(void)state;
	rich r;
	mk_rich(&r);
	uint8_t *buf;
	size_t len;
	wire_err err;
	assert_int_equal(wire_encode(&r.b, &buf, &len, &err), 0);
	static const struct {
		size_t off;
		uint8_t val;
		int rc;
		const char *msg;
	} cases[] = {
		{0, 'X', -EBADMSG, "bad magic"},
		{8, 3, -EBADMSG, "version 3, this server reads versions 1 to 2"},
		{8, 0, -EBADMSG, "version 0"},
		{10, 1, -EBADMSG, "unknown flags 0x0001"},
		{15, 0x10, -EMSGSIZE, "payload of"},        /* raw length 256 MiB+ */
		{12, 0, -EBADMSG, "lz4"},                   /* raw length changed */
		{19, 0x01, -EMSGSIZE, "compressed payload"}, /* clen over the limit */
		{16, 0, -EBADMSG, "follow it"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
		uint8_t *m = malloc(len);
		memcpy(m, buf, len);
		m[cases[c].off] = cases[c].val;
		wire_decoded *d = NULL;
		err.msg[0] = 0;
		int rc = wire_decode(m, len, &d, &err);
		if (rc != cases[c].rc || !strstr(err.msg, cases[c].msg))
			fail_msg("header case %zu: rc %d \"%s\"", c, rc, err.msg);
		assert_null(d);
		free(m);
	}
	free(buf);
}

/* Every prefix of a body, and every prefix of its payload re-wrapped in a
 * valid lz4 block, is an error, never a crash or a partial batch. */
static void test_truncations(void **state)
{
	(void)state;
	rich r;
	mk_rich(&r);
	uint8_t *buf;
	size_t len;
	wire_err err;
	assert_int_equal(wire_encode(&r.b, &buf, &len, &err), 0);
	for (size_t n = 0; n < len; n++) {
		wire_decoded *d = NULL;
		assert_int_not_equal(wire_decode(buf, n, &d, &err), 0);
		assert_null(d);
	}
	uint32_t rawlen = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 | (uint32_t)buf[14] << 16;
	uint8_t *raw = malloc(rawlen);
	assert_int_equal(LZ4_decompress_safe((char *)buf + WIRE_HEADER_LEN, (char *)raw,
	                                     (int)(len - WIRE_HEADER_LEN), (int)rawlen),
	                 (int)rawlen);
	for (size_t n = 0; n < rawlen; n++) {
		pb b = {raw, n, n};
		int rc = decode_raw(&b, &err);
		if (rc != -EBADMSG)
			fail_msg("payload cut at %zu of %u: rc %d \"%s\"", n, rawlen, rc, err.msg);
	}
	free(raw);
	free(buf);
}

/* Flipping any bit of the payload either fails or decodes to a batch that
 * is again fully valid (so it re-encodes). Run over the raw payload so
 * that lz4 does not hide most flips. */
static void test_bit_flips(void **state)
{
	(void)state;
	rich r;
	mk_rich(&r);
	uint8_t *buf;
	size_t len;
	wire_err err;
	assert_int_equal(wire_encode(&r.b, &buf, &len, &err), 0);
	uint32_t rawlen = (uint32_t)buf[12] | (uint32_t)buf[13] << 8;
	uint8_t *raw = malloc(rawlen);
	assert_int_equal(LZ4_decompress_safe((char *)buf + WIRE_HEADER_LEN, (char *)raw,
	                                     (int)(len - WIRE_HEADER_LEN), (int)rawlen),
	                 (int)rawlen);
	int failed = 0, ok = 0;
	for (size_t i = 0; i < (size_t)rawlen * 8; i++) {
		raw[i / 8] ^= (uint8_t)(1u << (i % 8));
		size_t blen;
		uint8_t *body = wrap(raw, rawlen, &blen);
		wire_decoded *d = NULL;
		int rc = wire_decode(body, blen, &d, &err);
		if (rc == 0) {
			uint8_t *again;
			size_t alen;
			if (wire_encode(wire_decoded_batch(d), &again, &alen, &err))
				fail_msg("flip %zu decoded but does not re-encode: %s", i, err.msg);
			free(again);
			ok++;
		} else {
			assert_true(rc == -EBADMSG || rc == -EMSGSIZE);
			assert_true(err.msg[0] != 0);
			failed++;
		}
		wire_decoded_free(d);
		free(body);
		raw[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	/* flips in times, counts and names decode; in stack frames they fail */
	assert_true(failed > 0 && ok > 0);
	/* flips of the compressed bytes: no crash, an error or a valid batch */
	for (size_t i = WIRE_HEADER_LEN * 8; i < len * 8; i++) {
		buf[i / 8] ^= (uint8_t)(1u << (i % 8));
		wire_decoded *d = NULL;
		wire_decode(buf, len, &d, &err);
		wire_decoded_free(d);
		buf[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	free(raw);
	free(buf);
}

/* Counts that claim far more than the payload holds are refused before
 * anything is allocated for them (ASan would report a huge allocation). */
static void test_hostile_counts(void **state)
{
	(void)state;
	pb b = {0};
	static const uint64_t counts[] = {UINT32_MAX, UINT64_MAX, (uint64_t)1 << 32, 1u << 20};
	for (size_t c = 0; c < sizeof(counts) / sizeof(*counts); c++) {
		for (int where = 0; where < 5; where++) {
			b.len = 0;
			pb_head(&b);
			b.len--;
			if (where > 0)
				pb_varint(&b, 0);    /* counters */
			if (where > 1)
				pb_varint(&b, 0);    /* processes */
			if (where > 2)
				pb_varint(&b, 0);    /* objects */
			if (where > 3)
				pb_varint(&b, 0);    /* stacks */
			pb_varint(&b, counts[c]);
			wire_err err;
			int rc = decode_raw(&b, &err);
			assert_true(rc == -EMSGSIZE || rc == -EBADMSG);
		}
	}
	/* a raw length of 64 MiB with a tiny block: lz4 must not overrun */
	b.len = 0;
	pb_head(&b);
	size_t len;
	uint8_t *body = wrap(b.p, b.len, &len);
	body[12] = 0;
	body[13] = 0;
	body[14] = 0;
	body[15] = 4;
	wire_decoded *d;
	wire_err err;
	assert_int_equal(wire_decode(body, len, &d, &err), -EBADMSG);
	free(body);
	free(b.p);
}

/* Named frames with a language, file and line: version 2, the same bytes
 * again after a decode, IDs that tell them apart from plain named frames
 * and from each other, and kind 3 refused in a version 1 batch. */
static void test_round_trip_source(void **state)
{
	(void)state;
	rich r;
	mk_rich(&r);
	r.fr[3] = (wire_frame){WIRE_FRAME_NAMED, 0, 0, "Handler.run", "/srv/app/h\xc3\xa4.py",
	                       42, "python"};
	r.fr[5] = (wire_frame){WIRE_FRAME_NAMED, 0, 0, "<module>", NULL, 0, "python"};
	r.fr[7] = (wire_frame){WIRE_FRAME_NAMED, 0, 0, "f", "a.js", 0, NULL};
	for (int i = 0; i < 3; i++)
		r.st[i].id = wire_stack_id(r.obj, 3, r.st[i].frames, r.st[i].nframes);
	for (int i = 0; i < 6; i++)
		if (r.rows[i].stack_id != 0x1122334455667788ull)
			r.rows[i].stack_id = r.st[i == 1 ? 1 : i == 2 ? 2 : 0].id;
	uint8_t *buf, *buf2;
	size_t len, len2;
	wire_err err;
	if (wire_encode(&r.b, &buf, &len, &err))
		fail_msg("encode: %s", err.msg);
	assert_int_equal(buf[8], 2);
	wire_decoded *d;
	if (wire_decode(buf, len, &d, &err))
		fail_msg("decode: %s", err.msg);
	assert_batches_equal(&r.b, wire_decoded_batch(d));
	assert_int_equal(wire_encode(wire_decoded_batch(d), &buf2, &len2, &err), 0);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, buf2, len);
	wire_decoded_free(d);
	free(buf2);
	free(buf);

	/* each of the three changes the ID; none of them is the plain frame */
	wire_frame f[] = {
		{WIRE_FRAME_NAMED, 0, 0, "f", NULL, 0, NULL},
		{WIRE_FRAME_NAMED, 0, 0, "f", "", 0, ""},   /* the same frame */
		{WIRE_FRAME_NAMED, 0, 0, "f", "a.py", 0, NULL},
		{WIRE_FRAME_NAMED, 0, 0, "f", NULL, 7, NULL},
		{WIRE_FRAME_NAMED, 0, 0, "f", NULL, 0, "python"},
		{WIRE_FRAME_NAMED, 0, 0, "f", "a.py", 7, "python"},
		{WIRE_FRAME_NAMED, 0, 0, "f", "a.py", 8, "python"},
		{WIRE_FRAME_NAMED, 0, 0, "f", "a.py", 7, "js"},
	};
	uint64_t id[8];
	for (int i = 0; i < 8; i++)
		id[i] = wire_stack_id(NULL, 0, &f[i], 1);
	assert_true(id[0] == id[1]);
	for (int i = 2; i < 8; i++)
		for (int k = 0; k < i; k++)
			assert_true(id[i] != id[k]);

	/* kind 3 needs version 2; with none of the three it is a plain
	 * named frame, hashed as one */
	for (int version = 1; version <= 2; version++) {
		pb b = {0};
		pb_head(&b);
		pb_varint(&b, 0);   /* processes */
		pb_varint(&b, 0);   /* objects */
		pb_varint(&b, 1);
		pb_u64(&b, id[0]);
		pb_varint(&b, 1);
		pb_put(&b, "\x03", 1);
		pb_str(&b, "f");
		pb_str(&b, "");
		pb_str(&b, "");
		pb_varint(&b, 0);
		pb_varint(&b, 0);   /* rows */
		size_t blen;
		uint8_t *body = wrap(b.p, b.len, &blen);
		body[8] = (uint8_t)version;
		wire_decoded *dd = NULL;
		err.msg[0] = 0;
		int rc = wire_decode(body, blen, &dd, &err);
		if (version == 1) {
			assert_int_equal(rc, -EBADMSG);
			assert_non_null(strstr(err.msg, "stack 0: frame 0: frame kind 3 needs version 2"));
		} else {
			if (rc)
				fail_msg("decode: %s", err.msg);
			const wire_frame *g = &wire_decoded_batch(dd)->stacks[0].frames[0];
			assert_int_equal(g->kind, WIRE_FRAME_NAMED);
			assert_string_equal(g->name, "f");
		}
		wire_decoded_free(dd);
		free(body);
		free(b.p);
	}
}

/* One normal form: wire_stack_id equals storage's st_stack_hash. */
static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_stack_id_matches_storage(void **state)
{
	(void)state;
	static const char *names[] = {"a", "do_syscall_64", "", "x\xff\xfe", "main.main"};
	static const char *langs[] = {NULL, "", "python", "js"};
	static const char *files[] = {NULL, "", "app.py", "/usr/lib/python3.11/zlib\xc3\xa4.py"};
	uint8_t bids[4][WIRE_MAX_BUILD_ID];
	for (size_t i = 0; i < sizeof(bids); i++)
		((uint8_t *)bids)[i] = (uint8_t)rnd();
	wire_object wo[4];
	st_object so[4];
	for (int i = 0; i < 4; i++) {
		uint32_t bl = 1 + (uint32_t)(rnd() % WIRE_MAX_BUILD_ID);
		wo[i] = (wire_object){bids[i], bl, "o"};
		so[i] = (st_object){bids[i], bl, "o"};
	}
	wire_frame wf[64];
	st_frame sf[64];
	for (int iter = 0; iter < 2000; iter++) {
		uint32_t n = 1 + (uint32_t)(rnd() % 64);
		for (uint32_t i = 0; i < n; i++) {
			uint32_t kind = (uint32_t)(rnd() % 3);
			uint32_t obj = (uint32_t)(rnd() % 5);   /* 4: out of range */
			uint64_t off = rnd() >> (rnd() % 64);
			const char *nm = names[rnd() % 5];
			const char *fl = kind == 2 ? files[rnd() % 4] : NULL;
			const char *lg = kind == 2 ? langs[rnd() % 4] : NULL;
			uint32_t line = kind == 2 && rnd() % 2 ? (uint32_t)(rnd() % 100000) : 0;
			wf[i] = (wire_frame){kind, obj, off, kind ? nm : NULL, fl, line, lg};
			sf[i] = (st_frame){kind, obj, off, kind ? nm : NULL, fl, line, lg};
		}
		assert_true(wire_stack_id(wo, 4, wf, n) == st_stack_hash(so, 4, sf, n));
	}
	/* and it is the documented normal form: 'K', varint len, name */
	XXH3_state_t *h = XXH3_createState();
	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, "K\x01" "a", 3);
	wire_frame k = {WIRE_FRAME_KERNEL, 0, 0, "a"};
	assert_true(wire_stack_id(NULL, 0, &k, 1) == XXH3_64bits_digest(h));
	XXH3_freeState(h);
}

/* The fallback build ID is XXH3-128 in canonical byte order: fixed values,
 * so an agent and a server of different versions agree. */
static void test_fallback_build_id(void **state)
{
	(void)state;
	uint8_t id[WIRE_FALLBACK_BUILD_ID_LEN];
	char hex[2 * WIRE_FALLBACK_BUILD_ID_LEN + 1];
	wire_fallback_build_id("", 0, id);
	wire_hex(id, sizeof(id), hex);
	assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
	/* streaming gives the same bytes */
	XXH3_state_t *st = XXH3_createState();
	XXH3_128bits_reset(st);
	XXH3_128bits_update(st, "hello ", 6);
	XXH3_128bits_update(st, "world", 5);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
	XXH3_freeState(st);
	wire_fallback_build_id("hello world", 11, id);
	assert_memory_equal(id, c.digest, sizeof(id));
}

/* Token comparison: equal only for the same bytes and length; a prefix,
 * an extension or an empty token never matches. */
static void test_auth_token_eq(void **state)
{
	(void)state;
	static const struct {
		const char *given, *want;
		bool eq;
	} cases[] = {
		{"abcdefghijklmnop", "abcdefghijklmnop", true},
		{"abcdefghijklmnoq", "abcdefghijklmnop", false},
		{"Abcdefghijklmnop", "abcdefghijklmnop", false},
		{"abcdefghijklmno", "abcdefghijklmnop", false},
		{"abcdefghijklmnopabcdefghijklmnop", "abcdefghijklmnop", false},
		{"", "abcdefghijklmnop", false},
		{"", "", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		assert_int_equal(wire_auth_token_eq(cases[i].given, strlen(cases[i].given),
		                                    cases[i].want), cases[i].eq);
	size_t n = 0;
	const char *t = wire_auth_bearer("bearer   tok  ", &n);
	assert_non_null(t);
	assert_int_equal(n, 3);
	assert_memory_equal(t, "tok", 3);
	assert_null(wire_auth_bearer("Basic tok", &n));
	assert_null(wire_auth_bearer("Bearertok", &n));
	assert_null(wire_auth_bearer(NULL, &n));

	/* a raw header line as libcurl hands it over */
	char v[8] = "keep";
	const char *h = "x-smolder-debuginfo: \tdebug \r\n";
	wire_http_header_value(h, strlen(h), "X-Smolder-Debuginfo", v, sizeof(v));
	assert_string_equal(v, "debug");
	strcpy(v, "keep");   /* another header, or a name it only starts with */
	h = "X-Smolder-Debuginfo-Dwarf: yes\r\n";
	wire_http_header_value(h, strlen(h), "X-Smolder-Debuginfo", v, sizeof(v));
	assert_string_equal(v, "keep");
	wire_http_header_value(h, strlen(h), "X-Smolder-Debuginfo-Dwarf", v, sizeof(v));
	assert_string_equal(v, "yes");
	h = "X-Smolder-Debuginfo: a-long-value\r\n";   /* truncated to fit */
	wire_http_header_value(h, strlen(h), "X-Smolder-Debuginfo", v, sizeof(v));
	assert_string_equal(v, "a-long-");
}

/* Token files: first line trimmed, too short / spaced / missing refused
 * with a message, group-readable reported. */
static void test_auth_token_file(void **state)
{
	(void)state;
	static const struct {
		const char *name, *content;
		int rc;
		const char *token;
	} cases[] = {
		{"trimmed", "  0123456789abcdef \r\nsecond line\n", 0, "0123456789abcdef"},
		{"no newline", "0123456789abcdefXYZ", 0, "0123456789abcdefXYZ"},
		{"short", "0123456789abcde\n", -EINVAL, NULL},
		{"empty", "", -EINVAL, NULL},
		{"space inside", "01234567 89abcdef\n", -EINVAL, NULL},
	};
	char path[] = "/tmp/smolder-token.XXXXXX";
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		FILE *f = fdopen(fd, "w");
		fputs(cases[i].content, f);
		fclose(f);
		char *tok = NULL, err[256];
		bool shared = true;
		int rc = wire_auth_read_token_file(path, &tok, &shared, err, sizeof(err));
		if (rc != cases[i].rc)
			fail_msg("%s: rc %d, want %d (%s)", cases[i].name, rc, cases[i].rc, err);
		if (cases[i].token)
			assert_string_equal(tok, cases[i].token);
		else
			assert_true(tok == NULL && strstr(err, path));
		assert_false(shared);   /* mkstemp makes 0600 */
		free(tok);
		chmod(path, 0640);
		tok = NULL;
		wire_auth_read_token_file(path, &tok, &shared, NULL, 0);
		assert_true(shared);
		free(tok);
		unlink(path);
		memcpy(path + strlen(path) - 6, "XXXXXX", 6);
	}
	char *tok = (char *)1;
	char err[256];
	assert_int_equal(wire_auth_read_token_file("/nonexistent/token", &tok, NULL, err,
	                                           sizeof(err)), -ENOENT);
	assert_null(tok);
	assert_non_null(strstr(err, "/nonexistent/token"));
}

/* The agent's marker of a walk cut short is the frame storage and the
 * query engine recognise. */
static void test_truncated_marker(void **state)
{
	(void)state;
	assert_string_equal(WIRE_TRUNCATED_FRAME, ST_TRUNCATED_FRAME);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_round_trip_source),
		cmocka_unit_test(test_truncated_marker),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_decode_limits),
		cmocka_unit_test(test_total_frames_limit),
		cmocka_unit_test(test_decode_header),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_bit_flips),
		cmocka_unit_test(test_hostile_counts),
		cmocka_unit_test(test_stack_id_matches_storage),
		cmocka_unit_test(test_fallback_build_id),
		cmocka_unit_test(test_auth_token_eq),
		cmocka_unit_test(test_auth_token_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
