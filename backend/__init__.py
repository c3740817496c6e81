"""Inductive Bias Lab backend: models, labs and the job system behind the HTTP API."""

__version__ = "0.1.0"
