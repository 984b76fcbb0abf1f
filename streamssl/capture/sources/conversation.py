"""The plan of the conversation stream: who speaks when, what, how, and through which channel.

Why: in live audio (a meeting, a broadcast, a podcast) one person speaks for seconds to
minutes before another takes over, through one microphone and room that stay for a
while. Speaker identity can only be learned from a stream with that continuity; a new
random voice per sentence (the ``sentences`` mode of ``speech``) has none.

The stream is a sequence of **turns**: one speaker of the *train* side of
``capture.voices`` (never a held-out person), 5-60 s (log-uniform) of sentences from the
built-in vocabulary, each spoken with that speaker's own base pitch and rate (drawn once
per person) and a small jitter, with short pauses between sentences and a longer gap
between turns. A **session** (2-6 turns) is heard through one channel
(``capture.channel``); the next session brings another. Now and then the next speaker
starts before the previous one has finished (an **overlap**), and now and then a stretch
of **non-speech** (noise, mains hum, or just the noise floor) comes between two turns.

Everything here is a pure function of the seed, the sample rate and the voice list: no
audio is synthesised. Every sentence has a planned length in samples (from its letters
and rate); the source (``speech.py``) fits the synthesised sentence to exactly that
length, so ``conversation_plan`` says to the sample what the source plays, and labels
(speaker, session, speech or not) cost nothing to compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import count
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np

from streamssl.capture.channel import ChannelParams, draw_channel
from streamssl.capture.voices import Voice, available_voices

WORDS = tuple(
    """
    the a one two three four five six seven eight nine ten red green blue yellow black white
    cat dog bird fish horse cow sheep mouse lion tiger river mountain forest ocean city village
    road bridge house garden window door table chair book paper pencil letter music song voice
    morning evening night summer winter spring autumn rain snow wind storm cloud sun moon star
    quick slow bright dark warm cold loud quiet happy tired early late small large old new
    runs walks jumps sings reads writes opens closes finds brings takes makes builds carries
    watches listens speaks answers waits follows remembers forgets sees hears moves turns
    under over near behind before after between through around across with without and but
    because while when where today tomorrow yesterday always never often sometimes again
    train station market kitchen school doctor teacher farmer driver sailor baker painter
    apple bread cheese water coffee orange lemon sugar salt pepper butter honey
    """.split()
)

# Speakers: drawn once per person.
SPEAKER_PITCH = (30, 70)  # espeak-ng's 0-99 scale, inclusive
SPEAKER_WPM = (130, 200)  # inclusive
SPEAKER_LEVEL_DB = (-4.0, 4.0)  # loudness against the channel's reference level
# Sentences: small variation around the speaker's own values.
WORDS_PER_SENTENCE = (3, 11)  # inclusive, as the sentences mode
PITCH_JITTER = 3  # +- steps
RATE_JITTER = 0.05  # +- fraction of the speaker's rate
LEVEL_JITTER_DB = 1.0  # +- dB
SENTENCE_PAUSE_S = (0.15, 0.8)
# Turns and sessions.
TURN_S = (5.0, 60.0)  # log-uniform target; a turn ends with the last sentence that fits
TURN_GAP_S = (0.4, 1.5)  # silence between two turns (and around a non-speech stretch)
TURNS_PER_SESSION = (2, 6)  # inclusive
RETURNING = 0.4  # chance that a turn goes to someone already heard in this session
OVERLAP = 0.05  # chance per turn change inside a session that the next speaker starts early
OVERLAP_S = (0.2, 1.0)  # at most half of either sentence
NONSPEECH = 0.05  # chance per turn change of a non-speech stretch in the gap
NONSPEECH_S = (2.0, 8.0)
NONSPEECH_SOUNDS = ("noise", "hum", "silence")
NONSPEECH_LEVEL_DB = (-16.0, -4.0)  # against the channel's reference level (not used by silence)
HUM_HZ = (50.0, 60.0)  # mains

# A sentence's spoken length at the neutral rate (160 wpm): fitted on the train voices
# (300 sentences, speech trimmed of its leading and trailing silence).
SECONDS_AT_160_WPM = (0.106, 0.0613)  # (constant, per letter)

Kind = Literal["speech", "overlap", "nonspeech", "pause"]


@dataclass(frozen=True)
class Speaker:
    """A person of the stream with their own voice, base pitch, rate and loudness."""

    person: str
    voice: Voice
    pitch: int
    wpm: int
    level_db: float


@dataclass(frozen=True)
class Utterance:
    """One sentence as the source plays it: samples [start, end) of the stream."""

    start: int
    end: int
    speaker: Speaker
    text: str
    pitch: int
    wpm: int
    level_db: float
    turn: int
    session: int


@dataclass(frozen=True)
class NonSpeech:
    """A stretch of noise, mains hum or bare noise floor between two turns: samples [start, end)."""

    start: int
    end: int
    sound: str  # one of NONSPEECH_SOUNDS
    level_db: float
    hum_hz: float
    seed: int
    session: int


@dataclass(frozen=True)
class Session:
    """From sample ``start`` on, the stream is heard through ``channel`` (until the next Session)."""

    index: int
    start: int
    channel: ChannelParams


Event = Session | Utterance | NonSpeech


@dataclass(frozen=True)
class Segment:
    """A labelled piece of the stream, samples [start, end); the segments of a plan tile it.

    ``speech``: one person (``speaker``) speaks ``utterance`` (or part of it, next to an
    overlap); ``overlap``: two people at once (``speakers``, the earlier first; ``speaker``
    is None); ``nonspeech``: ``sound`` is noise, hum or silence; ``pause``: nothing but the
    channel's noise floor (and the room's tail of what came before).
    """

    start: int
    end: int
    sample_rate: int
    kind: Kind
    speaker: str | None
    session: int
    turn: int | None = None
    speakers: tuple[str, ...] = ()
    utterance: Utterance | None = None
    sound: str | None = None

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end / self.sample_rate

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / self.sample_rate


def sentence_samples(text: str, wpm: int, sample_rate: int) -> int:
    """The planned length of ``text`` spoken at ``wpm``: the source stretches the synthesis to it."""
    letters = sum(c.isalpha() for c in text)
    a, b = SECONDS_AT_160_WPM
    return max(1, round((a + b * letters) * 160 / wpm * sample_rate))


def draw_speakers(seed: int, voices: Sequence[Voice]) -> list[Speaker]:
    """Each voice's person with base pitch, rate and level, drawn from the seed in the voices' order."""
    rng = np.random.default_rng([seed, 0xC0417, 1])
    return [
        Speaker(v.person, v, int(rng.integers(SPEAKER_PITCH[0], SPEAKER_PITCH[1] + 1)),
                int(rng.integers(SPEAKER_WPM[0], SPEAKER_WPM[1] + 1)), float(rng.uniform(*SPEAKER_LEVEL_DB)))
        for v in voices
    ]


def _seconds(rng: np.random.Generator, bounds: tuple[float, float], rate: int) -> int:
    return round(float(rng.uniform(*bounds)) * rate)


def _sentences(rng: np.random.Generator, speaker: Speaker, rate: int) -> list[tuple[int, int, str, int, int, float]]:
    """One turn's sentences as (offset, length, text, pitch, wpm, level_db), offsets from the turn's start.

    Sentences are added while they end within the drawn target; a turn lasts at least
    TURN_S[0] and at most TURN_S[1] (a sentence is far shorter than the difference)."""
    target = round(math.exp(rng.uniform(math.log(TURN_S[0]), math.log(TURN_S[1]))) * rate)
    out: list[tuple[int, int, str, int, int, float]] = []
    pos = end = 0
    while True:
        n = int(rng.integers(WORDS_PER_SENTENCE[0], WORDS_PER_SENTENCE[1] + 1))
        text = " ".join(rng.choice(WORDS, size=n))
        pitch = speaker.pitch + int(rng.integers(-PITCH_JITTER, PITCH_JITTER + 1))
        wpm = round(speaker.wpm * float(rng.uniform(1 - RATE_JITTER, 1 + RATE_JITTER)))
        level = speaker.level_db + float(rng.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB))
        pause = _seconds(rng, SENTENCE_PAUSE_S, rate)
        length = sentence_samples(text, wpm, rate)
        if out and pos + length > target and end >= TURN_S[0] * rate:
            return out
        out.append((pos, length, text, pitch, wpm, level))
        end = pos + length
        pos = end + pause


def timeline(seed: int, sample_rate: int = 16000, voices: Sequence[Voice] | None = None) -> Iterator[Event]:
    """The endless conversation as events in the order of their start: a ``Session`` before
    its turns, then ``Utterance``s and ``NonSpeech`` stretches. ``voices`` defaults to
    ``available_voices("train")``. All draws come from one generator, in a fixed order."""
    voices = list(available_voices("train") if voices is None else voices)
    if len(voices) < 2:
        raise ValueError("a conversation needs at least two voices")
    speakers = draw_speakers(seed, voices)
    rng = np.random.default_rng([seed, 0xC0417, 2])
    rate = sample_rate
    start = 0  # where the next turn starts (before any overlap)
    prev: Speaker | None = None
    last: tuple[int, int] | None = None  # (start, end) of the last sentence so far
    turn = 0
    for session in count():
        yield Session(session, 0 if last is None else last[1], draw_channel(rng))
        cast: list[Speaker] = []
        n_turns = int(rng.integers(TURNS_PER_SESSION[0], TURNS_PER_SESSION[1] + 1))
        for k in range(n_turns):
            # who: someone already heard in this session, or anyone but the last speaker
            returning, pick_cast, pick_any = rng.random(), int(rng.integers(2**31)), int(rng.integers(2**31))
            others = [s for s in cast if s is not prev]
            if others and returning < RETURNING:
                speaker = others[pick_cast % len(others)]
            else:
                pool = [s for s in speakers if s is not prev]
                speaker = pool[pick_any % len(pool)]
            if speaker not in cast:
                cast.append(speaker)
            sentences = _sentences(rng, speaker, rate)
            # how this turn follows the last one: the draws are made every time, used or not
            overlap_roll, overlap = rng.random(), _seconds(rng, OVERLAP_S, rate)
            nonspeech_roll, sound = rng.random(), NONSPEECH_SOUNDS[int(rng.integers(len(NONSPEECH_SOUNDS)))]
            ns_length, ns_level = _seconds(rng, NONSPEECH_S, rate), float(rng.uniform(*NONSPEECH_LEVEL_DB))
            hum, ns_seed = HUM_HZ[int(rng.integers(len(HUM_HZ)))], int(rng.integers(2**63))
            gap, gap_after = _seconds(rng, TURN_GAP_S, rate), _seconds(rng, TURN_GAP_S, rate)
            if last is not None:
                if nonspeech_roll < NONSPEECH:
                    ns_start = last[1] + gap
                    yield NonSpeech(ns_start, ns_start + ns_length, sound, ns_level, hum, ns_seed, session)
                    start = ns_start + ns_length + gap_after
                elif k > 0 and overlap_roll < OVERLAP:
                    start = last[1] - min(overlap, (last[1] - last[0]) // 2, sentences[0][1] // 2)
                else:
                    start = last[1] + gap
            for offset, length, text, pitch, wpm, level in sentences:
                yield Utterance(start + offset, start + offset + length, speaker, text, pitch, wpm, level, turn,
                                session)
            last = (start + sentences[-1][0], start + sentences[-1][0] + sentences[-1][1])
            prev = speaker
            turn += 1
    raise AssertionError("unreachable: the conversation is endless")


def segments(events: Iterable[Event], sample_rate: int) -> Iterator[Segment]:
    """The labelled tiling of the stream that ``events`` (from ``timeline``) make, in order."""
    prev: Utterance | NonSpeech | None = None
    cut = 0  # where the part of ``prev`` not yet labelled starts
    for e in events:
        if isinstance(e, Session):
            continue
        if prev is None:
            if e.start > 0:
                yield Segment(0, e.start, sample_rate, "pause", None, e.session)
        elif e.start >= prev.end:
            yield _part(prev, cut, prev.end, sample_rate)
            if e.start > prev.end:
                yield Segment(prev.end, e.start, sample_rate, "pause", None, e.session)
        else:  # the next speaker starts early: two voices until the earlier sentence ends
            assert isinstance(prev, Utterance) and isinstance(e, Utterance) and e.end > prev.end
            yield _part(prev, cut, e.start, sample_rate)
            yield Segment(e.start, prev.end, sample_rate, "overlap", None, e.session,
                          speakers=(prev.speaker.person, e.speaker.person))
        cut = max(e.start, prev.end if prev is not None else 0)
        prev = e


def _part(e: Utterance | NonSpeech, start: int, end: int, rate: int) -> Segment:
    if isinstance(e, NonSpeech):
        return Segment(start, end, rate, "nonspeech", None, e.session, sound=e.sound)
    person = e.speaker.person
    return Segment(start, end, rate, "speech", person, e.session, e.turn, (person,), e)


def conversation_plan(
    seed: int, seconds: float, sample_rate: int = 16000, voices: Sequence[Voice] | None = None
) -> list[Segment]:
    """The segments of the first ``seconds`` of ``SpeechSource(seed=seed)`` (mode ``turns``) at
    ``sample_rate``: every segment that starts before ``seconds`` (the last may run past it).
    Needs no synthesis; ``voices`` defaults to ``available_voices("train")``, as the source."""
    limit = round(seconds * sample_rate)
    out = []
    for seg in segments(timeline(seed, sample_rate, voices), sample_rate):
        if seg.start >= limit:
            break
        out.append(seg)
    return out
