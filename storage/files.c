/* files.c - named files in a local directory, kept whole and never
 * replaced: the embedded store's debug-info files, and the ClickHouse
 * backend's local copies of its own (backend.h). Not here: what the files
 * are (the server's debug-info rule) or where ClickHouse keeps them. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "storage/backend.h"

bool st__file_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 200 || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int st__dir_keep(const char *dir, const char *name, const char *path)
{
	char target[4096];
	if ((size_t)snprintf(target, sizeof(target), "%s/%s", dir, name) >= sizeof(target))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	if (rc)
		return rc;
	/* RENAME_NOREPLACE: of two writers of one name, the second learns
	 * that the first got there, and its file stays its own */
	if (renameat2(AT_FDCWD, path, AT_FDCWD, target, RENAME_NOREPLACE))
		return -errno;
	return st__fsync_dir(dir);
}
