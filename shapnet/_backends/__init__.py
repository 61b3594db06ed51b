"""Compute backends of :class:`~shapnet.modules.GroupedMLP`: three ways to get a layer's Shapley values.

- :mod:`.torch_plain`: PyTorch ops for any inner function (linear modules, any activation, any depth);
  all ``2**k`` coalitions are materialised.
- :mod:`.torch_tiles`: one-hidden-layer ReLU modules, fused per cache tile into a custom autograd function
  that recomputes instead of storing; any device and dtype.
- :mod:`.compiled`: the same maths as compiled CPU kernels (:mod:`shapnet.kernels`, float32/float64), one
  call per layer, idle rows skipped, threads split over rows; plus the in-place inference path of a Deep
  ShapNet (:func:`.compiled.deep_layers_in_place`).

:meth:`GroupedMLP.shapley <shapnet.modules.GroupedMLP.shapley>` picks one; every backend gives the same
values up to float rounding, and the tests compare them.
"""
