/* fuzz_chrow.c - libFuzzer target: ClickHouse's answers are input from the
 * network like any other. The first byte picks the decoder the ClickHouse
 * backend runs on an answer (series, stacks, locations, symbols); the rest
 * is the answer. Whatever a decoder hands its callback must hold to the
 * bounds clickhouse.c and the query engine rely on without checking again
 * (counts, lengths, NUL-terminated strings, frame kinds and their fields),
 * so a broken bound aborts even when nothing faults.
 *
 * The corpus (tests/fuzz/corpus/chrow) starts from real answers of
 * Debian's clickhouse-server 18.16 to the backend's queries, a selector
 * byte in front. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/ch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* every byte handed over is read, so ASan sees an overrun */
static volatile uint8_t sink;

static void check(bool ok)
{
	if (!ok)
		abort();
}

static int on_series(void *arg, uint64_t id, const st_label *l, uint32_t n)
{
	(void)arg, (void)id;
	check(n >= 1 && n <= ST_MAX_LABELS + 1 && !strcmp(l[0].name, ST_TYPE_LABEL));
	check(strlen(l[0].value) <= ST_MAX_TYPE_LEN);
	for (uint32_t i = 1; i < n; i++)
		check(strlen(l[i].name) <= ST_MAX_LABEL_NAME_LEN &&
		      strlen(l[i].value) <= ST_MAX_LABEL_VALUE_LEN);
	return 0;
}

static int on_stack(void *arg, uint64_t id, const int64_t *locs, size_t n)
{
	(void)arg, (void)id;
	check(n <= ST_MAX_FRAMES);
	for (size_t i = 0; i < n; i++)
		sink ^= (uint8_t)locs[i];
	return 0;
}

static int on_location(void *arg, st_frame_info *fi)
{
	(void)arg;
	check(fi->kind <= ST_FRAME_NAMED);
	if (fi->kind == ST_FRAME_USER) {
		check(fi->object_name && strlen(fi->object_name) <= ST_MAX_OBJECT_NAME_LEN);
		check(fi->build_id_len <= ST_MAX_BUILD_ID_LEN && !fi->name && !fi->file && !fi->lang);
		for (uint32_t i = 0; i < fi->build_id_len; i++)
			sink ^= fi->build_id[i];
	} else {
		check(fi->name && strlen(fi->name) <= ST_MAX_SYMBOL_LEN);
		check(fi->kind == ST_FRAME_NAMED || (!fi->file && !fi->lang && !fi->line));
		check(!fi->file || (fi->file[0] && strlen(fi->file) <= ST_MAX_FILE_LEN));
		check(!fi->lang || (fi->lang[0] && strlen(fi->lang) <= ST_MAX_LANG_LEN));
		check(fi->line <= ST_MAX_LINE);
	}
	free(fi);
	return 0;
}

static int on_symbols(void *arg, int64_t loc, const st_symbol *s, size_t n)
{
	(void)arg, (void)loc;
	check(n >= 1 && n <= ST_MAX_INLINE);
	for (size_t i = 0; i < n; i++) {
		check(s[i].function != NULL);
		check(!s[i].file || s[i].file[0]);
		sink ^= (uint8_t)(strlen(s[i].function) + (s[i].file ? strlen(s[i].file) : 0));
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	int rc;
	switch (data[0] % 4) {
	case 0: rc = st__ch_parse_series(p, n, on_series, NULL); break;
	case 1: rc = st__ch_parse_stacks(p, n, on_stack, NULL); break;
	case 2: rc = st__ch_parse_locations(p, n, on_location, NULL); break;
	default: rc = st__ch_parse_symbols(p, n, on_symbols, NULL); break;
	}
	check(rc == 0 || rc == -EBADMSG || rc == -ENOMEM);
	return 0;
}
