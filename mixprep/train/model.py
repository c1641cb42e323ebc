"""A compact decoder-only GPT: the model `mixprep train` fits to a prepared mixture.

Place in the flow: UnifiedDataset -> (X, Y, loss_mask) batches -> `GPT` -> one scalar loss.

Architecture (the MiniMind / Llama family, in plain PyTorch so it runs anywhere torch does):
pre-norm blocks of RMSNorm -> causal self-attention with rotary position embeddings
(through `torch.nn.functional.scaled_dot_product_attention`, which picks flash/efficient
kernels on GPU) -> RMSNorm -> SwiGLU MLP; a final RMSNorm and an output head tied to the
token embedding.

Guarantees:
- The loss is cross-entropy averaged over the positions where `loss_mask` is 1, so pretrain
  (mask = not padding) and SFT (mask = assistant tokens) share one training loop; positions
  with mask 0 contribute nothing, whatever their targets are.
- Attention is causal: the logits at position t depend only on tokens 0..t.
- No dropout and no randomness in `forward`: with the same weights and batch the loss is
  bitwise repeatable on CPU, which is what makes `--resume` reproduce an uninterrupted run.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mixprep.errors import ConfigError


@dataclass(frozen=True)
class GPTConfig:
    """Model shape. `intermediate_size=None` means MiniMind's rule: 8/3 x hidden, rounded up to 64."""

    vocab_size: int
    hidden_size: int = 512
    num_hidden_layers: int = 8
    num_heads: int = 8
    max_seq_len: int = 512
    intermediate_size: int | None = None
    rope_theta: float = 1e6
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "max_seq_len"):
            value = getattr(self, name)
            if value <= 0:
                msg = f"model option {name}={value} is invalid: it must be a positive integer"
                raise ConfigError(msg)
        if self.hidden_size % self.num_heads != 0:
            msg = (
                f"--hidden_size {self.hidden_size} is not divisible by --num_heads {self.num_heads}: "
                f"each head gets hidden_size / num_heads dimensions; hint: e.g. --hidden_size 512 --num_heads 8"
            )
            raise ConfigError(msg)
        if (self.hidden_size // self.num_heads) % 2 != 0:
            msg = (
                f"head size {self.hidden_size // self.num_heads} (= --hidden_size {self.hidden_size} / "
                f"--num_heads {self.num_heads}) is odd; rotary embeddings rotate pairs of dimensions, "
                f"so it must be even"
            )
            raise ConfigError(msg)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_size(self) -> int:
        if self.intermediate_size is not None:
            return self.intermediate_size
        return 64 * math.ceil(self.hidden_size * 8 / 3 / 64)

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 so bf16 autocast does not lose the scale."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).type_as(x)


def rotary_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (max_seq_len, head_dim // 2) for rotating dimension pairs."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (first half, second half) pairs of x: (batch, heads, seq, head_dim) by position."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, hidden = x.shape
        qkv = self.qkv(x).view(batch, seq, 3, self.num_heads, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(dim=2))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, seq, hidden))


class SwiGLU(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(config.hidden_size, config.mlp_size, bias=False)
        self.up = nn.Linear(config.hidden_size, config.mlp_size, bias=False)
        self.down = nn.Linear(config.mlp_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy over positions where loss_mask is nonzero (0 when none is)."""
    per_token = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    )
    mask = loss_mask.reshape(-1).to(per_token.dtype)
    # clamp: a batch whose mask is all zero (an SFT sample truncated before its answer)
    # gives loss 0 and zero gradients instead of NaN.
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


class GPT(nn.Module):
    """Decoder-only transformer; `forward(X, Y, loss_mask)` returns (logits, loss)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight  # tied: one matrix reads and writes tokens
        cos, sin = rotary_tables(config.head_dim, config.max_seq_len, config.rope_theta)
        # Non-persistent: recomputed from the config, so checkpoints hold only learned weights.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # GPT-2's scaled init for projections that write into the residual stream.
        for name, param in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.num_hidden_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Distinct parameters (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        seq = input_ids.shape[1]
        if seq > self.config.max_seq_len:
            msg = (
                f"input of {seq} tokens is longer than the model's max_seq_len {self.config.max_seq_len}; "
                f"hint: raise --max_seq_len or shorten the dataset's max_length"
            )
            raise ConfigError(msg)
        cos, sin = self.rope_cos[:seq], self.rope_sin[:seq]
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.lm_head(self.norm(x))
        if targets is None:
            return logits, None
        mask = torch.ones_like(targets) if loss_mask is None else loss_mask
        return logits, masked_cross_entropy(logits, targets, mask)
