"""Classification sections of ``RUN/eval/<split>/report.html``.

The page frame (head, CSS, title, self-containment check, atomic write) is the shared
one of :mod:`scandx.core.report`; this module builds the classification sections.
Everything shown comes from the evaluation just run (metrics, curves, gallery) and the
run's own files (model card). Text from the data (class names, metadata values, file
names) is HTML-escaped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scandx.core.report import ci_text as value_ci_text
from scandx.core.report import esc, html_table, model_card_section, write_page
from scandx.tasks.classification.evaluation.curves import OPERATING_RULES
from scandx.tasks.classification.evaluation.report import HEADLINE
from scandx.tasks.classification.evaluation.svg import PALETTE, Series, unit_chart


def positive_line(m: dict[str, Any]) -> str:
    """Binary: which class the metrics, curves and threshold are about (metrics.json)."""
    if not m.get("positive_class"):
        return ""
    pos, neg = esc(m["positive_class"]), esc(m.get("negative_class", ""))
    th = (m.get("threshold") or {}).get("positive")
    at = f" &ge; {th:.4f}" if isinstance(th, float) else " &ge; the operating threshold"
    return (
        f"<p>Positive class: <b>{pos}</b> (negative: {neg}). Sensitivity, specificity, PPV, "
        f"NPV, AUC, the curves and the calibration are about P({pos}); a case is called "
        f"{pos} when P({pos}){at} (chosen on {esc(m['threshold'].get('chosen_on', 'val'))} "
        "data).</p>"
    )


def ci_text(m: Any, digits: int = 3) -> str:
    """``value (lo-hi)``, marked W for a Wilson interval, "no CI" where one was refused,
    and the reason where the value itself cannot be measured."""
    text = value_ci_text(m, digits)
    if not isinstance(m, dict):
        return text
    if m.get("value") is None and m.get("note"):
        return f"n/a ({esc(m['note'])})"
    if m.get("ci_method") == "wilson":
        return f"{text} W"
    if m.get("ci_note"):
        return f"{text} <span class='warn'>(no CI: {esc(m['ci_note'])})</span>"
    return text


def warnings_box(warnings: list[str]) -> str:
    """What this split's size and make-up do not support, at the top of the report."""
    if not warnings:
        return ""
    items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
    return (
        "<div class='warnbox' role='alert' style='border:2px solid #a40;background:#fff4e5;"
        "padding:8px 16px;margin:12px 0'><strong class='warn'>Warning: read these results "
        f"with care</strong><ul>{items}</ul></div>"
    )


def headline_section(m: dict[str, Any]) -> str:
    rows = [[esc(k), ci_text(m[k])] for k in HEADLINE if isinstance(m.get(k), dict)]
    per_class = m.get("per_class", {})
    pc_rows = [
        [
            esc(c),
            str(v.get("n", "")),
            ci_text(v.get("auc")),
            ci_text(v.get("sensitivity")),
            ci_text(v.get("specificity")),
        ]
        for c, v in per_class.items()
    ]
    return (
        "<h2>Metrics</h2>"
        + html_table(["metric", "value (95% CI)"], rows)
        + "<p class='muted'>95% CIs: percentile bootstrap over patients, "
        f"{m['bootstrap']['replicates']} replicates (W: Wilson score interval, used where "
        "few cases stand behind a proportion; n/a: no interval, too few cases). Decisions at "
        "the operating threshold chosen on validation.</p>"
        + "<h3>Per class</h3>"
        + html_table(["class", "n", "AUC", "sensitivity", "specificity"], pc_rows)
    )


def curves_section(curves: dict[str, dict[str, Any]]) -> str:
    charts = []
    small = len(curves) > 2
    size = {"width": 300, "height": 280} if small else {}
    for i, (target, c) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        roc, pr, grid = c["roc"], c["pr"], c["grid"]
        charts.append(
            unit_chart(
                [
                    Series(
                        roc["fpr"],
                        roc["tpr"],
                        f"AUC {c['auc']:.3f}",
                        color,
                        band=(roc["band"][0], roc["band"][1]),
                        band_x=grid,
                    )
                ],
                title=f"ROC: {target}",
                xlabel="1 - specificity",
                ylabel="sensitivity",
                diagonal="up",
                **size,
            )
        )
        charts.append(
            unit_chart(
                [
                    Series(
                        pr["recall"],
                        pr["precision"],
                        f"AP {pr['average_precision']:.3f}",
                        color,
                        band=(pr["band"][0], pr["band"][1]),
                        band_x=grid,
                    )
                ],
                title=f"Precision-recall: {target}",
                xlabel="recall (sensitivity)",
                ylabel="precision (PPV)",
                legend="bottom left",
                **size,
            )
        )
    return (
        "<h2>ROC and precision-recall curves</h2><div class='charts'>"
        + "".join(charts)
        + "</div><p class='muted'>Shaded: 95% patient-bootstrap band (sensitivity at each "
        "false-positive rate; interpolated precision at each recall).</p>"
    )


def confusion_section(m: dict[str, Any]) -> str:
    blocks = []
    if "confusion_matrix" in m:
        cm = m["confusion_matrix"]
        blocks.append(("", cm["labels"], cm["matrix"]))
    for label, mat in m.get("confusion_matrices", {}).items():
        blocks.append((f"{label}: ", ["absent", "present"], mat))
    out = ["<h2>Confusion matrix</h2><div class='charts'>"]
    for prefix, labels, mat in blocks:
        peak = max(max(r) for r in mat) or 1
        rows = []
        for name, r in zip(labels, mat, strict=True):
            cells = [f"<th>{esc(prefix + name)}</th>"] + [
                f"<td style='background:rgba(31,119,180,{0.08 + 0.6 * v / peak:.2f})'>{v}</td>"
                for v in r
            ]
            rows.append("<tr>" + "".join(cells) + "</tr>")
        head = (
            "<tr><th>true \\ predicted</th>"
            + "".join(f"<th>{esc(n)}</th>" for n in labels)
            + "</tr>"
        )
        out.append(f"<table>{head}{''.join(rows)}</table>")
    out.append("</div>")
    return "".join(out)


def operating_section(
    points: dict[str, list[dict[str, Any]]] | None, chosen_on: str = "val"
) -> str:
    if not points:
        return (
            "<h2>Operating points</h2><p class='muted'>Not applicable: a multi-class model "
            "decides by the most probable class, or the run predates stored operating points."
            "</p>"
        )
    out = ["<h2>Operating points</h2>"]
    for target, rows in points.items():
        table_rows = [
            [esc(r.get("chosen_by") or OPERATING_RULES.get(r["rule"], r["rule"]))]
            + (
                ["not chosen", esc(r["refused"]), "", "", ""]
                if "refused" in r
                else [
                    f"{r['threshold']:.4f}",
                    ci_text(r["sensitivity"]),
                    ci_text(r["specificity"]),
                    ci_text(r["ppv"]),
                    ci_text(r["npv"]),
                ]
            )
            for r in rows
        ]
        out.append(f"<h3>{esc(target)}</h3>")
        merged = [r["note"] for r in rows if r.get("same_as")]
        out.extend(f"<p class='warn'>{esc(n)}</p>" for n in merged)
        out.append(
            html_table(
                ["threshold chosen by", "threshold", "sensitivity", "specificity", "PPV", "NPV"],
                table_rows,
            )
        )
    out.append(
        f"<p class='muted'>Each threshold was chosen on {esc(chosen_on)} data at training "
        'time ("on val" above); the sensitivity and specificity shown are measured on this '
        "split, with patient-bootstrap 95% CIs.</p>"
    )
    return "".join(out)


def calibration_section(
    reliability: dict[str, list[dict]], cal: dict[str, Any], ensemble: bool = False
) -> str:
    series = []
    for name, color, dashed in (("before", PALETTE[1], True), ("after", PALETTE[0], False)):
        bins = reliability.get(name) or []
        ece = cal.get(f"ece_{name}")
        label = f"{name}: ECE {ece:.3f}" if ece is not None else name
        series.append(
            Series(
                [b["confidence"] for b in bins],
                [b["observed"] for b in bins],
                label,
                color,
                markers=True,
                dashed=dashed,
            )
        )
    chart = unit_chart(
        series,
        title="Reliability diagram",
        xlabel="predicted probability",
        ylabel="observed frequency",
        diagonal="up",
        legend="top left",
    )
    counts = html_table(
        ["bin", "cases", "mean predicted", "observed"],
        [
            [
                f"{b['lo']:.2f}&ndash;{b['hi']:.2f}",
                str(b["n"]),
                f"{b['confidence']:.3f}",
                f"{b['observed']:.3f}",
            ]
            for b in reliability.get("after") or []
        ],
    )
    how = (
        "each member of the ensemble calibrated on its own validation fold; the ensemble "
        "averages the calibrated probabilities (so before = after)"
        if ensemble
        else f"{esc(cal.get('method', 'none'))}, fitted on the validation split"
    )
    return (
        f"<h2>Calibration</h2><p>Method: {how}. "
        f"{cal.get('ece_bins', 15)} equal-width bins.</p><div class='charts'>{chart}"
        f"<div><h3>After calibration, per bin</h3>{counts}</div></div>"
    )


def subgroup_section(subgroups: dict[str, list[dict[str, Any]]] | None) -> str:
    if not subgroups:
        return (
            "<h2>Subgroups</h2><p class='muted'>No subgroup columns: name metadata columns with "
            "<code>scandx evaluate --subgroups sex,age_group,site</code> (DICOM inputs report "
            "sex, age band and manufacturer by default).</p>"
        )
    out = ["<h2>Subgroups</h2>"]
    for column, rows in subgroups.items():
        has_pos = any("positives" in r for r in rows)
        header = ["value", "cases", "patients"] + (["positives"] if has_pos else [])
        header += ["AUC", "accuracy", "sensitivity", "specificity"]
        body = []
        for r in rows:
            cells = [esc(r["value"]), str(r["cases"]), str(r["patients"])]
            cells += [str(r.get("positives", ""))] if has_pos else []
            cells += [ci_text(r.get(k)) for k in ("auc", "accuracy", "sensitivity", "specificity")]
            body.append(cells)
        out.append(f"<h3>{esc(column)}</h3>" + html_table(header, body))
    out.append(
        "<p class='muted'>Same operating threshold for every subgroup; CIs by patient bootstrap "
        "within the subgroup. Small subgroups give wide intervals.</p>"
    )
    return "".join(out)


def gallery_section(gallery: dict[str, list[dict[str, Any]]] | None, method: str) -> str:
    if gallery is None:
        return ""
    out = [f"<h2>Explanations ({esc(method)})</h2>"]
    for category, items in gallery.items():
        out.append(f"<h3>{esc(category)} ({len(items)})</h3>")
        if not items:
            out.append("<p class='muted'>none in this split</p>")
            continue
        figs = [
            f"<figure><img alt='{esc(category)}: {esc(it['case_id'])}' "
            f"src='data:image/png;base64,{it['png_base64']}'>"
            f"<figcaption>{esc(it['case_id'])}"
            + (f" (slice {it['slice']})" if "slice" in it else "")
            + f"<br>P({esc(it['class'])}) = "
            f"{it['probability']:.3f}</figcaption></figure>"
            for it in items
        ]
        out.append("<div class='gallery'>" + "".join(figs) + "</div>")
    out.append(
        "<p class='muted'>Heatmaps of the explained class over the image as read (DICOM "
        "windowing applied); most confident cases of each kind first.</p>"
    )
    return "".join(out)


def write_report(path: Path, data: dict[str, Any]) -> Path:
    """Write the report; ``data`` holds metrics, curves, reliability, gallery, card."""
    m = data["metrics"]
    info = data["info"]
    ood = m.get("ood", {})
    ood_line = (
        f"<p>Out-of-distribution screen: {ood['flagged_fraction']:.1%} of images flagged "
        f"(threshold {ood['threshold']:.3f}, fitted on validation).</p>"
        if "flagged_fraction" in ood
        else ""
    )
    skipped = m.get("skipped") or []
    skipped_line = (
        f"<p class='warn'>{len(skipped)} unreadable file(s) were skipped "
        "(listed in metrics.json).</p>"
        if skipped
        else ""
    )
    title = f"scandx evaluation: {data['run_name']} on {m['split']}"
    subtitle = (
        f"{m['cases']} images from {m['patients']} patients; task {m['task']} "
        f"({', '.join(m['classes'])}); model {info['model']}, weights sha256 "
        f"{info['sha256'][:16]}\u2026; scandx {info['scandx_version']}; written {data['created']}."
    )
    sections = [
        warnings_box(m.get("warnings") or []),
        positive_line(m),
        ood_line,
        skipped_line,
        headline_section(m),
        curves_section(data["curves"]),
        confusion_section(m),
        operating_section(m.get("operating_points"), m["threshold"].get("chosen_on", "val")),
        calibration_section(data["reliability"], m.get("calibration", {}), "ensemble" in info),
        subgroup_section(m.get("subgroups")),
        gallery_section(data.get("gallery"), data.get("gallery_method", "gradcam")),
        model_card_section(data.get("model_card")),
    ]
    return write_page(path, title, subtitle, sections)
