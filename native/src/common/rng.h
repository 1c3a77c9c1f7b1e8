/* rng.h — the sampler's generator (docs/design.md §10), one copy for the CPU kernel (native/src/kernels/sampling.cpp),
 * the CUDA kernel (native/cuda/sampling.cu) and their tests; src/sampling/uniform.ts is the same function in
 * TypeScript. Plain C so that nvcc, the C++ addon and any C caller include it as is.
 *
 * Counter-based and stateless: u(seed, counter) = top 24 bits of splitmix64(seed + 0x9E3779B97F4A7C15·(counter+1))
 * / 2^24. counter = the index of the token within its sequence's generated tokens, so a draw depends on (seed,
 * counter) only — not on batch neighbours, and a kernel needs no state. 24 bits make u exact in float and double. */
#ifndef DSMOE_RNG_H
#define DSMOE_RNG_H
#include <stdint.h>

#ifdef __CUDACC__
#define DSMOE_HD __host__ __device__
#else
#define DSMOE_HD
#endif

/* the 24-bit integer behind u, in [0, 2^24) */
static inline DSMOE_HD uint32_t dsmoe_uniform_bits(uint64_t seed, uint64_t counter) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (counter + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (uint32_t)(z >> 40);
}

/* u in [0, 1) */
static inline DSMOE_HD float dsmoe_uniform(uint64_t seed, uint64_t counter) {
  return (float)dsmoe_uniform_bits(seed, counter) * (1.0f / 16777216.0f);
}
#endif
