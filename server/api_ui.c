/* api_ui.c - GET / and GET /ui/...: the web UI's static files (ui/ in the
 * repository: plain ES modules, no build step) from one directory, with
 * headers that keep every request on the server's own origin. Only files
 * under that directory are served: the path is checked by name first and
 * by realpath() after, so neither ".." nor a symlink leads out.
 * Not here: templating, compression, caching beyond "no-cache" (the UI is
 * small and changes with the server). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/api.h"

/* No UI file comes near this; it bounds what one request holds in memory. */
#define UI_MAX_FILE_BYTES (16u << 20)

/* Served extensions; anything else is a 404, so a stray file in the
 * directory (notes, editor backups) is not published by accident. */
static const struct {
	const char *ext, *type;
} ui_types[] = {
	{".html", "text/html; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".json", "application/json"},
	{".map", "application/json"},
	{".ico", "image/x-icon"},
};

static const char *ui_type(const char *rel)
{
	const char *dot = strrchr(rel, '.');
	if (!dot || strchr(dot, '/'))
		return NULL;
	for (size_t i = 0; i < sizeof(ui_types) / sizeof(*ui_types); i++)
		if (!strcmp(dot, ui_types[i].ext))
			return ui_types[i].type;
	return NULL;
}

/* A relative path the UI may ask for: segments of printable bytes, none
 * empty or starting with '.' (so no "..", no ".", no hidden files), no
 * backslash (no Windows-style tricks to log or forward), not absolute. */
static bool ui_rel_ok(const char *rel)
{
	if (!*rel || *rel == '/' || strlen(rel) >= PATH_MAX / 2)
		return false;
	bool seg_start = true;
	for (const unsigned char *p = (const unsigned char *)rel; *p; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			return false;
		if (*p == '/') {
			if (seg_start)
				return false;   /* "a//b" */
			seg_start = true;
			continue;
		}
		if (seg_start && *p == '.')
			return false;
		seg_start = false;
	}
	return !seg_start;          /* no trailing '/' */
}

/* The UI directory, resolved into root (PATH_MAX bytes): dir when given,
 * else the "ui" directory beside the executable's directory (bin/../ui,
 * where `make` puts the binary in the repository), else
 * bin/../share/smolder/ui (installed), else ./ui. Returns 0,
 * or -ENOENT with where it looked written into looked. */
static int ui_root(const char *dir, char *root, char *looked, size_t looked_len)
{
	if (dir) {
		if (realpath(dir, root))
			return 0;
		snprintf(looked, looked_len, "%s (--ui-dir)", dir);
		return -ENOENT;
	}
	char exe[PATH_MAX], cand[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	looked[0] = 0;
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = 0;                 /* .../bin */
		/* bin/../ui in the repository, bin/../share/smolder/ui where it
		 * is installed (the Docker image: /usr/local) */
		static const char *const rel[] = {"../ui", "../share/smolder/ui"};
		for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			snprintf(cand, sizeof(cand), "%s/%s", exe, rel[i]);
			if (realpath(cand, root))
				return 0;
			size_t used = strlen(looked);
			snprintf(looked + used, looked_len - used, "%s, ", cand);
		}
	}
	if (realpath("ui", root))
		return 0;
	char cwd[PATH_MAX];
	size_t used = strlen(looked);
	snprintf(looked + used, looked_len - used, "%s/ui",
	         getcwd(cwd, sizeof(cwd)) ? cwd : ".");
	return -ENOENT;
}

/* Reads path (at most UI_MAX_FILE_BYTES, a regular file) into b. Opened
 * without blocking: opening a FIFO for reading waits for a writer, and
 * one in the UI directory held a pool thread per request for ever. */
static int read_file(const char *path, srv_buf *b)
{
	int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -ENOENT;
		goto out;
	}
	if ((uint64_t)st.st_size > UI_MAX_FILE_BYTES) {
		rc = -EFBIG;
		goto out;
	}
	srv_buf_reserve(b, (size_t)st.st_size + 1);
	char chunk[65536];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		/* the file may grow while read: the bound holds anyway */
		if (b->len + (size_t)r > UI_MAX_FILE_BYTES) {
			rc = -EFBIG;
			goto out;
		}
		srv_buf_append(b, chunk, (size_t)r);
	}
out:
	close(fd);
	return rc;
}

/* Serves rel under the UI directory dir (NULL: the default places). */
static int serve(const char *dir, const char *rel, srv_resp *resp)
{
	char root[PATH_MAX], looked[3 * PATH_MAX], full[2 * PATH_MAX], real[PATH_MAX];
	srv_buf body = {0};
	int rc;

	if (ui_root(dir, root, looked, sizeof(looked))) {
		srv_resp_error(resp, 404, "the web UI is not installed: no directory at %s; "
		               "start smolder-server with --ui-dir pointing at the repository's "
		               "ui/ directory", looked);
		return 0;
	}
	const char *type = rel ? ui_type(rel) : NULL;
	if (!rel || !ui_rel_ok(rel) || !type)
		goto not_found;
	snprintf(full, sizeof(full), "%s/%s", root, rel);
	/* realpath resolves every symlink: what it names must still be
	 * inside root (a link within the directory is fine, one out is not) */
	if (!realpath(full, real))
		goto not_found;
	size_t rl = strlen(root);
	if (strncmp(real, root, rl) || (real[rl] != '/' && strcmp(root, "/")))
		goto not_found;
	if ((rc = read_file(real, &body))) {
		srv_buf_free(&body);
		if (rc == -EFBIG) {
			srv_resp_error(resp, 500, "UI file %s is over the limit of %u bytes", rel,
			               UI_MAX_FILE_BYTES);
			return 0;
		}
		goto not_found;
	}
	srv_resp_take(resp, 200, type, &body);
	srv_resp_header(resp, "Cache-Control", "no-cache");
	/* Everything from this origin and nothing else: no CDN, no inline
	 * script or style (the UI is ES modules and a stylesheet; setting
	 * element.style from a script is not inline style), no plugins, no
	 * framing by other sites. */
	srv_resp_header(resp, "Content-Security-Policy",
	                "default-src 'self'; object-src 'none'; base-uri 'none'; "
	                "frame-ancestors 'none'; form-action 'self'");
	srv_resp_header(resp, "X-Content-Type-Options", "nosniff");
	srv_resp_header(resp, "Referrer-Policy", "no-referrer");
	return 0;
not_found:
	srv_resp_error(resp, 404, "no UI file %s", rel ? rel : "");
	return 0;
}

static int h_index(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)req;
	return serve(arg, "index.html", resp);
}

static int h_file(void *arg, const srv_req *req, srv_resp *resp)
{
	return serve(arg, srv_req_param(req, "*"), resp);
}

int srv_api_ui_routes(srv_http *h, const char *ui_dir)
{
	/* ui_dir is looked up per request, not once: cheap next to a page
	 * load, and a UI directory installed after start is found. Public even
	 * with tokens: the page must load to ask for one; it holds no data. */
	const srv_route routes[] = {
		{.method = "GET", .path = "/", .fn = h_index, .arg = (void *)ui_dir,
		 .flags = SRV_ROUTE_PUBLIC},
		{.method = "GET", .path = "/ui/*", .fn = h_file, .arg = (void *)ui_dir,
		 .flags = SRV_ROUTE_PUBLIC},
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes); i++) {
		int rc = srv_http_route(h, &routes[i]);
		if (rc)
			return rc;
	}
	return 0;
}

int srv_api_ui_dir(const char *ui_dir, char *out, size_t n)
{
	char root[PATH_MAX], looked[3 * PATH_MAX];
	int rc = ui_root(ui_dir, root, looked, sizeof(looked));
	snprintf(out, n, "%s", rc ? looked : root);
	return rc;
}
