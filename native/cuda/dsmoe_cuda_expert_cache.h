/*
 * dsmoe_cuda_expert_cache.h — the expert cache on the GPU (issue 13; docs/cuda.md "The device expert cache").
 *
 * The routed experts of every layer live in pinned host memory (the slow tier, filled once by the caller); each
 * layer keeps a fixed pool of `slots` experts in device memory, evicted least-recently-used per layer. Missing
 * experts are copied host → device with cudaMemcpyAsync on the cache's own copy stream, with an event per slot: the
 * compute stream waits (cudaStreamWaitEvent) only on the slots the current layer reads, so copies for later layers
 * (prefetches) overlap this layer's kernels. The MoE kernels read the slots through a slot table (expert id →
 * device pointer, dsmoe_cuda_moe_weights.gate_up_table / down_table) with their indexing otherwise unchanged, so
 * the cache changes where the bytes come from, never the arithmetic.
 *
 * Plain C, like dsmoe_cuda.h. Every function returns 0 or a cudaError_t code (cudaErrorInvalidValue for arguments
 * it cannot serve). Not thread-safe across calls of one cache except _stats / _reset_stats (the forward holds it).
 */
#ifndef DSMOE_CUDA_EXPERT_CACHE_H
#define DSMOE_CUDA_EXPERT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "dsmoe_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsmoe_cuda_expert_cache dsmoe_cuda_expert_cache;

/* One cache layer: K packed bf16 experts of gate_up [2I, d] and down [d, I]. K = 0: the layer holds nothing (a layer
 * reading an earlier layer's shared pool, which the cache holds once under that layer's index). */
typedef struct dsmoe_cuda_cached_layer {
  int K, d, I;
} dsmoe_cuda_cached_layer;

/* The counters of the CPU cache (native/src/model/expert_cache.h), with copies for reads. */
typedef struct dsmoe_cuda_expert_cache_counters {
  int64_t hits;                /* demanded experts already in a slot (or on their way there by a prefetch) */
  int64_t misses;              /* demanded experts that had to be copied */
  int64_t loads;               /* host → device copies issued (demand and prefetch) */
  int64_t bytes_copied;        /* bytes of those copies */
  double stall_seconds;        /* compute stream waiting on copies (GPU timeline, cudaEvent timing); measurements
                                  still in flight when the stats are taken are counted later */
  int64_t prefetches;          /* copies issued by prefetch */
  int64_t predicted;           /* experts predicted for a layer (sum over steps of |predicted|) */
  int64_t predicted_used;      /* of those, demanded by that layer's next request (|predicted ∩ demanded|) */
  int64_t demanded_predicted;  /* demanded experts on layers that had a prediction (recall's denominator) */
  int64_t in_flight;           /* slots whose copy has not completed when the stats were taken */
} dsmoe_cuda_expert_cache_counters;

/* Allocates per layer the pinned host tier (K experts, to be filled through _host) and the device pool
 * (min(slots, K) experts), the slot tables, and the copy stream. compute_stream: the stream the MoE kernels run on
 * (NULL = the legacy default stream). slots >= 1. */
int dsmoe_cuda_expert_cache_create(dsmoe_cuda_expert_cache** out, const dsmoe_cuda_cached_layer* layers, int n_layers,
                                   int slots, void* compute_stream);
int dsmoe_cuda_expert_cache_destroy(dsmoe_cuda_expert_cache* cache);  /* waits for both streams first */
/* Why the last dsmoe_cuda_moe_forward_cached refused its selection ("" when it did not); valid until the next call. */
const char* dsmoe_cuda_expert_cache_refusal(dsmoe_cuda_expert_cache* cache);
/* Slots of a layer (min(slots, K)), 0 for a layer that holds nothing. */
int dsmoe_cuda_expert_cache_slots(const dsmoe_cuda_expert_cache* cache, int layer);
/* The layer's pinned host tier, [K, 2I, d] and [K, d, I] bf16, for the caller to fill once before the first use. */
int dsmoe_cuda_expert_cache_host(dsmoe_cuda_expert_cache* cache, int layer, uint16_t** gate_up, uint16_t** down);

/*
 * Makes the packed experts `experts[0..n)` (distinct, n <= slots) resident in `layer` for the compute stream: copies
 * the missing ones (evicting the least recently used slots not in this set), makes the compute stream wait on the
 * copies of exactly these slots, and writes the layer's slot tables on the compute stream (entries of other experts
 * NULL). *gate_up_table / *down_table receive the device tables to put in dsmoe_cuda_moe_weights. The slots stay
 * pinned until _release, which marks on the compute stream where their reads end (a later copy into one of them
 * waits for that point).
 */
int dsmoe_cuda_expert_cache_acquire(dsmoe_cuda_expert_cache* cache, int layer, const int* experts, int n,
                                    const uint16_t* const** gate_up_table, const uint16_t* const** down_table);
int dsmoe_cuda_expert_cache_release(dsmoe_cuda_expert_cache* cache, int layer);

/* Speculative (or pre-gated) prefetch: copies the predicted experts of `layer` (most likely first) into its
 * least-recently-used slots that are neither pinned nor holding another predicted expert, never waiting; remembers
 * the prediction for the recall / precision counters of that layer's next acquire. Invalid ids are ignored. */
int dsmoe_cuda_expert_cache_prefetch(dsmoe_cuda_expert_cache* cache, int layer, const int* experts, int n);

/* Empties every slot (the "no cache" baseline: every selected expert is copied again on the next step). */
int dsmoe_cuda_expert_cache_invalidate(dsmoe_cuda_expert_cache* cache);
int dsmoe_cuda_expert_cache_stats(dsmoe_cuda_expert_cache* cache, dsmoe_cuda_expert_cache_counters* out);
int dsmoe_cuda_expert_cache_reset_stats(dsmoe_cuda_expert_cache* cache);

/* The next layer's router for the speculative prefetch: top-k of router · m over its kept experts. */
typedef struct dsmoe_cuda_moe_guess {
  int layer;               /* the cache layer to prefetch into (the next layer's expert pool) */
  const float* m;          /* [T, d] device: the next layer's router input as far as it is known now */
  const float* router;     /* [E, d] f32 */
  const int* expert_slot;  /* [E] kept-order slot or -1; NULL when every expert is kept */
  int E, K, k;             /* experts, kept experts, experts guessed per token (k of that layer + a margin, <= K) */
} dsmoe_cuda_moe_guess;

size_t dsmoe_cuda_moe_cached_workspace_size(int T, const dsmoe_cuda_moe_weights* w, const dsmoe_cuda_moe_select* s,
                                            const dsmoe_cuda_moe_guess* guess);
/*
 * dsmoe_cuda_moe_forward with the experts of cache layer `layer` (w->gate_up / down are ignored): router and
 * selection on the compute stream, the selection (and the guess) read back with one synchronisation, then the
 * expert kernels over the slots. When the tokens need more distinct experts than the layer has slots, the tokens
 * run in consecutive groups, each needing at most `slots` experts (so each token's sum is formed exactly as in one
 * pass); a single token selecting more experts than the layer has slots (threshold routing with k_max above it) is
 * refused with cudaErrorInvalidValue and the reason in dsmoe_cuda_expert_cache_refusal. With a guess, its top-k is prefetched right after this layer's demand copies are queued. The mat-vec
 * path gives bit-identical results to the resident dsmoe_cuda_moe_forward; the GEMM path differs only by the order
 * of its float atomics (as two resident runs do). path AUTO is resolved on the whole T, as the resident forward does.
 */
int dsmoe_cuda_moe_forward_cached(dsmoe_cuda_expert_cache* cache, int layer, const dsmoe_cuda_moe_weights* w,
                                  const dsmoe_cuda_moe_select* s, const float* m, int T, float* out, int* sel_ids,
                                  float* sel_w, float* probs, int path, const dsmoe_cuda_moe_guess* guess,
                                  void* workspace, size_t workspace_bytes);

#ifdef __cplusplus
}
#endif

#endif /* DSMOE_CUDA_EXPERT_CACHE_H */
