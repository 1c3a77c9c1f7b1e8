// RMSNorm: x / sqrt(mean(x²) + eps) ⊙ w, one row per token.
#include <cmath>

#include "../common/threadpool.h"
#include "kernel_table.h"
#include "kernels.h"

namespace dsmoe {

void rmsnorm_ref(const float* x, const float* w, int T, int d, float eps, float* out) {
  for (int t = 0; t < T; ++t) {
    const float* r = x + size_t(t) * d;
    double ss = 0;
    for (int j = 0; j < d; ++j) ss += double(r[j]) * r[j];
    float inv = float(1.0 / std::sqrt(ss / d + eps));
    for (int j = 0; j < d; ++j) out[size_t(t) * d + j] = r[j] * inv * w[j];
  }
}

void rmsnorm(ThreadPool* pool, const float* x, const float* w, int T, int d, float eps, float* out) {
  auto row = kernel_table().rmsnorm_row;
  parallel_for(pool, size_t(T), 4, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) row(x + t * d, w, d, eps, out + t * d);
  });
}

}  // namespace dsmoe
