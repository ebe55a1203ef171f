// The mount's status as people read it: the table of `ingestfs status` and the files of the
// read-only `.ingestfs/` folder at the root of the mount (for someone at an instrument PC who
// sees the mount only through a share). All of them render the status JSON the daemon builds
// (IngestFs::StatusJson), so the command, the socket and the folder never disagree.
#pragma once

#include <string>

#include "common/json.h"

namespace ingestfs::fs {

// The platform's health, the table of files not yet confirmed (state, size, progress,
// dataset/name, and the reason of a failure under it; left out unless `with_files`), the cache,
// the queue (files and bytes left, rate, estimate, the oldest waiting), totals and counts.
std::string StatusTable(const json::Value& status, bool with_files = true);
// The queue's "N MiB to send, R files/s, B/s, about T left" (`always_rate`: the rate even when
// nothing was confirmed lately, and why there is no estimate), or "" without a queue object.
std::string QueueText(const json::Value& status, bool always_rate);
// One line for systemd's STATUS= (`systemctl status`): files waiting with the queue's rate and
// estimate (or "idle"), failed, interrupted and stalled when any, confirmed since mount, and the
// platform's health when it is not answering.
std::string ServiceStatusLine(const json::Value& status);
// `.ingestfs/status.txt`: a heading with the time and the cache, then StatusTable.
std::string StatusText(const json::Value& status);
// `.ingestfs/failed.txt`: one block per failed file with its reason, or a line saying none.
std::string FailedText(const json::Value& status);

}  // namespace ingestfs::fs
