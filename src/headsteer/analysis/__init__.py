"""Analyses: figures and the report."""
