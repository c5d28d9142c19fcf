/* dbgd_fetch.c - server/debuginfod.c from the command line, for
 * debuginfod_test.sh: `dbgd_fetch URLS DATA_DIR HEX...` fetches each
 * build ID (in order, one process, so the second ask of an ID shows the
 * hour's memory) and prints "HEX ok", "HEX ENOENT" or "HEX error N: why".
 * The files are kept in the embedded store at DATA_DIR (DATA_DIR/debuginfo).
 * Exit 0 unless the arguments, the store or srv_dbgd_new are wrong. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/text.h"
#include "server/debuginfod.h"
#include "storage/storage.h"
#include "wire/wire.h"

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(s);
	if (n % 2 || n / 2 > cap || !n)
		return -EINVAL;
	*len = n / 2;
	return base_unhex(s, n / 2, out);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: dbgd_fetch URLS DATA_DIR HEX...\n");
		return 2;
	}
	srv_dbgd *d;
	st_db *db;
	base_err err;
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/debuginfo", argv[2]);
	int rc = srv_dbgd_new(argv[1], dir, &d);
	if (rc) {
		fprintf(stderr, "dbgd_fetch: srv_dbgd_new: %s\n", strerror(-rc));
		return 1;
	}
	if ((rc = st_open(argv[2], NULL, &db, &err))) {
		fprintf(stderr, "dbgd_fetch: st_open: %s\n", err.msg);
		srv_dbgd_free(d);
		return 1;
	}
	for (int i = 3; i < argc; i++) {
		uint8_t bid[WIRE_MAX_BUILD_ID];
		size_t len;
		if (unhex(argv[i], bid, sizeof(bid), &len)) {
			fprintf(stderr, "dbgd_fetch: bad build ID %s\n", argv[i]);
			srv_dbgd_free(d);
			st_close(db);
			return 2;
		}
		rc = srv_dbgd_fetch(d, db, bid, len);
		if (!rc)
			printf("%s ok\n", argv[i]);
		else if (rc == -ENOENT)
			printf("%s ENOENT\n", argv[i]);
		else
			printf("%s error %d: %s\n", argv[i], -rc, strerror(-rc));
		fflush(stdout);
	}
	srv_dbgd_free(d);
	st_close(db);
	return 0;
}
