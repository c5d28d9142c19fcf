/* pprof.c - renders a merge tree as pprof's profile.proto, gzip'd, so
 * `go tool pprof` and every pprof consumer read Smolder's results. One
 * Location per distinct frame name and one Function per function (the
 * names of one interpreted function at different lines share it, each
 * Location carrying its line); one Sample per tree node with self value,
 * its locations the path to the root, leaf first. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "query/q_int.h"
#include "wire/profile.pb-c.h"

/* Splits "name:sample_type:sample_unit:period_type:period_unit[:delta]". */
static int type_parts(const char *type, char parts[5][64])
{
	const char *p = type;
	for (int i = 0; i < 5; i++) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || n >= 64 || (!e && i < 4))
			return -EINVAL;
		memcpy(parts[i], p, n);
		parts[i][n] = 0;
		p = e ? e + 1 : p + n;
	}
	return 0;
}

static int gzip_into(const uint8_t *in, size_t len, q_buf *out)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	/* 15 + 16: a gzip header, as pprof files have */
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	size_t bound = deflateBound(&z, len) + 32;
	int rc = 0;
	if (out->len + bound + 1 > Q_MAX_OUTPUT_BYTES ||
	    q__grow(&out->p, &out->cap, out->len + bound + 1, 1)) {
		rc = -ENOMEM;
		goto out;
	}
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)len;
	z.next_out = (uint8_t *)out->p + out->len;
	z.avail_out = (uInt)bound;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
		rc = -EIO;
		goto out;
	}
	out->len += bound - z.avail_out;
out:
	deflateEnd(&z);
	return rc;
}

int q_tree_pprof(const q_tree *t, const char *type, q_buf *out)
{
	char parts[5][64];
	int rc = type_parts(type, parts);
	if (rc)
		return rc;
	Perftools__Profiles__Profile p = PERFTOOLS__PROFILES__PROFILE__INIT;
	Perftools__Profiles__ValueType st = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	Perftools__Profiles__ValueType pt = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	Perftools__Profiles__ValueType *stp = &st;
	size_t nn = t->nnames;
	/* strings: "", the 4 type words, then each name's function and file,
	 * then the kernel mapping's name */
	size_t nstr = 5 + 2 * nn + 1;
	/* Kernel frames point at a mapping named as perf names the kernel,
	 * "[kernel.kallsyms]": pprof has no kernel flag, and its tools and
	 * perf's converters recognize that name. */
	Perftools__Profiles__Mapping kmap = PERFTOOLS__PROFILES__MAPPING__INIT;
	Perftools__Profiles__Mapping *kmapp = &kmap;
	bool any_kernel = false;
	char **str = calloc(nstr, sizeof(*str));
	Perftools__Profiles__Function *fn = calloc(nn, sizeof(*fn));
	Perftools__Profiles__Function **fnp = calloc(nn, sizeof(*fnp));
	Perftools__Profiles__Location *loc = calloc(nn, sizeof(*loc));
	Perftools__Profiles__Location **locp = calloc(nn, sizeof(*locp));
	Perftools__Profiles__Line *line = calloc(nn, sizeof(*line));
	Perftools__Profiles__Line **linep = calloc(nn, sizeof(*linep));
	Perftools__Profiles__Sample *smp = calloc(t->n, sizeof(*smp));
	Perftools__Profiles__Sample **smpp = calloc(t->n, sizeof(*smpp));
	uint64_t *ids = NULL;
	int64_t *vals = calloc(t->n, sizeof(*vals));
	uint8_t *pack = NULL;
	size_t nids = 0, ns = 0;
	if (!str || !fn || !fnp || !loc || !locp || !line || !linep || !smp || !smpp || !vals) {
		rc = -ENOMEM;
		goto out;
	}
	str[0] = "";
	for (int i = 0; i < 4; i++)
		str[1 + i] = parts[1 + i];
	size_t nfn = 0;
	for (size_t i = 0; i < nn; i++) {
		const qname *q = &t->names[i];
		str[5 + 2 * i] = q->function;
		str[6 + 2 * i] = q->file ? q->file : "";
		/* a function's first name comes first (q->func <= i): Function
		 * IDs count 1, 2, ... in the order the functions appear */
		if (q->func == i) {
			perftools__profiles__function__init(&fn[i]);
			fn[i].id = ++nfn;
			fn[i].name = fn[i].system_name = (int64_t)(5 + 2 * i);
			fn[i].filename = (int64_t)(6 + 2 * i);
			fnp[nfn - 1] = &fn[i];
		}
		perftools__profiles__line__init(&line[i]);
		line[i].function_id = fn[q->func].id;
		line[i].line = q->line;
		linep[i] = &line[i];
		perftools__profiles__location__init(&loc[i]);
		loc[i].id = i + 1;
		loc[i].n_line = 1;
		loc[i].line = &linep[i];
		if (q->kernel) {
			loc[i].mapping_id = 1;
			any_kernel = true;
		}
		locp[i] = &loc[i];
	}
	str[nstr - 1] = "[kernel.kallsyms]";
	kmap.id = 1;
	kmap.filename = (int64_t)(nstr - 1);
	kmap.has_functions = kmap.has_filenames = kmap.has_line_numbers = true;
	/* each node with self: its path to the root, leaf first */
	size_t total_ids = 0;
	for (size_t i = 1; i < t->n; i++) {
		if (!t->nodes[i].self[0])
			continue;
		for (uint32_t j = (uint32_t)i; j != 0; j = t->nodes[j].parent)
			total_ids++;
	}
	ids = malloc((total_ids + 1) * sizeof(*ids));
	if (!ids) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 1; i < t->n; i++) {
		if (!t->nodes[i].self[0])
			continue;
		Perftools__Profiles__Sample *s = &smp[ns];
		perftools__profiles__sample__init(s);
		s->location_id = ids + nids;
		for (uint32_t j = (uint32_t)i; j != 0; j = t->nodes[j].parent)
			ids[nids++] = t->nodes[j].name + 1;
		s->n_location_id = (size_t)(ids + nids - s->location_id);
		vals[ns] = t->nodes[i].self[0];
		s->value = &vals[ns];
		s->n_value = 1;
		smpp[ns++] = s;
	}
	st.type = 1;
	st.unit = 2;
	pt.type = 3;
	pt.unit = 4;
	p.n_sample_type = 1;
	p.sample_type = &stp;
	p.period_type = &pt;
	p.n_sample = ns;
	p.sample = smpp;
	p.n_location = nn;
	p.location = locp;
	if (any_kernel) {
		p.n_mapping = 1;
		p.mapping = &kmapp;
	}
	p.n_function = nfn;
	p.function = fnp;
	p.n_string_table = nstr;
	p.string_table = str;
	size_t len = perftools__profiles__profile__get_packed_size(&p);
	pack = malloc(len + 1);
	if (!pack) {
		rc = -ENOMEM;
		goto out;
	}
	perftools__profiles__profile__pack(&p, pack);
	rc = gzip_into(pack, len, out);
out:
	free(str);
	free(fn);
	free(fnp);
	free(loc);
	free(locp);
	free(line);
	free(linep);
	free(smp);
	free(smpp);
	free(ids);
	free(vals);
	free(pack);
	return rc;
}
