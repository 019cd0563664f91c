"""Offline preference optimisation: DPO and IPO on the PM's comparisons (Rafailov et al. 2023; Azar et al. 2023)."""
