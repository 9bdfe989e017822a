"""Exits at once (well within 0.2 s): too early for py-spy to take its stacks."""

import os

os._exit(0)
