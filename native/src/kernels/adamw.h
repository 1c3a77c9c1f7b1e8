// Training-side element-wise kernels over whole parameter tensors (the tfjs trainer's optimizer step): the AdamW
// update in place and the sum of squares behind the global-norm clip. One pass over memory each, multithreaded,
// instead of tfjs's ~17 single-threaded element-wise kernels per parameter.
#pragma once
#include <cstddef>

namespace dsmoe {

class ThreadPool;

// One AdamW update, as src/train/adamw.ts writes it (torch.optim.AdamW): g = grad·grad_scale;
// m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  param ← param − lr·( (m/c1) / (√(v/c2) + ε) + λ·param ),
// c1 = 1 − β1^t, c2 = 1 − β2^t; λ = 0 for parameters without decay. The constants are f32 as tfjs's scalars are.
struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay, correction1, correction2, grad_scale;
};

// Reference twin: the same formula in double, each result rounded to f32 once.
void adamw_ref(float* param, const float* grad, float* m, float* v, size_t n, const AdamWStep& s);
// The fast path: f32 in tfjs's operation order (so it matches tfjs's kernels to an ulp or so), over threads.
void adamw(ThreadPool* pool, float* param, const float* grad, float* m, float* v, size_t n, const AdamWStep& s);

// Σ x²: the twin sums in double; the fast path in 8 f32 lanes per 16K-element chunk, the chunks in double and in
// a fixed order (the total does not depend on the threads).
double sum_squares_ref(const float* x, size_t n);
double sum_squares(ThreadPool* pool, const float* x, size_t n);

}  // namespace dsmoe
