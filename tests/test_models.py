"""Model package: shapes, gradients, budget, BN fusion, cascaded and windowed attention, bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from models import MODEL_NAMES, PARAM_LIMIT, build_model, fuse_model
from models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from models.efficientvit import CascadedGroupAttention, LocalWindowAttention, relative_index
from tests.conftest import make_checkpoint, randomize_batchnorm


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("size", [(64, 96), (32, 32), (45, 71)])  # MIN_SIZE, odd sides
def test_output_shape_matches_input(name, size):
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 2, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name):
    model = randomize_batchnorm(build_model(name)).train()
    logits = model(torch.randn(2, 1, 64, 96))
    target = torch.randint(0, 2, (2, 64, 96))
    nn.functional.cross_entropy(logits, target).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_default_model_uses_the_budget():
    count = build_model("tiny_efficientvit").get_num_trainable_params()
    assert 45_000 <= count < PARAM_LIMIT


@pytest.mark.parametrize("name", ["tiny_efficientvit", "tiny_efficientvit_xs"])
def test_budget_is_enforced(name):
    with pytest.raises(ValueError, match=r"trainable parameters; the limit is 60,000"):
        build_model(name, embed_dim=(32, 64, 96), decoder_dim=48)


def test_unknown_model_and_config_field_are_rejected():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet")
    with pytest.raises(ValueError, match="embed_dims"):
        build_model("tiny_efficientvit", embed_dims=(8, 8, 8))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_rebuilds_the_same_model(name):
    model = build_model(name)
    rebuilt = build_model(name, **json.loads(json.dumps(model.config.to_dict())))
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fused_model_matches_and_has_no_batchnorm(name):
    model = randomize_batchnorm(build_model(name)).eval()
    fused = fuse_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 1, 45, 71)
    with torch.no_grad():
        assert (model(x) - fused(x)).abs().max() < 1e-4


def test_cascade_feeds_each_head_the_previous_heads_output():
    attn = randomize_batchnorm(CascadedGroupAttention(8, 4, 2, 7, (3, 3))).eval()
    x = torch.randn(1, 8, 5, 6)
    changed_first = x.clone()
    changed_first[:, :4] += torch.randn(1, 4, 5, 6)
    changed_second = x.clone()
    changed_second[:, 4:] += torch.randn(1, 4, 5, 6)
    with torch.no_grad():
        base, first, second = (attn.head_outputs(t) for t in (x, changed_first, changed_second))
    # Head 2 only sees chunk 1 through the cascade; plain multi-head attention would ignore it.
    assert not torch.allclose(base[1], first[1])
    # Head 1 never sees chunk 2.
    assert torch.equal(base[0], second[0])


def reference_global_attention(attn: CascadedGroupAttention, x: torch.Tensor) -> torch.Tensor:
    """Single-head attention over the whole map, written out independently of the module."""
    _, _, h, w = x.shape
    q, k, v = attn.qkvs[0](x).split([attn.key_dim, attn.key_dim, attn.value_dim], dim=1)
    q = attn.q_convs[0](q).flatten(2)
    k, v = k.flatten(2), v.flatten(2)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dy = (ys.flatten()[:, None] - ys.flatten()[None]).abs()
    dx = (xs.flatten()[:, None] - xs.flatten()[None]).abs()
    bias = attn.attention_biases[0][dy * attn.window + dx]
    weights = torch.softmax(torch.einsum("bcn,bcm->bnm", q, k) * attn.key_dim**-0.5 + bias, dim=-1)
    out = torch.einsum("bcm,bnm->bcn", v, weights).view(x.shape[0], -1, h, w)
    return attn.proj(out)


def test_window_covering_the_map_is_global_attention():
    lwa = randomize_batchnorm(LocalWindowAttention(8, 4, 1, 7, (3,))).eval()
    nn.init.normal_(lwa.attn.attention_biases)
    x = torch.randn(2, 8, 6, 7)
    with torch.no_grad():
        assert torch.allclose(lwa(x), reference_global_attention(lwa.attn, x), atol=1e-5)


def test_windows_are_independent_and_unaffected_by_padding():
    lwa = randomize_batchnorm(LocalWindowAttention(8, 4, 2, 7, (3, 3))).eval()
    nn.init.normal_(lwa.attn.attention_biases)
    x = torch.randn(1, 8, 10, 16)  # padded to 14x21: the top row of windows holds no padding
    with torch.no_grad():
        full = lwa(x)
        top_left = lwa.attn(x[:, :, :7, :7])
        top_row = lwa(x[:, :, :7, :14])  # 7x14: two whole windows, no padding at all
    assert torch.isfinite(full).all()
    assert torch.allclose(full[:, :, :7, :7], top_left, atol=1e-6)
    assert torch.allclose(full[:, :, :7, :14], top_row, atol=1e-6)


def test_relative_index_is_symmetric_and_zero_on_the_diagonal():
    index = relative_index(3, 4, 7)
    assert index.shape == (12, 12)
    assert (index == index.T).all()
    assert (index.diagonal() == 0).all()
    assert index.max() == 2 * 7 + 3


def test_eval_bias_cache_follows_weight_updates():
    lwa = LocalWindowAttention(8, 4, 2, 7, (3, 3)).eval()
    x = torch.randn(1, 8, 7, 7)
    with torch.no_grad():
        before = lwa.attn.head_outputs(x)[0]
        lwa.attn.attention_biases.add_(torch.randn_like(lwa.attn.attention_biases))
        after = lwa.attn.head_outputs(x)[0]
    assert not torch.allclose(before, after)


def test_cli_json_lists_every_model(capsys):
    from models.__main__ import main as describe_models

    describe_models(["--json", "--size", "64x96"])
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(MODEL_NAMES)
    for name, row in rows.items():
        assert row["output_shape"] == [1, 2, 64, 96]
        assert row["params"] == build_model(name).get_num_trainable_params()
        assert row["encoder_params"] + row["decoder_params"] == row["params"]
    # ShallowNet runs every block at stride 1 to 8, TinyEfficientViT from stride 4 down
    assert rows["shallownet"]["macs"] > 4 * rows["tiny_efficientvit"]["macs"] > 0


def _truncated_checkpoint(path):
    torch.save({"weights": torch.zeros(64)}, path)
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(
    "write",
    [
        lambda p: p.write_bytes(b"\x00garbage"),
        lambda p: p.write_bytes(b"not a checkpoint"),
        lambda p: p.write_bytes(b""),
        _truncated_checkpoint,
    ],
    ids=["garbage", "text", "empty", "truncated-zip"],
)
def test_corrupt_checkpoint_is_one_line_without_torch_advice(tmp_path, write):
    path = tmp_path / "best.pt"
    write(path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    if write is _truncated_checkpoint:  # a zip archive cut short: said so, with its size
        assert str(exc.value) == (
            f"{path}: a damaged PyTorch checkpoint (200 bytes, cut short or corrupted: an interrupted "
            "copy or download?); copy it again"
        )
    else:
        assert str(exc.value) == f"{path}: corrupt or not a readable PyTorch checkpoint"


def test_checkpoint_of_objects_a_safe_load_refuses_names_them(tmp_path):
    import numpy as np

    path = tmp_path / "foreign.pt"
    torch.save({"model_state": {}, "metrics": {"iou": np.float64(0.9)}}, path)
    with pytest.raises(CheckpointError, match="safe load refuses") as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value) and "numpy" in str(exc.value) and "\n" not in str(exc.value)


def test_checkpoint_with_non_finite_weights_is_refused_with_what_to_do(tmp_path):
    path = make_checkpoint(tmp_path / "last.pt")
    state = load_checkpoint(path)
    weights = state["model_state"]
    floats = [name for name, value in weights.items() if value.is_floating_point()]
    weights[floats[0]].fill_(float("nan"))  # a diverged run
    weights[floats[1]].view(-1)[0] = float("inf")
    save_checkpoint(state, path)
    with pytest.raises(CheckpointError) as exc:
        model_from_checkpoint(load_checkpoint(path), path)  # evaluate, predict, export, resume
    message = str(exc.value)
    assert message.startswith(f"{path} holds non-finite weights (2 tensors, e.g. {floats[0]})")
    assert "earlier checkpoint" in message and "\n" not in message


def test_the_attention_bias_made_on_the_device_for_training_is_the_cached_constant():
    attention = CascadedGroupAttention(8, 4, 2, 7, (3, 3))
    torch.nn.init.normal_(attention.attention_biases)
    for h, w in ((7, 7), (3, 5), (7, 2)):
        training = attention.train().attention_bias(h, w)
        assert torch.equal(training, attention.eval().attention_bias(h, w))
