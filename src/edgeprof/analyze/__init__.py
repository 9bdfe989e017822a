"""Analyses of stored runs."""
