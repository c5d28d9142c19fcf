/* python_layouts.h - where CPython 3.8 to 3.13 keep what the Python walk
 * reads: the one table of struct offsets per version (agent/python.c puts
 * a row into each process' BPF entry, bpf/profile.h's sm_py_proc, and
 * reads code objects with it). Offsets are of the x86_64 Linux release
 * build (no Py_DEBUG, no free threading), measured with offsetof() on the
 * versions' own headers by tests/tools/py_layouts.sh, which prints these
 * rows; a field a version lacks is left 0 and not used for it (see the
 * comments). Patch releases of one minor version share a row: CPython
 * keeps these structures within a minor version, and the walk checks what
 * it reads (the thread state's thread, every code object's type).
 *
 * Tested by `make test`: 3.11 (Debian 12's python3.11, 3.11.2). Measured
 * but not in the suite: 3.8.18, 3.9.18, 3.10.13, 3.12.1, 3.13.0 (docs/
 * architecture.md says how far each was tried). */
#ifndef SMOLDER_AGENT_PYTHON_LAYOUTS_H
#define SMOLDER_AGENT_PYTHON_LAYOUTS_H

#include <stdint.h>

#include <linux/types.h>

#include "bpf/profile.h"

/* Line table formats: co_lnotab (3.8, 3.9: byte offsets), co_linetable
 * (3.10: byte offsets), the location table (3.11+: code units). */
enum { AG_PY_LINES_LNOTAB = 0, AG_PY_LINES_310 = 1, AG_PY_LINES_311 = 2 };

typedef struct ag_py_layout {
	uint8_t major, minor;
	/* _PyRuntime.(gilstate.)autoTSSkey: its Py_tss_t's two ints */
	uint16_t tss_init, tss_key;
	/* PyThreadState: thread_id (pthread_self()); frame (3.8-3.10) or
	 * current_frame (3.13); cframe (3.10-3.12); _PyCFrame's
	 * current_frame (3.11, 3.12) and previous (3.10-3.12) */
	uint16_t ts_thread_id, ts_frame, ts_cframe, cf_frame, cf_previous;
	/* the frame: PyFrameObject (3.8-3.10), _PyInterpreterFrame (3.11+):
	 * its code, the previous frame, f_lasti (3.8-3.10) or the instruction
	 * pointer (3.11+), is_entry (3.11) or owner (3.12+) */
	uint16_t fr_code, fr_back, fr_lasti, fr_instr, fr_is_entry, fr_owner;
	/* PyCodeObject: co_qualname from 3.11 on (co_name before), the line
	 * table (co_lnotab in 3.8, 3.9), the first instruction (co_code_adaptive,
	 * 3.11+; co_code's bytes object before) and ob_size (3.11+: code units) */
	uint16_t co_filename, co_name, co_qualname, co_firstlineno;
	uint16_t co_linetable, co_code, co_size;
	/* str: PyASCIIObject.state, then where a compact string's characters
	 * start: after PyASCIIObject (ASCII) or PyCompactUnicodeObject */
	uint16_t str_state, str_ascii_data, str_compact_data;
	uint16_t bytes_size, bytes_data;   /* PyBytesObject: ob_size, ob_sval */
	uint8_t walk, end, lasti;          /* enum sm_py_walk, sm_py_end, sm_py_lasti */
	uint8_t lines;                     /* AG_PY_LINES_* */
} ag_py_layout;

static const ag_py_layout ag_py_layouts[] = {
	{3, 8, /* 3.8.18 */
	 .tss_init = 1392, .tss_key = 1396,
	 .ts_thread_id = 176, .ts_frame = 24,
	 .fr_code = 32, .fr_back = 24, .fr_lasti = 104,
	 .co_filename = 104, .co_name = 112, .co_firstlineno = 40,
	 .co_linetable = 120, .co_code = 48,
	 .str_state = 32, .str_ascii_data = 48, .str_compact_data = 72,
	 .bytes_size = 16, .bytes_data = 32,
	 .walk = SM_PY_WALK_PC, .end = SM_PY_END_ONE, .lasti = SM_PY_LASTI_INT, .lines = AG_PY_LINES_LNOTAB},
	{3, 9, /* 3.9.18 */
	 .tss_init = 584, .tss_key = 588,
	 .ts_thread_id = 176, .ts_frame = 24,
	 .fr_code = 32, .fr_back = 24, .fr_lasti = 104,
	 .co_filename = 104, .co_name = 112, .co_firstlineno = 40,
	 .co_linetable = 120, .co_code = 48,
	 .str_state = 32, .str_ascii_data = 48, .str_compact_data = 72,
	 .bytes_size = 16, .bytes_data = 32,
	 .walk = SM_PY_WALK_PC, .end = SM_PY_END_ONE, .lasti = SM_PY_LASTI_INT, .lines = AG_PY_LINES_LNOTAB},
	{3, 10, /* 3.10.13 */
	 .tss_init = 584, .tss_key = 588,
	 .ts_thread_id = 176, .ts_frame = 24, .ts_cframe = 48, .cf_previous = 8,
	 .fr_code = 32, .fr_back = 24, .fr_lasti = 96,
	 .co_filename = 104, .co_name = 112, .co_firstlineno = 40,
	 .co_linetable = 120, .co_code = 48,
	 .str_state = 32, .str_ascii_data = 48, .str_compact_data = 72,
	 .bytes_size = 16, .bytes_data = 32,
	 .walk = SM_PY_WALK_CFRAME, .end = SM_PY_END_ONE, .lasti = SM_PY_LASTI_INT, .lines = AG_PY_LINES_310},
	{3, 11, /* 3.11.2 (Debian 12), 3.11.7 */
	 .tss_init = 592, .tss_key = 596,
	 .ts_thread_id = 152, .ts_cframe = 56, .cf_frame = 8, .cf_previous = 16,
	 .fr_code = 32, .fr_back = 48, .fr_instr = 56, .fr_is_entry = 68,
	 .co_filename = 112, .co_name = 120, .co_qualname = 128, .co_firstlineno = 72,
	 .co_linetable = 136, .co_code = 184, .co_size = 16,
	 .str_state = 32, .str_ascii_data = 48, .str_compact_data = 72,
	 .bytes_size = 16, .bytes_data = 32,
	 .walk = SM_PY_WALK_CFRAME, .end = SM_PY_END_ENTRY, .lasti = SM_PY_LASTI_PTR, .lines = AG_PY_LINES_311},
	{3, 12, /* 3.12.1 */
	 .tss_init = 1544, .tss_key = 1548,
	 .ts_thread_id = 136, .ts_cframe = 56, .cf_frame = 0, .cf_previous = 8,
	 .fr_code = 0, .fr_back = 8, .fr_instr = 56, .fr_owner = 70,
	 .co_filename = 112, .co_name = 120, .co_qualname = 128, .co_firstlineno = 68,
	 .co_linetable = 136, .co_code = 192, .co_size = 16,
	 .str_state = 32, .str_ascii_data = 40, .str_compact_data = 56,
	 .bytes_size = 16, .bytes_data = 32,
	 .walk = SM_PY_WALK_CFRAME, .end = SM_PY_END_CSTACK, .lasti = SM_PY_LASTI_PTR, .lines = AG_PY_LINES_311},
	{3, 13, /* 3.13.0 */
	 .tss_init = 2160, .tss_key = 2164,
	 .ts_thread_id = 152, .ts_frame = 72,
	 .fr_code = 0, .fr_back = 8, .fr_instr = 56, .fr_owner = 70,
	 .co_filename = 112, .co_name = 120, .co_qualname = 128, .co_firstlineno = 68,
	 .co_linetable = 136, .co_code = 200, .co_size = 16,
	 .str_state = 32, .str_ascii_data = 40, .str_compact_data = 56,
	 .bytes_size = 16, .bytes_data = 32,
	 .walk = SM_PY_WALK_PC, .end = SM_PY_END_CSTACK, .lasti = SM_PY_LASTI_PTR, .lines = AG_PY_LINES_311},
};

#define AG_PY_NLAYOUTS (sizeof(ag_py_layouts) / sizeof(ag_py_layouts[0]))

#endif
