#include "common/names.h"

#include <string>

#include "common/strings.h"

namespace ingestfs {

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

namespace {
Status Bad(std::string_view name, const std::string& why) {
  return Status(Code::kInvalidArgument, "name '" + EscapeControl(name.substr(0, 200)) + "' " + why);
}
}  // namespace

Status ValidateFileName(std::string_view name) {
  if (name.empty()) return Bad(name, "is empty");
  if (name.size() > kMaxNameBytes) {
    return Bad(name, "is longer than " + std::to_string(kMaxNameBytes) + " bytes");
  }
  if (name.find('\0') != std::string_view::npos) return Bad(name, "contains a NUL byte");
  for (char ch : name) {
    // A newline or another control character breaks every line-oriented record of the name
    // (logs, status, receipts), and SMB clients cannot make one: refused, as platforms do.
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return Bad(name, "contains a control character");
  }
  if (!IsValidUtf8(name)) return Bad(name, "is not valid UTF-8");
  size_t start = 0;
  for (;;) {
    size_t p = name.find('/', start);
    std::string_view seg = name.substr(start, p == std::string_view::npos ? name.size() - start : p - start);
    if (seg.empty()) return Bad(name, "has an empty segment (leading, trailing or double '/')");
    if (seg == "." || seg == "..") return Bad(name, "has a '.' or '..' segment");
    if (seg.size() > kMaxSegmentBytes) {
      return Bad(name, "has a segment longer than " + std::to_string(kMaxSegmentBytes) + " bytes");
    }
    if (p == std::string_view::npos) break;
    start = p + 1;
  }
  return Status::Ok();
}

Status ValidateDatasetName(std::string_view name) {
  if (name.find('/') != std::string_view::npos) return Bad(name, "contains '/'");
  return ValidateFileName(name);
}

}  // namespace ingestfs
