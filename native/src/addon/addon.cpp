// Module entry: cpuInfo, the measurement functions, kernels.*, NativeModel and NativeContext (design.md §5).
#include <napi.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "../common/cpu.h"
#include "../kernels/gemm_bf16.h"
#include "../kernels/kernels.h"
#include "args.h"
#include "bindings.h"
#include "native_context.h"
#include "native_model.h"
#ifdef DSMOE_HAVE_CUDA
#include "../../cuda/dsmoe_cuda.h"
#endif

namespace dsmoe {

Napi::Object Init(Napi::Env env, Napi::Object exports);

namespace {

int threads_option(const Napi::CallbackInfo& info, size_t i) {
  if (i < info.Length() && info[i].IsNumber()) return std::max(1, info[i].As<Napi::Number>().Int32Value());
  return int(hardware_threads());
}

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("simd", simd_name(simd_level()));
  o.Set("detected", simd_name(simd_detected()));
  o.Set("threads", Napi::Number::New(env, hardware_threads()));
  o.Set("bf16", Napi::Boolean::New(env, bf16_compute_available()));  // kernels.gemm's compute: 'bf16' can run
  o.Set("vnni", Napi::Boolean::New(env, vnni_enabled()));
  o.Set("int8GemvRows", Napi::Number::New(env, int8_gemv_rows()));
  o.Set("gemvChunkRows", Napi::Number::New(env, gemv_chunk_rows()));  // batches ≤ this stream the weights per 4 rows
#ifdef DSMOE_HAVE_CUDA
  // 0 without a driver or device (static cudart: the addon loads either way); the CPU path is used then
  int devices = dsmoe_cuda_device_count();
  o.Set("cudaBuilt", Napi::Boolean::New(env, true));
  o.Set("cudaDevices", Napi::Number::New(env, devices));
  o.Set("cuda", Napi::Boolean::New(env, devices > 0));
  if (devices > 0) {
    char name[256] = {0};
    if (dsmoe_cuda_device_name(0, name, sizeof name) == 0) o.Set("cudaDevice", Napi::String::New(env, name));
  }
#else
  o.Set("cudaBuilt", Napi::Boolean::New(env, false));
  o.Set("cudaDevices", Napi::Number::New(env, 0));
  o.Set("cuda", Napi::Boolean::New(env, false));
#endif
  return o;
}

// setSimd('scalar' | 'avx2' | 'avx512') → the level now in use (clamped to the CPU). For tests.
Napi::Value SetSimd(const Napi::CallbackInfo& info) {
  std::string s = info[0].ToString().Utf8Value();
  set_simd(s == "avx512" ? Simd::Avx512 : s == "avx2" ? Simd::Avx2 : s == "neon" ? Simd::Neon : Simd::Scalar);
  return Napi::String::New(info.Env(), simd_name(simd_level()));
}

// setInt8GemvRows(n) → the batch sizes 1..n that take the int8 GEMV over quantized weights (0: none; clamped to
// 0..4). For tests and measurements: the runtime's results differ between the two by the activation quantization.
Napi::Value SetInt8GemvRows(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "setInt8GemvRows needs a number");
  set_int8_gemv_rows(info[0].As<Napi::Number>().Int32Value());
  return Napi::Number::New(info.Env(), int8_gemv_rows());
}

// memoryBandwidthGBs(bytesPerArray?, threads?)
Napi::Value Bandwidth(const Napi::CallbackInfo& info) {
  double bytes = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 256.0 * (1 << 20);
  if (!(bytes > 0) || bytes > 16e9) throw Napi::RangeError::New(info.Env(), "bytes must be in (0, 16e9]");
  return Napi::Number::New(info.Env(), triad_gbs(shared_pool(threads_option(info, 1)), size_t(bytes)));
}

// peakGflops(threads?)
Napi::Value Peak(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), fma_peak_gflops(shared_pool(threads_option(info, 0))));
}

// dropPageCache(path): asks the OS to drop the file's clean cached pages (posix_fadvise DONTNEED), so the next
// reads come from the device: the offloading benchmark's cold start. Pages a live mapping still holds may stay.
Napi::Value DropPageCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "dropPageCache needs a file path");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Napi::Error::New(env, "cannot open " + path + ": " + std::strerror(errno));
  int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  if (rc != 0) throw Napi::Error::New(env, "posix_fadvise(DONTNEED) failed on " + path + ": " + std::strerror(rc));
  return env.Undefined();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo));
  exports.Set("setSimd", Napi::Function::New(env, SetSimd));
  exports.Set("setInt8GemvRows", Napi::Function::New(env, SetInt8GemvRows));
  exports.Set("memoryBandwidthGBs", Napi::Function::New(env, Bandwidth));
  exports.Set("peakGflops", Napi::Function::New(env, Peak));
  exports.Set("dropPageCache", Napi::Function::New(env, DropPageCache));
  exports.Set("kernels", kernel_bindings(env));
  exports.Set("NativeContext", NativeContext::Init(env));
  exports.Set("NativeModel", NativeModel::Init(env));
  return exports;
}

}  // namespace dsmoe

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return dsmoe::Init(env, exports); }

NODE_API_MODULE(dsmoe_native, InitModule)
