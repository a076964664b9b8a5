"""Post-hoc calibration fitted on validation logits, and expected calibration error.

- binary: temperature scaling (Guo et al. 2017), one T for the 2-logit softmax;
- multi-class: vector scaling, a weight and a bias per class;
- multi-label: one temperature per label (sigmoid).

The fitted parameters are stored in ``model.json`` ``calibration`` and applied to
the logits by the Predictor, so every consumer sees calibrated probabilities.

Refused on a small validation split (``calibration_refusal``): a parameter fitted by
maximum likelihood on a handful of cases follows one or two of them (6 images gave a
temperature of 15, every probability squeezed into 0.30-0.70). The rule is the usual
one for fitting a logistic model, about 10 events per parameter (Peduzzi et al. 1996):
at least ``MIN_PER_CLASS`` cases of every class (both outcomes of every label) and
``MIN_PER_PARAMETER`` cases per fitted parameter. Below it the probabilities stay
uncalibrated (``method: none``) with the reason in ``note``, which reports show.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

N_BINS = 15
MIN_PER_CLASS = 10
MIN_PER_PARAMETER = 10


def calibration_refusal(task: str, y: np.ndarray, k: int) -> str | None:
    """Why the validation split is too small to fit calibration on, or None."""
    y = np.asarray(y)
    if task == "multilabel":
        counts = [int(min(y[:, j].sum(), len(y) - y[:, j].sum())) for j in range(k)]
        per_param = len(y)  # one temperature per label, fitted on all cases
        what = "cases of the rarer outcome of each label"
    else:
        counts = np.bincount(y.astype(int), minlength=k).tolist()
        per_param = len(y) / (2 * k if task == "multiclass" else 1)
        what = "cases per class"
    if min(counts) < MIN_PER_CLASS or per_param < MIN_PER_PARAMETER:
        return (
            f"not calibrated: the validation split has {len(y)} cases ({what}: "
            f"{', '.join(map(str, counts))}); fitting needs >= {MIN_PER_CLASS} of each and "
            f">= {MIN_PER_PARAMETER} per parameter, so the probabilities are the network's own"
        )
    return None


def fit_calibration(task: str, logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Parameters minimising the validation negative log-likelihood; ``method: none``
    with a ``note`` when the validation split is too small (``calibration_refusal``)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    k = z.shape[1]
    refusal = calibration_refusal(task, y, k)
    if refusal is not None:
        return {"method": "none", "note": refusal}
    if task == "multiclass":
        params = {
            "weight": torch.ones(k, dtype=torch.float64),
            "bias": torch.zeros(k, dtype=torch.float64),
        }
    else:
        params = {"log_t": torch.zeros(k if task == "multilabel" else 1, dtype=torch.float64)}
    for p in params.values():
        p.requires_grad_(True)
    target = torch.as_tensor(y)
    opt = torch.optim.LBFGS(
        list(params.values()), lr=0.5, max_iter=200, line_search_fn="strong_wolfe"
    )

    def nll() -> torch.Tensor:
        opt.zero_grad()
        out = _scaled(task, z, {n: p for n, p in params.items()})
        if task == "multilabel":
            loss = F.binary_cross_entropy_with_logits(out, target.double())
        else:
            loss = F.cross_entropy(out, target.long())
        loss.backward()
        return loss

    opt.step(nll)
    fitted = {n: p.detach().tolist() for n, p in params.items()}
    if task == "multiclass":
        return {"method": "vector_scaling", "weight": fitted["weight"], "bias": fitted["bias"]}
    temps = [float(np.exp(v)) for v in fitted["log_t"]]
    return {"method": "temperature", "temperature": temps if task == "multilabel" else temps[0]}


def _scaled(task: str, z: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    if task == "multiclass":
        return z * p["weight"] + p["bias"]
    return z / torch.exp(p["log_t"])


def apply_calibration(logits: torch.Tensor, calibration: dict[str, Any] | None) -> torch.Tensor:
    """Calibrated logits; identity when there is no calibration."""
    if not calibration or calibration.get("method") == "none":
        return logits
    if calibration["method"] == "vector_scaling":
        w = torch.tensor(calibration["weight"], dtype=logits.dtype)
        b = torch.tensor(calibration["bias"], dtype=logits.dtype)
        return logits * w + b
    t = torch.tensor(calibration["temperature"], dtype=logits.dtype)
    return logits / t


def expected_calibration_error(
    task: str, y: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS
) -> float:
    """ECE with equal-width bins.

    Binary: of P(positive) against the observed positive rate. Multi-class: top-label
    (confidence of the predicted class against accuracy). Multi-label: mean over labels.
    """
    if task == "binary":
        return _ece(probs[:, 1], (y == 1).astype(float), n_bins)
    if task == "multiclass":
        pred = probs.argmax(1)
        return _ece(probs.max(1), (pred == y).astype(float), n_bins)
    return float(
        np.mean([_ece(probs[:, k], y[:, k].astype(float), n_bins) for k in range(probs.shape[1])])
    )


def _ece(conf: np.ndarray, outcome: np.ndarray, n_bins: int) -> float:
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum() / len(conf) * abs(conf[m].mean() - outcome[m].mean())
    return float(total)
