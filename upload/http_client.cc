#include "upload/http_client.h"

#include "upload/rate_limiter.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/file_util.h"
#include "common/interrupt.h"
#include "common/strings.h"

namespace ingestfs::upload {

namespace {

struct Transfer {
  const HttpRequest* req;
  HttpResponse* res;
  uint64_t sent = 0;
  size_t body_pos = 0;
  bool too_big = false;
  int read_errno = 0;
  int write_errno = 0;
  uint64_t sunk = 0;       // body bytes written to sink_fd
  bool sink_over = false;  // more than sink_max
  bool interrupted = false;
  bool status_2xx = false;
};

size_t OnBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  size_t n = size * nmemb;
  if (t->req->sink_fd >= 0 && t->status_2xx) {
    if (t->sunk + n > t->req->sink_max) {
      t->sink_over = true;
      return 0;  // aborts the transfer
    }
    if (!WriteAll(t->req->sink_fd, ptr, n, "download").ok()) {
      t->write_errno = errno == 0 ? EIO : errno;
      return 0;
    }
    t->sunk += n;
    return n;
  }
  if (t->res->body.size() + n > HttpClient::kMaxResponseBody) {
    t->too_big = true;
    return 0;  // aborts the transfer
  }
  t->res->body.append(ptr, n);
  return n;
}

// Stops the transfer when the FUSE request it serves was interrupted (common/interrupt.h).
int OnXferInfo(void* userdata, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(userdata);
  if (!Interrupted()) return 0;
  t->interrupted = true;
  return 1;
}

size_t OnHeader(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  size_t n = size * nmemb;
  std::string_view line(ptr, n);
  if (StartsWith(line, "HTTP/")) {  // a new response (after 100, redirects)
    t->res->headers.clear();
    size_t sp = line.find(' ');
    t->status_2xx = sp != std::string_view::npos && sp + 1 < line.size() && line[sp + 1] == '2';
  }
  size_t colon = line.find(':');
  if (colon != std::string_view::npos && t->res->headers.size() < 200) {
    t->res->headers[ToLower(Trim(line.substr(0, colon)))] = std::string(Trim(line.substr(colon + 1)));
  }
  return n;
}

int OnSeek(void* userdata, curl_off_t offset, int origin) {
  auto* t = static_cast<Transfer*>(userdata);
  if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
  t->sent = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

size_t OnRead(char* buf, size_t size, size_t nmemb, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  const HttpRequest& r = *t->req;
  size_t want = size * nmemb;
  if (r.body_fd >= 0) {
    uint64_t left = r.body_length - t->sent;
    want = static_cast<size_t>(std::min<uint64_t>(want, left));
    if (want == 0) return 0;
    if (r.limiter != nullptr) want = r.limiter->Take(want);
    ssize_t n;
    do {
      n = ::pread(r.body_fd, buf, want, static_cast<off_t>(r.body_offset + t->sent));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      t->read_errno = n < 0 ? errno : EIO;
      return CURL_READFUNC_ABORT;
    }
    t->sent += static_cast<uint64_t>(n);
    if (r.on_progress) r.on_progress(t->sent);
    return static_cast<size_t>(n);
  }
  size_t n = std::min(want, r.body.size() - t->body_pos);
  std::memcpy(buf, r.body.data() + t->body_pos, n);
  t->body_pos += n;
  return n;
}

}  // namespace

void InitHttp() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpClient::HttpClient() {
  InitHttp();
  curl_ = curl_easy_init();
}

HttpClient::~HttpClient() { curl_easy_cleanup(curl_); }

StatusOr<HttpResponse> HttpClient::Do(const HttpRequest& req) {
  HttpResponse res;
  Transfer t{&req, &res};
  curl_easy_reset(curl_);  // keeps the connection cache
  curl_slist* headers = nullptr;
  for (const std::string& h : req.headers) headers = curl_slist_append(headers, h.c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(curl_, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT, 10L);
  // A transfer that moves less than 1 byte/s for 60 s is stalled.
  curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl_, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "http,https");
  if (req.timeout_seconds > 0) curl_easy_setopt(curl_, CURLOPT_TIMEOUT, req.timeout_seconds);
  curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, OnXferInfo);
  curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, &t);
  bool has_body = req.method == "PUT" || req.method == "POST";
  curl_mime* mime = nullptr;
  if (req.form) {
    mime = curl_mime_init(curl_);
    for (const auto& [name, value] : req.form_fields) {
      curl_mimepart* part = curl_mime_addpart(mime);
      curl_mime_name(part, name.c_str());
      curl_mime_data(part, value.data(), value.size());
    }
    curl_mimepart* file = curl_mime_addpart(mime);
    curl_mime_name(file, "file");
    curl_mime_filename(file, req.form_file_name.empty() ? "file" : req.form_file_name.c_str());
    curl_mime_type(file, "application/octet-stream");
    curl_mime_data_cb(file, static_cast<curl_off_t>(req.body_length), OnRead, OnSeek, nullptr, &t);
    curl_easy_setopt(curl_, CURLOPT_MIMEPOST, mime);
  } else if (has_body) {
    curl_off_t len = req.body_fd >= 0 ? static_cast<curl_off_t>(req.body_length)
                                      : static_cast<curl_off_t>(req.body.size());
    if (req.method == "PUT") {
      curl_easy_setopt(curl_, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(curl_, CURLOPT_INFILESIZE_LARGE, len);
    } else {
      curl_easy_setopt(curl_, CURLOPT_POST, 1L);
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, len);
    }
    curl_easy_setopt(curl_, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(curl_, CURLOPT_READDATA, &t);
  } else if (req.method != "GET") {
    curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  CURLcode rc = curl_easy_perform(curl_);
  curl_slist_free_all(headers);
  if (mime != nullptr) curl_mime_free(mime);
  if (rc != CURLE_OK) {
    std::string why = curl_easy_strerror(rc);
    if (t.too_big) why = "the response body is larger than " + std::to_string(kMaxResponseBody) + " bytes";
    if (t.sink_over) why = "the body is longer than the " + std::to_string(req.sink_max) + " bytes expected";
    if (t.interrupted) return Status(Code::kCancelled, req.method + " " + RedactUrl(req.url) + ": interrupted");
    if (t.write_errno != 0) return Status::FromErrno(t.write_errno, "writing the download of " + RedactUrl(req.url));
    if (t.read_errno != 0) {
      return Status::FromErrno(t.read_errno, "reading the cache copy while sending " + req.method + " " +
                                                 RedactUrl(req.url));
    }
    return Status(Code::kUnavailable, req.method + " " + RedactUrl(req.url) + ": " + why);
  }
  curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &res.status);
  return res;
}

ClientPool::Lease ClientPool::Acquire() {
  std::unique_ptr<HttpClient> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      c = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!c) c = std::make_unique<HttpClient>();
  return Lease(this, std::move(c));
}

void ClientPool::Return(std::unique_ptr<HttpClient> c) {
  if (!c) return;
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(std::move(c));
}

}  // namespace ingestfs::upload
