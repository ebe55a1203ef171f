// Whether the process closing a file is dying of a signal (kill -9, Ctrl-C, a crash): then the
// version it was writing is not the file it meant to write, and is not uploaded.
//
// The kernel closes a dying process's files in do_exit() after it has set the task's exit code
// and its PF_EXITING flag, and FUSE's flush carries that task's pid; /proc/PID/stat shows both
// (fields 9, flags, and 52, exit_code, since Linux 3.5). A process that exits normally has a
// signal number of 0 in its exit code.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

namespace ingestfs::fs {

// "" unless `pid` is exiting because of a signal; then a phrase naming the program, its pid and
// the signal, for the file's reason ("its writer cp (pid 42) was killed by SIGKILL").
//
// Reading /proc/PID/stat of a process that waits for our reply can block in the kernel: seen
// with a child closing an inherited descriptor between fork and exec, which then waits for the
// flush while the read waits for it. So the read runs on a thread of its own and this waits at
// most `limit`: no answer means "not killed" (a dying process's stat has always answered at once;
// one stuck in exec is not dying). The reading thread finishes by itself once the flush is
// answered.
std::string KilledWriter(pid_t pid, std::chrono::milliseconds limit);
// The same, from the text of /proc/PID/stat (exposed for tests).
std::string KilledWriterFromStat(const std::string& stat);

}  // namespace ingestfs::fs
