/* pprof_in.h - a pprof profile.proto (gzip'd or plain) turned into a
 * storage batch. No HTTP here, so the fuzzer can drive it directly; the
 * handler is server/api_ingest.c. */
#ifndef SMOLDER_SRV_PPROF_IN_H
#define SMOLDER_SRV_PPROF_IN_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

#define SRV_PPROF_MAX_BODY (64u << 20)    /* bytes as received */
#define SRV_PPROF_MAX_RAW (64u << 20)     /* after gunzip */
/* What unpacking the protobuf may allocate, estimated before it is done
 * (pprof_in.c); about half a million samples of a few frames each. */
#define SRV_PPROF_MAX_UNPACKED (128u << 20)
#define SRV_PPROF_MAX_SAMPLE_TYPES 16

/* The batch and everything it points into; free with srv_pprof_free(). */
typedef struct srv_pprof {
	st_batch batch;
	st_series_def series[SRV_PPROF_MAX_SAMPLE_TYPES];
	char types[SRV_PPROF_MAX_SAMPLE_TYPES][320];
	void *profile;             /* the unpacked protobuf: names point into it */
	uint8_t *raw;
	st_object *objects;
	uint8_t (*bids)[ST_MAX_BUILD_ID_LEN];
	st_frame *frames;
	st_stack_def *stacks;
	st_sample *samples;
	char **names;
	size_t nnames;
} srv_pprof;

/* Why a profile was refused: the HTTP status to answer and a message. */
typedef struct srv_pprof_err {
	int status;
	char msg[300];
} srv_pprof_err;

/* Decodes body into out. name is the profile type's name (a word), labels
 * the series labels (copied by reference: they must outlive out). Samples
 * without a time get now_ns. Returns 0, -EINVAL with *e filled for a bad
 * profile, or -ENOMEM. out is always safe to free. */
int srv_pprof_decode(const uint8_t *body, size_t len, const char *name,
                     const st_label *labels, size_t nlabels, int64_t now_ns,
                     srv_pprof *out, srv_pprof_err *e);
void srv_pprof_free(srv_pprof *p);

#endif
