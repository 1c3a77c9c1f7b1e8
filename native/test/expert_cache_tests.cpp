// expert_cache_tests: the expert cache (native/src/model/expert_cache.h) against the file it reads.
//   1. After every request/wait, each returned slot holds exactly the requested expert's bytes (gate_up and down),
//      over random request sequences mixed with prefetches of random guesses, at 1..all slots and 1..3 I/O threads.
//   2. Counters: hits + misses = experts requested; loads = misses + prefetches; bytes = loads · expert bytes;
//      a prediction's recall/precision counts match a hand count.
//   3. A cache holding every expert reads each at most once; invalidate() empties it.
//   4. A file shorter than the layout (a read past its end) makes wait() throw, and the cache stays usable.
//   Reads through the page cache and with O_DIRECT (unaligned expert offsets through the bounce buffer).
// Runs under ASan + UBSan with `node scripts/build-native.js --sanitize` (test name kernels_expert_cache).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../src/model/expert_cache.h"

using namespace dsmoe;

static int g_failures = 0, g_checks = 0;

static void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

// Byte i of the file: a hash of i, so every expert's bytes differ from every other's.
static uint8_t byte_at(uint64_t i) { return uint8_t((i * 2654435761u) >> 13); }

struct TempFile {
  std::string path;
  explicit TempFile(uint64_t bytes) {
    char name[] = "/tmp/dsmoe-expert-cache-XXXXXX";
    int fd = ::mkstemp(name);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    path = name;
    std::vector<uint8_t> data(bytes);
    for (uint64_t i = 0; i < bytes; ++i) data[i] = byte_at(i);
    if (::write(fd, data.data(), data.size()) != ssize_t(data.size())) throw std::runtime_error("write failed");
    ::close(fd);
  }
  ~TempFile() { ::unlink(path.c_str()); }
};

static bool slot_matches(const ExpertCache& c, const CachedLayer& w, int layer, int slot, int expert) {
  const uint8_t* gu = c.gate_up_pool(layer) + size_t(slot) * w.gate_up_bytes;
  const uint8_t* dn = c.down_pool(layer) + size_t(slot) * w.down_bytes;
  for (uint64_t i = 0; i < w.gate_up_bytes; ++i)
    if (gu[i] != byte_at(w.gate_up_offset + uint64_t(expert) * w.gate_up_bytes + i)) return false;
  for (uint64_t i = 0; i < w.down_bytes; ++i)
    if (dn[i] != byte_at(w.down_offset + uint64_t(expert) * w.down_bytes + i)) return false;
  return true;
}

// Two layers of K experts with odd sizes, laid out gate_up then down per layer, after a 100-byte header.
static std::vector<CachedLayer> layout(int K, uint64_t* total) {
  std::vector<CachedLayer> L;
  uint64_t at = 100;
  for (int l = 0; l < 2; ++l) {
    CachedLayer w;
    w.experts = K;
    w.gate_up_bytes = 96 + 8 * l;
    w.down_bytes = 52 + 4 * l;
    w.gate_up_offset = at;
    at += uint64_t(K) * w.gate_up_bytes;
    w.down_offset = at;
    at += uint64_t(K) * w.down_bytes;
    L.push_back(w);
  }
  *total = at;
  return L;
}

static void test_random_traffic() {
  const int K = 9;
  uint64_t total;
  std::vector<CachedLayer> where = layout(K, &total);
  TempFile file(total);
  std::mt19937 rng(7);
  for (int slots : {1, 2, 4, 9, 20})
    for (int io : {1, 3})
      for (bool direct : {false, true}) {
      ExpertCache cache(file.path, where, slots, io, direct);
      const int S = std::min(slots, K);
      check(cache.slots(0) == S, "slots clamped to the expert count");
      int64_t requested = 0;
      for (int step = 0; step < 300; ++step) {
        const int layer = int(rng() % 2);
        std::vector<int> all(K);
        for (int i = 0; i < K; ++i) all[i] = i;
        std::shuffle(all.begin(), all.end(), rng);
        std::vector<int> want(all.begin(), all.begin() + 1 + rng() % S);
        cache.request(layer, want);
        if (rng() % 2) {  // a guess for the other layer while this one loads
          std::vector<int> guess(all.begin(), all.begin() + 1 + rng() % K);
          cache.prefetch(1 - layer, guess);
        }
        std::vector<int> got = cache.wait(layer, want);
        requested += int64_t(want.size());
        check(got.size() == want.size(), "one slot per requested expert");
        std::vector<int> seen;
        for (size_t i = 0; i < want.size(); ++i) {
          check(got[i] >= 0 && got[i] < S, "slot in range");
          check(std::find(seen.begin(), seen.end(), got[i]) == seen.end(), "distinct slots");
          seen.push_back(got[i]);
          check(slot_matches(cache, where[layer], layer, got[i], want[i]),
                "slot holds expert " + std::to_string(want[i]) + " of layer " + std::to_string(layer) + " (slots " +
                    std::to_string(slots) + ", io " + std::to_string(io) + (direct ? ", O_DIRECT" : "") + ", step " +
                    std::to_string(step) + ")");
        }
        cache.release(layer);
      }
      cache.invalidate();  // waits for prefetches still in flight, so the counters below are final
      ExpertCacheStats st = cache.stats();
      check(st.hits + st.misses == requested, "hits + misses = requested");
      check(st.in_flight == 0, "nothing in flight after invalidate");
      check(st.loads == st.misses + st.prefetches, "every miss and every prefetch is one read");
      // Both layers' experts are read in full; the byte count is Σ loads · that layer's expert size.
      check(st.bytes_read >= st.loads * int64_t(96 + 52) && st.bytes_read <= st.loads * int64_t(104 + 56), "bytes read");
      check(st.predicted_used <= st.predicted && st.predicted_used <= st.demanded_predicted, "recall/precision counts");
    }
}

static void test_counters_exact() {
  const int K = 6;
  uint64_t total;
  std::vector<CachedLayer> where = layout(K, &total);
  TempFile file(total);
  ExpertCache cache(file.path, where, K, 1);
  auto step = [&](int layer, std::vector<int> want) {
    cache.request(layer, want);
    cache.wait(layer, want);
    cache.release(layer);
  };
  step(0, {0, 1});
  step(0, {1, 2});  // 1 hit, 1 miss
  cache.prefetch(1, {3, 4, 5});
  step(1, {4, 0});  // 4 was predicted (hit), 0 was not (miss): recall 1/2, precision 1/3
  cache.invalidate();
  ExpertCacheStats st = cache.stats();
  check(st.hits == 2 && st.misses == 4, "hits 2, misses 4: got " + std::to_string(st.hits) + ", " + std::to_string(st.misses));
  check(st.prefetches == 3 && st.loads == 7, "3 prefetched, 7 reads");
  check(st.predicted == 3 && st.predicted_used == 1 && st.demanded_predicted == 2, "prediction counts");
  check(st.bytes_read == 3 * int64_t(96 + 52) + 4 * int64_t(104 + 56), "bytes read: 3 layer-0 experts and 4 layer-1 experts");
  // A full cache reads each expert once, whatever comes after.
  cache.reset_stats();
  for (int i = 0; i < 50; ++i) step(0, {i % K, (i + 1) % K});
  check(cache.stats().loads == K, "a cache holding every expert reads each once");
}

static void test_read_error() {
  const int K = 4;
  uint64_t total;
  std::vector<CachedLayer> where = layout(K, &total);
  TempFile file(total - 10);  // the last expert of layer 1 is cut short
  ExpertCache cache(file.path, where, 2, 2);
  bool threw = false;
  try {
    cache.request(1, {3});
    cache.wait(1, {3});
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("unexpected end of file") != std::string::npos;
  }
  check(threw, "a short read throws from wait() with the reason");
  cache.request(1, {0, 1});  // still usable; the failed slot is reused
  std::vector<int> got = cache.wait(1, {0, 1});
  check(slot_matches(cache, where[1], 1, got[0], 0) && slot_matches(cache, where[1], 1, got[1], 1), "usable after a failed read");
  cache.release(1);
}

int main() {
  test_random_traffic();
  test_counters_exact();
  test_read_error();
  std::printf("expert_cache_tests: %d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
