// Argument checking for the addon: every TypedArray is checked for type and length before a kernel sees it, so a
// wrong call from JavaScript becomes a TypeError/RangeError, never an out-of-bounds access.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "../common/dtype.h"

namespace dsmoe {

inline Napi::TypedArray typed_array(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type,
                                    const char* type_name, size_t min_len, const char* what) {
  if (i >= info.Length() || !info[i].IsTypedArray())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a " + type_name);
  Napi::TypedArray a = info[i].As<Napi::TypedArray>();
  if (a.TypedArrayType() != type) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a " + type_name);
  if (a.ElementLength() < min_len)
    throw Napi::RangeError::New(info.Env(), std::string(what) + " has " + std::to_string(a.ElementLength()) +
                                                " elements, needs at least " + std::to_string(min_len));
  return a;
}

inline float* f32_arg(const Napi::CallbackInfo& info, size_t i, size_t min_len, const char* what) {
  Napi::TypedArray a = typed_array(info, i, napi_float32_array, "Float32Array", min_len, what);
  return reinterpret_cast<float*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

inline int32_t* i32_arg(const Napi::CallbackInfo& info, size_t i, size_t min_len, const char* what) {
  Napi::TypedArray a = typed_array(info, i, napi_int32_array, "Int32Array", min_len, what);
  return reinterpret_cast<int32_t*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

inline int int_arg(const Napi::CallbackInfo& info, size_t i, const char* what, int lo = 0) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= lo) || v > 2147483647.0 || v != double(int64_t(v)))
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be an integer ≥ " + std::to_string(lo));
  return int(v);
}

inline double num_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline DType dtype_from(Napi::Env env, const std::string& s) {
  if (s == "f32" || s == "F32") return DType::F32;
  if (s == "bf16" || s == "BF16") return DType::BF16;
  if (s == "f16" || s == "F16") return DType::F16;
  if (s == "q8_0" || s == "Q8_0") return DType::Q8_0;
  if (s == "q4_0" || s == "Q4_0") return DType::Q4_0;
  if (s == "q3_a" || s == "Q3_A") return DType::Q3_A;
  if (s == "q2_a" || s == "Q2_A") return DType::Q2_A;
  throw Napi::TypeError::New(env, "dtype must be f32, bf16, f16, q8_0, q4_0, q3_a or q2_a, got " + s);
}

// Weights for a kernel of `min_len` elements: Float32Array when dtype is f32, Uint16Array (raw bits) for bf16/f16,
// Uint8Array of blocks for the quantized types (bytes_of(t, min_len) bytes).
inline const void* weights_arg(const Napi::CallbackInfo& info, size_t i, DType t, size_t min_len, const char* what) {
  Napi::TypedArray a = t == DType::F32   ? typed_array(info, i, napi_float32_array, "Float32Array", min_len, what)
                       : is_quantized(t) ? typed_array(info, i, napi_uint8_array, "Uint8Array", bytes_of(t, min_len), what)
                                         : typed_array(info, i, napi_uint16_array, "Uint16Array", min_len, what);
  return static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
}

// A quantized matrix's rows must be whole blocks.
inline void check_rows_quantizable(Napi::Env env, DType t, int row, const char* what) {
  if (is_quantized(t) && row % block_values(t) != 0)
    throw Napi::RangeError::New(env, std::string(what) + " is " + std::to_string(row) + ": " + dtype_name(t) +
                                         " rows are blocks of " + std::to_string(block_values(t)) + " weights");
}

inline Napi::Float32Array new_f32(Napi::Env env, size_t n) { return Napi::Float32Array::New(env, n); }

}  // namespace dsmoe
