// Embedding lookup: rows of the table widened to f32. Token ids are validated by the caller (TypeScript and the
// model both check 0 ≤ id < V before this runs).
#include "../common/cpu.h"
#include "../common/simd.h"
#include "../common/threadpool.h"
#include "kernels.h"

namespace dsmoe {

void embedding_ref(const void* table, DType t, int d, const int32_t* ids, int T, float* out) {
  for (int i = 0; i < T; ++i)
    for (int j = 0; j < d; ++j) out[size_t(i) * d + j] = load_f32(table, t, size_t(ids[i]) * d + j);
}

#if DSMOE_X86
DSMOE_AVX2 static void widen_row_avx2(const void* table, DType t, size_t base, int d, float* out) {
  int j = 0;
  for (; j + 8 <= d; j += 8) _mm256_storeu_ps(out + j, load8(table, t, base + j));
  for (; j < d; ++j) out[j] = load_f32(table, t, base + j);
}
#endif

void embedding(ThreadPool* pool, const void* table, DType t, int d, const int32_t* ids, int T, float* out) {
  bool vec = simd_level() >= Simd::Avx2;
  parallel_for(pool, size_t(T), 8, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) {
#if DSMOE_X86
      if (vec) {
        widen_row_avx2(table, t, size_t(ids[i]) * d, d, out + i * d);
        continue;
      }
#endif
      (void)vec;
      embedding_ref(table, t, d, ids + i, 1, out + i * d);
    }
  });
}

}  // namespace dsmoe
