"""edgeprof: a profiler for containerized ML and edge apps.

Importing this package must stay cheap: it imports nothing heavy (no docker, no psutil).
"""

__version__ = "0.1.0"
