/* batch.c - one interval's drained counters turned into a wire batch:
 * addresses become (object, file offset) through the process' mappings,
 * kernel addresses become names, and identical normalized stacks get the
 * same stable ID on every host (wire_stack_id). The batch owns every byte
 * it points to (one arena), so it can wait in the backlog while the server
 * is away. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/types.h>

#include "agent/agent.h"
#include "bpf/profile.h"

typedef struct chunk {
	struct chunk *next;
	size_t used, cap;
	_Alignas(16) uint8_t data[];
} chunk;

struct ag_batch {
	wire_batch w;
	chunk *arena;
	size_t bytes;
	ag_obj **objs;
	size_t nobjs;
	wire_counter *counters;
};

static void *aalloc(ag_batch *b, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	chunk *c = b->arena;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = b->arena;
		c->used = 0;
		c->cap = cap;
		b->arena = c;
		b->bytes += sizeof(*c) + cap;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

/* Label values must be UTF-8 (storage rejects anything else); comm and
 * paths are bytes. Invalid sequences become '?'. */
static char *astr(ag_batch *b, const char *s)
{
	size_t n = strlen(s);
	char *d = aalloc(b, n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n + 1);
	ag_mend_utf8(d, n);
	return d;
}

typedef struct sdyn {
	void *v;
	size_t n, cap;
} sdyn;

static void *dpush(sdyn *d, size_t size)
{
	if (d->n == d->cap) {
		size_t c = d->cap ? d->cap * 2 : 64;
		void *nv = realloc(d->v, c * size);
		if (!nv)
			return NULL;
		d->v = nv;
		d->cap = c;
	}
	return (uint8_t *)d->v + size * d->n++;
}

/* stack ID set for one batch: open addressing */
typedef struct idset {
	uint64_t *v;
	size_t cap;
} idset;

static int idset_add(idset *s, uint64_t id, size_t *count)
{
	if ((*count + 1) * 2 > s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 1024;
		uint64_t *nv = calloc(nc, sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i]) {
				size_t j = s->v[i] & (nc - 1);
				while (nv[j])
					j = (j + 1) & (nc - 1);
				nv[j] = s->v[i];
			}
		free(s->v);
		s->v = nv;
		s->cap = nc;
	}
	id |= !id;  /* 0 marks a free slot */
	size_t j = id & (s->cap - 1);
	while (s->v[j]) {
		if (s->v[j] == id)
			return 0;
		j = (j + 1) & (s->cap - 1);
	}
	s->v[j] = id;
	(*count)++;
	return 1;
}

static int add_label(ag_batch *b, sdyn *labels, const char *name, const char *value)
{
	if (!value || !*value)
		return 0;
	wire_label *l = dpush(labels, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->name = name;
	l->value = astr(b, value);
	return l->value ? 0 : -ENOMEM;
}

static bool extra_has(const ag_batch_ctx *ctx, const char *name)
{
	for (uint32_t i = 0; i < ctx->nextra; i++)
		if (!strcmp(ctx->extra_labels[i].name, name))
			return true;
	return false;
}

/* The labels of pr's series: the built-in ones, and with a labeler pr's
 * own through the relabel rules; --label values win over both. Sets
 * *dropped instead when a rule dropped the process. */
static int process_labels(ag_batch_ctx *ctx, ag_batch *b, ag_proc *pr, wire_process *wp,
                          bool *dropped)
{
	sdyn l = {0};
	ag_kvs bl = {0};
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", pr->pid);
	struct {
		const char *name, *value;
	} builtin[] = {
		{"hostname", ctx->hostname}, {"comm", pr->comm}, {"exe", pr->exe},
		{"cgroup", pr->cgroup}, {"container_id", pr->container},
		{"build_id", pr->build_id_hex}, {"pid", ctx->pid_label ? pid : NULL},
	};
	int rc = 0;
	*dropped = false;
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]) && !rc; i++)
		if (builtin[i].value && builtin[i].value[0])
			rc = ag_kvs_set(&bl, builtin[i].name, builtin[i].value);
	const ag_kvs *own = &bl;
	if (!rc && ctx->labeler && !(own = ag_labeler_labels(ctx->labeler, pr, &bl))) {
		*dropped = true;
		goto out;
	}
	for (size_t i = 0; own && i < own->n && !rc; i++)
		if (!extra_has(ctx, own->v[i].name))
			rc = add_label(b, &l, own->v[i].name, own->v[i].value);
	for (uint32_t i = 0; i < ctx->nextra && !rc; i++)
		rc = add_label(b, &l, ctx->extra_labels[i].name, ctx->extra_labels[i].value);
	for (size_t i = 0; i < l.n && !rc; i++) {
		/* names outlive bl: the labeler's lists change on exec */
		wire_label *w = &((wire_label *)l.v)[i];
		if (!(w->name = astr(b, w->name)))
			rc = -ENOMEM;
	}
	if (!rc) {
		wire_label *v = aalloc(b, l.n * sizeof(*v) + 1);
		if (!v)
			rc = -ENOMEM;
		else if (l.n)
			memcpy(v, l.v, l.n * sizeof(*v));
		wp->pid = (uint32_t)pr->pid;
		wp->labels = v;
		wp->nlabels = (uint32_t)l.n;
	}
out:
	ag_kvs_free(&bl);
	free(l.v);
	return rc;
}

/* A Python frame as a named frame with its file and line; unnamed ones
 * (the process gone, the code object unreadable or replaced) as
 * "[python]", so the frame still shows where the interpreter was. The
 * resolver's strings last only until its next call (its cache may start
 * over), so they are copied at once. */
static int python_frame(ag_batch_ctx *ctx, ag_batch *b, pid_t pid, uint64_t w0, uint64_t w1,
                        wire_frame *f)
{
	ag_py_name nm;
	*f = (wire_frame){.kind = WIRE_FRAME_NAMED, .name = "[python]", .lang = "python"};
	if (!ctx->py || ag_py_frame(ctx->py, pid, w0, w1, &nm) || !nm.name || !nm.name[0])
		return 0;
	f->name = astr(b, nm.name);
	f->file = nm.file ? astr(b, nm.file) : NULL;
	f->line = nm.line;
	return !f->name || (nm.file && !f->file) ? -ENOMEM : 0;
}

/* A frame in anonymous executable memory: JIT code. Named by the
 * process' perf map when it has the address, else "[jit] 0xADDR" (the
 * address in the process, for a map the user may hold). Like a Python
 * frame, a named frame with the language of the runtime that made the
 * code, when the agent knows it (ag_proc's jit_lang). */
static int jit_frame(ag_batch_ctx *ctx, ag_batch *b, ag_proc *pr, uint64_t ip, uint64_t count,
                     wire_frame *f)
{
	const char *name = NULL;
	ctx->jit_frames += count;
	if (ctx->pmaps)
		name = ag_pmap_lookup(ctx->pmaps, &pr->pmap, pr->pid, ip, ctx->drain);
	if (name) {
		ctx->jit_frames_named += count;
	} else {
		char *s = aalloc(b, 32);
		if (!s)
			return -ENOMEM;
		snprintf(s, 32, "[jit] 0x%" PRIx64, ip);
		name = s;
	}
	*f = (wire_frame){.kind = WIRE_FRAME_NAMED, .name = name, .lang = pr->jit_lang};
	return 0;
}

int ag_batch_build(ag_batch_ctx *ctx, const ag_count *counts, size_t n, uint64_t seq,
                   int64_t start_ns, int64_t end_ns, ag_batch **out)
{
	int rc = 0;
	static uint64_t gen;
	gen++;
	sdyn procs = {0}, objs = {0}, objp = {0}, stacks = {0}, rows = {0};
	idset ids = {0};
	size_t nids = 0;
	wire_frame *fr = malloc((2 * 128 + 2) * sizeof(*fr));
	ag_batch *b = calloc(1, sizeof(*b));
	if (!b || !fr) {
		rc = -ENOMEM;
		goto out;
	}
	b->w.agent_id = astr(b, ctx->agent_id);
	b->w.hostname = astr(b, ctx->hostname);
	b->w.profile_type = astr(b, ctx->profile_type);
	if (!b->w.agent_id || !b->w.hostname || !b->w.profile_type) {
		rc = -ENOMEM;
		goto out;
	}
	b->w.seq = seq;
	b->w.start_ns = start_ns;
	b->w.end_ns = end_ns;
	b->w.period_ns = ctx->period_ns;

	for (size_t i = 0; i < n; i++) {
		const ag_count *c = &counts[i];
		if (c->kind != ctx->kind)
			continue;
		/* samples are counted in the agent's totals; times are not */
		uint64_t samples = c->kind == AG_KIND_CPU ? c->count : 0;
		ag_proc *pr = ag_procs_get(ctx->procs, c->pid, NULL);
		if (!pr) {
			rc = -ENOMEM;
			goto out;
		}
		if (pr->gone && !pr->nmaps && c->nustack)
			ctx->samples_no_process += samples;
		if (pr->batch_gen != gen) {
			wire_process *wp = dpush(&procs, sizeof(*wp));
			bool dropped;
			if (!wp) {
				rc = -ENOMEM;
				goto out;
			}
			rc = process_labels(ctx, b, pr, wp, &dropped);
			if (rc)
				goto out;
			pr->batch_gen = gen;
			pr->batch_idx = (uint32_t)procs.n - 1;
			if (dropped) {
				procs.n--;
				pr->batch_idx = UINT32_MAX;
			}
		}
		if (pr->batch_idx == UINT32_MAX) {
			ag_labeler_drop_samples(ctx->labeler, samples);
			continue;
		}
		uint32_t nf = 0;
		/* An off-CPU stack is read from a BPF program on a tracepoint:
		 * its innermost frames are that program (loaded after kallsyms
		 * was read, so named after whatever precedes it) and the
		 * tracepoint's glue (bpf_trace_run1, __bpf_trace_*, and
		 * __traceiter_* when more than one program is attached), not
		 * where the thread waits, which starts at __schedule. */
		uint32_t k0 = 0;
		for (uint32_t k = 0; c->kind == AG_KIND_OFFCPU && k < c->nkstack && k < 5; k++) {
			const char *name = ag_ksyms_find(ctx->ksyms, c->kstack[k] - (k > 0));
			if (name && (!strncmp(name, "bpf_trace_run", 13) ||
			             !strncmp(name, "__bpf_trace_", 12) ||
			             !strncmp(name, "__traceiter_", 12)))
				k0 = k + 1;
		}
		/* Every frame but the innermost holds a return address, which
		 * may already be past the end of the calling function (a call
		 * to a noreturn one): one byte back is inside the call, which
		 * the symbolizer names with its line. */
		for (uint32_t k = k0; k < c->nkstack; k++) {
			const char *name = ag_ksyms_find(ctx->ksyms, c->kstack[k] - (k > 0));
			if (!name) {
				ctx->kernel_unknown++;
				name = "[unknown]";
			}
			fr[nf++] = (wire_frame){.kind = WIRE_FRAME_KERNEL, .name = name};
		}
		bool unmapped = false, refreshed = false;
		for (uint32_t k = 0; k < c->nustack; k++) {
			if ((c->ustack[k] & SM_PY_MARK_MASK) == SM_PY_MARK && k + 1 < c->nustack) {
				/* a Python frame: two words (bpf/profile.h) */
				rc = python_frame(ctx, b, pr->pid, c->ustack[k], c->ustack[k + 1],
				                  &fr[nf++]);
				if (rc)
					goto out;
				k++;
				continue;
			}
			uint64_t ip = c->ustack[k] - (k > 0);
			const ag_mapping *m = ag_proc_find(pr, ip);
			if (!m && !refreshed) {
				/* mapped after we read /proc (dlopen, a JIT): read again,
				 * once per process and drain */
				refreshed = true;
				ag_procs_refresh(ctx->procs, pr, ctx->drain);
				m = ag_proc_find(pr, ip);
			}
			wire_frame *f = &fr[nf++];
			if (!m) {
				unmapped = true;
				*f = (wire_frame){.kind = WIRE_FRAME_NAMED, .name = "[unknown]"};
			} else if (m->kind == AG_MAP_VDSO) {
				*f = (wire_frame){.kind = WIRE_FRAME_NAMED, .name = "[vdso]"};
			} else if (m->kind == AG_MAP_ANON) {
				rc = jit_frame(ctx, b, pr, ip, samples, f);
				if (rc)
					goto out;
			} else {
				ag_obj *o = m->obj;
				if (o->batch_gen != gen) {
					wire_object *wo = dpush(&objs, sizeof(*wo));
					ag_obj **op = dpush(&objp, sizeof(*op));
					if (!wo || !op) {
						rc = -ENOMEM;
						goto out;
					}
					*op = o;
					wo->build_id = aalloc(b, o->build_id_len);
					wo->name = astr(b, o->name);
					if (!wo->build_id || !wo->name) {
						rc = -ENOMEM;
						goto out;
					}
					memcpy((uint8_t *)wo->build_id, o->build_id, o->build_id_len);
					wo->build_id_len = o->build_id_len;
					o->batch_gen = gen;
					o->batch_idx = (uint32_t)objs.n - 1;
				}
				o->last_used = ctx->drain;
				*f = (wire_frame){.kind = WIRE_FRAME_USER, .object = o->batch_idx,
				                  .offset = ip - m->start + m->pgoff};
			}
		}
		if (unmapped) {
			ctx->samples_no_mapping += samples;
			if (ctx->verbose)
				fprintf(stderr, "smolder-agent: user frames outside every mapping: pid %d comm %s nmaps %zu gone %d exited %d "
				        "read_drain %" PRIu64 " drain %" PRIu64 " count %" PRIu64 "\n",
				        pr->pid, pr->comm, pr->nmaps, pr->gone, pr->exited,
				        pr->maps_read_drain, ctx->drain, c->count);
		}
		if (nf == 0)  /* neither stack was readable */
			fr[nf++] = (wire_frame){.kind = WIRE_FRAME_NAMED, .name = "[unknown]"};
		/* the walk stopped before the root: the stack says so */
		if (c->utruncated)
			fr[nf++] = (wire_frame){.kind = WIRE_FRAME_NAMED, .name = WIRE_TRUNCATED_FRAME};
		uint64_t id = wire_stack_id(objs.v, (uint32_t)objs.n, fr, nf);
		int added = idset_add(&ids, id, &nids);
		if (added < 0) {
			rc = added;
			goto out;
		}
		if (added) {
			wire_stack *ws = dpush(&stacks, sizeof(*ws));
			wire_frame *copy = aalloc(b, nf * sizeof(*copy));
			if (!ws || !copy) {
				rc = -ENOMEM;
				goto out;
			}
			for (uint32_t k = 0; k < nf; k++) {
				copy[k] = fr[k];
				if ((fr[k].name && !(copy[k].name = astr(b, fr[k].name))) ||
				    (fr[k].file && !(copy[k].file = astr(b, fr[k].file))) ||
				    (fr[k].lang && !(copy[k].lang = astr(b, fr[k].lang)))) {
					rc = -ENOMEM;
					goto out;
				}
			}
			*ws = (wire_stack){id, copy, nf};
		}
		wire_row *r = dpush(&rows, sizeof(*r));
		if (!r) {
			rc = -ENOMEM;
			goto out;
		}
		*r = (wire_row){start_ns, pr->batch_idx, id, c->count};
	}
	/* move the dynamic arrays into the arena */
#define SETTLE(field, nfield, d, type)                                                \
	do {                                                                          \
		type *v_ = aalloc(b, (d).n * sizeof(type) + 1);                      \
		if (!v_) {                                                            \
			rc = -ENOMEM;                                                 \
			goto out;                                                     \
		}                                                                     \
		if ((d).n)                                                            \
			memcpy(v_, (d).v, (d).n * sizeof(type));                      \
		b->w.field = v_;                                                      \
		b->w.nfield = (uint32_t)(d).n;                                        \
	} while (0)
	SETTLE(processes, nprocesses, procs, wire_process);
	SETTLE(objects, nobjects, objs, wire_object);
	SETTLE(stacks, nstacks, stacks, wire_stack);
	SETTLE(rows, nrows, rows, wire_row);
#undef SETTLE
	b->objs = objp.v;
	b->nobjs = objp.n;
	objp.v = NULL;
out:
	free(procs.v);
	free(objs.v);
	free(objp.v);
	free(stacks.v);
	free(rows.v);
	free(ids.v);
	free(fr);
	if (rc) {
		ag_batch_free(b);
		b = NULL;
	}
	*out = b;
	return rc;
}

int ag_batch_set_counters(ag_batch *b, const wire_counter *c, uint32_t n)
{
	wire_counter *v = aalloc(b, n * sizeof(*v) + 1);
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		v[i].value = c[i].value;
		if (!(v[i].name = astr(b, c[i].name)))
			return -ENOMEM;
	}
	b->w.counters = v;
	b->w.ncounters = n;
	return 0;
}

void ag_batch_free(ag_batch *b)
{
	if (!b)
		return;
	for (chunk *c = b->arena, *nx; c; c = nx) {
		nx = c->next;
		free(c);
	}
	free(b->objs);
	free(b);
}

const wire_batch *ag_batch_wire(const ag_batch *b) { return &b->w; }
size_t ag_batch_bytes(const ag_batch *b) { return b->bytes + sizeof(*b); }

ag_obj *const *ag_batch_objects(const ag_batch *b, size_t *n)
{
	*n = b->nobjs;
	return b->objs;
}
