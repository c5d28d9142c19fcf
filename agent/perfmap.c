/* perfmap.c - names of JIT code from the perf maps runtimes write when
 * asked (/tmp/perf-PID.map: node --perf-basic-prof, jcmd PID
 * Compiler.perfmap, DOTNET_PerfMapEnabled=1, python3.12 -X perf, ...):
 * one "START SIZE NAME" line per piece of generated code, hexadecimal,
 * appended as code is made; a later line for the same addresses wins.
 *
 * The agent reads a process' map through /proc/PID/root (a container's
 * /tmp is its own, and the file is named by the PID the process sees),
 * only for processes with samples in anonymous executable memory, and
 * incrementally: what was appended since the last drain. It is hostile
 * input (anyone on the host can write a file in /tmp): a regular file
 * owned by the process' user or root, not reached through a symlink out
 * of the process' root, lines bounded, memory bounded per process, every
 * bad line counted. It does not name anything else: native frames are
 * named centrally from debug info. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/agent.h"

/* bytes read in one go, and at most per process and drain (a map of
 * hundreds of megabytes is read over several drains, not in one) */
#define CHUNK (256u << 10)
#define READ_PER_DRAIN (64u << 20)
/* bytes compared to tell an append from a rewrite (jcmd Compiler.perfmap
 * truncates and writes the whole map again) */
#define GUARD 64

/* A piece of code: [start, end), its name at names + name. */
typedef struct pent {
	uint64_t start, end;
	uint32_t name;
	uint32_t seq;               /* file order among new entries */
} pent;

typedef struct pvec {
	pent *v;
	size_t n, cap;
} pvec;

struct ag_pmap {
	pid_t pid;
	int fd;                     /* -1 until the file is there */
	bool refused;               /* said once why the file is not read */
	bool full;                  /* over the bound: nothing more is read */
	bool told_bad;              /* a malformed line was logged */
	bool skipping;              /* inside a line over AG_PMAP_MAX_LINE */
	uint64_t checked_drain;
	uint64_t off;               /* bytes consumed: whole lines */
	uint8_t head[GUARD], tail[GUARD];
	uint32_t nhead, ntail;      /* the file's first bytes, those before off */
	pvec ents;                  /* sorted, disjoint */
	char *names;
	size_t nnames, names_cap;
	size_t bytes;               /* allocated for entries and names */
	char path[64];              /* /tmp/perf-NSPID.map, for log lines */
};

struct ag_pmaps {
	char root[256];
	size_t max_bytes;
	ag_pmaps_stats st;
	char *buf;                  /* CHUNK + AG_PMAP_MAX_LINE */
};

int ag_pmaps_new(const ag_pmaps_opts *o, ag_pmaps **out)
{
	ag_pmaps *ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	snprintf(ps->root, sizeof(ps->root), "%s", o->proc_root ? o->proc_root : "/proc");
	ps->max_bytes = o->max_bytes ? o->max_bytes : AG_PMAP_DEFAULT_MAX;
	*out = ps;
	return 0;
}

void ag_pmaps_free(ag_pmaps *ps)
{
	if (!ps)
		return;
	free(ps->buf);
	free(ps);
}

void ag_pmaps_get_stats(const ag_pmaps *ps, ag_pmaps_stats *out)
{
	*out = ps->st;
}

static void account(ag_pmaps *ps, ag_pmap *pm)
{
	size_t now = pm->ents.cap * sizeof(pent) + pm->names_cap;
	ps->st.bytes = ps->st.bytes - pm->bytes + now;
	pm->bytes = now;
}

static void drop_entries(ag_pmaps *ps, ag_pmap *pm)
{
	ps->st.entries -= pm->ents.n;
	free(pm->ents.v);
	free(pm->names);
	pm->ents = (pvec){0};
	pm->names = NULL;
	pm->nnames = pm->names_cap = 0;
	account(ps, pm);
}

void ag_pmap_free(ag_pmaps *ps, ag_pmap *pm)
{
	if (!pm)
		return;
	if (pm->fd >= 0) {
		/* a last line the process never finished (whole lines not read
		 * yet are no fault: nothing asked for them since) */
		struct stat st;
		char last = '\n';
		if (!pm->full && !pm->skipping && fstat(pm->fd, &st) == 0 &&
		    (uint64_t)st.st_size > pm->off &&
		    pread(pm->fd, &last, 1, st.st_size - 1) == 1 && last != '\n') {
			ps->st.truncated++;
			fprintf(stderr, "smolder-agent: perf map of pid %d (%s) ends in an unfinished "
			        "line (%" PRIu64 " bytes at offset %" PRIu64 "): not read\n", pm->pid,
			        pm->path, (uint64_t)st.st_size - pm->off, pm->off);
		}
		close(pm->fd);
		ps->st.files--;
	}
	drop_entries(ps, pm);
	free(pm);
}

/* ---- parsing ---- */

/* A hexadecimal number with an optional 0x, up to 16 digits; advances *p. */
static bool hex(const char **p, const char *end, uint64_t *out)
{
	const char *s = *p;
	if (end - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	uint64_t v = 0;
	int n = 0;
	for (; s < end && isxdigit((unsigned char)*s); s++, n++) {
		if (n == 16)
			return false;
		v = v << 4 | (uint64_t)(isdigit((unsigned char)*s) ? *s - '0' :
		                        (tolower((unsigned char)*s) - 'a' + 10));
	}
	if (!n)
		return false;
	*p = s;
	*out = v;
	return true;
}

static const char *blanks(const char *s, const char *end)
{
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	return s;
}

/* Parses "START SIZE NAME" (l[0..n), no newline). Returns 1 with the
 * fields, 0 for a line to ignore (empty, or naming no bytes), -1 when
 * malformed. The name is what follows SIZE and its blanks, to the end. */
int ag_pmap_parse_line(const char *l, size_t n, uint64_t *start, uint64_t *size,
                       const char **name, size_t *name_len)
{
	const char *end = l + n, *s = l;
	if (n && end[-1] == '\r')
		end--;
	if (end == l)
		return 0;
	if (memchr(l, 0, (size_t)(end - l)))
		return -1;              /* a name could not hold it */
	if (!hex(&s, end, start))
		return -1;
	const char *t = blanks(s, end);
	if (t == s || !hex(&t, end, size))
		return -1;
	s = blanks(t, end);
	if (s == t || s == end)
		return -1;              /* no blank, or no name */
	if (*size > UINT64_MAX - *start)
		return -1;
	*name = s;
	*name_len = (size_t)(end - s);
	return *size ? 1 : 0;
}

static int push(pvec *v, const pent *e)
{
	if (v->n == v->cap) {
		size_t c = v->cap ? v->cap * 2 : 256;
		pent *nv = realloc(v->v, c * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = c;
	}
	v->v[v->n++] = *e;
	return 0;
}

/* Stores a name (cut to AG_PMAP_MAX_NAME bytes, not inside a UTF-8
 * sequence) and returns its offset, or -1 when memory ran out. */
static int64_t add_name(ag_pmap *pm, const char *s, size_t n)
{
	if (n > AG_PMAP_MAX_NAME) {
		/* not inside a UTF-8 sequence (at most 4 bytes: among bytes
		 * that are not UTF-8 anyway, a cut anywhere will do) */
		size_t cut = AG_PMAP_MAX_NAME;
		while (cut > AG_PMAP_MAX_NAME - 3 && ((unsigned char)s[cut] & 0xc0) == 0x80)
			cut--;
		n = ((unsigned char)s[cut] & 0xc0) == 0x80 ? AG_PMAP_MAX_NAME : cut;
	}
	if (pm->names_cap - pm->nnames < n + 1) {
		size_t c = pm->names_cap ? pm->names_cap : 4096;
		while (c - pm->nnames < n + 1)
			c *= 2;
		char *nv = realloc(pm->names, c);
		if (!nv)
			return -1;
		pm->names = nv;
		pm->names_cap = c;
	}
	int64_t at = (int64_t)pm->nnames;
	memcpy(pm->names + pm->nnames, s, n);
	pm->names[pm->nnames + n] = 0;
	/* as the batch will send it: the stack's ID is hashed from this */
	ag_mend_utf8(pm->names + pm->nnames, n);
	pm->nnames += n + 1;
	return at;
}

/* ---- merging new entries: a later one wins where they overlap ---- */

static int by_start(const void *a, const void *b)
{
	const pent *x = a, *y = b;
	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int u64cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* max-heap of indices into e by seq */
static void heap_push(uint32_t *h, size_t *n, const pent *e, uint32_t i)
{
	size_t k = (*n)++;
	while (k && e[h[(k - 1) / 2]].seq < e[i].seq) {
		h[k] = h[(k - 1) / 2];
		k = (k - 1) / 2;
	}
	h[k] = i;
}

static void heap_pop(uint32_t *h, size_t *n, const pent *e)
{
	uint32_t last = h[--(*n)];
	size_t k = 0;
	for (;;) {
		size_t c = 2 * k + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && e[h[c + 1]].seq > e[h[c]].seq)
			c++;
		if (e[h[c]].seq <= e[last].seq)
			break;
		h[k] = h[c];
		k = c;
	}
	if (*n)
		h[k] = last;
}

/* Turns entries in file order (seq) into sorted, disjoint ones where each
 * address belongs to the latest entry covering it: a sweep over the
 * entries' edges with the covering entries in a heap by seq. */
static int resolve(pvec *in, pvec *out)
{
	size_t n = in->n;
	if (!n)
		return 0;
	int rc = -ENOMEM;
	uint64_t *edges = malloc(2 * n * sizeof(*edges));
	uint32_t *h = malloc(n * sizeof(*h));
	if (!edges || !h)
		goto out;
	qsort(in->v, n, sizeof(pent), by_start);
	for (size_t i = 0; i < n; i++) {
		edges[2 * i] = in->v[i].start;
		edges[2 * i + 1] = in->v[i].end;
	}
	qsort(edges, 2 * n, sizeof(*edges), u64cmp);
	size_t nh = 0, next = 0;
	for (size_t k = 0; k + 1 < 2 * n; k++) {
		uint64_t x = edges[k], y = edges[k + 1];
		if (x == y)
			continue;
		while (next < n && in->v[next].start <= x)
			heap_push(h, &nh, in->v, (uint32_t)next++);
		while (nh && in->v[h[0]].end <= x)
			heap_pop(h, &nh, in->v);
		if (!nh)
			continue;
		const pent *w = &in->v[h[0]];
		pent *last = out->n ? &out->v[out->n - 1] : NULL;
		if (last && last->end == x && last->name == w->name && last->seq == w->seq) {
			last->end = y;
			continue;
		}
		pent seg = {x, y, w->name, w->seq};
		if (push(out, &seg))
			goto out;
	}
	rc = 0;
out:
	free(edges);
	free(h);
	return rc;
}

/* Paints the disjoint sorted entries n over the disjoint sorted entries
 * o (n wins), into out. */
static int overlay(const pvec *o, const pvec *n, pvec *out)
{
	size_t i = 0, j = 0;
	pent cur = {0};
	bool have = false;          /* cur: what is left of o->v[i] */
	while (i < o->n || j < n->n) {
		if (!have && i < o->n) {
			cur = o->v[i];
			have = true;
		}
		if (have && (j == n->n || cur.end <= n->v[j].start)) {
			if (push(out, &cur))
				return -ENOMEM;
			have = false;
			i++;
			continue;
		}
		if (have && cur.start < n->v[j].start) {
			pent left = cur;
			left.end = n->v[j].start;
			if (push(out, &left))
				return -ENOMEM;
			cur.start = n->v[j].start;
		}
		/* n->v[j] starts at or before what is left of cur (or there is
		 * no cur): it goes out whole, and cuts cur */
		if (push(out, &n->v[j]))
			return -ENOMEM;
		while (have && cur.end <= n->v[j].end) {
			have = false;
			if (++i < o->n && o->v[i].start < n->v[j].end) {
				cur = o->v[i];
				have = true;
			}
		}
		if (have && cur.start < n->v[j].end)
			cur.start = n->v[j].end;
		j++;
	}
	return 0;
}

/* Names still referenced, copied to a new pool (names of overwritten
 * entries go); the entries' offsets change. */
static int compact(ag_pmap *pm)
{
	size_t need = 0;
	for (size_t i = 0; i < pm->ents.n; i++)
		need += strlen(pm->names + pm->ents.v[i].name) + 1;
	char *nv = malloc(need ? need : 1);
	if (!nv)
		return -ENOMEM;
	size_t at = 0;
	uint32_t prev_old = UINT32_MAX, prev_new = 0;
	for (size_t i = 0; i < pm->ents.n; i++) {
		pent *e = &pm->ents.v[i];
		if (e->name == prev_old) {  /* the pieces of one cut entry */
			e->name = prev_new;
			continue;
		}
		size_t len = strlen(pm->names + e->name) + 1;
		memcpy(nv + at, pm->names + e->name, len);
		prev_old = e->name;
		prev_new = e->name = (uint32_t)at;
		at += len;
	}
	free(pm->names);
	pm->names = nv;
	pm->nnames = at;
	pm->names_cap = need ? need : 1;
	return 0;
}

/* Merges the entries read (file order) into the process' table. */
static int merge(ag_pmaps *ps, ag_pmap *pm, pvec *add)
{
	pvec res = {0}, out = {0};
	int rc = resolve(add, &res);
	if (!rc && pm->ents.n)
		rc = overlay(&pm->ents, &res, &out);
	if (rc) {
		free(res.v);
		free(out.v);
		return rc;
	}
	if (!pm->ents.n) {
		out = res;
		res = (pvec){0};
	}
	free(res.v);
	ps->st.entries = ps->st.entries - pm->ents.n + out.n;
	free(pm->ents.v);
	pm->ents = out;
	/* shrink what a rebuild left oversized */
	if (pm->ents.cap > 2 * pm->ents.n + 256) {
		pent *nv = realloc(pm->ents.v, (pm->ents.n + 1) * sizeof(pent));
		if (nv) {
			pm->ents.v = nv;
			pm->ents.cap = pm->ents.n + 1;
		}
	}
	return 0;
}

/* ---- reading the file ---- */

/* Opens DIR/tmp/perf-NSPID.map inside the process' root: openat2's
 * RESOLVE_IN_ROOT keeps a symlink in the container (/tmp itself, or the
 * file) from reaching the host's files; where the kernel lacks openat2
 * (before 5.6) the file itself may at least not be a symlink. */
static int open_in_root(int dirfd, const char *rel)
{
	struct open_how how = {.flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
	                       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS)
		fd = openat(dirfd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	return fd;
}

/* The last number of the status file's "NSpid:" line (the PID in the
 * process' own namespace) and the real uid; 0 when absent. */
static void read_status(const char *root, pid_t pid, long *nspid, long *uid)
{
	char path[300], buf[4096];
	snprintf(path, sizeof(path), "%s/%d/status", root, pid);
	*nspid = pid;
	*uid = -1;
	if (ag_read_small(path, buf, sizeof(buf)) <= 0)
		return;
	for (char *l = buf, *nl; l && *l; l = nl) {
		nl = strchr(l, '\n');
		if (nl)
			*nl++ = 0;
		if (!strncmp(l, "NSpid:", 6)) {
			for (char *s = l + 6, *e; *s; s = e) {
				long v = strtol(s, &e, 10);
				if (e == s)
					break;
				*nspid = v;
			}
		} else if (!strncmp(l, "Uid:", 4)) {
			*uid = strtol(l + 4, NULL, 10);
		}
	}
}

/* When the process started, in unix seconds (its stat's start time after
 * boot plus /proc/stat's btime); 0 when unknown. */
static int64_t start_time(const char *root, pid_t pid)
{
	char path[300], buf[4096];
	snprintf(path, sizeof(path), "%s/stat", root);
	if (ag_read_small(path, buf, sizeof(buf)) <= 0)
		return 0;
	char *b = strstr(buf, "\nbtime ");
	if (!b)
		return 0;
	long long btime = strtoll(b + 7, NULL, 10);
	snprintf(path, sizeof(path), "%s/%d/stat", root, pid);
	if (ag_read_small(path, buf, sizeof(buf)) <= 0)
		return 0;
	char *s = strrchr(buf, ')');  /* comm may hold anything but ends there */
	if (!s)
		return 0;
	/* fields after comm: state is the 3rd field, starttime the 22nd */
	int field = 2;
	for (char *t = s + 1; *t; t++)
		if (*t == ' ' && ++field == 22) {
			long hz = sysconf(_SC_CLK_TCK);
			return hz > 0 ? btime + strtoll(t + 1, NULL, 10) / hz : 0;
		}
	return 0;
}

/* Counted and said once per process (the file is looked at every drain). */
static void refuse(ag_pmaps *ps, ag_pmap *pm, const char *why)
{
	if (!pm->refused) {
		ps->st.refused++;
		fprintf(stderr, "smolder-agent: perf map of pid %d (%s) not read: %s\n", pm->pid,
		        pm->path, why);
	}
	pm->refused = true;
}

/* Opens the map when it has appeared; false when there is none to read. */
static bool open_map(ag_pmaps *ps, ag_pmap *pm)
{
	long nspid, uid;
	read_status(ps->root, pm->pid, &nspid, &uid);
	snprintf(pm->path, sizeof(pm->path), "/tmp/perf-%ld.map", nspid);
	char path[300];
	snprintf(path, sizeof(path), "%s/%d/root", ps->root, pm->pid);
	int dirfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return false;
	int fd = open_in_root(dirfd, pm->path + 1);
	close(dirfd);
	if (fd < 0) {
		if (errno == ELOOP)
			refuse(ps, pm, "a symlink, or a loop of them inside the process' root");
		else if (errno == EXDEV)
			refuse(ps, pm, "a path leading out of the process' root");
		return false;
	}
	struct stat st;
	const char *bad = NULL;
	if (fstat(fd, &st))
		bad = "fstat failed";
	else if (!S_ISREG(st.st_mode))
		bad = "not a regular file";
	else if (st.st_uid != 0 && (uid < 0 || st.st_uid != (uid_t)uid))
		bad = "owned by neither the process' user nor root";
	else {
		/* a map left by an earlier process with this PID */
		int64_t t0 = start_time(ps->root, pm->pid);
		if (t0 && st.st_mtim.tv_sec + 1 < t0)
			bad = "older than the process (left by an earlier one with its PID)";
	}
	if (bad) {
		close(fd);
		refuse(ps, pm, bad);
		return false;
	}
	pm->fd = fd;
	pm->refused = false;
	ps->st.files++;
	return true;
}

/* Whether the bytes the table was built from are still there: a map
 * rewritten from the start (jcmd Compiler.perfmap) is read again whole. */
static bool same_prefix(ag_pmap *pm, uint64_t size)
{
	if (size < pm->off)
		return false;
	uint8_t b[GUARD];
	if (pm->nhead && (pread(pm->fd, b, pm->nhead, 0) != (ssize_t)pm->nhead ||
	                  memcmp(b, pm->head, pm->nhead)))
		return false;
	if (pm->ntail && (pread(pm->fd, b, pm->ntail, (off_t)(pm->off - pm->ntail)) !=
	                  (ssize_t)pm->ntail || memcmp(b, pm->tail, pm->ntail)))
		return false;
	return true;
}

static void bad_line(ag_pmaps *ps, ag_pmap *pm, uint64_t at, bool huge)
{
	if (huge)
		ps->st.huge_lines++;
	else
		ps->st.bad_lines++;
	if (!pm->told_bad)
		fprintf(stderr, "smolder-agent: perf map of pid %d (%s): %s at offset %" PRIu64
		        " skipped (further ones are only counted)\n", pm->pid, pm->path,
		        huge ? "a line over " AG_STR(AG_PMAP_MAX_LINE) " bytes" :
		        "a line that is not \"START SIZE NAME\"", at);
	pm->told_bad = true;
}

/* Bytes the table holds, with the entries read but not merged yet. */
static size_t used(const ag_pmap *pm, const pvec *add)
{
	return (pm->ents.n + add->n) * sizeof(pent) + pm->nnames;
}

/* One whole line (without its newline) at file offset at, into add.
 * Returns -1 when reading must stop here (the bound, or no memory). */
static int take_line(ag_pmaps *ps, ag_pmap *pm, pvec *add, const char *l, size_t len,
                     uint64_t at)
{
	if (len > AG_PMAP_MAX_LINE) {
		bad_line(ps, pm, at, true);
		return 0;
	}
	uint64_t start, size;
	const char *name;
	size_t nlen;
	int k = ag_pmap_parse_line(l, len, &start, &size, &name, &nlen);
	if (k < 0)
		bad_line(ps, pm, at, false);
	if (k <= 0)
		return 0;
	size_t cost = sizeof(pent) + (nlen > AG_PMAP_MAX_NAME ? AG_PMAP_MAX_NAME : nlen) + 1;
	if (used(pm, add) + cost > ps->max_bytes) {
		/* names of code written over go first; when that frees little,
		 * the map is simply too big */
		size_t before = used(pm, add);
		if (merge(ps, pm, add) == 0 && compact(pm) == 0)
			add->n = 0;
		if (before - used(pm, add) < ps->max_bytes / 4) {
			pm->full = true;
			ps->st.over_limit++;
			fprintf(stderr, "smolder-agent: perf map of pid %d (%s) needs more than %zu "
			        "bytes (--perf-map-max-mb): read up to offset %" PRIu64 ", code "
			        "written after that stays unnamed\n", pm->pid, pm->path,
			        ps->max_bytes, at);
			return -1;
		}
	}
	int64_t no = add_name(pm, name, nlen);
	pent e = {start, start + size, (uint32_t)no, (uint32_t)add->n};
	if (no < 0 || push(add, &e)) {
		pm->full = true;        /* out of memory: stop here */
		return -1;
	}
	return 0;
}

/* Reads what was appended since the last time, whole lines only, at most
 * READ_PER_DRAIN bytes. */
static void update(ag_pmaps *ps, ag_pmap *pm)
{
	if (pm->fd < 0 && !open_map(ps, pm))
		return;
	struct stat st;
	if (fstat(pm->fd, &st))
		return;
	uint64_t size = (uint64_t)st.st_size;
	if (!same_prefix(pm, size)) {
		ps->st.rewrites++;
		drop_entries(ps, pm);
		pm->off = 0;
		pm->nhead = pm->ntail = 0;
		pm->full = pm->skipping = false;
	}
	if (pm->full || size <= pm->off)
		return;
	if (!ps->buf && !(ps->buf = malloc(CHUNK + AG_PMAP_MAX_LINE)))
		return;
	pvec add = {0};
	uint64_t end = size - pm->off > READ_PER_DRAIN ? pm->off + READ_PER_DRAIN : size;
	uint64_t pos = pm->off;     /* file offset of buf[0] */
	size_t have = 0;            /* bytes in buf */
	while (pos + have < end && !pm->full) {
		size_t want = CHUNK + AG_PMAP_MAX_LINE - have;
		if (want > end - pos - have)
			want = (size_t)(end - pos - have);
		ssize_t r = pread(pm->fd, ps->buf + have, want, (off_t)(pos + have));
		if (r <= 0)
			break;
		have += (size_t)r;
		size_t at = 0;
		char *nl = NULL;
		while (!pm->full && (nl = memchr(ps->buf + at, '\n', have - at))) {
			size_t len = (size_t)(nl - (ps->buf + at));
			if (pm->skipping)
				pm->skipping = false;  /* the end of a huge line */
			else if (take_line(ps, pm, &add, ps->buf + at, len, pos + at))
				break;
			at += len + 1;
			pm->off = pos + at;
		}
		if (!pm->full && !nl && have - at > AG_PMAP_MAX_LINE) {
			/* no newline in sight: skip up to the next one */
			if (!pm->skipping)
				bad_line(ps, pm, pos + at, true);
			pm->skipping = true;
			at = have;
			pm->off = pos + at;
		}
		memmove(ps->buf, ps->buf + at, have - at);
		pos += at;
		have -= at;
	}
	/* remember what the table was built from */
	uint32_t n = pm->off < GUARD ? (uint32_t)pm->off : GUARD;
	if (!pm->nhead && n && pread(pm->fd, pm->head, n, 0) == (ssize_t)n)
		pm->nhead = n;
	pm->ntail = 0;
	if (n && pread(pm->fd, pm->tail, n, (off_t)(pm->off - n)) == (ssize_t)n)
		pm->ntail = n;
	if (add.n)
		merge(ps, pm, &add);
	free(add.v);
	account(ps, pm);
}

static ag_pmap *get(ag_pmap **pmp, pid_t pid)
{
	ag_pmap *pm = *pmp;
	if (!pm) {
		pm = calloc(1, sizeof(*pm));
		if (!pm)
			return NULL;
		pm->pid = pid;
		pm->fd = -1;
		pm->checked_drain = UINT64_MAX;
		*pmp = pm;
	}
	return pm;
}

void ag_pmap_open(ag_pmaps *ps, ag_pmap **pmp, pid_t pid)
{
	ag_pmap *pm = get(pmp, pid);
	if (pm && pm->fd < 0)
		open_map(ps, pm);
}

const char *ag_pmap_lookup(ag_pmaps *ps, ag_pmap **pmp, pid_t pid, uint64_t addr,
                           uint64_t drain)
{
	ag_pmap *pm = get(pmp, pid);
	if (!pm)
		return NULL;
	if (pm->checked_drain != drain) {
		pm->checked_drain = drain;
		update(ps, pm);
	}
	size_t lo = 0, hi = pm->ents.n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const pent *e = &pm->ents.v[mid];
		if (addr < e->start)
			hi = mid;
		else if (addr >= e->end)
			lo = mid + 1;
		else
			return pm->names + e->name;
	}
	return NULL;
}

size_t ag_pmap_entries(const ag_pmap *pm)
{
	return pm ? pm->ents.n : 0;
}
