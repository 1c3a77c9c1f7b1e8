// sampling.cpp — token sampling from one row of logits, the sampler contract of docs/design.md §10 (reference:
// src/sampling/sampler.ts). The draw u(seed, counter) is computed here from common/rng.h, the generator the CUDA
// kernel and the TypeScript reference share, so the same seed gives the same tokens on every path.
//
// Two implementations written independently, compared by native/test/sampling_tests.cpp and both checked against
// test/fixtures/sampler_vectors.json: sample_token finds the nucleus threshold by quickselect (no sort),
// sample_token_ref sorts the ids by weight.
#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../common/rng.h"

namespace dsmoe {

namespace {

int arg_max(const float* logits, int V) {
  int best = 0;
  for (int i = 1; i < V; ++i)
    if (logits[i] > logits[best]) best = i;  // strict: the first maximum (lower id) wins ties
  return best;
}

// q_i = exp((l_i − max) / T) in double; returns Σ q in id order
double weights(const float* logits, int V, float temperature, std::vector<double>& q /*[V]*/) {
  const double mx = *std::max_element(logits, logits + V), t = temperature;
  double total = 0;
  for (int i = 0; i < V; ++i) total += (q[i] = std::exp((double(logits[i]) - mx) / t));
  return total;
}

// The largest value v among c with Σ_{c ≥ v} c ≥ target (0 when even the whole mass falls short by rounding, i.e.
// keep everything). Three-way quickselect: partition the candidates around a pivot into > / = / <, and keep only the
// part that holds the answer, carrying the mass of everything larger. c is scratch and gets reordered.
double nucleus_threshold(std::vector<double>& c, double target) {
  double above = 0;  // mass of the values larger than every remaining candidate
  size_t lo = 0, hi = c.size();
  while (lo < hi) {
    const double pivot = c[lo + (hi - lo) / 2];
    size_t gt = lo, i = lo, lt = hi;  // [lo, gt) > pivot, [gt, i) == pivot, [lt, hi) < pivot
    double m_gt = 0, m_eq = 0;
    while (i < lt) {
      if (c[i] > pivot) m_gt += c[i], std::swap(c[i++], c[gt++]);
      else if (c[i] < pivot) std::swap(c[i], c[--lt]);
      else m_eq += c[i++];
    }
    if (above + m_gt >= target) hi = gt;                  // some larger value already reaches the target
    else if (above + m_gt + m_eq >= target) return pivot;  // the pivot is the first value that does
    else above += m_gt + m_eq, lo = lt;                    // only smaller values can
  }
  return 0;
}

// the walk of the contract over kept ids (q ≥ tau, q > 0) in increasing id order
int walk(const std::vector<double>& q, double tau, double u) {
  const int V = int(q.size());
  double kept = 0;
  for (int i = 0; i < V; ++i)
    if (q[i] > 0 && q[i] >= tau) kept += q[i];
  const double target = u * kept;
  double run = 0;
  int last = -1;
  for (int i = 0; i < V; ++i) {
    if (!(q[i] > 0 && q[i] >= tau)) continue;
    run += q[i];
    last = i;
    if (run > target) return i;
  }
  return last;  // rounding left the target at or past the kept mass
}

}  // namespace

int sample_token(const float* logits, int V, float temperature, float top_p, uint64_t seed, uint64_t counter) {
  if (V <= 0) return -1;
  if (!(temperature > 0)) return arg_max(logits, V);
  std::vector<double> q(V);
  const double total = weights(logits, V, temperature, q);
  double tau = 0;
  if (top_p < 1) {
    std::vector<double> scratch(q);
    tau = nucleus_threshold(scratch, double(top_p) * total);
  }
  return walk(q, tau, double(dsmoe_uniform(seed, counter)));
}

int sample_token_ref(const float* logits, int V, float temperature, float top_p, uint64_t seed, uint64_t counter) {
  if (V <= 0) return -1;
  if (!(temperature > 0)) {
    int best = 0;  // first maximum written out again
    for (int i = 0; i < V; ++i)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  const double mx = *std::max_element(logits, logits + V);
  std::vector<double> q(V);
  double z = 0;
  for (int i = 0; i < V; ++i) z += (q[i] = std::exp((double(logits[i]) - mx) / double(temperature)));
  // sorted by weight, largest first: τ is the weight at which the running mass first reaches top_p·Σq
  double tau = 0;
  if (top_p < 1) {
    std::vector<int> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return q[a] > q[b]; });
    const double target = double(top_p) * z;
    double mass = 0;
    tau = q[order[V - 1]];  // the whole mass short of the target (rounding): keep everything
    for (int i : order) {
      mass += q[i];
      if (mass >= target) {
        tau = q[i];
        break;
      }
    }
  }
  std::vector<int> kept;
  double kept_mass = 0;
  for (int i = 0; i < V; ++i)
    if (q[i] > 0 && q[i] >= tau) kept.push_back(i), kept_mass += q[i];
  const double target = double(dsmoe_uniform(seed, counter)) * kept_mass;
  double c = 0;
  for (int i : kept) {
    c += q[i];
    if (c > target) return i;
  }
  return kept.back();
}

}  // namespace dsmoe
