"""Code-level profiles from the host: py-spy for Python processes, perf for native code.

:mod:`.model` holds the stored shape (time-sliced folded stacks per process),
:mod:`.pyspy` and :mod:`.perf` run the profilers, :mod:`.collector` is the metric group
``code`` that drives them for one container.
"""

from edgeprof.codeprof.model import SLICE_NS, CodeSample, Frame

__all__ = ["SLICE_NS", "CodeSample", "Frame"]
