// How much memory the machine can still give us, for refusing work that cannot fit before
// allocating (a clear message instead of the kernel's out-of-memory killer).
#pragma once

#include <cstddef>

namespace resa {

// Bytes of memory available for new allocations (MemAvailable), or 0 when unknown.
size_t available_memory_bytes();

}  // namespace resa
