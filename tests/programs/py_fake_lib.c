/* py_fake_lib.c - a library named like CPython's for the Python walk's
 * bad-input checks (python_test.sh). Built as libpython3.11.so.1.0 it has
 * none of the interpreter's symbols: a process mapping it is no CPython.
 * Built with -DCPYTHON_SYMBOLS as libpython3.99.so it exports every name
 * the agent looks for and says it is CPython 3.99, a version the agent
 * has no layout for: its process is profiled as native code. */
#include <stdint.h>

#include "py_fake.h"

uint64_t fake_work(uint64_t n)
{
	uint64_t s = 0;
	for (uint64_t i = 0; i < n; i++)
		s += (i * i) ^ (s >> 3);
	return s;
}

#ifdef CPYTHON_SYMBOLS
char _PyRuntime[4096];
char PyCode_Type[512], PyUnicode_Type[512], PyBytes_Type[512];
const unsigned long Py_Version = 0x036300f0;   /* PY_VERSION_HEX of 3.99.0 */

void *PyGILState_GetThisThreadState(void)
{
	return 0;
}

void *_PyEval_EvalFrameDefault(void *tstate, void *frame, int throwflag)
{
	(void)tstate;
	(void)frame;
	(void)throwflag;
	return 0;
}
#endif
