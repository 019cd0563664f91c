"""TFDS builders for the real datasets; importing this package registers them with TFDS.

Built with file_format="array_record" and read through `as_data_source`, so no TensorFlow is needed.
"""

import tensorflow_datasets as tfds

from hh.data.tfds.hh_rlhf import HhRlhf
from hh.data.tfds.red_team_attempts import RedTeamAttempts

__all__ = ["HhRlhf", "RedTeamAttempts", "prepare"]


def prepare(dataset: str, data_dir, manual_dir=None, **builder_kwargs):
    """The TFDS builder for "name/config", its array_record files built unless already there."""
    builder = tfds.builder(dataset, data_dir=str(data_dir), file_format="array_record",
                           **builder_kwargs)
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=config, file_format="array_record")
    return builder
