"""The D3DP denoiser: a MixSTE-style spatio-temporal transformer that predicts clean 3D
poses x0 from a 2D clip, noisy 3D poses and a diffusion timestep.

Shapes: 2D clip (B, F, J, 2); noisy 3D (B, F, J, 3) in training or (B, H, F, J, 3) for H
hypotheses in sampling; timestep t (B,) int64. The output has the shape of the noisy 3D.
Hypotheses are folded into the batch: there is no Python loop over them.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.coco import coco_to_h36m_matrix

# How the 2D input joints reach the tokens, one token per output (Human3.6M) joint:
# ""             as given (token j gets 2D joint j; the authors' models, Human3.6M-layout input);
# "coco_to_h36m" COCO-17 input mapped onto the Human3.6M joints first (common.geometry.coco: pelvis =
#                mid-hips, ...), so every token holds the 2D of the joint it predicts. A model
#                fed COCO-17 in its own order pairs, in one token, the 2D of one body part with
#                the 3D of another (the left eye's with the right hip's); a small model then
#                learns little more than the mean pose.
INPUT_MAPS = {"": None, "coco_to_h36m": coco_to_h36m_matrix}

@dataclass
class DenoiserConfig:
    """Architecture of the denoiser; saved inside our checkpoints."""

    frames: int = 243       # F, clip length (-f)
    channels: int = 512     # C, embedding width (-cs)
    depth: int = 8          # D, spatial/temporal block pairs (-dep)
    heads: int = 8
    joints: int = 17
    mlp_ratio: float = 2.0
    drop_path: float = 0.1  # stochastic depth at the last block (training only)
    input_map: str = ""     # how the 2D joints reach the tokens (INPUT_MAPS)

    def to_dict(self) -> dict:
        return asdict(self)

    def flops(self, clip_hypotheses: int = 1, iterations: int = 1, flip: bool = False) -> float:
        """FLOPs of the denoiser calls that sampling `clip_hypotheses` windows x hypotheses over
        `iterations` DDIM steps takes (dense layers and attention matmuls); one call per
        clip-hypothesis is one training forward pass."""
        c, f, j = self.channels, self.frames, self.joints
        hidden = int(c * self.mlp_ratio)
        per_token = self.depth * (2 * (4 * c * c + 2 * c * hidden) + 2 * c * j + 2 * c * f)
        return 2.0 * per_token * f * j * clip_hypotheses * iterations * (2 if flip else 1)

    def activation_bytes(self) -> int:
        """Size of one (tokens, C) float32 activation of one clip-hypothesis."""
        return self.frames * self.joints * self.channels * 4

    def attention_score_bytes(self) -> int:
        """Size of one clip-hypothesis's temporal attention scores (unfused attention)."""
        return self.heads * self.joints * self.frames * self.frames * 4


# The architecture fields a checkpoint fixes: DenoiserConfig field -> (run-configuration
# field, command-line flag); the defaults of a new run are DenoiserConfig's.
ARCHITECTURE_FIELDS = {"frames": ("number_of_frames", "-f"), "channels": ("cs", "-cs"), "depth": ("dep", "-dep")}

# The authors' parameter names -> ours (after stripping 'module.pose_estimator.'), and the
# diffusion schedule buffers they store beside the network (we recompute them).
AUTHORS_NAMES = [
    (r"^Spatial_patch_to_embedding\.", "joint_embed."),
    (r"^Spatial_pos_embed$", "spatial_pos"),
    (r"^Temporal_pos_embed$", "temporal_pos"),
    (r"^STEblocks\.", "spatial_blocks."),
    (r"^TTEblocks\.", "temporal_blocks."),
    (r"^Spatial_norm\.", "spatial_norm."),
    (r"^Temporal_norm\.", "temporal_norm."),
]
AUTHORS_SCHEDULE_BUFFERS = {
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
}


def from_authors_state_dict(state: dict) -> dict:
    """The authors' model_pos -> our Denoiser state dict (prefixes stripped, names mapped,
    schedule buffers dropped)."""
    out = {}
    for key, value in state.items():
        name = re.sub(r"^module\.", "", key)
        if name in AUTHORS_SCHEDULE_BUFFERS:
            continue
        name = re.sub(r"^pose_estimator\.", "", name)
        for pattern, repl in AUTHORS_NAMES:
            name = re.sub(pattern, repl, name)
        out[name] = value
    return out


def config_of_state_dict(state: dict, heads: int = 8, mlp_ratio: float | None = None) -> DenoiserConfig:
    """The architecture an (our-names) state dict's shapes imply; KeyError when it lacks a
    denoiser's parameters. Heads are not visible in shapes: `heads` is taken as given."""
    _, frames, channels = state["temporal_pos"].shape
    joints = state["spatial_pos"].shape[1]
    depth = len({k.split(".")[1] for k in state if k.startswith("spatial_blocks.")})
    hidden = state["spatial_blocks.0.mlp.fc1.weight"].shape[0]
    return DenoiserConfig(frames=frames, channels=channels, depth=depth, heads=heads, joints=joints,
                          mlp_ratio=mlp_ratio or hidden / channels)


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole rows (dim 0) of a residual branch with probability p."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): half sin, half cos,
    frequencies exp(-log(10000) * i / (dim/2 - 1))."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
    args = t[:, None] * freqs[None, :]
    return torch.cat((args.sin(), args.cos()), dim=-1)


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(t, self.dim)


class Attention(nn.Module):
    """Multi-head self-attention over dim 1 of (N, L, C)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.fused = True  # False: explicit softmax(q k^T / sqrt(d)) v, the reference path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (N, heads, L, C/heads)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
            out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, length, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)); x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class Denoiser(nn.Module):
    """Spatio-temporal transformer predicting x0 (see docs/method.md, 'The denoiser')."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.joint_embed = nn.Linear(2 + 3, c)
        self.spatial_pos = nn.Parameter(torch.zeros(1, cfg.joints, c))
        self.temporal_pos = nn.Parameter(torch.zeros(1, cfg.frames, c))
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(c), nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
        rates = [float(r) for r in torch.linspace(0, cfg.drop_path, cfg.depth)]
        self.spatial_blocks = nn.ModuleList(Block(c, cfg.heads, cfg.mlp_ratio, r) for r in rates)
        self.temporal_blocks = nn.ModuleList(Block(c, cfg.heads, cfg.mlp_ratio, r) for r in rates)
        self.spatial_norm = nn.LayerNorm(c, eps=1e-6)   # one norm shared by all depths
        self.temporal_norm = nn.LayerNorm(c, eps=1e-6)  # likewise
        self.head = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, 3))
        if cfg.input_map not in INPUT_MAPS:
            raise ValueError(f"unknown input_map {cfg.input_map!r}; expected one of {sorted(INPUT_MAPS)}")
        matrix = INPUT_MAPS[cfg.input_map]
        # (J tokens, J inputs) weights; not in the state dict (the config names it).
        self.register_buffer("input_matrix", None if matrix is None else torch.from_numpy(matrix()),
                             persistent=False)
        self._init_weights()

    def _init_weights(self):
        """Truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorms."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_fused_attention(self, fused: bool) -> None:
        for m in self.modules():
            if isinstance(m, Attention):
                m.fused = fused

    def forward(self, x2d: torch.Tensor, x3d: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x2d (B, F, J, 2); x3d (B, F, J, 3) or (B, H, F, J, 3); t (B,). Returns x0 shaped
        like x3d. The joint embedding of the concatenated (2D, 3D) input is computed as its
        2D half once per clip plus its 3D half per hypothesis (the same linear map)."""
        single = x3d.dim() == 4
        if single:
            x3d = x3d.unsqueeze(1)
        b, h, f, j, _ = x3d.shape
        if self.input_matrix is not None:
            x2d = self.input_matrix.to(x2d.dtype) @ x2d                                # (B, F, J, 2)
        cond = F.linear(x2d, self.joint_embed.weight[:, :2], self.joint_embed.bias)   # (B, F, J, C)
        c = cond.shape[-1]
        assert f == self.cfg.frames and j == self.cfg.joints, (
            f"denoiser built for {self.cfg.frames} frames x {self.cfg.joints} joints, got {f} x {j}")

        x = cond.unsqueeze(1) + F.linear(x3d, self.joint_embed.weight[:, 2:])   # (B, H, F, J, C)
        x = x + self.spatial_pos + self.time_mlp(t)[:, None, None, None, :]
        x = self.encode(x.reshape(b * h * f, j, c), b * h)
        out = self.head(x).reshape(b, h, f, j, 3)
        return out[:, 0] if single else out

    def encode(self, x: torch.Tensor, clips: int) -> torch.Tensor:
        """The D spatial/temporal block pairs on embedded tokens (clips * F, J, C) -> same."""
        f, j, c = self.cfg.frames, self.cfg.joints, x.shape[-1]
        for i, (spatial, temporal) in enumerate(zip(self.spatial_blocks, self.temporal_blocks)):
            x = self.spatial_norm(spatial(x))                                   # (clips F, J, C)
            x = x.reshape(clips, f, j, c).transpose(1, 2).reshape(clips * j, f, c)
            if i == 0:
                x = x + self.temporal_pos
            x = self.temporal_norm(temporal(x))                                 # (clips J, F, C)
            x = x.reshape(clips, j, f, c).transpose(1, 2).reshape(clips * f, j, c)
        return x
