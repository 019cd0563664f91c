"""Training: losses, optimizer, train state, the pure steps and the one shared training loop."""
