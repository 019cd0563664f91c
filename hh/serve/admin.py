"""`python -m hh.serve.admin --workdir DIR add NAME [--url http://HOST:PORT]`: adds a labeler and
prints their invite link (the token in it is shown once; only its hash is stored).
`python -m hh.serve.admin --workdir DIR list`: the labelers and their comparison counts."""

import sys

from absl import app, flags

from hh.serve.store import Store, StoreError


def invite_link(url: str, token: str) -> str:
    return f"{url.rstrip('/')}/?token={token}"


def main(argv):
    f = flags.FLAGS
    store = Store(f.workdir)
    command = argv[1:]
    if len(command) == 2 and command[0] == "add":
        try:
            token = store.add_labeler(command[1])
        except StoreError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        print(invite_link(f.url, token))
    elif command == ["list"]:
        counts = {}
        for row in store.comparisons():
            counts[row["labeler_id"]] = counts.get(row["labeler_id"], 0) + 1
        for labeler in store.labelers():
            print(f"{labeler}\t{counts.get(labeler, 0)} comparisons")
    else:
        print("usage: python -m hh.serve.admin --workdir DIR add NAME | list", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "the interface's workdir (its comparisons.sqlite)")
    flags.DEFINE_string("url", "http://127.0.0.1:8000", "the server's address, for the invite link")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
