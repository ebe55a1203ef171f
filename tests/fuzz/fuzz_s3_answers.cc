// An external S3 store's XML answers, as the reference server reads them (server/s3_client):
// InitiateMultipartUploadResult, ListPartsResult, CompleteMultipartUploadResult and <Error>.
// The first byte picks the parser; whatever they return must be consistent (parts numbered
// 1..10000, quoted ETags, a marker when truncated) and never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/s3_client.h"

using namespace ingestfs;
using namespace ingestfs::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string xml(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0: {
      auto id = ParseInitiateMultipart(xml);
      if (id.ok() && id->empty()) std::abort();
      break;
    }
    case 1: {
      auto page = ParseListParts(xml);
      if (!page.ok()) break;
      for (const S3Part& p : page->parts) {
        if (p.number < 1 || p.number > 10000 || p.etag.size() < 2 || p.etag.front() != '"' || p.etag.back() != '"') {
          std::abort();
        }
      }
      if (page->truncated && (page->next_marker < 1 || page->next_marker > 10000)) std::abort();
      break;
    }
    case 2: {
      auto etag = ParseCompleteMultipart(xml);
      if (etag.ok() && !etag->empty() && (etag->front() != '"' || etag->back() != '"')) std::abort();
      break;
    }
    default: {
      auto err = ParseErrorBody(xml);
      if (err && (err->code.find('\n') != std::string::npos || err->message.find('\n') != std::string::npos)) {
        std::abort();
      }
      break;
    }
  }
  return 0;
}
