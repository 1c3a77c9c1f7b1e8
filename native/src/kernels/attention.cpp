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
// Fast paths. Decode and short runs: the table's dot / axpy over the head dimension, one (token, head) pair per work
// item, f32 softmax. Prefill (a run of ≥ kGemmRunTokens consecutive tokens of one slot, every head computed): per kv
// head, the run's queries of its group against the slot's keys as two GEMMs — scores Q·Kᵀ, the causal softmax row
// by row, then P·V — so that a 512-token prompt runs at the GEMM's rate instead of one 128-wide dot and axpy per
// (query, key) pair (12 GFLOP/s at the DS-MoE-1B shape). The masked half of each score block is computed and zeroed.

namespace {

constexpr int kGemmRunTokens = 16;
constexpr size_t kScoreFloats = size_t(8) << 20;  // 32 MiB of scores per block of queries

void attention_items(ThreadPool* pool, const float* q, const float* kcache, const float* vcache, const int32_t* slot,
                     const int32_t* pos, int t0, int t1, const AttentionShape& s, float* out) {
  const KernelTable& kt = kernel_table();
  const int group = s.H / s.KV;
  const size_t row = size_t(s.KV) * s.hd;
  const float scale = float(1.0 / std::sqrt(double(s.hd)));
  parallel_for(pool, size_t(t1 - t0) * s.H, 1, [&](size_t b, size_t e, int) {
    std::vector<float> score;
    for (size_t i = b; i < e; ++i) {
      const size_t item = size_t(t0) * s.H + i;
      int t = int(item / s.H), h = int(item % s.H);
      if (s.active && !s.active[item]) continue;
      const float* qv = q + item * s.hd;
      const float* K = kcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      const float* V = vcache + size_t(slot[t]) * s.slot_stride + size_t(h / group) * s.hd;
      int n = pos[t] + 1;
      score.resize(n);
      for (int p = 0; p < n; ++p) score[p] = kt.dot(qv, K + p * row, s.hd);
      softmax_row(score.data(), score.data(), n, n, scale);
      float* o = out + item * s.hd;
      std::fill(o, o + s.hd, 0.f);
      for (int p = 0; p < n; ++p) kt.axpy(score[p], V + p * row, o, s.hd);
    }
  });
}

// Tokens [t0, t1) of one slot, every head.
void attention_gemm_run(ThreadPool* pool, const float* q, const float* kcache, const float* vcache, int sl,
                        const int32_t* pos, int t0, int t1, const AttentionShape& s, float* out) {
  const int group = s.H / s.KV, hd = s.hd;
  const size_t row = size_t(s.KV) * hd;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  int most = 0;
  for (int t = t0; t < t1; ++t) most = std::max(most, pos[t] + 1);
  // Blocks of tokens whose scores fit kScoreFloats; each block's keys end at its own last position.
  const int blockTokens = int(std::max<size_t>(1, std::min<size_t>(size_t(t1 - t0), kScoreFloats / (size_t(most) * group))));
  thread_local std::vector<float> Qc, Kc, Vc, S, Oc;
  for (int g = 0; g < s.KV; ++g) {
    const float* Kslot = kcache + size_t(sl) * s.slot_stride + size_t(g) * hd;
    const float* Vslot = vcache + size_t(sl) * s.slot_stride + size_t(g) * hd;
    for (int b0 = t0; b0 < t1; b0 += blockTokens) {
      const int b1 = std::min(t1, b0 + blockTokens), rows = (b1 - b0) * group;
      int n = 0;
      for (int t = b0; t < b1; ++t) n = std::max(n, pos[t] + 1);
      Qc.resize(size_t(rows) * hd), Kc.resize(size_t(n) * hd), Vc.resize(size_t(n) * hd);
      S.resize(size_t(rows) * n), Oc.resize(size_t(rows) * hd);
      for (int p = 0; p < n; ++p) {  // the kv head's keys and values, contiguous
        std::copy(Kslot + p * row, Kslot + p * row + hd, Kc.data() + size_t(p) * hd);
        std::copy(Vslot + p * row, Vslot + p * row + hd, Vc.data() + size_t(p) * hd);
      }
      for (int t = b0; t < b1; ++t)  // row (t − b0)·group + j: head g·group + j of token t
        for (int j = 0; j < group; ++j) {
          const float* src = q + (size_t(t) * s.H + size_t(g) * group + j) * hd;
          std::copy(src, src + hd, Qc.data() + (size_t(t - b0) * group + j) * hd);
        }
      gemm(pool, Qc.data(), Kc.data(), S.data(), rows, n, hd, false, true);  // scores [rows, n]
      float* scores = S.data();  // the pool's threads must not name the thread_local S (each has its own)
      parallel_for(pool, size_t(rows), 16, [&](size_t r0, size_t r1, int) {
        for (size_t r = r0; r < r1; ++r) softmax_row(scores + r * n, scores + r * n, pos[b0 + int(r) / group] + 1, n, scale);
      });
      gemm(pool, S.data(), Vc.data(), Oc.data(), rows, hd, n, false, false);  // [rows, hd]
      for (int t = b0; t < b1; ++t)
        for (int j = 0; j < group; ++j) {
          const float* src = Oc.data() + (size_t(t - b0) * group + j) * hd;
          std::copy(src, src + hd, out + (size_t(t) * s.H + size_t(g) * group + j) * hd);
        }
    }
  }
}

}  // namespace

void attention(ThreadPool* pool, const float* q, const float* kcache, const float* vcache, const int32_t* slot,
               const int32_t* pos, int T, const AttentionShape& s, float* out) {
  // Runs of consecutive tokens of one slot; long ones (prefill) take the GEMMs, the rest the per-item path.
  int shortStart = 0;
  for (int t0 = 0; t0 < T;) {
    int t1 = t0 + 1;
    while (t1 < T && slot[t1] == slot[t0]) ++t1;
    if (!s.active && t1 - t0 >= kGemmRunTokens) {
      if (shortStart < t0) attention_items(pool, q, kcache, vcache, slot, pos, shortStart, t0, s, out);
      attention_gemm_run(pool, q, kcache, vcache, slot[t0], pos, t0, t1, s, out);
      shortStart = t1;
    }
    t0 = t1;
  }
  if (shortStart < T) attention_items(pool, q, kcache, vcache, slot, pos, shortStart, T, s, out);
}

}  // namespace dsmoe
