"""A tiny scikit-learn-compatible parameter protocol, without importing scikit-learn.

``get_params`` / ``set_params`` read the constructor's signature (parameters are stored
verbatim in ``__init__`` and validated in ``fit``), which is all that ``clone``,
``GridSearchCV`` and pickle need. ``__sklearn_tags__`` builds scikit-learn's ``Tags``
object; it imports scikit-learn lazily because only scikit-learn itself ever calls it.
"""

import types
import inspect


class ParamsMixin:
    """``get_params`` / ``set_params`` / ``repr`` / ``__sklearn_tags__`` for estimators.

    Subclasses set ``_estimator_type`` (``"classifier"``, ``"regressor"``,
    ``"transformer"``) and may override ``_tags`` to tweak scikit-learn's tags.
    """

    _estimator_type = None

    @classmethod
    def _get_param_names(cls):
        # Cached per class: fit reads them on every call (partial_fit loops included).
        names = cls.__dict__.get("_param_names_cache")
        if names is None:
            signature = inspect.signature(cls.__init__)
            names = tuple(sorted(
                name
                for name, parameter in signature.parameters.items()
                if name != "self" and parameter.kind != parameter.VAR_KEYWORD
            ))
            cls._param_names_cache = names
        return list(names)

    def get_params(self, deep=True):
        """Constructor parameters of this estimator, as a dict."""
        params = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{key}", item) for key, item in value.get_params().items())
            params[name] = value
        return params

    def set_params(self, **params):
        """Set constructor parameters; unknown names raise ``ValueError``."""
        valid = self._get_param_names()
        for name, value in params.items():
            name, _, sub_name = name.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid}."
                )
            if sub_name:
                getattr(self, name).set_params(**{sub_name: value})
            else:
                setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = []
        for name, value in self.get_params(deep=False).items():
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = value is default or bool(value == default)
            except (TypeError, ValueError):  # arrays compare element-wise
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _tags(self, tags):
        """Hook: adjust scikit-learn's ``Tags`` object in place (see ``__sklearn_tags__``)."""

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here adds no run-time dependency.
        from sklearn.utils import ClassifierTags, RegressorTags, Tags, TargetTags, TransformerTags

        tags = Tags(estimator_type=self._estimator_type, target_tags=TargetTags(required=False))
        if self._estimator_type == "classifier":
            tags.classifier_tags = ClassifierTags()
            tags.target_tags.required = True
        elif self._estimator_type == "regressor":
            tags.regressor_tags = RegressorTags()
            tags.target_tags.required = True
        elif self._estimator_type == "transformer":
            tags.transformer_tags = TransformerTags()
        self._tags(tags)
        return tags


class available_if:
    """Method decorator: the method exists only while ``check(estimator)`` is true.

    Like scikit-learn's ``available_if``: ``hasattr(est, "partial_fit")`` is False for an
    lbfgs MLP, and calling it raises ``AttributeError`` with ``check``'s message.
    """

    def __init__(self, check):
        self.check = check

    def __call__(self, method):
        self.method = method
        self.__doc__ = method.__doc__
        self.__name__ = method.__name__
        return self

    def __get__(self, instance, owner=None):
        if instance is None:
            return self.method
        self.check(instance)  # raises AttributeError when unavailable
        return types.MethodType(self.method, instance)
