"""Accuracy predictors fitted on supernet evaluations: the fast accuracy signal of a search."""
