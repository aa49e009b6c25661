"""The recurrent (BiGRU) token mixer: nasmerc's addition to the rmnas and iteach pools, in their
``recurrent`` presets only (the ``paper`` and ``default`` presets keep the papers' pools)."""

from __future__ import annotations

import pytest
import torch

from nasmerc.data.batch import collate
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from nasmerc.modules.mixers import RecurrentMixing
from nasmerc.nas.choices import OpChoice, choice_modules
from nasmerc.registry import get_search_space
from nasmerc.train.losses import task_loss
from conftest import TINY

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {"rmnas": {"hidden_dim": 16, "n_blocks": 1, "fusion_dim": 16, "n_heads": 2, "n_cells": 1},
         "iteach": {"hidden_dim": 16, "n_heads": 2, "student_layers": 2, "teacher_layers": 1,
                    "distill_layer_weights": "0.5"}}


def test_padding_never_reaches_a_real_token() -> None:
    torch.manual_seed(0)
    mixer = RecurrentMixing(8)
    h = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = mixer(h, None, mask)
    other = h.clone()
    other[0, 3:] = 100.0
    assert torch.allclose(out, mixer(other, None, mask)) and torch.all(out[0, 3:] == 0)
    with pytest.raises(NasmercError, match="width 7 must be even"):
        RecurrentMixing(7)


@pytest.mark.parametrize("space", ["rmnas", "iteach"])
def test_only_the_recurrent_preset_offers_it(space: str) -> None:
    sig = load("iemocap6", TINY).signature
    for preset, offered in (("default", False), ("paper", False), ("recurrent", True)):
        specs = [s for s in get_search_space(space).from_preset(sig, preset).choices() if s.label.endswith(".mixer")]
        assert specs and all(("recurrent" in s.candidates) == offered for s in specs), preset


@pytest.mark.parametrize("space", ["rmnas", "iteach"])
def test_a_supernet_and_a_recurrent_model_train(space: str) -> None:
    data = load("iemocap6", TINY)
    sp = get_search_space(space).from_preset(data.signature, "recurrent", SMALL[space])
    supernet = sp.supernet()
    for choice in choice_modules(supernet):  # uniform mixing of every candidate
        if isinstance(choice, OpChoice):
            choice.attach(lambda c, *a, **k: sum(m(*a, **k) for m in c.candidates.values()) / len(c.candidates))
        else:
            choice.attach(lambda c, inputs: torch.stack(list(inputs)).mean(0))
    batch = collate(data.split("train")[:3], data.signature)
    supernet.train()
    task_loss(supernet(batch).logits, batch, "classification").backward()
    arch = {s.label: ("recurrent" if s.label.endswith(".mixer") else s.first()) for s in sp.choices()}
    model = sp.build(arch)
    loss = task_loss(model(batch).logits, batch, "classification")
    loss.backward()
    assert torch.isfinite(loss)
