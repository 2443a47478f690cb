"""How the multi-view machinery reaches inside diffusers' stock `UNet2DConditionModel`
without forking it:

- `MultiViewSelfAttnProcessor`: set on every self-attention (`attn1`) of the UNet's transformer
  blocks. Views are folded into the batch, [(B*V), N, C]; the processor unfolds them to
  [B, V*N, C] so every token attends to every view's tokens (3D self-attention), reusing the
  layer's own q/k/v/out weights (as MVDream inflates SD's self-attention).
- `DepthWiseAttention` + a forward hook on each `Transformer2DModel`: after the block, each
  latent pixel attends over the D samples of its view's frustum volume at that UNet level and
  the (zero-initialised) result is added to the block's output.
- A forward hook on `unet.time_embedding` adds the camera encoder's per-view embedding to the
  time embedding, so it reaches every resnet of that view.

The hooks read the per-call state from one `MultiViewContext`, which the model fills before
calling the UNet and clears afterwards. The self-attention processors take the view count from
the UNet call's `cross_attention_kwargs={"num_views": V}` instead: diffusers passes those
kwargs into every gradient-checkpointed transformer block, so the recomputation in backward
(`unet.enable_gradient_checkpointing()`, which runs after the context is cleared) attends
across the same views as the forward pass did. Layout: UNet features (B*V, C, h, w), views of
one sample contiguous (view-major within a sample).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


@dataclass
class MultiViewContext:
    num_views: int = 1
    multiview_attention: bool = True
    camera_emb: torch.Tensor | None = None           # (B*V, time_embed_dim)
    frustums: list[torch.Tensor] | None = None       # per level (B*V, C_l, D_l, h_l, w_l)
    active: bool = False

    def clear(self) -> None:
        self.camera_emb, self.frustums, self.active = None, None, False


class MultiViewSelfAttnProcessor:
    """Self-attention over all views' tokens of a sample; plain SDPA attention otherwise."""

    def __init__(self, ctx: MultiViewContext):
        self.ctx = ctx
        self._plain = AttnProcessor2_0()

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 num_views: int | None = None) -> torch.Tensor:
        # `num_views` arrives through the UNet's cross_attention_kwargs (and so also in a
        # checkpointed block's recomputation); without it, the context of the current call.
        V = num_views if num_views is not None else (
            self.ctx.num_views if self.ctx.active else 1)
        if (encoder_hidden_states is not None or V <= 1
                or not self.ctx.multiview_attention):
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attention_mask is not None:
            raise ValueError("multi-view self-attention does not take an attention mask")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            bv, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(bv, c, h * w).transpose(1, 2)
        bv, n, _ = hidden_states.shape
        if bv % V:
            raise ValueError(f"batch {bv} is not a multiple of the {V} views")
        B = bv // V
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        inner = k.shape[-1]
        hd = inner // attn.heads

        def heads(x):  # (B*V, N, inner) -> (B, heads, V*N, hd)
            return x.reshape(B, V * n, attn.heads, hd).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False,
                                             scale=attn.scale)
        out = out.transpose(1, 2).reshape(bv, n, inner).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(bv, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class CrossAttnProcessor(AttnProcessor2_0):
    """Diffusers' SDPA processor for the other attentions; accepts (and ignores) the
    `num_views` kwarg meant for the self-attention processors."""

    def __call__(self, attn: Attention, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 num_views: int | None = None) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask,
                                temb)


class DepthWiseAttention(nn.Module):
    """Each pixel of a (N, C, h, w) feature map attends over the D depth samples of its frustum
    volume (N, C_f, D, h, w); the output projection starts at zero (a residual no-op)."""

    def __init__(self, channels: int, context_channels: int, depth: int, heads: int,
                 head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        self.norm = nn.GroupNorm(groups, channels)
        self.to_q = nn.Linear(channels, inner, bias=False)
        self.to_k = nn.Linear(context_channels, inner, bias=False)
        self.to_v = nn.Linear(context_channels, inner, bias=False)
        self.depth_pos = nn.Parameter(torch.randn(depth, context_channels) * 0.02)
        self.to_out = nn.Linear(inner, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, frustum: torch.Tensor) -> torch.Tensor:
        N, C, h, w = x.shape
        D = frustum.shape[2]
        if frustum.shape[0] != N or frustum.shape[-2:] != (h, w):
            raise ValueError(f"frustum volume {tuple(frustum.shape)} does not match features "
                             f"{tuple(x.shape)}")
        M, H, hd = N * h * w, self.heads, self.head_dim
        q = self.to_q(self.norm(x).permute(0, 2, 3, 1).reshape(M, C)).reshape(M, H, hd)
        f = frustum.permute(0, 3, 4, 2, 1).reshape(M, D, -1) + self.depth_pos.to(frustum.dtype)
        k = self.to_k(f).reshape(M, D, H, hd)
        v = self.to_v(f).reshape(M, D, H, hd)
        att = torch.einsum("mhc,mdhc->mhd", q, k) * hd ** -0.5
        out = torch.einsum("mhd,mdhc->mhc", att.softmax(-1), v).reshape(M, H * hd)
        out = self.to_out(out).reshape(N, h, w, C).permute(0, 3, 1, 2)
        return x + out


def transformer_levels(unet) -> dict[str, tuple[int, int]]:
    """Module path of every Transformer2DModel in the UNet -> (level, channels); level l has
    the latent side / 2**l."""
    n = len(unet.config.block_out_channels)
    found = {}
    for i, blk in enumerate(unet.down_blocks):
        for j, a in enumerate(getattr(blk, "attentions", None) or []):
            found[f"down_blocks.{i}.attentions.{j}"] = (i, a.config.in_channels)
    for j, a in enumerate(getattr(unet.mid_block, "attentions", None) or []):
        found[f"mid_block.attentions.{j}"] = (n - 1, a.config.in_channels)
    for i, blk in enumerate(unet.up_blocks):
        for j, a in enumerate(getattr(blk, "attentions", None) or []):
            found[f"up_blocks.{i}.attentions.{j}"] = (n - 1 - i, a.config.in_channels)
    return found


class _DepthHook:
    def __init__(self, ctx: MultiViewContext, module: DepthWiseAttention, level: int):
        self.ctx, self.module, self.level = ctx, module, level

    def __call__(self, _mod, _args, output):
        if not self.ctx.active or self.ctx.frustums is None:
            return output
        hidden = output[0] if isinstance(output, tuple) else output.sample
        hidden = self.module(hidden, self.ctx.frustums[self.level].to(hidden.dtype))
        if isinstance(output, tuple):
            return (hidden,) + tuple(output[1:])
        output.sample = hidden
        return output


class _TimeEmbHook:
    def __init__(self, ctx: MultiViewContext):
        self.ctx = ctx

    def __call__(self, _mod, _args, output):
        if not self.ctx.active or self.ctx.camera_emb is None:
            return output
        return output + self.ctx.camera_emb.to(output.dtype)


def depth_key(path: str) -> str:
    return path.replace(".", "__")


def install(unet, ctx: MultiViewContext, depth_attention: nn.ModuleDict) -> list:
    """Set the multi-view processors and hooks on `unet`; returns the hook handles."""
    procs = {}
    for name in unet.attn_processors:
        procs[name] = (MultiViewSelfAttnProcessor(ctx) if name.endswith("attn1.processor")
                       else CrossAttnProcessor())
    unet.set_attn_processor(procs)
    handles = [unet.time_embedding.register_forward_hook(_TimeEmbHook(ctx))]
    levels = transformer_levels(unet)
    for path, (level, _c) in levels.items():
        handles.append(unet.get_submodule(path).register_forward_hook(
            _DepthHook(ctx, depth_attention[depth_key(path)], level)))
    return handles
