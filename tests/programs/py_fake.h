/* py_fake.h - py_fake_lib.c's one function. */
#ifndef PY_FAKE_H
#define PY_FAKE_H
#include <stdint.h>
uint64_t fake_work(uint64_t n);
#endif
