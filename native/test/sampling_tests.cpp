// sampling_tests: the sampler contract in C++ (docs/design.md §10).
//   1. the generator against the independently computed u(seed, counter) values of the shared vectors;
//   2. sample_token and its twin sample_token_ref against every expected token of the shared vectors
//      (test/fixtures/sampler_vectors.json, from the TypeScript reference);
//   3. the two against each other on random rows (ties, masked tokens, tiny temperatures, top_p from 1e-6 to 1);
//   4. properties: greedy ties, masked tokens never drawn, frequencies following the softmax, the counter deciding
//      the draw.
//
//   sampling_tests PATH/TO/sampler_vectors.json     exit 0 = all passed, 1 = a check failed, 2 = unreadable vectors
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../src/common/rng.h"
#include "../src/kernels/sampling.h"
#include "sampler_vectors.h"

using namespace dsmoe;

static int g_failures = 0, g_checks = 0;
static std::mt19937_64 rng(1234);

static void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

static void test_uniform(const sampler_vectors::Vectors& v) {
  for (const auto& u : v.uniform) {
    const uint32_t bits = dsmoe_uniform_bits(u.seed, u.counter);
    check(bits == u.bits, "uniform bits seed=" + std::to_string(u.seed) + " counter=" + std::to_string(u.counter) +
                              ": got " + std::to_string(bits) + ", want " + std::to_string(u.bits));
    check(double(dsmoe_uniform(u.seed, u.counter)) == double(u.bits) / 16777216.0, "uniform = bits / 2^24");
  }
}

static void test_vectors(const sampler_vectors::Vectors& v) {
  for (const auto& c : v.cases) {
    const int V = int(c.logits.size());
    const int fast = sample_token(c.logits.data(), V, c.temperature, c.top_p, c.seed, c.counter);
    const int ref = sample_token_ref(c.logits.data(), V, c.temperature, c.top_p, c.seed, c.counter);
    check(fast == c.token, "vector \"" + c.name + "\": sample_token gave " + std::to_string(fast) + ", expected " +
                               std::to_string(c.token));
    check(ref == c.token, "vector \"" + c.name + "\": sample_token_ref gave " + std::to_string(ref) + ", expected " +
                              std::to_string(c.token));
  }
  std::printf("%zu shared vectors checked\n", v.cases.size());
}

// Random rows: quantised logits (many ties), continuous ones, and some masked tokens.
static std::vector<float> random_row(int V, int kind) {
  std::vector<float> l(V);
  std::uniform_real_distribution<float> cont(-6.f, 6.f);
  std::uniform_int_distribution<int> quant(-8, 8);
  for (auto& x : l) x = kind == 0 ? cont(rng) : 0.5f * float(quant(rng));
  if (kind == 2)
    for (int i = 0; i < V; i += 3) l[i] = -INFINITY;
  if (kind == 2 && V % 3 == 1) l[V - 1] = 0.f;  // keep one finite logit when V = 1
  return l;
}

static void test_twins() {
  int cases = 0, mismatches = 0;
  for (int V : {1, 2, 3, 7, 50, 257, 1000, 4099})
    for (int kind = 0; kind < 3; ++kind)
      for (float T : {0.f, 1e-3f, 0.5f, 1.f, 2.f})
        for (float P : {1.f, 0.95f, 0.5f, 0.1f, 1e-6f})
          for (int trial = 0; trial < 4; ++trial) {
            const auto l = random_row(V, kind);
            const uint64_t seed = rng(), counter = rng() >> 11;
            const int a = sample_token(l.data(), V, T, P, seed, counter);
            const int b = sample_token_ref(l.data(), V, T, P, seed, counter);
            ++cases;
            if (a != b || a < 0 || a >= V || l[a] == -INFINITY) {
              if (++mismatches <= 5)
                std::printf("FAIL twins V=%d kind=%d T=%g P=%g: sample_token %d, sample_token_ref %d\n", V, kind, T, P,
                            a, b);
            }
          }
  ++g_checks;
  if (mismatches) ++g_failures;
  std::printf("%d random rows: sample_token == sample_token_ref in %d\n", cases, cases - mismatches);
}

static void test_properties() {
  const std::vector<float> tie = {0.f, 2.f, 2.f, -1.f};
  for (uint64_t seed : {0ull, 1ull, ~0ull}) {
    check(sample_token(tie.data(), 4, 0.f, 1.f, seed, 3) == 1, "greedy: ties go to the lower id");
    check(sample_token(tie.data(), 4, -1.f, 0.5f, seed, 3) == 1, "temperature < 0 is greedy");
    check(sample_token(tie.data(), 4, 1.f, 1e-6f, seed, 3) == 1 || sample_token(tie.data(), 4, 1.f, 1e-6f, seed, 3) == 2,
          "top_p tiny keeps the tied maximum only");
  }
  check(sample_token(tie.data(), 0, 1.f, 1.f, 0, 0) == -1 && sample_token_ref(tie.data(), 0, 1.f, 1.f, 0, 0) == -1,
        "V = 0 gives -1");

  // the boundary inside a tie group: all ten tied tokens stay in a 0.5 nucleus, so every one of them is drawn
  std::vector<float> flat(10, 0.f);
  std::vector<int> seen(10, 0);
  for (uint64_t c = 0; c < 400; ++c) ++seen[sample_token(flat.data(), 10, 1.f, 0.5f, 7, c)];
  bool all = true;
  for (int n : seen) all = all && n > 0;
  check(all, "ties at the nucleus boundary are all kept");

  // masked tokens are never drawn; frequencies follow softmax(l / T) within 4 standard errors
  const std::vector<float> l = {-INFINITY, 0.f, std::log(3.f) * 0.5f, -INFINITY};  // p = [0, 1/4, 3/4, 0] at T = 0.5
  const int N = 20000;
  int ones = 0, masked = 0;
  for (uint64_t c = 0; c < uint64_t(N); ++c) {
    const int t = sample_token(l.data(), 4, 0.5f, 1.f, 42, c);
    masked += t == 0 || t == 3;
    ones += t == 1;
  }
  check(masked == 0, "masked tokens are never drawn");
  const double p1 = double(ones) / N, se = std::sqrt(0.25 * 0.75 / N);
  check(std::fabs(p1 - 0.25) < 4 * se, "frequency of p = 1/4 is " + std::to_string(p1));

  // the draw is u(seed, counter): the same pair gives the same token, and the counter changes it
  const auto row = random_row(1000, 0);
  bool same = true, differs = false;
  const int first = sample_token(row.data(), 1000, 1.f, 1.f, 5, 0);
  for (uint64_t c = 0; c < 20; ++c) {
    same = same && sample_token(row.data(), 1000, 1.f, 1.f, 5, c) == sample_token(row.data(), 1000, 1.f, 1.f, 5, c);
    differs = differs || sample_token(row.data(), 1000, 1.f, 1.f, 5, c) != first;
  }
  check(same && differs, "the draw is a function of (seed, counter)");
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PATH/TO/test/fixtures/sampler_vectors.json\n", argv[0]);
    return 2;
  }
  sampler_vectors::Vectors v;
  try {
    v = sampler_vectors::load(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sampling_tests: %s\n", e.what());
    return 2;
  }
  test_uniform(v);
  test_vectors(v);
  test_twins();
  test_properties();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
