/* fuzz_labels.c - what the agent reads to label a process, on hostile
 * input: its config file (YAML relabel rules; a config that parses is
 * applied to a few labels), a process' environment block (whoever starts a
 * process chooses it, and the agent runs as root) and a container's label
 * file (Docker's config.v2.json, an OCI bundle's config.json). The first
 * byte picks the reader. Whatever parses must apply within its bounds:
 * values at most AG_LABEL_VALUE_MAX bytes, no "__" label left. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

static void check(ag_labeler *lb, ag_proc *pr)
{
	ag_kvs b = {0};
	if (ag_kvs_set(&b, "comm", "app") || ag_kvs_set(&b, "exe", "/usr/bin/app"))
		abort();
	const ag_kvs *l = ag_labeler_labels(lb, pr, &b);
	for (size_t i = 0; l && i < l->n; i++)
		if (strlen(l->v[i].value) > AG_LABEL_VALUE_MAX || !l->v[i].value[0] ||
		    (l->v[i].name[0] == '_' && l->v[i].name[1] == '_'))
			abort();
	ag_kvs_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int kind = data[0] % 4;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	ag_relabel *r = NULL;
	base_err err = {0};
	ag_proc pr = {.pid = 1};
	ag_labels_read("/nonexistent", &pr);
	if (!pr.labels)
		return 0;
	if (kind == 0) {
		if (ag_relabel_parse(p, n, &r, &err) == 0) {
			ag_env_labels("SMOLDER_LABEL_version=1.4\0SMOLDER_LABEL_team=db", 47, false,
			              pr.labels);
		} else if (!strchr(err.msg, ':')) {
			abort();  /* every error names its place */
		}
	} else if (kind == 1) {
		ag_env_labels(p, n, data[0] & 0x80, pr.labels);
	} else {
		ag_container_json(p, n, kind == 2 ? "docker" : "containerd", pr.labels);
		r = NULL;
	}
	ag_labeler *lb;
	if (ag_labeler_new(r, &lb))
		abort();
	check(lb, &pr);
	ag_plabels_free(pr.labels);
	ag_labeler_free(lb);
	return 0;
}
