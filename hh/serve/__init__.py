"""Human feedback (Bai et al. 2022 §2.2, App. D): the comparison interface (app, static page), the
models behind it (models), the comparison store (store), export to the hh-rlhf format (export) and
simulated labelers (labelers). docs/human-feedback.md."""
