// Route registration for the reference server: one function per dialect plus the data plane.
#pragma once

#include "server/context.h"
#include "server/http.h"

namespace ingestfs::server {

// Dialect `ingest` under /api (platform-api.md, "Dialect ingest").
void RegisterIngestApi(Router& router, ServerContext& ctx);
// Dialect `sbg` under /api (projects, files, multipart upload with per-part URLs and reports).
void RegisterSbgApi(Router& router, ServerContext& ctx);
// Dialect `aplos` under /api/nca-engine (presigned POST upload, listing by prefix).
void RegisterAplosApi(Router& router, ServerContext& ctx);
// Over an external S3 store the aplos POST goes to the store, which tells the platform nothing:
// this looks (HeadObject) at the staging key of every aplos upload still awaiting its file and
// takes in those that arrived, as the built-in data plane does when it answers the POST; forms
// that expired unused (a minute past their lifetime) fail. One call at a time; the listing and
// download routes call it first, and the server every second.
void ReconcileAplosUploads(ServerContext& ctx);
// S3 path-style data plane at /<bucket>/<key> (presigned PUT, UploadPart, GET with Range,
// POST form uploads under a policy).
void RegisterDataPlane(Router& router, ServerContext& ctx);

}  // namespace ingestfs::server
