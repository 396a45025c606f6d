"""Learning-rate schedules: epoch -> learning rate (epochs count from 0).

A schedule may reach 0 (``CosineLR`` with ``eta_min=0`` at ``T_max``, as ``torch``'s
default): an epoch with lr 0 changes no weight. Built-in schedules have a ``config()``
that checkpoints store and ``from_config`` rebuilds.
"""
import math

from ._validation import check_number, check_positive_int

__all__ = ["Schedule", "ConstantLR", "StepLR", "ExponentialLR", "CosineLR", "get",
           "from_config"]


class Schedule:
    """Base of the built-in schedules; ``base_lr`` is set by the Trainer (the optimizer's lr)."""
    base_lr = None

    def __call__(self, epoch):  # pragma: no cover - interface
        raise NotImplementedError

    def config(self):
        """The constructor's arguments, by name, with the schedule's name under "name"."""
        return {"name": _NAMES[type(self)], **self._args()}

    def _args(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._args().items())
        return f"{type(self).__name__}({args})"


class ConstantLR(Schedule):
    r""":math:`\eta_e = \eta_0` every epoch (the default): lr = base_lr."""

    def __call__(self, epoch):
        return self.base_lr


class StepLR(Schedule):
    r"""lr = base_lr * gamma ** (epoch // step_size).

    .. math:: \eta_e = \eta_0\, \gamma^{\lfloor e / s \rfloor}

    with :math:`\eta_0` = ``base_lr``, :math:`e` the epoch (from 0), :math:`s` = ``step_size``.

    Examples
    --------
    >>> from fastbp.schedules import StepLR, get
    >>> schedule = get(StepLR(step_size=2, gamma=0.5), base_lr=0.1)
    >>> [schedule(e) for e in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, step_size, gamma=0.1):
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = check_number(gamma, "gamma", low=0, low_open=True)

    def __call__(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)

    def _args(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialLR(Schedule):
    r"""lr = base_lr * gamma ** epoch: :math:`\eta_e = \eta_0\, \gamma^e`."""

    def __init__(self, gamma):
        self.gamma = check_number(gamma, "gamma", low=0, low_open=True)

    def __call__(self, epoch):
        return self.base_lr * self.gamma ** epoch

    def _args(self):
        return {"gamma": self.gamma}


class CosineLR(Schedule):
    r"""Cosine annealing from base_lr to eta_min over T_max epochs (Loshchilov & Hutter).

    Past T_max the lr stays at eta_min, or with ``restart=True`` the annealing starts
    again every T_max epochs (SGDR's warm restarts with a constant period).

    .. math::

        \eta_e = \eta_{\min} + \frac{\eta_0 - \eta_{\min}}{2}
        \left(1 + \cos\frac{\pi\, e'}{T_{\max}}\right), \qquad
        e' = \min(e, T_{\max}) \ \text{or, with restarts,}\ e \bmod T_{\max}.
    """

    def __init__(self, T_max, eta_min=0.0, restart=False):
        self.T_max = check_positive_int(T_max, "T_max")
        self.eta_min = check_number(eta_min, "eta_min", low=0)
        self.restart = bool(restart)

    def __call__(self, epoch):
        e = epoch % self.T_max if self.restart else min(epoch, self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * e / self.T_max)) / 2

    def _args(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min, "restart": self.restart}


_NAMES = {ConstantLR: "constant", StepLR: "step", ExponentialLR: "exponential",
          CosineLR: "cosine"}
BUILTIN = tuple(_NAMES)
_DEFAULTS = {"step": lambda: StepLR(10, 0.1), "exponential": lambda: ExponentialLR(0.95),
             "cosine": lambda: CosineLR(100), "constant": ConstantLR}


def get(spec, base_lr):
    """A callable epoch -> lr from None (constant), a Schedule, a name ("constant",
    "step", "exponential", "cosine" with their defaults), or any callable."""
    if spec is None:
        spec = ConstantLR()
    if isinstance(spec, str):
        if spec not in _DEFAULTS:
            raise ValueError(f"unknown lr_schedule {spec!r}; valid names: {sorted(_DEFAULTS)} "
                             "or a callable epoch -> lr")
        spec = _DEFAULTS[spec]()
    if isinstance(spec, Schedule):
        spec.base_lr = base_lr
        return spec
    if callable(spec):
        return spec
    raise TypeError(f"lr_schedule must be a name, a Schedule or a callable, got {spec!r}")


def from_config(config, base_lr):
    """The schedule a ``Schedule.config()`` describes, with ``base_lr``."""
    config = dict(config)
    cls = {v: k for k, v in _NAMES.items()}.get(config.pop("name", None))
    if cls is None:
        raise ValueError(f"unknown schedule in {config!r}")
    return get(cls(**config), base_lr)
