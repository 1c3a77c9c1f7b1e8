#include "mapped_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#if defined(_WIN32)
#error "dsmoe's native runtime maps weights with POSIX mmap; Windows is not supported"
#endif
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace dsmoe {

MappedFile::MappedFile(const std::string& path, bool read_ahead) : path_(path) {
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
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) throw std::runtime_error("cannot map weights file " + path + ": " + std::strerror(err));
  // Sequential streaming of whole matrices: ask the kernel to read ahead.
  if (read_ahead) ::madvise(p, size_, MADV_WILLNEED);
  data_ = static_cast<const uint8_t*>(p);
}

void MappedFile::will_need(uint64_t offset, uint64_t bytes) const {
  if (offset >= size_ || bytes == 0) return;
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page, end = std::min(size_, offset + bytes);
  ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_WILLNEED);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace dsmoe
