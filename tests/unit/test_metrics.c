/* test_metrics.c - server/api_metrics.c: the Prometheus text writer (escaping,
 * number formats, family headers) and the request counters' route table
 * and latency buckets, as a scrape of GET /metrics renders them
 * (tests/integration/metrics_test.sh checks the whole endpoint). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/metrics.h"

/* Table-driven: labels in, the exact line out. */
static void test_sample_lines(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		const char *labels[4];
		int nlabels;
		uint64_t v;
		const char *want;
	} cases[] = {
		{"plain", {NULL}, 0, 0, "smolder_x 0\n"},
		{"max u64 exact", {NULL}, 0, UINT64_MAX, "smolder_x 18446744073709551615\n"},
		{"one label", {"a", "b"}, 1, 7, "smolder_x{a=\"b\"} 7\n"},
		{"two labels", {"a", "1", "b", "2"}, 2, 3, "smolder_x{a=\"1\",b=\"2\"} 3\n"},
		{"quote, backslash, newline escaped", {"agent", "h\"o\\s\nt"}, 1, 1,
		 "smolder_x{agent=\"h\\\"o\\\\s\\nt\"} 1\n"},
		{"empty value", {"a", ""}, 1, 1, "smolder_x{a=\"\"} 1\n"},
		{"utf-8 kept", {"a", "h\xc3\xa9"}, 1, 2, "smolder_x{a=\"h\xc3\xa9\"} 2\n"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		base_buf b = {0};
		srv_metrics_sample_u64(&b, "smolder_x", cases[i].labels, cases[i].nlabels,
		                       cases[i].v);
		if (strcmp(b.data, cases[i].want))
			fail_msg("%s: got '%s', want '%s'", cases[i].name, b.data, cases[i].want);
		base_buf_free(&b);
	}
}

static void test_family_and_floats(void **state)
{
	(void)state;
	base_buf b = {0};
	/* HELP escapes backslash and newline but not quotes */
	srv_metrics_family(&b, "smolder_y_seconds_total", "counter", "a \"b\" c\\d\ne");
	srv_metrics_sample_f64(&b, "smolder_y_seconds_total", NULL, 0, 1.5);
	srv_metrics_sample_f64(&b, "smolder_y_seconds_total", NULL, 0, 0.000123456789);
	assert_string_equal(b.data, "# HELP smolder_y_seconds_total a \"b\" c\\\\d\\ne\n"
	                            "# TYPE smolder_y_seconds_total counter\n"
	                            "smolder_y_seconds_total 1.5\n"
	                            "smolder_y_seconds_total 0.000123456789\n");
	base_buf_free(&b);
}

/* The counters are process-wide; this test owns the routes it names. */
static void test_http_counters_reach_routes(void **state)
{
	(void)state;
	srv_metrics_http("/t/a", 200, 1000000);       /* 1 ms */
	srv_metrics_http("/t/a", 204, 50000000);      /* 50 ms */
	srv_metrics_http("/t/a", 503, 20000000000u);  /* 20 s: only +Inf */
	srv_metrics_http(NULL, 404, 1);
	srv_metrics_http("/t/b", 99, 1);              /* no valid status: 5xx */
	char r[32];
	for (int i = 0; i < 200; i++) {
		snprintf(r, sizeof(r), "/t/many/%d", i);
		srv_metrics_http(r, 200, 1);
	}
	base_buf b = {0};
	srv_metrics_write_http(&b);
	static const char *const want[] = {
		"smolder_http_requests_total{route=\"/t/a\",code=\"2xx\"} 2\n",
		"smolder_http_requests_total{route=\"/t/a\",code=\"5xx\"} 1\n",
		"smolder_http_requests_total{route=\"other\",code=\"4xx\"} 1\n",
		"smolder_http_requests_total{route=\"/t/b\",code=\"5xx\"} 1\n",
		"smolder_http_request_duration_seconds_bucket{route=\"/t/a\",le=\"0.005\"} 1\n",
		"smolder_http_request_duration_seconds_bucket{route=\"/t/a\",le=\"0.025\"} 1\n",
		"smolder_http_request_duration_seconds_bucket{route=\"/t/a\",le=\"0.1\"} 2\n",
		"smolder_http_request_duration_seconds_bucket{route=\"/t/a\",le=\"10\"} 2\n",
		"smolder_http_request_duration_seconds_bucket{route=\"/t/a\",le=\"+Inf\"} 3\n",
		"smolder_http_request_duration_seconds_sum{route=\"/t/a\"} 20.051\n",
		"smolder_http_request_duration_seconds_count{route=\"/t/a\"} 3\n",
		"# TYPE smolder_http_request_duration_seconds histogram\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
		if (!strstr(b.data, want[i]))
			fail_msg("missing: %s", want[i]);
	/* 200 distinct routes do not make 200 label sets: the table is bounded */
	size_t counts = 0;
	for (const char *p = b.data; (p = strstr(p, "_count{")); p++)
		counts++;
	assert_true(counts <= 64);
	assert_null(strstr(b.data, "/t/many/199\""));
	base_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sample_lines),
		cmocka_unit_test(test_family_and_floats),
		cmocka_unit_test(test_http_counters_reach_routes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
