"""Simple statistics of an input image for the out-of-distribution screen.

The penultimate features of a network trained on one kind of image can place a CT
slice, a white square or noise right among the training images (the network never
learnt to represent what it never saw), so the screen also asks whether the pixels
themselves look like the training pixels: the image's intensity histogram on bins cut
at the training pixels' quantiles, its mean and spread, and its edge energy (mean
absolute difference between neighbouring pixels, which noise and textureless images
are far from). All on the normalised model input, so they need nothing but the
tensors the model sees; the distance is a Mahalanobis distance under a Ledoit-Wolf
covariance of the training images' statistics.

None of this depends on the trained network, so ``ood.fit_ood`` fits it on the training
and validation images together and sets its threshold on their cross-fitted (held-out
by patient) distances: on every image, not on a validation split of a dozen.
"""

from __future__ import annotations

import numpy as np
import torch

N_BINS = 16
EPS = 1e-6


def bin_edges(x_train: torch.Tensor, max_pixels: int = 2_000_000, seed: int = 0) -> np.ndarray:
    """Interior histogram edges at the training pixels' quantiles (N_BINS - 1 values)."""
    flat = x_train.flatten().double()
    if len(flat) > max_pixels:
        g = torch.Generator().manual_seed(seed)
        flat = flat[torch.randint(len(flat), (max_pixels,), generator=g)]
    edges = np.quantile(flat.numpy(), np.linspace(0, 1, N_BINS + 1)[1:-1])
    return np.maximum.accumulate(edges)


def input_statistics(x: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    """(N, N_BINS + 4) per image: histogram fractions on ``edges``, then mean, standard
    deviation and the log edge energy along the last two axes, float64."""
    x = x.detach().double().cpu()
    n = x.shape[0]
    flat = x.reshape(n, -1)
    idx = torch.bucketize(flat, torch.as_tensor(edges, dtype=torch.float64))
    hist = torch.zeros(n, N_BINS, dtype=torch.float64)
    hist.scatter_add_(1, idx, torch.ones_like(flat))
    hist /= flat.shape[1]
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().reshape(n, -1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().reshape(n, -1).mean(1)
    extra = torch.stack([flat.mean(1), flat.std(1), torch.log(dx + EPS), torch.log(dy + EPS)], 1)
    return torch.cat([hist, extra], 1).numpy()
