"""The seed's residual 1-D CNN over the 178 hand-made features, ported from Keras.

The seed notebook builds (Keras, channels last, input ``(178, 1)``)::

    x = Dense(256, relu)(inputs)                   # per position: 1 -> 256
    x = residual_block(x, 16, 2); (32, 2); (32, 2); (64, 3); (64, 3); (128, 3); (128, 3)
    x = AveragePooling1D(pool_size=3, strides=3)(x)  # once, after the last block: 178 -> 59
    x = Flatten(); Dense(256, relu); Dense(128, relu); Dense(6, softmax)

where ``residual_block`` is ``s = Conv1D(f, 1)(x)``; ``(convs - 1) x [Conv1D(f, 3, same),
relu]``; ``Conv1D(f, 3, same)``; ``relu(x + s)`` — with no pooling inside the block (a pool
per block would shrink 178 to 0 after five blocks). Trained with Adam(lr=1e-4), batch 32,
best-validation-accuracy checkpoint, early stopping.

Here the softmax is not part of ``forward`` (training uses logits); :func:`ser.models.export_onnx`
appends it so the exported graph outputs probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

#: (filters, convs) of the seven residual blocks.
BLOCKS: tuple[tuple[int, int], ...] = ((16, 2), (32, 2), (32, 2), (64, 3), (64, 3), (128, 3),
                                       (128, 3))
DENSE_IN = 256
POOL = 3


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, filters: int, convs: int):
        super().__init__()
        self.shortcut = nn.Conv1d(in_channels, filters, 1)
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(convs - 1):
            layers += [nn.Conv1d(channels, filters, 3, padding=1), nn.ReLU()]
            channels = filters
        layers.append(nn.Conv1d(channels, filters, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class SeedResNet1D(nn.Module):
    """Input ``(batch, n_features)`` (normalised); output logits ``(batch, n_classes)``.

    >>> SeedResNet1D()(torch.zeros(2, 178)).shape
    torch.Size([2, 6])
    """

    def __init__(self, n_features: int = 178, n_classes: int = 6):
        super().__init__()
        self.n_features = n_features
        self.dense_in = nn.Linear(1, DENSE_IN)
        blocks = []
        channels = DENSE_IN
        for filters, convs in BLOCKS:
            blocks.append(ResidualBlock(channels, filters, convs))
            channels = filters
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AvgPool1d(POOL, stride=POOL)
        flat = channels * (n_features // POOL)
        self.head = nn.Sequential(
            nn.Linear(flat, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, F) -> (B, F, 1) -> Dense per position -> (B, F, 256) -> channels first.
        x = torch.relu(self.dense_in(x.unsqueeze(-1))).transpose(1, 2)
        x = self.pool(self.blocks(x))
        # Keras flattens channels-last (position-major); keep that order for fidelity.
        return self.head(x.transpose(1, 2).flatten(1))
