"""Pruning math: masks, how a threshold is spread over layers, and the collapse verdicts. No tracker, no data."""
