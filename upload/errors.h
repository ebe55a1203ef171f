// How HTTP answers become Status, in one place (after gcsfuse's error_mapping): the code decides
// retry or stop, the message carries what the server said (FastAPI "detail"/"msg", or S3 XML
// <Code>/<Message>) and names the step.
//   2xx -> OK; 401 -> kUnauthenticated; 403 "Request has expired" -> kDeadlineExceeded (get a
//   fresh URL); other 403 -> kPermissionDenied; 404 -> kNotFound; 409 -> kAlreadyExists;
//   400/422 -> kInvalidArgument; 408/429/5xx -> kUnavailable (with Retry-After when given).
#pragma once

#include <ctime>
#include <string>

#include "common/status.h"
#include "upload/http_client.h"

namespace ingestfs::upload {

Status StatusFromHttp(const HttpResponse& res, const std::string& step);
// The human part of an error body: detail / msg / S3 <Message>, cut to a sane length.
std::string ErrorText(const std::string& body);
// A transient failure worth retrying after a pause.
bool IsTransient(const Status& st);
// A presigned URL that has expired (fresh URLs needed, not a pause).
inline bool IsExpiredUrl(const Status& st) { return st.code() == Code::kDeadlineExceeded; }
// True when a SigV4 presigned URL's lifetime (X-Amz-Date + X-Amz-Expires) is over at `now`.
// Ceph RGW answers an expired URL with a bare 403 AccessDenied, without S3's "Request has
// expired": a 403 on a URL this says is expired is taken as expiry. False when the URL carries
// no such parameters or they do not parse.
bool PresignedUrlExpired(const std::string& url, std::time_t now);

}  // namespace ingestfs::upload
