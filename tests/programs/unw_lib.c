/* unw_lib.c - the shared library of the unwinder's test subject, built
 * without frame pointers (-O2 -fomit-frame-pointer): lib_walk recurses
 * depth times inside the library, then calls back into the program, so a
 * sample in the callback has library frames between two program frames. */
#include "unw_lib.h"

static volatile int lib_sink;

__attribute__((noinline)) void lib_walk(int depth, void (*cb)(void))
{
	if (depth > 0)
		lib_walk(depth - 1, cb);
	else
		cb();
	lib_sink++;   /* no tail calls: every level keeps its frame */
}
