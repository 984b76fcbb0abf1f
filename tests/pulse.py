"""A private PulseAudio server with a virtual microphone, for tests on a real PortAudio device.

Recipe (works as root in CI and as a normal user; no D-Bus, no system instance):

1. Private directories: ``HOME``, ``PULSE_RUNTIME_PATH`` (the native socket lives
   there), ``PULSE_STATE_PATH`` (cookie, device database) in a temp dir, so the test
   neither sees nor disturbs a desktop's PulseAudio, and parallel tests don't collide.
2. ``pulseaudio -n -F SCRIPT --daemonize=no --exit-idle-time=-1 --disallow-exit``
   as a child process we can kill: ``-n`` skips the system ``default.pa`` (no hardware
   modules, no D-Bus), ``-F`` loads our script::

       load-module module-native-protocol-unix
       load-module module-null-sink sink_name=virt rate=16000 channels=1 format=s16le
       set-default-sink virt
       set-default-source virt.monitor

   As root PulseAudio only warns ("not intended to be run as root") and runs; the
   cookie/D-Bus warnings are harmless.
3. Readiness: poll ``pactl info`` until it answers.
4. PortAudio reaches it through ALSA: ``$HOME/.asoundrc`` makes ``pcm.!default`` the
   ``pulse`` plugin (Debian's libasound2-plugins also hooks it in when a server runs),
   so the default input of ``sounddevice`` is ``virt.monitor``.
5. Every client (``paplay``, ``pacat``, ``streamssl capture --source mic``) gets
   ``env`` (the three variables above), and audio played into sink ``virt`` comes out
   of the virtual microphone. The first PortAudio callback can take 1-2 s.

A missing ``pulseaudio`` binary raises (the test fails): the mic path must run in CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

SCRIPT = """\
load-module module-native-protocol-unix
load-module module-null-sink sink_name=virt rate={rate} channels=1 format=s16le
set-default-sink virt
set-default-source virt.monitor
"""

ASOUNDRC = """\
pcm.!default { type pulse }
ctl.!default { type pulse }
"""


class PulseServer:
    """A running private PulseAudio; ``env`` is what its clients need."""

    def __init__(self, root: Path, rate: int = 16000):
        for tool in ("pulseaudio", "pactl", "pacat"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} not found: install pulseaudio pulseaudio-utils (make system)")
        self.root = Path(root)
        home, runtime, state = (self.root / d for d in ("home", "runtime", "state"))
        for d in (home, runtime, state):
            d.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        (home / ".asoundrc").write_text(ASOUNDRC)
        script = self.root / "virt.pa"
        script.write_text(SCRIPT.format(rate=rate))
        self.env = {
            **os.environ, "HOME": str(home), "PULSE_RUNTIME_PATH": str(runtime), "PULSE_STATE_PATH": str(state),
        }
        self.env.pop("PULSE_SERVER", None)
        self.log_path = self.root / "pulseaudio.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(script), "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
             "--log-target=stderr"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
        )
        self._wait_ready(15.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            r = subprocess.run(["pactl", "info"], env=self.env, capture_output=True, text=True)
            if r.returncode == 0 and "Default Source: virt.monitor" in r.stdout:
                return
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"pulseaudio not ready in {timeout}s: {self.log_path.read_text()[-2000:]}")

    def play(self, samples: np.ndarray, rate: int = 16000) -> subprocess.Popen:
        """Start playing mono float samples into sink ``virt`` (returns the pacat process)."""
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
        self._plays = getattr(self, "_plays", 0) + 1
        raw = self.root / f"play-{self._plays}.raw"
        raw.write_bytes(pcm)  # a file, not a pipe: writing seconds of audio into a pipe would block
        with open(raw, "rb") as stdin:
            proc = subprocess.Popen(
                ["pacat", "--playback", "--device=virt", "--raw", "--format=s16le", f"--rate={rate}",
                 "--channels=1", "--latency-msec=20"],
                stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env,
            )
        return proc

    def pactl(self, *args: str) -> str:
        r = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def unplug(self) -> None:
        """Take the virtual microphone away, as when a USB microphone is pulled out: the
        null sink (and its monitor source) is unloaded and open record streams die."""
        self.pactl("unload-module", "module-null-sink")

    def plug_in(self, rate: int = 16000) -> None:
        """Bring the virtual microphone back under the same name and make it the default again."""
        self.pactl("load-module", "module-null-sink", "sink_name=virt", f"rate={rate}", "channels=1", "format=s16le")
        self.pactl("set-default-sink", "virt")
        self.pactl("set-default-source", "virt.monitor")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
