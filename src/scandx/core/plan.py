"""The plan base: the fields every task's plan has, and one loader for any plan.json.

Each task's plan (``tasks/<task>/plan.py``) is a keyword-only dataclass that extends
``PlanBase`` with its own hyperparameters. ``load_plan(path)`` reads a plan.json and
returns the right type, dispatching on its ``task`` field through the task registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from scandx import __version__
from scandx.core.device import PRECISIONS
from scandx.core.plan_check import Bounds, check_fields
from scandx.core.run_dir import atomic_write
from scandx.errors import ScandxError

P = TypeVar("P", bound="PlanBase")


@dataclass(kw_only=True)
class PlanBase:
    task: str
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    time_budget_s: float | None = None
    notes: list[str] = field(default_factory=list)
    # train --init RUN: the pretrained encoder loaded into the fresh network
    # (core/pretrained.py init_record: run, method, sha256, loaded, of)
    init: dict[str, Any] | None = None
    # train --labelled-fraction F (issue 15): the fraction of training patients whose
    # labels are kept (None: all); the others are unlabelled training images
    labelled_fraction: float | None = None
    scandx_version: str = __version__

    # what plan_check.check_fields enforces on a plan.json besides the field types; a
    # task's plan extends these ({**PlanBase.BOUNDS, ...})
    BOUNDS: ClassVar[dict[str, Bounds]] = {
        "seed": Bounds(0),
        "time_budget_s": Bounds(0, low_open=True),
        "labelled_fraction": Bounds(0, 1, low_open=True),
    }
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"precision": PRECISIONS}
    MODEL_KIND: ClassVar[str | None] = None  # the registry kind ``model`` must name

    def validate(self: P) -> P:
        """Check the fields' types, ranges and choices (``plan_check.py``) and the common
        fields; a task's plan adds its own consistency checks (and calls this)."""
        check_fields(type(self), self.to_dict())
        if self.precision not in PRECISIONS:
            raise ScandxError(f"invalid plan: precision {self.precision!r} (choose {PRECISIONS})")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ScandxError(f"invalid plan: device {self.device!r} (cpu or cuda)")
        model = getattr(self, "model", None)
        if self.MODEL_KIND and model is not None:
            from scandx.models import list_models

            names = list_models(self.MODEL_KIND)
            if model not in names:
                raise ScandxError(
                    f"invalid plan: key 'model': unknown network {model!r} (choose from "
                    f"{', '.join(names)})"
                )
        return self

    def as_given(self: P) -> P:
        """A plan the user handed in (``--plan``): its epochs run in full, so the time
        budget that planned them no longer sets a deadline (nor buys extra members)."""
        if self.time_budget_s is not None:
            self.notes.append(
                f"given plan: its epochs run in full (the {self.time_budget_s:.0f}s budget "
                "it was planned with sets no deadline)"
            )
            self.time_budget_s = None
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        """Write plan.json atomically (a kill never leaves half a plan)."""
        atomic_write(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def coerce(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Turn nested JSON values into the dataclass's own types (override per task)."""
        return d

    @classmethod
    def from_dict(cls: type[P], d: dict[str, Any], where: str = "plan") -> P:
        """The plan in ``d`` (a plan.json), checked before any work: unknown and missing
        keys, types, finite numbers, ranges and choices (``plan_check.py``), then the
        plan's own consistency (``validate``); one line naming ``where`` and the key."""
        try:
            return cls(**cls.coerce(check_fields(cls, d))).validate()
        except ScandxError as e:
            raise ScandxError(e.reason, e.where or where) from None
        except (TypeError, ValueError) as e:
            raise ScandxError(f"invalid plan ({e})", where) from None

    @classmethod
    def load(cls: type[P], path: str | Path) -> P:
        return cls.from_dict(read_plan_json(path), str(path))


def read_plan_json(path: str | Path) -> dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ScandxError("plan file not found", path) from None
    except UnicodeDecodeError:
        raise ScandxError("plan is not UTF-8 text", path) from None
    except (OSError, ValueError) as e:  # JSONDecodeError
        raise ScandxError(f"plan is not valid JSON ({e})", path) from None
    if not isinstance(d, dict) or "task" not in d:
        raise ScandxError("plan has no 'task' field", path)
    return d


def load_plan(path: str | Path) -> PlanBase:
    """Any task's plan.json, as that task's plan type."""
    from scandx.tasks import task_for_plan

    d = read_plan_json(path)
    return task_for_plan(d, str(path)).plan_type.from_dict(d, str(path))
