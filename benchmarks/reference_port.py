"""A straightforward PixelCNN++ written the way the widely used PyTorch port writes it, for
side-by-side benchmarks: ``nn.ZeroPad2d`` before every shifted convolution, the old hook-based
``torch.nn.utils.weight_norm``, ``nn.Dropout2d`` in the gated blocks, network-in-network layers
as ``nn.Linear`` on channels-last permuted activations, three resolutions, inputs as floats in
``[-1, 1]`` with the channel of ones, and the DMoL loss of ``likelihood.py``'s straightforward
implementation. Same architecture and parameter count as ``pixelcnnpp.autoregressive.PixelCNNPP``
with ``num_stages=3``.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torch.nn.utils import weight_norm


def concat_elu(x):
    return F.elu(torch.cat([x, -x], dim=1))


def down_shift(x):
    return nn.ZeroPad2d((0, 0, 1, 0))(x[:, :, :-1, :])


def right_shift(x):
    return nn.ZeroPad2d((1, 0, 0, 0))(x[:, :, :, :-1])


def wn(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return weight_norm(module)


class Nin(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.lin = wn(nn.Linear(dim_in, dim_out))
        self.dim_out = dim_out

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        shape = x.size()
        out = self.lin(x.contiguous().view(-1, shape[3]))
        return out.view(*shape[:3], self.dim_out).permute(0, 3, 1, 2)


class DownShiftedConv(nn.Module):
    def __init__(self, c_in, c_out, size=(2, 3), stride=(1, 1), shift_down=False):
        super().__init__()
        self.conv = wn(nn.Conv2d(c_in, c_out, size, stride))
        self.pad = nn.ZeroPad2d(((size[1] - 1) // 2, (size[1] - 1) // 2, size[0] - 1, 0))
        self.shift_down = shift_down

    def forward(self, x):
        x = self.conv(self.pad(x))
        return down_shift(x) if self.shift_down else x


class DownRightShiftedConv(nn.Module):
    def __init__(self, c_in, c_out, size=(2, 2), stride=(1, 1), shift_right=False):
        super().__init__()
        self.conv = wn(nn.Conv2d(c_in, c_out, size, stride))
        self.pad = nn.ZeroPad2d((size[1] - 1, 0, size[0] - 1, 0))
        self.shift_right = shift_right

    def forward(self, x):
        x = self.conv(self.pad(x))
        return right_shift(x) if self.shift_right else x


class DownShiftedDeconv(nn.Module):
    def __init__(self, c_in, c_out, size=(2, 3)):
        super().__init__()
        self.deconv = wn(nn.ConvTranspose2d(c_in, c_out, size, stride=2, output_padding=1))
        self.size = size

    def forward(self, x):
        x = self.deconv(x)
        h, w = x.shape[2:]
        pad = (self.size[1] - 1) // 2
        return x[:, :, : h - self.size[0] + 1, pad : w - pad]


class DownRightShiftedDeconv(nn.Module):
    def __init__(self, c_in, c_out, size=(2, 2)):
        super().__init__()
        self.deconv = wn(nn.ConvTranspose2d(c_in, c_out, size, stride=2, output_padding=1))
        self.size = size

    def forward(self, x):
        x = self.deconv(x)
        h, w = x.shape[2:]
        return x[:, :, : h - self.size[0] + 1, : w - self.size[1] + 1]


class GatedResnet(nn.Module):
    def __init__(self, filters, conv, skip=0, dropout=0.5):
        super().__init__()
        self.conv_input = conv(2 * filters, filters)
        self.nin_skip = Nin(2 * skip * filters, filters) if skip else None
        self.dropout = nn.Dropout2d(dropout)
        self.conv_out = conv(2 * filters, 2 * filters)

    def forward(self, og_x, a=None):
        x = self.conv_input(concat_elu(og_x))
        if a is not None:
            x = x + self.nin_skip(concat_elu(a))
        x = self.conv_out(self.dropout(concat_elu(x)))
        a, b = torch.chunk(x, 2, dim=1)
        return og_x + a * torch.sigmoid(b)


class PortPixelCNN(nn.Module):
    """``forward(x in [-1, 1]) -> [B, K * (1 + 2C + C(C-1)/2), H, W]`` mixture parameters."""

    def __init__(
        self, nr_resnet=5, nr_filters=80, nr_logistic_mix=10, input_channels=3, dropout=0.5
    ):
        super().__init__()
        f = nr_filters
        self.up_u = nn.ModuleList(
            nn.ModuleList(GatedResnet(f, DownShiftedConv, 0, dropout) for _ in range(nr_resnet))
            for _ in range(3)
        )
        self.up_ul = nn.ModuleList(
            nn.ModuleList(
                GatedResnet(f, DownRightShiftedConv, 1, dropout) for _ in range(nr_resnet)
            )
            for _ in range(3)
        )
        down = [nr_resnet, nr_resnet + 1, nr_resnet + 1]
        self.down_u = nn.ModuleList(
            nn.ModuleList(GatedResnet(f, DownShiftedConv, 1, dropout) for _ in range(n))
            for n in down
        )
        self.down_ul = nn.ModuleList(
            nn.ModuleList(GatedResnet(f, DownRightShiftedConv, 2, dropout) for _ in range(n))
            for n in down
        )
        self.downsize_u = nn.ModuleList(DownShiftedConv(f, f, stride=(2, 2)) for _ in range(2))
        self.downsize_ul = nn.ModuleList(
            DownRightShiftedConv(f, f, stride=(2, 2)) for _ in range(2)
        )
        self.upsize_u = nn.ModuleList(DownShiftedDeconv(f, f) for _ in range(2))
        self.upsize_ul = nn.ModuleList(DownRightShiftedDeconv(f, f) for _ in range(2))
        c = input_channels
        self.u_init = DownShiftedConv(c + 1, f, (2, 3), shift_down=True)
        self.ul_init = nn.ModuleList(
            [
                DownShiftedConv(c + 1, f, (1, 3), shift_down=True),
                DownRightShiftedConv(c + 1, f, (2, 1), shift_right=True),
            ]
        )
        per_mix = 1 + 2 * c + c * (c - 1) // 2
        self.nin_out = Nin(f, per_mix * nr_logistic_mix)

    def forward(self, x):
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        u_list = [self.u_init(x)]
        ul_list = [self.ul_init[0](x) + self.ul_init[1](x)]
        for i in range(3):
            for block_u, block_ul in zip(self.up_u[i], self.up_ul[i], strict=True):
                u_list.append(block_u(u_list[-1]))
                ul_list.append(block_ul(ul_list[-1], a=u_list[-1]))
            if i != 2:
                u_list.append(self.downsize_u[i](u_list[-1]))
                ul_list.append(self.downsize_ul[i](ul_list[-1]))
        u, ul = u_list.pop(), ul_list.pop()
        for i in range(3):
            for block_u, block_ul in zip(self.down_u[i], self.down_ul[i], strict=True):
                u = block_u(u, a=u_list.pop())
                ul = block_ul(ul, a=torch.cat([u, ul_list.pop()], dim=1))
            if i != 2:
                u, ul = self.upsize_u[i](u), self.upsize_ul[i](ul)
        return self.nin_out(F.elu(ul))
