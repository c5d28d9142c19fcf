/* test_labels.c - processes' own labels in the agent (agent/labels.c,
 * agent/relabel.c): SMOLDER_LABEL_* from an environment block with its
 * bounds, the config's errors with line and column, each relabel action,
 * container files as Docker and OCI runtimes write them, the values limit,
 * and the whole path through a /proc tree made in a temporary directory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/agent.h"

static const char *get(const ag_kvs *l, const char *name)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return l->v[i].value;
	return NULL;
}

/* a fresh ag_plabels through the public reader: a process with nothing */
static ag_proc *bare_proc(void)
{
	ag_proc *pr = calloc(1, sizeof(*pr));
	pr->pid = 999999999;  /* no such process: nothing read */
	ag_labels_read("/nonexistent", pr);
	assert_non_null(pr->labels);
	return pr;
}

static void proc_free(ag_proc *pr)
{
	ag_plabels_free(pr->labels);
	free(pr);
}

static const ag_kvs *labels_of(ag_labeler *lb, ag_proc *pr)
{
	ag_kvs b = {0};
	assert_int_equal(ag_kvs_set(&b, "comm", "app"), 0);
	const ag_kvs *l = ag_labeler_labels(lb, pr, &b);
	ag_kvs_free(&b);
	return l;
}

static void test_env(void **state)
{
	(void)state;
	char env[2048];
	size_t n = 0;
	char long_val[400];
	memset(long_val, 'v', sizeof(long_val) - 1);
	long_val[sizeof(long_val) - 1] = 0;
	/* a 2-byte character straddling the cut at 256 */
	memcpy(long_val + 255, "\xc3\xa9", 2);
	const char *vars[] = {"PATH=/bin", "SMOLDER_LABEL_version=1.4", "SMOLDER_LABEL_9bad=x",
	                      "SMOLDER_LABEL_comm=spoof", "SMOLDER_LABEL_empty=",
	                      "SMOLDER_LABEL_=x", "SMOLDER_LABEL_team=a=b"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(*vars); i++)
		n += (size_t)sprintf(env + n, "%s", vars[i]) + 1;
	n += (size_t)sprintf(env + n, "SMOLDER_LABEL_long=%s", long_val) + 1;
	ag_proc *pr = bare_proc();
	ag_labeler *lb;
	assert_int_equal(ag_labeler_new(NULL, &lb), 0);
	assert_int_equal(ag_env_labels(env, n, false, pr->labels), 0);
	const ag_kvs *l = labels_of(lb, pr);
	assert_string_equal(get(l, "version"), "1.4");
	assert_string_equal(get(l, "team"), "a=b");
	assert_string_equal(get(l, "comm"), "app");  /* a built-in is not overridden */
	assert_null(get(l, "empty"));
	assert_int_equal(strlen(get(l, "long")), 255);  /* cut before the split character */
	ag_label_stats st;
	ag_labeler_stats(lb, &st);
	assert_int_equal(st.env_values_cut, 1);
	assert_int_equal(st.labels_invalid, 3);  /* 9bad, comm, "" */
	proc_free(pr);

	/* a block cut by the read bound: the cut variable is not taken */
	pr = bare_proc();
	const char cut[] = "SMOLDER_LABEL_a=1\0SMOLDER_LABEL_b=22";
	assert_int_equal(ag_env_labels(cut, sizeof(cut) - 2, true, pr->labels), 0);
	l = labels_of(lb, pr);
	assert_string_equal(get(l, "a"), "1");
	assert_null(get(l, "b"));
	ag_labeler_stats(lb, &st);
	assert_int_equal(st.env_truncated, 1);
	proc_free(pr);
	ag_labeler_free(lb);
}

/* name, config, the error's start (NULL: parses) */
static const struct {
	const char *name, *cfg, *err;
} cfgs[] = {
	{"empty", "", NULL},
	{"rules", "relabel_configs:\n  - source_labels: [a]\n    regex: x\n    action: drop\n", NULL},
	{"bad yaml", "relabel_configs:\n  - source_labels: [a\n", "3:1: did not find expected"},
	{"tab", "relabel_configs:\n\t- action: drop\n", "2:1: found character that cannot start"},
	{"not a map", "- a\n", "1:1: the config is a mapping"},
	{"top key", "relabels: []\n", "1:1: unknown key 'relabels'"},
	{"rule key", "relabel_configs:\n  - source_labels: [a]\n    colour: red\n",
	 "3:5: unknown key 'colour' in a relabel rule"},
	{"action", "relabel_configs:\n  - source_labels: [a]\n    action: explode\n",
	 "3:13: action must be replace, keep, drop, labeldrop or labelmap"},
	{"source", "relabel_configs:\n  - source_labels: [a, 1b]\n    action: drop\n",
	 "2:24: '1b' is no label name"},
	{"no target", "relabel_configs:\n  - source_labels: [a]\n", "2:5: replace needs a target_label"},
	{"target", "relabel_configs:\n  - source_labels: [a]\n    target_label: a-b\n",
	 "3:19: target_label 'a-b' is no label name"},
	{"regex", "relabel_configs:\n  - source_labels: [a]\n    regex: '(x'\n    action: drop\n",
	 "3:12: bad regex: missing closing parenthesis at offset 2"},
	{"slow", "relabel_configs:\n  - source_labels: [a]\n    regex: '(x+x+)+y'\n    action: keep\n",
	 "3:12: regex too slow"},
	{"slow 2", "relabel_configs:\n  - regex: '(.*a){12}'\n    action: labeldrop\n",
	 "2:12: regex too slow"},
	{"limit", "max_label_values: 0\n", "1:19: max_label_values wants"},
};

static void test_config_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cfgs) / sizeof(*cfgs); i++) {
		ag_relabel *r = NULL;
		base_err err = {0};
		int rc = ag_relabel_parse(cfgs[i].cfg, strlen(cfgs[i].cfg), &r, &err);
		if (!cfgs[i].err) {
			if (rc)
				fail_msg("%s: %s", cfgs[i].name, err.msg);
			ag_relabel_free(r);
			continue;
		}
		if (rc != -EINVAL || strncmp(err.msg, cfgs[i].err, strlen(cfgs[i].err)))
			fail_msg("%s: rc %d, '%s', wanted '%s'", cfgs[i].name, rc, err.msg, cfgs[i].err);
		assert_null(r);
	}
}

static ag_relabel *parse(const char *cfg)
{
	ag_relabel *r = NULL;
	base_err err = {0};
	if (ag_relabel_parse(cfg, strlen(cfg), &r, &err))
		fail_msg("%s", err.msg);
	return r;
}

static void test_actions(void **state)
{
	(void)state;
	ag_relabel *r = parse(
		"relabel_configs:\n"
		"  - source_labels: [comm]\n    regex: 'app|web'\n    action: keep\n"
		"  - source_labels: [version, comm]\n    regex: '1\\.4;web'\n    action: drop\n"
		"  - source_labels: [version]\n    regex: '([0-9]+)\\.([0-9]+)'\n"
		"    target_label: major\n    replacement: 'v$1 (${2})'\n"
		"  - regex: '__meta_container_label_(.+)'\n    action: labelmap\n"
		"  - regex: 'cgroup|secret'\n    action: labeldrop\n");
	uint64_t lim = 0;
	ag_kvs l = {0};
	ag_kvs_set(&l, "comm", "app");
	ag_kvs_set(&l, "version", "1.4");
	ag_kvs_set(&l, "cgroup", "/x");
	ag_kvs_set(&l, "secret", "s");
	ag_kvs_set(&l, "__meta_container_label_team", "db");
	assert_int_equal(ag_relabel_apply(r, &l, &lim), 1);
	assert_string_equal(get(&l, "major"), "v1 (4)");
	assert_string_equal(get(&l, "team"), "db");
	assert_null(get(&l, "cgroup"));
	assert_null(get(&l, "secret"));
	assert_null(get(&l, "__meta_container_label_team"));  /* metas go */
	assert_int_equal(l.n, 4);
	ag_kvs_free(&l);

	ag_kvs_set(&l, "comm", "web");  /* kept, then dropped by the pair */
	ag_kvs_set(&l, "version", "1.4");
	assert_int_equal(ag_relabel_apply(r, &l, &lim), 0);
	ag_kvs_free(&l);
	ag_kvs_set(&l, "comm", "bash");  /* not kept */
	assert_int_equal(ag_relabel_apply(r, &l, &lim), 0);
	ag_kvs_free(&l);
	/* a replacement that comes out empty removes the target */
	ag_relabel *r2 = parse("relabel_configs:\n  - source_labels: [a]\n    regex: 'x(.*)'\n"
	                       "    target_label: b\n");
	ag_kvs_set(&l, "a", "x");
	ag_kvs_set(&l, "b", "old");
	assert_int_equal(ag_relabel_apply(r2, &l, &lim), 1);
	assert_null(get(&l, "b"));
	ag_kvs_free(&l);
	assert_int_equal(lim, 0);
	ag_relabel_free(r);
	ag_relabel_free(r2);
}

static void test_container_files(void **state)
{
	(void)state;
	ag_proc *pr = bare_proc();
	const char *docker = "{\"ID\":\"abc\",\"Name\":\"/shop-api-1\",\"Config\":{\"Hostname\":\"x\","
	                     "\"Labels\":{\"com.example.team\":\"payments\",\"version\":\"2.1\","
	                     "\"n\":3}}}";
	assert_int_equal(ag_container_json(docker, strlen(docker), "docker", pr->labels), 0);
	ag_relabel *r = parse("relabel_configs:\n  - regex: '__meta_container_label_(.+)'\n"
	                      "    action: labelmap\n  - source_labels: [__meta_container_name]\n"
	                      "    target_label: container\n");
	ag_labeler *lb;
	assert_int_equal(ag_labeler_new(r, &lb), 0);
	const ag_kvs *l = labels_of(lb, pr);
	assert_string_equal(get(l, "com_example_team"), "payments");
	assert_string_equal(get(l, "version"), "2.1");
	assert_string_equal(get(l, "container"), "shop-api-1");
	assert_null(get(l, "n"));
	proc_free(pr);

	pr = bare_proc();
	const char *oci = "{\"ociVersion\":\"1.0.2\",\"annotations\":{"
	                  "\"io.kubernetes.cri.sandbox-name\":\"api-7d9f\","
	                  "\"io.kubernetes.cri.sandbox-namespace\":\"prod\"}}";
	assert_int_equal(ag_container_json(oci, strlen(oci), "containerd", pr->labels), 0);
	l = labels_of(lb, pr);
	assert_string_equal(get(l, "io_kubernetes_cri_sandbox_name"), "api-7d9f");
	assert_string_equal(get(l, "io_kubernetes_cri_sandbox_namespace"), "prod");
	proc_free(pr);
	assert_int_equal(ag_container_json("{", 1, "docker", NULL), -EINVAL);
	ag_labeler_free(lb);
}

static void test_values_limit(void **state)
{
	(void)state;
	ag_labeler *lb;
	assert_int_equal(ag_labeler_new(parse("max_label_values: 2\n"), &lb), 0);
	ag_proc *p[4];
	const char *env[4] = {"SMOLDER_LABEL_version=1", "SMOLDER_LABEL_version=2",
	                      "SMOLDER_LABEL_version=3", "SMOLDER_LABEL_version=1"};
	for (int i = 0; i < 4; i++) {
		p[i] = bare_proc();
		assert_int_equal(ag_env_labels(env[i], strlen(env[i]), false, p[i]->labels), 0);
	}
	assert_string_equal(get(labels_of(lb, p[0]), "version"), "1");
	assert_string_equal(get(labels_of(lb, p[1]), "version"), "2");
	assert_null(get(labels_of(lb, p[2]), "version"));   /* a third value: left off */
	assert_string_equal(get(labels_of(lb, p[3]), "version"), "1");  /* in use already */
	ag_label_stats st;
	ag_labeler_stats(lb, &st);
	assert_int_equal(st.labels_dropped_cardinality, 1);
	/* the process with "2" goes: its value is free again */
	proc_free(p[1]);
	ag_proc *q = bare_proc();
	assert_int_equal(ag_env_labels(env[2], strlen(env[2]), false, q->labels), 0);
	assert_string_equal(get(labels_of(lb, q), "version"), "3");
	proc_free(q);
	proc_free(p[0]);
	proc_free(p[2]);
	proc_free(p[3]);
	ag_labeler_free(lb);
}

static void put(const char *path, const char *text, size_t n)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, n, f), n);
	fclose(f);
}

/* The whole path: procs.c reads a process in a /proc tree of our own,
 * labels.c its environment, cgroup and Docker's file through 1/root. */
static void test_proc_tree(void **state)
{
	(void)state;
	char root[256], path[1024], cmd[1200];
	const char *tmp = getenv("SMOLDER_TEST_TMP");
	snprintf(root, sizeof(root), "%s/procs.XXXXXX", tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(root));
	const char *id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/4242 %s/1/root/var/lib/docker/containers/%s", root,
	         root, id);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/4242/environ", root);
	const char env[] = "HOME=/\0SMOLDER_LABEL_version=1.5\0";
	put(path, env, sizeof(env) - 1);
	snprintf(path, sizeof(path), "%s/4242/cgroup", root);
	char cg[200];
	int n = snprintf(cg, sizeof(cg), "0::/system.slice/docker-%s.scope\n", id);
	put(path, cg, (size_t)n);
	snprintf(path, sizeof(path), "%s/1/root/var/lib/docker/containers/%s/config.v2.json", root, id);
	const char *cfg = "{\"Name\":\"/web\",\"Config\":{\"Labels\":{\"tier\":\"front\"}}}";
	put(path, cfg, strlen(cfg));

	ag_objs *objs;
	ag_procs *procs;
	assert_int_equal(ag_objs_new(&objs), 0);
	ag_procs_opts po = {.proc_root = root, .objs = objs};
	assert_int_equal(ag_procs_new(&po, &procs), 0);
	ag_labeler *lb;
	assert_int_equal(ag_labeler_new(parse("relabel_configs:\n  - source_labels: "
	                                      "[__meta_container_label_tier, __meta_systemd_unit]\n"
	                                      "    separator: '@'\n    target_label: where\n"), &lb), 0);
	ag_proc *pr = ag_procs_get(procs, 4242, "web");
	assert_non_null(pr);
	assert_string_equal(pr->container, id);
	ag_kvs b = {0};
	ag_kvs_set(&b, "container_id", pr->container);
	const ag_kvs *l = ag_labeler_labels(lb, pr, &b);
	ag_kvs_free(&b);
	assert_string_equal(get(l, "version"), "1.5");
	assert_string_equal(get(l, "where"), "front@docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope");
	assert_string_equal(get(l, "container_id"), id);
	ag_procs_free(procs);
	ag_labeler_free(lb);
	ag_objs_free(objs);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_actions),
		cmocka_unit_test(test_container_files),
		cmocka_unit_test(test_values_limit),
		cmocka_unit_test(test_proc_tree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
