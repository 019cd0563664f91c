"""`python -m hh.serve.admin --workdir DIR COMMAND`: the labelers of a comparison store, and backups.

  add NAME       a new labeler; prints their invite link (the token in it is shown once, only its hash is kept)
  rotate NAME    a new invite link for the same labeler (same data); the old link stops working at once
  revoke NAME    the labeler's link stops working at once (their comparisons stay)
  list           each labeler: active or revoked, last use, comparison count
  backup OUT     a consistent copy of the store while the server runs (SQLite's online backup API)

`--url http://HOST:PORT` is the server's public address, for the invite links."""

import datetime
import sys

from absl import app, flags

from hh.serve.store import Store, StoreError

USAGE = "usage: python -m hh.serve.admin --workdir DIR add NAME | rotate NAME | revoke NAME | list | backup OUT"


def invite_link(url: str, token: str) -> str:
    return f"{url.rstrip('/')}/?token={token}"


def when(timestamp) -> str:
    if timestamp is None:
        return "never"
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def labeler_lines(store: Store) -> list[str]:
    """One tab-separated line per labeler: name, status, last use, comparisons."""
    counts = store.counts_by_labeler()
    lines = []
    for row in store.labeler_rows():
        status = "active" if row["revoked_at"] is None else f"revoked {when(row['revoked_at'])}"
        lines.append(f"{row['id']}\t{status}\tlast used {when(row['last_used_at'])}\t"
                     f"{counts.get(row['id'], 0)} comparisons")
    return lines


def run(store: Store, command: list[str], url: str, out=print) -> int:
    """Runs one admin command; -> the exit status (errors go to stderr)."""
    try:
        if len(command) == 2 and command[0] == "add":
            out(invite_link(url, store.add_labeler(command[1])))
        elif len(command) == 2 and command[0] == "rotate":
            out(invite_link(url, store.rotate(command[1])))
        elif len(command) == 2 and command[0] == "revoke":
            store.revoke(command[1])
            out(f"{command[1]}: revoked; their invite link no longer works (rotate gives a new one)")
        elif command == ["list"]:
            for line in labeler_lines(store):
                out(line)
        elif len(command) == 2 and command[0] == "backup":
            count = store.backup(command[1])
            out(f"{command[1]}: {count} comparisons")
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv):
    f = flags.FLAGS
    sys.exit(run(Store(f.workdir), argv[1:], f.url))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "the interface's workdir (its comparisons.sqlite)")
    flags.DEFINE_string("url", "http://127.0.0.1:8000", "the server's address, for the invite link")
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
