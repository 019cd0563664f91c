"""TFDS builders for the real datasets; importing this package registers them with TFDS.

Built with file_format="array_record" and read through `as_data_source`, so no TensorFlow is needed.
"""

from hh.data.tfds.hh_rlhf import HhRlhf
from hh.data.tfds.red_team_attempts import RedTeamAttempts

__all__ = ["HhRlhf", "RedTeamAttempts"]
