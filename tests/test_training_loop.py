"""The training loop (vcat.training.loop), the schedules (vcat.training.schedule) and the
cross-view completion objective (vcat.training.crossview)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from vcat.training.loop import LoopConfig, seed_of, seeded, train
from vcat.training.schedule import Schedule, iteration_equivalent

# --- schedules ------------------------------------------------------------------------------


def test_crocos_released_indoorvl_schedule_is_derived_exactly() -> None:
    """100/10/200 over data with 1.25x fewer items -> CroCo's 125/12/250 (12.5 rounds down)."""
    assert iteration_equivalent(Schedule(100, 10, 200), 125, 100) == Schedule(125, 12, 250)
    assert iteration_equivalent(Schedule(100, 10, 200), 5, 5) == Schedule(100, 10, 200)


@pytest.mark.parametrize(("published", "released"), [(10, 0), (10, 11), (0, 0)])
def test_iteration_equivalence_needs_fewer_released_items(published: int, released: int) -> None:
    with pytest.raises(ValueError, match="released"):
        iteration_equivalent(Schedule(100, 10, 200), published, released)


def test_warmup_then_cosine_by_hand() -> None:
    schedule = Schedule(epochs=8, warmup_epochs=2, cosine_epochs=10)
    assert schedule.learning_rate(0, 1.0) == 0.0
    assert schedule.learning_rate(1, 1.0) == 0.5  # half way through the warm-up
    assert schedule.learning_rate(2, 1.0) == 1.0
    assert schedule.learning_rate(6, 1.0, 0.1) == pytest.approx(0.55)  # half the cosine
    assert schedule.learning_rate(10, 1.0, 0.1) == pytest.approx(0.1)
    assert schedule.learning_rate(12, 1.0, 0.1) == pytest.approx(0.1)  # stays at the end
    with pytest.raises(ValueError, match="warm-up must end"):
        Schedule(5, 10, 10)


# --- the loop -------------------------------------------------------------------------------


def test_seeds_do_not_depend_on_the_process() -> None:
    # blake2b of the keys' repr: fixed values, unlike hash() of a str
    assert seed_of(0, 1, "dropout") == seed_of(0, 1, "dropout") != seed_of(0, 2, "dropout")
    assert 0 <= seed_of(7) < 2**63
    assert torch.equal(torch.rand(3, generator=seeded(1, 2)), torch.rand(3, generator=seeded(1, 2)))


class Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))


X = torch.randn(64, 4, generator=seeded(3))
Y = X @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def run(tmp_path: Path, model: Regression, stop_after: int | None = None) -> list[float]:
    def batches(generator: torch.Generator):
        order = torch.randperm(64, generator=generator)
        return [order[i : i + 16] for i in range(0, 64, 16)]

    def step(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = 0.01 * torch.randn(len(batch), 1, generator=generator)
        return ((model.net(X[batch]) - Y[batch] - noise) ** 2).mean()

    def interrupt(epoch: int, loss: float) -> None:
        if epoch == stop_after:
            raise KeyboardInterrupt

    config = LoopConfig(Schedule(6, 1, 6), lr=0.05, min_lr=0.001, seed=5)
    return train(
        model,
        step,
        batches,
        4,
        config,
        tmp_path / "resume.pt",
        tmp_path / "live",
        "v1",
        on_epoch=interrupt,
    )


def test_the_loss_falls_and_is_logged_for_dvc(tmp_path: Path) -> None:
    history = run(tmp_path, Regression())
    assert len(history) == 6 and history[-1] < 0.5 * history[0]
    logged = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert logged["loss"] == pytest.approx(history[-1]) and logged["step"] == 5
    curve = (tmp_path / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert curve[0].split("\t") == ["step", "loss"] and len(curve) == 7


def test_a_stopped_run_resumes_to_the_same_bits(tmp_path: Path) -> None:
    whole = Regression()
    history = run(tmp_path / "whole", whole)
    stopped = Regression()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "parts", stopped, stop_after=3)
    resumed = Regression()  # a new process would start from fresh weights, then resume
    again = run(tmp_path / "parts", resumed)
    assert again == history
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    curve = (tmp_path / "parts" / "live" / "plots" / "metrics" / "loss.tsv").read_text()
    assert len(curve.splitlines()) == 7  # the resumed run appended epochs 4-6 once


def test_a_resume_file_of_other_settings_is_not_used(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, Regression(), stop_after=2)
    state = torch.load(tmp_path / "resume.pt", weights_only=True)
    state["fingerprint"] = "other settings"
    torch.save(state, tmp_path / "resume.pt")
    assert len(run(tmp_path, Regression())) == 6  # all six epochs again


def test_a_loss_that_is_not_finite_stops_the_run(tmp_path: Path) -> None:
    model = Regression()
    config = LoopConfig(Schedule(2, 0, 2), lr=0.01)

    def step(batch: object, generator: torch.Generator) -> torch.Tensor:
        return model.net(torch.full((1, 4), math.nan)).sum()

    with pytest.raises(FloatingPointError, match="epoch 1"):
        train(model, step, lambda g: [0], 1, config, tmp_path / "r.pt", tmp_path / "l", "x")


@pytest.mark.parametrize("with_dvc", [False, True])
def test_the_curves_are_written_in_a_repository_without_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_dvc: bool
) -> None:
    """dvclive's own git hooks fail in a fresh clone's first `dvc repro` (no commit yet) and
    would `dvc init` a plain git repository: only the curves' files may appear."""
    import subprocess
    import sys

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    if with_dvc:
        dvc = str(Path(sys.executable).with_name("dvc"))
        subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
        monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # as inside `dvc repro`
    before = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".git" not in p.parts}
    monkeypatch.chdir(tmp_path)
    history = run(tmp_path / "run", Regression())
    after = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".git" not in p.parts}
    assert len(history) == 6
    # beside the curves, only dvclive's signal for DVC's VS Code extension, in DVC's own tmp
    assert {p.parts[:2] if p.parts[0] == ".dvc" else p.parts[:1] for p in after - before} <= {
        ("run",),
        (".dvc", "tmp"),
    }
    assert (tmp_path / "run" / "live" / "metrics.json").is_file()
    assert not (tmp_path / "run" / "live" / "dvc.yaml").exists()
