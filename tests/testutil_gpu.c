#include "testutil_gpu.h"

#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

int lukv_test_gpu_probe(const char *prog) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 77;
  if (pid == 0) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1) {
      printf("%s: no CUDA device (%s): skipped\n", prog, e != cudaSuccess ? cudaGetErrorString(e) : "count 0");
      fflush(stdout);
      _exit(1);
    }
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess || p.major < 9) {
      printf("%s: device 0 is not sm_90 or later (this build's code): skipped\n", prog);
      fflush(stdout);
      _exit(1);
    }
    printf("%s: %s, compute capability %d.%d\n", prog, p.name, p.major, p.minor);
    fflush(stdout);
    _exit(0);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return 77;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 77;
}
