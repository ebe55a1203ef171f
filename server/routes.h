// Route registration for the reference server: one function per dialect plus the data plane.
#pragma once

#include "server/context.h"
#include "server/http.h"

namespace ingestfs::server {

// Dialect `ingest` under /api (platform-api.md, "Dialect ingest").
void RegisterIngestApi(Router& router, ServerContext& ctx);
// S3 path-style data plane at /<bucket>/<key> (presigned PUT, UploadPart, GET with Range).
void RegisterDataPlane(Router& router, ServerContext& ctx);

}  // namespace ingestfs::server
