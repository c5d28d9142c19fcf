/* fuzz_pyroscope.c - POST /ingest's own parsers (server/pyroscope.c): the
 * first byte picks one, the rest is its input. 0: ?name= with labels; 1:
 * a folded body; 2: a lines body; 3: a multipart/form-data body (its
 * first line is the Content-Type). Whatever parses must be a batch
 * storage accepts or refuses with a message, and every refusal a client
 * error with a message; never a crash, a leak or an out-of-range read. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/pyroscope.h"
#include "storage/st_int.h"

static void check_err(int rc, const srv_pyro_err *e)
{
	if (rc == -EINVAL && (e->status < 400 || e->status > 499 || !e->msg[0]))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 4;
	data++;
	size--;
	srv_pyro_err e;
	/* the body's class decides the decoder: any bytes are one of them */
	srv_pyro_body k = srv_pyro_sniff(data, size, mode == 3 ? "multipart/form-data" : NULL);
	if (k != SRV_PYRO_BODY_TEXT && k != SRV_PYRO_BODY_MULTIPART && k != SRV_PYRO_BODY_PPROF)
		abort();
	if (mode == 0) {
		char *s = malloc(size + 1);
		memcpy(s, data, size);
		s[size] = 0;
		srv_pyro_name *nm = malloc(sizeof(*nm));
		int rc = srv_pyro_parse_name(s, nm, &e);
		check_err(rc, &e);
		if (rc == 0) {
			if (!nm->nlabels || nm->nlabels > ST_MAX_LABELS || !nm->app || !nm->type)
				abort();
			st_series_def sd = {"process_cpu:samples:count:cpu:nanoseconds:delta",
			                    nm->labels, (uint32_t)nm->nlabels};
			uint64_t id;
			st_err err;
			/* what the name parser accepts, storage must accept too */
			if (st_series_id(&sd, &id, &err))
				abort();
		}
		free(nm);
		free(s);
		return 0;
	}
	if (mode == 3) {
		const uint8_t *nl = memchr(data, '\n', size);
		if (!nl)
			return 0;
		size_t cl = (size_t)(nl - data);
		char *ct = malloc(cl + 1);
		memcpy(ct, data, cl);
		ct[cl] = 0;
		const uint8_t *body = nl + 1, *part = NULL;
		size_t blen = size - cl - 1, plen = 0;
		int rc = srv_pyro_multipart_part(body, blen, ct, "profile", &part, &plen, &e);
		check_err(rc, &e);
		if (rc == 0 && (part < body || part + plen > body + blen))
			abort();
		free(ct);
		return 0;
	}
	static const st_label labels[1] = {{"service_name", "fuzz"}};
	srv_pyro_opts o = {.lines = mode == 2, .type = "cpu", .sample_rate_hz = 100,
	                   .ts_ns = (int64_t)1767225600 * 1000000000LL,
	                   .labels = labels, .nlabels = 1};
	srv_pyro p;
	int rc = srv_pyro_decode_text(data, size, &o, &p, &e);
	check_err(rc, &e);
	if (rc == 0) {
		uint64_t ids[2];
		st_err err;
		int v = st__batch_validate(&p.batch, ids, &err);
		if (v && v != -EINVAL)
			abort();
		for (uint32_t i = 0; i < p.batch.nsamples; i++)
			if (p.batch.samples[i].series >= p.batch.nseries)
				abort();
	}
	srv_pyro_free(&p);
	return 0;
}
