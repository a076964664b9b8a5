"""Classification sections of the model card (``RUN/model/model_card.md``).

Written at the end of ``train`` and refreshed by every ``evaluate``. The shared
skeleton (:mod:`scandx.core.model_card`) gives the common headings (model details,
intended use, training data, evaluation, limitations, how to reproduce); this module
adds what is particular to classification: the per-class split counts, the headline
metrics per split with CIs, calibration, operating threshold, out-of-distribution
screening, subgroups, cross-validation, and where each reporting item that TRIPOD+AI
and CLAIM ask for can be found. Nothing is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scandx.core import model_card as core_card
from scandx.core.model_card import CardSections
from scandx.tasks.classification.evaluation.report import HEADLINE

CHECKLIST = [  # (reporting item, as TRIPOD+AI / CLAIM name it, where this card answers it)
    ("Intended use and clinical setting", "Intended use"),
    ("Data sources and eligibility", "Training data"),
    ("Data partitions, no patient overlap", "Training data (splits)"),
    ("Reference standard / labels", "Training data (labels)"),
    ("Sample size per class and partition", "Training data"),
    ("Handling of unusable data", "Training data (files skipped)"),
    ("Model description and preprocessing", "Model details"),
    ("Training procedure and hyperparameters", "Model details; How to reproduce (plan.json)"),
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
    if lo is None:
        return f"{m['value']:.3f} (no CI)" if m.get("ci_note") else f"{m['value']:.3f}"
    mark = " W" if m.get("ci_method") == "wilson" else ""
    return f"{m['value']:.3f} ({lo:.3f}-{hi:.3f}){mark}"


def write_model_card(run: Path) -> Path:
    """Write ``RUN/model/model_card.md`` from the run's files; returns its path."""
    return core_card.write_model_card(Path(run), card_sections)


def card_sections(info: dict, plan: dict, evals: dict[str, dict]) -> CardSections:
    """The classification sections of the shared model-card skeleton."""
    data = info.get("training_data", {})
    classes = info["classes"]
    target = info.get("positive_class") or ", ".join(classes)
    details = [
        f"- Preprocessing: {info['input']['intensity']}; z-score with mean {info['input']['mean']} "
        f"and std {info['input']['std']} of the training images",
        f"- Training: {plan['epochs']} epochs planned, best epoch {_epoch(info)}, loss "
        f"{plan['loss']}, AdamW lr {plan['lr']}, batch {plan['batch_size']}, "
        f"precision {plan['precision']}, seed {plan['seed']} (all in plan.json)",
    ]
    if info.get("ensemble"):
        details.append(f"- Ensemble: {info['combine']}")
    training = [
        f"- Source: {data.get('source') or 'see manifest.csv'} (keyed reference of the data "
        f"path: `core.privacy.locate`); {data.get('cases', '?')} cases "
        f"from {data.get('patients', '?')} patients; labels as given by the source.",
        "- Splits: patient-level (no patient in two splits), stratified by label, seeded; splits "
        "given by the source kept. Per split and class:",
        "",
        "| split | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for split, counts in data.get("per_split", {}).items():
        training.append(f"| {split} | " + " | ".join(str(counts.get(c, 0)) for c in classes) + " |")
    cv = _cross_validation_lines(info.get("cross_validation"))
    return CardSections(
        task=f"{info['task']} classification of {', '.join(classes)}"
        + (f" (positive class: {info['positive_class']})" if info.get("positive_class") else ""),
        network=f"{' '.join(str(x) for x in (info['model'], info.get('model_kwargs')) if x)}, "
        f"{info['spatial_dims']}D, "
        f"{info['in_channels']} input channel(s), input {info['input']['size']} "
        f"({info['input']['resize']})",
        details=details,
        intended_use=[
            f"- Estimates the probability of {target} in images like the training data (same "
            "modality, acquisition and population).",
            "- Images unlike the training data are flagged (`ood_flag` in predictions); such "
            "predictions should not be used.",
        ],
        training_data=training,
        evaluation=_evaluation_lines(evals),
        limitations=_limitations(info, plan, evals),
        before_evaluation=[("Cross-validation", cv)] if cv else [],
        after_evaluation=[
            ("Calibration", _calibration_lines(info, evals)),
            ("Operating threshold", _threshold_lines(info, plan)),
            ("Out-of-distribution screening", _ood_lines(info, evals)),
            ("Subgroups", _subgroup_lines(evals)),
        ],
        appendix=[
            (
                "Reporting checklist (TRIPOD+AI, CLAIM)",
                ["", "| item | where |", "|---|---|"]
                + [f"| {item} | {where} |" for item, where in CHECKLIST],
            )
        ],
    )


def _evaluation_lines(evals: dict[str, dict]) -> list[str]:
    lines = [
        "| split | cases | patients | " + " | ".join(HEADLINE) + " |",
        "|---|---|---|" + "---|" * len(HEADLINE),
    ]
    for split, m in evals.items():
        cells = [_fmt(m.get(k)) for k in HEADLINE]
        lines.append(f"| {split} | {m['cases']} | {m['patients']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Values with 95% CIs from a bootstrap over patients; W: Wilson score interval, used "
        "where few cases stand behind a proportion; no CI: too few cases for one.",
    ]
    for split, m in evals.items():
        for w in m.get("warnings") or []:
            lines.append(f"\n> **Warning ({split})**: {w}")
    return lines


def _calibration_lines(info: dict, evals: dict[str, dict]) -> list[str]:
    cal = info.get("calibration") or {}
    lines = [
        f"- Method: {cal.get('method', 'none')}, fitted on the validation split"
        if "ensemble" not in info
        else "- Each member calibrated on its own validation fold; the ensemble averages "
        "the calibrated probabilities (so before = after below)"
    ]
    if cal.get("note"):
        lines.append(f"- **Warning**: {cal['note']}")
    for split, m in evals.items():
        c = m.get("calibration", {})
        if "ece_before" in c:
            lines.append(f"- {split}: ECE {c['ece_before']:.3f} before, {c['ece_after']:.3f} after")
    return lines


def _threshold_lines(info: dict, plan: dict) -> list[str]:
    th = info.get("thresholds", {})
    lines = [
        f"- Rule: {th.get('rule')}, chosen on {th.get('chosen_on')} data, never on test"
        + (f"; P({info['positive_class']}) >= {th['positive']:.3f}" if "positive" in th else "")
    ]
    if info.get("positive_class"):
        why = next((n for n in plan.get("notes", []) if n.startswith("positive class ")), None)
        lines.append(
            f"- Positive class: {info['positive_class']} ("
            + (
                f"why: {why.split(': ', 1)[-1]})"
                if why
                else "sensitivity, specificity, PPV, NPV, AUC and calibration are about it)"
            )
        )
    return lines


def _ood_lines(info: dict, evals: dict[str, dict]) -> list[str]:
    ood = info.get("ood") or {}
    rate = ood.get("target_false_flag_rate")
    aim = (
        f"set on validation images to flag about {rate:.0%} of in-distribution images"
        if rate is not None
        else "flags about 5% of validation images"
    )
    lines = [
        f"- {ood.get('method', 'none')}; threshold {ood.get('threshold', float('nan')):.3f} ({aim})"
    ]
    for split, m in evals.items():
        if "flagged_fraction" in m.get("ood", {}):
            lines.append(f"- {split}: {m['ood']['flagged_fraction']:.1%} of images flagged")
    return lines


def _epoch(info: dict) -> str:
    e = info.get("best_epoch")
    return "?" if e is None else str(int(e))  # counted from 1


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
    return lines
