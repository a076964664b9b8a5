"""Budget left after early stopping buys a second network; validation decides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scandx.cli import main
from scandx.core.engine import FitResult
from scandx.models import create_model
from scandx.models.registry import SeedEnsemble
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.training.leftover import second_member_epochs


def _plan(**kw) -> Plan:
    base = dict(task="binary", classes=["a", "b"], epochs=20, time_budget_s=100.0)
    return Plan(**{**base, **kw})


def _result(stopped: str, epochs: int, seconds: float, best: int) -> FitResult:
    history = [{"epoch": e + 1, "seconds": seconds} for e in range(epochs)]
    return FitResult(torch.nn.Linear(1, 1), {"epoch": best}, history, stopped=stopped)


def test_how_many_epochs_a_second_member_gets():
    # 10 epochs of 2 s after early stopping: 90 - 20 = 70 s left -> 20 (the plan's epochs)
    assert second_member_epochs(_plan(), _result("early stop", 10, 2.0, best=4)) == 20
    # too little left for as many epochs as the first needed to reach its best
    assert second_member_epochs(_plan(), _result("early stop", 10, 8.0, best=6)) == 0
    # a run that used its schedule, or hit the budget, has nothing to spend
    assert second_member_epochs(_plan(), _result("completed", 10, 2.0, best=4)) == 0
    assert second_member_epochs(_plan(), _result("time budget", 10, 2.0, best=4)) == 0
    # already an ensemble
    plan = _plan(model_kwargs={"members": 2})
    assert second_member_epochs(plan, _result("early stop", 10, 2.0, best=4)) == 0


def test_a_seed_ensemble_averages_logits_and_round_trips_its_weights():
    net = create_model("simple-cnn", 2, 1, 2, [28, 28], members=2)
    assert isinstance(net, SeedEnsemble) and len(net.members) == 2
    x = torch.randn(3, 1, 28, 28)
    net.eval()
    mean = (net.members[0](x) + net.members[1](x)) / 2
    assert torch.allclose(net(x), mean)
    again = create_model("simple-cnn", 2, 1, 2, [28, 28], members=2)
    again.load_state_dict(net.state_dict())
    assert torch.equal(again.eval()(x), net(x))


def test_early_stopping_with_budget_left_trains_a_second_network(
    phantoms: Path, tmp_path, monkeypatch
):
    """A plan (made for a 600 s budget) that stops early with most of it left."""
    from scandx.tasks.classification import workflow

    planner = workflow.make_plan

    def early_stopping_plan(*args, **kwargs):
        plan = planner(*args, **{**kwargs, "model": "simple-cnn"})
        plan.epochs, plan.early_stopping_patience, plan.min_epochs = 30, 2, 1
        return plan

    monkeypatch.setattr(workflow, "make_plan", early_stopping_plan)
    # strict maxima: on a few validation phantoms the AUC's tie tolerance is wide enough to
    # keep any run going; this test is about a run that stops early
    monkeypatch.setattr("scandx.tasks.classification.training.loop.TIE_STANDARD_ERRORS", 0.0)
    run = tmp_path / "run"
    args = ["train", "--data", str(phantoms), "--out", str(run), "--time-budget", "600"]
    assert main(["-q", *args]) == 0
    saved = json.loads((run / "plan.json").read_text())
    (note,) = [n for n in saved["notes"] if "second network" in n]
    assert "validation AUC first" in note
    assert (run / "members" / f"seed{saved['seed'] + 1}" / "log.jsonl").exists()
    kept = "ensemble kept" in note
    assert (saved["model_kwargs"].get("members") == 2) == kept
    model_json = json.loads((run / "model" / "model.json").read_text())
    assert (model_json["model_kwargs"].get("members") == 2) == kept
    out = tmp_path / "pred"
    image = next(p for p in phantoms.rglob("*") if p.suffix in (".png", ".dcm"))
    assert main(["-q", "predict", str(run), str(image), "--out", str(out)]) == 0
    assert (out / "predictions.csv").exists()


@pytest.mark.parametrize("members", [1, 3])
def test_members_keyword_is_optional(members):
    net = create_model("resnet10", 2, 1, 2, [28, 28], members=members, width=0.25)
    assert isinstance(net, SeedEnsemble) == (members > 1)
