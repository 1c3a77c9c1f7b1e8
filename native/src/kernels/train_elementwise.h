// Fused element-wise training kernels with their backward passes, for the tfjs trainer (registered as tfjs
// kernels by src/train/native_kernels/fused_ops.ts): SwiGLU with the routing weights, softmax cross-entropy, and
// RMSNorm's backward (its forward is the runtime's rmsnorm in kernels.h).
// Each has a plain reference twin (double arithmetic); the fast paths are f32, multithreaded over rows.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dsmoe {

class ThreadPool;

// SwiGLU of E experts side by side, scaled by each expert's routing weight:
// out[n, e·I + i] = silu(gate[n, e·I + i]) · up[n, e·I + i] · w[n, e], silu(g) = g·sigmoid(g); gate, up, out
// [N, E·I], w [N, E].
void routed_swiglu_ref(const float* gate, const float* up, const float* w, int N, int E, int I, float* out);
void routed_swiglu(ThreadPool* pool, const float* gate, const float* up, const float* w, int N, int E, int I, float* out);
// Its gradient from dy [N, E·I]: dgate = dy·w·up·silu'(gate), dup = dy·w·silu(gate), dw[n, e] = Σ_i dy·silu·up,
// silu'(g) = s·(1 + g·(1 − s)), s = sigmoid(g).
void routed_swiglu_backward_ref(const float* gate, const float* up, const float* w, const float* dy, int N, int E, int I,
                         float* dgate, float* dup, float* dw);
void routed_swiglu_backward(ThreadPool* pool, const float* gate, const float* up, const float* w, const float* dy, int N, int E,
                     int I, float* dgate, float* dup, float* dw);

// Cross-entropy per row: loss[n] = logsumexp(logits[n, :]) − logits[n, target[n]]; logits [N, V], targets in [0, V).
void softmax_xent_ref(const float* logits, const int32_t* targets, int N, int V, float* loss);
void softmax_xent(ThreadPool* pool, const float* logits, const int32_t* targets, int N, int V, float* loss);
// Its gradient: dlogits[n, v] = dloss[n] · (softmax(logits[n])[v] − [v = target[n]]).
void softmax_xent_backward_ref(const float* logits, const int32_t* targets, const float* dloss, int N, int V, float* dlogits);
void softmax_xent_backward(ThreadPool* pool, const float* logits, const int32_t* targets, const float* dloss, int N, int V,
                           float* dlogits);

// RMSNorm's gradient (forward y = x·r ⊙ w, r = 1/√(mean(x²) + eps), over rows of d): dx = r·(dy ⊙ w) − x·r³·
// Σ_j(dy ⊙ w ⊙ x)_j / d, dw = Σ_n dy ⊙ x·r; x, dy, dx [T, d], w, dw [d]. dw is summed over fixed blocks of rows
// in a fixed order, so it does not depend on the threads.
void rmsnorm_backward_ref(const float* x, const float* w, const float* dy, int T, int d, float eps, float* dx, float* dw);
void rmsnorm_backward(ThreadPool* pool, const float* x, const float* w, const float* dy, int T, int d, float eps, float* dx,
                      float* dw);

// Attention's softmax over rows of C scores with the scale and the causal mask folded in: row r sits at position
// p = r mod period (period 0: no mask), y[r, j] = exp(scale·x[r, j] − m) / Σ_{j' ≤ p} exp(scale·x[r, j'] − m) for
// j ≤ p and 0 beyond, m the row's largest kept scaled score; x, y [R, C].
void causal_softmax_ref(const float* x, int R, int C, float scale, int period, float* y);
void causal_softmax(ThreadPool* pool, const float* x, int R, int C, float scale, int period, float* y);
// Its gradient from y and dy: dx = scale · y ⊙ (dy − Σ_j dy_j·y_j) (0 where y is masked).
void causal_softmax_backward_ref(const float* y, const float* dy, int R, int C, float scale, float* dx);
void causal_softmax_backward(ThreadPool* pool, const float* y, const float* dy, int R, int C, float scale, float* dx);

}  // namespace dsmoe
