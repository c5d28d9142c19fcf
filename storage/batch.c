/* batch.c - what makes a batch acceptable, the stable IDs of series and
 * stacks, and the canonical encoding a batch has inside a WAL record.
 * No I/O and no locking here; the one clock read is the future-row limit. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "base/clock.h"
#include "base/text.h"
#include "storage/st_int.h"
#include "wire/wire.h"   /* header only: the stack-ID normal form */

static bool label_name_valid(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		          (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

/* A profile type is name:sample_type:sample_unit:period_type:period_unit,
 * optionally followed by :delta. Every part is a label-like word. */
static int type_check(const char *t, base_err *err)
{
	if (!t)
		return base_fail(err, -EINVAL, "series without a profile type");
	size_t n = strlen(t);
	if (n == 0 || n > ST_MAX_TYPE_LEN)
		return base_fail(err, -EINVAL, "profile type must be 1..%d bytes, got %zu",
		                ST_MAX_TYPE_LEN, n);
	int parts = 1;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && t[i] != ':')
			continue;
		if (!label_name_valid(t + start, i - start))
			return base_fail(err, -EINVAL,
			                "profile type \"%.64s\": part %d is not a word of [a-zA-Z0-9_]",
			                t, parts);
		if (i < n)
			parts++;
		start = i + 1;
	}
	if (parts != 5 && !(parts == 6 && !strcmp(t + n - 6, ":delta")))
		return base_fail(err, -EINVAL,
		                "profile type \"%.64s\" must be name:sample_type:sample_unit:"
		                "period_type:period_unit[:delta]", t);
	return 0;
}

/* Sorts label indices by name (insertion sort: at most ST_MAX_LABELS). */
static void label_order(const st_label *l, uint32_t n, uint8_t *idx)
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t v = (uint8_t)i;
		uint32_t j = i;
		while (j > 0 && strcmp(l[idx[j - 1]].name, l[v].name) > 0) {
			idx[j] = idx[j - 1];
			j--;
		}
		idx[j] = v;
	}
}

static int labels_check_order(const st_label *labels, uint32_t n, uint8_t *idx,
                              base_err *err)
{
	if (n > ST_MAX_LABELS)
		return base_fail(err, -EINVAL, "series has %u labels, the limit is %d",
		                n, ST_MAX_LABELS);
	if (n && !labels)
		return base_fail(err, -EINVAL, "labels missing");
	for (uint32_t i = 0; i < n; i++) {
		const char *k = labels[i].name, *v = labels[i].value;
		if (!k || !v)
			return base_fail(err, -EINVAL, "label %u has no name or value", i);
		size_t kn = strlen(k), vn = strlen(v);
		if (kn > ST_MAX_LABEL_NAME_LEN)
			return base_fail(err, -EINVAL, "label name \"%.32s...\" is %zu bytes, "
			                "the limit is %d", k, kn, ST_MAX_LABEL_NAME_LEN);
		if (!label_name_valid(k, kn))
			return base_fail(err, -EINVAL, "label name \"%.64s\" must match "
			                "[a-zA-Z_][a-zA-Z0-9_]*", k);
		if (kn >= 2 && k[0] == '_' && k[1] == '_')
			return base_fail(err, -EINVAL, "label name \"%.64s\": names starting "
			                "with __ are reserved", k);
		if (vn == 0)
			return base_fail(err, -EINVAL, "label \"%s\" has an empty value "
			                "(leave the label out instead)", k);
		if (vn > ST_MAX_LABEL_VALUE_LEN)
			return base_fail(err, -EINVAL, "label \"%s\" value is %zu bytes, the "
			                "limit is %d", k, vn, ST_MAX_LABEL_VALUE_LEN);
		if (!base_utf8_valid(v, vn))
			return base_fail(err, -EINVAL, "label \"%s\" value is not UTF-8", k);
	}
	label_order(labels, n, idx);
	for (uint32_t i = 1; i < n; i++)
		if (!strcmp(labels[idx[i - 1]].name, labels[idx[i]].name))
			return base_fail(err, -EINVAL, "label \"%s\" appears twice",
			                labels[idx[i]].name);
	return 0;
}

void st__labels_sorted(const st_label *in, uint32_t n, st_label *out)
{
	uint8_t idx[ST_MAX_LABELS];
	label_order(in, n, idx);
	for (uint32_t i = 0; i < n; i++)
		out[i] = in[idx[i]];
}

static void hash_str(XXH3_state_t *h, const char *s)
{
	uint8_t t[10];
	size_t n = strlen(s);
	XXH3_64bits_update(h, t, st__put_varint(t, n));
	XXH3_64bits_update(h, s, n);
}

uint64_t st__group_id(const char *type, const char *label, const char *value)
{
	XXH3_state_t h;
	/* a seed of its own: no series ID is hashed in this domain */
	XXH3_64bits_reset_withSeed(&h, 0x67726f7570ULL);
	hash_str(&h, type);
	if (label) {
		hash_str(&h, label);
		hash_str(&h, value);
	}
	uint64_t id = XXH3_64bits_digest(&h);
	return id ? id : 1;
}

int st_series_id(const st_series_def *s, uint64_t *out, base_err *err)
{
	uint8_t idx[ST_MAX_LABELS];
	int rc = type_check(s->type, err);
	if (rc)
		return rc;
	rc = labels_check_order(s->labels, s->nlabels, idx, err);
	if (rc)
		return rc;
	XXH3_state_t h;
	XXH3_64bits_reset(&h);
	hash_str(&h, s->type);
	for (uint32_t i = 0; i < s->nlabels; i++) {
		hash_str(&h, s->labels[idx[i]].name);
		hash_str(&h, s->labels[idx[i]].value);
	}
	*out = XXH3_64bits_digest(&h);
	return 0;
}

/* The normalized form hashed for a stack ID (docs/format.md, section 6)
 * is defined once, by the header-only helpers of wire/wire.h, so that the
 * agent, which links wire/ and not storage/, computes the same IDs. An
 * out-of-range object hashes as an empty build ID (validation refuses such
 * a frame anyway). */
uint64_t st_stack_hash(const st_object *objects, uint32_t nobjects,
                       const st_frame *frames, uint32_t nframes)
{
	XXH3_state_t h;
	XXH3_64bits_reset(&h);
	for (uint32_t i = 0; i < nframes; i++) {
		const st_frame *f = &frames[i];
		if (f->kind == ST_FRAME_KERNEL || f->kind == ST_FRAME_NAMED) {
			const char *name = f->name ? f->name : "";
			wire_stack_hash_name(&h, f->kind, name, strlen(name));
			if (f->kind == ST_FRAME_NAMED && st__frame_has_source(f)) {
				const char *l = f->lang ? f->lang : "", *fl = f->file ? f->file : "";
				wire_stack_hash_source(&h, l, strlen(l), fl, strlen(fl), f->line);
			}
		} else {
			const st_object *o = f->object < nobjects ? &objects[f->object] : NULL;
			wire_stack_hash_user(&h, o ? o->build_id : NULL, o ? o->build_id_len : 0,
			                     f->offset);
		}
	}
	return XXH3_64bits_digest(&h);
}

_Static_assert((int)ST_FRAME_USER == (int)WIRE_FRAME_USER &&
               (int)ST_FRAME_KERNEL == (int)WIRE_FRAME_KERNEL &&
               (int)ST_FRAME_NAMED == (int)WIRE_FRAME_NAMED, "frame kinds are numbered alike");
_Static_assert(ST_MAX_BUILD_ID_LEN <= 255, "the stack hash stores build ID lengths in a byte");
_Static_assert(ST_MAX_LANG_LEN == WIRE_MAX_LANG && ST_MAX_LINE == WIRE_MAX_LINE,
               "storage takes every language tag and line the wire carries");

/* A language tag: 1..ST_MAX_LANG_LEN bytes of [a-z0-9_.+-], so that it
 * can be shown, matched and used as a colour key without escaping. */
static bool lang_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > ST_MAX_LANG_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_' || s[i] == '.' || s[i] == '+' || s[i] == '-'))
			return false;
	return true;
}

int st__batch_validate(const st_batch *b, uint64_t *series_ids, base_err *err)
{
	int rc;
	if (b->nseries > ST_MAX_BATCH_ITEMS || b->nobjects > ST_MAX_BATCH_ITEMS ||
	    b->nstacks > ST_MAX_BATCH_ITEMS)
		return base_fail(err, -EINVAL, "batch has more than %u series, objects "
		                "or stacks", ST_MAX_BATCH_ITEMS);
	if (b->nsamples > ST_MAX_BATCH_SAMPLES)
		return base_fail(err, -EINVAL, "batch has %u samples, the limit is %u",
		                b->nsamples, ST_MAX_BATCH_SAMPLES);
	if ((b->nseries && !b->series) || (b->nobjects && !b->objects) ||
	    (b->nstacks && !b->stacks) || (b->nsamples && !b->samples))
		return base_fail(err, -EINVAL, "batch array missing");
	for (uint32_t i = 0; i < b->nseries; i++) {
		rc = st_series_id(&b->series[i], &series_ids[i], err);
		if (rc)
			return rc;
	}
	for (uint32_t i = 0; i < b->nobjects; i++) {
		const st_object *o = &b->objects[i];
		if (!o->build_id || o->build_id_len == 0 || o->build_id_len > ST_MAX_BUILD_ID_LEN)
			return base_fail(err, -EINVAL, "object %u: build ID must be 1..%d bytes",
			                i, ST_MAX_BUILD_ID_LEN);
		size_t nn = o->name ? strlen(o->name) : 0;
		if (nn > ST_MAX_OBJECT_NAME_LEN)
			return base_fail(err, -EINVAL, "object %u: name is %zu bytes, the "
			                "limit is %d", i, nn, ST_MAX_OBJECT_NAME_LEN);
	}
	for (uint32_t i = 0; i < b->nstacks; i++) {
		const st_stack_def *s = &b->stacks[i];
		if (s->nframes == 0 || s->nframes > ST_MAX_FRAMES)
			return base_fail(err, -EINVAL, "stack %016llx has %u frames, must be "
			                "1..%d", (unsigned long long)s->id, s->nframes,
			                ST_MAX_FRAMES);
		if (!s->frames)
			return base_fail(err, -EINVAL, "stack %u has no frames", i);
		for (uint32_t j = 0; j < s->nframes; j++) {
			const st_frame *f = &s->frames[j];
			if (f->kind == ST_FRAME_USER) {
				if (f->object >= b->nobjects)
					return base_fail(err, -EINVAL, "stack %016llx frame %u: object "
					                "%u does not exist", (unsigned long long)s->id,
					                j, f->object);
			} else if (f->kind == ST_FRAME_KERNEL || f->kind == ST_FRAME_NAMED) {
				size_t n = f->name ? strlen(f->name) : 0;
				if (n == 0 || n > ST_MAX_SYMBOL_LEN)
					return base_fail(err, -EINVAL, "stack %016llx frame %u: %s "
					                "name must be 1..%d bytes",
					                (unsigned long long)s->id, j,
					                f->kind == ST_FRAME_KERNEL ? "kernel" : "function",
					                ST_MAX_SYMBOL_LEN);
			} else {
				return base_fail(err, -EINVAL, "stack %016llx frame %u: unknown kind %u",
				                (unsigned long long)s->id, j, f->kind);
			}
			if (!st__frame_has_source(f))
				continue;
			if (f->kind != ST_FRAME_NAMED)
				return base_fail(err, -EINVAL, "stack %016llx frame %u: only named "
				                "frames carry a language, file or line",
				                (unsigned long long)s->id, j);
			if (f->lang && f->lang[0] && !lang_ok(f->lang))
				return base_fail(err, -EINVAL, "stack %016llx frame %u: language tag "
				                "must be 1..%d bytes of [a-z0-9_.+-]",
				                (unsigned long long)s->id, j, ST_MAX_LANG_LEN);
			if (f->file && strlen(f->file) > ST_MAX_FILE_LEN)
				return base_fail(err, -EINVAL, "stack %016llx frame %u: file name is "
				                "over %d bytes", (unsigned long long)s->id, j,
				                ST_MAX_FILE_LEN);
			if (f->line > ST_MAX_LINE)
				return base_fail(err, -EINVAL, "stack %016llx frame %u: line %u is over "
				                "2^31-1", (unsigned long long)s->id, j, f->line);
		}
		uint64_t want = st_stack_hash(b->objects, b->nobjects, s->frames, s->nframes);
		if (want != s->id)
			return base_fail(err, -EINVAL, "stack %016llx: ID does not match its "
			                "frames (their hash is %016llx)",
			                (unsigned long long)s->id, (unsigned long long)want);
	}
	for (uint32_t i = 0; i < b->nsamples; i++) {
		const st_sample *s = &b->samples[i];
		if (s->series >= b->nseries)
			return base_fail(err, -EINVAL, "sample %u: series %u does not exist",
			                i, s->series);
		if (s->ts_ns < 0 || s->ts_ns >= ST_MAX_TS_NS)
			return base_fail(err, -EINVAL, "sample %u: timestamp %lld ns is %s", i,
			                (long long)s->ts_ns, s->ts_ns < 0 ? "negative" :
			                "after the year 2116");
		if (s->value > ST_MAX_VALUE || s->value < -ST_MAX_VALUE)
			return base_fail(err, -EINVAL, "sample %u: |value| is over 2^48", i);
	}
	return 0;
}

int st__batch_encode(const st_batch *b, const uint64_t *series_ids, base_buf *o)
{
	int rc = st__enc_varint(o, b->nseries);
	for (uint32_t i = 0; !rc && i < b->nseries; i++) {
		const st_series_def *s = &b->series[i];
		uint8_t idx[ST_MAX_LABELS];
		label_order(s->labels, s->nlabels, idx);
		rc = st__enc_u64(o, series_ids[i]);
		rc = rc ? rc : st__enc_str(o, s->type, strlen(s->type));
		rc = rc ? rc : st__enc_varint(o, s->nlabels);
		for (uint32_t j = 0; !rc && j < s->nlabels; j++) {
			const st_label *l = &s->labels[idx[j]];
			rc = st__enc_str(o, l->name, strlen(l->name));
			rc = rc ? rc : st__enc_str(o, l->value, strlen(l->value));
		}
	}
	rc = rc ? rc : st__enc_varint(o, b->nobjects);
	for (uint32_t i = 0; !rc && i < b->nobjects; i++) {
		const st_object *ob = &b->objects[i];
		rc = st__enc_str(o, (const char *)ob->build_id, ob->build_id_len);
		rc = rc ? rc : st__enc_str(o, ob->name ? ob->name : "",
		                           ob->name ? strlen(ob->name) : 0);
	}
	rc = rc ? rc : st__enc_varint(o, b->nstacks);
	for (uint32_t i = 0; !rc && i < b->nstacks; i++) {
		const st_stack_def *s = &b->stacks[i];
		rc = st__enc_u64(o, s->id);
		rc = rc ? rc : st__enc_varint(o, s->nframes);
		for (uint32_t j = 0; !rc && j < s->nframes; j++) {
			const st_frame *f = &s->frames[j];
			bool source = f->kind == ST_FRAME_NAMED && st__frame_has_source(f);
			uint8_t k = source ? ST__KIND_NAMED_SOURCE : (uint8_t)f->kind;
			rc = base_buf_put(o, &k, 1);
			if (source) {
				const char *l = f->lang ? f->lang : "", *fl = f->file ? f->file : "";
				rc = rc ? rc : st__enc_str(o, f->name, strlen(f->name));
				rc = rc ? rc : st__enc_str(o, l, strlen(l));
				rc = rc ? rc : st__enc_str(o, fl, strlen(fl));
				rc = rc ? rc : st__enc_varint(o, f->line);
			} else if (f->kind == ST_FRAME_KERNEL || f->kind == ST_FRAME_NAMED) {
				rc = rc ? rc : st__enc_str(o, f->name, strlen(f->name));
			} else {
				rc = rc ? rc : st__enc_varint(o, f->object);
				rc = rc ? rc : st__enc_varint(o, f->offset);
			}
		}
	}
	rc = rc ? rc : st__enc_varint(o, b->nsamples);
	rc = rc ? rc : base_buf_reserve(o, (size_t)b->nsamples * 36);
	if (rc)
		return rc;
	int64_t prev = 0;
	for (uint32_t i = 0; i < b->nsamples; i++) {
		const st_sample *s = &b->samples[i];
		uint8_t *p = (uint8_t *)o->data + o->len;
		p += st__put_varint(p, s->series);
		p += st__put_varint(p, st__zigzag((int64_t)((uint64_t)s->ts_ns - (uint64_t)prev)));
		st__put_u64(p, s->stack_id);
		p += 8;
		p += st__put_varint(p, st__zigzag(s->value));
		o->len = (size_t)(p - (uint8_t *)o->data);
		prev = s->ts_ns;
	}
	return 0;
}

/* A cursor over a payload; every read is bounds-checked. */
typedef struct cur {
	const uint8_t *p, *end;
	char *arena;       /* NUL-terminated copies of strings */
	size_t arena_len;
} cur;

static int cur_varint(cur *c, uint64_t *v) { return st__get_varint(&c->p, c->end, v); }

static int cur_u64(cur *c, uint64_t *v)
{
	if (c->end - c->p < 8)
		return -EBADMSG;
	*v = st__get_u64(c->p);
	c->p += 8;
	return 0;
}

/* Reads a counted string of at most max bytes into the arena. Each string
 * takes n + 1 arena bytes and at least n + 1 payload bytes, so an arena of
 * the payload's size always suffices. */
static int cur_bytes(cur *c, size_t max, bool text, const char **s, size_t *len)
{
	uint64_t n;
	if (cur_varint(c, &n) || n > max || (uint64_t)(c->end - c->p) < n)
		return -EBADMSG;
	/* an embedded NUL would make two payloads decode alike; build IDs are
	 * binary and carry their length */
	if (text && memchr(c->p, 0, n))
		return -EBADMSG;
	char *d = c->arena + c->arena_len;
	memcpy(d, c->p, n);
	d[n] = 0;
	c->arena_len += n + 1;
	c->p += n;
	*s = d;
	if (len)
		*len = n;
	return 0;
}

static int cur_str(cur *c, size_t max, const char **s, size_t *len)
{
	return cur_bytes(c, max, true, s, len);
}

/* A count of items that each take at least min_bytes cannot exceed what is
 * left, which bounds every allocation by the payload size. */
static int cur_count(cur *c, size_t min_bytes, uint32_t limit, uint32_t *n)
{
	uint64_t v;
	if (cur_varint(c, &v) || v > limit || v > (uint64_t)(c->end - c->p) / min_bytes)
		return -EBADMSG;
	*n = (uint32_t)v;
	return 0;
}

void st__dbatch_free(st__dbatch *d)
{
	if (!d)
		return;
	free((void *)d->b.series);
	free((void *)d->b.objects);
	free((void *)d->b.stacks);
	free((void *)d->b.samples);
	free(d->series_ids);
	free(d->arena);
	free(d->labels);
	free(d->frames);
	memset(d, 0, sizeof(*d));
}

int st__batch_decode(const uint8_t *p, size_t len, st__dbatch *d, base_err *err)
{
	int rc = -EBADMSG;
	cur c = {.p = p, .end = p + len};
	st_series_def *series = NULL;
	st_label *labels = NULL;
	st_object *objects = NULL;
	st_stack_def *stacks = NULL;
	st_frame *frames = NULL;
	st_sample *samples = NULL;
	uint64_t *ids = NULL, *want = NULL;
	memset(d, 0, sizeof(*d));
	/* one arena for strings, labels and frames, each bounded by len */
	size_t arena_sz = len + 1;
	c.arena = malloc(arena_sz);
	labels = malloc((len / 2 + 1) * sizeof(*labels));
	frames = malloc((len / 2 + 1) * sizeof(*frames));
	if (!c.arena || !labels || !frames) {
		rc = -ENOMEM;
		goto out;
	}
	uint32_t n;
	if (cur_count(&c, 10, ST_MAX_BATCH_ITEMS, &n))
		goto bad;
	series = calloc(n + 1, sizeof(*series));
	ids = calloc(n + 1, sizeof(*ids));
	want = calloc(n + 1, sizeof(*want));
	if (!series || !ids || !want) {
		rc = -ENOMEM;
		goto out;
	}
	size_t nl_total = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t nl;
		if (cur_u64(&c, &ids[i]) || cur_str(&c, ST_MAX_TYPE_LEN, &series[i].type, NULL) ||
		    cur_count(&c, 2, ST_MAX_LABELS, &nl))
			goto bad;
		series[i].labels = labels + nl_total;
		series[i].nlabels = nl;
		for (uint32_t j = 0; j < nl; j++, nl_total++)
			if (cur_str(&c, ST_MAX_LABEL_NAME_LEN, &labels[nl_total].name, NULL) ||
			    cur_str(&c, ST_MAX_LABEL_VALUE_LEN, &labels[nl_total].value, NULL))
				goto bad;
	}
	d->b.series = series;
	d->b.nseries = n;
	if (cur_count(&c, 2, ST_MAX_BATCH_ITEMS, &n))
		goto bad;
	objects = calloc(n + 1, sizeof(*objects));
	if (!objects) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		size_t bl;
		const char *bid;
		if (cur_bytes(&c, ST_MAX_BUILD_ID_LEN, false, &bid, &bl) ||
		    cur_str(&c, ST_MAX_OBJECT_NAME_LEN, &objects[i].name, NULL))
			goto bad;
		objects[i].build_id = (const uint8_t *)bid;
		objects[i].build_id_len = (uint32_t)bl;
	}
	d->b.objects = objects;
	d->b.nobjects = n;
	if (cur_count(&c, 10, ST_MAX_BATCH_ITEMS, &n))
		goto bad;
	stacks = calloc(n + 1, sizeof(*stacks));
	if (!stacks) {
		rc = -ENOMEM;
		goto out;
	}
	size_t nf_total = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t nf;
		if (cur_u64(&c, &stacks[i].id) || cur_count(&c, 2, ST_MAX_FRAMES, &nf))
			goto bad;
		stacks[i].frames = frames + nf_total;
		stacks[i].nframes = nf;
		for (uint32_t j = 0; j < nf; j++, nf_total++) {
			st_frame *f = &frames[nf_total];
			uint64_t v;
			if (c.p >= c.end)
				goto bad;
			f->kind = *c.p++;
			f->file = f->lang = NULL;
			f->line = 0;
			if (f->kind == ST__KIND_NAMED_SOURCE) {
				f->kind = ST_FRAME_NAMED;
				if (cur_str(&c, ST_MAX_SYMBOL_LEN, &f->name, NULL) ||
				    cur_str(&c, ST_MAX_LANG_LEN, &f->lang, NULL) ||
				    cur_str(&c, ST_MAX_FILE_LEN, &f->file, NULL) ||
				    cur_varint(&c, &v) || v > ST_MAX_LINE)
					goto bad;
				f->line = (uint32_t)v;
			} else if (f->kind == ST_FRAME_KERNEL || f->kind == ST_FRAME_NAMED) {
				if (cur_str(&c, ST_MAX_SYMBOL_LEN, &f->name, NULL))
					goto bad;
			} else {
				if (cur_varint(&c, &v) || v > UINT32_MAX)
					goto bad;
				f->object = (uint32_t)v;
				if (cur_varint(&c, &f->offset))
					goto bad;
			}
		}
	}
	d->b.stacks = stacks;
	d->b.nstacks = n;
	if (cur_count(&c, 11, ST_MAX_BATCH_SAMPLES, &n))
		goto bad;
	samples = calloc(n + 1, sizeof(*samples));
	if (!samples) {
		rc = -ENOMEM;
		goto out;
	}
	int64_t prev = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t si, dt, v;
		if (cur_varint(&c, &si) || si > UINT32_MAX || cur_varint(&c, &dt) ||
		    cur_u64(&c, &samples[i].stack_id) || cur_varint(&c, &v))
			goto bad;
		samples[i].series = (uint32_t)si;
		samples[i].ts_ns = (int64_t)((uint64_t)prev + (uint64_t)st__unzigzag(dt));
		samples[i].value = st__unzigzag(v);
		prev = samples[i].ts_ns;
	}
	d->b.samples = samples;
	d->b.nsamples = n;
	if (c.p != c.end) {
		rc = base_fail(err, -EBADMSG, "batch record has %zu trailing bytes",
		              (size_t)(c.end - c.p));
		goto out;
	}
	rc = st__batch_validate(&d->b, want, err);
	if (rc) {
		rc = -EBADMSG;
		goto out;
	}
	for (uint32_t i = 0; i < d->b.nseries; i++)
		if (want[i] != ids[i]) {
			rc = base_fail(err, -EBADMSG, "series %u: stored ID does not match its labels", i);
			goto out;
		}
	d->series_ids = ids;
	d->arena = c.arena;
	d->labels = labels;
	d->frames = frames;
	free(want);
	return 0;
bad:
	rc = base_fail(err, -EBADMSG, "malformed batch record at byte %zu",
	              (size_t)(c.p - p));
out:
	memset(d, 0, sizeof(*d));
	free(series);
	free(objects);
	free(stacks);
	free(samples);
	free(ids);
	free(want);
	free(labels);
	free(frames);
	free(c.arena);
	return rc;
}

/* Rows dated more than max_future_ns past this server's clock are refused:
 * one row in the year 2100 kept its partition in the embedded store's head
 * forever, pinned every WAL segment after it and made a block retention
 * never deletes (in ClickHouse, a day partition retention never drops). */
int st__batch_check_future(const st_batch *b, int64_t max_future_ns, base_err *err)
{
	if (!max_future_ns)
		return 0;
	int64_t now = base_realtime_ns(), limit = now + max_future_ns;
	for (uint32_t i = 0; i < b->nsamples; i++)
		if (b->samples[i].ts_ns > limit)
			return base_fail(err, -EINVAL, "sample %u is dated %" PRId64 " ns, %" PRId64
			                " s ahead of this server's clock (the limit is %" PRId64 " s): "
			                "check the sender's clock", i, b->samples[i].ts_ns,
			                (b->samples[i].ts_ns - now) / 1000000000,
			                max_future_ns / 1000000000);
	return 0;
}
