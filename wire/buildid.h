/* buildid.h - which build ID names an ELF file: the one rule the agent
 * (frames it sends), the server (debug-info uploads and fetches it checks)
 * and the CLI (`smolder debuginfo upload`) share, so that all three name
 * a file the same way. Needs libelf and libdw, which is why it is apart
 * from wire.h (what links wire.h alone needs only lz4 and xxHash). Not
 * here: the fallback ID of a file without a build ID (wire.h's
 * wire_fallback_build_id), reading the debug info (the symbolizer). */
#ifndef SMOLDER_WIRE_BUILDID_H
#define SMOLDER_WIRE_BUILDID_H

#include <stdint.h>

#include <libelf.h>

#include "wire/wire.h"

/* The GNU build ID of the ELF file e: the NT_GNU_BUILD_ID note libdw's
 * dwelf_elf_gnu_build_id() finds, that is the first in the note sections
 * when the file has section headers, else the first in its PT_NOTE
 * segments (the rule of elfutils' tools and of debuginfod). A note longer
 * than WIRE_MAX_BUILD_ID bytes, or one libdw finds malformed, is no ID
 * the wire can carry: the file is then named by its fallback ID, as a
 * file without a note. Returns the ID's length (1..WIRE_MAX_BUILD_ID) with
 * its bytes in out, 0 when the file has no such ID, -ENOEXEC when e is
 * NULL or not ELF. */
int wire_elf_build_id(Elf *e, uint8_t out[WIRE_MAX_BUILD_ID]);

#endif
