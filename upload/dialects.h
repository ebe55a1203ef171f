// The platform dialects by name (platform-api.md): ingest (the default), sbg, aplos.
#pragma once

#include <memory>
#include <string>

#include "upload/api_client.h"
#include "upload/dialect.h"

namespace ingestfs::upload {

inline constexpr char kDialectNames[] = "ingest, sbg, aplos";

bool IsDialect(const std::string& name);

struct DialectOptions {
  uint64_t post_limit = 0;  // aplos: the platform's single-POST limit (0: S3's 5 GiB)
  ApiLimits limits;         // bounds on the platform's answers
};
// The dialect `name` talking to the control API at `api` with `token`; nullptr for an unknown name.
std::unique_ptr<Dialect> MakeDialect(const std::string& name, const std::string& api, const std::string& token,
                                     ClientPool& pool, const DialectOptions& options = {});

}  // namespace ingestfs::upload
