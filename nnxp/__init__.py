"""nnxp: neural networks written once against the Python Array API standard.

The same code trains on NumPy (CPU) or CuPy (CUDA GPUs), chosen by a device
selector::

    import nnxp
    net = nnxp.Network([784, 128, 10], hidden="relu", output="softmax", device="auto")
    history = net.fit(x_train, y_train, epochs=5, optimizer=nnxp.Adam(lr=1e-3),
                      validation_data=(x_test, y_test))
    net.save("digits.safetensors")
"""

from .activations import Activation, get_activation
from .backend import Backend, backend_of, cuda_available, get_backend, to_numpy
from .errors import (BackendError, ConfigError, DataError, DivergenceError, DownloadError,
                     NnxpError, ShapeError)
from .kernels.blas import set_blas
from .losses import CrossEntropy, Loss, SquaredError, get_loss
from .layers import Dense, Dropout, Layer
from .network import Network
from .optim import SGD, Adam, AdamW, Optimizer, get_optimizer
from .network import load
from .serialization import save
from .text.embedding import Embedding  # registers the "embedding" layer kind for model files
from .train import Callback, History, evaluate, fit
from .callbacks import EarlyStopping, SaveBest

__version__ = "0.1.0"

__all__ = [
    "Activation", "Adam", "AdamW", "Backend", "BackendError", "Callback", "ConfigError",
    "CrossEntropy", "DataError", "Dense", "DivergenceError", "DownloadError", "Dropout", "EarlyStopping",
    "Embedding", "History", "Layer", "Loss", "SaveBest",
    "Network", "NnxpError", "Optimizer", "SGD", "ShapeError", "SquaredError", "backend_of",
    "cuda_available", "evaluate", "fit", "get_activation", "get_backend", "get_loss",
    "get_optimizer", "load", "save", "set_blas", "to_numpy", "__version__",
]
