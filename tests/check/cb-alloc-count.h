/* cb-alloc-count.h — counts heap allocations while `counting_allocs` is set (include once per test
 * program: it defines malloc, calloc and realloc over glibc's __libc_* entry points). Not under
 * AddressSanitizer, which owns malloc: COUNT_ALLOCS is then undefined and tests skip the count. */
#pragma once

#include <stddef.h>

#if !defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 1
extern void *__libc_malloc (size_t n);
extern void *__libc_calloc (size_t n, size_t size);
extern void *__libc_realloc (void *p, size_t n);
static int counting_allocs, n_allocs;

static void
note_alloc (void)
{
  if (__atomic_load_n (&counting_allocs, __ATOMIC_RELAXED))
    __atomic_add_fetch (&n_allocs, 1, __ATOMIC_RELAXED);
}

void *
malloc (size_t n)
{
  note_alloc ();
  return __libc_malloc (n);
}

void *
calloc (size_t n, size_t size)
{
  note_alloc ();
  return __libc_calloc (n, size);
}

void *
realloc (void *p, size_t n)
{
  note_alloc ();
  return __libc_realloc (p, n);
}
#endif
