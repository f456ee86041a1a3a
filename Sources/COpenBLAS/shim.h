// OpenBLAS (Debian libopenblas-dev), CBLAS interface.
#include <cblas.h>
