"""The graph-based hand-designed models CORECT and Mi-CGA, and the conversation graphs they share.

Tiny synthetic data from ``conftest.TINY``; single-threaded.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from conftest import random_conversations, utterance_batch
from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import DataSignature
from nasmerc.data.missing import mask_batch
from nasmerc.errors import NasmercError
from nasmerc.modules.graph import (FUTURE, PAST, SELF, multimodal_graph, n_relations, relation_names, temporal_pairs,
                                   to_nodes, to_padded, utterance_graph, utterance_index)
from nasmerc.outputs import count_parameters
from nasmerc.train.losses import task_loss
from search_spaces.fixed import corect, micga
from search_spaces.fixed.corect import CorectConfig, CorectSpace
from search_spaces.fixed.micga import MiCGAConfig, MiCGASpace

pytestmark = pytest.mark.usefixtures("one_thread")

MODS = ("text", "audio", "visual")
SMALL_CORECT = CorectConfig(hidden_dim=8, text_layers=1, text_heads=2, text_ffn_dim=16, graph_heads=2, pcm_layers=1,
                            pcm_heads=2, pcm_self_layers=1, pcm_self_heads=2, dropout=0.0)
SMALL_MICGA = MiCGAConfig(hidden_dim=8, speaker_dim=4, gcn_layers=2, gcn_dim=12, decoder_dim=12, gat_heads=2,
                          gat_dim=6, cma_heads=2, dropout=0.0)
SPACES = {"corect": (CorectSpace, SMALL_CORECT), "micga": (MiCGASpace, SMALL_MICGA)}


def total_loss(out: Any, batch: Batch, task: str) -> torch.Tensor:
    return task_loss(out.logits, batch, task) + sum(out.aux_weights[k] * v for k, v in out.aux_losses.items())


def masked(ds, n: int = 3, rate: float = 0.5, seed: int = 0) -> Batch:
    return mask_batch(collate(ds.split("train")[:n], ds.signature), rate, np.random.default_rng(seed), False)



def grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


# -- the graphs -------------------------------------------------------------------------------------
def expected_temporal(n: int, past: int, future: int) -> set[tuple[int, int, int]]:
    """(source, target, kind) of one conversation of ``n`` rows, written out by the definition."""
    out = set()
    for i in range(n):
        for j in range(n):
            if j == i:
                out.add((j, i, SELF))
            elif j < i and (past < 0 or i - j <= past):
                out.add((j, i, PAST))
            elif j > i and (future < 0 or j - i <= future):
                out.add((j, i, FUTURE))
    return out


def test_utterance_index_numbers_real_rows_in_batch_order() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    assert utterance_index(mask).tolist() == [[0, 1, -1], [2, 3, 4], [5, -1, -1]]


@pytest.mark.parametrize("past, future", [(2, 1), (0, 0), (-1, 1), (1, -1), (11, 5)])
def test_temporal_edges_of_a_four_utterance_conversation(past: int, future: int) -> None:
    mask = torch.ones(1, 4, dtype=torch.bool)
    src, dst, kind = temporal_pairs(mask, past, future)
    got = set(zip(src.tolist(), dst.tolist(), kind.tolist()))
    assert got == expected_temporal(4, past, future) and len(got) == len(src)


def test_window_two_one_spelled_out() -> None:
    src, dst, kind = temporal_pairs(torch.ones(1, 4, dtype=torch.bool), 2, 1)
    into_3 = sorted((s, k) for s, d, k in zip(src.tolist(), dst.tolist(), kind.tolist()) if d == 3)
    assert into_3 == [(1, PAST), (2, PAST), (3, SELF)]  # utterance 0 is three steps back: outside w_p = 2
    into_0 = sorted((s, k) for s, d, k in zip(src.tolist(), dst.tolist(), kind.tolist()) if d == 0)
    assert into_0 == [(0, SELF), (1, FUTURE)]


def test_edges_stay_inside_each_conversation() -> None:
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    graph = utterance_graph(mask, -1, -1)
    conv = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    src, dst = graph.edge_index
    assert graph.n_nodes == 9 and torch.equal(conv[src], conv[dst])
    assert graph.edge_index.shape[1] == 9 + 4 + 16  # every ordered pair of each conversation
    no_self = utterance_graph(mask, -1, -1, self_loops=False)
    assert bool((no_self.edge_index[0] != no_self.edge_index[1]).all()) and no_self.edge_index.shape[1] == 29 - 9


def test_multimodal_graph_relations_for_a_four_utterance_conversation() -> None:
    mods = MODS
    m = len(mods)
    mask = torch.ones(1, 4, dtype=torch.bool)
    graph = multimodal_graph(mask, m, 2, 1)
    names = relation_names(mods)
    assert graph.n_relations == n_relations(m) == len(names) == 15 and graph.n_nodes == 12
    got = {(int(s), int(d), names[int(t)]) for s, d, t in zip(*graph.edge_index, graph.edge_type)}
    want = set()
    kind_name = {PAST: "past", FUTURE: "future", SELF: "self"}
    for j, i, kind in expected_temporal(4, 2, 1):
        for k, mod in enumerate(mods):
            want.add((j * m + k, i * m + k, f"{kind_name[kind]}:{mod}"))
    for u in range(4):
        for k, a in enumerate(mods):
            for l, b in enumerate(mods):
                if k != l:
                    want.add((u * m + k, u * m + l, f"{a}->{b}"))
    assert got == want and len(got) == graph.edge_index.shape[1]
    assert set(graph.edge_type.tolist()) == set(range(15))  # every relation is used in this conversation
    two = multimodal_graph(mask, 2, 2, 1)
    assert two.n_relations == 8 and relation_names(("text", "audio"))[6:] == ["text->audio", "audio->text"]
    assert multimodal_graph(mask, 2, 2, 1, cross=False).edge_type.max() < 6


def test_nodes_round_trip_and_padding_is_zero() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    a, v = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    nodes = to_nodes([a, v], mask)
    assert nodes.shape == (6, 5)
    assert torch.equal(nodes[2 * 1 + 1], v[0, 1]) and torch.equal(nodes[2 * 2 + 0], a[1, 0])  # node u * M + k
    back = to_padded(nodes, mask, 2)
    assert torch.equal(back[..., 0, :][mask], a[mask]) and torch.equal(back[..., 1, :][mask], v[mask])
    assert float(back[~mask].abs().sum()) == 0.0
    single = to_padded(to_nodes(a, mask), mask)
    assert torch.equal(single[mask], a[mask]) and float(single[~mask].abs().sum()) == 0.0
    with pytest.raises(NasmercError, match="expected 3 rows x 2 modalities"):
        to_padded(nodes[:5], mask, 2)


def test_bad_window_is_refused() -> None:
    with pytest.raises(NasmercError, match="past=-2"):
        utterance_graph(torch.ones(1, 3, dtype=torch.bool), -2, 1)


# -- both models: the contract ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["corect", "micga"])
def test_default_preset_builds_with_an_empty_architecture(tiny_dataset, name: str) -> None:
    cls = SPACES[name][0]
    space = cls.from_preset(tiny_dataset.signature, "default")
    assert space.name == name and set(cls.presets) == {"default", "paper"}
    assert space.choices() == []
    model = space.build({})
    out = model(masked(tiny_dataset))
    assert out.logits.shape == (3, max(len(c.labels) for c in tiny_dataset.split("train")[:3]), 6)
    with pytest.raises(NasmercError, match="unknown choice"):
        space.build({"depth": 2})


@pytest.mark.parametrize("name", ["corect", "micga"])
def test_forward_backward_reaches_every_part(tiny_dataset, name: str) -> None:
    cls, cfg = SPACES[name]
    torch.manual_seed(0)
    model = cls(tiny_dataset.signature, cfg).build({}).train()
    batch = masked(tiny_dataset)
    assert not bool(batch.present[batch.mask].all())  # some modalities are missing
    out = model(batch)
    loss = total_loss(out, batch, "classification")
    assert torch.isfinite(loss)
    loss.backward()
    for m in MODS:
        assert grad_norm(model.encoders[m]) > 0, m
    parts = ["rgcn", "graph_transformer", "pcm", "speaker"] if name == "corect" else ["fe", "gat", "cma", "speaker"]
    for part in parts:
        assert grad_norm(getattr(model, part)) > 0, part
    assert set(out.per_modality_logits) == set(MODS)


@pytest.mark.parametrize("name", ["corect", "micga"])
@pytest.mark.parametrize("task, level", [("classification", "dialogue"), ("regression", "dialogue"),
                                         ("classification", "utterance"), ("regression", "utterance")])
def test_output_shapes(tiny_dataset, tiny_regression, name: str, task: str, level: str) -> None:
    ds = tiny_dataset if task == "classification" else tiny_regression
    sig = replace(ds.signature, level=level)
    cls, cfg = SPACES[name]
    model = cls(sig, replace(cfg, unimodal_weight=0.5)).build({})
    batch = masked(ds) if level == "dialogue" else utterance_batch(sig, 0.5)
    out = model(batch)
    b, n = batch.mask.shape
    c = sig.n_outputs
    want = {("classification", "dialogue"): (b, n, c), ("regression", "dialogue"): (b, n),
            ("classification", "utterance"): (b, c), ("regression", "utterance"): (b,)}[(task, level)]
    assert out.logits.shape == want
    assert all(v.shape == want for v in out.per_modality_logits.values())
    assert {f"unimodal_{m}" for m in sig.modalities} <= set(out.aux_losses)
    assert all(out.aux_weights[f"unimodal_{m}"] == 0.5 for m in sig.modalities)
    loss = total_loss(out, batch, task)
    assert torch.isfinite(loss)
    loss.backward()


@pytest.mark.parametrize("name", ["corect", "micga"])
def test_unimodal_losses_only_when_weighted(tiny_dataset, name: str) -> None:
    cls, cfg = SPACES[name]
    out = cls(tiny_dataset.signature, cfg).build({})(masked(tiny_dataset))
    assert not any(k.startswith("unimodal_") for k in out.aux_losses)


@pytest.mark.parametrize("name", ["corect", "micga"])
@pytest.mark.parametrize("modalities", [("text", "audio"), ("visual",)])
def test_any_subset_of_modalities(name: str, modalities: tuple[str, ...]) -> None:
    sig = DataSignature(modalities, {"text": 12, "audio": 8, "visual": 16}, "classification", "dialogue",
                        ("a", "b", "c"), 3)
    sig = replace(sig, dims={m: sig.dims[m] for m in modalities})
    cls, cfg = SPACES[name]
    model = cls(sig, cfg).build({})
    batch = mask_batch(collate(random_conversations(sig, [5, 3]), sig), 0.4, np.random.default_rng(0))
    out = model(batch)
    assert out.logits.shape == (2, 5, 3) and set(out.per_modality_logits) == set(modalities)
    total_loss(out, batch, "classification").backward()
    if name == "corect":
        assert model.rgcn.num_relations == 3 * len(modalities) + len(modalities) * (len(modalities) - 1)
        assert (model.pcm is None) == (len(modalities) == 1)
        if model.pcm is not None:
            assert sorted(model.pcm.cross) == ["audio_to_text", "text_to_audio"]
    else:
        assert sorted(model.cma) == (["text_audio"] if len(modalities) == 2 else [])


@pytest.mark.parametrize("name", ["corect", "micga"])
def test_real_rows_do_not_depend_on_padding(tiny_dataset, name: str) -> None:
    cls, cfg = SPACES[name]
    torch.manual_seed(0)
    model = cls(tiny_dataset.signature, cfg).build({}).eval()
    convs = tiny_dataset.split("train")[:3]
    short = min(range(3), key=lambda i: len(convs[i].labels))
    with torch.no_grad():
        alone = model(collate([convs[short]], tiny_dataset.signature)).logits[0]
        together = model(collate(convs, tiny_dataset.signature)).logits[short, : alone.shape[0]]
    assert torch.allclose(alone, together, atol=1e-5)


@pytest.mark.parametrize("name", ["corect", "micga"])
def test_training_loss_falls(tiny_dataset, name: str) -> None:
    cls, cfg = SPACES[name]
    torch.manual_seed(0)
    model = cls(tiny_dataset.signature, cfg).build({}).train()
    batch = masked(tiny_dataset, n=4, rate=0.3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = total_loss(model(batch), batch, "classification")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("name, changes, key", [
    ("corect", {"text_heads": 3}, "text_heads"),
    ("corect", {"pcm_heads": 3}, "pcm_heads"),
    ("corect", {"pcm_self_heads": 3}, "pcm_self_heads"),
    ("corect", {"window_past": -2}, "window_past"),
    ("corect", {"dropout": 1.0}, "dropout"),
    ("corect", {"graph_heads": 0}, "graph_heads"),
    ("micga", {"hidden_dim": 9}, "hidden_dim"),
    ("micga", {"cma_heads": 3}, "cma_heads"),
    ("micga", {"smooth_lambda": 1.5}, "smooth_lambda"),
    ("micga", {"recon_weight": -1.0}, "recon_weight"),
    ("micga", {"window_future": -3}, "window_future"),
])
def test_bad_config_names_the_field(tiny_dataset, name: str, changes: dict[str, Any], key: str) -> None:
    cls, cfg = SPACES[name]
    with pytest.raises(NasmercError, match=key):
        cls(tiny_dataset.signature, replace(cfg, **changes))


def test_a_batch_with_other_widths_is_refused(tiny_dataset) -> None:
    sig = tiny_dataset.signature
    other = replace(sig, dims={**sig.dims, "audio": 5})
    batch = collate(random_conversations(other, [3]), other)
    for cls, cfg in SPACES.values():
        with pytest.raises(NasmercError, match="'audio' has 5 features"):
            cls(sig, cfg).build({})(batch)


# -- CORECT's equations ------------------------------------------------------------------------------
def test_corect_speaker_embedding_is_added_with_eta(tiny_dataset) -> None:
    torch.manual_seed(0)
    model = CorectSpace(tiny_dataset.signature, replace(SMALL_CORECT, speaker_weight=0.3)).build({}).eval()
    batch = masked(tiny_dataset)
    mask = batch.mask
    with torch.no_grad():
        states = model.embed(batch)
        s = model.speaker(batch.speakers.clamp(0, 1))
        for m in MODS:
            x = model.encoders[m](batch.features[m], mask)
            assert torch.allclose(states[m][mask], (x + 0.3 * s)[mask], atol=1e-6)  # X = x + eta s
            assert float(states[m][~mask].abs().sum()) == 0.0


def test_corect_rt_gcn_sees_only_its_window(tiny_dataset) -> None:
    """Two graph layers with ``w_p = 1, w_f = 0``: utterance 3 hears 1, 2, 3 and never 0."""
    torch.manual_seed(0)
    cfg = replace(SMALL_CORECT, window_past=1, window_future=0)
    model = CorectSpace(tiny_dataset.signature, cfg).build({}).eval()
    mask = torch.ones(1, 5, dtype=torch.bool)
    states = {m: torch.randn(1, 5, 8) for m in MODS}
    moved = {m: x.clone() for m, x in states.items()}
    moved["audio"][0, 0] += 5.0
    with torch.no_grad():
        before, after = model.rt_gcn(states, mask), model.rt_gcn(moved, mask)
    changed = (before - after).abs().amax(-1)[0]
    assert changed[0] > 0 and changed[1] > 0 and changed[2] > 0  # 0 -> 1 -> 2 in two hops
    assert changed[3] == 0 and changed[4] == 0
    width = model.graph_norm.num_features
    per_mod = (before - after).abs().reshape(5, 3, width).amax(-1)
    assert per_mod[0].min() > 0  # the audio change reaches text and visual of its own utterance (R_multi)


def test_corect_fuses_graph_and_cross_modal_features(tiny_dataset) -> None:
    cfg = SMALL_CORECT
    model = CorectSpace(tiny_dataset.signature, cfg).build({})
    first = model.head.net[1]
    assert first.in_features == 3 * cfg.hidden_dim * cfg.graph_heads + 6 * cfg.hidden_dim  # [o^tau; Z_alpha]
    assert first.out_features == cfg.hidden_dim  # y = W_2 ReLU(W_1 H + b_1) + b_2
    assert sorted(model.pcm.cross) == sorted(f"{b}_to_{a}" for a in MODS for b in MODS if a != b)
    assert all(len(stack.blocks) == cfg.pcm_layers for stack in model.pcm.cross.values())


def test_corect_paper_preset_size() -> None:
    cfg = corect.corect_paper()
    assert (cfg.hidden_dim, cfg.window_past, cfg.window_future, cfg.graph_heads, cfg.pcm_layers) == (100, 11, 5, 7, 2)
    sig = DataSignature(MODS, corect.PAPER_DIMS, "classification", "dialogue", tuple("abcdef"), 2)
    model = CorectSpace.from_preset(sig, "paper").build({})
    n = count_parameters(model)
    text = count_parameters(model.encoders["text"])
    print(f"\nCORECT paper preset at {corect.PAPER_DIMS}: {n / 1e6:.2f} M parameters "
          f"({text / 1e6:.2f} M in the 768-wide text Transformer); the paper reports none")
    assert corect.PAPER_PARAMS is None
    assert 15e6 < n < 20e6 and 10e6 < text < 12e6


# -- Mi-CGA's equations ------------------------------------------------------------------------------
def capture_fe(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    model.fe.register_forward_hook(lambda mod, args, out: seen.update(nodes=args[0], coarse=out))
    model.gat.register_forward_hook(lambda mod, args, out: seen.update(gat_in=args[0]))
    return seen


def test_micga_imr_and_feature_estimation_equations(tiny_dataset) -> None:
    torch.manual_seed(0)
    cfg = replace(SMALL_MICGA, smooth_lambda=0.3, speaker_weight=0.5)
    model = MiCGASpace(tiny_dataset.signature, cfg).build({}).eval()
    seen = capture_fe(model)
    batch = masked(tiny_dataset)
    with torch.no_grad():
        model(batch)
        mask = batch.mask
        x = model.encode(batch.features, mask)
        s = model.speaker(batch.speakers.clamp(0, 1))
    nodes = seen["nodes"]
    # X^miss_spk = eta S_emb (+) X (.) M
    assert torch.allclose(nodes[:, :4], 0.5 * s[mask], atol=1e-6)
    for k, m in enumerate(MODS):
        block = nodes[:, 4 + 8 * k: 4 + 8 * (k + 1)]
        observed = batch.present[..., k][mask]
        assert torch.allclose(block[observed], x[m][mask][observed], atol=1e-6)
        assert float(block[~observed].abs().sum()) == 0.0
    # X^FE = (1 - lambda) X^coarse + lambda X^miss_spk
    assert torch.allclose(seen["gat_in"], 0.7 * seen["coarse"] + 0.3 * nodes, atol=1e-6)


def test_micga_lambda_one_bypasses_the_estimate(tiny_dataset) -> None:
    torch.manual_seed(0)
    model = MiCGASpace(tiny_dataset.signature, replace(SMALL_MICGA, smooth_lambda=1.0)).build({}).eval()
    batch = masked(tiny_dataset)
    with torch.no_grad():
        before = model(batch).logits
        for p in model.fe.parameters():
            p.add_(torch.randn_like(p))
        assert torch.allclose(model(batch).logits, before, atol=1e-6)


def test_micga_reconstruction_is_at_masked_positions_and_training_only(tiny_dataset) -> None:
    torch.manual_seed(0)
    model = MiCGASpace(tiny_dataset.signature, replace(SMALL_MICGA, recon_weight=0.7)).build({}).train()
    seen = capture_fe(model)
    batch = masked(tiny_dataset)
    out = model(batch)
    assert out.aux_weights == {"reconstruction": 0.7}
    mask = batch.mask
    coarse = to_padded(seen["coarse"], mask)
    with torch.no_grad():
        target = model.encode(batch.complete, mask)
    err, count = 0.0, 0
    for k, m in enumerate(MODS):
        dropped = mask & ~batch.present[..., k]
        err += float(((coarse[..., 4 + 8 * k: 4 + 8 * (k + 1)][dropped] - target[m][dropped]) ** 2).sum())
        count += int(dropped.sum()) * 8
    assert count > 0 and abs(float(out.aux_losses["reconstruction"]) - err / count) < 1e-6
    # the target is fixed: L_rct sends no gradient through the complete-feature encoding
    complete = {m: x.clone().requires_grad_(True) for m, x in batch.complete.items()}
    model.zero_grad()
    model(replace(batch, complete=complete)).aux_losses["reconstruction"].backward()
    assert grad_norm(model.fe) > 0 and all(x.grad is None for x in complete.values())
    # observed positions of batch.complete do not enter the loss, dropped ones do (audio and visual:
    # their encoders see one utterance; the text BiLSTM's target at a dropped row reads its context)
    def shifted(where_observed: bool) -> Batch:
        return replace(batch, complete={
            m: (torch.where(batch.present[..., k:k + 1] == where_observed, x + 3.0, x) if m != "text" else x)
            for k, (m, x) in enumerate(batch.complete.items())})

    observed_changed, dropped_changed = shifted(True), shifted(False)
    ref = float(model(batch).aux_losses["reconstruction"])  # dropout 0: the runs see the same network
    assert abs(float(model(observed_changed).aux_losses["reconstruction"]) - ref) < 1e-6
    assert float(model(dropped_changed).aux_losses["reconstruction"]) != pytest.approx(ref)
    model.eval()
    assert model(batch).aux_losses == {}  # evaluation: no reconstruction, no use of batch.complete


def test_micga_reconstruction_is_zero_without_missing_modalities(tiny_dataset) -> None:
    model = MiCGASpace(tiny_dataset.signature, SMALL_MICGA).build({}).train()
    batch = collate(tiny_dataset.split("train")[:2], tiny_dataset.signature)
    out = model(batch)
    assert float(out.aux_losses["reconstruction"]) == 0.0
    total_loss(out, batch, "classification").backward()


def test_micga_final_representation_concatenates_gat_and_cross(tiny_dataset) -> None:
    cfg = SMALL_MICGA
    model = MiCGASpace(tiny_dataset.signature, cfg).build({})
    assert model.head.net[1].in_features == cfg.gat_heads * cfg.gat_dim + 3 * 2 * cfg.hidden_dim
    assert sorted(model.cma) == ["audio_visual", "text_audio", "text_visual"]
    assert model.gat.heads == cfg.gat_heads and model.gat.concat


def test_micga_paper_preset_size() -> None:
    cfg = micga.micga_paper()
    assert (cfg.hidden_dim, cfg.window_past, cfg.window_future, cfg.smooth_lambda, cfg.recon_weight) == \
        (100, 11, 5, 0.5, 1.0)
    sig = DataSignature(MODS, micga.PAPER_DIMS, "classification", "dialogue", tuple("abcdef"), 2)
    model = MiCGASpace.from_preset(sig, "paper").build({})
    n = count_parameters(model)
    print(f"\nMi-CGA paper preset at {micga.PAPER_DIMS}: {n / 1e6:.2f} M parameters; the paper reports none")
    assert micga.PAPER_PARAMS is None
    assert 1.0e6 < n < 2.0e6
