#include "cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "arch.h"

namespace dsmoe {

Simd simd_detected() {
#if DSMOE_X86
  __builtin_cpu_init();
  // AVX-512 path uses F, BW (16-bit lanes for bf16 widening) and VL; AVX2 path needs FMA and F16C as well.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return Simd::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Simd::Avx2;
  return Simd::Scalar;
#elif defined(__aarch64__)
  return Simd::Neon;
#else
  return Simd::Scalar;
#endif
}

static std::atomic<int> g_level{-1};

static Simd clamp(Simd want) {
  Simd have = simd_detected();
  return int(want) > int(have) ? have : want;
}

Simd simd_level() {
  int v = g_level.load(std::memory_order_relaxed);
  if (v >= 0) return Simd(v);
  Simd level = simd_detected();
  if (const char* env = std::getenv("DSMOE_SIMD")) {
    if (!std::strcmp(env, "scalar")) level = Simd::Scalar;
    else if (!std::strcmp(env, "avx2")) level = clamp(Simd::Avx2);
  }
  g_level.store(int(level));
  return level;
}

void set_simd(Simd level) { g_level.store(int(clamp(level))); }

bool vnni_detected() {
#if DSMOE_X86
  __builtin_cpu_init();
  return simd_detected() == Simd::Avx512 && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

static std::atomic<int> g_vnni{-1};

bool vnni_enabled() {
  int v = g_vnni.load(std::memory_order_relaxed);
  if (v >= 0) return v != 0;
  const char* env = std::getenv("DSMOE_VNNI");
  bool on = vnni_detected() && !(env && !std::strcmp(env, "0"));
  g_vnni.store(on ? 1 : 0);
  return on;
}

void set_vnni(bool on) { g_vnni.store(on && vnni_detected() ? 1 : 0); }

const char* simd_name(Simd level) {
  switch (level) {
    case Simd::Avx512: return "avx512";
    case Simd::Avx2: return "avx2";
    case Simd::Neon: return "neon";
    default: return "scalar";
  }
}

unsigned hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

}  // namespace dsmoe
