"""The network: a stack of layers, the forward pass and backpropagation.

Conventions (the seeds'): a dense layer's weights ``W`` are stored (out, in),
so row j holds the weights into unit j, and biases ``b`` are (out,).  A batch
is a 2-D array with one sample per row.  For dense layers l = 1..L::

    z_l = a_{l-1} W_l^T + b_l          a_l = f_l(z_l)          a_0 = x

Backpropagation for a batch (rows = samples), with delta_l = dC/dz_l::

    delta_L = dC/dz_L                  (the loss's output delta)
    dC/dW_l = delta_l^T a_{l-1}        dC/db_l = sum over rows of delta_l
    delta_{l-1} = (delta_l W_l) * f'_{l-1}(z_{l-1})

Each layer (:mod:`nnxp.layers`) does its own part of this; the network only
walks them forwards, hands the output layer's z to the loss (which fuses the
output activation), and walks them backwards.  The cost is a batch mean (see
:mod:`nnxp.losses`), so these are the means of the per-sample gradients.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np
from array_api_compat import array_namespace

from . import validation
from .activations import Activation, Softmax, get_activation
from .backend import Backend, get_backend, to_numpy
from .errors import BackendError, ConfigError, DataError, NnxpError, ShapeError
from .init import check_seed, initial_parameters, resolve_init
from .kernels.reference import ArrayAPIOps
from .layers import Dense, Dropout, Layer, Run, layer_from_config
from .losses import Loss, get_loss
from .optim import Optimizer
from .serialization import checked_model, read_arrays
from .serialization import save as save_model
from .train import Callback, History
from .train import evaluate as evaluate_network
from .train import fit as fit_network

__all__ = ["Network", "load", "network_from"]

_REFERENCE = ArrayAPIOps()


class Network:
    """A feed-forward network on any Array-API backend.

    Parameters
    ----------
    sizes : layer widths, input first: ``[784, 128, 10]`` is 784 inputs, one
        hidden layer of 128 units and 10 outputs.
    hidden : activation of the hidden layers: a name (``"relu"``,
        ``"leaky_relu"`` (alpha 0.2, or ``"leaky_relu:0.1"``), ``"sigmoid"``,
        ``"tanh"``, ``"identity"``, ``"softmax"``), an
        :class:`~nnxp.activations.Activation`, or a list with one per hidden layer.
    output : activation of the output layer.
    loss : ``"squared_error"`` (the seeds' C = sum (a - y)^2, batch mean),
        ``"cross_entropy"`` (softmax or sigmoid output), or ``"auto"``:
        cross-entropy after softmax, squared error otherwise.
    init : ``"auto"`` (He before ReLU-family, Xavier otherwise), ``"he"``,
        ``"xavier"``, or ``"uniform"`` (U[-1, 1), the seeds').
    seed : seeds the host NumPy generator the initial weights are drawn from;
        the same seed gives the same network on every backend.
    dtype : ``"float32"`` (default) or ``"float64"``.
    device : where the arrays live: ``"auto"``, ``"cpu"``, ``"cuda"``,
        ``"cuda:N"``, an array library module (numpy, cupy, torch, jax.numpy,
        dask.array, ...), a ``(module, device)`` pair, or a :class:`~nnxp.backend.Backend`.
    dropout : probability of dropping each hidden unit in training (a
        :class:`~nnxp.layers.Dropout` after every hidden layer); 0 for none.

    See Also
    --------
    from_layers : other stacks of layers.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden: Any = "relu",
        output: Any = "softmax",
        *,
        loss: str | Loss = "auto",
        init: str = "auto",
        seed: int | None = 0,
        dtype: str = "float32",
        device: Any = "auto",
        dropout: float = 0.0,
    ):
        sizes = validation.check_sizes(sizes)
        validation.check_parameter_memory(sizes, 8 if dtype == "float64" else 4)
        n_layers = len(sizes) - 1
        if isinstance(hidden, (list, tuple)):
            if len(hidden) != n_layers - 1:
                raise ConfigError(
                    f"{len(hidden)} hidden activations given for {n_layers - 1} hidden layers"
                )
            activations = [get_activation(h) for h in hidden]
        else:
            activations = [get_activation(hidden)] * (n_layers - 1)
        activations.append(get_activation(output))

        self.backend = get_backend(device)
        self.dtype = self.backend.dtype(dtype)
        init = resolve_init(init)
        rng = np.random.default_rng(check_seed(seed))
        layers: list[Layer] = []
        for l, (n_in, n_out, act) in enumerate(zip(sizes[:-1], sizes[1:], activations)):
            w, b = initial_parameters(rng, n_out, n_in, init, act)
            layers.append(Dense(self._param(w), self._param(b), act))
            if dropout and l < n_layers - 1:
                layers.append(Dropout(dropout, n_out))
        self._use_layers(layers, loss)

    @classmethod
    def from_layers(cls, layers: Sequence[Layer], *, loss: str | Loss = "auto",
                    device: Any = None, dtype: str | None = None) -> "Network":
        """A network of the given layers, whose parameters already live on one backend.

        The last layer must be :class:`~nnxp.layers.Dense` (the loss takes over its
        activation).  ``device`` and ``dtype`` default to those of the parameters.
        """
        layers = list(layers)
        params = [p for layer in layers for p in layer.parameters()]
        if not params and device is None:
            raise ConfigError("from_layers needs layers with parameters, or device=")
        net = cls.__new__(cls)
        net.backend = get_backend(device if device is not None else params[0])
        net.dtype = net.backend.dtype(dtype) if dtype is not None else _float_dtype(params, net.backend)
        for layer in layers:
            layer.set_parameters([net.backend.asarray(p, net.dtype) for p in layer.parameters()])
        net._use_layers(layers, loss)
        return net

    def _use_layers(self, layers: list[Layer], loss: Any) -> None:
        if not layers or not isinstance(layers[-1], Dense):
            raise ConfigError("the last layer must be Dense: the loss takes over its activation")
        for i, (before, after) in enumerate(zip(layers, layers[1:])):
            if after.accepts_ids:
                raise ConfigError(f"layer {i + 1} ({after!r}) takes token ids: it can only come first")
            if before.out_features != after.in_features:
                raise ConfigError(f"layer {i} gives {before.out_features} features but layer {i + 1} "
                                  f"({after!r}) takes {after.in_features}")
        self.layers = layers
        self.loss = _resolve_loss(loss, self.output)
        self.stop_training = False  # a fit callback sets it to end training (nnxp.trainable)

    # -- description ------------------------------------------------------------
    @property
    def dense_layers(self) -> list[Dense]:
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    @property
    def sizes(self) -> list[int]:
        """Input width, then the width of every dense layer."""
        return [self.layers[0].in_features] + [layer.out_features for layer in self.dense_layers]

    @property
    def activations(self) -> list[Activation]:
        return [layer.activation for layer in self.dense_layers]

    @property
    def output(self) -> Activation:
        return self.layers[-1].activation

    @property
    def xp(self) -> Any:
        return self.backend.xp

    @property
    def device(self) -> Any:
        return self.backend.device

    @property
    def dtype_name(self) -> str:
        return "float64" if self.dtype == self.xp.float64 else "float32"

    def config(self) -> dict[str, Any]:
        """Everything but the parameters: what a model file stores beside them.

        ``layers`` describes the stack; ``sizes`` and ``activations`` (the dense
        layers') are there too, for readers of the simple MLP description.
        """
        return {
            "layers": [layer.config() for layer in self.layers],
            "sizes": self.sizes,
            "activations": [act.config() for act in self.activations],
            "loss": self.loss.name,
            "dtype": self.dtype_name,
        }

    def __repr__(self) -> str:
        layers = ", ".join(repr(layer) for layer in self.layers)
        return f"Network([{layers}], loss={self.loss.name}, {self.dtype_name}, {self.backend})"

    # -- parameters --------------------------------------------------------------
    def parameters(self) -> list[Any]:
        """The parameter arrays of every layer, in order: [W_1, b_1, W_2, b_2, ...]."""
        return [p for layer in self.layers for p in layer.parameters()]

    def set_parameters(self, arrays: Sequence[Any]) -> None:
        """Rebind every parameter (the list :meth:`parameters` gives, as an optimizer returns it)."""
        arrays = list(arrays)
        start = 0
        for layer in self.layers:
            count = len(layer.parameter_names)
            if count:
                layer.set_parameters(arrays[start:start + count])
            start += count
        if start != len(arrays):
            raise ShapeError(f"got {len(arrays)} parameter arrays for {start} parameters")

    def get_weights(self) -> list[tuple[np.ndarray, ...]]:
        """Host NumPy copies of every layer's parameters, e.g. (W, b) per dense layer, W (out, in)."""
        return [tuple(to_numpy(p).copy() for p in layer.parameters())
                for layer in self.layers if layer.parameter_names]

    def set_weights(self, weights: Iterable[Sequence[Any]]) -> "Network":
        """Replace every layer's parameters ((W, b) per dense layer, W as (out, in)) with copies.

        The arrays may come from the host or any backend; they are cast to the
        network's dtype and copied to its device.  Nothing changes unless all fit.
        """
        weights = list(weights)
        owners = [layer for layer in self.layers if layer.parameter_names]
        if len(weights) != len(owners):
            raise ShapeError(f"got {len(weights)} parameter groups for {len(owners)} layers with parameters")
        new = []
        for i, (layer, group) in enumerate(zip(owners, weights)):
            try:
                group = list(group)
            except TypeError:
                raise ShapeError(f"layer {i}: expected a tuple like (W, b)") from None
            if len(group) != len(layer.parameter_names):
                raise ShapeError(f"layer {i}: expected {len(layer.parameter_names)} arrays "
                                 f"({', '.join(layer.parameter_names)}), got {len(group)}")
            arrays = [self._param(a, f"layer {i} {name}") for a, name in zip(group, layer.parameter_names)]
            for array, current, name in zip(arrays, layer.parameters(), layer.parameter_names):
                if tuple(array.shape) != tuple(current.shape):
                    raise ShapeError(f"layer {i}: {name} must have shape {tuple(current.shape)}"
                                     f"{' (out, in)' if name == 'weight' else ''}, got {tuple(array.shape)}")
            new.append(arrays)
        for layer, arrays in zip(owners, new):
            layer.set_parameters(arrays)
        return self

    def to(self, device: Any) -> "Network":
        """Move the parameters to another device or backend (in place); returns self."""
        backend = get_backend(device)
        dtype = backend.dtype(self.dtype_name)
        for layer in self.layers:
            layer.set_parameters([backend.asarray(to_numpy(p), dtype, copy=True) for p in layer.parameters()])
        self.backend, self.dtype = backend, dtype
        return self

    def _param(self, data: Any, name: str = "parameter") -> Any:
        array = validation.real_array(data, name)
        return self.backend.asarray(array, self.dtype, copy=True)

    # -- inference ---------------------------------------------------------------
    def forward(self, x: Any) -> Any:
        """Output activations a_L for a batch ``x`` (B, n_0) -> (B, n_L) (evaluation mode)."""
        x = self.inputs(x)
        with self.backend.context():
            return self.output.forward(self.forward_pass(x, _REFERENCE)[0])

    __call__ = forward

    def predict(self, x: Any, batch_size: int = 4096) -> Any:
        """Outputs for ``x`` computed ``batch_size`` rows at a time (bounded memory)."""
        batch_size = validation.positive_int("batch_size", batch_size)
        x = self.inputs(x)
        xp = array_namespace(x)
        n = x.shape[0]
        with self.backend.context():
            parts = [self.output.forward(self.forward_pass(x[i:min(n, i + batch_size), ...], _REFERENCE)[0])
                     for i in range(0, n, batch_size)]
            return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)

    def classify(self, x: Any, batch_size: int = 4096) -> Any:
        """Predicted class per sample: argmax of the outputs, or output >= 0.5 for one output."""
        return validation.predicted_labels(self.predict(x, batch_size))

    def forward_pass(self, x: Any, ops: ArrayAPIOps, *, training: bool = False,
                     rng: np.random.Generator | None = None) -> tuple[Any, list[Any]]:
        """(z_L, what each layer saved for backward) for a batch already on the device.

        The output layer stops at z_L: the loss applies its activation (fused).
        """
        saved = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            run = Run(ops, training=training, index=i, need_input_grad=i > 0, rng=rng)
            x, s = layer.linear(x, run) if i == last else layer.forward(x, run)
            saved.append(s)
        return x, saved

    # -- training maths ------------------------------------------------------------
    def backprop(self, x: Any, y: Any, ops: ArrayAPIOps, *, training: bool = True,
                 rng: np.random.Generator | None = None) -> tuple[Any, list[Any], Any]:
        """(batch cost as a 0-d device array, gradients matching :meth:`parameters`, outputs a_L)."""
        z, saved = self.forward_pass(x, ops, training=training, rng=rng)
        a, cost, delta = ops.loss_forward(self.loss, self.output, z, y)  # a_L, C, dC/dz_L
        last = len(self.layers) - 1
        grads: list[list[Any]] = []
        g = None
        for i in range(last, -1, -1):
            run = Run(ops, training=training, index=i, need_input_grad=i > 0, rng=rng)
            layer = self.layers[i]
            g, layer_grads = (layer.backward_linear(delta, saved[i], run) if i == last
                              else layer.backward(g, saved[i], run))
            grads.append(layer_grads)
        return cost, [g for layer_grads in reversed(grads) for g in layer_grads], a

    def gradients(self, x: Any, y: Any) -> list[tuple[Any, ...]]:
        """Per-layer gradients of the batch-mean cost, e.g. (dC/dW, dC/db) per dense layer,
        W-gradients (out, in).  Evaluation mode: dropout is off."""
        x = self.inputs(x)
        y = self.targets(y, x.shape[0])
        with self.backend.context():
            flat = self.backprop(x, y, _REFERENCE, training=False)[1]
        out, start = [], 0
        for layer in self.layers:
            count = len(layer.parameter_names)
            if count:
                out.append(tuple(flat[start:start + count]))
            start += count
        return out

    def cost(self, x: Any, y: Any) -> float:
        """The batch-mean cost C(x, y) as a Python float."""
        x = self.inputs(x)
        y = self.targets(y, x.shape[0])
        with self.backend.context():
            z, _ = self.forward_pass(x, _REFERENCE)
            return float(self.loss.value(self.output, z, self.output.forward(z), y))

    def train_step(self, x: Any, y: Any, optimizer: Any, ops: ArrayAPIOps = _REFERENCE, *,
                   rng: np.random.Generator | None = None, reduce: Any = None,
                   totals: Any = None) -> tuple[Any, Any]:
        """One optimizer step on the batch (x, y) already on the device, added to the epoch's
        ``totals`` if given; see :meth:`ArrayAPIOps.train_step`.  Returns (batch cost, outputs)
        as device arrays."""
        return ops.train_step(self, x, y, optimizer, rng=rng, reduce=reduce, totals=totals)

    @property
    def has_randomness(self) -> bool:
        """Whether training draws random numbers (dropout)."""
        return any(isinstance(layer, Dropout) and layer.p > 0 for layer in self.layers)

    # -- checking inputs (nnxp.validation does the work) -----------------------------
    def inputs(self, x: Any, name: str = "x") -> Any:
        """``x`` as a (B, n_0) array of the network's dtype on its device, checked."""
        with self.backend.context():
            return validation.inputs(self, x, name)

    def targets(self, y: Any, n: int | None, name: str = "y") -> Any:
        """Targets as a (B, n_L) array: one-hot rows for integer class labels."""
        with self.backend.context():
            return validation.targets(self, y, n, name)

    # -- Keras-style conveniences (nnxp.train does the work) ------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        *,
        epochs: int = 20,
        batch_size: int = 32,
        optimizer: str | Optimizer = "adam",
        lr: float | None = None,
        schedule: str = "constant",
        validation_data: tuple[Any, Any] | None = None,
        validation_split: float = 0.0,
        shuffle: bool = True,
        seed: int = 0,
        initial_epoch: int = 0,
        history: History | None = None,
        callbacks: Iterable[Callback] = (),
        verbose: int = 1,
        progress: bool | None = None,
        fast: bool = True,
        threads: int | str | None = None,
        cuda_graphs: bool = True,
        blas: str | None = None,
        out: Callable[[str], None] | None = None,
        distributed: Any = None,
    ) -> History:
        """Train on ``x`` (N, n_0), one sample per row, and ``y`` ((N,) class labels or (N, n_L)
        targets); returns the :class:`~nnxp.train.History`.  The options are
        :func:`nnxp.train.fit`'s, which documents them (this signature is tested to match it)."""
        return fit_network(self, x, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                           schedule=schedule, validation_data=validation_data,
                           validation_split=validation_split, shuffle=shuffle, seed=seed,
                           initial_epoch=initial_epoch, history=history, callbacks=callbacks,
                           verbose=verbose, progress=progress, fast=fast, threads=threads,
                           cuda_graphs=cuda_graphs, blas=blas, out=out, distributed=distributed)

    def evaluate(self, x: Any, y: Any, batch_size: int = 4096) -> dict[str, float]:
        """{"loss": batch-mean cost, "accuracy": fraction correct} over all of (x, y)."""
        return evaluate_network(self, x, y, batch_size=batch_size)

    # -- files -------------------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write the network to a ``.safetensors`` file (atomically); see :mod:`nnxp.serialization`."""
        save_model(self, path)

    @classmethod
    def load(cls, path: Any, device: Any = "auto") -> "Network":
        """The network stored in ``path`` (see :func:`load`)."""
        return load(path, device=device)

    @classmethod
    def from_config(cls, config: dict[str, Any], device: Any = "auto") -> "Network":
        """An untrained network of the shape ``config`` (from :meth:`config`) describes."""
        if not isinstance(config, dict):
            raise DataError(f"a network description must be a JSON object, got {type(config).__name__}")
        try:
            if "layers" in config:
                backend = get_backend(device)
                dtype = backend.dtype(config["dtype"])
                if not isinstance(config["layers"], list):
                    raise TypeError("'layers' is not a list")
                layers = [layer_from_config(c, backend, dtype) for c in config["layers"]]
                return cls.from_layers(layers, loss=config["loss"], device=backend, dtype=config["dtype"])
            sizes = config["sizes"]
            acts = [get_activation(a) for a in config["activations"]]
            return cls(sizes, hidden=acts[:-1], output=acts[-1], loss=config["loss"],
                       dtype=config["dtype"], device=device, init="xavier", seed=0)
        except (KeyError, TypeError) as exc:
            raise DataError(f"incomplete network description ({exc})") from None


def load(path: Any, device: Any = "auto") -> Network:
    """The network stored in ``path``, on ``device`` (any backend), dtype preserved."""
    arrays, metadata = read_arrays(path)
    return network_from(arrays, metadata, path, device)


def network_from(arrays: dict[str, np.ndarray], metadata: dict[str, Any], path: Any, device: Any, *,
                 extra_prefixes: tuple[str, ...] = ("optimizer.",)) -> Network:
    """The network a file's ``metadata`` describes, with the parameters in ``arrays``,
    everything checked first (:func:`nnxp.serialization.checked_model`)."""
    config = checked_model(arrays, metadata, path, extra_prefixes=extra_prefixes)
    backend = get_backend(device)  # a bad --device is the user's, not the file's: its own message
    try:
        net = Network.from_config(config, device=backend)
        groups = [tuple(arrays[f"layers.{i}.{name}"] for name in layer.parameter_names)
                  for i, layer in enumerate(net.layers) if layer.parameter_names]
        net.set_weights(groups)
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc} for the network it describes") from None
    except BackendError:
        raise
    except NnxpError as exc:
        raise DataError(f"{path}: bad network description ({exc}); the file is damaged") from None
    return net


def _float_dtype(params: Sequence[Any], backend: Backend) -> Any:
    dtype = params[0].dtype
    for name in ("float32", "float64"):
        if backend.supports(name) and dtype == getattr(backend.xp, name):
            return dtype
    raise ConfigError(f"parameters must be float32 or float64, got {dtype}")


def _resolve_loss(loss: Any, output: Activation) -> Loss:
    if isinstance(loss, str) and loss.lower() == "auto":
        loss = "cross_entropy" if isinstance(output, Softmax) else "squared_error"
    loss = get_loss(loss)
    loss.check_output(output)
    return loss
