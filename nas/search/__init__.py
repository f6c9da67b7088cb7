"""Latency-constrained architecture search with Optuna (see nas/cli/search.py for the command)."""
