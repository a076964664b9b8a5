"""Segmentation sections of the evaluation report (``RUN/eval/<split>/report.html``)
and of the model card (``RUN/model/model_card.md``).

The page frame and the card skeleton are the shared ones (:mod:`scandx.core.report`,
:mod:`scandx.core.model_card`); this module adds the segmentation sections:
headline metrics with CIs, per-class and per-region tables, the choices made on
validation (threshold, component filtering), every case sorted by Dice, and overlays of
the worst, median and best cases (true positive green, false positive red, false
negative blue) on the slice with the most reference foreground.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scandx.core import model_card as core_card
from scandx.core.model_card import CardSections
from scandx.core.report import (
    ci_text,
    esc,
    html_table,
    model_card_section,
    png_base64,
    write_page,
)

METRICS = ("dice", "hd95", "nsd", "auc")
PANEL_SIDE = 256


def _axial(volume: np.ndarray, affine: np.ndarray | None) -> np.ndarray:
    """A volume reoriented so that axis 2 runs foot to head (RAS), when the affine says."""
    if affine is None:
        return volume
    import nibabel as nib

    return nib.orientations.apply_orientation(volume, nib.orientations.io_orientation(affine))


def case_panel(
    image: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    fov: np.ndarray | None = None,
    affine: np.ndarray | None = None,
) -> str:
    """Base64 PNG of the case (first channel, 1-99% window) with TP/FP/FN colours; for a
    volume the axial slice holding the most reference (else predicted) foreground."""
    grey, t, p = image[0].astype(np.float32), truth > 0, pred > 0
    inside = np.ones(t.shape, bool) if fov is None else fov.astype(bool)
    if grey.ndim == 3:
        grey, t, p, inside = (_axial(a, affine) for a in (grey, t, p, inside))
        weight = t.sum((0, 1)) if t.any() else p.sum((0, 1))
        k = int(np.argmax(weight)) if weight.any() else grey.shape[2] // 2
        grey, t, p, inside = (np.flipud(a[:, :, k].T) for a in (grey, t, p, inside))
    values = grey[inside] if inside.any() else grey.ravel()
    lo, hi = np.percentile(values, [1, 99])
    g = np.clip((grey - lo) / (hi - lo + 1e-8), 0, 1)
    rgb = np.repeat(g[..., None], 3, -1)
    for mask, colour in (
        (t & p, (0.1, 0.8, 0.1)),
        (p & ~t, (0.9, 0.1, 0.1)),
        (t & ~p, (0.1, 0.3, 1.0)),
    ):
        rgb[mask & inside] = 0.45 * rgb[mask & inside] + 0.55 * np.array(colour)
    return png_base64((rgb * 255).astype(np.uint8), max_side=PANEL_SIDE)


def case_score(per_class: dict[str, dict[str, float]], regions: list[str]) -> float:
    """Mean Dice of a case over its foreground classes (regions left out)."""
    v = [m["dice"] for c, m in per_class.items() if c not in regions and m.get("dice") is not None]
    v = [x for x in v if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def pick_gallery(scores: dict[str, float], n_worst: int = 4, n_mid: int = 2, n_best: int = 2):
    """[(group, case id)]: the lowest-Dice cases, the median ones and the best ones."""
    ranked = sorted((s, c) for c, s in scores.items() if np.isfinite(s))
    picked, seen = [], set()
    mid = len(ranked) // 2
    groups = (
        ("worst", ranked[:n_worst]),
        ("median", ranked[max(0, mid - n_mid // 2) : mid - n_mid // 2 + n_mid]),
        ("best", ranked[::-1][:n_best]),
    )
    for group, items in groups:
        for _, c in items:
            if c not in seen:
                picked.append((group, c))
                seen.add(c)
    return picked


def _metrics_section(m: dict[str, Any]) -> str:
    rows = [[esc(k), ci_text(m[k])] for k in METRICS if isinstance(m.get(k), dict)]
    pc = m.get("per_class", {})
    pc_rows = [
        [esc(c) + (" (region)" if c in m.get("regions", {}) else "")]
        + [ci_text(v.get(k)) for k in METRICS]
        for c, v in pc.items()
    ]
    fov = " inside the field-of-view mask" if m.get("field_of_view") else ""
    return (
        "<h2>Metrics</h2>"
        + html_table(["metric (mean over cases, foreground classes)", "value (95% CI)"], rows)
        + f"<p class='muted'>Computed{fov}. HD95 and NSD (1 mm tolerance) in the case's "
        "spacing units; 95% CIs: percentile bootstrap over patients, "
        f"{m['bootstrap']['replicates']} replicates.</p><h3>Per class</h3>"
        + html_table(["class", "Dice", "HD95", "NSD", "pixel AUC"], pc_rows)
    )


def _choices_section(m: dict[str, Any], labels: dict[str, str]) -> str:
    rows = []
    t = m.get("threshold")
    if t:
        rows.append(
            [
                "decision threshold (foreground probability)",
                f"{t['value']:.2f}",
                f"val Dice {t['val_dice']:.3f} (at 0.50: {t['val_dice_at_0.5']:.3f})",
            ]
        )
    for k, rule in (m.get("postprocessing") or {}).items():
        rows.append(
            [
                f"largest component only: {esc(labels.get(k, k))}",
                "kept" if rule["keep_largest_component"] else "not kept",
                f"val Dice {rule['val_dice_before']:.3f} &rarr; {rule['val_dice_after']:.3f}",
            ]
        )
    if not rows:
        return ""
    return "<h2>Chosen on validation</h2>" + html_table(["choice", "value", "evidence"], rows)


def _cases_section(m: dict[str, Any], scores: dict[str, float], limit: int = 200) -> str:
    ranked = sorted(scores, key=lambda c: (not np.isfinite(scores[c]), scores[c]))
    rows = []
    for c in ranked[:limit]:
        per = m["per_case"][c]
        hd = [v["hd95"] for v in per.values() if v.get("hd95") is not None]
        hd = [x for x in hd if np.isfinite(x)]
        rows.append(
            [
                esc(c),
                f"{scores[c]:.3f}" if np.isfinite(scores[c]) else "n/a",
                f"{np.mean(hd):.2f}" if hd else "n/a",
            ]
        )
    more = f" (the {limit} lowest of {len(ranked)})" if len(ranked) > limit else ""
    return f"<h2>Cases, lowest Dice first{more}</h2>" + html_table(
        ["case", "Dice (mean over classes)", "HD95 (mean)"], rows
    )


def _gallery_section(panels: list[tuple[str, str, float, str]]) -> str:
    if not panels:
        return ""
    figs = "".join(
        f"<figure><img alt='{esc(case)}' src='data:image/png;base64,{png}'>"
        f"<figcaption>{esc(group)}: {esc(case)}, Dice {score:.3f}</figcaption></figure>"
        for group, case, score, png in panels
    )
    return (
        "<h2>Worst, median and best cases</h2><p class='muted'>Green: true positive; "
        "red: false positive; blue: false negative (all foreground labels together). "
        "Volumes: the axial slice with the most reference foreground.</p>"
        f"<div class='gallery'>{figs}</div>"
    )


def write_seg_report(
    path: Path,
    metrics: dict[str, Any],
    info: dict[str, Any],
    plan_notes: list[str],
    panels: list[tuple[str, str, float, str]],
    card_md: str | None,
    run_name: str,
) -> Path:
    """Write report.html; ``panels``: (group, case id, Dice, base64 PNG)."""
    regions = list(metrics.get("regions") or {})
    scores = {c: case_score(v, regions) for c, v in metrics["per_case"].items()}
    title = f"scandx segmentation evaluation: {run_name} on {metrics['split']}"
    skipped = metrics.get("skipped") or 0
    labels = metrics.get("labels", {})
    subtitle = (
        f"{metrics['cases']} cases; labels {', '.join(f'{k} {v}' for k, v in labels.items())}; "
        f"model {info['model']} ({info['spatial_dims']}D), weights sha256 "
        f"{info['sha256'][:16]}\u2026; scandx {info['scandx_version']}."
    )
    sections = [
        f"<p class='warn'>{skipped} unusable case(s) skipped (skipped.csv).</p>" if skipped else "",
        _metrics_section(metrics),
        _choices_section(metrics, labels),
        _gallery_section(panels),
        _cases_section(metrics, scores),
        "<h2>Plan</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in plan_notes) + "</ul>",
        model_card_section(card_md),
    ]
    return write_page(path, title, subtitle, sections)


def seg_model_card(run: Path, current: dict[str, dict[str, Any]] | None = None) -> str:
    """Model card markdown from model.json, plan.json and RUN/eval/*/metrics.json, with
    ``current`` ({split: metrics}) standing in for an evaluation not yet in place."""
    return core_card.model_card_text(Path(run), seg_card_sections, current)


def write_seg_model_card(run: Path) -> Path:
    """Write ``RUN/model/model_card.md`` (the same file name as every task); its path."""
    return core_card.write_model_card(Path(run), seg_card_sections)


def seg_card_sections(
    info: dict[str, Any], plan: dict[str, Any], evals: dict[str, dict[str, Any]]
) -> CardSections:
    """The segmentation sections of the shared model-card skeleton."""
    data = info.get("training_data", {})
    labels = ", ".join(f"{k} {v}" for k, v in info["labels"].items())
    t = info.get("threshold")
    evaluation = []
    for split, m in evals.items():
        parts = [f"{k} {ci_plain(m.get(k))}" for k in METRICS if isinstance(m.get(k), dict)]
        evaluation.append(f"- {split} ({m['cases']} cases): " + "; ".join(parts))
    limitations = []
    small = [s for s, m in evals.items() if m["cases"] < 30]
    if small:
        limitations.append(
            f"- Few evaluation cases ({', '.join(small)}): confidence intervals are wide or, "
            "under 5 cases, not meaningful."
        )
    limitations.append(
        "- Evaluated only on data like the training source; other scanners, protocols and "
        "populations are untested."
    )
    return CardSections(
        task=f"segmentation of {labels}",
        network=f"{info['model']} ({info['spatial_dims']}D"
        + (f", slice by slice along axis {info['slice_axis']}" if info.get("slice_axis") else "")
        + f"), {info['in_channels']} input channel(s), patch {plan['patch_size']}",
        details=[
            f"- Preprocessing: {plan['normalization']}"
            + (", inside the region-of-interest mask" if plan.get("use_fov") else "")
            + (f"; resampled to {plan['target_spacing']}" if plan.get("target_spacing") else ""),
            f"- Training: {plan['epochs']} epochs of {plan['steps_per_epoch']} steps planned, "
            + _selection(info)
            + f", Dice + cross-entropy, AdamW lr {plan['lr']}, batch {plan['batch_size']}, "
            f"precision {plan['precision']}, seed {plan['seed']} (all in plan.json)",
            f"- Decision: threshold {t['value']:.2f} chosen on validation"
            if t
            else "- Decision: argmax",
        ],
        intended_use=["- Masks are proposals for review by a qualified reader."],
        training_data=[
            f"- Source: {data.get('layout', '?')} layout, {data.get('cases', '?')} cases "
            f"({', '.join(f'{k} {v}' for k, v in (data.get('per_split') or {}).items())})"
        ],
        evaluation=evaluation,
        limitations=limitations,
    )


def _selection(info: dict[str, Any]) -> str:
    cv = info.get("cross_validation")
    if cv:
        d = [f["val_dice"] for f in cv["per_fold"] if f.get("val_dice") is not None]
        return (
            f"{cv['folds']}-fold ensemble (mean of the folds' probabilities; fold validation "
            f"Dice {np.mean(d):.3f} +- {np.std(d, ddof=1):.3f}, out-of-fold Dice "
            f"{info['val_dice']:.3f})"
        )
    vd = info.get("val_dice")
    dice = "not validated" if vd is None else f"validation Dice {vd:.3f}"
    return f"best epoch {info.get('best_epoch') or '?'} ({dice})"


def ci_plain(m: Any) -> str:
    if not isinstance(m, dict) or m.get("value") is None:
        return "n/a"
    lo, hi = m.get("ci95") or (None, None)
    return f"{m['value']:.3f}" + (f" ({lo:.3f}-{hi:.3f})" if lo is not None else "")
