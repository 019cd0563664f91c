"""PPO against a preference model (Bai et al. 2022 §4): KL estimators, advantages, losses, rollout."""
