/* fuzz_procs.c - the agent's /proc readers (agent/procs.c) on hostile
 * files: /proc/PID/maps, cgroup and comm come from the kernel, but the
 * paths and names in them are chosen by whoever runs a process on the host
 * (a file named with spaces, " (deleted)", newlines, 4 KiB of hex), and the
 * agent runs as root. The input is split at 0xff bytes into maps, cgroup
 * and comm; the process' root points at an empty directory, so the files
 * its maps name are not found and nothing outside the fuzzer's own
 * directory is read. Whatever is read must be consistent: mappings sorted
 * and findable, container IDs 64 hex digits. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"

static char root[256];
static char top[64];

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

static void put(const char *name, const uint8_t *p, size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/7/%s", root, name);
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	if (n)
		fwrite(p, 1, n, f);
	fclose(f);
}

static void init(void)
{
	char tmpl[] = "/tmp/fuzz_procs.XXXXXX", path[512];
	if (!mkdtemp(tmpl))
		abort();
	snprintf(top, sizeof(top), "%s", tmpl);
	atexit(cleanup);
	snprintf(root, sizeof(root), "%s/proc", tmpl);
	snprintf(path, sizeof(path), "%s/empty", tmpl);
	if (mkdir(root, 0700) || mkdir(path, 0700))
		abort();
	char pd[600];
	snprintf(pd, sizeof(pd), "%s/7", root);
	if (mkdir(pd, 0700))
		abort();
	snprintf(pd, sizeof(pd), "%s/7/root", root);
	if (symlink(path, pd))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!root[0])
		init();
	const uint8_t *part[3] = {data, data + size, data + size};
	size_t len[3] = {size, 0, 0};
	int k = 0;
	for (size_t i = 0; i < size && k < 2; i++)
		if (data[i] == 0xff) {
			len[k] = (size_t)(data + i - part[k]);
			part[++k] = data + i + 1;
			len[k] = size - i - 1;
		}
	put("maps", part[0], len[0]);
	put("cgroup", part[1], len[1]);
	put("comm", part[2], len[2]);

	ag_objs *objs;
	ag_procs *procs;
	if (ag_objs_new(&objs))
		abort();
	ag_procs_opts po = {root, objs};
	if (ag_procs_new(&po, &procs))
		abort();
	ag_proc *pr = ag_procs_get(procs, 7, NULL);
	if (!pr)
		abort();
	/* the kernel never lists overlapping or empty mappings; when the input
	 * has none either, every mapping must be found by its start */
	bool disjoint = true;
	for (size_t i = 0; i < pr->nmaps; i++) {
		const ag_mapping *m = &pr->maps[i];
		if (i && m->start < pr->maps[i - 1].start)
			abort();  /* not sorted */
		if (m->start >= m->end || (i && m->start < pr->maps[i - 1].end))
			disjoint = false;
		if (m->kind == AG_MAP_FILE && !m->obj)
			abort();
	}
	for (size_t i = 0; disjoint && i < pr->nmaps; i++)
		if (ag_proc_find(pr, pr->maps[i].start) != &pr->maps[i])
			abort();
	if (pr->container && strlen(pr->container) != 64)
		abort();
	if (strlen(pr->comm) > 16)
		abort();
	ag_procs_refresh(procs, pr, 1);
	ag_procs_sweep(procs, 100);
	ag_procs_free(procs);
	ag_objs_free(objs);
	return 0;
}
