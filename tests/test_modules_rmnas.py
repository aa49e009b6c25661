"""Tests of the RMNAS building blocks: LST (Algorithm 1), token mixers, MetaFormer block, BM-NAS ops.

The LST encoder is checked against a plain double loop over node pairs written here from
Algorithm 1 (with the convolution done by hand too), so the vectorised prefix-sum version has an
independent reference.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from nasmerc.errors import NasmercError
from nasmerc.modules import (
    FUSION_OPS,
    TOKEN_MIXERS,
    AttentionOp,
    ConcatFCOp,
    LinearGLUOp,
    LSTEncoder,
    MetaFormerBlock,
    RAttentionMixing,
    RIdentityMixing,
    RPoolMixing,
    RRandomMixing,
    SumOp,
    ZeroOp,
)

NEG_INF = float("-inf")


def lengths_mask(lengths: list[int], n: int) -> Tensor:
    """Right-padded ``[B, n]`` mask with the given number of real rows per sample."""
    return torch.arange(n).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def with_global(mask: Tensor) -> Tensor:
    """The mask of a sequence with the (always real) global token prepended."""
    return torch.cat([torch.ones(mask.shape[0], 1, dtype=torch.bool), mask], dim=1)


def perturb_padding(t: Tensor, mask: Tensor, seed: int = 99) -> Tensor:
    """A copy of ``t`` with large random values on the padded rows only."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(t.shape, generator=gen) * 50.0
    return torch.where(mask.unsqueeze(-1), t, noise)


def reference_lst(enc: LSTEncoder, x: Tensor, mask: Tensor) -> Tensor:
    """Algorithm 1 as written: a loop over every pair (i, j), with the STEncoder conv by hand."""
    b_size, n, _ = x.shape
    heads, k, half = enc.n_heads, enc.kernel_size, enc.kernel_size // 2
    weight, bias = enc.st_encoder.weight, enc.st_encoder.bias
    glob = enc.dis_encoder(torch.tensor([[-1.0]]))[0]
    out = torch.full((b_size, heads, n + 1, n + 1), NEG_INF)
    for b in range(b_size):
        real = [bool(mask[b, p]) for p in range(n)]
        per_node = []
        for centre in range(n):
            acc = bias.clone()
            for t in range(k):
                src = centre + t - half
                if 0 <= src < n and real[src]:
                    acc = acc + weight[:, :, t] @ x[b, src]
            per_node.append(acc)
        ast = per_node[1:]  # ast[p]: trend of the edge p -> p + 1
        for i in range(n + 1):
            for j in range(n + 1):
                query_real = i == 0 or real[i - 1]
                key_real = j == 0 or real[j - 1]
                if not key_real or (not query_real and j != 0):
                    continue  # stays -inf
                if i == 0 or j == 0:
                    out[b, :, i, j] = glob
                    continue
                lo, hi = min(i, j) - 1, max(i, j) - 1
                dis = hi - lo
                st = torch.zeros(heads)
                if dis > 0:
                    st = sum(ast[p] for p in range(lo, hi)) / dis
                if dis > enc.maxdis:
                    dm = torch.full((heads,), NEG_INF)
                else:
                    dm = enc.dis_encoder(torch.tensor([[float(dis)]]))[0]
                out[b, :, i, j] = st + dm
    return out


@pytest.mark.parametrize(
    "lengths,n,dim,heads,kernel,maxdis",
    [
        ([5, 3], 5, 4, 2, 3, 8),
        ([7, 4, 1], 7, 3, 2, 7, 2),
        ([1, 1], 1, 4, 3, 7, 8),
        ([6, 2], 6, 2, 1, 5, 0),
        ([9, 9], 9, 3, 4, 1, 3),
    ],
)
def test_lst_matches_loop_reference(lengths: list[int], n: int, dim: int, heads: int, kernel: int, maxdis: int) -> None:
    torch.manual_seed(0)
    enc = LSTEncoder(dim, heads, kernel_size=kernel, maxdis=maxdis)
    x = torch.randn(len(lengths), n, dim)
    mask = lengths_mask(lengths, n)
    with torch.no_grad():
        got = enc(x, mask)
        want = reference_lst(enc, x, mask)
    assert got.shape == (len(lengths), heads, n + 1, n + 1)
    torch.testing.assert_close(got, want)


def test_lst_inf_beyond_maxdis_and_at_padding() -> None:
    torch.manual_seed(1)
    enc = LSTEncoder(3, 2, kernel_size=3, maxdis=2)
    mask = lengths_mask([6, 4], 6)
    lst = enc(torch.randn(2, 6, 3), mask)
    pos = torch.arange(1, 7)
    far = (pos.view(-1, 1) - pos.view(1, -1)).abs() > 2
    full = lst[0, :, 1:, 1:]
    assert torch.isneginf(full[:, far]).all()
    assert torch.isfinite(full[:, ~far]).all()
    # second sample: nodes 5, 6 (tokens 5, 6) are padding -> -inf as keys for every query
    assert torch.isneginf(lst[1, :, :, 5:]).all()
    # padded query rows attend only to the global token
    assert torch.isfinite(lst[1, :, 5:, 0]).all()
    assert torch.isneginf(lst[1, :, 5:, 1:]).all()
    # every row keeps at least one finite entry, so softmax never gives NaN
    assert torch.isfinite(lst).any(dim=-1).all()
    assert not torch.isnan(torch.softmax(lst, dim=-1)).any()


def test_lst_global_token_uses_minus_one_code() -> None:
    torch.manual_seed(2)
    enc = LSTEncoder(4, 3, kernel_size=3, maxdis=1)
    mask = lengths_mask([5, 3], 5)
    lst = enc(torch.randn(2, 5, 4), mask)
    code = enc.dis_encoder(torch.tensor([[-1.0]]))[0].view(3, 1)
    torch.testing.assert_close(lst[0, :, 0, :], code.expand(3, 6))
    torch.testing.assert_close(lst[0, :, :, 0], code.expand(3, 6))
    torch.testing.assert_close(lst[1, :, 0, :4], code.expand(3, 4))
    torch.testing.assert_close(lst[1, :, :, 0], code.expand(3, 6))
    # the diagonal carries the distance-0 code and no trend
    zero = enc.dis_encoder(torch.tensor([[0.0]]))[0]
    torch.testing.assert_close(torch.diagonal(lst[0, :, 1:, 1:], dim1=-2, dim2=-1), zero.view(3, 1).expand(3, 5))


def test_lst_ignores_padding_content_and_has_gradients() -> None:
    torch.manual_seed(3)
    enc = LSTEncoder(3, 2, kernel_size=7, maxdis=8)
    mask = lengths_mask([6, 2, 4], 6)
    x = torch.randn(3, 6, 3)
    a = enc(x, mask)
    b = enc(perturb_padding(x, mask), mask)
    torch.testing.assert_close(a, b)
    a.masked_fill(torch.isinf(a), 0.0).sum().backward()
    assert enc.st_encoder.weight.grad is not None and enc.st_encoder.weight.grad.abs().sum() > 0
    assert enc.dis_encoder.weight.grad is not None and enc.dis_encoder.weight.grad.abs().sum() > 0


def test_lst_rejects_bad_arguments() -> None:
    with pytest.raises(NasmercError):
        LSTEncoder(4, 2, kernel_size=4)
    enc = LSTEncoder(4, 2)
    with pytest.raises(NasmercError):
        enc(torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(NasmercError):
        enc(torch.randn(2, 5, 4), torch.ones(2, 4, dtype=torch.bool))


def make_mixer_inputs(seed: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    """``h`` ``[2, 7, 8]`` (global token + 6 nodes), an LST bias with -inf entries, and the mask."""
    torch.manual_seed(seed)
    node_mask = lengths_mask([6, 3], 6)
    enc = LSTEncoder(5, 2, kernel_size=3, maxdis=2)
    with torch.no_grad():
        lst = enc(torch.randn(2, 6, 5), node_mask)
    return torch.randn(2, 7, 8), lst, with_global(node_mask)


@pytest.mark.parametrize("name", sorted(TOKEN_MIXERS))
@pytest.mark.parametrize("use_lst", [True, False])
def test_mixers_shape_finite_and_padding_invariant(name: str, use_lst: bool) -> None:
    h, lst, mask = make_mixer_inputs()
    mixer = TOKEN_MIXERS[name](8, 2, 10)
    bias = lst if use_lst else None
    out = mixer(h, bias, mask)
    assert out.shape == h.shape
    assert torch.isfinite(out).all()
    other = mixer(perturb_padding(h, mask), bias, mask)
    torch.testing.assert_close(out[mask], other[mask])


def test_attention_mixer_follows_lst_blocking() -> None:
    h, _, mask = make_mixer_inputs()
    mixer = RAttentionMixing(8, 2)
    lst = torch.zeros(2, 2, 7, 7)
    lst[:, :, 1, 4] = NEG_INF  # token 1 may not see token 4
    h2 = h.clone()
    h2[:, 4] += 10.0
    a, b = mixer(h, lst, mask), mixer(h2, lst, mask)
    torch.testing.assert_close(a[:, 1], b[:, 1])
    assert not torch.allclose(a[0, 2], b[0, 2])


def test_attention_mixer_gradients_reach_parameters_and_lst() -> None:
    torch.manual_seed(5)
    node_mask = lengths_mask([4, 2], 4)
    enc = LSTEncoder(3, 2, kernel_size=3, maxdis=2)
    mixer = RAttentionMixing(6, 2)
    lst = enc(torch.randn(2, 4, 3), node_mask)
    out = mixer(torch.randn(2, 5, 6), lst, with_global(node_mask))
    out.sum().backward()
    for p in list(mixer.parameters()) + list(enc.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert mixer.qkv.weight.grad.abs().sum() > 0
    assert enc.st_encoder.weight.grad.abs().sum() > 0


def test_random_mixer_matrix_is_a_frozen_buffer() -> None:
    h, lst, mask = make_mixer_inputs()
    mixer = RRandomMixing(8, 2, max_len=10)
    assert list(mixer.parameters()) == []
    assert "random_matrix" in dict(mixer.named_buffers())
    assert "random_matrix" in mixer.state_dict()
    assert mixer.random_matrix.shape == (10, 10)
    assert not mixer.random_matrix.requires_grad
    before = mixer.random_matrix.clone()
    h = h.requires_grad_(True)
    mixer(h, lst, mask).sum().backward()
    assert mixer.random_matrix.grad is None
    assert h.grad is not None and h.grad[mask].abs().sum() > 0
    torch.testing.assert_close(mixer.random_matrix, before)
    with pytest.raises(NasmercError):
        mixer(torch.randn(1, 11, 8), None, torch.ones(1, 11, dtype=torch.bool))


def test_random_mixer_without_lst_is_softmax_of_rm() -> None:
    mixer = RRandomMixing(4, 1, max_len=5)
    h = torch.randn(1, 3, 4)
    out = mixer(h, None, torch.ones(1, 3, dtype=torch.bool))
    want = torch.softmax(mixer.random_matrix[:3, :3], dim=-1) @ h[0]
    torch.testing.assert_close(out[0], want)


def test_pool_mixer_averages_real_neighbours_only() -> None:
    h = torch.tensor([[[1.0], [2.0], [4.0], [8.0], [100.0]]])
    mask = torch.tensor([[True, True, True, True, False]])
    out = RPoolMixing(1)(h, None, mask)
    want = torch.tensor([[[1.5 - 1.0], [7.0 / 3 - 2.0], [14.0 / 3 - 4.0], [6.0 - 8.0], [0.0]]])
    torch.testing.assert_close(out, want)


def test_identity_mixer_returns_input() -> None:
    h, lst, mask = make_mixer_inputs()
    assert torch.equal(RIdentityMixing()(h, lst, mask), h)


def test_mixer_table_names() -> None:
    assert set(TOKEN_MIXERS) == {"attention", "random", "pool", "identity"}
    assert isinstance(TOKEN_MIXERS["attention"](8, 2, 4), RAttentionMixing)
    assert isinstance(TOKEN_MIXERS["random"](8, 2, 4), RRandomMixing)
    assert isinstance(TOKEN_MIXERS["pool"](8, 2, 4), RPoolMixing)
    assert isinstance(TOKEN_MIXERS["identity"](8, 2, 4), RIdentityMixing)
    with pytest.raises(NasmercError):
        RAttentionMixing(7, 2)


@pytest.mark.parametrize("name", sorted(TOKEN_MIXERS))
def test_metaformer_block_forward_backward(name: str) -> None:
    h, lst, mask = make_mixer_inputs(seed=6)
    block = MetaFormerBlock(8, TOKEN_MIXERS[name](8, 2, 10), ffn_ratio=2.0, dropout=0.1)
    block.eval()
    x = h.requires_grad_(True)
    out = block(x, lst, mask)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    other = block(perturb_padding(h.detach(), mask), lst, mask)
    torch.testing.assert_close(out[mask], other[mask])
    block.train()
    block(x, lst, mask).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for param_name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), param_name
    assert block.ffn.net[0].weight.grad.abs().sum() > 0


def test_metaformer_block_is_eqs_4_to_6_with_identity_mixer() -> None:
    torch.manual_seed(7)
    block = MetaFormerBlock(4, RIdentityMixing(), ffn_ratio=1.0)
    x = torch.randn(1, 3, 4)
    mask = torch.ones(1, 3, dtype=torch.bool)
    h = block.norm_mix(x) + x
    want = block.ffn(block.norm_ffn(h)) + h
    torch.testing.assert_close(block(x, None, mask), want)


def make_pair(seed: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    torch.manual_seed(seed)
    return torch.randn(3, 5, 6), torch.randn(3, 5, 6), lengths_mask([5, 3, 1], 5)


@pytest.mark.parametrize("name", sorted(FUSION_OPS))
def test_fusion_ops_shape_finite_padding(name: str) -> None:
    x, y, mask = make_pair()
    op = FUSION_OPS[name](6)
    out = op(x, y, mask)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    other = op(perturb_padding(x, mask, seed=1), perturb_padding(y, mask, seed=2), mask)
    torch.testing.assert_close(out[mask], other[mask])


@pytest.mark.parametrize("name", ["attention", "linear_glu", "concat_fc"])
def test_trainable_fusion_ops_get_gradients(name: str) -> None:
    x, y, mask = make_pair()
    x.requires_grad_(True)
    y.requires_grad_(True)
    op = FUSION_OPS[name](6)
    op(x, y, mask).pow(2).sum().backward()
    params = list(op.parameters())
    assert params
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert x.grad is not None and y.grad is not None
    assert x.grad[mask].abs().sum() > 0 and y.grad[mask].abs().sum() > 0


def test_fusion_op_definitions() -> None:
    x, y, mask = make_pair()
    assert set(FUSION_OPS) == {"zero", "sum", "attention", "linear_glu", "concat_fc"}
    assert torch.equal(ZeroOp(6)(x, y, mask), torch.zeros_like(x))
    torch.testing.assert_close(SumOp(6)(x, y, mask)[mask], (x + y)[mask])
    glu = LinearGLUOp(6)
    a, g = glu.proj(torch.cat([x, y], -1)).chunk(2, -1)
    torch.testing.assert_close(glu(x, y, mask)[mask], (a * torch.sigmoid(g))[mask])
    fc = ConcatFCOp(6)
    torch.testing.assert_close(fc(x, y, mask)[mask], torch.relu(fc.proj(torch.cat([x, y], -1)))[mask])
    att = AttentionOp(6, n_heads=2)
    assert att(x, y, mask).shape == x.shape
    with pytest.raises(NasmercError):
        SumOp(6)(x, y[:, :4], mask)


def test_attention_op_queries_x_and_reads_y() -> None:
    x, y, mask = make_pair()
    att = AttentionOp(6)
    base = att(x, y, mask)
    # a real key of y (sample 0, token 2) matters; changing query x at token 0 changes only row 0
    y2 = y.clone()
    y2[0, 2] += 5.0
    assert not torch.allclose(att(x, y2, mask)[0], base[0])
    x2 = x.clone()
    x2[0, 0] += 5.0
    moved = att(x2, y, mask)
    torch.testing.assert_close(moved[0, 1:], base[0, 1:])
    assert isinstance(FUSION_OPS["attention"](6), nn.Module)
