/* pprof.c - renders a merge tree as pprof's profile.proto, gzip'd, so
 * `go tool pprof` and every pprof consumer read Smolder's results. One
 * Location per distinct frame name and one Function per function (the
 * names of one interpreted function at different lines share it, each
 * Location carrying its line); one Sample per distinct stack, its
 * locations the path to the root, leaf first. */
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

int q_tree_pprof(const q_tree *t, const q_pprof_opts *o, q_buf *out)
{
	char parts[5][64];
	int rc = type_parts(o->type, parts);
	if (rc)
		return rc;
	Perftools__Profiles__Profile p = PERFTOOLS__PROFILES__PROFILE__INIT;
	Perftools__Profiles__ValueType st = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	Perftools__Profiles__ValueType pt = PERFTOOLS__PROFILES__VALUE_TYPE__INIT;
	Perftools__Profiles__ValueType *stp = &st;
	/* the names this tree uses, numbered from 1 (a tree shares its name
	 * table with every query since the cache last started over) */
	uint32_t *local = calloc(t->nnames + 1, sizeof(*local)), *used = NULL;
	/* the Function of each function group (qname.func), numbered from 1 */
	uint32_t *flocal = calloc(t->nnames + 1, sizeof(*flocal));
	size_t nn = 0, nfn = 0;
	if (!local || !flocal) {
		free(local);
		free(flocal);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n; i++)
		for (uint32_t k = 0; t->st[i].v[0] && k < t->st[i].len; k++) {
			uint32_t id = t->st[i].path[k];
			if (!local[id])
				local[id] = (uint32_t)++nn;
		}
	used = malloc((nn + 1) * sizeof(*used));
	if (!used) {
		free(local);
		free(flocal);
		return -ENOMEM;
	}
	for (uint32_t id = 0; id < t->nnames; id++)
		if (local[id])
			used[local[id] - 1] = id;
	/* strings: "", the 4 type words, then each name's function and file,
	 * then the kernel mapping's name, the main one's file and build ID */
	size_t nstr = 5 + 2 * nn + 3;
	/* Mapping 1 is the main one: pprof's readers take the first mapping
	 * for the profile's binary ("File:" in go tool pprof's header), so it
	 * is the selection's main executable, or a mapping with no file when
	 * the selection spans several. Kernel frames point at mapping 2,
	 * named as perf names the kernel, "[kernel.kallsyms]": pprof has no
	 * kernel flag, and its tools and perf's converters recognize that
	 * name. User frames point at no mapping: a name may stand for frames
	 * of several objects. */
	Perftools__Profiles__Mapping kmap = PERFTOOLS__PROFILES__MAPPING__INIT;
	Perftools__Profiles__Mapping mmap_ = PERFTOOLS__PROFILES__MAPPING__INIT;
	Perftools__Profiles__Mapping *maps[2] = {&mmap_, &kmap};
	bool any_kernel = false;
	char **str = calloc(nstr, sizeof(*str));
	Perftools__Profiles__Function *fn = calloc(nn + 1, sizeof(*fn));
	Perftools__Profiles__Function **fnp = calloc(nn + 1, sizeof(*fnp));
	Perftools__Profiles__Location *loc = calloc(nn + 1, sizeof(*loc));
	Perftools__Profiles__Location **locp = calloc(nn + 1, sizeof(*locp));
	Perftools__Profiles__Line *line = calloc(nn + 1, sizeof(*line));
	Perftools__Profiles__Line **linep = calloc(nn + 1, sizeof(*linep));
	Perftools__Profiles__Sample *smp = calloc(t->n + 1, sizeof(*smp));
	Perftools__Profiles__Sample **smpp = calloc(t->n + 1, sizeof(*smpp));
	uint64_t *ids = NULL;
	int64_t *vals = calloc(t->n + 1, sizeof(*vals));
	uint8_t *pack = NULL;
	size_t nids = 0, ns = 0;
	if (!str || !fn || !fnp || !loc || !locp || !line || !linep || !smp || !smpp || !vals) {
		rc = -ENOMEM;
		goto out;
	}
	str[0] = "";
	for (int i = 0; i < 4; i++)
		str[1 + i] = parts[1 + i];
	for (size_t i = 0; i < nn; i++) {
		const qname *q = q__name(t->names, used[i]);
		str[5 + 2 * i] = q->function;
		str[6 + 2 * i] = q->file ? q->file : "";
		/* a function's names share its function and file strings: its
		 * first name seen here gives them */
		if (!flocal[q->func]) {
			Perftools__Profiles__Function *f = &fn[nfn];
			flocal[q->func] = (uint32_t)++nfn;
			perftools__profiles__function__init(f);
			f->id = nfn;
			f->name = f->system_name = (int64_t)(5 + 2 * i);
			f->filename = (int64_t)(6 + 2 * i);
			fnp[nfn - 1] = f;
		}
		perftools__profiles__line__init(&line[i]);
		line[i].function_id = flocal[q->func];
		line[i].line = q->line;
		linep[i] = &line[i];
		perftools__profiles__location__init(&loc[i]);
		loc[i].id = i + 1;
		loc[i].n_line = 1;
		loc[i].line = &linep[i];
		if (q->kernel) {
			loc[i].mapping_id = 2;
			any_kernel = true;
		}
		locp[i] = &loc[i];
	}
	str[nstr - 3] = "[kernel.kallsyms]";
	str[nstr - 2] = o->main_file ? (char *)o->main_file : "";
	str[nstr - 1] = o->main_build_id ? (char *)o->main_build_id : "";
	kmap.id = 2;
	kmap.filename = (int64_t)(nstr - 3);
	kmap.has_functions = kmap.has_filenames = kmap.has_line_numbers = true;
	mmap_.id = 1;
	mmap_.filename = (int64_t)(nstr - 2);
	mmap_.build_id = (int64_t)(nstr - 1);
	mmap_.has_functions = mmap_.has_filenames = mmap_.has_line_numbers = true;
	/* one sample per distinct stack: its path, leaf first */
	size_t nall = 0;
	for (size_t i = 0; i < t->n; i++)
		nall += t->st[i].len;
	ids = malloc((nall + 1) * sizeof(*ids));
	if (!ids) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->n; i++) {
		const qstack *q = &t->st[i];
		if (!q->v[0])
			continue;
		Perftools__Profiles__Sample *s = &smp[ns];
		perftools__profiles__sample__init(s);
		s->location_id = ids + nids;
		for (uint32_t k = q->len; k-- > 0;)
			ids[nids++] = local[q->path[k]];
		s->n_location_id = q->len;
		vals[ns] = q->v[0];
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
	/* no mapping at all when there is nothing to say */
	if (any_kernel || o->main_file) {
		p.n_mapping = any_kernel ? 2 : 1;
		p.mapping = maps;
	}
	p.time_nanos = o->time_ns;
	p.duration_nanos = o->duration_ns;
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
	free(local);
	free(flocal);
	free(used);
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
