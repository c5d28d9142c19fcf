/* ch_http.c - ClickHouse's HTTP interface over libcurl, and its RowBinary
 * format (ch.h). One POST per request, on keep-alive handles kept per
 * node; queries in the body, or in the URL when the body carries rows or
 * an external table. Not here: what is asked (clickhouse.c). */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "storage/ch.h"

/* ---- RowBinary ---- */

static int rb_need(st__rb *r, size_t n)
{
	return (size_t)(r->end - r->p) < n ? -EBADMSG : 0;
}

int st__rb_u8(st__rb *r, uint8_t *out)
{
	if (rb_need(r, 1))
		return -EBADMSG;
	*out = *r->p++;
	return 0;
}

int st__rb_u32(st__rb *r, uint32_t *out)
{
	if (rb_need(r, 4))
		return -EBADMSG;
	*out = st__get_u32(r->p);
	r->p += 4;
	return 0;
}

int st__rb_u64(st__rb *r, uint64_t *out)
{
	if (rb_need(r, 8))
		return -EBADMSG;
	*out = st__get_u64(r->p);
	r->p += 8;
	return 0;
}

int st__rb_i64(st__rb *r, int64_t *out)
{
	uint64_t v;
	if (st__rb_u64(r, &v))
		return -EBADMSG;
	*out = (int64_t)v;
	return 0;
}

int st__rb_count(st__rb *r, uint64_t *n, uint64_t max)
{
	uint64_t v;
	if (st__get_varint(&r->p, r->end, &v) || v > max)
		return -EBADMSG;
	*n = v;
	return 0;
}

int st__rb_str(st__rb *r, const char **s, size_t *n, size_t max)
{
	uint64_t len;
	if (st__rb_count(r, &len, max) || rb_need(r, (size_t)len))
		return -EBADMSG;
	*s = (const char *)r->p;
	*n = (size_t)len;
	r->p += len;
	return 0;
}

int st__rb_text(st__rb *r, const char **s, size_t *n, size_t max)
{
	int rc = st__rb_str(r, s, n, max);
	/* the store keeps text as C strings: a NUL inside would cut it */
	return rc ? rc : memchr(*s, 0, *n) ? -EBADMSG : 0;
}

int st__rb_put_u8(base_buf *b, uint8_t v)
{
	return base_buf_put(b, &v, 1);
}

int st__rb_put_str(base_buf *b, const char *s, size_t n)
{
	/* a LEB128 length and the bytes: storage's own string encoding */
	return st__enc_str(b, s, n);
}

int st__ch_quote(base_buf *b, const char *s, size_t n)
{
	int rc = base_buf_put(b, "'", 1);
	for (size_t i = 0; i < n && !rc; i++) {
		unsigned char c = (unsigned char)s[i];
		char e[5];
		if (c == '\'' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			rc = base_buf_put(b, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(e, sizeof(e), "\\x%02x", c);
			rc = base_buf_put(b, e, 4);
		} else {
			rc = base_buf_put(b, &s[i], 1);
		}
	}
	return rc ? rc : base_buf_put(b, "'", 1);
}

/* ---- nodes and handles ---- */

/* Idle handles to one node: reused for keep-alive, at most POOL_MAX kept. */
#define POOL_MAX 32
typedef struct st__ch_pool {
	pthread_mutex_t mu;
	CURL *idle[POOL_MAX];
	size_t n;
} st__ch_pool;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static CURL *handle_get(st__ch_node *nd)
{
	CURL *h = NULL;
	pthread_mutex_lock(&nd->pool->mu);
	if (nd->pool->n)
		h = nd->pool->idle[--nd->pool->n];
	pthread_mutex_unlock(&nd->pool->mu);
	if (h)
		curl_easy_reset(h);
	else
		h = curl_easy_init();
	return h;
}

static void handle_put(st__ch_node *nd, CURL *h)
{
	pthread_mutex_lock(&nd->pool->mu);
	if (nd->pool->n < POOL_MAX) {
		nd->pool->idle[nd->pool->n++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&nd->pool->mu);
	if (h)
		curl_easy_cleanup(h);
}

static bool db_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '_'))
			return false;
	return true;
}

/* One URL into nd and its database into db (db[0] 0: none named). */
static int node_parse(const char *url, st__ch_node *nd, char *db, size_t dbsize, base_err *err)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL, *pw = NULL;
	char *query = NULL;
	int rc = 0;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0)) {
		rc = base_fail(err, -EINVAL, "'%s' is not a URL: expected "
		              "http://[USER[:PASSWORD]@]HOST:PORT[/DATABASE]", url);
		goto out;
	}
	if (strcmp(scheme, "http") && strcmp(scheme, "https")) {
		rc = base_fail(err, -EINVAL, "'%s': ClickHouse's HTTP interface is http:// or "
		              "https://", url);
		goto out;
	}
	curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
	curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE);
	curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE);
	curl_url_get(u, CURLUPART_PASSWORD, &pw, CURLU_URLDECODE);
	curl_url_get(u, CURLUPART_QUERY, &query, 0);
	if (query) {
		rc = base_fail(err, -EINVAL, "'%s': no query string, please: the user and password "
		              "go before the host, the database in the path", url);
		goto out;
	}
	const char *d = path ? path + strspn(path, "/") : "";
	size_t dl = strcspn(d, "/");
	if (d[dl] || (dl && !db_name_ok(d))) {
		rc = base_fail(err, -EINVAL, "'%s': the path must be one database name "
		              "([A-Za-z0-9_], at most 64)", url);
		goto out;
	}
	snprintf(db, dbsize, "%.*s", (int)dl, d);
	bool v6 = strchr(host, ':') != NULL;
	size_t bl = strlen(scheme) + strlen(host) + 32;
	if (!(nd->base = malloc(bl)) || !(nd->pool = calloc(1, sizeof(*nd->pool)))) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&nd->pool->mu, NULL);
	snprintf(nd->base, bl, "%s://%s%s%s:%s/", scheme, v6 ? "[" : "", host, v6 ? "]" : "",
	         port ? port : "8123");
	snprintf(nd->where, sizeof(nd->where), "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
	         port ? port : "8123");
	if ((user && !(nd->user = strdup(user))) || (pw && !(nd->password = strdup(pw))))
		rc = -ENOMEM;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(user);
	curl_free(pw);
	curl_free(query);
	curl_url_cleanup(u);
	return rc;
}

static void node_free(st__ch_node *nd)
{
	if (nd->pool) {
		for (size_t i = 0; i < nd->pool->n; i++)
			curl_easy_cleanup(nd->pool->idle[i]);
		pthread_mutex_destroy(&nd->pool->mu);
		free(nd->pool);
	}
	free(nd->base);
	if (nd->password)
		memset(nd->password, 0, strlen(nd->password));
	free(nd->user);
	free(nd->password);
}

int st__ch_client_init(st__ch_client *c, const char *urls, int64_t timeout_ns, base_err *err)
{
	int rc = 0;
	char *list = strdup(urls ? urls : ""), *save = NULL;
	memset(c, 0, sizeof(*c));
	pthread_once(&curl_once, curl_init);
	if (!list)
		return -ENOMEM;
	c->timeout_ms = (long)(timeout_ns / 1000000);
	for (char *tok = strtok_r(list, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
		char db[128];
		tok += strspn(tok, " \t");
		if (!*tok)
			continue;
		st__ch_node *t = realloc(c->nodes, (c->nnodes + 1) * sizeof(*t));
		if (!t) {
			rc = -ENOMEM;
			break;
		}
		c->nodes = t;
		memset(&c->nodes[c->nnodes], 0, sizeof(*t));
		rc = node_parse(tok, &c->nodes[c->nnodes++], db, sizeof(db), err);
		if (rc)
			break;
		if (!db[0])
			snprintf(db, sizeof(db), "default");
		if (c->nnodes > 1 && strcmp(db, c->db))
			rc = base_fail(err, -EINVAL, "every ClickHouse URL must name the same database "
			              "(%s and %s)", c->db, db);
		snprintf(c->db, sizeof(c->db), "%s", db);
	}
	if (!rc && !c->nnodes)
		rc = base_fail(err, -EINVAL, "no ClickHouse URL given");
	free(list);
	if (rc)
		st__ch_client_free(c);
	return rc;
}

void st__ch_client_free(st__ch_client *c)
{
	for (size_t i = 0; i < c->nnodes; i++)
		node_free(&c->nodes[i]);
	free(c->nodes);
	memset(c, 0, sizeof(*c));
}

/* ---- requests ---- */

typedef struct resp {
	CURL *h;
	long status;
	base_buf *out;
	size_t max_out, got;
	st__ch_stream_fn stream;
	void *stream_arg;
	int rc;                 /* a failure inside the callback */
	char msg[1024];         /* the start of a non-200 answer */
	size_t msg_len;
} resp;

static size_t on_data(char *p, size_t size, size_t nm, void *arg)
{
	resp *r = arg;
	size_t n = size * nm;
	if (!r->status)
		curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->status != 200) {
		size_t k = sizeof(r->msg) - 1 - r->msg_len;
		k = n < k ? n : k;
		memcpy(r->msg + r->msg_len, p, k);
		r->msg_len += k;
		return n;
	}
	if (n > r->max_out - r->got) {
		r->rc = -EFBIG;
		return 0;
	}
	r->got += n;
	if (r->stream)
		r->rc = r->stream(r->stream_arg, (const uint8_t *)p, n);
	else if (r->out)
		r->rc = base_buf_put(r->out, p, n);
	return r->rc ? 0 : n;
}

/* ClickHouse's error codes that say "later", not "never": timeouts,
 * network errors between nodes (a shard down), too many parts or
 * queries, memory, and an insert whose outcome a node could not learn. */
static bool code_transient(long code)
{
	static const long codes[] = {3, 32, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252,
	                             279, 285, 319, 394, 425};
	for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++)
		if (codes[i] == code)
			return true;
	return false;
}

/* The error a non-200 answer carries, into err: "Code: N, e.displayText()
 * = ..." shortened to its text. */
static int answer_error(const st__ch_node *nd, resp *r, base_err *err)
{
	long code = -1;
	char *m = r->msg;
	m[r->msg_len] = 0;
	const char *c = strstr(m, "Code: ");
	if (c)
		code = strtol(c + 6, NULL, 10);
	const char *t = strstr(m, "e.displayText() = ");
	t = t ? t + 18 : m;
	size_t tl = strcspn(t, "\n");
	const char *w = strstr(t, ", e.what()");
	if (w && (size_t)(w - t) < tl)
		tl = (size_t)(w - t);
	bool transient = code_transient(code) || r->status == 503 || r->status == 502 ||
	                 r->status == 504;
	int rc = transient ? -EAGAIN : -EIO;
	int k = (int)(tl > 160 ? 160 : tl);
	if (code >= 0)
		return base_fail(err, rc, "ClickHouse at %s: %.*s (code %ld)", nd->where, k, t, code);
	return base_fail(err, rc, "ClickHouse at %s answered HTTP %ld: %.*s", nd->where, r->status,
	                k, t);
}

static int append_param(base_buf *u, CURL *h, const char *name, const char *value)
{
	char *e = curl_easy_escape(h, value, 0);
	if (!e)
		return -ENOMEM;
	int rc = base_buf_put(u, "&", 1);
	if (!rc)
		rc = base_buf_put(u, name, strlen(name));
	if (!rc)
		rc = base_buf_put(u, "=", 1);
	if (!rc)
		rc = base_buf_put(u, e, strlen(e));
	curl_free(e);
	return rc;
}

/* One attempt on node nd. *connect_failed says no connection was made
 * (nothing was sent: another node may be tried). */
static int do_one(st__ch_client *c, st__ch_node *nd, const st__ch_req *r, base_buf *out,
                  bool *connect_failed, base_err *err)
{
	int rc = 0;
	base_buf url = {0};
	curl_mime *mime = NULL;
	struct curl_slist *hdrs = NULL;
	size_t out_len0 = out ? out->len : 0;
	*connect_failed = false;
	/* a query's deadline: what is left of it bounds the transfer and,
	 * rounded up to seconds, the query on the server */
	long timeout_ms = c->timeout_ms;
	char limit[64] = "";
	if (r->deadline_ns) {
		int64_t left = r->deadline_ns - base_monotonic_ns();
		if (left <= 0)
			return base_fail(err, -ETIMEDOUT, "the query's time ran out");
		if (left / 1000000 + 1 < timeout_ms)
			timeout_ms = (long)(left / 1000000 + 1);
		snprintf(limit, sizeof(limit), "&max_execution_time=%lld",
		         (long long)((left + 999999999) / 1000000000));
	}
	CURL *h = handle_get(nd);
	if (!h)
		return -ENOMEM;
	/* the database, and an answer only once the query is over, so that
	 * an error is a status and not text after part of the rows */
	if ((rc = base_buf_put(&url, nd->base, strlen(nd->base))) ||
	    (rc = base_buf_put(&url, "?wait_end_of_query=1", 20)) ||
	    (!r->no_database && (rc = append_param(&url, h, "database", c->db))))
		goto out;
	if (r->settings && ((rc = base_buf_put(&url, "&", 1)) ||
	                    (rc = base_buf_put(&url, r->settings, strlen(r->settings)))))
		goto out;
	if (limit[0] && (rc = base_buf_put(&url, limit, strlen(limit))))
		goto out;
	bool query_in_url = r->data || r->ext;
	if (query_in_url && (rc = append_param(&url, h, "query", r->sql)))
		goto out;
	if (r->ext && ((rc = append_param(&url, h, "sel_structure", r->ext_structure)) ||
	               (rc = append_param(&url, h, "sel_format", "RowBinary"))))
		goto out;
	if ((rc = base_buf_put(&url, "", 1)))
		goto out;
	curl_easy_setopt(h, CURLOPT_URL, (const char *)url.data);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	if (nd->user) {
		/* headers rather than basic auth: ClickHouse has read them since
		 * long before 18.16 */
		char hb[600];
		snprintf(hb, sizeof(hb), "X-ClickHouse-User: %s", nd->user);
		hdrs = curl_slist_append(hdrs, hb);
		snprintf(hb, sizeof(hb), "X-ClickHouse-Key: %s", nd->password ? nd->password : "");
		hdrs = curl_slist_append(hdrs, hb);
		memset(hb, 0, sizeof(hb));
	}
	/* no "Expect: 100-continue" round trip before an insert's rows */
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (r->ext) {
		mime = curl_mime_init(h);
		curl_mimepart *part = curl_mime_addpart(mime);
		curl_mime_name(part, "sel");
		curl_mime_filename(part, "sel");
		curl_mime_data(part, r->ext, r->ext_len);
		curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
	} else if (r->data) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->data);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
	} else {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->sql);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->sql));
	}
	resp rs = {.h = h, .out = out, .max_out = r->max_out ? r->max_out : (64u << 20),
	           .stream = r->stream, .stream_arg = r->stream_arg};
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &rs);
	CURLcode cc = curl_easy_perform(h);
	if (rs.rc) {
		rc = rs.rc == -EFBIG ? base_fail(err, -EFBIG, "ClickHouse at %s sent more than %zu "
		                                "bytes", nd->where, rs.max_out) : rs.rc;
		goto out;
	}
	if (cc != CURLE_OK) {
		*connect_failed = cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST;
		rc = base_fail(err, -EAGAIN, "ClickHouse at %s: %s", nd->where, curl_easy_strerror(cc));
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs.status);
		if (rs.status != 200)
			rc = answer_error(nd, &rs, err);
	}
	/* out of time (curl's limit or ClickHouse's max_execution_time):
	 * the query's own deadline, not a store that failed */
	if (rc == -EAGAIN && r->deadline_ns && base_monotonic_ns() >= r->deadline_ns) {
		*connect_failed = false;
		rc = base_fail(err, -ETIMEDOUT, "the query's time ran out at ClickHouse %s",
		              nd->where);
	}
out:
	if (rc && out)
		out->len = out_len0;
	curl_mime_free(mime);
	curl_slist_free_all(hdrs);
	base_buf_free(&url);
	/* a handle whose transfer failed may hold a broken connection */
	if (rc == -EAGAIN || rc == -ETIMEDOUT)
		curl_easy_cleanup(h);
	else
		handle_put(nd, h);
	return rc;
}

int st__ch_do(st__ch_client *c, const st__ch_req *r, base_buf *out, base_err *err)
{
	bool cf;
	if (r->node >= 0)
		return do_one(c, &c->nodes[r->node], r, out, &cf, err);
	size_t front = __atomic_load_n(&c->front, __ATOMIC_RELAXED);
	int rc = -EAGAIN;
	for (size_t k = 0; k < c->nnodes; k++) {
		size_t i = (front + k) % c->nnodes;
		rc = do_one(c, &c->nodes[i], r, out, &cf, err);
		if (!cf) {
			if (k)   /* that one answers: the next requests go there first */
				__atomic_store_n(&c->front, i, __ATOMIC_RELAXED);
			return rc;
		}
	}
	return rc;
}
