"""The structured output layers (``nasmerc.modules.crf``) against brute-force enumeration, and the
PCA encoder (``nasmerc.modules.pca``) against its definition."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nasmerc.data.conversation import Conversation
from nasmerc.errors import NasmercError
from nasmerc.modules.crf import ChainCRF, PartyCRF, structure_names
from nasmerc.modules.pca import PCAEncoder
from nasmerc.outputs import fit_data_modules


def _random_potentials(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def _chain_brute(crf: ChainCRF, e: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
    """Marginals of one conversation ``e [T, K]`` by enumerating every label sequence."""
    t_len, k = e.shape
    start, trans = crf.start.detach(), crf.transitions.detach()
    marg = torch.zeros(t_len, k, dtype=torch.float64)
    for ys in itertools.product(range(k), repeat=t_len):
        score = start[ys[0]] + e[0, ys[0]]
        for t in range(1, t_len):
            changed = int(speakers[t] != speakers[t - 1])
            score = score + trans[changed, ys[t - 1], ys[t]] + e[t, ys[t]]
        for t in range(t_len):
            marg[t, ys[t]] += float(torch.exp(score))
    return marg / marg.sum(-1, keepdim=True)


def _party_brute(crf: PartyCRF, e: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
    """Marginals of the speaker's emotion by enumerating every sequence of both parties' emotions."""
    t_len, k = e.shape
    start = torch.log_softmax(crf.start.detach().reshape(-1), 0).reshape(k, k)
    moves = torch.log_softmax(crf.moves.detach(), -1)  # [party, own, other, new]
    marg = torch.zeros(t_len, k, dtype=torch.float64)
    states = list(itertools.product(range(k), repeat=2))
    for zs in itertools.product(states, repeat=t_len):
        s0 = int(speakers[0])
        score = start[zs[0]] + e[0, zs[0][s0]]
        ok = True
        for t in range(1, t_len):
            s = int(speakers[t])
            other = 1 - s
            if zs[t][other] != zs[t - 1][other]:  # the listener's emotion is kept
                ok = False
                break
            score = score + moves[s, zs[t - 1][s], zs[t - 1][other], zs[t][s]] + e[t, zs[t][s]]
        if not ok:
            continue
        for t in range(t_len):
            marg[t, zs[t][int(speakers[t])]] += float(torch.exp(score))
    return marg / marg.sum(-1, keepdim=True)


@pytest.mark.parametrize("layer,brute", [(ChainCRF, _chain_brute), (PartyCRF, _party_brute)])
def test_marginals_equal_enumeration_with_padding(layer, brute) -> None:
    k = 3
    crf = layer(k)
    _random_potentials(crf, 0)
    e = torch.randn(2, 4, k, generator=torch.Generator().manual_seed(1))
    speakers = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    out = crf(e, mask, speakers)
    for b, length in ((0, 4), (1, 3)):
        want = brute(crf, e[b, :length].double(), speakers[b, :length])
        assert torch.allclose(out[b, :length].exp().double(), want, atol=1e-5)
    assert torch.all(out[1, 3] == 0)  # padding rows are zeros


@pytest.mark.parametrize("layer", [ChainCRF, PartyCRF])
def test_untrained_layer_is_the_softmax_of_the_emissions(layer) -> None:
    e = torch.randn(1, 5, 4)
    speakers = torch.tensor([[0, 1, 0, 0, 1]])
    out = layer(4)(e, torch.ones(1, 5, dtype=torch.bool), speakers)
    assert torch.allclose(out, torch.log_softmax(e, -1), atol=1e-5)


def test_transitions_are_learned_through_the_marginals() -> None:
    crf = ChainCRF(2)
    e = torch.zeros(1, 3, 2)
    e[0, 0, 1] = 4.0  # only the first row is informative
    out = crf(e, torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.long))
    loss = -out[0, 1:, 1].sum()  # the later rows share the first one's label
    loss.backward()
    assert crf.transitions_.grad is not None and crf.transitions_.grad[0, 1, 1] < 0


def test_structure_names_apply_to_the_data() -> None:
    every = ("none", "crf", "party_crf")
    assert structure_names(every, "classification", "dialogue", 2) == every
    assert structure_names(every, "classification", "dialogue", 9) == ("none", "crf")
    assert structure_names(every, "regression", "dialogue", 2) == ("none",)
    assert structure_names(every, "classification", "utterance", 1) == ("none",)


def _convs(n: int, dim: int, seed: int) -> list[Conversation]:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, 2)))[0]  # a 2-d signal subspace
    out = []
    for i in range(n):
        x = rng.normal(size=(6, 2)) * [3.0, 2.0] @ basis.T + 0.05 * rng.normal(size=(6, dim)) + 1.0
        out.append(Conversation(id=f"c{i}", features={"text": x}, speakers=np.zeros(6, dtype=np.int64),
                                labels=np.zeros(6, dtype=np.int64)))
    return out


def test_pca_encoder_whitens_the_training_features_and_keeps_missing_rows_zero() -> None:
    convs = _convs(20, 8, 0)
    enc = PCAEncoder("text", 8, 4, rank=2)
    assert not bool(enc.fitted)
    assert fit_data_modules(torch.nn.Sequential(enc), convs) == 1
    x = np.concatenate([c.features["text"] for c in convs])
    z = (x - x.mean(0)) @ enc.components.double().numpy()
    assert np.allclose(np.cov(z.T, bias=True), np.eye(2), atol=1e-6)
    rows = torch.zeros(1, 3, 8)
    rows[0, 0] = torch.as_tensor(x[0], dtype=torch.float32)
    mask = torch.tensor([[True, True, False]])
    h = enc(rows, mask)
    assert torch.all(h[0, 1:] == 0) and torch.any(h[0, 0] != 0)
    assert fit_data_modules(torch.nn.Sequential(enc), convs) == 0  # fitted once


def test_pca_projection_travels_in_the_state_dict() -> None:
    enc = PCAEncoder("text", 8, 4, rank=2)
    fit_data_modules(enc, _convs(20, 8, 1))
    other = PCAEncoder("text", 8, 4, rank=2)
    other.load_state_dict(enc.state_dict())
    assert bool(other.fitted) and torch.equal(other.components, enc.components)
    assert fit_data_modules(other, _convs(20, 8, 2)) == 0


def test_pca_refuses_fewer_rows_than_components() -> None:
    with pytest.raises(NasmercError, match="pca_dim"):
        PCAEncoder("text", 8, 4, rank=8).fit_data(_convs(1, 8, 0))
