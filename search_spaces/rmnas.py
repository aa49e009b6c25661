"""RMNAS: robust-sentiment multimodal neural architecture search (Sun et al.), as a nasmerc space.

The network follows the paper's method section (Figure 1):

1. **Input format** (eqs. 1-2). Per modality ``m`` the features ``X_m`` ``[B, N, D_m]`` get a
   positional encoding and a trainable global token at position 0: ``F_m^0 = [gt; X_m + PE_m]``.
2. **LST** (Algorithm 1, eq. 3). An :class:`~nasmerc.modules.LSTEncoder` per modality turns the raw
   ``X_m`` into the local sentiment variation trends, one bias channel per head, shared by every
   block of that modality.
3. **RMNAS blocks** (eqs. 4-12). ``n_blocks`` MetaFormer blocks per modality; the token mixer of
   each is a choice among RAttentionMixing / RRandomMixing / RPoolMixing / RIdentityMixing, guided by
   the LST. Label ``{m}.block{i}.mixer``.
4. **BM-NAS fusion** (eq. 13 and BM-NAS, Yin et al. 2022). Every block output of every modality,
   projected to ``fusion_dim``, is a candidate feature. ``n_cells`` cells, each with two inputs
   chosen among the candidates and earlier cells' outputs (``cell{c}.input0``, ``cell{c}.input1``),
   and ``n_steps`` cell-steps, each with two inputs chosen among the cell's inputs and earlier steps'
   outputs (``cell{c}.step{s}.x``, ``cell{c}.step{s}.y``) and one operation of ``O_s`` (Zero, Sum,
   Attention, LinearGLU, ConcatFC; ``cell{c}.step{s}.op``). Every fusion input reduces by ``sum``:
   eq. 13 writes an input as the sum of the candidates, each through Identity (selected) or Zero,
   so an architecture may select several candidates for one input (their sum).
5. **Losses.** The fused branch and every unimodal branch predict; the fused logits are the model's
   output and each unimodal task loss is an auxiliary loss ``unimodal_{m}`` ("each single-modal
   branch and the BM-NAS branch calculate the loss simultaneously").

Input indices of the fusion choices. For a cell, candidate ``k`` is, in order: the block outputs
modality-major in signature order (``k = modality_index * n_blocks + block``), then the outputs of
cells ``0 .. c-1``. ``RMNASNetwork.candidate_names`` spells them out (``text.block0``, ...,
``cell0``). For a step, candidates ``0`` and ``1`` are the cell's two inputs and ``2 + s'`` the
output of step ``s'``.

Searched as the paper does by ``--strategy darts`` at its defaults (``strategies/darts.py``): the
mixers and step ops softmax-mixed (eq. 5), the fusion inputs gated one by one (eq. 13), weights on
the whole training split and the architecture weights on the validation split (bilevel, as BM-NAS),
and every candidate whose softmax weight or gate is at least 0.2 kept (fig. 4), so a derived block
may mix several token mixers (``{mixed: {name: weight}}``) and a cell input sum several features.

Dialogue-level tasks predict every utterance (the global token is dropped); utterance-level tasks,
whose rows are frames, predict from the global token. Regression gives one score per row.

Where the paper is silent or differs from what we can run, our choices (each documented where it
is made): the projection to ``hidden_dim`` happens before the positional encoding, which is
sinusoidal; BM-NAS's cell output (concat of steps, 1x1 conv, BatchNorm, ReLU, skip from the first
input, LayerNorm) uses a Linear and no BatchNorm so that a token never depends on other tokens or
padding; the fused head reads the concatenation of all cells' outputs. Additions the paper does
not have are config options, off by default: ``speaker_embedding`` and ``mask_missing``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.conversation import DataSignature
from nasmerc.modules import TOKEN_MIXERS, LSTEncoder, MetaFormerBlock
from nasmerc.modules.mixers import EXTRA_MIXERS
from nasmerc.modules.bmnas import MultiLevelFusionNetwork, check_fusion_config
from nasmerc.modules.heads import TaskHead
from nasmerc.modules.positional import sinusoidal_positions
from nasmerc.nas.choices import ChoiceContext
from nasmerc.nas.space import SearchSpace

__all__ = ["RMNASConfig", "RMNASSpace", "RMNASNetwork", "rmnas_context", "rmnas_default", "rmnas_paper",
           "rmnas_recurrent"]


@dataclass
class RMNASConfig:
    """Sizes and switches of the RMNAS space (paper values in :func:`rmnas_paper`).

    - ``hidden_dim``, ``n_blocks``, ``n_heads``, ``ffn_ratio``: the unimodal MetaFormer stacks;
      ``n_heads`` is also ``D_lst``, the number of LST channels.
    - ``st_kernel``, ``maxdis``: the STEncoder kernel and the largest distance of direct interaction
      (Algorithm 1); ``use_lst=False`` mixes without the LST bias (the paper's "no LST" ablation).
    - ``mixers``: the token-mixer pool ``O_t``; ``max_len`` bounds the tokens (global token included)
      of the frozen random matrix of RRandomMixing.
    - ``n_cells``, ``n_steps``, ``fusion_dim``, ``fusion_ops``: the BM-NAS fusion and its pool ``O_s``.
    - ``dropout``: after the input embedding, inside blocks, cells and heads (the paper gives none).
    - ``unimodal_weight``: weight of each unimodal branch's task loss (the paper adds them, 1.0).
    - ``speaker_embedding`` (not in the paper): add a learned speaker embedding to every utterance.
    - ``mask_missing`` (not in the paper, which feeds the zero-filled features as they are): a missing
      utterance of modality ``m`` is neither a key of ``m``'s mixers nor a node of its LST, carries
      zeros into the fusion, and the unimodal loss of ``m`` counts only rows where ``m`` is present.
    - ``fused_blocks`` (not in the paper): MetaFormer blocks (eqs. 4-6, no LST bias) over the fused
      sequence, the concatenated cells' outputs of width ``n_cells * fusion_dim``, before the fused
      head, each token mixer a choice of ``mixers`` (label ``fused.block{i}.mixer``). The paper's
      design models context only inside each modality and fuses after; these blocks give the space
      a context model over the fused evidence, as the early-fusion MERC baselines have.
    """

    hidden_dim: int = 64
    n_blocks: int = 2
    n_heads: int = 4
    ffn_ratio: float = 4.0
    st_kernel: int = 7
    maxdis: int = 8
    use_lst: bool = True
    mixers: tuple[str, ...] = ("attention", "random", "pool", "identity")
    max_len: int = 512
    n_cells: int = 2
    n_steps: int = 2
    fusion_dim: int = 64
    fusion_ops: tuple[str, ...] = ("zero", "sum", "attention", "linear_glu", "concat_fc")
    dropout: float = 0.1
    unimodal_weight: float = 1.0
    speaker_embedding: bool = False
    mask_missing: bool = False
    fused_blocks: int = 0


def rmnas_default() -> RMNASConfig:
    """Small: 2 blocks x 64, 4 heads, 2 cells x 2 steps of width 64 (two cells, as in the paper, so that
    all three modalities can reach the fusion); a search epoch on IEMOCAP-sized data takes seconds."""
    return RMNASConfig()


def rmnas_recurrent() -> RMNASConfig:
    """The default sizes with a recurrent (BiGRU) token mixer beside the paper's four, so that the space
    can express the recurrent context models of the MERC baselines (not in the paper)."""
    return RMNASConfig(mixers=(*RMNASConfig.mixers, "recurrent"))


def rmnas_context() -> RMNASConfig:
    """The ``recurrent`` preset with one searched block over the fused sequence (``fused_blocks=1``), so
    that the space can model context after the fusion as well as inside each modality (not in the paper)."""
    return RMNASConfig(mixers=(*RMNASConfig.mixers, "recurrent"), fused_blocks=1)


def rmnas_paper() -> RMNASConfig:
    """The paper's setup: 6 blocks x 448, 8 heads, FFN 4.0, kernel 7, maxdis 8, 2 cells x 2 steps, 240."""
    return RMNASConfig(hidden_dim=448, n_blocks=6, n_heads=8, ffn_ratio=4.0, st_kernel=7, maxdis=8,
                       n_cells=2, n_steps=2, fusion_dim=240)


def mixer_choices(width: int, cfg: RMNASConfig) -> dict[str, partial]:
    """The token-mixer pool ``O_t`` (``cfg.mixers``) as candidate constructors for blocks of ``width``."""
    pool = {**TOKEN_MIXERS, **EXTRA_MIXERS}
    return {name: partial(pool[name], width, cfg.n_heads, cfg.max_len) for name in cfg.mixers}


class ModalityBranch(nn.Module):
    """One unimodal branch: eqs. 1-2, the LST of Algorithm 1 and a stack of RMNAS blocks (eqs. 4-6).

    ``forward`` returns the output of every block, ``[B, N+1, hidden_dim]`` each (global token at 0),
    the multi-level features of the fusion; ``head`` is the unimodal head on the last one.
    The input projection ``D_m -> hidden_dim`` comes first and the positional encoding is added in
    the hidden space (the paper adds ``PE_m`` in ``D_m`` and does not say where the width changes).
    The head is a :class:`~nasmerc.modules.heads.TaskHead` ``LN -> Dropout -> Linear``, the usual
    final norm of a pre-norm Transformer (the paper does not describe its heads).
    """

    def __init__(self, modality: str, signature: DataSignature, cfg: RMNASConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        in_dim, n_speakers = int(signature.dims[modality]), signature.n_speakers
        hidden = cfg.hidden_dim
        self.embed = nn.Linear(in_dim, hidden)
        self.global_token = nn.Parameter(torch.zeros(1, 1, hidden))  # gt of eq. 2
        nn.init.trunc_normal_(self.global_token, std=0.02)
        self.speaker = nn.Embedding(max(1, n_speakers), hidden) if cfg.speaker_embedding else None
        self.drop = nn.Dropout(cfg.dropout)
        self.lst = LSTEncoder(in_dim, cfg.n_heads, cfg.st_kernel, cfg.maxdis) if cfg.use_lst else None
        self.blocks = nn.ModuleList(
            MetaFormerBlock(hidden, ctx.op(f"{modality}.block{i}.mixer", mixer_choices(hidden, cfg)), cfg.ffn_ratio,
                            cfg.dropout)
            for i in range(cfg.n_blocks)
        )
        self.head = TaskHead(hidden, signature, cfg.dropout, norm=True)

    def forward(self, x: Tensor, speakers: Tensor, nodes: Tensor) -> list[Tensor]:
        """``x`` ``[B, N, D_m]``, ``speakers`` ``[B, N]``, ``nodes`` ``[B, N]`` bool (the rows to mix)."""
        b, n, _ = x.shape
        h = self.embed(x)
        if self.speaker is not None:
            h = h + self.speaker(speakers)
        h = h + sinusoidal_positions(n, h.shape[-1], h)  # eq. 1
        h = self.drop(torch.cat([self.global_token.expand(b, -1, -1), h], dim=1))  # eq. 2
        tokens = torch.cat([nodes.new_ones(b, 1), nodes], dim=1)
        lst = self.lst(x, nodes) if self.lst is not None else None  # Algorithm 1 on the raw X_m
        outs = []
        for block in self.blocks:
            h = block(h, lst, tokens)
            outs.append(h)
        return outs


class RMNASNetwork(MultiLevelFusionNetwork):
    """The RMNAS model for one data signature: unimodal branches plus BM-NAS fusion (Figure 1).

    ``forward(batch)`` (from :class:`~nasmerc.modules.bmnas.MultiLevelFusionNetwork`) returns the
    fused logits, each unimodal branch's logits in ``per_modality_logits`` and its task loss in
    ``aux_losses["unimodal_{m}"]``.
    """

    def __init__(self, signature: DataSignature, cfg: RMNASConfig, ctx: ChoiceContext) -> None:
        branches = {m: ModalityBranch(m, signature, cfg, ctx) for m in signature.modalities}
        names = [f"{m}.block{i}" for m in signature.modalities for i in range(cfg.n_blocks)]
        width = cfg.n_cells * cfg.fusion_dim
        context = [MetaFormerBlock(width, ctx.op(f"fused.block{i}.mixer", mixer_choices(width, cfg)), cfg.ffn_ratio,
                                   cfg.dropout) for i in range(cfg.fused_blocks)]
        super().__init__("rmnas", signature, cfg, branches, names, ctx, context)


class RMNASSpace(SearchSpace):
    """The RMNAS search space: token mixers per block and modality, BM-NAS inputs and step ops."""

    name = "rmnas"
    Config = RMNASConfig
    presets = {"default": rmnas_default, "paper": rmnas_paper, "recurrent": rmnas_recurrent, "context": rmnas_context}
    Network = RMNASNetwork

    def check_config(self) -> None:
        cfg, where = self.config, self.where
        check_fusion_config(where, cfg)
        checks.positive(where, n_blocks=cfg.n_blocks)
        checks.odd_positive(where, st_kernel=cfg.st_kernel)
        checks.at_least(where, 0, maxdis=cfg.maxdis)
        checks.at_least(where, 2, max_len=cfg.max_len)
        checks.distinct_names(where, "mixers", cfg.mixers, [*TOKEN_MIXERS, *EXTRA_MIXERS])
        checks.at_least(where, 0, fused_blocks=cfg.fused_blocks)
        if cfg.fused_blocks:
            checks.divisible(where, "n_cells * fusion_dim", cfg.n_cells * cfg.fusion_dim, "n_heads", cfg.n_heads)
