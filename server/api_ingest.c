/* api_ingest.c - POST /api/v1/ingest/pprof: a pprof profile.proto (gzip'd
 * or plain) from any producer, stored as series of samples. Names the
 * profile already carries are kept as named frames; frames known only by
 * address keep (build ID, file offset) through their mapping, for the
 * symbolizer. The profile is hostile input: every index is checked. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include <stdbool.h>
#include <stdint.h>

#include "server/api.h"
#include "wire/profile.pb-c.h"

#define MAX_PPROF_BYTES (64u << 20)     /* a request body */
#define MAX_PPROF_RAW (256u << 20)      /* after gunzip */
#define MAX_SAMPLE_TYPES 16
#define MAX_PARAMS ST_MAX_LABELS

typedef Perftools__Profiles__Profile profile;

/* Inflates a gzip body into *out, at most MAX_PPROF_RAW bytes. */
static int gunzip(const uint8_t *in, size_t len, uint8_t **out, size_t *olen)
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

static int h_ingest_pprof(void *arg, const srv_req *req, srv_resp *resp)
{
	st_db *db = ((srv_api *)arg)->db;
	size_t len;
	const uint8_t *body = srv_req_body(req, &len);
	uint8_t *raw = NULL;
	profile *p = NULL;
	conv c = {0};
	uint64_t *map_idx = NULL, *loc_idx_by_id = NULL;
	uint32_t *loc_first = NULL, *loc_count = NULL;
	st_stack_def *stacks = NULL;
	st_sample *samples = NULL;
	st_series_def series[MAX_SAMPLE_TYPES];
	char types[MAX_SAMPLE_TYPES][320];
	st_label labels[MAX_PARAMS];
	size_t nlabels = 0, nstacks = 0, nsamples = 0;
	char err[300] = "";
	int rc = 0;

	if (len == 0) {
		srv_resp_error(resp, 400, "empty body: send a pprof profile.proto, gzip'd or not");
		return 0;
	}
	if (len >= 2 && body[0] == 0x1f && body[1] == 0x8b) {
		rc = gunzip(body, len, &raw, &len);
		if (rc) {
			srv_resp_error(resp, rc == -E2BIG ? 413 : 400, rc == -E2BIG ?
			               "the profile inflates past %u MiB" :
			               "the body is not valid gzip", MAX_PPROF_RAW >> 20);
			return 0;
		}
		body = raw;
	}
	p = perftools__profiles__profile__unpack(NULL, len, body);
	if (!p) {
		srv_resp_error(resp, 400, "the body is not a pprof profile.proto");
		goto out;
	}
	/* the profile type's name from __name__, the labels from the rest */
	const char *name = srv_req_query(req, "__name__", 0);
	name = name && *name ? name : "process_cpu";
	if (!word_ok(name)) {
		srv_resp_error(resp, 400, "__name__ must be a word of [a-zA-Z0-9_]");
		goto out;
	}
	const char *pk, *pv;
	for (size_t i = 0; (pk = srv_req_query_at(req, i, &pv)); i++) {
		if (!strcmp(pk, "__name__"))
			continue;
		if (nlabels == MAX_PARAMS) {
			srv_resp_error(resp, 400, "more than %d labels", MAX_PARAMS);
			goto out;
		}
		labels[nlabels++] = (st_label){pk, pv};
	}
	if (p->n_sample_type == 0 || p->n_sample_type > MAX_SAMPLE_TYPES) {
		srv_resp_error(resp, 400, "the profile has %zu sample types (1..%d)",
		               p->n_sample_type, MAX_SAMPLE_TYPES);
		goto out;
	}
	const char *pt_type = p->period_type ? str_at(p, p->period_type->type) : NULL;
	const char *pt_unit = p->period_type ? str_at(p, p->period_type->unit) : NULL;
	for (size_t i = 0; i < p->n_sample_type; i++) {
		const char *t = str_at(p, p->sample_type[i]->type), *u = str_at(p, p->sample_type[i]->unit);
		const char *ptt = pt_type && *pt_type ? pt_type : t, *ptu = pt_unit && *pt_unit ? pt_unit : u;
		if (!word_ok(t) || !word_ok(u) || !word_ok(ptt) || !word_ok(ptu)) {
			srv_resp_error(resp, 400, "sample type %zu is not a pair of words", i);
			goto out;
		}
		/* what a periodic push measures is the interval's own: a delta,
		 * except the in-use heap, which is a level */
		snprintf(types[i], sizeof(types[i]), "%s:%s:%s:%s:%s%s", name, t, u, ptt, ptu,
		         strncmp(t, "inuse", 5) ? ":delta" : "");
		series[i] = (st_series_def){types[i], labels, (uint32_t)nlabels};
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
		if ((rc = location_frames(&c, l, map_idx, nmap, err, sizeof(err)))) {
			if (rc == -EINVAL) {
				srv_resp_error(resp, 400, "location %zu: %s", i, err);
				rc = 0;
			}
			goto out;
		}
		loc_count[i] = (uint32_t)(c.nframes - loc_first[i]);
	}
	/* samples -> stacks and rows; frames of a stack are copied out */
	if (p->n_sample > ST_MAX_BATCH_SAMPLES / p->n_sample_type) {
		srv_resp_error(resp, 413, "the profile has %zu samples; the limit is %u",
		               p->n_sample, ST_MAX_BATCH_SAMPLES / (uint32_t)p->n_sample_type);
		goto out;
	}
	stacks = calloc(p->n_sample + 1, sizeof(*stacks));
	samples = calloc(p->n_sample * p->n_sample_type + 1, sizeof(*samples));
	if (!stacks || !samples) {
		rc = -ENOMEM;
		goto out;
	}
	int64_t ts = p->time_nanos > 0 ? p->time_nanos + p->duration_nanos : 0;
	if (ts <= 0) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		ts = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
	}
	for (size_t i = 0; i < p->n_sample; i++) {
		const Perftools__Profiles__Sample *s = p->sample[i];
		if (s->n_value != p->n_sample_type) {
			srv_resp_error(resp, 400, "sample %zu has %zu values for %zu sample types", i,
			               s->n_value, p->n_sample_type);
			goto out;
		}
		size_t first = c.nframes;
		for (size_t k = 0; k < s->n_location_id; k++) {
			uint64_t id = s->location_id[k];
			if (id < 1 || id > nloc || loc_idx_by_id[id - 1] == UINT64_MAX) {
				srv_resp_error(resp, 400, "sample %zu names location %" PRIu64
				               ", which the profile lacks", i, id);
				goto out;
			}
			size_t li = loc_idx_by_id[id - 1];
			for (uint32_t f = 0; f < loc_count[li]; f++)
				if ((rc = frame_push(&c, c.frames[loc_first[li] + f])))
					goto out;
		}
		size_t nf = c.nframes - first;
		if (nf == 0)
			continue;
		if (nf > ST_MAX_FRAMES) {
			srv_resp_error(resp, 400, "sample %zu has %zu frames; the limit is %d", i,
			               nf, ST_MAX_FRAMES);
			goto out;
		}
		/* frames may move while the array grows: store offsets for now */
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
	st_batch b = {series, (uint32_t)p->n_sample_type, c.objects, nobj, stacks,
	              (uint32_t)nstacks, samples, (uint32_t)nsamples};
	st_err serr = {{0}};
	rc = st_append(db, &b, &serr);
	if (rc == -EINVAL) {
		srv_resp_error(resp, 400, "%s", serr.msg);
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_uint(j, "series", p->n_sample_type);
	srv_json_kv_uint(j, "stacks", nstacks);
	srv_json_kv_uint(j, "rows", nsamples);
	srv_json_obj_end(j);
out:
	if (p)
		perftools__profiles__profile__free_unpacked(p, NULL);
	free(raw);
	free(map_idx);
	free(loc_idx_by_id);
	free(loc_first);
	free(loc_count);
	free(stacks);
	free(samples);
	free(c.objects);
	free(c.bids);
	free(c.obj_of_mapping);
	free(c.frames);
	for (size_t i = 0; i < c.nnames; i++)
		free(c.names[i]);
	free(c.names);
	return rc;
}

int srv_api_ingest_routes(srv_http *h, srv_api *api)
{
	const srv_route r = {.method = "POST", .path = "/api/v1/ingest/pprof",
	                     .fn = h_ingest_pprof, .arg = api,
	                     .max_body_bytes = MAX_PPROF_BYTES};
	return srv_http_route(h, &r);
}
