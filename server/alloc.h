/* alloc.h - the server's one allocation wrapper (srv_x prefix): the
 * server may abort on out-of-memory, and does so only through these
 * functions, which never return NULL. Not for storage/ or query/, which
 * return -ENOMEM so that tests can reach those paths. */
#ifndef SMOLDER_SRV_ALLOC_H
#define SMOLDER_SRV_ALLOC_H

#include <stddef.h>

/* Prints that n bytes could not be allocated and aborts. */
__attribute__((noreturn)) void srv_oom(size_t n);

void *srv_xmalloc(size_t n);
void *srv_xcalloc(size_t nmemb, size_t size);
void *srv_xrealloc(void *p, size_t n);
/* Reallocates p to nmemb * size bytes, aborting when the product overflows. */
void *srv_xreallocarray(void *p, size_t nmemb, size_t size);
char *srv_xstrdup(const char *s);

#endif
