// Token→expert grouping, as ggml's mul_mat_id and vLLM's moe_align_block_size: count the tokens of every expert,
// prefix-sum the counts into offsets, then place each (token, weight) at its expert's next free row. The expert
// kernels then read one contiguous run of rows per expert. The _ref twin builds the same lists expert by expert with
// a full scan of the selections each (O(E·T·cap)), sharing nothing with the counting sort.
#include <vector>

#include "kernels.h"

namespace dsmoe {

void group_by_expert_ref(const int32_t* ids, const float* weights, const int32_t* count, int T, int cap, int E,
                         int32_t* expert_count, int32_t* offsets, int32_t* rows, float* row_weight) {
  int r = 0;
  offsets[0] = 0;
  for (int e = 0; e < E; ++e) {
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < count[t]; ++i)
        if (ids[size_t(t) * cap + i] == e) {
          rows[r] = t;
          row_weight[r] = weights[size_t(t) * cap + i];
          ++r;
        }
    offsets[e + 1] = r;
    expert_count[e] = offsets[e + 1] - offsets[e];
  }
}

void group_by_expert(const int32_t* ids, const float* weights, const int32_t* count, int T, int cap, int E,
                     int32_t* expert_count, int32_t* offsets, int32_t* rows, float* row_weight) {
  for (int e = 0; e < E; ++e) expert_count[e] = 0;
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < count[t]; ++i) ++expert_count[ids[size_t(t) * cap + i]];
  offsets[0] = 0;
  for (int e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + expert_count[e];
  std::vector<int32_t> next(offsets, offsets + E);
  // Tokens in ascending order, so each expert's rows are sorted by token.
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < count[t]; ++i) {
      int e = ids[size_t(t) * cap + i];
      int r = next[e]++;
      rows[r] = t;
      row_weight[r] = weights[size_t(t) * cap + i];
    }
}

}  // namespace dsmoe
