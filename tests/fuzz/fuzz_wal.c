/* fuzz_wal.c - libFuzzer target: a WAL segment on disk and the batch record
 * inside it are both hostile input. The bytes go three ways:
 *   1. st__wal_scan() as a segment, each record through st__batch_decode();
 *   2. the same again after recomputing every record's CRC32C, because
 *      random mutations almost never keep a CRC valid and would otherwise
 *      never reach the framing and payload checks behind it;
 *   3. st__batch_decode() on the raw bytes, as one record payload.
 * A decoded batch must be one st_append() could have written: it is
 * re-encoded and must decode again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/st_int.h"
#include "tests/fuzz/fixcrc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		abort();
}

static volatile uint64_t sink;

/* Reads every field the store would read from a replayed batch. */
static uint64_t touch(const st__dbatch *d)
{
	const st_batch *b = &d->b;
	uint64_t h = 0;
	for (uint32_t i = 0; i < b->nseries; i++) {
		const st_series_def *s = &b->series[i];
		h += d->series_ids[i] + strlen(s->type);
		for (uint32_t j = 0; j < s->nlabels; j++)
			h += strlen(s->labels[j].name) + strlen(s->labels[j].value);
	}
	for (uint32_t i = 0; i < b->nobjects; i++) {
		const st_object *o = &b->objects[i];
		for (uint32_t j = 0; j < o->build_id_len; j++)
			h += o->build_id[j];
		h += strlen(o->name);
	}
	for (uint32_t i = 0; i < b->nstacks; i++) {
		const st_stack_def *s = &b->stacks[i];
		h += s->id;
		for (uint32_t j = 0; j < s->nframes; j++) {
			const st_frame *f = &s->frames[j];
			if (f->kind == ST_FRAME_KERNEL) {
				h += strlen(f->name);
			} else {
				check(f->object < b->nobjects);
				h += b->objects[f->object].build_id_len + f->offset;
			}
		}
	}
	for (uint32_t i = 0; i < b->nsamples; i++) {
		const st_sample *s = &b->samples[i];
		check(s->series < b->nseries && s->ts_ns >= 0);
		h += d->series_ids[s->series] + s->stack_id + (uint64_t)s->value;
	}
	return h;
}

/* Decodes one payload; on success re-encodes and decodes the result, which
 * must describe the same batch. */
static void decode(const uint8_t *p, size_t len)
{
	st__dbatch d, d2;
	base_err err;
	if (st__batch_decode(p, len, &d, &err))
		return;
	sink += touch(&d);
	base_buf out = {0};
	check(st__batch_encode(&d.b, d.series_ids, &out) == 0);
	check(out.len <= len);
	check(st__batch_decode((const uint8_t *)out.data, out.len, &d2, &err) == 0);
	check(d2.b.nseries == d.b.nseries && d2.b.nobjects == d.b.nobjects &&
	      d2.b.nstacks == d.b.nstacks && d2.b.nsamples == d.b.nsamples);
	for (uint32_t i = 0; i < d.b.nseries; i++)
		check(d2.series_ids[i] == d.series_ids[i]);
	for (uint32_t i = 0; i < d.b.nsamples; i++)
		check(d2.b.samples[i].ts_ns == d.b.samples[i].ts_ns &&
		      d2.b.samples[i].value == d.b.samples[i].value &&
		      d2.b.samples[i].stack_id == d.b.samples[i].stack_id);
	base_buf_free(&out);
	st__dbatch_free(&d2);
	st__dbatch_free(&d);
}

typedef struct scan_ctx {
	const uint8_t *buf;
	size_t len;
	size_t next;     /* where the next record's header must start */
} scan_ctx;

static int on_record(void *arg, uint64_t lsn, const uint8_t *p, size_t len)
{
	scan_ctx *c = arg;
	(void)lsn;
	/* records are reported in file order, each right after the last */
	check(p == c->buf + c->next + ST__WAL_REC_HDR);
	check(len <= c->len - c->next - ST__WAL_REC_HDR);
	c->next += ST__WAL_REC_HDR + len;
	decode(p, len);
	return 0;
}

static void scan(const uint8_t *buf, size_t len)
{
	scan_ctx c = {buf, len, ST__WAL_SEG_HDR};
	size_t valid = 0;
	int rc = st__wal_scan(buf, len, on_record, &c, &valid);
	check(valid <= len);
	if (rc == 0)
		check(valid == c.next);
	else
		check(rc == -EBADMSG);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	scan(data, size);
	if (size >= ST__WAL_SEG_HDR + ST__WAL_REC_HDR) {
		uint8_t *copy = malloc(size);
		if (copy) {
			memcpy(copy, data, size);
			fix_wal_crcs(copy, size);
			if (memcmp(copy, data, size))
				scan(copy, size);
			free(copy);
		}
	}
	decode(data, size);
	return 0;
}
