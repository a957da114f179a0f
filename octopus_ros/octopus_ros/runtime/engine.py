"""ActionEngine: turns requests + camera frames into exactly one Result each.

Threading model: ROS callbacks call :meth:`ActionEngine.on_frame`, :meth:`submit`
and :meth:`set_estop` from any thread; they never block on the model. One worker
thread owns the model. It serves queued requests first and, while idle, pre-encodes
the newest frame at a bounded rate (vision prefetch), so an utterance about a fresh
frame pays only the language-model cost.

Every request ends in exactly one call of ``on_result`` (and of its own ``done``):
rejections at submit time (invalid text, rate limit, full queue, e-stop, stopped
engine) are answered at once; the rest by the worker.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from octopus_ros.functions.language import detect_language
from octopus_ros.runtime.context import parse_context_examples
from octopus_ros.runtime.guards import InvalidUtteranceError, TokenBucket, clean_utterance
from octopus_ros.runtime.outcomes import (
    NOT_UNDERSTOOD,
    Frame,
    OutcomeCode,
    Request,
    Result,
    Source,
    decision_outcome,
    grounding_score,
    grounding_threshold_for,
    request_limit,
)
from octopus_ros.runtime.safety import screen_from_setting
from octopus_ros.runtime.second_opinion import SECOND_OPINION_REASON, judge_second_decision
from octopus_ros.runtime.standing import StandingGate, scene_change, scene_signature

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    """Request policy. The node fills it from its ROS parameters (see ros/params.py)."""

    allowlist: tuple[str, ...] = ()  # function names; empty = every enabled function
    confidence_threshold: float = 0.5  # calls below this are REJECTED_LOW_CONFIDENCE
    max_image_age: float = 1.0  # s; an utterance needs a frame at most this old
    queue_depth: int = 4  # pending requests beyond this are answered BUSY
    request_timeout: float = 5.0  # s a request may wait in the queue before TIMEOUT
    rate_limit: float = 5.0  # utterances per second (token bucket); 0 = unlimited
    rate_burst: int = 3  # utterances accepted back to back
    max_utterance_length: int = 200  # characters
    prefetch_rate: float = 5.0  # Hz of idle-time frame pre-encoding; 0 disables
    # Use the pre-encoded frame instead of the newest one when it is at most this much older
    # (s). Trades a little freshness for skipping the vision encoder; 0 = always the newest.
    prefetch_max_lag: float = 0.25
    # ... and only when the newest frame shows the same scene: mean absolute difference of 16x16 grey
    # thumbnails (0..1) at most this. A new scene is always encoded afresh.
    prefetch_max_change: float = 0.02
    decode_mode: str = "constrained"  # model decoding mode
    # Standing instruction: the same call is published again only when the scene changed (mean
    # absolute difference of 16x16 grey thumbnails above standing_scene_change, in 0..1) and at
    # least standing_cooldown seconds passed; a different call is published at once.
    standing_cooldown: float = 10.0
    standing_scene_change: float = 0.08
    # Decline (NO_ACTION) a call when the request is too unlike training (model/novelty.py):
    # text novelty = share of the utterance never seen in training (0..1); image novelty =
    # Mahalanobis distance of the image embedding / the training scenes' 99th percentile.
    # 0 or less disables the check. Defaults chosen by novelty_sweep on the natural and check sets
    # (README, "Abstain when unsure"; docs/training.md item 22).
    max_text_novelty: float = 0.3
    max_image_novelty: float = 1.5
    # request novelty = the share (0..1) of training requests (each read out of fold) that the LM reads as more
    # like a call than this one (a request profile: lean/novelty.py RequestProfile); 1 - limit is
    # the share of training-like requests declined. 0 or less (or 1) disables the check.
    max_request_novelty: float = 0.99
    # Refuse (NOT_IN_VIEW) a call of a requires_view function whose object the model's grounding
    # head (model/grounding.py) scores below this; negative = the head's own validated threshold
    # (grounding.json), 0 disables the check. A model without a grounding head, or an object word
    # the head does not know, is never blocked (outcomes.grounding_threshold_for).
    grounding_threshold: float = -1.0
    # Decline (NO_ACTION, "unsafe request (...)") an utterance that trips the safety screen
    # (runtime/safety.py) whatever the model decided: "default" = the package's safety.yaml, a
    # path = that file (same schema), "" = no screen.
    safety_screen: str = "default"
    # Fixed in-context examples, "utterance => call" (runtime/context.py), shown to the model
    # before every request (model/prompt.py); checked against the registry when the engine is
    # made. Empty = none.
    context_examples: tuple[str, ...] = ()


def input_side(model: Any) -> int | None:
    """The side a model's preprocessor brings images to (``model.preprocessor.size``, the shorter
    side after resizing: ``model/preprocess.py``), or None when the model does not say."""
    size = getattr(getattr(model, "preprocessor", None), "size", None)
    return size if isinstance(size, int) and size > 0 else None


def name_native_thread(name: str) -> None:
    """Give the calling thread ``name`` in the OS too (Linux ``prctl``; ``top -H``, /proc), so that
    its CPU time can be told apart; Python 3.11 names only its own Thread object. No-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class LatencyStats:
    """Rolling per-stage latency samples (seconds) with percentiles for diagnostics."""

    def __init__(self, size: int = 256) -> None:
        self._samples: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=size)
        )
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples[stage].append(seconds)

    def percentiles(self, q: Iterable[float] = (50, 95)) -> dict[str, dict[float, float]]:
        import numpy as np

        with self._lock:
            return {
                stage: {p: float(np.percentile(list(v), p)) for p in q}
                for stage, v in self._samples.items()
                if v
            }


class ActionEngine:
    """Request policy around an Octopus model; see the module docstring.

    ``model`` needs ``encode(image) -> encoding`` and
    ``decide(text, encoding, *, allowlist, mode) -> Decision`` (``octopus_ros.model.Octopus``).
    ``registry`` needs ``by_name(name)`` (``octopus_ros.functions.FunctionRegistry``).
    ``validate(call, allowlist=...)`` re-checks a call against the schema and the live allowlist
    (None = every enabled function) before it is published; it returns None when valid, or an
    object with ``kind`` and ``message`` (``octopus_ros.functions.validate_call`` with the registry).
    With ``config.context_examples``, ``model`` also needs ``set_context(pairs)``: the engine
    checks the entries against ``registry`` and fixes them on the model (ContextExampleError,
    naming the entry, for a bad one).
    ``second_opinion``: another model with the same interface and registry (None: off); a call
    the primary model would publish is then published only when the second model, deciding the
    same request on the same frame under the same settings, makes the same call
    (:func:`octopus_ros.runtime.second_opinion.second_opinion_outcome`).
    """

    def __init__(
        self,
        *,
        model: Any,
        registry: Any,
        config: EngineConfig,
        validate: Callable[[Any, tuple[str, ...] | None], Any],
        on_result: Callable[[Result], None],
        now: Callable[[], float] = time.time,
        estop: bool = False,
        second_opinion: Any = None,
    ) -> None:
        self.model = model
        self.second_opinion = second_opinion
        self.registry = registry
        self.config = config
        examples = parse_context_examples(config.context_examples, registry, config.allowlist)
        if examples:
            for m in (model, second_opinion):
                if m is not None:
                    m.set_context(examples)
            log.info("%d fixed in-context example(s): %s", len(examples), examples)
        self._screen = screen_from_setting(config.safety_screen)  # SafetyScreenError: a bad file
        self._validate = validate
        self._on_result = on_result
        self._now = now
        self._cond = threading.Condition()
        self._queue: collections.deque[Request] = collections.deque()
        self._latest: Frame | None = None
        # The last encoded camera frame: (frame, encoding, scene signature). Never an ~/ask image:
        # a caller's image belongs to its request alone.
        self._encoded: tuple[Frame, Any, Any] | None = None
        self._checked: tuple[int, Any] | None = None  # (seq, pixels) of the newest frame, decoded to check it
        self._bad_frame_seq = -1
        self._last_prefetch = 0.0
        self._estop = bool(estop)
        self._standing = StandingGate()
        self._running = False
        self._busy = False
        self._worker: threading.Thread | None = None
        self._bucket = TokenBucket(rate=config.rate_limit, burst=config.rate_burst, now=now())
        self.latency = LatencyStats()
        self.counts: collections.Counter[str] = collections.Counter()
        # Camera frames are converted at the model's input scale (Frame.shrink) when the model says
        # which it is: a 1080p frame then costs what a small one does.
        self._input_side = input_side(model)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._worker = threading.Thread(target=self._work, name="octopus-engine", daemon=True)
        self._worker.start()

    def stop(self, reason: str = "the node is shutting down") -> None:
        """Stop the worker; pending requests end with NOT_ACTIVE. Idempotent."""
        with self._cond:
            self._running = False
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for request in pending:
            self._finish(Result(request, OutcomeCode.NOT_ACTIVE, reason))
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        self._worker = None

    @property
    def running(self) -> bool:
        return self._running

    # ------------------------------------------------------------------ inputs
    def on_frame(self, frame: Frame) -> None:
        """Keep the newest frame (not decoded). Cheap; called from the image callback."""
        with self._cond:
            if self._latest is not None and self._latest.seq != self._encoded_seq():
                self.counts["frames_replaced_unused"] += 1
            # A pending prefetch is already timed (the worker looks at the newest frame when it is
            # due), so only a frame that makes one pending wakes the worker: at most prefetch_rate
            # wake-ups a second, not one per camera frame.
            wake = not self._prefetch_pending()
            self._latest = frame
            self.counts["frames_received"] += 1
            if frame.problem:
                self._bad_frame_seq = frame.seq
                self.counts["frames_malformed"] += 1
            if wake and self._prefetch_pending():
                self._cond.notify_all()

    def set_estop(self, engaged: bool) -> None:
        """Engage/release the e-stop. Engaging preempts every pending request (ESTOP)."""
        with self._cond:
            changed = engaged != self._estop
            self._estop = engaged
            pending = list(self._queue) if engaged else []
            if engaged:
                self._queue.clear()
                self._standing.reset()  # after a release, a standing action is decided afresh
        if changed:
            log.warning("e-stop %s", "ENGAGED: publication blocked" if engaged else "released")
        for request in pending:
            self._finish(Result(request, OutcomeCode.ESTOP, "e-stop engaged; pending request cancelled"))

    @property
    def estop(self) -> bool:
        return self._estop

    def submit(self, request: Request) -> Result | None:
        """Queue a request, or answer it at once. Returns the immediate Result, else None."""
        now = self._now()
        if request.source == Source.UTTERANCE:
            self.counts["utterances"] += 1
        try:
            request.text = clean_utterance(request.text, max_length=self.config.max_utterance_length)
        except InvalidUtteranceError as e:
            return self._finish(Result(request, OutcomeCode.INVALID_INPUT, str(e)))
        language = detect_language(request.text)
        if self._estop:
            return self._finish(Result(request, OutcomeCode.ESTOP, "e-stop engaged", language=language))
        if not self._running:
            return self._finish(
                Result(request, OutcomeCode.NOT_ACTIVE, "node is not active", language=language)
            )
        if request.source == Source.UTTERANCE and not self._bucket.try_take(now):
            return self._finish(
                Result(
                    request,
                    OutcomeCode.BUSY,
                    f"rate limit: more than {self.config.rate_limit:g} utterances/s "
                    f"(burst {self.config.rate_burst})",
                    language=language,
                )
            )
        with self._cond:
            if request.source == Source.STANDING_INSTRUCTION and any(
                r.source == Source.STANDING_INSTRUCTION for r in self._queue
            ):
                return None  # one standing evaluation pending is enough; this tick is skipped
            if len(self._queue) >= self.config.queue_depth:
                full = True
            else:
                full = False
                self._queue.append(request)
                self._cond.notify_all()
        if full:
            return self._finish(
                Result(
                    request,
                    OutcomeCode.BUSY,
                    f"request queue full ({self.config.queue_depth} pending)",
                    language=language,
                )
            )
        return None

    def abandon(self, request: Request, reason: str) -> bool:
        """The caller of ``request`` stopped waiting for it (an ``~/ask`` whose deadline passed).

        Still queued: it leaves the queue and is answered TIMEOUT now, so the model spends no time
        on it. Being decided: it is answered TIMEOUT when the model finishes, with the decision
        in the reason, and nothing of it is published. Either way it keeps exactly one outcome.
        Returns False when it had already finished (its outcome stands), else True."""
        with self._cond:
            if request.finished:
                return False
            request.abandoned = reason
            request.publish = False
            queued = False
            for i, pending in enumerate(self._queue):
                if pending is request:
                    del self._queue[i]
                    queued = True
                    break
        if queued:
            self._finish(Result(request, OutcomeCode.TIMEOUT, reason, language=detect_language(request.text)))
        return True

    # ------------------------------------------------------------------ worker
    def _encoded_seq(self) -> int:
        return self._encoded[0].seq if self._encoded is not None else -1

    def _prefetch_pending(self) -> bool:
        """The newest frame is not encoded yet, is not known bad, and prefetch is on."""
        if self.config.prefetch_rate <= 0 or self._latest is None:
            return False
        seq = self._latest.seq
        return seq != self._encoded_seq() and seq != self._bad_frame_seq and not self._latest.problem

    def _prefetch_due(self) -> bool:
        return (
            self._prefetch_pending()
            and time.monotonic() - self._last_prefetch >= 1.0 / self.config.prefetch_rate
        )

    def _work(self) -> None:
        name_native_thread("octopus-engine")
        while True:
            with self._cond:
                while self._running and not self._queue and not self._prefetch_due():
                    wait = None  # nothing to prefetch: sleep until a frame or a request arrives
                    if self._prefetch_pending():
                        wait = max(
                            0.001, 1.0 / self.config.prefetch_rate - (time.monotonic() - self._last_prefetch)
                        )
                    self._cond.wait(timeout=wait)
                if not self._running:
                    return
                request = self._queue.popleft() if self._queue else None
                frame = self._latest
                self._busy = True
            if request is not None:
                self.latency.add("request_wait", max(0.0, self._now() - request.arrived))
            try:
                if request is not None:
                    self._finish(self._process(request))
                elif frame is not None:
                    self._prefetch(frame)
            except Exception:  # the worker must survive anything; _process already maps model errors
                log.exception("unexpected error in the engine worker")
            finally:
                self._busy = False

    def _prefetch(self, frame: Frame) -> None:
        self._last_prefetch = time.monotonic()
        try:
            self._encode(frame)
            self.counts["frames_prefetched"] += 1
        except ValueError as e:
            self._bad_frame_seq = frame.seq
            self.counts["frames_malformed"] += 1
            log.warning("dropping malformed frame %d: %s", frame.seq, e)
        except Exception:
            self._bad_frame_seq = frame.seq
            self.counts["frames_encode_failed"] += 1
            log.exception("vision prefetch failed on frame %d", frame.seq)

    def _pick_frame(self) -> Frame | None:
        """The newest frame, or the pre-encoded one if it is at most prefetch_max_lag older.

        The older encoding stands in for the newest frame only once the newest frame is known
        to be a valid image (it is decoded to check; the pixels are kept for its own encoding)
        showing the same scene (``prefetch_max_change``): a corrupt newest frame is answered
        INVALID_INPUT, and a changed scene is encoded afresh, never papered over by an older frame.
        """
        latest, encoded = self._latest, self._encoded
        if latest is None or encoded is None or latest.problem or latest.seq == encoded[0].seq:
            return latest
        if latest.time - encoded[0].time > self.config.prefetch_max_lag:
            self.counts["prefetch_lag_exceeded"] += 1
            return latest
        if self._checked is None or self._checked[0] != latest.seq:
            try:
                self._checked = (latest.seq, self._pixels(latest))
            except Exception:
                return latest  # _encode raises the same error again and answers INVALID_INPUT
        if scene_change(encoded[2], scene_signature(self._checked[1])) > self.config.prefetch_max_change:
            self.counts["prefetch_scene_changed"] += 1
            return latest  # the scene changed since the prefetched frame: the newest frame it is
        return encoded[0]

    def _pixels(self, frame: Frame) -> Any:
        """The frame's RGB pixels, at the model's input scale where both sides support it."""
        if self._input_side is not None and frame.shrink is not None:
            return frame.shrink(self._input_side)
        return frame.decode()

    def _decoded(self, frame: Frame) -> Any:
        if self._checked is not None and self._checked[0] == frame.seq:
            return self._checked[1]
        return self._pixels(frame)  # may raise ValueError for a malformed image

    def _encode(self, frame: Frame, *, private: bool = False) -> tuple[Any, float, bool, Any]:
        """Return (encoding, seconds spent, reused, scene signature) for a frame.

        Camera frames reuse and keep the last encoding; a ``private`` frame (an ~/ask image)
        is encoded for its request only and never replaces the camera frame's encoding.
        """
        if not private and self._encoded is not None and self._encoded[0].seq == frame.seq:
            return self._encoded[1], 0.0, True, self._encoded[2]
        if frame.problem:
            raise ValueError(frame.problem)
        t0 = time.perf_counter()
        if not private:
            # prefetch_rate bounds every camera-frame encode: a request that encodes the newest frame
            # is not followed at once by a prefetch of the next one.
            self._last_prefetch = time.monotonic()
        image = self._pixels(frame) if private else self._decoded(frame)
        t1 = time.perf_counter()
        encoding = self.model.encode(image)
        t2 = time.perf_counter()
        signature = scene_signature(image)
        if not private:
            self._encoded = (frame, encoding, signature)
            self._checked = None
        self.latency.add("image_decode", t1 - t0)
        self.latency.add("vision_encode", t2 - t1)
        return encoding, t2 - t0, False, signature

    def _process(self, request: Request) -> Result:
        language = detect_language(request.text)

        def result(code: OutcomeCode, reason: str, **kw: Any) -> Result:
            return Result(request, code, reason, language=language, **kw)

        now = self._now()
        if self._estop:
            return result(OutcomeCode.ESTOP, "e-stop engaged")
        waited = now - request.arrived
        if waited > self.config.request_timeout:
            return result(
                OutcomeCode.TIMEOUT,
                f"waited {waited:.2f} s in the queue (request_timeout {self.config.request_timeout:.2f} s)",
            )
        t_pick = time.perf_counter()
        frame = request.image if request.image is not None else self._pick_frame()
        self.latency.add("frame_pick", time.perf_counter() - t_pick)
        if frame is None:
            return result(OutcomeCode.NO_FRESH_IMAGE, "no camera frame received yet")
        age = request.arrived - frame.time
        if request.image is None and age > self.config.max_image_age:
            return result(
                OutcomeCode.NO_FRESH_IMAGE,
                f"newest image is {age:.2f} s old (max_image_age {self.config.max_image_age:.2f} s)",
                frame=frame,
                image_age=age,
            )
        private = request.image is not None
        try:
            encoding, encode_s, reused, signature = self._encode(frame, private=private)
        except ValueError as e:
            if frame.seq != self._bad_frame_seq:  # count each malformed frame once
                self.counts["frames_malformed"] += 1
                if request.image is None:
                    self._bad_frame_seq = frame.seq
            return result(OutcomeCode.INVALID_INPUT, f"malformed image: {e}", frame=frame, image_age=age)
        except Exception as e:
            log.exception("vision encoder failed")
            return result(OutcomeCode.MODEL_ERROR, f"vision encoder failed: {e}", frame=frame, image_age=age)
        self.counts["prefetch_hits" if reused else "prefetch_misses"] += 1
        try:
            decision = self.model.decide(
                request.text, encoding, allowlist=self.config.allowlist or None, mode=self.config.decode_mode
            )
        except Exception as e:
            log.exception("model failed on request %s", request.id)
            return result(OutcomeCode.MODEL_ERROR, f"model failed: {e}", frame=frame, image_age=age)
        timings = dict(getattr(decision, "timings", {}) or {})
        lm_s = timings.get("total", 0.0)
        for stage in ("prefill", "decode", "total"):
            if stage in timings:
                self.latency.add(f"lm_{stage}", timings[stage])
        common = dict(
            frame=frame,
            image_age=age,
            inference_s=encode_s + lm_s,
            timings={**timings, "vision": encode_s, "prefetched": float(reused)},
            raw_text=decision.raw_text,
            confidence=float(decision.confidence),
            text_novelty=float(getattr(decision, "text_novelty", math.nan)),
            image_novelty=float(getattr(decision, "image_novelty", math.nan)),
            request_novelty=float(getattr(decision, "request_novelty", math.nan)),
            grounding_score=grounding_score(decision),
            copy_probability=float(getattr(decision, "copy_prob", math.nan)),
        )
        code, reason = self._outcome(decision, self.model, request.text)
        call = decision.call if decision.error is None else None
        if code == OutcomeCode.OK and self.second_opinion is not None:
            code, reason, second_s = self._second_opinion(request, frame, private, call)
            common["inference_s"] += second_s
            common["timings"]["second_opinion"] = second_s
        if code == OutcomeCode.NO_ACTION and reason.startswith(
            (NOT_UNDERSTOOD, "image unlike training", SECOND_OPINION_REASON)
        ):
            self.counts["declined_" + reason.split(":")[0].replace(" ", "_")] += 1
        if code != OutcomeCode.OK:
            return result(code, reason, call=call, **common)
        if self._estop:  # engaged while the model ran
            return result(OutcomeCode.ESTOP, "e-stop engaged while deciding", call=call, **common)
        if request.source == Source.STANDING_INSTRUCTION:
            repeat = self._standing.repeat_reason(
                decision.raw_text,
                signature,
                now,
                self.config.standing_cooldown,
                self.config.standing_scene_change,
            )
            if repeat:
                self.counts["standing_repeats_suppressed"] += 1
                return result(OutcomeCode.NO_ACTION, f"standing instruction: {repeat}", call=call, **common)
        return result(OutcomeCode.OK, reason, call=call, **common)

    def _outcome(self, decision: Any, model: Any, utterance: str) -> tuple[OutcomeCode, str]:
        """:func:`decision_outcome` of ``model``'s decision under the engine's settings (the
        grounding threshold is ``model``'s own where the setting asks for the head's)."""
        return decision_outcome(
            decision,
            self.registry,
            self._validate,
            allowlist=self.config.allowlist or None,
            threshold=self.config.confidence_threshold,
            max_text_novelty=self.config.max_text_novelty if self.config.max_text_novelty > 0 else None,
            max_image_novelty=self.config.max_image_novelty if self.config.max_image_novelty > 0 else None,
            max_request_novelty=request_limit(self.config.max_request_novelty),
            grounding_threshold=grounding_threshold_for(self.config.grounding_threshold, model),
            utterance=utterance,
            screen=self._screen,
        )

    def _second_opinion(
        self, request: Request, frame: Frame, private: bool, call: Any
    ) -> tuple[OutcomeCode, str, float]:
        """(code, reason, seconds) of a call the primary model would publish, once the second model
        has decided the same request on the same frame (its own image encoding, its own grounding
        head at the same ``grounding_threshold`` setting)."""
        t0 = time.perf_counter()
        try:
            image = self._pixels(frame) if private else self._decoded(frame)
            second = self.second_opinion.decide(
                request.text, image, allowlist=self.config.allowlist or None, mode=self.config.decode_mode
            )
        except Exception as e:
            log.exception("second-opinion model failed on request %s", request.id)
            return OutcomeCode.MODEL_ERROR, f"{SECOND_OPINION_REASON} failed: {e}", time.perf_counter() - t0
        code, reason = self._outcome(second, self.second_opinion, request.text)
        seconds = time.perf_counter() - t0
        self.latency.add("second_opinion", seconds)
        rules = getattr(self.second_opinion, "grounding", None)
        code, reason = judge_second_decision(self.registry, rules, request.text, call, second, code, reason)
        return code, reason, seconds

    def _finish(self, res: Result) -> Result:
        res.finished = self._now()
        with self._cond:
            request = res.request
            request.finished = True
            if request.abandoned and res.code != OutcomeCode.TIMEOUT:
                decided = (
                    res.call.to_plain()
                    if res.code == OutcomeCode.OK and res.call is not None
                    else res.code.name
                )
                res.code = OutcomeCode.TIMEOUT
                res.reason = f"{request.abandoned}; the answer came later and was not published ({decided}: {res.reason})"
        self.counts[f"outcome_{res.code.name}"] += 1
        if res.request.source == Source.UTTERANCE or res.code == OutcomeCode.OK:
            self.latency.add("request_total", res.latency)
        for callback in (self._on_result, res.request.done):
            if callback is None:
                continue
            try:
                callback(res)
            except Exception:
                log.exception("result callback failed for request %s", res.request.id)
        return res

    # ------------------------------------------------------------------ diagnostics
    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            queued = len(self._queue)
        return {
            "queued": queued,
            "busy": self._busy,
            "estop": self._estop,
            "counts": dict(self.counts),
            "latency": self.latency.percentiles(),
        }
