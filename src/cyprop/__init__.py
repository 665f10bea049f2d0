"""cyprop: multilayer perceptrons trained by backpropagation, with a compiled core.

>>> import cyprop
>>> X, y = cyprop.datasets.load_digits()          # needs scikit-learn
>>> net = cyprop.Network([64, 32, 10], seed=0)
>>> history = net.fit(X, y, epochs=30, batch_size=10, optimizer=cyprop.SGD(0.5))
"""

from ._version import __version__
from . import datasets, schedules
from ._backend import available as available_backends
from ._config import config, show_config
from .ensemble import Ensemble, train_many
from .errors import TrainingDiverged
from .explain import Step, explain
from .gradcheck import check_gradients
from .history import History
from .network import Network
from .optimizers import SGD, Adagrad, Adam, Optimizer, RMSprop, Rprop
from .persistence import load

__all__ = ["Network", "SGD", "Adam", "RMSprop", "Adagrad", "Rprop", "Optimizer", "History",
           "TrainingDiverged", "check_gradients", "load", "explain", "Step", "train_many",
           "Ensemble", "datasets", "schedules", "available_backends", "config", "show_config",
           "__version__"]
