// Fail points for crash tests: with INGESTFS_FAILPOINT=name (or name:N for a numbered point) the
// process kills itself with SIGKILL when it reaches that point, exactly as `kill -9` would.
// Points: after_presign, after_part:N, before_complete, after_complete.
// Unset (always, outside tests), a fail point is one cached comparison.
#pragma once

namespace ingestfs::upload {

void FailPoint(const char* name, long n = -1);

}  // namespace ingestfs::upload
