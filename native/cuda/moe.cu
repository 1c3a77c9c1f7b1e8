// moe.cu — the whole MoE block: router -> select -> experts -> out += combine, on one stream, no host read-back.
//   mat-vec path (T * k <= 64, decode): router_select, gemv gate_up, gemv down (+ combine)             3 launches
//   GEMM path (prefill / large batch):  router_select, cast, group_tokens, gemm gate_up, gemm down     7 launches
#include "common.cuh"
#include "moe_gemm.cuh"

namespace {

struct MoeWorkspace {
  int* sel_ids;        // (T, k)
  float* sel_w;        // (T, k)
  float* probs;        // (T, E)
  float* h_f32;        // (T * k, I)      mat-vec path
  uint16_t* x_bf16;    // (T, d)          GEMM path
  int* counts;         // (K)
  int* cursor;         // (K)
  int* offsets;        // (K + 1)
  int* row_token;      // (T * k)
  float* row_weight;   // (T * k)
  uint16_t* h_bf16;    // (T * k, I)
  size_t bytes;
};

// carve the workspace in a fixed order; with base == null it only measures
MoeWorkspace carve(char* base, int T, const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s) {
  MoeWorkspace ws{};
  size_t off = 0;
  auto take = [&](size_t bytes) -> char* {
    char* p = base ? base + off : nullptr;
    off += (bytes + 255) & ~(size_t)255;
    return p;
  };
  const size_t n = (size_t)T * s->k;
  ws.sel_ids = (int*)take(n * sizeof(int));
  ws.sel_w = (float*)take(n * sizeof(float));
  ws.probs = (float*)take((size_t)T * w->E * sizeof(float));
  // the mat-vec path's h shares the space of the GEMM path's buffers (a call uses one path)
  const size_t shared_begin = off;
  ws.h_f32 = (float*)(base ? base + off : nullptr);
  ws.x_bf16 = (uint16_t*)take((size_t)T * w->d * sizeof(uint16_t));
  ws.counts = (int*)take(w->K * sizeof(int));
  ws.cursor = (int*)take(w->K * sizeof(int));
  ws.offsets = (int*)take((w->K + 1) * sizeof(int));
  ws.row_token = (int*)take(n * sizeof(int));
  ws.row_weight = (float*)take(n * sizeof(float));
  ws.h_bf16 = (uint16_t*)take(n * w->I * sizeof(uint16_t));
  const size_t gemv_end = shared_begin + n * w->I * sizeof(float);
  ws.bytes = off > gemv_end ? off : gemv_end;
  return ws;
}

}  // namespace

int moe_run_experts(const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s, int T_ws, const float* m, int T,
                    const int* ids, const float* wts, float* out, int path, void* workspace, cudaStream_t stream) {
  if (T == 0) return 0;
  MoeWorkspace ws = carve((char*)workspace, T_ws, w, s);
  const int k = s->k;
  if (path == DSMOE_PATH_GEMV) {
    int st = launch_moe_gemv_gate_up(m, w->gate_up, w->gate_up_table, ids, T, k, w->d, w->I, ws.h_f32, stream);
    if (st) return st;
    return launch_moe_gemv_down(ws.h_f32, w->down, w->down_table, ids, wts, T, k, w->d, w->I, out, stream);
  }
  int st = dsmoe_cuda_cast_bf16(m, ws.x_bf16, (size_t)T * w->d, stream);
  if (st) return st;
  st = dsmoe_cuda_group_tokens(ids, wts, T, k, w->K, ws.counts, ws.cursor, ws.offsets, ws.row_token, ws.row_weight,
                               nullptr, stream);
  if (st) return st;
  st = launch_moe_gemm_gate_up(ws.x_bf16, w->gate_up, w->gate_up_table, ws.offsets, ws.row_token, T * k, w->K, w->d,
                               w->I, ws.h_bf16, stream);
  if (st) return st;
  return launch_moe_gemm_down(ws.h_bf16, w->down, w->down_table, ws.offsets, ws.row_token, ws.row_weight, T * k, w->K,
                              w->d, w->I, out, stream);
}

void moe_router_buffers(const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s, int T_ws, void* workspace,
                        int** sel_ids, float** sel_w, float** probs) {
  MoeWorkspace ws = carve((char*)workspace, T_ws, w, s);
  *sel_ids = ws.sel_ids;
  *sel_w = ws.sel_w;
  *probs = ws.probs;
}

extern "C" {

size_t dsmoe_cuda_moe_workspace_size(int T, const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s) {
  return carve(nullptr, T, w, s).bytes;
}

int dsmoe_cuda_moe_forward(const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s, const float* m, int T,
                           float* out, int* sel_ids, float* sel_w, float* probs, int path, void* workspace,
                           size_t workspace_bytes, void* stream) {
  DSMOE_RETURN_IF(!w || !s || T < 0 || s->k <= 0 || s->k > w->K);
  DSMOE_RETURN_IF(workspace_bytes < dsmoe_cuda_moe_workspace_size(T, w, s));
  if (T == 0) return 0;
  MoeWorkspace ws = carve((char*)workspace, T, w, s);
  int* ids = sel_ids ? sel_ids : ws.sel_ids;
  float* wts = sel_w ? sel_w : ws.sel_w;
  const int k = s->k;
  int st = dsmoe_cuda_router_select(m, w->router, w->expert_slot, T, w->d, w->E, s->mode, k, s->epsilon,
                                    s->renormalize, probs ? probs : ws.probs, ids, wts, nullptr, stream);
  if (st) return st;
  if (path == DSMOE_PATH_AUTO) path = (size_t)T * k <= MOE_GEMV_MAX_SEL ? DSMOE_PATH_GEMV : DSMOE_PATH_GEMM;
  return moe_run_experts(w, s, T, m, T, ids, wts, out, path, workspace, as_stream(stream));
}

}  // extern "C"
