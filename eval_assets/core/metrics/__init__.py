"""Metrics per task, computed in memory or streamed over sorted batches; curve vertices to draw."""
