"""scikit-learn's MLPClassifier and MLPRegressor, trained by nnxp: a drop-in replacement.

``pip install 'nnxp[sklearn]'`` (in a clone: ``pip install '.[sklearn]'``).
Replace ``from sklearn.neural_network import MLPClassifier`` with::

    from nnxp.sklearn import MLPClassifier, MLPRegressor

Same parameters, defaults and meaning, same fitted attributes (``coefs_`` in
scikit-learn's (in, out) layout, ``loss_curve_``, ``n_iter_``, ...), same
results up to floating-point rounding; scikit-learn's own
``sklearn/neural_network/tests/test_mlp.py`` runs against these classes in
tests/test_sklearn_mlp_suite.py, with the tests that cannot apply listed in
tests/sklearn_mlp_skips.txt.  Extras: ``device`` (train on a GPU), ``dtype``,
and ``class_weight`` for the classifier.  See docs/sklearn.md.
"""

from __future__ import annotations

from .._extras import require

require("sklearn", "sklearn", "nnxp.sklearn", package="scikit-learn")

from ._estimators import MLPClassifier, MLPRegressor  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor"]
