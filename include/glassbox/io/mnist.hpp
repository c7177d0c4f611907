#pragma once
// load_mnist: the four MNIST (or Fashion-MNIST) IDX files of a directory as
// tensors: images (N, 1, 28, 28) scaled to [0, 1], labels (N) holding 0..9.
// File names as distributed (train-images-idx3-ubyte) or with a dot
// (train-images.idx3-ubyte); gzip files must be unpacked first.

#include <cmath>
#include <filesystem>
#include <string>

#include "glassbox/core/precompiled.hpp"
#include "glassbox/io/idx.hpp"

namespace glassbox::io {

template <class T>
struct Mnist {
  Tensor<T> train_images, train_labels, test_images, test_labels;
};

namespace detail {
inline std::string find_mnist_file(const std::string& dir, const std::string& stem, const std::string& kind) {
  namespace fs = std::filesystem;
  for (const std::string& name : {stem + "-" + kind, stem + "." + kind}) {
    const fs::path p = fs::path(dir) / name;
    if (fs::exists(p)) return p.string();
  }
  if (fs::exists(fs::path(dir) / (stem + "-" + kind + ".gz")))
    throw Error(fmt::format("load_mnist: {}/{}-{} is gzipped; unpack it first (gunzip)", dir, stem, kind));
  throw Error(fmt::format("load_mnist: no {}-{} in '{}' (scripts/fetch_mnist.sh downloads MNIST)", stem, kind, dir));
}

template <class T>
void load_split(const std::string& dir, const std::string& split, Tensor<T>& images, Tensor<T>& labels) {
  const std::string image_path = find_mnist_file(dir, split + "-images", "idx3-ubyte");
  const std::string label_path = find_mnist_file(dir, split + "-labels", "idx1-ubyte");
  images = read_idx<T>(image_path, T(1) / T(255));
  labels = read_idx<T>(label_path);
  if (images.rank() != 3)
    throw Error(fmt::format("{}: expected images of shape (N, rows, cols), got {}", image_path, images.shape().str()));
  if (labels.rank() != 1 || labels.dim(0) != images.dim(0))
    throw Error(fmt::format("{}: {} labels for {} images in {}", label_path, labels.rank() == 1 ? labels.dim(0) : -1,
                            images.dim(0), image_path));
  for (index_t i = 0; i < labels.size(); ++i)
    if (!(labels[i] >= T(0) && labels[i] <= T(9) && labels[i] == std::floor(labels[i])))
      throw Error(fmt::format("{}: label {} at index {} is not a digit", label_path, labels[i], i));
  images.reshape(Shape{images.dim(0), 1, images.dim(1), images.dim(2)});
}
}  // namespace detail

template <class T>
Mnist<T> load_mnist(const std::string& dir) {
  Mnist<T> m;
  detail::load_split(dir, "train", m.train_images, m.train_labels);
  detail::load_split(dir, "t10k", m.test_images, m.test_labels);
  return m;
}

GLASSBOX_PRECOMPILED_INSTANCE(Mnist<float> load_mnist<float>(const std::string&))
}  // namespace glassbox::io
