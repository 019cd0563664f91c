"""Public checkpoints in and out: Hugging Face (safetensors) directories <-> hh params and configs."""
