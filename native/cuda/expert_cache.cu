// expert_cache.cu — the expert cache on the GPU (dsmoe_cuda_expert_cache.h; docs/cuda.md "The device expert cache").
//
// The device twin of native/src/model/expert_cache.{h,cpp}: same LRU per layer, same prefetch rule, same counters.
// What differs is the tiers and the synchronisation:
//   slow tier   pinned host memory (cudaHostAlloc), the whole of every layer's packed experts, filled once by the
//               caller: pinned pages are what lets cudaMemcpyAsync run as a DMA on its own stream at PCIe speed
//               (a pageable source is staged through a driver buffer, synchronously). Plans larger than host memory
//               are the CPU cache's job (pread from the plan file); chaining the two is not done here.
//   fast tier   per layer one device allocation of `slots` experts ([S] gate_up then [S] down), allocated once.
//   copies      cudaMemcpyAsync on the cache's copy stream. Each slot has a `ready` event recorded after its last
//               copy: the compute stream waits on the events of the slots a pass reads, nothing else. Each layer has
//               a `released` event recorded on the compute stream after a pass's kernels: a copy into any of that
//               layer's slots first waits for it, so a slot is never overwritten while a queued kernel may still
//               read the expert it held. The copy stream is FIFO, so a copy into a slot that is still being
//               filled (an evicted prefetch) simply lands after it, and `ready` is always the newest copy's.
//   slot table  device arrays [K] of pointers per layer, written by a one-block kernel on the compute stream whose
//               arguments carry the pass's expert → slot map (kernel parameters are captured at launch, so no host
//               buffer has to outlive the call), read by the expert kernels (moe_gemv.cu, moe_gemm.cu).
// The host learns the selection from one read-back per layer (the router's ids, and the next layer's guess with
// them), as every offloading runtime must: which experts to copy is only known after routing.
#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "common.cuh"
#include "dsmoe_cuda_expert_cache.h"
#include "moe_gemm.cuh"

#define CACHE_MAX_K 256  // kept experts per layer (the kernels' E <= 256)

namespace {

struct Slot {
  int expert = -1;       // packed expert held or being copied in; -1 empty
  bool pinned = false;   // read by the pass in progress
  bool loading = false;  // a copy was issued and its event has not been seen complete
  uint64_t last_use = 0;
  cudaEvent_t ready = nullptr;
};

struct Timer {  // brackets the compute stream's waits of one pass: elapsed = time stalled on copies
  cudaEvent_t start = nullptr, stop = nullptr;
};

struct Layer {
  int K = 0, S = 0;
  size_t gu_bytes = 0, dn_bytes = 0;  // per expert
  uint8_t* host = nullptr;            // pinned [K] gate_up, then [K] down
  uint8_t* pool = nullptr;            // device [S] gate_up, then [S] down
  const uint16_t** table = nullptr;   // device [K] gate_up pointers, then [K] down pointers
  std::vector<Slot> slot;
  std::vector<int> slot_of;           // [K] packed expert → slot or -1
  std::vector<uint8_t> predicted;     // [K] 1 when the last prefetch predicted it; consumed by acquire
  bool has_prediction = false;
  cudaEvent_t released = nullptr;
  bool released_recorded = false;
  std::vector<Timer> timing;          // pending stall measurements
};

struct TableArgs {  // by value: captured at launch
  const uint16_t** table;
  const uint8_t* pool;
  size_t gu_bytes, dn_bytes;
  int K, S;
  int16_t slot_of[CACHE_MAX_K];  // this pass's expert → slot, -1 for every other expert
};

__global__ void write_slot_table_kernel(TableArgs a) {
  pdl_entry();  // the previous pass's kernels read the table: wait for them before rewriting it
  for (int p = threadIdx.x; p < a.K; p += blockDim.x) {
    const int s = a.slot_of[p];
    a.table[p] = s >= 0 ? reinterpret_cast<const uint16_t*>(a.pool + (size_t)s * a.gu_bytes) : nullptr;
    a.table[a.K + p] =
        s >= 0 ? reinterpret_cast<const uint16_t*>(a.pool + (size_t)a.S * a.gu_bytes + (size_t)s * a.dn_bytes) : nullptr;
  }
}

}  // namespace

struct dsmoe_cuda_expert_cache {
  cudaStream_t compute = nullptr, copy = nullptr;
  std::vector<Layer> layers;
  uint64_t tick = 0;
  dsmoe_cuda_expert_cache_counters stats{};
  std::vector<Timer> free_timers;
  int* host_ids = nullptr;  // pinned read-back of the selection and the guess
  size_t host_ids_capacity = 0;
  std::mutex mutex;  // stats may be read from another thread while a forward runs
  std::string refusal;  // why the last forward_cached returned cudaErrorInvalidValue after routing
};

namespace {

using Cache = dsmoe_cuda_expert_cache;

#define CACHE_TRY(expr)                        \
  do {                                         \
    cudaError_t e_ = (expr);                   \
    if (e_ != cudaSuccess) return (int)e_;     \
  } while (0)

// Slots whose copy finished since the last look leave `loading`; finished stall measurements are added up.
void poll(Cache* c, Layer& L) {
  for (Slot& s : L.slot)
    if (s.loading && cudaEventQuery(s.ready) == cudaSuccess) s.loading = false;
  for (size_t i = 0; i < L.timing.size();) {
    Timer t = L.timing[i];
    if (cudaEventQuery(t.stop) == cudaSuccess) {
      float ms = 0;
      if (cudaEventElapsedTime(&ms, t.start, t.stop) == cudaSuccess) c->stats.stall_seconds += ms * 1e-3;
      c->free_timers.push_back(t);
      L.timing[i] = L.timing.back();
      L.timing.pop_back();
    } else {
      ++i;
    }
  }
  cudaGetLastError();  // cudaEventQuery's cudaErrorNotReady is not an error
}

// Copies packed expert p of layer L into slot v (mutex held).
int load(Cache* c, Layer& L, int v, int p) {
  Slot& s = L.slot[v];
  if (L.released_recorded) CACHE_TRY(cudaStreamWaitEvent(c->copy, L.released, 0));
  uint8_t* dst_gu = L.pool + (size_t)v * L.gu_bytes;
  uint8_t* dst_dn = L.pool + (size_t)L.S * L.gu_bytes + (size_t)v * L.dn_bytes;
  const uint8_t* src_gu = L.host + (size_t)p * L.gu_bytes;
  const uint8_t* src_dn = L.host + (size_t)L.K * L.gu_bytes + (size_t)p * L.dn_bytes;
  CACHE_TRY(cudaMemcpyAsync(dst_gu, src_gu, L.gu_bytes, cudaMemcpyHostToDevice, c->copy));
  CACHE_TRY(cudaMemcpyAsync(dst_dn, src_dn, L.dn_bytes, cudaMemcpyHostToDevice, c->copy));
  CACHE_TRY(cudaEventRecord(s.ready, c->copy));
  if (s.expert >= 0) L.slot_of[s.expert] = -1;
  s.expert = p;
  s.loading = true;
  L.slot_of[p] = v;
  c->stats.loads += 1;
  c->stats.bytes_copied += (int64_t)(L.gu_bytes + L.dn_bytes);
  return 0;
}

bool bad_layer(const Cache* c, int layer) { return !c || layer < 0 || layer >= (int)c->layers.size(); }

int acquire_locked(Cache* c, int layer, const int* experts, int n, const uint16_t* const** gu_table,
                   const uint16_t* const** dn_table) {
  Layer& L = c->layers[layer];
  if (n < 0 || n > L.S) return (int)cudaErrorInvalidValue;
  std::vector<uint8_t> wanted(L.K, 0);
  for (int i = 0; i < n; ++i) {
    const int p = experts[i];
    if (p < 0 || p >= L.K || wanted[p]) return (int)cudaErrorInvalidValue;
    wanted[p] = 1;
  }
  if (std::any_of(L.slot.begin(), L.slot.end(), [](const Slot& q) { return q.pinned; }))
    return (int)cudaErrorInvalidValue;  // the previous acquire of this layer was not released
  poll(c, L);
  const uint64_t now = ++c->tick;
  if (L.has_prediction) {
    int64_t used = 0, predicted = 0;
    for (int i = 0; i < n; ++i) used += L.predicted[experts[i]];
    for (uint8_t v : L.predicted) predicted += v;
    c->stats.predicted += predicted;
    c->stats.predicted_used += used;
    c->stats.demanded_predicted += n;
    std::fill(L.predicted.begin(), L.predicted.end(), 0);
    L.has_prediction = false;
  }
  for (int i = 0; i < n; ++i) {  // pin what is there (or on its way) first, so no miss below evicts it
    const int s = L.slot_of[experts[i]];
    if (s < 0) continue;
    c->stats.hits += 1;
    L.slot[s].pinned = true;
    L.slot[s].last_use = now;
  }
  for (int i = 0; i < n; ++i) {
    const int p = experts[i];
    if (L.slot_of[p] >= 0) continue;
    c->stats.misses += 1;
    int v = -1;  // LRU among unpinned slots: one exists, since n <= S and only this set is pinned
    for (int j = 0; j < L.S; ++j)
      if (!L.slot[j].pinned && (v < 0 || L.slot[j].last_use < L.slot[v].last_use)) v = j;
    if (v < 0) return (int)cudaErrorInvalidValue;  // slots still pinned by an acquire that was never released
    if (int st = load(c, L, v, p)) return st;
    L.slot[v].pinned = true;
    L.slot[v].last_use = now;
  }
  // the compute stream waits for exactly the slots this pass reads whose copies are not known to be done
  std::vector<int> waits;
  for (int i = 0; i < n; ++i) {
    Slot& s = L.slot[L.slot_of[experts[i]]];
    if (s.loading && cudaEventQuery(s.ready) == cudaSuccess) s.loading = false;
    if (s.loading) waits.push_back(L.slot_of[experts[i]]);
  }
  cudaGetLastError();
  if (!waits.empty()) {
    Timer t;
    if (!c->free_timers.empty()) {
      t = c->free_timers.back();
      c->free_timers.pop_back();
    } else {
      CACHE_TRY(cudaEventCreate(&t.start));
      CACHE_TRY(cudaEventCreate(&t.stop));
    }
    CACHE_TRY(cudaEventRecord(t.start, c->compute));
    for (int s : waits) CACHE_TRY(cudaStreamWaitEvent(c->compute, L.slot[s].ready, 0));
    CACHE_TRY(cudaEventRecord(t.stop, c->compute));
    L.timing.push_back(t);
  }
  TableArgs a;
  a.table = L.table;
  a.pool = L.pool;
  a.gu_bytes = L.gu_bytes;
  a.dn_bytes = L.dn_bytes;
  a.K = L.K;
  a.S = L.S;
  for (int p = 0; p < CACHE_MAX_K; ++p) a.slot_of[p] = -1;
  for (int i = 0; i < n; ++i) a.slot_of[experts[i]] = (int16_t)L.slot_of[experts[i]];
  CACHE_TRY((cudaError_t)launch_k(write_slot_table_kernel, dim3(1), dim3(256), 0, c->compute, a));
  if (gu_table) *gu_table = L.table;
  if (dn_table) *dn_table = L.table + L.K;
  return 0;
}

int release_locked(Cache* c, int layer) {
  Layer& L = c->layers[layer];
  CACHE_TRY(cudaEventRecord(L.released, c->compute));
  L.released_recorded = true;
  for (Slot& s : L.slot) s.pinned = false;
  return 0;
}

int prefetch_locked(Cache* c, int layer, const int* experts, int n) {
  Layer& L = c->layers[layer];
  if (L.K == 0) return 0;
  poll(c, L);
  std::fill(L.predicted.begin(), L.predicted.end(), 0);
  L.has_prediction = true;
  const uint64_t now = ++c->tick;
  // mark the whole prediction first, so one predicted expert never evicts another
  for (int i = 0; i < n; ++i)
    if (experts[i] >= 0 && experts[i] < L.K) L.predicted[experts[i]] = 1;
  for (int i = 0; i < n; ++i) {
    const int p = experts[i];
    if (p < 0 || p >= L.K) continue;
    const int s = L.slot_of[p];
    if (s >= 0) {
      L.slot[s].last_use = now;
      continue;
    }
    int v = -1;  // LRU among slots that are neither pinned nor predicted themselves
    for (int j = 0; j < L.S; ++j) {
      const Slot& q = L.slot[j];
      if (q.pinned || (q.expert >= 0 && L.predicted[q.expert])) continue;
      if (v < 0 || q.last_use < L.slot[v].last_use) v = j;
    }
    if (v < 0) break;  // the cache is smaller than the prediction: keep what is there
    if (int st = load(c, L, v, p)) return st;
    L.slot[v].last_use = now;
    c->stats.prefetches += 1;
  }
  return 0;
}

void destroy_layer(Layer& L) {
  for (Slot& s : L.slot)
    if (s.ready) cudaEventDestroy(s.ready);
  for (Timer& t : L.timing) cudaEventDestroy(t.start), cudaEventDestroy(t.stop);
  if (L.released) cudaEventDestroy(L.released);
  if (L.host) cudaFreeHost(L.host);
  if (L.pool) cudaFree(L.pool);
  if (L.table) cudaFree(L.table);
  L = Layer{};
}

// Workspace of the cached forward: the MoE block's, then the guess's ids [T, kg], weights [T, kg], probs [T, E].
size_t guess_offset(int T, const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s) {
  return (dsmoe_cuda_moe_workspace_size(T, w, s) + 255) & ~(size_t)255;
}

}  // namespace

extern "C" {

int dsmoe_cuda_expert_cache_create(dsmoe_cuda_expert_cache** out, const dsmoe_cuda_cached_layer* layers, int n_layers,
                                   int slots, void* compute_stream) {
  DSMOE_RETURN_IF(!out || !layers || n_layers <= 0 || slots < 1);
  for (int l = 0; l < n_layers; ++l) {
    const dsmoe_cuda_cached_layer& w = layers[l];
    DSMOE_RETURN_IF(w.K < 0 || w.K > CACHE_MAX_K || (w.K > 0 && (w.d <= 0 || w.I <= 0 || w.d % 32 || w.I % 32)));
  }
  *out = nullptr;
  Cache* c = new Cache();
  c->compute = as_stream(compute_stream);
  auto fail = [&](cudaError_t e) {
    dsmoe_cuda_expert_cache_destroy(c);
    return (int)e;
  };
  cudaError_t e = cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking);
  if (e != cudaSuccess) return fail(e);
  c->layers.resize(n_layers);
  for (int l = 0; l < n_layers; ++l) {
    Layer& L = c->layers[l];
    const dsmoe_cuda_cached_layer& w = layers[l];
    if (w.K == 0) continue;
    L.K = w.K;
    L.S = std::min(slots, w.K);
    L.gu_bytes = (size_t)2 * w.I * w.d * 2;
    L.dn_bytes = (size_t)w.d * w.I * 2;
    const size_t expert = L.gu_bytes + L.dn_bytes;
    if ((e = cudaHostAlloc((void**)&L.host, expert * L.K, cudaHostAllocDefault)) != cudaSuccess) return fail(e);
    if ((e = cudaMalloc((void**)&L.pool, expert * L.S)) != cudaSuccess) return fail(e);
    if ((e = cudaMalloc((void**)&L.table, sizeof(void*) * 2 * L.K)) != cudaSuccess) return fail(e);
    if ((e = cudaMemset(L.table, 0, sizeof(void*) * 2 * L.K)) != cudaSuccess) return fail(e);
    L.slot.resize(L.S);
    for (Slot& s : L.slot)
      if ((e = cudaEventCreateWithFlags(&s.ready, cudaEventDisableTiming)) != cudaSuccess) return fail(e);
    if ((e = cudaEventCreateWithFlags(&L.released, cudaEventDisableTiming)) != cudaSuccess) return fail(e);
    L.slot_of.assign(L.K, -1);
    L.predicted.assign(L.K, 0);
  }
  if ((e = cudaDeviceSynchronize()) != cudaSuccess) return fail(e);  // the table memsets
  *out = c;
  return 0;
}

int dsmoe_cuda_expert_cache_destroy(dsmoe_cuda_expert_cache* c) {
  if (!c) return 0;
  cudaError_t e = cudaSuccess;
  if (c->copy) e = cudaStreamSynchronize(c->copy);
  cudaStreamSynchronize(c->compute);
  for (Layer& L : c->layers) destroy_layer(L);
  for (Timer& t : c->free_timers) cudaEventDestroy(t.start), cudaEventDestroy(t.stop);
  if (c->host_ids) cudaFreeHost(c->host_ids);
  if (c->copy) cudaStreamDestroy(c->copy);
  delete c;
  return (int)e;
}

const char* dsmoe_cuda_expert_cache_refusal(dsmoe_cuda_expert_cache* c) {
  if (!c) return "";
  std::lock_guard<std::mutex> lock(c->mutex);
  return c->refusal.c_str();
}

int dsmoe_cuda_expert_cache_slots(const dsmoe_cuda_expert_cache* c, int layer) {
  return bad_layer(c, layer) ? 0 : c->layers[layer].S;
}

int dsmoe_cuda_expert_cache_host(dsmoe_cuda_expert_cache* c, int layer, uint16_t** gate_up, uint16_t** down) {
  DSMOE_RETURN_IF(bad_layer(c, layer) || c->layers[layer].K == 0);
  Layer& L = c->layers[layer];
  if (gate_up) *gate_up = reinterpret_cast<uint16_t*>(L.host);
  if (down) *down = reinterpret_cast<uint16_t*>(L.host + (size_t)L.K * L.gu_bytes);
  return 0;
}

int dsmoe_cuda_expert_cache_acquire(dsmoe_cuda_expert_cache* c, int layer, const int* experts, int n,
                                    const uint16_t* const** gate_up_table, const uint16_t* const** down_table) {
  DSMOE_RETURN_IF(bad_layer(c, layer) || c->layers[layer].K == 0 || (n > 0 && !experts));
  std::lock_guard<std::mutex> lock(c->mutex);
  return acquire_locked(c, layer, experts, n, gate_up_table, down_table);
}

int dsmoe_cuda_expert_cache_release(dsmoe_cuda_expert_cache* c, int layer) {
  DSMOE_RETURN_IF(bad_layer(c, layer) || c->layers[layer].K == 0);
  std::lock_guard<std::mutex> lock(c->mutex);
  return release_locked(c, layer);
}

int dsmoe_cuda_expert_cache_prefetch(dsmoe_cuda_expert_cache* c, int layer, const int* experts, int n) {
  DSMOE_RETURN_IF(bad_layer(c, layer) || n < 0 || (n > 0 && !experts));
  std::lock_guard<std::mutex> lock(c->mutex);
  return prefetch_locked(c, layer, experts, n);
}

int dsmoe_cuda_expert_cache_invalidate(dsmoe_cuda_expert_cache* c) {
  DSMOE_RETURN_IF(!c);
  std::lock_guard<std::mutex> lock(c->mutex);
  for (Layer& L : c->layers) {
    // copies in flight land in slots nobody maps any more; the next copy into a slot queues behind them
    for (Slot& s : L.slot) s.expert = -1, s.pinned = false, s.loading = false, s.last_use = 0;
    std::fill(L.slot_of.begin(), L.slot_of.end(), -1);
  }
  return 0;
}

int dsmoe_cuda_expert_cache_stats(dsmoe_cuda_expert_cache* c, dsmoe_cuda_expert_cache_counters* out) {
  DSMOE_RETURN_IF(!c || !out);
  std::lock_guard<std::mutex> lock(c->mutex);
  int64_t in_flight = 0;
  for (Layer& L : c->layers) {
    poll(c, L);
    for (const Slot& s : L.slot) in_flight += s.loading;
  }
  *out = c->stats;
  out->in_flight = in_flight;
  return 0;
}

int dsmoe_cuda_expert_cache_reset_stats(dsmoe_cuda_expert_cache* c) {
  DSMOE_RETURN_IF(!c);
  std::lock_guard<std::mutex> lock(c->mutex);
  for (Layer& L : c->layers) poll(c, L);
  c->stats = dsmoe_cuda_expert_cache_counters{};
  for (Layer& L : c->layers) {  // measurements still pending belong to before the reset
    for (Timer& t : L.timing) c->free_timers.push_back(t);
    L.timing.clear();
  }
  return 0;
}

size_t dsmoe_cuda_moe_cached_workspace_size(int T, const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s,
                                            const dsmoe_cuda_moe_guess* guess) {
  size_t bytes = guess_offset(T, w, s);
  if (guess) bytes += ((size_t)T * guess->k * 8 + 255) / 256 * 256 + (size_t)T * guess->E * sizeof(float);
  return bytes;
}

int dsmoe_cuda_moe_forward_cached(dsmoe_cuda_expert_cache* c, int layer, const dsmoe_cuda_moe_weights* w,
                                  const dsmoe_cuda_moe_select* s, const float* m, int T, float* out, int* sel_ids,
                                  float* sel_w, float* probs, int path, const dsmoe_cuda_moe_guess* guess,
                                  void* workspace, size_t workspace_bytes) {
  DSMOE_RETURN_IF(bad_layer(c, layer) || !w || !s || T < 0 || s->k <= 0 || s->k > w->K);
  Layer& L = c->layers[layer];
  DSMOE_RETURN_IF(L.K != w->K);
  DSMOE_RETURN_IF(guess && (bad_layer(c, guess->layer) || guess->k <= 0 || guess->k > guess->K || guess->k > 32 ||
                            guess->E > 256));
  DSMOE_RETURN_IF(workspace_bytes < dsmoe_cuda_moe_cached_workspace_size(T, w, s, guess));
  if (T == 0) return 0;
  std::lock_guard<std::mutex> lock(c->mutex);
  c->refusal.clear();
  cudaStream_t stream = c->compute;
  const int k = s->k;
  int* ws_ids;
  float *ws_w, *ws_probs;
  moe_router_buffers(w, s, T, workspace, &ws_ids, &ws_w, &ws_probs);
  int* ids = sel_ids ? sel_ids : ws_ids;
  float* wts = sel_w ? sel_w : ws_w;
  int st = dsmoe_cuda_router_select(m, w->router, w->expert_slot, T, w->d, w->E, s->mode, k, s->epsilon,
                                    s->renormalize, probs ? probs : ws_probs, ids, wts, nullptr, stream);
  if (st) return st;
  const size_t n_sel = (size_t)T * k, n_guess = guess ? (size_t)T * guess->k : 0;
  int* g_ids = nullptr;
  if (guess) {
    char* g = (char*)workspace + guess_offset(T, w, s);
    g_ids = (int*)g;
    float* g_w = (float*)(g + n_guess * 4);
    float* g_probs = (float*)(g + (n_guess * 8 + 255) / 256 * 256);
    st = dsmoe_cuda_router_select(guess->m, guess->router, guess->expert_slot, T, w->d, guess->E, DSMOE_SELECT_TOPK,
                                  guess->k, 0.f, 0, g_probs, g_ids, g_w, nullptr, stream);
    if (st) return st;
  }
  // one read-back for both selections
  if (c->host_ids_capacity < n_sel + n_guess) {
    if (c->host_ids) cudaFreeHost(c->host_ids);
    c->host_ids = nullptr;
    c->host_ids_capacity = 0;
    CACHE_TRY(cudaHostAlloc((void**)&c->host_ids, (n_sel + n_guess) * sizeof(int), cudaHostAllocDefault));
    c->host_ids_capacity = n_sel + n_guess;
  }
  CACHE_TRY(cudaMemcpyAsync(c->host_ids, ids, n_sel * sizeof(int), cudaMemcpyDeviceToHost, stream));
  if (guess) CACHE_TRY(cudaMemcpyAsync(c->host_ids + n_sel, g_ids, n_guess * sizeof(int), cudaMemcpyDeviceToHost, stream));
  CACHE_TRY(cudaStreamSynchronize(stream));
  const int* hid = c->host_ids;

  // the guess, most probable first across the batch (token by token, rank by rank), as the CPU runtime orders it
  std::vector<int> predicted;
  if (guess) {
    std::vector<uint8_t> seen(guess->K, 0);
    for (int r = 0; r < guess->k; ++r)
      for (int t = 0; t < T; ++t) {
        const int p = hid[n_sel + (size_t)t * guess->k + r];
        if (p >= 0 && p < guess->K && !seen[p]) seen[p] = 1, predicted.push_back(p);
      }
  }
  const bool prefetch_after = guess && guess->layer == layer;  // a shared pool: predict after this layer's passes

  if (path == DSMOE_PATH_AUTO) path = n_sel <= MOE_GEMV_MAX_SEL ? DSMOE_PATH_GEMV : DSMOE_PATH_GEMM;
  dsmoe_cuda_moe_weights wc = *w;
  std::vector<uint8_t> in_pass(L.K, 0);
  std::vector<int> experts;
  for (int t0 = 0, pass = 0; t0 < T; ++pass) {
    // the longest run of tokens from t0 whose experts fit in the slots together (a token alone too big: refused)
    std::fill(in_pass.begin(), in_pass.end(), 0);
    experts.clear();
    int t1 = t0;
    std::vector<int> fresh;
    for (; t1 < T; ++t1) {
      fresh.clear();
      for (int j = 0; j < k; ++j) {
        const int p = hid[(size_t)t1 * k + j];
        if (p >= 0 && p < L.K && !in_pass[p] && std::find(fresh.begin(), fresh.end(), p) == fresh.end())
          fresh.push_back(p);
      }
      if (experts.size() + fresh.size() > (size_t)L.S) break;
      for (int p : fresh) in_pass[p] = 1, experts.push_back(p);
    }
    if (t1 == t0) {  // one token selects more experts than the layer has slots (threshold routing with a large k_max)
      c->refusal = "token " + std::to_string(t0) + " selects " + std::to_string(fresh.size()) +
                   " experts but the expert cache holds " + std::to_string(L.S) + " per layer";
      return (int)cudaErrorInvalidValue;
    }
    std::sort(experts.begin(), experts.end());
    st = acquire_locked(c, layer, experts.data(), (int)experts.size(), &wc.gate_up_table, &wc.down_table);
    if (!st && pass == 0 && guess && !prefetch_after)  // queued behind this layer's demand copies
      st = prefetch_locked(c, guess->layer, predicted.data(), (int)predicted.size());
    if (st) {
      release_locked(c, layer);  // a failed call leaves nothing pinned
      return st;
    }
    st = moe_run_experts(&wc, s, T, m + (size_t)t0 * w->d, t1 - t0, ids + (size_t)t0 * k, wts + (size_t)t0 * k,
                         out + (size_t)t0 * w->d, path, workspace, stream);
    const int st_release = release_locked(c, layer);
    if (st) return st;
    if (st_release) return st_release;
    t0 = t1;
  }
  if (prefetch_after) return prefetch_locked(c, guess->layer, predicted.data(), (int)predicted.size());
  return 0;
}

}  // extern "C"
