"""scikit-learn's MLP objective and solvers, run by nnxp's network, losses and optimizers.

scikit-learn's ``BaseMultilayerPerceptron`` minimises, for a batch of B rows with
sample weights s_i (all 1 when none are given) and S = sum_i s_i::

    J = sum_i s_i loss_i / S  +  (alpha / 2S) sum_l ||W_l||^2

where loss_i is the log-loss of row i (softmax output for several classes, one
logistic unit per label for two classes or multilabel targets) or half its
squared error (identity output; the *reported* loss is divided by the number of
outputs, scikit-learn's ``squared_loss``).  The output delta is the canonical
residual, dJ/dz_L = s_i (a_i - y_i) / S, and biases carry no L2 term.  The log-loss
value is computed, as scikit-learn's, from probabilities clipped to [eps, 1 - eps]
(this matters to L-BFGS's line search once outputs saturate).

Here that objective is formed from :mod:`nnxp.losses` (``rows``, ``half_squared_error``,
:func:`~nnxp.losses.l2_penalty`); the forward and backward passes are the
network's layers on the backend's executor (:mod:`nnxp.kernels`, so NumPy's
BLAS fast path and CuPy's kernels apply); the update is an :mod:`nnxp.optim`
optimizer: SGD (momentum, Nesterov) or Adam with ``eps_before_correction``
(scikit-learn's bias-corrected learning rate).  :class:`Solver` adds
scikit-learn's learning-rate schedules and its stopping rule.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backend import to_numpy
from ..layers import Dense, Run
from ..losses import CrossEntropy, l2_penalty, weighted_mean
from ..network import Network
from ..optim import SGD, Adam

__all__ = ["ACTIVATIONS", "OUTPUTS", "build_network", "objective_step", "Solver", "host_layers"]

#: scikit-learn's hidden activation names -> nnxp's
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
#: scikit-learn's ``out_activation_`` -> (nnxp output activation, nnxp loss)
OUTPUTS = {"softmax": ("softmax", "cross_entropy"), "logistic": ("sigmoid", "cross_entropy"),
           "identity": ("identity", "half_squared_error")}


def build_network(coefs: Sequence[np.ndarray], intercepts: Sequence[np.ndarray], activation: str,
                  out_activation: str, device: Any, dtype: str) -> Network:
    """A network holding copies of scikit-learn's ``coefs_`` (in, out) and ``intercepts_``."""
    if out_activation not in OUTPUTS:
        raise ValueError(f"out_activation_={out_activation!r} is not supported by nnxp "
                         f"(supported: {', '.join(OUTPUTS)}); use sklearn.neural_network for it")
    output, loss = OUTPUTS[out_activation]
    acts = [ACTIVATIONS[activation]] * (len(coefs) - 1) + [output]
    dt = np.float64 if dtype == "float64" else np.float32
    layers = [Dense(np.ascontiguousarray(np.asarray(w, dtype=dt).T), np.asarray(b, dtype=dt).reshape(-1), act)
              for w, b, act in zip(coefs, intercepts, acts)]
    return Network.from_layers(layers, loss=loss, device=device, dtype=dtype)


def load_parameters(net: Network, coefs: Sequence[np.ndarray], intercepts: Sequence[np.ndarray]) -> None:
    """Copy scikit-learn's ``coefs_``/``intercepts_`` into ``net`` (new parameter arrays)."""
    net.set_weights([(np.asarray(w).T, np.asarray(b).reshape(-1)) for w, b in zip(coefs, intercepts)])


def host_layers(net: Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(coefs_, intercepts_) as host NumPy copies in scikit-learn's (in, out) layout."""
    coefs, intercepts = [], []
    for layer in net.dense_layers:
        coefs.append(np.array(to_numpy(layer.weight).T, order="C", copy=True))  # never a view of the network
        intercepts.append(to_numpy(layer.bias).copy())
    return coefs, intercepts


def objective_step(net: Network, ops: Any, x: Any, y: Any, weight: Any, alpha: float,
                   weight_sum: float, loss_scale: float = 1.0) -> tuple[Any, list[Any]]:
    """(J, dJ/dparameters) of scikit-learn's objective on the batch (x, y) on the device.

    ``weight``: the batch's sample weights (B,) on the device, or None for all ones;
    ``weight_sum``: their sum S (a host float; B when None).  ``loss_scale``
    multiplies the data term of the returned J only (1 / n_outputs for
    scikit-learn's reported squared error), not the gradient.  J is a 0-d device
    array: nothing is read back.
    """
    z, saved = net.forward_pass(x, ops, training=True)
    a, cost, delta = ops.loss_forward(net.loss, net.output, z, y)  # mean cost, (a - y) / B
    if isinstance(net.loss, CrossEntropy):  # scikit-learn's log_loss: probabilities clipped to [eps, 1 - eps]
        rows = net.loss.rows(net.output, z, a, y, clip=float(np.finfo(_host_dtype(net)).eps))
        cost = net.xp.mean(rows) if weight is None else weighted_mean(rows, weight)
    elif weight is not None:
        cost = weighted_mean(net.loss.rows(net.output, z, a, y), weight)
    if weight is not None:
        delta = delta * (weight * (x.shape[0] / weight_sum))[:, None]  # s_i (a_i - y_i) / S
    layers = net.layers
    last = len(layers) - 1
    grads: list[list[Any]] = []
    g = None
    for i in range(last, -1, -1):
        run = Run(ops, training=True, index=i, need_input_grad=i > 0)
        g, layer_grads = (layers[i].backward_linear(delta, saved[i], run) if i == last
                          else layers[i].backward(g, saved[i], run))
        grads.append(list(layer_grads))
    grads.reverse()
    if loss_scale != 1.0:
        cost = cost * loss_scale
    if alpha:
        dense = [layer for layer in layers if isinstance(layer, Dense)]
        penalty, l2_grads = l2_penalty([layer.weight for layer in dense], alpha / weight_sum)
        cost = cost + penalty
        for layer_grads, extra in zip((gr for gr, layer in zip(grads, layers) if isinstance(layer, Dense)),
                                      l2_grads):
            if net.backend.inplace:  # dW is a fresh array or the executor's buffer, never a parameter
                layer_grads[0] += extra
            else:
                layer_grads[0] = layer_grads[0] + extra
    return cost, [g for layer_grads in grads for g in layer_grads]


def _host_dtype(net: Network) -> type:
    return np.float64 if net.dtype_name == "float64" else np.float32


class Solver:
    """scikit-learn's stochastic solver state (its ``_optimizer``): an nnxp optimizer, the
    learning-rate schedule and the stopping rule.

    ``learning_rate`` is the current rate as scikit-learn reports it: for SGD the
    schedule's (``constant``; ``invscaling``: init / (t + 1)^power_t after each
    epoch, t the samples seen; ``adaptive``: divided by 5 each time the stopping
    rule fires, until 1e-6); for Adam the bias-corrected rate of the last step.
    SGD's momentum buffer holds gradients (nnxp's and PyTorch's form, v), scikit-learn's
    holds steps already scaled by the rate (V = -lr v); when the schedule changes the rate
    from lr to lr', v is rescaled by lr / lr' so that V, and so every step, stays scikit-learn's.
    """

    def __init__(self, est: Any):
        self.solver = est.solver
        self.lr_schedule = est.learning_rate
        self.learning_rate_init = float(est.learning_rate_init)
        self.power_t = float(est.power_t)
        if self.solver == "sgd":
            momentum = float(est.momentum)
            self.optimizer: SGD | Adam = SGD(lr=self.learning_rate_init, momentum=momentum,
                                             nesterov=bool(est.nesterovs_momentum) and momentum > 0)
        else:
            self.optimizer = Adam(lr=self.learning_rate_init, beta1=float(est.beta_1), beta2=float(est.beta_2),
                                  eps=float(est.epsilon), eps_before_correction=True)
        self._sgd_rate = self.learning_rate_init
        self._pending: tuple[dict[str, Any], dict[str, np.ndarray]] | None = None

    @property
    def learning_rate(self) -> float:
        if self.solver == "sgd":
            return self._sgd_rate
        opt = self.optimizer
        if opt.t == 0:
            return self.learning_rate_init
        return opt.lr * np.sqrt(1.0 - opt.beta2**opt.t) / (1.0 - opt.beta1**opt.t)

    def bind(self, params: Sequence[Any]) -> None:
        """Carry the optimizer state over to ``params`` (the same parameters in new arrays)."""
        if self._pending is not None:
            info, arrays = self._pending
            self._pending = None
            if arrays:
                self.optimizer.load_state_dict(info, arrays, params)
                return
            self.optimizer.t = int(info["t"])
        if self.optimizer.state:
            self.optimizer.rebind(params, self.optimizer.state)

    def step(self, ops: Any, params: Sequence[Any], grads: Sequence[Any]) -> list[Any]:
        self.optimizer.lr = self._sgd_rate if self.solver == "sgd" else self.learning_rate_init
        return ops.optimizer_step(self.optimizer, params, grads)

    def _set_sgd_rate(self, rate: float) -> None:
        velocity = self.optimizer.state.get("velocity")
        if velocity and rate != self._sgd_rate:
            ratio = self._sgd_rate / rate
            self.optimizer.state["velocity"] = [v * ratio for v in velocity]
        self._sgd_rate = rate

    def iteration_ends(self, time_step: int) -> None:
        if self.solver == "sgd" and self.lr_schedule == "invscaling":
            self._set_sgd_rate(self.learning_rate_init / (time_step + 1) ** self.power_t)

    def trigger_stopping(self, msg: str, verbose: Any) -> bool:
        if self.solver != "sgd" or self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self._sgd_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_sgd_rate(self._sgd_rate / 5.0)
        if verbose:
            print(msg + " Setting learning rate to %f" % self._sgd_rate)
        return False

    # pickling: the state arrays as host copies, loaded onto the parameters at the next bind
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        info, arrays = self.optimizer.state_dict() if self._pending is None else self._pending
        state["_pending"] = (info, {k: to_numpy(a).copy() for k, a in arrays.items()})
        state["optimizer"] = type(self.optimizer)(**{k: v for k, v in info["config"].items() if k != "name"})
        return state
