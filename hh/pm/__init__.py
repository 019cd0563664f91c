"""Preference models: PMP and PM finetuning (Askell et al. 2021 §3–4; Bai et al. 2022 §3)."""
