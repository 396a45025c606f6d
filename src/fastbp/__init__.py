"""fastbp: fast backpropagation for multilayer perceptrons on the CPU."""
from ._version import __version__

from . import activations, initializers, losses, optimizers, schedules, callbacks, diagnostics
from . import datasets, export, models, pretrain
from ._config import get_num_threads, num_threads, set_num_threads, show_config
from ._config import get_gemm_kernel, set_gemm_kernel
from .diagnostics import GradientNormRecorder, gradient_check
from .network import Gradients, Network
from .trainer import History, Trainer, TrainingDiverged
from .callbacks import EarlyStopping, ModelCheckpoint
from .pretrain import pretrain_autoencoders
from .many import train_many

__all__ = ["Network", "Gradients", "Trainer", "History", "TrainingDiverged", "EarlyStopping",
           "ModelCheckpoint",
           "gradient_check", "set_num_threads", "get_num_threads", "num_threads", "show_config",
           "get_gemm_kernel", "set_gemm_kernel",
           "activations", "initializers", "losses", "optimizers", "schedules", "callbacks",
           "diagnostics", "datasets", "export", "models", "pretrain", "pretrain_autoencoders",
           "GradientNormRecorder", "train_many", "__version__"]
