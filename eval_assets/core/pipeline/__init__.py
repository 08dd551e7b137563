"""The streamed evaluation pipeline over predictions files: score a snapshot's batches into a
file, slice and measure it, pair it with the champion's on the same rows, bootstrap, gate, draw.

Memory holds a few batches whatever the number of rows. The Dagster assets call it with local
files their store provides; nothing here knows about Dagster, MLflow or where files are stored.
"""
