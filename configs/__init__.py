"""Run configs: `configs/<stage>.py` with `get_config(arg)`; `arg` picks the model preset."""
