"""Where tests find a local copy of the hh-rlhf dataset (anthropics/hh-rlhf, MIT licence).

`HH_RLHF_DIR` names a folder laid out like the public repository (`harmless-base/test.jsonl.gz`,
...), so it serves as a TFDS `manual_dir`. Unset, the tests look in `shared/data/hh-rlhf` beside the
checkout, where CI keeps the harmless-base test split. Tests that need it skip when it is absent.
"""

import os
from pathlib import Path

HH_RLHF_DIR_VAR = "HH_RLHF_DIR"
DEFAULT_HH_RLHF = Path(__file__).resolve().parents[2] / "shared/data/hh-rlhf"
HH_RLHF = Path(os.environ.get(HH_RLHF_DIR_VAR) or DEFAULT_HH_RLHF)
