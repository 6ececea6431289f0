/* cudasim: the cuBLAS subset this project calls (tests/cudasim/README.md).
 * Column-major GEMMs as cuBLAS defines them, computed in order in f32 (the
 * compute type every call here asks for; a multiply and an add, not an
 * FMA); C is not read when beta is 0, as cuBLAS promises. Work goes through
 * cudasim's stream queue, so it is captured into graphs like the kernels
 * around it. */
#include "cudasim.h"

#include <cublas_v2.h>
#include <stdio.h>

#include <vector>

struct cublasContext {
  cudaStream_t stream;
  cublasMath_t math;
};

namespace {

float load(const void *p, cudaDataType t, size_t i) {
  switch (t) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case CUDA_R_16F: return __half2float(((const __half *)p)[i]);
    default: return NAN;
  }
}

void store(void *p, cudaDataType t, size_t i, float v) {
  switch (t) {
    case CUDA_R_32F: ((float *)p)[i] = v; break;
    case CUDA_R_16BF: ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v); break;
    case CUDA_R_16F: ((__half *)p)[i] = __float2half(v); break;
    default: break;
  }
}

bool type_ok(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; }

/* C[i + j·ldc] = alpha · Σ_p op(A)[i, p] op(B)[p, j] + beta · C, batch b at
 * the given strides (elements). op(A) and op(B) are first widened to f32 rows
 * that walk p contiguously, so the sums run in order over p. */
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const void *A,
          cudaDataType at, int lda, long long sa, const void *B, cudaDataType bt, int ldb, long long sb, float beta,
          void *C, cudaDataType ct, int ldc, long long sc, int batch) {
  std::vector<float> a((size_t)m * k), bT((size_t)n * k); /* a[i][p], bT[j][p] */
  for (int b = 0; b < batch; b++) {
    for (int i = 0; i < m; i++)
      for (int p = 0; p < k; p++)
        a[(size_t)i * k + p] = load(A, at, (size_t)(b * sa) + (ta == CUBLAS_OP_N ? (size_t)i + (size_t)p * lda
                                                                                   : (size_t)p + (size_t)i * lda));
    for (int j = 0; j < n; j++)
      for (int p = 0; p < k; p++)
        bT[(size_t)j * k + p] = load(B, bt, (size_t)(b * sb) + (tb == CUBLAS_OP_N ? (size_t)p + (size_t)j * ldb
                                                                                    : (size_t)j + (size_t)p * ldb));
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        const float *ai = a.data() + (size_t)i * k, *bj = bT.data() + (size_t)j * k;
        float acc = 0.f;
        for (int p = 0; p < k; p++) acc += ai[p] * bj[p];
        const size_t ic = (size_t)(b * sc) + (size_t)i + (size_t)j * ldc;
        float v = alpha * acc;
        if (beta != 0.f) v += beta * load(C, ct, ic);
        store(C, ct, ic, v);
      }
  }
}

cublasStatus_t check_dims(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc) {
  const bool ops = (ta == CUBLAS_OP_N || ta == CUBLAS_OP_T) && (tb == CUBLAS_OP_N || tb == CUBLAS_OP_T);
  if (!ops || m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1))) return CUBLAS_STATUS_INVALID_VALUE;
  if (ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1))) return CUBLAS_STATUS_INVALID_VALUE;
  if (ldc < (m > 1 ? m : 1)) return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

/* A, B and C must be device memory, as on a GPU. */
void check_operands(const char *who, const void *A, const void *B, const void *C) {
  ::cudasim::check_device_pointer(who, "matrix", 0, A);
  ::cudasim::check_device_pointer(who, "matrix", 1, B);
  ::cudasim::check_device_pointer(who, "matrix", 2, C);
}

/* Runs on the handle's stream; A and B are read, C written. */
cublasStatus_t run(cublasHandle_t h, const char *who, const void *A, const void *B, const void *C,
                   std::function<void()> work) {
  ::cudasim::access_list accesses{{A, false, who}, {B, false, who}, {C, true, who}};
  return ::cudasim::enqueue(h->stream, who, std::move(work), std::move(accesses)) == cudaSuccess
             ? CUBLAS_STATUS_SUCCESS
             : CUBLAS_STATUS_EXECUTION_FAILED;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t *h) {
  if (!h) return CUBLAS_STATUS_INVALID_VALUE;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) return CUBLAS_STATUS_NOT_INITIALIZED;
  *h = new cublasContext{nullptr, CUBLAS_DEFAULT_MATH};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    default: return "unknown error";
  }
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long sa,
                                         const float *B, int ldb, long long sb, const float *beta, float *C, int ldc,
                                         long long sc, int batch) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!alpha || !beta || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (cublasStatus_t e = check_dims(ta, tb, m, n, k, lda, ldb, ldc)) return e;
  check_operands("cublasSgemmStridedBatched", A, B, C);
  const float al = *alpha, be = *beta;
  return run(h, "cublasSgemmStridedBatched", A, B, C, [=]() { gemm(ta, tb, m, n, k, al, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb, sb, be, C, CUDA_R_32F, ldc, sc, batch); });
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
  (void)algo;
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) {
    fprintf(stderr, "cudasim: cublasGemmEx with compute type %d is not emulated\n", (int)compute);
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (!type_ok(at) || !type_ok(bt) || !type_ok(ct)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (cublasStatus_t e = check_dims(ta, tb, m, n, k, lda, ldb, ldc)) return e;
  check_operands("cublasGemmEx", A, B, C);
  const float al = *(const float *)alpha, be = *(const float *)beta;
  return run(h, "cublasGemmEx", A, B, C, [=]() { gemm(ta, tb, m, n, k, al, A, at, lda, 0, B, bt, ldb, 0, be, C, ct, ldc, 0, 1); });
}

}  // extern "C"
