// oneDNN (Debian libdnnl-dev 2.6, C API) plus the few libgomp entry points TensorCore uses so that
// its own parallel loops run on the same OpenMP thread pool as oneDNN (no oversubscription).
#include <oneapi/dnnl/dnnl.h>

void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned int flags);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
int omp_get_max_threads(void);
void omp_set_num_threads(int n);

// glibc: hand free heap pages back to the kernel (Runtime.returnFreedMemory).
#if defined(__linux__)
#include <malloc.h>
#endif
