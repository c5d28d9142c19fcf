/* ksyms.c - kernel addresses to function names, from /proc/kallsyms. The
 * server cannot read a host's kallsyms, so kernel frames are the one thing
 * the agent names itself (docs/architecture.md). Only text symbols are
 * kept, sorted by address; names live in one blob to keep the ~200 k
 * symbols of a distribution kernel within a few megabytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "agent/agent.h"

typedef struct ksym {
	uint64_t addr;
	uint32_t name;  /* offset into names */
} ksym;

struct ag_ksyms {
	ksym *v;
	size_t n;
	char *names;
	size_t names_len;
};

static int cmp_ksym(const void *a, const void *b)
{
	const ksym *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

int ag_ksyms_load(const char *path, ag_ksyms **out)
{
	int rc = 0;
	size_t cap = 0, ncap = 0;
	char *line = NULL;
	size_t lcap = 0;
	ag_ksyms *k = calloc(1, sizeof(*k));
	FILE *f = fopen(path, "re");
	if (!k || !f) {
		rc = k ? -errno : -ENOMEM;
		goto out;
	}
	uint64_t nonzero = 0;
	while (getline(&line, &lcap, f) > 0) {
		char *sp1 = strchr(line, ' ');
		if (!sp1 || !sp1[1] || sp1[2] != ' ')
			continue;
		char t = sp1[1];
		if (t != 't' && t != 'T' && t != 'w' && t != 'W')
			continue;
		char *name = sp1 + 3;
		name[strcspn(name, "\t\n")] = 0;
		uint64_t addr = strtoull(line, NULL, 16);
		nonzero |= addr;
		size_t nl = strlen(name) + 1;
		if (base_grow(&k->v, &cap, k->n + 1, sizeof(*k->v)) ||
		    base_grow(&k->names, &ncap, k->names_len + nl, 1)) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(k->names + k->names_len, name, nl);
		k->v[k->n++] = (ksym){addr, (uint32_t)k->names_len};
		k->names_len += nl;
	}
	/* kptr_restrict hides addresses from those without CAP_SYSLOG: every
	 * address reads 0 and no lookup could succeed. */
	if (!nonzero) {
		rc = -EPERM;
		goto out;
	}
	qsort(k->v, k->n, sizeof(*k->v), cmp_ksym);
out:
	free(line);
	if (f)
		fclose(f);
	if (rc) {
		ag_ksyms_free(k);
		k = NULL;
	}
	*out = k;
	return rc;
}

void ag_ksyms_free(ag_ksyms *k)
{
	if (!k)
		return;
	free(k->v);
	free(k->names);
	free(k);
}

const char *ag_ksyms_find(const ag_ksyms *k, uint64_t addr)
{
	if (!k || !k->n || addr < k->v[0].addr)
		return NULL;
	size_t lo = 0, hi = k->n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (k->v[mid].addr <= addr)
			lo = mid;
		else
			hi = mid;
	}
	return k->names + k->v[lo].name;
}

size_t ag_ksyms_count(const ag_ksyms *k) { return k ? k->n : 0; }
