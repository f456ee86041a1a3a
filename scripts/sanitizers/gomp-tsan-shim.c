// LD_PRELOAD shim for ThreadSanitizer runs (scripts/sanitize thread): tells TSan about the
// happens-before edges of libgomp's fork/join, which it cannot see by itself.
//
// TensorCore's Parallel.forRanges runs Swift closures on libgomp's pool through GOMP_parallel
// (oneDNN uses the same pool). libgomp is not instrumented and keeps its worker threads between
// regions, waking them and joining them with futex barriers TSan does not intercept. So TSan sees
// the master thread write a buffer, a worker (woken without a visible edge) write it, and the
// master read it after the join: a "data race" at every parallel region that reuses a worker.
// OpenMP guarantees exactly these edges (everything before the region happens-before the region's
// body on every thread; every thread's body happens-before the code after the region), and this
// shim states them with TSan's annotations, nothing more: accesses by two threads inside one
// region are still checked, so a kernel whose ranges overlap is still reported.
//
// Built by scripts/sanitize (clang -shared -fPIC, not instrumented). The annotations are weak, so
// uninstrumented processes that inherit LD_PRELOAD (swift-test itself) just call libgomp.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

extern void __tsan_acquire(void *addr) __attribute__((weak));
extern void __tsan_release(void *addr) __attribute__((weak));

typedef void (*gomp_body)(void *);
typedef void (*gomp_parallel_fn)(gomp_body, void *, unsigned, unsigned);

struct region {
  gomp_body body;
  void *data;
  char fork;  // sync object: the master's state before the region
  char join;  // sync object: every thread's state at the end of its body
};

static void trampoline(void *p) {
  struct region *r = p;
  __tsan_acquire(&r->fork);
  r->body(r->data);
  __tsan_release(&r->join);
}

void GOMP_parallel(gomp_body body, void *data, unsigned num_threads, unsigned flags) {
  static gomp_parallel_fn real;
  if (!real) {
    real = (gomp_parallel_fn)dlsym(RTLD_NEXT, "GOMP_parallel");
    if (!real) {
      fprintf(stderr, "gomp-tsan-shim: GOMP_parallel not found\n");
      abort();
    }
  }
  if (!__tsan_acquire || !__tsan_release) {
    real(body, data, num_threads, flags);
    return;
  }
  struct region r = {body, data, 0, 0};
  __tsan_release(&r.fork);
  real(trampoline, &r, num_threads, flags);
  __tsan_acquire(&r.join);
}
