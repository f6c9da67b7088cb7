"""Early convolutions (LeViT / RepViT / MobileViT / MobileNet stems) or EdgeViT's 4x4 patchify
(the official `patch_embed1`: a 4x4 stride-4 conv with bias, then LayerNorm over channels)."""
from __future__ import annotations

from torch import nn

from nas.arch.schema import StemSpec
from nas.blocks.common import ConvBNAct, PatchEmbed


def stem_channels(spec: StemSpec) -> list[int]:
    """Channels double layer by layer up to `spec.channels` (16, 32, 64, 128 for depth 4)."""
    return [max(8, spec.channels >> (spec.depth - 1 - i)) for i in range(spec.depth)]


class Stem(nn.Sequential):
    def __init__(self, spec: StemSpec, in_channels: int = 3) -> None:
        layers: list[nn.Module] = []
        if spec.kernel == 4:
            layers.append(PatchEmbed(in_channels, spec.channels, patch=4))
        else:
            cin = in_channels
            chans = stem_channels(spec)
            for i, cout in enumerate(chans):
                stride = 2 if i < spec.strides else 1
                act = spec.act if (i < len(chans) - 1 or spec.last_act) else None
                layers.append(ConvBNAct(cin, cout, 3, stride, act=act))
                cin = cout
        super().__init__(*layers)
        self.out_channels = spec.channels
