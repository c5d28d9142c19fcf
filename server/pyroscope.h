/* pyroscope.h - Pyroscope's ingest API (POST /ingest) without the HTTP:
 * the app name with its {k=v} labels, the folded and lines text formats
 * turned into a storage batch, and the multipart/form-data body its
 * clients wrap pprof in. The pprof itself goes through server/pprof_in.c.
 * The handler is server/api_pyroscope.c; the fuzzer drives this file. */
#ifndef SMOLDER_SRV_PYROSCOPE_H
#define SMOLDER_SRV_PYROSCOPE_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

#define SRV_PYRO_MAX_BODY (64u << 20)       /* bytes as received */
#define SRV_PYRO_MAX_NAME 4096              /* bytes of ?name= (decoded) */
#define SRV_PYRO_MAX_LINES (1u << 20)       /* stacks of a text body */
#define SRV_PYRO_MAX_LINE (256u << 10)      /* bytes of one line */
#define SRV_PYRO_MAX_PARTS 16               /* parts of a multipart body */
#define SRV_PYRO_DEFAULT_RATE_HZ 100        /* Pyroscope's sampleRate default */

/* Why input was refused: the HTTP status to answer and a message. */
typedef struct srv_pyro_err {
	int status;
	char msg[300];
} srv_pyro_err;

/* ?name=APP.TYPE{k=v,...}, parsed. Labels point into buf. */
typedef struct srv_pyro_name {
	char buf[SRV_PYRO_MAX_NAME + 16];
	const char *app;           /* becomes service_name */
	const char *type;          /* "cpu" when the name has no known suffix */
	st_label labels[ST_MAX_LABELS];
	size_t nlabels;            /* service_name included */
} srv_pyro_name;

/* Parses s into *out. The type suffix is split off only when it is one
 * Pyroscope's clients use (cpu, wall, alloc_objects, ...), so an app
 * named "my.app" stays whole. Label names follow Prometheus after '.'
 * becomes '_' (OpenTelemetry's "process.runtime.name"); values are quoted
 * ("a \"b\"", with \" and \\ escapes) or bare up to ',' or '}'; an empty
 * value drops the label, as in Prometheus. A service_name label overrides
 * the app name. Returns 0 or -EINVAL with *e filled. */
int srv_pyro_parse_name(const char *s, srv_pyro_name *out, srv_pyro_err *e);

/* What a text body means. */
typedef struct srv_pyro_opts {
	int lines;                 /* format=lines: one sample per line, no count */
	const char *type;          /* the name's type suffix */
	const char *units;         /* ?units=; NULL, "" or "samples": CPU samples */
	int level;                 /* ?aggregationType=average: not a delta */
	uint32_t sample_rate_hz;   /* > 0 */
	int64_t ts_ns;             /* every row's time */
	const st_label *labels;    /* must outlive the decoded batch */
	size_t nlabels;
} srv_pyro_opts;

/* A decoded text body: the batch and everything it points into. Free with
 * srv_pyro_free(). */
typedef struct srv_pyro {
	st_batch batch;
	st_series_def series[2];
	char types[2][ST_MAX_TYPE_LEN];
	char *text;                /* the body's copy: frame names point in */
	st_frame *frames;
	st_stack_def *stacks;
	st_sample *samples;
} srv_pyro;

/* Decodes a folded ("a;b;c 12", root first) or lines ("a;b;c") body into
 * out. CPU samples (units absent or "samples") make two series, as Go's
 * CPU pprof does: process_cpu:samples:count:cpu:nanoseconds:delta with
 * the counts, and process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta with
 * count * 1e9 / sample_rate_hz. Other units make one series
 * TYPE:TYPE:UNITS:TYPE:UNITS[:delta]. Identical stacks are summed.
 * Returns 0, -EINVAL with *e filled, or -ENOMEM; out is always safe to
 * free. */
int srv_pyro_decode_text(const uint8_t *body, size_t len, const srv_pyro_opts *o,
                         srv_pyro *out, srv_pyro_err *e);
void srv_pyro_free(srv_pyro *p);

/* Finds part `name` of a multipart/form-data body whose Content-Type
 * header is content_type, checking the whole body's structure (at most
 * SRV_PYRO_MAX_PARTS parts, a closing delimiter). *data points into body.
 * Returns 0, -ENOENT when the body is well formed but has no such part, or
 * -EINVAL with *e filled. */
int srv_pyro_multipart_part(const uint8_t *body, size_t len, const char *content_type,
                            const char *name, const uint8_t **data, size_t *dlen,
                            srv_pyro_err *e);

/* Whether content_type is multipart/form-data. */
int srv_pyro_is_multipart(const char *content_type);

/* What a body is, by its content: clients disagree about ?format= (the
 * Node client before 0.6 sends a pprof form with no format at all), so
 * the bytes decide wherever they can. */
typedef enum srv_pyro_body {
	SRV_PYRO_BODY_TEXT = 0,    /* folded or lines text: ?format= says which */
	SRV_PYRO_BODY_MULTIPART,   /* multipart/form-data: pprof in its "profile" part */
	SRV_PYRO_BODY_PPROF,       /* gzip (1f 8b) or a bare protobuf */
} srv_pyro_body;

/* Classifies body: multipart when content_type says so; gzip by its
 * magic bytes; a protobuf when its first SRV_PYRO_SNIFF_BYTES hold a
 * control byte that text never has (a pprof's first field, sample_type,
 * starts 0x0a LEN 0x08: every profile.proto has such bytes); text
 * otherwise. content_type may be NULL. */
#define SRV_PYRO_SNIFF_BYTES 512
srv_pyro_body srv_pyro_sniff(const uint8_t *body, size_t len, const char *content_type);

/* The profile type name (before the first ':') for a pprof whose sample
 * types were decoded under a placeholder: rewrites each "X:t:u:pt:pu..."
 * in types[0..n) so X follows the period type as Pyroscope names them
 * (cpu -> process_cpu, wall -> wall, space, objects, inuse_* and alloc_* ->
 * memory), else keeps
 * fallback. Each types[i] holds `cap` bytes. */
void srv_pyro_name_pprof_types(char (*types)[320], size_t n, const char *fallback);

#endif
