#include "engine/kv_snapshot.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <system_error>
#include <vector>

#include "engine/conversation.h"
#include "engine/error.h"
#include "engine/model.h"

namespace resa {

static_assert(std::endian::native == std::endian::little, "snapshots are written little-endian");

namespace {

constexpr char kMagic[8] = {'R', 'E', 'S', 'A', 'K', 'V', 'S', 'N'};
constexpr int kChunkTokens = 256;
constexpr uint64_t kMaxIdentity = 1 << 16;

// xxHash64, streaming (Yann Collet's reference algorithm).
constexpr uint64_t kP1 = 11400714785074694791ull, kP2 = 14029467366897019727ull,
                   kP3 = 1609587929392839161ull, kP4 = 9650029242287828579ull,
                   kP5 = 2870177450012600261ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t xx_round(uint64_t acc, uint64_t input) {
  acc += input * kP2;
  return rotl(acc, 31) * kP1;
}
inline uint64_t xx_merge(uint64_t acc, uint64_t val) {
  acc ^= xx_round(0, val);
  return acc * kP1 + kP4;
}

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0)
      : seed_(seed), v_{seed + kP1 + kP2, seed + kP2, seed, seed - kP1} {}

  void update(const void* data, size_t len) {
    const auto* p = static_cast<const unsigned char*>(data);
    const unsigned char* end = p + len;
    total_ += len;
    if (mem_size_ + len < 32) {
      std::memcpy(mem_ + mem_size_, p, len);
      mem_size_ += len;
      return;
    }
    if (mem_size_ > 0) {
      const size_t fill = 32 - mem_size_;
      std::memcpy(mem_ + mem_size_, p, fill);
      lanes(mem_);
      p += fill;
      mem_size_ = 0;
    }
    while (end - p >= 32) {
      lanes(p);
      p += 32;
    }
    mem_size_ = size_t(end - p);
    std::memcpy(mem_, p, mem_size_);
  }

  uint64_t digest() const {
    uint64_t h;
    if (total_ >= 32) {
      h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
      for (uint64_t v : v_) h = xx_merge(h, v);
    } else {
      h = seed_ + kP5;
    }
    h += total_;
    const unsigned char* p = mem_;
    const unsigned char* end = mem_ + mem_size_;
    for (; end - p >= 8; p += 8) h = rotl(h ^ xx_round(0, read64(p)), 27) * kP1 + kP4;
    if (end - p >= 4) {
      h = rotl(h ^ (uint64_t(read32(p)) * kP1), 23) * kP2 + kP3;
      p += 4;
    }
    for (; p < end; ++p) h = rotl(h ^ (uint64_t(*p) * kP5), 11) * kP1;
    h ^= h >> 33;
    h *= kP2;
    h ^= h >> 29;
    h *= kP3;
    h ^= h >> 32;
    return h;
  }

 private:
  void lanes(const unsigned char* p) {
    for (int i = 0; i < 4; ++i) v_[i] = xx_round(v_[i], read64(p + 8 * i));
  }

  uint64_t seed_;
  uint64_t v_[4];
  uint64_t total_ = 0;
  unsigned char mem_[32] = {};
  size_t mem_size_ = 0;
};

// Header fields, in file order.
struct Header {
  uint64_t config_hash = 0;
  uint64_t weight_bytes = 0;
  std::string identity;
  uint32_t block_size = 0, num_layers = 0, kv_heads = 0, head_dim = 0;
  uint32_t token_count = 0, rectified_upto = 0, chunk_tokens = 0;
  uint64_t app_data_bytes = 0;
  uint64_t payload_bytes = 0;  // tokens + app data + K/V, without the trailing hash
};

class Writer {
 public:
  template <class T>
  void put(const T& v) {
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void put_bytes(const std::string& s) { bytes_ += s; }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

class Reader {
 public:
  Reader(const std::string& bytes, const std::string& file) : bytes_(bytes), file_(file) {}
  template <class T>
  T get() {
    T v;
    need(sizeof v);
    std::memcpy(&v, bytes_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string get_bytes(size_t n) {
    need(n);
    std::string s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }

 private:
  void need(size_t n) {
    if (pos_ + n > bytes_.size())
      throw Error(ErrorKind::kCorruptFile, "KV snapshot " + file_ +
                                               " has a damaged header (it ends early); delete it, "
                                               "the conversation will be re-processed");
  }
  const std::string& bytes_;
  const std::string& file_;
  size_t pos_ = 0;
};

std::string encode_fields(const Header& h) {
  Writer w;
  w.put(h.config_hash);
  w.put(h.weight_bytes);
  w.put(uint32_t(h.identity.size()));
  w.put_bytes(h.identity);
  for (uint32_t v : {h.block_size, h.num_layers, h.kv_heads, h.head_dim, h.token_count,
                     h.rectified_upto, h.chunk_tokens})
    w.put(v);
  w.put(h.app_data_bytes);
  w.put(h.payload_bytes);
  return w.bytes();
}

std::string damaged(const std::string& file, const std::string& what) {
  return "KV snapshot " + file + " is damaged (" + what +
         "); it was not used: delete it, the conversation will be re-processed";
}

// Reads the fixed part and the header of an open file; leaves `in` at the payload.
Header read_header(std::ifstream& in, const std::string& file, uint32_t* version) {
  char magic[8] = {};
  in.read(magic, 8);
  if (!in || std::memcmp(magic, kMagic, 8) != 0)
    throw Error(ErrorKind::kCorruptFile,
                file + " is not a ReSA Chat KV snapshot (wrong magic bytes); delete it");
  uint32_t ver = 0, size = 0;
  in.read(reinterpret_cast<char*>(&ver), 4);
  in.read(reinterpret_cast<char*>(&size), 4);
  if (!in) throw Error(ErrorKind::kCorruptFile, damaged(file, "the header ends early"));
  if (ver > kKvSnapshotVersion || ver == 0)
    throw Error(ErrorKind::kUnsupported,
                "KV snapshot " + file + " has format version " + std::to_string(ver) +
                    " but this build reads version " + std::to_string(kKvSnapshotVersion) +
                    " (it was written by another ReSA Chat); the conversation will be "
                    "re-processed");
  if (size > kMaxIdentity + 256) throw Error(ErrorKind::kCorruptFile, damaged(file, "header size"));
  std::string fields(size, '\0');
  uint64_t stored_hash = 0;
  in.read(fields.data(), std::streamsize(size));
  in.read(reinterpret_cast<char*>(&stored_hash), 8);
  if (!in) throw Error(ErrorKind::kCorruptFile, damaged(file, "the header ends early"));
  if (xxhash64(fields.data(), fields.size()) != stored_hash)
    throw Error(ErrorKind::kCorruptFile, damaged(file, "header checksum mismatch"));
  Reader r(fields, file);
  Header h;
  h.config_hash = r.get<uint64_t>();
  h.weight_bytes = r.get<uint64_t>();
  h.identity = r.get_bytes(r.get<uint32_t>());
  h.block_size = r.get<uint32_t>();
  h.num_layers = r.get<uint32_t>();
  h.kv_heads = r.get<uint32_t>();
  h.head_dim = r.get<uint32_t>();
  h.token_count = r.get<uint32_t>();
  h.rectified_upto = r.get<uint32_t>();
  h.chunk_tokens = r.get<uint32_t>();
  h.app_data_bytes = r.get<uint64_t>();
  h.payload_bytes = r.get<uint64_t>();
  const uint64_t kv_bytes =
      uint64_t(h.token_count) * h.num_layers * h.kv_heads * h.head_dim * 2 * sizeof(float);
  if (h.chunk_tokens == 0 || h.rectified_upto > h.token_count ||
      h.payload_bytes != uint64_t(h.token_count) * 4 + h.app_data_bytes + kv_bytes)
    throw Error(ErrorKind::kCorruptFile, damaged(file, "inconsistent header fields"));
  *version = ver;
  return h;
}

uint64_t file_size_or_zero(const std::filesystem::path& p) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : uint64_t(n);
}

}  // namespace

uint64_t xxhash64(const void* data, size_t size, uint64_t seed) {
  Xxh64 h(seed);
  h.update(data, size);
  return h.digest();
}

std::string ModelFingerprint::hex() const {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx-%llx", static_cast<unsigned long long>(config_hash),
                static_cast<unsigned long long>(weight_bytes));
  return buf;
}

ModelFingerprint model_fingerprint(const Model& model, const std::string& identity) {
  const ModelConfig& c = model.config();
  Writer w;
  // Every field that changes the K/V the model writes for a token sequence.
  for (int v : {int(c.arch), c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers,
                c.num_heads, c.num_kv_heads, c.head_dim, c.max_position_embeddings,
                int(c.rope_scaling.kind), c.rope_scaling.original_max_position_embeddings,
                int(c.tie_word_embeddings), int(c.attention_bias), int(c.dtype)})
    w.put(v);
  for (double v : {c.rope_theta, c.rope_scaling.factor, c.rope_scaling.low_freq_factor,
                   c.rope_scaling.high_freq_factor, double(c.rms_norm_eps)})
    w.put(v);
  w.put_bytes(c.architecture_name);
  ModelFingerprint f;
  f.config_hash = xxhash64(w.bytes().data(), w.bytes().size());
  f.weight_bytes = model.weight_bytes();
  f.identity = identity;
  return f;
}

void save_kv_snapshot(const std::filesystem::path& path, const Conversation& conv,
                      const ModelFingerprint& model, const std::string& app_data) {
  const KvCache& kv = conv.kv();
  const std::string file = path.string();
  const int n = std::min(kv.tokens(), int(conv.tokens().size()));
  if (model.identity.size() > kMaxIdentity)
    throw Error(ErrorKind::kInvalidArgument, "KV snapshot: model identity too long");
  const ModelConfig& cfg = conv.model().config();
  Header h;
  h.config_hash = model.config_hash;
  h.weight_bytes = model.weight_bytes;
  h.identity = model.identity;
  h.block_size = uint32_t(kv.block_size());
  h.num_layers = uint32_t(kv.num_layers());
  h.kv_heads = uint32_t(cfg.num_kv_heads);
  h.head_dim = uint32_t(cfg.head_dim);
  h.token_count = uint32_t(n);
  h.rectified_upto = uint32_t(std::min(conv.rectified_upto(), n));
  h.chunk_tokens = kChunkTokens;
  h.app_data_bytes = app_data.size();
  h.payload_bytes = uint64_t(n) * 4 + app_data.size() +
                    uint64_t(n) * h.num_layers * h.kv_heads * h.head_dim * 2 * sizeof(float);
  const std::string fields = encode_fields(h);

  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw Error(ErrorKind::kFileNotFound, "cannot write the KV snapshot " + tmp.string() +
                                                " (check that the folder exists and is writable)");
    const uint32_t version = kKvSnapshotVersion, size = uint32_t(fields.size());
    const uint64_t header_hash = xxhash64(fields.data(), fields.size());
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(&version), 4);
    out.write(reinterpret_cast<const char*>(&size), 4);
    out.write(fields.data(), std::streamsize(fields.size()));
    out.write(reinterpret_cast<const char*>(&header_hash), 8);

    Xxh64 payload;
    auto emit = [&](const void* p, size_t bytes) {
      payload.update(p, bytes);
      out.write(static_cast<const char*>(p), std::streamsize(bytes));
    };
    emit(conv.tokens().data(), size_t(n) * 4);
    emit(app_data.data(), app_data.size());
    const int hd = int(h.head_dim), heads = int(h.kv_heads);
    std::vector<float> rows(size_t(kChunkTokens) * heads * hd);
    for (int p0 = 0; p0 < n; p0 += kChunkTokens) {
      const int rows_n = std::min(kChunkTokens, n - p0);
      for (int l = 0; l < int(h.num_layers); ++l) {
        for (int value = 0; value < 2; ++value) {
          for (int i = 0; i < rows_n; ++i) {
            for (int kh = 0; kh < heads; ++kh) {
              const float* src = value ? kv.value(l, p0 + i, kh) : kv.key(l, p0 + i, kh);
              std::memcpy(&rows[(size_t(i) * heads + kh) * hd], src, size_t(hd) * sizeof(float));
            }
          }
          emit(rows.data(), size_t(rows_n) * heads * hd * sizeof(float));
        }
      }
    }
    const uint64_t payload_hash = payload.digest();
    out.write(reinterpret_cast<const char*>(&payload_hash), 8);
    out.flush();
    if (!out)
      throw Error(ErrorKind::kDevice,
                  "writing the KV snapshot " + tmp.string() + " failed (is the disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw Error(ErrorKind::kFileNotFound,
                "cannot move the KV snapshot into place at " + file + ": " + ec.message());
  }
}

SnapshotInfo read_kv_snapshot_info(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kFileNotFound, "KV snapshot " + file + " cannot be opened");
  SnapshotInfo info;
  const Header h = read_header(in, file, &info.version);
  info.model.config_hash = h.config_hash;
  info.model.weight_bytes = h.weight_bytes;
  info.model.identity = h.identity;
  info.block_size = int(h.block_size);
  info.num_layers = int(h.num_layers);
  info.kv_heads = int(h.kv_heads);
  info.head_dim = int(h.head_dim);
  info.token_count = int(h.token_count);
  info.rectified_upto = int(h.rectified_upto);
  info.payload_bytes = h.payload_bytes;
  return info;
}

std::string load_kv_snapshot(const std::filesystem::path& path, Conversation& conv,
                             const ModelFingerprint& model) {
  const std::string file = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kFileNotFound, "KV snapshot " + file + " cannot be opened");
  uint32_t version = 0;
  const Header h = read_header(in, file, &version);
  const std::streamoff payload_at = in.tellg();

  if (h.config_hash != model.config_hash || h.weight_bytes != model.weight_bytes ||
      h.identity != model.identity) {
    throw Error(ErrorKind::kUnsupported,
                "KV snapshot " + file + " was made with another model (" + h.identity + ", " +
                    ModelFingerprint{h.config_hash, h.weight_bytes, h.identity}.hex() +
                    ") than the one loaded (" + model.identity + ", " + model.hex() +
                    "); it was not used and the conversation will be re-processed");
  }
  const ModelConfig& cfg = conv.model().config();
  KvCache& kv = conv.kv();
  if (int(h.block_size) != kv.block_size() || int(h.num_layers) != kv.num_layers() ||
      int(h.kv_heads) != cfg.num_kv_heads || int(h.head_dim) != cfg.head_dim) {
    throw Error(ErrorKind::kUnsupported,
                "KV snapshot " + file + " has block size " + std::to_string(h.block_size) +
                    " but the conversation uses " + std::to_string(kv.block_size()) +
                    " (the ReSA settings changed); it was not used and the conversation will "
                    "be re-processed");
  }
  if (int(h.token_count) >= conv.ctx_limit()) {
    throw Error(ErrorKind::kContextFull,
                "KV snapshot " + file + " holds " + std::to_string(h.token_count) +
                    " tokens but the context limit is now " + std::to_string(conv.ctx_limit()) +
                    "; it was not used");
  }
  const uint64_t expected = uint64_t(payload_at) + h.payload_bytes + 8;
  const uint64_t actual = file_size_or_zero(path);
  if (actual != expected)
    throw Error(ErrorKind::kCorruptFile,
                damaged(file, "size " + std::to_string(actual) + " bytes, expected " +
                                  std::to_string(expected)));

  // Pass 1: verify the payload checksum, so a damaged file leaves the conversation untouched.
  {
    Xxh64 hash;
    std::vector<char> buf(1 << 20);
    uint64_t left = h.payload_bytes;
    while (left > 0) {
      const size_t take = size_t(std::min<uint64_t>(left, buf.size()));
      in.read(buf.data(), std::streamsize(take));
      if (!in) throw Error(ErrorKind::kCorruptFile, damaged(file, "it ends early"));
      hash.update(buf.data(), take);
      left -= take;
    }
    uint64_t stored = 0;
    in.read(reinterpret_cast<char*>(&stored), 8);
    if (!in || stored != hash.digest())
      throw Error(ErrorKind::kCorruptFile, damaged(file, "payload checksum mismatch"));
  }

  // Pass 2: load.
  in.clear();
  in.seekg(payload_at);
  const int n = int(h.token_count);
  std::vector<int> tokens(static_cast<size_t>(n));
  in.read(reinterpret_cast<char*>(tokens.data()), std::streamsize(size_t(n) * 4));
  for (int t : tokens) {
    if (t < 0 || t >= cfg.vocab_size)
      throw Error(ErrorKind::kCorruptFile, damaged(file, "a token id outside the vocabulary"));
  }
  std::string app_data(h.app_data_bytes, '\0');
  in.read(app_data.data(), std::streamsize(app_data.size()));

  conv.truncate(0);
  const int hd = int(h.head_dim), heads = int(h.kv_heads);
  const size_t row_floats = size_t(heads) * hd;
  std::vector<float> k(size_t(h.chunk_tokens) * row_floats), v(k.size());
  for (int p0 = 0; p0 < n; p0 += int(h.chunk_tokens)) {
    const int rows = std::min(int(h.chunk_tokens), n - p0);
    const auto bytes = std::streamsize(size_t(rows) * row_floats * sizeof(float));
    for (int l = 0; l < int(h.num_layers); ++l) {
      in.read(reinterpret_cast<char*>(k.data()), bytes);
      in.read(reinterpret_cast<char*>(v.data()), bytes);
      kv.write(l, p0, rows, k.data(), v.data());
    }
    kv.set_tokens(p0 + rows);
  }
  if (!in) {
    conv.truncate(0);
    throw Error(ErrorKind::kCorruptFile, damaged(file, "it could not be read to the end"));
  }
  conv.restore(std::move(tokens), int(h.rectified_upto));
  return app_data;
}

}  // namespace resa
