// KV snapshots: a conversation's tokens, KV cache and rectified frontier in one versioned,
// checksummed file, so a long-document chat reopened after a restart does not re-process the
// document (issue 3, item 6). A snapshot is tied to the model (config hash, weight bytes, an
// identity string from the caller) and to the KV layout (block size, heads, head_dim); loading
// refuses anything else, and a damaged file, with an error that says what and what to do.
//
// File layout (little-endian):
//   "RESAKVSN", u32 version, u32 size of the header fields, the fields (see kv_snapshot.cpp),
//   u64 xxhash64 of the fields;
//   payload: tokens i32[n], `app_data` bytes, then per chunk of chunk_tokens positions, per
//   layer: K [rows][kv_heads][head_dim] f32 then V (same shape); u64 xxhash64 of the payload.
// K/V are stored as f32 whatever the cache keeps (bf16 on a GPU converts back exactly); the
// block summaries are recomputed on load (min / max are exact, so they come back bit-equal).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace resa {

class Conversation;
class Model;

struct ModelFingerprint {
  uint64_t config_hash = 0;  // every config field that changes the K/V a model writes
  uint64_t weight_bytes = 0;
  std::string identity;  // the caller's name for the weights (folder + file sizes, preset
                         // + seed)

  bool operator==(const ModelFingerprint&) const = default;
  std::string hex() const;  // short printable form
};

ModelFingerprint model_fingerprint(const Model& model, const std::string& identity);

struct SnapshotInfo {
  uint32_t version = 0;
  ModelFingerprint model;
  int block_size = 0;
  int num_layers = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int token_count = 0;
  int rectified_upto = 0;
  uint64_t payload_bytes = 0;
};

constexpr uint32_t kKvSnapshotVersion = 1;

// Writes to `path` atomically (a temporary file renamed over it). Saves the tokens that have
// K/V (kv().tokens() of them); tokens not yet processed (after an answer, at least its last
// sampled token) are the caller's to keep, e.g. in `app_data`, which is stored verbatim and
// returned by load. Throws resa::Error naming the file on an I/O failure.
void save_kv_snapshot(const std::filesystem::path& path, const Conversation& conv,
                      const ModelFingerprint& model, const std::string& app_data = {});

// Reads only the header (cheap). Throws resa::Error(kCorruptFile / kUnsupported).
SnapshotInfo read_kv_snapshot_info(const std::filesystem::path& path);

// Replaces the conversation's tokens and KV cache with the snapshot's. Refuses (throws
// resa::Error, the conversation untouched) a snapshot of another model (kUnsupported), of
// another block size or KV shape (kUnsupported), one that does not fit the conversation's
// context limit (kContextFull), or a damaged / truncated file (kCorruptFile). Returns app_data.
std::string load_kv_snapshot(const std::filesystem::path& path, Conversation& conv,
                             const ModelFingerprint& model);

// xxHash64 (the reference algorithm), used for the checksums.
uint64_t xxhash64(const void* data, size_t size, uint64_t seed = 0);

}  // namespace resa
