"""ITEACH-Net's objective against the paper's equations (Section 3.5, eqs. 12-15), computed by hand.

``L_emo`` (eq. 12) averages the teacher's and the student's cross-entropies over the real utterances,
``L_rec`` (eq. 14) is ``0.5 |H_1^s - H_1|^2 + 0.1 |H_2^s - H_2|^2 + 0.05 |H_3^s - H_3|^2`` with the
squared norm over each utterance's channels, and the trainer's loss is twice ``L_emo + L_rec``
(eq. 15; the factor is explained in ``search_spaces/iteach.py``). The hand computations below loop
over rows and channels in plain Python, apart from the model's own forward passes.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml

from nasmerc.cli import main
from nasmerc.data.batch import Batch
from nasmerc.nas.space import SearchSpace
from nasmerc.registry import get_search_space
from nasmerc.train.trainer import TrainConfig, Trainer
from search_spaces.iteach import ITEACHSpace, distance_loss, iteach_default, iteach_paper
from tests.conftest import TINY
from tests.test_iteach_space import masked_batch, random_arch, signature, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


def squared_norm(a: list[float], b: list[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b))


def eq14(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor,
         weights: tuple[float, ...] = (0.5, 0.1, 0.05)) -> float:
    """``sum_k w_k |H_k^s - H_k|^2``, the squared norm of every real row averaged over the real rows."""
    rows = [(b, i) for b in range(mask.shape[0]) for i in range(mask.shape[1]) if mask[b, i]]
    total = 0.0
    for k, w in enumerate(weights):  # H_1 is the last hidden layer
        s, t = student[-1 - k].tolist(), teacher[-1 - k].tolist()
        total += w * sum(squared_norm(s[b][i], t[b][i]) for b, i in rows) / len(rows)
    return total


def eq12(student_out: torch.Tensor, teacher_out: torch.Tensor, batch: Batch, task: str) -> float:
    """``-1/(2L) sum_i (log p_f(y_i) + log p_s(y_i))`` over the ``L`` real rows (classification); the mean
    of the two absolute errors (regression: the trainer's L1 in place of eq. 13's squared error)."""
    rows = [(b, i) for b in range(batch.mask.shape[0]) for i in range(batch.mask.shape[1]) if batch.mask[b, i]]
    total = 0.0
    for b, i in rows:
        y = batch.labels[b, i]
        for out in (teacher_out, student_out):
            if task == "classification":
                z = out[b, i].tolist()
                total -= z[int(y)] - math.log(sum(math.exp(v) for v in z))
            else:
                total += abs(float(y) - float(out[b, i]))
    return total / (2 * len(rows))


# -- eq. 14 ---------------------------------------------------------------------------------------
def test_distance_is_the_squared_norm_on_numbers_by_hand() -> None:
    """One conversation of two real rows and a padding row, width 2, three layers."""
    zeros = torch.zeros(1, 3, 2)
    s1 = torch.tensor([[[1.0, 2.0], [0.0, 1.0], [50.0, 50.0]]])   # squared norms 5 and 1: mean 3
    s2 = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [-9.0, 9.0]]])    # 4 and 0: mean 2
    s3 = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [7.0, 7.0]]])     # 2 and 2: mean 2
    mask = torch.tensor([[True, True, False]])
    student, teacher = [s3, s2, s1], [zeros, zeros, zeros]          # layer order: H_1 is the last
    assert distance_loss(student, teacher, mask, (0.5, 0.1, 0.05)).item() == pytest.approx(0.5 * 3 + 0.1 * 2 + 0.05 * 2)
    mean = distance_loss(student, teacher, mask, (0.5, 0.1, 0.05), "mean")
    assert mean.item() == pytest.approx((1.5 + 0.2 + 0.1) / 2)
    s1.requires_grad_(True)
    distance_loss([s3, s2, s1], teacher, mask, (0.5, 0.1, 0.05)).backward()
    assert torch.allclose(s1.grad[0, :2], 0.5 * 2 * s1.detach()[0, :2] / 2) and (s1.grad[0, 2] == 0).all()


def test_distance_equals_the_loop_on_random_hiddens() -> None:
    gen = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 5, 4, generator=gen) for _ in range(4)]
    teacher = [torch.randn(3, 5, 4, generator=gen) for _ in range(3)]
    mask = torch.arange(5).view(1, 5) < torch.tensor([5, 2, 4]).view(3, 1)
    got = distance_loss(student, teacher, mask, (0.5, 0.1, 0.05))
    assert got.item() == pytest.approx(eq14(student, teacher, mask), rel=1e-5)
    mean = distance_loss(student, teacher, mask, (0.5, 0.1, 0.05), "mean")
    assert mean.item() == pytest.approx(got.item() / 4, rel=1e-5)
    last = distance_loss(student, teacher, mask, (1.0,))
    assert last.item() == pytest.approx(eq14(student, teacher, mask, (1.0,)), rel=1e-5)


# -- eqs. 12 and 15 -------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_trainer_loss_is_twice_eq15(task: str) -> None:
    sig = signature(task)
    torch.manual_seed(0)
    space = ITEACHSpace(sig, tiny_config())
    model = space.build(random_arch(space, 0)).train()
    batch = masked_batch(sig)
    trainer = Trainer(model, sig, TrainConfig(epochs=1, batch_size=4, valid_rates=(0.0,)), seed=0)
    total, terms, _ = trainer.loss(batch)
    with torch.no_grad():  # dropout is 0: the same forward passes again, by hand
        s, t = model.student(batch.features, batch.mask), model.teacher(batch.complete, batch.mask)
        s_out, t_out = model.student.predict(s[-1], batch.mask), model.teacher.predict(t[-1], batch.mask)
    l_emo, l_rec = eq12(s_out, t_out, batch, task), eq14(s, t, batch.mask)
    assert terms["distill"].item() == pytest.approx(l_rec, rel=1e-5)
    assert total.item() == pytest.approx(2 * (l_emo + l_rec), rel=1e-5)
    assert l_rec > 0.1 * l_emo  # the distance is not negligible at initialisation


def test_weights_scale_the_two_terms_of_eq15() -> None:
    """``distill_weight`` multiplies ``L_rec`` in eq. 15, ``teacher_weight`` the teacher's term of eq. 12."""
    sig = signature()
    torch.manual_seed(0)
    space = ITEACHSpace(sig, tiny_config(distill_weight=0.25, teacher_weight=0.5))
    model = space.build(random_arch(space, 1)).train()
    batch = masked_batch(sig)
    total, terms, out = Trainer(model, sig, TrainConfig(epochs=1, batch_size=4, valid_rates=(0.0,)), seed=0).loss(batch)
    assert out.aux_weights == {"teacher_task": 0.5, "distill": 0.5}
    want = 2 * ((terms["task"] + 0.5 * terms["teacher_task"]) / 2 + 0.25 * terms["distill"])
    assert total.item() == pytest.approx(want.item(), rel=1e-6)


def test_the_previous_scale_is_a_config_away_and_256_times_weaker_at_the_paper_width() -> None:
    """``distill_norm=mean`` with ``distill_weight=0.5`` is the per-channel MSE with trainer weight 1
    (what the space trained with before); at the paper's width 128 the paper's term is 2 x 128 larger."""
    sig = signature()
    cfg = tiny_config(hidden_dim=128, n_heads=2)
    old = ITEACHSpace(sig, replace(cfg, distill_norm="mean", distill_weight=0.5))
    new = ITEACHSpace(sig, cfg)
    arch = random_arch(new, 2)
    torch.manual_seed(0)
    old_model = old.build(arch).train()
    new_model = new.build(arch).train()
    new_model.load_state_dict(old_model.state_dict())
    batch = masked_batch(sig)
    a, b = old_model(batch), new_model(batch)
    s, t = old_model.student(batch.features, batch.mask), old_model.teacher(batch.complete, batch.mask)
    mse = sum(w * F.mse_loss(s[-1 - k][batch.mask], t[-1 - k][batch.mask]) for k, w in enumerate((0.5, 0.1, 0.05)))
    assert a.aux_weights["distill"] == 1.0 and a.aux_losses["distill"].item() == pytest.approx(mse.item(), rel=1e-5)
    ratio = (b.aux_weights["distill"] * b.aux_losses["distill"]) / (a.aux_weights["distill"] * a.aux_losses["distill"])
    assert ratio.item() == pytest.approx(256.0, rel=1e-4)


def test_presets_carry_the_paper_loss() -> None:
    for cfg in (iteach_paper(), iteach_default()):
        assert (cfg.distill_layer_weights, cfg.distill_norm, cfg.distill_weight, cfg.teacher_weight) == \
            ((0.5, 0.1, 0.05), "sum", 1.0, 1.0)
    assert ITEACHSpace.from_preset(signature(), "paper").config.hidden_dim == 128


# -- the default strategy -------------------------------------------------------------------------
def test_iteach_searches_with_its_router_by_default() -> None:
    assert SearchSpace.default_strategy is None
    assert ITEACHSpace.default_strategy == "router" and get_search_space("iteach").default_strategy == "router"
    assert get_search_space("rmnas").default_strategy is None


def test_search_without_a_strategy_uses_the_router(tmp_path: Path) -> None:
    out = tmp_path / "run"
    space: list[str] = []
    for key, value in {"hidden_dim": 8, "n_heads": 2, "ffn_ratio": 2.0, "ecce_dim": 4, "ecce_kernel": 3,
                       "ecce_dist": 3, "student_layers": 3, "mixers": "attention,maxpool"}.items():
        space += ["--set", f"{key}={value}"]
    data: list[Any] = [f"--set=data.{k}={v}" for k, v in TINY.items()]
    assert main(["search", "--space", "iteach", "--no-dashboard", "--out", str(out), "--epochs", "1",
                 "--set", "train.batch_size=4", "--set", "train.valid_rates=0", *space, *data]) == 0
    assert json.loads((out / "search.json").read_text())["strategy"] == "router"
    assert yaml.safe_load((out / "config.yaml").read_text())["strategy"] == "router"
    assert (out / "routers.pt").exists()


def test_a_bad_distill_norm_is_one_line_before_the_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["search", "--space", "iteach", "--no-dashboard", "--out", str(out), "--epochs", "1",
                 "--set", "distill_norm=l2"]) == 2
    assert not out.exists()
    assert "space 'iteach': distill_norm='l2': expected one of 'sum', 'mean'" in capsys.readouterr().err
