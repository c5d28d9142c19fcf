/* fuzz_perfmap.c - the agent's perf-map reader (agent/perfmap.c) on
 * hostile maps: /tmp/perf-PID.map is written by whoever runs a process on
 * the host, and the agent reads it as root. The input is split at 0xff
 * bytes into pieces appended to the map one drain after another (the
 * reader picks up what was appended, whole lines only). After the last
 * piece, every address an entry starts at must carry the name of the
 * latest whole, well-formed line covering it, as ag_pmap_parse_line
 * reads lines (cut to AG_PMAP_MAX_NAME bytes and mended to UTF-8), and no
 * other address any name. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"

static char top[64], proc[128], map[160];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(path);
}

/* libFuzzer leaves through exit(): the temporary tree goes with it */
static void cleanup(void)
{
	nftw(top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void put(const char *path, const char *mode, const void *p, size_t n)
{
	FILE *f = fopen(path, mode);
	if (!f)
		abort();
	if (n && fwrite(p, 1, n, f) != n)
		abort();
	fclose(f);
}

static void init(void)
{
	char tmpl[] = "/tmp/fuzz_perfmap.XXXXXX", path[300];
	if (!mkdtemp(tmpl))
		abort();
	snprintf(top, sizeof(top), "%s", tmpl);
	atexit(cleanup);
	snprintf(proc, sizeof(proc), "%s/proc", top);
	if (mkdir(proc, 0700))
		abort();
	snprintf(path, sizeof(path), "%s/root", top);
	if (mkdir(path, 0700))
		abort();
	snprintf(path, sizeof(path), "%s/root/tmp", top);
	if (mkdir(path, 0700))
		abort();
	snprintf(path, sizeof(path), "%s/7", proc);
	if (mkdir(path, 0700))
		abort();
	snprintf(path, sizeof(path), "%s/7/status", proc);
	put(path, "w", "Uid:\t0\t0\t0\t0\nNSpid:\t7\n", 22);
	char root[200];
	snprintf(root, sizeof(root), "%s/root", top);
	snprintf(path, sizeof(path), "%s/7/root", proc);
	if (symlink(root, path))
		abort();
	snprintf(map, sizeof(map), "%s/root/tmp/perf-7.map", top);
}

typedef struct ent {
	uint64_t start, end;
	const char *name;
	size_t len;
} ent;

/* Whether got is the name of line e as the reader stores it. */
static int same_name(const char *got, const ent *e)
{
	size_t n = strlen(got);
	if (n > e->len || n > AG_PMAP_MAX_NAME || n + 4 < (e->len < AG_PMAP_MAX_NAME ?
	                                                    e->len : AG_PMAP_MAX_NAME))
		return 0;
	char *want = malloc(n + 1);
	if (!want)
		abort();
	memcpy(want, e->name, n);
	want[n] = 0;
	ag_mend_utf8(want, n);
	int ok = !memcmp(want, got, n);
	free(want);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!top[0])
		init();
	unlink(map);
	ag_pmaps *ps;
	ag_pmaps_opts o = {.proc_root = proc};
	if (ag_pmaps_new(&o, &ps))
		abort();
	ag_pmap *pm = NULL;
	uint64_t drain = 0;
	/* the pieces, each appended and read in a drain of its own */
	put(map, "w", NULL, 0);
	size_t from = 0;
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != 0xff)
			continue;
		put(map, "a", data + from, i - from);
		from = i + 1;
		ag_pmap_lookup(ps, &pm, 7, from, ++drain);
	}
	/* the lines of the whole file: their starts, by the rule */
	char *all = malloc(size + 1);
	if (!all)
		abort();
	size_t n = 0;
	for (size_t i = 0; i < size; i++)
		if (data[i] != 0xff)
			all[n++] = (char)data[i];
	ent *e = malloc((n / 2 + 1) * sizeof(*e));
	if (!e)
		abort();
	size_t ne = 0;
	bool cut_short = false;
	for (size_t at = 0; at < n;) {
		char *nl = memchr(all + at, '\n', n - at);
		if (!nl)
			break;              /* unfinished: not read */
		size_t len = (size_t)(nl - (all + at));
		uint64_t s, sz;
		const char *name;
		size_t nlen;
		if (len <= AG_PMAP_MAX_LINE &&
		    ag_pmap_parse_line(all + at, len, &s, &sz, &name, &nlen) == 1)
			e[ne++] = (ent){s, s + sz, name, nlen};
		at += len + 1;
	}
	ag_pmaps_stats st;
	ag_pmaps_get_stats(ps, &st);
	cut_short = st.over_limit > 0;
	ag_pmap_lookup(ps, &pm, 7, 0, ++drain);  /* nothing new: no reread */
	for (size_t i = 0; i < ne && !cut_short; i++) {
		const ent *w = NULL;
		for (size_t j = 0; j < ne; j++)
			if (e[i].start >= e[j].start && e[i].start < e[j].end)
				w = &e[j];
		const char *got = ag_pmap_lookup(ps, &pm, 7, e[i].start, drain);
		if (!got || !same_name(got, w))
			abort();
		/* just past the end: another entry's, or nobody's */
		if (e[i].end != 0) {
			const ent *w2 = NULL;
			for (size_t j = 0; j < ne; j++)
				if (e[i].end >= e[j].start && e[i].end < e[j].end)
					w2 = &e[j];
			got = ag_pmap_lookup(ps, &pm, 7, e[i].end, drain);
			if ((got != NULL) != (w2 != NULL) || (got && !same_name(got, w2)))
				abort();
		}
	}
	free(e);
	free(all);
	ag_pmap_free(ps, pm);
	ag_pmaps_get_stats(ps, &st);
	if (st.files || st.entries || st.bytes)
		abort();
	ag_pmaps_free(ps);
	return 0;
}
