// App: the reference server assembled — stores, processor, router, HTTP listener.
// Lifetime: Start() once, then Run() blocks until Stop() (thread-safe, e.g. from a signal
// thread). Destruction stops the processor.
#pragma once

#include "common/file_util.h"

#include <httplib.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server/context.h"
#include "server/processor.h"

namespace ingestfs::server {

class App {
 public:
  explicit App(ServerOptions opts);
  ~App();
  // Opens the stores (replaying the log), binds the listener and starts the processor.
  // Warnings about the replayed log go to `warnings`.
  Status Start(std::vector<std::string>* warnings);
  int port() const { return port_; }
  const std::string& base_url() const { return ctx_.public_url; }
  // Serves until Stop(). Returns false if the listener failed.
  bool Run();
  void Stop();

 private:
  ServerContext ctx_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<ObjectStore> objects_;
  std::unique_ptr<S3Client> s3_;
  std::unique_ptr<Processor> processor_;
  std::unique_ptr<AccessLog> access_log_;
  std::unique_ptr<Router> router_;
  httplib::Server http_;
  int port_ = 0;
  UniqueFd lock_fd_;  // flock'ed: one server per data dir
  // Over an external store: takes in aplos uploads that reached it (ReconcileAplosUploads).
  std::thread reconciler_;
  std::mutex reconcile_mu_;
  std::condition_variable reconcile_cv_;
  bool stopping_ = false;  // GUARDED_BY(reconcile_mu_)
};

}  // namespace ingestfs::server
