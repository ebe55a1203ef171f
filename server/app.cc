#include "server/app.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/file_util.h"
#include "common/strings.h"
#include "server/routes.h"

namespace ingestfs::server {

App::App(ServerOptions opts) { ctx_.opts = std::move(opts); }

App::~App() {
  {
    std::lock_guard<std::mutex> lock(reconcile_mu_);
    stopping_ = true;
  }
  reconcile_cv_.notify_all();
  if (reconciler_.joinable()) reconciler_.join();
  if (processor_) processor_->Stop();
}

Status App::Start(std::vector<std::string>* warnings) {
  const ServerOptions& o = ctx_.opts;
  RETURN_IF_ERROR(MakeDirs(o.data_dir));
  // One server per data dir: two would each replay the log and then write their own view of it
  // (a restart that began before the old server had exited answered requests the new one never
  // heard of, leaving jobs stuck).
  ASSIGN_OR_RETURN(lock_fd_, LockDir(o.data_dir, "data dir " + o.data_dir, "another ingestfs-server"));
  ASSIGN_OR_RETURN(meta_, MetaStore::Open(o.data_dir, warnings));
  objects_ = std::make_unique<ObjectStore>(o.data_dir);
  RETURN_IF_ERROR(objects_->Init());
  ctx_.meta = meta_.get();
  ctx_.objects = objects_.get();
  ctx_.creds = SigV4Credentials{o.access_key, o.secret_key, o.region, "s3"};

  int threads = o.threads;
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  // Without TCP_NODELAY, a response whose headers and body go out in two writes waits for the
  // client's delayed ACK (about 40 ms) between them: small requests would crawl.
  http_.set_tcp_nodelay(true);
  http_.set_keep_alive_max_count(100000);
  // An idle keep-alive connection holds a worker until it times out, and stop() (SIGTERM) waits
  // for every worker: 30 s here made each restart wait that long while a mount was connected.
  // Reconnecting on loopback costs far less than a second.
  http_.set_keep_alive_timeout(1);
  http_.set_read_timeout(60, 0);
  http_.set_write_timeout(60, 0);
  port_ = o.listen_port == 0 ? http_.bind_to_any_port(o.listen_host)
                             : (http_.bind_to_port(o.listen_host, o.listen_port) ? o.listen_port : -1);
  if (port_ <= 0) {
    return Status(Code::kUnavailable, "cannot listen on " + o.listen_host + ":" + std::to_string(o.listen_port) +
                                          " (address in use or not available)");
  }
  ctx_.public_url = o.public_url.empty() ? "http://" + o.listen_host + ":" + std::to_string(port_) : o.public_url;
  while (!ctx_.public_url.empty() && ctx_.public_url.back() == '/') ctx_.public_url.pop_back();
  size_t host_start = ctx_.public_url.find("://");
  ctx_.public_host = host_start == std::string::npos ? ctx_.public_url : ctx_.public_url.substr(host_start + 3);
  if (!o.s3.endpoint.empty()) {
    // The bytes go to the external store: it must answer, with these credentials and bucket,
    // before the server takes a request; presigned URLs name it.
    s3_ = std::make_unique<S3Client>(o.s3);
    Status reachable = s3_->CheckBucket();
    if (!reachable.ok()) return Status(reachable.code(), "the S3 store: " + reachable.message());
    ctx_.s3 = s3_.get();
    ctx_.public_url = s3_->config().endpoint;
    ctx_.public_host = s3_->host();
    ctx_.creds = s3_->credentials();
    ctx_.opts.bucket = o.s3.bucket;
  }

  access_log_ = std::make_unique<AccessLog>(o.access_log);
  router_ = std::make_unique<Router>(http_, o.auth, o.faults, *access_log_);
  processor_ = std::make_unique<Processor>(ctx_);
  ctx_.processor = processor_.get();
  ctx_.session_token = RandomHex(32);
  RegisterIngestApi(*router_, ctx_);
  RegisterSbgApi(*router_, ctx_);
  RegisterAplosApi(*router_, ctx_);
  RegisterDataPlane(*router_, ctx_);  // after the API: its catch-all pattern must match last
  processor_->Start(2);
  if (ctx_.s3 != nullptr) {
    reconciler_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(reconcile_mu_);
      while (!reconcile_cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
        lock.unlock();
        ReconcileAplosUploads(ctx_);
        lock.lock();
      }
    });
  }
  return Status::Ok();
}

bool App::Run() { return http_.listen_after_bind(); }

void App::Stop() {
  if (router_) router_->StopServing();
  http_.stop();
}

}  // namespace ingestfs::server
