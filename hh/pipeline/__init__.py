"""The main job: every stage of Bai et al. 2022 in one command, resumable step by step.

`python -m hh.pipeline --config configs/pipeline.py:tiny --workdir DIR`: runner.py (order, skip
and resume), steps.py (what each step does), report.py (report.md), plots.py.
"""
