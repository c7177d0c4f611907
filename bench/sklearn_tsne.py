#!/usr/bin/env python3
"""scikit-learn's TSNE on bench_analyses' t-SNE input (2,000 x 50), with the
defaults glassbox's inspect::tsne copies: the reference for bench/analyses.sh.
Prints 'sklearn analyses tsne <seconds>' (the median of 3) and the KL."""
import sys
import time

import numpy as np
from sklearn.manifold import TSNE

x = np.loadtxt(sys.argv[1])
times, kl = [], None
for _ in range(3):
    start = time.perf_counter()
    model = TSNE(n_components=2, perplexity=30.0, init="pca", learning_rate="auto", n_iter=1000,
                 method="barnes_hut", angle=0.5, random_state=0)
    model.fit_transform(x)
    times.append(time.perf_counter() - start)
    kl = model.kl_divergence_
print(f"sklearn analyses tsne {sorted(times)[1]:.3f}")
print(f"sklearn tsne kl {kl:.4f}")
