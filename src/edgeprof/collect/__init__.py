"""Metric collectors: one small module per metric family, behind one protocol."""
