"""Resources: the model registry, the snapshot store, evaluation storage and the notifier."""
