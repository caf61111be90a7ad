#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/error.h"

namespace resa {
namespace {

using nlohmann::json;

[[noreturn]] void fail(ErrorKind kind, const std::filesystem::path& file, const std::string& what) {
  throw Error(kind, file.string() + ": " + what);
}

// Closes the descriptor on every path out of MappedFile's constructor (the mapping outlives it).
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::optional<DType> parse_dtype(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  return std::nullopt;
}

std::string offsets_string(uint64_t begin, uint64_t end) {
  // Appended piecewise: GCC 12 warns falsely (-Wrestrict) on "[" + std::to_string(...).
  std::string s = "[";
  s += std::to_string(begin);
  s += ", ";
  s += std::to_string(end);
  s += "]";
  return s;
}

// One header entry {"dtype", "shape", "data_offsets"} checked against the data section.
TensorInfo parse_tensor(const std::filesystem::path& path, const std::string& name,
                        const json& entry, const std::byte* data, uint64_t data_size) {
  const std::string where = "tensor '" + name + "'";
  if (!entry.is_object()) {
    fail(ErrorKind::kCorruptFile, path,
         where + " is " + entry.dump() + ", not an object with dtype, shape and data_offsets");
  }
  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    fail(ErrorKind::kCorruptFile, path, where + " has no 'dtype' string");
  }
  const std::string dtype_str = dtype_it->get<std::string>();
  const std::optional<DType> dtype = parse_dtype(dtype_str);
  if (!dtype) {
    fail(ErrorKind::kUnsupported, path,
         where + " has dtype " + dtype_str +
             ", which we do not read (supported: F32, F16, BF16; convert the checkpoint or "
             "pick an unquantized one)");
  }

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) {
    fail(ErrorKind::kCorruptFile, path, where + " has no 'shape' list");
  }
  TensorInfo info;
  info.name = name;
  info.dtype = *dtype;
  info.file = path.string();
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : *shape_it) {
    if (!d.is_number_integer()) {
      fail(ErrorKind::kCorruptFile, path,
           where + " has shape " + shape_it->dump() +
               "; a shape must be a list of non-negative integers");
    }
    if (!d.is_number_unsigned()) {
      // nlohmann stores non-negative integers as unsigned, so this one is negative.
      fail(ErrorKind::kCorruptFile, path,
           where + " has shape " + shape_it->dump() + " with a negative dimension");
    }
    const uint64_t dim = d.get<uint64_t>();
    if (dim > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel)) overflow = true;
    info.shape.push_back(int64_t(dim));
  }
  uint64_t expected_bytes = 0;
  if (overflow || __builtin_mul_overflow(numel, dtype_size(*dtype), &expected_bytes)) {
    fail(ErrorKind::kCorruptFile, path,
         where + " has an impossibly large shape " + shape_it->dump());
  }

  auto off_it = entry.find("data_offsets");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 ||
      !(*off_it)[0].is_number_unsigned() || !(*off_it)[1].is_number_unsigned()) {
    fail(ErrorKind::kCorruptFile, path,
         where + " needs 'data_offsets' as [begin, end] with non-negative integers, got " +
             (off_it == entry.end() ? std::string("nothing") : off_it->dump()));
  }
  const uint64_t begin = (*off_it)[0].get<uint64_t>();
  const uint64_t end = (*off_it)[1].get<uint64_t>();
  if (begin > end) {
    fail(ErrorKind::kCorruptFile, path,
         where + " has data_offsets " + offsets_string(begin, end) + " with begin after end");
  }
  if (end > data_size) {
    fail(ErrorKind::kCorruptFile, path,
         where + " has data_offsets " + offsets_string(begin, end) +
             " past the end of the data section (" + std::to_string(data_size) +
             " bytes); the file is truncated: download it again");
  }
  if (end - begin != expected_bytes) {
    fail(ErrorKind::kCorruptFile, path,
         where + " holds " + std::to_string(end - begin) + " bytes but shape " +
             shape_string(info.shape) + " of " + dtype_str + " needs " +
             std::to_string(expected_bytes) + " bytes");
  }
  info.data = data + begin;
  info.nbytes = size_t(end - begin);
  return info;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::kFileNotFound, path, "cannot be opened (check its permissions)");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) {
      fail(ErrorKind::kFileNotFound, path,
           "no such file (check the path, or download the model's files again)");
    }
    fail(ErrorKind::kFileNotFound, path,
         std::string("cannot be opened: ") + std::strerror(err) + " (check its permissions)");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    fail(ErrorKind::kFileNotFound, path, std::string("cannot stat: ") + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    fail(ErrorKind::kInvalidArgument, path, "is not a regular file (expected a weights file)");
  }
  if (st.st_size == 0) {
    fail(ErrorKind::kCorruptFile, path,
         "is empty (0 bytes); the download was probably interrupted: download it again");
  }
  size_ = size_t(st.st_size);
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    fail(err == ENOMEM ? ErrorKind::kOutOfMemory : ErrorKind::kInternal, path,
         "cannot be memory-mapped (" + std::to_string(size_) + " bytes): " + std::strerror(err));
  }
  data_ = static_cast<const std::byte*>(p);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : file_(std::make_unique<MappedFile>(path)) {
  const uint64_t size = file_->size();
  if (size < 8) {
    fail(ErrorKind::kCorruptFile, path,
         "file is " + std::to_string(size) +
             " bytes, shorter than the 8-byte header length every safetensors file starts with "
             "(a truncated download, or not a safetensors file)");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | uint64_t(file_->data()[i]);
  if (header_len > size - 8) {
    fail(ErrorKind::kCorruptFile, path,
         "header length " + std::to_string(header_len) + " runs past the end of the file (" +
             std::to_string(size) +
             " bytes); the file is truncated or not a safetensors file: download it again");
  }

  const char* text = reinterpret_cast<const char*>(file_->data() + 8);
  json header;
  try {
    header = json::parse(text, text + header_len);
  } catch (const json::parse_error& e) {
    fail(ErrorKind::kCorruptFile, path,
         std::string("header is not valid JSON (") + e.what() + "); the file is damaged");
  }
  if (!header.is_object()) {
    fail(ErrorKind::kCorruptFile, path,
         "header is not a JSON object (it should map tensor names to dtype, shape and "
         "data_offsets)");
  }

  const std::byte* data = file_->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      // Free-form string pairs (e.g. {"format": "pt"}); nothing we need.
      continue;
    }
    tensors_.emplace(name, parse_tensor(path, name, entry, data, data_size));
  }

  // Each byte of the data section belongs to at most one tensor; two views of the same bytes
  // would mean a corrupt or hand-crafted header.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, info] : tensors_) {
    if (info.nbytes > 0) by_offset.push_back(&info);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo* prev = by_offset[i - 1];
    const TensorInfo* cur = by_offset[i];
    if (cur->data < prev->data + prev->nbytes) {
      auto offsets = [&](const TensorInfo* t) {
        const uint64_t b = uint64_t(t->data - data);
        return offsets_string(b, b + t->nbytes);
      };
      fail(ErrorKind::kCorruptFile, path,
           "tensors '" + prev->name + "' " + offsets(prev) + " and '" + cur->name + "' " +
               offsets(cur) + " overlap in the data section; the header is corrupt");
    }
  }
}

Checkpoint::Checkpoint(const std::filesystem::path& dir) : dir_(dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // A single .safetensors file is accepted too, for models shipped as one loose file.
  if (fs::is_regular_file(dir, ec) && dir.extension() == ".safetensors") {
    dir_ = dir.parent_path();
    source_ = dir;
    files_.push_back(std::make_unique<SafetensorsFile>(dir));
    tensors_ = files_.back()->tensors();
    return;
  }
  if (!fs::is_directory(dir, ec)) {
    fail(ErrorKind::kFileNotFound, dir,
         "no such folder (pass the model folder holding config.json and the .safetensors "
         "weights)");
  }
  const fs::path single = dir / "model.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";
  // transformers looks for the single file first, then the index; so do we.
  if (fs::exists(single, ec)) {
    source_ = single;
    files_.push_back(std::make_unique<SafetensorsFile>(single));
    tensors_ = files_.back()->tensors();
  } else if (fs::exists(index, ec)) {
    source_ = index;
    load_index(index);
  } else {
    throw Error(ErrorKind::kFileNotFound,
                "no model.safetensors or model.safetensors.index.json in " + dir.string() +
                    " (download the model's safetensors weights; .bin/.pth checkpoints are not "
                    "supported)");
  }
}

void Checkpoint::load_index(const std::filesystem::path& index) {
  namespace fs = std::filesystem;
  json j;
  try {
    j = json::parse(read_text_file(index));
  } catch (const json::parse_error& e) {
    fail(ErrorKind::kCorruptFile, index,
         std::string("not valid JSON (") + e.what() + "); download it again");
  }
  if (!j.is_object() || !j.contains("weight_map")) {
    fail(ErrorKind::kCorruptFile, index,
         "field 'weight_map' is missing (an index maps each tensor to its shard file)");
  }
  const json& map = j["weight_map"];
  if (!map.is_object() || map.empty()) {
    fail(ErrorKind::kCorruptFile, index,
         "field 'weight_map' must be a non-empty object {tensor: shard file}");
  }

  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [tensor, shard_json] : map.items()) {
    if (!shard_json.is_string()) {
      fail(ErrorKind::kCorruptFile, index,
           "weight_map entry for tensor '" + tensor + "' is " + shard_json.dump() +
               ", not a shard file name");
    }
    const std::string shard = shard_json.get<std::string>();
    const fs::path rel(shard);
    // Shards live in the model folder; an index must not send us elsewhere on the disk.
    if (shard.empty() || rel.is_absolute() ||
        std::find(rel.begin(), rel.end(), fs::path("..")) != rel.end()) {
      fail(ErrorKind::kCorruptFile, index,
           "weight_map names shard '" + shard + "' for tensor '" + tensor +
               "'; shards must be files inside the model folder");
    }
    auto it = shards.find(shard);
    if (it == shards.end()) {
      const fs::path shard_path = dir_ / rel;
      std::error_code ec;
      if (!fs::exists(shard_path, ec)) {
        fail(ErrorKind::kFileNotFound, index,
             "lists shard '" + shard + "' (holding tensor '" + tensor + "'), which is not in " +
                 dir_.string() + " (the download is incomplete: download " + shard + ")");
      }
      files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
      it = shards.emplace(shard, files_.back().get()).first;
    }
    const auto& in_shard = it->second->tensors();
    auto t = in_shard.find(tensor);
    if (t == in_shard.end()) {
      fail(ErrorKind::kCorruptFile, index,
           "maps tensor '" + tensor + "' to shard '" + shard + "', but " +
               it->second->path().string() +
               " has no such tensor (the index and the shards do not match: download them "
               "again)");
    }
    tensors_.emplace(tensor, t->second);
  }
}

bool Checkpoint::has(const std::string& name) const { return tensors_.count(name) != 0; }

const TensorInfo& Checkpoint::get(const std::string& name,
                                  const std::vector<int64_t>& shape) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    throw Error(ErrorKind::kCorruptFile, "tensor '" + name + "' not found in " + source_.string() +
                                             " (does config.json belong to these weights?)");
  }
  if (it->second.shape != shape) {
    throw Error(ErrorKind::kShapeMismatch,
                "tensor '" + name + "' in " + it->second.file + " has shape " +
                    shape_string(it->second.shape) + ", expected " + shape_string(shape) +
                    " from config.json (does config.json belong to these weights?)");
  }
  return it->second;
}

}  // namespace resa
