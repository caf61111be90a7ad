#include "engine/system_memory.h"

#include <fstream>
#include <string>

namespace resa {

size_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  size_t kb = 0;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

}  // namespace resa
