"""Input guards: utterance validation, language detection and a token-bucket rate limiter."""

from __future__ import annotations

import re
import threading
import unicodedata

# Text that would reach the tokenizer as a special token (prompt injection of a call).
_RESERVED = re.compile(r"<\s*(nexa_\w*|image|/?s|pad|eos|bos|\|[^>]*\|)\s*>", re.IGNORECASE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class InvalidUtteranceError(ValueError):
    """The utterance cannot be sent to the model; the message says why."""


def clean_utterance(text: str, *, max_length: int) -> str:
    """Return the utterance normalised for the model, or raise :class:`InvalidUtteranceError`.

    Rejects empty or whitespace-only text, text longer than ``max_length`` characters,
    control characters, and reserved token text such as ``<nexa_3>`` or ``<image>``
    (a caller must not be able to write the model's answer for it).
    """
    if not isinstance(text, str):
        raise InvalidUtteranceError(f"utterance must be text, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)  # NFC, not NFKC: keep full-width CJK punctuation
    stripped = " ".join(text.split())
    if not stripped:
        raise InvalidUtteranceError("empty utterance")
    if len(stripped) > max_length:
        raise InvalidUtteranceError(
            f"utterance has {len(stripped)} characters (max_utterance_length {max_length})"
        )
    bad = [c for c in stripped if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")]
    if bad:
        raise InvalidUtteranceError(
            f"utterance contains {len(bad)} control/unassigned character(s), e.g. {bad[0]!r}"
        )
    match = _RESERVED.search(stripped)
    if match:
        raise InvalidUtteranceError(f"utterance contains reserved token text {match.group(0)!r}")
    return stripped


def detect_language(text: str) -> str:
    """'zh' when the text contains CJK ideographs, else 'en'."""
    return "zh" if _CJK.search(text) else "en"


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
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
