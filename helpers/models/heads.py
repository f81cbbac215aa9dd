"""The one-logit output layer every model in the study ends with."""
from __future__ import annotations

import torch
from torch import nn


class LogitHead(nn.Linear):
    """A Linear(in_features, 1) that returns shape (B,): one FAKE logit per image."""

    def __init__(self, in_features: int, bias: bool = True):
        super().__init__(in_features, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B,)."""
        # squeeze(-1), not squeeze(): a batch of one must stay a batch.
        return super().forward(x).squeeze(-1)
