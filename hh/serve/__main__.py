"""`python -m hh.serve --config configs/serve.py:tiny --workdir DIR [--host H] [--port P]`: serves
the comparison interface on localhost. Add labelers with `python -m hh.serve.admin`."""

import os
import sys

import uvicorn
from absl import app, flags, logging
from ml_collections import config_flags

from hh.config import ConfigError
from hh.serve.app import Server, create_app
from hh.serve.limits import Limits
from hh.serve.models import FakePool, load_pool, parse_deployment
from hh.serve.store import Store


def resolve_paths(config):
    """Relative deployment workdirs and reward model read under config.models_root."""
    root = config.models_root

    def under(path):
        return path if not root or not path or os.path.isabs(path) or "://" in path else os.path.join(root, path)
    with config.unlocked():
        out = []
        for text in config.deployments:
            spec = parse_deployment(text)
            suffix = (f"@{spec.k}" if spec.k > 1 else "") + (f"#{spec.step}" if spec.step is not None else "")
            out.append(f"{spec.name}={under(spec.workdir)}{suffix}")
        config.deployments = out
        config.reward_model = under(config.reward_model)
    return config


def serve(config, workdir, host=None, port=None, ready=None):
    """Loads the pool, opens the store and runs uvicorn until interrupted."""
    try:
        limits = Limits.from_config(config)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    store = Store(workdir)
    if config.get("fake_sampling_s", 0) > 0:
        print(f"config.fake_sampling_s={config.fake_sampling_s}: canned responses, no models (tests only)", flush=True)
        pool = FakePool(config.fake_sampling_s)
    else:
        pool = load_pool(resolve_paths(config))
    server = Server(store, pool, tag=config.tag, max_message_chars=config.max_message_chars, seed=config.seed,
                    limits=limits)
    host, port = host or config.host, int(port or config.port)
    labelers = store.labelers()
    print(f"serving {len(pool.models)} models ({', '.join(pool.models)}) on http://{host}:{port}/ "
          f"with {len(labelers)} labelers; store {store.path}", flush=True)
    if not labelers:
        print(f"no labelers yet: python -m hh.serve.admin --workdir {workdir} add NAME", flush=True)
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning")


def main(argv):
    del argv
    f = flags.FLAGS
    if not f["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    try:
        serve(f.config, f.workdir, f.host, f.port)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "configs/serve.py:<preset>")
    flags.DEFINE_string("workdir", None, "where the comparison store lives")
    flags.DEFINE_string("host", None, "bind address (default config.host = 127.0.0.1)")
    flags.DEFINE_integer("port", None, "port (default config.port)")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
