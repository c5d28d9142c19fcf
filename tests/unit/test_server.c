/* test_server.c - unit tests of server/http.c and server/json.c. Each test
 * starts a real server on 127.0.0.1 (an ephemeral port) with its loop in a
 * thread and talks to it over loopback: libcurl for ordinary requests, a
 * plain socket for bytes no HTTP client would send. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include <zlib.h>

#include "base/clock.h"
#include "base/text.h"
#include "server/alloc.h"
#include "server/api.h"
#include "server/debuginfo.h"
#include "server/http.h"
#include "server/pprof_in.h"
#include "server/pyroscope.h"
#include "server/symbolize.h"
#include "server/json.h"
#include "wire/wire.h"

#define SMALL_BODY 1024          /* the /small route's body limit */
#define MAX_URL 1024
#define MAX_HEADER 8192

/* ---- the server under test ---- */

typedef struct fx {
	uv_loop_t loop;
	srv_http *h;
	pthread_t th;
	bool running;
	int port;
	char base[64];               /* "http://127.0.0.1:PORT" */
	char log_path[256];
	FILE *log;

	pthread_mutex_t mu;          /* the /slow handler's gate */
	pthread_cond_t cv;
	int slow_entered;
	bool slow_release;
} fx;

static int h_hello(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	(void)req;
	/* a header value with CRLF must be refused: it would split the response */
	if (srv_resp_header(resp, "X-Test", "a\r\nInjected: yes") != -EINVAL ||
	    srv_resp_header(resp, "Content-Length", "1") != -EINVAL)
		return -EPROTO;
	srv_resp_header(resp, "X-Test", "ok");
	srv_resp_set(resp, 200, "text/plain");
	srv_xbuf_puts(srv_resp_body(resp), "hello");
	return 0;
}

/* Echoes the query parameters named by ?names=a,b as {"a": [...], ...}. */
static int h_query(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	const char *names = srv_req_query(req, "names", 0);
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	char *copy = srv_xstrdup(names ? names : ""), *save = NULL;
	for (char *n = strtok_r(copy, ",", &save); n; n = strtok_r(NULL, ",", &save)) {
		srv_json_key(j, n);
		srv_json_arr_begin(j);
		size_t cnt = srv_req_query_count(req, n);
		for (size_t i = 0; i < cnt; i++)
			srv_json_str(j, srv_req_query(req, n, i));
		srv_json_arr_end(j);
	}
	free(copy);
	srv_json_kv_bool(j, "past_end_is_null", srv_req_query(req, "names", 1) == NULL);
	srv_json_obj_end(j);
	return 0;
}

static int h_param(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "name", srv_req_param(req, "name"));
	srv_json_kv_bool(j, "other_is_null", srv_req_param(req, "other") == NULL);
	srv_json_kv_str(j, "path", srv_req_path(req));
	srv_json_obj_end(j);
	return 0;
}

static int h_prefix(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "rest", srv_req_param(req, "*"));
	srv_json_obj_end(j);
	return 0;
}

/* Answers with the body it received, and its length in a header. */
static int h_echo(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	size_t n;
	const void *body = srv_req_body(req, &n);
	char len[32];
	snprintf(len, sizeof(len), "%zu", n);
	srv_resp_header(resp, "X-Body-Length", len);
	base_buf b = {0};
	srv_xbuf_put(&b, body, n);
	const char *ct = srv_req_header(req, "content-type");
	srv_resp_take(resp, 200, ct ? ct : "application/octet-stream", &b);
	assert_null(b.data);
	return 0;
}

/* Blocks on the fixture's gate until the test opens it. */
static int h_slow(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)req;
	fx *f = arg;
	pthread_mutex_lock(&f->mu);
	f->slow_entered++;
	pthread_cond_broadcast(&f->cv);
	while (!f->slow_release)
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
	srv_resp_set(resp, 200, "text/plain");
	srv_xbuf_puts(srv_resp_body(resp), "slow");
	return 0;
}

static int h_fail(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	(void)req;
	srv_xbuf_puts(srv_resp_body(resp), "partial output that must not be sent");
	return -EIO;
}

static int h_unbalanced(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	(void)req;
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_key(j, "open");
	srv_json_arr_begin(j);
	return 0;
}

static void *server_thread(void *arg)
{
	fx *f = arg;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* The web UI's directory for setup_ui's server (api_ui.c), else NULL. */
static const char *g_ui_dir;
/* setup_limits: small header deadline, connection cap and query slots */
static bool g_limits;
#define LIMIT_HEADER_MS 300
#define LIMIT_CONNS 3

/* Every request logged (--log-level debug) unless setup_quiet says not. */
static bool g_log_every = true;

/* *state may point to an idle timeout in ms to use instead of 10 s. */
static int setup(void **state)
{
	const unsigned *idle_ms = *state;
	fx *f = srv_xcalloc(1, sizeof(*f));
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	const char *tmp = getenv("SMOLDER_TEST_TMP");
	snprintf(f->log_path, sizeof(f->log_path), "%s/access.XXXXXX", tmp ? tmp : "/tmp");
	int fd = mkstemp(f->log_path);
	if (fd < 0 || !(f->log = fdopen(fd, "w")))
		return -1;
	setvbuf(f->log, NULL, _IONBF, 0);

	srv_http_options opt;
	srv_http_options_default(&opt);
	opt.listen = "127.0.0.1:0";
	opt.max_url_bytes = MAX_URL;
	opt.max_header_bytes = MAX_HEADER;
	opt.idle_timeout_ms = idle_ms ? *idle_ms : 10000;
	opt.access_log = f->log;
	if (g_limits) {
		opt.header_timeout_ms = LIMIT_HEADER_MS;
		opt.max_connections = LIMIT_CONNS;
		opt.max_queries = 1;
	}
	opt.log_every_request = g_log_every;
	if (uv_loop_init(&f->loop) || srv_http_new(&f->loop, &opt, &f->h))
		return -1;
	const srv_route routes[] = {
		{.method = "GET", .path = "/hello", .fn = h_hello},
		{.method = "GET", .path = "/inline", .fn = h_hello, .flags = SRV_ROUTE_INLINE},
		{.method = "GET", .path = "/query", .fn = h_query},
		{.method = "GET", .path = "/api/v1/labels/{name}/values", .fn = h_param},
		{.method = "PUT", .path = "/api/v1/debuginfo/{name}", .fn = h_param},
		{.method = "GET", .path = "/static/*", .fn = h_prefix},
		{.method = "GET", .path = "/static/exact", .fn = h_hello},
		{.method = "POST", .path = "/echo", .fn = h_echo},
		{.method = "PUT", .path = "/echo", .fn = h_echo},
		{.method = "POST", .path = "/small", .fn = h_echo, .max_body_bytes = SMALL_BODY},
		{.method = "GET", .path = "/slow", .fn = h_slow, .arg = f},
		{.method = "GET", .path = "/qslow", .fn = h_slow, .arg = f, .flags = SRV_ROUTE_QUERY},
		{.method = "GET", .path = "/fail", .fn = h_fail},
		{.method = "GET", .path = "/unbalanced", .fn = h_unbalanced},
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes); i++)
		if (srv_http_route(f->h, &routes[i]))
			return -1;
	if (g_ui_dir && srv_api_ui_routes(f->h, g_ui_dir))
		return -1;
	if (srv_http_listen(f->h))
		return -1;
	f->port = srv_http_port(f->h);
	if (f->port <= 0)
		return -1;
	snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", f->port);
	if (pthread_create(&f->th, NULL, server_thread, f))
		return -1;
	f->running = true;
	*state = f;
	return 0;
}

static int setup_limits(void **state)
{
	g_limits = true;
	int rc = setup(state);
	g_limits = false;
	return rc;
}

static void open_gate(fx *f)
{
	pthread_mutex_lock(&f->mu);
	f->slow_release = true;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static int teardown(void **state)
{
	fx *f = *state;
	open_gate(f);   /* a failed test must not leave a handler blocked */
	srv_http_shutdown(f->h);
	if (f->running)
		pthread_join(f->th, NULL);
	srv_http_free(f->h);
	int rc = uv_loop_close(&f->loop);
	fclose(f->log);
	unlink(f->log_path);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
	return rc ? -1 : 0;   /* a handle left open is a leak in the server */
}

/* ---- an HTTP client on libcurl ---- */

typedef struct res {
	long status;
	base_buf body;
	base_buf headers;     /* raw header lines of the last response */
	long new_conns;      /* connections curl opened for this transfer */
	bool saw_continue;   /* a "100 Continue" came before the response */
	CURLcode rc;
} res;

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
	srv_xbuf_put(arg, p, sz * n);
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	res *r = arg;
	/* a new status line starts a new response (after 100 Continue) */
	if (n * sz >= 5 && !memcmp(p, "HTTP/", 5)) {
		if (r->headers.len >= 13 && !memcmp(r->headers.data + 9, "100", 3))
			r->saw_continue = true;
		base_buf_reset(&r->headers);
	}
	srv_xbuf_put(&r->headers, p, sz * n);
	return sz * n;
}

/* The value of header name in r, copied into buf; NULL when absent. */
static const char *res_header(const res *r, const char *name, char *buf, size_t len)
{
	const char *p = r->headers.data;
	size_t nl = strlen(name);
	while (p && *p) {
		const char *eol = strstr(p, "\r\n");
		if (!eol)
			break;
		if ((size_t)(eol - p) > nl && !strncasecmp(p, name, nl) && p[nl] == ':') {
			const char *v = p + nl + 1;
			while (*v == ' ')
				v++;
			snprintf(buf, len, "%.*s", (int)(eol - v), v);
			return buf;
		}
		p = eol + 2;
	}
	return NULL;
}

static void res_free(res *r)
{
	base_buf_free(&r->body);
	base_buf_free(&r->headers);
}

/* Sends method url with an optional body on e (a fresh handle when NULL)
 * and fills r. extra: a NULL-terminated list of request headers. */
static void request(CURL *e, const char *method, const char *url, const void *body,
                    size_t n, const char *const *extra, res *r)
{
	bool own = !e;
	memset(r, 0, sizeof(*r));
	if (own)
		e = curl_easy_init();
	assert_non_null(e);
	struct curl_slist *hl = NULL;
	for (size_t i = 0; extra && extra[i]; i++)
		hl = curl_slist_append(hl, extra[i]);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
	curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	if (!strcmp(method, "HEAD")) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	} else if (strcmp(method, "GET")) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 20L);
	/* never give up waiting for "100 Continue": a server that does not
	 * send it must fail the test, not slow it down by a second */
	curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 30000L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	r->rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &r->new_conns);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl);
	if (own)
		curl_easy_cleanup(e);
}

static void get(fx *f, const char *path, res *r)
{
	char url[4096];
	snprintf(url, sizeof(url), "%s%s", f->base, path);
	request(NULL, "GET", url, NULL, 0, NULL, r);
	assert_int_equal(r->rc, CURLE_OK);
}

/* ---- a raw client, for bytes curl would never send ---- */

static int raw_connect(fx *f)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return s;
}

/* Sends data and reads until the server closes (or 10 s pass: a failure). */
static void raw_exchange(fx *f, const void *data, size_t n, base_buf *out, bool *closed)
{
	int s = raw_connect(f);
	assert_int_equal(send(s, data, n, MSG_NOSIGNAL), (ssize_t)n);
	char buf[4096];
	ssize_t got;
	*closed = false;
	while ((got = recv(s, buf, sizeof(buf), 0)) > 0)
		srv_xbuf_put(out, buf, (size_t)got);
	*closed = got == 0;
	close(s);
}

/* ---- tests: routing and responses ---- */

static void test_route_200(void **state)
{
	fx *f = *state;
	res r;
	char v[128];
	get(f, "/hello", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.data, "hello");
	assert_string_equal(res_header(&r, "Content-Type", v, sizeof(v)), "text/plain");
	assert_string_equal(res_header(&r, "Content-Length", v, sizeof(v)), "5");
	assert_string_equal(res_header(&r, "X-Test", v, sizeof(v)), "ok");
	assert_null(res_header(&r, "Injected", v, sizeof(v)));
	assert_non_null(res_header(&r, "Date", v, sizeof(v)));
	res_free(&r);

	get(f, "/inline", &r);   /* the same handler on the loop thread */
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.data, "hello");
	res_free(&r);
}

static void test_head(void **state)
{
	fx *f = *state;
	res r;
	char url[128], v[64];
	snprintf(url, sizeof(url), "%s/hello", f->base);
	request(NULL, "HEAD", url, NULL, 0, NULL, &r);
	assert_int_equal(r.rc, CURLE_OK);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, 0);
	assert_string_equal(res_header(&r, "Content-Length", v, sizeof(v)), "5");
	res_free(&r);
}

static void test_query_params(void **state)
{
	fx *f = *state;
	static const struct {
		const char *name, *query, *want;
	} cases[] = {
		{"percent and plus", "names=q&q=a%20b&q=c+d&q=%2B%26%3D",
		 "{\"q\":[\"a b\",\"c d\",\"+&=\"],\"past_end_is_null\":true}"},
		{"UTF-8 escapes", "names=s&s=%E2%9C%93%c3%a9",
		 "{\"s\":[\"\xe2\x9c\x93\xc3\xa9\"],\"past_end_is_null\":true}"},
		{"empty, bare and missing", "names=e,b,m&e=&b&&",
		 "{\"e\":[\"\"],\"b\":[\"\"],\"m\":[],\"past_end_is_null\":true}"},
		{"encoded names, '=' in a value", "names=a+b,x&a%20b=1&x=y=z",
		 "{\"a b\":[\"1\"],\"x\":[\"y=z\"],\"past_end_is_null\":true}"},
		{"selector syntax", "names=query&query=cpu%7Bservice%3D%22api%22%7D",
		 "{\"query\":[\"cpu{service=\\\"api\\\"}\"],\"past_end_is_null\":true}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char path[512];
		snprintf(path, sizeof(path), "/query?%s", cases[i].query);
		res r;
		get(f, path, &r);
		if (r.status != 200 || strcmp(r.body.data, cases[i].want))
			fail_msg("%s: got %ld %s, want %s", cases[i].name, r.status,
			         r.body.data, cases[i].want);
		res_free(&r);
	}
	/* broken escapes and an encoded NUL are the client's error */
	static const char *const bad[] = {"/query?q=%", "/query?q=%4", "/query?q=%zz",
	                                  "/query?q=%00", "/query?%G1=x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		res r;
		get(f, bad[i], &r);
		if (r.status != 400 || !strstr(r.body.data, "\"error\""))
			fail_msg("%s: got %ld %s", bad[i], r.status, r.body.data);
		res_free(&r);
	}
}

static void test_path_params(void **state)
{
	fx *f = *state;
	static const struct {
		const char *path;
		long status;
		const char *want;   /* a substring of the body */
	} cases[] = {
		{"/api/v1/labels/service/values", 200, "\"name\":\"service\""},
		{"/api/v1/labels/service/values", 200, "\"other_is_null\":true"},
		{"/api/v1/labels/a%2Fb%20c/values", 200, "\"name\":\"a/b c\""},
		{"/api/v1/labels/a%2Fb/values", 200, "\"path\":\"/api/v1/labels/a%2Fb/values\""},
		{"/api/v1/labels/a+b/values", 200, "\"name\":\"a+b\""},   /* '+' is literal in paths */
		{"/api/v1/labels//values", 404, "\"error\""},
		{"/api/v1/labels/a/b/values", 404, "\"error\""},
		{"/api/v1/labels/a/values/", 404, "\"error\""},
		{"/api/v1/labels/%zz/values", 400, "\"error\""},
		{"/static/css/app.css", 200, "\"rest\":\"css/app.css\""},
		{"/static/", 200, "\"rest\":\"\""},
		{"/static/exact", 200, "hello"},   /* exact beats prefix */
		{"/static", 404, "\"error\""},
		{"/hello/", 404, "\"error\""},
		{"/hello?x=1", 200, "hello"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		res r;
		get(f, cases[i].path, &r);
		if (r.status != cases[i].status || !strstr(r.body.data, cases[i].want))
			fail_msg("%s: got %ld %s, want %ld with %s", cases[i].path, r.status,
			         r.body.data, cases[i].status, cases[i].want);
		res_free(&r);
	}
}

static void test_404(void **state)
{
	fx *f = *state;
	res r;
	char v[64];
	get(f, "/no/such/thing", &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(res_header(&r, "Content-Type", v, sizeof(v)), "application/json");
	assert_string_equal(r.body.data, "{\"error\":\"no such endpoint: /no/such/thing\"}");
	res_free(&r);
}

static void test_405(void **state)
{
	fx *f = *state;
	res r;
	char url[128], v[128];
	snprintf(url, sizeof(url), "%s/hello", f->base);
	request(NULL, "POST", url, "x", 1, NULL, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(res_header(&r, "Allow", v, sizeof(v)), "GET, HEAD");
	assert_non_null(strstr(r.body.data, "\"error\""));
	res_free(&r);

	/* a path served under two methods lists both; no body: keeps the connection */
	snprintf(url, sizeof(url), "%s/echo", f->base);
	request(NULL, "DELETE", url, NULL, 0, NULL, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(res_header(&r, "Allow", v, sizeof(v)), "POST, PUT");
	assert_null(res_header(&r, "Connection", v, sizeof(v)));
	res_free(&r);
}

static void test_handler_errors(void **state)
{
	fx *f = *state;
	res r;
	get(f, "/fail", &r);
	assert_int_equal(r.status, 500);
	assert_string_equal(r.body.data, "{\"error\":\"internal error: Input/output error\"}");
	res_free(&r);
	get(f, "/unbalanced", &r);
	assert_int_equal(r.status, 500);
	assert_non_null(strstr(r.body.data, "unfinished"));
	res_free(&r);
}

/* ---- tests: bodies and limits ---- */

static void test_body_echo(void **state)
{
	fx *f = *state;
	char url[128], v[64];
	snprintf(url, sizeof(url), "%s/echo", f->base);
	/* binary, with NULs, bigger than one read */
	size_t n = 300 * 1000;
	unsigned char *body = srv_xmalloc(n);
	for (size_t i = 0; i < n; i++)
		body[i] = (unsigned char)(i * 7 + (i >> 8));
	static const char *const ct[] = {"Content-Type: application/x-test", NULL};
	res r;
	request(NULL, "PUT", url, body, n, ct, &r);
	assert_int_equal(r.rc, CURLE_OK);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, n);
	assert_memory_equal(r.body.data, body, n);
	assert_string_equal(res_header(&r, "Content-Type", v, sizeof(v)), "application/x-test");
	res_free(&r);
	free(body);
}

/* Feeds curl a body of unknown length: curl sends it chunked. */
typedef struct src {
	const char *data;
	size_t len, off, step;
} src;

static size_t on_read(char *buf, size_t sz, size_t n, void *arg)
{
	src *s = arg;
	size_t k = sz * n;
	if (k > s->step)
		k = s->step;   /* small reads: many chunks */
	if (k > s->len - s->off)
		k = s->len - s->off;
	memcpy(buf, s->data + s->off, k);
	s->off += k;
	return k;
}

static void chunked_post(fx *f, const char *path, const char *data, size_t len, res *r)
{
	char url[128];
	snprintf(url, sizeof(url), "%s%s", f->base, path);
	memset(r, 0, sizeof(*r));
	CURL *e = curl_easy_init();
	src s = {data, len, 0, 1000};
	struct curl_slist *hl = curl_slist_append(NULL, "Transfer-Encoding: chunked");
	hl = curl_slist_append(hl, "Expect:");   /* send at once, no 100-continue */
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(e, CURLOPT_READDATA, &s);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	r->rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(e);
}

static void test_chunked_body(void **state)
{
	fx *f = *state;
	char v[64];
	size_t n = 100000;
	char *data = srv_xmalloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)('a' + i % 26);
	res r;
	chunked_post(f, "/echo", data, n, &r);
	assert_int_equal(r.rc, CURLE_OK);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, n);
	assert_memory_equal(r.body.data, data, n);
	assert_string_equal(res_header(&r, "X-Body-Length", v, sizeof(v)), "100000");
	res_free(&r);
	free(data);
}

static void test_413(void **state)
{
	fx *f = *state;
	char url[128], v[64];
	snprintf(url, sizeof(url), "%s/small", f->base);
	char *big = srv_xmalloc(2 << 20);
	memset(big, 'x', 2 << 20);

	/* at the limit: fine, sent at once or after "100 Continue" (curl
	 * asks for it for big bodies; forced here) */
	static const char *const no_expect[] = {"Expect:", NULL};
	static const char *const expect[] = {"Expect: 100-continue", NULL};
	res r;
	request(NULL, "POST", url, big, SMALL_BODY, no_expect, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, SMALL_BODY);
	assert_false(r.saw_continue);
	res_free(&r);
	request(NULL, "POST", url, big, SMALL_BODY, expect, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, SMALL_BODY);
	assert_true(r.saw_continue);
	res_free(&r);

	/* over it, by Content-Length: the answer comes before the body (no
	 * "100 Continue"), and the connection closes */
	const char *const *hdrs[] = {no_expect, expect};
	size_t sizes[] = {SMALL_BODY + 1, 2 << 20};
	for (int k = 0; k < 2; k++)
		for (int s = 0; s < 2; s++) {
			request(NULL, "POST", url, big, sizes[s], hdrs[k], &r);
			if (r.rc != CURLE_OK || r.status != 413)
				fail_msg("%zu bytes, expect %d: curl %d, status %ld", sizes[s], k,
				         r.rc, r.status);
			assert_non_null(strstr(r.body.data, "\"error\""));
			assert_non_null(strstr(r.body.data, "\"limit\":1024"));
			assert_string_equal(res_header(&r, "Connection", v, sizeof(v)), "close");
			assert_false(r.saw_continue);
			res_free(&r);
		}

	/* over it, chunked: found out while reading */
	chunked_post(f, "/small", big, 8 * SMALL_BODY, &r);
	assert_int_equal(r.rc, CURLE_OK);
	assert_int_equal(r.status, 413);
	assert_non_null(strstr(r.body.data, "\"limit\":1024"));
	res_free(&r);
	free(big);

	/* the default limit (64 MiB): refused from the header, no body sent */
	static const char huge[] = "POST /echo HTTP/1.1\r\nHost: x\r\n"
	                           "Content-Length: 100000000000\r\n\r\n";
	base_buf out = {0};
	bool closed;
	raw_exchange(f, huge, sizeof(huge) - 1, &out, &closed);
	assert_true(closed);
	assert_non_null(out.data);
	assert_memory_equal(out.data, "HTTP/1.1 413 ", 13);
	assert_non_null(strstr(out.data, "\"limit\":67108864"));
	base_buf_free(&out);
}

static void test_url_and_header_limits(void **state)
{
	fx *f = *state;
	res r;
	char path[MAX_URL + 64];
	snprintf(path, sizeof(path), "/query?x=%0*d", MAX_URL, 0);
	get(f, path, &r);
	assert_int_equal(r.status, 414);
	assert_non_null(strstr(r.body.data, "\"error\""));
	res_free(&r);

	char url[128], hdr[MAX_HEADER + 64];
	snprintf(url, sizeof(url), "%s/hello", f->base);
	snprintf(hdr, sizeof(hdr), "X-Big: %0*d", MAX_HEADER, 0);
	const char *const extra[] = {hdr, NULL};
	request(NULL, "GET", url, NULL, 0, extra, &r);
	assert_int_equal(r.status, 431);
	assert_non_null(strstr(r.body.data, "\"error\""));
	res_free(&r);

	/* just under both: fine */
	snprintf(path, sizeof(path), "/query?x=%0*d", MAX_URL - 100, 0);
	get(f, path, &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

static void test_400_garbage(void **state)
{
	fx *f = *state;
#define RAW(name, bytes) {name, bytes, sizeof(bytes) - 1, "HTTP/1.1 400 "}
	static const struct {
		const char *name;
		const char *data;
		size_t len;
		const char *want;
	} cases[] = {
		RAW("TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"),
		RAW("binary", "\x00\x01\x02\x03\r\n\r\n"),
		RAW("bad version", "GET /hello HTTP/9.Z\r\n\r\n"),
		RAW("header without colon", "GET /hello HTTP/1.1\r\nNoColon\r\n\r\n"),
		RAW("space in the target", "GET /he llo HTTP/1.1\r\n\r\n"),
		RAW("control byte in a value", "GET /hello HTTP/1.1\r\nHost: a\x01b\r\n\r\n"),
		RAW("bad Content-Length", "POST /echo HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"),
		RAW("two Content-Lengths", "POST /echo HTTP/1.1\r\nContent-Length: 1\r\n"
		                           "Content-Length: 2\r\n\r\nab"),
		RAW("bad chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\n"
		                      "Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
		RAW("both lengths", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
		                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
		/* well-formed but refused; no body, so only Connection: close ends it */
		RAW("absolute target", "GET http://x/hello HTTP/1.1\r\nHost: x\r\n"
		                       "Connection: close\r\n\r\n"),
		/* not malformed, but what follows it is no longer HTTP */
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
		 sizeof("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n") - 1,
		 "HTTP/1.1 405 "},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		base_buf out = {0};
		bool closed;
		raw_exchange(f, cases[i].data, cases[i].len, &out, &closed);
		if (!out.data || strncmp(out.data, cases[i].want, 13) || !closed ||
		    !strstr(out.data, "{\"error\":"))
			fail_msg("%s: closed %d, got: %s", cases[i].name, closed,
			         out.data ? out.data : "(nothing)");
		base_buf_free(&out);
	}
	/* the server is still fine */
	res r;
	get(f, "/hello", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
}

/* ---- tests: connections and threads ---- */

static void test_keep_alive(void **state)
{
	fx *f = *state;
	CURL *e = curl_easy_init();
	char url[128];
	const char *paths[] = {"/hello", "/no/such", "/query?names=a&a=1", "/hello"};
	long want[] = {200, 404, 200, 200};
	long first_port = 0;
	for (int i = 0; i < 4; i++) {
		snprintf(url, sizeof(url), "%s%s", f->base, paths[i]);
		res r;
		request(e, "GET", url, NULL, 0, NULL, &r);
		assert_int_equal(r.rc, CURLE_OK);
		assert_int_equal(r.status, want[i]);
		long port = 0;
		curl_easy_getinfo(e, CURLINFO_LOCAL_PORT, &port);
		if (i == 0) {
			assert_int_equal(r.new_conns, 1);
			first_port = port;
		} else {
			/* the same TCP connection served every request */
			assert_int_equal(r.new_conns, 0);
			assert_int_equal(port, first_port);
		}
		res_free(&r);
	}
	curl_easy_cleanup(e);
}

static void test_pipelining(void **state)
{
	fx *f = *state;
	/* two requests in one write: answered in order, on one connection */
	static const char two[] =
		"GET /api/v1/labels/first/values HTTP/1.1\r\nHost: x\r\n\r\n"
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
		"GET /api/v1/labels/third/values HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	base_buf out = {0};
	bool closed;
	raw_exchange(f, two, sizeof(two) - 1, &out, &closed);
	assert_true(closed);
	assert_non_null(out.data);
	const char *a = strstr(out.data, "\"name\":\"first\"");
	const char *b = strstr(out.data, "\r\n\r\nsecond");
	const char *c = strstr(out.data, "\"name\":\"third\"");
	assert_true(a && b && c && a < b && b < c);
	base_buf_free(&out);
}

typedef struct bg {
	fx *f;
	res r;
} bg;

static void *slow_client(void *arg)
{
	bg *b = arg;
	char url[128];
	snprintf(url, sizeof(url), "%s/slow", b->f->base);
	request(NULL, "GET", url, NULL, 0, NULL, &b->r);
	return NULL;
}

static void wait_entered(fx *f, int n)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&f->mu);
	while (f->slow_entered < n)
		if (pthread_cond_timedwait(&f->cv, &f->mu, &until) == ETIMEDOUT)
			break;
	int got = f->slow_entered;
	pthread_mutex_unlock(&f->mu);
	assert_int_equal(got, n);
}

static void test_pool_does_not_block_loop(void **state)
{
	fx *f = *state;
	bg b = {f};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, slow_client, &b), 0);
	wait_entered(f, 1);
	/* /slow holds a pool thread; others are still answered, pooled or not */
	res r;
	get(f, "/hello", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
	get(f, "/inline", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
	pthread_mutex_lock(&f->mu);
	bool still_blocked = !f->slow_release;
	pthread_mutex_unlock(&f->mu);
	assert_true(still_blocked);
	open_gate(f);
	pthread_join(t, NULL);
	assert_int_equal(b.r.rc, CURLE_OK);
	assert_int_equal(b.r.status, 200);
	assert_string_equal(b.r.body.data, "slow");
	res_free(&b.r);
}

static void test_shutdown_finishes_in_flight(void **state)
{
	fx *f = *state;
	bg b = {f};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, slow_client, &b), 0);
	wait_entered(f, 1);
	srv_http_shutdown(f->h);
	srv_http_shutdown(f->h);   /* twice is harmless */
	/* new connections are refused once the loop has seen the shutdown */
	CURLcode rc = CURLE_OK;
	for (int i = 0; i < 200 && rc != CURLE_COULDNT_CONNECT; i++) {
		char url[128];
		res r;
		snprintf(url, sizeof(url), "%s/hello", f->base);
		request(NULL, "GET", url, NULL, 0, NULL, &r);
		rc = r.rc;
		res_free(&r);
		if (rc != CURLE_COULDNT_CONNECT)
			usleep(10000);
	}
	assert_int_equal(rc, CURLE_COULDNT_CONNECT);
	/* the request in flight still gets its answer, then the loop ends */
	open_gate(f);
	pthread_join(t, NULL);
	char v[32];
	assert_int_equal(b.r.rc, CURLE_OK);
	assert_int_equal(b.r.status, 200);
	assert_string_equal(res_header(&b.r, "Connection", v, sizeof(v)), "close");
	res_free(&b.r);
	pthread_join(f->th, NULL);
	f->running = false;
}



/* ---- pprof: the unpack estimate ---- */

static uint8_t *gzip_of(const uint8_t *in, size_t n, size_t *out_len)
{
	z_stream z = {0};
	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&z, n);
	uint8_t *out = srv_xmalloc(cap);
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	*out_len = z.total_out;
	deflateEnd(&z);
	return out;
}

/* Millions of empty samples (two bytes each on the wire, a hundred on the
 * heap once unpacked) are refused before anything is unpacked, gzip'd or
 * plain; a protobuf cut short is a 400. */
static void test_pprof_unpack_estimate(void **state)
{
	(void)state;
	size_t n = 4u << 20, gl;
	uint8_t *raw = srv_xmalloc(n);
	for (size_t i = 0; i < n; i += 2) {
		raw[i] = 0x12;   /* field 2 (sample), length-delimited */
		raw[i + 1] = 0;  /* empty */
	}
	uint8_t *gz = gzip_of(raw, n, &gl);
	assert_true(gl < 64 * 1024);
	const struct {
		const uint8_t *body;
		size_t len;
		int status;
		const char *msg;
	} cases[] = {
		{gz, gl, 413, "to unpack"},
		{raw, n, 413, "to unpack"},
		{raw, 1, 400, "not a pprof"},
		{(const uint8_t *)"\x1f\x8b\x08\x00garbage", 11, 400, "gzip"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		srv_pprof pp;
		base_err e;
		assert_int_equal(srv_pprof_decode(cases[i].body, cases[i].len, "process_cpu", NULL, 0,
		                                  1767225600LL * 1000000000, &pp, &e), -EINVAL);
		assert_int_equal(e.status, cases[i].status);
		assert_non_null(strstr(e.msg, cases[i].msg));
		srv_pprof_free(&pp);
	}
	free(gz);
	free(raw);
}

/* ---- tests: limits against hostile clients ---- */

/* A GET route takes no body: one announced is answered 413 at its headers
 * and never read into memory, chunked or not, on public routes too. */
static void test_get_body_413(void **state)
{
	fx *f = *state;
	static const char *const reqs[] = {
		"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\naaaa",
		"GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\naaaa\r\n",
	};
	for (size_t i = 0; i < 2; i++) {
		base_buf out = {0};
		bool closed;
		raw_exchange(f, reqs[i], strlen(reqs[i]), &out, &closed);
		assert_true(closed);
		assert_non_null(out.data);
		assert_memory_equal(out.data, "HTTP/1.1 413 ", 13);
		base_buf_free(&out);
	}
	/* an empty body is no body */
	base_buf out = {0};
	bool closed;
	static const char empty[] = "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
	                            "Connection: close\r\n\r\n";
	raw_exchange(f, empty, sizeof(empty) - 1, &out, &closed);
	assert_memory_equal(out.data, "HTTP/1.1 200 ", 13);
	base_buf_free(&out);
}

/* A transfer coding the server does not decode is a 501, never a body
 * handed on still encoded. */
static void test_transfer_encoding_501(void **state)
{
	fx *f = *state;
	static const char req[] = "POST /echo HTTP/1.1\r\nHost: x\r\n"
	                          "Transfer-Encoding: gzip, chunked\r\n\r\n4\r\naaaa\r\n0\r\n\r\n";
	base_buf out = {0};
	bool closed;
	raw_exchange(f, req, sizeof(req) - 1, &out, &closed);
	assert_non_null(out.data);
	assert_memory_equal(out.data, "HTTP/1.1 501 ", 13);
	assert_non_null(strstr(out.data, "gzip"));
	base_buf_free(&out);
}

/* The header deadline holds however the bytes trickle: one byte every
 * 50 ms restarted the idle timer forever (slowloris). */
static void test_header_deadline(void **state)
{
	fx *f = *state;
	int s = raw_connect(f);
	static const char req[] = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: "
	                          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	bool closed = false;
	/* 10 times the deadline of trickling, unless the server closes first */
	for (size_t i = 0; i < sizeof(req) - 1 && i < 60 && !closed; i++) {
		if (send(s, req + i, 1, MSG_NOSIGNAL) != 1)
			closed = true;
		usleep(50000);
		char c;
		ssize_t got = recv(s, &c, 1, MSG_DONTWAIT);
		if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			closed = true;
	}
	close(s);
	assert_true(closed);
	srv_http_conn_stats cs;
	srv_http_conn_stats_get(f->h, &cs);
	assert_int_equal(cs.header_timeouts, 1);
}

/* At the connection cap a new client still gets in: the connection that
 * waited longest for a request is closed for it. */
static void test_connection_cap(void **state)
{
	fx *f = *state;
	int idle[LIMIT_CONNS];
	for (int i = 0; i < LIMIT_CONNS; i++) {
		idle[i] = raw_connect(f);
		/* one byte: a request begun, as a slowloris client does */
		assert_int_equal(send(idle[i], "G", 1, MSG_NOSIGNAL), 1);
		usleep(20000);
	}
	res r;
	get(f, "/hello", &r);
	assert_int_equal(r.status, 200);
	res_free(&r);
	/* the oldest of them was closed for it */
	char c;
	assert_int_equal(recv(idle[0], &c, 1, 0), 0);
	for (int i = 0; i < LIMIT_CONNS; i++)
		close(idle[i]);
	srv_http_conn_stats cs;
	srv_http_conn_stats_get(f->h, &cs);
	assert_true(cs.evicted >= 1);
}

static void *qslow_client(void *arg)
{
	bg *b = arg;
	char url[128];
	snprintf(url, sizeof(url), "%s/qslow", b->f->base);
	request(NULL, "GET", url, NULL, 0, NULL, &b->r);
	return NULL;
}

/* Query routes run max_queries at a time; the rest wait without a pool
 * thread, and other requests are answered meanwhile. */
static void test_query_slots(void **state)
{
	fx *f = *state;
	bg b1 = {f}, b2 = {f};
	pthread_t t1, t2;
	assert_int_equal(pthread_create(&t1, NULL, qslow_client, &b1), 0);
	wait_entered(f, 1);
	assert_int_equal(pthread_create(&t2, NULL, qslow_client, &b2), 0);
	srv_http_conn_stats cs = {0};
	for (int i = 0; i < 500 && !cs.queries_waiting; i++) {
		usleep(10000);
		srv_http_conn_stats_get(f->h, &cs);
	}
	assert_int_equal(cs.queries_waiting, 1);
	/* not a query route: not held back, it enters beside the first */
	bg b3 = {f};
	pthread_t t3;
	assert_int_equal(pthread_create(&t3, NULL, slow_client, &b3), 0);
	wait_entered(f, 2);
	srv_http_conn_stats_get(f->h, &cs);
	assert_int_equal(cs.queries_waiting, 1);
	open_gate(f);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	pthread_join(t3, NULL);
	assert_int_equal(b1.r.status, 200);
	assert_int_equal(b2.r.status, 200);
	assert_int_equal(b3.r.status, 200);
	res_free(&b1.r);
	res_free(&b2.r);
	res_free(&b3.r);
}

static const unsigned short_idle_ms = 300;

static void test_idle_timeout(void **state)
{
	fx *f = *state;
	/* silent, and half a request: both are closed once idle too long */
	static const char *const sends[] = {"", "GET /hello HTTP/1.1\r\nHost:"};
	for (int i = 0; i < 2; i++) {
		int64_t t0 = base_monotonic_ns();
		int s = raw_connect(f);
		if (sends[i][0])
			assert_true(send(s, sends[i], strlen(sends[i]), MSG_NOSIGNAL) > 0);
		char buf[256];
		ssize_t got = recv(s, buf, sizeof(buf), 0);   /* 10 s receive timeout */
		double waited = (double)(base_monotonic_ns() - t0) / 1e9;
		close(s);
		assert_int_equal(got, 0);
		assert_true(waited >= short_idle_ms / 1000.0 * 0.9 && waited < 5);
	}
	/* a connection in use is not: requests spaced under the timeout */
	CURL *e = curl_easy_init();
	char url[128];
	snprintf(url, sizeof(url), "%s/hello", f->base);
	for (int i = 0; i < 3; i++) {
		res r;
		request(e, "GET", url, NULL, 0, NULL, &r);
		assert_int_equal(r.status, 200);
		assert_int_equal(r.new_conns, i == 0);
		res_free(&r);
		usleep(short_idle_ms * 1000 / 3);
	}
	curl_easy_cleanup(e);
}

/* The server's default: only failed and slow requests are logged. */
static int setup_quiet(void **state)
{
	g_log_every = false;
	int rc = setup(state);
	g_log_every = true;
	return rc;
}

static void *release_later(void *arg)
{
	usleep(1100 * 1000);   /* past the default 1000 ms: a slow request */
	open_gate(arg);
	return NULL;
}

/* The log file's content once it holds want (or after 2 s); freed by the
 * caller. */
static char *log_with(fx *f, const char *want)
{
	base_buf log = {0};
	for (int i = 0; i < 200; i++) {
		FILE *in = fopen(f->log_path, "r");
		assert_non_null(in);
		char buf[4096];
		size_t n;
		base_buf_reset(&log);
		while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
			srv_xbuf_put(&log, buf, n);
		fclose(in);
		if (log.data && strstr(log.data, want))
			break;
		usleep(10000);
	}
	srv_xbuf_puts(&log, "");
	return log.data;
}

static void test_access_log_quiet(void **state)
{
	fx *f = *state;
	res r;
	for (int i = 0; i < 20; i++) {
		get(f, "/hello", &r);
		assert_int_equal(r.status, 200);
		res_free(&r);
	}
	get(f, "/no/such", &r);   /* 404: not the server's failure */
	res_free(&r);
	get(f, "/fail", &r);      /* 500: logged */
	res_free(&r);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, release_later, f), 0);
	get(f, "/slow", &r);      /* held past the slow threshold: logged */
	assert_int_equal(r.status, 200);
	res_free(&r);
	pthread_join(th, NULL);
	char *log = log_with(f, "GET /slow 200 ");
	assert_non_null(strstr(log, "GET /fail 500 "));
	assert_non_null(strstr(log, "GET /slow 200 "));
	assert_null(strstr(log, "GET /hello"));
	assert_null(strstr(log, "GET /no/such"));
	free(log);
}

static void test_access_log(void **state)
{
	fx *f = *state;
	res r;
	get(f, "/hello?secret=1", &r);
	res_free(&r);
	get(f, "/no%0Asuch", &r);
	res_free(&r);
	/* the line is written after the response: give the loop a moment */
	base_buf log = {0};
	for (int i = 0; i < 200; i++) {
		FILE *in = fopen(f->log_path, "r");
		assert_non_null(in);
		char buf[4096];
		size_t n;
		base_buf_reset(&log);
		while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
			srv_xbuf_put(&log, buf, n);
		fclose(in);
		if (log.data && strstr(log.data, "GET /no%0Asuch 404 "))
			break;
		usleep(10000);
	}
	assert_non_null(log.data);
	/* method path status bytes duration; the query string stays out */
	assert_non_null(strstr(log.data, "GET /hello 200 5 "));
	assert_non_null(strstr(log.data, "ms\n"));
	assert_null(strstr(log.data, "secret"));
	assert_non_null(strstr(log.data, "GET /no%0Asuch 404 "));
	base_buf_free(&log);
}

/* ---- tests without a server ---- */

/* POST /ingest's body classes, whatever ?format= says. */
static void test_pyro_sniff(void **state)
{
	(void)state;
#define B(s) s, sizeof(s) - 1
	static const struct {
		const char *name;
		const char *body;
		size_t len;
		const char *ct;
		srv_pyro_body want;
	} cases[] = {
		{"folded", B("main;work 7\nmain;idle 5\n"), NULL, SRV_PYRO_BODY_TEXT},
		{"lines, CRLF, tab", B("a;b\r\na;\tc\r\n"), "text/plain", SRV_PYRO_BODY_TEXT},
		{"UTF-8 names", B("m\xc3\xa4in;f 1"), NULL, SRV_PYRO_BODY_TEXT},
		{"empty", B(""), NULL, SRV_PYRO_BODY_TEXT},
		{"gzip", B("\x1f\x8b\x08\x00"), "application/octet-stream", SRV_PYRO_BODY_PPROF},
		/* sample_type {type: 1, unit: 2}: a pprof's first bytes */
		{"bare protobuf", B("\x0a\x04\x08\x01\x10\x02"), NULL, SRV_PYRO_BODY_PPROF},
		{"NUL in text", B("a;b\0 1"), NULL, SRV_PYRO_BODY_PPROF},
		{"multipart", B("--x\r\n"), "multipart/form-data; boundary=x", SRV_PYRO_BODY_MULTIPART},
		{"multipart, any case", B(""), "  Multipart/Form-Data; boundary=y",
		 SRV_PYRO_BODY_MULTIPART},
	};
#undef B
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		srv_pyro_body got = srv_pyro_sniff((const uint8_t *)cases[i].body, cases[i].len,
		                                   cases[i].ct);
		if (got != cases[i].want)
			fail_msg("%s: %d, want %d", cases[i].name, (int)got, (int)cases[i].want);
	}
}

static void test_parse_addr(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int family;   /* 0: invalid */
		int port;
	} cases[] = {
		{"127.0.0.1:7070", AF_INET, 7070},
		{"0.0.0.0:0", AF_INET, 0},   /* parsed only: tests bind loopback */
		{"[::1]:7070", AF_INET6, 7070},
		{"[::]:65535", AF_INET6, 65535},
		{"[fe80::1]:80", AF_INET6, 80},
		{"::1:7070", 0, 0},
		{"localhost:7070", 0, 0},
		{"127.0.0.1", 0, 0},
		{"127.0.0.1:", 0, 0},
		{"127.0.0.1:65536", 0, 0},
		{"127.0.0.1:-1", 0, 0},
		{"127.0.0.1:80x", 0, 0},
		{"1.2.3:80", 0, 0},
		{"[::1]", 0, 0},
		{"[::1:80", 0, 0},
		{"[]:80", 0, 0},
		{":7070", 0, 0},
		{"", 0, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct sockaddr_storage ss;
		int rc = srv_http_parse_addr(cases[i].in, &ss);
		if (!cases[i].family) {
			if (rc != -EINVAL)
				fail_msg("'%s' should be invalid", cases[i].in);
			continue;
		}
		if (rc || ss.ss_family != cases[i].family)
			fail_msg("'%s': rc %d family %d", cases[i].in, rc, ss.ss_family);
		int port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
		                                   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		assert_int_equal(port, cases[i].port);
	}
}

static int h_none(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	(void)req;
	(void)resp;
	return 0;
}

static void test_route_patterns(void **state)
{
	(void)state;
	static const struct {
		const char *method, *path;
		int rc;
	} cases[] = {
		{"GET", "/a", 0},
		{"GET", "/a/{x}", 0},
		{"GET", "/a/{x}/b", 0},
		{"GET", "/ui/*", 0},
		{"GET", "/*", 0},
		{"POST", "/a", 0},
		{"GET", "/a", -EEXIST},
		{"GET", "a", -EINVAL},
		{"GET", "", -EINVAL},
		{"GET", "/a/{x}/{y}", -EINVAL},
		{"GET", "/a/{x", -EINVAL},
		{"GET", "/a/x{y}", -EINVAL},
		{"GET", "/a/{}/b", -EINVAL},
		{"GET", "/a/{x-y}", -EINVAL},
		{"GET", "/a/*/b", -EINVAL},
		{"GET", "/a*", -EINVAL},
		{"GET", "/a/{x}/*", -EINVAL},
		{"GET", "/a b", -EINVAL},
		{"GET", "/a?b", -EINVAL},
		{"G T", "/c", -EINVAL},
	};
	uv_loop_t loop;
	srv_http *h;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(srv_http_new(&loop, NULL, &h), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		srv_route r = {.method = cases[i].method, .path = cases[i].path, .fn = h_none};
		int rc = srv_http_route(h, &r);
		if (rc != cases[i].rc)
			fail_msg("%s %s: rc %d, want %d", cases[i].method, cases[i].path, rc,
			         cases[i].rc);
	}
	srv_http_free(h);
	assert_int_equal(uv_loop_close(&loop), 0);

	/* a listen that fails leaves nothing behind once the loop has run */
	srv_http_options opt;
	srv_http_options_default(&opt);
	opt.listen = "192.0.2.1:1";   /* TEST-NET-1: not an address of this host */
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(srv_http_new(&loop, &opt, &h), 0);
	assert_int_equal(srv_http_listen(h), UV_EADDRNOTAVAIL);
	srv_http_shutdown(h);
	uv_run(&loop, UV_RUN_DEFAULT);
	srv_http_free(h);
	assert_int_equal(uv_loop_close(&loop), 0);

	opt.listen = "nonsense";
	assert_int_equal(srv_http_new(&loop, &opt, &h), -EINVAL);
}

/* The symbolizer's names: C++ as c++filt prints it, Rust legacy and v0
 * without hashes, C and unknown schemes unchanged. */
static void test_demangle(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{"_ZN2ns6WorkerIiE3runEv", "ns::Worker<int>::run()"},
		{"_Z3addii", "add(int, int)"},
		{"_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::write"},
		{"_RNvC7mycrate3foo", "mycrate::foo"},
		{"_RNvNtCs1234_7mycrate3bar3baz", "mycrate::bar::baz"},
		{"main", "main"},
		{"_Zgarbage", "_Zgarbage"},
		{"", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *d = srv_sym_demangle(cases[i][0]);
		assert_non_null(d);
		assert_string_equal(d, cases[i][1]);
		free(d);
	}
}

static void test_json_writer(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		const char *in;
		size_t len;
		const char *want;
	} strs[] = {
		{"plain", "abc", 3, "\"abc\""},
		{"quote and backslash", "a\"b\\c", 5, "\"a\\\"b\\\\c\""},
		{"short escapes", "\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\""},
		{"other controls", "\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\""},
		{"NUL inside", "a\0b", 3, "\"a\\u0000b\""},
		{"UTF-8 kept", "\xc3\xa9\xe2\x9c\x93\xf0\x9f\x94\xa5", 9,
		 "\"\xc3\xa9\xe2\x9c\x93\xf0\x9f\x94\xa5\""},
		{"stray byte", "a\xff" "b", 3, "\"a\\ufffdb\""},
		{"overlong NUL", "\xc0\x80", 2, "\"\\ufffd\\ufffd\""},
		{"surrogate", "\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},
		{"truncated", "\xe2\x9c", 2, "\"\\ufffd\\ufffd\""},
		{"past U+10FFFF", "\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""},
		{"slash untouched", "</script>", 9, "\"</script>\""},
	};
	for (size_t i = 0; i < sizeof(strs) / sizeof(*strs); i++) {
		base_buf b = {0};
		srv_json_escape(&b, strs[i].in, strs[i].len);
		if (strcmp(b.data, strs[i].want))
			fail_msg("%s: got %s, want %s", strs[i].name, b.data, strs[i].want);
		base_buf_free(&b);
	}

	base_buf b = {0};
	srv_json *j = srv_json_new(&b);
	srv_json_obj_begin(j);
	srv_json_key(j, "a");
	srv_json_arr_begin(j);
	srv_json_int(j, 1);
	srv_json_int(j, INT64_MIN);
	srv_json_uint(j, UINT64_MAX);
	srv_json_obj_begin(j);
	srv_json_key(j, "b");
	srv_json_null(j);
	srv_json_obj_end(j);
	srv_json_arr_begin(j);
	srv_json_arr_end(j);
	srv_json_obj_begin(j);
	srv_json_obj_end(j);
	srv_json_arr_end(j);
	srv_json_kv_bool(j, "t", true);
	srv_json_kv_bool(j, "f", false);
	srv_json_kv_double(j, "d", 0.1);
	srv_json_kv_double(j, "third", 1.0 / 3);
	srv_json_kv_double(j, "big", 1e300);
	srv_json_kv_double(j, "nan", NAN);
	srv_json_kv_double(j, "inf", -INFINITY);
	srv_json_kv_str(j, "null_str", NULL);
	srv_json_key(j, "raw");
	srv_json_raw(j, "[1,2]", 5);
	srv_json_kv_int(j, "last", -7);
	assert_int_equal(srv_json_depth(j), 1);
	srv_json_obj_end(j);
	assert_int_equal(srv_json_depth(j), 0);
	srv_json_free(j);
	assert_string_equal(b.data,
		"{\"a\":[1,-9223372036854775808,18446744073709551615,{\"b\":null},[],{}],"
		"\"t\":true,\"f\":false,\"d\":0.1,\"third\":0.33333333333333331,\"big\":1e+300,"
		"\"nan\":null,\"inf\":null,\"null_str\":null,\"raw\":[1,2],\"last\":-7}");
	base_buf_free(&b);

	/* deep nesting, as a call tree renders */
	j = srv_json_new(&b);
	for (int i = 0; i < 1000; i++)
		srv_json_arr_begin(j);
	for (int i = 0; i < 1000; i++)
		srv_json_arr_end(j);
	srv_json_free(j);
	assert_int_equal(b.len, 2000);
	assert_int_equal(b.data[999], '[');
	assert_int_equal(b.data[1000], ']');
	base_buf_free(&b);

	/* the buffer: printf past its small first attempt, move */
	srv_xbuf_printf(&b, "%s-%0300d", "x", 5);
	assert_int_equal(b.len, 302);
	assert_int_equal(b.data[301], '5');
	base_buf c = {0};
	base_buf_move(&c, &b);
	assert_null(b.data);
	assert_int_equal(c.len, 302);
	base_buf_free(&c);
}

/* ---- the web UI's files (server/api_ui.c) ---- */

static char ui_tmp[256];      /* holds ui/ and, beside it, secret.js */

static void put_file(const char *dir, const char *name, const char *text)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static int setup_ui(void **state)
{
	const char *tmp = getenv("SMOLDER_TEST_TMP");
	snprintf(ui_tmp, sizeof(ui_tmp), "%s/ui.XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(ui_tmp))
		return -1;
	static char ui[300];
	snprintf(ui, sizeof(ui), "%s/ui", ui_tmp);
	char p[512];
	snprintf(p, sizeof(p), "%s/vendor", ui);
	if (mkdir(ui, 0755) || mkdir(p, 0755))
		return -1;
	put_file(ui, "index.html", "<!doctype html>");
	put_file(ui, "app.js", "export {};");
	put_file(ui, "vendor/lib.css", "a{}");
	put_file(ui, "notes.md", "not served");
	put_file(ui, ".hidden.js", "hidden");
	put_file(ui_tmp, "secret.js", "TOPSECRET");
	/* a link inside the directory is fine, one out of it is not */
	snprintf(p, sizeof(p), "%s/out.js", ui);
	if (symlink("../secret.js", p))
		return -1;
	snprintf(p, sizeof(p), "%s/in.js", ui);
	if (symlink("app.js", p))
		return -1;
	/* a FIFO: opening it to read would wait for a writer */
	snprintf(p, sizeof(p), "%s/fifo.js", ui);
	if (mkfifo(p, 0644))
		return -1;
	g_ui_dir = ui;
	return setup(state);
}

static int teardown_ui(void **state)
{
	int rc = teardown(state);
	g_ui_dir = NULL;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", ui_tmp);
	return system(cmd) || rc ? -1 : 0;
}

/* The path checks, table-driven: what is served and what is a 404. Raw
 * requests, because curl would resolve ".." before sending. */
static void test_ui_files(void **state)
{
	fx *f = *state;
	static const struct {
		const char *path;
		int status;
		const char *type;       /* Content-Type for a 200 */
		const char *body;
	} cases[] = {
		{"/", 200, "text/html; charset=utf-8", "<!doctype html>"},
		{"/ui/index.html", 200, "text/html; charset=utf-8", "<!doctype html>"},
		{"/ui/app.js", 200, "text/javascript; charset=utf-8", "export {};"},
		{"/ui/vendor/lib.css", 200, "text/css; charset=utf-8", "a{}"},
		{"/ui/in.js", 200, "text/javascript; charset=utf-8", "export {};"},
		{"/ui/../secret.js", 404, NULL, NULL},
		{"/ui/%2e%2e/secret.js", 404, NULL, NULL},
		{"/ui/vendor/../../secret.js", 404, NULL, NULL},
		{"/ui/./app.js", 404, NULL, NULL},
		{"/ui//etc/passwd.js", 404, NULL, NULL},
		{"/ui/%2fetc/hosts.js", 404, NULL, NULL},
		{"/ui/out.js", 404, NULL, NULL},          /* symlink out of the dir */
		{"/ui/.hidden.js", 404, NULL, NULL},
		{"/ui/notes.md", 404, NULL, NULL},        /* not a served type */
		{"/ui/vendor", 404, NULL, NULL},
		{"/ui/vendor/", 404, NULL, NULL},
		{"/ui/missing.js", 404, NULL, NULL},
		{"/ui/app.js%5c..%5csecret.js", 404, NULL, NULL},
		{"/ui/fifo.js", 404, NULL, NULL},         /* not a regular file */
		{"/ui/fifo.js", 404, NULL, NULL},         /* and the pool is not stuck */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		char req[512];
		int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n"
		                 "Connection: close\r\n\r\n", cases[i].path);
		base_buf out = {0};
		bool closed;
		raw_exchange(f, req, (size_t)n, &out, &closed);
		char want[64];
		snprintf(want, sizeof(want), "HTTP/1.1 %d ", cases[i].status);
		if (strncmp(out.data, want, strlen(want)))
			fail_msg("%s: got %.40s, want %s", cases[i].path, out.data, want);
		if (cases[i].status == 200) {
			char hdr[128];
			snprintf(hdr, sizeof(hdr), "\r\nContent-Type: %s\r\n", cases[i].type);
			assert_non_null(strstr(out.data, hdr));
			assert_non_null(strstr(out.data, "\r\nContent-Security-Policy: default-src 'self'"));
			assert_non_null(strstr(out.data, "\r\nX-Content-Type-Options: nosniff\r\n"));
			assert_non_null(strstr(out.data, "\r\nCache-Control: no-cache\r\n"));
			const char *body = strstr(out.data, "\r\n\r\n");
			assert_non_null(body);
			assert_string_equal(body + 4, cases[i].body);
		} else {
			assert_non_null(strstr(out.data, "application/json"));
			assert_null(strstr(out.data, "TOPSECRET"));
		}
		base_buf_free(&out);
	}
}

/* Without a UI directory the server still answers, with a 404 that says
 * where it looked. */
static void test_ui_missing(void **state)
{
	fx *f = *state;
	res r;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_ui_dir);
	assert_int_equal(system(cmd), 0);
	get(f, "/", &r);
	assert_int_equal(r.status, 404);
	assert_non_null(strstr(r.body.data, g_ui_dir));
	assert_non_null(strstr(r.body.data, "--ui-dir"));
	res_free(&r);
}

/* srv_debuginfo_keep of a copy of file under hex into db: the result's
 * status, with its message in out. */
static int keep_copy(st_db *db, const char *file, const char *hex, srv_debuginfo_result *out)
{
	char tmp[4200], cmd[5000];
	snprintf(tmp, sizeof(tmp), "%s/.upload.tmp", st_file_dir(db));
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", file, tmp);
	assert_int_equal(system(cmd), 0);
	int fd = open(tmp, O_RDONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	char *data = malloc((size_t)st.st_size);
	assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
	assert_int_equal(srv_debuginfo_keep(db, hex, fd, tmp, data, (size_t)st.st_size, out), 0);
	free(data);
	close(fd);
	return out->status;
}

/* The server files uploads by wire/buildid.h's rule, as the agent names
 * them (tests/tools/mkbid.sh's files): a note over 64 bytes is no ID, the
 * file goes by its fallback ID; sections win over segments. */
static void test_debuginfo_build_id_rule(void **state)
{
	(void)state;
	const char *base = getenv("SMOLDER_TEST_TMP");
	char dir[600], store[700], cmd[800], file[700];
	snprintf(dir, sizeof(dir), "%s/di.XXXXXX", base ? base : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "sh tests/tools/mkbid.sh '%s'", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(store, sizeof(store), "%s/store", dir);
	st_db *db;
	base_err err;
	assert_int_equal(st_open(store, NULL, &db, &err), 0);
	srv_debuginfo_result r;

	char ab[41], cd[41];
	memset(ab, 0, sizeof(ab));
	memset(cd, 0, sizeof(cd));
	for (int i = 0; i < 20; i++) {
		memcpy(ab + 2 * i, "ab", 2);
		memcpy(cd + 2 * i, "cd", 2);
	}
	snprintf(file, sizeof(file), "%s/bid_differ", dir);
	assert_int_equal(keep_copy(db, file, ab, &r), 400);
	assert_non_null(strstr(r.err.msg, cd));
	assert_int_equal(keep_copy(db, file, cd, &r), 201);

	snprintf(file, sizeof(file), "%s/bid_long", dir);
	char lng[161];
	for (int i = 0; i < 80; i++)
		snprintf(lng + 2 * i, 3, "%02x", i + 1);
	assert_int_equal(keep_copy(db, file, lng, &r), 400);
	assert_non_null(strstr(r.err.msg, "no GNU build ID"));
	FILE *f = fopen(file, "rb");
	assert_non_null(f);
	static char all[1 << 20];
	size_t n = fread(all, 1, sizeof(all), f);
	fclose(f);
	uint8_t fb[WIRE_FALLBACK_BUILD_ID_LEN];
	char fbhex[2 * WIRE_FALLBACK_BUILD_ID_LEN + 1];
	wire_fallback_build_id(all, n, fb);
	base_hex(fb, sizeof(fb), fbhex);
	assert_int_equal(keep_copy(db, file, fbhex, &r), 201);
	st_close(db);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	/* a test whose peer vanishes must fail, not die of SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_route_patterns),
		cmocka_unit_test(test_json_writer),
		cmocka_unit_test(test_demangle),
		cmocka_unit_test(test_debuginfo_build_id_rule),
		cmocka_unit_test(test_pprof_unpack_estimate),
		cmocka_unit_test(test_pyro_sniff),
		cmocka_unit_test_setup_teardown(test_route_200, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_404, setup, teardown),
		cmocka_unit_test_setup_teardown(test_405, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handler_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_413, setup, teardown),
		cmocka_unit_test_setup_teardown(test_url_and_header_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_400_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_does_not_block_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_finishes_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_access_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_body_413, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transfer_encoding_501, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_deadline, setup_limits, teardown),
		cmocka_unit_test_setup_teardown(test_connection_cap, setup_limits, teardown),
		cmocka_unit_test_setup_teardown(test_query_slots, setup_limits, teardown),
		cmocka_unit_test_setup_teardown(test_access_log_quiet, setup_quiet, teardown),
		cmocka_unit_test_setup_teardown(test_ui_files, setup_ui, teardown_ui),
		cmocka_unit_test_setup_teardown(test_ui_missing, setup_ui, teardown_ui),
		cmocka_unit_test_prestate_setup_teardown(test_idle_timeout, setup, teardown,
		                                         (void *)&short_idle_ms),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
