/* pusher.c - simulated agents for crash_test.sh: N threads push native
 * batches to a server that is being killed and restarted, and log every
 * attempt with its answer, so the script can check afterwards what the
 * server kept. Not a load generator (bench/load_bench.c is).
 *
 *   pusher --url URL [--url URL...] --log FILE --stop FILE [--pushers N]
 *          [--resend]
 *
 * Batch b of pusher p has two processes labelled pusher="pP", batch="b"
 * (two series, so a half-stored batch shows), rows at several timestamps
 * inside 2026-01-01T00:00Z + 10 s, and a known sample total. Every batch
 * carries all its stacks, and a failed batch is never resent: each batch
 * is unique, so "stored exactly once" is a plain comparison of totals.
 * With --resend a batch without an answer (or a 5xx) is sent again, the
 * same bytes, to the next --url in turn, as an agent behind several
 * servers would (clickhouse_test.sh: the store must not keep it twice).
 * Log lines: "pP B TOTAL CODE" per attempt (CODE 0: no answer). Runs until
 * FILE exists. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "wire/wire.h"

#define T0 (INT64_C(1767225600) * 1000000000)
#define NROWS 40

#define MAX_URLS 4
static const char *urls[MAX_URLS], *stop_file;
static int nurls, resend;
static FILE *log_f;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t discard(char *p, size_t sz, size_t nm, void *arg)
{
	(void)p;
	(void)arg;
	return sz * nm;
}

static void *pusher_main(void *arg)
{
	int p = (int)(intptr_t)arg;
	CURL *c = curl_easy_init();
	char ingest[MAX_URLS][256], pname[16];
	int u = p % nurls;
	for (int i = 0; i < nurls; i++)
		snprintf(ingest[i], sizeof(ingest[i]), "%s/api/v1/ingest", urls[i]);
	snprintf(pname, sizeof(pname), "p%d", p);
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: " WIRE_CONTENT_TYPE);
	static const uint8_t bid[20] = {0xc4, 0x45};
	wire_object obj = {bid, 20, "/usr/bin/crashy"};
	wire_frame fr[4][2];
	wire_stack st[4];
	for (int k = 0; k < 4; k++) {
		fr[k][0] = (wire_frame){WIRE_FRAME_USER, 0, 0x1000 + 0x40 * (uint64_t)k, NULL};
		fr[k][1] = (wire_frame){WIRE_FRAME_NAMED, 0, 0, "main"};
		st[k] = (wire_stack){wire_stack_id(&obj, 1, fr[k], 2), fr[k], 2};
	}
	for (unsigned b = 0; access(stop_file, F_OK); b++) {
		char bname[16], agent[32];
		snprintf(bname, sizeof(bname), "%u", b);
		snprintf(agent, sizeof(agent), "crash-%d", p);
		wire_label lab[2][3] = {{{"pusher", pname}, {"batch", bname}, {"part", "a"}},
		                        {{"pusher", pname}, {"batch", bname}, {"part", "b"}}};
		wire_process pr[2] = {{1, lab[0], 3}, {2, lab[1], 3}};
		wire_row rows[NROWS];
		uint64_t total = 0;
		for (int i = 0; i < NROWS; i++) {
			rows[i] = (wire_row){T0 + (int64_t)(i % 10) * 1000000000, (uint32_t)(i % 2),
			                     st[(i / 2) % 4].id, 1 + (uint64_t)((b * 7 + (unsigned)i) % 13)};
			total += rows[i].count;
		}
		wire_counter ctr = {"samples", total};
		wire_batch wb = {agent, "crash-host", b, T0, T0 + 10000000000, 52631578,
		                 "process_cpu:samples:count:cpu:nanoseconds:delta", &ctr, 1,
		                 pr, 2, &obj, 1, st, 4, rows, NROWS};
		uint8_t *buf = NULL;
		size_t len = 0;
		base_err err;
		if (wire_encode(&wb, &buf, &len, &err)) {
			fprintf(stderr, "pusher: wire_encode: %s\n", err.msg);
			exit(1);
		}
		long code;
		do {
			curl_easy_setopt(c, CURLOPT_URL, ingest[u]);
			curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, buf);
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
			curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
			curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
			code = 0;
			if (curl_easy_perform(c) == CURLE_OK)
				curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
			pthread_mutex_lock(&log_mu);
			fprintf(log_f, "%s %u %llu %ld\n", pname, b, (unsigned long long)total, code);
			fflush(log_f);
			pthread_mutex_unlock(&log_mu);
			/* no answer: the server is down; wait a little, as an agent
			 * would, and with --resend try the next server */
			usleep(code && code < 500 ? 20000 : 100000);
			if (code == 0 || code >= 500)
				u = (u + 1) % nurls;
		} while (resend && (code == 0 || code >= 500) && access(stop_file, F_OK));
		free(buf);
	}
	curl_slist_free_all(hd);
	curl_easy_cleanup(c);
	return NULL;
}

int main(int argc, char **argv)
{
	int n = 4;
	const char *log_path = NULL;
	for (int i = 1; i < argc; i += 2) {
		if (!strcmp(argv[i], "--resend")) {
			resend = 1;
			i--;
		} else if (i + 1 == argc) {
			break;
		} else if (!strcmp(argv[i], "--url") && nurls < MAX_URLS)
			urls[nurls++] = argv[i + 1];
		else if (!strcmp(argv[i], "--log"))
			log_path = argv[i + 1];
		else if (!strcmp(argv[i], "--stop"))
			stop_file = argv[i + 1];
		else if (!strcmp(argv[i], "--pushers"))
			n = atoi(argv[i + 1]);
	}
	if (!nurls || !log_path || !stop_file || n < 1 || n > 64) {
		fprintf(stderr, "usage: pusher --url URL [--url URL...] --log FILE --stop FILE "
		        "[--pushers N] [--resend]\n");
		return 2;
	}
	log_f = fopen(log_path, "w");
	if (!log_f) {
		perror(log_path);
		return 1;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_t t[64];
	for (int i = 0; i < n; i++)
		pthread_create(&t[i], NULL, pusher_main, (void *)(intptr_t)i);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	fclose(log_f);
	curl_global_cleanup();
	return 0;
}
