"""Cogway: a self-hosted, Replicate-compatible prediction gateway for Cog predictors."""

__version__ = "0.1.0"
