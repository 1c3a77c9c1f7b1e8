// A read-only memory map of the plan's weights file; the weights are used in place, never copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace dsmoe {

class MappedFile {
 public:
  // Throws std::runtime_error with the path and the OS reason. `read_ahead`: ask the OS to read the whole file
  // ahead (off when the expert cache reads the experts itself: only the resident tensors are advised, see below).
  explicit MappedFile(const std::string& path, bool read_ahead = true);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Ask the OS to read bytes [offset, offset + bytes) ahead (a hint; failures are ignored).
  void will_need(uint64_t offset, uint64_t bytes) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace dsmoe
