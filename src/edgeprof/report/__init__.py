"""Renderings of stored runs: terminal tables, exports."""
