/* mkbatch.c - writes a native batch (wire/wire.h) for the integration
 * scripts, valid or broken in one chosen way, so that shell tests never
 * carry hand-made bytes; and prints the fallback build ID of a file.
 *
 *   mkbatch [--seed N] [--processes N] [--stacks N] [--rows N]
 *           [--start-ns NS] [--agent ID] [--omit-stacks] [--break KIND]
 *           [--app-build-id HEX] [--app-offset OFF] [--service NAME] [--python]
 *           [--hostname H] [--comm-prefix P] [--type TYPE] [--value V]
 *           [--lang TAG] OUT
 *   mkbatch --fallback-id FILE
 *
 * The same seed gives the same stacks (and IDs), so a second batch with
 * --omit-stacks refers to stacks a first one sent. Prints
 * "rows=R samples=S stacks=K processes=P" for a batch. KIND: truncate,
 * magic, version, flags, lz4, trailing, label (a label name storage
 * refuses), oversize (a body one byte over WIRE_MAX_BODY). --app-build-id
 * and --app-offset name the leaf object and its offset (hex) in every
 * stack, for tests of the symbolizer on a real file. --service names the
 * processes' service label (default svc); --python makes each stack's
 * named frame a Python one: "Handler.fn_SEED_I" in /srv/app/handlers.py
 * at line 10 + I, language "python" (a version 2 batch). --hostname sets
 * the hostname label (default host-SEED), --comm-prefix the comm labels
 * (default "proc"; process i gets PREFIXi). --type sets the profile type
 * (an agent's off-CPU batches: off_cpu:time:nanoseconds:time:nanoseconds:
 * delta), --value every row's value (default 1 to 5 at random; values
 * near 2^48 make sums past INT64_MAX), --lang the language tag of the
 * named frames without a file or line (a JIT runtime's: js, java). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "base/text.h"
#include "wire/wire.h"

static uint64_t rng;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int k = 0; k < 4; k++)
		p[k] = (uint8_t)(v >> (8 * k));
}

static int fallback_id(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	XXH3_state_t *st = XXH3_createState();
	XXH3_128bits_reset(st);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		XXH3_128bits_update(st, buf, n);
	fclose(f);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
	XXH3_freeState(st);
	char hex[2 * WIRE_FALLBACK_BUILD_ID_LEN + 1];
	base_hex(c.digest, WIRE_FALLBACK_BUILD_ID_LEN, hex);
	printf("%s\n", hex);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned seed = 1, nproc = 3, nstacks = 20, nrows = 200;
	int64_t start = INT64_C(1767225600) * 1000000000;   /* 2026-01-01T00:00Z */
	const char *agent = NULL, *brk = NULL;
	int omit = 0;
	const char *app_bid = NULL, *service = "svc", *hostname = NULL, *comm_prefix = "proc";
	long long app_off = -1;
	int python = 0;
	const char *type = "process_cpu:samples:count:cpu:nanoseconds:delta", *lang = NULL;
	unsigned long long value = 0;
	static const struct option lo[] = {
		{"app-build-id", 1, NULL, 'B'}, {"app-offset", 1, NULL, 'O'},
		{"seed", 1, NULL, 's'}, {"processes", 1, NULL, 'p'}, {"stacks", 1, NULL, 'k'},
		{"rows", 1, NULL, 'r'}, {"start-ns", 1, NULL, 't'}, {"agent", 1, NULL, 'a'},
		{"omit-stacks", 0, NULL, 'o'}, {"break", 1, NULL, 'b'},
		{"fallback-id", 1, NULL, 'f'}, {"service", 1, NULL, 'S'}, {"python", 0, NULL, 'P'},
		{"hostname", 1, NULL, 'H'}, {"comm-prefix", 1, NULL, 'C'}, {"type", 1, NULL, 'T'},
		{"value", 1, NULL, 'V'}, {"lang", 1, NULL, 'L'}, {NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 's': seed = (unsigned)atoi(optarg); break;
		case 'p': nproc = (unsigned)atoi(optarg); break;
		case 'k': nstacks = (unsigned)atoi(optarg); break;
		case 'r': nrows = (unsigned)atoi(optarg); break;
		case 't': start = strtoll(optarg, NULL, 10); break;
		case 'a': agent = optarg; break;
		case 'o': omit = 1; break;
		case 'b': brk = optarg; break;
		case 'f': return fallback_id(optarg);
		case 'B': app_bid = optarg; break;
		case 'O': app_off = strtoll(optarg, NULL, 16); break;
		case 'S': service = optarg; break;
		case 'P': python = 1; break;
		case 'H': hostname = optarg; break;
		case 'C': comm_prefix = optarg; break;
		case 'T': type = optarg; break;
		case 'V': value = strtoull(optarg, NULL, 10); break;
		case 'L': lang = optarg; break;
		default:
			fprintf(stderr, "usage: see the comment at the top of mkbatch.c\n");
			return 2;
		}
	}
	if (optind + 1 != argc || !nproc || !nstacks) {
		fprintf(stderr, "mkbatch: one output file and nonzero counts needed\n");
		return 2;
	}
	const char *out = argv[optind];
	rng = 0x9e3779b97f4a7c15ull ^ seed;

	char agent_buf[64], host[256];
	snprintf(agent_buf, sizeof(agent_buf), "agent-%u", seed);
	if (hostname)
		snprintf(host, sizeof(host), "%s", hostname);
	else
		snprintf(host, sizeof(host), "host-%u", seed);
	static uint8_t bid[2][WIRE_MAX_BUILD_ID] = {{0xde, 0xad, 0xbe, 0xef, 1}, {0xca, 0xfe, 2}};
	uint32_t app_bl = 20;
	if (app_bid) {
		size_t hl = strlen(app_bid);
		if (hl % 2 || hl < 2 || hl > 2 * WIRE_MAX_BUILD_ID) {
			fprintf(stderr, "mkbatch: --app-build-id wants an even number of hex digits\n");
			return 2;
		}
		app_bl = (uint32_t)(hl / 2);
		if (base_unhex(app_bid, app_bl, bid[0]))
			return 2;
	}
	wire_object objs[2] = {{bid[0], app_bl, "/usr/bin/app"}, {bid[1], 20, "/lib/libc.so.6"}};

	wire_process *pr = calloc(nproc, sizeof(*pr));
	wire_label *lab = calloc(nproc * 3, sizeof(*lab));
	char (*comm)[160] = calloc(nproc, sizeof(*comm));
	for (unsigned i = 0; i < nproc; i++) {
		snprintf(comm[i], sizeof(comm[i]), "%.140s%u", comm_prefix, i);
		lab[3 * i] = (wire_label){"hostname", host};
		lab[3 * i + 1] = (wire_label){"comm", comm[i]};
		lab[3 * i + 2] = (wire_label){brk && !strcmp(brk, "label") ? "9lives" : "service",
		                              service};
		pr[i] = (wire_process){1000 + i, &lab[3 * i], 3};
	}
	wire_stack *st = calloc(nstacks, sizeof(*st));
	wire_frame *fr = calloc(nstacks * 4, sizeof(*fr));
	char (*names)[48] = calloc(nstacks, sizeof(*names));
	for (unsigned i = 0; i < nstacks; i++) {
		wire_frame *f = &fr[4 * i];
		snprintf(names[i], sizeof(names[i]), python ? "Handler.fn_%u_%u" : "fn_%u_%u", seed, i);
		uint64_t leaf = 0x1000 + rnd() % 0x10000;
		f[0] = (wire_frame){WIRE_FRAME_USER, 0, app_off >= 0 ? (uint64_t)app_off : leaf, NULL};
		f[1] = (wire_frame){WIRE_FRAME_USER, 1, 0x2000 + rnd() % 0x10000, NULL};
		f[2] = (wire_frame){WIRE_FRAME_NAMED, 0, 0, names[i]};
		if (python) {
			f[2].file = "/srv/app/handlers.py";
			f[2].line = 10 + i;
			f[2].lang = "python";
		} else if (lang) {
			f[2].lang = lang;
		}
		f[3] = (wire_frame){WIRE_FRAME_KERNEL, 0, 0, "do_syscall_64"};
		st[i] = (wire_stack){wire_stack_id(objs, 2, f, 4), f, 4};
	}
	wire_row *rows = calloc(nrows + 1, sizeof(*rows));
	uint64_t samples = 0;
	for (unsigned i = 0; i < nrows; i++) {
		rows[i] = (wire_row){start + (int64_t)(i % 10) * 1000000000, i % nproc,
		                     st[rnd() % nstacks].id, value ? value : 1 + rnd() % 5};
		samples += rows[i].count;
	}
	wire_counter ctr[2] = {{"samples", samples}, {"dropped", 0}};
	wire_batch b = {agent ? agent : agent_buf, host, seed, start, start + 10000000000,
	                52631578, type,
	                ctr, 2, pr, nproc, objs, 2, omit ? NULL : st, omit ? 0 : nstacks,
	                rows, nrows};
	uint8_t *buf = NULL;
	size_t len = 0;
	base_err err;
	int rc = wire_encode(&b, &buf, &len, &err);
	if (rc) {
		fprintf(stderr, "mkbatch: wire_encode: %s (%d)\n", err.msg, rc);
		return 1;
	}
	if (brk && !strcmp(brk, "truncate")) {
		len /= 2;
	} else if (brk && !strcmp(brk, "magic")) {
		buf[0] ^= 0xff;
	} else if (brk && !strcmp(brk, "version")) {
		buf[8] = WIRE_VERSION + 1;
	} else if (brk && !strcmp(brk, "flags")) {
		buf[10] = 1;
	} else if (brk && !strcmp(brk, "lz4")) {
		memset(buf + WIRE_HEADER_LEN, 0xff, len - WIRE_HEADER_LEN);
	} else if (brk && !strcmp(brk, "trailing")) {
		/* a well-formed lz4 block of the payload plus one stray byte */
		uint32_t rawlen = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 |
		                  (uint32_t)buf[14] << 16 | (uint32_t)buf[15] << 24;
		char *raw = calloc(rawlen + 1, 1);
		if (LZ4_decompress_safe((char *)buf + WIRE_HEADER_LEN, raw,
		                        (int)(len - WIRE_HEADER_LEN), (int)rawlen) != (int)rawlen)
			return 1;
		int bound = LZ4_compressBound((int)rawlen + 1);
		buf = realloc(buf, WIRE_HEADER_LEN + (size_t)bound);
		int c = LZ4_compress_default(raw, (char *)buf + WIRE_HEADER_LEN, (int)rawlen + 1,
		                             bound);
		put32(buf + 12, rawlen + 1);
		put32(buf + 16, (uint32_t)c);
		len = WIRE_HEADER_LEN + (size_t)c;
		free(raw);
	} else if (brk && !strcmp(brk, "oversize")) {
		len = WIRE_MAX_BODY + 1;
		buf = realloc(buf, len);
		for (size_t i = WIRE_HEADER_LEN; i < len; i++)
			buf[i] = (uint8_t)rnd();
		put32(buf + 16, (uint32_t)(len - WIRE_HEADER_LEN));
	} else if (brk && strcmp(brk, "label")) {
		fprintf(stderr, "mkbatch: unknown --break %s\n", brk);
		return 2;
	}
	FILE *f = fopen(out, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		perror(out);
		return 1;
	}
	printf("rows=%u samples=%llu stacks=%u processes=%u\n", nrows,
	       (unsigned long long)samples, omit ? 0 : nstacks, nproc);
	free(buf);
	free(pr);
	free(lab);
	free(comm);
	free(st);
	free(fr);
	free(names);
	free(rows);
	return 0;
}
