"""The fixed spaces ``mfmb`` (MFMB-Net) and the plain baselines ``transformer``, ``late_fusion``, ``early_fusion``.

Tiny synthetic data from ``conftest.TINY`` and tiny configs keep the file at seconds; the ``paper``
presets are only built and their parameter counts printed and bounded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY, utterance_batch
from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import Conversation, DataSignature
from nasmerc.data.missing import mask_batch
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from nasmerc.modules.iteach_mixers import AttentionMixer
from nasmerc.nas.choices import choice_modules
from nasmerc.outputs import count_parameters
from nasmerc.train.losses import task_loss
from search_spaces.fixed import baselines, mfmb
from nasmerc.modules.encoders import BiRNN, reverse_index
from search_spaces.fixed.baselines import (EarlyFusionConfig, EarlyFusionSpace, LateFusionConfig, LateFusionSpace,
                                           TransformerConfig, TransformerSpace)
from search_spaces.fixed.mfmb import MFMBConfig, MFMBSpace, generative_loss, hub_order
from search_spaces.iteach import ITEACHSpace

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CONFIGS: dict[str, Any] = {
    "mfmb": MFMBConfig(hidden_dim=8, n_heads=2, macro_heads=2, hub_tokens=2, c2f_hidden=8, recon_hidden=8,
                       ffn_ratio=2.0, gate_ratio=1.0, dropout=0.0),
    "transformer": TransformerConfig(hidden_dim=8, n_heads=2, n_layers=2, ecce_kernel=3, ecce_dist=3, ecce_dim=4,
                                     dropout=0.0),
    "late_fusion": LateFusionConfig(hidden_dim=8, rnn_dim=6, dropout=0.0),
    "early_fusion": EarlyFusionConfig(hidden_dim=8, rnn_dim=6, dropout=0.0),
}
SPACES = {"mfmb": MFMBSpace, "transformer": TransformerSpace, "late_fusion": LateFusionSpace,
          "early_fusion": EarlyFusionSpace}
NAMES = list(SPACES)


@pytest.fixture(scope="module")
def dataset():
    return load("iemocap6", TINY)


@pytest.fixture(scope="module")
def regression():
    return load("mosi", {**TINY, "dims.audio": 5})


def tiny(name: str, signature: DataSignature, **changes: Any) -> nn.Module:
    return SPACES[name](signature, replace(TINY_CONFIGS[name], **changes)).build({})


def masked(ds, n: int = 3, seed: int = 0) -> Batch:
    """The first ``n`` training conversations at missing rate 0.5 (one modality kept per row)."""
    return mask_batch(collate(ds.split("train")[:n], ds.signature), 0.5, np.random.default_rng(seed), False)



def total_loss(out: Any, batch: Batch, task: str) -> torch.Tensor:
    return task_loss(out.logits, batch, task) + sum(out.aux_weights[k] * v for k, v in out.aux_losses.items())


def encoder_weights(name: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The first trainable weight that reads each modality."""
    if name == "mfmb":
        return {m: model.encoders[m].weight for m in model.modalities}
    if name == "transformer":
        return {m: model.net.embed[m].weight for m in model.net.embed}
    if name == "late_fusion":
        return {m: enc.proj.weight for m, enc in model.encoders.items()}
    return {"all": model.fuse.weight}


# -- the contract, for every model ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_default_preset_builds_with_nothing_to_choose(name: str, dataset) -> None:
    space = SPACES[name].from_preset(dataset.signature, "default")
    assert space.name == name and set(space.presets) == {"default", "paper"}
    assert space.choices() == []
    model = space.build({})
    assert choice_modules(model) == [] and count_parameters(model) > 0
    with pytest.raises(NasmercError, match="unknown choice"):
        space.build({"depth": 2})
    out = model.eval()(masked(dataset))
    assert out.logits.shape == (3, masked(dataset).length, 6) and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_with_missing_modalities_reaches_every_encoder(name: str, dataset) -> None:
    torch.manual_seed(0)
    model = SPACES[name].from_preset(dataset.signature, "default").build({}).train()
    batch = masked(dataset)
    assert not bool(batch.present.all())
    out = model(batch)
    loss = total_loss(out, batch, "classification")
    assert torch.isfinite(loss)
    loss.backward()
    for m, weight in encoder_weights(name, model).items():
        assert weight.grad is not None and float(weight.grad.abs().sum()) > 0, m
    assert set(out.per_modality_logits) == set(dataset.signature.modalities)
    assert all(v.shape == out.logits.shape for v in out.per_modality_logits.values())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("task, level", [("classification", "dialogue"), ("regression", "dialogue"),
                                         ("classification", "utterance"), ("regression", "utterance")])
def test_output_shapes(name: str, task: str, level: str, dataset, regression) -> None:
    ds = dataset if task == "classification" else regression
    sig = replace(ds.signature, level=level)
    model = tiny(name, sig).train()
    batch = masked(ds) if level == "dialogue" else utterance_batch(sig, 0.5)
    out = model(batch)
    b, n = batch.mask.shape
    c = sig.n_outputs
    want = {("classification", "dialogue"): (b, n, c), ("regression", "dialogue"): (b, n),
            ("classification", "utterance"): (b, c), ("regression", "utterance"): (b,)}[(task, level)]
    assert out.logits.shape == want
    assert all(v.shape == want for v in out.per_modality_logits.values())
    loss = total_loss(out, batch, task)
    assert torch.isfinite(loss)
    loss.backward()


@pytest.mark.parametrize("name", NAMES)
def test_training_loss_falls_on_a_fixed_batch(name: str, dataset) -> None:
    torch.manual_seed(0)
    model = tiny(name, dataset.signature, hidden_dim=16).train()
    batch = masked(dataset, n=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = total_loss(model(batch), batch, "classification")
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("modalities", [("text", "audio"), ("audio",), ("audio", "visual")])
def test_any_subset_of_modalities(name: str, modalities: tuple[str, ...], dataset) -> None:
    sig = replace(dataset.signature, modalities=modalities, dims={m: dataset.signature.dims[m] for m in modalities})
    model = tiny(name, sig).train()
    convs = [replace(c, features={m: c.features[m] for m in modalities}) for c in dataset.split("train")[:3]]
    batch = mask_batch(collate(convs, sig), 0.5, np.random.default_rng(0), False)
    out = model(batch)
    assert out.logits.shape == (3, batch.length, 6) and set(out.per_modality_logits) == set(modalities)
    total_loss(out, batch, "classification").backward()


@pytest.mark.parametrize("name", NAMES)
def test_real_rows_do_not_depend_on_padding(name: str, dataset) -> None:
    torch.manual_seed(0)
    model = tiny(name, dataset.signature).eval()
    convs = dataset.split("train")[:3]
    short = min(range(3), key=lambda i: len(convs[i].labels))
    with torch.no_grad():
        alone = model(collate([convs[short]], dataset.signature)).logits[0]
        padded = model(collate(convs, dataset.signature)).logits[short, : alone.shape[0]]
    assert torch.allclose(alone, padded, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_unimodal_losses_only_with_a_positive_weight(name: str, dataset) -> None:
    batch = masked(dataset)
    off = tiny(name, dataset.signature).train()(batch)
    assert not any(k.startswith("unimodal_") for k in off.aux_losses)
    on = tiny(name, dataset.signature, unimodal_weight=0.3).train()(batch)
    names = {f"unimodal_{m}" for m in dataset.signature.modalities}
    assert names <= set(on.aux_losses) and all(on.aux_weights[k] == 0.3 for k in names)
    for m in dataset.signature.modalities:
        assert torch.allclose(on.aux_losses[f"unimodal_{m}"], task_loss(on.per_modality_logits[m], batch,
                                                                        "classification"))


@pytest.mark.parametrize("name, changes, key", [
    ("mfmb", {"hidden_dim": 10, "n_heads": 4}, "n_heads"),
    ("mfmb", {"hidden_dim": 7, "n_heads": 1, "macro_heads": 1}, "hidden_dim"),
    ("mfmb", {"gate_kernel": 4}, "gate_kernel"),
    ("mfmb", {"recon_weights": {"text": 1.0, "audio": 1.0}}, "recon_weights"),
    ("mfmb", {"temporal_mask_rate": 1.5}, "temporal_mask_rate"),
    ("transformer", {"hidden_dim": 10, "n_heads": 4}, "hidden_dim"),
    ("transformer", {"ecce_kernel": 2}, "ecce_kernel"),
    ("late_fusion", {"rnn_dim": 0}, "rnn_dim"),
    ("early_fusion", {"dropout": 1.0}, "dropout"),
    ("early_fusion", {"unimodal_weight": -1.0}, "unimodal_weight"),
])
def test_bad_config_names_the_field(name: str, changes: dict[str, Any], key: str, dataset) -> None:
    with pytest.raises(NasmercError, match=key):
        SPACES[name](dataset.signature, replace(TINY_CONFIGS[name], **changes))


# -- MFMB-Net: the paper's equations ---------------------------------------------------------------
def test_hub_order_and_micro_pairs_follow_the_signature(dataset) -> None:
    assert hub_order(("text", "audio", "visual"), "text") == ("visual", "audio", "text")
    assert hub_order(("text", "audio"), "text") == ("audio", "text")
    assert hub_order(("audio", "visual"), "audio") == ("visual", "audio")
    sig = dataset.signature
    model = tiny("mfmb", sig)
    assert model.macro.order == ("visual", "audio", "text")
    assert model.pairs == [("text", "visual"), ("text", "audio")]
    two = replace(sig, modalities=("audio", "visual"), dims={"audio": 8, "visual": 16})
    model = tiny("mfmb", two)
    assert model.guide == "audio" and model.macro.order == ("visual", "audio") and model.pairs == [("audio", "visual")]


def test_eq16_is_the_head_on_macro_plus_micro(dataset) -> None:
    torch.manual_seed(0)
    model = tiny("mfmb", dataset.signature).eval()
    batch = masked(dataset)
    mask = batch.mask
    with torch.no_grad():
        out = model(batch)
        _, aligned = model.encode(batch.features, mask)
        h_f = model.macro(aligned, mask).mean(1)  # eq. 7, k tokens averaged
        local = {m: model.gates[m](aligned[m], mask) for m in model.modalities}
        h_fusion = torch.cat([model.c2f["text_visual"]([local["text"], local["visual"]], mask),
                              model.c2f["text_audio"]([local["text"], local["audio"]], mask)], dim=-1)
        want = model.head.net((h_f.unsqueeze(1) + h_fusion))
    assert h_fusion.shape[-1] == 8 and h_f.shape == (3, 8)
    assert torch.allclose(out.logits[mask], want[mask], atol=1e-5)
    assert out.aux_losses == {}  # no reconstruction at evaluation


def test_the_hub_carries_every_modality_to_H_f(dataset) -> None:
    torch.manual_seed(0)
    model = tiny("mfmb", dataset.signature).eval()
    mask = masked(dataset).mask
    states = {m: torch.randn(3, mask.shape[1], 8, requires_grad=True) for m in model.modalities}
    hub = model.macro(states, mask)
    assert hub.shape == (3, 2, 8)
    hub.sum().backward()
    for m, x in states.items():
        assert float(x.grad[mask].abs().sum()) > 0, m
        assert float(x.grad[~mask].abs().sum()) == 0, m


def test_memory_gate_is_eqs_8_to_10() -> None:
    torch.manual_seed(0)
    gate = mfmb.MemoryGate(6, kernel=3, ratio=1.0, dropout=0.0)
    x = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = gate(x, mask)
    for b, n in enumerate((5, 3)):
        h = torch.tanh(gate.lstm(x[b : b + 1, :n], mask[b : b + 1, :n]))[0]  # eq. 8
        conv = F.conv1d(h.T.unsqueeze(0), gate.conv.weight, gate.conv.bias, padding=1)[0].T
        mgn = gate.ffn(conv)  # eq. 9
        assert torch.allclose(out[b, :n], h * mgn, atol=1e-5)  # eq. 10
        assert (out[b, n:] == 0).all()


def test_coarse_to_fine_is_eqs_11_to_13() -> None:
    torch.manual_seed(0)
    c2f = mfmb.CoarseToFine(2, dim=4, hidden=5, out_dim=3).eval()
    c2f.norm.running_mean.copy_(torch.tensor([0.5, -1.0]))
    c2f.norm.running_var.copy_(torch.tensor([4.0, 0.25]))
    u_t, u_v = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    out = c2f([u_t, u_v], mask)
    eps = c2f.norm.eps
    co = torch.cat([(u_t - 0.5) / (4.0 + eps) ** 0.5, (u_v + 1.0) / (0.25 + eps) ** 0.5], dim=-1)  # eqs. 11-12
    want = F.relu(c2f.w2(c2f.ln(F.relu(c2f.w1(co)))))  # eq. 13
    assert torch.allclose(out[mask], want[mask], atol=1e-5) and (out[~mask] == 0).all()


def test_reconstruction_loss_is_eq18_at_the_missing_rows_only(dataset) -> None:
    torch.manual_seed(0)
    sig = dataset.signature
    model = tiny("mfmb", sig, recon_weights={"text": 5.0, "audio": 2.0, "visual": 20.0}).train()
    batch = collate(dataset.split("train")[:2], sig)
    present = batch.present.clone()
    present[0, 1:3, 0] = False  # text missing in two utterances
    present[1, 0, 2] = False  # visual missing in one
    batch = batch.with_present(present)
    out = model(batch)
    assert out.aux_weights == {"gen_text": 5.0, "gen_audio": 2.0, "gen_visual": 20.0}
    assert float(out.aux_losses["gen_audio"].detach()) == 0.0
    _, aligned = model.encode(batch.features, batch.mask)
    pred = model.reconstruct["text"](aligned["text"], batch.mask)
    want = F.smooth_l1_loss(pred[0, 1:3], batch.complete["text"][0, 1:3])
    assert torch.allclose(out.aux_losses["gen_text"], want, atol=1e-6)
    assert not torch.allclose(batch.complete["text"][0, 1:3], batch.features["text"][0, 1:3])
    # generative_loss itself: the mean SmoothL1 over the masked rows' elements.
    p, t = torch.tensor([[[0.0, 3.0], [1.0, 1.0]]]), torch.tensor([[[0.5, 0.0], [9.0, 9.0]]])
    assert torch.isclose(generative_loss(p, t, torch.tensor([[True, False]])), torch.tensor((0.125 + 2.5) / 2))
    assert float(generative_loss(p, t, torch.tensor([[False, False]]))) == 0.0


def test_reconstruction_trains_the_shared_encoders_not_the_fusion(dataset) -> None:
    torch.manual_seed(0)
    model = tiny("mfmb", dataset.signature).train()
    out = model(masked(dataset))
    sum(out.aux_losses.values()).backward()
    assert float(model.encoders["text"].weight.grad.abs().sum()) > 0
    assert float(model.reconstruct["visual"].ffn[-1].weight.grad.abs().sum()) > 0
    for part in (model.macro, model.gates, model.c2f, model.head):
        assert all(p.grad is None for p in part.parameters())


def test_temporal_masking_in_training_only(dataset) -> None:
    torch.manual_seed(0)
    sig = dataset.signature
    model = tiny("mfmb", sig, temporal_mask_rate=0.5)
    batch = collate(dataset.split("train")[:3], sig)
    feats, kept = model.temporal_mask(batch, batch.present.clone())
    real = batch.mask
    assert kept[real].any(-1).all() and not kept[~real].any()
    assert 0.2 < float(kept[real].float().mean()) < 0.9
    for i, m in enumerate(sig.modalities):
        assert torch.equal(feats[m], batch.features[m] * kept[..., i : i + 1])
    model.train()
    out = model(batch)  # complete batch: every reconstruction target comes from the model's own masking
    assert all(float(out.aux_losses[f"gen_{m}"].detach()) > 0 for m in sig.modalities)
    model.eval()
    reference = tiny("mfmb", sig).eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(batch).logits, reference(batch).logits)


def test_bidirectional_rnn_equals_a_packed_one() -> None:
    torch.manual_seed(0)
    for kind, cell in (("lstm", nn.LSTM), ("gru", nn.GRU)):
        ours = BiRNN(kind, 4, 3)
        packed = cell(4, 3, batch_first=True, bidirectional=True)
        with torch.no_grad():
            for name, p in ours.forward_rnn.named_parameters():
                getattr(packed, name).copy_(p)
            for name, p in ours.backward_rnn.named_parameters():
                getattr(packed, f"{name}_reverse").copy_(p)
        x = torch.randn(3, 6, 4)
        lengths = torch.tensor([6, 2, 4])
        mask = torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)
        seq = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        want = nn.utils.rnn.pad_packed_sequence(packed(seq)[0], batch_first=True, total_length=6)[0]
        assert torch.allclose(ours(x + 50.0 * (~mask).unsqueeze(-1), mask), want, atol=1e-5)
    assert reverse_index(torch.tensor([[True, True, True, False]])).tolist() == [[2, 1, 0, 3]]


# -- the baselines --------------------------------------------------------------------------------
def test_transformer_is_the_iteach_teacher(dataset) -> None:
    torch.manual_seed(0)
    model = tiny("transformer", dataset.signature).eval()
    assert len(model.net.layers) == 2
    assert all(isinstance(block.mixer, AttentionMixer) for layer in model.net.layers for block in layer.blocks.values())
    batch = masked(dataset)
    with torch.no_grad():
        out = model(batch)
        hidden = model.net(batch.features, batch.mask)[-1]  # ITEACHModel.forward, H_1
        assert torch.allclose(out.logits, model.net.predict(hidden, batch.mask), atol=1e-6)
    assert out.aux_losses == {}
    # The paper preset has exactly the ITEACH-Net teacher's parameters (plus the unimodal heads).
    sig = replace(dataset.signature, dims=dict(baselines.PAPER_DIMS))
    ours = TransformerSpace.from_preset(sig, "paper").build({})
    teacher = ITEACHSpace.from_preset(sig, "paper").supernet().teacher
    assert count_parameters(ours.net) == count_parameters(teacher)


def test_late_fusion_averages_the_modality_logits(dataset) -> None:
    model = tiny("late_fusion", dataset.signature).eval()
    with torch.no_grad():
        out = model(masked(dataset))
    mean = torch.stack([out.per_modality_logits[m] for m in ("text", "audio", "visual")]).mean(0)
    assert torch.allclose(out.logits, mean, atol=1e-6)


def test_early_fusion_is_one_linear_on_the_concatenation(dataset) -> None:
    torch.manual_seed(0)
    model = tiny("early_fusion", dataset.signature).train()
    batch = masked(dataset)
    shares = model.project(batch.features)
    joint = torch.cat([batch.features[m] for m in ("text", "audio", "visual")], dim=-1)
    assert torch.allclose(sum(shares.values()) + model.fuse.bias, model.fuse(joint), atol=1e-5)
    out = model(batch)
    task_loss(out.logits, batch, "classification").backward()
    assert all(p.grad is None for p in model.unimodal_heads.parameters())  # heads: own losses only
    model.zero_grad(set_to_none=True)
    on = tiny("early_fusion", dataset.signature, unimodal_weight=1.0).train()
    sum(on(batch).aux_losses.values()).backward()
    assert all(p.grad is not None for p in on.unimodal_heads.parameters())
    assert on.head.net[-1].weight.grad is None


# -- paper presets --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, module, low, high", [
    ("mfmb", mfmb, 1.5e6, 4e6),
    ("transformer", baselines, 1.5e6, 4e6),
    ("late_fusion", baselines, 0.8e6, 2e6),
    ("early_fusion", baselines, 0.5e6, 1.5e6),
])
def test_paper_preset_builds_at_paper_dims(name: str, module: Any, low: float, high: float) -> None:
    dims = dict(module.PAPER_DIMS)
    sig = DataSignature(tuple(dims), dims, "classification", "dialogue", tuple("abcdef"), 2)
    model = SPACES[name].from_preset(sig, "paper").build({})
    n = count_parameters(model)
    reported = module.PAPER_PARAMS if name == "mfmb" else module.PAPER_PARAMS[name]
    print(f"\n{name} paper preset at {dims}: {n / 1e6:.2f} M parameters (paper: {reported})")
    assert low < n < high
    batch = collate([Conversation(id="c", features={m: np.zeros((3, d), np.float32) for m, d in dims.items()},
                                  speakers=np.zeros(3, int), labels=np.zeros(3, int))], sig)
    assert model.eval()(batch).logits.shape == (1, 3, 6)


def test_mfmb_paper_preset_values() -> None:
    cfg = mfmb.mfmb_paper()
    assert (cfg.hidden_dim, cfg.n_heads, cfg.hub_tokens, cfg.c2f_hidden) == (90, 6, 4, 64)
    assert cfg.recon_weights == {"text": 5.0, "audio": 2.0, "visual": 20.0}
    assert baselines.transformer_paper().hidden_dim == 128 and baselines.transformer_paper().n_layers == 3
