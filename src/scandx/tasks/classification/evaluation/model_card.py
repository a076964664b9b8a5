"""``RUN/model/model_card.md``, written from the run's own files.

Written at the end of ``train`` and refreshed by every ``evaluate``: model details,
intended use, training data, evaluation per split with CIs, calibration, operating
threshold, out-of-distribution screening, limitations, and where each reporting
item that TRIPOD+AI and CLAIM ask for can be found. Nothing is typed in by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scandx.tasks.classification.evaluation.report import HEADLINE

CHECKLIST = [  # (reporting item, as TRIPOD+AI / CLAIM name it, where this card answers it)
    ("Intended use and clinical setting", "Intended use"),
    ("Data sources and eligibility", "Training data"),
    ("Data partitions, no patient overlap", "Training data (splits)"),
    ("Reference standard / labels", "Training data (labels)"),
    ("Sample size per class and partition", "Training data"),
    ("Handling of unusable data", "Training data (files skipped)"),
    ("Model description and preprocessing", "Model details"),
    ("Training procedure and hyperparameters", "Model details; plan.json"),
    ("Performance metrics with confidence intervals", "Evaluation"),
    ("Calibration", "Calibration"),
    ("Operating threshold and how it was chosen", "Operating threshold"),
    ("Performance in subgroups", "Subgroups"),
    ("Failure modes, limitations, generalisability", "Limitations"),
]


def _fmt(m: dict[str, Any] | None) -> str:
    if not isinstance(m, dict) or m.get("value") is None:
        return "n/a"
    lo, hi = m["ci95"]
    return f"{m['value']:.3f} ({lo:.3f}-{hi:.3f})" if lo is not None else f"{m['value']:.3f}"


def read_run_files(run: Path) -> tuple[dict, dict, dict[str, dict]]:
    """(model.json, plan.json, {split: metrics.json}) of a run; hidden folders (an
    evaluation being written) are left out."""
    info = json.loads((run / "model" / "model.json").read_text())
    plan = json.loads((run / "plan.json").read_text())
    evals = {
        p.parent.name: json.loads(p.read_text())
        for p in sorted((run / "eval").glob("*/metrics.json"))
        if not p.parent.name.startswith(".")
    }
    return info, plan, evals


def write_model_card(run: Path) -> Path:
    run = Path(run)
    info, plan, evals = read_run_files(run)
    data = info.get("training_data", {})
    classes = info["classes"]
    target = info.get("positive_class") or ", ".join(classes)
    lines = [
        f"# Model card: {run.name}",
        "",
        "## Model details",
        f"- Task: {info['task']} classification of {', '.join(classes)}"
        + (f" (positive class: {info['positive_class']})" if info.get("positive_class") else ""),
        f"- Network: {info['model']} {info.get('model_kwargs') or ''}, {info['spatial_dims']}D, "
        f"{info['in_channels']} input channel(s), input {info['input']['size']} "
        f"({info['input']['resize']})",
        f"- Preprocessing: {info['input']['intensity']}; z-score with mean {info['input']['mean']} "
        f"and std {info['input']['std']} of the training images",
        f"- Training: {plan['epochs']} epochs planned, best epoch {_epoch(info)}, loss "
        f"{plan['loss']}, AdamW lr {plan['lr']}, batch {plan['batch_size']}, "
        f"precision {plan['precision']}, seed {plan['seed']} (all in plan.json)",
        f"- Weights: model/{info['weights']}, sha256 {info['sha256']}; "
        f"scandx {info['scandx_version']}, created {info['created']}"
        if "ensemble" not in info
        else f"- Ensemble: {info['combine']} of {', '.join(info['ensemble'])} (member sha256 "
        f"{', '.join(s[:12] for s in info['member_sha256'])}); scandx {info['scandx_version']}, "
        f"created {info['created']}",
        "",
        "## Intended use",
        f"- Research use: estimating the probability of {target} in images like the "
        "training data (same modality, acquisition and population).",
        "- Not a medical device and not validated for clinical decisions; a human reader decides.",
        "- Images unlike the training data are flagged (`ood_flag` in predictions); such "
        "predictions should not be used.",
        "",
        "## Training data",
        f"- Source: {data.get('source') or 'see manifest.csv'}; {data.get('cases', '?')} cases "
        f"from {data.get('patients', '?')} patients; labels as given by the source.",
        "- Splits: patient-level (no patient in two splits), stratified by label, seeded; splits "
        "given by the source kept. Per split and class:",
        "",
        "| split | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for split, counts in data.get("per_split", {}).items():
        lines.append(f"| {split} | " + " | ".join(str(counts.get(c, 0)) for c in classes) + " |")
    skipped = run / "skipped.csv"
    n_skipped = max(0, len(skipped.read_text().splitlines()) - 1) if skipped.exists() else 0
    lines += ["", f"- Files skipped as unreadable: {n_skipped} (listed in skipped.csv)", ""]

    lines += _cross_validation_lines(info.get("cross_validation"))
    lines += ["## Evaluation", ""]
    if not evals:
        lines.append("Not evaluated yet: run `scandx evaluate RUN --data SRC --split test`.")
    else:
        lines += [
            "| split | cases | patients | " + " | ".join(HEADLINE) + " |",
            "|---|---|---|" + "---|" * len(HEADLINE),
        ]
        for split, m in evals.items():
            cells = [_fmt(m.get(k)) for k in HEADLINE]
            lines.append(
                f"| {split} | {m['cases']} | {m['patients']} | " + " | ".join(cells) + " |"
            )
        lines += ["", "Values with 95% CIs from a 1,000-replicate bootstrap over patients."]
    cal = info.get("calibration") or {}
    lines += [
        "",
        "## Calibration",
        f"- Method: {cal.get('method', 'none')}, fitted on the validation split"
        if "ensemble" not in info
        else "- Each member calibrated on its own validation fold; the ensemble averages "
        "the calibrated probabilities (so before = after below)",
    ]
    for split, m in evals.items():
        c = m.get("calibration", {})
        if "ece_before" in c:
            lines.append(f"- {split}: ECE {c['ece_before']:.3f} before, {c['ece_after']:.3f} after")
    th = info.get("thresholds", {})
    lines += [
        "",
        "## Operating threshold",
        f"- Rule: {th.get('rule')}, chosen on {th.get('chosen_on')} data, never on test"
        + (f"; P({info['positive_class']}) >= {th['positive']:.3f}" if "positive" in th else ""),
    ]
    ood = info.get("ood") or {}
    lines += [
        "",
        "## Out-of-distribution screening",
        f"- {ood.get('method', 'none')}; threshold {ood.get('threshold', float('nan')):.3f} "
        "(flags about 5% of validation images)",
    ]
    for split, m in evals.items():
        if "flagged_fraction" in m.get("ood", {}):
            lines.append(f"- {split}: {m['ood']['flagged_fraction']:.1%} of images flagged")
    lines += ["", "## Subgroups"]
    lines += _subgroup_lines(evals)
    lines += ["", "## Limitations"]
    lines += _limitations(info, plan, evals)
    lines += ["", "## Reporting checklist (TRIPOD+AI, CLAIM)", "", "| item | where |", "|---|---|"]
    lines += [f"| {item} | {where} |" for item, where in CHECKLIST]
    out = run / "model" / "model_card.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _epoch(info: dict) -> str:
    e = info.get("best_epoch")
    return "?" if e is None else str(int(e) + 1)


def _limitations(info: dict, plan: dict, evals: dict) -> list[str]:
    notes = []
    size = min(info["input"]["size"])
    if size <= 64:
        notes.append(
            f"- Low input resolution ({size} px): small findings may be invisible to the model."
        )
    for split, m in evals.items():
        auc = m.get("auc") or {}
        lo, hi = auc.get("ci95", [None, None])
        if lo is not None and hi - lo > 0.1:
            notes.append(
                f"- Wide AUC interval on {split} ({lo:.3f}-{hi:.3f}): few cases or patients."
            )
        flagged = m.get("ood", {}).get("flagged_fraction")
        if flagged is not None and flagged > 0.1:
            notes.append(
                f"- {flagged:.0%} of {split} images look unlike the training data: "
                "a sign of dataset shift."
            )
    if info["model"].split()[-1] in ("simple-cnn", "keras-cnn"):
        notes.append(
            f"- {info['model']} has a dense head on flattened maps: its heatmaps (LayerCAM) "
            "found synthetic lesions in 76% of cases, against >= 90% for ResNet-18 "
            "(docs/benchmarks.md); plan a ResNet when localisation matters."
        )
    if "external" not in evals:
        notes.append("- No external validation: all evaluated data come from the training source.")
    if not any(m.get("subgroups") for m in evals.values()):
        notes.append("- Subgroup performance (sex, age, site, device) has not been assessed.")
    for split, m in evals.items():
        for column, rows in (m.get("subgroups") or {}).items():
            aucs = [
                r["auc"]["value"] for r in rows if (r.get("auc") or {}).get("value") is not None
            ]
            if len(aucs) > 1 and max(aucs) - min(aucs) > 0.05:
                notes.append(
                    f"- AUC differs by {max(aucs) - min(aucs):.3f} between {column} subgroups "
                    f"on {split}; see Subgroups (check the intervals before concluding)."
                )
    return notes


def _subgroup_lines(evals: dict) -> list[str]:
    if not any(m.get("subgroups") for m in evals.values()):
        return [
            "- Not assessed: name metadata columns with `scandx evaluate --subgroups "
            "sex,age_group,site` (DICOM inputs report sex, age band and manufacturer by default)."
        ]
    lines = []
    for split, m in evals.items():
        for column, rows in (m.get("subgroups") or {}).items():
            lines += [
                "",
                f"{split}, by {column}:",
                "",
                "| value | cases | patients | AUC | sensitivity | specificity |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {r['value']} | {r['cases']} | {r['patients']} | {_fmt(r.get('auc'))} | "
                f"{_fmt(r.get('sensitivity'))} | {_fmt(r.get('specificity'))} |"
                for r in rows
            ]
    return lines


def _cross_validation_lines(cv: dict | None) -> list[str]:
    if not cv:
        return []
    keys = list(cv["mean_sd"])
    lines = [
        "## Cross-validation",
        f"- {cv['folds']} patient-level folds of the train + val patients (test held out); "
        "each model validated on its own fold; thresholds of the ensemble chosen on the pooled "
        "out-of-fold predictions.",
        "",
        "| fold | cases | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for f in cv["per_fold"]:
        cells = ["n/a" if f[k] is None else f"{f[k]:.3f}" for k in keys]
        lines.append(f"| {f['fold']} | {f['val_cases']} | " + " | ".join(cells) + " |")
    cells = [
        "n/a" if v["mean"] is None else f"{v['mean']:.3f} +- {v['sd'] or 0:.3f}"
        for v in cv["mean_sd"].values()
    ]
    lines.append("| mean +- sd | | " + " | ".join(cells) + " |")
    return lines + [""]
