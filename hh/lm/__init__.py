"""Stage 1: language-model pretraining (Askell et al. 2021 App. A)."""
