// Safetensors checkpoints (single file or sharded with model.safetensors.index.json), read by
// mmap with strict validation: every error names the file and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace resa {

// A read-only memory mapping of a whole file (RAII).
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // points into the mapping, aligned as the file is
  size_t nbytes = 0;
  std::string file;  // the .safetensors file holding it, for messages

  int64_t numel() const;
};

// "[2, 3]", as messages print shapes.
std::string shape_string(const std::vector<int64_t>& shape);

class SafetensorsFile {
 public:
  // Validates the header (length, JSON, dtypes, shapes vs byte counts, offsets in range and
  // not overlapping). Throws resa::Error naming `path` and the offending tensor.
  explicit SafetensorsFile(const std::filesystem::path& path);
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return file_->path(); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, TensorInfo> tensors_;
};

// All tensors of a checkpoint directory: model.safetensors, or the shards listed by
// model.safetensors.index.json.
class Checkpoint {
 public:
  explicit Checkpoint(const std::filesystem::path& dir);
  bool has(const std::string& name) const;
  // The tensor `name`, checked against `shape`; throws naming the file and tensor when it is
  // missing or its shape differs.
  const TensorInfo& get(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  // The file that lists the tensors (model.safetensors or the index), for messages.
  const std::filesystem::path& source() const { return source_; }

 private:
  void load_index(const std::filesystem::path& index);

  std::filesystem::path dir_;
  std::filesystem::path source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorInfo> tensors_;
};

}  // namespace resa
