#include "common/interrupt.h"

namespace ingestfs {
namespace {
thread_local const std::function<bool()>* current = nullptr;
}  // namespace

InterruptScope::InterruptScope(std::function<bool()> interrupted)
    : interrupted_(std::move(interrupted)), outer_(current) {
  current = &interrupted_;
}

InterruptScope::~InterruptScope() { current = outer_; }

bool Interrupted() { return current != nullptr && *current && (*current)(); }

}  // namespace ingestfs
