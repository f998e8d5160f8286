"""Frozen, JSON-round-trippable configuration dataclasses.

Every family's configuration and the training configuration derive from :class:`Config`:
values are checked against the type of their field's default when built (``[128, 128]``
from JSON becomes ``(128, 128)``, a string where a number belongs is an error), and
:meth:`Config.from_dict` refuses unknown keys, naming them and the known ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

from .errors import ConfigError


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Returns ``value`` converted to the type of ``default``, or raises ConfigError."""
    if default is None:
        return value
    if value is None:
        raise ConfigError(f"{name} cannot be null (leave it out to use the default {default!r})")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        items = tuple(value)
        if default and all(isinstance(d, int) for d in default):
            return tuple(_coerce(f"{name}[{i}]", v, 0) for i, v in enumerate(items))
        return items
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of all configuration dataclasses (type checks and dict round trip)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            default = f.default if f.default is not dataclasses.MISSING else None
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name), default))
        self.validate()

    def validate(self) -> None:
        """Checks ranges; subclasses raise :class:`ConfigError` with the field's name."""

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict of every field (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of the fields, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Self:
        """Builds a config from a dict, refusing unknown keys."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {unknown} for {cls.__name__}; known: {cls.field_names()}"
            )
        return cls(**data)


def require(condition: bool, message: str) -> None:
    """Raises :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)
