// moe_gemm.cu — grouped GEMM on tensor cores for prefill and large batches (WMMA bf16 x bf16 -> f32).
//
// One kernel, three epilogues:
//   GATE_UP  h[r, n]            = bf16( silu(x_r · gate_e[n]) * (x_r · up_e[n]) )   A rows gathered by row_token
//   DOWN     out[tok(r), n]    += w_r * (h_r · down_e[n])                          scatter-add, float atomics
//   LINEAR   y[r, n] (+)=         x_r · W[n] + bias[n]                             one group, no gather (linear.cu)
// Tile: 128 grouped rows x two 64-row groups of B (gate and up of the same 64 h columns, or 128 output columns),
// BK = 32, 8 warps as 4 (rows) x 2 (columns), each warp 32 x (2 x 32) = 8 accumulator fragments.
// Loads are cp.async, double-buffered. The block finds its expert from offsets[] itself, so the grid is sized on the
// host from the upper bound max_rows / 128 + K and the launch needs no read-back (graph capturable).
#include <mma.h>

#include "common.cuh"
#include "moe_gemm.cuh"

using namespace nvcuda;

#define GM_BM 128
#define GM_BK 32
#define GM_LDS (GM_BK + 8)  // smem row pitch in bf16: 80 bytes staggers rows over banks, keeps 16-byte alignment
#define GM_GROUP 64
#define GM_THREADS 256

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  const int n = valid ? 16 : 0;  // src-size 0 zero-fills: rows past the expert's range and columns past N read 0
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;\n" ::); }

struct GemmSmem {
  uint16_t a[2][GM_BM * GM_LDS];         // (BM, BK) per stage
  uint16_t b[2][2 * GM_GROUP * GM_LDS];  // (2 * 64, BK) per stage: rows of W, i.e. B^T
};

template <int EPI>
__global__ void __launch_bounds__(GM_THREADS)
tc_gemm_kernel(const uint16_t* __restrict__ A,        // GATE_UP: x (T, Kd); DOWN / LINEAR: (rows, Kd)
               const uint16_t* __restrict__ W,        // (K, rows_per_expert, Kd)
               const uint16_t* const* __restrict__ W_table,  // (K) expert → its matrix, or null: W + e · matrix
               const int* __restrict__ offsets,       // (K + 1), null for LINEAR
               const int* __restrict__ row_token,     // (max_rows) gather / scatter map, null for LINEAR
               const float* __restrict__ row_weight,  // (max_rows) DOWN only
               const float* __restrict__ bias,        // (N) LINEAR only, may be null
               int K, int max_rows, int Kd, int N, int accumulate,
               uint16_t* __restrict__ h_out,          // GATE_UP: (max_rows, N)
               float* __restrict__ out) {             // DOWN: (T, N); LINEAR: (max_rows, N)
  pdl_entry();
  __shared__ __align__(128) unsigned char smem_raw[sizeof(GemmSmem)];
  GemmSmem& sm = *reinterpret_cast<GemmSmem*>(smem_raw);
  __shared__ int s_e, s_row0, s_rows;

  // which expert and which 128-row slice of it this block owns
  if (threadIdx.x == 0) {
    int e = -1, row0 = 0, rows = 0;
    if (EPI == GEMM_LINEAR) {
      if ((int)blockIdx.x * GM_BM < max_rows) e = 0, row0 = blockIdx.x * GM_BM, rows = min(GM_BM, max_rows - row0);
    } else {
      int tile = blockIdx.x;
      for (int g = 0; g < K; ++g) {
        const int beg = offsets[g], cnt = offsets[g + 1] - beg;
        const int tiles = (cnt + GM_BM - 1) / GM_BM;
        if (tile < tiles) {
          e = g, row0 = beg + tile * GM_BM, rows = min(GM_BM, cnt - tile * GM_BM);
          break;
        }
        tile -= tiles;
      }
    }
    s_e = e, s_row0 = row0, s_rows = rows;
  }
  __syncthreads();
  const int e = s_e, row0 = s_row0, rows = s_rows;
  if (e < 0) return;  // past the last tile: the grid is an upper bound

  const int rows_per_expert = EPI == GEMM_GATE_UP ? 2 * N : N;
  const int n0 = EPI == GEMM_GATE_UP ? blockIdx.y * GM_GROUP : blockIdx.y * 2 * GM_GROUP;
  const uint16_t* We = expert_matrix(W, W_table, e, (size_t)rows_per_expert * Kd);
  const int tid = threadIdx.x;

  // each thread copies 2 A chunks and 2 B chunks (16 bytes each) per stage; sources fixed for the whole K loop
  const uint16_t* a_src[2];
  const uint16_t* b_src[2];
  bool a_ok[2], b_ok[2];
  int a_dst[2], b_dst[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int c = tid + i * GM_THREADS;  // 0..511
    const int r = c >> 2, q = (c & 3) * 8;
    a_ok[i] = r < rows;
    int src_row = row0 + (a_ok[i] ? r : 0);
    if (EPI == GEMM_GATE_UP) src_row = row_token[src_row];
    a_src[i] = A + (size_t)src_row * Kd + q;
    a_dst[i] = r * GM_LDS + q;
    const int grp = r >> 6, n = r & 63;  // B tile row r: group grp, column n of that group
    int wrow, col;
    if (EPI == GEMM_GATE_UP) col = n0 + n, wrow = grp * N + col;
    else col = n0 + grp * GM_GROUP + n, wrow = col;
    b_ok[i] = col < N;
    b_src[i] = We + (size_t)(b_ok[i] ? wrow : 0) * Kd + q;
    b_dst[i] = r * GM_LDS + q;
  }

  const int warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2][2];  // [group][row frag][col frag]
#pragma unroll
  for (int g = 0; g < 2; ++g)
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[g][i][j], 0.f);

  const int nk = Kd / GM_BK;
  auto load_stage = [&](int st, int k0) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      cp_async16(&sm.a[st][a_dst[i]], a_src[i] + k0, a_ok[i]);
      cp_async16(&sm.b[st][b_dst[i]], b_src[i] + k0, b_ok[i]);
    }
  };
  load_stage(0, 0);
  cp_async_commit();
  for (int kt = 0; kt < nk; ++kt) {
    if (kt + 1 < nk) load_stage((kt + 1) & 1, (kt + 1) * GM_BK);
    cp_async_commit();  // possibly empty: keeps "wait for all but the newest group" uniform
    cp_async_wait1();
    __syncthreads();
    const int st = kt & 1;
    const __nv_bfloat16* As = reinterpret_cast<const __nv_bfloat16*>(sm.a[st]);
    const __nv_bfloat16* Bs = reinterpret_cast<const __nv_bfloat16*>(sm.b[st]);
#pragma unroll
    for (int kk = 0; kk < GM_BK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], As + (wm * 32 + i * 16) * GM_LDS + kk, GM_LDS);
#pragma unroll
      for (int g = 0; g < 2; ++g)
#pragma unroll
        for (int j = 0; j < 2; ++j)
          wmma::load_matrix_sync(fb[g][j], Bs + (g * GM_GROUP + wn * 32 + j * 16) * GM_LDS + kk, GM_LDS);
#pragma unroll
      for (int g = 0; g < 2; ++g)
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[g][i][j], fa[i], fb[g][j], acc[g][i][j]);
    }
    __syncthreads();  // the next iteration's cp.async overwrites the stage just read
  }

  // epilogue through a per-warp 2 x (16 x 16) f32 scratch (fragment element order is opaque)
  float* scr = reinterpret_cast<float*>(smem_raw) + warp * 512;
  const int lane = tid & 31;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (EPI == GEMM_GATE_UP) {
        wmma::store_matrix_sync(scr, acc[0][i][j], 16, wmma::mem_row_major);
        wmma::store_matrix_sync(scr + 256, acc[1][i][j], 16, wmma::mem_row_major);
        __syncwarp();
#pragma unroll
        for (int q = 0; q < 8; ++q) {
          const int el = q * 32 + lane, rr = el >> 4, cc = el & 15;  // a warp covers 2 rows x 16 columns: coalesced
          const int m = wm * 32 + i * 16 + rr, n = n0 + wn * 32 + j * 16 + cc;
          if (m < rows && n < N) h_out[(size_t)(row0 + m) * N + n] = f_to_bf16(silu(scr[el]) * scr[256 + el]);
        }
        __syncwarp();
      } else {
#pragma unroll
        for (int g = 0; g < 2; ++g) {
          wmma::store_matrix_sync(scr, acc[g][i][j], 16, wmma::mem_row_major);
          __syncwarp();
#pragma unroll
          for (int q = 0; q < 8; ++q) {
            const int el = q * 32 + lane, rr = el >> 4, cc = el & 15;  // a warp covers 2 rows x 16 columns: coalesced
            const int m = wm * 32 + i * 16 + rr, n = n0 + g * GM_GROUP + wn * 32 + j * 16 + cc;
            if (m < rows && n < N) {
              const int r = row0 + m;
              if (EPI == GEMM_DOWN) {
                atomicAdd(&out[(size_t)row_token[r] * N + n], row_weight[r] * scr[el]);
              } else {
                float v = scr[el] + (bias ? bias[n] : 0.f);
                float* y = &out[(size_t)r * N + n];
                *y = accumulate ? *y + v : v;
              }
            }
          }
          __syncwarp();
        }
      }
    }
}

int launch_tc_gemm(int epi, const uint16_t* A, const uint16_t* W, const int* offsets, const int* row_token,
                   const float* row_weight, const float* bias, int K, int max_rows, int Kd, int N, int accumulate,
                   uint16_t* h_out, float* out, cudaStream_t s, const uint16_t* const* W_table) {
  if (max_rows == 0) return 0;
  const unsigned mt = ceil_div(max_rows, GM_BM) + (epi == GEMM_LINEAR ? 0 : K);  // upper bound on row tiles
  const unsigned nt = epi == GEMM_GATE_UP ? ceil_div(N, GM_GROUP) : ceil_div(N, 2 * GM_GROUP);
  dim3 grid(mt, nt);
  if (epi == GEMM_GATE_UP)
    launch_k(tc_gemm_kernel<GEMM_GATE_UP>, grid, GM_THREADS, 0, s, A, W, W_table, offsets, row_token, row_weight, bias, K,
                                                            max_rows, Kd, N, accumulate, h_out, out);
  else if (epi == GEMM_DOWN)
    launch_k(tc_gemm_kernel<GEMM_DOWN>, grid, GM_THREADS, 0, s, A, W, W_table, offsets, row_token, row_weight, bias, K, max_rows,
                                                         Kd, N, accumulate, h_out, out);
  else
    launch_k(tc_gemm_kernel<GEMM_LINEAR>, grid, GM_THREADS, 0, s, A, W, W_table, offsets, row_token, row_weight, bias, K,
                                                           max_rows, Kd, N, accumulate, h_out, out);
  return (int)cudaGetLastError();
}

int launch_moe_gemm_gate_up(const uint16_t* x_bf16, const uint16_t* gate_up, const uint16_t* const* table,
                            const int* offsets, const int* row_token, int max_rows, int K, int d, int I, uint16_t* h,
                            cudaStream_t stream) {
  DSMOE_RETURN_IF(max_rows < 0 || K <= 0 || d <= 0 || I <= 0 || d % 32 || I % 32);
  return launch_tc_gemm(GEMM_GATE_UP, x_bf16, gate_up, offsets, row_token, nullptr, nullptr, K, max_rows, d, I, 0, h,
                        nullptr, stream, table);
}

int launch_moe_gemm_down(const uint16_t* h, const uint16_t* down, const uint16_t* const* table, const int* offsets,
                         const int* row_token, const float* row_weight, int max_rows, int K, int d, int I, float* out,
                         cudaStream_t stream) {
  DSMOE_RETURN_IF(max_rows < 0 || K <= 0 || d <= 0 || I <= 0 || d % 32 || I % 32);
  return launch_tc_gemm(GEMM_DOWN, h, down, offsets, row_token, row_weight, nullptr, K, max_rows, I, d, 0, nullptr,
                        out, stream, table);
}

extern "C" {

int dsmoe_cuda_moe_gemm_gate_up(const uint16_t* x_bf16, const uint16_t* gate_up, const int* offsets,
                                const int* row_token, int max_rows, int K, int d, int I, uint16_t* h, void* stream) {
  return launch_moe_gemm_gate_up(x_bf16, gate_up, nullptr, offsets, row_token, max_rows, K, d, I, h, as_stream(stream));
}

int dsmoe_cuda_moe_gemm_down(const uint16_t* h, const uint16_t* down, const int* offsets, const int* row_token,
                             const float* row_weight, int max_rows, int K, int d, int I, float* out, void* stream) {
  return launch_moe_gemm_down(h, down, nullptr, offsets, row_token, row_weight, max_rows, K, d, I, out,
                              as_stream(stream));
}

}  // extern "C"
