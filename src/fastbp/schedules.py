"""Learning-rate schedules: epoch -> learning rate (epochs count from 0)."""
import math

from ._validation import check_number, check_positive_int

__all__ = ["StepLR", "ExponentialLR", "CosineLR", "get"]


class Schedule:
    base_lr = None

    def __call__(self, epoch):  # pragma: no cover - interface
        raise NotImplementedError


class StepLR(Schedule):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, step_size, gamma=0.1):
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = check_number(gamma, "gamma", low=0, low_open=True)

    def __call__(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """lr = base_lr * gamma ** epoch."""

    def __init__(self, gamma):
        self.gamma = check_number(gamma, "gamma", low=0, low_open=True)

    def __call__(self, epoch):
        return self.base_lr * self.gamma ** epoch


class CosineLR(Schedule):
    """Cosine annealing from base_lr to eta_min over T_max epochs (Loshchilov & Hutter)."""

    def __init__(self, T_max, eta_min=0.0):
        self.T_max = check_positive_int(T_max, "T_max")
        self.eta_min = check_number(eta_min, "eta_min", low=0)

    def __call__(self, epoch):
        e = min(epoch, self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * e / self.T_max)) / 2


def get(spec, base_lr):
    """A callable epoch -> lr from a Schedule, a name ("step", "exponential", "cosine"
    with their defaults), or any callable."""
    if spec is None:
        return lambda epoch: base_lr
    if isinstance(spec, str):
        table = {"step": lambda: StepLR(10, 0.1), "exponential": lambda: ExponentialLR(0.95),
                 "cosine": lambda: CosineLR(100)}
        if spec not in table:
            raise ValueError(f"unknown lr_schedule {spec!r}; valid names: {sorted(table)} "
                             "or a callable epoch -> lr")
        spec = table[spec]()
    if isinstance(spec, Schedule):
        spec.base_lr = base_lr
        return spec
    if callable(spec):
        return spec
    raise TypeError(f"lr_schedule must be a name, a Schedule or a callable, got {spec!r}")
