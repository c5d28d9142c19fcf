/* procs.c - what the agent knows of each process: its labels and its
 * executable mappings, read from /proc when the BPF program first samples
 * it (the ring-buffer event), so a process that exits before the drain is
 * still resolvable. Files are opened through /proc/PID/map_files, which
 * works for containers (another mount namespace) and for deleted files;
 * /proc/PID/root/PATH is the fallback. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/text.h"
#include "base/clock.h"
#include "base/map.h"
#include "agent/agent.h"

/* When to read a new process' mappings again, after its announcement: by
 * then most programs have loaded their libraries. Two rereads cost one
 * /proc read each; unchanged mappings reuse their objects unopened. */
static const int64_t reread_ns[] = {25 * 1000000LL, 250 * 1000000LL};
#define NREREAD (sizeof(reread_ns) / sizeof(reread_ns[0]))

typedef struct reread {
	pid_t pid;
	int64_t due;
} reread;

/* one FIFO per delay: entries arrive in time order, so each stays sorted */
typedef struct rqueue {
	reread *v;
	size_t head, n, cap;
} rqueue;

struct ag_procs {
	char root[256];
	ag_objs *objs;
	ag_pmaps *pmaps;
	void (*on_maps)(void *arg, const ag_proc *pr);
	void (*on_forget)(void *arg, pid_t pid);
	void *hook_arg;
	base_tab procs;              /* ag_proc by PID */
	rqueue rq[NREREAD];
	char *mbuf;                  /* the last /proc/PID/maps read, kept */
	size_t mcap;
};

/* The most of a /proc/PID/maps file read: 65530 mappings (the default
 * vm.max_map_count) of 250 bytes each; past it the mappings are cut. */
#define MAPS_MAX (16u << 20)

static void rq_push(rqueue *q, pid_t pid, int64_t due)
{
	if (q->n == q->cap) {
		size_t c = q->cap ? 2 * q->cap : 64;
		reread *nv = malloc(c * sizeof(*nv));
		if (!nv)
			return;  /* a missed reread only risks [unknown] frames */
		for (size_t i = 0; i < q->n; i++)
			nv[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = nv;
		q->head = 0;
		q->cap = c;
	}
	q->v[(q->head + q->n++) % q->cap] = (reread){pid, due};
}

int ag_procs_new(const ag_procs_opts *opt, ag_procs **out)
{
	ag_procs *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	snprintf(p->root, sizeof(p->root), "%s", opt->proc_root ? opt->proc_root : "/proc");
	p->objs = opt->objs;
	p->pmaps = opt->pmaps;
	p->on_maps = opt->on_maps;
	p->on_forget = opt->on_forget;
	p->hook_arg = opt->hook_arg;
	*out = p;
	return 0;
}

static void proc_clear(ag_procs *p, ag_proc *pr)
{
	ag_plabels_free(pr->labels);
	ag_pmap_free(p->pmaps, pr->pmap);
	pr->pmap = NULL;
	free(pr->exe);
	free(pr->cgroup);
	free(pr->container);
	free(pr->maps);
}

void ag_procs_free(ag_procs *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->procs.n; i++) {
		proc_clear(p, p->procs.obj[i]);
		free(p->procs.obj[i]);
	}
	base_tab_free(&p->procs);
	for (size_t i = 0; i < NREREAD; i++)
		free(p->rq[i].v);
	free(p->mbuf);
	free(p);
}

void ag_mend_utf8(char *s, size_t n)
{
	base_utf8_mend(s, n, '?');
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20)
			s[i] = '?';
}

const char *ag_base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

ssize_t ag_read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, cap - 1);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	buf[n] = 0;
	return n;
}

/* The container ID in a cgroup path: the 64-hex-digit name docker,
 * containerd, CRI-O and podman give their scopes
 * (".../docker-<id>.scope", "/docker/<id>", "cri-containerd-<id>.scope",
 * "crio-<id>", "libpod-<id>"). */
static char *container_id(const char *path)
{
	for (const char *s = path; *s; s++) {
		size_t n = 0;
		while (isxdigit((unsigned char)s[n]) && !isupper((unsigned char)s[n]))
			n++;
		if (n == 64 && (s == path || !isxdigit((unsigned char)s[-1])))
			return strndup(s, 64);
		if (n)
			s += n - 1;
	}
	return NULL;
}

static void read_labels(ag_procs *p, ag_proc *pr, const char *comm)
{
	char path[300], buf[4096];
	if (comm) {
		snprintf(pr->comm, sizeof(pr->comm), "%.16s", comm);
	} else {
		snprintf(path, sizeof(path), "%s/%d/comm", p->root, pr->pid);
		if (ag_read_small(path, buf, sizeof(buf)) > 0) {
			buf[strcspn(buf, "\n")] = 0;
			snprintf(pr->comm, sizeof(pr->comm), "%.16s", buf);
		}
	}
	snprintf(path, sizeof(path), "%s/%d/exe", p->root, pr->pid);
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = 0;
		char *d = strstr(buf, " (deleted)");
		if (d && d[10] == 0)
			*d = 0;
		free(pr->exe);
		pr->exe = strdup(buf);
	}
	snprintf(path, sizeof(path), "%s/%d/cgroup", p->root, pr->pid);
	if (ag_read_small(path, buf, sizeof(buf)) > 0) {
		/* cgroup v2 is the "0::" line; on v1 the cpu controller's. */
		char *pick = NULL;
		for (char *l = buf, *nl; l && *l; l = nl) {
			nl = strchr(l, '\n');
			if (nl)
				*nl++ = 0;
			char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
			if (!c2)
				continue;
			if (!strncmp(l, "0::", 3)) {
				pick = c2 + 1;
				break;
			}
			*c2 = 0;
			char *ctl = c1 + 1;
			if (!pick || strstr(ctl, "cpu"))
				pick = c2 + 1;
		}
		if (pick && *pick && strcmp(pick, "/")) {
			free(pr->cgroup);
			pr->cgroup = strdup(pick);
			free(pr->container);
			pr->container = container_id(pick);
		}
	}
}

static ag_proc *lookup(ag_procs *p, pid_t pid)
{
	return base_tab_get(&p->procs, (uint32_t)pid);
}

static int cmp_map(const void *a, const void *b)
{
	const ag_mapping *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* The language tag (wire/wire.h) of the JIT code a process runs, from
 * the runtime file it maps (path): V8 in node (statically linked, or
 * libnode.so), HotSpot's libjvm.so, .NET's libcoreclr.so. NULL when the
 * file is none of them: such a process' JIT frames carry no language. */
static const char *runtime_lang(const char *path)
{
	const char *b = ag_base_name(path);
	if (!strcmp(b, "node") || !strcmp(b, "nodejs") || !strncmp(b, "libnode.so", 10))
		return "js";
	if (!strcmp(b, "libjvm.so"))
		return "java";
	if (!strcmp(b, "libcoreclr.so"))
		return "dotnet";
	return NULL;
}

/* Reads /proc/PID/maps whole into p->mbuf (kept from one read to the
 * next, so a usual file costs one read() and the one that says EOF, no
 * stdio and no allocation). Returns its length, cut after its last
 * complete line at MAPS_MAX, or -ESRCH when it cannot be opened. */
static ssize_t read_maps(ag_procs *p, pid_t pid)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/%d/maps", p->root, pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	size_t n = 0;
	bool cut = false;
	for (;;) {
		if (p->mcap - n < 4096 + 1) {
			if (p->mcap >= MAPS_MAX + 1) {
				cut = true;
				break;
			}
			size_t c = p->mcap ? 2 * p->mcap : 64 * 1024;
			if (c > MAPS_MAX + 1)
				c = MAPS_MAX + 1;
			char *nb = realloc(p->mbuf, c);
			if (!nb) {
				cut = true;
				break;
			}
			p->mbuf = nb;
			p->mcap = c;
		}
		ssize_t r = read(fd, p->mbuf + n, p->mcap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;   /* an error midway (the process exiting): what was read */
		n += (size_t)r;
	}
	close(fd);
	if (!p->mbuf)
		return 0;
	if (cut) {
		char *nl = memrchr(p->mbuf, '\n', n);
		n = nl ? (size_t)(nl + 1 - p->mbuf) : 0;
	}
	p->mbuf[n] = 0;
	return (ssize_t)n;
}

/* A hex field of at most 16 digits at *s; moves *s past it. */
static bool hex_field(const char **s, uint64_t *v)
{
	uint64_t x = 0;
	const char *q = *s;
	for (; q - *s < 17; q++) {
		unsigned c = (unsigned char)*q, d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			d = (c | 0x20) - 'a' + 10;
		else
			break;
		x = x << 4 | d;
	}
	if (q == *s || q - *s > 16)
		return false;
	*v = x;
	*s = q;
	return true;
}

/* One line of /proc/PID/maps ("start-end perms pgoff major:minor inode
 * name", name optional), without its newline: the mapping in *m (kind
 * AG_MAP_ANON) and where its name starts (after the blanks; "" when
 * none). False for a line of another shape, or one that is not
 * executable. */
static bool parse_maps_line(const char *l, ag_mapping *m, const char **name)
{
	uint64_t start, end, pgoff, major, minor, ino = 0;
	const char *s = l;
	if (!hex_field(&s, &start) || *s++ != '-' || !hex_field(&s, &end) || *s++ != ' ')
		return false;
	const char *perms = s;
	while (*s && *s != ' ')
		s++;
	if (s == perms || s - perms > 7 || !memchr(perms, 'x', (size_t)(s - perms)))
		return false;
	if (*s++ != ' ' || !hex_field(&s, &pgoff) || *s++ != ' ' || !hex_field(&s, &major) ||
	    *s++ != ':' || !hex_field(&s, &minor) || *s++ != ' ')
		return false;
	const char *d = s;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (ino > (UINT64_MAX - 9) / 10)
			return false;
		ino = ino * 10 + (uint64_t)(*s - '0');
	}
	if (s == d || (*s && *s != ' '))
		return false;
	while (*s == ' ' || *s == '\t')
		s++;
	*m = (ag_mapping){start, end, pgoff, ino,
	                  (uint32_t)((major & 0xfff) << 20 | (minor & 0xfffff)), AG_MAP_ANON, NULL};
	*name = s;
	return true;
}

/* The mapping of pr's last read that starts at start, or NULL (its maps
 * are sorted by start). */
static const ag_mapping *old_mapping(const ag_proc *pr, uint64_t start)
{
	size_t lo = 0, hi = pr->nmaps;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (pr->maps[mid].start < start)
			lo = mid + 1;
		else if (pr->maps[mid].start > start)
			hi = mid;
		else
			return &pr->maps[mid];
	}
	return NULL;
}

/* Whether v[0..n) (sorted) is what pr has already: the same mappings of
 * the same objects. */
static bool same_maps(const ag_proc *pr, const ag_mapping *v, size_t n)
{
	if (n != pr->nmaps)
		return false;
	for (size_t i = 0; i < n; i++) {
		const ag_mapping *a = &v[i], *b = &pr->maps[i];
		if (a->start != b->start || a->end != b->end || a->pgoff != b->pgoff ||
		    a->ino != b->ino || a->dev != b->dev || a->kind != b->kind || a->obj != b->obj)
			return false;
	}
	return true;
}

/* Reads pr's mappings again. force: tell on_maps even when they have not
 * changed (a new process, an exec); a reread that finds the same
 * mappings (most of them: the scheduled rereads of a process that loaded
 * nothing more) leaves the hook's work, the unwind tables, as it is. */
static int refresh(ag_procs *p, ag_proc *pr, uint64_t drain, bool force)
{
	if (pr->gone)
		return -ESRCH;
	if (pr->maps_read_ns && pr->maps_read_drain == drain)
		return 0;
	ssize_t len = read_maps(p, pr->pid);
	if (len < 0) {
		pr->gone = true;
		return -ESRCH;
	}
	ag_mapping *v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	const char *jit_lang = NULL;
	for (char *line = p->mbuf, *nl; line && line < p->mbuf + len; line = nl) {
		nl = memchr(line, '\n', (size_t)(p->mbuf + len - line));
		if (nl)
			*nl++ = 0;
		ag_mapping m;
		const char *cname;
		if (!parse_maps_line(line, &m, &cname))
			continue;
		char *name = (char *)cname;   /* in p->mbuf: ours to cut */
		if (!strcmp(name, "[vdso]")) {
			m.kind = AG_MAP_VDSO;
		} else if (name[0] == '/' && m.ino) {
			/* the same mapping as last time: no need to open the file */
			const ag_mapping *o = old_mapping(pr, m.start);
			if (o && o->end == m.end && o->pgoff == m.pgoff && o->ino == m.ino && o->obj)
				m.obj = o->obj;
			if (!m.obj) {
				char fp[4400];
				snprintf(fp, sizeof(fp), "%s/%d/map_files/%" PRIx64 "-%" PRIx64, p->root,
				         pr->pid, m.start, m.end);
				int fd = open(fp, O_RDONLY | O_CLOEXEC);
				if (fd < 0) {
					char *d = strstr(name, " (deleted)");
					if (d)
						*d = 0;
					snprintf(fp, sizeof(fp), "%s/%d/root%s", p->root, pr->pid, name);
					fd = open(fp, O_RDONLY | O_CLOEXEC);
				}
				if (fd >= 0)
					m.obj = ag_objs_get(p->objs, fd, name);
			}
			if (m.obj) {
				m.kind = AG_MAP_FILE;
				if (!jit_lang)
					jit_lang = runtime_lang(name);
				if (pr->exe && !strcmp(pr->exe, name))
					base_hex(m.obj->build_id, m.obj->build_id_len, pr->build_id_hex);
			}
		}
		if (n == cap) {
			size_t c = cap ? 2 * cap : 32;
			ag_mapping *nv = realloc(v, c * sizeof(*nv));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
			cap = c;
		}
		v[n++] = m;
	}
	if (rc) {
		free(v);
		return rc;
	}
	if (!n && pr->nmaps) {
		/* A process that had code and now has none is being torn down
		 * (its memory is gone before its /proc entry): its last
		 * samples still need the mappings it had. */
		free(v);
		pr->maps_read_drain = drain;
		return 0;
	}
	if (n)
		qsort(v, n, sizeof(*v), cmp_map);
	bool same = !force && pr->maps_read_ns && same_maps(pr, v, n);
	if (same) {
		free(v);
	} else {
		free(pr->maps);
		pr->maps = v;
		pr->nmaps = n;
		pr->jit_lang = jit_lang;
	}
	/* JIT code: open its perf map while the process is there to open it
	 * through (a short one may be gone by the drain that reads it; one
	 * not written yet is tried again) */
	for (size_t i = 0; i < pr->nmaps && p->pmaps; i++)
		if (pr->maps[i].kind == AG_MAP_ANON) {
			ag_pmap_open(p->pmaps, &pr->pmap, pr->pid);
			break;
		}
	pr->maps_read_ns = base_monotonic_ns();
	pr->maps_read_drain = drain;
	if (p->on_maps && !same)
		p->on_maps(p->hook_arg, pr);
	return 0;
}

int ag_procs_refresh(ag_procs *p, ag_proc *pr, uint64_t drain)
{
	return refresh(p, pr, drain, false);
}

ag_proc *ag_procs_get(ag_procs *p, pid_t pid, const char *comm)
{
	ag_proc *pr = lookup(p, pid);
	if (pr)
		return pr;
	pr = calloc(1, sizeof(*pr));
	if (!pr || base_tab_add(&p->procs, (uint32_t)pid, pr)) {
		free(pr);
		return NULL;
	}
	pr->pid = pid;
	pr->maps_read_drain = UINT64_MAX;
	read_labels(p, pr, comm);
	refresh(p, pr, UINT64_MAX - 1, true);
	ag_labels_read(p->root, pr);  /* after the mappings: those are urgent */
	rq_push(&p->rq[0], pid, base_monotonic_ns() + reread_ns[0]);
	return pr;
}

void ag_procs_event(ag_procs *p, int kind, pid_t pid, const char *comm)
{
	ag_proc *pr = lookup(p, pid);
	if (kind == 3 /* SM_EV_EXIT */) {
		if (pr)
			pr->exited = true;
		return;
	}
	if (!pr) {
		ag_procs_get(p, pid, comm);
		return;
	}
	if (pr->exited) {
		/* A process sampled after its exit was reported: its last
		 * moments in the kernel (unmapping a big heap takes a while)
		 * announce it again. Unless the pid names a new process by
		 * now, keep the mappings it had: its samples still need them. */
		char path[300];
		snprintf(path, sizeof(path), "%s/%d/maps", p->root, pid);
		if (access(path, F_OK))
			return;
	}
	/* exec (or an announcement after LRU eviction): the image may have
	 * changed, and with it comm, exe and every mapping */
	pr->exited = pr->gone = false;
	pr->exit_drain = 0;
	if (kind == 2 /* SM_EV_EXEC */) {
		/* the new image writes its own perf map, or none */
		ag_pmap_free(p->pmaps, pr->pmap);
		pr->pmap = NULL;
	}
	read_labels(p, pr, comm);
	pr->maps_read_drain = UINT64_MAX;
	refresh(p, pr, UINT64_MAX - 1, true);
	ag_labels_read(p->root, pr);
	rq_push(&p->rq[0], pid, base_monotonic_ns() + reread_ns[0]);
}

int64_t ag_procs_tick(ag_procs *p, int64_t now)
{
	int64_t next = 0;
	for (size_t i = 0; i < NREREAD; i++) {
		rqueue *q = &p->rq[i];
		while (q->n && q->v[q->head].due <= now) {
			pid_t pid = q->v[q->head].pid;
			q->head = (q->head + 1) % q->cap;
			q->n--;
			ag_proc *pr = lookup(p, pid);
			if (!pr || pr->gone || pr->exited)
				continue;
			pr->maps_read_drain = UINT64_MAX;
			ag_procs_refresh(p, pr, UINT64_MAX - 1);
			if (i + 1 < NREREAD)
				rq_push(&p->rq[i + 1], pid, now + reread_ns[i + 1] - reread_ns[i]);
		}
		if (q->n && (!next || q->v[q->head].due < next))
			next = q->v[q->head].due;
	}
	return next;
}

int ag_mapping_open(const char *proc_root, pid_t pid, const ag_mapping *m)
{
	if (m->kind != AG_MAP_FILE || !m->obj)
		return -1;
	int fd = m->obj->fd >= 0 ? dup(m->obj->fd) : -1;
	if (fd < 0) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%d/map_files/%" PRIx64 "-%" PRIx64, proc_root, pid,
		         m->start, m->end);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	return fd;
}

const ag_mapping *ag_proc_find(const ag_proc *pr, uint64_t addr)
{
	size_t lo = 0, hi = pr->nmaps;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const ag_mapping *m = &pr->maps[mid];
		if (addr < m->start)
			hi = mid;
		else if (addr >= m->end)
			lo = mid + 1;
		else
			return m;
	}
	return NULL;
}

void ag_procs_sweep(ag_procs *p, uint64_t drain)
{
	char path[300];
	/* down from the end: a removal moves the last process into its
	 * place, which was visited already */
	for (size_t i = p->procs.n; i-- > 0;) {
		ag_proc *pr = p->procs.obj[i];
		/* An exited process stays for two more drains: the kernel may
		 * still be tearing it down (a big heap takes a while to unmap),
		 * and its samples from then need its mappings. */
		if (pr->exited && !pr->exit_drain)
			pr->exit_drain = drain;
		bool dead = (pr->exited && drain >= pr->exit_drain + 2) ||
		            (pr->gone && !pr->exited);
		if (!dead && pr->batch_gen + 6 < drain) {
			snprintf(path, sizeof(path), "%s/%d", p->root, pr->pid);
			dead = access(path, F_OK) != 0;
		}
		if (dead) {
			if (p->on_forget)
				p->on_forget(p->hook_arg, pr->pid);
			base_tab_take(&p->procs, i);
			proc_clear(p, pr);
			free(pr);
		}
	}
}

size_t ag_procs_count(const ag_procs *p) { return p->procs.n; }
