"""Security beyond loopback, on a real wide address: CURVE keeps strangers out, /metrics stays local.

``unshare --net`` gives the check a private network namespace (root in CI; no host
network is touched) in which tests/netns_security.py puts a non-127/8 address on the
loopback interface and runs real daemons on it. A missing ``unshare`` or ``ip`` fails
the test: the check is part of the suite, not optional.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from support import REPO

pytestmark = pytest.mark.e2e


def test_curve_on_a_wide_address_admits_only_the_authorised_key_and_metrics_stay_on_loopback():
    for tool in ("unshare", "ip"):
        assert shutil.which(tool), f"{tool} not found (util-linux / iproute2)"
    run = subprocess.run(["unshare", "--net", sys.executable, str(REPO / "tests" / "netns_security.py")],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    facts = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\n{facts}")
    # Binding the wide address without CURVE is refused with a reason, not silently done.
    assert facts["plain_learner_rc"] != 0 and facts["plain_learner_says_curve"]
    # Audio: only the authorised key gets through; the others keep running (and retrying) unheard.
    received = facts["windows_received"]
    assert received["authorised"] >= 5
    assert received["stranger"] == received["anonymous"] == received["plaintext"] == 0
    assert all(facts["captures_running"].values())
    # Embeddings: the same rule for subscribers.
    seen = facts["subscriber_embeddings"]
    assert seen["authorised"] > 0
    assert seen["stranger"] == seen["plaintext"] == 0
    # /metrics answers on loopback only, for both daemons, unless metrics_host says otherwise.
    reach = facts["metrics_reachable"]
    assert reach["learner_loopback"] and reach["capture_loopback"]
    assert not reach["learner_wide"] and not reach["capture_wide"]
    assert facts["learner_rc"] == 0
