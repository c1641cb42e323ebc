"""mixprep.model: shapes, causality, tied embeddings, the masked loss, config errors."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from mixprep.errors import ConfigError  # noqa: E402
from mixprep.train.model import GPT, GPTConfig, apply_rotary, masked_cross_entropy, rotary_tables  # noqa: E402


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    options = {"vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 2, "num_heads": 4, "max_seq_len": 16}
    return GPT(GPTConfig(**(options | overrides)))


def test_logits_shape_and_loss_is_finite():
    model = tiny()
    x, y = torch.randint(0, 97, (3, 10)), torch.randint(0, 97, (3, 10))
    logits, loss = model(x, y, torch.ones_like(x))
    assert logits.shape == (3, 10, 97)
    assert loss.ndim == 0 and torch.isfinite(loss)
    # An untrained model with small init predicts near-uniformly: loss ~ ln(vocab) on random targets.
    assert abs(loss.item() - math.log(97)) < 0.5


def test_attention_is_causal():
    model = tiny()
    x = torch.randint(0, 97, (1, 12))
    changed = x.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 97
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(changed)
    assert torch.equal(a[0, :8], b[0, :8])
    assert not torch.allclose(a[0, 8:], b[0, 8:])


def test_embeddings_are_tied_and_counted_once():
    model = tiny()
    assert model.lm_head.weight is model.embed.weight
    distinct = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(distinct.values())
    assert "rope_cos" not in model.state_dict()  # rebuilt from the config, not saved


def test_loss_averages_over_mask_only():
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0]])
    expected = F.cross_entropy(logits[mask.bool()], targets[mask.bool()])
    assert torch.allclose(masked_cross_entropy(logits, targets, mask), expected)
    # Targets under mask 0 do not matter at all.
    scrambled = targets.clone()
    scrambled[~mask.bool()] = (scrambled[~mask.bool()] + 3) % 11
    assert torch.equal(masked_cross_entropy(logits, scrambled, mask), masked_cross_entropy(logits, targets, mask))


def test_all_zero_mask_gives_zero_loss_not_nan():
    logits = torch.randn(1, 4, 7, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_masked_positions_get_no_gradient_through_the_loss():
    model = tiny()
    x = torch.randint(0, 97, (1, 8))
    mask = torch.tensor([[0, 0, 0, 1, 1, 0, 0, 0]])
    logits, loss = model(x, x, mask)
    logits.retain_grad()
    loss.backward()
    per_position = logits.grad.abs().sum(-1)[0]
    assert torch.count_nonzero(per_position[[0, 1, 2, 5, 6, 7]]) == 0
    assert torch.all(per_position[[3, 4]] > 0)


def test_rotary_preserves_norm_and_encodes_relative_position():
    cos, sin = rotary_tables(8, 32, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    rotated = apply_rotary(q.expand(1, 1, 32, 8), cos, sin)
    assert torch.allclose(rotated.norm(dim=-1), q.norm(dim=-1).expand(1, 1, 32), atol=1e-5)
    # <R_m q, R_n k> depends only on m - n.
    rk = apply_rotary(k.expand(1, 1, 32, 8), cos, sin)
    dots = (rotated[0, 0, :, None, :] * rk[0, 0, None, :, :]).sum(-1)
    assert torch.allclose(dots[5, 2], dots[13, 10], atol=1e-5)


@pytest.mark.slow
def test_default_size_is_minimind_scale():
    with torch.device("meta"):
        model = GPT(GPTConfig(vocab_size=6400))
    assert 25_000_000 < model.num_parameters() < 30_000_000
    assert model.config.mlp_size == 1408


def test_too_long_input_is_refused():
    model = tiny()
    with pytest.raises(ConfigError, match=r"input of 17 tokens is longer than the model's max_seq_len 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hidden_size": 30, "num_heads": 4}, r"--hidden_size 30 is not divisible by --num_heads 4"),
        ({"hidden_size": 36, "num_heads": 4}, r"head size 9 .* is odd"),
        ({"num_hidden_layers": 0}, r"num_hidden_layers=0 is invalid: it must be a positive integer"),
    ],
)
def test_bad_shapes_are_config_errors(options, message):
    base = {"vocab_size": 97, "hidden_size": 32, "num_hidden_layers": 2, "num_heads": 4}
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**(base | options))
