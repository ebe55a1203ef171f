#include "tests/support/http.h"

#include <curl/curl.h>

#include <cstdio>
#include <cstring>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "common/crypto.h"
#include "common/strings.h"

namespace ingestfs::testing {

namespace {

size_t WriteBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  static_cast<std::string*>(userdata)->append(ptr, size * nmemb);
  return size * nmemb;
}

size_t WriteHeader(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(userdata);
  std::string line(ptr, size * nmemb);
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    (*headers)[ToLower(Trim(line.substr(0, colon)))] = std::string(Trim(line.substr(colon + 1)));
  }
  return size * nmemb;
}

struct StringSource {
  const std::string* data;
  size_t pos = 0;
};

size_t ReadString(char* buf, size_t size, size_t nmemb, void* userdata) {
  auto* src = static_cast<StringSource*>(userdata);
  size_t n = std::min(size * nmemb, src->data->size() - src->pos);
  std::memcpy(buf, src->data->data() + src->pos, n);
  src->pos += n;
  return n;
}

}  // namespace

HttpResult Http(const HttpRequest& req) {
  HttpResult out;
  CURL* curl = curl_easy_init();
  curl_slist* hdrs = nullptr;
  for (const std::string& h : req.headers) hdrs = curl_slist_append(hdrs, h.c_str());
  hdrs = curl_slist_append(hdrs, "Expect:");
  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &out.headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  std::FILE* file = nullptr;
  curl_mime* mime = nullptr;
  StringSource src{&req.body};
  bool has_body = !req.body_file.empty() || !req.body.empty() || req.send_body;
  if (req.method == "PUT" && has_body) {
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    if (!req.body_file.empty()) {
      file = std::fopen(req.body_file.c_str(), "rb");
      std::fseek(file, 0, SEEK_END);
      curl_off_t size = std::ftell(file) - static_cast<curl_off_t>(req.body_offset);
      if (req.body_length >= 0) size = std::min<curl_off_t>(size, req.body_length);
      std::fseek(file, static_cast<long>(req.body_offset), SEEK_SET);
      curl_easy_setopt(curl, CURLOPT_READDATA, file);
      curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, size);
    } else {
      curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadString);
      curl_easy_setopt(curl, CURLOPT_READDATA, &src);
      curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }
  } else if (req.method == "POST" && req.form) {
    mime = curl_mime_init(curl);
    for (const auto& [name, value] : req.form_fields) {
      curl_mimepart* part = curl_mime_addpart(mime);
      curl_mime_name(part, name.c_str());
      curl_mime_data(part, value.data(), value.size());
    }
    curl_mimepart* part = curl_mime_addpart(mime);
    curl_mime_name(part, "file");
    curl_mime_filename(part, "file");
    curl_mime_data(part, req.body.data(), req.body.size());
    curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
  } else if (req.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  } else if (req.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    if (req.method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  }
  CURLcode rc = curl_easy_perform(curl);
  out.curl_code = rc;
  if (rc == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status);
  } else {
    out.error = curl_easy_strerror(rc);
  }
  if (file != nullptr) std::fclose(file);
  if (mime != nullptr) curl_mime_free(mime);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(curl);
  return out;
}

ServerProcess::ServerProcess(Options opts) {
  tmp_ = std::make_unique<TempDir>();
  data_dir_ = opts.data_dir.empty() ? tmp_->path() + "/data" : opts.data_dir;
  access_log_ = tmp_->path() + "/access.log";
  stderr_path_ = tmp_->path() + "/server.stderr";
  std::vector<std::string> argv = {BinDir() + "/ingestfs-server", "--listen",
                                   "127.0.0.1:" + std::to_string(opts.port), "--data", data_dir_,
                                   "--access-log", access_log_};
  argv.insert(argv.end(), opts.extra_args.begin(), opts.extra_args.end());
  if (std::string env = ExternalStore(); !env.empty() && !opts.builtin_store) {
    std::map<std::string, std::string> kv;
    std::ifstream in(env);
    for (std::string l; std::getline(in, l);) {
      size_t eq = l.find('=');
      if (eq != std::string::npos) kv[l.substr(0, eq)] = l.substr(eq + 1);
    }
    store_log_ = kv["S3_ACCESS_LOG"];
    if (!store_log_.empty()) {
      std::ifstream log(store_log_, std::ios::ate);
      store_log_from_ = log ? static_cast<std::streamoff>(log.tellg()) : 0;
    }
    for (const char* k : {"S3_ENDPOINT", "S3_BUCKET", "S3_REGION", "S3_ACCESS_KEY", "S3_SECRET_FILE"}) {
      std::string flag = std::string("--s3-") + (k + 3);
      for (char& ch : flag) ch = ch == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      argv.push_back(flag);
      argv.push_back(kv[k]);
    }
  }
  // The token as users are told to give it: not in argv, where every local user sees it.
  if (!child_.Start(argv, stderr_path_, {std::string("INGESTFS_SERVER_TOKEN=") + kToken})) return;
  std::string line = child_.ReadLine(std::chrono::seconds(10));
  const std::string prefix = "listening on ";
  if (line.rfind(prefix, 0) != 0) {
    child_.Kill();
    return;
  }
  base_url_ = line.substr(prefix.size());
  port_ = std::stoi(base_url_.substr(base_url_.rfind(':') + 1));
}

ServerProcess::~ServerProcess() { child_.Stop(); }

std::string ServerProcess::ExternalStore() {
  const char* env = std::getenv("INGESTFS_TEST_S3_ENV");
  return env != nullptr ? env : "";
}

std::vector<std::tuple<std::string, std::string, long>> ServerProcess::AccessLogEntries() const {
  std::vector<std::tuple<std::string, std::string, long>> out;
  std::ifstream in(access_log_);
  std::string line;
  while (std::getline(in, line)) {
    auto doc = json::Parse(line, "access log line");
    if (!doc.ok()) continue;
    out.emplace_back(json::GetString(*doc, "method").value(), json::GetString(*doc, "path").value(),
                     static_cast<long>(json::GetInt(*doc, "status").value()));
  }
  if (store_log_.empty()) return out;
  // RGW: ... beast: 0x..: 127.0.0.1 - user [date] "PUT /bucket/key?query HTTP/1.1" 200 0 - "agent" - latency=...
  std::ifstream store(store_log_);
  store.seekg(store_log_from_);
  while (std::getline(store, line)) {
    if (line.find(" beast: ") == std::string::npos || line.find("\"cpp-httplib/") != std::string::npos) continue;
    size_t q1 = line.find('"');
    size_t q2 = q1 == std::string::npos ? q1 : line.find('"', q1 + 1);
    if (q2 == std::string::npos) continue;
    std::istringstream request(line.substr(q1 + 1, q2 - q1 - 1));
    std::string method, target;
    request >> method >> target;
    long status = std::strtol(line.c_str() + q2 + 1, nullptr, 10);
    std::string path = target.substr(0, target.find('?'));
    out.emplace_back(method, UriDecode(path).value_or(path), status);
  }
  return out;
}

HttpResult Api::Call(const std::string& method, const std::string& path, const std::string& json_body) const {
  HttpRequest req;
  req.method = method;
  req.url = base_ + path;
  req.headers = {"Authorization: Bearer " + token_, "Content-Type: application/json"};
  req.body = json_body;
  return Http(req);
}

HttpResult Api::Read(const std::string& path) const {
  HttpResult r;
  for (int i = 0; i < 100; ++i) {
    r = Call("GET", path);
    if (r.status != 0 && r.status < 500) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return r;
}

std::string Api::CreateDataset(const std::string& name) const {
  HttpResult r = Call("POST", "/datasets", "{\"name\":" + std::string("\"") + name + "\"}");
  if (r.status != 201) return "";
  auto doc = json::Parse(r.body, "dataset");
  return doc.ok() ? json::GetString(*doc, "id").value() : "";
}

HttpResult Api::Presign(const std::string& dataset_id, const std::string& filename, uint64_t size) const {
  return Call("POST", "/ingest/upload/presigned", json::Object([&](json::Writer& w) {
    json::KeyString(w, "dataset_id", dataset_id);
    json::KeyString(w, "filename", filename);
    json::KeyInt(w, "file_size", static_cast<int64_t>(size));
    json::KeyString(w, "content_type", "application/octet-stream");
  }));
}

HttpResult Api::Reupload(const std::string& dataset_id, const std::string& filename, uint64_t size) const {
  return Call("POST", "/datasets/" + dataset_id + "/reupload/presigned", json::Object([&](json::Writer& w) {
    json::KeyString(w, "filename", filename);
    json::KeyInt(w, "file_size", static_cast<int64_t>(size));
  }));
}

HttpResult Api::Complete(const std::string& job_id, const std::vector<std::pair<int, std::string>>& parts) const {
  return Call("POST", "/ingest/upload/presigned/" + job_id + "/complete", json::Object([&](json::Writer& w) {
    json::Key(w, "parts");
    w.StartArray();
    for (const auto& [n, etag] : parts) {
      w.StartObject();
      json::KeyString(w, "etag", etag);
      json::KeyInt(w, "part_number", n);
      w.EndObject();
    }
    w.EndArray();
  }));
}

json::Document Api::WaitJob(const std::string& job_id) const {
  json::Document last;
  for (int i = 0; i < 2400; ++i) {  // up to 2 minutes
    HttpResult r = Call("GET", "/ingest/jobs/" + job_id);
    auto doc = json::Parse(r.body, "job");
    if (doc.ok()) {
      std::string s = json::GetString(*doc, "status").ok() ? *json::GetString(*doc, "status") : "";
      last = std::move(doc).value();
      if (s == "completed" || s == "failed") break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return last;
}

json::Document Api::Files(const std::string& dataset_id) const {
  HttpResult r = Read("/datasets/" + dataset_id + "/files?limit=1000");
  auto doc = json::Parse(r.body, "files");
  return doc.ok() ? std::move(doc).value() : json::Document();
}

json::Document UploadThroughApi(const Api& api, const std::string& dataset_id, const std::string& filename,
                                const std::string& data, bool reupload) {
  HttpResult p = reupload ? api.Reupload(dataset_id, filename, data.size()) : api.Presign(dataset_id, filename, data.size());
  auto doc = json::Parse(p.body, "presign");
  // What went wrong is printed: the caller only sees an empty document.
  auto fail = [&](const char* step, const HttpResult& r) {
    std::fprintf(stderr, "UploadThroughApi %s: %s answered %ld: %s\n", filename.c_str(), step, r.status, r.body.c_str());
    return json::Document();
  };
  if (p.status != 200 || !doc.ok()) return fail("presign", p);
  std::string job = json::GetString(*doc, "job_id").value();
  const json::Value& urls = (*doc)["urls"];
  uint64_t part_size = static_cast<uint64_t>((*doc)["part_size"].GetInt64());
  std::vector<std::pair<int, std::string>> parts;
  for (rapidjson::SizeType i = 0; i < urls.Size(); ++i) {
    uint64_t off = urls.Size() == 1 ? 0 : i * part_size;
    uint64_t len = urls.Size() == 1 ? data.size() : std::min<uint64_t>(part_size, data.size() - off);
    HttpRequest put;
    put.method = "PUT";
    put.url = urls[i].GetString();
    put.body = data.substr(off, len);
    put.send_body = true;
    put.headers = {"Content-MD5: " + Base64Encode(Md5(put.body))};
    HttpResult r = Http(put);
    if (r.status != 200) return fail("part", r);
    if (urls.Size() > 1) parts.emplace_back(static_cast<int>(i + 1), r.headers["etag"]);
  }
  HttpResult c = api.Complete(job, parts);
  if (c.status != 200) return fail("complete", c);
  return api.WaitJob(job);
}

}  // namespace ingestfs::testing
