// sampling.h — the next-token choice of the sampler contract (docs/design.md §10; the TypeScript reference is
// src/sampling/sampler.ts). Kept apart from kernels.h: it has no SIMD or thread-pool variants, and the CUDA test
// harness (native/cuda/test_main.cpp) compiles sampling.cpp as its CPU reference, so this header pulls in nothing else.
#ifndef DSMOE_KERNELS_SAMPLING_H
#define DSMOE_KERNELS_SAMPLING_H
#include <cstdint>

namespace dsmoe {

// One token from logits [V]:
//   temperature ≤ 0 → arg-max, ties to the lower id;
//   else q_i = exp((l_i − max l) / temperature) (double); top_p ≥ 1 keeps every token, else the kept set is
//   { i : q_i ≥ τ, q_i > 0 } for the largest τ with Σ_{q ≥ τ} q ≥ top_p·Σq (ties at τ all kept);
//   u = dsmoe_uniform(seed, counter) (common/rng.h); walking the kept ids in increasing id order, the first whose
//   running sum of q exceeds u·Σ_kept q (the last kept id if rounding leaves none).
// `seed` is the caller's seed as uint64 (a negative JS seed arrives two's-complement); `counter` is the index of the
// token within its sequence's generated tokens. Returns −1 when V ≤ 0.
//
// sample_token finds τ without sorting (three-way quickselect over the values, O(V) expected);
// sample_token_ref is its plain twin: sort ids by weight, accumulate until the mass reaches top_p·Σq.
int sample_token(const float* logits /*[V]*/, int V, float temperature, float top_p, uint64_t seed, uint64_t counter);
int sample_token_ref(const float* logits /*[V]*/, int V, float temperature, float top_p, uint64_t seed,
                     uint64_t counter);

}  // namespace dsmoe

#endif
