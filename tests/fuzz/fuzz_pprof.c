/* fuzz_pprof.c - a pprof body as the ingest endpoint receives it: gunzip
 * (when it starts with the gzip magic), protobuf unpack, conversion into a
 * batch. Whatever decodes must be a batch storage accepts or rejects with
 * a message, never a crash, a leak or an out-of-range index. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/pprof_in.h"
#include "storage/st_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const st_label labels[1] = {{"service", "fuzz"}};
	srv_pprof pp;
	base_err e;
	int rc = srv_pprof_decode(data, size, "process_cpu", labels, 1,
	                          (int64_t)1767225600 * 1000000000LL, &pp, &e);
	if (rc == -EINVAL && (e.status < 400 || e.status > 499 || !e.msg[0]))
		abort();  /* a refusal always says why, as a client error */
	if (rc == 0) {
		uint64_t ids[SRV_PPROF_MAX_SAMPLE_TYPES];
		base_err err;
		/* the batch's own references must hold; limits may still refuse */
		int v = st__batch_validate(&pp.batch, ids, &err);
		if (v && v != -EINVAL)
			abort();
		for (uint32_t i = 0; i < pp.batch.nsamples; i++)
			if (pp.batch.samples[i].series >= pp.batch.nseries)
				abort();
	}
	srv_pprof_free(&pp);
	return 0;
}
