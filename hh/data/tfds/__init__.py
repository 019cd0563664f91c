"""TFDS builders for the real datasets; importing this package registers them with TFDS.

Built with file_format="array_record" and read through `as_data_source`, so no TensorFlow is needed.
"""

import tensorflow_datasets as tfds
from absl import logging

from hh.data.tfds.hh_rlhf import HhRlhf
from hh.data.tfds.red_team_attempts import RedTeamAttempts

__all__ = ["HhRlhf", "RedTeamAttempts", "prepare"]


def prepare(dataset: str, data_dir, manual_dir=None, **builder_kwargs):
    """The TFDS builder for "name/config", its array_record files built unless already there, or
    rebuilt where the builder says its sources changed (hh_rlhf's local tranches: a new export)."""
    def make():
        return tfds.builder(dataset, data_dir=str(data_dir), file_format="array_record", **builder_kwargs)

    builder = make()
    if getattr(builder, "sources_changed", lambda _: False)(manual_dir):
        # TFDS would reuse the old build; a builder that has read the old build's info cannot
        # regenerate in place, so delete it and start again from a fresh one.
        logging.warning("%s: sources in %s changed since %s was built: rebuilding",
                        dataset, manual_dir, builder.data_dir)
        builder.data_path.rmtree()
        builder = make()
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=config, file_format="array_record")
    return builder
