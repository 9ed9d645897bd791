"""Upah composition root."""
