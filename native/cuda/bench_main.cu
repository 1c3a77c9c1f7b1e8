// bench_main.cu — dsmoe_cuda_bench: what the CUDA path achieves against the limits of the card it runs on.
//
//   1. device-to-device cudaMemcpy bandwidth (the memory roofline, counted as read + write bytes)
//   2. batch-1 decode of a DS-MoE-1B-shaped random model (d 2048, 24 layers, 32 experts x 256, k 13, 16 query heads /
//      4 kv heads of 128, bf16 matrices, tied lm_head over 32000 tokens, context 512), one CUDA graph per token:
//      weight bytes streamed per token / time, sparse (k 13) and dense (k 32), speedup against the ideal byte ratio
//      plus a per-op line (decode_op) for each kernel of a layer, replayed alone in a graph
//   3. the MoE layer (router, selection, grouping, grouped GEMMs, combine) at 64 x 512 tokens, k 13 and k 32,
//      timed with cudaEvents, TFLOP/s and speedup against the ideal FLOP ratio
// Every figure is printed as one JSON line naming the card (cudaGetDeviceProperties().name).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "dsmoe_cuda.h"

#define CUDA_OK(call)                                                                                  \
  do {                                                                                                 \
    cudaError_t e_ = (call);                                                                           \
    if (e_ != cudaSuccess) {                                                                           \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));          \
      exit(2);                                                                                         \
    }                                                                                                  \
  } while (0)
#define DS_OK(call)                                                                                    \
  do {                                                                                                 \
    int s_ = (call);                                                                                   \
    if (s_) {                                                                                          \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, dsmoe_cuda_error_string(s_));     \
      exit(2);                                                                                         \
    }                                                                                                  \
  } while (0)

static char g_card[256];

// ------------------------------------------------------------------------------------------------------------------
// random weights generated on the device (uploading 3 GB from the host would dominate the run)

__device__ __forceinline__ float hash_uniform(uint64_t seed, size_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
}
__global__ void fill_bf16_kernel(uint16_t* p, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    __nv_bfloat16 b = __float2bfloat16_rn(hash_uniform(seed, i) * scale);
    p[i] = *reinterpret_cast<uint16_t*>(&b);
  }
}
__global__ void fill_f32_kernel(float* p, size_t n, uint64_t seed, float scale, float offset) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = offset + hash_uniform(seed, i) * scale;
}

static uint64_t g_seed = 1;
static uint16_t* new_bf16(size_t n, float scale) {
  uint16_t* p;
  CUDA_OK(cudaMalloc(&p, n * 2));
  fill_bf16_kernel<<<1024, 256>>>(p, n, g_seed++, scale);
  CUDA_OK(cudaGetLastError());
  return p;
}
static float* new_f32(size_t n, float scale, float offset = 0.f) {
  float* p;
  CUDA_OK(cudaMalloc(&p, n * 4));
  fill_f32_kernel<<<1024, 256>>>(p, n, g_seed++, scale, offset);
  CUDA_OK(cudaGetLastError());
  return p;
}

// ------------------------------------------------------------------------------------------------------------------
// 1. memory roofline

static double d2d_bandwidth() {
  const size_t bytes = (size_t)1 << 30;
  void *a, *b;
  CUDA_OK(cudaMalloc(&a, bytes));
  CUDA_OK(cudaMalloc(&b, bytes));
  CUDA_OK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  float best = 1e30f;
  for (int i = 0; i < 12; ++i) {
    CUDA_OK(cudaEventRecord(e0));
    CUDA_OK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
    CUDA_OK(cudaEventRecord(e1));
    CUDA_OK(cudaEventSynchronize(e1));
    float ms;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    if (i >= 2) best = std::min(best, ms);
  }
  const double gbs = 2.0 * bytes / (best * 1e-3) / 1e9;
  printf("{\"bench\":\"d2d_copy\",\"card\":\"%s\",\"bytes\":%zu,\"ms\":%.4f,\"gbs\":%.1f,"
         "\"convention\":\"(read+write bytes)/time\"}\n", g_card, bytes, best, gbs);
  CUDA_OK(cudaFree(a));
  CUDA_OK(cudaFree(b));
  return gbs;
}

// ------------------------------------------------------------------------------------------------------------------
// 2. batch-1 decode

struct Cfg {
  int d = 2048, L = 24, E = 32, I = 256, H = 16, KV = 4, hd = 128, V = 32000, ctx = 512, max_ctx = 1024;
  float eps = 1e-6f, theta = 10000.f;
};

struct LayerW {
  float* attn_norm;   // (d)
  uint16_t* qkv;      // ((H + 2KV) hd, d)
  float* qkv_bias;    // ((H + 2KV) hd)
  uint16_t* o;        // (d, H hd)
  float* mlp_norm;    // (d)
  float* router;      // (E, d)
  uint16_t* gate_up;  // (E, 2I, d)
  uint16_t* down;     // (E, d, I)
  float *k_cache, *v_cache;  // (1, max_ctx, KV, hd)
};

struct Model {
  Cfg c;
  uint16_t* embed;  // (V, d), tied lm_head
  float* norm;      // (d)
  std::vector<LayerW> layers;
  // activations for one token
  int *tokens, *positions, *slots;
  float *h, *a, *qkv, *att, *logits;
  void* ws;
  size_t ws_bytes;
};

static Model build_model(const Cfg& c) {
  Model m;
  m.c = c;
  const int qkv_rows = (c.H + 2 * c.KV) * c.hd;
  m.embed = new_bf16((size_t)c.V * c.d, 1.f);
  m.norm = new_f32(c.d, 0.f, 1.f);
  for (int l = 0; l < c.L; ++l) {
    LayerW w;
    w.attn_norm = new_f32(c.d, 0.f, 1.f);
    w.qkv = new_bf16((size_t)qkv_rows * c.d, 1.f / sqrtf((float)c.d));
    w.qkv_bias = new_f32(qkv_rows, 0.02f);
    w.o = new_bf16((size_t)c.d * c.H * c.hd, 0.3f / sqrtf((float)c.H * c.hd));
    w.mlp_norm = new_f32(c.d, 0.f, 1.f);
    w.router = new_f32((size_t)c.E * c.d, 1.f / sqrtf((float)c.d));
    w.gate_up = new_bf16((size_t)c.E * 2 * c.I * c.d, 1.f / sqrtf((float)c.d));
    w.down = new_bf16((size_t)c.E * c.d * c.I, 0.3f / sqrtf((float)c.I));
    w.k_cache = new_f32((size_t)c.max_ctx * c.KV * c.hd, 1.f);
    w.v_cache = new_f32((size_t)c.max_ctx * c.KV * c.hd, 1.f);
    m.layers.push_back(w);
  }
  CUDA_OK(cudaMalloc(&m.tokens, 4));
  CUDA_OK(cudaMalloc(&m.positions, 4));
  CUDA_OK(cudaMalloc(&m.slots, 4));
  const int tok = 17, pos = c.ctx - 1, slot = 0;
  CUDA_OK(cudaMemcpy(m.tokens, &tok, 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(m.positions, &pos, 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(m.slots, &slot, 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMalloc(&m.h, c.d * 4));
  CUDA_OK(cudaMalloc(&m.a, c.d * 4));
  CUDA_OK(cudaMalloc(&m.qkv, qkv_rows * 4));
  CUDA_OK(cudaMalloc(&m.att, c.H * c.hd * 4));
  CUDA_OK(cudaMalloc(&m.logits, (size_t)c.V * 4));
  dsmoe_cuda_moe_weights mw{nullptr, nullptr, nullptr, nullptr, c.E, c.E, c.d, c.I};
  dsmoe_cuda_moe_select dense{DSMOE_SELECT_TOPK, c.E, 0.f, 0};
  m.ws_bytes = std::max({dsmoe_cuda_moe_workspace_size(1, &mw, &dense),
                         dsmoe_cuda_attention_workspace_size(1, c.H, c.hd, c.max_ctx),
                         dsmoe_cuda_linear_workspace_size(1, c.d)});
  CUDA_OK(cudaMalloc(&m.ws, m.ws_bytes));
  CUDA_OK(cudaDeviceSynchronize());
  return m;
}

// one token through the whole model; the sampled token is written back to m.tokens, so graph replays keep decoding
static void decode_step(Model& m, int k, cudaStream_t s) {
  const Cfg& c = m.c;
  const int qkv_rows = (c.H + 2 * c.KV) * c.hd;
  DS_OK(dsmoe_cuda_embed(m.embed, m.tokens, m.h, 1, c.d, s));
  for (const LayerW& w : m.layers) {
    DS_OK(dsmoe_cuda_rms_norm(m.h, w.attn_norm, m.a, nullptr, 1, c.d, c.eps, s));
    DS_OK(dsmoe_cuda_linear(m.a, w.qkv, w.qkv_bias, m.qkv, 1, c.d, qkv_rows, 0, m.ws, m.ws_bytes, s));
    DS_OK(dsmoe_cuda_rope_kv_append(m.qkv, 1, c.H, c.KV, c.hd, m.slots, m.positions, c.theta, w.k_cache, w.v_cache,
                                    c.max_ctx, s));
    DS_OK(dsmoe_cuda_attention(m.qkv, 1, c.H, c.KV, c.hd, m.slots, m.positions, w.k_cache, w.v_cache, c.max_ctx,
                               m.att, m.ws, m.ws_bytes, s));
    DS_OK(dsmoe_cuda_linear(m.att, w.o, nullptr, m.h, 1, c.H * c.hd, c.d, 1, m.ws, m.ws_bytes, s));
    DS_OK(dsmoe_cuda_rms_norm(m.h, w.mlp_norm, m.a, nullptr, 1, c.d, c.eps, s));
    dsmoe_cuda_moe_weights mw{w.router, nullptr, w.gate_up, w.down, c.E, c.E, c.d, c.I};
    dsmoe_cuda_moe_select sel{DSMOE_SELECT_TOPK, k, 0.f, 0};
    DS_OK(dsmoe_cuda_moe_forward(&mw, &sel, m.a, 1, m.h, nullptr, nullptr, nullptr, DSMOE_PATH_AUTO, m.ws, m.ws_bytes,
                                 s));
  }
  DS_OK(dsmoe_cuda_rms_norm(m.h, m.norm, m.a, nullptr, 1, c.d, c.eps, s));
  DS_OK(dsmoe_cuda_linear(m.a, m.embed, nullptr, m.logits, 1, c.d, c.V, 0, m.ws, m.ws_bytes, s));
  DS_OK(dsmoe_cuda_sample(m.logits, 1, c.V, 0.f, 1.f, nullptr, nullptr, m.tokens, s));
}

// bytes of weights one token reads with k experts per layer (the KV cache is counted apart)
static double weight_bytes(const Cfg& c, int k) {
  const double qkv_rows = (c.H + 2.0 * c.KV) * c.hd;
  double per_layer = 2.0 * c.d * 4                                // norms
                     + qkv_rows * c.d * 2 + qkv_rows * 4          // qkv + bias
                     + (double)c.d * c.H * c.hd * 2               // o
                     + (double)c.E * c.d * 4                      // router (all E)
                     + (double)k * (2.0 * c.I * c.d + (double)c.d * c.I) * 2;  // selected experts
  return c.L * per_layer + (double)c.d * 2 /* embedding row */ + c.d * 4.0 + (double)c.V * c.d * 2 /* lm_head */;
}

struct DecodeTime {
  double ms_graph, ms_stream;
};

static DecodeTime time_decode(Model& m, int k) {
  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  const int reps = 50;
  // plain stream launches (what the addon does before graphs are wired in)
  for (int i = 0; i < 3; ++i) decode_step(m, k, s);
  CUDA_OK(cudaEventRecord(e0, s));
  for (int i = 0; i < reps; ++i) decode_step(m, k, s);
  CUDA_OK(cudaEventRecord(e1, s));
  CUDA_OK(cudaEventSynchronize(e1));
  float ms_stream;
  CUDA_OK(cudaEventElapsedTime(&ms_stream, e0, e1));
  // one graph per token: the step has no host synchronisation, so it captures as is
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  decode_step(m, k, s);
  CUDA_OK(cudaStreamEndCapture(s, &g));
  CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 3; ++i) CUDA_OK(cudaGraphLaunch(ge, s));
  float best = 1e30f;
  for (int round = 0; round < 3; ++round) {
    CUDA_OK(cudaEventRecord(e0, s));
    for (int i = 0; i < reps; ++i) CUDA_OK(cudaGraphLaunch(ge, s));
    CUDA_OK(cudaEventRecord(e1, s));
    CUDA_OK(cudaEventSynchronize(e1));
    float ms;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    best = std::min(best, ms);
  }
  CUDA_OK(cudaGraphExecDestroy(ge));
  CUDA_OK(cudaGraphDestroy(g));
  CUDA_OK(cudaStreamDestroy(s));
  return {best / reps, ms_stream / reps};
}

// per-op view of one decode layer: each op replayed 200 times back to back in a graph, so the figure is its time in
// the decode stream (launch gaps included); tells the next tuning step where the layer's time goes
static void bench_decode_ops(Model& m, double d2d) {
  const Cfg& c = m.c;
  // each replay i reads layer i % L, so weights come from HBM as in decode, not from L2 (one layer's qkv would fit)
  const int qkv_rows = (c.H + 2 * c.KV) * c.hd, k = 13;
  int* ids;
  float* wts;
  float* probs;
  float* hbuf;
  CUDA_OK(cudaMalloc(&ids, 64 * 4));
  CUDA_OK(cudaMalloc(&wts, 64 * 4));
  CUDA_OK(cudaMalloc(&probs, c.E * 4));
  CUDA_OK(cudaMalloc(&hbuf, (size_t)k * c.I * 4));
  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  DS_OK(dsmoe_cuda_rms_norm(m.h, m.layers[0].mlp_norm, m.a, nullptr, 1, c.d, c.eps, s));
  DS_OK(dsmoe_cuda_router_select(m.a, m.layers[0].router, nullptr, 1, c.d, c.E, DSMOE_SELECT_TOPK, k, 0.f, 0, probs,
                                 ids, wts, nullptr, s));
  CUDA_OK(cudaStreamSynchronize(s));
  const double expert_gu = (double)k * 2 * c.I * c.d * 2, expert_dn = (double)k * c.d * c.I * 2;
  struct Op {
    const char* name;
    double bytes;
    std::function<void(const LayerW&)> run;
  };
  using L = const LayerW&;
  std::vector<Op> ops = {
      {"rms_norm", 2.0 * c.d * 4,
       [&](L w) { DS_OK(dsmoe_cuda_rms_norm(m.h, w.attn_norm, m.a, nullptr, 1, c.d, c.eps, s)); }},
      {"linear_qkv", (double)qkv_rows * c.d * 2,
       [&](L w) {
         DS_OK(dsmoe_cuda_linear(m.a, w.qkv, w.qkv_bias, m.qkv, 1, c.d, qkv_rows, 0, m.ws, m.ws_bytes, s));
       }},
      {"rope_kv_append", 0,
       [&](L w) {
         DS_OK(dsmoe_cuda_rope_kv_append(m.qkv, 1, c.H, c.KV, c.hd, m.slots, m.positions, c.theta, w.k_cache,
                                         w.v_cache, c.max_ctx, s));
       }},
      {"attention_ctx512", 2.0 * c.ctx * c.KV * c.hd * 4,
       [&](L w) {
         DS_OK(dsmoe_cuda_attention(m.qkv, 1, c.H, c.KV, c.hd, m.slots, m.positions, w.k_cache, w.v_cache, c.max_ctx,
                                    m.att, m.ws, m.ws_bytes, s));
       }},
      {"linear_o", (double)c.d * c.H * c.hd * 2,
       [&](L w) { DS_OK(dsmoe_cuda_linear(m.att, w.o, nullptr, m.h, 1, c.H * c.hd, c.d, 1, m.ws, m.ws_bytes, s)); }},
      {"router_select", (double)c.E * c.d * 4,
       [&](L w) {
         DS_OK(dsmoe_cuda_router_select(m.a, w.router, nullptr, 1, c.d, c.E, DSMOE_SELECT_TOPK, k, 0.f, 0, probs, ids,
                                        wts, nullptr, s));
       }},
      {"moe_gemv_gate_up_k13", expert_gu,
       [&](L w) { DS_OK(dsmoe_cuda_moe_gemv_gate_up(m.a, w.gate_up, ids, 1, k, c.d, c.I, hbuf, s)); }},
      {"moe_gemv_down_k13", expert_dn,
       [&](L w) { DS_OK(dsmoe_cuda_moe_gemv_down(hbuf, w.down, ids, wts, 1, k, c.d, c.I, m.h, s)); }},
      {"lm_head", (double)c.V * c.d * 2,
       [&](L) { DS_OK(dsmoe_cuda_linear(m.a, m.embed, nullptr, m.logits, 1, c.d, c.V, 0, m.ws, m.ws_bytes, s)); }},
      {"sample_greedy", (double)c.V * 4,
       [&](L) { DS_OK(dsmoe_cuda_sample(m.logits, 1, c.V, 0.f, 1.f, nullptr, nullptr, m.tokens, s)); }},
  };
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  for (Op& op : ops) {
    const int reps = 200;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < reps; ++i) op.run(m.layers[i % c.L]);
    CUDA_OK(cudaStreamEndCapture(s, &g));
    CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
    CUDA_OK(cudaGraphLaunch(ge, s));
    CUDA_OK(cudaEventRecord(e0, s));
    CUDA_OK(cudaGraphLaunch(ge, s));
    CUDA_OK(cudaEventRecord(e1, s));
    CUDA_OK(cudaEventSynchronize(e1));
    float ms;
    CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
    const double us = ms * 1e3 / reps;
    printf("{\"bench\":\"decode_op\",\"card\":\"%s\",\"op\":\"%s\",\"us\":%.2f,\"bytes\":%.0f,\"gbs\":%.1f,"
           "\"fraction_of_d2d\":%.3f}\n",
           g_card, op.name, us, op.bytes, op.bytes / (us * 1e-6) / 1e9, op.bytes / (us * 1e-6) / 1e9 / d2d);
    CUDA_OK(cudaGraphExecDestroy(ge));
    CUDA_OK(cudaGraphDestroy(g));
  }
  fflush(stdout);
  CUDA_OK(cudaStreamDestroy(s));
}

static void bench_decode(double d2d) {
  Cfg c;
  Model m = build_model(c);
  bench_decode_ops(m, d2d);
  const double kv_bytes = 2.0 * c.L * c.ctx * c.KV * c.hd * 4;
  double ms_sparse = 0, ms_dense = 0;
  // k 13 without programmatic dependent launch first: the A/B for the launch-gap question (common.cuh)
  struct Run { int k; bool pdl; };
  for (Run r : {Run{13, false}, Run{13, true}, Run{c.E, true}}) {
    dsmoe_cuda_set_pdl(r.pdl);
    const int k = r.k;
    const DecodeTime t = time_decode(m, k);
    const double wb = weight_bytes(c, k);
    const double gbs = wb / (t.ms_graph * 1e-3) / 1e9;
    printf("{\"bench\":\"decode_b1\",\"card\":\"%s\",\"model\":\"DS-MoE-1B-shaped d%d L%d E%d I%d H%d KV%d hd%d V%d\","
           "\"k\":%d,\"pdl\":%s,\"context\":%d,\"ms_per_token\":%.4f,\"ms_per_token_no_graph\":%.4f,"
           "\"tokens_per_s\":%.1f,\"weight_bytes\":%.0f,\"weight_gbs\":%.1f,\"kv_bytes\":%.0f,\"total_gbs\":%.1f,"
           "\"d2d_gbs\":%.1f,\"fraction_of_d2d\":%.3f}\n",
           g_card, c.d, c.L, c.E, c.I, c.H, c.KV, c.hd, c.V, k, r.pdl ? "true" : "false", c.ctx, t.ms_graph,
           t.ms_stream, 1e3 / t.ms_graph, wb, gbs, kv_bytes, (wb + kv_bytes) / (t.ms_graph * 1e-3) / 1e9, d2d,
           gbs / d2d);
    fflush(stdout);
    if (r.pdl) (k == 13 ? ms_sparse : ms_dense) = t.ms_graph;
  }
  dsmoe_cuda_set_pdl(1);
  printf("{\"bench\":\"decode_b1_speedup\",\"card\":\"%s\",\"k_sparse\":13,\"k_dense\":%d,\"speedup\":%.3f,"
         "\"ideal\":%.3f}\n",
         g_card, c.E, ms_dense / ms_sparse, weight_bytes(c, c.E) / weight_bytes(c, 13));
  fflush(stdout);
  CUDA_OK(cudaDeviceSynchronize());
  // the process exits right after the benchmarks; the model's memory goes with it
}

// ------------------------------------------------------------------------------------------------------------------
// 3. the MoE layer at 64 x 512 tokens

static void bench_moe_layer() {
  const int T = 64 * 512, d = 2048, E = 32, I = 256;
  float* m = new_f32((size_t)T * d, 1.f);
  float* out;
  CUDA_OK(cudaMalloc(&out, (size_t)T * d * 4));
  float* router = new_f32((size_t)E * d, 1.f / sqrtf((float)d));
  uint16_t* gate_up = new_bf16((size_t)E * 2 * I * d, 1.f / sqrtf((float)d));
  uint16_t* down = new_bf16((size_t)E * d * I, 1.f / sqrtf((float)I));
  dsmoe_cuda_moe_weights w{router, nullptr, gate_up, down, E, E, d, I};
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  double ms_k[2] = {0, 0};
  int ki = 0;
  for (int k : {13, E}) {
    dsmoe_cuda_moe_select sel{DSMOE_SELECT_TOPK, k, 0.f, 0};
    const size_t wsb = dsmoe_cuda_moe_workspace_size(T, &w, &sel);
    void* ws;
    CUDA_OK(cudaMalloc(&ws, wsb));
    std::vector<float> times;
    for (int i = 0; i < 13; ++i) {
      CUDA_OK(cudaMemsetAsync(out, 0, (size_t)T * d * 4));
      CUDA_OK(cudaEventRecord(e0));
      DS_OK(dsmoe_cuda_moe_forward(&w, &sel, m, T, out, nullptr, nullptr, nullptr, DSMOE_PATH_GEMM, ws, wsb, nullptr));
      CUDA_OK(cudaEventRecord(e1));
      CUDA_OK(cudaEventSynchronize(e1));
      float ms;
      CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
      if (i >= 3) times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    const double flops = 2.0 * T * k * 3.0 * I * d + 2.0 * T * E * d;  // experts + router
    printf("{\"bench\":\"moe_layer\",\"card\":\"%s\",\"tokens\":%d,\"d\":%d,\"E\":%d,\"I\":%d,\"k\":%d,"
           "\"ms_best\":%.4f,\"ms_median\":%.4f,\"tflops\":%.1f,\"includes\":\"router+select+group+gemm+combine\"}\n",
           g_card, T, d, E, I, k, times.front(), times[times.size() / 2], flops / (times.front() * 1e-3) / 1e12);
    ms_k[ki++] = times.front();
    CUDA_OK(cudaFree(ws));
  }
  printf("{\"bench\":\"moe_layer_speedup\",\"card\":\"%s\",\"k_sparse\":13,\"k_dense\":%d,\"speedup\":%.3f,"
         "\"ideal\":%.3f}\n", g_card, E, ms_k[1] / ms_k[0], (double)E / 13);
  fflush(stdout);
  CUDA_OK(cudaFree(m));
  CUDA_OK(cudaFree(out));
  CUDA_OK(cudaFree(router));
  CUDA_OK(cudaFree(gate_up));
  CUDA_OK(cudaFree(down));
}

int main(int argc, char** argv) {
  bool decode = true, moe = true;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--decode-only")) moe = false;
    else if (!strcmp(argv[i], "--moe-only")) decode = false;
    else {
      fprintf(stderr, "usage: %s [--decode-only | --moe-only]\n", argv[0]);
      return 2;
    }
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    printf("skipped: no GPU\n");
    return 0;
  }
  cudaDeviceProp p;
  CUDA_OK(cudaGetDeviceProperties(&p, 0));
  snprintf(g_card, sizeof g_card, "%s", p.name);
  printf("{\"bench\":\"device\",\"card\":\"%s\",\"sm\":\"%d.%d\",\"sms\":%d,\"memory_gib\":%.1f}\n", g_card, p.major,
         p.minor, p.multiProcessorCount, p.totalGlobalMem / 1073741824.0);
  const double d2d = d2d_bandwidth();
  if (decode) bench_decode(d2d);
  if (moe) bench_moe_layer();
  return 0;
}
