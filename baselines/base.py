"""The base class of gradient-based unlearning methods: hyperparameters in, one loss out.

A subclass declares its own hyperparameters as keyword arguments of ``__init__`` (passing the rest
through ``**training`` to this class) and implements :meth:`LossMethod.loss`. The shared loop
(:func:`harness.training.train`) does everything else, so no training code is copied between methods.

    @register_method("my_method")
    class MyMethod(LossMethod):
        \"\"\"One line shown by ``unlearnbench methods``.\"\"\"

        def __init__(self, alpha: float = 1.0, **training):
            super().__init__(**training)
            self.alpha = alpha

        def loss(self, step):
            forget = mean_nll(step.forget)
            return -self.alpha * forget, {"forget_nll": forget}
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from harness.training import TrainSettings, TrainStep, train, train_settings_defaults
from harness.core.types import Benchmark, UnlearnContext, UnlearningMethod


class LossMethod(UnlearningMethod):
    """Base of the gradient-based methods: every training-loop setting is a hyperparameter too."""

    #: Named parameter sets (``preset="…"``) applied over the defaults and under explicit values by
    #: :func:`harness.training.runner.resolve_params` (``unlearnbench unlearn --preset NAME``). Every built-in
    #: method has a ``demo`` preset: the settings ``unlearnbench demo`` runs it with.
    presets: dict[str, dict[str, Any]] = {}
    #: Cheap settings for the conformance suite (tiny model, a few steps).
    conformance_params: dict[str, Any] = {}

    def __init__(self, preset: str | None = None, **training: Any):
        if preset is not None and preset not in self.presets:
            raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(self.presets) or '(none)'}")
        self.preset = preset
        """The preset the parameters were resolved with (recorded; its values are applied by
        :func:`harness.training.runner.resolve_params`, not here)."""
        valid = train_settings_defaults()
        unknown = sorted(set(training) - set(valid))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyperparameter(s) {unknown}; valid: "
                            f"{sorted(self.defaults())}")
        for key, default in valid.items():
            setattr(self, key, training.get(key, default))
        # Validate now (a bad value should fail at construction, not after loading a model).
        self.training_settings()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The method's own hyperparameters (from each subclass ``__init__``), ``preset``, then the loop's."""
        out: dict[str, Any] = {}
        for klass in cls.__mro__:
            if klass is LossMethod:
                break
            init = vars(klass).get("__init__")
            if init is None:
                continue
            for name, p in inspect.signature(init).parameters.items():
                if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                if p.default is inspect.Parameter.empty:
                    raise TypeError(f"{klass.__name__}.__init__ parameter {name!r} needs a default")
                out.setdefault(name, p.default)
        out.setdefault("preset", None)
        for name, value in train_settings_defaults().items():
            out.setdefault(name, value)
        return out

    @classmethod
    def param_specs(cls) -> dict[str, Any]:
        """Type and range of every hyperparameter: the method's own ``__init__`` annotations, then the
        loop's (:class:`harness.training.TrainSettings` fields) -- see :mod:`harness.core.params`."""
        from harness.core.params import specs_from_dataclass, specs_from_init

        return {**specs_from_dataclass(TrainSettings), **specs_from_init(cls, stop=LossMethod)}

    def training_settings(self) -> TrainSettings:
        return TrainSettings(**{k: getattr(self, k) for k in train_settings_defaults()})

    # -- what a subclass supplies ---------------------------------------------------------------
    def loss(self, step: TrainStep) -> tuple[Any, Mapping[str, Any]]:  # pragma: no cover - abstract
        """``(scalar loss to minimise, {component name: value})`` for one forget/retain batch pair."""
        raise NotImplementedError

    def reference_needs(self) -> set[tuple[str, str]]:
        """Reference quantities used, as ``(split, kind)``; precomputed once for full fine-tuning."""
        return set()

    def hidden_layer(self, model: Any) -> int | None:
        """Index into ``outputs.hidden_states`` when the loss uses hidden states, else ``None``."""
        return None

    # -- the scikit-learn style entry point -----------------------------------------------------
    def unlearn(self, model: Any, tokenizer: Any, data: Benchmark, ctx: UnlearnContext) -> Any:
        return train(model, tokenizer, data, ctx, self.training_settings(), self)
