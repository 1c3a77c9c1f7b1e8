// RoPE in transformers' rotate_half form (design.md §1): pairs (i, i + hd/2) rotate by pos·θ^(−2i/hd).
#include <cmath>
#include <vector>

#include "../common/threadpool.h"
#include "kernels.h"

namespace dsmoe {

void rope_ref(float* x, int T, int heads, int hd, const int32_t* pos, float theta) {
  int half = hd / 2;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < heads; ++h) {
      float* v = x + (size_t(t) * heads + h) * hd;
      for (int i = 0; i < half; ++i) {
        double inv_freq = std::pow(double(theta), -2.0 * i / hd);
        double angle = double(pos[t]) * inv_freq;
        float c = float(std::cos(angle)), s = float(std::sin(angle));
        float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
}

// Fast form: cos/sin computed once per token (not per head) in double, then applied to every head.
void rope(ThreadPool* pool, float* x, int T, int heads, int hd, const int32_t* pos, float theta) {
  int half = hd / 2;
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = std::pow(double(theta), -2.0 * i / hd);
  parallel_for(pool, size_t(T), 4, [&](size_t b, size_t e, int) {
    std::vector<float> cs(size_t(2) * half);  // [cos | sin]
    for (size_t t = b; t < e; ++t) {
      for (int i = 0; i < half; ++i) {
        double angle = double(pos[t]) * inv_freq[i];
        cs[i] = float(std::cos(angle));
        cs[half + i] = float(std::sin(angle));
      }
      for (int h = 0; h < heads; ++h) {
        float* v = x + (t * heads + h) * hd;
        for (int i = 0; i < half; ++i) {
          float a = v[i], bb = v[i + half], c = cs[i], s = cs[half + i];
          v[i] = a * c - bb * s;
          v[i + half] = bb * c + a * s;
        }
      }
    }
  });
}

}  // namespace dsmoe
