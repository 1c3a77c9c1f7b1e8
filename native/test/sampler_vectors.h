// sampler_vectors.h — reads test/fixtures/sampler_vectors.json, the sampler contract's shared test vectors
// (docs/design.md §10; written by test/helpers/sampler_vectors.ts from the TypeScript reference), for the C++ kernel
// test (native/test/sampling_tests.cpp) and the CUDA harness (native/cuda/test_main.cpp).
//
// A small strict JSON parser (objects, arrays, numbers, strings without escapes other than \" \\ \/, true, false,
// null; nothing after the document) and a loader for this one file's shape: anything unexpected is an exception
// naming the byte offset or the field, never a silently skipped case.
#ifndef DSMOE_TEST_SAMPLER_VECTORS_H
#define DSMOE_TEST_SAMPLER_VECTORS_H

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../src/common/rng.h"

namespace sampler_vectors {

// ---------------------------------------------------------------------------------------------------------------
// JSON

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;

  const Json* find(const std::string& key) const {
    for (const auto& kv : object)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Json document() {
    Json v = value();
    space();
    if (i_ != s_.size()) fail("text after the JSON document");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("JSON at byte " + std::to_string(i_) + ": " + what);
  }
  void space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    space();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool word(const char* w) {
    const size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) != 0) return false;
    i_ += n;
    return true;
  }

  Json value() {
    space();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      v.kind = Json::Object;
      if (eat('}')) return v;
      do {
        space();
        std::string key = string_literal();
        for (const auto& kv : v.object)
          if (kv.first == key) fail("duplicate key \"" + key + "\"");
        expect(':');
        v.object.emplace_back(std::move(key), value());
      } while (eat(','));
      expect('}');
    } else if (c == '[') {
      ++i_;
      v.kind = Json::Array;
      if (eat(']')) return v;
      do v.array.push_back(value());
      while (eat(','));
      expect(']');
    } else if (c == '"') {
      v.kind = Json::String;
      v.string = string_literal();
    } else if (word("true")) {
      v.kind = Json::Bool, v.boolean = true;
    } else if (word("false")) {
      v.kind = Json::Bool;
    } else if (word("null")) {
      v.kind = Json::Null;
    } else {
      v.kind = Json::Number;
      v.number = number();
    }
    return v;
  }

  std::string string_literal() {
    if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string");
    ++i_;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      const char e = s_[i_++];
      if (e == '"' || e == '\\' || e == '/') out += e;
      else fail(std::string("unsupported escape \\") + e);
    }
  }

  // JSON's number grammar, checked before strtod (which alone would accept "inf", hex, leading '+', ...)
  double number() {
    const size_t start = i_;
    auto digits = [&] {
      const size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ > d;
    };
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') ++i_;
    else if (!digits()) fail("expected a value");
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits()) fail("expected digits after '.'");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (!digits()) fail("expected exponent digits");
    }
    return std::strtod(s_.substr(start, i_ - start).c_str(), nullptr);
  }
};

// ---------------------------------------------------------------------------------------------------------------
// the vectors

struct UniformVector {
  uint64_t seed;  // the JS seed as the generator's uint64 (two's complement)
  uint64_t counter;
  uint32_t bits;  // u = bits / 2^24
};

struct Case {
  std::string name;
  std::vector<float> logits;  // [V]
  float temperature, top_p;
  uint64_t seed;
  uint64_t counter;
  int token;  // expected
};

struct Vectors {
  double margin = 0;
  std::vector<UniformVector> uniform;
  std::vector<Case> cases;
};

namespace detail {

inline const Json& field(const Json& o, const char* key, Json::Kind kind, const std::string& where) {
  const Json* v = o.kind == Json::Object ? o.find(key) : nullptr;
  if (!v || v->kind != kind) throw std::runtime_error(where + ": field \"" + key + "\" missing or of the wrong type");
  return *v;
}

inline double num(const Json& o, const char* key, const std::string& where) {
  return field(o, key, Json::Number, where).number;
}

// a safe integer (|v| ≤ 2^53 − 1), as JavaScript wrote it
inline int64_t safe_int(const Json& o, const char* key, const std::string& where) {
  const double v = num(o, key, where);
  if (!(std::fabs(v) <= 9007199254740991.0) || v != std::trunc(v))
    throw std::runtime_error(where + ": \"" + key + "\" is not a safe integer");
  return int64_t(v);
}

inline uint64_t counter_of(const Json& o, const std::string& where) {
  const int64_t c = safe_int(o, "counter", where);
  if (c < 0) throw std::runtime_error(where + ": negative counter");
  return uint64_t(c);
}

// logits[i] = f32(scale · (2·u(seed, i) − 1)), then the `set` overrides (test/helpers/sampler_vectors.ts)
inline std::vector<float> random_logits(const Json& r, const std::string& where) {
  const uint64_t seed = uint64_t(safe_int(r, "seed", where));
  const double scale = num(r, "scale", where);
  const int64_t size = safe_int(r, "size", where);
  if (size < 1 || size > (1 << 24)) throw std::runtime_error(where + ": random_logits.size out of range");
  std::vector<float> l(static_cast<size_t>(size));
  for (int64_t i = 0; i < size; ++i) l[size_t(i)] = float(scale * (2.0 * double(dsmoe_uniform(seed, uint64_t(i))) - 1.0));
  for (const Json& kv : field(r, "set", Json::Array, where).array) {
    if (kv.kind != Json::Array || kv.array.size() != 2 || kv.array[0].kind != Json::Number ||
        kv.array[1].kind != Json::Number)
      throw std::runtime_error(where + ": random_logits.set entries must be [id, value]");
    const double id = kv.array[0].number;
    if (!(id >= 0 && id < double(size)) || id != std::trunc(id)) throw std::runtime_error(where + ": set id out of range");
    l[size_t(id)] = float(kv.array[1].number);
  }
  return l;
}

inline std::vector<float> explicit_logits(const Json& a, const std::string& where) {
  std::vector<float> l;
  for (const Json& v : a.array) {
    if (v.kind == Json::Number) l.push_back(float(v.number));
    else if (v.kind == Json::String && v.string == "-inf") l.push_back(-INFINITY);
    else throw std::runtime_error(where + ": a logit must be a number or \"-inf\"");
  }
  if (l.empty()) throw std::runtime_error(where + ": no logits");
  return l;
}

}  // namespace detail

inline Vectors parse(const std::string& text) {
  using namespace detail;
  const Json doc = Parser(text).document();
  const std::string top = "sampler vectors";
  if (field(doc, "format", Json::String, top).string != "dsmoe-sampler-vectors" || num(doc, "version", top) != 1)
    throw std::runtime_error("not a dsmoe-sampler-vectors file of version 1");
  Vectors v;
  v.margin = num(doc, "margin", top);
  for (const Json& u : field(doc, "uniform", Json::Array, top).array) {
    const std::string where = "uniform[" + std::to_string(v.uniform.size()) + "]";
    const int64_t bits = safe_int(u, "bits", where);
    if (bits < 0 || bits >= (1 << 24)) throw std::runtime_error(where + ": bits out of range");
    v.uniform.push_back({uint64_t(safe_int(u, "seed", where)), counter_of(u, where), uint32_t(bits)});
  }
  for (const Json& c : field(doc, "cases", Json::Array, top).array) {
    const std::string where = "cases[" + std::to_string(v.cases.size()) + "]";
    Case k;
    k.name = field(c, "name", Json::String, where).string;
    const Json* explicit_l = c.find("logits");
    const Json* random_l = c.find("random_logits");
    if ((explicit_l != nullptr) == (random_l != nullptr))
      throw std::runtime_error(where + ": needs exactly one of logits and random_logits");
    if (explicit_l) k.logits = explicit_logits(field(c, "logits", Json::Array, where), where);
    else k.logits = random_logits(field(c, "random_logits", Json::Object, where), where);
    k.temperature = float(num(c, "temperature", where));
    k.top_p = float(num(c, "top_p", where));
    k.seed = uint64_t(safe_int(c, "seed", where));
    k.counter = counter_of(c, where);
    const int64_t token = safe_int(c, "token", where);
    if (token < 0 || token >= int64_t(k.logits.size())) throw std::runtime_error(where + ": token out of range");
    k.token = int(token);
    v.cases.push_back(std::move(k));
  }
  if (v.uniform.empty() || v.cases.empty()) throw std::runtime_error("sampler vectors: no vectors");
  return v;
}

inline Vectors load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return parse(ss.str());
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

}  // namespace sampler_vectors

#endif
