#include "cache/mtime_store.h"

#include "common/file_util.h"
#include "common/log.h"

namespace ingestfs::cache {

namespace {
std::string Record(const std::string& d, const std::string& n, const std::string& s, int64_t m) {
  return json::Object([&](json::Writer& w) {
    json::KeyString(w, "d", d);
    json::KeyString(w, "n", n);
    json::KeyString(w, "s", s);
    json::KeyInt(w, "m", m);
  });
}
}  // namespace

StatusOr<std::unique_ptr<MtimeStore>> MtimeStore::Open(const std::string& cache_dir) {
  std::unique_ptr<MtimeStore> store(new MtimeStore());
  std::string path = cache_dir + "/mtimes.log";
  ASSIGN_OR_RETURN(ReplayResult replay, ReplayRecords(path));
  for (const std::string& w : replay.warnings) LOG_WARN("%s", w.c_str());
  for (const json::Document& r : replay.records) {
    store->values_[{json::StringOr(r, "d"), json::StringOr(r, "n")}] = {json::StringOr(r, "s"), json::IntOr(r, "m")};
  }
  std::string compact;
  for (const auto& [key, v] : store->values_) compact += FrameRecord(Record(key.first, key.second, v.sha256, v.mtime));
  RETURN_IF_ERROR(WriteFileAtomic(path, compact));
  ASSIGN_OR_RETURN(RecordWriter w, RecordWriter::Open(path, false));
  store->log_ = std::make_unique<RecordWriter>(std::move(w));
  return store;
}

void MtimeStore::Put(const std::string& dataset, const std::string& name, const std::string& sha256, int64_t mtime) {
  std::lock_guard<std::mutex> lock(mu_);
  Value& v = values_[{dataset, name}];
  if (v.sha256 == sha256 && v.mtime == mtime) return;
  v = {sha256, mtime};
  Status st = log_->Append(Record(dataset, name, sha256, mtime), false);
  if (!st.ok()) LOG_WARN("recording the mtime of %s/%s: %s", dataset.c_str(), name.c_str(), st.message().c_str());
}

std::optional<int64_t> MtimeStore::Get(const std::string& dataset, const std::string& name,
                                       const std::string& sha256) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = values_.find({dataset, name});
  if (it == values_.end() || it->second.sha256 != sha256 || sha256.empty()) return std::nullopt;
  return it->second.mtime;
}

}  // namespace ingestfs::cache
