// Run-time CPU feature detection: the vector path is chosen per machine, not per build.
#pragma once
#include <string>

namespace dsmoe {

enum class Simd : int { Scalar = 0, Neon = 1, Avx2 = 2, Avx512 = 3 };

// Best level this CPU supports, lowered by DSMOE_SIMD=scalar|avx2 (or set_simd) so tests can reach every path.
Simd simd_level();
Simd simd_detected();
void set_simd(Simd level);  // clamps to what the CPU supports
const char* simd_name(Simd level);
unsigned hardware_threads();

}  // namespace dsmoe
