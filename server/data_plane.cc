// The S3 path-style data plane: /<bucket>/<key>, authenticated by SigV4 presigned query
// strings exactly as S3 checks them. PUT stores an object; PUT with partNumber & uploadId
// stores a multipart part; GET (and HEAD) serve an object, with Range. Bodies stream to disk.
#include <fcntl.h>
#include <unistd.h>

#include <ctime>
#include <memory>

#include "common/crypto.h"
#include "common/strings.h"
#include "server/api_common.h"
#include "server/processor.h"
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
  // The sbg platform may tell its clients to expect another success code from its store.
  auto job = part_number > 0 ? JobOfStagingKey(ctx, t->key) : std::nullopt;
  c.res.status = job && job->dialect == "sbg" ? ctx.opts.sbg_part_status : 200;
  c.res.set_header("ETag", QuotedEtag(*md5));
}

// Browser-based upload (aplos): POST /<bucket> with multipart/form-data, the policy's fields
// first and the file last; fields after the file are ignored, as S3 does. The policy is checked
// before a byte of the file is stored; the size once it has arrived. Success is 204 (or the
// form's success_action_status of 200 or 201), with the ETag; a job's staging key is published
// as its file before the answer.
void HandlePost(Call& c, ServerContext& ctx) {
  std::string bucket = c.req.matches[1];
  std::string resource = "/" + bucket;
  if (bucket == "api") {
    Drain(c);
    return ReplyDetail(c.res, 404, "Not Found");
  }
  if (bucket != ctx.opts.bucket) {
    Drain(c);
    return ReplyS3Error(c.res, {404, "NoSuchBucket", "The specified bucket does not exist"}, resource);
  }
  if (!c.req.is_multipart_form_data()) {
    Drain(c);
    return ReplyS3Error(c.res, {412, "PreconditionFailed", "Bucket POST must be of the enclosure-type multipart/form-data"},
                        resource);
  }
  QueryParams fields;
  std::string current;       // the part being read
  bool in_file = false, after_file = false;
  std::optional<S3Error> error;
  PostGrant grant;
  std::unique_ptr<BlobWriter> writer;
  Status write_status;
  bool complete = c.read_form(
      [&](const httplib::MultipartFormData& part) {
        if (after_file || in_file) {
          in_file = false;
          after_file = true;
          return true;
        }
        if (part.name == "file") {
          in_file = true;
          if (error) return true;
          PostVerdict v = VerifyPost(ctx.creds, bucket, fields, std::time(nullptr));
          if (v.error) {
            error = v.error;
            return true;
          }
          grant = v.grant;
          auto w = ctx.objects->NewWriter();
          if (!w.ok()) {
            error = S3Error{500, "InternalError", w.status().message()};
            return true;
          }
          writer = std::move(w).value();
          return true;
        }
        fields.emplace_back(part.name, "");
        return true;
      },
      [&](const char* data, size_t len) {
        if (after_file) return true;
        if (!in_file) {
          if (fields.empty() || fields.back().second.size() + len > 65536) {
            error = S3Error{400, "MaxPostPreDataLengthExceeded",
                            "Your POST request fields preceeding the upload file was too large."};
            return true;
          }
          fields.back().second.append(data, len);
          return true;
        }
        if (error || !writer || !write_status.ok()) return true;  // keep reading; answer at the end
        if (writer->size() + len > grant.max_size) {
          error = S3Error{400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"};
          return true;
        }
        write_status = writer->Append(data, len);
        return true;
      });
  if (!error && !write_status.ok()) error = S3Error{500, "InternalError", "storing the body failed: " + write_status.message()};
  if (!error && !complete) error = S3Error{400, "IncompleteBody", "The request body was cut short."};
  if (!error && !writer) {
    error = S3Error{400, "InvalidArgument", "POST requires exactly one file upload per request."};
  }
  if (!error && writer->size() < grant.min_size) {
    error = S3Error{400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size"};
  }
  if (error) return ReplyS3Error(c.res, *error, resource + "/" + grant.key);
  auto md5 = writer->Finish();
  if (!md5.ok()) return ReplyS3Error(c.res, {500, "InternalError", md5.status().message()}, resource);
  auto job = JobOfStagingKey(ctx, grant.key);
  Status st = ctx.objects->CommitObject(*writer, *md5, bucket, grant.key);
  if (!st.ok()) return ReplyS3Error(c.res, {500, "InternalError", st.message()}, resource);
  if (job && job->dialect == "aplos" && job->status == JobStatus::kAwaitingUpload) {
    // Accepted as the other dialects' completes are, so it takes its place in the order of
    // accepted uploads (a POST that bypassed it could never supersede an upload made through
    // another dialect, nor be stored after it).
    auto accepted = ctx.meta->AcceptUpload(job->job_id, writer->size());
    if (!accepted.ok() && accepted.status().code() != Code::kFailedPrecondition) {
      return ReplyS3Error(c.res, {500, "InternalError", accepted.status().message()}, resource);
    }
    ctx.processor->ProcessNow(job->job_id);
    auto after = ctx.meta->GetJob(job->job_id);
    if (!after || after->status != JobStatus::kCompleted) {
      return ReplyS3Error(c.res, {500, "InternalError", "the upload could not be stored: " +
                                                            (after ? after->message : std::string("job lost"))},
                          resource);
    }
  }
  int status = 204;
  for (const auto& [k, v] : fields) {
    if (ToLower(k) == "success_action_status" && (v == "200" || v == "201")) status = v == "200" ? 200 : 201;
  }
  c.res.status = status;
  c.res.set_header("ETag", QuotedEtag(*md5));
  c.res.set_header("Location", ctx.public_url + UriEncode("/" + bucket + "/" + grant.key, true));
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
  r.Route("POST", "/([^/]+)/?", Plane::kData, [&ctx](Call& c) { HandlePost(c, ctx); });
}

}  // namespace ingestfs::server
