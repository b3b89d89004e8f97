"""The Gated PixelCNN layer (van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves, Kavukcuoglu
2016, "Conditional Image Generation with PixelCNN Decoders"), registered as ``gated_pixelcnn``.

The paper's layer (its Figure 2) runs a vertical stack ``v`` and a horizontal stack ``h``, each
gated as in its eq. (2), conditioned as in its eq. (4)::

    y = tanh(W_f * x + V_f^T c) . sigmoid(W_g * x + V_g^T c)

    v_pre = W_v * v                                     # n x n conv on the rows above (2p maps)
    v_out = tanh(v_pre_f + V_f c) . sigmoid(v_pre_g + V_g c)
    h_pre = W_h * h + W_link v_pre                      # 1 x n conv on the row + the v-to-h link
    h_out = h + W_o (tanh(h_pre_f + V_f c) . sigmoid(h_pre_g + V_g c))    # residual on h only

Fitted to this model's two streams (``u`` = vertical stack, ``ul`` = horizontal stack):

- The streams are already shifted (``u`` at ``(i, j)`` summarises the rows above ``i``), so the
  paper's "shift v down by one row before the link" is done once by the model, and a block may
  read its own position. ``n = 3``: ``W_v`` is a 2x3 down-shifted conv (the paper's
  ``(n//2 + 1) x n``), ``W_h`` a 1x2 down-right-shifted conv (``1 x (n//2 + 1)``).
- The link: on ``ul`` the ``skip`` input is the ``u`` stream at the same position, so
  ``W_link`` is a 1x1 layer (``NetworkInNetwork``) on ``skip``, added inside the gates. The block
  contract hands the ``ul`` block the ``u`` block's *output* (``v_out``), not its
  pre-activation ``v_pre``; the link reads the gated features instead of the paper's 2p maps.
  In the down pass ``skip`` also carries the up pass's ``ul`` (the model's U-Net short-cut); it
  goes through the same 1x1 layer. On ``u`` in the down pass, the up pass's ``u`` enters the
  vertical gate through a 1x1 layer likewise.
- ``dropout`` (not in the paper) acts on the horizontal residual branch, before ``W_o``, where
  ``gated_resnet`` has it; the vertical stack has no residual, so it has none.
- The model's ``nonlinearity`` is not used: the gate is the layer's nonlinearity.

Why this design: a PixelCNN of masked convolutions alone has a blind spot (pixels above and to
the right that no output ever sees); splitting it into a vertical stack that sees every row
above and a horizontal stack that sees the row to the left removes it, and the multiplicative
gate closed most of the gap to PixelRNN (the paper's Table 1, CIFAR-10: 3.03 bits/dim against
PixelCNN's 3.14 and PixelRNN's 3.00). It has one convolution per stream where ``gated_resnet`` has two, and a 1x2 kernel on
``ul`` where ``gated_resnet`` has 2x2: fewer parameters and multiply-adds per block.

Axis key: ``B`` batch, ``F`` channels, ``S`` skip channels, ``D`` conditioning size, ``H, W``.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import register_block
from .layers import Dropout, NetworkInNetwork, ShiftedConv2d


@register_block("gated_pixelcnn")
class GatedPixelCNN(nn.Module):
    """One Gated PixelCNN layer on one stream: ``[B, F, H, W] -> [B, F, H, W]``.

    ``u`` (vertical stack): ``tanh(a) * sigmoid(b)`` with ``[a, b] = conv_2x3(x) [+ nin(skip)]
    [+ linear(cond)]``. ``ul`` (horizontal stack): ``x + nin_out(dropout(tanh(a) *
    sigmoid(b)))`` with ``[a, b] = conv_1x2(x) [+ nin(skip)] [+ linear(cond)]``, ``skip``
    holding the ``u`` stream at the same position (the vertical-to-horizontal link).
    """

    def __init__(
        self,
        channels: int,
        stream: str,
        skip_channels: int = 0,
        dropout: float = 0.0,
        cond_dim: int | None = None,
        weight_norm: bool = True,
    ):
        super().__init__()
        self.stream, self.skip_channels, self.cond_dim = stream, skip_channels, cond_dim
        kind, kernel = ("down", (2, 3)) if stream == "u" else ("down_right", (1, 2))
        self.conv = ShiftedConv2d(channels, 2 * channels, kernel, kind, weight_norm=weight_norm)
        self.link = (
            NetworkInNetwork(skip_channels, 2 * channels, weight_norm) if skip_channels else None
        )
        self.cond = nn.Linear(cond_dim, 2 * channels, bias=False) if cond_dim else None
        if self.cond is not None:
            nn.init.normal_(self.cond.weight, 0.0, 0.05)
        if stream == "ul":
            self.dropout = Dropout(dropout)
            self.out = NetworkInNetwork(channels, channels, weight_norm, init_scale=0.1)
        else:
            self.dropout = self.out = None
        # One conv per block: a 2x3 down conv reaches row i-1, columns j-1..j+1 (u); a 1x2
        # down-right conv only column j-1 of row i (ul). The 1x1 layers reach nothing further.
        self.incremental_context = (1, 1, 1) if stream == "u" else (0, 1, 0)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        pre = self.conv(x)  # [B, 2F, H, W]: W_v * v, or W_h * h
        if self.link is not None:
            pre = pre + self.link(skip)  # the v-to-h link on ul; the up pass's u on u
        if self.cond is not None:
            pre = pre + self.cond(cond)[:, :, None, None]  # V^T c, inside both gates
        a, b = pre.chunk(2, dim=1)
        gated = torch.tanh(a) * torch.sigmoid(b)  # eq. (2)/(4)
        if self.out is None:
            return gated  # the vertical stack: no residual
        return x + self.out(self.dropout(gated))  # the horizontal stack's residual
