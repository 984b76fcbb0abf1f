"""Observability: Prometheus metric families (``metrics.py``), drift and collapse
signals (``signals.py``, ``drift.py``, ``probe_set.py``), the learner's throughput and
history records (``throughput.py``, ``history.py``) and the plots of a run (``report.py``)."""
