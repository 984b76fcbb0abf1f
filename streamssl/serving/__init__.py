"""Serving: the learner daemon (``daemon.py``) with its intake of audio windows, the
subscriber side of the embeddings (``subscriber.py``), and the loopback demo that runs
the whole product in one command (``demo.py``)."""
