#pragma once
// Files for TensorBoard's embedding projector (`tensorboard --logdir DIR`,
// the Projector tab), laid out as torch.utils.tensorboard's add_embedding
// lays them out:
//
//   DIR/projector_config.pbtxt   every embedding this writer added: tensor_name,
//                                tensor_path, metadata_path, sprite
//   DIR/<name>/tensors.tsv       one sample per line, values tab-separated
//   DIR/<name>/metadata.tsv      one line per sample; with more than one
//                                column, a header line first (the projector's rule)
//   DIR/<name>/sprite.png        the samples' images in a square grid, row by
//                                row, each single_image_dim pixels
//
//   viz::ProjectorWriter projector(run + "/tensorboard");
//   projector.add("flatten_1_after", activations, {"label", "predicted"}, rows, &digits);
//
// The projector runs its own PCA, t-SNE and UMAP on the tensors in the
// browser; glassbox's inspect::pca and inspect::tsne draw the same maps in
// report.html.

#include <fmt/format.h>

#include <Eigen/Dense>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "glassbox/core/error.hpp"
#include "glassbox/core/tensor.hpp"
#include "glassbox/core/text_output.hpp"
#include "glassbox/viz/image.hpp"
#include "glassbox/viz/png.hpp"

namespace glassbox::viz {

class ProjectorWriter {
 public:
  explicit ProjectorWriter(std::string log_dir) : log_dir_(std::move(log_dir)) {}

  // Writes one embedding: `values` (N, D), one row per sample; `metadata`
  // (N rows of header.size() cells, or of one cell without a header);
  // `images` (N, H, W) or (N, 1, H, W), values in [0, 1], for the sprite
  // (at most 8192 x 8192 pixels in all, the projector's limit). `name`
  // names the tensor and its directory: letters, digits, '_', '-', '.'.
  template <class T>
  void add(const std::string& name, const Tensor<T>& values, const std::vector<std::string>& header = {},
           const std::vector<std::vector<std::string>>& metadata = {}, const Tensor<T>* images = nullptr) {
    if (values.rank() < 2 || values.dim(0) < 1)
      throw Error(fmt::format("ProjectorWriter: '{}': values must be (N, D) rows, got {}", name, values.shape().str()));
    const Eigen::MatrixXd rows = values.matrix().template cast<double>();
    add(name, rows, header, metadata, images);
  }

  template <class T = float>
  void add(const std::string& name, const Eigen::MatrixXd& values, const std::vector<std::string>& header = {},
           const std::vector<std::vector<std::string>>& metadata = {}, const Tensor<T>* images = nullptr) {
    check_name(name);
    const index_t n = values.rows();
    if (n < 1 || values.cols() < 1) throw Error(fmt::format("ProjectorWriter: '{}' has no values", name));
    if (!metadata.empty()) check_metadata(name, n, header, metadata);
    for (const Entry& e : entries_)
      if (e.name == name) throw Error(fmt::format("ProjectorWriter: '{}' was added already", name));
    Entry entry{name, !metadata.empty(), 0, 0};
    Image sprite;
    if (images) {
      sprite = sprite_of(name, n, *images);
      entry.image_width = images->dim(images->rank() - 1);
      entry.image_height = images->dim(images->rank() - 2);
    }
    std::string tensors;
    for (index_t i = 0; i < n; ++i) {
      for (index_t j = 0; j < values.cols(); ++j) {
        if (!std::isfinite(values(i, j)))
          throw Error(fmt::format("ProjectorWriter: '{}': sample {} holds a non-finite value", name, i));
        tensors += fmt::format("{}{:.7g}", j ? "\t" : "", values(i, j));
      }
      tensors += '\n';
    }
    const std::string dir = log_dir_ + "/" + name;
    std::filesystem::create_directories(dir);
    write_text_file(dir + "/tensors.tsv", tensors);
    if (!metadata.empty()) {
      std::string text = header.size() > 1 ? fmt::format("{}\n", fmt::join(header, "\t")) : std::string();
      for (const auto& row : metadata) text += fmt::format("{}\n", fmt::join(row, "\t"));
      write_text_file(dir + "/metadata.tsv", text);
    }
    if (images) write_png(dir + "/sprite.png", sprite);
    entries_.push_back(entry);
    write_text_file(log_dir_ + "/projector_config.pbtxt", config());
  }

  // The projector_config.pbtxt text for what was added.
  std::string config() const {
    std::string text;
    for (const Entry& e : entries_) {
      text += fmt::format("embeddings {{\n  tensor_name: \"{0}\"\n  tensor_path: \"{0}/tensors.tsv\"\n", e.name);
      if (e.metadata) text += fmt::format("  metadata_path: \"{}/metadata.tsv\"\n", e.name);
      if (e.image_width > 0)
        text += fmt::format(
            "  sprite {{\n    image_path: \"{}/sprite.png\"\n    single_image_dim: {}\n    single_image_dim: {}\n  "
            "}}\n",
            e.name, e.image_width, e.image_height);
      text += "}\n";
    }
    return text;
  }

 private:
  struct Entry {
    std::string name;
    bool metadata;
    index_t image_width, image_height;
  };

  static void check_name(const std::string& name) {
    bool ok = !name.empty() && name != "." && name != "..";
    for (const char c : name)
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                  c == '.');
    if (!ok) throw Error(fmt::format("ProjectorWriter: the name '{}' must be letters, digits, '_', '-' or '.'", name));
  }

  static void check_metadata(const std::string& name, index_t n, const std::vector<std::string>& header,
                             const std::vector<std::vector<std::string>>& metadata) {
    if (static_cast<index_t>(metadata.size()) != n)
      throw Error(fmt::format("ProjectorWriter: '{}': {} metadata rows for {} samples", name, metadata.size(), n));
    const std::size_t columns = header.empty() ? 1 : header.size();
    for (std::size_t i = 0; i < metadata.size(); ++i) {
      if (metadata[i].size() != columns)
        throw Error(fmt::format("ProjectorWriter: '{}': metadata row {} has {} cells, not {}", name, i,
                                metadata[i].size(), columns));
      for (const std::string& cell : metadata[i])
        if (cell.find_first_of("\t\n\r") != std::string::npos)
          throw Error(fmt::format("ProjectorWriter: '{}': metadata row {} holds a tab or line break", name, i));
    }
    for (const std::string& h : header)
      if (h.find_first_of("\t\n\r") != std::string::npos)
        throw Error(fmt::format("ProjectorWriter: '{}': a header cell holds a tab or line break", name));
  }

  // Square: ceil(sqrt(N)) images a side, dark ink on white as viz::grayscale draws.
  template <class T>
  static Image sprite_of(const std::string& name, index_t n, const Tensor<T>& images) {
    const bool shaped = (images.rank() == 3) || (images.rank() == 4 && images.dim(1) == 1);
    if (!shaped || images.dim(0) != n)
      throw Error(fmt::format("ProjectorWriter: '{}': sprite images must be ({}, H, W) or ({}, 1, H, W), got {}", name,
                              n, n, images.shape().str()));
    const index_t h = images.dim(images.rank() - 2), w = images.dim(images.rank() - 1);
    const auto side = static_cast<index_t>(std::ceil(std::sqrt(static_cast<double>(n))));
    if (side * std::max(w, h) > 8192)
      throw Error(fmt::format("ProjectorWriter: '{}': a sprite of {} images of {}x{} exceeds 8192 pixels a side", name,
                              n, w, h));
    Image sprite(side * w, side * h);
    for (index_t i = 0; i < n; ++i) {
      const Image cell = grayscale(plane(images, i));
      const index_t left = (i % side) * w, top = (i / side) * h;
      for (index_t y = 0; y < h; ++y)
        for (index_t x = 0; x < w; ++x) sprite.set(left + x, top + y, cell.at(x, y));
    }
    return sprite;
  }

  std::string log_dir_;
  std::vector<Entry> entries_;
};

}  // namespace glassbox::viz
