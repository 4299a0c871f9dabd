"""A user's own SB3 callbacks, named in `training.callbacks` as "module.path:ClassName".

Each is imported, checked to be a stable-baselines3 `BaseCallback` class and built with no
arguments, once per member, and runs after the project's own callback in `model.learn` (the
separate learner; the population learner drives rollouts itself and refuses them by name).
Names are resolved in the launching process first, so a typo stops the run before any job.
"""

from __future__ import annotations

import importlib
from typing import Any

from core.config import Config
from core.errors import UserError

KEY = "training.callbacks"


def callback_classes(config: Config) -> list[type]:
    """The classes `training.callbacks` names, imported and checked."""
    return [_resolve(index, name) for index, name in enumerate(config.training.callbacks)]


def user_callbacks(config: Config) -> list[Any]:
    """One new instance of each named callback (a member's own: state never shared)."""
    built = []
    for index, cls in enumerate(callback_classes(config)):
        name = config.training.callbacks[index]
        try:
            built.append(cls())
        except Exception as error:
            raise _error(
                index,
                name,
                f"{cls.__name__}() failed: {type(error).__name__}: {error}",
                "give the class an __init__ whose arguments all have defaults",
            ) from None
    return built


def learn_callback(callback: Any, config: Config) -> Any:
    """What `model.learn` runs: the project's callback, then the user's (in config order)."""
    extra = user_callbacks(config)
    if not extra:
        return callback
    from stable_baselines3.common.callbacks import CallbackList

    return CallbackList([callback, *extra])


def _resolve(index: int, name: str) -> type:
    from stable_baselines3.common.callbacks import BaseCallback

    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise _error(
            index,
            name,
            f"no module {error.name!r} can be imported",
            "install the package in the project's environment, or put its folder on PYTHONPATH",
        ) from None
    except Exception as error:  # the user's module itself failed while importing
        raise _error(
            index,
            name,
            f"importing {module_name} failed: {type(error).__name__}: {error}",
            f"fix {module_name} (run `python -c 'import {module_name}'` to see the traceback)",
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        raise _error(
            index,
            name,
            f"module {module_name} has no {class_name!r}",
            f"name a class it defines (it has: {', '.join(public) or 'nothing public'})",
        )
    if not isinstance(cls, type) or not issubclass(cls, BaseCallback):
        raise _error(
            index,
            name,
            f"{class_name} is not a stable-baselines3 callback class",
            "subclass stable_baselines3.common.callbacks.BaseCallback",
        )
    return cls


def _error(index: int, name: str, what: str, fix: str) -> UserError:
    return UserError(f"{KEY}[{index}] = {name!r}: {what}\n  fix: {fix}")
