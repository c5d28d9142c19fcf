/* buildid.c - the build ID that names an ELF file (buildid.h), read by
 * libdw's dwelf_elf_gnu_build_id() rather than by a note walk of our own:
 * three hand-written walks (agent, server, CLI) disagreed on the order of
 * sections and segments and on notes over 64 bytes. */
#include <errno.h>
#include <string.h>

#include <elfutils/libdwelf.h>

#include "wire/buildid.h"

int wire_elf_build_id(Elf *e, uint8_t out[WIRE_MAX_BUILD_ID])
{
	if (!e || elf_kind(e) != ELF_K_ELF)
		return -ENOEXEC;
	const void *id = NULL;
	ssize_t n = dwelf_elf_gnu_build_id(e, &id);
	if (n <= 0 || n > WIRE_MAX_BUILD_ID || !id)
		return 0;
	memcpy(out, id, (size_t)n);
	return (int)n;
}
