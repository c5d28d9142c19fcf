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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"

#define NBUCKETS 4096

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

typedef struct pnode {
	ag_proc p;
	struct pnode *next;
} pnode;

struct ag_procs {
	char root[256];
	ag_objs *objs;
	ag_pmaps *pmaps;
	void (*on_maps)(void *arg, const ag_proc *pr);
	void (*on_forget)(void *arg, pid_t pid);
	void *hook_arg;
	pnode *b[NBUCKETS];
	size_t n;
	rqueue rq[NREREAD];
};

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
	for (size_t i = 0; i < NBUCKETS; i++)
		for (pnode *n = p->b[i], *nx; n; n = nx) {
			nx = n->next;
			proc_clear(p, &n->p);
			free(n);
		}
	for (size_t i = 0; i < NREREAD; i++)
		free(p->rq[i].v);
	free(p);
}

void ag_mend_utf8(char *s, size_t n)
{
	unsigned char *d = (unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = d[i];
		size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 :
		             (c & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = len && i + len <= n && !(len == 2 && c < 0xc2) && !(c > 0xf4);
		for (size_t k = 1; ok && k < len; k++)
			ok = (d[i + k] & 0xc0) == 0x80;
		if (ok && len == 3) {
			unsigned v = (c & 0x0f) << 12 | (d[i + 1] & 0x3fu) << 6;
			ok = v >= 0x800 && (v < 0xd800 || v > 0xdfff);
		}
		if (ok && len == 4)
			ok = !(c == 0xf0 && d[i + 1] < 0x90) && !(c == 0xf4 && d[i + 1] > 0x8f);
		if (!ok) {
			d[i++] = '?';
			continue;
		}
		if (len == 1 && c < 0x20)
			d[i] = '?';
		i += len;
	}
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
	for (pnode *n = p->b[(uint32_t)pid % NBUCKETS]; n; n = n->next)
		if (n->p.pid == pid)
			return &n->p;
	return NULL;
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

int ag_procs_refresh(ag_procs *p, ag_proc *pr, uint64_t drain)
{
	if (pr->gone)
		return -ESRCH;
	if (pr->maps_read_ns && pr->maps_read_drain == drain)
		return 0;
	char path[300];
	snprintf(path, sizeof(path), "%s/%d/maps", p->root, pr->pid);
	FILE *f = fopen(path, "re");
	if (!f) {
		pr->gone = true;
		return -ESRCH;
	}
	ag_mapping *v = NULL;
	size_t n = 0, cap = 0;
	char *line = NULL;
	size_t lcap = 0;
	int rc = 0;
	const char *jit_lang = NULL;
	while (getline(&line, &lcap, f) > 0) {
		uint64_t start, end, pgoff, ino;
		unsigned major, minor;
		char perms[8];
		int name_at = 0;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %x:%x %" SCNu64 " %n",
		           &start, &end, perms, &pgoff, &major, &minor, &ino, &name_at) < 7 ||
		    !strchr(perms, 'x'))
			continue;
		char *name = name_at ? line + name_at : (char *)"";
		name[strcspn(name, "\n")] = 0;
		ag_mapping m = {start, end, pgoff, ino, (major & 0xfff) << 20 | (minor & 0xfffff),
		                AG_MAP_ANON, NULL};
		if (!strcmp(name, "[vdso]")) {
			m.kind = AG_MAP_VDSO;
		} else if (name[0] == '/' && ino) {
			/* the same mapping as last time: no need to open the file */
			for (size_t i = 0; i < pr->nmaps; i++) {
				ag_mapping *o = &pr->maps[i];
				if (o->start == start && o->end == end && o->pgoff == pgoff &&
				    o->ino == ino && o->obj) {
					m.obj = o->obj;
					break;
				}
			}
			if (!m.obj) {
				char fp[4400];
				snprintf(fp, sizeof(fp), "%s/%d/map_files/%" PRIx64 "-%" PRIx64, p->root,
				         pr->pid, start, end);
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
					wire_hex(m.obj->build_id, m.obj->build_id_len, pr->build_id_hex);
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
	free(line);
	fclose(f);
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
	free(pr->maps);
	pr->maps = v;
	pr->nmaps = n;
	pr->jit_lang = jit_lang;
	/* JIT code: open its perf map while the process is there to open it
	 * through (a short one may be gone by the drain that reads it) */
	for (size_t i = 0; i < n && p->pmaps; i++)
		if (v[i].kind == AG_MAP_ANON) {
			ag_pmap_open(p->pmaps, &pr->pmap, pr->pid);
			break;
		}
	pr->maps_read_ns = ag_mono_ns();
	pr->maps_read_drain = drain;
	if (p->on_maps)
		p->on_maps(p->hook_arg, pr);
	return 0;
}

ag_proc *ag_procs_get(ag_procs *p, pid_t pid, const char *comm)
{
	ag_proc *pr = lookup(p, pid);
	if (pr)
		return pr;
	pnode *nd = calloc(1, sizeof(*nd));
	if (!nd)
		return NULL;
	nd->p.pid = pid;
	nd->p.maps_read_drain = UINT64_MAX;
	nd->next = p->b[(uint32_t)pid % NBUCKETS];
	p->b[(uint32_t)pid % NBUCKETS] = nd;
	p->n++;
	read_labels(p, &nd->p, comm);
	ag_procs_refresh(p, &nd->p, UINT64_MAX - 1);
	ag_labels_read(p->root, &nd->p);  /* after the mappings: those are urgent */
	rq_push(&p->rq[0], pid, ag_mono_ns() + reread_ns[0]);
	return &nd->p;
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
	ag_procs_refresh(p, pr, UINT64_MAX - 1);
	ag_labels_read(p->root, pr);
	rq_push(&p->rq[0], pid, ag_mono_ns() + reread_ns[0]);
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
	for (size_t i = 0; i < NBUCKETS; i++)
		for (pnode **pp = &p->b[i]; *pp;) {
			pnode *n = *pp;
			/* An exited process stays for two more drains: the kernel
			 * may still be tearing it down (a big heap takes a while to
			 * unmap), and its samples from then need its mappings. */
			if (n->p.exited && !n->p.exit_drain)
				n->p.exit_drain = drain;
			bool dead = (n->p.exited && drain >= n->p.exit_drain + 2) ||
			            (n->p.gone && !n->p.exited);
			if (!dead && n->p.batch_gen + 6 < drain) {
				snprintf(path, sizeof(path), "%s/%d", p->root, n->p.pid);
				dead = access(path, F_OK) != 0;
			}
			if (dead) {
				if (p->on_forget)
					p->on_forget(p->hook_arg, n->p.pid);
				*pp = n->next;
				proc_clear(p, &n->p);
				free(n);
				p->n--;
			} else {
				pp = &n->next;
			}
		}
}

size_t ag_procs_count(const ag_procs *p) { return p->n; }
