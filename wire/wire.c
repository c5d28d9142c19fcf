/* wire.c - the native batch format's encoder (agent side) and decoder
 * (server side). Byte layout: docs/protocol.md. The decoder trusts nothing
 * and says what is wrong; whether labels and names are acceptable to the
 * store is storage's call (st_append), not this file's. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include "wire/wire.h"

/* Smallest encoding of each repeated item, to refuse a count that cannot
 * fit in the bytes left before allocating anything for it. */
enum {
	MIN_COUNTER = 3,  /* str name (1 + >= 1 byte), varint value */
	MIN_PROCESS = 2,  /* varint pid, varint nlabels */
	MIN_LABEL = 3,    /* str name (non-empty), str value */
	MIN_OBJECT = 3,   /* varint len, >= 1 byte of build ID, str name */
	MIN_STACK = 12,   /* u64 id, varint nframes, >= 1 frame */
	MIN_FRAME = 3,    /* kind, then 2 varints or a non-empty str */
	MIN_ROW = 11,     /* varint ts, varint process, u64 stack, varint count */
};

/* The kind byte of a named frame that carries a language, file or line
 * (version 2); wire_frame.kind stays WIRE_FRAME_NAMED. */
enum { KIND_NAMED_SOURCE = 3 };

/* ---- error helper ---- */

static int fail(wire_err *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(wire_err *err, int rc, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- stack IDs ---- */

uint64_t wire_stack_id(const wire_object *objects, uint32_t nobjects,
                       const wire_frame *frames, uint32_t nframes)
{
	XXH3_state_t h;
	XXH3_64bits_reset(&h);
	for (uint32_t i = 0; i < nframes; i++) {
		const wire_frame *f = &frames[i];
		if (f->kind == WIRE_FRAME_KERNEL || f->kind == WIRE_FRAME_NAMED) {
			const char *n = f->name ? f->name : "";
			wire_stack_hash_name(&h, f->kind, n, strlen(n));
			if (f->kind == WIRE_FRAME_NAMED && wire_frame_has_source(f)) {
				const char *l = f->lang ? f->lang : "", *fl = f->file ? f->file : "";
				wire_stack_hash_source(&h, l, strlen(l), fl, strlen(fl), f->line);
			}
		} else {
			/* an out-of-range object hashes as an empty build ID, as
			 * st_stack_hash does; neither side accepts such a stack */
			const wire_object *o = f->object < nobjects ? &objects[f->object] : NULL;
			wire_stack_hash_user(&h, o ? o->build_id : NULL, o ? o->build_id_len : 0,
			                     f->offset);
		}
	}
	return XXH3_64bits_digest(&h);
}

/* ---- decoder ----
 * Two passes over the inflated payload with the same code: the first
 * checks everything but stack IDs and counts what the batch needs (labels,
 * frames, string bytes), so the second fills one allocation sized exactly;
 * the second checks stack IDs as each stack is complete. */

struct wire_decoded {
	wire_batch b;
	/* the arena follows: arrays, then build IDs and strings */
};

/* Where the decoder is, for error messages. */
enum { SEC_HEADER, SEC_COUNTER, SEC_PROCESS, SEC_OBJECT, SEC_STACK, SEC_ROW };

typedef struct dec {
	const uint8_t *p, *end;
	wire_err *err;
	int sec;
	uint32_t i, j;      /* item in the section; sub-item (label, frame) */
	bool sub;           /* j is meaningful */
	bool fill;          /* second pass */
	uint16_t version;   /* the header's */
	/* first pass: totals; second pass: cursors into the arena */
	size_t nlabels, nframes, nbytes;
	wire_label *lab;
	wire_frame *fr;
	char *bytes;
	wire_batch *b;
} dec;

static int dfail(dec *d, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int dfail(dec *d, int rc, const char *fmt, ...)
{
	static const char *const item[] = {"header", "counter", "process", "object",
	                                   "stack", "row"};
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (d->sec == SEC_HEADER)
		return fail(d->err, rc, "header: %s", what);
	if (!d->sub)
		return fail(d->err, rc, "%s %u: %s", item[d->sec], d->i, what);
	return fail(d->err, rc, "%s %u: %s %u: %s", item[d->sec], d->i,
	            d->sec == SEC_PROCESS ? "label" : "frame", d->j, what);
}

static int rd_varint(dec *d, const char *what, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned k = 0; k < 10; k++) {
		if (d->p >= d->end)
			return dfail(d, -EBADMSG, "truncated in %s", what);
		uint8_t c = *d->p++;
		if (k == 9 && c > 1)
			return dfail(d, -EBADMSG, "%s: varint overflows 64 bits", what);
		v |= (uint64_t)(c & 0x7f) << (7 * k);
		if (!(c & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return dfail(d, -EBADMSG, "%s: varint longer than 10 bytes", what);
}

static int rd_u64(dec *d, const char *what, uint64_t *out)
{
	if (d->end - d->p < 8)
		return dfail(d, -EBADMSG, "truncated in %s", what);
	uint64_t v = 0;
	for (int k = 0; k < 8; k++)
		v |= (uint64_t)d->p[k] << (8 * k);
	d->p += 8;
	*out = v;
	return 0;
}

/* A count, bounded by its limit (-EMSGSIZE) and by how many items of at
 * least min bytes the rest of the payload can hold (-EBADMSG). */
static int rd_count(dec *d, const char *what, uint64_t limit, size_t min, uint32_t *out)
{
	uint64_t v;
	int rc = rd_varint(d, what, &v);
	if (rc)
		return rc;
	if (v > limit)
		return dfail(d, -EMSGSIZE, "%llu %s, the limit is %llu", (unsigned long long)v,
		             what, (unsigned long long)limit);
	if (v > (uint64_t)(d->end - d->p) / min)
		return dfail(d, -EBADMSG, "truncated: %llu %s cannot fit in the %zu bytes left",
		             (unsigned long long)v, what, (size_t)(d->end - d->p));
	*out = (uint32_t)v;
	return 0;
}

/* Bytes: a length (min..max) and that many bytes, copied into the arena
 * with a NUL after them on the second pass. Text (binary = false) must not
 * contain NUL: every consumer stops at one, so two different payloads would
 * decode alike. */
static int rd_bytes(dec *d, const char *what, size_t min, size_t max, bool binary,
                    const char **out, uint32_t *outlen)
{
	uint64_t n;
	int rc = rd_varint(d, what, &n);
	if (rc)
		return rc;
	if (n < min || n > max) {
		if (n > max && max == WIRE_MAX_STR)
			return dfail(d, -EMSGSIZE, "%s is %llu bytes, the limit is %zu", what,
			             (unsigned long long)n, max);
		return dfail(d, -EBADMSG, "%s is %llu bytes, must be %zu..%zu", what,
		             (unsigned long long)n, min, max);
	}
	if (n > (uint64_t)(d->end - d->p))
		return dfail(d, -EBADMSG, "truncated in %s (%llu bytes, %zu left)", what,
		             (unsigned long long)n, (size_t)(d->end - d->p));
	if (!binary && memchr(d->p, 0, n))
		return dfail(d, -EBADMSG, "%s contains a NUL byte", what);
	if (d->fill) {
		memcpy(d->bytes, d->p, n);
		d->bytes[n] = 0;
		*out = d->bytes;
		d->bytes += n + 1;
	} else {
		d->nbytes += n + 1;
	}
	if (outlen)
		*outlen = (uint32_t)n;
	d->p += n;
	return 0;
}

static int rd_str(dec *d, const char *what, bool nonempty, const char **out)
{
	return rd_bytes(d, what, nonempty ? 1 : 0, WIRE_MAX_STR, false, out, NULL);
}

/* A pointer into the arena on the second pass, a dummy on the first. */
#define SLOT(arr, k) (d->fill ? &(arr)[k] : &tmp_##arr)

static int parse(dec *d)
{
	wire_batch *b = d->b;
	int rc;
	uint64_t v;
	/* first-pass scratch targets of SLOT */
	wire_counter tmp_counters;
	wire_process tmp_processes;
	wire_label tmp_lab;
	wire_object tmp_objects;
	wire_stack tmp_stacks;
	wire_frame tmp_fr;
	wire_row tmp_rows;
	wire_counter *counters = (wire_counter *)b->counters;
	wire_process *processes = (wire_process *)b->processes;
	wire_object *objects = (wire_object *)b->objects;
	wire_stack *stacks = (wire_stack *)b->stacks;
	wire_row *rows = (wire_row *)b->rows;

	d->sec = SEC_HEADER;
	if ((rc = rd_str(d, "agent_id", true, &b->agent_id)) ||
	    (rc = rd_str(d, "hostname", false, &b->hostname)) ||
	    (rc = rd_str(d, "profile_type", true, &b->profile_type)) ||
	    (rc = rd_varint(d, "seq", &b->seq)))
		return rc;
	if ((rc = rd_u64(d, "start_ns", &v)))
		return rc;
	b->start_ns = (int64_t)v;
	if ((rc = rd_u64(d, "end_ns", &v)))
		return rc;
	b->end_ns = (int64_t)v;
	if (b->start_ns < 0 || b->end_ns < b->start_ns)
		return dfail(d, -EBADMSG, "interval [%lld, %lld] ns is not a forward "
		             "interval of non-negative times", (long long)b->start_ns,
		             (long long)b->end_ns);
	if ((rc = rd_varint(d, "period_ns", &b->period_ns)))
		return rc;

	if ((rc = rd_count(d, "counters", WIRE_MAX_COUNTERS, MIN_COUNTER, &b->ncounters)))
		return rc;
	d->sec = SEC_COUNTER;
	for (d->i = 0; d->i < b->ncounters; d->i++) {
		wire_counter *c = SLOT(counters, d->i);
		if ((rc = rd_str(d, "name", true, &c->name)) ||
		    (rc = rd_varint(d, "value", &c->value)))
			return rc;
	}

	d->sec = SEC_HEADER;
	if ((rc = rd_count(d, "processes", WIRE_MAX_PROCESSES, MIN_PROCESS, &b->nprocesses)))
		return rc;
	d->sec = SEC_PROCESS;
	for (d->i = 0; d->i < b->nprocesses; d->i++) {
		wire_process *pr = SLOT(processes, d->i);
		if ((rc = rd_varint(d, "pid", &v)))
			return rc;
		if (v > UINT32_MAX)
			return dfail(d, -EBADMSG, "pid %llu is over 2^32", (unsigned long long)v);
		pr->pid = (uint32_t)v;
		if ((rc = rd_count(d, "labels", WIRE_MAX_LABELS, MIN_LABEL, &pr->nlabels)))
			return rc;
		pr->labels = d->fill ? d->lab : NULL;
		d->sub = true;
		for (d->j = 0; d->j < pr->nlabels; d->j++) {
			wire_label *l = d->fill ? &d->lab[d->j] : &tmp_lab;
			if ((rc = rd_str(d, "name", true, &l->name)) ||
			    (rc = rd_str(d, "value", false, &l->value)))
				return rc;
		}
		d->sub = false;
		if (d->fill)
			d->lab += pr->nlabels;
		else
			d->nlabels += pr->nlabels;
	}

	d->sec = SEC_HEADER;
	if ((rc = rd_count(d, "objects", WIRE_MAX_OBJECTS, MIN_OBJECT, &b->nobjects)))
		return rc;
	d->sec = SEC_OBJECT;
	for (d->i = 0; d->i < b->nobjects; d->i++) {
		wire_object *o = SLOT(objects, d->i);
		const char *bid = NULL;
		if ((rc = rd_bytes(d, "build ID", 1, WIRE_MAX_BUILD_ID, true, &bid,
		                   &o->build_id_len)) ||
		    (rc = rd_str(d, "name", false, &o->name)))
			return rc;
		o->build_id = (const uint8_t *)bid;
	}

	d->sec = SEC_HEADER;
	if ((rc = rd_count(d, "stacks", WIRE_MAX_STACKS, MIN_STACK, &b->nstacks)))
		return rc;
	d->sec = SEC_STACK;
	for (d->i = 0; d->i < b->nstacks; d->i++) {
		wire_stack *s = SLOT(stacks, d->i);
		XXH3_state_t h;
		if ((rc = rd_u64(d, "stack ID", &s->id)) ||
		    (rc = rd_count(d, "frames", WIRE_MAX_FRAMES, MIN_FRAME, &s->nframes)))
			return rc;
		if (!s->nframes)
			return dfail(d, -EBADMSG, "no frames");
		if (!d->fill && s->nframes > WIRE_MAX_BATCH_FRAMES - d->nframes)
			return dfail(d, -EMSGSIZE, "the batch has more than %u frames in all",
			             WIRE_MAX_BATCH_FRAMES);
		s->frames = d->fill ? d->fr : NULL;
		XXH3_64bits_reset(&h);
		d->sub = true;
		for (d->j = 0; d->j < s->nframes; d->j++) {
			wire_frame *f = d->fill ? &d->fr[d->j] : &tmp_fr;
			if (d->p >= d->end)
				return dfail(d, -EBADMSG, "truncated in kind");
			f->kind = *d->p++;
			f->object = 0;
			f->offset = 0;
			f->name = f->file = f->lang = NULL;
			f->line = 0;
			if (f->kind == WIRE_FRAME_USER) {
				if ((rc = rd_varint(d, "object index", &v)))
					return rc;
				if (v >= b->nobjects)
					return dfail(d, -EBADMSG, "object index %llu out of range "
					             "(%u objects)", (unsigned long long)v, b->nobjects);
				f->object = (uint32_t)v;
				if ((rc = rd_varint(d, "offset", &f->offset)))
					return rc;
				if (d->fill) {
					const wire_object *o = &objects[f->object];
					wire_stack_hash_user(&h, o->build_id, o->build_id_len, f->offset);
				}
			} else if (f->kind == WIRE_FRAME_KERNEL || f->kind == WIRE_FRAME_NAMED) {
				uint32_t n;
				if ((rc = rd_bytes(d, "name", 1, WIRE_MAX_STR, false, &f->name, &n)))
					return rc;
				if (d->fill)
					wire_stack_hash_name(&h, f->kind, f->name, n);
			} else if (f->kind == KIND_NAMED_SOURCE && d->version >= 2) {
				uint32_t n, nl, nf;
				f->kind = WIRE_FRAME_NAMED;
				if ((rc = rd_bytes(d, "name", 1, WIRE_MAX_STR, false, &f->name, &n)) ||
				    (rc = rd_bytes(d, "language", 0, WIRE_MAX_LANG, false, &f->lang, &nl)) ||
				    (rc = rd_bytes(d, "file", 0, WIRE_MAX_STR, false, &f->file, &nf)) ||
				    (rc = rd_varint(d, "line", &v)))
					return rc;
				if (v > WIRE_MAX_LINE)
					return dfail(d, -EBADMSG, "line %llu is over 2^31-1",
					             (unsigned long long)v);
				f->line = (uint32_t)v;
				if (d->fill) {
					/* as wire_stack_id: a frame with none of the three is
					 * the plain named frame, however it was encoded */
					wire_stack_hash_name(&h, f->kind, f->name, n);
					if (wire_frame_has_source(f))
						wire_stack_hash_source(&h, f->lang, nl, f->file, nf, f->line);
				}
			} else {
				if (f->kind == KIND_NAMED_SOURCE)
					return dfail(d, -EBADMSG, "frame kind %u needs version 2, the "
					             "batch is version %u", f->kind, d->version);
				return dfail(d, -EBADMSG, "unknown frame kind %u", f->kind);
			}
		}
		d->sub = false;
		if (d->fill) {
			uint64_t want = XXH3_64bits_digest(&h);
			if (want != s->id)
				return dfail(d, -EBADMSG, "ID %016llx does not match its frames "
				             "(their hash is %016llx)", (unsigned long long)s->id,
				             (unsigned long long)want);
			d->fr += s->nframes;
		} else {
			d->nframes += s->nframes;
		}
	}

	d->sec = SEC_HEADER;
	if ((rc = rd_count(d, "rows", WIRE_MAX_ROWS, MIN_ROW, &b->nrows)))
		return rc;
	d->sec = SEC_ROW;
	for (d->i = 0; d->i < b->nrows; d->i++) {
		wire_row *r = SLOT(rows, d->i);
		if ((rc = rd_varint(d, "timestamp", &v)))
			return rc;
		int64_t delta = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
		if (__builtin_add_overflow(b->start_ns, delta, &r->ts_ns) || r->ts_ns < 0)
			return dfail(d, -EBADMSG, "timestamp start_ns%+lld ns is out of range",
			             (long long)delta);
		if ((rc = rd_varint(d, "process index", &v)))
			return rc;
		if (v >= b->nprocesses)
			return dfail(d, -EBADMSG, "process index %llu out of range (%u processes)",
			             (unsigned long long)v, b->nprocesses);
		r->process = (uint32_t)v;
		if ((rc = rd_u64(d, "stack ID", &r->stack_id)) ||
		    (rc = rd_varint(d, "count", &r->count)))
			return rc;
		if (r->count == 0 || r->count > WIRE_MAX_COUNT)
			return dfail(d, -EBADMSG, "count %llu, must be 1..2^48",
			             (unsigned long long)r->count);
	}
	d->sec = SEC_HEADER;
	if (d->p != d->end)
		return dfail(d, -EBADMSG, "%zu trailing bytes after the rows",
		             (size_t)(d->end - d->p));
	return 0;
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Checks the raw payload; with check_only nothing is allocated (the
 * encoder checks its own output this way). */
static int decode_payload(const uint8_t *raw, size_t rawlen, uint16_t version,
                          wire_decoded **out, wire_err *err)
{
	wire_batch scratch = {0};
	dec d = {.p = raw, .end = raw + rawlen, .err = err, .b = &scratch, .version = version};
	int rc = parse(&d);
	if (rc || !out)
		return rc;
	/* one allocation: the batch, then 8-byte-aligned arrays, then bytes */
	size_t off_c = sizeof(wire_decoded);
	size_t off_p = off_c + scratch.ncounters * sizeof(wire_counter);
	size_t off_l = off_p + scratch.nprocesses * sizeof(wire_process);
	size_t off_o = off_l + d.nlabels * sizeof(wire_label);
	size_t off_s = off_o + scratch.nobjects * sizeof(wire_object);
	size_t off_f = off_s + scratch.nstacks * sizeof(wire_stack);
	size_t off_r = off_f + d.nframes * sizeof(wire_frame);
	size_t off_b = off_r + scratch.nrows * sizeof(wire_row);
	uint8_t *m = malloc(off_b + d.nbytes);
	if (!m)
		return -ENOMEM;
	wire_decoded *dd = (wire_decoded *)m;
	memset(&dd->b, 0, sizeof(dd->b));
	dd->b.counters = (wire_counter *)(m + off_c);
	dd->b.processes = (wire_process *)(m + off_p);
	dd->b.objects = (wire_object *)(m + off_o);
	dd->b.stacks = (wire_stack *)(m + off_s);
	dd->b.rows = (wire_row *)(m + off_r);
	d = (dec){.p = raw, .end = raw + rawlen, .err = err, .b = &dd->b, .fill = true,
	          .version = version,
	          .lab = (wire_label *)(m + off_l), .fr = (wire_frame *)(m + off_f),
	          .bytes = (char *)(m + off_b)};
	rc = parse(&d);
	if (rc) {
		free(m);
		return rc;
	}
	*out = dd;
	return 0;
}

int wire_decode(const uint8_t *p, size_t n, wire_decoded **out, wire_err *err)
{
	*out = NULL;
	if (err)
		err->msg[0] = 0;
	if (n < WIRE_HEADER_LEN)
		return fail(err, -EBADMSG, "batch is %zu bytes, shorter than its %d-byte header",
		            n, WIRE_HEADER_LEN);
	if (memcmp(p, WIRE_MAGIC, 8))
		return fail(err, -EBADMSG, "bad magic: not a Smolder batch");
	uint16_t version = get_u16(p + 8), flags = get_u16(p + 10);
	uint32_t rawlen = get_u32(p + 12), clen = get_u32(p + 16);
	if (version < WIRE_VERSION_MIN || version > WIRE_VERSION)
		return fail(err, -EBADMSG, "version %u, this server reads versions %d to %d",
		            version, WIRE_VERSION_MIN, WIRE_VERSION);
	if (flags)
		return fail(err, -EBADMSG, "unknown flags 0x%04x", flags);
	if (rawlen > WIRE_MAX_RAW)
		return fail(err, -EMSGSIZE, "payload of %u bytes, the limit is %u", rawlen,
		            WIRE_MAX_RAW);
	if (clen > WIRE_MAX_BODY - WIRE_HEADER_LEN)
		return fail(err, -EMSGSIZE, "compressed payload of %u bytes, the limit is %u",
		            clen, WIRE_MAX_BODY - WIRE_HEADER_LEN);
	if (clen != n - WIRE_HEADER_LEN)
		return fail(err, -EBADMSG, "header says %u compressed bytes, %zu follow it",
		            clen, n - WIRE_HEADER_LEN);
	uint8_t *raw = malloc(rawlen ? rawlen : 1);
	if (!raw)
		return -ENOMEM;
	int rc;
	/* bounded by rawlen: lz4 never writes past it; anything short of
	 * exactly rawlen is as wrong as a corrupt block */
	int got = LZ4_decompress_safe((const char *)p + WIRE_HEADER_LEN, (char *)raw,
	                              (int)clen, (int)rawlen);
	if (got < 0)
		rc = fail(err, -EBADMSG, "payload is not a valid lz4 block");
	else if ((uint32_t)got != rawlen)
		rc = fail(err, -EBADMSG, "payload inflates to %d bytes, the header says %u",
		          got, rawlen);
	else
		rc = decode_payload(raw, rawlen, version, out, err);
	free(raw);
	return rc;
}

const wire_batch *wire_decoded_batch(const wire_decoded *d)
{
	return &d->b;
}

void wire_decoded_free(wire_decoded *d)
{
	free(d);
}

/* ---- encoder ---- */

typedef struct obuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
} obuf;

static void put(obuf *o, const void *src, size_t n)
{
	if (o->oom)
		return;
	if (n > o->cap - o->len) {
		size_t cap = o->cap ? o->cap : 4096;
		while (cap - o->len < n)
			cap *= 2;
		uint8_t *np = realloc(o->p, cap);
		if (!np) {
			o->oom = true;
			return;
		}
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, src, n);
	o->len += n;
}

static void put_varint(obuf *o, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	while (v >= 0x80) {
		t[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	t[n++] = (uint8_t)v;
	put(o, t, n);
}

static void put_u64(obuf *o, uint64_t v)
{
	uint8_t t[8];
	for (int k = 0; k < 8; k++)
		t[k] = (uint8_t)(v >> (8 * k));
	put(o, t, 8);
}

static void put_bytes(obuf *o, const void *s, size_t n)
{
	put_varint(o, n);
	put(o, s, n);
}

static void put_str(obuf *o, const char *s)
{
	s = s ? s : "";
	put_bytes(o, s, strlen(s));
}

int wire_encode(const wire_batch *b, uint8_t **out, size_t *outlen, wire_err *err)
{
	*out = NULL;
	*outlen = 0;
	if (err)
		err->msg[0] = 0;
	/* The counts first: a batch past them is refused before it is written
	 * out; everything else is checked by decoding what was written, so the
	 * encoder cannot produce what the decoder refuses. */
	if (b->ncounters > WIRE_MAX_COUNTERS || b->nprocesses > WIRE_MAX_PROCESSES ||
	    b->nobjects > WIRE_MAX_OBJECTS || b->nstacks > WIRE_MAX_STACKS ||
	    b->nrows > WIRE_MAX_ROWS)
		return fail(err, -EINVAL, "batch over a count limit: %u counters, %u processes, "
		            "%u objects, %u stacks, %u rows", b->ncounters, b->nprocesses,
		            b->nobjects, b->nstacks, b->nrows);
	if ((b->ncounters && !b->counters) || (b->nprocesses && !b->processes) ||
	    (b->nobjects && !b->objects) || (b->nstacks && !b->stacks) ||
	    (b->nrows && !b->rows))
		return fail(err, -EINVAL, "batch array missing");
	for (uint32_t i = 0; i < b->nprocesses; i++)
		if (b->processes[i].nlabels > WIRE_MAX_LABELS ||
		    (b->processes[i].nlabels && !b->processes[i].labels))
			return fail(err, -EINVAL, "process %u: labels missing or more than %d", i,
			            WIRE_MAX_LABELS);
	for (uint32_t i = 0; i < b->nobjects; i++)
		if (b->objects[i].build_id_len > WIRE_MAX_BUILD_ID ||
		    (b->objects[i].build_id_len && !b->objects[i].build_id))
			return fail(err, -EINVAL, "object %u: build ID missing or over %d bytes", i,
			            WIRE_MAX_BUILD_ID);
	for (uint32_t i = 0; i < b->nstacks; i++)
		if (b->stacks[i].nframes > WIRE_MAX_FRAMES ||
		    (b->stacks[i].nframes && !b->stacks[i].frames))
			return fail(err, -EINVAL, "stack %u: frames missing or more than %d", i,
			            WIRE_MAX_FRAMES);

	/* version 1 unless a frame needs 2: servers that read only version 1
	 * still take batches without language, file or line */
	uint16_t version = 1;
	for (uint32_t i = 0; i < b->nstacks && version == 1; i++)
		for (uint32_t j = 0; j < b->stacks[i].nframes; j++) {
			const wire_frame *f = &b->stacks[i].frames[j];
			if (f->kind == WIRE_FRAME_NAMED && wire_frame_has_source(f)) {
				version = 2;
				break;
			}
		}

	obuf o = {0};
	uint8_t *res = NULL;
	int rc;
	put_str(&o, b->agent_id);
	put_str(&o, b->hostname);
	put_str(&o, b->profile_type);
	put_varint(&o, b->seq);
	put_u64(&o, (uint64_t)b->start_ns);
	put_u64(&o, (uint64_t)b->end_ns);
	put_varint(&o, b->period_ns);
	put_varint(&o, b->ncounters);
	for (uint32_t i = 0; i < b->ncounters; i++) {
		put_str(&o, b->counters[i].name);
		put_varint(&o, b->counters[i].value);
	}
	put_varint(&o, b->nprocesses);
	for (uint32_t i = 0; i < b->nprocesses; i++) {
		const wire_process *pr = &b->processes[i];
		put_varint(&o, pr->pid);
		put_varint(&o, pr->nlabels);
		for (uint32_t j = 0; j < pr->nlabels; j++) {
			put_str(&o, pr->labels[j].name);
			put_str(&o, pr->labels[j].value);
		}
	}
	put_varint(&o, b->nobjects);
	for (uint32_t i = 0; i < b->nobjects; i++) {
		put_bytes(&o, b->objects[i].build_id, b->objects[i].build_id_len);
		put_str(&o, b->objects[i].name);
	}
	put_varint(&o, b->nstacks);
	for (uint32_t i = 0; i < b->nstacks; i++) {
		const wire_stack *s = &b->stacks[i];
		put_u64(&o, s->id);
		put_varint(&o, s->nframes);
		for (uint32_t j = 0; j < s->nframes; j++) {
			const wire_frame *f = &s->frames[j];
			bool source = f->kind == WIRE_FRAME_NAMED && wire_frame_has_source(f);
			uint8_t k = source ? KIND_NAMED_SOURCE : (uint8_t)f->kind;
			if (f->kind > 0xff || f->kind == KIND_NAMED_SOURCE) {
				rc = fail(err, -EINVAL, "stack %u: frame %u: unknown frame kind %u", i,
				          j, f->kind);
				goto out;
			}
			put(&o, &k, 1);
			if (f->kind == WIRE_FRAME_USER) {
				put_varint(&o, f->object);
				put_varint(&o, f->offset);
			} else {
				put_str(&o, f->name);
			}
			if (source) {
				put_str(&o, f->lang);
				put_str(&o, f->file);
				put_varint(&o, f->line);
			}
		}
	}
	put_varint(&o, b->nrows);
	for (uint32_t i = 0; i < b->nrows; i++) {
		const wire_row *r = &b->rows[i];
		/* wrapping difference; the decoder refuses one that overflows */
		int64_t delta = (int64_t)((uint64_t)r->ts_ns - (uint64_t)b->start_ns);
		put_varint(&o, ((uint64_t)delta << 1) ^ (uint64_t)(delta >> 63));
		put_varint(&o, r->process);
		put_u64(&o, r->stack_id);
		put_varint(&o, r->count);
	}
	if (o.oom) {
		rc = -ENOMEM;
		goto out;
	}
	if (o.len > WIRE_MAX_RAW) {
		rc = fail(err, -EINVAL, "batch encodes to %zu bytes, the limit is %u", o.len,
		          WIRE_MAX_RAW);
		goto out;
	}
	rc = decode_payload(o.p, o.len, version, NULL, err);
	if (rc == -EBADMSG || rc == -EMSGSIZE)
		rc = -EINVAL;
	if (rc)
		goto out;
	/* the check above does not hash; stack IDs are checked here, on the
	 * caller's frames (their object indices are known to be in range) */
	for (uint32_t i = 0; i < b->nstacks; i++) {
		const wire_stack *s = &b->stacks[i];
		uint64_t want = wire_stack_id(b->objects, b->nobjects, s->frames, s->nframes);
		if (want != s->id) {
			rc = fail(err, -EINVAL, "stack %u: ID %016llx does not match its frames "
			          "(their hash is %016llx)", i, (unsigned long long)s->id,
			          (unsigned long long)want);
			goto out;
		}
	}
	int bound = LZ4_compressBound((int)o.len);
	res = malloc(WIRE_HEADER_LEN + (size_t)bound);
	if (!res) {
		rc = -ENOMEM;
		goto out;
	}
	int clen = LZ4_compress_default((const char *)o.p, (char *)res + WIRE_HEADER_LEN,
	                                (int)o.len, bound);
	if (clen <= 0) {
		rc = fail(err, -EINVAL, "lz4 compression failed");
		goto out;
	}
	if ((uint32_t)clen > WIRE_MAX_BODY - WIRE_HEADER_LEN) {
		rc = fail(err, -EINVAL, "batch compresses to %d bytes, the limit is %u", clen,
		          WIRE_MAX_BODY - WIRE_HEADER_LEN);
		goto out;
	}
	/* every header byte written: 20..23 are reserved, and heap garbage
	 * must not go out on the wire */
	memset(res, 0, WIRE_HEADER_LEN);
	memcpy(res, WIRE_MAGIC, 8);
	uint32_t hdr[3] = {version, (uint32_t)o.len, (uint32_t)clen};
	uint8_t *h = res + 8;
	h[0] = (uint8_t)hdr[0];
	h[1] = (uint8_t)(hdr[0] >> 8);
	h[2] = h[3] = 0;  /* flags */
	for (int k = 0; k < 4; k++) {
		h[4 + k] = (uint8_t)(hdr[1] >> (8 * k));
		h[8 + k] = (uint8_t)(hdr[2] >> (8 * k));
	}
	*out = res;
	*outlen = WIRE_HEADER_LEN + (size_t)clen;
	res = NULL;
	rc = 0;
out:
	free(res);
	free(o.p);
	return rc;
}
