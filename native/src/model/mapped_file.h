// The plan's weights file in memory, used in place by every kernel. How it is held is the residency (llama.cpp's
// --mmap / --mlock / --no-mmap, design.md §5 "Weights residency"): mapped and paged in on first touch, mapped and
// populated at load, populated and locked, or read into anonymous memory (transparent huge pages where the kernel
// allows) and the file closed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dsmoe {

enum class Residency {
  Mmap,      // map the file; pages are read on first touch (with read-ahead advice) and may be reclaimed
  Populate,  // map with MAP_POPULATE: every page read and mapped at load, no faults in the first calls
  Mlock,     // Populate, then mlock: the pages stay in memory (falls back to Populate, with a warning, when refused)
  Read,      // read into anonymous memory (MADV_HUGEPAGE): no file pages, fewer TLB misses; a copy at load
};

// "mmap" | "populate" | "mlock" | "read"; throws std::runtime_error on anything else.
Residency residency_from(const std::string& name);
const char* residency_name(Residency r);

class MappedFile {
 public:
  // Throws std::runtime_error with the path and the OS reason. `read_ahead`: ask the OS to read the whole file
  // ahead (off when the expert cache reads the experts itself: only the resident tensors are advised, see below).
  explicit MappedFile(const std::string& path, bool read_ahead = true, Residency residency = Residency::Mmap);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  Residency residency() const { return residency_; }
  // Why the residency asked for was not fully had (an mlock refused by RLIMIT_MEMLOCK); empty when it was.
  const std::string& warning() const { return warning_; }
  // Ask the OS to read bytes [offset, offset + bytes) ahead (a hint; failures are ignored).
  void will_need(uint64_t offset, uint64_t bytes) const;

 private:
  void read_into_anonymous(int fd);

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  Residency residency_;
  std::string warning_;
  void* region_ = nullptr;   // what munmap releases: the file mapping, or the (aligned-up) anonymous region
  size_t region_bytes_ = 0;
  bool locked_ = false;
};

}  // namespace dsmoe
