// The S3 path-style data plane: /<bucket>/<key>, authenticated by SigV4 presigned query
// strings exactly as S3 checks them. PUT stores an object; PUT with partNumber & uploadId
// stores a multipart part; GET (and HEAD) serve an object, with Range. Bodies stream to disk.
#include <fcntl.h>
#include <unistd.h>

#include <memory>

#include "common/crypto.h"
#include "common/strings.h"
#include "server/routes.h"

namespace ingestfs::server {

namespace {

struct Target {
  std::string bucket;
  std::string key;
  std::string path;   // decoded "/bucket/key"
  QueryParams query;  // decoded
};

// Parses the raw request target ourselves, so that '+' and escapes are read as S3 reads them.
std::optional<Target> ParseTarget(const std::string& raw) {
  size_t q = raw.find('?');
  auto path = UriDecode(raw.substr(0, q));
  if (!path.ok() || path->size() < 2 || (*path)[0] != '/') return std::nullopt;
  Target t;
  t.path = *path;
  size_t slash = t.path.find('/', 1);
  if (slash == std::string::npos) return std::nullopt;
  t.bucket = t.path.substr(1, slash - 1);
  t.key = t.path.substr(slash + 1);
  if (t.key.empty()) return std::nullopt;
  if (q != std::string::npos) {
    for (const std::string& pair : Split(raw.substr(q + 1), '&')) {
      if (pair.empty()) continue;
      size_t eq = pair.find('=');
      auto k = UriDecode(pair.substr(0, eq));
      auto v = UriDecode(eq == std::string::npos ? "" : pair.substr(eq + 1));
      if (!k.ok() || !v.ok()) return std::nullopt;
      t.query.emplace_back(*k, *v);
    }
  }
  return t;
}

std::optional<std::string> QueryValue(const QueryParams& q, const std::string& name) {
  for (const auto& [k, v] : q) {
    if (k == name) return v;
  }
  return std::nullopt;
}

void Drain(Call& c) {
  c.read_body([](const char*, size_t) { return true; });
}

// Resolves and authenticates the request; replies (after draining the body) and returns nullopt
// on failure.
std::optional<Target> Authenticate(Call& c, ServerContext& ctx) {
  auto t = ParseTarget(c.req.target);
  if (!t) {
    Drain(c);
    ReplyS3Error(c.res, {400, "InvalidURI", "Couldn't parse the specified URI."}, c.req.path);
    return std::nullopt;
  }
  if (t->bucket == "api") {
    Drain(c);
    ReplyDetail(c.res, 404, "Not Found");
    return std::nullopt;
  }
  if (t->bucket != ctx.opts.bucket) {
    Drain(c);
    ReplyS3Error(c.res, {404, "NoSuchBucket", "The specified bucket does not exist"}, "/" + t->bucket);
    return std::nullopt;
  }
  VerifyInput in;
  in.method = c.req.method;
  in.path = t->path;
  in.query = t->query;
  in.now = std::time(nullptr);
  in.header = [&c](const std::string& name) -> std::optional<std::string> {
    if (!c.req.has_header(name)) return std::nullopt;
    return c.req.get_header_value(name);
  };
  if (auto err = Verify(ctx.creds, in)) {
    Drain(c);
    ReplyS3Error(c.res, *err, t->path);
    return std::nullopt;
  }
  return t;
}

void HandlePut(Call& c, ServerContext& ctx) {
  auto t = Authenticate(c, ctx);
  if (!t) return;
  auto part_number_text = QueryValue(t->query, "partNumber");
  auto upload_id = QueryValue(t->query, "uploadId");
  int part_number = 0;
  if (part_number_text || upload_id) {
    auto n = part_number_text ? ParseInt(*part_number_text) : std::nullopt;
    if (!n || *n < 1 || *n > static_cast<int64_t>(kMaxParts) || !upload_id) {
      Drain(c);
      return ReplyS3Error(c.res, {400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive"},
                          t->path);
    }
    part_number = static_cast<int>(*n);
    auto up = ctx.meta->GetUpload(*upload_id);
    if (!up || up->key != t->key || up->bucket != t->bucket) {
      Drain(c);
      return ReplyS3Error(c.res, {404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, "
                                                       "or the upload may have been aborted or completed."},
                          t->path);
    }
  }
  if (!c.req.has_header("Content-Length")) {
    return ReplyS3Error(c.res, {411, "MissingContentLength", "You must provide the Content-Length HTTP header."}, t->path);
  }
  auto declared = ParseInt(c.req.get_header_value("Content-Length"));
  if (!declared || static_cast<uint64_t>(*declared) > kMaxPartSize) {
    c.res.set_header("Connection", "close");
    return ReplyS3Error(c.res, {400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"}, t->path);
  }
  std::optional<std::string> want_md5;
  if (c.req.has_header("Content-MD5")) {
    auto raw = Base64Decode(std::string(Trim(c.req.get_header_value("Content-MD5"))));
    if (!raw.ok() || raw->size() != 16) {
      Drain(c);
      return ReplyS3Error(c.res, {400, "InvalidDigest", "The Content-MD5 you specified was invalid."}, t->path);
    }
    want_md5 = *raw;
  }
  auto writer = ctx.objects->NewWriter();
  if (!writer.ok()) {
    Drain(c);
    return ReplyS3Error(c.res, {500, "InternalError", writer.status().message()}, t->path);
  }
  Status write_status;
  bool complete = c.read_body([&](const char* data, size_t len) {
    write_status = (*writer)->Append(data, len);
    return write_status.ok();
  });
  if (!write_status.ok()) {
    return ReplyS3Error(c.res, {500, "InternalError", "storing the body failed: " + write_status.message()}, t->path);
  }
  if (!complete || (*writer)->size() != static_cast<uint64_t>(*declared)) {
    return ReplyS3Error(c.res, {400, "IncompleteBody", "You did not provide the number of bytes specified by the "
                                                       "Content-Length HTTP header."},
                        t->path);
  }
  auto md5 = (*writer)->Finish();
  if (!md5.ok()) return ReplyS3Error(c.res, {500, "InternalError", md5.status().message()}, t->path);
  if (want_md5 && *want_md5 != *md5) {
    return ReplyS3Error(c.res, {400, "BadDigest", "The Content-MD5 you specified did not match what we received."},
                        t->path);
  }
  Status st = part_number > 0 ? ctx.objects->CommitPart(**writer, *md5, *upload_id, part_number)
                              : ctx.objects->CommitObject(**writer, *md5, t->bucket, t->key);
  if (!st.ok()) return ReplyS3Error(c.res, {500, "InternalError", st.message()}, t->path);
  c.res.status = 200;
  c.res.set_header("ETag", QuotedEtag(*md5));
}

void HandleGet(Call& c, ServerContext& ctx) {
  auto t = Authenticate(c, ctx);
  if (!t) return;
  auto obj = ctx.objects->StatObject(t->bucket, t->key);
  if (!obj) return ReplyS3Error(c.res, {404, "NoSuchKey", "The specified key does not exist."}, t->path);
  auto fd = std::make_shared<UniqueFd>(::open(obj->path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd->valid()) return ReplyS3Error(c.res, {404, "NoSuchKey", "The specified key does not exist."}, t->path);
  c.res.set_header("ETag", obj->etag);
  c.res.set_header("Accept-Ranges", "bytes");
  auto throttle = c.throttle;
  std::string path = obj->path;
  // Status is left to httplib: 200, or 206 with Content-Range when a Range was asked for.
  c.res.set_content_provider(obj->size, "application/octet-stream",
                             [fd, throttle, path](size_t offset, size_t length, httplib::DataSink& sink) {
                               char buf[65536];
                               size_t want = std::min(length, sizeof(buf));
                               auto n = PreadAll(fd->get(), buf, want, offset, path);
                               if (!n.ok() || *n == 0) return false;
                               throttle(*n);
                               return sink.write(buf, *n);
                             });
}

}  // namespace

void RegisterDataPlane(Router& r, ServerContext& ctx) {
  r.Route("PUT", "/([^/]+)/(.+)", Plane::kData, [&ctx](Call& c) { HandlePut(c, ctx); });
  r.Route("GET", "/([^/]+)/(.+)", Plane::kData, [&ctx](Call& c) { HandleGet(c, ctx); });
}

}  // namespace ingestfs::server
