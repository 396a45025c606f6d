r"""Optimizers: hyperparameters and state for the compiled update over the flat buffer.

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

In the formulas of each class, :math:`w` is one parameter (the update runs elementwise
over the flat parameter buffer), :math:`\eta` the learning rate ``lr`` (the schedule's value
for the epoch), :math:`t = 1, 2, \dots` the step, and :math:`g_t` the gradient of the batch's
mean loss with the Trainer's extras folded in, in this order: the L1 subgradient
:math:`\ell_1 \operatorname{sign}(w)`, ``clip_value``, the ``clip_norm`` scale, then the
coupled weight decay :math:`\lambda w` (:math:`\lambda` = ``weight_decay``; on the weights
only unless ``Trainer(decay_biases=True)``; AdamW decouples it instead).
"""
import inspect

from . import _optim
from ._validation import check_number

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Rprop", "Quickprop", "get",
           "names"]


class Optimizer:
    r"""Base of the optimizers: hyperparameters for the compiled update, and its state.

    Subclasses name the engine's update kind (``kind``), the per-parameter buffers their
    update keeps (:meth:`buffer_names`) and their settings; the compiled update itself runs
    in ``fastbp._optim``. Pass an instance (or a name, see :func:`get`) as
    ``Trainer(optimizer=...)``.

    Parameters
    ----------
    lr : float
        Learning rate, > 0.
    weight_decay : float, default 0
        Coupled L2 weight decay :math:`\lambda` (``+ weight_decay * w`` in the gradient).

    Attributes
    ----------
    state : OptimizerState or None
        The per-parameter buffers (``state["exp_avg"]``, ...) and the step count ``t``;
        None until training starts. It carries over from one ``fit`` to the next and into
        checkpoints.
    """
    kind = None

    def __init__(self, lr, weight_decay=0.0):
        self.lr = check_number(lr, "lr", low=0, low_open=True)
        self.weight_decay = check_number(weight_decay, "weight_decay", low=0)
        self.state = None         # an OptimizerState once training starts

    def buffer_names(self):
        """The per-parameter state buffers this optimizer's update reads and writes.

        Returns
        -------
        tuple of str
            Names of the buffers in ``state``, each one value per parameter.
        """
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
    r"""Stochastic gradient descent with momentum and Nesterov momentum (PyTorch's form).

    Step for step the same as :class:`torch.optim.SGD` with ``dampening=0``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate :math:`\eta`.
    momentum : float, default 0
        Momentum :math:`\mu` in [0, 1); 0 keeps no buffer.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0``).
    weight_decay : float, default 0
        Coupled L2 decay :math:`\lambda`, added to the gradient as :math:`\lambda w`.
    classic_momentum : bool, default False
        The velocity form of Sutskever et al. (2013) and scikit-learn instead of PyTorch's.
        The two agree while :math:`\eta` is constant and differ when a schedule changes it.

    Notes
    -----
    Without momentum, :math:`w_t = w_{t-1} - \eta\, g_t`. With momentum (PyTorch's form; the
    buffer starts as the first gradient):

    .. math::

        b_1 = g_1, \qquad b_t = \mu\, b_{t-1} + g_t, \qquad
        w_t = w_{t-1} - \eta \begin{cases} g_t + \mu\, b_t & \text{Nesterov} \\
                                          b_t & \text{otherwise.} \end{cases}

    With ``classic_momentum=True`` (velocity :math:`v_0 = 0`):

    .. math::

        v_t = \mu\, v_{t-1} - \eta\, g_t, \qquad
        w_t = w_{t-1} + \begin{cases} \mu\, v_t - \eta\, g_t & \text{Nesterov} \\
                                     v_t & \text{otherwise.} \end{cases}

    References
    ----------
    .. [1] Ilya Sutskever, James Martens, George Dahl and Geoffrey Hinton, "On the importance of
       initialization and momentum in deep learning", ICML 2013.

    Examples
    --------
    >>> from fastbp.optimizers import SGD
    >>> opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    >>> opt.buffer_names()
    ('momentum_buffer',)
    >>> SGD(lr=0.1).buffer_names()          # no momentum: no state at all
    ()
    """
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
    r"""Adam (Kingma & Ba 2015), PyTorch defaults betas (0.9, 0.999), eps 1e-8.

    Step for step the same as :class:`torch.optim.Adam` (``amsgrad=False``).

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate :math:`\eta`.
    betas : (float, float), default (0.9, 0.999)
        Decay rates :math:`(\beta_1, \beta_2)` of the first and second moment estimates.
    eps : float, default 1e-8
        :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`.
    weight_decay : float, default 0
        Coupled L2 decay :math:`\lambda` (in the gradient; see :class:`AdamW` for the
        decoupled form).
    eps_before_bias_correction : bool, default False
        Add :math:`\epsilon` to :math:`\sqrt{v_t}` before the bias correction, as in the
        footnote form of the paper's Algorithm 1 and scikit-learn, instead of PyTorch's
        :math:`\sqrt{\hat v_t} + \epsilon`.

    Notes
    -----
    With :math:`m_0 = v_0 = 0`:

    .. math::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2,

        \hat m_t = \frac{m_t}{1 - \beta_1^t}, \qquad \hat v_t = \frac{v_t}{1 - \beta_2^t},
        \qquad w_t = w_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.

    With ``eps_before_bias_correction=True`` the last step is
    :math:`w_t = w_{t-1} - \eta\, \frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
    \frac{m_t}{\sqrt{v_t} + \epsilon}`.

    References
    ----------
    .. [1] Diederik P. Kingma and Jimmy Ba, "Adam: A method for stochastic optimization",
       ICLR 2015.

    Examples
    --------
    >>> from fastbp.optimizers import Adam
    >>> Adam(lr=3e-4).buffer_names()
    ('exp_avg', 'exp_avg_sq')
    """
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
    r"""AdamW (Loshchilov & Hutter 2019) as :class:`torch.optim.AdamW`.

    The weight decay is decoupled from the gradient: ``w *= 1 - lr*weight_decay`` before
    each Adam step; torch's default weight_decay 0.01.

    Parameters
    ----------
    lr : float, default 0.001
        Learning rate :math:`\eta`.
    betas : (float, float), default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, as :class:`Adam`.
    eps : float, default 1e-8
        :math:`\epsilon`, as :class:`Adam`.
    weight_decay : float, default 0.01
        Decoupled decay :math:`\lambda` (not added to the gradient).

    Notes
    -----
    Each step first shrinks the parameter, then takes :class:`Adam`'s step with the
    gradient :math:`g_t` that has no decay term:

    .. math::

        w \leftarrow (1 - \eta\lambda)\, w_{t-1}, \qquad
        w_t = w - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.

    References
    ----------
    .. [1] Ilya Loshchilov and Frank Hutter, "Decoupled weight decay regularization",
       ICLR 2019.
    """
    kind = _optim.Opt.ADAMW

    def __init__(self, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(lr, betas, eps, weight_decay)

    def _settings(self):
        return dict(beta1=self.betas[0], beta2=self.betas[1], eps=self.eps)


class RMSprop(Optimizer):
    r"""RMSprop (Tieleman & Hinton 2012), PyTorch defaults alpha 0.99, eps 1e-8.

    Step for step the same as :class:`torch.optim.RMSprop` (``centered=False``).

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate :math:`\eta`.
    alpha : float, default 0.99
        Smoothing constant :math:`\alpha` of the squared-gradient average.
    eps : float, default 1e-8
        :math:`\epsilon`, added to :math:`\sqrt{s_t}`.
    momentum : float, default 0
        Momentum :math:`\mu` on the normalized step (0 keeps no momentum buffer).
    weight_decay : float, default 0
        Coupled L2 decay :math:`\lambda`.

    Notes
    -----
    With :math:`s_0 = 0` (and :math:`b_0 = 0`):

    .. math::

        s_t = \alpha\, s_{t-1} + (1 - \alpha)\, g_t^2, \qquad
        w_t = w_{t-1} - \eta\, \frac{g_t}{\sqrt{s_t} + \epsilon};

    with momentum,
    :math:`b_t = \mu\, b_{t-1} + g_t / (\sqrt{s_t} + \epsilon)` and
    :math:`w_t = w_{t-1} - \eta\, b_t`.

    References
    ----------
    .. [1] Tijmen Tieleman and Geoffrey Hinton, Lecture 6.5, "rmsprop: Divide the gradient by a
       running average of its recent magnitude", COURSERA: Neural Networks for Machine
       Learning, 2012.
    """
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
    r"""Resilient backpropagation, iRprop- by default (PyTorch's), iRprop+ with ``plus=True``.

    ``lr`` is the initial step size of every weight; etas (0.5, 1.2); steps clamped to
    ``step_sizes`` (1e-6, 50). Only the sign of each gradient entry is used, so the step
    sizes adapt per weight whatever the gradient's scale. Rprop is a full-batch method:
    train with ``Trainer(batch_size=None)``; with mini-batches the sign flips from batch to
    batch. iRprop- matches :class:`torch.optim.Rprop` step for step.

    Parameters
    ----------
    lr : float, default 0.01
        Initial step size :math:`\Delta_0` of every parameter.
    etas : (float, float), default (0.5, 1.2)
        :math:`(\eta^-, \eta^+)` with :math:`0 < \eta^- < 1 < \eta^+`.
    step_sizes : (float, float), default (1e-6, 50)
        :math:`(\Delta_{\min}, \Delta_{\max})`.
    plus : bool, default False
        iRprop+ (Igel & Hüsken): on a sign flip, undo the previous step when the loss went
        up since the previous epoch.
    weight_decay : float, default 0
        Coupled L2 decay :math:`\lambda`.

    Notes
    -----
    Per parameter, with :math:`g_0 = 0`, :math:`\Delta w_0 = 0` and all step sizes starting
    at :math:`\Delta_0` = ``lr``:

    .. math::

        \Delta_t = \begin{cases}
            \min(\eta^+ \Delta_{t-1}, \Delta_{\max}) & g_{t-1}\, g_t > 0 \\
            \max(\eta^- \Delta_{t-1}, \Delta_{\min}) & g_{t-1}\, g_t < 0 \\
            \Delta_{t-1} & \text{otherwise;}
        \end{cases}

    if :math:`g_{t-1} g_t < 0` the parameter does not move (:math:`\Delta w_t = 0`; iRprop+
    instead sets :math:`w_t = w_{t-1} - \Delta w_{t-1}` when :math:`E_t > E_{t-1}`) and the
    stored gradient is zeroed (:math:`g_t \leftarrow 0`), so the next step counts as
    "otherwise". Else :math:`\Delta w_t = -\operatorname{sign}(g_t)\, \Delta_t` and
    :math:`w_t = w_{t-1} + \Delta w_t`.

    References
    ----------
    .. [1] Martin Riedmiller and Heinrich Braun, "A direct adaptive method for faster
       backpropagation learning: the RPROP algorithm", IEEE ICNN 1993.
    .. [2] Christian Igel and Michael Hüsken, "Improving the Rprop learning algorithm",
       NC 2000.

    Examples
    --------
    >>> import fastbp
    >>> net = fastbp.Network([8, 3, 8], activation="sigmoid", output="sigmoid", seed=0)
    >>> trainer = fastbp.Trainer(net, optimizer=fastbp.optimizers.Rprop(lr=0.1, plus=True),
    ...                          batch_size=None)      # full batch
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
    r"""Quickprop (Fahlman 1988): ``lr`` is his epsilon, ``mu`` the maximum growth factor.

    Each weight jumps to the minimum of a parabola through its last two slopes, treating
    the weights as independent. A full-batch method (``Trainer(batch_size=None)``).

    Parameters
    ----------
    lr : float, default 0.01
        Fahlman's :math:`\epsilon`, the gradient-descent term's rate.
    mu : float, default 1.75
        Maximum growth factor :math:`\mu`: no step is more than :math:`\mu` times the
        previous one.
    weight_decay : float, default 0
        Fahlman's decay term :math:`\lambda`, in the slope.

    Notes
    -----
    With the slope :math:`S_t = -(\partial E/\partial w + \lambda w)` (the Trainer's
    gradient :math:`g_t`, negated) and :math:`\Delta w_0 = 0`: when the previous step
    was zero, :math:`\Delta w_t = \epsilon S_t`; otherwise

    .. math::

        \Delta w_t = \epsilon\, S_t\, [S_t\, \Delta w_{t-1} > 0]
        + \begin{cases}
            \mu\, \Delta w_{t-1} & \text{if } S_t \Delta w_{t-1} >
                \frac{\mu}{1+\mu} S_{t-1} \Delta w_{t-1} \\
            \Delta w_{t-1}\, \dfrac{S_t}{S_{t-1} - S_t} & \text{otherwise}
        \end{cases}

    (the gradient term only while the slope keeps the sign of the previous step; the
    quadratic term is dropped when :math:`S_{t-1} = S_t`), and
    :math:`w_t = w_{t-1} + \Delta w_t`.

    References
    ----------
    .. [1] Scott E. Fahlman, "An empirical study of learning speed in back-propagation
       networks", CMU-CS-88-162, 1988.
    """
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
    """The optimizer names :func:`get` and ``Trainer(optimizer=...)`` accept, sorted.

    Examples
    --------
    >>> from fastbp import optimizers
    >>> optimizers.names()
    ['adam', 'adamw', 'quickprop', 'rmsprop', 'rprop', 'sgd']
    """
    return sorted(_OPTIMIZERS)


def get(name, **kwargs):
    """An optimizer object by name (kwargs go to its constructor), or ``name`` itself if it
    already is an Optimizer.

    Parameters
    ----------
    name : str or Optimizer
        One of :func:`names` (case-insensitive), or an optimizer object.
    **kwargs
        The constructor's arguments.

    Returns
    -------
    Optimizer

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).

    Examples
    --------
    >>> from fastbp import optimizers
    >>> optimizers.get("adam", lr=0.01)
    Adam(lr=0.01, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-08, eps_before_bias_correction=False)
    """
    if isinstance(name, Optimizer):
        return name
    if not isinstance(name, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {type(name).__name__}")
    cls = _OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {names()}")
    return cls(**kwargs)
