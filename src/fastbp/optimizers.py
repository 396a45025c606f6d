"""Optimizers: hyperparameters and state for the compiled update over the flat buffer.

Each optimizer gives the engine its settings (``config``, an ``OptimizerConfig``) and keeps
its per-parameter state in ``state`` (an ``OptimizerState``: named buffers such as
``state["momentum_buffer"]``, the step count ``t``), which carries over from one ``fit`` to
the next. The update rules (``_optim.optimizer_step``) follow ``torch.optim`` step for step
where PyTorch has the optimizer:

- SGD (momentum, Nesterov, dampening 0): ``g += wd*w; b = mu*b + g (b = g at step 1);
  g = g + mu*b if nesterov else b; w -= lr*g``.
- Adam (Kingma & Ba 2015): ``m, v`` EMAs, bias-corrected, eps added to ``sqrt(v_hat)``;
  AdamW (Loshchilov & Hutter 2019): the same with ``w *= 1 - lr*wd`` before the step instead
  of ``wd*w`` in the gradient.
- RMSprop (Tieleman & Hinton 2012): ``v = a*v + (1-a)*g^2; w -= lr*g/(sqrt(v)+eps)``
  (with momentum: ``b = mu*b + g/(sqrt(v)+eps); w -= lr*b``).
- Rprop (Riedmiller & Braun 1993) as iRprop- (Igel & Huesken 2000), PyTorch's variant:
  per-weight steps grow by eta+ while the gradient sign holds, shrink by eta- on a flip,
  where the gradient is then zeroed (no step). ``plus=True`` gives iRprop+: on a flip the
  last step is undone when the loss went up.
- Quickprop (Fahlman 1988): per weight, a jump to the minimum of the parabola through the
  last two slopes, ``dw = dw_prev * S/(S_prev - S)``, never more than ``mu`` times the
  previous step (test ``S > mu/(1+mu) * S_prev``), plus ``lr*S`` while the slope keeps the
  sign of the previous step, and plain ``lr*S`` when the previous step was zero
  (S = -(dE/dw + weight_decay*w)). Rprop and Quickprop are full-batch methods.
"""
import inspect

from . import _optim
from ._validation import check_number

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Rprop", "Quickprop", "get",
           "names"]


class Optimizer:
    """Base: hyperparameters for the compiled update, and the state it carries."""
    kind = None

    def __init__(self, lr, weight_decay=0.0):
        self.lr = check_number(lr, "lr", low=0, low_open=True)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0)
        self.state = None         # an OptimizerState once training starts

    def buffer_names(self):
        """The per-parameter state buffers this optimizer's update reads and writes."""
        return ()

    def config(self, lr=None):
        """The settings as the engine reads them (``lr`` overrides ``self.lr``)."""
        return _optim.OptimizerConfig(kind=int(self.kind), lr=self.lr if lr is None else lr,
                                      weight_decay=self.weight_decay, **self._settings())

    def _settings(self):
        return {}

    def reset(self, n_params, dtype):
        """Fresh, zeroed state for ``n_params`` parameters (step count 0)."""
        self.state = _optim.OptimizerState(self.buffer_names(), n_params, dtype)

    def ensure_state(self, n_params, dtype):
        """Keep the state if it fits these parameters and settings, else start afresh."""
        s = self.state
        if (s is None or s.size != n_params or s.dtype != dtype
                or set(s.names) != set(self.buffer_names())):
            self.reset(n_params, dtype)

    @property
    def t(self):
        """Steps taken (0 before training)."""
        return 0 if self.state is None else self.state.t

    @t.setter
    def t(self, value):
        if self.state is None:
            raise ValueError("the optimizer has no state yet (it is made when training starts)")
        self.state.t = value

    def get_params(self):
        """The constructor's arguments, by name (as the object holds them now)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k != "state")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and Nesterov momentum (PyTorch's form)."""
    kind = _optim.Opt.SGD

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 classic_momentum=False):
        super().__init__(lr, weight_decay)
        self.momentum = check_number(momentum, "momentum", low=0, high=1, high_open=True)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        # v = mu*v - lr*g; w += v (Sutskever et al. 2013; scikit-learn). Same as PyTorch's
        # form while lr is constant, different when it changes.
        self.classic_momentum = bool(classic_momentum)

    def buffer_names(self):
        return ("momentum_buffer",) if self.momentum != 0 else ()

    def _settings(self):
        return dict(momentum=self.momentum, nesterov=self.nesterov,
                    classic_momentum=self.classic_momentum)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), PyTorch defaults betas (0.9, 0.999), eps 1e-8."""
    kind = _optim.Opt.ADAM

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 eps_before_bias_correction=False):
        super().__init__(lr, weight_decay)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        self.betas = (check_number(betas[0], "betas[0]", 0, 1, high_open=True),
                      check_number(betas[1], "betas[1]", 0, 1, high_open=True))
        self.eps = check_number(eps, "eps", low=0)
        # True: w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps) (Kingma & Ba's Algorithm 1
        # footnote form, scikit-learn); False: eps added to sqrt(v_hat) (PyTorch).
        self.eps_before_bias_correction = bool(eps_before_bias_correction)

    def buffer_names(self):
        return ("exp_avg", "exp_avg_sq")

    def _settings(self):
        return dict(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                    eps_before_bias_correction=self.eps_before_bias_correction)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019) as torch.optim.AdamW: the weight decay is decoupled
    from the gradient, ``w *= 1 - lr*weight_decay`` before each Adam step; torch's default
    weight_decay 0.01."""
    kind = _optim.Opt.ADAMW

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas, eps, weight_decay)

    def _settings(self):
        return dict(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012), PyTorch defaults alpha 0.99, eps 1e-8."""
    kind = _optim.Opt.RMSPROP

    def __init__(self, lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.alpha = check_number(alpha, "alpha", 0, 1)
        self.eps = check_number(eps, "eps", low=0)
        self.momentum = check_number(momentum, "momentum", low=0, high=1, high_open=True)

    def buffer_names(self):
        return ("square_avg",) + (("momentum_buffer",) if self.momentum != 0 else ())

    def _settings(self):
        return dict(alpha=self.alpha, eps=self.eps, momentum=self.momentum)


class Rprop(Optimizer):
    """Resilient backpropagation, iRprop- by default (PyTorch's), iRprop+ with ``plus=True``.

    ``lr`` is the initial step size of every weight; etas (0.5, 1.2); steps clamped to
    ``step_sizes`` (1e-6, 50).
    """
    kind = _optim.Opt.RPROP

    def __init__(self, lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), plus=False,
                 weight_decay=0.0):
        super().__init__(lr, weight_decay)
        em, ep = (check_number(etas[0], "etas[0]"), check_number(etas[1], "etas[1]"))
        if not 0 < em < 1 < ep:
            raise ValueError(f"etas must satisfy 0 < eta_minus < 1 < eta_plus, got {etas!r}")
        smin, smax = (check_number(step_sizes[0], "step_sizes[0]", low=0),
                      check_number(step_sizes[1], "step_sizes[1]", low=0))
        if smin > smax:
            raise ValueError(f"step_sizes must be (min, max) with min <= max, got {step_sizes!r}")
        self.etas, self.step_sizes, self.plus = (em, ep), (smin, smax), bool(plus)

    def buffer_names(self):
        return ("prev_grad", "step_size", "prev_step")

    def _settings(self):
        return dict(eta_minus=self.etas[0], eta_plus=self.etas[1], step_min=self.step_sizes[0],
                    step_max=self.step_sizes[1], backtrack=self.plus)


class Quickprop(Optimizer):
    """Quickprop (Fahlman 1988): ``lr`` is his epsilon, ``mu`` the maximum growth factor."""
    kind = _optim.Opt.QUICKPROP

    def __init__(self, lr=0.01, mu=1.75, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.mu = check_number(mu, "mu", low=0, low_open=True)

    def buffer_names(self):
        return ("prev_step", "prev_slope")

    def _settings(self):
        return dict(max_growth=self.mu)


_OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "rprop": Rprop,
               "quickprop": Quickprop}
CLASSES = tuple(_OPTIMIZERS.values())
OptimizerState = _optim.OptimizerState


def names():
    return sorted(_OPTIMIZERS)


def get(name, **kwargs):
    """An optimizer object by name (kwargs go to its constructor), or ``name`` itself if it
    already is an Optimizer."""
    if isinstance(name, Optimizer):
        return name
    if not isinstance(name, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {type(name).__name__}")
    cls = _OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {names()}")
    return cls(**kwargs)
