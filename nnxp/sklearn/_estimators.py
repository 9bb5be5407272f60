"""MLPClassifier and MLPRegressor: scikit-learn's estimators, trained by nnxp.

They subclass scikit-learn's own ``MLPClassifier`` and ``MLPRegressor``, so
parameters, their validation and error messages, label handling, scoring and
the L-BFGS driver are scikit-learn's, and replace the numeric core: the
forward pass (:meth:`_forward_pass_fast`), the gradient (:meth:`_backprop`, which
SciPy's L-BFGS-B also calls) and the stochastic solvers (:meth:`_fit_stochastic`)
run nnxp's network, losses and optimizers (:mod:`nnxp.sklearn._engine`) on
``device``.  ``coefs_`` and ``intercepts_`` stay the host NumPy arrays
scikit-learn's users read, in its (in, out) layout; each call copies them to the
network and the trained values back.
"""

from __future__ import annotations

import contextlib
import warnings
from numbers import Integral
from typing import Any, Iterator

import numpy as np
import scipy.sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _SkClassifier
from sklearn.neural_network import MLPRegressor as _SkRegressor
from sklearn.utils import gen_batches, shuffle
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import validate_data

from ..backend import get_backend, to_numpy
from ..kernels import ops_for
from ..threads import thread_limit
from . import _engine

__all__ = ["MLPClassifier", "MLPRegressor"]

_EXTRA_CONSTRAINTS = {"device": "no_validation", "dtype": [None, StrOptions({"float32", "float64"})],
                      "threads": [None, Interval(Integral, 1, None, closed="left")]}


class _NnxpMLP:
    """The numeric core of scikit-learn's BaseMultilayerPerceptron, on nnxp."""

    # -- the network ---------------------------------------------------------------
    def _compute_dtype(self) -> str:
        if self.dtype is not None:
            return self.dtype
        return "float32" if np.asarray(self.coefs_[0]).dtype == np.float32 else "float64"

    def _network(self) -> Any:
        """The nnxp network holding the current ``coefs_``/``intercepts_`` (reused when its shapes fit)."""
        live = getattr(self, "_live_network", None)
        if live is not None:  # inside fit: the network being trained is the truth
            return live
        dtype = self._compute_dtype()
        net = getattr(self, "_net", None)
        key = (tuple(np.shape(w) for w in self.coefs_), self.activation, self.out_activation_, dtype,
               str(self.device))
        if net is None or getattr(self, "_net_key", None) != key:
            net = _engine.build_network(self.coefs_, self.intercepts_, self.activation, self.out_activation_,
                                        self.device, dtype)
            self._net, self._net_key = net, key
        else:
            _engine.load_parameters(net, self.coefs_, self.intercepts_)
        return net

    def _store(self, net: Any) -> None:
        self.coefs_, self.intercepts_ = _engine.host_layers(net)

    @contextlib.contextmanager
    def _threads(self, net: Any, rows: int) -> Iterator[None]:
        with net.backend.context(), thread_limit(self.threads, rows, net.sizes, net.backend):
            yield

    # -- scikit-learn's hooks, replaced ------------------------------------------------
    def _validate_input(self, X, y, incremental, reset):
        X, y = super()._validate_input(X, y, incremental, reset)
        if scipy.sparse.issparse(X):
            X = X.toarray()  # nnxp's products are dense
        if self.dtype is not None:
            X = X.astype(self.dtype, copy=False)
        return X, y

    def _fit(self, X, y, sample_weight=None, incremental=False):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if any(isinstance(h, (bool, np.bool_)) or not isinstance(h, Integral) for h in sizes):
            raise ValueError(f"hidden_layer_sizes must be whole numbers of units, e.g. (100,) or (64, 32); "
                             f"got {self.hidden_layer_sizes!r}")
        if getattr(self, "loss", None) == "poisson":
            raise ValueError("loss='poisson' is not supported by nnxp's MLPRegressor (no exp output yet): use "
                             "loss='squared_error', or sklearn.neural_network.MLPRegressor")
        try:
            return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)
        finally:
            self._live_network = None

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = self._validated_for_predict(X)
        elif scipy.sparse.issparse(X):
            X = X.toarray()
        net = self._network()
        if getattr(self, "_live_network", None) is not None:  # early stopping's score, inside fit's thread limit
            return to_numpy(net.predict(X))
        with self._threads(net, X.shape[0]):
            return to_numpy(net.predict(X))

    def _validated_for_predict(self, X):
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return X.toarray() if scipy.sparse.issparse(X) else X

    def _backprop(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads):
        """scikit-learn's loss and gradient on all of (X, y), by nnxp (L-BFGS calls this per evaluation)."""
        net = self._network()
        ops = ops_for(net.backend, fast=False)
        with np.errstate(over="ignore", invalid="ignore"):  # threads: chosen once, by _fit_lbfgs
            x, t = net.inputs(X), net.targets(_floats(y, net), X.shape[0])
            w = None if sample_weight is None else net.backend.asarray(sample_weight, net.dtype)
            total = float(X.shape[0]) if sample_weight is None else float(np.sum(sample_weight))
            cost, grads = _engine.objective_step(net, ops, x, t, w, float(self.alpha), total, self._loss_scale())
            host = [to_numpy(g) for g in grads]
        n = len(net.dense_layers)
        coefs = [host[2 * i].T.astype(np.float64) for i in range(n)]
        intercepts = [host[2 * i + 1].astype(np.float64) for i in range(n)]
        return float(cost), coefs, intercepts

    def _fit_lbfgs(self, X, y, *args, **kwargs):
        """scikit-learn's driver of SciPy's L-BFGS-B, calling :meth:`_backprop`; the thread count
        is chosen once here (choosing it samples the machine's load: not once per evaluation)."""
        net = self._network()
        with self._threads(net, X.shape[0]):
            return super()._fit_lbfgs(X, y, *args, **kwargs)

    def _loss_scale(self) -> float:
        return 1.0 / self.n_outputs_ if self.out_activation_ == "identity" else 1.0

    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads,
                        layer_units, incremental):
        """scikit-learn's epoch loop (same shuffles, splits, stopping and warnings), nnxp's steps."""
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _engine.Solver(self)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X_val = y_val = sw_val = None
        if self.early_stopping:
            stratify = y if (self._is_classifier() and self.n_outputs_ == 1) else None
            parts = [X, y] if sample_weight is None else [X, y, sample_weight]
            split = train_test_split(*parts, random_state=self._random_state, test_size=self.validation_fraction,
                                     stratify=stratify)
            X, X_val, y, y_val = split[:4]
            if sample_weight is not None:
                sample_weight, sw_val = split[4:]
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            if self._is_classifier():
                y_val = self._label_binarizer.inverse_transform(y_val)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n))

        net = self._network()
        self._optimizer.bind(net.parameters())
        backend = net.backend
        ops = ops_for(backend)
        if hasattr(ops, "resolve_blas"):
            ops.resolve_blas(net, batch_size, net.dtype)
        self._live_network = net
        sample_idx = np.arange(n)
        try:
            with self._threads(net, batch_size), np.errstate(over="ignore", invalid="ignore"):
                x, t = net.inputs(X), net.targets(_floats(y, net), n)
                sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
                w_dev = None if sw is None else backend.asarray(sw, net.dtype)
                self.n_iter_ = 0
                for _ in range(self.max_iter):
                    if self.shuffle:
                        sample_idx = shuffle(sample_idx, random_state=self._random_state)
                    order = backend.asarray(sample_idx, backend.index_dtype)
                    total = None
                    for batch in gen_batches(n, batch_size):
                        index = order[batch]
                        xb = ops.take_rows(x, index, "x_batch")
                        yb = ops.take_rows(t, index, "y_batch")
                        rows = batch.stop - batch.start
                        if sw is None:
                            wb, weight_sum = None, float(rows)
                        else:
                            wb = backend.xp.take(w_dev, index, axis=0)
                            weight_sum = float(sw[sample_idx[batch]].sum())
                        cost, grads = _engine.objective_step(net, ops, xb, yb, wb, float(self.alpha), weight_sum,
                                                             self._loss_scale())
                        net.set_parameters(self._optimizer.step(ops, net.parameters(), grads))
                        total = cost * float(rows) if total is None else total + cost * float(rows)
                    self.n_iter_ += 1
                    self.loss_ = float(total) / n
                    self.t_ += n
                    self.loss_curve_.append(self.loss_)
                    if self.verbose:
                        print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                    self._update_no_improvement_count(self.early_stopping, X_val, y_val, sw_val)
                    self._optimizer.iteration_ends(self.t_)
                    if self._no_improvement_count > self.n_iter_no_change:
                        what = "Validation score" if self.early_stopping else "Training loss"
                        msg = (f"{what} did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                        if self._optimizer.trigger_stopping(msg, self.verbose):
                            break
                        self._no_improvement_count = 0
                    if incremental:
                        break
                    if self.n_iter_ == self.max_iter:
                        warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                      "hasn't converged yet." % self.max_iter, ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        self._live_network = None
        if self.early_stopping:
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts
        else:
            self._store(net)

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        if early_stopping:
            score = self._score(X, y, sample_weight=sample_weight)  # on the network being trained
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs, self._best_intercepts = _engine.host_layers(self._live_network)
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _is_classifier(self) -> bool:
        return isinstance(self, _SkClassifier)

    # -- pickling: the network holds array-library modules; coefs_ are the truth ---------
    def __getstate__(self):
        state = super().__getstate__()
        for key in ("_net", "_net_key", "_live_network"):
            state.pop(key, None)
        return state


def _floats(y: Any, net: Any) -> np.ndarray:
    """Targets as floats of the network's dtype (scikit-learn's binarized labels may be bool)."""
    return np.asarray(y, dtype=np.float64 if net.dtype_name == "float64" else np.float32)


def _device_name(device: Any) -> Any:
    get_backend(device)  # a clear error now for a device that does not exist
    return device


class MLPClassifier(_NnxpMLP, _SkClassifier):
    """scikit-learn's ``MLPClassifier``, trained by nnxp (same parameters, attributes and results).

    Extra parameters: ``class_weight`` (None, ``"balanced"`` or {label: weight}: multiplies
    ``sample_weight``, as in scikit-learn's linear models), ``device`` (``"cpu"``,
    ``"cuda"``, ``"auto"``, ...: where the network trains, see :func:`nnxp.get_backend`)
    and ``dtype`` (None: follow ``X``, float64 data trains in float64, as scikit-learn;
    or ``"float32"``/``"float64"``) and ``threads`` (CPU BLAS threads; None: nnxp's choice per
    fit, see :mod:`nnxp.threads`).  ``solver="lbfgs"`` runs SciPy's L-BFGS-B on nnxp's
    gradients.  Everything else: see ``sklearn.neural_network.MLPClassifier`` and docs/sklearn.md.
    """

    _parameter_constraints: dict = {
        **_SkClassifier._parameter_constraints, **_EXTRA_CONSTRAINTS,
        "class_weight": [None, dict, StrOptions({"balanced"})],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, device="cpu", dtype=None, threads=None):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
                         shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.class_weight = class_weight
        self.device = device
        self.dtype = dtype
        self.threads = threads

    def _fit(self, X, y, sample_weight=None, incremental=False):
        _device_name(self.device)
        if self.class_weight is not None:
            if incremental and self.class_weight == "balanced":
                raise ValueError("class_weight='balanced' needs all the data at once: use fit, or give "
                                 "class_weight as a dict {label: weight} for partial_fit")
            weights = compute_sample_weight(self.class_weight, np.asarray(y) if not hasattr(y, "toarray")
                                            else y.toarray())
            sample_weight = weights if sample_weight is None else weights * np.asarray(sample_weight, dtype=float)
        return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)


class MLPRegressor(_NnxpMLP, _SkRegressor):
    """scikit-learn's ``MLPRegressor`` (``loss="squared_error"``), trained by nnxp.

    Extra parameters ``device``, ``dtype`` and ``threads`` as for :class:`MLPClassifier`;
    ``loss="poisson"`` is refused with a clear error (nnxp has no exponential output yet).
    """

    _parameter_constraints: dict = {**_SkRegressor._parameter_constraints, **_EXTRA_CONSTRAINTS}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 max_fun=15000, device="cpu", dtype=None, threads=None):
        super().__init__(loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
                         alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
                         shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
                         warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.device = device
        self.dtype = dtype
        self.threads = threads

    def _fit(self, X, y, sample_weight=None, incremental=False):
        _device_name(self.device)
        return super()._fit(X, y, sample_weight=sample_weight, incremental=incremental)
