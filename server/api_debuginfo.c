/* api_debuginfo.c - HEAD and PUT /api/v1/debuginfo/{build_id}: agents and
 * `smolder debuginfo upload` ask whether the server has an ELF file's debug
 * info and upload files it lacks. A file is accepted only when it is ELF
 * and carries that build ID (or, for a file without a GNU build-id note,
 * has that fallback ID: wire/wire.h). Per build ID the store keeps up to
 * two files (server/symbolize.h reads them):
 *   <hex>        the first file uploaded that is not a separate debug file
 *   <hex>.debug  a file with DWARF, when <hex> has none (docs/protocol.md
 *                section 4 gives the rule; the symbolizer prefers it)
 * With --debuginfod-url, a HEAD for a build ID the store lacks asks
 * debuginfod first, so hosts need not upload what the server can fetch.
 * Not here: reading the debug info (the symbolizer's job). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/text.h"
#include "server/api.h"
#include "server/debuginfo.h"
#include "server/metrics.h"
#include "wire/wire.h"

/* Body limit of PUT. The route system reads bodies into memory, so this is
 * also how much one upload may hold in RAM (docs/api.md). */
#define DEBUGINFO_MAX_BODY SRV_DEBUGINFO_MAX_BYTES

/* {build_id}: 2..128 lowercase hex digits, an even number (whole bytes).
 * Anything else is refused before it becomes a file name. */
static bool build_id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n < 2 || n > 2 * WIRE_MAX_BUILD_ID || n % 2)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

/* The build ID of the request, or false with a 400 answered. */
static bool id_param(const srv_req *req, srv_resp *resp, const char **idp)
{
	const char *id = srv_req_param(req, "build_id");
	if (!id || !build_id_ok(id)) {
		srv_resp_error(resp, 400, "build ID must be 2..%d lowercase hex digits, an "
		               "even number", 2 * WIRE_MAX_BUILD_ID);
		return false;
	}
	*idp = id;
	return true;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* 200 with X-Smolder-Debuginfo: binary|debug|both (which files exist) and
 * X-Smolder-Debuginfo-Dwarf: yes|no (whether they hold DWARF), so an agent
 * knows whether a separate debug file it has would help; 404 when neither
 * exists. */
static int h_head(void *arg, const srv_req *req, srv_resp *resp)
{
	srv_api *api = arg;
	const char *id;
	srv_debuginfo_state st;
	int rc;
	if (!id_param(req, resp, &id))
		return 0;
	if ((rc = srv_debuginfo_look(api->db, id, &st)) == -EAGAIN) {
		srv_resp_error(resp, 503, "the store cannot be reached; try again");
		return 0;
	}
	if (rc)
		return rc;
	bool fetched = false;
	if (!st.binary && !st.debug && api->dbgd) {
		/* debuginfod may have it: then no host needs to upload it. Blocks
		 * this pool thread for the lookup, once per build ID an hour (the
		 * outcome is remembered) */
		uint8_t bid[WIRE_MAX_BUILD_ID];
		size_t bl = strlen(id) / 2;
		base_unhex(id, bl, bid);   /* build_id_ok checked the digits */
		int frc = srv_dbgd_fetch(api->dbgd, api->db, bid, bl);
		if (frc == -EAGAIN) {
			srv_metrics_debuginfo(SRV_METRICS_DI_MISSING, 0);
			srv_resp_error(resp, 404, "asking debuginfod for build ID %s; ask again later", id);
			srv_resp_header(resp, "X-Smolder-Debuginfod", "pending");
			return 0;
		}
		if (frc == 0 && (rc = srv_debuginfo_look(api->db, id, &st)))
			return rc;
		fetched = frc == 0 && (st.binary || st.debug);
	}
	if (!st.binary && !st.debug) {
		srv_metrics_debuginfo(SRV_METRICS_DI_MISSING, 0);
		srv_resp_error(resp, 404, "no debug info for build ID %s", id);
		return 0;
	}
	srv_metrics_debuginfo(fetched ? SRV_METRICS_DI_DEBUGINFOD : SRV_METRICS_DI_ON_SERVER, 0);
	srv_resp_set(resp, 200, NULL);
	if (fetched)
		srv_resp_header(resp, "X-Smolder-Debuginfo-Source", "debuginfod");
	srv_resp_header(resp, "X-Smolder-Debuginfo",
	                st.binary && st.debug ? "both" : st.binary ? "binary" : "debug");
	srv_resp_header(resp, "X-Smolder-Debuginfo-Dwarf", st.dwarf ? "yes" : "no");
	return 0;
}

static void put_ok(srv_resp *resp, int status, const char *id, size_t len, const char *kept)
{
	srv_json *j = srv_resp_json(resp, status);
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "build_id", id);
	srv_json_kv_uint(j, "bytes", len);
	srv_json_kv_bool(j, "created", status == 201);
	srv_json_kv_str(j, "stored_as", kept);   /* null when nothing was stored */
	srv_json_obj_end(j);
}

static int h_put(void *arg, const srv_req *req, srv_resp *resp)
{
	srv_api *api = arg;
	static atomic_uint seq;
	char tmp[4200];
	const char *id;
	int fd = -1, rc = 0;
	srv_debuginfo_result res;
	if (!id_param(req, resp, &id))
		return 0;
	size_t len;
	const uint8_t *body = srv_req_body(req, &len);
	if (len < 4 || memcmp(body, "\x7f" "ELF", 4)) {
		srv_resp_error(resp, 400, "not an ELF file (it does not start with \\x7fELF)");
		return 0;
	}
	/* Written to a temporary file first: libelf reads it from there, and
	 * once it is known good and durable a rename makes it appear whole. */
	snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.%u.tmp", st_file_dir(api->db), id, (long)getpid(),
	         atomic_fetch_add(&seq, 1));
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if ((rc = write_all(fd, body, len))) {
		unlink(tmp);
		goto out;
	}
	if ((rc = srv_debuginfo_keep(api->db, id, fd, tmp, body, len, &res)))
		goto out;
	if (res.status == 400 || res.status == 503) {
		/* 503: the store cannot be reached now; the agent uploads later */
		if (res.status == 400)
			srv_metrics_debuginfo(SRV_METRICS_DI_REFUSED, 0);
		srv_resp_error(resp, res.status, "%s", res.err.msg);
	} else {
		srv_metrics_debuginfo(res.status == 201 ? SRV_METRICS_DI_UPLOADED :
		                      SRV_METRICS_DI_REPEAT, len);
		/* a new file may name what could not be named, or better (DWARF
		 * beside a stripped binary): the symbolizer starts over for it */
		if (res.status == 201 && api->sym) {
			uint8_t bid[WIRE_MAX_BUILD_ID];
			size_t bl = strlen(id) / 2;
			base_unhex(id, bl, bid);   /* build_id_ok checked the digits */
			int frc = srv_sym_forget(api->sym, bid, bl);
			if (frc)
				fprintf(stderr, "smolder-server: forgetting old symbols of %s: %s\n", id,
				        strerror(-frc));
		}
		put_ok(resp, res.status, id, len, res.stored_as);
	}
out:
	close(fd);
	return rc;
}

int srv_api_debuginfo_routes(srv_http *h, srv_api *api)
{
	const srv_route routes[] = {
		{.method = "HEAD", .path = "/api/v1/debuginfo/{build_id}", .fn = h_head,
		 .arg = api, .flags = SRV_ROUTE_WRITE},
		{.method = "PUT", .path = "/api/v1/debuginfo/{build_id}", .fn = h_put,
		 .arg = api, .max_body_bytes = DEBUGINFO_MAX_BODY, .flags = SRV_ROUTE_WRITE},
	};
	int rc = 0;
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes) && !rc; i++)
		rc = srv_http_route(h, &routes[i]);
	return rc;
}
