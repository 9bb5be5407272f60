"""A scikit-learn estimator: :class:`MLPClassifier`, an nnxp network behind sklearn's API.

``pip install 'nnxp[sklearn]'`` (in a clone: ``pip install '.[sklearn]'``).
It follows scikit-learn's conventions (``fit``/``predict``/``predict_proba``/
``score``/``partial_fit``, ``classes_``, ``n_features_in_``, parameters
stored untouched by ``__init__``), so it works in ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``, and it passes scikit-learn's own
``check_estimator`` (see tests/test_sklearn.py for the checks it skips and why)::

    from nnxp.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128,), epochs=10, random_state=0)
    clf.fit(X, y).score(X_test, y_test)

The network is ``[n_features, *hidden_layer_sizes, n_classes]`` with a softmax
output and cross-entropy loss (two outputs for two classes), trained by
:func:`nnxp.train.fit`; it lives on ``device`` with ``dtype``.  Labels may be
any values ``numpy.unique`` sorts (ints, strings); ``predict`` returns them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._extras import require

require("sklearn", "sklearn", "nnxp.sklearn", package="scikit-learn")
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.utils import check_random_state  # noqa: E402
from sklearn.utils.multiclass import check_classification_targets  # noqa: E402
from sklearn.utils.validation import check_is_fitted, validate_data  # noqa: E402

from .backend import to_numpy  # noqa: E402
from .network import Network
from .optim import get_optimizer
from .threads import thread_limit
from .train import fit as _fit

__all__ = ["MLPClassifier"]


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained with nnxp.

    Parameters
    ----------
    hidden_layer_sizes : widths of the hidden layers, e.g. ``(256,)`` or ``(256, 128)``.
    activation : hidden activation (``"relu"``, ``"leaky_relu"``, ``"tanh"``, ``"sigmoid"``, ...).
    optimizer : ``"adam"`` (default), ``"adamw"``, ``"sgd"``, ``"momentum"``, ``"nesterov"``.
    lr : learning rate (default 1e-3, the CLI's).
    epochs : passes over the data in :meth:`fit`; :meth:`partial_fit` makes one.
    batch_size : samples per step.
    schedule : ``"constant"`` or ``"cosine"`` learning rate over the epochs.
    random_state : int, ``numpy.random.RandomState`` or None: seeds the initial
        weights and the shuffles (an int gives the same model every fit).
    device : ``"cpu"`` (default), ``"cuda"``, ``"auto"``, ... (see :func:`nnxp.get_backend`).
    dtype : ``"float32"`` (default) or ``"float64"``.
    threads : BLAS threads while fitting and predicting (None: nnxp's
        measured default, see :mod:`nnxp.threads`).
    verbose : 1 prints one line per epoch.

    Attributes (after fit): ``classes_``, ``n_features_in_``, ``network_``
    (the :class:`~nnxp.network.Network`), ``history_`` (per-epoch records),
    ``n_iter_`` (epochs done).
    """

    def __init__(self, hidden_layer_sizes: tuple[int, ...] = (100,), activation: str = "relu", *,
                 optimizer: str = "adam", lr: float = 1e-3, epochs: int = 20, batch_size: int = 32,
                 schedule: str = "constant", random_state: Any = None, device: Any = "cpu",
                 dtype: str = "float32", threads: int | None = None, verbose: int = 0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.schedule = schedule
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.threads = threads
        self.verbose = verbose

    # -- training ----------------------------------------------------------------
    def fit(self, X: Any, y: Any) -> "MLPClassifier":
        """Train a fresh network for ``epochs`` epochs on (X, y); returns self."""
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        classes, codes = np.unique(y, return_inverse=True)
        self._start(X.shape[1], classes)
        self._train(X, codes, self.epochs)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> "MLPClassifier":
        """One epoch on (X, y), continuing the current model (and its optimizer state).

        The first call needs ``classes``: every label the model will ever see.
        """
        first = not hasattr(self, "network_")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit "
                                 "(every label the model will see)")
            self._start(X.shape[1], np.unique(np.asarray(classes)))
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes {np.unique(classes)!r} differ from those of the first call "
                             f"{self.classes_!r}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y has labels {unknown!r} not in classes {self.classes_!r}")
        self._train(X, np.searchsorted(self.classes_, y), 1)
        return self

    def _start(self, n_features: int, classes: np.ndarray) -> None:
        """A fresh network, optimizer and history for ``classes``."""
        if len(classes) < 2:
            raise ValueError(f"MLPClassifier needs samples of at least 2 classes; got 1 class "
                             f"({classes[0]!r})")
        self.classes_ = classes
        self._seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        sizes = [int(n_features), *[int(h) for h in self.hidden_layer_sizes], len(classes)]
        self.network_ = Network(sizes, hidden=self.activation, output="softmax", loss="cross_entropy",
                                seed=self._seed, dtype=self.dtype, device=self.device)
        self._optimizer = get_optimizer(self.optimizer, lr=float(self.lr))
        self.history_: list[dict[str, float]] = []
        self.n_iter_ = 0

    def _train(self, X: np.ndarray, codes: np.ndarray, epochs: int) -> None:
        with thread_limit(self.threads, self.batch_size, self.network_.sizes, self.network_.backend):
            history = _fit(self.network_, X, codes, epochs=self.n_iter_ + epochs, initial_epoch=self.n_iter_,
                           batch_size=int(self.batch_size), optimizer=self._optimizer,
                           schedule=self.schedule, seed=self._seed, verbose=self.verbose, progress=False)
        self.history_.extend(history.records)
        self.n_iter_ += epochs

    # -- inference -----------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        """(n_samples, n_classes) class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        with thread_limit(self.threads, X.shape[0], self.network_.sizes, self.network_.backend):
            return to_numpy(self.network_.predict(X)).astype(np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of each sample."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def predict_log_proba(self, X: Any) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    # -- pickling: the network holds array-library modules, so store it as arrays --------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        net = state.pop("network_", None)
        if net is not None:
            state["_network_state"] = (net.config(), net.get_weights())
            optimizer = state.pop("_optimizer")
            info, arrays = optimizer.state_dict()
            state["_optimizer_state"] = (info, {k: to_numpy(a) for k, a in arrays.items()})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_network_state", None)
        opt = state.pop("_optimizer_state", None)
        self.__dict__.update(state)
        if saved is not None:
            config, weights = saved
            self.network_ = Network.from_config(config, device=self.device).set_weights(weights)
            self._optimizer = get_optimizer(opt[0]["config"])
            if opt[1]:
                self._optimizer.load_state_dict(opt[0], opt[1], self.network_.parameters())
