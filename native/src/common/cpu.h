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
// AVX-512 VNNI (8-bit dot products, vpdpbusd) is a feature inside the AVX-512 level rather than a level of its own:
// only the integer GEMV differs (kernel_table_avx512.cpp). On where the CPU has it; DSMOE_VNNI=0 or set_vnni(false)
// turns it off so the AVX-512 table's other integer path (AVX2's maddubs) is tested on a VNNI machine too.
bool vnni_detected();
bool vnni_enabled();
void set_vnni(bool on);  // clamps to what the CPU supports
unsigned hardware_threads();

}  // namespace dsmoe
