"""Building blocks shared by the search spaces.

RMNAS blocks (RMNAS paper, eqs. 3-12 and Algorithm 1):

- :class:`LSTEncoder`: local sentiment variation trends, the bias added to the mix maps;
- token mixers :class:`RAttentionMixing`, :class:`RRandomMixing`, :class:`RPoolMixing`,
  :class:`RIdentityMixing`, with the name -> constructor table :data:`TOKEN_MIXERS`;
- :class:`MetaFormerBlock`: LayerNorm, mixer, residual, FFN, residual;
- BM-NAS cell-step operations :class:`ZeroOp`, :class:`SumOp`, :class:`AttentionOp`,
  :class:`LinearGLUOp`, :class:`ConcatFCOp`, with the table :data:`FUSION_OPS`.

Blocks of the other spaces live in their own modules, imported from there (not re-exported here, so
that importing this package does not load PyTorch Geometric): ``bmnas`` (BM-NAS cells), ``iteach``,
``experts``, ``graph`` (conversation graphs), ``dag`` (DAG-ERC / MultiDAG's DAG and layer), and the
``merc`` space's ``merc`` (missing-row treatments, encoders, missing-modality losses),
``merc_context`` (context models) and ``merc_fusion`` (fusion operators and positions).

Importing this package defines classes only; nothing is built or allocated.
"""

from __future__ import annotations

from nasmerc.modules.fusion_ops import (
    FUSION_OPS,
    AttentionOp,
    ConcatFCOp,
    LinearGLUOp,
    SumOp,
    ZeroOp,
)
from nasmerc.modules.lst import LSTEncoder
from nasmerc.modules.metaformer import FeedForward, MetaFormerBlock
from nasmerc.modules.mixers import (
    TOKEN_MIXERS,
    RAttentionMixing,
    RIdentityMixing,
    RPoolMixing,
    RRandomMixing,
    check_sequence,
    masked_softmax,
)

__all__ = [
    "LSTEncoder",
    "RAttentionMixing",
    "RRandomMixing",
    "RPoolMixing",
    "RIdentityMixing",
    "TOKEN_MIXERS",
    "masked_softmax",
    "check_sequence",
    "MetaFormerBlock",
    "FeedForward",
    "ZeroOp",
    "SumOp",
    "AttentionOp",
    "LinearGLUOp",
    "ConcatFCOp",
    "FUSION_OPS",
]
