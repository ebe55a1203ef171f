// ingestfs-server: the reference platform (see --help and man/ingestfs-server.1).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "common/file_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "server/app.h"

namespace {

using ingestfs::server::ServerOptions;

constexpr char kUsage[] = R"(Usage: ingestfs-server --data DIR --token TOKEN [options]

The ingestfs reference platform: the control APIs of the three dialects (ingest, sbg, aplos)
under /api over one store, and an S3-compatible data plane (path-style, SigV4 presigned URLs
and POST policies) on one loopback address.

Required:
  --data DIR                  where datasets, files, jobs and objects are kept (created if missing)
  --token-file FILE           the bearer tokens clients may use, one per line ('#' starts a
                              comment); or $INGESTFS_SERVER_TOKEN (one token). --token TOKEN
                              (repeatable) also works, but every local user sees it in ps

Listening:
  --listen HOST:PORT          address to listen on (default 127.0.0.1:8080; port 0 picks a free one)
  --public-url URL            data-plane base URL written into presigned URLs
                              (default http://HOST:PORT of the listener)
  --threads N                 HTTP worker threads (default 64)

Platform choices:
  --part-size SIZE            multipart part size (default 8MiB; 5MiB to 5GiB)
  --multipart-threshold SIZE  files above this are multipart, others one PUT (default 8MiB)
  --url-ttl SECONDS           lifetime of presigned URLs (default 3600)
  --processing-delay SECONDS  time a job spends in `processing` after complete (default 0)
  --readonly-token TOKEN      a token that may only read (writes answer 403; repeatable)
  --sbg-part-size SIZE        sbg: the part size every upload gets, whatever the client asks
                              (default: the client's, within 5MiB..5GiB)
  --sbg-part-header 'N: V'    sbg: a header each part request must carry, signed into its URL
                              (repeatable; Content-Type: application/octet-stream always is)
  --sbg-part-status CODE      sbg: the store's status for a stored part, and the one success
                              code part answers name (200, 201 or 204; default 200)
  --post-max-size SIZE        aplos: the largest file one POST may carry (default 5GiB)

S3 credentials of the data plane (what a stock S3 SDK would be configured with):
  --access-key KEY            default ingestfs-local
  --secret-key SECRET         default ingestfs-local-secret
  --region REGION             default us-east-1
  --bucket NAME               default ingest ('api' is reserved)

An external S3 store for the bytes (Ceph RGW, MinIO, AWS S3), instead of the built-in one:
the presigned URLs then point at it, the server starts, checks and completes multipart
uploads there, reads each object back for its SHA-256, and keeps only its catalogue and
jobs in --data. All three dialects (an aplos POST, which reaches only the store, is taken
in by the next listing, or within a second).
  --s3-endpoint URL           the store, e.g. http://127.0.0.1:7480 (path-style requests)
  --s3-bucket NAME            its bucket (must exist)
  --s3-region REGION          default us-east-1
  --s3-access-key KEY         the platform's key there
  --s3-secret-file FILE       its secret key (first line); or $INGESTFS_S3_SECRET_KEY

Observing and fault injection (off by default):
  --access-log FILE           one JSON object per request: time, method, path (no query), status, bytes_in
  --fail-rate R               answer a share R (0..1) of requests with 500 or 503
  --drop-rate R               cut a share R of responses mid-body and close the connection
  --delay-ms N                delay every data-plane request by N milliseconds
  --max-bytes-per-sec SIZE    throttle data-plane bodies (server-wide), e.g. 10MiB
  --log-level LEVEL           debug, info (default), warning, error

  -h, --help                  this text
  --version                   the version

When ready it prints one line, "listening on http://HOST:PORT", to stdout.
SIGTERM or SIGINT stop it cleanly within about a second; everything it stored survives a restart.
)";

int Fail(const std::string& msg) {
  std::cerr << "ingestfs-server: " << msg << "\n(see ingestfs-server --help)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  ServerOptions o;
  std::string listen = "127.0.0.1:8080";
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline = false;
    if (arg.rfind("--", 0) == 0) {
      size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline = true;
      }
    }
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      std::cout << "ingestfs-server " << INGESTFS_VERSION << "\n";
      return 0;
    }
    auto next = [&](std::string* out) -> bool {
      if (has_inline) {
        *out = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (arg.rfind("--", 0) != 0) return Fail("unexpected argument '" + arg + "'");
    if (!next(&v)) return Fail(arg + " needs a value");
    auto size_arg = [&](uint64_t* out) -> bool {
      auto s = ingestfs::ParseSize(v);
      if (!s.ok()) return false;
      *out = *s;
      return true;
    };
    auto rate_arg = [&](double* out) -> bool {
      auto r = ingestfs::ParseRate(v);
      if (!r || *r > 1) return false;
      *out = *r;
      return true;
    };
    if (arg == "--listen") listen = v;
    else if (arg == "--data") o.data_dir = v;
    else if (arg == "--token") o.auth.tokens.insert(v);
    else if (arg == "--readonly-token") o.auth.readonly_tokens.insert(v);
    else if (arg == "--token-file") {
      auto text = ingestfs::ReadFileToString(v);
      if (!text.ok()) return Fail("--token-file: " + text.status().message());
      for (const std::string& line : ingestfs::Split(*text, '\n')) {
        std::string t(ingestfs::Trim(line));
        if (!t.empty() && t[0] != '#') o.auth.tokens.insert(t);
      }
    } else if (arg == "--access-key") o.access_key = v;
    else if (arg == "--secret-key") o.secret_key = v;
    else if (arg == "--region") o.region = v;
    else if (arg == "--bucket") o.bucket = v;
    else if (arg == "--public-url") o.public_url = v;
    else if (arg == "--s3-endpoint") o.s3.endpoint = v;
    else if (arg == "--s3-bucket") o.s3.bucket = v;
    else if (arg == "--s3-region") o.s3.region = v;
    else if (arg == "--s3-access-key") o.s3.access_key = v;
    else if (arg == "--s3-secret-file") {
      auto text = ingestfs::ReadFileToString(v);
      if (!text.ok()) return Fail("--s3-secret-file: " + text.status().message());
      o.s3.secret_key = std::string(ingestfs::Trim(ingestfs::Split(*text, '\n')[0]));
      if (o.s3.secret_key.empty()) return Fail("--s3-secret-file: " + v + " is empty");
    }
    else if (arg == "--access-log") o.access_log = v;
    else if (arg == "--part-size") {
      if (!size_arg(&o.part_size)) return Fail("--part-size: '" + v + "' is not a size");
    } else if (arg == "--multipart-threshold") {
      if (!size_arg(&o.multipart_threshold)) return Fail("--multipart-threshold: '" + v + "' is not a size");
    } else if (arg == "--sbg-part-size") {
      if (!size_arg(&o.sbg_part_size) || o.sbg_part_size < (5ULL << 20) || o.sbg_part_size > (5ULL << 30)) {
        return Fail("--sbg-part-size: '" + v + "' must be a size from 5MiB to 5GiB");
      }
    } else if (arg == "--sbg-part-header") {
      size_t colon = v.find(':');
      std::string name(ingestfs::Trim(v.substr(0, colon)));
      if (colon == std::string::npos || name.empty() || name.find_first_of(" \t\r\n") != std::string::npos) {
        return Fail("--sbg-part-header: '" + v + "' is not 'Name: value'");
      }
      o.sbg_part_headers.emplace_back(name, std::string(ingestfs::Trim(v.substr(colon + 1))));
    } else if (arg == "--sbg-part-status") {
      auto n = ingestfs::ParseInt(v);
      if (!n || (*n != 200 && *n != 201 && *n != 204)) return Fail("--sbg-part-status: '" + v + "' must be 200, 201 or 204");
      o.sbg_part_status = static_cast<int>(*n);
    } else if (arg == "--post-max-size") {
      if (!size_arg(&o.post_max_size) || o.post_max_size > (5ULL << 30)) {
        return Fail("--post-max-size: '" + v + "' must be a size of at most 5GiB");
      }
    } else if (arg == "--max-bytes-per-sec") {
      if (!size_arg(&o.faults.max_bytes_per_sec)) return Fail("--max-bytes-per-sec: '" + v + "' is not a size");
    } else if (arg == "--url-ttl") {
      auto n = ingestfs::ParseInt(v);
      if (!n || *n < 1 || *n > 604800) return Fail("--url-ttl: '" + v + "' must be 1 to 604800 seconds");
      o.url_ttl = static_cast<long>(*n);
    } else if (arg == "--processing-delay") {
      auto r = ingestfs::ParseRate(v);
      if (!r || *r > 86400) return Fail("--processing-delay: '" + v + "' must be 0 to 86400 seconds");
      o.processing_delay_ms = static_cast<int>(*r * 1000);
    } else if (arg == "--fail-rate") {
      if (!rate_arg(&o.faults.fail_rate)) return Fail("--fail-rate: '" + v + "' must be a number from 0 to 1");
    } else if (arg == "--drop-rate") {
      if (!rate_arg(&o.faults.drop_rate)) return Fail("--drop-rate: '" + v + "' must be a number from 0 to 1");
    } else if (arg == "--delay-ms") {
      auto n = ingestfs::ParseInt(v);
      if (!n || *n > 600000) return Fail("--delay-ms: '" + v + "' must be 0 to 600000");
      o.faults.delay_ms = static_cast<int>(*n);
    } else if (arg == "--threads") {
      auto n = ingestfs::ParseInt(v);
      if (!n || *n < 1 || *n > 1024) return Fail("--threads: '" + v + "' must be 1 to 1024");
      o.threads = static_cast<int>(*n);
    } else if (arg == "--log-level") {
      if (v == "debug") ingestfs::SetLogLevel(ingestfs::LogLevel::kDebug);
      else if (v == "info") ingestfs::SetLogLevel(ingestfs::LogLevel::kInfo);
      else if (v == "warning") ingestfs::SetLogLevel(ingestfs::LogLevel::kWarning);
      else if (v == "error") ingestfs::SetLogLevel(ingestfs::LogLevel::kError);
      else return Fail("--log-level: '" + v + "' is not one of debug, info, warning, error");
    } else {
      return Fail("unknown option " + arg);
    }
  }
  if (o.data_dir.empty()) return Fail("--data DIR is required");
  if (const char* env = std::getenv("INGESTFS_SERVER_TOKEN"); env != nullptr && *env != '\0') {
    o.auth.tokens.insert(std::string(ingestfs::Trim(env)));
  }
  if (o.auth.tokens.empty() && o.auth.readonly_tokens.empty()) {
    return Fail("no token: give --token-file FILE (or set INGESTFS_SERVER_TOKEN)");
  }
  size_t colon = listen.rfind(':');
  auto port = colon == std::string::npos ? std::nullopt : ingestfs::ParseInt(listen.substr(colon + 1));
  if (!port || *port > 65535 || colon == 0) return Fail("--listen: '" + listen + "' is not HOST:PORT");
  o.listen_host = listen.substr(0, colon);
  o.listen_port = static_cast<int>(*port);
  if (o.part_size < (5ULL << 20) || o.part_size > (5ULL << 30)) return Fail("--part-size must be 5MiB to 5GiB");
  if (o.bucket == "api" || o.bucket.empty() || o.bucket.find('/') != std::string::npos) {
    return Fail("--bucket: '" + o.bucket + "' is not allowed ('api' is reserved)");
  }

  if (!o.s3.endpoint.empty()) {
    if (const char* env = std::getenv("INGESTFS_S3_SECRET_KEY"); o.s3.secret_key.empty() && env != nullptr) {
      o.s3.secret_key = std::string(ingestfs::Trim(env));
    }
    if (!ingestfs::StartsWith(o.s3.endpoint, "http://") && !ingestfs::StartsWith(o.s3.endpoint, "https://")) {
      return Fail("--s3-endpoint: '" + o.s3.endpoint + "' is not an http:// or https:// URL");
    }
    if (o.s3.endpoint.find('/', o.s3.endpoint.find("://") + 3) != std::string::npos &&
        o.s3.endpoint.find_first_not_of('/', o.s3.endpoint.find('/', o.s3.endpoint.find("://") + 3)) != std::string::npos) {
      return Fail("--s3-endpoint: '" + o.s3.endpoint + "' has a path; give scheme, host and port only");
    }
    if (o.s3.bucket.empty()) return Fail("--s3-endpoint needs --s3-bucket");
    if (o.s3.access_key.empty()) return Fail("--s3-endpoint needs --s3-access-key");
    if (o.s3.secret_key.empty()) return Fail("--s3-endpoint needs --s3-secret-file FILE (or $INGESTFS_S3_SECRET_KEY)");
  } else if (!o.s3.bucket.empty() || !o.s3.access_key.empty() || !o.s3.secret_key.empty()) {
    return Fail("--s3-bucket, --s3-access-key and --s3-secret-file need --s3-endpoint");
  }

  // Signals are taken by one thread with sigwait; every other thread blocks them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ingestfs::server::App app(o);
  std::vector<std::string> warnings;
  ingestfs::Status st = app.Start(&warnings);
  for (const std::string& w : warnings) LOG_WARN("%s", w.c_str());
  if (!st.ok()) {
    std::cerr << "ingestfs-server: " << st.message() << "\n";
    return 1;
  }
  std::thread signal_thread([&app, sigs] {
    int sig = 0;
    sigwait(&sigs, &sig);
    LOG_INFO("signal %d: stopping", sig);
    app.Stop();
  });
  std::printf("listening on http://%s:%d\n", o.listen_host.c_str(), app.port());
  std::fflush(stdout);
  bool ok = app.Run();
  // Wake the signal thread if the listener ended on its own.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  return ok ? 0 : 1;
}
