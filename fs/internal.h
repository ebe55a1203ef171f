// Small helpers shared by the files of IngestFs (ingest_fs.cc, versions.cc, namespace_ops.cc,
// platform_view.cc, status_files.cc). Not part of the module's interface.
#pragma once

#include <ctime>
#include <string>

#include "common/status.h"

namespace ingestfs::fs {

inline int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

// A Status that the adapter answers with errno `err`.
inline Status Errno(int err, const std::string& what) { return Status(Code::kInvalidArgument, what, err); }

}  // namespace ingestfs::fs
