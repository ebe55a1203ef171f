#include "common/crypto.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <vector>

#include "common/file_util.h"

namespace ingestfs {

namespace {
const EVP_MD* MdFor(Digest::Kind kind) {
  return kind == Digest::Kind::kSha256 ? EVP_sha256() : EVP_md5();
}
}  // namespace

Digest::Digest(Kind kind) : kind_(kind), ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, MdFor(kind_), nullptr) != 1) {
    throw std::runtime_error("OpenSSL digest init failed");
  }
}

Digest::~Digest() {
  if (ctx_ != nullptr) EVP_MD_CTX_free(ctx_);
}

Digest::Digest(Digest&& other) noexcept : kind_(other.kind_), ctx_(other.ctx_) {
  other.ctx_ = nullptr;
}

Digest& Digest::operator=(Digest&& other) noexcept {
  if (this != &other) {
    if (ctx_ != nullptr) EVP_MD_CTX_free(ctx_);
    kind_ = other.kind_;
    ctx_ = other.ctx_;
    other.ctx_ = nullptr;
  }
  return *this;
}

void Digest::Update(const void* data, size_t len) {
  if (len > 0) EVP_DigestUpdate(ctx_, data, len);
}

std::string Digest::Finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_, out, &n);
  EVP_DigestInit_ex(ctx_, MdFor(kind_), nullptr);
  return std::string(reinterpret_cast<char*>(out), n);
}

std::string Sha256(std::string_view data) {
  Digest d(Digest::Kind::kSha256);
  d.Update(data);
  return d.Finish();
}

std::string Md5(std::string_view data) {
  Digest d(Digest::Kind::kMd5);
  d.Update(data);
  return d.Finish();
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &n);
  return std::string(reinterpret_cast<char*>(out), n);
}

std::string HexEncode(std::string_view raw) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

StatusOr<std::string> HexDecode(std::string_view hex) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) return Status(Code::kInvalidArgument, "hex text of odd length");
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return Status(Code::kInvalidArgument, "not hex text");
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

std::string Base64Encode(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

StatusOr<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return Status(Code::kInvalidArgument, "base64 text length is not a multiple of 4");
  }
  for (char c : text) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '=';
    if (!ok) return Status(Code::kInvalidArgument, "base64 text has a character outside the alphabet");
  }
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return Status(Code::kInvalidArgument, "base64 text does not decode");
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad++;
  if (text.size() > 1 && text[text.size() - 2] == '=') pad++;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

StatusOr<uint64_t> DigestRange(int fd, uint64_t offset, uint64_t length, Digest& digest, const std::string& what) {
  size_t cap = static_cast<size_t>(std::clamp<uint64_t>(length, 1, 1 << 20));
  auto buf = std::make_unique_for_overwrite<char[]>(cap);
  uint64_t done = 0;
  while (done < length) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(cap, length - done));
    ASSIGN_OR_RETURN(size_t n, PreadAll(fd, buf.get(), want, offset + done, what));
    if (n == 0) break;
    digest.Update(buf.get(), n);
    done += n;
  }
  return done;
}

StatusOr<std::string> Sha256FileHex(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  Digest d(Digest::Kind::kSha256);
  // To the end, even if the file grew after the fstat.
  uint64_t off = 0;
  for (uint64_t want = std::max<uint64_t>(static_cast<uint64_t>(st.st_size), 1);; want = 1 << 20) {
    ASSIGN_OR_RETURN(uint64_t n, DigestRange(fd.get(), off, want, d, path));
    off += n;
    if (n < want) break;
  }
  return HexEncode(d.Finish());
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
  return HexEncode(raw);
}

std::string RandomUuid() {
  std::string raw(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), 16) != 1) {
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
  raw[6] = static_cast<char>((raw[6] & 0x0f) | 0x40);
  raw[8] = static_cast<char>((raw[8] & 0x3f) | 0x80);
  std::string h = HexEncode(raw);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}

}  // namespace ingestfs
