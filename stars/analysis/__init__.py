"""Analyses of trained models and of model cost (parameter and MAC counts)."""
