"""The public API is complete: every public class of the package is exported in __all__."""

from __future__ import annotations

import inspect

import torch

import shapnet


def test_all_names_resolve() -> None:
    for name in shapnet.__all__:
        assert hasattr(shapnet, name), name


def test_every_module_subclass_is_exported() -> None:
    modules = [shapnet.models, shapnet.layers, shapnet.modules, shapnet.harsanyi, shapnet.fastshap]
    for module in modules:
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, torch.nn.Module) and obj.__module__ == module.__name__ and not name.startswith("_"):
                assert name in shapnet.__all__, f"{module.__name__}.{name} is not exported"
