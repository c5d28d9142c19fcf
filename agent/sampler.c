/* sampler.c - the kernel side's user-space half: loads bpf/profile.bpf.c
 * through its skeleton, opens one cpu-clock perf event per online CPU at
 * the configured frequency, takes process events from the ring buffer, and
 * drains the map set the program is not filling (see profile.bpf.c for
 * why there are two). */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "agent/agent.h"
#include "base/map.h"
#include "bpf/profile.h"
#include "profile.skel.h"

_Static_assert((int)AG_STAT_N == (int)SM_STAT_N, "agent and BPF count the same statistics");

struct ag_sampler {
	struct profile_bpf *skel;
	struct bpf_link **links;
	int *pfds;
	int nlinks;
	int ncpus_possible;
	int ncpus_online;
	struct ring_buffer *rb;
	void (*on_event)(void *arg, int kind, pid_t pid, const char *comm, int64_t mono_ns);
	void (*on_py_code)(void *arg, pid_t pid, uint64_t code, uint32_t fingerprint);
	void *arg;
	uint32_t stack_entries;
	bool unw;                     /* the table walker is on */
	uint32_t unw_cap;
	/* the last drain's result */
	ag_count *counts;
	size_t ncounts, counts_cap;
	uint64_t *ips;
	size_t nips, ips_cap;
	struct sm_key *keys;
	size_t keys_cap;
	uint64_t *stack_keys;
	size_t stack_keys_cap;
	/* the batch drain's: the stacks taken out of the map, their frames
	 * in ips, found by ID through stack_idx */
	bool no_batch;                /* this kernel refuses batch operations */
	ag_take_buf cbuf, sbuf;
	struct smeta { size_t off; uint32_t n, flags; } *smeta;
	size_t nsmeta, smeta_cap;
	base_map stack_idx;
	bool verbose;
	double offcpu_scale;          /* 1 / --off-cpu-sample */
	uint64_t offcpu_clamped;      /* values cut to WIRE_MAX_COUNT */
};

static bool g_verbose;

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !g_verbose)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* Which CPUs are online: "0-3,5,7-8". */
static int online_cpus(bool *on, int n)
{
	char buf[1024];
	FILE *f = fopen("/sys/devices/system/cpu/online", "re");
	if (!f)
		return -errno;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = 0;
	int count = 0;
	for (char *p = buf; *p && *p != '\n';) {
		char *end;
		long a = strtol(p, &end, 10), b = a;
		if (end == p)
			return -EINVAL;
		p = end;
		if (*p == '-') {
			b = strtol(p + 1, &end, 10);
			p = end;
		}
		for (long c = a; c <= b && c < n; c++) {
			if (c >= 0 && !on[c]) {
				on[c] = true;
				count++;
			}
		}
		if (*p == ',')
			p++;
	}
	return count;
}

static int on_rb(void *ctx, void *data, size_t len)
{
	ag_sampler *s = ctx;
	const struct sm_event *e = data;
	if (len >= sizeof(struct sm_py_event) && e->kind == SM_EV_PY_CODE) {
		const struct sm_py_event *pe = data;
		if (s->on_py_code)
			s->on_py_code(s->arg, (pid_t)pe->tgid, pe->code, pe->fingerprint);
		return 0;
	}
	if (len < sizeof(*e) || !s->on_event)
		return 0;
	char comm[17];
	memcpy(comm, e->comm, 16);
	comm[16] = 0;
	s->on_event(s->arg, (int)e->kind, (pid_t)e->tgid, comm, (int64_t)e->ktime_ns);
	return 0;
}

/* The off-CPU programs (bpf/offcpu.bpf.h), NULL where the object has
 * none of that name (the walker's copy is x86_64's). */
static const char *const offcpu_progs[] = {
	"sm_offcpu_switch", "sm_offcpu_wake", "sm_offcpu_fork", "sm_offcpu_unwind",
	"sm_offcpu_unw_find",
};

/* Whether this kernel has what off-CPU time needs: the sched_exit_tp
 * tracepoint (Linux 6.16), which runs in the thread that just got the CPU
 * back, where its stacks can be read. Says why not on stderr. */
static bool offcpu_supported(void)
{
	struct btf *vm = btf__load_vmlinux_btf();
	if (!vm) {
		fprintf(stderr, "smolder-agent: --off-cpu: cannot read this kernel's BTF: %s\n",
		        strerror(errno));
		return false;
	}
	bool ok = btf__find_by_name_kind(vm, "btf_trace_sched_exit_tp", BTF_KIND_TYPEDEF) > 0;
	btf__free(vm);
	if (!ok)
		fprintf(stderr, "smolder-agent: --off-cpu needs the sched_exit_tp tracepoint "
		        "(Linux 6.16 or later), which this kernel lacks\n");
	return ok;
}

/* Sets up the off-CPU programs before load: on with their settings, or
 * not loaded at all. */
static int offcpu_prepare(ag_sampler *s, const ag_sampler_opts *opt)
{
	struct bpf_object *obj = s->skel->obj;
	if (opt->offcpu && !offcpu_supported())
		return -EOPNOTSUPP;
	for (size_t i = 0; i < sizeof(offcpu_progs) / sizeof(offcpu_progs[0]); i++) {
		struct bpf_program *p = bpf_object__find_program_by_name(obj, offcpu_progs[i]);
		if (!p)
			continue;
		bpf_program__set_autoload(p, opt->offcpu);
		/* the walker's copies run by tail call only */
		if (!strcmp(offcpu_progs[i], "sm_offcpu_unwind") ||
		    !strcmp(offcpu_progs[i], "sm_offcpu_unw_find"))
			bpf_program__set_autoattach(p, false);
	}
	/* without --off-cpu its maps are not even created: task storage is
	 * Linux 5.11's, and the sampler must load where it is missing */
	const char *maps[] = {"offcpu_threads", "offcpu_unw_progs"};
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(obj, maps[i]);
		if (m)
			bpf_map__set_autocreate(m, opt->offcpu);
	}
	if (!opt->offcpu)
		return 0;
	double p = opt->offcpu_sample > 0 && opt->offcpu_sample <= 1 ? opt->offcpu_sample : 1;
	s->offcpu_scale = 1 / p;
	s->skel->rodata->cfg_offcpu_min_ns = opt->offcpu_min_ns;
	/* sampled when a uniform u32 is <= p * 2^32 - 1 */
	double t = p * 4294967296.0 - 1;
	s->skel->rodata->cfg_offcpu_sample = t >= 4294967295.0 ? 0xffffffffu :
	                                     t <= 0 ? 0 : (uint32_t)t;
	return 0;
}

/* Points the off-CPU walker's program array at its programs, the walk
 * and its mapping lookup (after load: libbpf cannot fill a slot with a
 * program it may not load). */
static int offcpu_link_walker(ag_sampler *s)
{
	static const char *const progs[] = {"sm_offcpu_unwind", "sm_offcpu_unw_find"};
	struct bpf_object *obj = s->skel->obj;
	struct bpf_map *m = bpf_object__find_map_by_name(obj, "offcpu_unw_progs");
	if (!m)
		return 0;   /* no table walker on this architecture */
	for (uint32_t slot = 0; slot < sizeof(progs) / sizeof(progs[0]); slot++) {
		struct bpf_program *p = bpf_object__find_program_by_name(obj, progs[slot]);
		if (!p)
			return -ENOENT;
		int fd = bpf_program__fd(p);
		if (bpf_map_update_elem(bpf_map__fd(m), &slot, &fd, BPF_ANY))
			return -errno;
	}
	return 0;
}

/* Why loading failed, in words a user can act on. */
static void explain(int err)
{
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		fprintf(stderr, "smolder-agent: this kernel has no BTF (/sys/kernel/btf/vmlinux "
		        "is missing): CO-RE needs CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or later "
		        "with BTF, as Debian 12's kernel has)\n");
	else if (err == -EPERM || err == -EACCES)
		fprintf(stderr, "smolder-agent: not allowed to load BPF programs: run as root, "
		        "or grant CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (for /proc/PID/map_files)\n");
	else
		fprintf(stderr, "smolder-agent: loading the BPF program failed: %s (run with "
		        "-vv to see the verifier's log)\n", strerror(-err));
}

int ag_sampler_open(const ag_sampler_opts *opt, ag_sampler **out)
{
	int rc = 0;
	bool *on = NULL;
	ag_sampler *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	g_verbose = s->verbose = opt->verbose;
	libbpf_set_print(print_fn);
	s->on_event = opt->on_event;
	s->on_py_code = opt->on_py_code;
	s->arg = opt->arg;
	s->offcpu_scale = 1;
	s->ncpus_possible = libbpf_num_possible_cpus();
	if (s->ncpus_possible <= 0) {
		rc = s->ncpus_possible ? s->ncpus_possible : -EINVAL;
		goto out;
	}
	on = calloc((size_t)s->ncpus_possible, sizeof(*on));
	if (!on) {
		rc = -ENOMEM;
		goto out;
	}
	s->ncpus_online = online_cpus(on, s->ncpus_possible);
	if (s->ncpus_online <= 0) {
		rc = s->ncpus_online ? s->ncpus_online : -ENODEV;
		goto out;
	}

	s->skel = profile_bpf__open();
	if (!s->skel) {
		rc = -errno;
		explain(rc);
		goto out;
	}
	s->skel->rodata->cfg_kernel_stacks = opt->kernel_stacks;
	s->skel->rodata->cfg_filter_tgid = (uint32_t)opt->filter_pid;
	s->skel->rodata->cfg_unwind = opt->unwind;
	s->skel->rodata->cfg_python = opt->unwind && opt->python;
	rc = offcpu_prepare(s, opt);
	if (rc)
		goto out;
	/* The rows array is preallocated kernel memory: its whole size is
	 * spent at load (16 bytes a row), so it is sized by the operator. */
	s->unw_cap = opt->unwind && opt->unwind_rows ? opt->unwind_rows : 1;
	bpf_map__set_max_entries(s->skel->maps.unw_rows, s->unw_cap);
	/* Size the maps for an interval's worth of samples, each distinct at
	 * worst (user and kernel stacks are stored apart), capped; the stacks
	 * maps preallocate 1 KiB per entry, which is what the kernel really
	 * spends: 2 CPUs at 19 Hz for 10 s get 2 x 2 MiB. */
	uint64_t per_interval = (uint64_t)s->ncpus_online * opt->frequency * opt->interval_s;
	uint32_t counts = per_interval < 1024 ? 1024 : per_interval > 65536 ? 65536 :
	                  (uint32_t)per_interval;
	/* off-CPU stacks are as many as distinct places threads wait in,
	 * not a rate: a room of their own, set by the operator */
	if (opt->offcpu)
		counts += opt->offcpu_entries;
	uint32_t stacks = 2 * counts;
	s->stack_entries = stacks;
	bpf_map__set_max_entries(s->skel->maps.stacks0, stacks);
	bpf_map__set_max_entries(s->skel->maps.stacks1, stacks);
	bpf_map__set_max_entries(s->skel->maps.counts0, counts);
	bpf_map__set_max_entries(s->skel->maps.counts1, counts);
	rc = profile_bpf__load(s->skel);
	if (rc) {
		explain(rc);
		goto out;
	}
	if (opt->unwind) {
		/* the agent maps a table's rows only while it writes them
		 * (agent/unwind.c): try it once here, so a kernel that refuses
		 * fails at start, not at the first table */
		void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
		               bpf_map__fd(s->skel->maps.unw_rows), 0);
		if (m == MAP_FAILED) {
			rc = -errno;
			fprintf(stderr, "smolder-agent: mapping the unwind rows array failed: %s\n",
			        strerror(-rc));
			goto out;
		}
		munmap(m, 4096);
		s->unw = true;
	}
	if (opt->offcpu && (rc = offcpu_link_walker(s))) {
		fprintf(stderr, "smolder-agent: the off-CPU walker: %s\n", strerror(-rc));
		goto out;
	}
	/* the process tracepoints, and with --off-cpu the scheduler's */
	rc = profile_bpf__attach(s->skel);
	if (rc) {
		fprintf(stderr, "smolder-agent: attaching the tracepoints failed: %s\n",
		        strerror(-rc));
		goto out;
	}
	s->links = calloc((size_t)s->ncpus_possible, sizeof(*s->links));
	s->pfds = calloc((size_t)s->ncpus_possible, sizeof(*s->pfds));
	if (!s->links || !s->pfds) {
		rc = -ENOMEM;
		goto out;
	}
	for (int c = 0; c < s->ncpus_possible; c++) {
		if (!on[c])
			continue;
		struct perf_event_attr a = {
			.type = PERF_TYPE_SOFTWARE,
			.size = sizeof(a),
			.config = PERF_COUNT_SW_CPU_CLOCK,
			.sample_freq = opt->frequency,
			.freq = 1,
		};
		int fd = opt->perf_open ? opt->perf_open(&a, c) :
		         (int)syscall(__NR_perf_event_open, &a, -1, c, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			if (rc == -ENODEV) {
				/* went offline meanwhile: the others still sample (the
				 * error stayed in rc and failed the whole start) */
				rc = 0;
				continue;
			}
			fprintf(stderr, "smolder-agent: perf_event_open on CPU %d failed: %s%s\n", c,
			        strerror(-rc), rc == -EACCES || rc == -EPERM ?
			        " (run as root or with CAP_PERFMON; see "
			        "/proc/sys/kernel/perf_event_paranoid)" : "");
			goto out;
		}
		struct bpf_link *l = bpf_program__attach_perf_event(s->skel->progs.sm_sample, fd);
		if (!l) {
			rc = -errno;
			close(fd);
			fprintf(stderr, "smolder-agent: attaching to CPU %d's perf event failed: %s\n",
			        c, strerror(-rc));
			goto out;
		}
		s->links[s->nlinks] = l;
		s->pfds[s->nlinks++] = fd;
	}
	if (s->nlinks == 0) {
		rc = -ENODEV;
		fprintf(stderr, "smolder-agent: every CPU went offline while starting\n");
		goto out;
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.events), on_rb, s, NULL);
	if (!s->rb) {
		rc = -errno;
		goto out;
	}
out:
	free(on);
	if (rc) {
		ag_sampler_close(s);
		s = NULL;
	}
	*out = s;
	return rc;
}

void ag_sampler_close(ag_sampler *s)
{
	if (!s)
		return;
	ring_buffer__free(s->rb);
	for (int i = 0; i < s->nlinks; i++) {
		bpf_link__destroy(s->links[i]);
		close(s->pfds[i]);
	}
	free(s->links);
	free(s->pfds);
	profile_bpf__destroy(s->skel);  /* detaches the tracepoints, frees the maps */
	free(s->counts);
	free(s->ips);
	free(s->keys);
	free(s->stack_keys);
	ag_take_buf_free(&s->cbuf);
	ag_take_buf_free(&s->sbuf);
	free(s->smeta);
	base_map_free(&s->stack_idx);
	free(s);
}

int ag_sampler_poll(ag_sampler *s, int timeout_ms)
{
	int n = ring_buffer__poll(s->rb, timeout_ms);
	return n == -EINTR ? 0 : n < 0 ? n : 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 256;
	while (c < need)
		c *= 2;
	void *np = realloc(*p, c * size);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = c;
	return 0;
}

/* Frames of one stacks-map entry, appended to s->ips; *flags its
 * SM_STACK_* flags. */
static int read_stack(ag_sampler *s, int fd, uint64_t id, size_t *off, uint32_t *n,
                      uint32_t *flags)
{
	*n = 0;
	*off = s->nips;
	*flags = 0;
	if (!id)
		return 0;
	struct sm_stack st;
	if (bpf_map_lookup_elem(fd, &id, &st))
		return 0;
	*flags = st.flags;
	uint32_t k = st.len < SM_MAX_STACK_DEPTH ? st.len : SM_MAX_STACK_DEPTH;
	if (grow((void **)&s->ips, &s->ips_cap, s->nips + k, sizeof(*s->ips)))
		return -ENOMEM;
	memcpy(s->ips + s->nips, st.ips, k * sizeof(*st.ips));
	*n = k;
	s->nips += k;
	return 0;
}

/* Deletes every key of a hash map; keys is scratch of cap entries. Keys
 * are collected first: deleting while iterating restarts the walk. */
static void clear_map(int fd, void *keys, size_t key_size, size_t cap)
{
	for (;;) {
		size_t n = 0;
		uint8_t *k = keys;
		void *prev = NULL;
		while (n < cap && bpf_map_get_next_key(fd, prev, k + n * key_size) == 0) {
			prev = k + n * key_size;
			n++;
		}
		for (size_t i = 0; i < n; i++)
			bpf_map_delete_elem(fd, k + i * key_size);
		if (n < cap)
			return;
	}
}

/* A count's value as the wire takes it: off-CPU time scaled up for
 * sampling, clamped to the protocol's bound. */
static uint64_t count_value(ag_sampler *s, int kind, uint64_t v)
{
	if (kind == AG_KIND_OFFCPU && s->offcpu_scale != 1) {
		/* a sampled block stands for 1 / p of them */
		double scaled = (double)v * s->offcpu_scale + 0.5;
		v = scaled > (double)UINT64_MAX / 2 ? UINT64_MAX : (uint64_t)scaled;
	}
	if (v > WIRE_MAX_COUNT) {
		/* the protocol's bound on a row: 78 hours of waiting by
		 * one stack of one process in one interval */
		v = WIRE_MAX_COUNT;
		s->offcpu_clamped++;
	}
	return v;
}

/* The per-element drain: a lookup and a delete per row and per stack,
 * about 7 bpf() calls a row. Only for kernels that refuse batch
 * operations on hash maps (before Linux 5.6). */
static int drain_elem(ag_sampler *s, bool old)
{
	int cfd = bpf_map__fd(old ? s->skel->maps.counts1 : s->skel->maps.counts0);
	int sfd = bpf_map__fd(old ? s->skel->maps.stacks1 : s->skel->maps.stacks0);
	size_t max = bpf_map__max_entries(old ? s->skel->maps.counts1 : s->skel->maps.counts0);
	s->ncounts = s->nips = 0;
	if (grow((void **)&s->keys, &s->keys_cap, max, sizeof(*s->keys)) ||
	    grow((void **)&s->stack_keys, &s->stack_keys_cap, s->stack_entries,
	         sizeof(*s->stack_keys)))
		return -ENOMEM;
	size_t nk = 0;
	struct sm_key *prev = NULL;
	while (nk < max && bpf_map_get_next_key(cfd, prev, &s->keys[nk]) == 0) {
		prev = &s->keys[nk];
		nk++;
	}
	if (grow((void **)&s->counts, &s->counts_cap, nk, sizeof(*s->counts)))
		return -ENOMEM;
	/* offsets first: s->ips moves as it grows */
	size_t *uoff = malloc((2 * nk + 1) * sizeof(*uoff));
	if (!uoff)
		return -ENOMEM;
	size_t *koff = uoff + nk;
	for (size_t i = 0; i < nk; i++) {
		uint64_t v = 0;
		const struct sm_key *k = &s->keys[i];
		if (bpf_map_lookup_elem(cfd, k, &v) || !v)
			continue;
		ag_count *c = &s->counts[s->ncounts];
		int kind = k->kind == SM_KIND_OFFCPU ? AG_KIND_OFFCPU : AG_KIND_CPU;
		v = count_value(s, kind, v);
		*c = (ag_count){.pid = (pid_t)k->tgid, .kind = kind, .count = v};
		uint32_t uflags, kflags;
		if (read_stack(s, sfd, k->user_stack, &uoff[s->ncounts], &c->nustack, &uflags) ||
		    read_stack(s, sfd, k->kernel_stack, &koff[s->ncounts], &c->nkstack, &kflags)) {
			free(uoff);
			return -ENOMEM;
		}
		c->utruncated = uflags & SM_STACK_TRUNCATED;
		s->ncounts++;
	}
	for (size_t i = 0; i < s->ncounts; i++) {
		s->counts[i].ustack = s->ips + uoff[i];
		s->counts[i].kstack = s->ips + koff[i];
	}
	free(uoff);
	for (size_t i = 0; i < nk; i++)
		bpf_map_delete_elem(cfd, &s->keys[i]);
	clear_map(sfd, s->stack_keys, sizeof(*s->stack_keys), s->stack_entries);
	return 0;
}

void ag_take_buf_free(ag_take_buf *b)
{
	free(b->keys);
	free(b->vals);
	*b = (ag_take_buf){0};
}

static int take_buf_size(ag_take_buf *b, size_t n, size_t key_size, size_t val_size)
{
	if (n <= b->cap)
		return 0;
	void *k = realloc(b->keys, n * key_size);
	if (!k)
		return -ENOMEM;
	b->keys = k;
	void *v = realloc(b->vals, n * val_size);
	if (!v)
		return -ENOMEM;
	b->vals = v;
	b->cap = n;
	return 0;
}

int ag_map_take(int fd, size_t key_size, size_t val_size, ag_take_buf *b, size_t batch,
                int (*fn)(void *arg, const void *keys, const void *vals, size_t n), void *arg)
{
	/* the position between calls: a hash map's is its bucket number (a
	 * u32); room for more in case another map type's is bigger */
	uint64_t pos[4], next[4];
	void *in = NULL;
	if (!batch)
		batch = 1;
	if (take_buf_size(b, batch, key_size, val_size))
		return -ENOMEM;
	size_t want = b->cap;
	for (bool first = true;; first = false) {
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		__u32 count = want > UINT32_MAX ? UINT32_MAX : (__u32)want;
		int err = 0;
		if (bpf_map_lookup_and_delete_batch(fd, in, next, b->keys, b->vals, &count, &opts))
			err = errno;
		if (err == ENOSPC && count == 0 && want < (1u << 20)) {
			/* the next bucket holds more entries than a batch: again
			 * from the same place with room for more */
			want *= 2;
			if (take_buf_size(b, want, key_size, val_size))
				return -ENOMEM;
			continue;
		}
		if (err && err != ENOENT) {
			/* EINVAL or ENOTSUPP (524, the kernel's own) at the first
			 * call: no batch operations here, nothing was taken */
			if (first && (err == EINVAL || err == 524 || err == EOPNOTSUPP || err == ENOSYS))
				return -EOPNOTSUPP;
			return -err;
		}
		/* ENOENT is the end: the last batch may still hold entries */
		if (count) {
			int rc = fn(arg, b->keys, b->vals, count);
			if (rc)
				return rc;
		}
		if (err == ENOENT)
			return 0;
		memcpy(pos, next, sizeof(pos));
		in = pos;
	}
}

/* A batch of the stacks map: the frames into s->ips, indexed by ID. */
static int take_stacks(void *arg, const void *keys, const void *vals, size_t n)
{
	ag_sampler *s = arg;
	const uint64_t *id = keys;
	const struct sm_stack *st = vals;
	if (grow((void **)&s->smeta, &s->smeta_cap, s->nsmeta + n, sizeof(*s->smeta)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		uint32_t k = st[i].len < SM_MAX_STACK_DEPTH ? st[i].len : SM_MAX_STACK_DEPTH;
		if (s->nsmeta >= BASE_MAP_NONE ||
		    grow((void **)&s->ips, &s->ips_cap, s->nips + k, sizeof(*s->ips)) ||
		    base_map_put(&s->stack_idx, id[i], (uint32_t)s->nsmeta))
			return -ENOMEM;
		memcpy(s->ips + s->nips, st[i].ips, k * sizeof(*s->ips));
		s->smeta[s->nsmeta++] = (struct smeta){s->nips, k, st[i].flags};
		s->nips += k;
	}
	return 0;
}

/* A stack taken by take_stacks; NULL for none (ID 0, or the stacks map
 * was full). */
static const struct smeta *find_stack(const ag_sampler *s, uint64_t id)
{
	uint32_t i = id ? base_map_get(&s->stack_idx, id) : BASE_MAP_NONE;
	return i == BASE_MAP_NONE ? NULL : &s->smeta[i];
}

/* A batch of the counts map: rows, their frames from the stacks taken
 * before (s->ips no longer moves). */
static int take_counts(void *arg, const void *keys, const void *vals, size_t n)
{
	ag_sampler *s = arg;
	const struct sm_key *key = keys;
	const uint64_t *val = vals;
	if (grow((void **)&s->counts, &s->counts_cap, s->ncounts + n, sizeof(*s->counts)))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct sm_key *k = &key[i];
		if (!val[i])
			continue;
		int kind = k->kind == SM_KIND_OFFCPU ? AG_KIND_OFFCPU : AG_KIND_CPU;
		const struct smeta *u = find_stack(s, k->user_stack);
		const struct smeta *ks = find_stack(s, k->kernel_stack);
		s->counts[s->ncounts++] = (ag_count){
			.pid = (pid_t)k->tgid, .kind = kind, .count = count_value(s, kind, val[i]),
			.ustack = s->ips + (u ? u->off : 0), .nustack = u ? u->n : 0,
			.kstack = s->ips + (ks ? ks->off : 0), .nkstack = ks ? ks->n : 0,
			.utruncated = u && (u->flags & SM_STACK_TRUNCATED),
		};
	}
	return 0;
}

/* The batch drain: the stacks map, then the counts map, each taken out
 * in a few bpf() calls (BPF_MAP_LOOKUP_AND_DELETE_BATCH) instead of about
 * 7 a row. Returns -EOPNOTSUPP, with both maps untouched, when the kernel
 * refuses batch operations. */
static int drain_batch(ag_sampler *s, bool old)
{
	struct bpf_map *cm = old ? s->skel->maps.counts1 : s->skel->maps.counts0;
	struct bpf_map *sm = old ? s->skel->maps.stacks1 : s->skel->maps.stacks0;
	s->ncounts = s->nips = s->nsmeta = 0;
	base_map_clear(&s->stack_idx);
	/* stacks first: a refusal there leaves the counts for drain_elem
	 * (both maps are hash maps, so the kernel answers both alike) */
	int rc = ag_map_take(bpf_map__fd(sm), sizeof(uint64_t), sizeof(struct sm_stack), &s->sbuf,
	                     256, take_stacks, s);
	if (rc)
		return rc;
	rc = ag_map_take(bpf_map__fd(cm), sizeof(struct sm_key), sizeof(uint64_t), &s->cbuf,
	                 bpf_map__max_entries(cm), take_counts, s);
	/* the stacks are gone from the kernel by now: no per-element retry */
	return rc == -EOPNOTSUPP ? -EIO : rc;
}

int ag_sampler_drain(ag_sampler *s, const ag_count **counts, size_t *n)
{
	uint32_t old = __atomic_load_n(&s->skel->bss->sm_active, __ATOMIC_RELAXED);
	__atomic_store_n(&s->skel->bss->sm_active, !old, __ATOMIC_SEQ_CST);
	/* A program that read the old value may still be counting into the old
	 * set: BPF programs on perf events run with interrupts off, the
	 * off-CPU ones on tracepoints with preemption off, and they finish in
	 * microseconds, so a millisecond is ample. */
	struct timespec ts = {0, 2 * 1000 * 1000};
	nanosleep(&ts, NULL);

	int rc = -EOPNOTSUPP;
	if (!s->no_batch) {
		rc = drain_batch(s, old);
		if (rc == -EOPNOTSUPP)
			s->no_batch = true;
	}
	if (rc == -EOPNOTSUPP)
		rc = drain_elem(s, old);
	if (rc)
		return rc;
	*counts = s->counts;
	*n = s->ncounts;
	return 0;
}

void ag_sampler_stats(ag_sampler *s, uint64_t out[AG_STAT_N])
{
	int fd = bpf_map__fd(s->skel->maps.stats);
	uint64_t *v = calloc((size_t)s->ncpus_possible, sizeof(*v));
	for (uint32_t i = 0; i < AG_STAT_N; i++) {
		out[i] = 0;
		if (v && bpf_map_lookup_elem(fd, &i, v) == 0)
			for (int c = 0; c < s->ncpus_possible; c++)
				out[i] += v[c];
	}
	free(v);
}

int ag_sampler_ncpus(const ag_sampler *s) { return s->nlinks; }

uint64_t ag_sampler_offcpu_clamped(const ag_sampler *s) { return s->offcpu_clamped; }

int ag_sampler_py_map(ag_sampler *s, int *fd)
{
	if (!s->unw || !s->skel->rodata->cfg_python)
		return -ENOENT;
	*fd = bpf_map__fd(s->skel->maps.py_procs);
	return 0;
}

int ag_sampler_unw_maps(ag_sampler *s, int *rows_fd, uint32_t *cap, int *procs_fd,
                        int *files_fd, int *found_fd)
{
	if (!s->unw)
		return -ENOENT;
	*rows_fd = bpf_map__fd(s->skel->maps.unw_rows);
	*cap = s->unw_cap;
	*procs_fd = bpf_map__fd(s->skel->maps.unw_procs);
	*files_fd = bpf_map__fd(s->skel->maps.unw_files);
	*found_fd = bpf_map__fd(s->skel->maps.unw_found);
	return 0;
}
