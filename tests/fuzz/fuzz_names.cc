// Name validation and the small parsers of user and peer text: file and dataset names, control
// character escaping, mount table octal escapes, URI encoding and redaction, sizes, rates, durations, ISO 8601 times.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/names.h"
#include "common/strings.h"
#include "common/time_util.h"

using namespace ingestfs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  Status file = ValidateFileName(s);
  (void)ValidateDatasetName(s);
  // A name that passes never holds what the platform's rules forbid.
  if (file.ok() && (s.empty() || s.find('\0') != std::string_view::npos)) {
    __builtin_trap();
  }
  // A message about a name stays one line.
  if (!file.ok() && file.message().find('\n') != std::string::npos) __builtin_trap();
  std::string escaped = EscapeControl(s);
  for (unsigned char c : escaped) {
    if (c < 0x20 || c == 0x7f) __builtin_trap();
  }
  (void)UriEncode(s, true);
  (void)UriEncode(s, false);
  (void)RedactUrl(s);
  (void)ParseSize(s);
  (void)ParseRate(s);
  (void)ParseDuration(s);
  (void)ParseIso8601Utc(s);
  // Undoing octal escapes never lengthens a field.
  if (UnescapeOctal(s).size() > s.size()) __builtin_trap();
  return 0;
}
