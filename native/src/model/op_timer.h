// Where a forward pass spends its time: wall time per phase (attention, router, experts, norms, LM head, …), summed
// over forwards. The forward marks the end of each phase (`lap`); the time since the previous mark goes to that
// phase. One steady_clock read per phase (nine per layer at most) against milliseconds per forward, so it is
// cheap enough to leave on while measuring; off by default (ModelSpec::profile_ops) it costs one branch per mark.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>

namespace dsmoe {

enum class Op : int {
  Embedding,     // token embedding gather
  Norm,          // every RMSNorm (attention, MLP and final)
  Qkv,           // the fused q/k/v projection with its bias
  Attention,     // RoPE, the KV cache store and the attention over the cache
  AttnOut,       // the output projection added into the residual
  Router,        // router matmul, softmax, selection and grouping by expert (pre-gated layers' early routing too)
  Experts,       // the routed experts' GEMVs/GEMMs, SwiGLU and combine (through the expert cache when it is on)
  SharedExpert,  // the shared expert and its gate
  LmHead,        // the LM head over the output rows
  Count
};

// The names TypeScript sees (src/runtime/op_times.ts lists the same ones, in this order).
inline const char* op_name(Op op) {
  static const char* names[] = {"embedding", "norm", "qkv", "attention", "attn_out", "router", "experts", "shared_expert", "lm_head"};
  return names[int(op)];
}

struct OpTimes {
  int64_t forwards = 0;                    // forward calls timed
  std::array<double, int(Op::Count)> seconds{};  // per phase, summed
};

// One forward's clock: lap(op) charges the time since the last lap (or construction) to op.
class OpClock {
 public:
  explicit OpClock(bool on) : on_(on) {
    if (on_) last_ = std::chrono::steady_clock::now();
  }
  void lap(Op op) {
    if (!on_) return;
    auto now = std::chrono::steady_clock::now();
    times_.seconds[int(op)] += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }
  // Adds this forward's phases to `total` (nothing when off).
  void add_to(OpTimes& total) const {
    if (!on_) return;
    total.forwards += 1;
    for (int i = 0; i < int(Op::Count); ++i) total.seconds[i] += times_.seconds[i];
  }

 private:
  bool on_;
  std::chrono::steady_clock::time_point last_;
  OpTimes times_;
};

}  // namespace dsmoe
