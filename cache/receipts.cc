#include "cache/receipts.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/time_util.h"

namespace ingestfs::cache {

std::string CsvField(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string ReceiptLine(const Receipt& r) {
  return Iso8601Utc(r.time) + "," + CsvField(r.dataset) + "," + CsvField(r.name) + "," + std::to_string(r.size) + "," +
         CsvField(r.sha256) + "," + CsvField(r.job_id) + "," + (r.version > 0 ? std::to_string(r.version) : std::string()) + "\n";
}

Status ReceiptLog::Append(const Receipt& r) {
  SyncGroup* sync = nullptr;
  bool made = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    struct stat st;
    if (files_.empty() || ::fstat(files_.back()->fd.get(), &st) != 0 || st.st_nlink == 0) {
      auto f = std::make_unique<Open>();
      f->fd = UniqueFd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
      if (!f->fd.valid()) return Status::FromErrno(errno, "open " + path_);
      f->sync = std::make_unique<SyncGroup>(f->fd.get(), true, path_);
      files_.push_back(std::move(f));
    }
    int fd = files_.back()->fd.get();
    if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "stat " + path_);
    made = st.st_size == 0;
    std::string text = made ? std::string(kHeader) + ReceiptLine(r) : ReceiptLine(r);
    RETURN_IF_ERROR(WriteAll(fd, text.data(), text.size(), path_));
    sync = files_.back()->sync.get();
  }
  RETURN_IF_ERROR(sync->Sync());
  if (made) return FsyncDir(DirName(path_));
  return Status::Ok();
}

}  // namespace ingestfs::cache
