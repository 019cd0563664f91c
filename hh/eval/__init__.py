"""Evaluation tools: preference-model accuracy and calibration, scaling-law fits."""
