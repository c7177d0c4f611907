#!/usr/bin/env python3
"""Writes tests/data/mnist-subset/: the first N records of each MNIST IDX file.

    python3 scripts/make_mnist_subset.py data/mnist tests/data/mnist-subset 1000
"""
import struct
import sys


def take_first(src, dst, count):
    with open(src, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = list(struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank]))
    record = 1
    for d in dims[1:]:
        record *= d
    dims[0] = count
    header = data[:4] + struct.pack(">" + "I" * rank, *dims)
    with open(dst, "wb") as f:
        f.write(header + data[4 + 4 * rank:4 + 4 * rank + count * record])


if __name__ == "__main__":
    src_dir, dst_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for split in ("train", "t10k"):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            name = f"{split}-{kind}"
            take_first(f"{src_dir}/{name}", f"{dst_dir}/{name}", n)
