// Token sampling from one row of logits. The uniform draw u comes from the caller's seeded generator, so the same
// seed gives the same tokens on every machine and path.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels.h"

namespace dsmoe {

int sample_token(const float* logits, int V, float temperature, float top_p, double u) {
  if (V <= 0) return -1;
  if (!(temperature > 0)) {
    int best = 0;
    for (int i = 1; i < V; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  float mx = *std::max_element(logits, logits + V);
  std::vector<double> p(V);
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += (p[i] = std::exp((double(logits[i]) - mx) / temperature));
  for (double& v : p) v /= sum;
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
  // Nucleus: the shortest prefix whose mass reaches top_p (at least one token).
  int n = V;
  if (top_p > 0 && top_p < 1) {
    double mass = 0;
    for (n = 0; n < V;) {
      mass += p[order[n++]];
      if (mass >= top_p) break;
    }
  }
  double kept = 0;
  for (int i = 0; i < n; ++i) kept += p[order[i]];
  double target = u * kept, c = 0;
  for (int i = 0; i < n; ++i) {
    c += p[order[i]];
    if (target < c) return order[i];
  }
  return order[n - 1];
}

}  // namespace dsmoe
