#include "mapped_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(_WIN32)
#error "dsmoe's native runtime maps weights with POSIX mmap; Windows is not supported"
#endif
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace dsmoe {

Residency residency_from(const std::string& name) {
  if (name == "mmap") return Residency::Mmap;
  if (name == "populate") return Residency::Populate;
  if (name == "mlock") return Residency::Mlock;
  if (name == "read") return Residency::Read;
  throw std::runtime_error("residency must be mmap, populate, mlock or read, got " + name);
}

const char* residency_name(Residency r) {
  switch (r) {
    case Residency::Mmap: return "mmap";
    case Residency::Populate: return "populate";
    case Residency::Mlock: return "mlock";
    case Residency::Read: return "read";
  }
  return "?";
}

namespace {

// The memlock limit for a warning: "RLIMIT_MEMLOCK is 8 MiB".
std::string memlock_limit() {
  struct rlimit lim;
  if (::getrlimit(RLIMIT_MEMLOCK, &lim) != 0) return "RLIMIT_MEMLOCK is unknown";
  if (lim.rlim_cur == RLIM_INFINITY) return "RLIMIT_MEMLOCK is unlimited";
  const uint64_t bytes = uint64_t(lim.rlim_cur);
  return "RLIMIT_MEMLOCK is " + (bytes >= (uint64_t(1) << 20) ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes >> 10) + " KiB");
}

}  // namespace

MappedFile::MappedFile(const std::string& path, bool read_ahead, Residency residency) : path_(path), residency_(residency) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error("cannot open weights file " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error("cannot stat weights file " + path + ": " + std::strerror(err));
  }
  size_ = uint64_t(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    throw std::runtime_error("weights file " + path + " is empty");
  }
  if (residency_ == Residency::Read) {
    try {
      read_into_anonymous(fd);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    return;
  }
  const bool populate = residency_ == Residency::Populate || residency_ == Residency::Mlock;
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | (populate ? MAP_POPULATE : 0), fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) throw std::runtime_error("cannot map weights file " + path + ": " + std::strerror(err));
  region_ = p;
  region_bytes_ = size_;
  // Sequential streaming of whole matrices: ask the kernel to read ahead (populated pages are already in).
  if (read_ahead && !populate) ::madvise(p, size_, MADV_WILLNEED);
  if (residency_ == Residency::Mlock) {
    if (::mlock(p, size_) == 0) {
      locked_ = true;
    } else {
      // llama.cpp's choice: a refused lock is a warning, not an error; the populated mapping still serves.
      warning_ = "cannot lock the " + std::to_string(size_ >> 20) + " MiB of " + path + " in memory (" + std::strerror(errno) +
                 "; " + memlock_limit() + ": raise it with `ulimit -l`); the weights stay mapped and populated, but may be reclaimed";
    }
  }
  data_ = static_cast<const uint8_t*>(p);
}

void MappedFile::read_into_anonymous(int fd) {
  // 2 MiB-aligned, so that transparent huge pages can back the whole buffer.
  constexpr size_t kHuge = size_t(2) << 20;
  region_bytes_ = (size_t(size_) + 2 * kHuge - 1) / kHuge * kHuge;
  void* p = ::mmap(nullptr, region_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    throw std::runtime_error("cannot allocate " + std::to_string(size_ >> 20) + " MiB for the weights of " + path_ + ": " +
                             std::strerror(errno));
  }
  region_ = p;
  uint8_t* base = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + kHuge - 1) / kHuge * kHuge);
#ifdef MADV_HUGEPAGE
  ::madvise(base, size_t(size_), MADV_HUGEPAGE);  // a hint: THP "never" or no THP leaves 4 KiB pages
#endif
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  // One reader per hardware thread over 2 MiB-aligned slices: on a virtual machine the first touch of fresh guest
  // memory is a host page fault, and one thread faulting 3.5 GB took 5-10 s where two took 2-3.5 s.
  const unsigned readers = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  const uint64_t slice = (size_ / readers + kHuge - 1) / kHuge * kHuge;
  std::vector<std::string> errors(readers);
  std::vector<std::thread> threads;
  for (unsigned r = 0; r < readers; ++r) {
    threads.emplace_back([&, r] {
      constexpr size_t kChunk = size_t(64) << 20;
      const uint64_t end = std::min<uint64_t>(size_, uint64_t(r + 1) * slice);
      for (uint64_t at = uint64_t(r) * slice; at < end;) {
        ssize_t got = ::pread(fd, base + at, size_t(std::min<uint64_t>(kChunk, end - at)), off_t(at));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
          errors[r] = "cannot read weights file " + path_ + " at byte " + std::to_string(at) + ": " +
                      (got < 0 ? std::strerror(errno) : "the file ended early");
          return;
        }
        at += uint64_t(got);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& error : errors) {
    if (error.empty()) continue;
    ::munmap(region_, region_bytes_);
    region_ = nullptr;
    throw std::runtime_error(error);
  }
  ::mprotect(base, size_t(size_), PROT_READ);  // the weights are read-only, as in the mapping
  data_ = base;
}

void MappedFile::will_need(uint64_t offset, uint64_t bytes) const {
  if (residency_ == Residency::Read || offset >= size_ || bytes == 0) return;  // anonymous memory is already in
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page, end = std::min(size_, offset + bytes);
  ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_WILLNEED);
}

MappedFile::~MappedFile() {
  if (locked_) ::munlock(region_, region_bytes_);
  if (region_) ::munmap(region_, region_bytes_);
}

}  // namespace dsmoe
