// Embedding lookup: rows of the table widened to f32. Token ids are validated by the caller (TypeScript and the
// model both check 0 ≤ id < V before this runs).
#include "../common/threadpool.h"
#include "kernel_table.h"
#include "kernels.h"

namespace dsmoe {

void embedding_ref(const void* table, DType t, int d, const int32_t* ids, int T, float* out) {
  for (int i = 0; i < T; ++i)
    for (int j = 0; j < d; ++j) out[size_t(i) * d + j] = load_f32(table, t, size_t(ids[i]) * d + j);
}

void embedding(ThreadPool* pool, const void* table, DType t, int d, const int32_t* ids, int T, float* out) {
  auto widen = kernel_table().widen_row[int(t)];
  parallel_for(pool, size_t(T), 8, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; ++i) widen(table, size_t(ids[i]) * d, d, out + i * d);
  });
}

}  // namespace dsmoe
