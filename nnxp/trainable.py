"""What the training loop needs of a network: the :class:`Trainable` protocol.

:mod:`nnxp.train` works on any object with these members, and
:class:`nnxp.network.Network` is one.  The protocol lives below both
modules, so the façade (``network`` imports ``train`` for ``Network.fit``)
and the loop (which names the network's type in its annotations) form no
import cycle, not even one for the type checker.

Conventions are the network's: a batch is a 2-D array with one sample per
row, (B, n_0) inputs and (B, n_L) targets, on the network's device in its dtype.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Trainable"]


@runtime_checkable
class Trainable(Protocol):
    """A network :func:`nnxp.train.fit` and :func:`nnxp.train.evaluate` can train and score.

    ``stop_training`` is set by ``fit`` before the first epoch; a callback sets
    it to True to end training after the current epoch.
    """

    backend: Any  # the nnxp.backend.Backend the parameters live on
    dtype: Any  # the parameters' floating dtype (of backend.xp)
    stop_training: bool

    @property
    def xp(self) -> Any: ...  # the Array API namespace

    @property
    def device(self) -> Any: ...

    @property
    def sizes(self) -> list[int]: ...  # input width, then each dense layer's width

    @property
    def output(self) -> Any: ...  # the output activation (nnxp.activations.Activation)

    @property
    def loss(self) -> Any: ...  # the nnxp.losses.Loss

    @property
    def has_randomness(self) -> bool: ...  # whether training draws random numbers (dropout)

    def inputs(self, x: Any, name: str = "x") -> Any: ...  # (B, n_0) on the device, checked

    def targets(self, y: Any, n: int | None, name: str = "y") -> Any: ...  # (B, n_L), labels one-hot

    def forward_pass(self, x: Any, ops: Any, *, training: bool = False,
                     rng: Any = None) -> tuple[Any, list[Any]]: ...  # (z_L, saved for backward)

    def parameters(self) -> list[Any]: ...  # [W_1, b_1, W_2, b_2, ...], W (out, in)

    def set_parameters(self, arrays: Any) -> None: ...
