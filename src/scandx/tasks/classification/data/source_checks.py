"""Checks every classification source runs before any work: identity, duplicates, labels.

``settle_identity`` gives each case its content-based id (``data/identity.py``), links
cases that show the same image into one patient group (so no split can cut through
them), and refuses one image with two labels, naming both entries.
"""

from __future__ import annotations

import logging
from pathlib import Path

from scandx.core.privacy import is_pseudonym, pseudonym, scrub_paths, where_ref
from scandx.data.dicom import header_meta, read_dataset
from scandx.data.identity import case_ids_for, duplicate_groups
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.manifest import Case, Manifest

log = logging.getLogger(__name__)


def skip_or_raise(err: BadImageError, skipped: list[tuple[str, str]], skip_bad: bool) -> None:
    """Without ``--skip-bad`` a bad input ends the command; with it, it is listed."""
    if not skip_bad:
        raise err
    skipped.append((err.where or "", err.reason))
    log.warning("skipped %s: %s", where_ref(err.where), scrub_paths(err.reason))


def image_meta(path: Path, kind: str) -> dict:
    """Header metadata for DICOM files (pseudonymised patient id); nothing for rasters."""
    if kind != "dicom":
        return {}
    return header_meta(read_dataset(path, pixels=False))


def link_patients(keys_per_case: list[list[str]]) -> list[str]:
    """One patient id per case, merging cases that share any identifier (union-find).

    A patient folder holding a DICOM and a PNG, or one PatientID spread over two
    study folders, becomes one patient, so no split can cut through it. The id
    is the group's smallest key without its ``dir:``/``file:`` prefix (keys starting
    with ``~`` only link, and name a group only when it has no other key).
    """
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for keys in keys_per_case:
        for k in keys[1:]:
            a, b = find(keys[0]), find(k)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(keys[0]).split(":", 1)[-1] for keys in keys_per_case]


def image_key(digest: str) -> str:
    """The linking key of one image content: a keyed pseudonym, never the bare digest."""
    return f"~img:{case_ids_for([digest])[0]}"


def settle_identity(
    manifest: Manifest,
    digests: list[str],
    patient_keys: list[list[str]],
    origins: list[str],
    note_names: list[str] | None = None,
) -> None:
    """Case ids from content; duplicates linked into one patient group and reported;
    one image with two labels refused.

    ``origins`` name each case in errors (``FILE:line`` or a file path); ``note_names``
    name them in the notes that reach the run folder (default: the case ids, as a path
    may hold a patient's name); ``patient_keys`` are each case's patient identifiers."""
    drop = _unlabelled_copies(manifest.cases, duplicate_groups(digests))
    if drop:  # an unlabelled copy of a labelled image adds nothing: the labelled one stays
        keep = [i for i in range(len(manifest.cases)) if i not in drop]
        manifest.cases = [manifest.cases[i] for i in keep]
        digests, patient_keys, origins = (
            [v[i] for i in keep] for v in (digests, patient_keys, origins)
        )
        note_names = [note_names[i] for i in keep] if note_names else None
        manifest.notes.append(
            f"{len(drop)} unlabelled image(s) are copies of labelled ones: the labelled "
            "copy is kept"
        )
    cases = manifest.cases
    for case, cid in zip(cases, case_ids_for(digests), strict=True):
        case.case_id = cid
    groups = duplicate_groups(digests)
    for group in groups:
        first = group[0]
        for i in group[1:]:
            if cases[i].target != cases[first].target:
                raise ScandxError(
                    f"the same image is listed at {origins[first]} as "
                    f"{_label_text(manifest, cases[first])} and at {origins[i]} as "
                    f"{_label_text(manifest, cases[i])}; one image cannot have two labels",
                    manifest.source,
                )
    keys = [
        [*pk, image_key(d)] if pk else [image_key(d)]
        for pk, d in zip(patient_keys, digests, strict=True)
    ]
    for case, patient in zip(cases, link_patients(keys), strict=True):
        # a folder name or a CSV value may be the real PatientID: only its keyed pseudonym
        # reaches the run (DICOM ids and content keys already are pseudonyms)
        keyed = is_pseudonym(patient, "pid") or is_pseudonym(patient, "case")
        case.patient_id = patient if keyed else pseudonym(patient, "pid")
    if groups:
        names = note_names or [c.case_id for c in cases]
        shown = "; ".join(" = ".join(names[i] for i in g) for g in groups[:5])
        more = f" and {len(groups) - 5} more" if len(groups) > 5 else ""
        two_patients = sum(1 for g in groups if len({tuple(patient_keys[i]) for i in g}) > 1)
        note = (
            f"{len(groups)} image(s) listed more than once ({shown}{more}): each kept as one "
            "patient group, so its copies share a split"
        )
        if two_patients:
            note += f"; {two_patients} of them under two patient ids, those patients merged"
        manifest.notes.append(note)
        manifest.warn("duplicate_images", note, count=len(groups))


def _unlabelled_copies(cases: list[Case], groups: list[list[int]]) -> set[int]:
    """Indices of unlabelled cases whose image is also listed with a label."""
    drop: set[int] = set()
    for group in groups:
        if any(cases[i].target is not None for i in group):
            drop.update(i for i in group if cases[i].target is None)
    return drop


def _label_text(manifest: Manifest, case: Case) -> str:
    if manifest.task == "multilabel":
        return repr(dict(zip(manifest.classes, case.target, strict=True)))  # type: ignore[arg-type]
    return repr(manifest.classes[int(case.target)])  # type: ignore[arg-type]
