/* gen_wire_corpus.c - writes the named seeds of tests/fuzz/corpus/wire/:
 * encoded batches (whole bodies) and their inflated payloads (which
 * fuzz_wire wraps itself), from an empty batch to one with every frame
 * kind. Not part of the build; from the repo root:
 *
 *   make build/wire/wire.o && cc -std=gnu11 -Wall -Wextra -Werror \
 *     -Wno-missing-field-initializers -D_GNU_SOURCE \
 *     -I. tests/fuzz/gen_wire_corpus.c build/wire/wire.o -llz4 -lxxhash \
 *     -o /tmp/gen_wire && /tmp/gen_wire tests/fuzz/corpus/wire
 *
 * Deterministic; only the files named here are (over)written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>

#include "wire/wire.h"

static const char *dir;

static void put(const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
		perror(path);
		exit(1);
	}
}

/* Writes name.batch (the body) and name.raw (the payload). */
static void seed(const char *name, const wire_batch *b)
{
	uint8_t *buf;
	size_t len;
	wire_err err;
	if (wire_encode(b, &buf, &len, &err)) {
		fprintf(stderr, "%s: %s\n", name, err.msg);
		exit(1);
	}
	char n[256];
	snprintf(n, sizeof(n), "%s.batch", name);
	put(n, buf, len);
	uint32_t rawlen = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 | (uint32_t)buf[14] << 16;
	char *raw = malloc(rawlen + 1);
	if (LZ4_decompress_safe((char *)buf + WIRE_HEADER_LEN, raw, (int)(len - WIRE_HEADER_LEN),
	                        (int)rawlen) != (int)rawlen)
		exit(1);
	snprintf(n, sizeof(n), "%s.raw", name);
	put(n, (uint8_t *)raw, rawlen);
	free(raw);
	free(buf);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	dir = argv[1];
	const int64_t t0 = INT64_C(1767225600000000000);
	const char *type = "process_cpu:samples:count:cpu:nanoseconds:delta";
	wire_batch e = {.agent_id = "a", .hostname = "h", .profile_type = type,
	                .start_ns = t0, .end_ns = t0};
	seed("empty", &e);

	static const uint8_t bid0[20] = {0xde, 0xad, 0xbe, 0xef}, bid1[1] = {7};
	wire_object obj[2] = {{bid0, 20, "/usr/bin/app"}, {bid1, 1, ""}};
	wire_label lab[4] = {{"hostname", "h1"}, {"comm", "app"}, {"exe", "/usr/bin/app"},
	                     {"container", "c0ffee"}};
	wire_process pr[2] = {{100, lab, 3}, {200, lab, 4}};
	wire_frame fr[6] = {
		{WIRE_FRAME_USER, 0, 0x1234, NULL}, {WIRE_FRAME_USER, 1, 0x10, NULL},
		{WIRE_FRAME_KERNEL, 0, 0, "do_syscall_64"}, {WIRE_FRAME_NAMED, 0, 0, "main"},
		{WIRE_FRAME_USER, 0, 0xffffffffffull, NULL}, {WIRE_FRAME_KERNEL, 0, 0, "schedule"},
	};
	wire_stack st[3] = {{0, fr, 4}, {0, fr + 4, 2}, {0, fr + 2, 1}};
	for (int i = 0; i < 3; i++)
		st[i].id = wire_stack_id(obj, 2, st[i].frames, st[i].nframes);
	wire_row rows[5] = {
		{t0, 0, st[0].id, 1}, {t0 + 5, 1, st[1].id, 1000}, {t0 - 3, 0, st[2].id, 2},
		{t0, 1, 0x0123456789abcdefull, 1}, {t0 + 10000000000, 0, st[0].id, 1},
	};
	wire_counter ctr[2] = {{"samples", 1004}, {"dropped", 3}};
	wire_batch b = {"machine-id-1", "h1", 7, t0, t0 + 10000000000, 52631578, type,
	                ctr, 2, pr, 2, obj, 2, st, 3, rows, 5};
	seed("rich", &b);
	wire_batch nostacks = b;
	nostacks.nstacks = 0;
	nostacks.stacks = NULL;
	seed("rows-only", &nostacks);
	wire_batch onestack = b;
	onestack.nstacks = 1;
	onestack.nrows = 1;
	onestack.ncounters = 0;
	seed("one-stack", &onestack);
	/* version 2: named frames with language, file and line (Python's) */
	wire_frame pyfr[4] = {
		{WIRE_FRAME_NAMED, 0, 0, "Work.leaf", "/srv/app.py", 18, "python"},
		{WIRE_FRAME_NAMED, 0, 0, "main", "/srv/app.py", 45, "python"},
		{WIRE_FRAME_NAMED, 0, 0, "[python]", NULL, 0, "python"},
		{WIRE_FRAME_USER, 0, 0x1234, NULL},
	};
	wire_stack pyst[1] = {{wire_stack_id(obj, 2, pyfr, 4), pyfr, 4}};
	wire_row pyrows[1] = {{t0, 0, pyst[0].id, 5}};
	wire_batch pyb = b;
	pyb.stacks = pyst;
	pyb.nstacks = 1;
	pyb.rows = pyrows;
	pyb.nrows = 1;
	seed("python-v2", &pyb);
	return 0;
}
