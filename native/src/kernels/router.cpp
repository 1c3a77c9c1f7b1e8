// Router: softmax over all E experts, then the selection rule (design.md §1). The fast forms sort only what the
// rule keeps; the _ref twins sort every expert (stable, so ties fall to the lower index) and exponentiate in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"

namespace dsmoe {

void softmax_rows_ref(float* x, int T, int E) {
  for (int t = 0; t < T; ++t) {
    float* r = x + size_t(t) * E;
    double mx = r[0];
    for (int e = 1; e < E; ++e) mx = std::max(mx, double(r[e]));
    std::vector<double> ex(E);
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += (ex[e] = std::exp(double(r[e]) - mx));
    for (int e = 0; e < E; ++e) r[e] = float(ex[e] / sum);
  }
}

void softmax_row(const float* x, float* y, int kept, int width, float scale) {
  float mx = -INFINITY;
  for (int j = 0; j < kept; ++j) mx = std::max(mx, x[j] * scale);
  double sum = 0;
  for (int j = 0; j < kept; ++j) sum += (y[j] = std::exp(x[j] * scale - mx));
  const float inv = float(1.0 / sum);
  for (int j = 0; j < kept; ++j) y[j] *= inv;
  std::fill(y + kept, y + width, 0.f);
}

void softmax_rows(float* x, int T, int E) {
  for (int t = 0; t < T; ++t) softmax_row(x + size_t(t) * E, x + size_t(t) * E, E, E, 1.f);
}

// Writes the first n experts of `order` (already ranked) for token t.
static int emit(const float* pr, const int* order, int n, const SelectRule& rule, int cap, int t, int32_t* ids,
                float* weights, int32_t* count) {
  n = std::min(n, cap);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += pr[order[i]];
  for (int i = 0; i < n; ++i) {
    ids[size_t(t) * cap + i] = order[i];
    weights[size_t(t) * cap + i] = rule.renormalize && sum > 0 ? float(pr[order[i]] / sum) : pr[order[i]];
  }
  count[t] = n;
  return n;
}

int select_experts_ref(const float* p, int T, int E, const SelectRule& rule, int cap, int32_t* ids, float* weights,
                       int32_t* count) {
  std::vector<int> order;
  int total = 0;
  for (int t = 0; t < T; ++t) {
    const float* pr = p + size_t(t) * E;
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
    total += emit(pr, order.data(), n, rule, cap, t, ids, weights, count);
  }
  return total;
}

int select_experts(const float* p, int T, int E, const SelectRule& rule, int cap, int32_t* ids, float* weights,
                   int32_t* count) {
  std::vector<int> order;
  int total = 0;
  for (int t = 0; t < T; ++t) {
    const float* pr = p + size_t(t) * E;
    // Threshold: only experts over the bar (and the arg-max) can be kept, so rank just those.
    order.clear();
    int best = -1;
    for (int e = 0; e < E; ++e) {
      if (rule.allowed && !rule.allowed[e]) continue;
      if (best < 0 || pr[e] > pr[best]) best = e;
      if (rule.mode != SelectMode::Threshold || float(E) * pr[e] > rule.epsilon) order.push_back(e);
    }
    if (best < 0) {
      count[t] = 0;
      continue;
    }
    if (order.empty()) order.push_back(best);
    // Probability descending, then index ascending: a strict order, so partial sorting is deterministic.
    auto before = [&](int a, int b) { return pr[a] > pr[b] || (pr[a] == pr[b] && a < b); };
    int n = int(order.size());
    if (rule.mode == SelectMode::TopK) n = std::min(n, std::max(1, rule.k));
    if (rule.mode == SelectMode::Threshold) n = std::min(n, rule.k_max > 0 ? rule.k_max : E);
    n = std::min(n, cap);
    std::partial_sort(order.begin(), order.begin() + n, order.end(), before);
    total += emit(pr, order.data(), n, rule, cap, t, ids, weights, count);
  }
  return total;
}

}  // namespace dsmoe
