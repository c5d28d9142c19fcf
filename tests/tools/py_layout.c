/* py_layout.c - prints one row of agent/python_layouts.h for the CPython
 * whose headers it is compiled against, with offsetof() on the real
 * structs (so the table is measured, not transcribed):
 *
 *   cc -DPy_BUILD_CORE -I$PREFIX/include/python3.X tests/tools/py_layout.c
 *
 * tests/tools/py_layouts.sh runs it for every installed CPython. The
 * offsets are those of the x86_64 Linux release build (no Py_DEBUG, no
 * free threading). */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>

#if PY_VERSION_HEX >= 0x030b0000
#include "internal/pycore_frame.h"
#endif
#if PY_VERSION_HEX >= 0x03090000
#include "internal/pycore_runtime.h"
#else
#include "internal/pycore_pystate.h"
#endif
#if PY_VERSION_HEX < 0x030b0000
#include "frameobject.h"
#endif

int main(void)
{
#if PY_VERSION_HEX >= 0x030c0000
	size_t tss = offsetof(_PyRuntimeState, autoTSSkey);
#else
	size_t tss = offsetof(_PyRuntimeState, gilstate.autoTSSkey);
#endif
	printf("\t{%d, %d, /* %s */\n", PY_MAJOR_VERSION, PY_MINOR_VERSION, PY_VERSION);
	printf("\t .tss_init = %zu, .tss_key = %zu,\n",
	       tss + offsetof(Py_tss_t, _is_initialized), tss + offsetof(Py_tss_t, _key));
	printf("\t .ts_thread_id = %zu,", offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030d0000
	printf(" .ts_frame = %zu,", offsetof(PyThreadState, current_frame));
#elif PY_VERSION_HEX >= 0x030b0000
	printf(" .ts_cframe = %zu, .cf_frame = %zu, .cf_previous = %zu,",
	       offsetof(PyThreadState, cframe), offsetof(_PyCFrame, current_frame),
	       offsetof(_PyCFrame, previous));
#elif PY_VERSION_HEX >= 0x030a0000
	printf(" .ts_frame = %zu, .ts_cframe = %zu, .cf_previous = %zu,",
	       offsetof(PyThreadState, frame), offsetof(PyThreadState, cframe),
	       offsetof(CFrame, previous));
#else
	printf(" .ts_frame = %zu,", offsetof(PyThreadState, frame));
#endif
	printf("\n");
#if PY_VERSION_HEX >= 0x030d0000
	printf("\t .fr_code = %zu, .fr_back = %zu, .fr_instr = %zu, .fr_owner = %zu,\n",
	       offsetof(_PyInterpreterFrame, f_executable), offsetof(_PyInterpreterFrame, previous),
	       offsetof(_PyInterpreterFrame, instr_ptr), offsetof(_PyInterpreterFrame, owner));
#elif PY_VERSION_HEX >= 0x030c0000
	printf("\t .fr_code = %zu, .fr_back = %zu, .fr_instr = %zu, .fr_owner = %zu,\n",
	       offsetof(_PyInterpreterFrame, f_code), offsetof(_PyInterpreterFrame, previous),
	       offsetof(_PyInterpreterFrame, prev_instr), offsetof(_PyInterpreterFrame, owner));
#elif PY_VERSION_HEX >= 0x030b0000
	printf("\t .fr_code = %zu, .fr_back = %zu, .fr_instr = %zu, .fr_is_entry = %zu,\n",
	       offsetof(_PyInterpreterFrame, f_code), offsetof(_PyInterpreterFrame, previous),
	       offsetof(_PyInterpreterFrame, prev_instr), offsetof(_PyInterpreterFrame, is_entry));
#else
	printf("\t .fr_code = %zu, .fr_back = %zu, .fr_lasti = %zu,\n",
	       offsetof(PyFrameObject, f_code), offsetof(PyFrameObject, f_back),
	       offsetof(PyFrameObject, f_lasti));
#endif
	printf("\t .co_filename = %zu, .co_name = %zu,", offsetof(PyCodeObject, co_filename),
	       offsetof(PyCodeObject, co_name));
#if PY_VERSION_HEX >= 0x030b0000
	printf(" .co_qualname = %zu,", offsetof(PyCodeObject, co_qualname));
#endif
	printf(" .co_firstlineno = %zu,\n", offsetof(PyCodeObject, co_firstlineno));
#if PY_VERSION_HEX >= 0x030b0000
	printf("\t .co_linetable = %zu, .co_code = %zu, .co_size = %zu,\n",
	       offsetof(PyCodeObject, co_linetable), offsetof(PyCodeObject, co_code_adaptive),
	       offsetof(PyVarObject, ob_size));
#elif PY_VERSION_HEX >= 0x030a0000
	printf("\t .co_linetable = %zu, .co_code = %zu,\n", offsetof(PyCodeObject, co_linetable),
	       offsetof(PyCodeObject, co_code));
#else
	printf("\t .co_linetable = %zu, .co_code = %zu,\n", offsetof(PyCodeObject, co_lnotab),
	       offsetof(PyCodeObject, co_code));
#endif
	printf("\t .str_state = %zu, .str_ascii_data = %zu, .str_compact_data = %zu,\n",
	       offsetof(PyASCIIObject, state), sizeof(PyASCIIObject),
	       sizeof(PyCompactUnicodeObject));
	printf("\t .bytes_size = %zu, .bytes_data = %zu,\n", offsetof(PyVarObject, ob_size),
	       offsetof(PyBytesObject, ob_sval));
	/* how the walk goes (bpf/profile.h) and the line table's format */
#if PY_VERSION_HEX >= 0x030d0000
	printf("\t .walk = SM_PY_WALK_PC, .end = SM_PY_END_CSTACK, .lasti = SM_PY_LASTI_PTR,"
	       " .lines = AG_PY_LINES_311},\n");
#elif PY_VERSION_HEX >= 0x030c0000
	printf("\t .walk = SM_PY_WALK_CFRAME, .end = SM_PY_END_CSTACK, .lasti = SM_PY_LASTI_PTR,"
	       " .lines = AG_PY_LINES_311},\n");
#elif PY_VERSION_HEX >= 0x030b0000
	printf("\t .walk = SM_PY_WALK_CFRAME, .end = SM_PY_END_ENTRY, .lasti = SM_PY_LASTI_PTR,"
	       " .lines = AG_PY_LINES_311},\n");
#elif PY_VERSION_HEX >= 0x030a0000
	printf("\t .walk = SM_PY_WALK_CFRAME, .end = SM_PY_END_ONE, .lasti = SM_PY_LASTI_INT,"
	       " .lines = AG_PY_LINES_310},\n");
#else
	printf("\t .walk = SM_PY_WALK_PC, .end = SM_PY_END_ONE, .lasti = SM_PY_LASTI_INT,"
	       " .lines = AG_PY_LINES_LNOTAB},\n");
#endif
	return 0;
}
