/* api_ingest_native.c - POST /api/v1/ingest: the agent's native batches
 * (wire/wire.h, docs/protocol.md) decoded, turned into one storage batch
 * and stored; plus the per-agent record GET /api/v1/status shows. The
 * decoding rules are wire/'s and the validation of labels and names is
 * storage's: this file only maps one onto the other and errors to HTTP. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "server/alloc.h"
#include "server/api.h"
#include "server/json.h"
#include "server/metrics.h"
#include "wire/wire.h"

/* Agents remembered at most: agent_id comes from the network, so the
 * table is bounded; past it the agent seen longest ago makes room. */
#define MAX_AGENTS 4096

struct srv_agent {
	char *agent_id;
	char *hostname;
	uint64_t last_seq;
	int64_t last_start_ns, last_end_ns;  /* the last batch's interval */
	int64_t last_seen_unix_ns;           /* when it was accepted */
	uint64_t batches, rows, samples;     /* accepted since the server started */
	base_buf counters;                    /* the last batch's counters, as a
	                                      * JSON object */
	char **cnames;                       /* the same for GET /metrics */
	uint64_t *cvalues;
	uint32_t ncounters;
};

static void agent_counters_free(srv_agent *a)
{
	for (uint32_t i = 0; i < a->ncounters; i++)
		free(a->cnames[i]);
	free(a->cnames);
	free(a->cvalues);
	a->cnames = NULL;
	a->cvalues = NULL;
	a->ncounters = 0;
}

int srv_api_init(srv_api *api, st_db *db)
{
	memset(api, 0, sizeof(*api));
	api->db = db;
	pthread_mutex_init(&api->agents_mu, NULL);
	if (!(api->names = q_cache_new(SRV_NAMES_CACHE_BYTES)))
		return -ENOMEM;
	return 0;
}

bool srv_api_unavailable(srv_resp *resp, int rc, const base_err *err)
{
	if (rc != -EAGAIN)
		return false;
	srv_resp_error(resp, 503, "%s", err && err->msg[0] ? err->msg :
	               "the store cannot be reached now; try again");
	return true;
}

void srv_api_free(srv_api *api)
{
	q_cache_free(api->names);
	api->names = NULL;
	if (!api->agents && !api->nagents && !api->db)
		return;
	for (size_t i = 0; i < api->nagents; i++) {
		free(api->agents[i].agent_id);
		free(api->agents[i].hostname);
		base_buf_free(&api->agents[i].counters);
		agent_counters_free(&api->agents[i]);
	}
	free(api->agents);
	pthread_mutex_destroy(&api->agents_mu);
	memset(api, 0, sizeof(*api));
}

/* Records an accepted batch. The table is small and batches come every
 * few seconds per agent, so a linear scan under the lock is fine. */
static void note_agent(srv_api *api, const wire_batch *b, uint64_t samples)
{
	base_buf cj = {0};
	srv_json *j = srv_json_new(&cj);
	srv_json_obj_begin(j);
	for (uint32_t i = 0; i < b->ncounters; i++)
		srv_json_kv_uint(j, b->counters[i].name, b->counters[i].value);
	srv_json_obj_end(j);
	srv_json_free(j);

	pthread_mutex_lock(&api->agents_mu);
	srv_agent *a = NULL;
	for (size_t i = 0; i < api->nagents && !a; i++)
		if (!strcmp(api->agents[i].agent_id, b->agent_id))
			a = &api->agents[i];
	if (!a && api->nagents < MAX_AGENTS) {
		api->agents = srv_xreallocarray(api->agents, api->nagents + 1, sizeof(*a));
		a = &api->agents[api->nagents++];
		memset(a, 0, sizeof(*a));
	} else if (!a) {
		a = &api->agents[0];
		for (size_t i = 1; i < api->nagents; i++)
			if (api->agents[i].last_seen_unix_ns < a->last_seen_unix_ns)
				a = &api->agents[i];
		free(a->agent_id);
		free(a->hostname);
		base_buf_free(&a->counters);
		agent_counters_free(a);
		memset(a, 0, sizeof(*a));
	}
	if (!a->agent_id)
		a->agent_id = srv_xstrdup(b->agent_id);
	free(a->hostname);
	a->hostname = srv_xstrdup(b->hostname);
	a->last_seq = b->seq;
	a->last_start_ns = b->start_ns;
	a->last_end_ns = b->end_ns;
	a->last_seen_unix_ns = base_realtime_ns();
	a->batches++;
	a->rows += b->nrows;
	a->samples += samples;
	base_buf_move(&a->counters, &cj);
	agent_counters_free(a);
	if (b->ncounters) {
		a->cnames = srv_xreallocarray(NULL, b->ncounters, sizeof(*a->cnames));
		a->cvalues = srv_xreallocarray(NULL, b->ncounters, sizeof(*a->cvalues));
		for (uint32_t i = 0; i < b->ncounters; i++) {
			a->cnames[i] = srv_xstrdup(b->counters[i].name);
			a->cvalues[i] = b->counters[i].value;
		}
		a->ncounters = b->ncounters;
	}
	pthread_mutex_unlock(&api->agents_mu);
}

void srv_api_agents_counters(srv_api *api, srv_agent_counter_fn fn, void *arg)
{
	pthread_mutex_lock(&api->agents_mu);
	for (size_t i = 0; i < api->nagents; i++) {
		const srv_agent *a = &api->agents[i];
		for (uint32_t k = 0; k < a->ncounters; k++)
			fn(arg, a->agent_id, a->hostname, a->cnames[k], a->cvalues[k]);
	}
	pthread_mutex_unlock(&api->agents_mu);
}

void srv_api_agents_json(srv_api *api, srv_json *j)
{
	srv_json_key(j, "agents");
	srv_json_arr_begin(j);
	pthread_mutex_lock(&api->agents_mu);
	for (size_t i = 0; i < api->nagents; i++) {
		const srv_agent *a = &api->agents[i];
		srv_json_obj_begin(j);
		srv_json_kv_str(j, "agent_id", a->agent_id);
		srv_json_kv_str(j, "hostname", a->hostname);
		srv_json_kv_uint(j, "last_seq", a->last_seq);
		srv_json_kv_int(j, "last_start_ns", a->last_start_ns);
		srv_json_kv_int(j, "last_end_ns", a->last_end_ns);
		srv_json_kv_int(j, "last_seen_unix_s", a->last_seen_unix_ns / 1000000000);
		srv_json_kv_uint(j, "batches", a->batches);
		srv_json_kv_uint(j, "rows", a->rows);
		srv_json_kv_uint(j, "samples", a->samples);
		srv_json_key(j, "counters");
		srv_json_raw(j, a->counters.data ? a->counters.data : "{}",
		             a->counters.data ? a->counters.len : 2);
		srv_json_obj_end(j);
	}
	pthread_mutex_unlock(&api->agents_mu);
	srv_json_arr_end(j);
}

/* The storage batch of a decoded wire batch: one series per process (type
 * = the batch's profile type, labels = the process's), the objects and
 * stacks as they are, one sample per row. Everything points into the
 * arrays allocated here or into the decoded batch. */
typedef struct conv {
	st_batch b;
	st_series_def *series;
	st_label *labels;
	st_object *objects;
	st_stack_def *stacks;
	st_frame *frames;
	st_sample *samples;
} conv;

static void conv_free(conv *c)
{
	free(c->series);
	free(c->labels);
	free(c->objects);
	free(c->stacks);
	free(c->frames);
	free(c->samples);
}

static void convert(const wire_batch *w, conv *c, uint64_t *samples)
{
	size_t nl = 0, nf = 0;
	for (uint32_t i = 0; i < w->nprocesses; i++)
		nl += w->processes[i].nlabels;
	for (uint32_t i = 0; i < w->nstacks; i++)
		nf += w->stacks[i].nframes;
	/* +1: a zero-length array is still a valid pointer for storage */
	c->series = srv_xcalloc(w->nprocesses + 1, sizeof(*c->series));
	c->labels = srv_xcalloc(nl + 1, sizeof(*c->labels));
	c->objects = srv_xcalloc(w->nobjects + 1, sizeof(*c->objects));
	c->stacks = srv_xcalloc(w->nstacks + 1, sizeof(*c->stacks));
	c->frames = srv_xcalloc(nf + 1, sizeof(*c->frames));
	c->samples = srv_xcalloc(w->nrows + 1, sizeof(*c->samples));
	st_label *l = c->labels;
	for (uint32_t i = 0; i < w->nprocesses; i++) {
		const wire_process *p = &w->processes[i];
		c->series[i] = (st_series_def){w->profile_type, l, p->nlabels};
		for (uint32_t k = 0; k < p->nlabels; k++)
			*l++ = (st_label){p->labels[k].name, p->labels[k].value};
	}
	for (uint32_t i = 0; i < w->nobjects; i++)
		c->objects[i] = (st_object){w->objects[i].build_id, w->objects[i].build_id_len,
		                            w->objects[i].name};
	st_frame *f = c->frames;
	for (uint32_t i = 0; i < w->nstacks; i++) {
		const wire_stack *s = &w->stacks[i];
		c->stacks[i] = (st_stack_def){s->id, f, s->nframes};
		for (uint32_t k = 0; k < s->nframes; k++) {
			const wire_frame *wf = &s->frames[k];
			*f++ = (st_frame){wf->kind, wf->object, wf->offset, wf->name, wf->file, wf->line,
			                   wf->lang};
		}
	}
	uint64_t total = 0;
	for (uint32_t i = 0; i < w->nrows; i++) {
		const wire_row *r = &w->rows[i];
		/* count <= 2^48 (the decoder's limit, storage's too) */
		c->samples[i] = (st_sample){r->ts_ns, r->process, r->stack_id, (int64_t)r->count};
		total += r->count;
	}
	*samples = total;
	c->b = (st_batch){c->series, w->nprocesses, c->objects, w->nobjects,
	                  c->stacks, w->nstacks, c->samples, w->nrows};
}

/* Whether a profile type's values are sample counts (its sample unit,
 * the third field, is "count"): an agent's off-CPU batches carry
 * nanoseconds, which are no samples. */
static bool type_counts(const char *type)
{
	for (int k = 0; k < 2 && type; k++) {
		type = strchr(type, ':');
		type = type ? type + 1 : NULL;
	}
	return type && !strncmp(type, "count:", 6);
}

static int h_ingest(void *arg, const srv_req *req, srv_resp *resp)
{
	srv_api *api = arg;
	size_t len;
	const uint8_t *body = srv_req_body(req, &len);
	wire_decoded *wd = NULL;
	base_err we;
	conv c = {0};
	srv_metrics_ingest_bytes(SRV_METRICS_NATIVE, len);
	int rc = wire_decode(body, len, &wd, &we);
	if (rc == -EBADMSG || rc == -EMSGSIZE) {
		/* a count or size over the protocol's limits is "too large":
		 * the agent should split the batch, not fix it */
		srv_resp_error(resp, rc == -EMSGSIZE ? 413 : 400, "%s", we.msg);
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	const wire_batch *w = wire_decoded_batch(wd);
	uint64_t samples;
	convert(w, &c, &samples);
	base_err serr = {0};
	rc = st_append(api->db, &c.b, &serr);
	if (rc == -ENOENT) {
		/* the agent's stack cache is out of step with this server (it
		 * restarted or lost data): the agent resets the cache and resends
		 * the batch with every stack (docs/protocol.md) */
		srv_json *j = srv_resp_json(resp, 409);
		srv_json_obj_begin(j);
		srv_json_kv_str(j, "error", serr.msg);
		srv_json_kv_bool(j, "missing_stacks", true);
		srv_json_obj_end(j);
		rc = 0;
		goto out;
	}
	if (rc) {
		rc = srv_api_store_error(resp, rc, &serr);
		goto out;
	}
	note_agent(api, w, type_counts(w->profile_type) ? samples : 0);
	srv_metrics_ingest_ok(SRV_METRICS_NATIVE, w->nrows);
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_uint(j, "rows", w->nrows);
	srv_json_kv_uint(j, "series", w->nprocesses);
	srv_json_kv_uint(j, "stacks", w->nstacks);
	srv_json_obj_end(j);
out:
	conv_free(&c);
	wire_decoded_free(wd);
	return rc;
}

int srv_api_ingest_native_routes(srv_http *h, srv_api *api)
{
	const srv_route r = {.method = "POST", .path = "/api/v1/ingest", .fn = h_ingest,
	                     .arg = api, .max_body_bytes = WIRE_MAX_BODY,
	                     .flags = SRV_ROUTE_WRITE};
	return srv_http_route(h, &r);
}
