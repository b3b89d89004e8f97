"""PixelCNN++ assembled from registered blocks: causal layers, blocks, model, sampling, checks.

>>> from pixelcnnpp.autoregressive import PixelCNNPP, PixelCNNConfig, check_causality
"""

from .attention import AttentionResnet
from .blocks import (
    BLOCKS,
    GatedResnet,
    block_graph_breaks,
    build_block,
    get_block,
    list_blocks,
    register_block,
)
from .causality import CausalityError, check_causality, verify_block
from .config import PixelCNNConfig
from .gated_pixelcnn import GatedPixelCNN
from .layers import (
    NONLINEARITIES,
    Dropout,
    NetworkInNetwork,
    Nonlinearity,
    ShiftedConv2d,
    ShiftedConvTranspose2d,
    concat_elu,
    down_shift,
    right_shift,
)
from .model import PixelCNNPP
from .precision import exact_float32, set_tf32, tf32
from .sampling import METHODS as SAMPLING_METHODS

__all__ = [
    "BLOCKS",
    "NONLINEARITIES",
    "SAMPLING_METHODS",
    "AttentionResnet",
    "CausalityError",
    "Dropout",
    "GatedPixelCNN",
    "GatedResnet",
    "NetworkInNetwork",
    "Nonlinearity",
    "PixelCNNConfig",
    "PixelCNNPP",
    "ShiftedConv2d",
    "ShiftedConvTranspose2d",
    "block_graph_breaks",
    "build_block",
    "check_causality",
    "concat_elu",
    "down_shift",
    "exact_float32",
    "get_block",
    "list_blocks",
    "register_block",
    "right_shift",
    "set_tf32",
    "tf32",
    "verify_block",
]
