"""Data: GLUE and user files for fine-tuning, pretraining shards."""
