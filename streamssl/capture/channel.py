"""A recording channel for generated audio: microphone band, room, gain and noise floor.

Why: a live stream hears a person through one microphone in one room for minutes, then
another programme, call or meeting brings another microphone and room. The conversation
stream (``sources/conversation.py``) draws one ``ChannelParams`` per session and runs the
session's dry audio through one ``Channel``, so that what stays constant for a while is
the channel *and* (within a turn) the speaker, and a learner cannot take one for the
other. The ideas are those of ``evaluation.dataset.degrade`` (band limit, coloured noise,
gain), made streaming: every filter is an FIR applied by overlap-add with its state kept
between chunks, so chunks join without clicks and the output of a session does not depend
on how its dry audio was cut. numpy only (capture must not need torch or scipy).

The band filter is linear phase and applied centred (its delay taken back), so a sound at
sample ``i`` of the dry input is heard at sample ``i`` of the output: the conversation's
plan stays exact. The room is causal (a reverberant tail follows the sound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE_COLOURS = ("white", "pink", "brown")
REFERENCE_RMS = 0.1  # the nominal speech level (RMS) the SNR of the noise floor refers to

# What ``draw_channel`` draws from (uniform unless said otherwise).
GAIN_DB = (-8.0, 3.0)
HIGHPASS_HZ = (50.0, 400.0)
LOWPASS_HZ = (3000.0, 8000.0)
SNR_DB = (10.0, 40.0)
RT60_S = (0.1, 0.6)  # time for the room's response to decay by 60 dB
WET = (0.0, 0.5)  # share of reverberant sound in the mix


@dataclass(frozen=True)
class ChannelParams:
    """One microphone, room and noise floor: what a session of the stream is heard through."""

    gain_db: float
    highpass_hz: float
    lowpass_hz: float  # at or above Nyquist: no low-pass
    noise_colour: str  # one of NOISE_COLOURS
    snr_db: float  # noise floor against REFERENCE_RMS (the nominal, unfiltered speech level)
    rt60_s: float
    wet: float
    seed: int  # the room's impulse response and the noise floor


def draw_channel(rng: np.random.Generator) -> ChannelParams:
    """A random channel; always the same eight draws from ``rng``, in this order."""
    return ChannelParams(
        gain_db=float(rng.uniform(*GAIN_DB)),
        highpass_hz=float(rng.uniform(*HIGHPASS_HZ)),
        lowpass_hz=float(rng.uniform(*LOWPASS_HZ)),
        noise_colour=NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))],
        snr_db=float(rng.uniform(*SNR_DB)),
        rt60_s=float(rng.uniform(*RT60_S)),
        wet=float(rng.uniform(*WET)),
        seed=int(rng.integers(2**63)),
    )


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = x.shape[0] + h.shape[0] - 1
    nfft = 1 << max(n - 1, 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[:n]


class StreamingFIR:
    """An FIR filter over a stream cut into chunks of any length: overlap-add, tail kept."""

    def __init__(self, taps: np.ndarray):
        self.taps = np.asarray(taps, dtype=np.float64)
        self._tail = np.zeros(self.taps.shape[0] - 1)

    def process(self, x: np.ndarray) -> np.ndarray:
        """The next ``len(x)`` output samples (causal: the filter's own delay included)."""
        if x.shape[0] == 0:
            return np.zeros(0)
        y = _fft_convolve(np.asarray(x, dtype=np.float64), self.taps)
        y[: self._tail.shape[0]] += self._tail
        out, self._tail = y[: x.shape[0]], y[x.shape[0]:].copy()
        return out


def _lowpass(cutoff_hz: float, sample_rate: int, taps: int) -> np.ndarray:
    n = np.arange(taps) - (taps - 1) / 2
    fc = cutoff_hz / sample_rate
    return 2 * fc * np.sinc(2 * fc * n) * np.blackman(taps)


def band_pass(highpass_hz: float, lowpass_hz: float, sample_rate: int) -> np.ndarray:
    """A linear-phase windowed-sinc band-pass (odd length, ~1/16 s: ~90 Hz transitions at 16 kHz)."""
    taps = (sample_rate // 16) | 1
    top = np.zeros(taps)
    if lowpass_hz < 0.49 * sample_rate:
        top = _lowpass(lowpass_hz, sample_rate, taps)
    else:
        top[taps // 2] = 1.0  # no low-pass: everything up to Nyquist
    return top - _lowpass(highpass_hz, sample_rate, taps)


def room_response(rt60_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A simple room: exponentially decaying noise (60 dB over ``rt60_s``) after a 1-5 ms gap, unit energy."""
    n = max(int(rt60_s * sample_rate), 1)
    gap = int(rng.uniform(0.001, 0.005) * sample_rate)
    t = np.arange(n) / sample_rate
    h = np.concatenate([np.zeros(gap), rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)])
    return h / np.sqrt(np.sum(h**2))


def noise_colouring(colour: str, sample_rate: int) -> np.ndarray:
    """An FIR that turns unit white noise into unit-power white, pink (1/f) or brown (1/f^2) noise."""
    if colour == "white":
        return np.ones(1)
    slope = {"pink": 1.0, "brown": 2.0}[colour]
    taps = 4096
    freqs = np.fft.rfftfreq(taps, 1.0 / sample_rate)
    h = np.fft.irfft(np.maximum(freqs, 20.0) ** (-slope / 2), taps)
    h = np.roll(h, taps // 2) * np.hanning(taps)
    return h / np.sqrt(np.sum(h**2))


class Channel:
    """Streams dry audio through one ``ChannelParams``: band, room, gain, then the noise floor.

    ``process`` returns fewer samples than it is given at first (the band filter's
    look-ahead, half its length); ``flush`` returns the rest, as if the input went silent.
    In all, output sample ``i`` is dry sample ``i`` heard through the channel.
    """

    def __init__(self, params: ChannelParams, sample_rate: int):
        self.params = params
        rng = np.random.default_rng(params.seed)
        band = band_pass(params.highpass_hz, params.lowpass_hz, sample_rate)
        room = room_response(params.rt60_s, sample_rate, rng)
        mix = params.wet * room
        mix[0] += 1.0 - params.wet  # dry path at the room's start (its gap is >= 1 sample)
        gain = 10 ** (params.gain_db / 20)
        self._filter = StreamingFIR(gain * _fft_convolve(band, mix))
        self._delay = band.shape[0] // 2
        self._skip = self._delay
        self._noise_rng = np.random.default_rng([params.seed, 1])
        self._noise = StreamingFIR(noise_colouring(params.noise_colour, sample_rate))
        self._noise.process(self._noise_rng.standard_normal(self._noise.taps.shape[0]))  # no fade-in
        self._noise_rms = gain * REFERENCE_RMS / 10 ** (params.snr_db / 20)

    def process(self, dry: np.ndarray) -> np.ndarray:
        """Channel output for the dry samples so far (float32, mono), aligned with the input."""
        y = self._filter.process(dry)
        if self._skip:
            cut = min(self._skip, y.shape[0])
            y, self._skip = y[cut:], self._skip - cut
        return self._finish(y)

    def flush(self) -> np.ndarray:
        """The last output samples still held back (the band filter's look-ahead), input silent after."""
        return self.process(np.zeros(self._delay))

    def _finish(self, y: np.ndarray) -> np.ndarray:
        if y.shape[0] == 0:
            return np.zeros(0, np.float32)
        noise = self._noise.process(self._noise_rng.standard_normal(y.shape[0]))
        return np.clip(y + self._noise_rms * noise, -1.0, 1.0).astype(np.float32)
