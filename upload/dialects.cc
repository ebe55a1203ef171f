#include "upload/dialects.h"

#include "upload/aplos_dialect.h"
#include "upload/ingest_dialect.h"
#include "upload/sbg_dialect.h"

namespace ingestfs::upload {

bool IsDialect(const std::string& name) { return name == "ingest" || name == "sbg" || name == "aplos"; }

std::unique_ptr<Dialect> MakeDialect(const std::string& name, const std::string& api, const std::string& token,
                                     ClientPool& pool, const DialectOptions& options) {
  if (name == "ingest") return std::make_unique<IngestDialect>(api, token, pool, options.limits);
  if (name == "sbg") return std::make_unique<SbgDialect>(api, token, pool, 8ULL << 20, options.limits);
  if (name == "aplos") return std::make_unique<AplosDialect>(api, token, pool,
                                                             options.post_limit > 0 ? options.post_limit : AplosDialect::kMaxPost,
                                                             options.limits);
  return nullptr;
}

}  // namespace ingestfs::upload
