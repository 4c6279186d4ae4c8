"""A small log-mel CNN for speech emotion, sized for fast CPU inference.

Input ``(batch, n_mels, frames)`` of normalised log-mel energies, any number of frames.
Two strided 2-D conv stages learn local time-frequency patterns (robust to small pitch shifts),
the frequency axis is then folded into channels and two 1-D conv stages model time; mean
and standard deviation pooling over time make the network length-independent, so the ONNX
export keeps a dynamic time axis. About 0.4 M parameters; a 3 s clip costs ~20 M
multiply-adds.

With ``utt_norm`` the network first removes each clip's own per-band mean and divides by its
per-band standard deviation over time (inside the graph, so the ONNX model does it too): the
recording's channel and level no longer reach the classifier, which helped most on corpora
recorded in different rooms (docs/RESULTS.md). One clip is all it needs, so it is legitimate at
inference; the training-set normalisation applied before it becomes nearly irrelevant.

Training-time regularisation (SpecAugment masks) lives in :mod:`ser.training`, not here, so
the exported graph is the plain forward pass.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv2d(cin: int, cout: int) -> nn.Sequential:
    # Strided convolutions instead of max-pooling: pooling layers dominated CPU time.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


def _conv1d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm1d(cout),
                         nn.ReLU())


class LogMelCNN(nn.Module):
    """Logits ``(batch, n_classes)`` from ``(batch, n_mels, frames)``.

    >>> LogMelCNN(n_mels=64)(torch.zeros(2, 64, 300)).shape
    torch.Size([2, 6])
    """

    def __init__(self, n_mels: int = 64, n_classes: int = 6, channels: int = 32,
                 hidden: int = 192, dropout: float = 0.3, utt_norm: bool = False):
        super().__init__()
        if n_mels % 4:
            raise ValueError(f"n_mels must be a multiple of 4, got {n_mels}")
        self.n_mels = n_mels
        self.utt_norm = utt_norm
        self.front = nn.Sequential(_conv2d(1, channels // 2), _conv2d(channels // 2, channels))
        self.temporal = nn.Sequential(_conv1d(channels * (n_mels // 4), hidden),
                                      _conv1d(hidden, hidden))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.utt_norm:
            mean = x.mean(dim=2, keepdim=True)
            std = (x - mean).pow(2).mean(dim=2, keepdim=True).sqrt()
            x = (x - mean) / (std + 1e-3)
        x = self.front(x.unsqueeze(1))                      # (B, C, M/4, T/4)
        x = self.temporal(x.flatten(1, 2))                  # (B, H, T/4)
        # Mean + std over time: length-independent summary of the utterance.
        mean = x.mean(dim=2)
        std = (x - mean.unsqueeze(2)).pow(2).mean(dim=2).add(1e-5).sqrt()
        return self.classifier(self.dropout(torch.cat([mean, std], dim=1)))
