#include "server/s3_client.h"

#include <httplib.h>
#include <tinyxml2.h>

#include <chrono>
#include <ctime>
#include <thread>

#include "common/crypto.h"
#include "common/log.h"
#include "common/strings.h"
#include "server/http.h"

namespace ingestfs::server {

namespace {

// The text of root's child `name`, or nullopt.
std::optional<std::string> ChildText(const tinyxml2::XMLElement* parent, const char* name) {
  const tinyxml2::XMLElement* e = parent->FirstChildElement(name);
  if (e == nullptr) return std::nullopt;
  const char* t = e->GetText();
  return std::string(t != nullptr ? t : "");
}

StatusOr<const tinyxml2::XMLElement*> Root(tinyxml2::XMLDocument& doc, const std::string& xml, const char* want,
                                           const char* what) {
  if (doc.Parse(xml.data(), xml.size()) != tinyxml2::XML_SUCCESS) {
    return Status(Code::kBadAnswer, std::string(what) + ": the store's answer is not XML");
  }
  const tinyxml2::XMLElement* root = doc.RootElement();
  if (root == nullptr || std::string(root->Name()) != want) {
    return Status(Code::kBadAnswer, std::string(what) + ": the store's answer is not a " + want);
  }
  return root;
}

std::string Quoted(std::string etag) {
  etag = std::string(Trim(etag));
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') return etag;
  return "\"" + etag + "\"";
}

}  // namespace

std::optional<S3ErrorBody> ParseErrorBody(const std::string& xml) {
  tinyxml2::XMLDocument doc;
  if (doc.Parse(xml.data(), xml.size()) != tinyxml2::XML_SUCCESS) return std::nullopt;
  const tinyxml2::XMLElement* root = doc.RootElement();
  if (root == nullptr || std::string(root->Name()) != "Error") return std::nullopt;
  S3ErrorBody e;
  e.code = EscapeControl(ChildText(root, "Code").value_or(""));
  e.message = EscapeControl(ChildText(root, "Message").value_or(""));
  return e;
}

StatusOr<std::string> ParseInitiateMultipart(const std::string& xml) {
  tinyxml2::XMLDocument doc;
  ASSIGN_OR_RETURN(const tinyxml2::XMLElement* root,
                   Root(doc, xml, "InitiateMultipartUploadResult", "starting a multipart upload"));
  auto id = ChildText(root, "UploadId");
  if (!id || id->empty()) return Status(Code::kBadAnswer, "starting a multipart upload: the store gave no UploadId");
  return *id;
}

StatusOr<ListPartsPage> ParseListParts(const std::string& xml) {
  tinyxml2::XMLDocument doc;
  ASSIGN_OR_RETURN(const tinyxml2::XMLElement* root, Root(doc, xml, "ListPartsResult", "listing parts"));
  ListPartsPage page;
  page.truncated = ChildText(root, "IsTruncated").value_or("false") == "true";
  for (const tinyxml2::XMLElement* p = root->FirstChildElement("Part"); p != nullptr;
       p = p->NextSiblingElement("Part")) {
    auto n = ParseInt(ChildText(p, "PartNumber").value_or(""));
    auto size = ParseInt(ChildText(p, "Size").value_or(""));
    auto etag = ChildText(p, "ETag");
    if (!n || *n < 1 || *n > 10000 || !size || *size < 0 || !etag || etag->empty()) {
      return Status(Code::kBadAnswer, "listing parts: a <Part> without a valid PartNumber, Size or ETag");
    }
    page.parts.push_back({static_cast<int>(*n), static_cast<uint64_t>(*size), Quoted(*etag)});
  }
  if (page.truncated) {
    auto next = ParseInt(ChildText(root, "NextPartNumberMarker").value_or(""));
    if (!next || *next < 1 || *next > 10000) {
      return Status(Code::kBadAnswer, "listing parts: truncated without a valid NextPartNumberMarker");
    }
    page.next_marker = static_cast<int>(*next);
  }
  return page;
}

StatusOr<std::string> ParseCompleteMultipart(const std::string& xml) {
  if (auto err = ParseErrorBody(xml)) {
    return Status(Code::kUnavailable, "completing the multipart upload: the store answered " + err->code +
                                          (err->message.empty() ? "" : " (" + err->message + ")"));
  }
  tinyxml2::XMLDocument doc;
  ASSIGN_OR_RETURN(const tinyxml2::XMLElement* root,
                   Root(doc, xml, "CompleteMultipartUploadResult", "completing the multipart upload"));
  auto etag = ChildText(root, "ETag");
  if (!etag) return Status(Code::kBadAnswer, "completing the multipart upload: no ETag in the answer");
  return etag->empty() ? std::string() : Quoted(*etag);
}

S3Client::S3Client(S3Config cfg) : cfg_(std::move(cfg)) {
  while (!cfg_.endpoint.empty() && cfg_.endpoint.back() == '/') cfg_.endpoint.pop_back();
  std::string rest = cfg_.endpoint;
  bool https = StartsWith(rest, "https://");
  size_t scheme = rest.find("://");
  if (scheme != std::string::npos) rest = rest.substr(scheme + 3);
  // httplib sends the port in Host only when it is not the scheme's default.
  if (https && rest.size() > 4 && rest.substr(rest.size() - 4) == ":443") rest.resize(rest.size() - 4);
  if (!https && rest.size() > 3 && rest.substr(rest.size() - 3) == ":80") rest.resize(rest.size() - 3);
  host_ = rest;
}

SigV4Credentials S3Client::credentials() const {
  SigV4Credentials c;
  c.access_key = cfg_.access_key;
  c.secret_key = cfg_.secret_key;
  c.region = cfg_.region;
  return c;
}

std::string S3Client::PresignUrl(const std::string& method, const std::string& key, const QueryParams& extra, long ttl,
                                 const std::vector<std::pair<std::string, std::string>>& signed_headers) const {
  PresignInput in;
  in.method = method;
  in.host = host_;
  in.path = "/" + cfg_.bucket + (key.empty() ? "" : "/" + key);
  in.extra_query = extra;
  in.now = std::time(nullptr);
  in.expires_seconds = ttl;
  in.signed_headers = signed_headers;
  return cfg_.endpoint + UriEncode(in.path, true) + "?" + Presign(credentials(), in);
}

StatusOr<S3Client::Answer> S3Client::Call(const std::string& method, const std::string& key, const QueryParams& query,
                                          const std::string& body, bool idempotent, const std::string& what,
                                          const std::function<bool(const char*, size_t)>& sink) const {
  const int tries = idempotent ? 3 : 1;
  std::string last_error;
  for (int attempt = 1; attempt <= tries; ++attempt) {
    if (attempt > 1) std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
    std::string url = PresignUrl(method, key, query, 300);
    std::string target = url.substr(cfg_.endpoint.size());
    httplib::Client cli(cfg_.endpoint);
    cli.set_connection_timeout(10, 0);
    cli.set_read_timeout(300, 0);
    cli.set_write_timeout(60, 0);
    auto send = [&]() -> httplib::Result {
      if (method == "GET" && sink) return cli.Get(target, [&](const char* data, size_t len) { return sink(data, len); });
      if (method == "GET") return cli.Get(target);
      if (method == "HEAD") return cli.Head(target);
      if (method == "POST") return cli.Post(target, body, "application/xml");
      return cli.Delete(target);
    };
    if (method != "GET" && method != "HEAD" && method != "POST" && method != "DELETE") {
      return Status(Code::kInternal, what + ": unsupported method " + method);
    }
    httplib::Result res = send();
    if (!res) {
      last_error = what + ": the store at " + cfg_.endpoint + " did not answer (" + httplib::to_string(res.error()) + ")";
      continue;
    }
    Answer a;
    a.status = res->status;
    a.body = std::move(res->body);
    a.etag = res->get_header_value("ETag");
    auto len = ParseInt(res->get_header_value("Content-Length"));
    a.length = len && *len > 0 ? static_cast<uint64_t>(*len) : 0;
    if (a.status >= 500 && attempt < tries) {
      last_error = Failed(what, a).message();
      continue;
    }
    return a;
  }
  return Status(Code::kUnavailable, last_error);
}

Status S3Client::Failed(const std::string& what, const Answer& a) const {
  std::string detail = "HTTP " + std::to_string(a.status);
  if (auto err = ParseErrorBody(a.body)) {
    detail += " " + err->code + (err->message.empty() ? "" : " (" + err->message + ")");
  }
  Code code = a.status == 404 ? Code::kNotFound
              : a.status == 403 || a.status == 401 ? Code::kPermissionDenied
              : a.status >= 500 ? Code::kUnavailable
                                : Code::kFailedPrecondition;
  return Status(code, what + ": the store answered " + detail);
}

Status S3Client::CheckBucket() const {
  std::string what = "looking at bucket " + cfg_.bucket + " at " + cfg_.endpoint;
  ASSIGN_OR_RETURN(Answer a, Call("HEAD", "", {}, "", true, what));
  if (a.status != 200) return Failed(what, a);
  return Status::Ok();
}

StatusOr<std::string> S3Client::CreateMultipart(const std::string& key) const {
  std::string what = "starting a multipart upload of " + key;
  ASSIGN_OR_RETURN(Answer a, Call("POST", key, {{"uploads", ""}}, "", false, what));
  if (a.status != 200) return Failed(what, a);
  return ParseInitiateMultipart(a.body);
}

StatusOr<std::vector<S3Part>> S3Client::ListParts(const std::string& key, const std::string& upload_id,
                                                  int page_size) const {
  std::string what = "listing the parts of " + key;
  std::vector<S3Part> parts;
  int marker = 0;
  for (int page = 0; page <= 10000; ++page) {
    QueryParams q = {{"uploadId", upload_id}, {"max-parts", std::to_string(page_size)}};
    if (marker > 0) q.push_back({"part-number-marker", std::to_string(marker)});
    ASSIGN_OR_RETURN(Answer a, Call("GET", key, q, "", true, what));
    if (a.status != 200) return Failed(what, a);
    ASSIGN_OR_RETURN(ListPartsPage p, ParseListParts(a.body));
    parts.insert(parts.end(), p.parts.begin(), p.parts.end());
    if (!p.truncated) return parts;
    if (p.next_marker <= marker) return Status(Code::kBadAnswer, what + ": the store's part marker does not advance");
    marker = p.next_marker;
  }
  return Status(Code::kBadAnswer, what + ": more pages than 10,000 parts can fill");
}

StatusOr<std::string> S3Client::CompleteMultipart(const std::string& key, const std::string& upload_id,
                                                  const std::vector<S3Part>& parts) const {
  std::string what = "completing the multipart upload of " + key;
  std::string xml = "<CompleteMultipartUpload>";
  for (const S3Part& p : parts) {
    xml += "<Part><PartNumber>" + std::to_string(p.number) + "</PartNumber><ETag>" + XmlEscape(p.etag) +
           "</ETag></Part>";
  }
  xml += "</CompleteMultipartUpload>";
  ASSIGN_OR_RETURN(Answer a, Call("POST", key, {{"uploadId", upload_id}}, xml, false, what));
  if (a.status != 200) return Failed(what, a);
  ASSIGN_OR_RETURN(std::string etag, ParseCompleteMultipart(a.body));
  if (!etag.empty()) return etag;
  // Ceph RGW (16.x) answers <ETag></ETag>: the object's own ETag is asked for instead.
  ASSIGN_OR_RETURN(std::optional<S3Object> head, Head(key));
  if (!head) return Status(Code::kBadAnswer, what + ": the store said it was completed, but holds no such object");
  return head->etag;
}

Status S3Client::AbortMultipart(const std::string& key, const std::string& upload_id) const {
  std::string what = "aborting the multipart upload of " + key;
  ASSIGN_OR_RETURN(Answer a, Call("DELETE", key, {{"uploadId", upload_id}}, "", true, what));
  if (a.status != 204 && a.status != 200 && a.status != 404) return Failed(what, a);
  return Status::Ok();
}

StatusOr<std::optional<S3Object>> S3Client::Head(const std::string& key) const {
  std::string what = "looking at " + key;
  ASSIGN_OR_RETURN(Answer a, Call("HEAD", key, {}, "", true, what));
  if (a.status == 404) return std::optional<S3Object>();
  if (a.status != 200) return Failed(what, a);
  return std::optional<S3Object>(S3Object{a.length, Quoted(a.etag)});
}

Status S3Client::Delete(const std::string& key) const {
  std::string what = "deleting " + key;
  ASSIGN_OR_RETURN(Answer a, Call("DELETE", key, {}, "", true, what));
  if (a.status != 204 && a.status != 200 && a.status != 404) return Failed(what, a);
  return Status::Ok();
}

StatusOr<std::pair<std::string, uint64_t>> S3Client::Sha256(const std::string& key) const {
  std::string what = "reading " + key + " back for its SHA-256";
  Digest sha(Digest::Kind::kSha256);
  uint64_t size = 0;
  auto sink = [&](const char* data, size_t len) {
    sha.Update(data, len);
    size += len;
    return true;
  };
  // Not retried by Call: a retry would hash the bytes of a failed try again.
  for (int attempt = 1;; ++attempt) {
    sha.Finish();
    size = 0;
    auto a = Call("GET", key, {}, "", false, what, sink);
    if (a.ok() && a->status == 200) return std::make_pair(HexEncode(sha.Finish()), size);
    if (attempt >= 3 || (a.ok() && a->status < 500)) return a.ok() ? Failed(what, *a) : a.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(200 * attempt));
  }
}

}  // namespace ingestfs::server
