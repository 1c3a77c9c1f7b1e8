// Generic f32 GEMM C[M,N] = op(A)·op(B), for callers outside the model (the tfjs training kernels).
// The fast path brings both operands to linear()'s layout (A [M,K], B as W [N,K]); transposes are O(MK + NK)
// next to the O(MNK) product.
#include <vector>

#include "kernels.h"

namespace dsmoe {

void gemm_ref(const float* A, const float* B, float* C, int M, int N, int K, bool transA, bool transB) {
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double acc = 0;
      for (int k = 0; k < K; ++k) {
        float a = transA ? A[size_t(k) * M + m] : A[size_t(m) * K + k];
        float b = transB ? B[size_t(n) * K + k] : B[size_t(k) * N + n];
        acc += double(a) * b;
      }
      C[size_t(m) * N + n] = float(acc);
    }
}

void gemm(ThreadPool* pool, const float* A, const float* B, float* C, int M, int N, int K, bool transA, bool transB) {
  if (M <= 0 || N <= 0) return;
  std::vector<float> at, bt;
  const float* a = A;  // [M, K]
  const float* w = B;  // [N, K]
  if (transA) {
    at.resize(size_t(M) * K);
    for (int k = 0; k < K; ++k)
      for (int m = 0; m < M; ++m) at[size_t(m) * K + k] = A[size_t(k) * M + m];
    a = at.data();
  }
  if (!transB) {
    bt.resize(size_t(N) * K);
    for (int k = 0; k < K; ++k)
      for (int n = 0; n < N; ++n) bt[size_t(n) * K + k] = B[size_t(k) * N + n];
    w = bt.data();
  }
  if (K == 0) {
    for (size_t i = 0; i < size_t(M) * N; ++i) C[i] = 0;
    return;
  }
  linear(pool, a, M, K, w, DType::F32, N, C, N, Epilogue{});
}

}  // namespace dsmoe
