// The FUSE low-level adapter: each operation calls IngestFs and turns its result into a reply.
// Status becomes errno in exactly one place (ErrnoOf). No exception escapes into libfuse, and no
// lock is held across a fuse_reply_* call.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "common/status.h"
#include "fs/ingest_fs.h"

namespace ingestfs::fs {

// The operations table; the session's userdata must be the IngestFs.
const fuse_lowlevel_ops* FuseOps();
int ErrnoOf(const Status& st);

}  // namespace ingestfs::fs
