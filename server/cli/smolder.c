/* smolder.c - the command-line client of smolder-server's query API
 * (docs/api.md): merge, diff, top, labels and types over HTTP with
 * libcurl, and debug-info uploads (build IDs read with libelf). One file
 * on purpose: it shares no code with the server (wire/wire.h's inline
 * fallback build ID aside), so the API stays the only contract between
 * them.
 *
 * Exit codes: 0 ok, 1 the server or the query failed (including
 * connection failures), 2 the command line was wrong. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gelf.h>
#include <libelf.h>

#include "wire/auth.h"
#include "wire/wire.h"

#define DEFAULT_SERVER "http://127.0.0.1:7070"
/* Above the server's own 256 MiB result limit, so a result the server
 * agrees to send always arrives, but a misbehaving peer cannot make us
 * eat all memory. */
#define MAX_RESPONSE ((size_t)512 << 20)
#define CONNECT_TIMEOUT_S 5L
/* Big merges take a while; this only stops a client hanging forever on a
 * server that accepted the connection and then went silent. */
#define TOTAL_TIMEOUT_S 600L
/* Nesting we follow in the server's JSON: our documents are 3 deep. */
#define JSON_MAX_DEPTH 64

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* ---- output helpers ---- */

static const char *cmd_name = NULL; /* for "smolder: CMD: ..." messages */
/* "Authorization: Bearer ..." from --token-file, sent on every request;
 * NULL without one. Global like cmd_name: one per run, read in main. */
static struct curl_slist *auth_header = NULL;

static void __attribute__((format(printf, 1, 2))) errmsg(const char *fmt, ...)
{
	va_list ap;
	fputs("smolder: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Usage errors say how to get help, as the exit code 2 promises. */
static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("smolder: ", stderr);
	if (cmd_name)
		fprintf(stderr, "%s: ", cmd_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'smolder %s%s--help'.\n", cmd_name ? cmd_name : "",
	        cmd_name ? " " : "");
	return EXIT_USAGE;
}

/* Text that came over the network goes to a terminal: control bytes
 * become '?' so a hostile or broken server cannot drive the terminal.
 * Tabs stay when keep_tab, so a caret line can line up under them. */
static void put_clean(FILE *f, const char *s, size_t n, int keep_tab)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && !(keep_tab && c == '\t')) || c == 0x7f)
			c = '?';
		fputc(c, f);
	}
}

/* ---- a small JSON reader ----
 *
 * A cursor over the response body, reading only what the commands need
 * (strings, numbers, objects, arrays) and skipping the rest. Every read is
 * bounds-checked against end and nesting is limited, so malformed input is
 * an error, never a crash. Functions return 0 or -EINVAL. */

typedef struct jr {
	const char *p, *end;
	int depth;
} jr;

static void j_ws(jr *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int j_peek(jr *r)
{
	j_ws(r);
	return r->p < r->end ? (unsigned char)*r->p : -1;
}

static int j_expect(jr *r, char c)
{
	if (j_peek(r) != (unsigned char)c)
		return -EINVAL;
	r->p++;
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int j_hex4(jr *r, unsigned *out)
{
	unsigned v = 0;
	if (r->end - r->p < 4)
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		int h = hexval((unsigned char)r->p[i]);
		if (h < 0)
			return -EINVAL;
		v = v << 4 | (unsigned)h;
	}
	r->p += 4;
	*out = v;
	return 0;
}

/* A string; *out (malloc'd, NUL-terminated, *outlen bytes) when out is not
 * NULL. A decoded NUL or a lone surrogate becomes U+FFFD: the result is a
 * C string we print, so it must not be cut short. */
static int j_string(jr *r, char **out, size_t *outlen)
{
	if (j_expect(r, '"'))
		return -EINVAL;
	/* Decoded text is never longer than its escaped form. */
	const char *q = r->p;
	while (q < r->end && *q != '"')
		q += (*q == '\\' && q + 1 < r->end) ? 2 : 1;
	if (q >= r->end)
		return -EINVAL;
	char *buf = out ? malloc((size_t)(q - r->p) + 1) : NULL;
	size_t n = 0;
	if (out && !buf)
		return -ENOMEM;
	while (r->p < r->end && *r->p != '"') {
		char tmp[4];
		size_t k = 1;
		unsigned char c = (unsigned char)*r->p++;
		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			tmp[0] = (char)c;
		} else {
			if (r->p >= r->end)
				goto bad;
			c = (unsigned char)*r->p++;
			switch (c) {
			case '"': case '\\': case '/': tmp[0] = (char)c; break;
			case 'b': tmp[0] = '\b'; break;
			case 'f': tmp[0] = '\f'; break;
			case 'n': tmp[0] = '\n'; break;
			case 'r': tmp[0] = '\r'; break;
			case 't': tmp[0] = '\t'; break;
			case 'u': {
				unsigned cp, lo;
				if (j_hex4(r, &cp))
					goto bad;
				if (cp >= 0xd800 && cp < 0xdc00 && r->end - r->p >= 6 &&
				    r->p[0] == '\\' && r->p[1] == 'u') {
					const char *save = r->p;
					r->p += 2;
					if (!j_hex4(r, &lo) && lo >= 0xdc00 && lo < 0xe000)
						cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					else
						r->p = save;
				}
				if (cp == 0 || (cp >= 0xd800 && cp < 0xe000))
					cp = 0xfffd;
				k = wire_utf8_put(tmp, cp);
				break;
			}
			default:
				goto bad;
			}
		}
		if (buf) {
			/* 6 escaped bytes give at most 3, 12 at most 4: it fits */
			memcpy(buf + n, tmp, k);
			n += k;
		}
	}
	r->p++; /* the closing quote, found above */
	if (out) {
		buf[n] = 0;
		*out = buf;
		if (outlen)
			*outlen = n;
	}
	return 0;
bad:
	free(buf);
	return -EINVAL;
}

/* A number per JSON's grammar. *is_int says it had no fraction or exponent
 * and fits int64_t, then *iv holds it exactly (counts above 2^53 would lose
 * digits as doubles). */
static int j_number(jr *r, double *dv, int64_t *iv, int *is_int)
{
	j_ws(r);
	const char *s = r->p, *q = s;
	int integral = 1;
	if (q < r->end && *q == '-')
		q++;
	if (q >= r->end || !isdigit((unsigned char)*q))
		return -EINVAL;
	if (*q == '0')
		q++;
	else
		while (q < r->end && isdigit((unsigned char)*q))
			q++;
	if (q < r->end && *q == '.') {
		integral = 0;
		q++;
		if (q >= r->end || !isdigit((unsigned char)*q))
			return -EINVAL;
		while (q < r->end && isdigit((unsigned char)*q))
			q++;
	}
	if (q < r->end && (*q == 'e' || *q == 'E')) {
		integral = 0;
		q++;
		if (q < r->end && (*q == '+' || *q == '-'))
			q++;
		if (q >= r->end || !isdigit((unsigned char)*q))
			return -EINVAL;
		while (q < r->end && isdigit((unsigned char)*q))
			q++;
	}
	/* strtod needs a terminated copy: the body may end right here */
	char tmp[64];
	size_t len = (size_t)(q - s);
	if (len >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, s, len);
	tmp[len] = 0;
	r->p = q;
	if (dv)
		*dv = strtod(tmp, NULL);
	if (is_int) {
		errno = 0;
		long long v = integral ? strtoll(tmp, NULL, 10) : 0;
		*is_int = integral && errno == 0;
		if (iv)
			*iv = (int64_t)v;
	}
	return 0;
}

static int j_literal(jr *r, const char *lit)
{
	size_t n = strlen(lit);
	j_ws(r);
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n))
		return -EINVAL;
	r->p += n;
	return 0;
}

/* Steps through an object: returns 1 with *key (malloc'd) and the cursor
 * on the member's value, 0 after the closing brace, <0 on malformed input.
 * *first starts at 1, after the caller consumed '{'. */
static int j_member(jr *r, int *first, char **key)
{
	if (j_peek(r) == '}') {
		r->p++;
		return 0;
	}
	if (!*first && j_expect(r, ','))
		return -EINVAL;
	*first = 0;
	int rc = j_string(r, key, NULL);
	if (rc)
		return rc;
	if (j_expect(r, ':')) {
		free(*key);
		*key = NULL;
		return -EINVAL;
	}
	return 1;
}

/* The same for arrays: 1 with the cursor on the next element. */
static int j_element(jr *r, int *first)
{
	if (j_peek(r) == ']') {
		r->p++;
		return 0;
	}
	if (!*first && j_expect(r, ','))
		return -EINVAL;
	*first = 0;
	return 1;
}

static int j_skip(jr *r)
{
	int c = j_peek(r), rc, first = 1;
	char *key;
	switch (c) {
	case '"':
		return j_string(r, NULL, NULL);
	case 't':
		return j_literal(r, "true");
	case 'f':
		return j_literal(r, "false");
	case 'n':
		return j_literal(r, "null");
	case '{':
	case '[':
		if (++r->depth > JSON_MAX_DEPTH)
			return -EINVAL;
		r->p++;
		if (c == '{') {
			while ((rc = j_member(r, &first, &key)) == 1) {
				free(key);
				if ((rc = j_skip(r)))
					return rc;
			}
		} else {
			while ((rc = j_element(r, &first)) == 1)
				if ((rc = j_skip(r)))
					return rc;
		}
		r->depth--;
		return rc;
	default:
		return j_number(r, NULL, NULL, NULL);
	}
}

/* Nothing but whitespace may follow the document. */
static int j_end(jr *r)
{
	return j_peek(r) == -1 ? 0 : -EINVAL;
}

/* ---- HTTP ---- */

typedef struct buf {
	char *data;
	size_t len, cap;
	int too_big;
} buf;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	buf *b = arg;
	size_t n = size * nmemb; /* curl promises size == 1 */
	if (n > MAX_RESPONSE - b->len) {
		b->too_big = 1;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64 * 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			return 0;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = 0;
	return n;
}

typedef struct param {
	const char *name, *value; /* value NULL: not sent */
} param;

#define MAX_PARAMS 12

typedef struct request {
	char *server;       /* base URL without trailing slashes, malloc'd */
	char path[1024];    /* already escaped */
	param params[MAX_PARAMS];
	int nparams;
	const char *method;   /* NULL: GET; "HEAD" or "PUT" */
	const uint8_t *upload; /* PUT's body, upload_len bytes */
	size_t upload_len, upload_off;
	int ok_404;           /* a 404 is an answer, not an error */
	const char *what;     /* prefix of an error message ("FILE"), or NULL */
	/* filled by http_get */
	long status;
	buf body;
	char di_kind[16];     /* HEAD debuginfo: X-Smolder-Debuginfo */
	char di_dwarf[8];     /* X-Smolder-Debuginfo-Dwarf */
} request;

static void add_param(request *rq, const char *name, const char *value)
{
	if (value && rq->nparams < MAX_PARAMS)
		rq->params[rq->nparams++] = (param){name, value};
}

static int is_selector_param(const char *name)
{
	return !strcmp(name, "query") || !strcmp(name, "base") || !strcmp(name, "compare");
}

/* The reported parameter's value, the line the byte position is on, and a
 * caret under that position. Columns count code points (UTF-8 continuation
 * bytes take no column) and tabs are repeated, so the caret lines up on a
 * terminal for most text. */
static void print_caret(const char *value, size_t pos)
{
	size_t len = strlen(value);
	if (pos > len)
		return;
	size_t ls = pos, le = pos;
	while (ls > 0 && value[ls - 1] != '\n')
		ls--;
	while (le < len && value[le] != '\n')
		le++;
	fputs("  ", stderr);
	put_clean(stderr, value + ls, le - ls, 1);
	fputs("\n  ", stderr);
	for (size_t i = ls; i < pos; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c == '\t')
			fputc('\t', stderr);
		else if ((c & 0xc0) != 0x80)
			fputc(' ', stderr);
	}
	fputs("^\n", stderr);
}

/* An error response: {"error": ..., "parameter": ..., "position": N}.
 * Anything else (an HTML page from a proxy, garbage) gets the status. */
static void report_http_error(const request *rq)
{
	jr r = {rq->body.data, rq->body.data + rq->body.len, 0};
	char *msg = NULL, *parameter = NULL, *key = NULL;
	int64_t pos = -1;
	int first = 1, rc, have_pos = 0;
	if (rq->body.len && !j_expect(&r, '{')) {
		while ((rc = j_member(&r, &first, &key)) == 1) {
			if (!strcmp(key, "error") && !msg && j_peek(&r) == '"') {
				rc = j_string(&r, &msg, NULL);
			} else if (!strcmp(key, "parameter") && !parameter && j_peek(&r) == '"') {
				rc = j_string(&r, &parameter, NULL);
			} else if (!strcmp(key, "position") && !have_pos) {
				int is_int = 0;
				rc = j_number(&r, NULL, &pos, &is_int);
				have_pos = !rc && is_int && pos >= 0;
			} else {
				rc = j_skip(&r);
			}
			free(key);
			key = NULL;
			if (rc)
				break;
		}
	}
	if (msg) {
		fputs("smolder: ", stderr);
		if (rq->what)
			fprintf(stderr, "%s: ", rq->what);
		put_clean(stderr, msg, strlen(msg), 0);
		fputc('\n', stderr);
	} else {
		errmsg("%s%s: server answered HTTP %ld", rq->server, rq->path, rq->status);
	}
	if (msg && parameter && have_pos && is_selector_param(parameter))
		for (int i = 0; i < rq->nparams; i++)
			if (!strcmp(rq->params[i].name, parameter)) {
				print_caret(rq->params[i].value, (size_t)pos);
				break;
			}
	free(msg);
	free(parameter);
}

/* PUT's body, from memory. */
static size_t on_read(char *ptr, size_t size, size_t nmemb, void *arg)
{
	request *rq = arg;
	size_t n = size * nmemb, left = rq->upload_len - rq->upload_off;
	if (n > left)
		n = left;
	memcpy(ptr, rq->upload + rq->upload_off, n);
	rq->upload_off += n;
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
	request *rq = arg;
	size_t n = size * nmemb;
	wire_http_header_value(ptr, n, "X-Smolder-Debuginfo", rq->di_kind, sizeof(rq->di_kind));
	wire_http_header_value(ptr, n, "X-Smolder-Debuginfo-Dwarf", rq->di_dwarf, sizeof(rq->di_dwarf));
	return n;
}

/* GET (or rq->method) server+path?params into rq->body. 0 on a 2xx answer
 * (or a 404 when rq->ok_404); otherwise the error is printed and the
 * result is EXIT_FAIL. */
static int http_get(request *rq)
{
	CURL *c = curl_easy_init();
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL;
	size_t cap, len;
	int rc = EXIT_FAIL;
	if (!c) {
		errmsg("cannot initialize libcurl");
		return EXIT_FAIL;
	}
	/* Each escaped byte is at most 3; plus names, '=', '&' and '?'. */
	cap = strlen(rq->server) + strlen(rq->path) + 2;
	for (int i = 0; i < rq->nparams; i++)
		cap += strlen(rq->params[i].name) + 3 * strlen(rq->params[i].value) + 2;
	url = malloc(cap);
	if (!url) {
		errmsg("out of memory");
		goto out;
	}
	len = (size_t)snprintf(url, cap, "%s%s", rq->server, rq->path);
	for (int i = 0; i < rq->nparams; i++) {
		char *v = curl_easy_escape(c, rq->params[i].value, (int)strlen(rq->params[i].value));
		if (!v) {
			errmsg("out of memory");
			goto out;
		}
		len += (size_t)snprintf(url + len, cap - len, "%c%s=%s", i ? '&' : '?',
		                        rq->params[i].name, v);
		curl_free(v);
	}

	curl_easy_setopt(c, CURLOPT_URL, url);
	/* Only HTTP(S): --server must not become a way to read file:// URLs. */
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, TOTAL_TIMEOUT_S);
	/* Refused up front when Content-Length says so; on_body checks the rest. */
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAX_RESPONSE);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "smolder-cli/0.1");
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &rq->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, rq);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, auth_header);
	if (rq->method && !strcmp(rq->method, "HEAD")) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (rq->method && !strcmp(rq->method, "PUT")) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, rq);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->upload_len);
	}

	CURLcode cr = curl_easy_perform(c);
	/* A server refusing an upload (413) answers before reading the body
	 * and may close while curl still sends: its answer is what counts. */
	if (cr == CURLE_SEND_ERROR && rq->upload) {
		long st = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
		if (st)
			cr = CURLE_OK;
	}
	if (cr == CURLE_FILESIZE_EXCEEDED || rq->body.too_big) {
		errmsg("the response from %s is over %zu MiB: narrow the selector or the range%s",
		       rq->server, MAX_RESPONSE >> 20,
		       strstr(rq->path, "/query") ? ", or use --max-nodes" : "");
		goto out;
	}
	if (cr == CURLE_COULDNT_CONNECT || cr == CURLE_COULDNT_RESOLVE_HOST ||
	    cr == CURLE_OPERATION_TIMEDOUT) {
		errmsg("cannot reach the server at %s: %s", rq->server, *errbuf ? errbuf :
		       curl_easy_strerror(cr));
		goto out;
	}
	if (cr != CURLE_OK) {
		errmsg("request to %s failed: %s", rq->server, *errbuf ? errbuf :
		       curl_easy_strerror(cr));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rq->status);
	if ((rq->status < 200 || rq->status > 299) && !(rq->ok_404 && rq->status == 404)) {
		report_http_error(rq);
		goto out;
	}
	rc = 0;
out:
	free(url);
	curl_easy_cleanup(c);
	return rc;
}

/* ---- writing results ---- */

/* The body as it came, to FILE or stdout; JSON (text) gets the final
 * newline the server leaves off, so a shell prompt does not follow it. */
static int write_out(const buf *b, const char *file, int text)
{
	FILE *f = file ? fopen(file, "wb") : stdout;
	int rc = 0;
	if (!f) {
		errmsg("%s: %s", file, strerror(errno));
		return EXIT_FAIL;
	}
	if (b->len && fwrite(b->data, 1, b->len, f) != b->len)
		rc = EXIT_FAIL;
	if (text && b->len && b->data[b->len - 1] != '\n' && fputc('\n', f) == EOF)
		rc = EXIT_FAIL;
	if (file ? fclose(f) != 0 : fflush(f) != 0)
		rc = EXIT_FAIL;
	if (rc)
		errmsg("writing %s: %s", file ? file : "standard output", strerror(errno));
	return rc;
}

static int malformed(const request *rq)
{
	errmsg("%s%s: malformed response from the server", rq->server, rq->path);
	return EXIT_FAIL;
}

/* A JSON array of strings, one per line. */
static int print_string_array(const request *rq)
{
	jr r = {rq->body.data, rq->body.data + rq->body.len, 0};
	int first = 1, rc;
	if (j_expect(&r, '['))
		return malformed(rq);
	while ((rc = j_element(&r, &first)) == 1) {
		char *s;
		size_t n;
		if (j_string(&r, &s, &n))
			return malformed(rq);
		put_clean(stdout, s, n, 1);
		fputc('\n', stdout);
		free(s);
	}
	if (rc || j_end(&r))
		return malformed(rq);
	return 0;
}

typedef struct toprow {
	char *name, *file;
	int64_t line, flat, cum;
	double flat_pct, cum_pct;
	int kernel;
} toprow;

static int read_top_row(jr *r, toprow *row)
{
	int first = 1, rc, is_int;
	char *key;
	if (j_expect(r, '{'))
		return -EINVAL;
	while ((rc = j_member(r, &first, &key)) == 1) {
		if (!strcmp(key, "name") && !row->name)
			rc = j_string(r, &row->name, NULL);
		else if (!strcmp(key, "file") && !row->file)
			rc = j_string(r, &row->file, NULL);
		else if (!strcmp(key, "line"))
			rc = j_number(r, NULL, &row->line, &is_int);
		else if (!strcmp(key, "flat"))
			rc = j_number(r, NULL, &row->flat, &is_int);
		else if (!strcmp(key, "cum"))
			rc = j_number(r, NULL, &row->cum, &is_int);
		else if (!strcmp(key, "flat_pct"))
			rc = j_number(r, &row->flat_pct, NULL, NULL);
		else if (!strcmp(key, "cum_pct"))
			rc = j_number(r, &row->cum_pct, NULL, NULL);
		else if (!strcmp(key, "kernel"))
			rc = j_peek(r) == 't' ? (row->kernel = 1, j_literal(r, "true")) : j_skip(r);
		else
			rc = j_skip(r);
		free(key);
		if (rc)
			return rc;
	}
	return rc || !row->name ? -EINVAL : 0;
}

static int digits(int64_t v)
{
	char tmp[32];
	return snprintf(tmp, sizeof(tmp), "%" PRId64, v);
}

/* A share for a 7-column cell: nonsense from a broken server must not
 * print 300 digits. */
static double pct(double v)
{
	return v >= -999.0 && v <= 999.0 ? v : 0.0;
}

/* /api/v1/top's JSON as go tool pprof -top prints it. */
static int print_top_table(const request *rq)
{
	jr r = {rq->body.data, rq->body.data + rq->body.len, 0};
	toprow *rows = NULL;
	size_t n = 0, cap = 0;
	int64_t total = 0;
	int first = 1, rc, is_int, have_rows = 0, ret = EXIT_FAIL;
	char *key;
	if (j_expect(&r, '{'))
		goto bad;
	while ((rc = j_member(&r, &first, &key)) == 1) {
		if (!strcmp(key, "total")) {
			rc = j_number(&r, NULL, &total, &is_int);
		} else if (!strcmp(key, "rows") && !have_rows) {
			int f2 = 1;
			have_rows = 1;
			rc = j_expect(&r, '[');
			while (!rc && (rc = j_element(&r, &f2)) == 1) {
				if (n == cap) {
					size_t nc = cap ? 2 * cap : 64;
					toprow *t = realloc(rows, nc * sizeof(*rows));
					if (!t) {
						rc = -ENOMEM;
						break;
					}
					rows = t;
					cap = nc;
				}
				rows[n] = (toprow){0};
				rc = read_top_row(&r, &rows[n]);
				n++; /* even when it failed: its strings are freed below */
			}
		} else {
			rc = j_skip(&r);
		}
		free(key);
		if (rc)
			break;
	}
	if (rc || !have_rows || j_end(&r))
		goto bad;

	/* Column widths from the widest number, as pprof does. */
	int wf = 4, wc = 3;
	for (size_t i = 0; i < n; i++) {
		wf = digits(rows[i].flat) > wf ? digits(rows[i].flat) : wf;
		wc = digits(rows[i].cum) > wc ? digits(rows[i].cum) : wc;
	}
	printf("Total: %" PRId64 " samples, %zu function%s\n", total, n, n == 1 ? "" : "s");
	printf("%*s %7s %*s %7s  %s\n", wf, "flat", "flat%", wc, "cum", "cum%", "name");
	for (size_t i = 0; i < n; i++) {
		const toprow *t = &rows[i];
		printf("%*" PRId64 " %6.2f%% %*" PRId64 " %6.2f%%  ", wf, t->flat, pct(t->flat_pct), wc,
		       t->cum, pct(t->cum_pct));
		put_clean(stdout, t->name, strlen(t->name), 0);
		if (t->kernel)
			fputs(" [k]", stdout);
		if (t->file) {
			fputc(' ', stdout);
			put_clean(stdout, t->file, strlen(t->file), 0);
			if (t->line > 0)
				printf(":%" PRId64, t->line);
		}
		fputc('\n', stdout);
	}
	ret = 0;
	goto out;
bad:
	ret = malformed(rq);
out:
	for (size_t i = 0; i < n; i++) {
		free(rows[i].name);
		free(rows[i].file);
	}
	free(rows);
	return ret;
}

/* ---- the "what changed" summary of a diff ---- */

typedef struct chrow {
	char *name;
	double delta, p, cum_delta, cum_p;
	int kernel, sig, have_p, cum_sig, have_cum_p, listed;
} chrow;

static int read_change_row(jr *r, chrow *row)
{
	int first = 1, rc;
	char *key;
	if (j_expect(r, '{'))
		return -EINVAL;
	while ((rc = j_member(r, &first, &key)) == 1) {
		if (!strcmp(key, "name") && !row->name)
			rc = j_string(r, &row->name, NULL);
		else if (!strcmp(key, "delta"))
			rc = j_number(r, &row->delta, NULL, NULL);
		else if (!strcmp(key, "p") && j_peek(r) != 'n')
			rc = j_number(r, &row->p, NULL, NULL), row->have_p = !rc;
		else if (!strcmp(key, "significant") && j_peek(r) == 't')
			rc = j_literal(r, "true"), row->sig = !rc;
		else if (!strcmp(key, "listed") && j_peek(r) == 't')
			rc = j_literal(r, "true"), row->listed = !rc;
		else if (!strcmp(key, "cum_delta"))
			rc = j_number(r, &row->cum_delta, NULL, NULL);
		else if (!strcmp(key, "cum_p") && j_peek(r) != 'n')
			rc = j_number(r, &row->cum_p, NULL, NULL), row->have_cum_p = !rc;
		else if (!strcmp(key, "cum_significant") && j_peek(r) == 't')
			rc = j_literal(r, "true"), row->cum_sig = !rc;
		else if (!strcmp(key, "kernel") && j_peek(r) == 't')
			rc = j_literal(r, "true"), row->kernel = !rc;
		else
			rc = j_skip(r);
		free(key);
		if (rc)
			return rc;
	}
	return rc || !row->name ? -EINVAL : 0;
}

/* Reads the method out of "significance" and skips the rest of it. */
static int read_method(jr *r, char **method)
{
	int first = 1, rc;
	char *key;
	if (j_expect(r, '{'))
		return -EINVAL;
	while ((rc = j_member(r, &first, &key)) == 1) {
		if (!strcmp(key, "method") && !*method && j_peek(r) == '"')
			rc = j_string(r, method, NULL);
		else
			rc = j_skip(r);
		free(key);
		if (rc)
			return rc;
	}
	return rc;
}

/* GET /api/v1/diff?format=top as a short list: each significant change of
 * a function's own share, largest first ("+9.8 pp render (p < 0.001)"),
 * then "no other significant change". Warnings about the comparison come
 * first; a note on stderr says when only the samples test could run. */
static int print_changes(const request *rq, size_t limit)
{
	jr r = {rq->body.data, rq->body.data + rq->body.len, 0};
	chrow *rows = NULL;
	char **warn = NULL, *method = NULL, *key;
	size_t n = 0, cap = 0, nwarn = 0, wcap = 0;
	int64_t nsig = -1, base_total = -1, cmp_total = -1;
	int first = 1, rc, is_int, ret = EXIT_FAIL;
	if (j_expect(&r, '{'))
		goto bad;
	while ((rc = j_member(&r, &first, &key)) == 1) {
		int f2 = 1;
		if (!strcmp(key, "listed_rows")) {
			rc = j_number(&r, NULL, &nsig, &is_int);
		} else if (!strcmp(key, "base_total")) {
			rc = j_number(&r, NULL, &base_total, &is_int);
		} else if (!strcmp(key, "compare_total")) {
			rc = j_number(&r, NULL, &cmp_total, &is_int);
		} else if (!strcmp(key, "significance")) {
			rc = read_method(&r, &method);
		} else if (!strcmp(key, "warnings") && !nwarn) {
			rc = j_expect(&r, '[');
			while (!rc && (rc = j_element(&r, &f2)) == 1) {
				if (nwarn == wcap) {
					size_t nc = wcap ? 2 * wcap : 4;
					char **t = realloc(warn, nc * sizeof(*warn));
					if (!t) {
						rc = -ENOMEM;
						break;
					}
					warn = t;
					wcap = nc;
				}
				warn[nwarn] = NULL;
				rc = j_string(&r, &warn[nwarn], NULL);
				nwarn += !rc;
			}
		} else if (!strcmp(key, "rows") && !n) {
			rc = j_expect(&r, '[');
			while (!rc && (rc = j_element(&r, &f2)) == 1) {
				if (n == cap) {
					size_t nc = cap ? 2 * cap : 64;
					chrow *t = realloc(rows, nc * sizeof(*rows));
					if (!t) {
						rc = -ENOMEM;
						break;
					}
					rows = t;
					cap = nc;
				}
				rows[n] = (chrow){0};
				rc = read_change_row(&r, &rows[n]);
				n++; /* even when it failed: its name is freed below */
			}
		} else {
			rc = j_skip(&r);
		}
		free(key);
		if (rc)
			break;
	}
	if (rc || !method || nsig < 0 || j_end(&r))
		goto bad;
	for (size_t i = 0; i < nwarn; i++) {
		fputs("warning: ", stdout);
		put_clean(stdout, warn[i], strlen(warn[i]), 0);
		fputc('\n', stdout);
	}
	if (!strcmp(method, "none")) {
		printf("no change can be tested: %s\n",
		       base_total <= 0 ? "the base has no samples" :
		       cmp_total <= 0 ? "the compare side has no samples" :
		       "the values are not counts and a side has fewer than two profiles");
		ret = 0;
		goto out;
	}
	if (!strcmp(method, "samples"))
		fprintf(stderr, "smolder: diff: a side is one profile, so changes were tested on "
		        "samples alone, as if they were independent (docs/query-language.md)\n");
	size_t shown = 0;
	for (size_t i = 0; i < n && shown < limit; i++) {
		const chrow *c = &rows[i];
		if (!c->listed)
			continue;
		/* its own share when that changed, else with its callees */
		double d = c->sig ? c->delta : c->cum_delta, p = c->sig ? c->p : c->cum_p;
		int have_p = c->sig ? c->have_p : c->have_cum_p;
		printf("%+.1f pp ", d >= -100 && d <= 100 ? d : 0.0);
		put_clean(stdout, c->name, strlen(c->name), 0);
		if (c->kernel)
			fputs(" [k]", stdout);
		if (!c->sig)
			fputs(" with callees", stdout);
		if (!have_p || p < 0.001)
			fputs(" (p < 0.001)\n", stdout);
		else
			printf(" (p = %.3f)\n", p);
		shown++;
	}
	if ((size_t)nsig > shown)
		printf("%" PRId64 " more significant changes (--limit)\n", nsig - (int64_t)shown);
	else
		puts(shown ? "no other significant change" : "no significant change");
	ret = 0;
	goto out;
bad:
	ret = malformed(rq);
out:
	for (size_t i = 0; i < n; i++)
		free(rows[i].name);
	for (size_t i = 0; i < nwarn; i++)
		free(warn[i]);
	free(rows);
	free(warn);
	free(method);
	return ret;
}

/* ---- command lines ---- */

/* What any command may be given; each command says which it takes. */
typedef struct opts {
	const char *server;
	const char *from, *to, *format, *max_nodes, *out, *limit, *query;
	const char *base_from, *base_to, *compare_from, *compare_to;
	int json, help;
	const char *pos[3];
	int npos;
} opts;

typedef struct optdef {
	const char *name; /* "--from"; "-o" for short ones */
	size_t off;       /* offsetof(opts, field) for a const char * */
	int flag;         /* 1: takes no value, sets an int at off */
} optdef;

#define OPT(n, f) {n, offsetof(opts, f), 0}
#define FLAG(n, f) {n, offsetof(opts, f), 1}

/* Options in argv from i on; positional arguments into o->pos. */
static int parse_opts(int argc, char **argv, int i, const optdef *defs, size_t ndefs,
                      int max_pos, opts *o)
{
	int only_pos = 0;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (only_pos || a[0] != '-' || !a[1] || (a[1] != '-' && strcmp(a, "-o") &&
		                                         strcmp(a, "-h"))) {
			/* "-15m" style values are positional only after "--"; a lone "-"
			 * is positional too */
			if (!only_pos && a[0] == '-' && a[1])
				return usage_error("unknown option %s", a);
			if (o->npos >= max_pos)
				return usage_error("unexpected argument '%s'", a);
			o->pos[o->npos++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = 1;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			o->help = 1;
			return 0;
		}
		const char *eq = strchr(a, '=');
		size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
		const optdef *d = NULL;
		for (size_t k = 0; k < ndefs; k++)
			if (strlen(defs[k].name) == nlen && !strncmp(defs[k].name, a, nlen))
				d = &defs[k];
		if (!d)
			return usage_error("unknown option %.*s", (int)nlen, a);
		if (d->flag) {
			if (eq)
				return usage_error("%s takes no value", d->name);
			*(int *)((char *)o + d->off) = 1;
			continue;
		}
		const char *v = eq ? eq + 1 : NULL;
		if (!v) {
			if (i + 1 >= argc)
				return usage_error("%s needs a value", d->name);
			v = argv[++i];
		}
		*(const char **)((char *)o + d->off) = v;
	}
	return 0;
}

/* A count the server would take: decimal digits only. */
static int check_count(const char *opt, const char *v)
{
	if (!v)
		return 0;
	if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 18)
		return usage_error("%s wants a non-negative integer, not '%s'", opt, v);
	return 0;
}

/* The server URL without trailing slashes, so paths append cleanly. */
static char *normalize_server(const char *s)
{
	size_t n = strlen(s);
	while (n > 0 && s[n - 1] == '/')
		n--;
	return strndup(s, n);
}

/* 0, or EXIT_FAIL when out of memory (said so). */
static int new_request(const opts *o, const char *path, request *rq)
{
	*rq = (request){.server = normalize_server(o->server)};
	if (!rq->server) {
		errmsg("out of memory");
		return EXIT_FAIL;
	}
	snprintf(rq->path, sizeof(rq->path), "%s", path);
	return 0;
}

static void request_free(request *rq)
{
	free(rq->server);
	free(rq->body.data);
	rq->server = rq->body.data = NULL;
}

static const char help_main[] =
	"usage: smolder [--server URL] COMMAND [ARGS]\n"
	"\n"
	"Query a smolder-server over its HTTP API.\n"
	"\n"
	"commands:\n"
	"  query SEL    merged profile of the selected series (folded, json, pprof, top)\n"
	"  diff B C     what changed from B to C: significant changes, or the tree\n"
	"  top SEL      functions by flat and cumulative samples\n"
	"  labels [N]   label names, or the values of label N\n"
	"  types        profile types with data\n"
	"  debuginfo upload FILE...   send ELF files (binaries, debug files) for\n"
	"               symbolization; debuginfo status BUILD_ID: what the server has\n"
	"\n"
	"global options:\n"
	"  --server URL  the server (default $SMOLDER_SERVER_URL, else " DEFAULT_SERVER ")\n"
	"  --token-file FILE  send FILE's first line as 'Authorization: Bearer'\n"
	"                (default $SMOLDER_TOKEN_FILE; the server's --auth-token-file\n"
	"                or --read-token-file)\n"
	"  --help        this text; 'smolder COMMAND --help' for a command\n"
	"\n"
	"SEL is a selector such as '{service=\"api\"}' (docs/query-language.md).\n"
	"Times (--from, --to) are RFC 3339, unix seconds or milliseconds, or relative\n"
	"(now, now-1h, -15m); both ends are included. The default range is the last\n"
	"hour (24 h for labels and types).\n"
	"\n"
	"exit status: 0 ok, 1 the server or the query failed (a selector that selects\n"
	"no series included: the message names the closest label values), 2 usage error\n";

static const char help_query[] =
	"usage: smolder query SEL [--from T] [--to T] [--format FMT] [--max-nodes N] [-o FILE]\n"
	"\n"
	"The samples of the series SEL selects, summed per stack.\n"
	"\n"
	"  --from T, --to T   the time range (default: the last hour)\n"
	"  --format FMT       folded (default): 'a;b;c 42' lines for flamegraph.pl\n"
	"                     json: the call tree; pprof: gzip'd profile.proto for\n"
	"                     go tool pprof; top: the 'smolder top' table\n"
	"  --max-nodes N      keep about the N heaviest nodes, fold the rest into \"other\"\n"
	"  -o FILE            write to FILE instead of standard output (needed for\n"
	"                     pprof when standard output is a terminal)\n";

static const char help_diff[] =
	"usage: smolder diff BASE COMPARE [--from T] [--to T] [--base-from T] [--base-to T]\n"
	"                    [--compare-from T] [--compare-to T] [--limit N]\n"
	"                    [--format changes|top|folded|json] [-o FILE]\n"
	"\n"
	"What changed between two profiles: BASE and COMPARE are selectors, each over\n"
	"--from/--to or its own range. By default (changes) a ranked list of the\n"
	"functions whose own share of samples changed significantly, such as\n"
	"'+9.8 pp render (p < 0.001)', then 'no other significant change'. A\n"
	"function whose own share held but whose share with its callees changed is\n"
	"listed with that change and 'with callees', unless the changes listed\n"
	"beneath it explain most of it. The tests and their false discovery rate\n"
	"are in docs/query-language.md.\n"
	"\n"
	"  --limit N      at most N changes listed (default 20)\n"
	"  --format FMT   changes (default); top: the server's JSON table with both\n"
	"                 sides, deltas and p-values; folded: two values per line,\n"
	"                 base then compare, as difffolded.pl writes; json: the tree\n";

static const char help_top[] =
	"usage: smolder top SEL [--from T] [--to T] [--limit N] [--json]\n"
	"\n"
	"Functions by flat (own) samples, then cumulative samples, as a table:\n"
	"flat, flat%, cum, cum%, name and file:line when known.\n"
	"\n"
	"  --limit N   at most N rows (default 100)\n"
	"  --json      the server's JSON instead of the table\n";

static const char help_labels[] =
	"usage: smolder labels [NAME] [--query SEL] [--from T] [--to T]\n"
	"\n"
	"Label names, or with NAME the values of that label, one per line, sorted.\n"
	"\n"
	"  --query SEL        only series SEL selects\n"
	"  --from T, --to T   the time range (default: the last 24 hours)\n";

static const char help_types[] =
	"usage: smolder types [--query SEL] [--from T] [--to T]\n"
	"\n"
	"Profile types with data in the range, one per line, sorted.\n";

static const char help_debuginfo[] =
	"usage: smolder debuginfo upload [--server URL] FILE...\n"
	"       smolder debuginfo status [--server URL] BUILD_ID\n"
	"\n"
	"upload: sends each ELF file (a binary, a shared library, or a separate debug\n"
	"file such as /usr/lib/debug/.build-id/xx/yyyy.debug) under its GNU build ID,\n"
	"or for a file without one the XXH3-128 of its content, and prints\n"
	"'BUILD_ID FILE uploaded' or 'BUILD_ID FILE already there'. The server keeps\n"
	"a binary and, when the binary lacks DWARF, a debug file per build ID.\n"
	"A file the server refuses is reported and the rest are still sent; the exit\n"
	"status is then 1.\n"
	"\n"
	"status: prints 'BUILD_ID binary|debug|both dwarf|no-dwarf' when the server\n"
	"has files for BUILD_ID, 'BUILD_ID missing' and exit status 1 when not.\n";

static int print_help(const char *text)
{
	fputs(text, stdout);
	return fflush(stdout) ? EXIT_FAIL : EXIT_OK;
}

static int do_top(const opts *o, const char *sel, const char *limit, int json, const char *file)
{
	request rq;
	if (new_request(o, "/api/v1/top", &rq))
		return EXIT_FAIL;
	add_param(&rq, "query", sel);
	add_param(&rq, "from", o->from);
	add_param(&rq, "to", o->to);
	add_param(&rq, "limit", limit);
	int rc = http_get(&rq);
	if (!rc && json)
		rc = write_out(&rq.body, file, 1);
	else if (!rc) {
		FILE *saved = stdout;
		if (file && !(stdout = fopen(file, "w"))) {
			stdout = saved;
			errmsg("%s: %s", file, strerror(errno));
			rc = EXIT_FAIL;
		} else {
			rc = print_top_table(&rq);
			if (file && fclose(stdout) && !rc) {
				errmsg("writing %s: %s", file, strerror(errno));
				rc = EXIT_FAIL;
			}
			stdout = saved;
		}
	}
	request_free(&rq);
	return rc;
}

static int cmd_query(int argc, char **argv, int i, opts *o)
{
	static const optdef defs[] = {
		OPT("--server", server), OPT("--from", from), OPT("--to", to),
		OPT("--format", format), OPT("--max-nodes", max_nodes), OPT("-o", out),
	};
	int rc = parse_opts(argc, argv, i, defs, sizeof(defs) / sizeof(defs[0]), 1, o);
	if (rc || o->help)
		return rc ? rc : print_help(help_query);
	if (o->npos != 1)
		return usage_error("needs a selector, for example '{}'");
	if ((rc = check_count("--max-nodes", o->max_nodes)))
		return rc;
	const char *fmt = o->format ? o->format : "folded";
	if (!strcmp(fmt, "top")) {
		if (o->max_nodes)
			return usage_error("--max-nodes does not apply to --format top");
		return do_top(o, o->pos[0], NULL, 0, o->out);
	}
	if (strcmp(fmt, "folded") && strcmp(fmt, "json") && strcmp(fmt, "pprof"))
		return usage_error("unknown format '%s' (folded, json, pprof, top)", fmt);
	/* Binary on a terminal helps nobody and can garble it. */
	if (!strcmp(fmt, "pprof") && !o->out && isatty(STDOUT_FILENO))
		return usage_error("pprof is binary: give -o FILE or redirect standard output");
	request rq;
	if (new_request(o, "/api/v1/query", &rq))
		return EXIT_FAIL;
	add_param(&rq, "query", o->pos[0]);
	add_param(&rq, "from", o->from);
	add_param(&rq, "to", o->to);
	add_param(&rq, "format", fmt);
	add_param(&rq, "max_nodes", o->max_nodes);
	rc = http_get(&rq);
	if (!rc)
		rc = write_out(&rq.body, o->out, strcmp(fmt, "pprof") != 0);
	request_free(&rq);
	return rc;
}

static int cmd_diff(int argc, char **argv, int i, opts *o)
{
	static const optdef defs[] = {
		OPT("--server", server), OPT("--from", from), OPT("--to", to),
		OPT("--base-from", base_from), OPT("--base-to", base_to),
		OPT("--compare-from", compare_from), OPT("--compare-to", compare_to),
		OPT("--format", format), OPT("-o", out), OPT("--limit", limit),
	};
	int rc = parse_opts(argc, argv, i, defs, sizeof(defs) / sizeof(defs[0]), 2, o);
	if (rc || o->help)
		return rc ? rc : print_help(help_diff);
	if (o->npos != 2)
		return usage_error("needs two selectors, BASE and COMPARE");
	if ((rc = check_count("--limit", o->limit)))
		return rc;
	const char *fmt = o->format ? o->format : "changes";
	if (strcmp(fmt, "changes") && strcmp(fmt, "top") && strcmp(fmt, "folded") &&
	    strcmp(fmt, "json"))
		return usage_error("unknown format '%s' (changes, top, folded, json)", fmt);
	int changes = !strcmp(fmt, "changes");
	size_t limit = o->limit ? (size_t)strtoull(o->limit, NULL, 10) : 20;
	char limit_s[32];
	/* the list needs the significant rows only, which come first */
	snprintf(limit_s, sizeof(limit_s), "%zu", limit ? limit : 1);
	request rq;
	if (new_request(o, "/api/v1/diff", &rq))
		return EXIT_FAIL;
	add_param(&rq, "base", o->pos[0]);
	add_param(&rq, "compare", o->pos[1]);
	add_param(&rq, "from", o->from);
	add_param(&rq, "to", o->to);
	add_param(&rq, "base_from", o->base_from);
	add_param(&rq, "base_to", o->base_to);
	add_param(&rq, "compare_from", o->compare_from);
	add_param(&rq, "compare_to", o->compare_to);
	add_param(&rq, "format", changes ? "top" : fmt);
	add_param(&rq, "limit", changes ? limit_s : !strcmp(fmt, "top") ? o->limit : NULL);
	rc = http_get(&rq);
	if (!rc && !changes) {
		rc = write_out(&rq.body, o->out, 1);
	} else if (!rc) {
		FILE *saved = stdout;
		if (o->out && !(stdout = fopen(o->out, "w"))) {
			stdout = saved;
			errmsg("%s: %s", o->out, strerror(errno));
			rc = EXIT_FAIL;
		} else {
			rc = print_changes(&rq, limit);
			if (fflush(stdout) && !rc) {
				errmsg("writing %s: %s", o->out ? o->out : "standard output",
				       strerror(errno));
				rc = EXIT_FAIL;
			}
			if (o->out)
				fclose(stdout);
			stdout = saved;
		}
	}
	request_free(&rq);
	return rc;
}

static int cmd_top(int argc, char **argv, int i, opts *o)
{
	static const optdef defs[] = {
		OPT("--server", server), OPT("--from", from), OPT("--to", to),
		OPT("--limit", limit), FLAG("--json", json), OPT("-o", out),
	};
	int rc = parse_opts(argc, argv, i, defs, sizeof(defs) / sizeof(defs[0]), 1, o);
	if (rc || o->help)
		return rc ? rc : print_help(help_top);
	if (o->npos != 1)
		return usage_error("needs a selector, for example '{}'");
	if ((rc = check_count("--limit", o->limit)))
		return rc;
	return do_top(o, o->pos[0], o->limit, o->json, o->out);
}

static int cmd_labels(int argc, char **argv, int i, opts *o, int types)
{
	static const optdef defs[] = {
		OPT("--server", server), OPT("--from", from), OPT("--to", to),
		OPT("--query", query),
	};
	int rc = parse_opts(argc, argv, i, defs, sizeof(defs) / sizeof(defs[0]), types ? 0 : 1, o);
	if (rc || o->help)
		return rc ? rc : print_help(types ? help_types : help_labels);
	request rq;
	if (new_request(o, types ? "/api/v1/types" : "/api/v1/labels", &rq))
		return EXIT_FAIL;
	if (o->npos == 1) {
		/* the name is a path segment: escaped like any value */
		char *n = curl_easy_escape(NULL, o->pos[0], (int)strlen(o->pos[0]));
		if (!n) {
			errmsg("out of memory");
			request_free(&rq);
			return EXIT_FAIL;
		}
		size_t len = (size_t)snprintf(rq.path, sizeof(rq.path), "/api/v1/labels/%s/values", n);
		curl_free(n);
		if (len >= sizeof(rq.path)) {
			request_free(&rq);
			return usage_error("label name too long");
		}
	}
	add_param(&rq, "query", o->query);
	add_param(&rq, "from", o->from);
	add_param(&rq, "to", o->to);
	rc = http_get(&rq);
	if (!rc) {
		rc = print_string_array(&rq);
		if (fflush(stdout) && !rc) {
			errmsg("writing standard output: %s", strerror(errno));
			rc = EXIT_FAIL;
		}
	}
	request_free(&rq);
	return rc;
}

/* ---- debuginfo ---- */

/* Looks for an NT_GNU_BUILD_ID note named "GNU" in d; hex when found. */
static int note_build_id(Elf_Data *d, char *hex)
{
	size_t off = 0, next, name_off, desc_off;
	GElf_Nhdr nh;
	while (d && d->d_buf && off < d->d_size &&
	       (next = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
		if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
		    !memcmp((const char *)d->d_buf + name_off, "GNU", 4) && nh.n_descsz >= 1 &&
		    nh.n_descsz <= WIRE_MAX_BUILD_ID) {
			wire_hex((const uint8_t *)d->d_buf + desc_off, nh.n_descsz, hex);
			return 1;
		}
		off = next;
	}
	return 0;
}

/* The build ID the server files data under, as hex: the GNU build-id note
 * (sections, then PT_NOTE segments, as the server looks), else the
 * fallback ID of wire/wire.h. A file libelf cannot read gets the fallback
 * too: the server is the one that says what is wrong with it. */
static void file_build_id(uint8_t *data, size_t len, char *hex)
{
	hex[0] = 0;
	Elf *e = len ? elf_memory((char *)data, len) : NULL;
	if (e && elf_kind(e) == ELF_K_ELF) {
		for (Elf_Scn *scn = NULL; !hex[0] && (scn = elf_nextscn(e, scn));) {
			GElf_Shdr sh;
			if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_NOTE)
				note_build_id(elf_getdata(scn, NULL), hex);
		}
		size_t nph;
		if (!hex[0] && elf_getphdrnum(e, &nph) == 0)
			for (size_t i = 0; i < nph && !hex[0]; i++) {
				GElf_Phdr ph;
				if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_NOTE)
					note_build_id(elf_getdata_rawchunk(e, (int64_t)ph.p_offset,
					                                   ph.p_filesz, ELF_T_NHDR), hex);
			}
	}
	elf_end(e);
	if (!hex[0]) {
		uint8_t fb[WIRE_FALLBACK_BUILD_ID_LEN];
		wire_fallback_build_id(data, len, fb);
		wire_hex(fb, sizeof(fb), hex);
	}
}

/* Uploads one file; prints its line. 0, or EXIT_FAIL (said why). */
static int upload_one(const opts *o, const char *file)
{
	char hex[2 * WIRE_MAX_BUILD_ID + 1], path[300];
	uint8_t *data = NULL;
	size_t len = 0;
	request rq = {0};
	int rc = EXIT_FAIL, fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		errmsg("%s: %s", file, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		errmsg("%s: not a regular file", file);
		goto out;
	}
	len = (size_t)st.st_size;
	/* private and writable: libelf may want to write, the file never is */
	if (len && (data = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)) ==
	    MAP_FAILED) {
		data = NULL;
		errmsg("%s: %s", file, strerror(errno));
		goto out;
	}
	file_build_id(data, len, hex);
	snprintf(path, sizeof(path), "/api/v1/debuginfo/%s", hex);
	if (new_request(o, path, &rq))
		goto out;
	rq.method = "PUT";
	rq.upload = data ? data : (const uint8_t *)"";
	rq.upload_len = len;
	rq.what = file;
	if ((rc = http_get(&rq)))
		goto out;
	printf("%s %s %s\n", hex, file, rq.status == 201 ? "uploaded" : "already there");
out:
	request_free(&rq);
	if (data)
		munmap(data, len);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int cmd_debuginfo(int argc, char **argv, int i, opts *o)
{
	const char *sub = i < argc ? argv[i++] : "";
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help"))
		return print_help(help_debuginfo);
	int upload = !strcmp(sub, "upload");
	if (!upload && strcmp(sub, "status"))
		return usage_error("wants 'upload FILE...' or 'status BUILD_ID'");
	/* Options anywhere; everything else (all of it after "--") is a file. */
	const char **files = calloc((size_t)argc, sizeof(*files));
	int nfiles = 0, only_pos = 0, rc = 0;
	if (!files) {
		errmsg("out of memory");
		return EXIT_FAIL;
	}
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (only_pos || a[0] != '-' || !a[1]) {
			files[nfiles++] = a;
		} else if (!strcmp(a, "--")) {
			only_pos = 1;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			free(files);
			return print_help(help_debuginfo);
		} else if (!strncmp(a, "--server=", 9)) {
			o->server = a + 9;
		} else if (!strcmp(a, "--server") && i + 1 < argc) {
			o->server = argv[++i];
		} else {
			rc = usage_error(!strcmp(a, "--server") ? "--server needs a value" :
			                 "unknown option %s", a);
			goto out;
		}
	}
	if (upload) {
		if (!nfiles) {
			rc = usage_error("needs at least one FILE");
			goto out;
		}
		elf_version(EV_CURRENT);
		/* every file is tried: one refused file does not stop the rest */
		for (int k = 0; k < nfiles; k++)
			if (upload_one(o, files[k]))
				rc = EXIT_FAIL;
		if (fflush(stdout) && !rc) {
			errmsg("writing standard output: %s", strerror(errno));
			rc = EXIT_FAIL;
		}
		goto out;
	}
	if (nfiles != 1) {
		rc = usage_error("needs one BUILD_ID");
		goto out;
	}
	const char *id = files[0];
	if (strlen(id) > 2 * WIRE_MAX_BUILD_ID || strspn(id, "0123456789abcdef") != strlen(id)) {
		rc = usage_error("a build ID is lowercase hex digits, not '%s'", id);
		goto out;
	}
	char path[300];
	request rq;
	snprintf(path, sizeof(path), "/api/v1/debuginfo/%s", id);
	if ((rc = new_request(o, path, &rq)))
		goto out;
	rq.method = "HEAD";
	rq.ok_404 = 1;
	if (!(rc = http_get(&rq))) {
		if (rq.status == 404) {
			printf("%s missing\n", id);
			rc = EXIT_FAIL;
		} else {
			printf("%s %s %s\n", id, rq.di_kind[0] ? rq.di_kind : "binary",
			       !strcmp(rq.di_dwarf, "yes") ? "dwarf" : "no-dwarf");
		}
	}
	request_free(&rq);
out:
	free(files);
	return rc;
}

int main(int argc, char **argv)
{
	opts o = {0};
	int i = 1, rc;
	const char *token_file = getenv("SMOLDER_TOKEN_FILE");

	/* Global options come before the command. */
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return print_help(help_main);
		if (!strncmp(a, "--server=", 9)) {
			o.server = a + 9;
		} else if (!strcmp(a, "--server")) {
			if (i + 1 >= argc)
				return usage_error("--server needs a value");
			o.server = argv[++i];
		} else if (!strncmp(a, "--token-file=", 13)) {
			token_file = a + 13;
		} else if (!strcmp(a, "--token-file")) {
			if (i + 1 >= argc)
				return usage_error("--token-file needs a value");
			token_file = argv[++i];
		} else {
			return usage_error("unknown option %s", a);
		}
	}
	if (i >= argc) {
		fputs(help_main, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i++];
	if (!strcmp(cmd, "help")) {
		const char *what = i < argc ? argv[i] : "";
		return print_help(!strcmp(what, "query")    ? help_query
		                  : !strcmp(what, "diff")   ? help_diff
		                  : !strcmp(what, "top")    ? help_top
		                  : !strcmp(what, "labels") ? help_labels
		                  : !strcmp(what, "types")  ? help_types
		                  : !strcmp(what, "debuginfo") ? help_debuginfo
		                                            : help_main);
	}
	cmd_name = cmd;
	if (strcmp(cmd, "query") && strcmp(cmd, "diff") && strcmp(cmd, "top") &&
	    strcmp(cmd, "labels") && strcmp(cmd, "types") && strcmp(cmd, "debuginfo")) {
		cmd_name = NULL;
		return usage_error("unknown command '%s'", cmd);
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		errmsg("cannot initialize libcurl");
		return EXIT_FAIL;
	}
	/* --server beats $SMOLDER_SERVER_URL beats the default; a command may
	 * still override it with its own --server. */
	if (!o.server)
		o.server = getenv("SMOLDER_SERVER_URL");
	if (!o.server || !*o.server)
		o.server = DEFAULT_SERVER;
	if (token_file && *token_file) {
		char msg[256], *tok = NULL;
		if (wire_auth_read_token_file(token_file, &tok, NULL, msg, sizeof(msg))) {
			errmsg("%s", msg);
			curl_global_cleanup();
			return EXIT_USAGE;
		}
		char *h = malloc(strlen(tok) + 32);
		if (h) {
			sprintf(h, "Authorization: Bearer %s", tok);
			auth_header = curl_slist_append(NULL, h);
			explicit_bzero(h, strlen(h));
		}
		explicit_bzero(tok, strlen(tok));
		free(tok);
		free(h);
		if (!auth_header) {
			errmsg("out of memory");
			curl_global_cleanup();
			return EXIT_FAIL;
		}
	}
	if (!strcmp(cmd, "query"))
		rc = cmd_query(argc, argv, i, &o);
	else if (!strcmp(cmd, "diff"))
		rc = cmd_diff(argc, argv, i, &o);
	else if (!strcmp(cmd, "top"))
		rc = cmd_top(argc, argv, i, &o);
	else if (!strcmp(cmd, "debuginfo"))
		rc = cmd_debuginfo(argc, argv, i, &o);
	else
		rc = cmd_labels(argc, argv, i, &o, !strcmp(cmd, "types"));
	curl_slist_free_all(auth_header);
	curl_global_cleanup();
	return rc;
}
