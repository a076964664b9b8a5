"""The Predictor protocol: what evaluate, predict, explain (and a server) use, for every task.

``load_predictor(run)`` returns the run's Predictor (an ensemble for a ``train --folds``
run: same protocol). A Predictor is built from ``RUN/model/`` alone (weights + model.json
+ plan.json) and imports no training code. Its surface:

- ``prepare(path)``: read one input (an image file, or a DICOM series folder) and check
  it against the model's input contract; raises ``ScandxError`` naming the input;
- ``score(prepared)``: the model's outputs for a list of prepared inputs (probabilities,
  decisions, uncertainty, ... as the task defines them), in fp32 on the Predictor's
  device;
- ``write(path, output, out_dir)``: write the prediction in the input's own format
  where the task has one (a mask as NIfTI / PNG / DICOM SEG; a classifier writes no
  file) and return the row for ``predictions.csv``.

``predict_files`` is the one predict loop (``scandx predict``) built on those three.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scandx.core.privacy import file_ref, scrub_paths
from scandx.core.run_dir import atomic_write, write_skipped
from scandx.errors import ScandxError


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Predictor(ABC):
    task: str  # the plan's task value (binary, multiclass, multilabel, segmentation)
    info: dict[str, Any]  # model.json
    device: str = "cpu"
    runtime: str = "torch"  # or "onnx": the network(s) run by ONNX Runtime
    batch_size: int = 64  # inputs scored together by predict_files

    @abstractmethod
    def prepare(self, path: str | Path) -> Any: ...

    @abstractmethod
    def score(self, prepared: list[Any]) -> list[Any]: ...

    @abstractmethod
    def write(self, path: str | Path, output: Any, out_dir: Path | None) -> dict[str, Any]: ...

    def columns(self) -> list[str]:
        """predictions.csv columns after ``input`` and ``file`` (the task's; ``error``
        comes last)."""
        return []

    def predict_files(
        self, paths: Sequence[str | Path], out_dir: str | Path | None = None, skip_bad: bool = False
    ) -> list[dict[str, Any]]:
        """A row per input, in the order given (with ``skip_bad``, an ``error`` row for an
        unusable one); ``out_dir`` receives the task's files and ``predictions.csv``.

        A row names its input by ``input`` (its position in ``paths``, from 1) and
        ``file`` (``core.privacy.file_ref``: the keyed pseudonym of its path), never by
        the path, whose folder and file names may identify the patient."""
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        bad: list[tuple[str, str]] = []
        for start in range(0, len(paths), self.batch_size):
            chunk, prepared, ok = paths[start : start + self.batch_size], [], []
            for i, p in enumerate(chunk, start=start + 1):
                try:
                    prepared.append(self.prepare(p))
                    ok.append((i, p))
                except ScandxError as e:
                    if not skip_bad:
                        raise
                    rows.append({**input_ref(i, p), "error": scrub_paths(e.reason)})
                    bad.append((str(p), e.reason))
            if prepared:
                for (i, p), output in zip(ok, self.score(prepared), strict=True):
                    rows.append({**input_ref(i, p), **self.write(p, output, out)})
        if out is not None:
            atomic_write(out / "predictions.csv", self.csv_text(rows))
            write_skipped(out, bad)
        return rows

    def csv_text(self, rows: list[dict[str, Any]]) -> str:
        keys = ["input", "file", *self.columns()]
        keys += [k for r in rows for k in r if k not in keys and k != "error"]
        keys = list(dict.fromkeys(keys)) + ["error"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k, "")) for k in keys})
        return buf.getvalue()


def input_ref(position: int, path: str | Path) -> dict[str, Any]:
    """How an output row names an input: its position among the inputs given (from 1)
    and its keyed pseudonym (``core.privacy.file_ref``)."""
    return {"input": position, "file": file_ref(path)}


def _cell(v: Any) -> Any:
    return f"{v:.6f}" if isinstance(v, float) else v


MODEL_JSON = "model.json"


def read_model_json(model_dir: Path) -> dict[str, Any]:
    """model.json of a model folder, checked for the keys every task reads (``task``,
    ``weights``, ``sha256``; an ensemble's ``ensemble`` and ``member_sha256``): a
    hand-edited or truncated file gives one line naming the file and the key."""
    path = Path(model_dir) / MODEL_JSON
    if not path.exists():
        raise ScandxError(
            "no trained model here (model/model.json missing); run scandx train first", model_dir
        )
    try:
        info = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScandxError(f"not valid JSON ({e})", path) from None
    if not isinstance(info, dict):
        raise ScandxError(f"expected a JSON object, found {type(info).__name__}", path)
    require(info, path, "task", str)
    require(info, path, "weights", str)
    require(info, path, "sha256", str)
    if "ensemble" in info:
        members = require(info, path, "ensemble", list)
        digests = require(info, path, "member_sha256", list)
        if not members or len(members) != len(digests):
            raise ScandxError(
                "'ensemble' and 'member_sha256' must be non-empty lists of the same length", path
            )
        for i, (m, d) in enumerate(zip(members, digests, strict=True)):
            if not isinstance(m, str) or not isinstance(d, str):
                raise ScandxError(f"'ensemble'[{i}] and 'member_sha256'[{i}] must be text", path)
    return info


_TYPE_NAMES = {str: "text", list: "a list", dict: "an object", int: "an integer"}


def require(
    info: dict[str, Any],
    where: Path,
    key: str,
    kind: type | tuple[type, ...],
    *,
    optional: bool = False,
) -> Any:
    """``info[key]`` when it has type ``kind`` (``float`` accepts integers, ``int`` and
    ``float`` refuse booleans); else one line naming the file and the key. ``key`` may be
    dotted (``input.size``) to name a key of a nested object."""
    node: Any = info
    for part in key.split(".")[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    last = key.split(".")[-1]
    if not isinstance(node, dict) or last not in node or node[last] is None:
        if optional and isinstance(node, dict):
            return None
        raise ScandxError(f"key {key!r} is missing", where)
    value = node[last]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:
        kinds = (*kinds, int)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds if k is not int)
        names = names or "an integer"
        raise ScandxError(f"key {key!r} must be {names}, not {type(value).__name__}", where)
    return value


def inside(root: Path, rel: Any, where: Path, key: str, *, base: Path | None = None) -> Path:
    """The file or folder ``rel`` (a path from model.json, relative to ``base``, by
    default ``root``) names inside ``root``.

    Refused, one line naming model.json and the key: anything but a relative path, a
    ``..`` part (unless a ``base`` is given: an ensemble in ``RUN/model`` names its
    members ``../folds/fold<i>/model``, which must stay inside the run), and a path that
    resolves (symlinks followed) outside ``root``: model.json must not be able to load
    another model's weights."""
    if not isinstance(rel, str) or not rel.strip():
        raise ScandxError(f"key {key!r} must be a relative path", where)
    pure = Path(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or ":" in rel:
        raise ScandxError(f"key {key!r} must be a relative path, not {rel!r}", where)
    if ".." in pure.parts and base is None:
        raise ScandxError(f"key {key!r} must not leave the model folder ({rel!r})", where)
    real_root = Path(root).resolve()
    target = (Path(base if base is not None else root) / pure).resolve()
    if target != real_root and real_root not in target.parents:
        raise ScandxError(
            f"key {key!r} points outside {real_root.name}/ ({rel!r}; symlinks followed)", where
        )
    return target


def checked_file(model_dir: Path, rel: Any, digest: Any, key: str) -> Path:
    """A file model.json names (``key``), inside the model folder and matching ``digest``,
    the sha256 recorded at training time."""
    where = Path(model_dir) / MODEL_JSON
    path = inside(model_dir, rel, where, key)
    if not isinstance(digest, str):
        raise ScandxError(f"no sha256 recorded for {key!r}", where)
    if not path.is_file():
        raise ScandxError(f"file missing ({key} in model.json)", path)
    if sha256(path) != digest:
        raise ScandxError(f"file does not match the sha256 in model.json ({key})", path)
    return path


def checked_weights(model_dir: Path, info: dict[str, Any]) -> Path:
    """The weights file model.json names, inside the model folder, after checking it
    against its sha256."""
    where = Path(model_dir) / MODEL_JSON
    path = inside(model_dir, require(info, where, "weights", str), where, "weights")
    if not path.exists():
        raise ScandxError("model weights missing", path)
    if sha256(path) != require(info, where, "sha256", str):
        raise ScandxError("model weights do not match the checksum in model.json", path)
    return path


def ensemble_members(model_dir: Path, info: dict[str, Any]) -> list[Path]:
    """The member model folders of an ensemble, each inside the run folder and checked:
    its model.json sha256 must be the one the ensemble recorded (a retrained or swapped
    fold is refused)."""
    where = Path(model_dir) / MODEL_JSON
    run = Path(model_dir).resolve().parent
    members = []
    for i, (rel, digest) in enumerate(zip(info["ensemble"], info["member_sha256"], strict=True)):
        member = inside(run, rel, where, f"ensemble[{i}]", base=Path(model_dir))
        member_info = read_model_json(member)
        if member_info.get("sha256") != digest:
            raise ScandxError("ensemble member does not match the ensemble's sha256", member)
        checked_weights(member, member_info)
        members.append(member)
    return members


def load_predictor(run: str | Path, device: str | None = None, runtime: str = "torch") -> Predictor:
    """The Predictor of any task's run (its ensemble for a cross-validated run).

    ``runtime="onnx"``: the same Predictor, its network(s) run by ONNX Runtime from the
    run's export (``scandx export RUN --format onnx``), checked against model.json:
    missing, stale (model retrained since) or altered exports are refused (ScandxError).
    Load once (a server: at start-up) and call ``prepare``/``score`` per request."""
    from scandx.core.run_dir import RunDir
    from scandx.export.onnx_runtime import check_runtime
    from scandx.tasks import task_for_run

    check_runtime(runtime)
    return task_for_run(run).load_predictor(RunDir(run), device, runtime)


def predict_run(
    run: str | Path,
    files: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    skip_bad: bool = False,
) -> list[dict[str, Any]]:
    """``scandx predict``: the run's Predictor on input files; ``out_dir`` receives
    predictions.csv (and the task's per-input files, e.g. masks)."""
    return load_predictor(run).predict_files(list(files), out_dir, skip_bad=skip_bad)
