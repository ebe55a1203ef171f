// Hashes and encodings (OpenSSL EVP underneath): SHA-256, MD5, HMAC-SHA256, hex, base64,
// and random identifiers. Thread safety: each hasher object is used by one thread at a time;
// the free functions are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

struct evp_md_ctx_st;

namespace ingestfs {

// Incremental digest. Kind is fixed at construction.
class Digest {
 public:
  enum class Kind { kSha256, kMd5 };
  explicit Digest(Kind kind);
  ~Digest();
  Digest(Digest&&) noexcept;
  Digest& operator=(Digest&&) noexcept;
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;

  void Update(const void* data, size_t len);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  // Raw digest bytes; the object is reset and can be reused afterwards.
  std::string Finish();

 private:
  Kind kind_;
  evp_md_ctx_st* ctx_;
};

std::string Sha256(std::string_view data);  // raw 32 bytes
std::string Md5(std::string_view data);     // raw 16 bytes
std::string HmacSha256(std::string_view key, std::string_view data);  // raw 32 bytes

std::string HexEncode(std::string_view raw);  // lowercase
StatusOr<std::string> HexDecode(std::string_view hex);  // either case; odd length or non-hex is an error
std::string Base64Encode(std::string_view raw);
// Strict standard base64 (with padding); nullopt-like error on bad input.
StatusOr<std::string> Base64Decode(std::string_view text);

// Feeds bytes [offset, offset + length) of `fd` to `digest`, read in blocks of at most 1 MiB
// (the buffer is no larger than the range, and never zero-filled: small files are the common
// case). Returns how many bytes were read: fewer than `length` when the file ends first. `what`
// names the file in errors.
StatusOr<uint64_t> DigestRange(int fd, uint64_t offset, uint64_t length, Digest& digest, const std::string& what);
// Hex SHA-256 of a whole file.
StatusOr<std::string> Sha256FileHex(const std::string& path);

std::string RandomHex(size_t bytes);
std::string RandomUuid();  // version 4, lowercase, 8-4-4-4-12

}  // namespace ingestfs
