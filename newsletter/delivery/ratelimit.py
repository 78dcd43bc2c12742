"""``NEWSLETTER_SEND_RATE``: a token bucket, in-process or shared through Redis.

Both buckets work by reservation: ``acquire(n)`` takes ``n`` tokens at once
(the balance may go negative) and sleeps until the balance would have been
back at zero, so a batch of 50 at 10/s waits 5 s and the long-run rate never
exceeds the setting, whatever the batch size or the number of threads. The
Redis bucket does the same arithmetic in one Lua script on the Redis server's
clock, so any number of ``newsletter worker`` processes share one rate.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable


class NoLimit:
    rate = 0.0

    def acquire(self, n: int = 1, stop: threading.Event | None = None) -> float:
        return 0.0


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up (default: one second's worth)."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive (use NoLimit for unlimited)")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = self.burst
        self._last = monotonic()
        self._lock = threading.Lock()

    def reserve(self, n: int = 1) -> float:
        """Take ``n`` tokens; return how long the caller must wait before using them."""
        with self._lock:
            now = self._monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            return max(0.0, -self._tokens / self.rate)

    def acquire(self, n: int = 1, stop: threading.Event | None = None) -> float:
        wait = self.reserve(n)
        if wait > 0:
            _wait(wait, stop, self._sleep)
        return wait


_LUA = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate) - n
redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', key, 3600)
if tokens >= 0 then return '0' end
return tostring(-tokens / rate)
"""


class RedisTokenBucket:
    """The same bucket kept in Redis, shared by every worker process."""

    def __init__(
        self, url: str, rate: float, burst: float | None = None, *, key: str = "gts:send-rate", client=None
    ):

        if rate <= 0:
            raise ValueError("rate must be positive (use NoLimit for unlimited)")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.key = key
        # The client library is imported only when a shared rate is used: every
        # `issue send` and sending process would otherwise pay its import time.
        self.client = client or importlib.import_module("redis").Redis.from_url(url)
        self._script = self.client.register_script(_LUA)

    def reserve(self, n: int = 1) -> float:
        return float(self._script(keys=[self.key], args=[self.rate, self.burst, n]))

    def acquire(self, n: int = 1, stop: threading.Event | None = None) -> float:
        wait = self.reserve(n)
        if wait > 0:
            _wait(wait, stop, None)
        return wait


def _wait(seconds: float, stop: threading.Event | None, sleep) -> None:
    if sleep is not None:
        sleep(seconds)
    elif stop is not None:
        stop.wait(seconds)
    else:
        time.sleep(seconds)


def make_limiter(settings, *, shared: bool = False):
    """The limiter for ``settings.send_rate``: none, in-process, or shared via
    Redis (``settings.redis_url``) for worker mode."""
    if not settings.send_rate:
        return NoLimit()
    if shared:
        return RedisTokenBucket(settings.redis_url, settings.send_rate)
    return TokenBucket(settings.send_rate)
