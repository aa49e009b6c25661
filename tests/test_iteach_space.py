"""Tests of the ITEACH-Net space: ECCE, its mixers, choice points, teacher-student and presets.

Tiny hand-built conversations (a few utterances, single-digit dims) keep the file at seconds; the
``paper`` preset is only built and its parameter counts printed, never run.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from conftest import random_conversations
from nasmerc.data.batch import Batch, collate
from nasmerc.data.conversation import DataSignature
from nasmerc.data.synthetic import load
from nasmerc.errors import NasmercError
from nasmerc.modules.ecce import ECCEncoder
from nasmerc.modules.iteach_mixers import ITEACH_MIXERS, MLPMixer
from nasmerc.nas.choices import OpChoice, choice_modules
from nasmerc.outputs import count_parameters
from nasmerc.train.losses import task_loss
from nasmerc.train.trainer import TrainConfig, Trainer
from search_spaces.iteach import ITEACHConfig, ITEACHSpace, iteach_paper
from tests.conftest import TINY

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = {"text": 6, "audio": 5, "visual": 7}
LENGTHS = [5, 3, 7]
MODS = ("text", "audio", "visual")


def tiny_config(**changes: Any) -> ITEACHConfig:
    cfg = ITEACHConfig(hidden_dim=8, n_heads=2, ffn_ratio=2.0, student_layers=4, teacher_layers=3,
                       ecce_kernel=3, ecce_dist=3, ecce_dim=4, max_len=16, dropout=0.0)
    return replace(cfg, **changes)


def signature(task: str = "classification", level: str = "dialogue", modalities: tuple[str, ...] = MODS) -> DataSignature:
    classes = ("neg", "neu", "pos") if task == "classification" else ()
    return DataSignature(modalities, {m: DIMS[m] for m in modalities}, task, level, classes, n_speakers=2)


conversations = random_conversations


def masked_batch(sig: DataSignature, lengths: list[int] = LENGTHS, seed: int = 0) -> Batch:
    """Random modalities dropped (one kept per utterance); ``complete`` keeps everything."""
    batch = collate(conversations(sig, lengths, seed), sig)
    gen = torch.Generator().manual_seed(seed)
    present = torch.rand(batch.present.shape, generator=gen) > 0.4
    keep = torch.randint(0, len(sig.modalities), batch.mask.shape, generator=gen)
    present |= nn.functional.one_hot(keep, len(sig.modalities)).bool()
    return batch.with_present(present)


def uniform_hook(choice: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A stand-in strategy: the mean of every candidate's output."""
    assert isinstance(choice, OpChoice)
    return torch.stack([c(*args, **kwargs) for c in choice.candidates.values()]).mean(0)


def random_arch(space: ITEACHSpace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {spec.label: rng.choice(spec.candidates) for spec in space.choices()}


def total_loss(out: Any, batch: Batch, task: str) -> torch.Tensor:
    return task_loss(out.logits, batch, task) + sum(out.aux_weights[k] * v for k, v in out.aux_losses.items())


# -- ECCE -----------------------------------------------------------------------------------------
def ecce_reference(enc: ECCEncoder, x: torch.Tensor) -> torch.Tensor:
    """Algorithm 1 with plain loops for one unpadded conversation ``x`` ``[n, D]``: ``[heads, n, n]``."""
    n, w = x.shape[0], enc.kernel_size
    weight, bias = enc.local.weight, enc.local.bias  # [d_z, D, w]
    z = []
    for i in range(n):  # eq. 5: the window of w utterances centred on i, zeros beyond the ends
        acc = bias.clone()
        for k in range(w):
            t = i + k - w // 2
            if 0 <= t < n:
                acc = acc + weight[:, :, k] @ x[t]
        z.append(acc)
    e = torch.zeros(n, n, weight.shape[0])
    for i in range(n):
        for j in range(i, min(n, enc.dist + i)):  # eq. 6: mean of z_i .. z_j
            e[i, j] = torch.stack(z[i : j + 1]).mean(0)
            e[j, i] = e[i, j]
    return enc.fc(e).permute(2, 0, 1)  # E_m = FC(E_m)


@pytest.mark.parametrize("kernel, dist", [(3, 2), (5, 30), (1, 1)])
def test_ecce_equals_loop_reference_with_padding(kernel: int, dist: int) -> None:
    torch.manual_seed(0)
    enc = ECCEncoder(4, n_heads=3, kernel_size=kernel, dist=dist, local_dim=5)
    lengths = [6, 2, 4]
    x = torch.randn(3, 6, 4)
    mask = torch.arange(6).view(1, 6) < torch.tensor(lengths).view(3, 1)
    x_noisy = x + 100.0 * (~mask).unsqueeze(-1)  # padding content must not matter
    with torch.no_grad():
        out = enc(x_noisy, mask)
        assert out.shape == (3, 3, 6, 6) and torch.isfinite(out).all()
        for b, n in enumerate(lengths):
            ref = ecce_reference(enc, x[b, :n])
            assert torch.allclose(out[b, :, :n, :n], ref, atol=1e-5)
            assert (out[b, :, n:, :] == 0).all() and (out[b, :, :, n:] == 0).all()


def test_ecce_beyond_dist_is_fc_bias_and_symmetric() -> None:
    torch.manual_seed(1)
    enc = ECCEncoder(3, n_heads=2, kernel_size=3, dist=2, local_dim=4)
    with torch.no_grad():
        out = enc(torch.randn(1, 5, 3), torch.ones(1, 5, dtype=torch.bool))
    assert torch.allclose(out, out.transpose(-1, -2))
    assert torch.allclose(out[0, :, 0, 4], enc.fc.bias.detach())
    with pytest.raises(NasmercError, match="kernel_size"):
        ECCEncoder(3, 2, kernel_size=4)


# -- mixers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ITEACH_MIXERS))
def test_mixer_shape_finite_and_padding_free(name: str) -> None:
    torch.manual_seed(0)
    mixer = ITEACH_MIXERS[name](8, 2, 12)
    lengths = [7, 3, 5]
    h = torch.randn(3, 7, 8, requires_grad=True)
    mask = torch.arange(7).view(1, 7) < torch.tensor(lengths).view(3, 1)
    bias = ECCEncoder(8, 2, 3, 4, 4)(h.detach(), mask)
    out = mixer(h, bias, mask)
    assert out.shape == h.shape and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(h.grad).all()
    noisy = h.detach() + 50.0 * torch.randn_like(h) * (~mask).unsqueeze(-1)
    again = mixer(noisy, bias, mask)
    assert torch.allclose(out[mask], again[mask], atol=1e-5)
    # A conversation alone gives the same outputs as padded in a batch (the MLP pads to max_len).
    alone = mixer(h[1:2, :3].detach(), bias[1:2, :, :3, :3], mask[1:2, :3])
    assert torch.allclose(alone[0], out[1, :3], atol=1e-5)


def test_attention_mixer_follows_the_ecce_bias() -> None:
    torch.manual_seed(0)
    mixer = ITEACH_MIXERS["attention"](4, 1, 8)
    h, mask = torch.randn(1, 4, 4), torch.ones(1, 4, dtype=torch.bool)
    bias = torch.full((1, 1, 4, 4), -1e4)
    bias[..., 2] = 0.0  # every query may only look at utterance 2
    out = mixer(h, bias, mask)
    only = mixer(h, None, torch.tensor([[False, False, True, False]]))[0, 2]
    assert torch.allclose(out[0], only.expand(4, -1), atol=1e-5)


def test_mlp_mixer_refuses_long_sequences() -> None:
    with pytest.raises(NasmercError, match="max_len"):
        MLPMixer(4)(torch.zeros(1, 5, 3), None, torch.ones(1, 5, dtype=torch.bool))


# -- choice points --------------------------------------------------------------------------------
def test_choice_labels_unique_and_of_the_right_kind() -> None:
    space = ITEACHSpace(signature(), tiny_config())
    specs = space.choices()
    labels = [s.label for s in specs]
    assert labels == [f"layer{i}.{m}.mixer" for i in range(4) for m in MODS]
    assert len(set(labels)) == len(labels)
    assert all(s.kind == "op" and s.candidates == ("attention", "mlp", "avgpool", "maxpool") for s in specs)
    net = space.supernet()
    assert sorted(m.label for m in choice_modules(net)) == sorted(labels)
    assert choice_modules(net.teacher) == []  # the teacher is a fixed Transformer
    restricted = ITEACHSpace.from_preset(signature(), "default", {"mixers": "attention,maxpool"})
    assert restricted.choices()[0].candidates == ("attention", "maxpool")


# -- supernet and fixed models --------------------------------------------------------------------
def test_supernet_uniform_mixing_forward_backward() -> None:
    sig = signature()
    torch.manual_seed(0)
    net = ITEACHSpace(sig, tiny_config()).supernet()
    batch = masked_batch(sig)
    with pytest.raises(NasmercError, match="layer0.text.mixer"):
        net(batch)
    for module in choice_modules(net):
        module.attach(uniform_hook)
    out = net(batch)
    assert out.logits.shape == (3, max(LENGTHS), 3) and torch.isfinite(out.logits).all()
    assert set(out.aux_losses) == {"distill", "teacher_task"}
    total_loss(out, batch, sig.task).backward()
    bad = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert bad == []


@pytest.mark.parametrize("seed", range(3))
def test_random_architecture_builds_runs_and_drops_unchosen(seed: int) -> None:
    sig = signature()
    space = ITEACHSpace(sig, tiny_config())
    arch = random_arch(space, seed)
    supernet, model = space.supernet(), space.build(arch)
    assert choice_modules(model) == []
    batch = masked_batch(sig, seed=seed)
    out = model(batch)
    assert out.logits.shape == (3, max(LENGTHS), 3) and torch.isfinite(out.logits).all()
    total_loss(out, batch, sig.task).backward()
    unchosen = sum(count_parameters(c) for module in choice_modules(supernet)
                   for name, c in module.candidates.items() if name != arch[module.label])
    n_fixed, n_super = count_parameters(model), count_parameters(supernet)
    assert n_fixed < n_super and n_fixed == n_super - unchosen


def test_bad_architecture_names_the_label() -> None:
    space = ITEACHSpace(signature(), tiny_config())
    arch = random_arch(space, 0)
    arch["layer2.audio.mixer"] = "conv"
    with pytest.raises(NasmercError, match=r"layer2\.audio\.mixer"):
        space.build(arch)


# -- the inverted teacher-student -----------------------------------------------------------------
def test_distill_gives_no_gradient_to_the_teacher_but_teacher_task_does() -> None:
    sig = signature()
    torch.manual_seed(0)
    space = ITEACHSpace(sig, tiny_config())
    model = space.build(random_arch(space, 0)).train()
    batch = masked_batch(sig)
    out = model(batch)
    assert float(out.aux_losses["distill"].detach()) > 0
    out.aux_losses["distill"].backward(retain_graph=True)
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.teacher.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.student.parameters() if p.grad is not None) > 0
    model.zero_grad(set_to_none=True)
    out.aux_losses["teacher_task"].backward()
    assert all(p.grad is None for p in model.student.parameters())
    assert all(p.grad is not None for p in model.teacher.parameters())
    assert float(model.teacher.head.net[-1].weight.grad.abs().sum()) > 0


def test_distill_is_eq14_over_the_last_three_layers() -> None:
    sig = signature()
    torch.manual_seed(0)
    space = ITEACHSpace(sig, tiny_config())
    model = space.build(random_arch(space, 1)).train()
    batch = masked_batch(sig)
    out = model(batch)
    mask = batch.mask
    s, t = model.student(batch.features, mask), model.teacher(batch.complete, mask)
    sq = [((s[-k][mask] - t[-k][mask]) ** 2).sum(-1).mean() for k in (1, 2, 3)]  # squared norm per row
    assert torch.allclose(out.aux_losses["distill"], 0.5 * sq[0] + 0.1 * sq[1] + 0.05 * sq[2], atol=1e-5)
    t_logits = model.teacher.predict(t[-1], mask)
    assert torch.allclose(out.aux_losses["teacher_task"], task_loss(t_logits, batch, sig.task), atol=1e-6)
    assert out.aux_weights == {"distill": 2.0, "teacher_task": 1.0}  # 2 x eq. 15 (tests/test_iteach_loss.py)


def test_the_student_predicts() -> None:
    sig = signature()
    torch.manual_seed(0)
    space = ITEACHSpace(sig, tiny_config())
    model = space.build(random_arch(space, 2)).eval()
    batch = masked_batch(sig)
    with torch.no_grad():
        before = model(batch)
        assert before.aux_losses == {}  # the teacher does not run at evaluation
        for p in model.teacher.parameters():
            p.add_(torch.randn_like(p))
        assert torch.equal(model(batch).logits, before.logits)
        noisy = replace(batch, complete={m: x + 1.0 for m, x in batch.complete.items()})
        assert torch.equal(model(noisy).logits, before.logits)
        model.student.head.net[-1].weight.add_(torch.randn_like(model.student.head.net[-1].weight))
        assert not torch.allclose(model(batch).logits, before.logits)


# -- outputs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("task, level", [("classification", "dialogue"), ("regression", "dialogue"),
                                         ("classification", "utterance"), ("regression", "utterance")])
def test_output_shapes(task: str, level: str) -> None:
    sig = signature(task, level)
    space = ITEACHSpace(sig, tiny_config())
    model = space.build(random_arch(space, 1))
    batch = masked_batch(sig)
    out = model(batch)
    b, n = len(LENGTHS), max(LENGTHS)
    want = {("classification", "dialogue"): (b, n, 3), ("regression", "dialogue"): (b, n),
            ("classification", "utterance"): (b, 3), ("regression", "utterance"): (b,)}[(task, level)]
    assert out.logits.shape == want
    total_loss(out, batch, task).backward()


@pytest.mark.parametrize("modalities", [("audio",), ("visual", "text")])
def test_any_subset_of_modalities(modalities: tuple[str, ...]) -> None:
    sig = signature(modalities=modalities)
    space = ITEACHSpace(sig, tiny_config())
    model = space.build(random_arch(space, 2))
    assert model.student.query == ("text" if "text" in modalities else modalities[0])
    out = model(masked_batch(sig))
    assert out.logits.shape == (3, max(LENGTHS), 3)


@pytest.mark.parametrize("level", ["dialogue", "utterance"])
def test_real_rows_do_not_depend_on_padding(level: str) -> None:
    sig = signature(level=level)
    space = ITEACHSpace(sig, tiny_config())
    arch = {**random_arch(space, 3), "layer0.text.mixer": "mlp", "layer1.audio.mixer": "attention",
            "layer2.visual.mixer": "maxpool", "layer3.text.mixer": "avgpool"}
    model = space.build(arch).eval()
    convs = conversations(sig, [4, 9, 6])
    alone, together = model(collate(convs[:1], sig)), model(collate(convs, sig))
    rows = slice(0, 4) if level == "dialogue" else slice(None)
    assert torch.allclose(alone.logits[0], together.logits[0, rows], atol=1e-5)


def test_batch_with_wrong_dims_or_too_long_is_refused() -> None:
    sig = signature()
    space = ITEACHSpace(sig, tiny_config())
    model = space.build({s.label: "mlp" for s in space.choices()})
    other = DataSignature(MODS, {**DIMS, "audio": 9}, "classification", "dialogue", sig.classes, 2)
    with pytest.raises(NasmercError, match="'audio' has 9 features"):
        model(collate(conversations(other, LENGTHS), other))
    with pytest.raises(NasmercError, match="max_len"):
        model(collate(conversations(sig, [17]), sig))


@pytest.mark.parametrize("changes, key", [
    ({"hidden_dim": 10, "n_heads": 4}, "hidden_dim"),
    ({"student_layers": 0}, "student_layers"),
    ({"ecce_kernel": 4}, "ecce_kernel"),
    ({"mixers": ("attention", "conv")}, "mixers"),
    ({"teacher_layers": 2}, "distill_layer_weights"),
    ({"dropout": 1.0}, "dropout"),
    ({"distill_norm": "l1"}, "distill_norm"),
    ({"distill_weight": -1.0}, "distill_weight"),
])
def test_bad_config_names_the_field(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(NasmercError, match=key):
        ITEACHSpace(signature(), tiny_config(**changes))


# -- training and presets -------------------------------------------------------------------------
def test_trainer_runs_two_epochs_with_finite_metrics() -> None:
    data = load("iemocap6", TINY)
    space = ITEACHSpace(data.signature, tiny_config(hidden_dim=16, n_heads=2))
    model = space.build(random_arch(space, 0))
    trainer = Trainer(model, data.signature, TrainConfig(epochs=2, batch_size=4, valid_rates=(0.0,)), seed=0)
    result = trainer.fit(data.split("train"), data.split("valid"))
    assert len(result.history) == 2
    for record in result.history:
        assert math.isfinite(record["train_loss"]) and math.isfinite(record["valid_loss"])
        assert {"task", "distill", "teacher_task"} <= set(record["losses"])
        assert all(math.isfinite(v) for v in record["losses"].values())
    assert all(math.isfinite(v) for v in result.best_metrics.values())


def test_default_preset_is_small_and_runs() -> None:
    sig = signature()
    space = ITEACHSpace.from_preset(sig, "default")
    cfg = space.config
    assert (cfg.hidden_dim, cfg.n_heads, cfg.student_layers, cfg.teacher_layers) == (64, 4, 4, 3)
    assert (cfg.ecce_kernel, cfg.ecce_dist, cfg.distill_layer_weights) == (7, 30, (0.5, 0.1, 0.05))
    assert (cfg.distill_norm, cfg.distill_weight, cfg.teacher_weight) == ("sum", 1.0, 1.0)  # the paper's loss
    assert space.build(random_arch(space, 5))(masked_batch(sig)).logits.shape == (3, max(LENGTHS), 3)


@pytest.mark.parametrize("dims, name", [
    ({"text": 100, "audio": 100, "visual": 512}, "IEMOCAP (DialogueGCN/MMGCN features) 100/100/512"),
    ({"text": 1024, "audio": 512, "visual": 1024}, "IEMOCAP (GCNet features, the paper's) 1024/512/1024"),
])
def test_paper_preset_builds_and_reports_its_size(dims: dict[str, int], name: str) -> None:
    cfg = iteach_paper()
    assert (cfg.hidden_dim, cfg.n_heads, cfg.ffn_ratio, cfg.ecce_kernel, cfg.ecce_dist) == (128, 8, 4.0, 7, 30)
    assert (cfg.teacher_layers, cfg.student_layers) == (3, 4)
    sig = DataSignature(MODS, dims, "classification", "dialogue", tuple("abcdef"), 2)
    space = ITEACHSpace.from_preset(sig, "paper")
    supernet = space.supernet()
    attention = space.build({s.label: "attention" for s in space.choices()})
    teacher, student = count_parameters(supernet.teacher), count_parameters(supernet.student)
    student_tf = count_parameters(attention.student)
    print(f"\nITEACH-Net paper preset on {name}: teacher {teacher / 1e6:.2f} M (paper 2.19 M), "
          f"student supernet (all 4 mixers, as the router uses them) {student / 1e6:.2f} M (paper 3.88 M), "
          f"student all-attention {student_tf / 1e6:.2f} M")
    assert 1.5e6 < teacher < 4e6 and 2.5e6 < student < 6e6 and teacher < student_tf < student
