// The client's parsers of a platform's answers, all three dialects: presign / init / upload-URL
// answers, part and job answers, error bodies, listings (items walked as ListFiles does), and the
// expiry a presigned URL carries in its own query (X-Amz-Date + X-Amz-Expires).
// The first byte picks the parser; the rest is the answer. A crash, a sanitizer report or an
// answer taken whole that breaks the parser's own rules is a finding.
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>

#include "common/json.h"
#include "upload/aplos_dialect.h"
#include "upload/api_client.h"
#include "upload/errors.h"
#include "upload/ingest_dialect.h"
#include "upload/sbg_dialect.h"

using namespace ingestfs;
using namespace ingestfs::upload;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t pick = data[0];
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  const uint64_t file_size = (pick & 0x80) ? (64ULL << 20) + 3 : 1000;
  const bool overwrite = (pick & 0x40) != 0;
  switch (pick % 8) {
    case 0: (void)IngestDialect::ParsePresign(body, file_size, overwrite); break;
    case 1: (void)IngestDialect::ParseJob(body); break;
    case 2: (void)SbgDialect::ParseInit(body, file_size, overwrite); break;
    case 3: (void)SbgDialect::ParsePart(body); break;
    case 4: (void)AplosDialect::ParseUploadUrl(body, file_size, overwrite); break;
    case 5: {
      HttpResponse res;
      res.status = 400 + (pick >> 3) % 200;
      res.body = body;
      (void)StatusFromHttp(res, "fuzz");
      (void)ErrorText(body);
      break;
    }
    case 7: {  // a presigned URL's own expiry: once expired, it stays expired
      const std::time_t now = 1796299200;  // 2026-12-03T12:00:00Z
      if (PresignedUrlExpired(body, now) && !PresignedUrlExpired(body, now + 86400)) __builtin_trap();
      break;
    }
    default: {  // a listing page, walked as the dialects walk it
      auto doc = json::Parse(body, "listing");
      if (!doc.ok()) break;
      const json::Value* items = json::Find(*doc, "items");
      if (items == nullptr || !items->IsArray()) break;
      for (const auto& v : items->GetArray()) {
        auto name = json::GetString(v, "filename", 4096);
        auto sz = json::GetInt(v, "size");
        if (!name.ok() || !sz.ok()) continue;
        auto f = ApiClient::ListedFile("fuzz", *name, *sz, json::StringOr(v, "updated_at"));
        if (f && f->size > ApiClient::kMaxListedSize) __builtin_trap();
      }
      (void)json::GetInt(*doc, "total");
      break;
    }
  }
  return 0;
}
