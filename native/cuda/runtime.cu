// runtime.cu — device, memory and stream wrappers of the C API (so the addon links only this static library).
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

// -1 = not decided yet; decided once from the environment, overridable through dsmoe_cuda_set_pdl
static int g_pdl_switch = -1;
static int g_cc_major[64];  // per device, 0 = not queried

bool dsmoe_pdl_enabled() {
  if (g_pdl_switch < 0) {
    const char* v = getenv("DSMOE_CUDA_PDL");
    g_pdl_switch = v && v[0] == '0' ? 0 : 1;
  }
  if (!g_pdl_switch) return false;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  if (!g_cc_major[dev]) {
    int major = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    g_cc_major[dev] = major > 0 ? major : 1;
  }
  return g_cc_major[dev] >= 9;  // griddepcontrol exists from sm_90
}

extern "C" {

void dsmoe_cuda_set_pdl(int enable) { g_pdl_switch = enable ? 1 : 0; }

int dsmoe_cuda_device_count(void) {
  int n = 0;
  // no driver / too old a driver / no device all end up as "0 devices": the addon then stays on the CPU path
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

int dsmoe_cuda_device_name(int device, char* buf, int buf_len) {
  cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, device);
  if (e != cudaSuccess) return (int)e;
  if (buf_len > 0) {
    strncpy(buf, p.name, (size_t)buf_len - 1);
    buf[buf_len - 1] = 0;
  }
  return 0;
}

int dsmoe_cuda_set_device(int device) { return (int)cudaSetDevice(device); }
const char* dsmoe_cuda_error_string(int status) { return cudaGetErrorString((cudaError_t)status); }
int dsmoe_cuda_malloc(void** ptr, size_t bytes) { return (int)cudaMalloc(ptr, bytes); }
int dsmoe_cuda_free(void* ptr) { return (int)cudaFree(ptr); }
int dsmoe_cuda_memcpy_htod(void* dst, const void* src, size_t bytes, void* stream) {
  return (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream));
}
int dsmoe_cuda_memcpy_dtoh(void* dst, const void* src, size_t bytes, void* stream) {
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream));
  if (e != cudaSuccess) return (int)e;
  return (int)cudaStreamSynchronize(as_stream(stream));  // the host reads dst next
}
int dsmoe_cuda_memcpy_dtod(void* dst, const void* src, size_t bytes, void* stream) {
  return (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream));
}
int dsmoe_cuda_memset(void* dst, int value, size_t bytes, void* stream) {
  return (int)cudaMemsetAsync(dst, value, bytes, as_stream(stream));
}
int dsmoe_cuda_stream_create(void** stream) {
  cudaStream_t s;
  cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  *stream = (void*)s;
  return (int)e;
}
int dsmoe_cuda_stream_destroy(void* stream) { return (int)cudaStreamDestroy(as_stream(stream)); }
int dsmoe_cuda_stream_synchronize(void* stream) { return (int)cudaStreamSynchronize(as_stream(stream)); }

}  // extern "C"
