"""Training plug-ins (curriculum, SPCL) on constructed cases, and the ``fixed`` strategy."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasmerc.cli import main
from nasmerc.data.batch import collate
from nasmerc.data.conversation import Conversation
from nasmerc.errors import NasmercError
from nasmerc.events import Events, ListSink
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import ModelOutput
from nasmerc.nas.strategy import SearchContext, require_something_to_search
from nasmerc.registry import get_strategy
from nasmerc.train.curriculum import Curriculum, CurriculumConfig, curriculum_bins, difficulty, emotion_shifts
from nasmerc.train.plugins import make_plugins
from nasmerc.train.spcl import harmonic, self_paced_mask, spcl_terms
from nasmerc.train.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def conversation(labels: list[int], speakers: list[int], cid: str = "c") -> Conversation:
    n = len(labels)
    return Conversation(id=cid, features={"text": np.zeros((n, 2), np.float32)},
                        speakers=np.array(speakers), labels=np.array(labels))


# -- curriculum ----------------------------------------------------------------------------------
def test_three_shifts_of_one_speaker_give_the_formula() -> None:
    conv = conversation([0, 1, 1, 2, 2, 2, 0], [0] * 7)
    assert emotion_shifts(conv.labels, conv.speakers) == 3
    assert difficulty(conv) == pytest.approx((3 + 1) / (7 + 1))


def test_shifts_are_counted_per_speaker() -> None:
    # consecutive labels change 3 times, but each speaker changes emotion once
    conv = conversation([0, 0, 1, 0, 1, 1], [0, 1, 0, 1, 0, 1])
    assert emotion_shifts(conv.labels, conv.speakers) == 2
    assert difficulty(conv) == pytest.approx((2 + 2) / (6 + 2))


def test_regression_shifts_use_rounded_scores() -> None:
    assert emotion_shifts(np.array([0.1, -0.2, 1.4, 1.6], np.float32), np.zeros(4, int)) == 2


def test_bins_grow_from_easy_to_hard(tiny_dataset) -> None:
    easy = conversation([1] * 8, [0, 1] * 4, "easy")                   # DMF 2/10
    mid = conversation([0, 1, 1, 1, 1, 1, 1, 1], [0] * 8, "mid")        # DMF 2/9
    hard = conversation([0, 1, 0, 1, 0, 1, 0, 1], [0] * 8, "hard")      # DMF 8/9
    convs = [hard, easy, mid]
    assert curriculum_bins(convs, 3) == [[1], [2], [0]]
    plugin = Curriculum(tiny_dataset.signature, CurriculumConfig(bins=3, epochs_per_bin=2))
    plugin.start(convs, 10)
    seen = [[c.id for c in plugin.conversations(e, convs)] for e in range(7)]
    assert seen[0] == seen[1] == ["easy"]
    assert seen[2] == seen[3] == ["easy", "mid"]
    assert seen[4] == seen[6] == ["easy", "mid", "hard"]


def test_curriculum_trains_on_growing_sets(tiny_dataset) -> None:
    sig = tiny_dataset.signature
    model = TinyModel(sig)
    cfg = TrainConfig(epochs=3, batch_size=2, valid_rates=(0.0,), plugins=("curriculum",),
                      plugin_options={"curriculum.bins": 3})
    sink = ListSink()
    Trainer(model, sig, cfg, events=Events([sink])).fit(tiny_dataset.split("train"), tiny_dataset.split("valid"))
    epochs = [e for e in sink.events if e["type"] == "epoch"]
    assert [e["losses"]["curriculum_bins"] for e in epochs] == [1.0, 2.0, 3.0]
    batches = [max(e["batch"] for e in sink.events if e["type"] == "batch" and e["epoch"] == k) for k in (1, 2, 3)]
    assert batches == [1, 2, 3]  # 6 conversations in 3 bins of 2, batch size 2


def test_curriculum_refuses_utterance_level_data(tiny_dataset) -> None:
    with pytest.raises(NasmercError, match="dialogue-level"):
        Curriculum(replace(tiny_dataset.signature, level="utterance"))


# -- SPCL ----------------------------------------------------------------------------------------
def test_spcl_terms_on_constructed_logits(tiny_dataset) -> None:
    sig = replace(tiny_dataset.signature, modalities=("text", "audio"))
    convs = [conversation([0, 1], [0, 1], "a"), conversation([2, 0, 1], [0, 1, 0], "b")]
    convs = [replace(c, features={"text": np.zeros((len(c.labels), 12), np.float32),
                                  "audio": np.zeros((len(c.labels), 8), np.float32)}) for c in convs]
    batch = collate(convs, sig)
    torch.manual_seed(0)
    z = {"text": torch.randn(2, 3, 6), "audio": torch.randn(2, 3, 6)}
    loss, spread = spcl_terms(z, batch, "classification")
    joint = (z["text"] + z["audio"])[batch.mask]
    labels = batch.labels[batch.mask]
    assert torch.allclose(loss, F.cross_entropy(joint, labels, reduction="none"))
    # s_i: std over modalities of the true-class probability, averaged over the conversation
    p = torch.stack([z[m].softmax(-1) for m in ("audio", "text")])
    true = p.gather(-1, batch.labels.clamp(min=0)[None, ..., None].expand(2, 2, 3, 1)).squeeze(-1)
    per_row = true.std(0, unbiased=False)
    s_b = per_row[1].mean()
    s_a = per_row[0, :2].mean()
    assert torch.allclose(spread, torch.stack([s_a, s_a, s_b, s_b, s_b]))
    assert harmonic(torch.tensor([0.2]), torch.tensor([0.6])).item() == pytest.approx(2 * 0.2 * 0.6 / 0.8)


def test_self_paced_mask_grows_with_lambda() -> None:
    rho = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7])
    sizes = [int(self_paced_mask(rho, lam).sum()) for lam in (0.2, 0.4, 0.6, 0.8, 1.0)]
    assert sizes == [1, 2, 3, 4, 5]
    assert self_paced_mask(rho, 0.01).tolist() == [False, True, False, False, False]  # the easiest at least


class TinyModel(nn.Module):
    """Per-modality linear heads and their sum: enough for the plug-ins' code paths."""

    def __init__(self, sig, per_modality: bool = True) -> None:
        super().__init__()
        self.mods = sig.modalities
        self.per_modality = per_modality
        self.heads = nn.ModuleDict({m: nn.Linear(sig.dims[m], sig.n_classes) for m in sig.modalities})

    def forward(self, batch) -> ModelOutput:
        z = {m: self.heads[m](batch.features[m]) for m in self.mods}
        return ModelOutput(logits=sum(z.values()), per_modality_logits=z if self.per_modality else {})


def test_spcl_lambda_grows_and_selection_widens(tiny_dataset) -> None:
    sig = tiny_dataset.signature
    cfg = TrainConfig(epochs=4, batch_size=3, valid_rates=(0.0,), plugins=("spcl",),
                      plugin_options={"spcl.alpha": 2.0, "spcl.start_fraction": 0.3})
    sink = ListSink()
    Trainer(TinyModel(sig), sig, cfg, events=Events([sink])).fit(tiny_dataset.split("train"), tiny_dataset.split("valid"))
    losses = [e["losses"] for e in sink.events if e["type"] == "epoch"]
    lams = [x["spcl_lambda"] for x in losses]
    assert all(b == pytest.approx(2.0 * a) for a, b in zip(lams, lams[1:]))
    assert losses[0]["spcl_selected"] < 1.0
    assert losses[-1]["spcl_selected"] >= losses[0]["spcl_selected"]


def test_spcl_needs_per_modality_logits(tiny_dataset) -> None:
    sig = tiny_dataset.signature
    cfg = TrainConfig(epochs=1, batch_size=3, valid_rates=(0.0,), plugins=("spcl",))
    with pytest.raises(NasmercError, match="per-modality logits"):
        Trainer(TinyModel(sig, per_modality=False), sig, cfg).fit(tiny_dataset.split("train"), tiny_dataset.split("valid"))


@pytest.mark.parametrize("names, options, needle", [
    (("bogus",), {}, "unknown plug-in 'bogus'"),
    (("spcl",), {"spcl.beta": 1}, "unknown option of plug-in 'spcl'"),
    ((), {"spcl.alpha": 2}, "not enabled"),
    (("spcl",), {"spcl.alpha": 0.5}, "alpha=0.5"),
    (("spcl", "spcl"), {}, "twice"),
])
def test_bad_plugin_settings_are_named(tiny_dataset, names, options, needle) -> None:
    with pytest.raises(NasmercError, match=needle):
        make_plugins(names, options, tiny_dataset.signature)


# -- the fixed strategy --------------------------------------------------------------------------
@dataclass
class NoConfig:
    width: int = 4


class Degenerate(SearchSpace):
    name = "degenerate"
    Config = NoConfig
    presets = {"default": NoConfig}

    def network(self, ctx) -> nn.Module:
        return TinyModel(self.signature)


def test_fixed_strategy_trains_the_one_model(tiny_dataset, tmp_path: Path) -> None:
    space = Degenerate(tiny_dataset.signature)
    strategy = get_strategy("fixed")()
    strategy.check(space, {})
    ctx = SearchContext(space, tiny_dataset, TrainConfig(epochs=2, batch_size=3, valid_rates=(0.0,)),
                        torch.device("cpu"), 0, Events(), tmp_path)
    result = strategy.search(ctx)
    assert result.arch == {} and result.model is not None
    assert result.derived_parameters == sum(p.numel() for p in result.model.parameters())
    assert 0.0 <= result.best_value <= 1.0


def test_searching_strategies_refuse_a_degenerate_space(tiny_dataset) -> None:
    with pytest.raises(NasmercError, match="nothing for strategy 'darts' to search; use --strategy fixed"):
        require_something_to_search(get_strategy("darts")(), Degenerate(tiny_dataset.signature), {})


def test_fixed_refuses_an_open_choice(tiny_dataset) -> None:
    from nasmerc.registry import get_search_space

    space = get_search_space("bmnas").from_preset(tiny_dataset.signature, "default")
    with pytest.raises(NasmercError, match="strategy 'fixed': space 'bmnas' leaves the .* choice"):
        get_strategy("fixed")().check(space, {})


def test_cli_refuses_an_unknown_plugin_before_the_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["search", "--no-dashboard", "--out", str(out), "--plugin", "bogus", "--epochs", "1"])
    assert code == 2 and not out.exists()
    assert "unknown plug-in 'bogus'" in capsys.readouterr().err
