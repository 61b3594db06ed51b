"""shapnet_adapters: ShapNets plugged into Captum, shap and Quantus.

- :class:`ShapNetAttribution` (``shapnet_adapters.captum``): a ``captum.attr.Attribution``;
  :class:`LayerShapNetAttribution`: a Captum ``LayerAttribution`` returning any layer's Shapley values.
- :class:`ShapNetExplainer` (``shapnet_adapters.shap``): a ``shap.Explainer``.
- :func:`explain_func`, :class:`QuantusModel` and :class:`TabularAsImage` (``shapnet_adapters.quantus``): for
  Quantus metrics.
- :func:`explain_dataframe`, :func:`explain_array` and :func:`explain_files` (``shapnet_adapters.dask``): batch
  explanation of tables and arrays that do not fit in memory (``python -m shapnet.explain``).

Names resolve lazily (PEP 562), so ``import shapnet_adapters.quantus`` does not pay for importing Captum
and shap; ``from shapnet_adapters import ShapNetExplainer`` imports only shap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .captum import LayerShapNetAttribution, ShapNetAttribution
    from .quantus import QuantusModel, TabularAsImage, explain_func
    from .shap import ShapNetExplainer

# public name -> submodule defining it
_EXPORTS = {
    "LayerShapNetAttribution": "captum",
    "ShapNetAttribution": "captum",
    "ShapNetExplainer": "shap",
    "QuantusModel": "quantus",
    "TabularAsImage": "quantus",
    "explain_func": "quantus",
}

__all__ = [
    "LayerShapNetAttribution",
    "QuantusModel",
    "ShapNetAttribution",
    "ShapNetExplainer",
    "TabularAsImage",
    "explain_func",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # cache: later look-ups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
