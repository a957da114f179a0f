"""Input guards: utterance validation, language detection and a token-bucket rate limiter."""

from __future__ import annotations

import re
import threading
import unicodedata

# Text that would reach the tokenizer as a special token (prompt injection of a call).
_RESERVED = re.compile(r"<\s*(nexa_\w*|image|/?s|pad|eos|bos|\|[^>]*\|)\s*>", re.IGNORECASE)


class InvalidUtteranceError(ValueError):
    """The utterance cannot be sent to the model; the message says why."""


# Line-layout characters an ASR or a keyboard produces between words: normalised to one space.
# Every other control character (the rest of C0, incl. the separators U+001C-001F, DEL, C1),
# format characters (zero-width, bidi overrides), surrogates, private-use and unassigned
# code points make the utterance INVALID_INPUT.
WHITESPACE_CONTROLS = frozenset("\t\n\v\f\r\x85\u2028\u2029")
_REJECTED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn")


def clean_utterance(text: str, *, max_length: int) -> str:
    """Return the utterance normalised for the model, or raise :class:`InvalidUtteranceError`.

    Policy (README, "What happens to an utterance"): text is NFC-normalised; tab, line feed,
    vertical tab, form feed, carriage return, NEL (U+0085) and the Unicode line/paragraph
    separators are whitespace and, with runs of spaces, become one space. Rejected: empty or
    whitespace-only text, text longer than ``max_length`` characters, any other control,
    format, surrogate, private-use or unassigned character (e.g. U+0000, U+001C-001F, U+007F,
    U+200B, U+202E), the replacement character U+FFFD (bytes that were not UTF-8: the
    middleware decodes them to it, and what they said is lost), and reserved token text such as
    ``<nexa_3>`` or ``<image>`` (a caller must not be able to write the model's answer for it).
    """
    if not isinstance(text, str):
        raise InvalidUtteranceError(f"utterance must be text, got {type(text).__name__}")
    if len(text) > 10 * max_length + 1000:  # bound the work below; whitespace cannot explain this much
        raise InvalidUtteranceError(
            f"utterance has {len(text)} characters (max_utterance_length {max_length})"
        )
    text = unicodedata.normalize("NFC", text)  # NFC, not NFKC: keep full-width CJK punctuation
    bad = [
        c for c in text if c not in WHITESPACE_CONTROLS and unicodedata.category(c) in _REJECTED_CATEGORIES
    ]
    if bad:
        raise InvalidUtteranceError(
            f"utterance contains {len(bad)} control/format/unassigned character(s), e.g. U+{ord(bad[0]):04X}"
        )
    if "\ufffd" in text:
        raise InvalidUtteranceError(
            f"utterance contains {text.count(chr(0xFFFD))} replacement character(s) U+FFFD: it was not "
            "valid UTF-8 text (the ASR or its bridge sent other bytes)"
        )
    stripped = " ".join(text.split())
    if not stripped:
        raise InvalidUtteranceError("empty utterance")
    if len(stripped) > max_length:
        raise InvalidUtteranceError(
            f"utterance has {len(stripped)} characters (max_utterance_length {max_length})"
        )
    match = _RESERVED.search(stripped)
    if match:
        raise InvalidUtteranceError(f"utterance contains reserved token text {match.group(0)!r}")
    return stripped


class TokenBucket:
    """Thread-safe token bucket: ``rate`` tokens per second, at most ``burst`` stored.

    ``rate <= 0`` disables limiting.
    """

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._last = now
        self._lock = threading.Lock()

    def try_take(self, now: float) -> bool:
        if self.rate <= 0.0:
            return True
        with self._lock:
            # A clock that jumps back (a simulation's /clock restarted) refills nothing and takes
            # nothing: the bucket keeps its tokens and counts from the new time.
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


# A builtin_interfaces/Time holds sec as int32 and nanosec as uint32 (< 1e9 when valid).
MAX_STAMP_SEC = 2**31 - 1


def check_stamp(sec: int, nanosec: int, *, now: float, future_tolerance: float) -> str:
    """'' when a header stamp can be trusted, else why not (the frame is then INVALID_INPUT).

    Refused: negative seconds, nanoseconds outside 0..999,999,999, and stamps more than
    ``future_tolerance`` seconds after ``now`` (a frame from the future would never go stale
    and would be preferred over newer frames). ``now <= 0`` (a simulated clock that has not
    started) skips the future check. ``(0, 0)`` means "unstamped" and is accepted.
    """
    if sec < 0:
        return f"header stamp is negative (sec={sec})"
    if not 0 <= nanosec < 1_000_000_000:
        return f"header stamp nanosec={nanosec} is outside 0..999999999"
    stamp = sec + nanosec * 1e-9
    if now > 0.0 and stamp - now > future_tolerance:
        return (
            f"header stamp is {stamp - now:.3f} s in the future of this node's clock "
            f"(max_future_stamp {future_tolerance:g} s)"
        )
    return ""


def stamp_parts(seconds: float) -> tuple[int, int]:
    """(sec, nanosec) of a time in seconds, clamped to what builtin_interfaces/Time can hold."""
    seconds = float(seconds)
    if seconds != seconds:  # NaN
        seconds = 0.0
    ns = int(round(min(max(seconds, 0.0), MAX_STAMP_SEC + 0.999999999) * 1e9))
    sec, nanosec = divmod(ns, 1_000_000_000)
    if sec > MAX_STAMP_SEC:  # float rounding at the very top of the range
        sec, nanosec = MAX_STAMP_SEC, 999_999_999
    return sec, nanosec
