"""After training: the trained model pulled back toward zero-shot MiniLM, as far as the valid split says.

Every branch that training adds on top of the pretrained encoders ends in a layer that starts
at zero (`smar.model.towers.ResidualOutput`), so scaling those layers by a factor walks a path
from the untrained model (0: exactly zero-shot MiniLM) to the trained one (1). Fine-tuned on
the training catalog's categories, the branches overshoot on others; a factor below 1 keeps
most of what training taught and less of what it fitted (the weight-space ensembles of WiSE-FT,
Wortsman et al., 2022, along the branches that start at zero). `train.zero_shot_blend` lists the
factors tried; the one with the best validation score is baked into the saved weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from smar.model.towers import ResidualOutput


def residual_outputs(model: torch.nn.Module) -> list[ResidualOutput]:
    """The last layers of the branches added on top of the pretrained encoders (each module once)."""
    return [module for module in model.modules() if isinstance(module, ResidualOutput)]


def blend_with_zero_shot(
    model: torch.nn.Module,
    factors: Sequence[float],
    score: Callable[[], float],
    known: dict[float, float] | None = None,
) -> tuple[float, dict[float, float]]:
    """Scale the residual branches by each factor and score the model (`known`: scores already
    measured, such as the trained model's at 1); keep the best factor, on a tie the one nearest 1.
    Returns (the factor kept, every factor's score)."""
    layers = residual_outputs(model)
    trained = [(layer.weight.detach().clone(), layer.bias.detach().clone()) for layer in layers]
    scores = {factor: value for factor, value in (known or {}).items() if not math.isnan(value)}
    for factor in sorted(set(factors) - set(scores), reverse=True):
        _scale(layers, trained, factor)
        scores[factor] = score()
    measured = {factor: value for factor, value in scores.items() if factor in factors and not math.isnan(value)}
    best = max(measured, key=lambda factor: (measured[factor], factor)) if measured else 1.0
    _scale(layers, trained, best)
    return best, {factor: scores[factor] for factor in sorted(factors)}


def _scale(layers: list[ResidualOutput], trained: list[tuple[torch.Tensor, torch.Tensor]], factor: float) -> None:
    with torch.no_grad():
        for layer, (weight, bias) in zip(layers, trained):
            layer.weight.copy_(weight * factor)
            layer.bias.copy_(bias * factor)
