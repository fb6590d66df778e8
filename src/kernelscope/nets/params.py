"""scikit-learn's parameter protocol for network descriptions: ``get_params``, ``set_params``, ``clone``.

Every :class:`~kernelscope.nets.Layer` (a layer or a whole network) remembers the arguments it was built with, so
``GridSearchCV`` and :class:`~kernelscope.KernelRegressor`'s ``optimize=True`` reach the ``w_std`` and ``b_std``
of any network, however deep. The names, as scikit-learn nests them (``<parameter>__<sub-parameter>``):

- a layer's own constructor arguments: ``Dense(64, w_std=1.5)`` has ``out``, ``w_std``, ``b_std``,
  ``parameterization``;
- the layers of a combinator by position: ``serial(Conv(...), ReLU(), ...)`` has ``layers`` (the tuple),
  ``layers__0`` (the first layer) and ``layers__0__w_std`` (its weight scale);
- and, on a combinator, ``w_std`` and ``b_std`` *shared* by all its weight layers (Dense and Conv): reading gives
  their common value (``None`` when they differ), setting gives every weight layer that value (``None`` sets
  nothing). ``KernelRegressor(cnn).set_params(kernel__w_std=1.4)`` is how a grid search tunes a whole network.

``set_params`` rebuilds the layer through its constructor, so the values are validated exactly as there, and
changes the layer in place (the networks holding it see the change). ``sklearn.base.clone`` builds a fresh copy
of the whole description from the remembered arguments.
"""

from __future__ import annotations

import inspect
from typing import Any

from .._arrays import ValidationError

__all__ = ["Parameters", "SHARED"]

#: the parameters a combinator shares out to all its weight layers
SHARED = ("w_std", "b_std")


class Parameters:
    """Mixin of :class:`~kernelscope.nets.Layer`: the constructor's arguments as scikit-learn parameters."""

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        # What the outermost constructor was called with (a subclass calling its parent's __init__ does not
        # overwrite it). Pickle and copy call __new__ without arguments and then restore the saved ones.
        obj._arguments = (args, kwargs)
        return obj

    # -- reading ----------------------------------------------------------------------------------------------
    def _bound(self) -> inspect.BoundArguments:
        args, kwargs = getattr(self, "_arguments", ((), {}))
        init = type(self).__init__
        signature = inspect.signature(_no_arguments if init is object.__init__ else init)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        return bound

    def _own_params(self) -> dict[str, Any]:
        """The constructor's arguments as given (defaults filled in); a ``*layers`` argument as a tuple."""
        arguments = dict(self._bound().arguments)
        arguments.pop(next(iter(arguments)))  # self
        return arguments

    def _weight_layers(self) -> list[Parameters]:
        """The layers whose ``w_std``/``b_std`` the shared names set (a combinator's Dense and Conv layers)."""
        dense = getattr(self, "dense_layers", lambda: [])()
        return [] if dense == [self] else dense

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments; with ``deep``, the layers inside by position (``layers__0``,
        ``layers__0__w_std``) and the shared ``w_std``/``b_std`` of a combinator (module docstring)."""
        own = self._own_params()
        if not deep:
            return own
        out = dict(own)
        for name, value in own.items():
            for key, sub in _children(name, value):
                out[key] = sub
                out.update({f"{key}__{k}": v for k, v in sub.get_params(deep=True).items()})
        weights = self._weight_layers()
        for name in SHARED:
            if weights and name not in own:
                values = {layer._own_params().get(name) for layer in weights}
                out[name] = values.pop() if len(values) == 1 else None
        return out

    # -- writing ----------------------------------------------------------------------------------------------
    def set_params(self, **params: Any) -> Parameters:
        """Set constructor arguments (validated by the constructor), nested ones (``layers__0__w_std=1.5``) and
        the shared ``w_std``/``b_std`` of a combinator; returns ``self``, changed in place."""
        own = self._own_params()
        children = {key: sub for name, value in own.items() for key, sub in _children(name, value)}
        shared = [n for n in SHARED if n not in own and self._weight_layers()]
        direct: dict[str, Any] = {}  # argument (or one layer of a tuple, "layers__0") -> new value
        nested: dict[str, dict[str, Any]] = {}  # layer inside -> its parameters to set
        spread: dict[str, Any] = {}  # shared name -> value for every weight layer
        for key, value in params.items():
            head = next((c for c in children if key.startswith(c + "__")), None)
            if head is not None:
                nested.setdefault(head, {})[key[len(head) + 2:]] = value
            elif key in own or key in children:
                direct[key] = value
            elif key in shared:
                spread[key] = value
            else:
                valid = ", ".join(self.get_params(deep=True)) or "none"
                raise ValidationError(key, f"one of the parameters of {type(self).__name__}: {valid}", repr(key),
                                      "Read the names with get_params().")
        for name, value in spread.items():  # first, so that a layer's own value given alongside wins
            if value is not None:
                for layer in self._weight_layers():
                    layer.set_params(**{name: value})
        for head, sub in nested.items():
            children[head].set_params(**sub)
        if direct:
            replaced = {}
            for key, value in direct.items():
                name, _, index = key.partition("__")
                if index:  # one layer of a tuple of layers replaced
                    seq = list(replaced.get(name, own[name]))
                    seq[int(index)] = value
                    replaced[name] = type(own[name])(seq) if isinstance(own[name], tuple) else seq
                else:
                    replaced[name] = value
            self._rebuild({**own, **replaced})
        return self

    def _rebuild(self, arguments: dict[str, Any]) -> None:
        """Construct the layer anew from ``arguments`` (validated there) and take over its state."""
        bound = self._bound()
        for name, value in arguments.items():
            bound.arguments[name] = value
        fresh = type(self)(*bound.args[1:], **bound.kwargs)
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)

    def __sklearn_clone__(self) -> Parameters:
        # The constructors normalise their arguments (an int kernel size becomes a tuple), so scikit-learn's own
        # clone, which checks that the arguments come back unchanged, would refuse them: rebuild from a clone of
        # each argument instead (layers inside are cloned the same way).
        from sklearn.base import clone

        bound = self._bound()
        for name, value in list(bound.arguments.items())[1:]:
            bound.arguments[name] = clone(value, safe=False)
        return type(self)(*bound.args[1:], **bound.kwargs)


def _no_arguments(self) -> None:
    """The signature of a layer without a constructor of its own (``GlobalAvgPool()``)."""


def _children(name: str, value: Any) -> list[tuple[str, Parameters]]:
    """The layers inside an argument: the argument itself, or the items of a tuple/list of layers."""
    if isinstance(value, Parameters):
        return [(name, value)]
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, Parameters) for v in value):
        return [(f"{name}__{i}", v) for i, v in enumerate(value)]
    return []
