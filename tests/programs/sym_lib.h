/* sym_lib.h - what libsymlib.so (sym_lib.c) exports to sym_c.c. */
#ifndef SMOLDER_TEST_SYM_LIB_H
#define SMOLDER_TEST_SYM_LIB_H
/* gcc 12 sets up no frame in a leaf function at -O1 and above, even with
 * -fno-omit-frame-pointer, and a frame-pointer unwinder then skips the
 * leaf's caller. Asking for the frame's address makes gcc keep it; the asm
 * emits no instruction. */
#define KEEP_FRAME() __asm__ volatile("" ::"r"(__builtin_frame_address(0)))

unsigned long symlib_hash(unsigned long n);
unsigned long symlib_work(unsigned long n);
#endif
