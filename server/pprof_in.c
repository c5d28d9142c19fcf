/* pprof_in.c - decodes a pprof profile.proto into a storage batch. Names
 * the profile already carries are kept as named frames; frames known only
 * by address keep (build ID, file offset) through their mapping, for the
 * symbolizer. The profile is hostile input: every index is checked, and the
 * fuzzer (tests/fuzz/fuzz_pprof.c) drives this file directly. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include <stdbool.h>
#include <stdint.h>

#include "server/pprof_in.h"
#include "wire/profile.pb-c.h"

#define MAX_PPROF_RAW SRV_PPROF_MAX_RAW
#define MAX_SAMPLE_TYPES SRV_PPROF_MAX_SAMPLE_TYPES

typedef Perftools__Profiles__Profile profile;

/* ---- what unpacking would cost, before it is done ----
 * protobuf-c allocates every message, repeated element, string and unknown
 * field of the input on its own: an empty Sample is two bytes on the wire
 * and about a hundred on the heap, so a small gzip of empty samples
 * unpacked into gigabytes. So the input is walked first, without
 * allocating, and its heap cost estimated from the generated structs'
 * sizes; past SRV_PPROF_MAX_UNPACKED it is refused before anything is
 * unpacked. Only Sample and Location have repeated fields below the top
 * level; the walk knows the schema (wire/profile.proto) two levels deep. */

enum { K_PROFILE, K_VALUETYPE, K_SAMPLE, K_LABEL, K_MAPPING, K_LOCATION, K_LINE, K_FUNCTION };
enum { F_SCALAR, F_REP_SCALAR, F_MSG, F_REP_MSG, F_REP_STRING };

/* Heap bytes one allocation costs beyond its size (glibc's header and
 * rounding), plus the pointer to it in its parent's array. */
#define PB_ALLOC_COST 32

static size_t kind_size(int kind)
{
	switch (kind) {
	case K_PROFILE: return sizeof(Perftools__Profiles__Profile);
	case K_VALUETYPE: return sizeof(Perftools__Profiles__ValueType);
	case K_SAMPLE: return sizeof(Perftools__Profiles__Sample);
	case K_LABEL: return sizeof(Perftools__Profiles__Label);
	case K_MAPPING: return sizeof(Perftools__Profiles__Mapping);
	case K_LOCATION: return sizeof(Perftools__Profiles__Location);
	case K_LINE: return sizeof(Perftools__Profiles__Line);
	default: return sizeof(Perftools__Profiles__Function);
	}
}

/* What field `f` of a message of `kind` is; -1 when the schema lacks it
 * (protobuf-c keeps such a field as an unknown field, a copy on the heap). */
static int field_kind(int kind, uint32_t f, int *child)
{
	*child = -1;
	switch (kind) {
	case K_PROFILE:
		switch (f) {
		case 1: *child = K_VALUETYPE; return F_REP_MSG;
		case 2: *child = K_SAMPLE; return F_REP_MSG;
		case 3: *child = K_MAPPING; return F_REP_MSG;
		case 4: *child = K_LOCATION; return F_REP_MSG;
		case 5: *child = K_FUNCTION; return F_REP_MSG;
		case 6: return F_REP_STRING;
		case 11: *child = K_VALUETYPE; return F_MSG;
		case 13: return F_REP_SCALAR;
		default: return f >= 7 && f <= 14 ? F_SCALAR : -1;
		}
	case K_SAMPLE:
		if (f == 3) {
			*child = K_LABEL;
			return F_REP_MSG;
		}
		return f == 1 || f == 2 ? F_REP_SCALAR : -1;
	case K_LOCATION:
		if (f == 4) {
			*child = K_LINE;
			return F_REP_MSG;
		}
		return f >= 1 && f <= 5 ? F_SCALAR : -1;
	case K_VALUETYPE: case K_LINE: return f >= 1 && f <= 2 ? F_SCALAR : -1;
	case K_LABEL: return f >= 1 && f <= 4 ? F_SCALAR : -1;
	case K_MAPPING: return f >= 1 && f <= 10 ? F_SCALAR : -1;
	default: return f >= 1 && f <= 5 ? F_SCALAR : -1;
	}
}

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t x = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -EBADMSG;
}

/* One field of a message of `kind` at *p, which must end by `end`:
 * advances *p past it and adds to *cost what unpacking it would allocate.
 * -EBADMSG for input that is not protobuf (protobuf-c would refuse it
 * too), -E2BIG as soon as *cost passes limit. */
static int pb_cost(const uint8_t *p, const uint8_t *end, int kind, uint64_t *cost,
                   uint64_t limit);

static int pb_field(const uint8_t **pp, const uint8_t *end, int kind, uint64_t *cost,
                    uint64_t limit)
{
	const uint8_t *p = *pp;
	uint64_t tag, v;
	if (pb_varint(&p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
		return -EBADMSG;
	int child, fk = field_kind(kind, (uint32_t)(tag >> 3), &child);
	const uint8_t *val = p;
	switch (tag & 7) {
	case 0:
		if (pb_varint(&p, end, &v))
			return -EBADMSG;
		break;
	case 1:
		if (end - p < 8)
			return -EBADMSG;
		p += 8;
		break;
	case 5:
		if (end - p < 4)
			return -EBADMSG;
		p += 4;
		break;
	case 2:
		if (pb_varint(&p, end, &v) || v > (uint64_t)(end - p))
			return -EBADMSG;
		val = p;
		p += v;
		break;
	default:
		return -EBADMSG;   /* groups: not in this schema */
	}
	size_t len = (size_t)(p - val);
	if (fk < 0) {
		*cost += sizeof(ProtobufCMessageUnknownField) + len + PB_ALLOC_COST;
	} else if (fk == F_REP_SCALAR) {
		/* packed: one element per varint, i.e. per byte without the
		 * continuation bit; either way 8 bytes in the array */
		uint64_t n = 1;
		if ((tag & 7) == 2) {
			n = 0;
			for (const uint8_t *q = val; q < p; q++)
				n += !(*q & 0x80);
		}
		*cost += 8 * n;
	} else if (fk == F_REP_STRING) {
		*cost += len + 1 + PB_ALLOC_COST;
	} else if ((fk == F_MSG || fk == F_REP_MSG) && (tag & 7) == 2) {
		int rc = pb_cost(val, p, child, cost, limit);
		if (rc)
			return rc;
	}
	*pp = p;
	return *cost > limit ? -E2BIG : 0;
}

/* Adds to *cost what unpacking the message of `kind` in [p, end) would
 * allocate (pb_field's errors). */
static int pb_cost(const uint8_t *p, const uint8_t *end, int kind, uint64_t *cost,
                   uint64_t limit)
{
	*cost += kind_size(kind) + PB_ALLOC_COST;
	while (p < end) {
		int rc = pb_field(&p, end, kind, cost, limit);
		if (rc)
			return rc;
	}
	return *cost > limit ? -E2BIG : 0;
}

/* Where the field at p ends: 1 with *fend set when [p, avail) holds all of
 * it, 0 when more bytes are needed to tell, -EBADMSG for a bad header. */
static int pb_extent(const uint8_t *p, const uint8_t *avail, const uint8_t **fend)
{
	uint64_t tag, v;
	const uint8_t *q = p;
	if (pb_varint(&q, avail, &tag))
		return avail - p >= 10 ? -EBADMSG : 0;
	switch (tag & 7) {
	case 0:
		if (pb_varint(&q, avail, &v))
			return avail - q >= 10 ? -EBADMSG : 0;
		break;
	case 1:
		if (avail - q < 8)
			return 0;
		q += 8;
		break;
	case 5:
		if (avail - q < 4)
			return 0;
		q += 4;
		break;
	case 2:
		if (pb_varint(&q, avail, &v))
			return avail - q >= 10 ? -EBADMSG : 0;
		if (v > (uint64_t)(avail - q))
			return 0;
		q += v;
		break;
	default:
		return -EBADMSG;
	}
	*fend = q;
	return 1;
}

/* The estimate, made while the body is inflated: the top-level fields in
 * data[pos..n) that are complete are counted, the rest waits for more
 * bytes. A bomb is refused after a few megabytes of it, not after the
 * whole inflate. */
typedef struct pb_scan {
	size_t pos;        /* the first byte not yet counted */
	uint64_t cost;
	bool started;      /* the Profile itself is counted */
} pb_scan;

static int pb_scan_more(pb_scan *ps, const uint8_t *data, size_t n, bool last)
{
	if (!ps->started) {
		ps->cost += kind_size(K_PROFILE) + PB_ALLOC_COST;
		ps->started = true;
	}
	while (ps->pos < n) {
		const uint8_t *p = data + ps->pos, *fend;
		int rc = pb_extent(p, data + n, &fend);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return last ? -EBADMSG : 0;   /* cut short */
		if ((rc = pb_field(&p, fend, K_PROFILE, &ps->cost, SRV_PPROF_MAX_UNPACKED)))
			return rc;
		ps->pos = (size_t)(fend - data);
	}
	return 0;
}

/* Inflates a gzip body into *out, at most MAX_PPROF_RAW bytes, counting
 * what unpacking it would cost as it goes (ps): -E2BIG as soon as either
 * is over its limit, -EBADMSG for bad gzip or bad protobuf. */
static int gunzip(const uint8_t *in, size_t len, uint8_t **out, size_t *olen, pb_scan *ps)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return -ENOMEM;
	size_t cap = len * 4 + 4096, n = 0;
	uint8_t *buf = NULL;
	int rc = 0, zr;
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)len;
	do {
		if (n == cap || !buf) {
			if (buf)
				cap *= 2;
			if (cap > MAX_PPROF_RAW)
				cap = MAX_PPROF_RAW;
			if (buf && n == cap) {
				rc = -E2BIG;
				break;
			}
			uint8_t *t = realloc(buf, cap);
			if (!t) {
				rc = -ENOMEM;
				break;
			}
			buf = t;
		}
		z.next_out = buf + n;
		z.avail_out = (uInt)(cap - n);
		zr = inflate(&z, Z_NO_FLUSH);
		n = cap - z.avail_out;
		if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
			rc = -EBADMSG;
			break;
		}
		if (zr == Z_BUF_ERROR && z.avail_in == 0) {
			rc = -EBADMSG;  /* cut short */
			break;
		}
		if ((rc = pb_scan_more(ps, buf, n, zr == Z_STREAM_END)))
			break;
	} while (zr != Z_STREAM_END);
	inflateEnd(&z);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*olen = n;
	return 0;
}

static const char *str_at(const profile *p, int64_t i)
{
	return i >= 0 && (size_t)i < p->n_string_table ? p->string_table[i] : NULL;
}

/* Words of a profile type: [a-zA-Z0-9_]+; pprof strings may hold more. */
static int word_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 60)
		return 0;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_'))
			return 0;
	return 1;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
	       c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* pprof carries a build ID as a string, usually hex: decode it when it is,
 * else take its bytes. */
static uint32_t build_id_bytes(const char *s, uint8_t *out)
{
	size_t n = strlen(s);
	bool hex = n > 0 && n % 2 == 0 && n / 2 <= ST_MAX_BUILD_ID_LEN;
	for (size_t i = 0; hex && i < n; i++)
		hex = hexval(s[i]) >= 0;
	if (hex) {
		for (size_t i = 0; i < n / 2; i++)
			out[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
		return (uint32_t)(n / 2);
	}
	if (n > ST_MAX_BUILD_ID_LEN)
		n = ST_MAX_BUILD_ID_LEN;
	memcpy(out, s, n);
	return (uint32_t)n;
}

typedef struct conv {
	const profile *p;
	st_object *objects;         /* one per mapping with a build ID */
	uint8_t (*bids)[ST_MAX_BUILD_ID_LEN];
	uint32_t *obj_of_mapping;   /* mapping index -> object, UINT32_MAX none */
	st_frame *frames;
	size_t nframes, frames_cap;
	char **names;               /* "0x..." names we made, freed at the end */
	size_t nnames, names_cap;
} conv;

static int frame_push(conv *c, st_frame f)
{
	if (c->nframes == c->frames_cap) {
		size_t cap = c->frames_cap ? c->frames_cap * 2 : 1024;
		st_frame *t = realloc(c->frames, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		c->frames = t;
		c->frames_cap = cap;
	}
	c->frames[c->nframes++] = f;
	return 0;
}

/* Appends the frames of one location, innermost first. */
static int location_frames(conv *c, const Perftools__Profiles__Location *l,
                           const uint64_t *map_index_by_id, size_t nmap, char *err, size_t elen)
{
	const profile *p = c->p;
	int rc = 0;
	bool named = false;
	for (size_t i = 0; i < l->n_line && !rc; i++) {
		uint64_t fid = l->line[i]->function_id;
		const Perftools__Profiles__Function *fn = NULL;
		/* functions are usually numbered 1..n in order: try that first */
		if (fid >= 1 && fid <= p->n_function && p->function[fid - 1]->id == fid)
			fn = p->function[fid - 1];
		for (size_t k = 0; !fn && k < p->n_function; k++)
			if (p->function[k]->id == fid)
				fn = p->function[k];
		const char *name = fn ? str_at(p, fn->name) : NULL;
		if (!name || !*name)
			continue;
		if (strlen(name) > ST_MAX_SYMBOL_LEN) {
			snprintf(err, elen, "function name of %zu bytes, the limit is %d",
			         strlen(name), ST_MAX_SYMBOL_LEN);
			return -EINVAL;
		}
		rc = frame_push(c, (st_frame){ST_FRAME_NAMED, 0, 0, name});
		named = true;
	}
	if (rc || named)
		return rc;
	/* no names: the mapping's object and the file offset, for the
	 * symbolizer, or the bare address when there is no usable mapping */
	if (l->mapping_id && l->mapping_id <= nmap && map_index_by_id[l->mapping_id - 1] != UINT64_MAX) {
		size_t mi = map_index_by_id[l->mapping_id - 1];
		const Perftools__Profiles__Mapping *m = p->mapping[mi];
		uint32_t o = c->obj_of_mapping[mi];
		if (o != UINT32_MAX && l->address >= m->memory_start)
			return frame_push(c, (st_frame){ST_FRAME_USER, o,
			                  l->address - m->memory_start + m->file_offset, NULL});
	}
	char *nm = malloc(24);
	if (!nm)
		return -ENOMEM;
	snprintf(nm, 24, "0x%" PRIx64, l->address);
	if (c->nnames == c->names_cap) {
		size_t cap = c->names_cap ? c->names_cap * 2 : 64;
		char **t = realloc(c->names, cap * sizeof(*t));
		if (!t) {
			free(nm);
			return -ENOMEM;
		}
		c->names = t;
		c->names_cap = cap;
	}
	c->names[c->nnames++] = nm;
	return frame_push(c, (st_frame){ST_FRAME_NAMED, 0, 0, nm});
}

/* Drops stacks whose ID came earlier in the array, keeping the order. */
static int stacks_dedup(st_stack_def *stacks, size_t *n)
{
	size_t cap = 16;
	while (cap < 2 * *n)
		cap *= 2;
	uint32_t *seen = calloc(cap, sizeof(*seen));   /* kept index + 1, 0 free */
	if (!seen)
		return -ENOMEM;
	size_t w = 0;
	for (size_t i = 0; i < *n; i++) {
		uint64_t id = stacks[i].id;
		size_t j = (size_t)(id ^ id >> 29) & (cap - 1);
		while (seen[j] && stacks[seen[j] - 1].id != id)
			j = (j + 1) & (cap - 1);
		if (seen[j])
			continue;
		stacks[w] = stacks[i];
		seen[j] = (uint32_t)++w;
	}
	free(seen);
	*n = w;
	return 0;
}

#define FAIL(code, ...) do { \
		e->status = (code); \
		snprintf(e->msg, sizeof(e->msg), __VA_ARGS__); \
		rc = -EINVAL; \
		goto out; \
	} while (0)

void srv_pprof_free(srv_pprof *o)
{
	if (!o)
		return;
	if (o->profile)
		perftools__profiles__profile__free_unpacked(o->profile, NULL);
	free(o->raw);
	free(o->objects);
	free(o->bids);
	free(o->frames);
	free(o->stacks);
	free(o->samples);
	for (size_t i = 0; i < o->nnames; i++)
		free(o->names[i]);
	free(o->names);
	memset(o, 0, sizeof(*o));
}

int srv_pprof_decode(const uint8_t *body, size_t len, const char *name,
                     const st_label *labels, size_t nlabels, int64_t now_ns,
                     srv_pprof *out, srv_pprof_err *e)
{
	profile *p = NULL;
	conv c = {0};
	uint64_t *map_idx = NULL, *loc_idx_by_id = NULL;
	uint32_t *loc_first = NULL, *loc_count = NULL;
	st_stack_def *stacks = NULL;
	st_sample *samples = NULL;
	size_t nstacks = 0, nsamples = 0;
	char err[300] = "";
	int rc = 0;
	memset(out, 0, sizeof(*out));
	e->status = 400;
	e->msg[0] = 0;
	if (len == 0)
		FAIL(400, "empty body: send a pprof profile.proto, gzip'd or not");
	/* what unpacking will cost is counted before it is done (above), for
	 * a gzip'd body while it is inflated */
	pb_scan ps = {0};
	bool gz = len >= 2 && body[0] == 0x1f && body[1] == 0x8b;
	if (gz) {
		rc = gunzip(body, len, &out->raw, &len, &ps);
		if (rc == -E2BIG && ps.cost <= SRV_PPROF_MAX_UNPACKED)
			FAIL(413, "the profile inflates past %u MiB", MAX_PPROF_RAW >> 20);
		if (rc == -EBADMSG && !ps.started)
			FAIL(400, "the body is not valid gzip");
		body = out->raw;
	} else {
		rc = pb_scan_more(&ps, body, len, true);
	}
	if (rc == -E2BIG)
		FAIL(413, "the profile would take more than %u MiB to unpack (%s); send it in parts",
		     SRV_PPROF_MAX_UNPACKED >> 20, "about half a million samples");
	if (rc == -EBADMSG)
		FAIL(400, "the body is not %s", gz ? "valid gzip of a pprof profile.proto" :
		     "a pprof profile.proto");
	if (rc)
		goto out;
	p = perftools__profiles__profile__unpack(NULL, len, body);
	if (!p)
		FAIL(400, "the body is not a pprof profile.proto");
	out->profile = p;
	if (!word_ok(name))
		FAIL(400, "__name__ must be a word of [a-zA-Z0-9_]");
	if (p->n_sample_type == 0 || p->n_sample_type > MAX_SAMPLE_TYPES)
		FAIL(400, "the profile has %zu sample types (1..%d)", p->n_sample_type,
		     MAX_SAMPLE_TYPES);
	const char *pt_type = p->period_type ? str_at(p, p->period_type->type) : NULL;
	const char *pt_unit = p->period_type ? str_at(p, p->period_type->unit) : NULL;
	for (size_t i = 0; i < p->n_sample_type; i++) {
		const char *t = str_at(p, p->sample_type[i]->type), *u = str_at(p, p->sample_type[i]->unit);
		const char *ptt = pt_type && *pt_type ? pt_type : t, *ptu = pt_unit && *pt_unit ? pt_unit : u;
		if (!word_ok(t) || !word_ok(u) || !word_ok(ptt) || !word_ok(ptu))
			FAIL(400, "sample type %zu is not a pair of words", i);
		/* what a periodic push measures is the interval's own: a delta,
		 * except the in-use heap, which is a level */
		snprintf(out->types[i], sizeof(out->types[i]), "%s:%s:%s:%s:%s%s", name, t, u,
		         ptt, ptu, strncmp(t, "inuse", 5) ? ":delta" : "");
		out->series[i] = (st_series_def){out->types[i], labels, (uint32_t)nlabels};
	}
	/* mappings -> objects */
	size_t nmap = p->n_mapping;
	map_idx = malloc((nmap + 1) * sizeof(*map_idx));
	c.objects = calloc(nmap + 1, sizeof(*c.objects));
	c.bids = calloc(nmap + 1, sizeof(*c.bids));
	c.obj_of_mapping = malloc((nmap + 1) * sizeof(*c.obj_of_mapping));
	if (!map_idx || !c.objects || !c.bids || !c.obj_of_mapping) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nmap; i++)
		map_idx[i] = UINT64_MAX;
	uint32_t nobj = 0;
	for (size_t i = 0; i < nmap; i++) {
		const Perftools__Profiles__Mapping *m = p->mapping[i];
		c.obj_of_mapping[i] = UINT32_MAX;
		if (m->id >= 1 && m->id <= nmap)
			map_idx[m->id - 1] = i;
		const char *bid = str_at(p, m->build_id), *fname = str_at(p, m->filename);
		if (!bid || !*bid)
			continue;  /* without a build ID there is nothing to symbolize by */
		uint32_t bl = build_id_bytes(bid, c.bids[nobj]);
		c.objects[nobj] = (st_object){c.bids[nobj], bl, fname ? fname : ""};
		c.obj_of_mapping[i] = nobj++;
	}
	/* locations -> frames, once each */
	c.p = p;
	size_t nloc = p->n_location;
	loc_idx_by_id = malloc((nloc + 1) * sizeof(*loc_idx_by_id));
	loc_first = malloc((nloc + 1) * sizeof(*loc_first));
	loc_count = malloc((nloc + 1) * sizeof(*loc_count));
	if (!loc_idx_by_id || !loc_first || !loc_count) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nloc; i++)
		loc_idx_by_id[i] = UINT64_MAX;
	for (size_t i = 0; i < nloc; i++) {
		const Perftools__Profiles__Location *l = p->location[i];
		if (l->id >= 1 && l->id <= nloc)
			loc_idx_by_id[l->id - 1] = i;
		loc_first[i] = (uint32_t)c.nframes;
		rc = location_frames(&c, l, map_idx, nmap, err, sizeof(err));
		if (rc == -EINVAL)
			FAIL(400, "location %zu: %s", i, err);
		if (rc)
			goto out;
		loc_count[i] = (uint32_t)(c.nframes - loc_first[i]);
	}
	/* samples -> stacks and rows; a stack's frames are copied after the
	 * locations' own */
	if (p->n_sample > ST_MAX_BATCH_SAMPLES / p->n_sample_type)
		FAIL(413, "the profile has %zu samples; the limit is %u", p->n_sample,
		     ST_MAX_BATCH_SAMPLES / (uint32_t)p->n_sample_type);
	stacks = calloc(p->n_sample + 1, sizeof(*stacks));
	samples = calloc(p->n_sample * p->n_sample_type + 1, sizeof(*samples));
	if (!stacks || !samples) {
		rc = -ENOMEM;
		goto out;
	}
	int64_t ts = p->time_nanos > 0 && p->duration_nanos >= 0 &&
	             p->time_nanos < ST_MAX_TS_NS - p->duration_nanos ?
	             p->time_nanos + p->duration_nanos : now_ns;
	for (size_t i = 0; i < p->n_sample; i++) {
		const Perftools__Profiles__Sample *s = p->sample[i];
		if (s->n_value != p->n_sample_type)
			FAIL(400, "sample %zu has %zu values for %zu sample types", i, s->n_value,
			     p->n_sample_type);
		size_t first = c.nframes;
		for (size_t k = 0; k < s->n_location_id; k++) {
			uint64_t id = s->location_id[k];
			if (id < 1 || id > nloc || loc_idx_by_id[id - 1] == UINT64_MAX)
				FAIL(400, "sample %zu names location %" PRIu64 ", which the profile lacks",
				     i, id);
			size_t li = loc_idx_by_id[id - 1];
			if (c.nframes - first + loc_count[li] > ST_MAX_FRAMES)
				FAIL(400, "sample %zu has more than %d frames", i, ST_MAX_FRAMES);
			for (uint32_t f = 0; f < loc_count[li]; f++)
				if ((rc = frame_push(&c, c.frames[loc_first[li] + f])))
					goto out;
		}
		size_t nf = c.nframes - first;
		if (nf == 0)
			continue;
		/* frames may move while the array grows: offsets for now */
		stacks[nstacks] = (st_stack_def){0, (const st_frame *)(uintptr_t)first, (uint32_t)nf};
		for (size_t v = 0; v < p->n_sample_type; v++) {
			if (s->value[v] == 0)
				continue;
			samples[nsamples++] = (st_sample){ts, (uint32_t)v, nstacks, s->value[v]};
		}
		nstacks++;
	}
	for (size_t i = 0; i < nstacks; i++) {
		stacks[i].frames = c.frames + (uintptr_t)stacks[i].frames;
		stacks[i].id = st_stack_hash(c.objects, nobj, stacks[i].frames, stacks[i].nframes);
	}
	for (size_t i = 0; i < nsamples; i++)
		samples[i].stack_id = stacks[samples[i].stack_id].id;
	/* pprof has a stack per sample, often the same one: a batch lists
	 * each once, so "stacks" in the answer counts distinct ones */
	if ((rc = stacks_dedup(stacks, &nstacks)))
		goto out;
	out->batch = (st_batch){out->series, (uint32_t)p->n_sample_type, c.objects, nobj,
	                        stacks, (uint32_t)nstacks, samples, (uint32_t)nsamples};
out:
	/* everything the batch points into moves to out, freed together */
	out->objects = c.objects;
	out->bids = c.bids;
	out->frames = c.frames;
	out->names = c.names;
	out->nnames = c.nnames;
	out->stacks = stacks;
	out->samples = samples;
	free(map_idx);
	free(c.obj_of_mapping);
	free(loc_idx_by_id);
	free(loc_first);
	free(loc_count);
	return rc;
}
