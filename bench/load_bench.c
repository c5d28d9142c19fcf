/* load_bench.c - a fleet of simulated agents and a few users against one
 * running smolder-server (bench/load starts it): each host pushes one native
 * batch (wire/wire.h) per period, as smolder-agent does, while query
 * threads ask for the 1-hour merge of one service, /top and /range. It
 * measures the server over HTTP only; it is not a test of the agent.
 *
 *   load_bench --url URL --server-pid PID [--hosts N] [--procs N]
 *              [--seconds N] [--period-s N] [--backfill-min N] [--quick|--smoke]
 *
 * Results on stdout (name value), progress on stderr. Exits 1 when any
 * request failed, so the smoke run in `make test` catches breakage. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/map.h"   /* base_mix64 */
#include "wire/wire.h"

#define TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"
#define NSERVICES 10
#define POOL 2000           /* distinct stacks a service can show */
#define HZ 19
#define BUSY_CPUS 8         /* a busy host: 8 CPUs on CPU all the time */
#define MAXDEPTH 40

static const char *base_url;
static int nhosts = 100, nprocs = 6, seconds = 60, period_s = 10, backfill_min = 60;
static double t_start, t_end;
static atomic_int failed;
/* queries answered 404 "no series match": the service had pushed nothing
 * yet when the user asked (the first seconds), not a failure */
static atomic_int no_data;

static double now_s(void)
{
	return (double)base_monotonic_ns() / 1e9;
}

/* Latencies in ms, appended under a lock; p99 at the end. */
typedef struct lat {
	pthread_mutex_t mu;
	double *v;
	size_t n, cap;
} lat;

static void lat_add(lat *l, double ms)
{
	pthread_mutex_lock(&l->mu);
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 1024;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
		if (!l->v)
			abort();
	}
	l->v[l->n++] = ms;
	pthread_mutex_unlock(&l->mu);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double lat_p(lat *l, double q)
{
	if (!l->n)
		return 0;
	qsort(l->v, l->n, sizeof(*l->v), cmp_d);
	size_t i = (size_t)(q * (double)(l->n - 1) + 0.5);
	return l->v[i];
}

static lat ing_lat = {PTHREAD_MUTEX_INITIALIZER}, q_lat[3] = {
	{PTHREAD_MUTEX_INITIALIZER}, {PTHREAD_MUTEX_INITIALIZER}, {PTHREAD_MUTEX_INITIALIZER}};
static atomic_uint_fast64_t acked_rows, acked_batches, late_pushes, backfill_rows;

/* The objects: a per-service executable and one libc every host shares,
 * so the same stacks recur across the fleet as they do with one build. */
static uint8_t exe_bid[NSERVICES][20], libc_bid[20] = {0x11, 0xc0};
static char exe_name[NSERVICES][32];
/* Stack IDs of every service's pool, hashed once at start so the
 * generator's CPU (it shares the machine with the server) goes to
 * encoding, as an agent's would. */
static uint64_t pool_id[NSERVICES][POOL];

/* Stack idx of service s, leaf first, into f (MAXDEPTH + 2 entries).
 * Frame k from the root depends on idx >> (11 - k), so stacks share
 * prefixes and the merged tree has the shape of a real program's. */
static uint32_t make_stack(int s, uint32_t idx, wire_frame *f)
{
	uint64_t h = base_mix64((uint64_t)s << 32 | idx);
	uint32_t depth = 8 + (uint32_t)(h % 24), n = 0;
	wire_frame root[MAXDEPTH];
	for (uint32_t k = 0; k < depth; k++) {
		uint32_t shift = k < 11 ? 11 - k : 0;
		uint64_t fn = base_mix64((uint64_t)s << 40 | (uint64_t)k << 32 | (idx >> shift)) % 64;
		root[k] = (wire_frame){WIRE_FRAME_USER, k < 2 ? 1 : 0,
		                       (k < 2 ? 0x29000 : 0x10000 * (k + 1)) + fn * 0x40, NULL};
	}
	if (h >> 60 < 5) {          /* about a third ends in the kernel */
		f[n++] = (wire_frame){WIRE_FRAME_KERNEL, 0, 0, "copy_user_enhanced_fast_string"};
		f[n++] = (wire_frame){WIRE_FRAME_KERNEL, 0, 0, "do_syscall_64"};
	}
	for (uint32_t k = depth; k-- > 0;)
		f[n++] = root[k];
	return n;
}

/* One simulated agent. */
typedef struct host {
	int id;
	uint64_t seq;
	uint8_t *sent;          /* [svc slot][POOL]: stacks the server acked */
	char name[32], agent[32];
	char comm[8][32], exe[8][48], svc[8][16];
	int proc_svc[8];
} host;

typedef struct sample {
	int64_t ts;
	uint32_t proc, idx;
} sample;

static int cmp_sample(const void *a, const void *b)
{
	const sample *x = a, *y = b;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	if (x->proc != y->proc)
		return x->proc < y->proc ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

typedef struct body {
	char buf[512];
	size_t n;
} body;

static size_t on_body(char *p, size_t sz, size_t nm, void *arg)
{
	body *b = arg;
	size_t len = sz * nm, room = sizeof(b->buf) - 1 - b->n;
	memcpy(b->buf + b->n, p, len < room ? len : room);
	b->n += len < room ? len : room;
	b->buf[b->n] = 0;
	return len;
}

static size_t discard(char *p, size_t sz, size_t nm, void *arg)
{
	(void)p;
	(void)arg;
	return sz * nm;
}

/* Builds and pushes host h's batch for [start, start + period); resends
 * with every stack on 409, as the agent does. Returns 0 or -EIO. */
static int push(CURL *c, host *h, int64_t start, int timed)
{
	uint32_t nsamp = HZ * BUSY_CPUS * (uint32_t)period_s;
	sample *sm = malloc(nsamp * sizeof(*sm));
	wire_row *rows = malloc(nsamp * sizeof(*rows));
	wire_stack *st = malloc(nsamp * sizeof(*st));
	wire_frame *fr = malloc((size_t)nsamp * (MAXDEPTH + 2) * sizeof(*fr));
	uint32_t *st_slot = malloc(nsamp * sizeof(*st_slot));
	wire_process pr[8];
	wire_label lab[8][5];
	uint8_t *buf = NULL;
	int rc = -EIO;
	if (!sm || !rows || !st || !fr || !st_slot)
		abort();
	uint64_t r = base_mix64(h->seq * 7919 + (uint64_t)h->id);
	for (uint32_t i = 0; i < nsamp; i++) {
		r = base_mix64(r + i);
		/* process 0 is the host's main service, the rest share less */
		uint32_t p = (uint32_t)(r % 100) < 40 ? 0 : 1 + (uint32_t)((r >> 8) % (uint64_t)(nprocs - 1));
		double u = (double)((r >> 20) & 0xfffff) / (double)0x100000;
		sm[i] = (sample){start + (int64_t)((r >> 44) % (uint64_t)period_s) * 1000000000, p,
		                 (uint32_t)(u * u * u * POOL)};
	}
	qsort(sm, nsamp, sizeof(*sm), cmp_sample);
	for (int resend = 0; resend < 2; resend++) {
		uint32_t nrows = 0, nst = 0;
		size_t nfr = 0;
		for (uint32_t i = 0; i < nsamp; i++) {
			int s = h->proc_svc[sm[i].proc];
			uint32_t slot = sm[i].proc * POOL + sm[i].idx;
			if (nrows && rows[nrows - 1].ts_ns == sm[i].ts &&
			    rows[nrows - 1].process == sm[i].proc && i &&
			    sm[i - 1].idx == sm[i].idx) {
				rows[nrows - 1].count++;
				continue;
			}
			uint64_t id = pool_id[s][sm[i].idx];
			if (h->sent[slot] != 2) {   /* 1: in this batch already */
				if (!h->sent[slot]) {
					uint32_t n = make_stack(s, sm[i].idx, fr + nfr);
					st[nst] = (wire_stack){id, fr + nfr, n};
					st_slot[nst++] = slot;
					nfr += n;
					h->sent[slot] = 1;
				}
			}
			rows[nrows++] = (wire_row){sm[i].ts, sm[i].proc, id, 1};
		}
		/* one executable per process: objects are per batch, so the
		 * processes of other services point into their own exe */
		wire_object objs[NSERVICES + 1];
		for (int s = 0; s < NSERVICES; s++)
			objs[s] = (wire_object){exe_bid[s], 20, exe_name[s]};
		objs[NSERVICES] = (wire_object){libc_bid, 20, "/lib/x86_64-linux-gnu/libc.so.6"};
		/* remap frame object indexes: 0 -> the process's exe, 1 -> libc */
		for (uint32_t k = 0; k < nst; k++) {
			int s = h->proc_svc[st_slot[k] / POOL];
			for (uint32_t j = 0; j < st[k].nframes; j++) {
				wire_frame *f = (wire_frame *)&st[k].frames[j];
				if (f->kind == WIRE_FRAME_USER && f->object < 2)
					f->object = f->object ? NSERVICES : (uint32_t)s;
			}
		}
		for (int p = 0; p < nprocs; p++) {
			lab[p][0] = (wire_label){"hostname", h->name};
			lab[p][1] = (wire_label){"comm", h->comm[p]};
			lab[p][2] = (wire_label){"exe", h->exe[p]};
			lab[p][3] = (wire_label){"service", h->svc[p]};
			pr[p] = (wire_process){(uint32_t)(1000 + p), lab[p], 4};
		}
		wire_counter ctr[1] = {{"samples", nsamp}};
		wire_batch b = {h->agent, h->name, h->seq, start, start + (int64_t)period_s * 1000000000,
		                1000000000 / HZ, TYPE, ctr, 1, pr, (uint32_t)nprocs,
		                objs, NSERVICES + 1, st, nst, rows, nrows};
		size_t len = 0;
		base_err err;
		free(buf);
		buf = NULL;
		if (wire_encode(&b, &buf, &len, &err)) {
			fprintf(stderr, "load_bench: wire_encode: %s\n", err.msg);
			goto out;
		}
		body ans = {{0}, 0};
		char url[256];
		snprintf(url, sizeof(url), "%s/api/v1/ingest", base_url);
		struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: " WIRE_CONTENT_TYPE);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, buf);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &ans);
		double t0 = now_s();
		CURLcode cc = curl_easy_perform(c);
		double ms = (now_s() - t0) * 1000;
		long code = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
		curl_slist_free_all(hd);
		if (cc == CURLE_OK && code == 409 && !resend) {
			/* the server lacks a stack: forget the cache, send all */
			memset(h->sent, 0, (size_t)nprocs * POOL);
			continue;
		}
		if (cc != CURLE_OK || code != 200) {
			fprintf(stderr, "load_bench: ingest %s: %ld %s\n", h->name, code,
			        cc != CURLE_OK ? curl_easy_strerror(cc) : ans.buf);
			for (uint32_t k = 0; k < nst; k++)
				h->sent[st_slot[k]] = 0;
			goto out;
		}
		for (uint32_t k = 0; k < nst; k++)
			h->sent[st_slot[k]] = 2;
		if (!timed)
			atomic_fetch_add(&backfill_rows, nrows);
		if (timed) {
			lat_add(&ing_lat, ms);
			atomic_fetch_add(&acked_rows, nrows);
			atomic_fetch_add(&acked_batches, 1);
		}
		rc = 0;
		break;
	}
out:
	h->seq++;
	free(buf);
	free(sm);
	free(rows);
	free(st);
	free(fr);
	free(st_slot);
	return rc;
}

static host *hosts;
static int nthreads_ing = 8;
static int64_t wall0;       /* the timed phase's start, unix ns */

/* Ingest thread t: the hosts h with h % nthreads == t, each due at
 * wall0 + k * period + h * period / nhosts, so pushes spread evenly. */
static void *ingest_main(void *arg)
{
	int t = (int)(intptr_t)arg;
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	int64_t per = (int64_t)period_s * 1000000000;
	/* backfill: the hour before the timed phase, as fast as it goes */
	for (int64_t k = (int64_t)backfill_min * 60 / period_s; k > 0; k--)
		for (int h = t; h < nhosts; h += nthreads_ing)
			if (push(c, &hosts[h], wall0 - k * per, 0))
				atomic_fetch_add(&failed, 1);
	for (int64_t k = 0;; k++) {
		for (int h = t; h < nhosts; h += nthreads_ing) {
			double due = t_start + (double)(k * per + h * per / nhosts) / 1e9;
			/* a server too slow to keep up ends the run on time too;
			 * the pushes it missed show as a lower rate */
			if (due >= t_end || now_s() >= t_end)
				goto out;
			double d = due - now_s();
			if (d > 0)
				usleep((useconds_t)(d * 1e6));
			else if (d < -(double)period_s)
				atomic_fetch_add(&late_pushes, 1);
			if (push(c, &hosts[h], wall0 + k * per, 1))
				atomic_fetch_add(&failed, 1);
		}
	}
out:
	curl_easy_cleanup(c);
	return NULL;
}

static const char *qname[3] = {"merge", "top", "range"};

/* A user: the 1-hour merge of one service, its top functions, the
 * fleet's timeline; one request every half second. */
static void *query_main(void *arg)
{
	int t = (int)(intptr_t)arg;
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	for (int i = t; now_s() < t_end; i++) {
		char url[512];
		int kind = i % 3, svc = i % NSERVICES;
		if (kind == 0)
			snprintf(url, sizeof(url), "%s/api/v1/query?query=%%7Bservice%%3D%%22svc%d%%22%%7D"
			         "&from=now-1h&to=now&max_nodes=2048", base_url, svc);
		else if (kind == 1)
			snprintf(url, sizeof(url), "%s/api/v1/top?query=%%7Bservice%%3D%%22svc%d%%22%%7D"
			         "&from=now-1h&to=now&limit=100", base_url, svc);
		else
			snprintf(url, sizeof(url), "%s/api/v1/range?query=%%7B%%7D&by=service"
			         "&from=now-1h&to=now", base_url);
		curl_easy_setopt(c, CURLOPT_URL, url);
		double t0 = now_s();
		CURLcode cc = curl_easy_perform(c);
		double ms = (now_s() - t0) * 1000;
		long code = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (cc == CURLE_OK && code == 404 && kind != 2) {
			atomic_fetch_add(&no_data, 1);
		} else if (cc != CURLE_OK || code != 200) {
			fprintf(stderr, "load_bench: %s: %ld %s\n", qname[kind], code,
			        curl_easy_strerror(cc));
			atomic_fetch_add(&failed, 1);
		} else {
			lat_add(&q_lat[kind], ms);
		}
		usleep(500000);
	}
	curl_easy_cleanup(c);
	return NULL;
}

static long vm_hwm_kb(long pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int main(int argc, char **argv)
{
	long pid = 0;
	int nq = 2, rc = 1;
	long backfill_hwm = -1;
	double backfill_s = 0;
	static const struct option lo[] = {
		{"url", 1, NULL, 'u'}, {"server-pid", 1, NULL, 'P'}, {"hosts", 1, NULL, 'h'},
		{"procs", 1, NULL, 'p'}, {"seconds", 1, NULL, 's'}, {"period-s", 1, NULL, 'T'},
		{"backfill-min", 1, NULL, 'b'}, {"quick", 0, NULL, 'q'}, {"smoke", 0, NULL, 'S'},
		{"query-threads", 1, NULL, 'Q'}, {NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'u': base_url = optarg; break;
		case 'P': pid = atol(optarg); break;
		case 'h': nhosts = atoi(optarg); break;
		case 'p': nprocs = atoi(optarg); break;
		case 's': seconds = atoi(optarg); break;
		case 'T': period_s = atoi(optarg); break;
		case 'b': backfill_min = atoi(optarg); break;
		case 'Q': nq = atoi(optarg); break;
		case 'q': seconds = 15; backfill_min = 10; break;
		case 'S': nhosts = 3; seconds = 3; period_s = 1; backfill_min = 0; nq = 1; break;
		default:
			fprintf(stderr, "usage: see the comment at the top of load_bench.c\n");
			return 2;
		}
	}
	if (!base_url || nhosts < 1 || nprocs < 2 || nprocs > 8 || seconds < 1 || period_s < 1) {
		fprintf(stderr, "load_bench: --url needed; 2..8 processes; positive counts\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (int s = 0; s < NSERVICES; s++) {
		exe_bid[s][0] = 0xe0;
		exe_bid[s][1] = (uint8_t)s;
		snprintf(exe_name[s], sizeof(exe_name[s]), "/usr/bin/svc%d", s);
	}
	for (int s = 0; s < NSERVICES; s++) {
		wire_object objs[2] = {{exe_bid[s], 20, exe_name[s]},
		                       {libc_bid, 20, "/lib/x86_64-linux-gnu/libc.so.6"}};
		wire_frame f[MAXDEPTH + 2];
		for (uint32_t i = 0; i < POOL; i++)
			pool_id[s][i] = wire_stack_id(objs, 2, f, make_stack(s, i, f));
	}
	hosts = calloc((size_t)nhosts, sizeof(*hosts));
	for (int h = 0; h < nhosts; h++) {
		host *x = &hosts[h];
		x->id = h;
		x->sent = calloc((size_t)nprocs * POOL, 1);
		snprintf(x->name, sizeof(x->name), "host-%03d", h);
		snprintf(x->agent, sizeof(x->agent), "load-agent-%03d", h);
		for (int p = 0; p < nprocs; p++) {
			x->proc_svc[p] = (h + p * 3) % NSERVICES;
			snprintf(x->svc[p], sizeof(x->svc[p]), "svc%d", x->proc_svc[p]);
			snprintf(x->comm[p], sizeof(x->comm[p]), "svc%d-w%d", x->proc_svc[p], p);
			snprintf(x->exe[p], sizeof(x->exe[p]), "/usr/bin/svc%d", x->proc_svc[p]);
		}
	}
	if (nthreads_ing > nhosts)
		nthreads_ing = nhosts;
	pthread_t ti[64], tq[8];
	if (nq > 8)
		nq = 8;
	wall0 = base_realtime_ns();
	double b0 = now_s();
	/* The backfill (the hour before, so the 1-hour merge reads an hour)
	 * runs in the ingest threads with an empty timed phase. */
	if (backfill_min > 0) {
		fprintf(stderr, "load_bench: backfilling %d min of %d hosts\n", backfill_min, nhosts);
		t_start = t_end = 0;
		for (int t = 0; t < nthreads_ing; t++)
			pthread_create(&ti[t], NULL, ingest_main, (void *)(intptr_t)t);
		for (int t = 0; t < nthreads_ing; t++)
			pthread_join(ti[t], NULL);
		backfill_s = now_s() - b0;
		fprintf(stderr, "load_bench: backfill took %.1f s\n", backfill_s);
		backfill_min = 0;
		wall0 += (int64_t)((now_s() - b0) * 1e9);
		/* The backfill is an hour in a minute, no agent's pace: report
		 * its peak apart, and reset VmHWM ("5" to clear_refs, Linux
		 * >= 4.0) so server_peak_rss_mb is the steady state's. */
		backfill_hwm = pid ? vm_hwm_kb(pid) : -1;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%ld/clear_refs", pid);
		FILE *f = pid ? fopen(path, "w") : NULL;
		int bad = !f || fputs("5", f) < 0;
		if ((f && fclose(f)) || bad)
			fprintf(stderr, "load_bench: cannot reset VmHWM; the peak includes the backfill\n");
	}
	t_start = now_s();
	t_end = t_start + seconds;
	for (int t = 0; t < nthreads_ing; t++)
		pthread_create(&ti[t], NULL, ingest_main, (void *)(intptr_t)t);
	for (int t = 0; t < nq; t++)
		pthread_create(&tq[t], NULL, query_main, (void *)(intptr_t)t);
	for (int t = 0; t < nthreads_ing; t++)
		pthread_join(ti[t], NULL);
	for (int t = 0; t < nq; t++)
		pthread_join(tq[t], NULL);
	double el = now_s() - t_start;
	long hwm = pid ? vm_hwm_kb(pid) : -1;
	fprintf(stderr, "load_bench: %d hosts x %d processes, one batch each per %d s, %d s; "
	        "%" PRIu64 " batches acknowledged, %" PRIu64 " late, %d failed; "
	        "%zu merges, %zu tops, %zu ranges; %d queries before their service's "
	        "first batch (404)\n", nhosts, nprocs, period_s, seconds,
	        (uint64_t)acked_batches, (uint64_t)late_pushes, (int)failed, q_lat[0].n,
	        q_lat[1].n, q_lat[2].n, (int)no_data);
	printf("ingest_rows_per_s %.0f\n", (double)acked_rows / el);
	printf("ingest_batches_per_s %.1f\n", (double)acked_batches / el);
	printf("ingest_p99_ms %.1f\n", lat_p(&ing_lat, 0.99));
	printf("query_p99_ms %.1f\n", lat_p(&q_lat[0], 0.99));
	printf("top_p99_ms %.1f\n", lat_p(&q_lat[1], 0.99));
	printf("range_p99_ms %.1f\n", lat_p(&q_lat[2], 0.99));
	printf("server_peak_rss_mb %.1f\n", hwm < 0 ? -1.0 : (double)hwm / 1024);
	if (backfill_hwm >= 0)
		printf("backfill_peak_rss_mb %.1f\n", (double)backfill_hwm / 1024);
	if (backfill_s > 0) {
		/* the backfill is ingest as fast as the server takes it */
		printf("backfill_rows %" PRIu64 "\n", (uint64_t)backfill_rows);
		printf("backfill_rows_per_s %.0f\n", (double)backfill_rows / backfill_s);
	}
	printf("target: 100 hosts at 19 Hz, server_peak_rss_mb <= 256, query_p99_ms <= 1000\n");
	printf("target_met %s\n", nhosts >= 100 && !late_pushes && !failed && hwm >= 0 &&
	       hwm <= 256 * 1024 && lat_p(&q_lat[0], 0.99) <= 1000 ? "yes" : "no");
	rc = failed || !acked_batches ? 1 : 0;
	for (int h = 0; h < nhosts; h++)
		free(hosts[h].sent);
	free(hosts);
	for (int k = 0; k < 3; k++)
		free(q_lat[k].v);
	free(ing_lat.v);
	curl_global_cleanup();
	return rc;
}
