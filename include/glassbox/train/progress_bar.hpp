#pragma once
// Keras-style progress bar:
//   Epoch 1/5  1875/1875 [==============================] - 4s 2ms/step - loss: 0.2100 - accuracy: 0.9400
// Redrawn in place (at most 10 times a second) on a terminal; when the stream
// is not a terminal (a log file, CI) only the final line of each epoch is
// written.

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

#ifdef _WIN32
#include <io.h>
#else
#include <unistd.h>
#endif

namespace glassbox::train {

inline bool is_terminal(std::FILE* stream) {
#ifdef _WIN32
  return stream && _isatty(_fileno(stream));
#else
  return stream && isatty(fileno(stream));
#endif
}

class ProgressBar {
 public:
  ProgressBar(int epoch, int epochs, long long steps, std::FILE* stream = stderr)
      : ProgressBar(epoch, epochs, steps, stream, is_terminal(stream)) {}
  ProgressBar(int epoch, int epochs, long long steps, std::FILE* stream, bool interactive)
      : prefix_(fmt::format("Epoch {}/{}", epoch + 1, epochs)),
        steps_(steps),
        stream_(stream),
        interactive_(interactive),
        start_(Clock::now()),
        last_draw_(start_) {}

  // After `done` steps; metrics like " - loss: 0.2100 - accuracy: 0.9400".
  void update(long long done, const std::string& metrics) {
    if (!interactive_) return;
    const auto now = Clock::now();
    if (done < steps_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw(done, metrics, false);
  }

  void finish(const std::string& metrics) { draw(steps_, metrics, true); }

  // The line as it would be drawn after `done` steps (also used by tests).
  std::string line(long long done, const std::string& metrics) const {
    constexpr int width = 30;
    const long long total = steps_ > 0 ? steps_ : 1;
    const int filled = static_cast<int>(width * std::min(done, total) / total);
    std::string bar(static_cast<std::size_t>(width), '.');
    for (int i = 0; i < filled; ++i) bar[static_cast<std::size_t>(i)] = '=';
    if (filled > 0 && filled < width) bar[static_cast<std::size_t>(filled - 1)] = '>';
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    const double per_step = done > 0 ? seconds / static_cast<double>(done) : 0.0;
    const std::string timing = done >= steps_
                                   ? fmt::format("{:.0f}s {}/step", seconds, format_duration(per_step))
                                   : fmt::format("ETA: {:.0f}s", per_step * static_cast<double>(steps_ - done));
    return fmt::format("{}  {}/{} [{}] - {}{}", prefix_, done, steps_, bar, timing, metrics);
  }

 private:
  using Clock = std::chrono::steady_clock;

  static std::string format_duration(double seconds) {
    if (seconds >= 1.0) return fmt::format("{:.0f}s", seconds);
    if (seconds >= 1e-3) return fmt::format("{:.0f}ms", seconds * 1e3);
    return fmt::format("{:.0f}us", seconds * 1e6);
  }

  void draw(long long done, const std::string& metrics, bool final) {
    if (!stream_) return;
    const std::string text = line(done, metrics);
    if (interactive_) {
      // Pad to erase a longer previous line.
      std::fprintf(stream_, "\r%-*s", static_cast<int>(last_width_), text.c_str());
      last_width_ = text.size();
      if (final) std::fputc('\n', stream_);
    } else {
      std::fprintf(stream_, "%s\n", text.c_str());
    }
    std::fflush(stream_);
  }

  std::string prefix_;
  long long steps_;
  std::FILE* stream_;
  bool interactive_;
  Clock::time_point start_, last_draw_;
  std::size_t last_width_ = 0;
};

}  // namespace glassbox::train
