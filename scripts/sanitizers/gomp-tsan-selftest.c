// Self-test of gomp-tsan-shim.c, run by scripts/sanitize thread before the tests: with the shim,
// TSan must (1) not report the master → worker hand-off across GOMP_parallel regions, which it
// reports without the shim (the false positive the shim exists for), and (2) still report a real
// race between the threads of one region. Build: clang -fsanitize=thread … -lgomp.
#include <stdio.h>

void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
int omp_get_thread_num(void);

static long racy;         // written by every thread of one region: a real race
static long handoff[64];  // written by the master between regions, read by the workers: no race

static void body(void *real_race) {
  int t = omp_get_thread_num();
  long v = handoff[t];
  if (real_race) racy += v;
  handoff[t] = v + 1;
}

int main(int argc, char **argv) {
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 4; i++) handoff[i] = round;
    GOMP_parallel(body, argc > 1 ? (void *)1 : 0, 4, 0);
  }
  printf("done %ld\n", racy);
  return 0;
}
