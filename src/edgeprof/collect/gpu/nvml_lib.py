"""NVML, wrapped the way nvitop does: initialised on first use, and a call the GPU does not
support (``NVMLError_NotSupported``) — or any other NVML error while sampling — becomes a
missing value (``None``), never an exception. The module is injectable
(``Nvml(nvml=stand_in)``) so tests replay recorded values without a GPU.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Hashable
from typing import Any

from edgeprof.errors import CollectorUnavailable

log = logging.getLogger(__name__)

_NOT_SUPPORTED = 3  # NVML_ERROR_NOT_SUPPORTED


class Nvml:
    """Lazy NVML helper: ``init()`` once, then ``call(name, *args)`` → value or None."""

    def __init__(self, nvml: Any = None) -> None:
        self._mod = nvml
        self._initialised = False
        self._unsupported: set[tuple[str, Any]] = set()

    @property
    def mod(self) -> Any:
        if self._mod is None:
            try:
                import pynvml
            except ImportError as e:
                raise CollectorUnavailable(
                    f"NVML not available: nvidia-ml-py is not installed ({e})"
                ) from e
            self._mod = pynvml
        return self._mod

    def init(self) -> None:
        if self._initialised:
            return
        mod = self.mod
        try:
            mod.nvmlInit()
        except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
            raise CollectorUnavailable(f"NVML not available: {describe(e)}") from e
        self._initialised = True

    def shutdown(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self.mod.nvmlShutdown()
            except Exception as e:
                log.debug("nvmlShutdown failed: %s", e)

    def _is_not_supported(self, e: BaseException) -> bool:
        cls = getattr(self.mod, "NVMLError_NotSupported", None)
        if isinstance(cls, type) and isinstance(e, cls):
            return True
        code = getattr(self.mod, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED)
        return getattr(e, "value", None) == code

    def call(self, name: str, *args: Any) -> Any:
        """Call ``nvml<name>``; None when unsupported or failing (remembered per handle)."""
        key = (name, handle_key(args[0]) if args else None)
        if key in self._unsupported:
            return None
        fn = getattr(self.mod, name, None)
        if fn is None:
            self._unsupported.add(key)
            return None
        try:
            return fn(*args)
        except Exception as e:
            if self._is_not_supported(e):
                self._unsupported.add(key)
            else:
                log.debug("%s failed: %s", name, describe(e))
            return None

    def const(self, name: str, default: int) -> int:
        return int(getattr(self.mod, name, default))


def handle_key(obj: Any) -> Hashable:
    """A hashable key for an NVML argument. pynvml's device handles are ctypes pointers,
    which cannot be hashed: they are keyed by the address they hold (stable for the device)."""
    try:
        hash(obj)
        return obj
    except TypeError:
        pass
    try:
        return ("ptr", ctypes.cast(obj, ctypes.c_void_p).value)
    except (TypeError, ctypes.ArgumentError):
        return ("id", id(obj))


def describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
