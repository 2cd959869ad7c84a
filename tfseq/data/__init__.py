"""Data: the feature contract, raw-log readers, the synthetic default log and tf.data readers."""
