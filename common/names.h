// The platform's rules for file names (platform-api.md, "Names"): a path relative to its
// dataset, '/'-separated, UTF-8, no empty / "." / ".." segment, no NUL, at most 1024 bytes in
// all and 255 bytes a segment. Every module checks names with this one function.
#pragma once

#include <string_view>

#include "common/status.h"

namespace ingestfs {

inline constexpr size_t kMaxNameBytes = 1024;
inline constexpr size_t kMaxSegmentBytes = 255;

// OK, or kInvalidArgument with a message that says which rule the name breaks.
Status ValidateFileName(std::string_view name);
// A dataset name is a single segment by the same rules.
Status ValidateDatasetName(std::string_view name);
// Whether `s` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(std::string_view s);

}  // namespace ingestfs
