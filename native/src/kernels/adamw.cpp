// AdamW update and sum of squares over parameter tensors (adamw.h). Memory-bound: each element is read once
// (param, grad, m, v) and written once (param, m, v), in chunks the pool's threads take in turn.
#include "adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/threadpool.h"

namespace dsmoe {

namespace {
constexpr size_t kChunk = 1 << 14;  // elements per pool job: 64 KiB of each array
}

void adamw_ref(float* param, const float* grad, float* m, float* v, size_t n, const AdamWStep& s) {
  const double b1 = s.beta1, b2 = s.beta2;
  for (size_t i = 0; i < n; ++i) {
    const double g = double(grad[i]) * s.grad_scale;
    const double mNew = b1 * m[i] + (1 - b1) * g;
    const double vNew = b2 * v[i] + (1 - b2) * g * g;
    const double update = (mNew / s.correction1) / (std::sqrt(vNew / s.correction2) + s.eps);
    param[i] = float(param[i] - double(s.lr) * (update + double(s.weight_decay) * param[i]));
    m[i] = float(mNew);
    v[i] = float(vNew);
  }
}

void adamw(ThreadPool* pool, float* param, const float* grad, float* m, float* v, size_t n, const AdamWStep& s) {
  // 1 − β in f32 from the double, as tfjs makes a scalar tensor of the JavaScript number 1 − β.
  const float b1 = s.beta1, b2 = s.beta2, ob1 = float(1.0 - double(s.beta1)), ob2 = float(1.0 - double(s.beta2));
  parallel_for(pool, (n + kChunk - 1) / kChunk, 1, [&](size_t c0, size_t c1, int) {
    const size_t end = std::min(n, c1 * kChunk);
    for (size_t i = c0 * kChunk; i < end; ++i) {
      const float g = grad[i] * s.grad_scale;
      const float mNew = m[i] * b1 + g * ob1;
      const float vNew = v[i] * b2 + (g * g) * ob2;
      const float update = (mNew / s.correction1) / (std::sqrt(vNew / s.correction2) + s.eps);
      const float delta = update + param[i] * s.weight_decay;
      param[i] = param[i] - delta * s.lr;
      m[i] = mNew;
      v[i] = vNew;
    }
  });
}

double sum_squares_ref(const float* x, size_t n) {
  double acc = 0;
  for (size_t i = 0; i < n; ++i) acc += double(x[i]) * x[i];
  return acc;
}

double sum_squares(ThreadPool* pool, const float* x, size_t n) {
  const size_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);  // one per chunk: the total does not depend on which thread ran it
  parallel_for(pool, chunks, 1, [&](size_t c0, size_t c1, int) {
    for (size_t c = c0; c < c1; ++c) {
      const size_t end = std::min(n, (c + 1) * kChunk);
      float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 f32 partial sums per 16K elements, vectorizable
      double acc = 0;
      size_t i = c * kChunk;
      for (; i + 8 <= end; i += 8) {
        for (int l = 0; l < 8; ++l) lanes[l] += x[i + l] * x[i + l];
      }
      for (; i < end; ++i) acc += double(x[i]) * x[i];
      for (int l = 0; l < 8; ++l) acc += lanes[l];
      partial[c] = acc;
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace dsmoe
