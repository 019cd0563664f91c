"""hh: helpful-and-harmless RLHF (Bai et al. 2022) in JAX/Flax, TPU-first."""

from setuptools import find_packages, setup

# Lower bounds are the versions tested together on Python 3.11 (`make test` in a fresh .venv).
CORE = [
    "jax>=0.10.2",
    "jaxlib>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "ml-collections>=1.1.0",
    "sentencepiece>=0.2.3",
    "tensorflow-datasets>=4.9.10",
    "array-record>=0.8.6",
    # the input pipeline (hh.data.sampler): index-based global shuffle, prefetch, worker processes.
    # Pinned: the shuffle's permutation is part of a run's data order (resume, reproducibility).
    "grain==0.2.18",
    "importlib_resources>=6.0",  # tensorflow-datasets imports it without declaring it
    "etils>=1.15.0",
    "absl-py>=2.1.0",
    "numpy>=2.0",
    "tqdm>=4.66",
    "tensorboardX>=2.6.2",
    "matplotlib>=3.8",      # PM evaluation plots (Agg backend, no display)
    # Hugging Face checkpoints and tokenizers (hh.checkpoints, hh.data.hf_tokenizer); no torch.
    "safetensors>=0.4.3",
    "tokenizers>=0.19",
    # the comparison interface (hh.serve): a JSON API and one static page, on localhost
    "fastapi>=0.165",
    "uvicorn>=0.54",
]

# The reference implementation for the import/export tests. torch is pinned to the CPU build that
# these machines carry on disk; a range would fetch a multi-GB CUDA build from PyPI.
HF_TEST = ["transformers>=4.45", "torch==2.13.0"]

# What tests/pipeline/test_notebooks.py needs to execute notebooks/*.ipynb in a python3 kernel.
NOTEBOOK_RUN = ["nbclient>=0.11.0", "nbformat>=5.11.1", "ipykernel>=7.4.0"]
# The notebooks themselves, for Colab and Jupyter: unpinned, so that installing on Colab keeps
# its own kernel packages instead of upgrading them under the running runtime.
NOTEBOOKS = ["nbclient", "nbformat", "ipykernel", "ipython", "matplotlib"]

setup(
    name="hh",
    version="0.1.0",
    description="Helpful and harmless RLHF (Bai et al. 2022) in JAX/Flax: LM, PM, PPO, evaluation",
    python_requires=">=3.11",
    packages=find_packages(include=["hh", "hh.*", "configs"]),
    package_data={"hh.data": ["default_corpus/*"], "hh.distill": ["hhh_prompt.txt"], "hh.serve": ["static/*"]},
    install_requires=CORE,
    extras_require={
        # playwright drives Debian's Chromium (`make chromium`) in tests/serve/test_serve_browser.py; httpx is
        # what the API tests' TestClient speaks through
        "test": ["pytest>=9.2.0", "pytest-xdist>=3.8.0", "chex>=0.1.92", "hypothesis>=6.100",
                 "playwright>=1.65", "httpx>=0.27",
                 # tests/test_duplicates.py: pylint's duplicate-code check over hh/
                 "pylint>=4.1"] + NOTEBOOK_RUN,
        "hf": HF_TEST,
        # jax[tpu] pins the libtpu that matches the installed jax (0.10.2: libtpu 0.0.42.*); also
        # what hh.tools.fit needs to compile for TPU topologies from a CPU.
        "tpu": ["jax[tpu]>=0.10.2"],
        "notebooks": NOTEBOOKS,
        "jupyter": NOTEBOOKS + ["jupyter"],   # a local notebook server (Colab has its own)
    },
)
