"""Jobs of several stages in one command, resumable step by step: the main job (every stage of
Bai et al. 2022, configs/pipeline.py) and the iterated online loop (configs/online.py).

`python -m hh.pipeline --config configs/pipeline.py:tiny --workdir DIR`: jobs.py (the config's job
picks its steps), runner.py (order, skip and resume), steps.py (the main job's steps and the step
helpers both jobs use), headlines.py (each stage's headline numbers), report.py (report.md), plots.py.
"""
