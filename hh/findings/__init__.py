"""The paper's findings on the embedded world: per-seed measures read from the findings job's
workdirs (measures.py), verdicts by rules written in the config before the run (verdicts.py), and
the report (report.py). The job's steps are hh/pipeline/findings.py; docs/findings.md."""
