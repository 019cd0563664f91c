"""Context distillation (Askell et al. 2021 §2.1, App. B.5; Bai et al. 2022 App. A.1): the LM with
the HHH prompt prepended is the teacher, the same LM without it the student, trained on a
51-category KL (the teacher's stored top-50 log-probs plus one bucket for the rest).
"""
