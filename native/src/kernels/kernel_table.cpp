// Chooses the kernel table once: from simd_level() (the CPU, lowered by DSMOE_SIMD) and vnni_enabled() (DSMOE_VNNI)
// at first use, again after a set_simd or set_vnni (tests and `setSimd` in the addon reach every path that way).
#include "kernel_table.h"

namespace dsmoe {

const KernelTable& kernel_table_for(Simd isa) {
#if DSMOE_X86
  if (isa == Simd::Avx512) return avx512_kernel_table(vnni_enabled());
  if (isa == Simd::Avx2) return avx2_kernel_table();
#endif
  (void)isa;
  return scalar_kernel_table();
}

const KernelTable& kernel_table() {
  // simd_level() is itself one relaxed load once known; the lookup is a compare or two. Cheap next to any kernel.
  return kernel_table_for(simd_level());
}

}  // namespace dsmoe
