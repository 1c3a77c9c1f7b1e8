// Router: softmax over all E experts, then the selection rule (design.md §1). Selection is O(T·E log E) and runs
// once per layer, so the reference form is also the one the model uses; tests compare it with a TypeScript twin.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels.h"

namespace dsmoe {

void softmax_rows(float* x, int T, int E) {
  for (int t = 0; t < T; ++t) {
    float* r = x + size_t(t) * E;
    float mx = *std::max_element(r, r + E);
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += (r[e] = std::exp(r[e] - mx));
    float inv = float(1.0 / sum);
    for (int e = 0; e < E; ++e) r[e] *= inv;
  }
}

int select_experts(const float* p, int T, int E, const SelectRule& rule, int cap, int32_t* ids, float* weights,
                   int32_t* count) {
  std::vector<int> order(E);
  int total = 0;
  for (int t = 0; t < T; ++t) {
    const float* pr = p + size_t(t) * E;
    // Candidates: experts not pruned, by probability descending, ties by lower index.
    order.clear();
    for (int e = 0; e < E; ++e)
      if (!rule.allowed || rule.allowed[e]) order.push_back(e);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return pr[a] > pr[b]; });
    int n = int(order.size());
    if (rule.mode == SelectMode::TopK) {
      n = std::min(n, std::max(1, rule.k));
    } else if (rule.mode == SelectMode::Threshold) {
      int kmax = rule.k_max > 0 ? rule.k_max : E;
      int keep = 0;
      while (keep < n && keep < kmax && float(E) * pr[order[keep]] > rule.epsilon) ++keep;
      n = std::max(std::min(n, 1), keep);  // the arg-max is always kept
    }
    n = std::min(n, cap);
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += pr[order[i]];
    for (int i = 0; i < n; ++i) {
      ids[size_t(t) * cap + i] = order[i];
      weights[size_t(t) * cap + i] = rule.renormalize && sum > 0 ? float(pr[order[i]] / sum) : pr[order[i]];
    }
    count[t] = n;
    total += n;
  }
  return total;
}

}  // namespace dsmoe
