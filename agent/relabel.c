/* relabel.c - the agent's config file (YAML, libyaml) and its relabel
 * rules, in the style of Prometheus' relabel_configs: replace, keep, drop,
 * labeldrop and labelmap over a process' labels. Every error names the
 * line and column; a regex that could backtrack for long is refused at
 * load, and every match runs under a step limit. Knows nothing of /proc:
 * labels.c gathers the labels, this file only rewrites them. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pcre2.h>
#include <yaml.h>

#include "agent/agent.h"

enum { ACT_REPLACE, ACT_KEEP, ACT_DROP, ACT_LABELDROP, ACT_LABELMAP };
static const char *const act_names[] = {"replace", "keep", "drop", "labeldrop", "labelmap"};

typedef struct rule {
	int action;
	char **src;            /* source_labels */
	size_t nsrc;
	char *sep;             /* separator, default ";" */
	char *regex_text;
	pcre2_code *re;
	char *target;          /* target_label */
	char *replacement;     /* default "$1" */
} rule;

struct ag_relabel {
	rule *rules;
	size_t n;
	uint32_t max_label_values;
	pcre2_match_context *mctx;
	pcre2_match_data *md;   /* big enough for every rule's groups */
};

void ag_relabel_free(ag_relabel *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		rule *u = &r->rules[i];
		for (size_t k = 0; k < u->nsrc; k++)
			free(u->src[k]);
		free(u->src);
		free(u->sep);
		free(u->regex_text);
		pcre2_code_free(u->re);
		free(u->target);
		free(u->replacement);
	}
	free(r->rules);
	pcre2_match_context_free(r->mctx);
	pcre2_match_data_free(r->md);
	free(r);
}

uint32_t ag_relabel_max_values(const ag_relabel *r)
{
	return r && r->max_label_values ? r->max_label_values : AG_MAX_LABEL_VALUES;
}

/* ---- the regex budget ----
 * One small function decides whether a regex is too slow, so a shared
 * mechanism can replace it: at load the regex runs on values built to make
 * a backtracking regex explode (each of its literal characters and a few
 * common ones repeated to the longest label value, then any of them, then
 * a character that makes the match fail at the very end: PCRE2 skips a
 * subject lacking a required character at once, so each must appear),
 * under AG_REGEX_MATCH_LIMIT steps. Hitting the limit refuses the regex;
 * at run time the same limit counts and fails the match instead of
 * stalling the agent's main loop. */
static int regex_too_slow(const pcre2_code *re, pcre2_match_context *mctx,
                          pcre2_match_data *md, const char *text)
{
	char probe[AG_LABEL_VALUE_MAX];
	char chars[48] = "a0 -._/:";
	size_t nc = strlen(chars);
	for (const char *p = text; *p && nc < sizeof(chars) - 1; p++)
		if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f && !strchr(chars, *p))
			chars[nc++] = *p;
	for (size_t c = 0; c < nc; c++)
		for (size_t d = 0; d < nc; d++)
			for (int tail = 0; tail < 2; tail++) {
				size_t n = sizeof(probe) - (size_t)tail;
				memset(probe, chars[c], n - 1);
				probe[n - 2] = chars[d];
				probe[n - 1] = '\x01';
				if (!tail)
					n--;  /* ... d at the very end instead */
				int rc = pcre2_match(re, (PCRE2_SPTR)probe, n, 0, 0, md, mctx);
				if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
				    rc == PCRE2_ERROR_HEAPLIMIT)
					return 1;
			}
	return 0;
}

/* ---- parsing ---- */

typedef struct pctx {
	yaml_document_t *doc;
	ag_relabel *r;
	base_err *err;
} pctx;

static int __attribute__((format(printf, 3, 4))) perr(pctx *c, const yaml_node_t *n,
                                                      const char *fmt, ...)
{
	char what[BASE_ERR_MSG];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return base_fail(c->err, -EINVAL, "%zu:%zu: %s", n ? n->start_mark.line + 1 : 1,
	                 n ? n->start_mark.column + 1 : 1, what);
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int label_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 128)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
		      (i && ch >= '0' && ch <= '9')))
			return 0;
	}
	return 1;
}

static int str_field(pctx *c, const yaml_node_t *v, const char *key, char **out)
{
	const char *s = scalar(v);
	if (!s)
		return perr(c, v, "%s wants a string", key);
	if (strlen(s) > AG_RELABEL_STR_MAX)
		return perr(c, v, "%s is longer than %d bytes", key, AG_RELABEL_STR_MAX);
	free(*out);
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int compile_regex(pctx *c, const yaml_node_t *at, rule *u)
{
	int ec;
	PCRE2_SIZE off;
	u->re = pcre2_compile((PCRE2_SPTR)u->regex_text, PCRE2_ZERO_TERMINATED,
	                      PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &ec, &off, NULL);
	if (!u->re) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(ec, msg, sizeof(msg));
		return perr(c, at, "bad regex: %s at offset %zu of the regex", (const char *)msg,
		            (size_t)off);
	}
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(u->re, NULL);
	if (!md)
		return -ENOMEM;
	int slow = regex_too_slow(u->re, c->r->mctx, md, u->regex_text);
	pcre2_match_data_free(md);
	if (slow)
		return perr(c, at, "regex too slow: more than %d steps on a %d-byte value; "
		            "simplify it (nested repetition backtracks)", AG_REGEX_MATCH_LIMIT,
		            AG_LABEL_VALUE_MAX);
	return 0;
}

static int parse_rule(pctx *c, const yaml_node_t *n, rule *u)
{
	const yaml_node_t *regex_at = n, *action_at = n;
	if (n->type != YAML_MAPPING_NODE)
		return perr(c, n, "a relabel rule is a mapping (source_labels, regex, ...)");
	u->action = ACT_REPLACE;
	int rc = 0;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
	     !rc && p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *key = scalar(k);
		if (!key)
			return perr(c, k, "keys are strings");
		if (!strcmp(key, "source_labels")) {
			if (!v || v->type != YAML_SEQUENCE_NODE)
				return perr(c, v, "source_labels wants a list of label names");
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     !rc && it < v->data.sequence.items.top; it++) {
				yaml_node_t *e = yaml_document_get_node(c->doc, *it);
				const char *s = scalar(e);
				if (!s || !label_name_ok(s))
					return perr(c, e, "'%s' is no label name", s ? s : "(not a string)");
				if (u->nsrc == AG_RELABEL_MAX_SOURCES)
					return perr(c, e, "at most %d source labels", AG_RELABEL_MAX_SOURCES);
				char **ns = realloc(u->src, (u->nsrc + 1) * sizeof(*ns));
				if (!ns || !(ns[u->nsrc] = strdup(s))) {
					if (ns)
						u->src = ns;
					return -ENOMEM;
				}
				u->src = ns;
				u->nsrc++;
			}
		} else if (!strcmp(key, "separator")) {
			rc = str_field(c, v, key, &u->sep);
		} else if (!strcmp(key, "regex")) {
			regex_at = v;
			rc = str_field(c, v, key, &u->regex_text);
		} else if (!strcmp(key, "target_label")) {
			rc = str_field(c, v, key, &u->target);
			if (!rc && !label_name_ok(u->target))
				return perr(c, v, "target_label '%s' is no label name", u->target);
		} else if (!strcmp(key, "replacement")) {
			rc = str_field(c, v, key, &u->replacement);
		} else if (!strcmp(key, "action")) {
			const char *s = scalar(v);
			size_t a = 0;
			while (s && a < sizeof(act_names) / sizeof(*act_names) && strcmp(s, act_names[a]))
				a++;
			if (!s || a == sizeof(act_names) / sizeof(*act_names))
				return perr(c, v, "action must be replace, keep, drop, labeldrop or labelmap");
			u->action = (int)a;
			action_at = v;
		} else {
			return perr(c, k, "unknown key '%s' in a relabel rule", key);
		}
	}
	if (rc)
		return rc;
	if (!u->sep && !(u->sep = strdup(";")))
		return -ENOMEM;
	if (!u->replacement && !(u->replacement = strdup("$1")))
		return -ENOMEM;
	if (!u->regex_text && !(u->regex_text = strdup("(.*)")))
		return -ENOMEM;
	if (u->action == ACT_REPLACE && !u->target)
		return perr(c, action_at, "replace needs a target_label");
	if ((u->action == ACT_KEEP || u->action == ACT_DROP || u->action == ACT_REPLACE) &&
	    !u->nsrc)
		return perr(c, action_at, "%s needs source_labels", act_names[u->action]);
	return compile_regex(c, regex_at, u);
}

static int parse_doc(pctx *c)
{
	yaml_node_t *root = yaml_document_get_root_node(c->doc);
	if (!root)
		return 0;  /* an empty file: no rules */
	if (root->type != YAML_MAPPING_NODE)
		return perr(c, root, "the config is a mapping (relabel_configs: [...])");
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
	     p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const char *key = scalar(k);
		if (key && !strcmp(key, "max_label_values")) {
			const char *s = scalar(v);
			char *end;
			unsigned long x = s ? strtoul(s, &end, 10) : 0;
			if (!s || !*s || *end || x < 1 || x > 100000)
				return perr(c, v, "max_label_values wants a whole number from 1 to 100000");
			c->r->max_label_values = (uint32_t)x;
		} else if (key && !strcmp(key, "relabel_configs")) {
			if (v->type != YAML_SEQUENCE_NODE)
				return perr(c, v, "relabel_configs wants a list of rules");
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     it < v->data.sequence.items.top; it++) {
				yaml_node_t *e = yaml_document_get_node(c->doc, *it);
				if (c->r->n == AG_RELABEL_MAX_RULES)
					return perr(c, e, "at most %d relabel rules", AG_RELABEL_MAX_RULES);
				rule *nr = realloc(c->r->rules, (c->r->n + 1) * sizeof(*nr));
				if (!nr)
					return -ENOMEM;
				c->r->rules = nr;
				memset(&nr[c->r->n], 0, sizeof(*nr));
				c->r->n++;
				int rc = parse_rule(c, e, &nr[c->r->n - 1]);
				if (rc)
					return rc;
			}
		} else {
			return perr(c, k, "unknown key '%s' (relabel_configs, max_label_values)",
			            key ? key : "(not a string)");
		}
	}
	return 0;
}

int ag_relabel_parse(const char *text, size_t len, ag_relabel **out, base_err *err)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int rc = 0, have_doc = 0;
	ag_relabel *r = calloc(1, sizeof(*r));
	*out = NULL;
	if (!r)
		return -ENOMEM;
	if (len > AG_CONFIG_MAX_BYTES) {
		ag_relabel_free(r);
		return base_fail(err, -EINVAL, "1:1: the config is larger than %d bytes",
		                 AG_CONFIG_MAX_BYTES);
	}
	r->mctx = pcre2_match_context_create(NULL);
	if (!r->mctx || !yaml_parser_initialize(&parser)) {
		ag_relabel_free(r);
		return -ENOMEM;
	}
	pcre2_set_match_limit(r->mctx, AG_REGEX_MATCH_LIMIT);
	pcre2_set_depth_limit(r->mctx, AG_REGEX_MATCH_LIMIT);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = base_fail(err, parser.error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL,
		               "%zu:%zu: %s%s%s", parser.problem_mark.line + 1,
		               parser.problem_mark.column + 1,
		               parser.problem ? parser.problem : "bad YAML", parser.context ? " " : "",
		               parser.context ? parser.context : "");
		goto out;
	}
	have_doc = 1;
	pctx c = {&doc, r, err};
	if ((rc = parse_doc(&c)))
		goto out;
	/* one match data for every rule: as many groups as the largest */
	uint32_t groups = 1;
	for (size_t i = 0; i < r->n; i++) {
		uint32_t g = 0;
		pcre2_pattern_info(r->rules[i].re, PCRE2_INFO_CAPTURECOUNT, &g);
		if (g + 1 > groups)
			groups = g + 1;
	}
	if (!(r->md = pcre2_match_data_create(groups, NULL)))
		rc = -ENOMEM;
out:
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (rc == -ENOMEM)
		base_fail(err, rc, "out of memory");
	if (rc) {
		ag_relabel_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

int ag_relabel_load(const char *path, ag_relabel **out, base_err *err)
{
	base_err pe = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	*out = NULL;
	if (fd < 0 || fstat(fd, &st)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return base_fail(err, -e, "%s: %s", path, strerror(e));
	}
	if (st.st_size > AG_CONFIG_MAX_BYTES) {
		close(fd);
		return base_fail(err, -EINVAL, "%s: larger than %d bytes", path, AG_CONFIG_MAX_BYTES);
	}
	char *text = malloc((size_t)st.st_size + 1);
	ssize_t n = text ? read(fd, text, (size_t)st.st_size) : -1;
	close(fd);
	if (n < 0) {
		free(text);
		return base_fail(err, -EIO, "%s: cannot read", path);
	}
	int rc = ag_relabel_parse(text, (size_t)n, out, &pe);
	free(text);
	return rc ? base_fail(err, rc, "%s:%s", path, pe.msg) : 0;
}

/* ---- applying ---- */

static ag_kv *kv_find(ag_kvs *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].name, name))
			return &l->v[i];
	return NULL;
}

int ag_kvs_set(ag_kvs *l, const char *name, const char *value)
{
	ag_kv *e = kv_find(l, name);
	char *v = strdup(value);
	if (!v)
		return -ENOMEM;
	if (e) {
		free(e->value);
		e->value = v;
		return 0;
	}
	if (l->n == l->cap) {
		size_t c = l->cap ? 2 * l->cap : 16;
		ag_kv *nv = realloc(l->v, c * sizeof(*nv));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		l->v = nv;
		l->cap = c;
	}
	if (!(l->v[l->n].name = strdup(name))) {
		free(v);
		return -ENOMEM;
	}
	l->v[l->n++].value = v;
	return 0;
}

void ag_kvs_del(ag_kvs *l, size_t i)
{
	free(l->v[i].name);
	free(l->v[i].value);
	l->v[i] = l->v[--l->n];
}

void ag_kvs_free(ag_kvs *l)
{
	while (l && l->n)
		ag_kvs_del(l, l->n - 1);
	if (l) {
		free(l->v);
		l->v = NULL;
		l->cap = 0;
	}
}

/* 1 match, 0 none, or 0 with *limit counted when the step limit hit */
static int match(ag_relabel *r, const rule *u, const char *s, size_t n, uint64_t *limit)
{
	int rc = pcre2_match(u->re, (PCRE2_SPTR)s, n, 0, 0, r->md, r->mctx);
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
	    rc == PCRE2_ERROR_HEAPLIMIT)
		(*limit)++;
	return rc > 0;
}

/* replacement with $N / ${N} from the last match of s, into out */
static void expand(ag_relabel *r, const char *repl, const char *s, char *out, size_t cap)
{
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
	uint32_t ng = pcre2_get_ovector_count(r->md);
	size_t o = 0;
	for (const char *p = repl; *p && o + 1 < cap; p++) {
		int g = -1;
		if (p[0] == '$' && p[1] == '$') {
			out[o++] = '$';
			p++;
			continue;
		}
		if (p[0] == '$' && p[1] >= '0' && p[1] <= '9') {
			g = p[1] - '0';
			p++;
		} else if (p[0] == '$' && p[1] == '{' && p[2] >= '0' && p[2] <= '9' && p[3] == '}') {
			g = p[2] - '0';
			p += 3;
		}
		if (g < 0) {
			out[o++] = *p;
			continue;
		}
		if ((uint32_t)g >= ng || ov[2 * g] == PCRE2_UNSET)
			continue;
		for (size_t k = ov[2 * g]; k < ov[2 * g + 1] && o + 1 < cap; k++)
			out[o++] = s[k];
	}
	out[o] = 0;
}

int ag_relabel_apply(ag_relabel *r, ag_kvs *l, uint64_t *regex_limit)
{
	char val[AG_RELABEL_STR_MAX * 4 + 8], res[AG_LABEL_VALUE_MAX * 4 + 8];
	for (size_t i = 0; r && i < r->n; i++) {
		const rule *u = &r->rules[i];
		if (u->action == ACT_LABELDROP || u->action == ACT_LABELMAP) {
			/* labelmap adds labels: only the ones there before are mapped */
			size_t end = l->n;
			for (size_t k = 0; k < end && k < l->n;) {
				const char *nm = l->v[k].name;
				if (!match(r, u, nm, strlen(nm), regex_limit)) {
					k++;
				} else if (u->action == ACT_LABELDROP) {
					ag_kvs_del(l, k);  /* the last one moves here */
					end--;
				} else {
					expand(r, u->replacement, nm, res, sizeof(res));
					if (label_name_ok(res) && strcmp(res, nm)) {
						char *v = strdup(l->v[k].value);
						int rc = v ? ag_kvs_set(l, res, v) : -ENOMEM;
						free(v);
						if (rc)
							return rc;
					}
					k++;
				}
			}
			continue;
		}
		/* the source labels' values joined by the separator; a missing
		 * label is the empty string, as in Prometheus */
		size_t n = 0;
		for (size_t k = 0; k < u->nsrc; k++) {
			const ag_kv *e = kv_find(l, u->src[k]);
			const char *v = e ? e->value : "";
			int w = snprintf(val + n, sizeof(val) - n, "%s%s", k ? u->sep : "", v);
			n = w < 0 ? n : n + (size_t)w < sizeof(val) ? n + (size_t)w : sizeof(val) - 1;
		}
		int m = match(r, u, val, n, regex_limit);
		if (u->action == ACT_KEEP && !m)
			return 0;
		if (u->action == ACT_DROP && m)
			return 0;
		if (u->action == ACT_REPLACE && m) {
			expand(r, u->replacement, val, res, sizeof(res));
			int rc = 0;
			if (res[0]) {
				rc = ag_kvs_set(l, u->target, res);
			} else {
				ag_kv *e = kv_find(l, u->target);
				if (e)
					ag_kvs_del(l, (size_t)(e - l->v));
			}
			if (rc)
				return rc;
		}
	}
	/* meta labels exist for the rules only */
	for (size_t k = 0; k < l->n;)
		if (l->v[k].name[0] == '_' && l->v[k].name[1] == '_')
			ag_kvs_del(l, k);
		else
			k++;
	return 1;
}
