#pragma once
// glassbox::Error — the one exception type for user mistakes and bad input.
// Messages name the layer, file or field at fault and the values involved.

#include <stdexcept>
#include <string>

namespace glassbox {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace glassbox
