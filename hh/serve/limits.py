"""The comparison server's limits against one heavy or hostile client (configs/serve.py): sampling
requests in flight per labeler, conversations started per hour per labeler (enforced by the store),
and a back-off per client address after repeated failed tokens. Over a limit the answer is 429 with
a message that names the config field, and a Retry-After where a wait is known."""

import collections
import contextlib
import dataclasses
import math
import threading
import time

from hh.serve.store import StoreError


@dataclasses.dataclass(frozen=True)
class Limits:
    max_sampling_per_labeler: int = 2       # messages waiting for their two responses, per labeler
    conversations_per_hour: int = 120       # conversations a labeler may start in any hour
    auth_failures: int = 20                 # failed tokens per client address within the window ...
    auth_failure_window_s: float = 60.0     # ... before that address gets 429 until the window passes

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"config.{field.name}={getattr(self, field.name)} must be positive")

    @classmethod
    def from_config(cls, config) -> "Limits":
        """The limits of a serving config (configs/serve.py); a field it lacks keeps its default."""
        return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config})


class InFlight:
    """Counts each labeler's requests in flight; `hold` refuses (429) one over the cap."""

    def __init__(self, cap: int):
        self.cap, self.count, self.lock = cap, collections.Counter(), threading.Lock()

    @contextlib.contextmanager
    def hold(self, labeler: str):
        with self.lock:
            if self.count[labeler] >= self.cap:
                raise StoreError(f"{labeler} already has {self.cap} messages waiting for responses "
                                 f"(config.max_sampling_per_labeler={self.cap}): wait for them", 429, 1)
            self.count[labeler] += 1
        try:
            yield
        finally:
            with self.lock:
                self.count[labeler] -= 1
                if not self.count[labeler]:
                    del self.count[labeler]


class FailedAuth:
    """Failed token attempts per client address in a sliding window of `window_s` seconds: after
    `limit` of them the address is refused, whatever token it sends (else a guesser could still
    tell a right guess from a wrong one), until its oldest failure leaves the window."""

    MAX_ADDRESSES = 10_000      # addresses remembered before the ones with no recent failure are dropped

    def __init__(self, limit: int, window_s: float, clock=time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self.failures: dict[str, collections.deque] = {}
        self.lock = threading.Lock()

    def _recent(self, address: str, now: float) -> collections.deque:
        times = self.failures.get(address, collections.deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def check(self, address: str) -> None:
        """Raises 429 (with Retry-After) while `address` is backing off."""
        with self.lock:
            now = self.clock()
            times = self._recent(address, now)
            if len(times) >= self.limit:
                wait = max(1, math.ceil(times[0] + self.window_s - now))
                raise StoreError(f"too many failed token attempts from this address ({len(times)} in "
                                 f"{self.window_s:g} s, config.auth_failures={self.limit}): try again in "
                                 f"{wait} s", 429, wait)

    def failed(self, address: str) -> None:
        with self.lock:
            now = self.clock()
            if len(self.failures) >= self.MAX_ADDRESSES:
                self.failures = {a: t for a in list(self.failures) if (t := self._recent(a, now))}
            times = self._recent(address, now)
            times.append(now)
            self.failures[address] = times
