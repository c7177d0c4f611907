# Sourced by the fetch scripts: the four IDX files that MNIST and
# Fashion-MNIST share (names and sizes), and a check that a directory holds
# them all.
declare -A idx_sizes=(
  [train-images-idx3-ubyte]=47040016
  [train-labels-idx1-ubyte]=60008
  [t10k-images-idx3-ubyte]=7840016
  [t10k-labels-idx1-ubyte]=10008
)

# idx_complete DIR: all four files present with their published sizes.
idx_complete() {
  local f
  for f in "${!idx_sizes[@]}"; do
    [[ -f "$1/$f" && $(stat -L -c %s "$1/$f") == "${idx_sizes[$f]}" ]] || return 1
  done
}
