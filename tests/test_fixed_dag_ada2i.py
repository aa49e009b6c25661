"""The degenerate spaces ``multidag`` (MultiDAG, Section 2.2) and ``ada2i`` (Ada2I, Section 4.1).

Tiny synthetic data from ``conftest``; single-threaded.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import random_conversations, utterance_batch
from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import DataSignature
from nasmerc.data.missing import mask_batch
from nasmerc.errors import NasmercError
from nasmerc.outputs import count_parameters
from nasmerc.train.losses import task_loss
from search_spaces.fixed import ada2i, multidag
from search_spaces.fixed.ada2i import Ada2IConfig, Ada2ISpace, AFWLayer, modulation_coefficients
from search_spaces.fixed.multidag import DAGLayer, MultiDAGConfig, MultiDAGSpace, dag_adjacency, dag_edges

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {
    "multidag": MultiDAGConfig(encoder_dim=6, n_layers=2, mlp_hidden=12, dropout=0.0),
    "ada2i": Ada2IConfig(hidden_dim=8, encoder_layers=1, n_heads=2, ffn_dim=16, rank=3, afw_layers=2,
                         mlp_hidden=8, dropout=0.0),
}
SPACES = {"multidag": MultiDAGSpace, "ada2i": Ada2ISpace}
NAMES = tuple(SPACES)


def small_space(name: str, sig: DataSignature, **changes: Any):
    return SPACES[name](sig, replace(SMALL[name], **changes))


def masked(ds, n: int = 3, rate: float = 0.5, seed: int = 0) -> Batch:
    """The first ``n`` training conversations with modalities dropped at ``rate``."""
    return mask_batch(collate(ds.split("train")[:n], ds.signature), rate, np.random.default_rng(seed), False)



def total_loss(out: Any, batch: Batch, task: str) -> torch.Tensor:
    return task_loss(out.logits, batch, task) + sum(out.aux_weights[k] * v for k, v in out.aux_losses.items())


def encoder_grad(model: torch.nn.Module, m: str) -> float:
    return sum(float(p.grad.abs().sum()) for p in model.encoders[m].parameters() if p.grad is not None)


# -- the contract of a degenerate space ------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_default_preset_builds_with_an_empty_architecture(tiny_dataset, name: str) -> None:
    space = SPACES[name].from_preset(tiny_dataset.signature, "default")
    assert space.name == name and set(space.presets) == {"default", "paper"}
    assert space.choices() == []
    model = space.build({})
    out = model(masked(tiny_dataset))
    assert out.logits.shape[-1] == tiny_dataset.signature.n_classes
    with pytest.raises(NasmercError, match="unknown choice"):
        space.build({"depth": 2})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("task, level", [("classification", "dialogue"), ("regression", "dialogue"),
                                         ("classification", "utterance"), ("regression", "utterance")])
def test_output_shapes_loss_and_gradients(tiny_dataset, tiny_regression, name: str, task: str, level: str) -> None:
    ds = tiny_dataset if task == "classification" else tiny_regression
    sig = replace(ds.signature, level=level)
    torch.manual_seed(0)
    model = small_space(name, sig).build({})
    batch = masked(ds) if level == "dialogue" else utterance_batch(sig, 0.5)
    out = model(batch)
    b, n = batch.mask.shape
    c = sig.n_outputs
    want = {("classification", "dialogue"): (b, n, c), ("regression", "dialogue"): (b, n),
            ("classification", "utterance"): (b, c), ("regression", "utterance"): (b,)}[(task, level)]
    assert out.logits.shape == want
    assert set(out.per_modality_logits) == set(sig.modalities)
    assert all(v.shape == want for v in out.per_modality_logits.values())
    loss = total_loss(out, batch, task)
    assert torch.isfinite(loss)
    loss.backward()
    for m in sig.modalities:
        assert encoder_grad(model, m) > 0, m
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NAMES)
def test_training_loss_falls_on_a_fixed_batch(tiny_dataset, name: str) -> None:
    torch.manual_seed(0)
    model = small_space(name, tiny_dataset.signature).build({})
    batch = masked(tiny_dataset, n=4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = total_loss(model(batch), batch, "classification")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("modalities, speakers", [(("text", "audio"), 2), (("visual",), 3)])
def test_any_subset_of_modalities_and_speakers(name: str, modalities: tuple[str, ...], speakers: int) -> None:
    sig = DataSignature(modalities, {"text": 5, "audio": 4, "visual": 7}, "classification", "dialogue",
                        ("a", "b", "c"), speakers)
    sig = replace(sig, dims={m: sig.dims[m] for m in modalities})
    model = small_space(name, sig).build({})
    batch = collate(random_conversations(sig, [5, 8, 3]), sig)
    out = model(batch)
    assert out.logits.shape == (3, 8, 3) and torch.isfinite(out.logits).all()
    assert set(out.per_modality_logits) == set(modalities)


@pytest.mark.parametrize("name", NAMES)
def test_real_rows_do_not_depend_on_padding(tiny_dataset, name: str) -> None:
    model = small_space(name, tiny_dataset.signature).build({}).eval()
    convs = tiny_dataset.split("train")[:3]
    short = min(range(3), key=lambda i: len(convs[i].labels))
    alone = model(collate([convs[short]], tiny_dataset.signature)).logits[0]
    padded = model(collate(convs, tiny_dataset.signature)).logits[short, : alone.shape[0]]
    assert torch.allclose(alone, padded, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_unimodal_losses_only_with_a_weight(tiny_dataset, name: str) -> None:
    sig = tiny_dataset.signature
    batch = masked(tiny_dataset)
    plain = small_space(name, sig).build({})(batch)
    assert not any(k.startswith("unimodal_") for k in plain.aux_losses)
    weighted = small_space(name, sig, unimodal_weight=0.3).build({})(batch)
    names = {f"unimodal_{m}" for m in sig.modalities}
    assert names <= set(weighted.aux_losses) and all(weighted.aux_weights[k] == 0.3 for k in names)


@pytest.mark.parametrize("name, changes, key", [
    ("multidag", {"n_layers": 0}, "n_layers"),
    ("multidag", {"window": 0}, "window"),
    ("multidag", {"dropout": 1.0}, "dropout"),
    ("ada2i", {"hidden_dim": 10, "n_heads": 4}, "hidden_dim"),
    ("ada2i", {"rank": 0}, "rank"),
    ("ada2i", {"cosine_scale": 0.0}, "cosine_scale"),
    ("ada2i", {"alpha": -1.0}, "alpha"),
])
def test_bad_config_names_the_field(tiny_dataset, name: str, changes: dict[str, Any], key: str) -> None:
    with pytest.raises(NasmercError, match=key):
        small_space(name, tiny_dataset.signature, **changes)


@pytest.mark.parametrize("module, space, low, high", [(multidag, MultiDAGSpace, 5.0e6, 6.5e6),
                                                      (ada2i, Ada2ISpace, 9.0e6, 13.0e6)], ids=NAMES)
def test_paper_preset_builds_at_paper_dims(module: Any, space: Any, low: float, high: float) -> None:
    sig = DataSignature(("text", "audio", "visual"), dict(module.PAPER_DIMS), "classification", "dialogue",
                        tuple("abcdef"), 2)
    model = space.from_preset(sig, "paper").build({})
    n = count_parameters(model)
    print(f"\n{space.name} paper preset at {module.PAPER_DIMS}: {n / 1e6:.2f} M parameters "
          f"(paper: {module.PAPER_PARAMS})")
    assert module.PAPER_PARAMS is None and low < n < high


# -- MultiDAG: the DAG and the DAG-GNN layer ---------------------------------------------------------
def test_dag_of_a_four_utterance_conversation() -> None:
    real = torch.ones(4, dtype=torch.bool)
    edges, relation = dag_edges(torch.tensor([0, 1, 0, 1]), real, window=1)
    # (j -> i, relation): u1 <- u0 (other); u2 <- u1 (other), u0 (same); u3 <- u2 (other), u1 (same)
    pairs = {(int(j), int(i), int(r)) for (j, i), r in zip(edges.T, relation)}
    assert pairs == {(0, 1, 0), (1, 2, 0), (0, 2, 1), (2, 3, 0), (1, 3, 1)}
    # a speaker who speaks on: only the previous own utterance and what came after it
    edges, relation = dag_edges(torch.tensor([0, 0, 1, 0]), real, window=1)
    assert {(int(j), int(i), int(r)) for (j, i), r in zip(edges.T, relation)} == {
        (0, 1, 1), (1, 2, 0), (0, 2, 0), (2, 3, 0), (1, 3, 1)}
    # window 2 reaches back to the second-last own utterance
    edges, _ = dag_edges(torch.tensor([0, 1, 0, 1, 0]), torch.ones(5, dtype=torch.bool), window=2)
    assert {(int(j), int(i)) for j, i in edges.T if int(i) == 4} == {(0, 4), (1, 4), (2, 4), (3, 4)}
    edges, _ = dag_edges(torch.tensor([0, 1, 0, 1, 0, 1, 0]), torch.ones(7, dtype=torch.bool), window=2)
    assert {int(j) for j, i in edges.T if int(i) == 6} == {2, 3, 4, 5}


def test_dag_never_links_padding() -> None:
    speakers = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    adjacency, _ = dag_adjacency(speakers, mask, 1)
    assert not adjacency[1, 2:].any() and not adjacency[1, :, 2:].any()
    assert adjacency.triu().sum() == 0  # predecessors only


def test_dag_layer_follows_the_paper_equations() -> None:
    torch.manual_seed(0)
    d = 5
    layer = DAGLayer(d, dropout=0.0)
    speakers = torch.tensor([[0, 1, 1, 0, 2, 0], [1, 0, 1, 1, 0, 0]])
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    prev = torch.randn(2, 6, d)
    adjacency, same = dag_adjacency(speakers, mask, 1)
    got = layer(prev, adjacency, same)
    w = layer.project.weight
    w_other, w_same, w_key = w[:d], w[d: 2 * d], w[2 * d]
    w_query = layer.query_score.weight[0]
    for b in range(2):
        states: list[torch.Tensor] = []
        for i in range(6):
            preds = [j for j in range(i) if adjacency[b, i, j]]
            if preds:
                scores = torch.stack([w_key @ states[j] + w_query @ prev[b, i] for j in preds])
                alpha = torch.softmax(scores, 0)
                message = sum(a * ((w_same if speakers[b, i] == speakers[b, j] else w_other) @ states[j])
                              for a, j in zip(alpha, preds))
            else:
                message = torch.zeros(d)
            node = layer.node_gru(prev[b, i][None], message[None])[0]  # GRU_H(H_i^{l-1}, M_i^l)
            context = layer.context_gru(message[None], prev[b, i][None])[0]  # GRU_M(M_i^l, H_i^{l-1})
            states.append(node + context)
        rows = int(mask[b].sum())
        assert torch.allclose(got[b, :rows], torch.stack(states)[:rows], atol=1e-5)


def test_multidag_is_causal_and_reads_every_layer(tiny_dataset) -> None:
    sig = tiny_dataset.signature
    model = small_space("multidag", sig).build({}).eval()
    width = SMALL["multidag"].encoder_dim * len(sig.modalities)
    first = model.head.net[1]
    assert first.in_features == width * (SMALL["multidag"].n_layers + 1)  # ||_{l=0}^{L} H^l
    batch = collate(tiny_dataset.split("train")[:1], sig)
    t = 3
    changed = replace(batch, features={m: x.clone() for m, x in batch.features.items()})
    for x in changed.features.values():
        x[0, t] += 5.0
    a, b = model(batch).logits[0], model(changed).logits[0]
    assert torch.allclose(a[:t], b[:t], atol=1e-6)  # no utterance hears a later one
    assert not torch.allclose(a[t], b[t])


# -- Ada2I: AFW, AMW and gradient modulation ----------------------------------------------------------
def test_modulation_coefficient_on_constructed_values() -> None:
    rho, k = modulation_coefficients({"text": 0.6, "audio": 0.3, "visual": 0.2}, alpha=0.5)
    assert rho == pytest.approx({"text": 3.0, "audio": 1.5, "visual": 1.0})
    assert k["text"] == pytest.approx(1 - math.tanh(1.5)) and k["audio"] == pytest.approx(1 - math.tanh(0.75))
    assert k["visual"] == 1.0  # the weakest modality is never slowed
    assert k["text"] < k["audio"] < k["visual"]
    rho, k = modulation_coefficients({"text": 0.5, "audio": float("nan")}, alpha=1.0)
    assert rho["text"] == 1.0 and math.isnan(rho["audio"]) and k == {"text": 1.0, "audio": 1.0}


def ada2i_model(sig: DataSignature, **changes: Any) -> Any:
    torch.manual_seed(0)
    return small_space("ada2i", sig, **changes).build({})


def test_hook_scales_each_encoder_gradient_by_its_coefficient(tiny_dataset) -> None:
    sig = tiny_dataset.signature
    model = ada2i_model(sig, alpha=0.8, unimodal_weight=0.5).train()
    batch = masked(tiny_dataset, n=4, rate=0.3)
    grads = {}
    for on in (False, True):
        model.cfg.modulation = on
        model.zero_grad()
        total_loss(model(batch), batch, "classification").backward()
        grads[on] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    k = model.last_k
    assert min(k.values()) < 1.0 and max(k.values()) == 1.0
    for name, g in grads[True].items():
        parts = name.split(".")
        factor = k[parts[1]] if parts[0] == "encoders" else 1.0
        assert torch.allclose(g, factor * grads[False][name], atol=1e-7, rtol=1e-5), name
    # the coefficient comes from the true-class probability of each modality's cosine logits
    out = model(batch)
    cosine = model.amw.cosine_logits  # recompute the scores by hand
    with torch.no_grad():
        states = {m: model.encoders[m](batch.features[m], batch.mask) for m in sig.modalities}
        for layer in model.afw:
            states, _ = layer(states, batch.mask)
        logits = cosine(states)
    scores = {}
    for m in sig.modalities:
        where = batch.mask & batch.present[..., sig.modalities.index(m)]
        scores[m] = float(logits[m][where].softmax(-1).gather(-1, batch.labels[where][:, None]).mean())
    assert model.true_class_scores(model_outputs(model, logits, batch), batch) == pytest.approx(scores)
    assert model.last_k == pytest.approx(modulation_coefficients(scores, 0.8)[1])
    assert set(out.aux_losses) >= {"feature", "modal"}


def model_outputs(model: Any, logits: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    return {m: model.readout(c, batch.mask) for m, c in logits.items()}


def test_gradient_noise_touches_only_the_encoders(tiny_dataset) -> None:
    model = ada2i_model(tiny_dataset.signature, alpha=0.8, gradient_noise=True).train()
    batch = masked(tiny_dataset)
    grads = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model.zero_grad()
        total_loss(model(batch), batch, "classification").backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for name, g in grads[0].items():
        assert torch.isfinite(g).all()
        if name.startswith("encoders."):
            assert not torch.allclose(g, grads[1][name]), name  # fresh noise each backward
        else:
            assert torch.equal(g, grads[1][name]), name


def test_no_modulation_at_evaluation(tiny_dataset) -> None:
    model = ada2i_model(tiny_dataset.signature, alpha=0.8).eval()
    batch = masked(tiny_dataset)
    model.zero_grad()
    total_loss(model(batch), batch, "classification").backward()
    with_eval = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.cfg.modulation = False
    model.zero_grad()
    total_loss(model(batch), batch, "classification").backward()
    assert all(torch.equal(p.grad, with_eval[n]) for n, p in model.named_parameters() if p.grad is not None)
    assert model.last_k == {}


def test_afw_is_the_tensor_ring_contraction_with_residual() -> None:
    torch.manual_seed(0)
    mods, d, r, beta = ("text", "audio", "visual"), 4, 3, 0.25
    layer = AFWLayer(mods, d, r, beta, dropout=0.0)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    z = {m: torch.randn(2, 3, d) * mask[..., None] for m in mods}
    out, loss = layer(z, mask)

    def theta(m: str, b: int, i: int) -> torch.Tensor:
        q = layer.query[m](z[m][b, i])
        k = layer.key[m](z[m][b, i])
        return torch.outer(q[:r], q[r:]) * torch.outer(k[:r], k[r:]) / r  # G_Q * G_K, scaled

    for b in range(2):
        rows = int(mask[b].sum())
        pooled = {m: torch.stack([theta(m, b, i) for i in range(rows)]).mean(0) for m in mods}  # A^(m)
        for idx, m in enumerate(mods):
            others = mods[idx + 1:] + mods[:idx]
            for i in range(rows):
                ring = theta(m, b, i) @ pooled[others[0]] @ pooled[others[1]]
                att = layer.attention[m](ring.flatten())
                assert torch.allclose(out[m][b, i], att * z[m][b, i] + beta * z[m][b, i], atol=1e-5)
        assert torch.equal(out["text"][1, 2], torch.zeros(d))  # padding stays zero
    att = layer.weights(z, mask)
    real = mask
    want = torch.stack([F.l1_loss(layer.weight_map[m](z[m])[real], att[m][real]) for m in mods]).mean()
    assert torch.allclose(loss, want)


def test_amw_cosine_logits_and_modal_loss(tiny_dataset) -> None:
    sig = tiny_dataset.signature
    model = ada2i_model(sig)
    amw = model.amw
    z = {m: torch.randn(2, 5, 8) for m in sig.modalities}
    logits = amw.cosine_logits(z)
    scaled = amw.cosine_logits({m: 7.0 * x for m, x in z.items()})
    for m in sig.modalities:
        w = amw.weight[m].weight  # [C, d]
        want = amw.scale * F.cosine_similarity(z[m].unsqueeze(-2), w, dim=-1)
        assert torch.allclose(logits[m], want, atol=1e-5)
        assert torch.allclose(scaled[m], logits[m], atol=1e-5)  # L2-normalised: scale-free
        assert logits[m].abs().max() <= amw.scale + 1e-5
    assert torch.allclose(amw(logits), sum(logits.values()) + amw.bias)
    batch = masked(tiny_dataset)
    outputs = {m: torch.randn(*batch.mask.shape, sig.n_classes) for m in sig.modalities}
    want = []
    for i, m in enumerate(sig.modalities):
        where = batch.mask & batch.present[..., i]
        want.append(F.cross_entropy(outputs[m][where], batch.labels[where]))
    assert torch.allclose(model.modal_loss(outputs, batch), torch.stack(want).mean())
