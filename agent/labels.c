/* labels.c - a process' own labels: SMOLDER_LABEL_* variables of its
 * environment, its systemd unit from the cgroup path, and its container's
 * labels read from the runtime's files on the host (no daemon is asked).
 * They go through the relabel rules (relabel.c) once per process image,
 * and a bound on distinct values per label name keeps the series count in
 * check; everything cut or dropped is counted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/text.h"
#include "agent/agent.h"

struct ag_plabels {
	ag_kvs meta;             /* gathered from /proc and the runtime */
	uint64_t values_cut, env_truncated, invalid, over_limit;
	bool done;               /* final computed */
	bool dropped;            /* a keep/drop rule dropped the process */
	ag_kvs final;            /* after relabeling and the limit */
	struct ag_labeler *lb;   /* holds references for final's values */
};

/* one distinct (name, value) in use by live processes */
typedef struct lval {
	char *name, *value;
	uint32_t refs;
} lval;

struct ag_labeler {
	ag_relabel *rules;
	lval *v;
	size_t n, cap;
	ag_label_stats st;
};

/* Labels every process has, set by procs.c: not from the environment,
 * and not subject to the values limit (their count is the process count's
 * business, as before). */
static const char *const builtin[] = {"hostname", "comm", "exe", "cgroup", "container_id",
                                      "build_id", "pid"};

static bool is_builtin(const char *name)
{
	for (size_t i = 0; i < sizeof(builtin) / sizeof(*builtin); i++)
		if (!strcmp(name, builtin[i]))
			return true;
	return false;
}

static bool name_ok(const char *s, size_t n)
{
	if (!n || n > 128 || (n > 1 && s[0] == '_' && s[1] == '_'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		      (i && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

void ag_plabels_free(ag_plabels *pl)
{
	if (!pl)
		return;
	ag_kvs_free(&pl->meta);
	if (pl->lb) {
		for (size_t i = 0; i < pl->final.n; i++)
			for (size_t k = 0; k < pl->lb->n; k++) {
				lval *e = &pl->lb->v[k];
				if (!strcmp(e->name, pl->final.v[i].name) &&
				    !strcmp(e->value, pl->final.v[i].value) && e->refs) {
					e->refs--;
					break;
				}
			}
	}
	ag_kvs_free(&pl->final);
	free(pl);
}

/* ---- the environment ---- */

int ag_env_labels(const char *env, size_t n, bool truncated, ag_plabels *pl)
{
	const size_t plen = strlen(AG_ENV_PREFIX);
	char val[AG_LABEL_VALUE_MAX + 1], name[130];
	pl->env_truncated += truncated;
	for (size_t i = 0; i < n;) {
		const char *e = env + i;
		const char *end = memchr(e, 0, n - i);
		size_t len = end ? (size_t)(end - e) : n - i;
		i += len + 1;
		if (!end && truncated)
			break;  /* cut by the read bound: not a whole variable */
		if (len <= plen || memcmp(e, AG_ENV_PREFIX, plen))
			continue;
		const char *eq = memchr(e + plen, '=', len - plen);
		if (!eq)
			continue;
		size_t nl = (size_t)(eq - (e + plen)), vl = len - (size_t)(eq + 1 - e);
		if (!name_ok(e + plen, nl) || nl >= sizeof(name)) {
			pl->invalid++;
			continue;
		}
		memcpy(name, e + plen, nl);
		name[nl] = 0;
		if (is_builtin(name)) {
			pl->invalid++;
			continue;
		}
		if (!vl)
			continue;  /* an empty label is no label */
		size_t cut = base_utf8_cut(eq + 1, vl, AG_LABEL_VALUE_MAX);
		if (cut < vl)
			pl->values_cut++;
		memcpy(val, eq + 1, cut);
		val[cut] = 0;
		if (!cut)
			continue;
		size_t own = 0;
		for (size_t k = 0; k < pl->meta.n; k++)
			own += pl->meta.v[k].name[0] != '_';
		if (own >= AG_MAX_PROC_LABELS) {
			pl->over_limit++;
			continue;
		}
		int rc = ag_kvs_set(&pl->meta, name, val);
		if (rc)
			return rc;
	}
	return 0;
}

/* Reads <root>/<pid>/environ, at most AG_ENV_MAX_BYTES: the block a
 * process started with (later setenv() calls are not in it). */
static void read_env(const char *root, pid_t pid, ag_plabels *pl)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/%d/environ", root, pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char *buf = malloc(AG_ENV_MAX_BYTES + 1);
	size_t n = 0;
	while (buf && n <= AG_ENV_MAX_BYTES) {
		ssize_t r = read(fd, buf + n, AG_ENV_MAX_BYTES + 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (buf)
		ag_env_labels(buf, n > AG_ENV_MAX_BYTES ? AG_ENV_MAX_BYTES : n,
		              n > AG_ENV_MAX_BYTES, pl);
	free(buf);
}

/* ---- the cgroup and the container ---- */

/* "__meta_container_label_" + the name with every byte outside
 * [a-zA-Z0-9_] as '_' (Docker and Kubernetes names have dots, slashes). */
static int meta_label(ag_plabels *pl, const char *prefix, const char *name, const char *value)
{
	char nm[160];
	size_t p = strlen(prefix), k = 0;
	if (!*value)
		return 0;
	memcpy(nm, prefix, p);
	for (; name[k] && p + k < sizeof(nm) - 1; k++) {
		char c = name[k];
		nm[p + k] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ?
		            c : '_';
	}
	nm[p + k] = 0;
	char val[AG_LABEL_VALUE_MAX + 1];
	size_t vl = strlen(value), cut = base_utf8_cut(value, vl, AG_LABEL_VALUE_MAX);
	if (cut < vl)
		pl->values_cut++;
	memcpy(val, value, cut);
	val[cut] = 0;
	return ag_kvs_set(&pl->meta, nm, val);
}

/* The labels of an object of strings (Docker's Config.Labels, an OCI
 * bundle's annotations), at most AG_MAX_CONTAINER_LABELS. */
static void json_labels(ag_plabels *pl, json_t *obj)
{
	const char *k;
	json_t *v;
	size_t n = 0;
	if (!json_is_object(obj))
		return;
	json_object_foreach(obj, k, v) {
		if (!json_is_string(v))
			continue;
		if (n++ == AG_MAX_CONTAINER_LABELS) {
			pl->over_limit++;
			break;
		}
		if (meta_label(pl, "__meta_container_label_", k, json_string_value(v)))
			return;
	}
}

int ag_container_json(const char *text, size_t n, const char *runtime, ag_plabels *pl)
{
	json_error_t je;
	if (n > AG_CONTAINER_FILE_MAX)
		return -E2BIG;
	json_t *doc = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
	if (!doc)
		return -EINVAL;
	int rc = ag_kvs_set(&pl->meta, "__meta_container_runtime", runtime);
	if (!strcmp(runtime, "docker")) {
		json_labels(pl, json_object_get(json_object_get(doc, "Config"), "Labels"));
		const char *name = json_string_value(json_object_get(doc, "Name"));
		if (!rc && name)
			rc = meta_label(pl, "__meta_container_name", "", name[0] == '/' ? name + 1 : name);
	} else {
		json_labels(pl, json_object_get(doc, "annotations"));
	}
	json_decref(doc);
	return rc;
}

static int read_file(const char *path, char **out, size_t *n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || st.st_size > AG_CONTAINER_FILE_MAX) {
		close(fd);
		return -E2BIG;
	}
	char *b = malloc((size_t)st.st_size + 1);
	ssize_t r = b ? read(fd, b, (size_t)st.st_size) : -1;
	close(fd);
	if (r < 0) {
		free(b);
		return -EIO;
	}
	*out = b;
	*n = (size_t)r;
	return 0;
}

/* The runtimes whose files name a container's labels without asking a
 * daemon, as seen through PID 1's root (the host's, with pid: host):
 * Docker's config.v2.json (the labels of `docker run --label` and of the
 * image), and the OCI bundle config.json whose annotations carry
 * Kubernetes' pod, namespace and container names under containerd, CRI-O
 * and Podman. */
static void read_container(const char *root, const char *cgroup, const char *id, ag_plabels *pl)
{
	static const struct {
		const char *cg, *runtime, *fmt;
	} where[] = {
		{"docker", "docker", "%s/1/root/var/lib/docker/containers/%s/config.v2.json"},
		{"containerd", "containerd",
		 "%s/1/root/run/containerd/io.containerd.runtime.v2.task/k8s.io/%s/config.json"},
		{"containerd", "containerd",
		 "%s/1/root/run/containerd/io.containerd.runtime.v2.task/moby/%s/config.json"},
		{"containerd", "containerd",
		 "%s/1/root/run/containerd/io.containerd.runtime.v2.task/default/%s/config.json"},
		{"crio", "cri-o", "%s/1/root/run/containers/storage/overlay-containers/%s/userdata/config.json"},
		{"libpod", "podman",
		 "%s/1/root/var/lib/containers/storage/overlay-containers/%s/userdata/config.json"},
	};
	char path[600];
	for (size_t i = 0; i < sizeof(where) / sizeof(*where); i++) {
		char *text = NULL;
		size_t n = 0;
		if (!strstr(cgroup, where[i].cg))
			continue;
		snprintf(path, sizeof(path), where[i].fmt, root, id);
		if (read_file(path, &text, &n))
			continue;
		ag_container_json(text, n, where[i].runtime, pl);
		free(text);
		return;
	}
}

/* The systemd unit a cgroup path ends in: ".../nginx.service" */
static void cgroup_unit(const char *cgroup, ag_plabels *pl)
{
	const char *last = strrchr(cgroup, '/');
	last = last ? last + 1 : cgroup;
	size_t n = strlen(last);
	if ((n > 8 && !strcmp(last + n - 8, ".service")) || (n > 6 && !strcmp(last + n - 6, ".scope")))
		meta_label(pl, "__meta_systemd_unit", "", last);
}

void ag_labels_read(const char *root, ag_proc *pr)
{
	ag_plabels_free(pr->labels);
	pr->labels = calloc(1, sizeof(*pr->labels));
	if (!pr->labels)
		return;  /* the process keeps its built-in labels */
	read_env(root, pr->pid, pr->labels);
	if (pr->cgroup)
		cgroup_unit(pr->cgroup, pr->labels);
	if (pr->cgroup && pr->container)
		read_container(root, pr->cgroup, pr->container, pr->labels);
}

/* ---- relabeling and the limit ---- */

int ag_labeler_new(ag_relabel *rules, ag_labeler **out)
{
	ag_labeler *lb = calloc(1, sizeof(*lb));
	if (!lb)
		return -ENOMEM;
	lb->rules = rules;
	*out = lb;
	return 0;
}

void ag_labeler_free(ag_labeler *lb)
{
	if (!lb)
		return;
	for (size_t i = 0; i < lb->n; i++) {
		free(lb->v[i].name);
		free(lb->v[i].value);
	}
	free(lb->v);
	ag_relabel_free(lb->rules);
	free(lb);
}

/* Takes a reference on (name, value), or refuses when name already has
 * the limit's count of values in use. */
static bool take(ag_labeler *lb, const char *name, const char *value)
{
	uint32_t used = 0, max = ag_relabel_max_values(lb->rules);
	lval *free_slot = NULL;
	for (size_t i = 0; i < lb->n; i++) {
		lval *e = &lb->v[i];
		if (!e->refs) {
			free_slot = free_slot ? free_slot : e;
			continue;
		}
		if (strcmp(e->name, name))
			continue;
		if (!strcmp(e->value, value)) {
			e->refs++;
			return true;
		}
		used++;
	}
	if (used >= max)
		return false;
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return false;
	}
	if (!free_slot) {
		if (lb->n == lb->cap) {
			size_t c = lb->cap ? 2 * lb->cap : 64;
			lval *nv = realloc(lb->v, c * sizeof(*nv));
			if (!nv) {
				free(n);
				free(v);
				return false;
			}
			lb->v = nv;
			lb->cap = c;
		}
		free_slot = &lb->v[lb->n++];
	} else {
		free(free_slot->name);
		free(free_slot->value);
	}
	*free_slot = (lval){n, v, 1};
	return true;
}

const ag_kvs *ag_labeler_labels(ag_labeler *lb, ag_proc *pr, const ag_kvs *builtins)
{
	ag_plabels *pl = pr->labels;
	if (!pl)
		return builtins;  /* out of memory when read: the built-in labels alone */
	if (pl->done)
		return pl->dropped ? NULL : &pl->final;
	pl->done = true;
	lb->st.env_values_cut += pl->values_cut;
	lb->st.env_truncated += pl->env_truncated;
	lb->st.labels_invalid += pl->invalid;
	lb->st.labels_over_limit += pl->over_limit;
	ag_kvs l = {0};
	int rc = 0;
	for (size_t i = 0; i < builtins->n && !rc; i++)
		rc = ag_kvs_set(&l, builtins->v[i].name, builtins->v[i].value);
	for (size_t i = 0; i < pl->meta.n && !rc; i++)
		rc = ag_kvs_set(&l, pl->meta.v[i].name, pl->meta.v[i].value);
	if (!rc)
		rc = ag_relabel_apply(lb->rules, &l, &lb->st.regex_limit);
	if (rc == 0) {
		pl->dropped = true;
		lb->st.processes_dropped++;
		ag_kvs_free(&l);
		return NULL;
	}
	if (rc < 0) {
		/* out of memory mid-way: the built-in labels, unrelabeled */
		ag_kvs_free(&l);
		for (size_t i = 0; i < builtins->n; i++)
			ag_kvs_set(&pl->final, builtins->v[i].name, builtins->v[i].value);
		return &pl->final;
	}
	for (size_t i = 0; i < l.n;) {
		ag_kv *e = &l.v[i];
		size_t vl = strlen(e->value), cut = base_utf8_cut(e->value, vl, AG_LABEL_VALUE_MAX);
		if (cut < vl) {
			e->value[cut] = 0;  /* a rule made it longer than any variable may be */
			lb->st.env_values_cut++;
		}
		if (!cut) {
			ag_kvs_del(&l, i);
		} else if (!is_builtin(e->name) && !take(lb, e->name, e->value)) {
			lb->st.labels_dropped_cardinality++;
			ag_kvs_del(&l, i);
		} else {
			i++;
		}
	}
	pl->final = l;
	pl->lb = lb;
	return &pl->final;
}

void ag_labeler_drop_samples(ag_labeler *lb, uint64_t n)
{
	lb->st.samples_dropped += n;
}

void ag_labeler_stats(const ag_labeler *lb, ag_label_stats *out)
{
	*out = lb->st;
}
