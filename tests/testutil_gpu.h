/* The gpu suite's device probe, shared by tests/test_*_gpu.c. */
#ifndef LUKV_TESTUTIL_GPU_H
#define LUKV_TESTUTIL_GPU_H

/* 0 when device 0 is usable by this build (sm_90 or later); it then prints
 * "<prog>: <device name>, compute capability X.Y". Otherwise prints
 * "<prog>: ...: skipped" with the reason and returns 77, the exit code
 * meson reads as SKIP. The probe runs in a forked child so that a CUDA
 * context is never created in the parent before Check forks its tests. */
int lukv_test_gpu_probe(const char *prog);

#endif
