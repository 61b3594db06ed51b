"""FastSHAP (Jethani et al., ICLR 2022): an explainer network trained once per model.

An explainer ``g`` maps an input to one value per (player, output). It is trained on the same game as every
other method of this project, ``v_x(S) = f(x on S, reference elsewhere)``, with the Kernel SHAP objective

    E_x E_{S ~ Shapley kernel} ( v_x(S) - v_x(empty) - sum_{i in S} phi_i(x) )^2

where ``phi = g(x)`` after the additive efficient normalisation
``phi_i <- phi_i + (v_x(full) - v_x(empty) - sum_j phi_j) / F`` (so the values always sum to
``f(x) - f(reference)``). Coalitions are drawn in complementary pairs (the paper's paired sampling). After
training, ``explain(x)`` costs one pass of ``g`` and two of ``f`` (for the normalisation).

:class:`FastSHAP` wraps the explained model: its ``forward`` is the model's, its ``explain`` the amortised
values, so it satisfies :class:`~shapnet.protocol.SelfExplaining` and every adapter and benchmark takes it.
For images the players are pixels (all channels of a pixel enter and leave together).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ._validation import check_input, check_positive_int
from .consistency import sample_kernel_coalitions
from .explanation import ShapleyExplanation

__all__ = ["FastSHAP"]


def _mlp(n_in: int, hidden: Sequence[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class _PixelExplainer(nn.Module):
    """``(B, C, H, W) -> (B, H, W, K)``: dilated 3x3 convolutions plus a global context vector."""

    def __init__(self, in_channels: int, n_outputs: int, width: int, dilations: Sequence[int]) -> None:
        super().__init__()
        convs, channels = [], in_channels
        for dilation in dilations:
            convs += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*convs)
        self.context = nn.Linear(width, width)
        self.head = nn.Conv2d(width, n_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, W, H, W')
        h = h + self.context(h.mean((2, 3)))[:, :, None, None]  # every pixel sees the whole image
        return self.head(h).permute(0, 2, 3, 1)  # (B, H, W, K)


class FastSHAP(nn.Module):
    """Amortised Shapley values of ``model`` against ``reference``.

    Args:
        model: the explained model, ``(B, *input_shape) -> (B, K)``; it is frozen and never trained here.
        input_shape: ``(F,)`` or ``(C, H, W)``; default ``model.input_shape``.
        n_outputs: ``K``; default ``model.n_outputs`` (or found by one forward pass).
        reference: what "absent" means, broadcastable to ``input_shape``; default ``model.reference``, else 0.
        hidden: hidden widths of the tabular explainer (an MLP).
        width, dilations: channels and dilations of the image explainer's convolutions.

    Attributes (after :meth:`fit`):
        history_: one dict per epoch (``loss``, ``val_loss``, ``seconds``).
        training_seconds_: wall time of :meth:`fit`.
        model_evaluations_: rows of ``model`` evaluated by :meth:`fit`, validation included (the amortised
            cost, comparable with a sampling estimator's evaluations per explained sample).

    Shape:
        ``explain(x).values``: ``(B, F, K)`` for tables, ``(B, H, W, K)`` per pixel for images.
    """

    exact_for_any_baseline = False
    reference: torch.Tensor
    model: nn.Module

    def __init__(
        self,
        model: nn.Module,
        *,
        input_shape: Sequence[int] | None = None,
        n_outputs: int | None = None,
        reference: object = None,
        hidden: Sequence[int] = (256, 256),
        width: int = 32,
        dilations: Sequence[int] = (1, 2, 4, 8),
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        if shape is None:
            raise ValueError(
                f"{type(model).__name__} has no input_shape: pass input_shape=(F,) or (C, H, W)."
            )
        self.input_shape = tuple(int(s) for s in shape)
        if len(self.input_shape) not in (1, 3):
            raise ValueError(f"input_shape must be (F,) or (C, H, W), got {self.input_shape}.")
        self.model = model.eval().requires_grad_(False)
        if reference is None:
            reference = getattr(model, "reference", 0.0)
        ref = torch.as_tensor(reference, dtype=torch.float32).detach().cpu()
        if len(self.input_shape) == 3 and ref.dim() == 1:
            ref = ref.reshape(-1, 1, 1)
        ref = torch.broadcast_to(ref, self.input_shape).clone()
        if not torch.isfinite(ref).all():
            raise ValueError("reference must be finite (no NaN or inf).")
        self.register_buffer("reference", ref)
        if n_outputs is None:
            n_outputs = getattr(model, "n_outputs", None)
        if n_outputs is None:
            with torch.no_grad():
                n_outputs = int(model(ref.unsqueeze(0)).reshape(1, -1).shape[1])
        check_positive_int(n_outputs, "n_outputs")
        self._n_outputs = int(n_outputs)
        if len(self.input_shape) == 1:
            n_features = self.input_shape[0]
            self.explainer: nn.Module = _mlp(n_features, tuple(hidden), n_features * self._n_outputs)
        else:
            self.explainer = _PixelExplainer(self.input_shape[0], self._n_outputs, width, tuple(dilations))
        self.history_: list[dict[str, float]] = []
        self.training_seconds_ = 0.0
        self.model_evaluations_ = 0

    @property
    def n_outputs(self) -> int:
        return self._n_outputs

    @property
    def n_players(self) -> int:
        """Features for tables, pixels (``H * W``) for images."""
        return (
            self.input_shape[0] if len(self.input_shape) == 1 else self.input_shape[1] * self.input_shape[2]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The explained model's output ``(B, K)``."""
        return self.model(check_input(x, self.input_shape))

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, P, K)``: the explainer's values before normalisation."""
        out = self.explainer(x)
        return out.reshape(x.shape[0], self.n_players, self._n_outputs)

    def _normalised(self, x: torch.Tensor, full: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
        raw = self._raw(x)  # (B, P, K)
        gap = full - empty - raw.sum(1)  # (B, K)
        return raw + gap.unsqueeze(1) / self.n_players

    def _mask(self, x: torch.Tensor, players: torch.Tensor) -> torch.Tensor:
        """``x`` on the players of ``players`` ``(N, P)``, the reference elsewhere (row ``n`` of ``x``)."""
        ref = self.reference.to(x)
        if len(self.input_shape) == 1:
            return torch.where(players, x, ref)
        keep = players.reshape(-1, 1, *self.input_shape[1:])  # a pixel's channels move together
        return torch.where(keep, x, ref)

    def _loss(self, x: torch.Tensor, n_coalitions: int) -> torch.Tensor:
        batch = x.shape[0]
        half = max(1, n_coalitions // 2)
        players = sample_kernel_coalitions(batch * half, self.n_players, device=x.device)
        players = torch.cat([players, ~players])  # paired sampling: S and its complement
        repeated = x.repeat(2 * half, *([1] * (x.dim() - 1)))  # (2 * half * B, *in)
        with torch.no_grad():
            empty = self.model(self.reference.to(x).unsqueeze(0))  # (1, K)
            full = self.model(x)  # (B, K)
            value = self.model(self._mask(repeated, players))  # (2 * half * B, K)
        self.model_evaluations_ += 1 + batch + repeated.shape[0]
        phi = self._normalised(x, full, empty).repeat(2 * half, 1, 1)  # (2 * half * B, P, K)
        predicted = torch.einsum("np,npk->nk", players.to(phi.dtype), phi)
        return ((value - empty) - predicted).pow(2).mean()

    def fit(
        self,
        X: np.ndarray | torch.Tensor,
        *,
        epochs: int = 50,
        batch_size: int = 64,
        n_coalitions: int = 32,
        lr: float = 1e-3,
        X_val: np.ndarray | torch.Tensor | None = None,
        patience: int = 5,
        progress: bool = False,
    ) -> FastSHAP:
        """Train the explainer on inputs ``X`` (labels are not needed: the game is the model's output).

        Args:
            X: ``(N, *input_shape)``.
            epochs: passes over ``X``.
            batch_size: inputs per step.
            n_coalitions: coalitions per input and step (drawn in complementary pairs).
            lr: Adam's learning rate.
            X_val: optional inputs for early stopping on the same objective (best weights restored).
            patience: epochs without a better validation loss before stopping.
            progress: show a progress bar over epochs.

        Returns:
            ``self``.
        """
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("n_coalitions", n_coalitions)):
            check_positive_int(value, name)
        data = check_input(torch.as_tensor(X, dtype=torch.float32), self.input_shape, name="X")
        val = (
            None
            if X_val is None
            else check_input(torch.as_tensor(X_val, dtype=torch.float32), self.input_shape, name="X_val")
        )
        optimiser = torch.optim.Adam(self.explainer.parameters(), lr=lr)
        best, best_state, waited = float("inf"), None, 0
        start = time.perf_counter()
        epoch_range = range(epochs)
        if progress:
            from tqdm.auto import tqdm

            epoch_range = tqdm(epoch_range, desc="FastSHAP", unit="epoch")
        self.explainer.train()
        for epoch in epoch_range:
            losses = []
            for idx in torch.randperm(len(data)).split(batch_size):
                loss = self._loss(data[idx], n_coalitions)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
            if val is not None:
                with torch.no_grad():
                    record["val_loss"] = float(
                        np.mean(
                            [
                                float(self._loss(val[idx], n_coalitions))
                                for idx in torch.arange(len(val)).split(256)
                            ]
                        )
                    )
                if record["val_loss"] < best:
                    best, waited = record["val_loss"], 0
                    best_state = {k: v.clone() for k, v in self.explainer.state_dict().items()}
                else:
                    waited += 1
            record["seconds"] = time.perf_counter() - start
            self.history_.append(record)
            if val is not None and waited >= patience:
                break
        if best_state is not None:
            self.explainer.load_state_dict(best_state)
        self.explainer.eval()
        self.training_seconds_ += time.perf_counter() - start
        return self

    def explain(
        self, x: torch.Tensor, *, baseline: object = None, layers: bool = False
    ) -> ShapleyExplanation:
        """Amortised Shapley values of the model's prediction at ``x`` against the reference.

        Args:
            x: ``(B, *input_shape)``.
            baseline: None or the reference (the explainer was trained for that game only).
            layers: not available (FastSHAP has no layer-wise values); must be False.
        """
        x = check_input(x, self.input_shape)
        if layers:
            raise ValueError("FastSHAP has no layer-wise explanations; call explain(x) with layers=False.")
        if baseline is not None and not torch.allclose(
            torch.broadcast_to(torch.as_tensor(baseline, dtype=x.dtype, device=x.device), x.shape),
            self.reference.to(x).expand_as(x),
        ):
            raise ValueError(
                "FastSHAP's explainer was trained for its reference only; pass baseline=None, or train "
                "another FastSHAP(model, reference=...) for that baseline."
            )
        empty = self.model(self.reference.to(x).unsqueeze(0)).expand(x.shape[0], -1)
        full = self.model(x)
        values = self._normalised(x, full, empty)
        if len(self.input_shape) == 3:
            values = values.reshape(x.shape[0], *self.input_shape[1:], self._n_outputs)
        return ShapleyExplanation(values, empty, full, self.input_shape)
