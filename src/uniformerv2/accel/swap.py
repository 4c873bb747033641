"""Swapping a module for one of its speed variants and back, keeping its identity and parameters.

A variant is a subclass of the reference module that only overrides methods (``forward`` or the methods it
calls) and names its reference class in ``REFERENCE``.  Swapping changes the module's class in place, so the
module object, its parameters, buffers, hooks and names stay as they are: state dicts, optimizers and
checkpoints see no difference, and :func:`revert` gives the reference module back.
"""
from __future__ import annotations

from torch import nn

from ..errors import UserError


def swap(module: nn.Module, variant: type) -> nn.Module:
    """Turn ``module`` (an instance of ``variant.REFERENCE``) into a ``variant``; returns it."""
    reference = variant.REFERENCE
    if type(module) is not reference:
        raise TypeError(f"{variant.__name__} replaces {reference.__name__}, not {type(module).__name__}")
    module.__class__ = variant
    return module


def revert(model: nn.Module) -> nn.Module:
    """Every variant inside ``model`` back to its reference class; returns ``model``."""
    for m in model.modules():
        reference = getattr(type(m), "REFERENCE", None)
        if reference is not None and type(m) is not reference:
            m.__class__ = reference
    return model


def variants_in(model: nn.Module) -> dict[str, int]:
    """{variant class name: count} of the variants inside ``model`` (what :func:`optimize` applied)."""
    found: dict[str, int] = {}
    for m in model.modules():
        if getattr(type(m), "REFERENCE", None) not in (None, type(m)):
            found[type(m).__name__] = found.get(type(m).__name__, 0) + 1
    return found


class InferenceOnly:
    """Mixin of variants that are only correct in eval mode: ``.train()`` on them is an error."""

    def train(self, mode: bool = True):
        if mode:
            raise UserError("this model was optimized for inference (uniformerv2.accel.optimize); call "
                            "uniformerv2.accel.revert(model) before training it")
        return super().train(False)
