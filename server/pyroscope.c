/* pyroscope.c - Pyroscope's ingest formats: the ?name= app name with its
 * labels, folded/lines text and multipart/form-data. All of it is hostile
 * input: every length is bounded before use, and tests/fuzz/fuzz_pyroscope.c
 * drives these parsers directly. pprof decoding itself is pprof_in.c's. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/pyroscope.h"

static int fail(srv_pyro_err *e, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(srv_pyro_err *e, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	e->status = status;
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* The suffixes Pyroscope's clients put after the app name. */
static const char *const known_types[] = {
	"cpu", "wall", "itimer", "alloc_objects", "alloc_space", "inuse_objects",
	"inuse_space", "goroutines", "mutex_count", "mutex_duration", "block_count",
	"block_duration", "lock_count", "lock_duration", "exceptions",
};

static int is_word(const char *s, size_t maxlen)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
		      (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
			return 0;
	return n > 0 && n <= maxlen;
}

static const char *skip_sp(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

int srv_pyro_parse_name(const char *s, srv_pyro_name *out, srv_pyro_err *e)
{
	size_t n = strlen(s);
	out->buf[0] = 0;
	out->app = NULL;
	out->nlabels = 0;
	if (n == 0)
		return fail(e, 400, "name is empty: send ?name=APP.cpu{key=value}");
	if (n > SRV_PYRO_MAX_NAME)
		return fail(e, 400, "name of %zu bytes; the limit is %d", n, SRV_PYRO_MAX_NAME);
	/* every token written to buf is at most as long as its source, and
	 * each ends with one NUL where the source had a delimiter: n + 2 fit */
	char *w = out->buf;
	const char *brace = strchr(s, '{');
	size_t alen = brace ? (size_t)(brace - s) : n;
	memcpy(w, s, alen);
	w[alen] = 0;
	char *app = w;
	w += alen + 1;
	out->type = "cpu";
	char *dot = strrchr(app, '.');
	if (dot) {
		for (size_t i = 0; i < sizeof(known_types) / sizeof(*known_types); i++)
			if (!strcmp(dot + 1, known_types[i])) {
				*dot = 0;
				out->type = known_types[i];
				break;
			}
	}
	if (!*app)
		return fail(e, 400, "name has no application name before '.' or '{'");
	if (strlen(app) > ST_MAX_LABEL_VALUE_LEN || !st_utf8_valid(app, strlen(app)))
		return fail(e, 400, "the application name must be UTF-8 of at most %d bytes",
		            ST_MAX_LABEL_VALUE_LEN);
	out->app = app;
	int have_service = 0;
	if (brace) {
		const char *p = brace + 1;
		for (;;) {
			p = skip_sp(p);
			if (*p == '}')
				break;
			/* key */
			char *key = w;
			while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			       (*p >= '0' && *p <= '9') || *p == '_' || *p == '.') {
				*w++ = *p == '.' ? '_' : *p;
				p++;
			}
			*w++ = 0;
			p = skip_sp(p);
			if (!*key || (*key >= '0' && *key <= '9'))
				return fail(e, 400, "label %zu in name: a name of [a-zA-Z_.][a-zA-Z0-9_.]* "
				            "must come before '='", out->nlabels + 1);
			if (!strncmp(key, "__", 2))
				return fail(e, 400, "label %s in name: names starting with \"__\" are "
				            "reserved", key);
			if (strlen(key) > ST_MAX_LABEL_NAME_LEN)
				return fail(e, 400, "label name of %zu bytes; the limit is %d",
				            strlen(key), ST_MAX_LABEL_NAME_LEN);
			if (*p != '=')
				return fail(e, 400, "label %s in name: '=' expected", key);
			p = skip_sp(p + 1);
			char *val = w;
			if (*p == '"') {
				for (p++; *p != '"'; p++) {
					if (!*p)
						return fail(e, 400, "label %s in name: unterminated quote", key);
					if (*p == '\\') {
						p++;
						if (*p != '"' && *p != '\\')
							return fail(e, 400, "label %s in name: only \\\" and \\\\ "
							            "escapes are allowed", key);
					}
					*w++ = *p;
				}
				p = skip_sp(p + 1);
			} else {
				while (*p && *p != ',' && *p != '}')
					*w++ = *p++;
				while (w > val && (w[-1] == ' ' || w[-1] == '\t'))
					w--;
			}
			*w++ = 0;
			if (*p != ',' && *p != '}')
				return fail(e, 400, "label %s in name: ',' or '}' expected after the value",
				            key);
			if (*p == ',')
				p++;
			size_t vl = strlen(val);
			if (vl > ST_MAX_LABEL_VALUE_LEN || !st_utf8_valid(val, vl))
				return fail(e, 400, "label %s in name: the value must be UTF-8 of at most "
				            "%d bytes", key, ST_MAX_LABEL_VALUE_LEN);
			if (!vl)
				continue;  /* Prometheus: an empty value is no label */
			for (size_t i = 0; i < out->nlabels; i++)
				if (!strcmp(out->labels[i].name, key))
					return fail(e, 400, "label %s given twice in name", key);
			if (out->nlabels == ST_MAX_LABELS - 1)
				return fail(e, 400, "more than %d labels in name", ST_MAX_LABELS - 1);
			if (!strcmp(key, "service_name"))
				have_service = 1;
			out->labels[out->nlabels++] = (st_label){key, val};
		}
		p = skip_sp(p + 1);
		if (*p)
			return fail(e, 400, "name has text after its closing '}'");
	}
	if (!have_service)
		out->labels[out->nlabels++] = (st_label){"service_name", app};
	return 0;
}

void srv_pyro_free(srv_pyro *p)
{
	if (!p)
		return;
	free(p->text);
	free(p->frames);
	free(p->stacks);
	free(p->samples);
	memset(p, 0, sizeof(*p));
}

/* open addressing over stack IDs -> stack index */
typedef struct stack_map {
	uint64_t *ids;
	uint32_t *idx;      /* UINT32_MAX: empty */
	size_t mask;
} stack_map;

int srv_pyro_decode_text(const uint8_t *body, size_t len, const srv_pyro_opts *o,
                         srv_pyro *out, srv_pyro_err *e)
{
	stack_map m = {0};
	int64_t *sums = NULL;
	size_t nframes = 0, frames_cap = 0, nstacks = 0, nlines = 0;
	int rc = 0;
	memset(out, 0, sizeof(*out));
	e->status = 400;
	e->msg[0] = 0;
	int cpu = !o->units || !*o->units || !strcmp(o->units, "samples");
	if (!cpu && (!is_word(o->units, 60) || !is_word(o->type, 60))) {
		rc = fail(e, 400, "units and the name's type must be words of [a-zA-Z0-9_]");
		goto out;
	}
	if (o->sample_rate_hz == 0) {
		rc = fail(e, 400, "sampleRate must be at least 1");
		goto out;
	}
	/* count lines first: it bounds the stack table */
	for (size_t i = 0; i < len; i++)
		nlines += body[i] == '\n';
	nlines++;
	if (nlines > SRV_PYRO_MAX_LINES) {
		rc = fail(e, 413, "more than %u lines", SRV_PYRO_MAX_LINES);
		goto out;
	}
	out->text = malloc(len + 1);
	size_t cap = 16;
	while (cap < nlines * 2)
		cap *= 2;
	m.ids = malloc(cap * sizeof(*m.ids));
	m.idx = malloc(cap * sizeof(*m.idx));
	m.mask = cap - 1;
	out->stacks = calloc(nlines, sizeof(*out->stacks));
	sums = calloc(nlines, sizeof(*sums));
	if (!out->text || !m.ids || !m.idx || !out->stacks || !sums) {
		rc = -ENOMEM;
		goto out;
	}
	memset(m.idx, 0xff, cap * sizeof(*m.idx));
	memcpy(out->text, body, len);
	out->text[len] = 0;
	char *p = out->text, *end = out->text + len;
	for (size_t ln = 1; p < end; ln++) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *le = nl ? nl : end;
		char *next = nl ? nl + 1 : end;
		if ((size_t)(le - p) > SRV_PYRO_MAX_LINE) {
			rc = fail(e, 400, "line %zu: longer than %u bytes", ln, SRV_PYRO_MAX_LINE);
			goto out;
		}
		while (le > p && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t'))
			le--;
		*le = 0;
		if (memchr(p, 0, (size_t)(le - p))) {
			rc = fail(e, 400, "line %zu: holds a NUL byte", ln);
			goto out;
		}
		/* blank lines separate nothing but are harmless */
		char *q = p;
		while (*q == ' ' || *q == '\t')
			q++;
		if (!*q) {
			p = next;
			continue;
		}
		int64_t count = 1;
		if (!o->lines) {
			char *sp = strrchr(p, ' ');
			if (!sp || !sp[1]) {
				rc = fail(e, 400, "line %zu: \"frame;frame;... COUNT\" expected", ln);
				goto out;
			}
			count = 0;
			for (char *c = sp + 1; *c; c++) {
				if (*c < '0' || *c > '9' || count > ST_MAX_VALUE) {
					rc = fail(e, 400, "line %zu: the count must be an integer up to "
					          "%" PRId64, ln, (int64_t)ST_MAX_VALUE);
					goto out;
				}
				count = count * 10 + (*c - '0');
			}
			if (count > ST_MAX_VALUE) {
				rc = fail(e, 400, "line %zu: the count must be an integer up to %" PRId64,
				          ln, (int64_t)ST_MAX_VALUE);
				goto out;
			}
			*sp = 0;
		}
		/* frames, root first in the text; storage wants leaf first */
		size_t first = nframes, nf = 0;
		for (char *f = p;;) {
			char *semi = strchr(f, ';');
			if (semi)
				*semi = 0;
			size_t fl = strlen(f);
			if (fl == 0) {
				rc = fail(e, 400, "line %zu: an empty frame name", ln);
				goto out;
			}
			if (fl > ST_MAX_SYMBOL_LEN) {
				rc = fail(e, 400, "line %zu: a frame name of %zu bytes; the limit is %d",
				          ln, fl, ST_MAX_SYMBOL_LEN);
				goto out;
			}
			if (++nf > ST_MAX_FRAMES) {
				rc = fail(e, 400, "line %zu: more than %d frames", ln, ST_MAX_FRAMES);
				goto out;
			}
			if (nframes == frames_cap) {
				size_t nc = frames_cap ? frames_cap * 2 : 1024;
				st_frame *t = realloc(out->frames, nc * sizeof(*t));
				if (!t) {
					rc = -ENOMEM;
					goto out;
				}
				out->frames = t;
				frames_cap = nc;
			}
			out->frames[nframes++] = (st_frame){ST_FRAME_NAMED, 0, 0, f};
			if (!semi)
				break;
			f = semi + 1;
		}
		for (size_t a = first, b = nframes - 1; a < b; a++, b--) {
			st_frame t = out->frames[a];
			out->frames[a] = out->frames[b];
			out->frames[b] = t;
		}
		uint64_t id = st_stack_hash(NULL, 0, out->frames + first, (uint32_t)nf);
		size_t h = (size_t)(id ^ (id >> 29)) & m.mask;
		while (m.idx[h] != UINT32_MAX && m.ids[h] != id)
			h = (h + 1) & m.mask;
		if (m.idx[h] == UINT32_MAX) {
			m.ids[h] = id;
			m.idx[h] = (uint32_t)nstacks;
			/* frames may move while the array grows: an offset for now */
			out->stacks[nstacks++] = (st_stack_def){id, (const st_frame *)(uintptr_t)first,
			                                        (uint32_t)nf};
		} else {
			nframes = first;  /* known stack: its frames are stored once */
		}
		int64_t *s = &sums[m.idx[h]];
		if (*s > ST_MAX_VALUE - count) {
			rc = fail(e, 400, "line %zu: the stack's counts add up past %" PRId64, ln,
			          (int64_t)ST_MAX_VALUE);
			goto out;
		}
		*s += count;
		p = next;
	}
	for (size_t i = 0; i < nstacks; i++)
		out->stacks[i].frames = out->frames + (uintptr_t)out->stacks[i].frames;
	const char *sfx = o->level ? "" : ":delta";
	uint32_t nseries = 1;
	if (cpu) {
		snprintf(out->types[0], sizeof(out->types[0]),
		         "process_cpu:samples:count:cpu:nanoseconds%s", sfx);
		snprintf(out->types[1], sizeof(out->types[1]),
		         "process_cpu:cpu:nanoseconds:cpu:nanoseconds%s", sfx);
		nseries = 2;
	} else {
		snprintf(out->types[0], sizeof(out->types[0]), "%s:%s:%s:%s:%s%s", o->type, o->type,
		         o->units, o->type, o->units, sfx);
	}
	out->samples = calloc(nstacks * nseries + 1, sizeof(*out->samples));
	if (!out->samples) {
		rc = -ENOMEM;
		goto out;
	}
	size_t ns = 0;
	int64_t period_ns = 1000000000LL / o->sample_rate_hz;
	for (size_t i = 0; i < nstacks; i++) {
		if (sums[i] == 0)
			continue;
		out->samples[ns++] = (st_sample){o->ts_ns, 0, out->stacks[i].id, sums[i]};
		if (!cpu)
			continue;
		if (period_ns && sums[i] > ST_MAX_VALUE / period_ns) {
			rc = fail(e, 400, "a stack's CPU time (%" PRId64 " samples at %u Hz) is past "
			          "the limit", sums[i], o->sample_rate_hz);
			goto out;
		}
		out->samples[ns++] = (st_sample){o->ts_ns, 1, out->stacks[i].id, sums[i] * period_ns};
	}
	for (uint32_t i = 0; i < nseries; i++)
		out->series[i] = (st_series_def){out->types[i], o->labels, (uint32_t)o->nlabels};
	out->batch = (st_batch){out->series, nseries, NULL, 0, out->stacks, (uint32_t)nstacks,
	                        out->samples, (uint32_t)ns};
out:
	free(m.ids);
	free(m.idx);
	free(sums);
	return rc;
}

int srv_pyro_is_multipart(const char *ct)
{
	return ct && !strncasecmp(skip_sp(ct), "multipart/form-data", 19);
}

srv_pyro_body srv_pyro_sniff(const uint8_t *body, size_t len, const char *ct)
{
	if (srv_pyro_is_multipart(ct))
		return SRV_PYRO_BODY_MULTIPART;
	if (len >= 2 && body[0] == 0x1f && body[1] == 0x8b)
		return SRV_PYRO_BODY_PPROF;
	/* tab, LF and CR are text's only control bytes; a folded line never
	 * holds the others, and a protobuf's tags and lengths always do */
	for (size_t i = 0; i < len && i < SRV_PYRO_SNIFF_BYTES; i++)
		if ((body[i] < 0x20 && body[i] != '\t' && body[i] != '\n' && body[i] != '\r') ||
		    body[i] == 0x7f)
			return SRV_PYRO_BODY_PPROF;
	return SRV_PYRO_BODY_TEXT;
}

/* The value of parameter `param` (boundary, name) in a header value such as
 * `form-data; name="profile"`, quoted or a token, into out (cap bytes).
 * Returns its length, or -1 when absent or too long. */
static int header_param(const char *h, size_t hl, const char *param, char *out, size_t cap)
{
	size_t pl = strlen(param);
	for (size_t i = 0; i + pl < hl; i++) {
		if (h[i] != ';')
			continue;
		size_t k = i + 1;
		while (k < hl && (h[k] == ' ' || h[k] == '\t'))
			k++;
		if (k + pl >= hl || strncasecmp(h + k, param, pl) || h[k + pl] != '=')
			continue;
		k += pl + 1;
		size_t n = 0;
		if (k < hl && h[k] == '"') {
			for (k++; k < hl && h[k] != '"'; k++) {
				if (n + 1 >= cap)
					return -1;
				out[n++] = h[k];
			}
			if (k >= hl)
				return -1;
		} else {
			for (; k < hl && h[k] != ';' && h[k] != ' ' && h[k] != '\t' && h[k] != '\r'; k++) {
				if (n + 1 >= cap)
					return -1;
				out[n++] = h[k];
			}
		}
		out[n] = 0;
		return (int)n;
	}
	return -1;
}

int srv_pyro_multipart_part(const uint8_t *body, size_t len, const char *ct,
                            const char *name, const uint8_t **data, size_t *dlen,
                            srv_pyro_err *e)
{
	char bnd[80], delim[84];
	e->status = 400;
	e->msg[0] = 0;
	if (!ct || !srv_pyro_is_multipart(ct))
		return fail(e, 400, "Content-Type is not multipart/form-data");
	int bl = header_param(ct, strlen(ct), "boundary", bnd, sizeof(bnd));
	if (bl < 1 || bl > 70)
		return fail(e, 400, "multipart/form-data without a boundary of 1..70 bytes");
	int dl = snprintf(delim, sizeof(delim), "\r\n--%s", bnd);
	/* the first delimiter may open the body, without its CRLF */
	const uint8_t *p;
	if (len >= (size_t)dl - 2 && !memcmp(body, delim + 2, (size_t)dl - 2))
		p = body + dl - 2;
	else {
		p = memmem(body, len, delim, (size_t)dl);
		if (!p)
			return fail(e, 400, "multipart body without its boundary");
		p += dl;
	}
	const uint8_t *end = body + len;
	int found = 0;
	for (size_t part = 0;; part++) {
		/* after a delimiter: "--" closes, else transport padding and CRLF */
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			break;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
			return fail(e, 400, "multipart part %zu: CRLF expected after the boundary",
			            part + 1);
		p += 2;
		if (part == SRV_PYRO_MAX_PARTS)
			return fail(e, 400, "multipart body of more than %d parts", SRV_PYRO_MAX_PARTS);
		size_t hmax = (size_t)(end - p) < 8192 ? (size_t)(end - p) : 8192;
		const uint8_t *hend = memmem(p, hmax, "\r\n\r\n", 4);
		const uint8_t *content;
		if (hmax >= 2 && p[0] == '\r' && p[1] == '\n') {
			hend = p;       /* no headers at all */
			content = p + 2;
		} else if (hend) {
			content = hend + 4;
		} else {
			return fail(e, 400, "multipart part %zu: headers unterminated or past 8 KiB",
			            part + 1);
		}
		char pname[128] = "";
		for (const uint8_t *h = p; h < hend;) {
			const uint8_t *eol = memmem(h, (size_t)(hend - h), "\r\n", 2);
			if (!eol)
				eol = hend;
			size_t hl = (size_t)(eol - h);
			if (hl > 20 && !strncasecmp((const char *)h, "Content-Disposition:", 20) &&
			    header_param((const char *)h, hl, "name", pname, sizeof(pname)) < 0)
				pname[0] = 0;
			h = eol + 2;
		}
		const uint8_t *cend = memmem(content, (size_t)(end - content), delim, (size_t)dl);
		if (!cend)
			return fail(e, 400, "multipart part %zu: no closing boundary", part + 1);
		if (!found && !strcmp(pname, name)) {
			*data = content;
			*dlen = (size_t)(cend - content);
			found = 1;
		}
		p = cend + dl;
	}
	return found ? 0 : -ENOENT;
}

void srv_pyro_name_pprof_types(char (*types)[320], size_t n, const char *fallback)
{
	for (size_t i = 0; i < n; i++) {
		/* X:t:u:pt:pu[:delta] -> the period type pt */
		char *c = types[i];
		char *f[5] = {c, NULL, NULL, NULL, NULL};
		for (int k = 1; k < 5 && f[k - 1]; k++) {
			char *col = strchr(f[k - 1], ':');
			f[k] = col ? col + 1 : NULL;
		}
		if (!f[4] || !f[1])
			continue;
		size_t ptl = (size_t)(f[4] - f[3] - 1);
		const char *nm = fallback;
		if (ptl == 3 && !strncmp(f[3], "cpu", 3))
			nm = "process_cpu";
		else if (ptl == 4 && !strncmp(f[3], "wall", 4))
			nm = "wall";
		else if ((ptl == 5 && !strncmp(f[3], "space", 5)) ||
		         (ptl == 7 && !strncmp(f[3], "objects", 7)) ||
		         !strncmp(f[3], "inuse_", 6) || !strncmp(f[3], "alloc_", 6))
			nm = "memory";
		char tmp[320];
		snprintf(tmp, sizeof(tmp), "%s:%s", nm, f[1]);
		memcpy(c, tmp, sizeof(tmp));
	}
}
