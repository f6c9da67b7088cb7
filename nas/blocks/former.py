"""Mobile-Former stage (Chen et al., "Mobile-Former: Bridging MobileNet and Transformer", CVPR 2022).

A MobileNet path (the feature map x, B x C x H x W) and a tiny transformer path (M learnable global
tokens z, B x M x d, M <= 6) run in parallel and talk through a two-way bridge. One block:

    z = Mobile->Former(x, z)    tokens query the feature map; keys = values = the raw map (no
                                projections on the many pixels: the paper's "light-weight" bridge)
    z = Former(z)               post-norm self-attention among the tokens + FFN (ratio 2)
    y = Mobile(x | z)           inverted residual whose activations are dynamic ReLUs, their
                                coefficients generated from the first token by a 2-layer MLP
    y = y + x                   (stride 1, same width)
    x = y + Former->Mobile(y, z)  pixels query the tokens; the query is the raw map again

The stride-2 block (Mobile-Former-down) swaps the mobile sub-block for DW(stride 2, expand) -> PW ->
DW(expand) -> PW, so that both costly 1x1 convs run after downsampling. The paper's stage 1,
"bneck-lite" (DW-expand then PW, no bridge), is a `lite` stage of this family.

Where the paper is silent the official release (github.com/AAboys/MobileFormer, the code behind the
published figures) decides: the former's attention projects only its queries (keys = values = the
tokens), the Mobile->Former output is scaled per channel by a token-generated gate (`gbr_dynamic`),
dynamic ReLUs have two slopes and no biases, and the network's last block is followed by one more
Mobile->Former bridge (`closing_bridge`) before the classifier reads token 0.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from nas.arch.stages import FormerStage
from nas.blocks import StageContext
from nas.blocks.common import ConvBN, ConvBNAct, channel_shuffle, make_divisible
from nas.blocks.sharing import Chunks, SharingRule
from nas.blocks.units import Flow, Unit, chw, halved


class PointwiseConv(nn.Module):
    """1x1 conv-BN (linear), grouped and (unless `shuffle` is false: the shuffle sits before it)
    shuffled when `groups` > 1. A group count that does not divide both widths (a preceding stage
    of another family may have any width) falls back to the largest one that does."""

    def __init__(self, cin: int, cout: int, groups: int = 1, shuffle: bool = True) -> None:
        super().__init__()
        self.groups = math.gcd(groups, cin, cout)
        self.shuffle_groups = self.groups if shuffle else 1
        self.conv = ConvBN(cin, cout, 1, groups=self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(self.conv(x), self.shuffle_groups)


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle as a layer. After a depthwise conv that multiplies `groups` input
    channels, it reorders the copies so that each group of the next grouped 1x1 sees every input
    channel (the official Mobile-Former-26M: `ChannelShuffle(inp)` after the expanding DW)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)


def _dw_shuffle(channels: int, on: bool) -> nn.Module:
    return ChannelShuffle(channels) if on else nn.Identity()


class DynamicReLU(nn.Module):
    """Dynamic ReLU driven by the former: y = max(a1 * x, a2 * x) per channel, where a1 in [0, 2]
    and a2 in [-1, 1] come from token 0 through Linear-ReLU-Linear-h_sigmoid (the paper's theta,
    replacing DY-ReLU's pooled-feature input by the first global token; reduction 4, two linear
    pieces, no offsets, as the release)."""

    # The generator's last Linear emits [a1 | a2] (one slope each per channel): each half takes
    # its own prefix.
    weight_sharing: ClassVar[dict[str, SharingRule]] = {"coeffs.2.weight": Chunks(dim=0, parts=2),
                                                        "coeffs.2.bias": Chunks(dim=0, parts=2)}

    def __init__(self, channels: int, token_dim: int, reduction: int = 4) -> None:
        super().__init__()
        squeeze = max(1, token_dim // reduction)
        self.coeffs = nn.Sequential(nn.Linear(token_dim, squeeze), nn.ReLU(),
                                    nn.Linear(squeeze, 2 * channels), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        a = self.coeffs(tokens[:, 0])[..., None, None]  # B x 2C x 1 x 1, in [0, 1]
        a1, a2 = a.chunk(2, dim=1)
        return torch.maximum(x * (2 * a1), x * (2 * a2 - 1))


class MobileToFormer(nn.Module):
    """Light cross-attention local -> global (paper eq. 1): tokens are the queries (one projection
    W_q: d -> C, split into `heads`), the feature map itself is key and value (no W_k/W_v on the
    L = HW positions), the aggregate is scaled by a token-generated per-channel gate in [0, 2],
    projected back to d (W_o), added to the tokens and post-normalised."""

    def __init__(self, channels: int, token_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = math.gcd(heads, channels)  # a preceding stage of another family sets `channels`
        self.scale = (channels // self.heads) ** -0.5
        self.q = nn.Linear(token_dim, channels)
        self.gate = nn.Sequential(nn.Linear(token_dim, channels), nn.Hardsigmoid())
        self.proj = nn.Linear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = self.q(tokens).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # B x h x M x c
        kv = x.flatten(2).unflatten(1, (self.heads, -1))  # B x h x c x L
        attn = ((q @ kv) * self.scale).softmax(dim=-1)  # B x h x M x L: over pixels
        out = (attn @ kv.transpose(-1, -2)).transpose(1, 2).flatten(2)  # B x M x C
        out = out * (2 * self.gate(tokens))
        return self.norm(tokens + self.proj(out))


class Former(nn.Module):
    """The former sub-block: a post-norm transformer layer (ViT-style post-LN as the paper says)
    over the M tokens, FFN ratio `mlp_ratio` (the paper uses 2 instead of 4 to save compute).
    Attention projects the queries only, keys = values = the tokens, then an output projection:
    the release's form, whose parameter count the published figures include."""

    def __init__(self, token_dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (token_dim // heads) ** -0.5
        self.q = nn.Linear(token_dim, token_dim)
        self.proj = nn.Linear(token_dim, token_dim)
        self.norm1 = nn.LayerNorm(token_dim)
        hidden = round(token_dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(token_dim, hidden), nn.GELU(), nn.Linear(hidden, token_dim))
        self.norm2 = nn.LayerNorm(token_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.q(tokens).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # B x h x M x c
        kv = tokens.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # B x h x M x c
        attn = ((q @ kv.transpose(-1, -2)) * self.scale).softmax(dim=-1)  # B x h x M x M
        out = (attn @ kv).transpose(1, 2).flatten(2)  # B x M x d
        tokens = self.norm1(tokens + self.proj(out))
        return self.norm2(tokens + self.ffn(tokens))


class FormerToMobile(nn.Module):
    """Light cross-attention global -> local (paper eq. 3): every pixel is a query as it is (no
    W_q on the map), the tokens give keys and values through W_k, W_v: d -> C; the result is
    added to the feature map."""

    def __init__(self, channels: int, token_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (channels // heads) ** -0.5
        self.k = nn.Linear(token_dim, channels)
        self.v = nn.Linear(token_dim, channels)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = x.flatten(2).unflatten(1, (self.heads, -1)).transpose(-1, -2)  # B x h x L x c
        k = self.k(tokens).unflatten(-1, (self.heads, -1)).permute(0, 2, 3, 1)  # B x h x c x M
        v = self.v(tokens).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # B x h x M x c
        attn = ((q @ k) * self.scale).softmax(dim=-1)  # B x h x L x M: over tokens
        out = (attn @ v).transpose(-1, -2)  # B x h x c x L
        return x + out.reshape_as(x)


class MobileSubBlock(nn.Module):
    """Stride-1 mobile sub-block: 1x1 expand -> dynamic ReLU -> kxk DW -> dynamic ReLU -> 1x1
    project (linear). Hidden width round(in * expand), as the release (no rounding to 8)."""

    def __init__(self, cin: int, cout: int, expand: float, kernel: int, token_dim: int, groups: int) -> None:
        super().__init__()
        hidden = make_divisible(cin * expand, groups)
        self.expand = PointwiseConv(cin, hidden, groups)
        self.act1 = DynamicReLU(hidden, token_dim)
        self.dw = ConvBN(hidden, hidden, kernel, groups=hidden)
        self.act2 = DynamicReLU(hidden, token_dim)
        self.project = PointwiseConv(hidden, cout, groups)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.expand(x), tokens)
        return self.project(self.act2(self.dw(x), tokens))


class DownMobileSubBlock(nn.Module):
    """Mobile-Former-down's mobile sub-block: kxk DW stride 2 expanding by `down_expand` ->
    dynamic ReLU -> 1x1 PW to `cout` (linear) -> kxk DW expanding by `down_expand2` -> dynamic
    ReLU -> 1x1 PW, the last pair with a residual from the first PW's output. The channels grow
    inside depthwise convs and both 1x1 convs run at the reduced resolution. Grouped 1x1s are
    shuffled after them, or with `shuffle_after_dw` (the release's 26M, DnaBlock3) between each DW
    and its activation instead: `shuffle1`, `shuffle2`."""

    def __init__(self, cin: int, cout: int, down_expand: int, down_expand2: int, kernel: int,
                 token_dim: int, groups: int, shuffle_after_dw: bool = False) -> None:
        super().__init__()
        self.dw1 = ConvBN(cin, cin * down_expand, kernel, 2, groups=cin)
        self.shuffle1 = _dw_shuffle(cin, shuffle_after_dw)
        self.act1 = DynamicReLU(cin * down_expand, token_dim)
        self.pw1 = PointwiseConv(cin * down_expand, cout, groups, shuffle=not shuffle_after_dw)
        self.dw2 = ConvBN(cout, cout * down_expand2, kernel, groups=cout)
        self.shuffle2 = _dw_shuffle(cout, shuffle_after_dw)
        self.act2 = DynamicReLU(cout * down_expand2, token_dim)
        self.pw2 = PointwiseConv(cout * down_expand2, cout, groups, shuffle=not shuffle_after_dw)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.pw1(self.act1(self.shuffle1(self.dw1(x)), tokens))
        return x + self.pw2(self.act2(self.shuffle2(self.dw2(x)), tokens))


class MobileFormerBlock(nn.Module):
    """One Mobile-Former block (see the module docstring for the order of its four parts)."""

    def __init__(self, cin: int, cout: int, stride: int, spec: FormerStage) -> None:
        super().__init__()
        d = spec.token_dim
        self.mobile_to_former = MobileToFormer(cin, d, spec.bridge_heads)
        self.former = Former(d, spec.heads, spec.mlp_ratio)
        self.mobile: nn.Module = (
            DownMobileSubBlock(cin, cout, spec.down_expand, spec.down_expand2, spec.kernel, d, spec.groups,
                               spec.shuffle_after_dw)
            if stride == 2 else MobileSubBlock(cin, cout, spec.expand, spec.kernel, d, spec.groups))
        self.use_residual = stride == 1 and cin == cout
        self.former_to_mobile = FormerToMobile(cout, d, spec.bridge_heads)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.former(self.mobile_to_former(x, tokens))
        y = self.mobile(x, tokens)
        if self.use_residual:
            y = y + x
        return self.former_to_mobile(y, tokens), tokens


class TokenEntry(nn.Module):
    """Where the global tokens enter a stage. The network's first former stage owns them: M x d
    learnable vectors, randomly initialised (N(0, 1), as the release's nn.Embedding), shared by
    every image. A later stage takes the incoming tokens, maps them to its `token_dim` with a
    Linear when the dimension changes, and keeps the first `tokens` of them (token 0 feeds the
    classifier) or appends learnable ones when it wants more."""

    def __init__(self, tokens: int, token_dim: int, in_dim: int | None, in_tokens: int | None) -> None:
        super().__init__()
        incoming = 0 if in_dim is None else (in_tokens or tokens)
        self.keep = min(tokens, incoming)  # incoming tokens that go on
        self.truncate = incoming > tokens
        self.proj: nn.Module = nn.Linear(in_dim, token_dim) if in_dim not in (None, token_dim) else nn.Identity()
        self.extra = nn.Parameter(torch.randn(tokens - self.keep, token_dim)) if tokens > self.keep else None

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.keep:
            parts.append(self.proj(tokens[:, :self.keep] if self.truncate else tokens))
        if self.extra is not None:  # one copy per image: the same learned priors for every input
            parts.append(self.extra.expand(x.shape[0], -1, -1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class MobileFormerStage(nn.Module):
    """`depth` Mobile-Former blocks at `width`; the first carries the stride (Mobile-Former-down
    when 2) and the width change. forward(x, tokens) -> (x, tokens)."""

    uses_tokens = True

    def __init__(self, spec: FormerStage, ctx: StageContext) -> None:
        super().__init__()
        self.token_dim = spec.token_dim
        self.out_channels = spec.width
        self.entry = TokenEntry(spec.tokens, spec.token_dim, ctx.token_dim, ctx.num_tokens)
        self.blocks = nn.ModuleList(
            MobileFormerBlock(ctx.in_channels if i == 0 else spec.width, spec.width,
                              spec.stride if i == 0 else 1, spec)
            for i in range(spec.depth))
        self.closing = MobileToFormer(spec.width, spec.token_dim, spec.bridge_heads) \
            if spec.closing_bridge else None

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.entry(x, tokens)
        for block in self.blocks:
            x, tokens = block(x, tokens)
        if self.closing is not None:
            tokens = self.closing(x, tokens)
        return x, tokens


class LiteBottleneck(nn.Module):
    """bneck-lite (from MicroNet, the paper's stage-1 block): a kxk depthwise conv that multiplies
    the channels by `expand` (ReLU6), then a linear 1x1 projection; residual when the shape is
    kept. No bridge: the global tokens are not touched. A grouped projection is shuffled after it,
    or with `shuffle_after_dw` (the release's 26M) before it, after the ReLU6: `shuffle`."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, kernel: int, groups: int,
                 shuffle_after_dw: bool = False) -> None:
        super().__init__()
        self.dw = ConvBNAct(cin, cin * expand, kernel, stride, groups=cin, act="relu6")
        self.shuffle = _dw_shuffle(cin, shuffle_after_dw)
        self.project = PointwiseConv(cin * expand, cout, groups, shuffle=not shuffle_after_dw)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.shuffle(self.dw(x)))
        return x + y if self.use_residual else y


class LiteStage(nn.Sequential):
    """`depth` bneck-lite blocks; a plain forward(x) stage (tokens flow past it)."""

    def __init__(self, spec: FormerStage, in_channels: int) -> None:
        super().__init__(*(
            LiteBottleneck(in_channels if i == 0 else spec.width, spec.width, spec.stride if i == 0 else 1,
                           int(spec.expand), spec.kernel, spec.groups, spec.shuffle_after_dw)
            for i in range(spec.depth)))
        self.out_channels = spec.width


def build_stage(spec: FormerStage, ctx: StageContext) -> nn.Module:
    if spec.lite:
        return LiteStage(spec, ctx.in_channels)
    return MobileFormerStage(spec, ctx)


UNIT_OPS = {"former.entry": TokenEntry, "former.m2f": MobileToFormer, "former.former": Former,
            "former.mobile": MobileSubBlock, "former.down": DownMobileSubBlock, "former.f2m": FormerToMobile,
            "former.lite": LiteBottleneck}


def stage_units(spec: FormerStage, ctx: StageContext) -> tuple[list[Unit], Flow]:
    """Lite stages: one unit per bneck-lite. Mobile-Former stages: the token entry, then per block
    its four parts (Mobile->Former, Former, mobile sub-block, Former->Mobile), then the closing
    bridge; the residual addition of a stride-1 block is not a unit."""
    cin, size, d = ctx.in_channels, ctx.in_size, spec.token_dim
    # a field added after v1 joins a unit's key only when set, so the keys tables hold stay valid
    shuffle = {"shuffle_after_dw": True} if spec.shuffle_after_dw else {}
    units: list[Unit] = []
    if spec.lite:
        for i in range(spec.depth):
            stride = spec.stride if i == 0 else 1
            units.append(Unit.make("former.lite", [chw(cin, size)], cin=cin, cout=spec.width, stride=stride,
                                   expand=int(spec.expand), kernel=spec.kernel, groups=spec.groups, **shuffle))
            cin, size = spec.width, halved(size) if stride == 2 else size
        return units, Flow(spec.width, size, ctx.token_dim, ctx.num_tokens)
    tokens = (spec.tokens, d)
    # The mobile sub-blocks read token 0 only (dynamic ReLU): their cost does not depend on the
    # token count, so their units are keyed on one token. The entry only reads x's batch size.
    first_token = (1, d)
    incoming = None if ctx.token_dim is None else (ctx.num_tokens or spec.tokens, ctx.token_dim)
    units.append(Unit.make("former.entry", [(1, 1, 1), incoming], tokens=spec.tokens,
                           token_dim=d, in_dim=ctx.token_dim, in_tokens=ctx.num_tokens))
    for i in range(spec.depth):
        x = chw(cin, size)
        units.append(Unit.make("former.m2f", [x, tokens], channels=cin, token_dim=d, heads=spec.bridge_heads))
        units.append(Unit.make("former.former", [tokens], token_dim=d, heads=spec.heads, mlp_ratio=spec.mlp_ratio))
        if i == 0 and spec.stride == 2:
            units.append(Unit.make("former.down", [x, first_token], cin=cin, cout=spec.width,
                                   down_expand=spec.down_expand, down_expand2=spec.down_expand2, kernel=spec.kernel,
                                   token_dim=d, groups=spec.groups, **shuffle))
            size = halved(size)
        else:
            units.append(Unit.make("former.mobile", [x, first_token], cin=cin, cout=spec.width, expand=spec.expand,
                                   kernel=spec.kernel, token_dim=d, groups=spec.groups))
        cin = spec.width
        units.append(Unit.make("former.f2m", [chw(cin, size), tokens], channels=cin, token_dim=d,
                               heads=spec.bridge_heads))
    if spec.closing_bridge:
        units.append(Unit.make("former.m2f", [chw(cin, size), tokens], channels=cin, token_dim=d,
                               heads=spec.bridge_heads))
    return units, Flow(spec.width, size, d, spec.tokens)
