/* push.c - delivery to the server: batches go out oldest first over one
 * keep-alive libcurl handle; while the server is away they wait in a
 * backlog bounded by --buffer-mb (the oldest dropped, and counted, when it
 * overflows) and are retried with exponential backoff.
 *
 * Delivery and debug-info uploads run on a sender thread of their own
 * (ag_push_start), so a server that hangs (a push may wait 60 s, an upload
 * minutes) never delays the sampling loop's drain: when the drain waited
 * for the push, the timeline got a gap and then a spike. The loop hands
 * batches over with ag_push_enqueue and objects to upload with
 * ag_push_offer; the sender owns the libcurl handle, the stack cache and
 * the backoff. At exit, ag_push_stop delivers what is queued, ignoring the
 * backoff, until a deadline.
 *
 * Stacks are sent once per server: the agent remembers the IDs the server
 * acknowledged and leaves their frames out of later batches. A server that
 * lost them (a new data directory) answers 409 and the agent resends the
 * batch with every stack, forgetting what it remembered
 * (docs/protocol.md). Frames are chosen at send time, not when the batch
 * was built, so a backlog never depends on an earlier batch that was
 * dropped. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "agent/agent.h"
#include "wire/auth.h"

/* Known stack IDs kept at most; past this the set starts over (costing
 * one batch with full frames), so memory stays bounded. */
#define MAX_KNOWN (1u << 20)
#define BACKOFF_MIN_NS (1000000000LL)
#define BACKOFF_MAX_NS (60 * 1000000000LL)
#define STOP_RETRY_NS (250000000LL)   /* retry pace while stopping */

/* A queued batch. Rows before `done` were delivered already: a batch the
 * server finds too big (413) goes out in parts of `chunk` rows, halved
 * until they fit. A `busy` one is being sent: the backlog never drops it. */
typedef struct qent {
	ag_batch *b;
	uint32_t done, chunk;
	bool busy;
	struct qent *next;
} qent;

/* An object handed to the sender for upload: a copy of the loop's ag_obj
 * (its own descriptor and name), so the loop may close or forget the
 * object meanwhile. Its flags come back through ag_push_offer. */
enum { J_WAITING, J_RUNNING, J_DONE };
typedef struct upjob {
	ag_obj o;
	int state;
	struct upjob *next;
} upjob;

struct ag_push {
	ag_push_opts o;
	/* the sender's (or a synchronous caller's) alone */
	CURL *curl;
	uint64_t *known;    /* open addressing, 0 = free */
	size_t known_cap, known_n;
	int64_t next_retry, backoff;   /* ag_mono_ns */
	bool down;          /* the last attempt failed */
	ag_push_stats st;   /* counters it keeps; published as st_pub */
	char resp[512];
	size_t resp_len;
	struct curl_slist *auth;    /* "Authorization: Bearer ..." or NULL */
	/* bytes uploaded per hour of the last day (a sliding 24 h window for
	 * --upload-max-mb-per-day), each with the hour it counts */
	uint64_t day_bytes[24];
	int64_t day_hour[24];
	bool day_said;      /* the bound's log line, once per time it is reached */

	/* shared with the loop, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;  /* work arrived, or stop */
	qent *head, *tail;
	size_t queued, queued_bytes;
	uint64_t dropped;   /* batches dropped from a full backlog */
	ag_push_stats st_pub;
	upjob *jobs;
	bool upload_round;  /* a new flush's upload budget is due */
	bool started;
	pthread_t th;
	bool stop;          /* deliver what is queued until stop_deadline, end */
	int64_t stop_deadline;      /* ag_mono_ns */
	atomic_bool stopping;       /* stop, for libcurl's progress callback */
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	ag_push *s = arg;
	size_t len = size * n, room = sizeof(s->resp) - 1 - s->resp_len;
	size_t k = len < room ? len : room;
	memcpy(s->resp + s->resp_len, p, k);
	s->resp_len += k;
	s->resp[s->resp_len] = 0;
	return len;
}

int ag_push_new(const ag_push_opts *opt, ag_push **out)
{
	static bool inited;
	if (!inited) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT))
			return -ENOTSUP;
		inited = true;
	}
	ag_push *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->o = *opt;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	p->curl = curl_easy_init();
	if (opt->token) {
		char h[64 + WIRE_TOKEN_MAX_BYTES];
		snprintf(h, sizeof(h), "Authorization: Bearer %s", opt->token);
		p->auth = curl_slist_append(NULL, h);
		explicit_bzero(h, sizeof(h));
	}
	p->o.token = NULL;  /* not kept: p->auth holds what is sent */
	if (!p->curl || (opt->token && !p->auth)) {
		curl_easy_cleanup(p->curl);
		curl_slist_free_all(p->auth);
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

static void job_free(upjob *j)
{
	if (j->o.fd >= 0)
		close(j->o.fd);
	free(j->o.name);
	free(j);
}

void ag_push_free(ag_push *p)
{
	if (!p)
		return;
	if (p->started)
		ag_push_stop(p, 0);
	for (qent *q = p->head, *nx; q; q = nx) {
		nx = q->next;
		ag_batch_free(q->b);
		free(q);
	}
	for (upjob *j = p->jobs, *nx; j; j = nx) {
		nx = j->next;
		job_free(j);
	}
	curl_easy_cleanup(p->curl);
	curl_slist_free_all(p->auth);
	free(p->known);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static bool known_has(const ag_push *p, uint64_t id)
{
	if (!p->known_cap)
		return false;
	id |= !id;
	for (size_t j = id & (p->known_cap - 1); p->known[j]; j = (j + 1) & (p->known_cap - 1))
		if (p->known[j] == id)
			return true;
	return false;
}

static void known_reset(ag_push *p)
{
	free(p->known);
	p->known = NULL;
	p->known_cap = p->known_n = 0;
}

static void known_add(ag_push *p, uint64_t id)
{
	if (p->known_n >= MAX_KNOWN)
		known_reset(p);
	if ((p->known_n + 1) * 2 > p->known_cap) {
		size_t nc = p->known_cap ? p->known_cap * 2 : 4096;
		uint64_t *nv = calloc(nc, sizeof(*nv));
		if (!nv)
			return;  /* not remembering only costs resending */
		for (size_t i = 0; i < p->known_cap; i++)
			if (p->known[i]) {
				size_t j = p->known[i] & (nc - 1);
				while (nv[j])
					j = (j + 1) & (nc - 1);
				nv[j] = p->known[i];
			}
		free(p->known);
		p->known = nv;
		p->known_cap = nc;
	}
	id |= !id;
	size_t j = id & (p->known_cap - 1);
	while (p->known[j]) {
		if (p->known[j] == id)
			return;
		j = (j + 1) & (p->known_cap - 1);
	}
	p->known[j] = id;
	p->known_n++;
}

void ag_push_enqueue(ag_push *p, ag_batch *b)
{
	qent *q = malloc(sizeof(*q));
	pthread_mutex_lock(&p->mu);
	if (!q) {
		ag_batch_free(b);
		p->dropped++;
		pthread_mutex_unlock(&p->mu);
		return;
	}
	*q = (qent){b, 0, 0, false, NULL};
	if (p->tail)
		p->tail->next = q;
	else
		p->head = q;
	p->tail = q;
	p->queued++;
	p->queued_bytes += ag_batch_bytes(b);
	/* the oldest go first, but never the one being sent nor the newest */
	qent **at = &p->head;
	while (p->queued_bytes > p->o.buffer_bytes && *at && *at != p->tail) {
		qent *h = *at;
		if (h->busy) {
			at = &h->next;
			continue;
		}
		*at = h->next;
		p->queued--;
		p->queued_bytes -= ag_batch_bytes(h->b);
		p->dropped++;
		fprintf(stderr, "smolder-agent: backlog over --buffer-mb: dropped the batch of "
		        "interval %" PRIu64 "\n", ag_batch_wire(h->b)->seq);
		ag_batch_free(h->b);
		free(h);
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* The stacks that rows [lo, hi) use, among w's: every one of them when the
 * range is the whole batch (each stack is there because a row uses it). */
static int range_stacks(const wire_batch *w, uint32_t lo, uint32_t hi, const ag_push *p,
                        bool full, wire_stack *out, uint32_t *n)
{
	uint64_t *set = NULL;
	size_t cap = 0;
	bool all = lo == 0 && hi == w->nrows;
	if (!all) {
		cap = 16;
		while (cap < 2 * (size_t)(hi - lo))
			cap *= 2;
		set = calloc(cap, sizeof(*set));
		if (!set)
			return -ENOMEM;
		for (uint32_t i = lo; i < hi; i++) {
			uint64_t id = w->rows[i].stack_id | !w->rows[i].stack_id;
			size_t j = id & (cap - 1);
			while (set[j] && set[j] != id)
				j = (j + 1) & (cap - 1);
			set[j] = id;
		}
	}
	uint32_t k = 0;
	for (uint32_t i = 0; i < w->nstacks; i++) {
		uint64_t id = w->stacks[i].id;
		if (!full && known_has(p, id))
			continue;
		if (!all) {
			uint64_t key = id | !id;
			size_t j = key & (cap - 1);
			while (set[j] && set[j] != key)
				j = (j + 1) & (cap - 1);
			if (!set[j])
				continue;
		}
		out[k++] = w->stacks[i];
	}
	free(set);
	*n = k;
	return 0;
}

/* libcurl's progress callback: a transfer still running when a stopping
 * agent's deadline has passed is abandoned, so exit does not wait out a
 * 60 s timeout against a server that hangs. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	ag_push *p = arg;
	return atomic_load(&p->stopping) && ag_mono_ns() >= p->stop_deadline;
}

static void abortable(ag_push *p)
{
	curl_easy_setopt(p->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(p->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(p->curl, CURLOPT_XFERINFODATA, p);
}

/* POSTs rows [q->done, q->done + n) of q's batch with the stacks the server
 * may lack (all of theirs when full). Returns the HTTP status, 413 when
 * the part breaks a wire limit, or -1 when the server could not be
 * reached. */
static long post(ag_push *p, const qent *q, uint32_t n, bool full)
{
	const wire_batch *w = ag_batch_wire(q->b);
	wire_batch send = *w;
	uint8_t *body = NULL;
	size_t len = 0;
	long code = -1;
	wire_stack *st = malloc((w->nstacks + 1) * sizeof(*st));
	if (!st || range_stacks(w, q->done, q->done + n, p, full, st, &send.nstacks))
		goto out;
	send.stacks = st;
	send.rows = w->rows + q->done;
	send.nrows = n;
	wire_err e;
	if (wire_encode(&send, &body, &len, &e)) {
		if (p->o.verbose)
			fprintf(stderr, "smolder-agent: batch %" PRIu64 " does not encode: %s\n",
			        w->seq, e.msg);
		code = 413;  /* a wire limit: smaller parts may pass */
		goto out;
	}
	char url[1024];
	snprintf(url, sizeof(url), "%s/api/v1/ingest", p->o.server);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: " WIRE_CONTENT_TYPE);
	for (const struct curl_slist *a = p->auth; a && h; a = a->next)
		h = curl_slist_append(h, a->data);
	curl_easy_reset(p->curl);
	curl_easy_setopt(p->curl, CURLOPT_URL, url);
	curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(p->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(p->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(p->curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(p->curl, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_setopt(p->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, p);
	abortable(p);
	p->resp_len = 0;
	p->resp[0] = 0;
	CURLcode cc = curl_easy_perform(p->curl);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &code);
	} else if (!p->down || p->o.verbose) {
		fprintf(stderr, "smolder-agent: cannot reach %s: %s; keeping batches for later\n",
		        p->o.server, curl_easy_strerror(cc));
	}
	curl_slist_free_all(h);
	if (code == 200) {
		for (uint32_t i = 0; i < send.nstacks; i++)
			known_add(p, send.stacks[i].id);
	}
out:
	free(body);
	free(st);
	return code;
}

/* Sends what is queued, oldest first, until the queue is empty or a send
 * fails (which sets the backoff). Sender thread; takes mu for the queue,
 * never across a transfer. */
static void flush(ag_push *p)
{
	for (;;) {
		pthread_mutex_lock(&p->mu);
		qent *q = p->head;
		if (q)
			q->busy = true;
		pthread_mutex_unlock(&p->mu);
		if (!q)
			return;
		uint32_t left = ag_batch_wire(q->b)->nrows - q->done;
		uint32_t n = q->chunk && q->chunk < left ? q->chunk : left;
		long code = post(p, q, n, false);
		if (code == 409) {
			p->st.stacks_resent++;
			known_reset(p);
			code = post(p, q, n, true);
		}
		if (code == 413 && n > 1) {
			q->chunk = n / 2;
			if (p->o.verbose)
				fprintf(stderr, "smolder-agent: batch %" PRIu64 " too big; sending parts of %u "
				        "rows\n", ag_batch_wire(q->b)->seq, q->chunk);
			continue;
		}
		/* 401/403: a token the server does not take is the operator's to
		 * fix; the batches wait for it like for a server that is down.
		 * 507: its disk is full, and nothing of the batch was stored */
		if (code < 0 || code >= 500 || code == 429 || code == 408 || code == 401 ||
		    code == 403) {
			if ((code == 401 || code == 403) && (!p->down || p->o.verbose))
				fprintf(stderr, "smolder-agent: server refused %s (%ld: %s); check "
				        "--token-file; keeping batches for later\n",
				        p->auth ? "the token" : "a push without a token", code, p->resp);
			else if (code >= 0 && (!p->down || p->o.verbose))
				fprintf(stderr, "smolder-agent: server answered %ld: %s; keeping batches for "
				        "later\n", code, p->resp);
			p->down = true;
			p->st.retries++;
			p->backoff = p->backoff ? p->backoff * 2 : BACKOFF_MIN_NS;
			if (p->backoff > BACKOFF_MAX_NS)
				p->backoff = BACKOFF_MAX_NS;
			p->next_retry = ag_mono_ns() + p->backoff;
			pthread_mutex_lock(&p->mu);
			q->busy = false;
			pthread_mutex_unlock(&p->mu);
			return;
		}
		if (p->down) {
			pthread_mutex_lock(&p->mu);
			size_t queued = p->queued;
			pthread_mutex_unlock(&p->mu);
			fprintf(stderr, "smolder-agent: server is back; delivering %zu queued batches\n",
			        queued);
			p->down = false;
		}
		p->backoff = 0;
		p->next_retry = 0;
		if (code == 200) {
			q->done += n;
			if (q->done < ag_batch_wire(q->b)->nrows)
				continue;
			p->st.batches_sent++;
		} else {
			/* 400, 409 twice, 413 for a single row: never acceptable */
			p->st.batches_rejected++;
			fprintf(stderr, "smolder-agent: server rejected batch %" PRIu64 " (%ld): %s\n",
			        ag_batch_wire(q->b)->seq, code, p->resp);
		}
		/* q is still the head: the backlog never drops a busy entry, and
		 * only this thread takes entries off the front */
		pthread_mutex_lock(&p->mu);
		p->head = q->next;
		if (!p->head)
			p->tail = NULL;
		p->queued--;
		p->queued_bytes -= ag_batch_bytes(q->b);
		pthread_mutex_unlock(&p->mu);
		ag_batch_free(q->b);
		free(q);
	}
}


/* ---- debug-info uploads ----
 *
 * Per object: HEAD tells what the server has (404 nothing; 200 with
 * X-Smolder-Debuginfo: binary|debug|both and X-Smolder-Debuginfo-Dwarf:
 * yes|no). The object goes up when the server has nothing; the host's
 * separate debug file (/usr/lib/debug/.build-id/xx/yyyy.debug) goes up
 * when the server then has no DWARF. Both count against the same size
 * limit and per-flush budget; an object is done (o->uploaded) once nothing
 * more would help, and asked about again next flush until then. */

typedef struct rd {
	int fd;
	uint64_t off;
} rd;

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
	rd *r = arg;
	ssize_t k = pread(r->fd, buf, size * n, (off_t)r->off);
	if (k < 0)
		return CURL_READFUNC_ABORT;
	r->off += (uint64_t)k;
	return (size_t)k;
}

/* What a HEAD said beyond its status. */
typedef struct di_state {
	char kind[16];    /* X-Smolder-Debuginfo, "" when absent */
	char dwarf[8];    /* X-Smolder-Debuginfo-Dwarf */
	char source[16];  /* X-Smolder-Debuginfo-Source: "debuginfod" when the
	                   * server just fetched the files itself */
	char dbgd[16];    /* X-Smolder-Debuginfod: "pending" while the server
	                   * asks debuginfod for them */
} di_state;

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	di_state *d = arg;
	wire_http_header_value(line, size * n, "X-Smolder-Debuginfo", d->kind, sizeof(d->kind));
	wire_http_header_value(line, size * n, "X-Smolder-Debuginfo-Dwarf", d->dwarf, sizeof(d->dwarf));
	wire_http_header_value(line, size * n, "X-Smolder-Debuginfo-Source", d->source,
	                       sizeof(d->source));
	wire_http_header_value(line, size * n, "X-Smolder-Debuginfod", d->dbgd, sizeof(d->dbgd));
	return size * n;
}

/* ---- the daily bound: bytes per hour over a sliding 24 h ---- */

static int64_t hour_now(void)
{
	return ag_mono_ns() / (3600 * INT64_C(1000000000));
}

/* Bytes uploaded in the 24 hours up to hour h. */
static uint64_t day_used(const ag_push *p, int64_t h)
{
	uint64_t sum = 0;
	for (int i = 0; i < 24; i++)
		if (p->day_hour[i] > h - 24 && p->day_hour[i] <= h)
			sum += p->day_bytes[i];
	return sum;
}

static void day_add(ag_push *p, int64_t h, uint64_t bytes)
{
	int i = (int)(h % 24);
	if (p->day_hour[i] != h) {
		p->day_hour[i] = h;
		p->day_bytes[i] = 0;
	}
	p->day_bytes[i] += bytes;
}

/* What the daily bound leaves now (UINT64_MAX without one). */
static uint64_t day_left(const ag_push *p)
{
	if (!p->o.upload_max_day_bytes)
		return UINT64_MAX;
	uint64_t used = day_used(p, hour_now());
	return used < p->o.upload_max_day_bytes ? p->o.upload_max_day_bytes - used : 0;
}

/* HEAD (fd < 0, d filled) or PUT of fd's size bytes under o's build ID.
 * Returns the HTTP status, -1 when the server could not be reached. */
static long debuginfo(ag_push *p, const ag_obj *o, int fd, uint64_t size, di_state *d)
{
	char url[1200], hex[2 * WIRE_MAX_BUILD_ID + 1];
	di_state ignored;
	wire_hex(o->build_id, o->build_id_len, hex);
	snprintf(url, sizeof(url), "%s/api/v1/debuginfo/%s", p->o.server, hex);
	curl_easy_reset(p->curl);
	curl_easy_setopt(p->curl, CURLOPT_URL, url);
	curl_easy_setopt(p->curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(p->curl, CURLOPT_TIMEOUT_MS, 300000L);
	curl_easy_setopt(p->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(p->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(p->curl, CURLOPT_WRITEDATA, p);
	if (!d)
		d = &ignored;
	*d = (di_state){0};
	curl_easy_setopt(p->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(p->curl, CURLOPT_HEADERDATA, d);
	curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, p->auth);
	abortable(p);
	rd r = {fd, 0};
	if (fd >= 0) {
		curl_easy_setopt(p->curl, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(p->curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(p->curl, CURLOPT_READDATA, &r);
		curl_easy_setopt(p->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
	} else {
		curl_easy_setopt(p->curl, CURLOPT_NOBODY, 1L);
	}
	p->resp_len = 0;
	p->resp[0] = 0;
	long code = -1;
	if (curl_easy_perform(p->curl) == CURLE_OK)
		curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

/* The host's separate debug file for o, opened, with its size; -1 when
 * there is none, or it is not o's (its build-id note must match). Looked
 * up on the host, not through the process' root: /proc/PID/root may be
 * gone by upload time, and distributions install debug files host-wide. */
static int debug_file_open(const ag_push *p, const ag_obj *o, uint64_t *size)
{
	char path[4096], hex[2 * WIRE_MAX_BUILD_ID + 1];
	uint8_t id[WIRE_MAX_BUILD_ID];
	struct stat st;
	if (o->build_id_len < 2)
		return -1;
	wire_hex(o->build_id, o->build_id_len, hex);
	snprintf(path, sizeof(path), "%s/.build-id/%.2s/%s.debug",
	         p->o.debug_dir ? p->o.debug_dir : "/usr/lib/debug", hex, hex + 2);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    ag_elf_build_id(fd, id, sizeof(id)) != (int)o->build_id_len ||
	    memcmp(id, o->build_id, o->build_id_len)) {
		close(fd);
		return -1;
	}
	*size = (uint64_t)st.st_size;
	return fd;
}

/* Whether a HEAD's answer asks for a debug file: the server has files but
 * no DWARF. An old server without the headers gets one; it keeps it or
 * not by its own rule. */
static bool wants_debug(const di_state *d)
{
	return strcmp(d->kind, "debug") && strcmp(d->kind, "both") && strcmp(d->dwarf, "yes");
}

/* PUTs fd (size bytes, the object or its debug file) within the limit and
 * *budget. Returns 1 when sent, 0 when it is refused or too big for good
 * (counted and said), -2 when it does not fit what is left of this flush's
 * budget, -1 to stop for this flush (server away). */
static int put_file(ag_push *p, ag_obj *o, int fd, uint64_t size, const char *what,
                    uint64_t *budget)
{
	if (size > p->o.upload_max_bytes ||
	    (p->o.upload_max_day_bytes && size > p->o.upload_max_day_bytes)) {
		p->st.upload_too_big++;
		fprintf(stderr, "smolder-agent: not uploading %s of %s: %" PRIu64 " bytes is over "
		        "--upload-max-mb%s\n", what, o->name, size,
		        size > p->o.upload_max_bytes ? "" : "-per-day");
		return 0;
	}
	/* the daily bound: what does not fit the last 24 h waits, smaller
	 * files may still go */
	if (size > day_left(p)) {
		if (!o->upload_deferred) {
			o->upload_deferred = true;
			p->st.upload_deferred_daily++;
		}
		if (!p->day_said) {
			p->day_said = true;
			fprintf(stderr, "smolder-agent: %.1f MB of debug info uploaded in the last "
			        "24 h, the bound is %.1f MB (--upload-max-mb-per-day): the rest waits\n",
			        (double)day_used(p, hour_now()) / 1048576,
			        (double)p->o.upload_max_day_bytes / 1048576);
		}
		return -2;
	}
	/* rate-bounded: what does not fit this flush waits for the next; a
	 * file bigger than a whole flush's budget goes first in a flush, or it
	 * would never go */
	if (size > *budget && *budget < p->o.upload_budget)
		return -2;
	long code = debuginfo(p, o, fd, size, NULL);
	if (code == 200 || code == 201) {
		*budget -= size < *budget ? size : *budget;
		p->st.uploads++;
		p->st.upload_bytes += size;
		day_add(p, hour_now(), size);
		if (p->o.verbose)
			fprintf(stderr, "smolder-agent: uploaded %s of %s (%" PRIu64 " bytes)\n", what,
			        o->name, size);
		return 1;
	}
	if (code >= 400 && code < 500) {
		p->st.upload_refused++;
		fprintf(stderr, "smolder-agent: server refused %s of %s (%ld): %s\n", what, o->name,
		        code, p->resp);
		return 0;
	}
	return -1;
}

static int by_recent_use(const void *a, const void *b)
{
	const ag_obj *x = *(ag_obj *const *)a, *y = *(ag_obj *const *)b;
	return x->last_used > y->last_used ? -1 : x->last_used < y->last_used;
}

/* One flush's uploads: the objects in todo (n of them), most recently used
 * first, within the flush's budget; each is marked uploaded or
 * upload_failed once settled, and left as it was to be asked again. */
static void upload_objs(ag_push *p, ag_obj **todo, size_t n)
{
	if (!p->o.upload || p->down)
		return;
	/* the daily bound used up: not even a HEAD until it frees up */
	if (!day_left(p))
		return;
	p->day_said = false;
	uint64_t budget = p->o.upload_budget;
	/* the objects of the latest samples first: what users look at now,
	 * not whichever big file the agent happened to meet first */
	qsort(todo, n, sizeof(*todo), by_recent_use);
	for (size_t i = 0; i < n; i++) {
		ag_obj *o = todo[i];
		di_state d;
		long code = debuginfo(p, o, -1, 0, &d);
		if (code != 200 && code != 404)
			break;  /* server away or no debug-info API: later */
		/* the server asks debuginfod for it: ask again next flush */
		if (code == 404 && !strcmp(d.dbgd, "pending"))
			continue;
		/* the server fetched it from debuginfod on this HEAD: nothing
		 * to send, whatever this host has */
		if (code == 200 && !strcmp(d.source, "debuginfod")) {
			p->st.upload_debuginfod++;
			o->uploaded = true;
			continue;
		}
		uint64_t dsize = 0;
		int dfd = -1, rc;
		if (code == 404) {
			rc = put_file(p, o, o->fd, o->size, "the file", &budget);
			if (rc == -2)
				continue;
			if (rc < 0)
				break;
			if (rc == 0) {
				o->upload_failed = true;
				continue;
			}
			if ((dfd = debug_file_open(p, o, &dsize)) < 0) {
				o->uploaded = true;
				continue;
			}
			/* what did the binary bring? */
			code = debuginfo(p, o, -1, 0, &d);
			if (code != 200) {
				close(dfd);
				break;
			}
		}
		if (!wants_debug(&d) || (dfd < 0 && (dfd = debug_file_open(p, o, &dsize)) < 0)) {
			/* the server had all it can use before this flush sent anything */
			if (code == 200 && dfd < 0 && !o->uploaded)
				p->st.upload_on_server++;
			o->uploaded = true;
			if (dfd >= 0)
				close(dfd);
			continue;
		}
		rc = put_file(p, o, dfd, dsize, "the debug file", &budget);
		close(dfd);
		if (rc == -2)
			continue;  /* the binary is there; the debug file next flush */
		if (rc < 0)
			break;
		/* sent, or refused for good: the server has what it will get */
		o->uploaded = true;
	}
}

/* Copies the sender's counters where ag_push_get_stats reads them. */
static void publish(ag_push *p)
{
	pthread_mutex_lock(&p->mu);
	p->st_pub = p->st;
	pthread_mutex_unlock(&p->mu);
}

void ag_push_upload(ag_push *p, ag_objs *objs)
{
	size_t n = 0, all = ag_objs_count(objs);
	ag_obj **todo = malloc((all + 1) * sizeof(*todo));
	if (!todo)
		return;
	for (size_t i = 0; i < all; i++) {
		ag_obj *o = ag_objs_at(objs, i);
		if (!o->uploaded && !o->upload_failed && o->fd >= 0)
			todo[n++] = o;
	}
	upload_objs(p, todo, n);
	free(todo);
	publish(p);
}

/* The sender's share of an upload round: every waiting job, with one
 * flush's budget. */
static void upload_round(ag_push *p)
{
	pthread_mutex_lock(&p->mu);
	p->upload_round = false;
	size_t n = 0;
	for (upjob *j = p->jobs; j; j = j->next)
		n += j->state == J_WAITING;
	ag_obj **todo = malloc((n + 1) * sizeof(*todo));
	upjob **jobs = malloc((n + 1) * sizeof(*jobs));
	n = 0;
	for (upjob *j = p->jobs; todo && jobs && j; j = j->next)
		if (j->state == J_WAITING) {
			j->state = J_RUNNING;
			jobs[n] = j;
			todo[n++] = &j->o;
		}
	pthread_mutex_unlock(&p->mu);
	upload_objs(p, todo, n);
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < n; i++)
		jobs[i]->state = jobs[i]->o.uploaded || jobs[i]->o.upload_failed ? J_DONE : J_WAITING;
	pthread_mutex_unlock(&p->mu);
	free(todo);
	free(jobs);
}

void ag_push_offer(ag_push *p, ag_objs *objs)
{
	size_t all = ag_objs_count(objs);
	pthread_mutex_lock(&p->mu);
	/* what the sender settled goes back to the loop's objects */
	for (upjob **at = &p->jobs; *at;) {
		upjob *j = *at;
		if (j->state != J_DONE) {
			at = &j->next;
			continue;
		}
		for (size_t i = 0; i < all; i++) {
			ag_obj *o = ag_objs_at(objs, i);
			if (o->build_id_len == j->o.build_id_len &&
			    !memcmp(o->build_id, j->o.build_id, o->build_id_len)) {
				o->uploaded |= j->o.uploaded;
				o->upload_failed |= j->o.upload_failed;
			}
		}
		*at = j->next;
		job_free(j);
	}
	if (!p->o.upload) {
		pthread_mutex_unlock(&p->mu);
		return;
	}
	for (size_t i = 0; i < all; i++) {
		ag_obj *o = ag_objs_at(objs, i);
		if (o->uploaded || o->upload_failed || o->fd < 0)
			continue;
		upjob *j = p->jobs;
		while (j && (j->o.build_id_len != o->build_id_len ||
		             memcmp(j->o.build_id, o->build_id, o->build_id_len)))
			j = j->next;
		if (j) {
			j->o.last_used = o->last_used;   /* handed over already */
			continue;
		}
		j = calloc(1, sizeof(*j));
		if (!j)
			break;
		j->o = *o;
		j->o.fd = dup(o->fd);
		j->o.name = strdup(o->name ? o->name : "");
		if (j->o.fd < 0 || !j->o.name) {
			job_free(j);
			break;
		}
		j->state = J_WAITING;
		j->next = p->jobs;
		p->jobs = j;
	}
	p->upload_round = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* The sender thread: delivers batches when the backoff allows, and uploads
 * a round after each offer while the server answers. */
static void *sender(void *arg)
{
	ag_push *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		int64_t now = ag_mono_ns();
		bool stopping = p->stop;
		if (stopping && (!p->head || now >= p->stop_deadline))
			break;
		/* stopping: the queue goes out now, whatever the backoff said,
		 * retried at a short pace until the deadline */
		int64_t due = stopping && p->next_retry > now + STOP_RETRY_NS ?
		              now + STOP_RETRY_NS : p->next_retry;
		bool send = p->head && (!due || now >= due);
		bool up = !stopping && p->upload_round && p->jobs;
		if (!send && !up) {
			int64_t wake = p->head && due ? due : 0;
			if (stopping && (!wake || wake > p->stop_deadline))
				wake = p->stop_deadline;
			if (wake) {
				struct timespec ts = {wake / 1000000000, wake % 1000000000};
				pthread_cond_timedwait(&p->cv, &p->mu, &ts);
			} else {
				pthread_cond_wait(&p->cv, &p->mu);
			}
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		if (send) {
			if (stopping && p->next_retry)
				p->next_retry = 0;
			flush(p);
			if (stopping && p->next_retry)
				p->next_retry = ag_mono_ns() + STOP_RETRY_NS;
		} else {
			upload_round(p);
		}
		publish(p);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	publish(p);
	return NULL;
}

int ag_push_start(ag_push *p)
{
	int rc = pthread_create(&p->th, NULL, sender, p);
	if (rc)
		return -rc;
	p->started = true;
	return 0;
}

size_t ag_push_stop(ag_push *p, int64_t timeout_ns)
{
	if (!p->started)
		return p->queued;
	pthread_mutex_lock(&p->mu);
	p->stop_deadline = ag_mono_ns() + timeout_ns;
	p->stop = true;
	atomic_store(&p->stopping, true);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->th, NULL);
	p->started = false;
	return p->queued;
}

void ag_push_get_stats(const ag_push *p, ag_push_stats *out)
{
	ag_push *m = (ag_push *)p;   /* the lock only: the counters are read */
	pthread_mutex_lock(&m->mu);
	*out = p->st_pub;
	out->batches_dropped += p->dropped;
	out->queued = p->queued;
	out->queued_bytes = p->queued_bytes;
	pthread_mutex_unlock(&m->mu);
}
