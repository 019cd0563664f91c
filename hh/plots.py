"""Matplotlib for the project's figures: headless (the Agg backend: runs write PNGs on machines
without a display), and imported only when a figure is drawn, since the training stages draw none
and matplotlib takes a noticeable fraction of a second to import."""


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib   # lazily: see the module docstring
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
