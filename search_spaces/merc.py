"""``merc``: nasmerc's own MERC design space, the decisions the hand-designed models make.

A point of the space is a whole MERC model: per-modality missing-row treatment and encoder, an
optional speaker embedding, a fusion operator placed before and / or after a conversational context
model, a task head, and the auxiliary losses for missing and imbalanced modalities. Choice labels
(``{m}`` is each modality of the signature, in its order), with the paper component each candidate
stands for:

- ``{m}.missing`` (op): ``zeros`` (the batch's zeros: CORECT, MultiDAG) or ``mask_token`` (a learned
  embedding replaces the dropped rows, from ``batch.present``: the masked input of ITEACH-Net's
  student and MFMB-Net's masking). Called with the dropped rows as its mask, so the router counts
  its shares where the choice acts.
- ``{m}.encoder`` (op): ``projection`` (a Linear without bias: the modality's share of the early-fusion
  baseline's Linear), ``linear`` (Linear + ReLU: MultiDAG's ``Enc_m``, CORECT's FC audio / visual
  encoder in one layer), ``bigru`` (``BiRNN``: the late-fusion baseline's recurrent encoder) or
  ``transformer`` (pre-norm Transformer over the conversation, key padding mask: CORECT's text
  encoder, ITEACH-Net's and RMNAS's Transformer layers) or ``pca`` (the modality's whitened leading
  ``pca_dim`` principal components, fitted on the training split before the first step, then a Linear
  without bias: :class:`~nasmerc.modules.pca.PCAEncoder`, the PCA step of feature pipelines). On
  request (``encoders`` listing it, not offered by default) ``off``: the modality is not read, its
  slot carries zeros (:class:`~nasmerc.modules.merc.NoPath`), so a search can give a modality that
  carries nothing no path at all.
- ``speaker`` (value): ``none``, ``embedding`` (a learned speaker embedding added to every modality's
  encoded rows: CORECT's ``X = x + s``) or ``relations`` (same / other speaker relation types in the
  ``graph`` and ``dag`` context models: MultiDAG / DAG-ERC; every other context model then reads a
  speaker embedding added to its input, so ``relations`` equals ``embedding`` but for where the
  embedding is added). A value choice: the relation set is part of the graph and DAG layers' shape.
- ``position`` (op): ``early`` (fuse, then one context model over the fused stream: the early-fusion
  baseline, MultiDAG), ``late`` (a context model per modality, then fuse: the late-fusion baseline)
  or ``both`` (the sum of the two paths: MFMB-Net's macro + micro streams, CORECT's graph + P-CM).
  Represented as an op choice over three small modules ``position(early, late)``: a supernet computes
  both paths and mixes the three readings, so DARTS and the router search it; a fixed model builds
  only the paths its position reads.
- ``fusion`` (op): ``concat``, ``sum``, ``attention`` (attention pooling over the modalities of a row:
  CORECT's cross-modal attention, BM-NAS / RMNAS's attention step), ``glu`` (BM-NAS's LinearGLU) or
  ``hub`` (MFMB-Net's coarse hub tokens attended by every modality). With ``both``, the early and the
  late fusion are two instances of the chosen operator.
- ``context`` (op): ``none``, ``lstm`` / ``bigru`` (bidirectional, ``hidden_dim / 2`` per direction),
  ``transformer``, ``graph`` (CORECT's RT-GCN: RGCN + graph transformer over the utterance graph with
  past / future / self, and with ``relations`` speaker, edges) or ``dag`` (MultiDAG's DAG-GNN). Every
  stream (the fused one, each modality's) has its own instance.
- ``structure`` (op): how the head's per-utterance scores become decisions: ``none`` (each utterance
  on its own, as every hand-designed model here), ``crf`` (a linear-chain CRF over the conversation's
  labels with speaker-kept / speaker-changed transitions, CESTa's emotion-sequence tagging) or
  ``party_crf`` (a CRF over both parties' emotions of a dyad, DialogueRNN's party states made exact);
  the output is the CRF's exact posterior marginals (:mod:`nasmerc.modules.crf`). Offered for
  dialogue-level classification, ``party_crf`` only for two-speaker data.
- ``missing_loss`` (value): ``none``, ``reconstruction`` (MFMB-Net eqs. 14-18: a decoder per modality
  from the fused state, SmoothL1 against ``batch.complete`` on the dropped rows; losses
  ``reconstruction_{m}``) or ``distill`` (ITEACH-Net's inverted teacher-student with the network
  itself as the teacher: the fused state on the masked features is pulled toward the same network's
  state on the complete features, no gradient to the target, on rows with a dropped modality; loss
  ``distill``). Both weigh ``missing_weight`` and run in training only. A value choice: a supernet
  could hold the losses, but DARTS' architecture step minimises a loss that contains them and would
  always choose ``none``.
- ``unimodal_weight`` (value, ``unimodal_weights``): the weight of each modality head's task loss
  ``unimodal_{m}`` (RMNAS's unimodal branches, HAEMSA's multi-task weights); the heads read the
  encoders' outputs and give ``per_modality_logits`` (SPCL's input) whatever the weight.
- ``lr_scale`` (value, ``lr_scales``): the point trains at ``train.lr * lr_scale``
  (:func:`nasmerc.outputs.lr_scale`), a training choice searched with the architecture, as joint
  architecture and hyperparameter searches do. The rate a model needs depends on it: on ``iemocap6``
  a linear model with a party CRF and no context model learns at a third of the speed of the
  early-fusion LSTM at ``train.lr = 1e-3`` (valid WAF 0.58 against 0.63 after 5 epochs, 0.69 against
  0.65 at its best), and at 3e-3 it is at 0.67 after 4 epochs while the LSTM overfits from its third;
  a candidate trained a few epochs is only ranked right at its own rate. A value choice: the
  optimiser's rate is not a module a supernet can mix.

The four missing-modality treatments of the design brief are the points ``zeros`` / ``mask_token``
with ``missing_loss = none``, and ``zeros`` with ``reconstruction`` / ``distill``; the other
combinations (a mask token and a distillation loss, say) are in the space too.

``nasmerc search --space merc`` takes TPE with Hyperband (:attr:`MercSpace.default_strategy_config`),
which searches every choice. Searching with DARTS or the router needs the value choices fixed, for
instance ``nasmerc search --space merc --strategy darts --fix speaker=embedding --fix missing_loss=none --fix unimodal_weight=0.0 --fix lr_scale=1.0``.

Named architectures (:data:`NAMED`, :func:`named_arch` for other modalities), and how each differs
from the model it stands for:

- ``early_fusion``: ``projection`` encoders, ``sum`` fusion, ``early``, ``lstm``. The same computation
  as ``search_spaces/fixed/baselines.py``'s EarlyFusionModel with ``rnn_dim = hidden_dim / 2`` (the
  same parameters, the same outputs for the same weights): the baseline's default has ``rnn_dim =
  hidden_dim = 64``, here the context keeps the width, 32 units per direction.
- ``late_fusion``: ``projection`` encoders, ``late``, ``bigru``, ``concat``. The baseline averages
  per-modality classifiers' logits; here a ``concat`` Linear and one head (the same family of linear
  maps of the concatenated states, one more Linear), its recurrent layers are ``hidden_dim / 2`` per
  direction and its modality heads (``unimodal_{m}``) read the encoders, not the BiGRUs.
- ``corect_like``: ``transformer`` text encoder, ``linear`` audio / visual, ``embedding``, ``graph``,
  ``both``, ``attention``. CORECT has one multimodal graph with cross-modal edges and a pairwise
  cross-modal transformer; here a graph per stream, attention pooling as the cross-modal part, and a
  sum and one head instead of a concatenation and a two-layer classifier.
- ``multidag_like``: ``linear`` encoders, ``concat``, ``early``, ``dag``, ``relations``. MultiDAG keeps
  the concatenation's width (``M * encoder_dim``) and reads every layer with a two-layer classifier;
  here a Linear to ``hidden_dim`` and a Linear readout of every layer into one head.
- ``mfmb_like``: ``transformer`` encoders, ``both``, ``hub``, ``lstm``, ``reconstruction``. MFMB-Net's
  micro stream fuses through memory gates and a coarse-to-fine MLP, its macro stream runs no
  recurrent layer; here both paths use the hub operator and the BiLSTM.

Rows are a conversation's utterances (dialogue-level tasks: one output per row) or one sample's
frames (utterance-level: :class:`~nasmerc.modules.heads.TaskHead` averages the real rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from nasmerc import checks
from nasmerc.data.batch import Batch
from nasmerc.data.conversation import DataSignature
from nasmerc.errors import NasmercError
from nasmerc.modules.heads import TaskHead, check_batch, present_mask, speaker_ids, unimodal_outputs
from nasmerc.modules.merc import (ENCODERS, MISSING, NoPath, SpeakerInput, distill_loss, encoder_candidates,
                                  reconstruction_loss)
from nasmerc.modules.merc_context import CONTEXTS, PerKey, context_candidates
from nasmerc.modules.merc_fusion import FUSIONS, POSITIONS, fusion_candidates, paths_of
from nasmerc.modules.crf import STRUCTURES, structure_names
from nasmerc.modules.pca import PCAEncoder
from nasmerc.nas.choices import ChoiceContext
from nasmerc.nas.space import SearchSpace
from nasmerc.outputs import ModelOutput

__all__ = ["MercConfig", "MercSpace", "MercNetwork", "merc_default", "merc_paper", "NAMED", "named_arch",
           "SPEAKER", "MISSING_LOSSES"]

SPEAKER = ("none", "embedding", "relations")
MERC_ENCODERS = ENCODERS + ("pca",)  # offered by default
KNOWN_ENCODERS = MERC_ENCODERS + ("off",)  # and on request
MISSING_LOSSES = ("none", "reconstruction", "distill")
FUSED = "fused"  # the key of the early path's stream


@dataclass
class MercConfig:
    """Sizes and candidate pools of the ``merc`` space.

    - ``hidden_dim``: width of every encoder output, fusion and context stream (even: the recurrent
      models have ``hidden_dim / 2`` units per direction).
    - ``n_heads``, ``ffn_ratio``: the Transformers (encoders, context), the attention fusion and the hub;
      ``encoder_layers`` / ``context_layers``: the Transformer encoder's / context model's layers.
    - ``graph_past``, ``graph_future``: CORECT's windows ``w_p``, ``w_f`` (-1: the whole conversation);
      ``graph_heads``: heads of the graph transformer (dividing ``hidden_dim``).
    - ``dag_layers``, ``dag_window``: MultiDAG's ``L`` and ``omega``.
    - ``hub_tokens``: ``k``, MFMB-Net's hub length.
    - ``dropout``: before every context model, inside Transformers and attentions, before the heads.
    - ``missing_weight``: weight of the ``reconstruction_{m}`` / ``distill`` losses.
    - ``encoders``, ``contexts``, ``fusions``: the candidates offered (a smaller space with fewer;
      ``encoders`` may add ``off``);
      ``unimodal_weights`` / ``lr_scales``: the values of the ``unimodal_weight`` / ``lr_scale`` choices.
    """

    hidden_dim: int = 128
    n_heads: int = 4
    ffn_ratio: float = 2.0
    encoder_layers: int = 1
    context_layers: int = 1
    graph_past: int = 11
    graph_future: int = 5
    graph_heads: int = 2
    dag_layers: int = 1
    dag_window: int = 1
    hub_tokens: int = 4
    dropout: float = 0.1
    missing_weight: float = 1.0
    pca_dim: int = 16
    encoders: tuple[str, ...] = MERC_ENCODERS
    contexts: tuple[str, ...] = CONTEXTS
    fusions: tuple[str, ...] = FUSIONS
    structures: tuple[str, ...] = tuple(STRUCTURES)
    unimodal_weights: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0)
    lr_scales: tuple[float, ...] = (1.0, 3.0)


def merc_default() -> MercConfig:
    """CPU-fast: width 128 (so the recurrent context models have the early-fusion baseline's 64 units per
    direction), 4 heads, one Transformer layer, one DAG layer, 4 hub tokens."""
    return MercConfig()


def merc_paper() -> MercConfig:
    """Widths for real features (no paper defines this space): width 256, between CORECT's 100,
    MultiDAG's 300 and RMNAS's 448; 8 heads and feed-forward 4x (ITEACH-Net Section 4.4); 2
    Transformer layers (CORECT's text encoder); CORECT's windows 11 / 5 with 8 graph heads (its 7 do
    not divide 256); MultiDAG's 4 DAG layers with ``omega = 1``; MFMB-Net's hub of 4 tokens; dropout 0.3."""
    return MercConfig(hidden_dim=256, n_heads=8, ffn_ratio=4.0, encoder_layers=2, context_layers=2,
                      graph_heads=8, dag_layers=4, hub_tokens=4, dropout=0.3)


class MercNetwork(nn.Module):
    """A model of the ``merc`` space for one data signature (module docstring for the choices).

    ``forward``: per modality ``missing -> encoder`` (then ``+ speaker embedding``); the early path
    ``context(dropout(fusion([h_m])))``, the late path ``fusion([context_m(dropout(h_m))])``; the
    position reads them; a :class:`~nasmerc.modules.heads.TaskHead` reads the result.
    """

    def __init__(self, signature: DataSignature, cfg: MercConfig, ctx: ChoiceContext) -> None:
        super().__init__()
        self.signature = signature
        self.modalities = mods = tuple(signature.modalities)
        self.n_speakers = max(1, int(signature.n_speakers))
        d = cfg.hidden_dim
        self.missing = nn.ModuleDict()
        self.encoders = nn.ModuleDict()
        total = sum(int(signature.dims[m]) for m in mods)
        for m in mods:
            width = int(signature.dims[m])
            self.missing[m] = ctx.op(f"{m}.missing", {name: (lambda make=make: make(width))
                                                       for name, make in MISSING.items()})
            self.encoders[m] = ctx.op(f"{m}.encoder", self.encoder_candidates(m, width, cfg, total))
        self.speaker = ctx.value("speaker", SPEAKER)
        self.speaker_embedding = SpeakerInput(self.n_speakers, d) if self.speaker == "embedding" else None
        self.position = ctx.op("position", POSITIONS)
        self.paths = paths_of(self.position)
        self.fusion = ctx.op("fusion", {name: (lambda make=make: PerKey(make, self.paths)) for name, make in
                                        fusion_candidates(d, len(mods), cfg.fusions, heads=cfg.n_heads,
                                                          ffn_ratio=cfg.ffn_ratio, dropout=cfg.dropout,
                                                          hub_tokens=cfg.hub_tokens).items()})
        streams = ((FUSED,) if "early" in self.paths else ()) + (mods if "late" in self.paths else ())
        self.context = ctx.op("context", context_candidates(
            d, cfg.contexts, streams, relations=self.speaker == "relations", n_speakers=self.n_speakers,
            layers=cfg.context_layers, heads=cfg.n_heads, ffn_ratio=cfg.ffn_ratio, dropout=cfg.dropout,
            graph_window=(cfg.graph_past, cfg.graph_future), graph_heads=cfg.graph_heads,
            dag_layers=cfg.dag_layers, dag_window=cfg.dag_window))
        self.missing_loss = ctx.value("missing_loss", MISSING_LOSSES)
        self.unimodal_weight = float(ctx.value("unimodal_weight", cfg.unimodal_weights))
        self.missing_weight = float(cfg.missing_weight)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = TaskHead(d, signature, cfg.dropout)
        k = max(1, int(signature.n_classes))
        self.structure = ctx.op("structure", {name: (lambda name=name: STRUCTURES[name](k)) for name in structure_names(
            cfg.structures, signature.task, signature.level, self.n_speakers)})
        self.unimodal_heads = nn.ModuleDict({m: TaskHead(d, signature, cfg.dropout) for m in mods})
        self.lr_scale = float(ctx.value("lr_scale", cfg.lr_scales))
        self.decoders = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, int(signature.dims[m]))) for m in mods
        }) if self.missing_loss == "reconstruction" else None

    @staticmethod
    def encoder_candidates(m: str, width: int, cfg: MercConfig, total: int) -> dict[str, Any]:
        """The encoders of ``cfg.encoders`` for modality ``m``: the shared ones, ``pca`` and ``off``."""
        shared = encoder_candidates(width, cfg.hidden_dim, tuple(n for n in cfg.encoders if n in ENCODERS),
                                    cfg.encoder_layers, cfg.n_heads, cfg.ffn_ratio, cfg.dropout, total)
        own = {"pca": lambda: PCAEncoder(m, width, cfg.hidden_dim, cfg.pca_dim), "off": lambda: NoPath(cfg.hidden_dim)}
        return {name: shared[name] if name in shared else own[name] for name in cfg.encoders}

    def represent(self, features: Mapping[str, Tensor], dropped: Mapping[str, Tensor], mask: Tensor,
                  speakers: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The fused state ``[B, N, hidden]`` and each modality's encoder output (before the speaker
        embedding) for ``features`` whose ``dropped`` rows (per modality, ``[B, N]`` bool) are missing."""
        encoded = {m: self.encoders[m](self.missing[m](features[m], dropped[m]), mask) for m in self.modalities}
        states = encoded
        if self.speaker_embedding is not None:
            states = {m: self.speaker_embedding(h, mask, speakers) for m, h in encoded.items()}
        early = late = None
        if "early" in self.paths:
            fused = self.fusion(torch.cat([states[m] for m in self.modalities], dim=-1), mask, key="early")
            early = self.context(self.drop(fused), mask, speakers, key=FUSED)
        if "late" in self.paths:
            contexts = [self.context(self.drop(states[m]), mask, speakers, key=m) for m in self.modalities]
            late = self.fusion(torch.cat(contexts, dim=-1), mask, key="late")
        state = self.position(early, late)
        return state * mask.to(state.dtype).unsqueeze(-1), encoded

    def forward(self, batch: Batch) -> ModelOutput:
        check_batch("merc", self.signature, batch, complete=self.missing_loss != "none")
        mask = batch.mask.bool()
        speakers = speaker_ids(batch, self.n_speakers)
        dropped = {m: mask & ~present_mask(batch, m) for m in self.modalities}
        state, encoded = self.represent(batch.features, dropped, mask, speakers)
        logits = self.structure(self.head(state, mask), mask, speakers)
        per_modality, aux, weights = unimodal_outputs(self.unimodal_heads, encoded, batch, self.signature.task,
                                                      self.unimodal_weight)
        if self.training and self.missing_loss != "none":
            losses = self.missing_losses(batch, state, dropped, mask, speakers)
            aux.update(losses)
            weights.update({name: self.missing_weight for name in losses})
        return ModelOutput(logits=logits, aux_losses=aux, aux_weights=weights, per_modality_logits=per_modality)

    def missing_losses(self, batch: Batch, state: Tensor, dropped: Mapping[str, Tensor], mask: Tensor,
                       speakers: Tensor) -> dict[str, Tensor]:
        """``reconstruction_{m}`` per modality, or ``distill`` (module docstring)."""
        if self.decoders is not None:
            return {f"reconstruction_{m}": reconstruction_loss(self.decoders[m](state), batch.complete[m], dropped[m],
                                                                   resident=batch.resident)
                    for m in self.modalities}
        rows = torch.stack(list(dropped.values())).any(0)
        if not batch.resident and not bool(rows.any()):  # resident batches read nothing back (a zero mean then)
            return {"distill": state.sum() * 0.0}
        with torch.no_grad():
            nothing = {m: torch.zeros_like(mask) for m in self.modalities}
            target, _ = self.represent(batch.complete, nothing, mask, speakers)
        return {"distill": distill_loss(state, target, rows, resident=batch.resident)}


class MercSpace(SearchSpace):
    """The ``merc`` space: encoders, fusion, its position, context, speaker and missing-modality handling."""

    name = "merc"
    Config = MercConfig
    presets = {"default": merc_default, "paper": merc_paper}
    Network = MercNetwork
    default_strategy = "tpe"  # it searches the value genes (speaker, missing_loss, unimodal_weight) too
    default_strategy_config = {"trials": 16, "candidate_epochs": 15, "startup_trials": 6, "pruner": "hyperband",
                               "min_epochs": 5, "reduction_factor": 3, "parsimony": 0.01}
    """TPE with Hyperband over 16 candidates of 5 to 15 epochs, the smallest within 0.01 validation WAF
    of the best kept (``benchmarks/grids/merc_default.yaml``: under 10 minutes on two CPU cores)."""

    def named_architectures(self) -> dict[str, dict[str, Any]]:
        """The hand-designed models' points (:data:`NAMED`) for this signature's modalities, within the
        config's candidate pools (a point whose candidate was left out of a pool is not offered)."""
        out = {}
        for name in NAMED:
            arch = named_arch(name, self.signature)
            try:
                out[name] = self.canonical(arch)
            except NasmercError:
                continue
        return out

    def check_config(self) -> None:
        cfg, where = self.config, self.where
        checks.positive(where, hidden_dim=cfg.hidden_dim, pca_dim=cfg.pca_dim, n_heads=cfg.n_heads, encoder_layers=cfg.encoder_layers,
                        context_layers=cfg.context_layers, graph_heads=cfg.graph_heads, dag_layers=cfg.dag_layers,
                        dag_window=cfg.dag_window, hub_tokens=cfg.hub_tokens)
        checks.even(where, "hidden_dim", cfg.hidden_dim, "the recurrent models have hidden_dim / 2 units per direction")
        checks.divisible(where, "hidden_dim", cfg.hidden_dim, "n_heads", cfg.n_heads)
        checks.divisible(where, "hidden_dim", cfg.hidden_dim, "graph_heads", cfg.graph_heads)
        checks.window(where, graph_past=cfg.graph_past, graph_future=cfg.graph_future)
        checks.greater_than_zero(where, ffn_ratio=cfg.ffn_ratio)
        checks.dropout(where, cfg.dropout)
        checks.non_negative(where, missing_weight=cfg.missing_weight)
        checks.distinct_names(where, "encoders", cfg.encoders, KNOWN_ENCODERS)
        checks.distinct_names(where, "structures", cfg.structures, tuple(STRUCTURES))
        checks.distinct_names(where, "contexts", cfg.contexts, CONTEXTS)
        checks.distinct_names(where, "fusions", cfg.fusions, FUSIONS)
        weights = list(cfg.unimodal_weights)
        if not weights or len(set(weights)) != len(weights) or any(not w >= 0 for w in weights):
            raise NasmercError(f"{where}: unimodal_weights={weights}: expected distinct numbers >= 0")
        scales = list(cfg.lr_scales)
        if not scales or len(set(scales)) != len(scales) or any(not s > 0 for s in scales):
            raise NasmercError(f"{where}: lr_scales={scales}: expected distinct numbers > 0")
        if FUSED in self.signature.modalities:
            raise NasmercError(f"{where}: a modality named {FUSED!r} clashes with the early path's stream; "
                               "rename the modality")


# -- named architectures --------------------------------------------------------------------------
def named_arch(name: str, signature: DataSignature | Sequence[str]) -> dict[str, Any]:
    """The architecture ``name`` (a key of :data:`NAMED`) for the modalities of ``signature`` (a data
    signature or the modality names); the module docstring says how each differs from its model."""
    mods = tuple(signature.modalities if isinstance(signature, DataSignature) else signature)
    common = {"speaker": "none", "missing_loss": "none", "unimodal_weight": 0.0, "structure": "none", "lr_scale": 1.0}
    designs: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
        "early_fusion": ({m: "projection" for m in mods}, {"position": "early", "fusion": "sum", "context": "lstm"}),
        "late_fusion": ({m: "projection" for m in mods}, {"position": "late", "fusion": "concat", "context": "bigru"}),
        "corect_like": ({m: "transformer" if m == "text" else "linear" for m in mods},
                        {"position": "both", "fusion": "attention", "context": "graph", "speaker": "embedding"}),
        "multidag_like": ({m: "linear" for m in mods},
                          {"position": "early", "fusion": "concat", "context": "dag", "speaker": "relations"}),
        "mfmb_like": ({m: "transformer" for m in mods},
                      {"position": "both", "fusion": "hub", "context": "lstm", "missing_loss": "reconstruction"}),
    }
    if name not in designs:
        raise NasmercError(f"space 'merc': no named architecture {name!r} (known: {', '.join(designs)})")
    encoders, rest = designs[name]
    arch: dict[str, Any] = {}
    for m in mods:
        arch[f"{m}.missing"] = "zeros"
        arch[f"{m}.encoder"] = encoders[m]
    return {**arch, **common, **rest}


#: The named architectures for the default signature's modalities (text, audio, visual).
NAMED: dict[str, dict[str, Any]] = {name: named_arch(name, ("text", "audio", "visual"))
                                    for name in ("early_fusion", "late_fusion", "corect_like", "multidag_like",
                                                 "mfmb_like")}
