/* pprof_in.h - a pprof profile.proto (gzip'd or plain) turned into a
 * storage batch. No HTTP here, so the fuzzer can drive it directly; the
 * handler is server/api_ingest.c. */
#ifndef SMOLDER_SRV_PPROF_IN_H
#define SMOLDER_SRV_PPROF_IN_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "storage/storage.h"

#define SRV_PPROF_MAX_BODY (64u << 20)    /* bytes as received */
#define SRV_PPROF_MAX_RAW (64u << 20)     /* after gunzip */
/* What unpacking the protobuf may allocate, estimated before it is done
 * (pprof_in.c); about half a million samples of a few frames each. */
#define SRV_PPROF_MAX_UNPACKED (128u << 20)
#define SRV_PPROF_MAX_SAMPLE_TYPES 16
/* A word of a profile type (its name, a sample or period type or unit):
 * [a-zA-Z0-9_], at most this many bytes. */
#define SRV_PPROF_MAX_WORD 60
/* Room for a profile type made of five words, NAME:t:u:pt:pu, with
 * ":delta" and the NUL; storage refuses one over ST_MAX_TYPE_LEN with a
 * clear message, which a shorter buffer would hide by truncating. */
#define SRV_PPROF_TYPE_BYTES (5 * (SRV_PPROF_MAX_WORD + 1) + sizeof(":delta"))

/* The batch and everything it points into; free with srv_pprof_free(). */
typedef struct srv_pprof {
	st_batch batch;
	st_series_def series[SRV_PPROF_MAX_SAMPLE_TYPES];
	char types[SRV_PPROF_MAX_SAMPLE_TYPES][SRV_PPROF_TYPE_BYTES];
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


/* Decodes body into out. name is the profile type's name (a word), labels
 * the series labels (copied by reference: they must outlive out). Samples
 * without a time get now_ns. Returns 0, -EINVAL with *e filled for a bad
 * profile, or -ENOMEM. out is always safe to free. */
int srv_pprof_decode(const uint8_t *body, size_t len, const char *name,
                     const st_label *labels, size_t nlabels, int64_t now_ns,
                     srv_pprof *out, base_err *e);
void srv_pprof_free(srv_pprof *p);

#endif
