// Grouped-query causal attention over the KV cache: query head h reads kv head h / (H / KV); token t attends to
// positions 0..pos[t] of its own slot (the batch's own keys were written to the cache before this runs). With
// `active`, only the (token, head) pairs it marks are computed.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/threadpool.h"
#include "kernel_table.h"
#include "kernels.h"

namespace dsmoe {

void attention_ref(const float* q, const float* kcache, const float* vcache, const int32_t* slot, const int32_t* pos,
                   int T, const AttentionShape& s, float* out) {
  const int group = s.H / s.KV;
  const size_t row = size_t(s.KV) * s.hd;  // one cache position
  const double scale = 1.0 / std::sqrt(double(s.hd));
  std::vector<double> score;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < s.H; ++h) {
      if (s.active && !s.active[size_t(t) * s.H + h]) continue;
      const float* qv = q + (size_t(t) * s.H + h) * s.hd;
      const float* K = kcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      const float* V = vcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      int n = pos[t] + 1;
      score.assign(n, 0);
      double mx = -1e300;
      for (int p = 0; p < n; ++p) {
        double dot = 0;
        for (int i = 0; i < s.hd; ++i) dot += double(qv[i]) * K[p * row + i];
        score[p] = dot * scale;
        mx = std::max(mx, score[p]);
      }
      double sum = 0;
      for (int p = 0; p < n; ++p) sum += (score[p] = std::exp(score[p] - mx));
      float* o = out + (size_t(t) * s.H + h) * s.hd;
      for (int i = 0; i < s.hd; ++i) {
        double acc = 0;
        for (int p = 0; p < n; ++p) acc += score[p] * V[p * row + i];
        o[i] = float(acc / sum);
      }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Fast path: the table's dot / axpy over the head dimension, one (token, head) pair per work item, f32 softmax.

void attention(ThreadPool* pool, const float* q, const float* kcache, const float* vcache, const int32_t* slot,
               const int32_t* pos, int T, const AttentionShape& s, float* out) {
  const KernelTable& kt = kernel_table();
  const int group = s.H / s.KV;
  const size_t row = size_t(s.KV) * s.hd;
  const float scale = float(1.0 / std::sqrt(double(s.hd)));
  parallel_for(pool, size_t(T) * s.H, 1, [&](size_t b, size_t e, int) {
    std::vector<float> score;
    for (size_t item = b; item < e; ++item) {
      int t = int(item / s.H), h = int(item % s.H);
      if (s.active && !s.active[item]) continue;
      const float* qv = q + item * s.hd;
      const float* K = kcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      const float* V = vcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      int n = pos[t] + 1;
      score.resize(n);
      float mx = -INFINITY;
      for (int p = 0; p < n; ++p) {
        float d = kt.dot(qv, K + p * row, s.hd);
        score[p] = d * scale;
        mx = std::max(mx, score[p]);
      }
      float sum = 0;
      for (int p = 0; p < n; ++p) sum += (score[p] = std::exp(score[p] - mx));
      float* o = out + item * s.hd;
      std::fill(o, o + s.hd, 0.f);
      float inv = 1.f / sum;
      for (int p = 0; p < n; ++p) {
        kt.axpy(score[p] * inv, V + p * row, o, s.hd);
      }
    }
  });
}

}  // namespace dsmoe
