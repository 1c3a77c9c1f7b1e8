/* rng.h — the sampler's uniform draw, shared by the CUDA kernel and the CPU reference so both pick the same token. */
#ifndef DSMOE_RNG_H
#define DSMOE_RNG_H
#include <stdint.h>

#ifdef __CUDACC__
#define DSMOE_HD __host__ __device__
#else
#define DSMOE_HD
#endif

/* splitmix64 of (seed, counter); the top 24 bits give u in [0, 1) exactly representable in float */
static inline DSMOE_HD float dsmoe_uniform(uint64_t seed, uint64_t counter) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (counter + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)(z >> 40) * (1.0f / 16777216.0f);
}
#endif
